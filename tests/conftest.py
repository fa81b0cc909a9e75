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


# The fast tier (`make test-fast`: -m "not slow") leaves out tests marked slow. Every test in these
# modules trains, exports or starts runners, so they are slow as a whole. Elsewhere a test is slow when
# it says so, or when it uses a module- or session-wide fixture of the tests (those train a run, export
# artifacts or bench them once for the module): a new test on such a fixture joins the slow tier by itself.
SLOW_MODULES = {"test_pipeline", "test_export", "test_predict", "test_ddp", "test_bands_train",
                "test_bench_remote", "test_paper_tables"}


def _shares_a_built_fixture(item) -> bool:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in getattr(item, "fixturenames", ()):
        for fd in defs.get(name, ()):
            if fd.scope in ("module", "package", "session") and not getattr(fd, "_autouse", False) \
                    and Path(str(getattr(fd, "baseid", "") or "x")).parts[:1] == ("tests",):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in SLOW_MODULES or _shares_a_built_fixture(item):
            item.add_marker(pytest.mark.slow)
