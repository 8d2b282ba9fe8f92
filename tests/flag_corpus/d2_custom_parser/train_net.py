from detectron2.engine import default_argument_parser, launch


def main(args):
    return args


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument("--eval-period", type=int, default=5000)
    args = parser.parse_args()
    launch(main, args.num_gpus, args=(args,))
