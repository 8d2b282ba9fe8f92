import argparse

parser = argparse.ArgumentParser(description="required arguments of every kind")
parser.add_argument("data", default="data/", help="dataset root (a positional is required even with a default)")
parser.add_argument("--cfg", required=True, help="model config")
parser.add_argument("--weights", nargs="?", const="best.pt")
parser.add_argument("extra", nargs="*", default=[])
parser.add_argument("--epochs", type=int, required=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("rest", nargs=argparse.REMAINDER)
args = parser.parse_args()
