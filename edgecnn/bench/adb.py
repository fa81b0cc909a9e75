"""Run ExecuTorch ``.pte`` artifacts on an Android phone over adb.

``edgecnn bench ART.pte --device adb://SERIAL --runner PATH/executor_runner``
pushes each ``.pte`` with ExecuTorch's ``executor_runner`` (built for
Android, see below) into its own ``/data/local/tmp/edgecnn-<random>``, runs
the runner there with the thread count and the number of executions, and
reads the time it logs for each execution. Android has no Python, so
``runner.py`` cannot run there, and only ``.pte`` artifacts can run (others
give a row with an error).

This module is a transport (``ADB``) and a worker (``ExecutorRunner``) for
the one bench driver, ``api._measure``: the warm-up, the interleaved rounds
with their rotating order and pauses, the heat record of each round, the
statistics (``core/stats.py``) and the row's fields are the same code as for
``local`` and ``ssh://`` (and ``ssh://`` boards with ``--runner``,
``native.py``, use this worker too). What differs here, and why:

* **One fresh process per round.** The runner takes a count of executions
  and exits; it cannot be asked for rounds. Each run drops its first
  executions (a fresh process is cold: allocation, caches, XNNPACK weight
  packing): ``--warmup N`` of them, or, without ``--warmup``, as many as the
  latency took to settle in the warm-up run (``runner.settle_point``: the runner's
  rule, two 0.2 s windows within 3%, applied to the logged times).
* **Rounds by duration become counts**: enough executions for ``--min-time``
  at the call time of the previous run.
* **No batched samples** (``calls_per_sample`` stays 1): the runner times
  every execution alone, whatever its length.
* **No harness overhead, peak memory, profile or ``--check``**: the times
  are the runner's own log lines, and it prints no logits; rows say so.
* **The device's facts and temperature** come from ``getprop``, cpufreq and
  the thermal zones, read over adb (``device_info``), at ready, after each
  round and at the end; ``--wait-cool`` polls them the same way.

The phone path has NOT been exercised against a real phone: the tests run
it through a stand-in ``adb`` and a stand-in ``executor_runner``
(``tests/standins/``) on the host, which print what the real ones print.

How the runner is used (flags of ``examples/portable/executor_runner`` in
ExecuTorch 1.4; ``--model_path``, ``--num_executions`` and
``--cpu_threads`` exist since 0.6)::

    executor_runner --model_path=DIR/m.pte --num_executions=W+N --cpu_threads=T

It fills every input with ones, runs the method W+N times and logs, through
the ExecuTorch logger (stderr with the posix PAL)::

    I 00:00:00.000567 executorch:executor_runner.cpp:340] Resetting threadpool with num threads = 2
    I 00:00:01.234567 executorch:executor_runner.cpp:779] Iteration 1 of 30: 9.517000 ms
    I 00:00:01.345678 executorch:executor_runner.cpp:789] Model executed successfully 30 time(s) in 290.1 ms.

The first W executions are the run's warm-up and are dropped. Runners older
than ExecuTorch 1.3 log only the total: the row then has the mean alone (over
all W+N executions of each run) and says so in ``warning``.

Building ``executor_runner`` for Android (arm64 phones; from an ExecuTorch
checkout at the tag of the installed package, e.g. ``v1.4.1``, after its
``./install_requirements.sh``, with the Android NDK in ``$ANDROID_NDK``)::

    cmake -B cmake-out-android \\
        -DCMAKE_TOOLCHAIN_FILE=$ANDROID_NDK/build/cmake/android.toolchain.cmake \\
        -DANDROID_ABI=arm64-v8a -DANDROID_PLATFORM=android-28 \\
        -DCMAKE_BUILD_TYPE=Release \\
        -DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON \\
        -DEXECUTORCH_BUILD_XNNPACK=ON \\
        -DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON \\
        -DEXECUTORCH_BUILD_EXTENSION_DATA_LOADER=ON \\
        -DEXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR=ON \\
        -DEXECUTORCH_ENABLE_LOGGING=ON \\
        -DEXECUTORCH_PAL_DEFAULT=posix .
    cmake --build cmake-out-android -j8 --target executor_runner
    # -> cmake-out-android/executor_runner

``EXECUTORCH_ENABLE_LOGGING=ON`` matters: Release builds log nothing by
default, and the timings are log lines. ``EXECUTORCH_PAL_DEFAULT=posix``
sends them to stderr (the ``android`` PAL of the ``android-arm64-v8a``
preset sends them to logcat, where this module does not look).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

from edgecnn.bench.runner import settle_point
from edgecnn.bench.worker import RunnerFailed
from edgecnn.errors import UserError

DEVICE_TMP = "/data/local/tmp"  # the one place adb shell may write and execute on a stock phone

ITERATION = re.compile(r"Iteration (\d+) of (\d+): ([0-9.eE+-]+) ms")
TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.eE+-]+) ms")
THREADS = re.compile(r"Resetting threadpool with num threads = (-?\d+)")
# ExecuTorch log lines: level letter, time since start, file:line, message.
LOG_LINE = re.compile(r"^([DIEF]) \d\d:\d\d:\d\d\.\d+ executorch:[^\]]*\] (.*)$")

# Device facts in one round trip; a constant script (nothing from the user in it).
_INFO_SCRIPT = r"""
for p in ro.product.manufacturer ro.product.model ro.soc.manufacturer ro.soc.model ro.board.platform \
         ro.product.cpu.abi ro.build.version.release; do echo "prop $p=$(getprop $p)"; done
