"""INT8 quantization, one file per backend as far as it goes.

- ``ptq.py``: post-training quantization, one function per backend (PT2E/XNNPACK, NNCF/OpenVINO,
  onnxruntime);
- ``qat.py``: quantization-aware fine-tuning of a trained run (``edgecnn qat``), QAT run folders;
  its backends are ``qat_xnnpack.py`` (PT2E) and ``qat_openvino.py`` (NNCF);
- ``budget.py``: ``--max-drop``: which layers to keep in float to stay within an accuracy budget;
- ``calibration.py``: calibration and held-out images;
- ``delegable.py``: the rewrites XNNPACK needs and the layers kept in float.

Every import from torchao, executorch and nncf goes through ``edgecnn/backends.py``:
their module paths move between releases, and one file is then the only
place to change when the pinned versions move.
"""
