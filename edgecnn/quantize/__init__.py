"""INT8 quantization, one function per backend (``ptq.py``).

Every import from torchao, executorch and nncf goes through ``_compat``:
their module paths move between releases, and one file is then the only
place to change when the pinned versions move.
"""
