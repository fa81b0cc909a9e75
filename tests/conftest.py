import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

import forkcli

from edgecnn.core.contracts import TARGET_SUFFIX, TARGETS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# Small settings every end-to-end test shares: 3 classes of 16x16 images, a
# couple of epochs. Enough to exercise every code path in seconds.
TINY = [
    "data.image_size=16", "data.num_classes=3", "data.train_per_class=8", "data.val_per_class=4",
    "train.epochs=2", "train.batch_size=8", "train.threads=1",
]
# The band-robust models at test size: one epoch of a ResNet-10 (one block per stage) instead of ResNet-34's
# 21 M weights, whose checkpoints and exports were most of the band tests' time. What these tests check (band
# subsets, masks, folding, lost bands) does not depend on depth; test_dynamic_conv folds the full ResNet-34
# in-process and test_bands_train counts its MACs.
DYN_TINY = [*TINY, "train.epochs=1", "model.layers=[1,1,1,1]"]


def cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600,
        env: dict | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``edgecnn`` entry point in its own process (``env``: variables to set on top).

    The process is forked from a zygote that has imported torch once (``tests/forkcli.py``: seconds per
    command saved); a call that changes a variable read at import time, or ``EDGECNN_TEST_FRESH=1``,
    starts a new interpreter, ``python -m edgecnn``; so does ``fresh`` (a test that times a whole start).
    """
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", **(env or {})}
    cwd = Path(cwd or ROOT)
    zygote = None if fresh or os.environ.get("EDGECNN_TEST_FRESH") == "1" else _zygote(env)
    if zygote is None:
        proc = subprocess.run(
            [sys.executable, "-m", "edgecnn", *args], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=timeout,
        )
    else:
        with tempfile.TemporaryDirectory(prefix="cli-") as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            rc = zygote.run(list(args), str(cwd), env, str(out), str(err), timeout)
            proc = subprocess.CompletedProcess([sys.executable, "-m", "edgecnn", *args], rc,
                                               out.read_text(errors="replace"), err.read_text(errors="replace"))
    if check and proc.returncode != 0:
        raise AssertionError(f"edgecnn {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


_ZYGOTE: list = []


def _zygote(env: dict):
    """This process's zygote (started on first use), or None when ``env`` differs from the zygote's where a
    library reads it at import."""
    if not _ZYGOTE:  # started with the suite's own environment, not one test's additions
        _ZYGOTE.append(forkcli.Zygote({**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}))
    z = _ZYGOTE[0]
    return None if forkcli.fresh_env(z.env, env) else z


def pytest_unconfigure(config):
    for z in _ZYGOTE:
        z.close()


def shared(tmp_path_factory, name: str, build) -> Path:
    """``build(path)`` once for the whole pytest run, then ``path`` to every test that asks.

    Under pytest-xdist each worker has its own temporary folder; their common parent holds what they
    share, and a file lock makes the first worker build it while the others wait. A build that failed
    leaves no ``.done`` mark, so the next test to ask builds it again (and fails with its own error).
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny quickstart run (cnn_attn, TINY) for the whole suite, with its six artifacts in ``export/``:
    ExecuTorch, OpenVINO and ONNX, fp32 and INT8 (PTQ, 8 calibration images).

    Shared by every module that only reads a trained run or its artifacts (bench, predict, remote and native
    bench, the board). Read it, never write into it: a test that changes a run copies it (``copy_run``).
    """
    def build(run: Path) -> None:
        from edgecnn.export import export_run

        cli("train", "recipes/quickstart.yaml", *TINY, "--out", str(run), check=True)
        for target in TARGETS:
            for int8 in (False, True):
                export_run(run, target, int8=int8, calib=8)
    return shared(tmp_path_factory, "tiny-run", build)


def tiny_artifact(run: Path, target: str, int8: bool = False) -> Path:
    """The path of one of ``tiny_run``'s artifacts."""
    return run / "export" / f"cnn_attn-{target}-{'int8' if int8 else 'fp32'}{TARGET_SUFFIX[target]}"


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run folder without its ``export/``, for a test that writes into a run."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("export"))
    return dest


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


# Under `make test` two processes share the modules (pytest-xdist --dist loadfile); the longest start first so
# that neither waits alone at the end, and the board last, so that .ci/run's background build has time.
# Measured with `pytest --durations` on the 2-core VM (docs/testing.md). Unlisted modules keep their order.
FIRST = ("test_qat", "test_pipeline", "test_export", "test_bench", "test_paper_tables", "test_ddp",
         "test_multispectral", "test_sweep", "test_bench_remote", "test_accuracy_budget", "test_report",
         "test_bench_native", "test_pipeline_inputs")
LAST = ("test_board",)


def _module_rank(item) -> int:
    name = Path(str(item.fspath)).stem
    return FIRST.index(name) if name in FIRST else len(FIRST) + 1 if name in LAST else len(FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_module_rank)  # stable: tests keep their order inside a module
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in SLOW_MODULES or _shares_a_built_fixture(item):
            item.add_marker(pytest.mark.slow)
