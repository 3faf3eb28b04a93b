"""Training with L_simple: the configuration and presets (config.py), the loop (loop.py), the state of
a run and how it is saved and restored (run_state.py), the checkpoint file format (checkpoint.py),
several processes under torchrun (distributed.py). notebooks/04.
Within the package: config, checkpoint, distributed <- run_state <- loop."""
