"""Training end to end through the real CLI: run folder contract, eval, resume after SIGKILL."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgecnn.train.checkpoint import load_checkpoint
from edgecnn.train.metrics import confusion, summarize
from conftest import ROOT, TINY, cli


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_metrics_macro_averages():
    # 3 classes; class 2 never predicted -> precision 0 for it (zero_division=0).
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 1])
    m = summarize(confusion(preds, labels, 3))
    assert abs(m["accuracy"] - 3 / 6) < 1e-9
    assert abs(m["recall"] - (0.5 + 1.0 + 0.0) / 3) < 1e-9
    assert abs(m["precision"] - (0.5 + 0.5 + 0.0) / 3) < 1e-9
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * 0.5 * 1.0 / 1.5, 0.0]
    assert abs(m["f1"] - sum(f1) / 3) < 1e-9


def test_macro_metrics_match_scikit_learn_when_a_class_is_predicted_but_absent():
    """Hand-computed sklearn.metrics.precision_recall_fscore_support(average="macro") values.

    Its labels are those in y_true or y_pred: class 2 (predicted once, never true) counts, with
    precision 0/1 = 0, recall 0/0 -> 0 (zero_division) and F1 0; class 3 (neither) does not.
    """
    labels = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 2, 1, 1])
    m = summarize(confusion(preds, labels, 4))
    # class 0: P 1/1, R 1/2, F1 2/3; class 1: P 2/2, R 2/2, F1 1; class 2: P 0, R 0, F1 0.
    assert m["precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["accuracy"] == pytest.approx(3 / 4)


@pytest.mark.slow
def test_train_eval_end_to_end(tmp_path: Path):
    run = tmp_path / "run"
    proc = cli("train", "recipes/quickstart.yaml", *TINY, "--out", str(run), check=True)
    assert "epoch   2/2" in proc.stdout
    for name in ("recipe.yaml", "env.json", "metrics.csv", "last.pt", "best.pt", "train.log"):
        assert (run / name).is_file(), name
    assert len(rows(run)) == 2
    env = json.loads((run / "env.json").read_text())
    assert env["packages"]["torch"].startswith("2.13") and env["cpu"]
    # Checkpoints load with weights_only=True and carry what resume needs.
    state = load_checkpoint(run / "last.pt")
    assert {"model", "optimizer", "scheduler", "generator", "torch_rng", "history", "classes"} <= set(state)

    ev = cli("eval", str(run), "--json", check=True)
    result = json.loads(ev.stdout)
    assert result == json.loads((run / "eval.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "params", "macs", "input_size"} <= set(result)
    assert result["images"] == 3 * 4 and result["input_size"] == 16
    table = cli("eval", str(run), check=True).stdout
    assert "Accuracy" in table and "F1-score" in table and "MACs" in table

    # info on a run reads its recipe and trained head size.
    info = json.loads(cli("info", str(run), "--json", check=True).stdout)
    assert info["num_classes"] == 3 and info["input_size"] == 16

    # A finished run is never silently overwritten.
    again = cli("train", "recipes/quickstart.yaml", *TINY, "--out", str(run))
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    done = cli("train", "recipes/quickstart.yaml", *TINY, "--out", str(run), "--resume", check=True)
    assert "already finished" in done.stdout
    # Resuming with a different recipe is refused, naming the keys.
    other = cli("train", "recipes/quickstart.yaml", *TINY, "train.lr=0.5", "--out", str(run), "--resume")
    assert other.returncode == 2 and "train.lr" in other.stderr


@pytest.mark.slow
def test_ablation_trains_on_the_same_data(tmp_path: Path):
    run = tmp_path / "cnn"
    cli("train", "recipes/quickstart_cnn.yaml", *TINY, "train.epochs=1", "--out", str(run), check=True)
    assert json.loads(cli("eval", str(run), "--json", check=True).stdout)["model"] == "cnn"


def test_errors_exit_2_without_traceback(tmp_path: Path):
    cases = [
        ("eval", str(tmp_path)),                                       # not a run
        ("train", "recipes/quickstart.yaml", "--out", str(tmp_path / "x"), "--resume"),  # nothing to resume
        ("train", "recipes/cnn_attn.yaml", f"data.root={tmp_path / 'nope'}", "--out", str(tmp_path / "y")),
        ("train", "recipes/missing.yaml"),
    ]
    for args in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: "), (args, proc.stderr)


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path):
    run = tmp_path / "run"
    cli("train", "recipes/quickstart.yaml", *TINY, "train.epochs=1", "--out", str(run), check=True)
    (run / "best.pt").write_bytes(b"not a checkpoint")
    proc = cli("eval", str(run))
    assert proc.returncode == 2 and "damaged" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path):
    """Kill a run with SIGKILL in the middle of an epoch, resume it, and compare
    with a run that never stopped: same epochs, same metrics, same weights."""
    args = ["recipes/quickstart.yaml", *TINY, "data.train_per_class=60", "train.epochs=4"]
    full = tmp_path / "full"
    cli("train", *args, "--out", str(full), check=True)

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn", "train", *args, "--out", str(killed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "metrics.csv").exists():
        time.sleep(0.02)
    epoch_seconds = float(next(csv.DictReader(open(full / "metrics.csv")))["seconds"])
    time.sleep(epoch_seconds / 2)  # into the middle of epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(rows(killed)) < 4, "the run finished before it could be killed; make epochs longer"

    cli("train", *args, "--out", str(killed), "--resume", check=True)
    assert rows(killed) == rows(full)
    a, b = load_checkpoint(killed / "last.pt"), load_checkpoint(full / "last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert "resumed at epoch" in (killed / "train.log").read_text()



def test_training_closes_its_log_file(tmp_path: Path, monkeypatch):
    """In one process (a notebook trains many runs): no handle on train.log stays open, on success or error."""
    from rich.console import Console

    import edgecnn.train.loop as loop
    from edgecnn.config import load_recipe

    def open_logs() -> list[str]:
        links = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return [link for link in links if link.endswith("train.log")]

    recipe = load_recipe(ROOT / "recipes/quickstart.yaml", [*TINY, "train.epochs=1"])
    loop.train(recipe, tmp_path / "a", console=Console(quiet=True))
    assert "finished: best val accuracy" in (tmp_path / "a" / "train.log").read_text()
    assert open_logs() == []

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train_epoch", interrupted)
    try:
        loop.train(recipe, tmp_path / "b", console=Console(quiet=True))
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "b" / "train.log").is_file() and open_logs() == []


def test_a_hostile_run_recipe_is_refused_as_damaged(tmp_path: Path):
    """A run folder copied from elsewhere gets the same YAML limits as a recipe."""
    from edgecnn.errors import UserError
    from edgecnn.train.run import read_run_recipe

    from test_config import LAUGHS

    (tmp_path / "recipe.yaml").write_text(LAUGHS)
    with pytest.raises(UserError, match="damaged .*billion laughs"):
        read_run_recipe(tmp_path)


def test_loader_workers_never_exceed_the_cores(monkeypatch, capsys):
    from edgecnn.train import loop

    monkeypatch.setattr(loop.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(loop, "_CLAMPED", set())
    assert loop.loader_workers(0) == 0 and loop.loader_workers(2) == 2
    assert [loop.loader_workers(4) for _ in range(3)] == [2, 2, 2]
    said = capsys.readouterr().err.splitlines()
    assert said == ["data.workers=4 clamped to 2: this process may use 2 cores"]  # once, not per loader