echo "cores $(ls -d /sys/devices/system/cpu/cpu[0-9]* | wc -l)"
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  echo "cpu $(cat $c/cpufreq/scaling_governor 2>/dev/null) $(cat $c/cpufreq/scaling_cur_freq 2>/dev/null)"
done
for z in /sys/class/thermal/thermal_zone*; do echo "thermal $(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)"; done
"""
# Thermal zones that measure the CPU/SoC (names differ per vendor); battery and skin sensors are left out.
_CPU_ZONE = re.compile(r"cpu|soc|tsens|cluster|big|little|mid|apc|tmu", re.I)


def parse_adb_url(url: str) -> str:
    """``adb://SERIAL`` -> SERIAL.

    Raises:
        UserError: not an adb:// address, or no serial.
    """
    if not url.startswith("adb://") or not url[len("adb://"):].strip("/"):
        raise UserError(f"--device {url}: write it as adb://SERIAL, with a serial that `adb devices` lists")
    serial = url[len("adb://"):].rstrip("/")
    if any(c.isspace() for c in serial):
        raise UserError(f"--device {url}: a serial has no spaces; copy it from `adb devices`")
    return serial


def find_adb() -> str:
    """The adb binary: ``$ADB`` or ``adb`` on PATH.

    Raises:
        UserError: neither exists.
    """
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb or not (shutil.which(adb) or Path(adb).is_file()):
        raise UserError("adb not found: install Android platform-tools (apt-get install adb, or the SDK's "
                        "platform-tools on PATH) or set ADB=/path/to/adb")
    return adb


class ADB:
    """An Android device reached with ``adb -s SERIAL`` (the Transport of ``transport.py``).

    There is no Python on a phone, so ``python`` is empty: only native
    programs (``executor_runner``) run there.

    Args:
        url: ``adb://SERIAL``.
        timeout: seconds for each short adb command.

    Raises:
        UserError: malformed URL, adb missing, no such device, unauthorized or offline device.
    """

    python: list[str] = []
    where = "Android"

    def __init__(self, url: str, timeout: float = 30):
        self.serial = parse_adb_url(url)
        self.device = f"adb://{self.serial}"
        self.timeout = float(timeout)
        self.adb = find_adb()
        self.folder: str | None = None
        self._check_state()

    def _adb(self, *args: str) -> list[str]:
        return [self.adb, "-s", self.serial, *args]

    def _call(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        timeout = self.timeout if timeout is None else timeout
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            shown = shlex.join(args[3:]).splitlines()[0][:60]
            raise UserError(f"{self.device}: `adb {shown}` did not finish within {timeout:.0f} s; "
                            "is the phone connected and awake? (`adb devices`)") from None
        except OSError as e:
            raise UserError(f"{self.adb}: cannot run adb ({e.strerror}); set ADB to a working adb binary") from None

    def _check_state(self) -> None:
        proc = self._call(self._adb("get-state"))
        state = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode == 0 and state == "device":
            return
        err = (proc.stderr + proc.stdout).lower()
        if "unauthorized" in err:
            raise UserError(f"{self.device}: the phone has not authorized this computer: unlock it and accept "
                            "the 'Allow USB debugging?' prompt, then try again")
        if "offline" in err or state == "offline":
            raise UserError(f"{self.device}: the device is offline: reconnect the cable, or `adb reconnect`")
        if "not found" in err or "no devices" in err:
            listed = self._listed()
            have = f"adb devices lists: {', '.join(listed)}" if listed else "adb devices lists none"
            raise UserError(f"{self.device}: no device with serial {self.serial!r} ({have}); "
                            "connect the phone with USB debugging on, or fix the serial")
        last = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[-1]
        raise UserError(f"{self.device}: the device is not ready ({last}); check `adb devices`")

    def _listed(self) -> list[str]:
        try:
            proc = subprocess.run([self.adb, "devices"], capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return []
        rows = [ln.split() for ln in proc.stdout.splitlines()[1:] if ln.strip() and not ln.startswith("*")]
        return [f"{r[0]} ({r[1]})" if len(r) > 1 and r[1] != "device" else r[0] for r in rows]

    # -- Transport --------------------------------------------------------------------------

    def popen(self, argv: list[str]) -> subprocess.Popen:
        """Start ``argv`` on the phone (``adb shell``), text-mode pipes."""
        return subprocess.Popen(self._adb("shell", shlex.join(argv)), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` on the phone and capture its output; a non-zero exit is returned, not raised.

        Raises:
            UserError: adb cannot run, or the command outlived ``timeout``.
        """
        return self._call(self._adb("shell", shlex.join(argv)), timeout)

    def put(self, files: list[Path]) -> str:
        """Push ``files`` into ``/data/local/tmp/edgecnn-<random>`` (made on the first call); returns it.

        Raises:
            UserError: a local file is missing, two share a name, or the push fails.
        """
        files = [Path(f) for f in files]
        for f in files:
            if not f.is_file():
                raise UserError(f"{f}: no such file to push to {self.device}")
        if len({f.name for f in files}) != len(files):
            raise UserError("two files to push share a name; the phone's working folder keeps base names only")
        if self.folder is None:
            folder = f"{DEVICE_TMP}/edgecnn-{secrets.token_hex(4)}"
            proc = self.run(["mkdir", folder])
            if proc.returncode != 0:
                raise UserError(f"{self.device}: cannot make {folder}: {(proc.stderr or proc.stdout).strip()[:120]}")
            self.folder = folder
        if files:
            size_mb = sum(f.stat().st_size for f in files) / 1e6
            proc = self._call(self._adb("push", *map(str, files), f"{self.folder}/"), self.timeout + size_mb)
            if proc.returncode != 0:
                last = (proc.stderr.strip() or proc.stdout.strip() or "no message").splitlines()[-1]
                raise UserError(f"{self.device}: adb push to {self.folder} failed: {last}")
        return self.folder

    def close(self) -> None:
        """Remove the working folder on the phone; never raises."""
        folder, self.folder = self.folder, None
        if folder and folder.startswith(f"{DEVICE_TMP}/edgecnn-"):
            try:
                self.run(["rm", "-rf", "--", folder])
            except UserError:
                pass

    def __enter__(self) -> "ADB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- device facts -------------------------------------------------------------------------

    def device_info(self) -> dict:
        """Model, SoC, cores, governor, clock and CPU temperature, as far as the phone shows them."""
        proc = self.run(["sh", "-c", _INFO_SCRIPT])
        return parse_device_info(proc.stdout)


