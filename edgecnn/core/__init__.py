"""Torch-free pieces every stage shares (statistics today; the file contracts are to move here)."""
