"""Training a recipe into a run folder (``edgecnn train``, ``edgecnn eval``).

- ``loop.py``: ``train`` (SGD, StepLR, a resumable checkpoint every epoch; ``Steps`` for QAT), the
  loader, ``evaluate``;
- ``run.py``: the run folder read back: its recipe, the trained model, the device;
- ``evaluate.py``: ``evaluate_run`` writes ``eval.json`` (per band subset for band-robust runs);
- ``checkpoint.py``: atomic writes and safe checkpoint loading;
- ``metrics.py``: accuracy and macro precision/recall/F1 from a confusion matrix;
- ``dist.py``: DDP under torchrun (``--nproc``);
- ``env.py``: the ``env.json`` record (versions, hardware).
"""
