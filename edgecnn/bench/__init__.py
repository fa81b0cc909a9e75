"""Latency benchmarks of exported artifacts, on this machine and on edge devices (``edgecnn bench``).

- ``runner.py``: the standalone device runner (stdlib + numpy + one runtime; never imports edgecnn);
- ``eager.py``: the PyTorch eager reference, speaking the runner's protocol;
- ``transport.py``: where it runs (``Local``; ``ssh.SSH``, ``adb.ADB``);
- ``worker.py``: what the driver talks to (a runner process, or ``adb.ExecutorRunner`` where there is no Python);
- ``api.py``: ``bench(...)``: the one driver: one worker per artifact, rounds interleaved, flat result rows;
- ``training.py``: training and evaluation throughput (``edgecnn bench-train``), img/s.

Nothing is imported here, so ``import edgecnn.bench.runner`` stays light.
"""
