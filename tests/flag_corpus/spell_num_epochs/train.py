import argparse


def get_parser():
    parser = argparse.ArgumentParser(description="segmentation training")
    parser.add_argument("--num-epochs", type=int, default=50)
    parser.add_argument("--manual-seed", type=int, default=0)
    parser.add_argument("--outdir", type=str, default="runs")
    parser.add_argument("--lr", type=float, default=1e-3)
    return parser


if __name__ == "__main__":
    args = get_parser().parse_args()
    print(args)
