"""A minimal progress report for a long pass over files (the decoded cache's build), on stderr.

On a terminal: one line that rewrites itself (rich), with files done, files per second and the time
left. Otherwise (a CI log, a pipe): a plain line at most every ``period`` seconds, and a closing line
only when an earlier one was printed, so a pass of a few seconds adds nothing to a log. Never on stdout:
``--json`` output stays what it was.

A local stand-in, kept small on purpose: a generic helper for every long step (bench, export, sweep) is
being written in ``edgecnn/core/`` on another branch (issue 28), and this one is to be swapped for it.
"""

from __future__ import annotations

import sys
import time


class FileProgress:
    """``with FileProgress("decoding train", total) as p: ... p.advance(n)``.

    Args:
        what: what is being done, e.g. "decoding the train split".
        total: files in the pass.
        period: seconds between plain lines when stderr is not a terminal.
    """

    def __init__(self, what: str, total: int, period: float = 5.0):
        self.what, self.total, self.period = what, total, period
        self.done, self.printed = 0, None  # printed: the count the last plain line showed
        self._live = None
        self._task = None

    def __enter__(self) -> FileProgress:
        self.t0 = self._last = time.perf_counter()
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal and self.total:
            from rich.errors import LiveError
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            live = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console)
            try:
                live.start()
            except LiveError:  # another live display (a caller's progress bar) owns the terminal: plain lines
                return self
            self._live, self._task = live, live.add_task(self.what, total=self.total, rate="")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self._live is not None:
            self._live.update(self._task, advance=n, rate=self._rate(now))
        elif now - self._last >= self.period:
            self._last = now
            self._plain(now)

    def __exit__(self, *exc) -> None:
        now = time.perf_counter()
        if self._live is not None:
            self._live.update(self._task, rate=self._rate(now))
            self._live.stop()
        elif self.printed is not None and self.printed != self.done and exc[0] is None:
            self._plain(now)  # the end, when the last periodic line did not already show it

    def _rate(self, now: float) -> str:
        rate = self.done / max(now - self.t0, 1e-9)
        # Slow files (a Sentinel-2 tile takes seconds) read better as seconds per file.
        return f"{rate:.3g} files/s" + (f" ({1 / rate:.1f} s a file)" if 0 < rate < 1 else "")

    def _plain(self, now: float) -> None:
        print(f"{self.what}: {self.done}/{self.total} files, {self._rate(now)}, {now - self.t0:.0f} s",
              file=sys.stderr, flush=True)
        self.printed = self.done
