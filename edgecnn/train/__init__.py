"""Training loop, metrics, checkpoints and the run-folder contract."""
