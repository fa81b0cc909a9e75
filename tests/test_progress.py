"""The progress line (edgecnn/core/progress.py): plain lines when the output is not a terminal, at most one every
``every_s`` seconds and none for a short step; nested steps show on the outer line; ``say`` reaches the innermost;
stdout is never touched (JSON there must parse)."""

from __future__ import annotations

import io
import time

from edgecnn.core import progress as P


def test_plain_lines_are_periodic_and_a_short_step_prints_nothing(capsys):
    out = io.StringIO()
    with P.Progress("short", every_s=0.3, file=out, terminal=False) as p:
        p.update("quick")
    assert out.getvalue() == ""
    with P.Progress("long", every_s=0.2, file=out, terminal=False) as p:
        p.update("phase one")
        time.sleep(0.55)
        P.say("phase two")  # from code that was not handed the object
        time.sleep(0.45)
    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 5, lines  # about one per 0.2 s of a 1 s step, never more often
    assert lines[0].startswith("long: phase one (") and lines[-1].startswith("long: phase two (")
    assert capsys.readouterr().out == ""  # nothing on stdout


def test_nested_steps_show_on_the_outer_line_and_can_be_turned_off(monkeypatch):
    out = io.StringIO()
    with P.Progress("sweep probe", every_s=0.1, file=out, terminal=False):
        with P.Progress("bench", file=out, terminal=False) as inner:
            inner.update("round 3")
            time.sleep(0.25)
    assert "sweep probe: bench: round 3" in out.getvalue()
    assert P._OPEN == []
    monkeypatch.setenv("EDGECNN_PROGRESS", "0")
    quiet = io.StringIO()
    with P.Progress("off", every_s=0.05, file=quiet, terminal=False) as p:
        p.update("x")
        time.sleep(0.15)
    assert quiet.getvalue() == ""


def test_terminal_mode_rewrites_one_line_and_leaves_nothing():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    with P.Progress("export", file=out) as p:
        p.update("lowering to XNNPACK")
        time.sleep(0.6)
    text = out.getvalue()
    assert "export: lowering to XNNPACK" in text  # drawn while it ran
    assert "\x1b[" in text  # with cursor movements (the line rewrites itself), erased at the end (transient)


def test_eta():
    assert P.eta(41.2) == "42 s" and P.eta(65) == "1 min 05 s" and P.eta(-3) == "0 s" and P.eta(None) == "?"


def test_a_counted_pass_says_its_rate_and_time_left_and_ends_on_its_total():
    out = io.StringIO()
    with P.Progress("decoding", every_s=0.1, file=out, terminal=False, final=True) as p:
        p.count(0, 4)
        assert p.text == "0/4 files"
        for done in range(1, 5):
            time.sleep(0.12)
            p.count(done, 4)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("decoding: 4/4 files, ") and " files/s" in lines[-1] and "left" not in lines[-1]
    assert sum("4/4 files" in line for line in lines) == 1  # the closing line does not repeat the last one
    assert any(", 1 s left (" in line for line in lines)  # ~0.12 s a file, rounded up to whole seconds
    assert P.rate(10, 4.0) == "2.5 files/s" and P.rate(1, 2.5, "tile") == "0.4 tiles/s (2.5 s a tile)"
    short = io.StringIO()  # a pass shorter than the period: nothing, closing line included
    with P.Progress("quick", every_s=5, file=short, terminal=False, final=True) as p:
        p.count(3, 3)
    assert short.getvalue() == ""



def test_training_off_a_terminal_prints_plain_lines(monkeypatch, capsys):
    """rich's epoch bars print nothing off a terminal (a CI log, a piped `make demo`), where an epoch took 13-27 s
    of silence; training's bars there are plain lines instead: the pass's batches and loss, then validating."""
    from rich.console import Console

    from edgecnn.train import loop
    from edgecnn.train.dist import Dist

    monkeypatch.setattr(P, "EVERY_S", 0.1)
    bars = loop._progress(Console(file=io.StringIO()), Dist())
    assert isinstance(bars, loop._Lines)
    with bars:
        task = bars.add_task("epoch 2/5", total=47, loss=0.0)
        for _ in range(30):
            bars.update(task, advance=1, loss=0.671)
        time.sleep(0.25)
        bars.remove_task(task)
        time.sleep(0.25)
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("train: epoch 2/5: 30/47 batches, loss 0.671 (") for line in err), err
    assert err[-1].startswith("train: epoch 2/5: validating (")
    assert isinstance(loop._progress(Console(file=io.StringIO(), force_terminal=True), Dist()), loop.Progress)
