import sys


def parse_cli(defaults):
    """--key=value overrides read straight from sys.argv (no argparse)."""
    cfg = dict(defaults)
    for arg in sys.argv[1:]:
        key, _, value = arg.lstrip("-").partition("=")
        cfg[key] = type(cfg.get(key, value))(value)
    return cfg
