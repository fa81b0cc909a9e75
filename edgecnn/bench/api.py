"""``bench``: artifacts (and a PyTorch reference) timed in one invocation, as flat rows.

Read top to bottom: check the request and every sidecar (bad input stops here
with a ``UserError``), start one runner process per artifact on the device
(``runner.py`` beside the artifact; the eager reference is ``eager.py`` on this
machine), warm each up, then send rounds to each process in turn, rotating
who goes first, so drift of the machine (heat, other load) reaches every
runtime alike; finally ask each for its memory, device state, harness
overhead and profile, and turn the latencies into the rows of
``docs/contracts.md``.

A device without Python (an Android phone over adb, or ``--runner`` on an
ssh board) runs ExecuTorch's ``executor_runner`` instead: ``adb.ExecutorRunner``
answers the same messages as a runner process (``worker.py``), so those rows
go through this same driver, statistics and fields (``adb.py`` says what
differs there and why).

A runner that fails (cannot load, crashes, times out) gives its row an
``error`` and stops; the others go on. Every wait has a time limit and every
process is killed on the way out, so nothing hangs.
"""

from __future__ import annotations

import datetime
import json
import math
import posixpath
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgecnn import __version__
from edgecnn.bench import check, native
from edgecnn.bench.adb import checked_runner, refusal, start_runner
from edgecnn.bench.check import attach, no_check_rows
from edgecnn.bench.peak import utilisation
from edgecnn.bench.runner import COOL_WAIT_MAX_S  # a runner may sleep this long before its first line
from edgecnn.bench.transport import Local, open_transport
from edgecnn.bench.worker import RUNNER, RunnerFailed
from edgecnn.core.contracts import ARTIFACT_SUFFIXES, run_model_name, sidecar_path
from edgecnn.core.progress import Progress, eta
from edgecnn.export.artifact import check_sidecar, read_sidecar
from edgecnn.files import atomic_write_text
from edgecnn.core.stats import MIN_ROUNDS, half_width_pct, looks, overlap, ratio_ci, sequential_ci, summarize, \
    t_quantile
from edgecnn.errors import UserError

SUFFIXES = ARTIFACT_SUFFIXES
CI_WARN_PCT = 3.0  # a median's interval wider than this (half-width, % of the median) gets a warning
# Pause before each round, so the worker threads of the runtime that ran last
# (OpenMP, onnxruntime and XNNPACK pools spin a while after their work) are
# idle when the next one starts its clock.
SETTLE_S = 0.05

# The row's fields live with the other file contracts (core/contracts.py); re-exported for callers.
from edgecnn.core.contracts import (  # noqa: E402
    DEVICE_FIELDS, EXTRA_FIELDS, ROW_FIELDS, STAT_FIELDS, blank_bench_row,
)

EMULATED = "emulated: not the latency of real hardware"
# Timing by duration (the defaults of `edgecnn bench`): interleaved rounds of at least a second each, added
# until every median's interval is within PRECISION_PCT (core/stats.sequential_ci; at least MIN_ROUNDS).
# A fixed count is right on no machine: on a quiet Zen 5 five rounds give +-0.6%, on a shared 2-core Zen 3
# ten gave +-6.7%. The limits bound the set at five minutes on 2 cores. Twenty calls per round at least,
# so a slow model still has a median per round.
PRECISION_PCT = 3.0
MAX_TIME_S = 300.0
MAX_ROUNDS = 60
ROUNDS = 10  # rounds of --iters N, which splits a fixed count of calls over them
MIN_TIME_S = 1.0
MIN_CALLS = 20
WARMUP_MAX_S = 5.0  # warm-up stops here even if the latency still moves (the row then says so)
BATCH_BELOW_MS = 1.0  # calls shorter than this are timed in batches of about this length
# The overhead check: ABBA passes of 8 blocks of about OVERHEAD_BLOCK_S each (1 s a pass), repeated until the
# mean's 95% interval is within +-OVERHEAD_HALF_PP points (then it is judged against the 1% target), at most
# OVERHEAD_MAX_PASSES. One pass of 0.5 s blocks read up to 6% on a quiet 2-core VM: that was noise. The passes
# after the first also stop once they took as long as the row's timed rounds: a check should not cost more than
# the measurement it qualifies (a short --iters bench gets one pass, reported and not judged).
OVERHEAD_BLOCK_S = 0.125
OVERHEAD_MIN_PASSES = 3
OVERHEAD_MAX_PASSES = 8
OVERHEAD_HALF_PP = 0.5
THROTTLE_FREQ = 0.9  # a round whose clock is below this share of the maximum counts as throttled
# A time budget (--time-budget, pipeline.bench.time_budget_s) is the whole bench's: loading and warm-up run first
# and are measured; the rounds get what is left, less this reserve per row for its finish (one overhead-check
# pass of about a second, the memory and device questions). Each overhead pass, the first included, runs only
# where the time left (less the reserves of the rows still to finish) holds it.
FINISH_RESERVE_S = 2.0


# -- what to bench ---------------------------------------------------------------------------------

