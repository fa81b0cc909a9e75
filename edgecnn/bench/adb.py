"""Run ExecuTorch ``.pte`` artifacts on an Android phone over adb.

``edgecnn bench ART.pte --device adb://SERIAL --runner PATH/executor_runner``
pushes the ``.pte`` files and ExecuTorch's ``executor_runner`` (built for
Android, see below) into ``/data/local/tmp/edgecnn-<random>``, runs the runner
there with the thread count and the number of executions, reads the time it
logs for each execution, and returns the same rows as every other device.
Android has no Python, so ``runner.py`` is not used here, and only ``.pte``
artifacts can run (others give a row with an error).

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

The first W executions are the warm-up and are dropped. Runners older than
ExecuTorch 1.3 log only the total: the row then has the mean alone (over all
W+N executions) and says so in ``warning``.

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

import os
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgecnn.core.stats import summarize
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


# -- the benchmark ----------------------------------------------------------------------------

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


def _row(path: Path, device: str, info: dict, threads: int | None, warmup: int, iters: int) -> dict:
    """A row with every field of the contract, filled from the artifact's sidecar and the phone."""
    from edgecnn import __version__

    from edgecnn.core.contracts import DEVICE_FIELDS, blank_bench_row

    base = blank_bench_row()
    path = Path(path).resolve()
    base.update(name=path.stem, kind="artifact", artifact=str(path), device=device, threads=threads,
                warmup=warmup, iters=iters, timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                edgecnn_version=__version__,
                **{k: info.get(k) for k in DEVICE_FIELDS if k in info})
    return base


NO_TIMINGS = ("executor_runner logged no timings: rebuild it with -DEXECUTORCH_ENABLE_LOGGING=ON "
              "-DEXECUTORCH_PAL_DEFAULT=posix (Release builds log nothing; the android PAL logs to logcat)")
NO_PROFILE = ("no per-operator profile on adb:// (it would need an executor_runner built with "
              "-DEXECUTORCH_ENABLE_EVENT_TRACER=ON and its ETDump pulled back; not implemented)")


