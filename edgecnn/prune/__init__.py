"""Pruning of a trained DynamicConv2D stem into a new run folder (``edgecnn prune``); see ``api.py``."""