def parse_device_info(text: str) -> dict:
    """The row's device fields from the output of ``_INFO_SCRIPT``."""
    props, governors, freqs, temps = {}, [], [], []
    cores = None
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "prop":
            key, _, value = rest.partition("=")
            props[key] = value.strip()
        elif kind == "cores" and rest.strip().isdigit():
            cores = int(rest)
        elif kind == "cpu":
            words = rest.split()
            governors += [w for w in words if not w.isdigit()]
            freqs += [int(w) for w in words if w.isdigit()]
        elif kind == "thermal":
            words = rest.split()
            if len(words) >= 2 and _CPU_ZONE.search(words[0]):
                try:
                    t = float(words[-1])
                except ValueError:
                    continue
                temps.append(t / 1000 if t > 1000 else t)  # millidegrees on most kernels
    board = " ".join(v for v in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if v) or None
    soc = " ".join(v for v in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) if v)
    cpu_model = soc or props.get("ro.board.platform") or None
    governor = "/".join(dict.fromkeys(governors)) or None
    freq_mhz = round(max(freqs) / 1000) if freqs else None  # sysfs reports kHz
    temp_c = round(max(temps), 1) if temps else None
    abi = props.get("ro.product.cpu.abi") or None
    desc = [board or "Android device"]
    if cpu_model:
        desc.append(f"({cpu_model})")
    facts = [f"{cores} cores" if cores else None, abi, f"governor {governor}" if governor else None,
             f"{freq_mhz} MHz" if freq_mhz else None, f"{temp_c:.0f} °C" if temp_c is not None else None]
    if props.get("ro.build.version.release"):
        facts.append(f"Android {props['ro.build.version.release']}")
    return {
        "device_desc": " ".join(desc) + ", " + ", ".join(f for f in facts if f),
        "board": board, "cpu_model": cpu_model, "cores": cores, "governor": governor,
        "freq_mhz": freq_mhz, "temp_c": temp_c, "throttled": None, "abi": abi,
    }


