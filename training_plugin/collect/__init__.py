"""From paths to items: discovery of training scripts, the job table, job specs and their
command lines, the pytest collection nodes, and the ``--collect-only`` listing."""
