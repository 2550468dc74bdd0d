"""Training: typed configs, losses, data-parallel steps, checkpoints and the training loop."""
