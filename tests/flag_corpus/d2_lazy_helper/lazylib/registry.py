import argparse


def add_lazy_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from hydra.utils import get_class  # noqa: F401  (resolves registered names lazily)

    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--num-epochs", type=int, default=12)
    parser.add_argument("--random-seed", type=int, default=-1)
    parser.add_argument("--out-dir", default="./output")
    return parser
