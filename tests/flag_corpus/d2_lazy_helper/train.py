import argparse

from hydra.utils import instantiate
from omegaconf import OmegaConf

from lazylib.registry import add_lazy_args


def main():
    parser = add_lazy_args(argparse.ArgumentParser(description="lazy-config training"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value overrides")
    args = parser.parse_args()
    cfg = OmegaConf.create({"model": {}})
    return instantiate(cfg.model), args


if __name__ == "__main__":
    main()
