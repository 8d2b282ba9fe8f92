import argparse


def create_argparser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results-dir", type=str, default="results")
    parser.add_argument("--manualSeed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1400)
    parser.add_argument("--global-batch-size", type=int, default=256)
    return parser


def main(args):
    print(args)


if __name__ == "__main__":
    main(create_argparser().parse_args())
