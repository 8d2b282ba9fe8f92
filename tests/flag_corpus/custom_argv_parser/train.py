from tools.cli import parse_cli

DEFAULTS = {"epochs": 10, "seed": 0, "out_dir": "out"}

if __name__ == "__main__":
    cfg = parse_cli(DEFAULTS)
    print(cfg)
