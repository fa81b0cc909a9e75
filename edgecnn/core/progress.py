"""A progress line for a step that can take more than a few seconds (bench rows, export, sweep candidates,
and training's epochs off a terminal, where rich's bars print nothing: ``train.loop._Lines``).

Always on stderr: stdout stays the command's own output (its table, or JSON that must parse).

* On a terminal: one line (or a few, one per bench row) that rewrites itself (rich ``Live``, transient: it is
  gone when the step ends, and the step's own result lines stay). The elapsed seconds tick on by themselves,
  so a long blocking call (lowering a graph) still shows that the step is alive.
* Elsewhere (a CI log, a file, the test suite's captured output): plain lines, at most one every
  ``EVERY_S`` seconds, and none for a step that ends sooner: a short step adds nothing to a log. A background
  thread writes them, so a long blocking call is not silent either.

``EDGECNN_PROGRESS=0`` turns it off. torch-free (rich and the standard library), so every layer can use it::

    with Progress("export executorch int8") as p:
        p.update("converting")
        ...
        say(f"parity {i}/{n} images")   # from deeper code: updates the innermost open Progress, if any

A pass over many items (the decoded cache's build) counts them, and the line says the rate and the time left::

    with Progress("decoding train", final=True) as p:
        for ...:
            p.count(done, total, "file")   # "12/300 files, 4.1 files/s, 1 min 11 s left"

Only one rich live display may run at a time: do not open one inside another (or inside training's bars).
A step opened inside another shows on the outer one's line instead (the cache's build inside ``train setup``).
"""

from __future__ import annotations

import os
import sys
import threading
import time

EVERY_S = 5.0  # plain lines: at most one this often (a CI log gets ~12 lines a minute of a long step)
_OPEN: list[Progress] = []  # the Progress objects entered and not yet left, innermost last (say() updates it)


def say(text: str) -> None:
    """What the step is doing now, from code that was not handed the Progress (a target's export, parity):
    updates the innermost open one; nothing when none is open (a library call, a test)."""
    if _OPEN:
        _OPEN[-1].update(text)


def enabled() -> bool:
    return os.environ.get("EDGECNN_PROGRESS", "1") not in ("0", "false", "no", "off")


class Progress:
    """A context manager: ``update(text)`` replaces what the line says; the elapsed time is added to it.

    Args:
        what: the step, first on every line (``bench``, ``export openvino int8``).
        every_s: plain lines: at most one this often, the first after this long (default ``EVERY_S``).
        file: where to write (default ``sys.stderr``, looked up on entry so tests can capture it).
        terminal: force the terminal (True) or plain (False) mode; None: ask the stream.
        show: False: print nothing (a process that is not the main one of several).
        final: plain lines: one more at the end, where an earlier one was printed and the step has moved on
            since (a counted pass ends on its total and rate); a step that printed nothing still adds nothing.
    """

    def __init__(self, what: str, every_s: float | None = None, file=None, terminal: bool | None = None,
                 show: bool = True, final: bool = False):
        self.what, self.file, self.terminal, self.show = what, file, terminal, show
        self.every_s = EVERY_S if every_s is None else every_s  # looked up here: a test may set EVERY_S
        self.final = final
        self.text = ""
        self._printed: str | None = None  # plain mode: the text of the last line written
        self._live = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outer: Progress | None = None  # opened inside another step: its line shows this one's text

    # -- what callers use -------------------------------------------------------------------------

    def update(self, text: str) -> None:
        with self._lock:
            self.text = text
        if self._outer is not None:
            self._outer.update(f"{self.what}: {text}")
        if self._live is not None:
            self._live.refresh()

    def count(self, done: int, total: int, unit: str = "file") -> None:
        """A pass over ``total`` items: ``12/300 files, 4.1 files/s, 1 min 11 s left`` (rate since the start)."""
        if not done:
            self.update(f"0/{total} {unit}s")
            return
        seconds = time.monotonic() - self.t0
        left = f", {eta((total - done) * seconds / done)} left" if done < total else ""
        self.update(f"{done}/{total} {unit}s, {rate(done, seconds, unit)}{left}")

    def line(self) -> str:
        """What the line says now: ``what: text (12 s)`` (several lines when ``text`` has several)."""
        with self._lock:
            text = self.text
        elapsed = f"({time.monotonic() - self.t0:.0f} s)"
        first, *rest = text.splitlines() or [""]
        return "\n".join([f"{self.what}: {first} {elapsed}".replace(":  (", " ("), *rest])

    # -- the two modes ----------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self.t0 = time.monotonic()
        self._outer = _OPEN[-1] if _OPEN else None
        _OPEN.append(self)
        if not (self.show and enabled()) or self._outer is not None:  # inside another step: the outer line shows it
            return self
        file = self.file or sys.stderr
        terminal = self.terminal if self.terminal is not None else _is_terminal(file)
        if terminal:
            self._start_live(file)
        else:
            self._thread = threading.Thread(target=self._plain, args=(file,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            with self._lock:
                moved = self._printed is not None and self._printed != self.text
            if self.final and moved and exc[0] is None:
                self._write(self.file or sys.stderr)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _start_live(self, file) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        progress = self

        class _Line:  # rendered again at every refresh, so the elapsed seconds move on their own
            def __rich__(self):
                return Text(progress.line(), style="dim", no_wrap=True, overflow="ellipsis")

        # stdout printed meanwhile goes above the line, where stdout is the same terminal (never into a pipe).
        self._live = Live(_Line(), console=Console(file=file), refresh_per_second=2, transient=True,
                          redirect_stdout=_is_terminal(sys.stdout), redirect_stderr=False)
        try:
            self._live.start()
        except Exception:  # another live display is running (rich allows one): stay quiet rather than garble it
            self._live = None

    def _plain(self, file) -> None:
        last = self.t0
        while not self._stop.wait(min(0.5, self.every_s)):
            if time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                if not self._write(file):
                    return

    def _write(self, file) -> bool:
        """One plain line; False when the stream closed under us (nobody is reading)."""
        with self._lock:
            self._printed = self.text
        try:
            file.write(self.line() + "\n")
            file.flush()
        except (OSError, ValueError):
            return False
        return True


def _is_terminal(file) -> bool:
    try:
        return file.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def rate(done: int, seconds: float, unit: str = "file") -> str:
    """``4.1 files/s``; below one a second also the seconds each takes: ``0.4 files/s (2.5 s a file)`` (a
    Sentinel-2 tile takes seconds)."""
    per_s = done / max(seconds, 1e-9)
    return f"{per_s:.3g} {unit}s/s" + (f" ({1 / per_s:.1f} s a {unit})" if 0 < per_s < 1 else "")


def eta(seconds: float | None) -> str:
    """``1 min 05 s`` / ``42 s``: a time left, rounded up to whole seconds."""
    if seconds is None:
        return "?"
    s = max(0, int(-(-seconds // 1)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
