#!/usr/bin/env python3
""" Bulk Model Script Runner """
import argparse
import subprocess
import sys

parser = argparse.ArgumentParser(description='Per-model process launcher')

# model and results args
parser.add_argument(
    '--model-list', metavar='NAME', default='',
    help='txt file based model list or model wildcard filter string')
parser.add_argument(
    '--results-file', default='', type=str, metavar='FILENAME',
    help='Output csv file for validation results (summary)')
parser.add_argument(
    '--sort-key', default='', type=str, metavar='COL',
    help='Specify sort key for results csv')
parser.add_argument(
    "--pretrained", action='store_true',
    help="only run models with pretrained weights")
parser.add_argument(
    "--delay", type=float, default=0,
    help="Interval, in seconds, to delay between model invocations.")
parser.add_argument(
    "--start_method", type=str, default="spawn", choices=["spawn", "fork", "forkserver"],
    help="Multiprocessing start method to use when creating workers.")
parser.add_argument(
    "--no_python",
    help="Skip prepending the script with 'python' - just execute it directly.")

# positional
parser.add_argument(
    "script", type=str,
    help="Full path to the program/script to be launched for each model config.")
parser.add_argument("script_args", nargs=argparse.REMAINDER)


def main():
    args = parser.parse_args()
    cmd = [sys.executable, args.script, *args.script_args]
    subprocess.run(cmd, check=False)


if __name__ == '__main__':
    main()
