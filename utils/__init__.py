"""The training loop, configuration, checkpoints and logging shared by both settings."""