@dataclass
class _Pte:
    """A ``.pte`` that runs: its row, the timings of each round (one runner process each), and notes."""

    row: dict
    path: Path
    rounds: list[list[float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # "mean_only" (runner older than 1.3), "no_pool"


def bench_adb(artifacts: list[Path], device: str, runner: Path | None, threads: int | None = None,
              warmup: int = 10, iters: int = 50, batch: int = 1, timeout: float = 30,
              rounds: int | None = None, profile: bool = False, wait_cool: float | None = None,
              transport=None) -> list[dict]:
    """Benchmark ``.pte`` artifacts on an Android phone with ``executor_runner``; one row per artifact.

    Rounds are interleaved across artifacts (each round a fresh runner process
    per artifact, ``warmup`` executions dropped from each) so a phone heating
    up slows every artifact alike. A runner that fails gives that artifact a
    row with ``error``; the others go on.

    Args:
        artifacts: exported artifacts; anything but ``.pte`` gets an error row.
        device: ``adb://SERIAL``.
        runner: ``executor_runner`` built for the phone (``--runner``).
        threads: ``--cpu_threads`` (None: the runner's own choice, its performant cores).
        warmup, iters: executions dropped, and measured, per artifact (spread over the rounds).
        batch: must equal the batch the ``.pte`` was exported with (the runner cannot change it).
        timeout: seconds for each adb command, plus 2 s per execution for each run.
        rounds: how many runner processes per artifact (default: one per 10 measured executions, 1 to 5).
        profile: not available here; the rows say so in ``warning``.
        wait_cool: before measuring, wait (at most 5 min) until the CPU thermal zones read below this (°C).

    Raises:
        UserError: no ``--runner``, adb missing, the device missing, unauthorized or offline.
    """
    runner = _checked_runner(runner, device)
    share = _round_shares(iters, rounds)
    # transport: another device that runs native programs (bench/native.py: a Linux board over ssh, --runner).
    with (transport or ADB(device, timeout)) as phone:
        info = phone.device_info()
        rows, ptes = _prepare_rows(artifacts, phone, info, runner, threads, warmup, iters, batch)
        general = [NO_PROFILE] if profile else []  # warnings for every row that runs
        if ptes and wait_cool is not None:
            general += _wait_cool(phone, wait_cool)
        if ptes:
            _measure(phone, ptes, runner, share, threads, warmup, timeout, info)
            # The phone's state at the end of the measurement (temperature, clock) replaces the one before it.
            after = phone.device_info()
            for pte in ptes:
                _fill_row(pte, after, general, runner.name, warmup)
    return rows


def _checked_runner(runner: Path | None, device: str) -> Path:
    """``--runner`` as a path, refused before the device is touched when it is missing."""
    if runner is None:
        raise UserError(f"--device {device} runs ExecuTorch's executor_runner built for Android: pass it with "
                        "--runner PATH (how to build it: README, 'Android')")
    runner = Path(runner)
    if not runner.is_file():
        raise UserError(f"--runner {runner}: no such file; build executor_runner for Android (README, 'Android')")
    return runner


def _round_shares(iters: int, rounds: int | None) -> list[int]:
    """Measured executions of each round: ``iters`` spread over the rounds, the first ones taking the rest."""
    rounds = rounds or max(1, min(5, iters // 10))
    rounds = max(1, min(rounds, iters))
    return [iters // rounds + (1 if r < iters % rounds else 0) for r in range(rounds)]


def _prepare_rows(artifacts: list[Path], phone, info: dict, runner: Path, threads: int | None, warmup: int,
                  iters: int, batch: int) -> tuple[list[dict], list[_Pte]]:
    """Every artifact's row from its sidecar, and the ``.pte`` files that can run; the others get an ``error``.

    Raises:
        UserError: a missing or damaged sidecar.
    """
    from edgecnn.export.artifact import check_sidecar, read_sidecar, sidecar_path

    where = getattr(phone, "where", "Android")
    rows, ptes = [], []
    for path in map(Path, artifacts):
        row = _row(path, phone.device, info, threads, warmup, iters)
        rows.append(row)
        if path.suffix != ".pte":
            row["error"] = f"{where} path runs ExecuTorch .pte only; {path.name} needs its own runtime"
            continue
        side = read_sidecar(path)
        check_sidecar(path, side)
        shape = side["inputs"][0]["shape"]
        row.update(runtime="executorch", sidecar=str(sidecar_path(path).resolve()),
                   run=(side.get("source") or {}).get("run"), model=side.get("model"), target=side.get("target"), precision=side.get("precision"),
                   input_shape=shape, batch=shape[0], size_mb=side.get("size_bytes", path.stat().st_size) / 1e6,
                   runtime_note=f"ExecuTorch {runner.name} on {where} (it does not report its version); "
                                "inputs filled with ones")
        if batch != shape[0]:  # the runner cannot change the batch a .pte was exported with
            row["error"] = (f"executor_runner runs the .pte at its exported batch ({shape[0]}), "
                            f"not --batch {batch}")
            continue
        ptes.append(_Pte(row, path))
    return rows, ptes


def _measure(phone, ptes: list[_Pte], runner: Path, share: list[int], threads: int | None, warmup: int,
             timeout: float, info: dict) -> None:
    """Put the runner and the ``.pte`` files on the device, then run the rounds, interleaved across artifacts.

    Each round is a fresh runner process per artifact, so a phone heating up slows every artifact alike;
    an artifact whose run fails keeps its ``error`` and sits out the later rounds.
    """
    folder = phone.put([runner, *(p.path for p in ptes)])
    exe = f"{folder}/{runner.name}"
    chmod = phone.run(["chmod", "755", exe])
    if chmod.returncode != 0:
        raise UserError(f"{phone.device}: cannot make {exe} executable: {chmod.stderr.strip()[:120]}")
    for n in share:
        for pte in ptes:
            if pte.row["error"]:
                continue
            argv = [exe, f"--model_path={folder}/{pte.path.name}", f"--num_executions={warmup + n}"]
            if threads is not None:
                argv.append(f"--cpu_threads={threads}")
            try:
                proc = phone.run(argv, timeout=timeout + 2 * (warmup + n))
            except UserError as e:
                pte.row["error"] = str(e)
                continue
            _take_run(pte, proc, warmup, threads, info)


def _take_run(pte: _Pte, proc: subprocess.CompletedProcess, warmup: int, threads: int | None, info: dict) -> None:
    """One runner process's log into ``pte``: its timings (warm-up dropped), or the row's ``error``."""
    parsed = parse_runner_output(proc.stdout + "\n" + proc.stderr, warmup)
    if proc.returncode != 0:
        pte.row["error"] = _runner_failure(proc, parsed, info)
    elif parsed["latencies_ms"]:
        pte.rounds.append(parsed["latencies_ms"])
    elif parsed["mean_only_ms"] is not None:
        pte.rounds.append([parsed["mean_only_ms"]])
        pte.notes.append("mean_only")
    else:
        pte.row["error"] = NO_TIMINGS
    if parsed["threads"] is not None:
        pte.row["threads"] = parsed["threads"]
    elif threads is not None and "no_pool" not in pte.notes:
        pte.notes.append("no_pool")


def _fill_row(pte: _Pte, after: dict, general: list[str], runner_name: str, warmup: int) -> None:
    """The row of a ``.pte`` after its rounds: the device's state at the end, statistics, warnings."""
    row = pte.row
    row.update({k: v for k, v in after.items() if k in row and v is not None})
    values = [x for r in pte.rounds for x in r]
    if row["error"] or not values:
        return
    row["rounds"] = len(pte.rounds)
    warnings = list(general)
    if "mean_only" in pte.notes:  # one mean per run: no distribution to summarize
        row["latency_ms_mean"] = sum(values) / len(values)
        row["throughput_ips"] = row["batch"] * 1000.0 / row["latency_ms_mean"]
        warnings.append(f"{runner_name} logged only a total per run (older than ExecuTorch 1.3): "
                        f"latency_ms_mean is total/executions including the {warmup} warm-up runs; "
                        "no percentiles")
    else:  # the same statistics as every other row (intervals from the rounds: fresh processes)
        row.update(summarize(pte.rounds, batch=row["batch"]))
    if "no_pool" in pte.notes:
        warnings.append(f"{runner_name} has no thread pool (built without XNNPACK?): --threads was ignored")
    row["warning"] = "; ".join(warnings) or None


COOL_WAIT_MAX_S = 300


def _wait_cool(phone: ADB, limit_c: float) -> list[str]:
    """Poll the phone's CPU temperature until it is below ``limit_c`` (at most 5 min); warnings to add."""
    import time

    start = time.monotonic()
    temp = phone.device_info()["temp_c"]
    while temp is not None and temp >= limit_c and time.monotonic() - start < COOL_WAIT_MAX_S:
        time.sleep(5)
        temp = phone.device_info()["temp_c"]
    if temp is None:
        return ["--wait-cool: no CPU temperature readable on this phone; did not wait"]
    if temp >= limit_c:
        return [f"did not cool below {limit_c:g} C within {COOL_WAIT_MAX_S} s (at {temp} C)"]
    return []


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
