"""The engine: the training loop and inference pass, checkpoints, the run folder, the
configuration, devices, several processes and logging."""
