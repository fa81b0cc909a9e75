"""INT8 quantization: post-training, one function per backend (``ptq.py``), and
quantization-aware fine-tuning of a trained run for XNNPACK (PT2E) and OpenVINO (NNCF) (``qat.py``).

Every import from torchao, executorch and nncf goes through ``edgecnn/backends.py``:
their module paths move between releases, and one file is then the only
place to change when the pinned versions move.
"""
