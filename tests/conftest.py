import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# Small settings every end-to-end test shares: 3 classes of 16x16 images, a
# couple of epochs. Enough to exercise every code path in seconds.
TINY = [
    "data.image_size=16", "data.num_classes=3", "data.train_per_class=8", "data.val_per_class=4",
    "train.epochs=2", "train.batch_size=8", "train.threads=1",
]


def cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``edgecnn`` entry point in a subprocess (``env``: variables to set on top)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", *args], cwd=cwd or ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"edgecnn {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The quickstart recipe; tests pass TINY as overrides."""
    return RECIPES / "quickstart.yaml"
