#!/usr/bin/env python
"""
A main training script (detectron2 style): the parser comes from the installed library.
"""
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch


def setup(args):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    return cfg


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, args=(args,))
