"""
This training script can be run both on a single gpu in debug mode,
and also in a larger training run with distributed data parallel (ddp).
"""
import os

out_dir = 'out'
eval_interval = 2000
log_interval = 1
always_save_checkpoint = True
dataset = 'openwebtext'
batch_size = 12
block_size = 1024
max_iters = 600000
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str))]
exec(open('configurator.py').read())  # overrides from command line or config file
config = {k: globals()[k] for k in config_keys}
os.makedirs(out_dir, exist_ok=True)
