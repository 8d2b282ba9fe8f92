"""
Train a diffusion model on images.
"""
import argparse

from improved_diffusion.script_util import add_dict_to_argparser, model_and_diffusion_defaults


def main():
    args = create_argparser().parse_args()
    print(args)


def create_argparser():
    defaults = dict(
        data_dir="",
        schedule_sampler="uniform",
        lr=1e-4,
        batch_size=1,
        log_interval=10,
        save_interval=10000,
    )
    defaults.update(model_and_diffusion_defaults())
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, defaults)
    return parser


if __name__ == "__main__":
    main()
