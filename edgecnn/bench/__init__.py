"""Latency benchmarks of exported artifacts, on this machine and on edge devices (``edgecnn bench``).

- ``runner.py``: the standalone device runner (stdlib + numpy + one runtime; never imports edgecnn);
- ``eager.py``: the PyTorch eager reference, speaking the runner's protocol;
- ``transport.py``: where it runs (``Local``; ``ssh.SSH``, ``adb.ADB``);
- ``api.py``: ``bench(...)``: one runner process per artifact, rounds interleaved, flat result rows.

Nothing is imported here, so ``import edgecnn.bench.runner`` stays light.
"""
