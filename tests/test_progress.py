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