# -- the runner as a worker of the bench driver ------------------------------------------------

def parse_runner_output(text: str, warmup: int) -> dict:
    """Timings and notes from what ``executor_runner`` logged (stdout and stderr together).

    Returns:
        ``{"latencies_ms": [...] (warm-up dropped) or [], "mean_only_ms": float|None,
        "executions": int|None, "threads": int|None, "errors": [log messages at level E/F]}``.
    """
    iterations = [(int(m[1]), float(m[3])) for m in ITERATION.finditer(text)]
    total = TOTAL.search(text)
    threads = THREADS.search(text)
    errors = [m[2] for m in (LOG_LINE.match(ln.strip()) for ln in text.splitlines()) if m and m[1] in "EF"]
    out = {"latencies_ms": [], "mean_only_ms": None, "executions": int(total[1]) if total else None,
           "threads": int(threads[1]) if threads else None, "errors": errors}
    if iterations:
        out["latencies_ms"] = [ms for i, ms in iterations if i > warmup]
    elif total and int(total[1]) > 0:
        out["mean_only_ms"] = float(total[2]) / int(total[1])
    return out


NO_TIMINGS = ("executor_runner logged no timings: rebuild it with -DEXECUTORCH_ENABLE_LOGGING=ON "
              "-DEXECUTORCH_PAL_DEFAULT=posix (Release builds log nothing; the android PAL logs to logcat)")
NO_PROFILE = ("no per-operator profile on adb:// (it would need an executor_runner built with "
              "-DEXECUTORCH_ENABLE_EVENT_TRACER=ON and its ETDump pulled back; not implemented)")
PROBE_EXECUTIONS = 10  # the settling warm-up's first run, which only learns the call time
MAX_EXECUTIONS = 100_000  # no single run is asked for more (its log would run to megabytes)
COOL_POLL_S = 5.0