def find_artifacts(paths: list[Path]) -> list[Path]:
    """Artifact files from the command line: files as given, folders expanded.

    A folder stands for every artifact in it that has a sidecar (a run folder:
    its ``export/``), in name order.

    Raises:
        UserError: a path is missing, not an artifact, or a folder holds none.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            folder = p / "export" if (p / "recipe.yaml").is_file() and (p / "export").is_dir() else p
            inside = sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file()
                            and f.with_name(f.name + ".json").is_file())
            if not inside:
                raise UserError(f"{p}: no exported artifacts in it ({', '.join(SUFFIXES)} with a sidecar); "
                                "write some with edgecnn export RUN --target ...")
            found += inside
        elif p.is_file():
            if p.suffix.lower() not in SUFFIXES:
                raise UserError(f"{p}: not an exported model (expected {', '.join(SUFFIXES)}); "
                                "pass a file written by edgecnn export, or a folder of them")
            found.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    unique: list[Path] = []
    for p in found:
        if p.resolve() not in [u.resolve() for u in unique]:
            unique.append(p)
    return unique


def _blank_row(**values) -> dict:
    return blank_bench_row(**values)


def artifact_row(path: Path, sidecar: dict, device: str, settings: dict) -> dict:
    """The row of an artifact before it runs: everything its sidecar and the files say."""
    path = path.resolve()
    runtime = sidecar.get("runtime") or {}
    return _blank_row(
        name=path.stem, kind="artifact", artifact=str(path), sidecar=str(sidecar_path(path)),
        run=(sidecar.get("source") or {}).get("run"), model=sidecar.get("model"), target=sidecar.get("target"),
        precision=sidecar.get("precision"), runtime=runtime.get("name"),
        device=device, input_shape=_batched(sidecar["inputs"][0]["shape"], settings["batch"]),
        size_mb=sum((path.parent / name).stat().st_size for name in sidecar["files"]) / 1e6,
        macs=sidecar.get("macs"),
        **settings,
    )


def _batched(shape: list[int], batch: int) -> list[int]:
    return [batch, *shape[1:]] if len(shape) >= 2 else list(shape)


# -- talking to a runner ---------------------------------------------------------------------------

class Worker:
    """One runner process and the JSON lines it prints, each read with a time limit (a worker of ``worker.py``).

    Two threads drain its stdout (into a queue) and stderr (last lines kept for
    error messages), so neither pipe can fill up and stall the runner.

    Args:
        proc: the started process (text pipes).
        explain: ``explain(returncode, stderr) -> line or None`` of the transport
            (SSH: why the connection failed), used when the process dies.
    """

    def __init__(self, proc: subprocess.Popen, explain=None):
        self.proc = proc
        self.explain = explain
        self.lines: queue.Queue = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=30)
        threading.Thread(target=self._pump, args=(proc.stdout, self.lines.put, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(proc.stderr, self.stderr.append, False), daemon=True).start()

    @staticmethod
    def _pump(stream, put, mark_end: bool) -> None:
        try:
            for line in stream:
                put(line)
        except (OSError, ValueError):  # the pipe closed under us: the process is gone
            pass
        if mark_end:
            put(None)

    def receive(self, timeout: float, doing: str) -> dict:
        """The next JSON answer (lines that are not JSON objects are skipped).

        Raises:
            RunnerFailed: the runner answered ``ok: false``, exited, or said nothing for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RunnerFailed(f"no answer within {timeout:.0f} s while {doing}; the runner was stopped") from None
            if line is None:
                raise RunnerFailed(self._death(doing))
            if not line.lstrip().startswith("{"):
                continue
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not answer.get("ok"):
                raise RunnerFailed(str(answer.get("error") or f"the runner failed while {doing}"))
            return answer

    def ask(self, message: dict, timeout: float, doing: str) -> dict:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died: receive() reads the end of its output and says why
        return self.receive(timeout, doing)

    def _death(self, doing: str) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        # The stderr thread may still be reading the last lines.
        err = "".join(self.stderr)
        if self.explain is not None:
            line = self.explain(code, err)
            if line:
                return line
        last = [ln.strip() for ln in err.splitlines() if ln.strip()]
        said = f": {last[-1][:300]}" if last else ""
        return f"the runner exited (status {code}) while {doing}{said}"

    def stop(self) -> None:
        """End the process: close its stdin (it exits at end of input), then kill it if it lingers."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@dataclass
class Job:
    """One row being measured: its worker (runner process, or adb.ExecutorRunner) and what it has measured."""

    row: dict
    start: object  # () -> (worker, transport or None); may raise UserError or RunnerFailed
    worker: Worker | None = None
    transport: object = None
    rounds: list[list[float]] = field(default_factory=list)
    heat: list[dict] = field(default_factory=list)  # the CPU's temperature/clock/throttling after each round
    call_s: float | None = None  # a rough per-call time, for the time limits
    per: int = 1  # calls per timed sample (batched timing of short calls)
    batches: bool = True  # False: the worker times every call alone (executor_runner), so per stays 1
    means_only: bool = False  # samples are whole runs' means (executor_runner older than ExecuTorch 1.3)
    look: int | None = None  # adaptive rounds: the look of its interval (core/stats.sequential_ci)
    ci: tuple[float, float, float] | None = None  # adaptive rounds: (median, low, high) at that look
    ci_rounds: int | None = None  # the rounds that interval is over (the progress line says so)
    timed_s: float = 0.0  # wall seconds of its timed rounds (the overhead check's time budget)
    stopped_by: str | None = None  # adaptive rounds: precision, above/within budget, max time, max rounds

    def fail(self, message: str) -> None:
        if self.row["error"] is None:
            self.row["error"] = message
        if self.worker is not None:
            self.worker.stop()
        self.worker = None

    def limit(self, calls: int, base: float) -> float:
        """Seconds allowed for ``calls`` calls: the base, plus a generous bound per call."""
        per_call = 30.0 if self.call_s is None else max(1.0, 20 * self.call_s)
        return base + calls * per_call


# -- the benchmark ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchRequest:
    """What ``bench`` times and how (one verb, one config object; the CLI, ``run`` and ``sweep`` fill it).

    Args:
        artifacts: ``.pte``/``.xml``/``.onnx`` files or folders of them (see ``find_artifacts``).
        eager: a run folder: its fp32 PyTorch model becomes the reference row (on this machine).
        device: ``local``, ``ssh://user@host[:port]``, ``adb://SERIAL``, or ``cuda``
            (artifacts here, the eager reference on the GPU).
        threads: threads of every runtime (XNNPACK pool, OpenVINO, onnxruntime intra-op, torch).
        warmup: untimed calls per runner before the first round; None: until the latency settles
            (two consecutive 0.2 s windows within 3%, at most ``WARMUP_MAX_S``).
        iters: timed calls per runner, split into ``rounds`` (default ``ROUNDS``) interleaved rounds.
        batch: batch size; an artifact exported for batch 1 gives an error row for more.
        rounds: exactly this many interleaved rounds; None (with no ``iters``): adaptive rounds, added until
            every row's median interval is within ``precision`` percent (``core/stats.sequential_ci``).
        precision: adaptive rounds: the half-width, in percent of the median, each row is timed to.
        max_time: adaptive rounds: seconds of rounds after which every row still going stops (and says so).
        max_rounds: adaptive rounds: rounds after which a row still going stops (and says so).
        budget_ms: adaptive rounds (``edgecnn sweep``): a row also stops once its interval lies entirely above
            this budget, or entirely below it and within ``precision``.
        min_time: seconds each round measures at least (without ``iters``).
        cooldown: seconds of pause before each round (like LiteRT's run delay), to let a board cool.
        profile: per-operator profile of each runner after timing; ``profile_iters`` calls each.
        wait_cool: each runner waits until the CPU is below this many degrees C before its first line.
        runner: ``executor_runner`` for ``adb://`` devices (and ssh boards without Python runtimes).
        timeout: seconds to connect to a device and for each short command there.
        step_timeout: seconds a runner may take to load, plus the base of each round's limit.
        check: also send this many validation images through each artifact on the device (bench/check.py).
        time_budget: adaptive rounds: seconds for the whole bench, loading to finish; the rounds get what loading
            and warm-up leave, less ``FINISH_RESERVE_S`` per row (rows that stop early leave theirs to the rest).
    """

    artifacts: tuple[Path, ...] = ()
    eager: Path | None = None
    device: str = "local"
    threads: int = 2
    warmup: int | None = None
    iters: int | None = None
    batch: int = 1
    rounds: int | None = None
    precision: float = PRECISION_PCT
    max_time: float = MAX_TIME_S
    max_rounds: int = MAX_ROUNDS
    budget_ms: float | None = None
    min_time: float = MIN_TIME_S
    cooldown: float = 0.0
    profile: bool = False
    profile_iters: int = 10
    wait_cool: float | None = None
    runner: Path | None = None
    timeout: float = 30
    step_timeout: float = 300
    check: int | None = None
    time_budget: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.rounds is None and self.iters is None


def bench(req: BenchRequest) -> list[dict]:
    """Time every artifact with its own runtime (and the run's PyTorch model with ``eager``); one row each.

    Returns:
        Rows with the fields of ``ROW_FIELDS`` (and ``EXTRA_FIELDS``, ``STAT_FIELDS``), the reference first.

    Raises:
        UserError: bad settings, a missing or damaged artifact or sidecar, a bad ``--device``,
            an unreachable device, ``eager`` not a run folder or asked for on a remote device.
    """
    _check_request(req)
    t0 = time.monotonic()
    paths, sidecars = _read_artifacts(list(req.artifacts), req.eager)
    common = _common_fields(req)
    if req.device.startswith("adb://") or req.runner is not None:  # executor_runner: no Python on the device
        jobs = _native_jobs(paths, sidecars, req, common)
    else:
        jobs = _jobs(paths, sidecars, req, common)
    try:
        with Progress("bench") as progress:
            _measure(jobs, Plan.of(req), req, progress, t0)
    finally:  # no runner process or device folder outlives the bench, whatever happened
        _release(jobs)
    for job in jobs:
        _fill_latencies(job, req)
        job.row["bench_seconds"] = round(time.monotonic() - t0, 1)
    return finish_rows([j.row for j in jobs])


def _read_artifacts(artifacts: list[Path], eager: Path | None) -> tuple[list[Path], list[dict]]:
    """The artifact files and their checked sidecars, before any device is touched.

    Raises:
        UserError: nothing to bench, or a missing or damaged artifact or sidecar.
    """
    paths = find_artifacts(list(artifacts))
    if not paths and eager is None:
        raise UserError("nothing to bench: give artifact files or folders, and/or --eager RUN")
    sidecars = []
    for p in paths:
        side = read_sidecar(p)
        check_sidecar(p, side)
        sidecars.append(side)
    return paths, sidecars


def _common_fields(req: BenchRequest) -> dict:
    """The settings every row of this invocation carries (and each runner starts with)."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return dict(threads=req.threads, batch=req.batch, warmup=req.warmup, iters=req.iters, timestamp=created,
                edgecnn_version=__version__, min_time_s=None if req.iters is not None else req.min_time,
                cooldown_s=req.cooldown, precision_target_pct=req.precision if req.adaptive else None,
                budget_ms=req.budget_ms if req.adaptive else None, time_budget_s=req.time_budget)


def _jobs(paths: list[Path], sidecars: list[dict], req: BenchRequest, common: dict) -> list[Job]:
    """One job per row: the eager reference first (when asked for), then each artifact; names made unique."""
    jobs: list[Job] = []
    if req.eager is not None:
        jobs.append(_eager_job(Path(req.eager), "cuda" if req.device == "cuda" else "cpu", req.profile, common))
    artifact_device = "local" if req.device == "cuda" else req.device  # cuda: only the eager reference on the GPU
    for path, side in zip(paths, sidecars):
        checks = _check_sets(path, side, req.check, req.timeout + req.step_timeout)
        jobs.append(_artifact_job(path, side, artifact_device, req, common, checks))
    _unique_names([j.row for j in jobs])
    return jobs


def _release(jobs: list[Job]) -> None:
    """Stop every runner still running and close every transport (removing its working folder)."""
    for job in jobs:
        if job.worker is not None:
            job.worker.stop()
        if job.transport is not None:
            job.transport.close()


def _check_request(req: BenchRequest) -> None:
    """Refuse bad settings before anything starts.

    Raises:
        UserError: a count below its minimum, ``--eager`` on a remote device or not a run folder,
            ``--runner`` on a device that does not take one, ``--check`` below 1.
    """
    minimum = {"threads": 1, "iters": 1, "warmup": 0, "batch": 1, "rounds": 1, "profile_iters": 1,
               "min_time": 0.001, "cooldown": 0, "precision": 0.01, "max_time": 0, "max_rounds": MIN_ROUNDS,
               "budget_ms": 1e-9, "time_budget": 1}
    for key, least in minimum.items():
        value = getattr(req, key)
        if value is not None and value < least:
            raise UserError(f"--{key.replace('_', '-')} {value}: must be at least {least}")
    if req.threads is None:  # every runtime is given a thread count: None would reach the row as "None threads"
        raise UserError("--threads: give the number of threads every runtime uses (1 or more; edgecnn bench "
                        "uses 2 by default)")
    eager, device, runner, check = req.eager, req.device, req.runner, req.check
    if eager is not None and device.startswith(("ssh://", "adb://")):
        raise UserError(f"--eager runs the PyTorch model on this machine, not on {device}: leave it out "
                        "(the first artifact is then the reference)")
    if eager is not None and not (Path(eager) / "recipe.yaml").is_file():
        raise UserError(f"--eager {eager}: not a run folder (no recipe.yaml); pass a folder written by edgecnn train")
    if runner is not None and not device.startswith(("adb://", "ssh://")):
        raise UserError(f"--runner is an executor_runner for adb:// and ssh:// devices; --device {device} uses the "
                        "built-in runner: leave --runner out")
    if req.time_budget is not None and not req.adaptive:
        raise UserError(f"--time-budget {req.time_budget:g}: a budget for adaptive rounds; with --rounds or --iters "
                        "the count is fixed: drop one or the other")
    if check is not None and check < 1:
        raise UserError(f"--check {check}: must be at least 1 (images sent through each artifact on the device)")


def _native_jobs(paths: list[Path], sidecars: list[dict], req: BenchRequest, common: dict) -> list[Job]:
    """Jobs of ExecuTorch's ``executor_runner`` (an Android phone, or ``--runner`` on an ssh board): one per artifact.

    Raises:
        UserError: no ``--runner``, or no such file (before the device is touched).
    """
    runner = checked_runner(req.runner, req.device)
    jobs = [_native_job(p, side, req, runner, common) for p, side in zip(paths, sidecars)]
    _unique_names([j.row for j in jobs])
    return jobs


def _native_job(path: Path, sidecar: dict, req: BenchRequest, runner: Path, common: dict) -> Job:
    """A job whose start opens its own transport and pushes the runner and the ``.pte`` (adb.start_runner)."""
    device = req.device
    row = artifact_row(path, sidecar, device, common)
    if req.check:
        no_check_rows([row], req.check)
    refused = refusal(path, sidecar, common["batch"], device)

    def start():
        if refused:
            raise RunnerFailed(refused)
        transport = native.native_transport(device, req.timeout)
        row["device"] = transport.device
        try:
            return start_runner(transport, runner, path, common["threads"], common["warmup"], req.wait_cool,
                                req.profile), transport
        except BaseException:
            transport.close()
            raise

    return Job(row, start, batches=False)


def _eager_job(run: Path, where: str, profile: bool, common: dict) -> Job:
    model = run_model_name(run)
    row = _blank_row(name=f"{model or run.name}-eager-fp32" + ("-cuda" if where == "cuda" else ""), kind="eager",
                     run=str(run.resolve()), model=model, target="eager", precision="fp32", runtime="torch",
                     device="cuda" if where == "cuda" else "local", **common)
    argv = [sys.executable, "-m", "edgecnn.bench.eager", "--run", str(run), "--threads", str(common["threads"]),
            "--batch", str(common["batch"]), "--device", where, *(["--profile"] if profile else [])]

    def start():
        return Worker(Local().popen(argv)), None

    return Job(row, start)


def _check_sets(path: Path, sidecar: dict, n: int | None, base_timeout: float):
    """``--check N``: the images and expected logits for ``path`` (bench/check.py), or None without it."""
    if not n:
        return None
    return check.prepare(path, sidecar, n), base_timeout


def _artifact_job(path: Path, sidecar: dict, device: str, req: BenchRequest, common: dict, checks=None) -> Job:
    """A job whose start opens its own transport (its own working folder: two runs' artifacts may share names)."""
    row = artifact_row(path, sidecar, device, common)
    files = [RUNNER, *(path.parent / name for name in sidecar["files"]), sidecar_path(path)]

    def start():
        transport = open_transport(device, timeout=req.timeout)
        row["device"] = transport.device
        try:
            folder = transport.put(files)
            argv = [*transport.python, posixpath.join(folder, RUNNER.name),
                    "--artifact", posixpath.join(folder, path.name),
                    "--threads", str(common["threads"]), "--batch", str(common["batch"])]
            if req.profile:
                argv.append("--profile")
            if req.wait_cool is not None:
                argv += ["--wait-cool", str(req.wait_cool)]
            worker = Worker(transport.popen(argv), getattr(transport, "explain", None))
            if checks is not None:
                attach(worker, row, *checks)
            return worker, transport
        except BaseException:
            transport.close()
            raise

    return Job(row, start)


def _pip_hint(transport, error: str) -> str:
    """The runner's "pip install X && pip install Y" for a missing runtime, as the exact command for the device
    where it knows it (SSH: ``ssh -p 2222 pi@board 'python3 -m pip install X && python3 -m pip install Y'``)."""
    match = re.search(r"(pip install .+)$", error)
    if match and hasattr(transport, "pip_command"):
        steps = [s.strip().removeprefix("pip install ") for s in match.group(1).split("&&")]
        return error[: match.start()] + transport.pip_command(steps)
    return error


def _unique_names(rows: list[dict]) -> None:
    """Tell rows of the same name apart by the run they came from (a QAT run exports the same names)."""
    names = [r["name"] for r in rows]
    for row in rows:
        if names.count(row["name"]) > 1 and row["run"]:
            row["name"] = f"{row['name']}@{Path(row['run']).name}"
    seen: dict[str, int] = {}
    for row in rows:
        n = seen[row["name"]] = seen.get(row["name"], 0) + 1
        if n > 1:
            row["name"] = f"{row['name']}#{n}"


@dataclass(frozen=True)
class Plan:
    """How each runner is timed: the warm-up, then the interleaved rounds (fixed, or adaptive with looks)."""

    warmup: int | None  # calls; None: until the latency settles
    iters: int | None  # calls over all rounds; None: rounds by duration
    rounds: int  # fixed: exactly this many; adaptive: at most this many (--max-rounds)
    min_time: float
    cooldown: float
    adaptive: bool = False
    precision: float = PRECISION_PCT
    max_time: float = MAX_TIME_S
    budget_ms: float | None = None
    time_left: float | None = None  # a time budget: seconds the rounds may take (set once warm-up is over)

    @classmethod
    def of(cls, req: BenchRequest) -> "Plan":
        rounds = req.max_rounds if req.adaptive else req.rounds or ROUNDS
        rounds = min(rounds, req.iters) if req.iters is not None else rounds
        return cls(req.warmup, req.iters, rounds, req.min_time, req.cooldown, req.adaptive, req.precision,
                   req.max_time, req.budget_ms)

    def round_message(self, r: int, per: int) -> dict:
        if self.iters is None:
            return {"cmd": "round", "min_s": self.min_time, "min_calls": MIN_CALLS, "per": per,
                    "max_s": max(60.0, 10 * self.min_time)}
        n = self.iters // self.rounds + (1 if r < self.iters % self.rounds else 0)
        return {"cmd": "round", "iters": max(n, per), "per": per}

    def round_calls(self, r: int, job: "Job") -> int:
        """Calls a round makes, roughly, for its time limit."""
        if self.iters is not None:
            return self.iters // self.rounds + 1
        return max(MIN_CALLS, int(self.min_time / (job.call_s or self.min_time)) + 1)


def _measure(jobs: list[Job], plan: Plan, req: BenchRequest, progress: Progress, t0: float) -> None:
    """Start, warm up, interleave the rounds, finish; failures land in each job's row.

    The one driver of every device: a job's worker is a runner process (local, ssh://) or
    ``adb.ExecutorRunner`` (adb://, ``--runner``); both answer the same messages (``worker.py``).
    ``t0``: when the bench began (a time budget counts from there).
    """
    load_limit = req.step_timeout + (COOL_WAIT_MAX_S if req.wait_cool is not None else 0)
    # On this machine every row's process starts at once: their loads (imports, reading the artifact) overlap
    # on the cores, and five rows took 20 s one after another out of the demo's 35 s budget. On a device
    # (ssh://, adb://) one at a time: a small board's memory and a link's sessions are not ours to crowd.
    together = req.device == "local"
    started = [_start(job) for job in jobs] if together else []
    for i, job in enumerate(jobs):
        progress.update(f"loading {i + 1}/{len(jobs)}: {job.row['name']}")
        if not (started[i] if together else _start(job)):  # its start failed, and its row says so
            continue
        try:
            ready = job.worker.receive(load_limit, "loading")
        except RunnerFailed as e:
            job.fail(_pip_hint(job.transport, str(e)))
            continue
        _take_ready(job.row, ready, req.wait_cool)
    alive = _alive(jobs)
    for i, job in enumerate(alive):
        progress.update(f"warming up {i + 1}/{len(alive)}: {job.row['name']}")
        _warm_up(job, plan, req.step_timeout)
    deadline = None
    if req.time_budget is not None:
        deadline = t0 + req.time_budget
        plan = replace(plan, time_left=deadline - time.monotonic() - FINISH_RESERVE_S * len(_alive(jobs)))
    _rounds(jobs, plan, req.step_timeout, progress)
    alive = _alive(jobs)  # finishing a job stops its worker: count them once
    for i, job in enumerate(alive):
        # The rows' last state stays on the line: a plain log, one line every 5 s, may not have shown it yet.
        progress.update("\n".join([f"finishing {i + 1}/{len(alive)}: {job.row['name']} (memory, harness overhead)",
                                   *_row_lines(jobs, plan)]))
        _finish(job, req, deadline, later=len(alive) - i - 1)


def _start(job: Job) -> bool:
    """Start ``job``'s worker; False (the row says why) where it failed to start."""
    try:
        job.worker, job.transport = job.start()
        return True
    except RunnerFailed as e:
        job.fail(_pip_hint(job.transport, str(e)))
        return False


def _alive(jobs: list[Job]) -> list[Job]:
    return [j for j in jobs if j.worker is not None]


def _rounds(jobs: list[Job], plan: Plan, step_timeout: float, progress: Progress | None = None) -> None:
    """The interleaved rounds, who goes first rotating; adaptive: each row stops once its look decides it.

    A row a limit stops says which: ``max rounds``, ``max time``, or ``time budget`` (the smaller of
    ``max_time`` and the budget's ``time_left`` is the one that applies).

    Without a budget (no time budget, no latency budget), a row its look stopped stays in the rounds until
    the last row stops: every row's figures then come from the same stretch of the host's time. Why: a
    shared host has slow spells of tens of seconds (measured: OpenVINO INT8 rounds at 0.87 ms and at 1.03
    ms, in runs of 5 to 20 rounds); a row that stopped within one spell after 17 rounds had a floor 14%
    above the same row's in the bench before it, while the eager row beside it went on to 38 rounds and
    met the fast spell. It costs the rows' own rounds (each a fraction of a second), not a longer bench.
    With a budget, a stopped row leaves the rounds at once: the budget is for the rows still going."""
    schedule = looks(plan.rounds) if plan.adaptive else []
    t0 = time.monotonic()
    by_budget = plan.time_left is not None and plan.time_left < plan.max_time
    max_time = min(plan.max_time, plan.time_left) if plan.time_left is not None else plan.max_time
    together = _together(plan)
    for r in range(plan.rounds):
        order = [j for j in _alive(jobs) if j.stopped_by is None]
        if not order:
            return
        if together:  # a row stopped on its precision is timed on; one that gives a single mean is not
            order = [j for j in _alive(jobs) if j.stopped_by in (None, "precision")]
        order = order[r % len(order):] + order[: r % len(order)]
        for job in order:
            if progress is not None:
                progress.update(_round_progress(jobs, plan, r, time.monotonic() - t0, max_time))
            time.sleep(max(SETTLE_S, plan.cooldown))
            _round(job, plan, r, step_timeout)
        if not plan.adaptive:
            continue
        # A row timed on after its stop keeps the look and the stop it had.
        going = [j for j in order if j.worker is not None and j.stopped_by is None]
        if r + 1 in schedule:
            for job in going:
                _look(job, schedule.index(r + 1) + 1, len(schedule))
            for job in going:
                _judge(job, plan, jobs)
        limit = "max rounds" if r + 1 >= plan.rounds else None
        if limit is None and time.monotonic() - t0 >= max_time:
            limit = "time budget" if by_budget else "max time"
        if limit:
            for job in going:
                # The last interval is one more look unless this round was one: it spends the share of the
                # next planned look, which never comes (the last look is at max rounds, so one is left).
                job.look = job.look if r + 1 in schedule else (job.look or 0) + 1
                job.stopped_by = limit
        if progress is not None and (r + 1 in schedule or limit):
            # The look's intervals and stops now: drawn only before the next round, a look's ± came a round
            # late, and the look (or limit) that ended the rounds was never shown.
            progress.update(_round_progress(jobs, plan, r + 1, time.monotonic() - t0, max_time))
        if limit:
            return


def _together(plan: Plan) -> bool:
    """Without a budget, rows stopped on their precision are timed on until the last row stops (``_rounds``)."""
    return plan.time_left is None and plan.budget_ms is None


def _round_progress(jobs: list[Job], plan: Plan, r: int, spent: float, max_time: float) -> str:
    """The bench's progress at round ``r`` (0-based; ``r`` rounds done): the round, the time left, and per row its
    rounds, its current ± and whether it is still going."""
    per_round = spent / max(1, r) if r else None  # seconds a round of every row still going took so far
    if plan.adaptive:
        left = max_time - spent
        if per_round is not None:
            left = min(left, per_round * (plan.rounds - r))
        head = f"round {min(r + 1, plan.rounds)} (at most {plan.rounds}), at most {eta(left)} left"
    else:
        head = f"round {r + 1}/{plan.rounds}, about {eta(per_round * (plan.rounds - r)) if per_round else '?'} left"
    return "\n".join([head, *_row_lines(jobs, plan)])


def _row_lines(jobs: list[Job], plan: Plan) -> list[str]:
    """One line a row: its rounds, its ± at its latest look (with the rounds that interval is over), why it
    stopped."""
    lines = []
    width = max(len(j.row["name"]) for j in jobs)
    for j in jobs:
        if j.row["error"] is not None:
            state = "error"
        else:
            pm = ""
            if plan.adaptive:
                pm = f"±{(j.ci[2] - j.ci[1]) / 2 / j.ci[0] * 100:.1f}% at round {j.ci_rounds}" if j.ci else \
                    "no ±" if j.stopped_by else "± at the first look"
            state = f"{len(j.rounds)} rounds, {pm}".rstrip(", ")
            if j.stopped_by == "precision" and _together(plan) and any(k.stopped_by is None for k in _alive(jobs)):
                state += ", precise: timed on for the floor"  # it stopped, yet its rounds still grow
            elif j.stopped_by:
                state += f", stopped: {j.stopped_by}"
        lines.append(f"  {j.row['name']:<{width}}  {state}")
    return lines


def _look(job: Job, look: int, n_looks: int) -> None:
    """The row's interval at the ``look``-th of ``n_looks`` planned looks (``core/stats.sequential_ci``), kept for
    the decision of every row."""
    job.look = look
    if not job.means_only and len(job.rounds) >= MIN_ROUNDS:
        job.ci = sequential_ci(job.rounds, n_looks)
        job.ci_rounds = len(job.rounds)


def _judge(job: Job, plan: Plan, jobs: list[Job]) -> None:
    """At a look: stop the row when its interval meets the precision, or, with a budget, decides it: entirely
    above (out), or entirely below and either within the precision or apart from every other in-budget row's
    interval (so it ranks against them)."""
    if job.means_only:  # one mean per run: no interval to wait for
        job.stopped_by = "means only"
        return
    if job.ci is None:
        return
    p50, low, high = job.ci
    precise = (high - low) / 2 / p50 * 100 <= plan.precision
    if plan.budget_ms is None:
        job.stopped_by = "precision" if precise else None
    elif low > plan.budget_ms:
        job.stopped_by = "above budget"
    elif high < plan.budget_ms and (precise or _apart(job, jobs, plan.budget_ms)):
        job.stopped_by = "within budget"


def _apart(job: Job, jobs: list[Job], budget_ms: float) -> bool:
    """Whether ``job``'s interval overlaps no other row's that may be within the budget."""
    _, low, high = job.ci
    others = [o.ci for o in jobs if o is not job and o.ci is not None and o.ci[1] <= budget_ms]
    return all(high < o_low or o_high < low for _, o_low, o_high in others)


def _round(job: Job, plan: Plan, r: int, step_timeout: float) -> None:
    """One timed round of one job: its samples and the CPU's heat after it, or the job's error."""
    of = f" of {plan.rounds}" if not plan.adaptive else ""
    t0 = time.monotonic()
    try:
        answer = job.worker.ask(plan.round_message(r, job.per), job.limit(plan.round_calls(r, job),
                                step_timeout + plan.min_time), f"round {r + 1}{of}")
    except RunnerFailed as e:
        job.fail(str(e))
        return
    job.timed_s += time.monotonic() - t0
    job.rounds.append([float(x) for x in answer["latencies_ms"]])
    job.heat.append({k: answer.get(k) for k in ("temp_c", "freq_mhz", "throttled")})
    job.call_s = job.call_s or sum(job.rounds[-1]) / len(job.rounds[-1]) / 1000
    job.means_only = job.means_only or bool(answer.get("mean_only"))


def _finish(job: Job, req: BenchRequest, deadline: float | None = None, later: int = 0) -> None:
    """Ask a job's worker for what it knows at the end (overhead, memory, device state, profile); stop it.

    ``deadline``: the time budget's end; the overhead check leaves ``FINISH_RESERVE_S`` of it to each of the
    ``later`` rows still to finish after this one.

    The overhead check runs in a runner process (executor_runner has no plain loop to compare with), and not
    with a latency budget (``budget_ms``): a sweep asks only whether a row fits, and the check would cost seconds
    per candidate.
    """
    profile, profile_iters, step_timeout = req.profile, req.profile_iters, req.step_timeout
    if job.batches and req.budget_ms is None:
        _overhead(job, step_timeout, deadline if deadline is None else deadline - FINISH_RESERVE_S * later)
    calls = profile_iters + 2 if profile else 0
    try:
        done = job.worker.ask({"cmd": "finish", "overhead_iters": 0, "per": job.per,
                               "profile_iters": profile_iters},
                              job.limit(calls, step_timeout * (2 if profile else 1)), "finishing")
    except RunnerFailed as e:
        job.fail(str(e))
        return
    _take_finish(job.row, done)
    job.worker.stop()
    job.worker = None


def _overhead(job: Job, step_timeout: float, deadline: float | None = None) -> None:
    """The harness-overhead check, adaptive: ABBA passes of eight short blocks until the mean's 95% interval
    is within ``OVERHEAD_HALF_PP`` (judged), or ``OVERHEAD_MAX_PASSES`` ran, or the passes took as long as the
    row's timed rounds (reported, not judged). With a time budget (``deadline``), a pass runs only where the time
    left holds it: the first is estimated from the row's call time (2n calls, about a second), later ones from
    the longest pass so far; none at all is ``not judged: no time left in the budget``.

    Why the passes stopped lands in ``harness_overhead_stopped_by``: ``judged``, ``max passes``, ``rounds' time``
    or ``time budget``."""
    n = 4 * max(8, int(OVERHEAD_BLOCK_S / (job.call_s or 1.0)))
    pass_s = 2 * n * (job.call_s or 1.0)  # eight blocks of n/4 calls (runner.harness_overhead_pct)
    figures: list[float] = []
    half = math.inf
    stopped_by = "max passes"
    t0 = time.monotonic()
    while len(figures) < OVERHEAD_MAX_PASSES:
        if len(figures) >= OVERHEAD_MIN_PASSES and half <= OVERHEAD_HALF_PP:
            stopped_by = "judged"
            break
        if figures and time.monotonic() - t0 >= job.timed_s:
            stopped_by = "rounds' time"
            break
        if deadline is not None and time.monotonic() + pass_s > deadline:
            stopped_by = "time budget"
            break
        start = time.monotonic()
        try:
            answer = job.worker.ask({"cmd": "overhead", "iters": n, "per": job.per}, job.limit(2 * n, step_timeout),
                                    "checking the harness overhead")
        except RunnerFailed:  # an older runner without the command: the row has no overhead figure
            return
        pass_s = max(pass_s if figures else 0.0, time.monotonic() - start)  # measured from the first pass on
        figures.append(float(answer["overhead_pct"]))
        if len(figures) >= 2:
            sd = float(np.std(figures, ddof=1))
            half = t_quantile(0.975, len(figures) - 1) * sd / math.sqrt(len(figures))
    else:
        if len(figures) >= OVERHEAD_MIN_PASSES and half <= OVERHEAD_HALF_PP:
            stopped_by = "judged"  # the last allowed pass closed it
    judged = stopped_by == "judged"
    job.row.update(harness_overhead_judged=judged, harness_overhead_stopped_by=stopped_by)
    if not figures:  # the budget could not hold a single pass: no figure
        return
    mean = sum(figures) / len(figures)
    low, high = (mean - half, mean + half) if len(figures) >= 2 else (None, None)  # one pass: no interval
    job.row.update(harness_overhead_pct=mean, harness_overhead_ci_low=low, harness_overhead_ci_high=high)


def _warm_up(job: Job, plan: Plan, step_timeout: float) -> None:
    """Warm a runner up, learn its call time, and choose how many calls each timed sample spans."""
    try:
        if plan.warmup is None:
            done = job.worker.ask({"cmd": "warmup", "max_s": WARMUP_MAX_S}, step_timeout + WARMUP_MAX_S * 3,
                                  "warming up")
            job.call_s = float(done["call_ms"]) / 1000
            job.row.update(warmup_calls=done.get("calls"), warmup_s=done.get("seconds"),
                           warmup_settled=done.get("settled"))
            if done.get("settled") is False:
                _warn(job.row, f"latency still moving after {WARMUP_MAX_S:g} s of warm-up")
        elif plan.warmup:
            lat = job.worker.ask({"cmd": "round", "iters": plan.warmup}, job.limit(plan.warmup, step_timeout),
                                 "warming up")
            job.call_s = sorted(lat["latencies_ms"])[len(lat["latencies_ms"]) // 2] / 1000
            job.row.update(warmup_calls=plan.warmup)
    except RunnerFailed as e:
        job.fail(str(e))
        return
    # With an explicit --iters every call is timed alone: the count the user asked for is the count timed.
    if plan.iters is None and job.batches and job.call_s and job.call_s * 1000 < BATCH_BELOW_MS:
        job.per = max(1, math.ceil(BATCH_BELOW_MS / (job.call_s * 1000)))
    job.row["calls_per_sample"] = job.per


def _take_ready(row: dict, ready: dict, wait_cool: float | None) -> None:
    row.update(runtime=ready.get("runtime") or row["runtime"], runtime_version=ready.get("runtime_version"),
               runtime_note=ready.get("runtime_note"), import_rss_mb=ready.get("import_rss_mb"),
               macs=row.get("macs") or ready.get("macs"))
    if ready.get("precision"):  # what the runtime computed in, where it differs (OpenVINO bf16)
        row["precision"] = ready["precision"]
    if ready.get("input_shapes"):
        row["input_shape"] = ready["input_shapes"][0]
    row.update({k: (ready.get("device") or {}).get(k) for k in DEVICE_FIELDS})
    for text in ready.get("warnings") or []:  # what the worker cannot do here (adb: no profile)
        _warn(row, text)
    if row.get("emulated"):
        _warn(row, EMULATED)
    cool = ready.get("cool")
    if wait_cool is not None and cool:
        if cool.get("cooled") is False:
            _warn(row, f"did not cool below {wait_cool:g} C within {COOL_WAIT_MAX_S} s (at {cool.get('temp_c')} C)")
        elif cool.get("cooled") is None:
            _warn(row, "--wait-cool: no temperature readable on this device; did not wait")


def _take_finish(row: dict, done: dict) -> None:
    # The device state at the end of the measurement (temperature, clock) replaces the one at load.
    device = done.get("device") or {}
    row.update({k: device.get(k) for k in DEVICE_FIELDS if device.get(k) is not None})
    row.update(peak_rss_mb=done.get("peak_rss_mb"), profile=done.get("profile"))
    if done.get("overhead_pct") is not None:  # a runner that ran the check at finish (not the host's passes)
        row["harness_overhead_pct"] = done["overhead_pct"]
    if done.get("threads") is not None:  # the threads the runtime reports it used (executor_runner's log)
        row["threads"] = done["threads"]
    for text in done.get("warnings") or []:
        _warn(row, text)


def _warn(row: dict, text: str) -> None:
    row["warning"] = f"{row['warning']}; {text}" if row["warning"] else text


def _fill_latencies(job: Job, req: BenchRequest) -> None:
    """Latency statistics of a job that completed every round (a failed job keeps nulls)."""
    row = job.row
    if row["error"] is not None or not job.rounds:
        return
    if job.means_only:  # one mean per run, warm-up included: no distribution to summarize, no percentiles
        values = [x for r in job.rounds for x in r]
        mean = sum(values) / len(values)
        row.update(latency_ms_mean=mean, throughput_ips=row["batch"] * 1000.0 / mean, rounds=len(job.rounds))
    else:
        row.update(summarize(job.rounds, calls_per_sample=job.per, batch=row["batch"],
                             n_looks=len(looks(req.max_rounds)) if req.adaptive else None))
    if req.adaptive:
        _adaptive_fields(job, req)
    if job.heat:
        row["round_temp_c"] = [h.get("temp_c") for h in job.heat]
        row["round_freq_mhz"] = [h.get("freq_mhz") for h in job.heat]
        row["rounds_throttled"] = _throttled_rounds(job.heat, row.get("max_freq_mhz"))


def _adaptive_fields(job: Job, req: BenchRequest) -> None:
    """What the adaptive rounds reached and why they stopped; a row a limit stopped says so."""
    row = job.row
    half = half_width_pct(row)
    row.update(precision_pct=half, look=job.look, stopped_by=job.stopped_by)
    if job.stopped_by in ("max time", "max rounds", "time budget") and half is not None:
        # Formatted only for a budget's stop: without a budget req.time_budget is None (no :g for None).
        flag = {"max time": "--max-time", "max rounds": "--max-rounds"}.get(job.stopped_by) or \
            f"the time budget ({req.time_budget:g} s for the bench)"
        _warn(row, f"stopped by {flag} after {len(job.rounds)} rounds at ±{half:.1f}% "
                   f"(target ±{req.precision:g}%)")


def _throttled_rounds(heat: list[dict], max_mhz: int | None) -> int | None:
    """Rounds taken while throttled: the Pi firmware says so now (bits 0-3 of get_throttled), or the clock
    was below ``THROTTLE_FREQ`` of the CPU's maximum. None where neither can be read (x86 VMs)."""
    known, count = False, 0
    for h in heat:
        hot = None
        if h.get("throttled") is not None:
            hot = int(h["throttled"], 16) & 0xF != 0
        if max_mhz and h.get("freq_mhz"):
            hot = bool(hot) or h["freq_mhz"] < THROTTLE_FREQ * max_mhz
        if hot is not None:
            known = True
            count += hot
    return count if known else None


def reference(rows: list[dict]) -> dict | None:
    """The row ratios are relative to: the eager row when one ran, else the first row that ran."""
    ran = [r for r in rows if r.get("latency_ms_p50")]
    return next((r for r in ran if r["kind"] == "eager"), ran[0] if ran else None)


def finish_rows(rows: list[dict]) -> list[dict]:
    """What needs every row: ratios against the reference with their intervals, which rows cannot be told
    apart, the share of the CPU's peak, and the warnings.

    The reference is the eager row when there is one that ran, else the first row that ran.
    """
    for row in rows:
        for key in (*ROW_FIELDS, *EXTRA_FIELDS, *STAT_FIELDS):
            row.setdefault(key, None)
        half = half_width_pct(row)
        target = row.get("precision_target_pct") or CI_WARN_PCT
        if half is not None and half > target and not row.get("stopped_by") \
                and "median uncertain" not in (row.get("warning") or ""):
            _warn(row, f"median uncertain (±{half:.1f}%): rerun on an idle machine or with more --rounds")
        if row.get("throttled") not in (None, "0x0"):
            _warn(row, f"the board reports throttling (vcgencmd get_throttled={row['throttled']})")
        if row.get("rounds_throttled"):
            _warn(row, f"{row['rounds_throttled']} of {row['rounds']} rounds ran throttled")
        if row.get("latency_ms_p50") is not None:
            row.update(utilisation(row, row.get("macs") if row.get("macs") else _run_macs(row.get("run"))))
    ref = reference(rows)
    for row in rows:
        ran = ref is not None and row.get("latency_ms_p50")
        row["ratio_vs_ref"] = row["latency_ms_p50"] / ref["latency_ms_p50"] if ran else None
        both = ratio_ci(row, ref) if ran else None
        row["ratio_ci_low"], row["ratio_ci_high"] = (both[1], both[2]) if both else (None, None)
        row["distinguishable_from_ref"] = (not overlap(row, ref)) if both and row is not ref else None
        row["indistinguishable_from"] = [o["name"] for o in rows if o is not row and overlap(row, o)] if ran else None
    return rows


def _run_macs(run: str | None) -> int | None:
    """MACs of one image through the run's model, from its ``eval.json`` (written by train, eval and QAT).

    A folded channel subset's first convolution is a little cheaper; the
    difference is a fraction of a percent of a ResNet-34's MACs.
    """
    if not run:
        return None
    try:
        macs = json.loads((Path(run) / "eval.json").read_text()).get("macs")
    except (OSError, ValueError, AttributeError):
        return None
    return int(macs) if isinstance(macs, (int, float)) and macs > 0 else None


def save(path: Path, rows: list[dict], command: list[str]) -> None:
    """Write ``{"edgecnn_bench": 1, "created", "command", "rows"}`` to ``path`` atomically.

    A reader sees the old file or the new one, never half of one.
    """
    doc = {"edgecnn_bench": 1,
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": list(command), "rows": rows}
    atomic_write_text(Path(path), json.dumps(doc, indent=2) + "\n")
