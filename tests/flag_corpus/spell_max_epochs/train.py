import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--max_epochs", type=int, default=100)
parser.add_argument("--random_seed", type=int, default=1234)
parser.add_argument("--save-dir", default="checkpoints")
parser.add_argument("--num-workers", type=int, default=4)
args, unknown = parser.parse_known_args()
print(args, unknown)
