"""Running the jobs of a session: their order (remembered durations, longest first), the
thread and GPU budget of xdist workers, the xdist scheduler, the live progress line, SIGTERM
handling and log tails."""
