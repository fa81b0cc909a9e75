"""Training: the loop, its metrics, checkpoints, evaluation, DDP helpers and the run-folder helpers."""
