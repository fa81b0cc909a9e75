"""Torch-free pieces every stage shares.

- ``contracts.py``: the run-folder and artifact contracts: file names, checkpoint keys (``CKPT_*``),
  which checkpoint later stages read, sidecar and bench-row fields;
- ``catalog.py``: the models a recipe can name and what each can do (the schema reads it);
- ``safeyaml.py``: YAML with limits, for recipes and run folders that travel;
- ``stats.py``: latency statistics for every timing path;
- ``sensors.py``: bands with wavelengths, the sensor presets of ``sensors.yaml`` and what ``data.bands`` accepts.
"""
