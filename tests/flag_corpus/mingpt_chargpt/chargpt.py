"""
Trains a character-level language model.
"""
import sys

from mingpt.utils import CfgNode as CN


def get_config():
    C = CN()
    C.system = CN(seed=3407, work_dir='./out/chargpt')
    return C


if __name__ == '__main__':
    config = get_config()
    config.merge_from_args(sys.argv[1:])
    print(config)