class ExecutorRunner:
    """ExecuTorch's ``executor_runner`` on a device, as a worker of the bench driver (see ``worker.py``).

    No process stays up between messages: each warm-up and each round is one
    run of the runner (``--num_executions``), and its first ``drop``
    executions (a fresh process is cold) are left out of the samples.

    Args:
        transport: ``ADB`` or ``native.SSHNative``: ``run``, ``device_info``, ``device``, ``where``.
        exe, model: the runner and the ``.pte`` on the device.
        threads: ``--cpu_threads`` (None: the runner's choice).
        drop: executions each run drops (``--warmup``); a settling warm-up replaces it.
        wait_cool: before the ready answer, wait until the CPU is below this (degrees C).
        profile: asked for (not available here; the row says so).
    """

    def __init__(self, transport, exe: str, model: str, threads: int | None, drop: int,
                 wait_cool: float | None = None, profile: bool = False):
        self.transport, self.exe, self.model, self.threads = transport, exe, model, threads
        self.drop, self.wait_cool, self.profile = drop, wait_cool, profile
        self.call_ms: float | None = None  # median of the last run: sizes rounds by duration
        self.used_threads: int | None = None  # what the runner logged
        self.notes: set[str] = set()  # "mean_only" (runner older than ExecuTorch 1.3), "no_pool"
        self.facts: dict = {}  # the device's facts when it was ready (its ABI names a wrong build)

    def receive(self, timeout: float, doing: str) -> dict:
        """The ready answer: runtime, device facts (after cooling down when asked)."""
        where = getattr(self.transport, "where", "Android")
        cool = self._cool() if self.wait_cool is not None else None
        self.facts = self._info()
        return {"ok": True, "runtime": "executorch", "device": self.facts, "cool": cool,
                "runtime_note": f"ExecuTorch {Path(self.exe).name} on {where} (it does not report its version); "
                                "inputs filled with ones; times as the runner logs them, one fresh process "
                                "per round (no harness overhead check)",
                "warnings": [NO_PROFILE] if self.profile else []}

    def ask(self, message: dict, timeout: float, doing: str) -> dict:
        cmd = message.get("cmd")
        if cmd == "warmup":
            return self._settle(float(message.get("max_s", 5.0)), timeout, doing)
        if cmd == "round":
            lat = self._run(self._count(message), self.drop, timeout, doing)
            self.call_ms = sorted(lat)[len(lat) // 2]
            heat = {k: self._info().get(k) for k in ("temp_c", "freq_mhz", "throttled")}
            return {"ok": True, "latencies_ms": lat, "per": 1, "mean_only": "mean_only" in self.notes, **heat}
        if cmd == "finish":  # no peak memory, harness overhead or profile from a C++ runner's log
            return {"ok": True, "device": self._info(), "threads": self.used_threads, "warnings": self._warnings()}
        raise RunnerFailed(f"executor_runner cannot {cmd!r}")

    def stop(self) -> None:
        """Nothing to end: every run finished (or was killed at its time limit) before its answer."""

    def _count(self, message: dict) -> int:
        """Executions a round measures: its ``iters``, or enough for ``min_s`` at the last run's call time."""
        if message.get("iters") is not None:
            return int(message["iters"])
        n = int(message.get("min_calls", 1))
        if self.call_ms:
            n = max(n, math.ceil(float(message["min_s"]) * 1000 / self.call_ms))
        return min(n, MAX_EXECUTIONS)

    def _settle(self, max_s: float, timeout: float, doing: str) -> dict:
        """Warm-up until the latency settles: a probe run for the call time, then one run of about ``max_s``;
        the executions it took to settle are what every later run drops."""
        probe = self._run(PROBE_EXECUTIONS, 0, timeout, doing)
        if "mean_only" in self.notes:  # one mean per run: nothing to see settle in
            self.drop, self.call_ms = PROBE_EXECUTIONS, probe[0]
            return {"ok": True, "call_ms": probe[0], "calls": PROBE_EXECUTIONS, "settled": None}
        ms = max(sorted(probe)[len(probe) // 2], 1e-3)
        lat = self._run(max(PROBE_EXECUTIONS, min(MAX_EXECUTIONS, math.ceil(max_s * 1000 / ms))), 0, timeout, doing)
        calls, settled, self.call_ms = settle_point(lat)
        self.drop = calls
        return {"ok": True, "call_ms": self.call_ms, "calls": calls, "seconds": round(sum(lat[:calls]) / 1000, 3),
                "settled": settled}

    def _run(self, n: int, drop: int, timeout: float, doing: str) -> list[float]:
        """One run of ``drop + n`` executions: the last ``n`` times (or the run's mean, from an old runner).

        Raises:
            RunnerFailed: adb or ssh failed or timed out, the runner failed, or it logged no timings.
        """
        argv = [self.exe, f"--model_path={self.model}", f"--num_executions={drop + n}"]
        if self.threads is not None:
            argv.append(f"--cpu_threads={self.threads}")
        try:
            proc = self.transport.run(argv, timeout=timeout)
        except UserError as e:
            raise RunnerFailed(f"{e} (while {doing})") from None
        parsed = parse_runner_output(proc.stdout + "\n" + proc.stderr, drop)
        if proc.returncode != 0:
            raise RunnerFailed(_runner_failure(proc, parsed, self.facts))
        if parsed["threads"] is not None:
            self.used_threads = parsed["threads"]
        elif self.threads is not None:
            self.notes.add("no_pool")
        if parsed["latencies_ms"]:
            return parsed["latencies_ms"]
        if parsed["mean_only_ms"] is not None:
            self.notes.add("mean_only")
            return [parsed["mean_only_ms"]]
        raise RunnerFailed(NO_TIMINGS)

    def _warnings(self) -> list[str]:
        name = Path(self.exe).name
        out = []
        if "mean_only" in self.notes:
            out.append(f"{name} logged only a total per run (older than ExecuTorch 1.3): latency_ms_mean is "
                       f"total/executions including the {self.drop} warm-up executions of each run; no percentiles")
        if "no_pool" in self.notes:
            out.append(f"{name} has no thread pool (built without XNNPACK?): --threads was ignored")
        return out

    def _info(self) -> dict:
        """The device's facts now; an empty dict when they cannot be read (the row keeps what it had)."""
        try:
            return self.transport.device_info()
        except UserError:
            return {}

    def _cool(self) -> dict:
        """``runner.wait_cool`` with the device's temperature, read over the transport every ``COOL_POLL_S``."""
        from edgecnn.bench.runner import wait_cool

        return wait_cool(self.wait_cool, read=lambda: self._info().get("temp_c"), poll_s=COOL_POLL_S)


def refusal(path: Path, sidecar: dict, batch: int, device: str) -> str | None:
    """Why ``executor_runner`` cannot run this artifact (the row's ``error``), before the device is touched."""
    where = "a Linux board" if device.startswith("ssh://") else "Android"
    if Path(path).suffix != ".pte":
        return f"{where} path runs ExecuTorch .pte only; {Path(path).name} needs its own runtime"
    exported = sidecar["inputs"][0]["shape"][0]
    if batch != exported:  # the runner cannot change the batch a .pte was exported with
        return f"executor_runner runs the .pte at its exported batch ({exported}), not --batch {batch}"
    return None


def checked_runner(runner: Path | None, device: str) -> Path:
    """``--runner`` as a path, refused before the device is touched when it is missing.

    Raises:
        UserError: no ``--runner``, or no such file.
    """
    if runner is None:
        raise UserError(f"--device {device} runs ExecuTorch's executor_runner built for Android: pass it with "
                        "--runner PATH (how to build it: docs/boards.md, 'Android')")
    runner = Path(runner)
    if not runner.is_file():
        raise UserError(f"--runner {runner}: no such file; build executor_runner for Android "
                        "(docs/boards.md, 'Android')")
    return runner


def start_runner(transport, runner: Path, pte: Path, threads: int | None, warmup: int | None,
                 wait_cool: float | None, profile: bool) -> ExecutorRunner:
    """Push the runner and the ``.pte`` into the transport's working folder, make it executable: the worker.

    Raises:
        UserError: the push or the chmod failed.
    """
    folder = transport.put([runner, pte])
    exe = f"{folder}/{runner.name}"
    chmod = transport.run(["chmod", "755", exe])
    if chmod.returncode != 0:
        raise UserError(f"{transport.device}: cannot make {exe} executable: {chmod.stderr.strip()[:120]}")
    return ExecutorRunner(transport, exe, f"{folder}/{pte.name}", threads, warmup or 0, wait_cool, profile)


def _runner_failure(proc: subprocess.CompletedProcess, parsed: dict, info: dict) -> str:
    """One line for a runner that exited non-zero: the cause it logged, or what the shell said."""
    text = (proc.stderr + "\n" + proc.stdout).strip()
    if "Exec format error" in text or "not executable" in text:
        return (f"executor_runner is not built for this phone's CPU ({info.get('abi') or 'unknown ABI'}): "
                f"rebuild it with -DANDROID_ABI={info.get('abi') or 'arm64-v8a'}")
    if "CANNOT LINK EXECUTABLE" in text:
        return "executor_runner cannot start on this phone (" + next(
            ln for ln in text.splitlines() if "CANNOT LINK" in ln).strip() + "): build it with the NDK, static C++"
    if parsed["errors"]:
        return f"executor_runner failed (exit {proc.returncode}): {parsed['errors'][-1]}"
    last = text.splitlines()[-1] if text else "no message"
    return f"executor_runner failed (exit {proc.returncode}): {last}"
