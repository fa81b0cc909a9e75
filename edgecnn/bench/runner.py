#!/usr/bin/env python3
"""edgecnn device runner: time one exported model with its own runtime, on the machine it runs on.

This single file is copied to the device (a Raspberry Pi, any Linux board, or
this machine) next to an artifact written by ``edgecnn export`` and its JSON
sidecar, and needs only Python 3, numpy and the artifact's runtime:

    .pte   executorch    (XNNPACK threadpool set to --threads)
    .xml   openvino      (OpenVINO IR; the sidecar's .bin beside it)
    .onnx  onnxruntime

(``install_hint`` gives the pip commands that work per architecture; on aarch64
``pip install executorch`` does not resolve.)

It never imports edgecnn. Start it as

    python3 runner.py --artifact FILE --threads N --batch B [--profile] [--wait-cool C]

and drive it with one JSON object per line on stdin; it answers one per line on stdout:

    (after loading)                 -> {"ok": true, "runtime": ..., "runtime_version": ..., "device": {...}, ...}
                                       or {"ok": false, "error": "onnxruntime is not installed ...: pip install onnxruntime"}
    {"cmd": "warmup", "max_s": s}   -> {"ok": true, "call_ms": ..., "calls": ..., "settled": true|false}
    {"cmd": "round", "min_s": s, "min_calls": m, "per": k}
                                    -> {"ok": true, "latencies_ms": [...], "per": k, "temp_c", "freq_mhz", "throttled"}
       (or "iters": n instead of min_s/min_calls: a fixed count; each sample is the mean of k calls)
    {"cmd": "check", "inputs": [{"shape": [N, ...], "b64": float32 bytes}, ...]}
                                    -> {"ok": true, "n": N, "shape": [N, classes], "b64": the logits}
                                       (edgecnn bench --check: the host's images through the model, one at a time)
    {"cmd": "overhead", "iters": n, "per": k}
                                    -> {"ok": true, "overhead_pct": ...} (one ABBA pass of the check below)
    {"cmd": "finish"}               -> {"ok": true, "peak_rss_mb": ..., "device": {...}, "overhead_pct": ...,
                                        "profile": null or {"top_ops": [...], "delegated_share": ..., "source": ...}}

``edgecnn bench`` starts one runner per artifact and sends rounds to each in
turn, so slow drift of the machine (heat, other load) hits every runtime alike,
while each runtime lives in its own process (its memory is its own, and no two
thread pools compete). Run by hand, it is a quick check that a board can run a
model at all: type the two commands above.

What is measured, and how:

* latency: warm-up until two consecutive windows agree, then rounds that
  last a minimum time; ``time.perf_counter_ns`` once per sample (one call,
  or ``per`` consecutive calls when calls are short), inputs bound once
  (random float32 of the sidecar's shapes; a ``mask`` input is all ones);
  the CPU's temperature, clock and throttling after each round;
* harness overhead: the same number of calls in a plain loop and in the
  per-call-timed loop, alternated (ABBA) so drift cancels;
* peak RSS: ``VmHWM`` of this process (``getrusage`` where there is no /proc), taken before any profiling;
* the device: CPU model (or the Pi's "Model" line), cores, governor,
  frequency, temperature and ``vcgencmd get_throttled`` where readable;
  ``machine`` and whether it runs under qemu-user emulation (``emulation()``:
  uname says ARM while the kernel's /proc/cpuinfo describes an x86 CPU);
* ``--profile``, after timing and on a separately loaded copy so the timed
  runs never pay for it: ExecuTorch ETDump read with the devtools Inspector,
  OpenVINO per-layer performance counters, ONNX Runtime's profiler.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A copy of core/contracts' target table (suffix -> runtime module): this file imports nothing of edgecnn.
# tests/test_bench.py asserts the copy equals the table.
RUNTIMES = {".pte": "executorch", ".xml": "openvino", ".onnx": "onnxruntime"}
COOL_WAIT_MAX_S = 300  # --wait-cool gives up after this long and says so
TOP_OPS = 10
PROFILE_WARMUP = 2  # profiled calls left out of a profile
# The pybindings of the executorch wheel do not record ETDump events (it is built
# without EXECUTORCH_ENABLE_EVENT_TRACER), so its ETDump comes back empty.
# With the event tracer compiled in, the XNNPACK delegate logs each of its own ops as well.
NO_ETDUMP = ("this executorch build records no ETDump events (built without EXECUTORCH_ENABLE_EVENT_TRACER); "
             "a per-operator profile needs a runtime built with -DEXECUTORCH_BUILD_DEVTOOLS=ON "
             "-DEXECUTORCH_ENABLE_EVENT_TRACER=ON (ExecuTorch's profiling CMake preset)")


class RunnerError(Exception):
    """A failure the host is told about in one line (``{"ok": false, "error": ...}``)."""


# -- the device -----------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


# ARM core names by the "CPU part" of /proc/cpuinfo (Linux on ARM prints no "model name").
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3",
    "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}


def _cpuinfo() -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (plus every ARM core part seen, comma-joined)."""
    info: dict[str, str] = {}
    parts: list[str] = []
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        info.setdefault(key, value)
        if key == "CPU part" and value not in parts:
            parts.append(value)
    if parts:
        info["CPU parts"] = ",".join(parts)
    return info


def temperature_c() -> float | None:
    """The CPU temperature in degrees C from /sys/class/thermal, or None where none is readable.

    Prefers a zone whose type names the CPU or SoC (``cpu-thermal`` on a Pi,
    ``x86_pkg_temp`` on Intel); otherwise the hottest readable zone.
    """
    zones = []
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        raw = _read(str(zone / "temp"))
        if raw is None or not raw.lstrip("-").isdigit():
            continue
        kind = (_read(str(zone / "type")) or "").lower()
        zones.append((any(w in kind for w in ("cpu", "soc", "pkg", "core")), int(raw) / 1000))
    if not zones:
        return None
    preferred = [t for is_cpu, t in zones if is_cpu]
    return round(max(preferred or [t for _, t in zones]), 1)


def throttled() -> str | None:
    """``vcgencmd get_throttled`` (Raspberry Pi firmware), e.g. ``0x0``; None where there is no vcgencmd.

    Bits 0-3 mean under-voltage, frequency capped, throttled, soft temperature
    limit *now*; bits 16-19 the same *since boot*.
    """
    if not shutil.which("vcgencmd"):
        return None
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", out)
    return match.group(1) if match else None


def device_info() -> dict:
    """What this machine is and its state now; every field None where it cannot be read."""
    cpu = _cpuinfo()
    board = (_read("/proc/device-tree/model") or "").rstrip("\x00") or cpu.get("Model") or None
    model = cpu.get("model name") or cpu.get("Processor")
    if not model and cpu.get("CPU parts"):
        model = "+".join(ARM_PARTS.get(p, f"ARM part {p}") for p in cpu["CPU parts"].split(","))
    model = model or platform.processor() or platform.machine() or None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/"
    governor = _read(cpufreq + "scaling_governor")
    khz = _read(cpufreq + "scaling_cur_freq")
    if khz and khz.isdigit():
        freq_mhz = round(int(khz) / 1000)
    else:  # x86 VMs have no cpufreq folder; /proc/cpuinfo still says
        try:
            freq_mhz = round(float(cpu["cpu MHz"]))
        except (KeyError, ValueError):
            freq_mhz = None
    info = {
        "board": board, "cpu_model": model, "cores": usable, "governor": governor, "freq_mhz": freq_mhz,
        "temp_c": temperature_c(), "throttled": throttled(), "machine": platform.machine(),
        "python": platform.python_version(), "isa": isa(cpu), "max_freq_mhz": _max_freq_mhz(),
        "cpu_vendor": cpu.get("vendor_id"), "cpu_family": cpu.get("cpu family"),
    }
    parts = [board, model, f"{usable} cores" if usable else None, governor,
             f"{freq_mhz} MHz" if freq_mhz else None,
             f"{info['temp_c']} C" if info["temp_c"] is not None else None,
             f"throttled={info['throttled']}" if info["throttled"] not in (None, "0x0") else None]
    info.update(emulation(cpu))
    if info["emulated"]:  # the host's CPU, flags and clock describe qemu's machine, not the emulated one
        info.update(cpu_model=f"{platform.machine()} under qemu-user on {model}", isa=[], max_freq_mhz=None)
        parts[1] = info["cpu_model"]
        parts.append("emulated: not the latency of real hardware")
    info["device_desc"] = ", ".join(p for p in parts if p)
    return info


ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l", "armv6l")


def emulation(cpu: dict[str, str]) -> dict:
    """Whether this process is an ARM program run by qemu-user on another CPU, and how that was seen.

    Under qemu-user, ``platform.machine()`` (uname) says aarch64, but ``/proc/cpuinfo`` is the host
    kernel's and describes the host's CPU (x86 ``vendor_id`` and ``flags``, no ARM ``CPU implementer``);
    a qemu entry for this machine in ``/proc/sys/fs/binfmt_misc`` shows how it got there. On a real
    board cpuinfo has the ARM fields. Returns ``{"emulated": bool or None, "emulation": text or None}``
    (None: nothing readable to decide by).
    """
    machine = platform.machine()
    if machine not in ARM_MACHINES:
        return {"emulated": False, "emulation": None}
    if not cpu:
        return {"emulated": None, "emulation": None}
    host_cpu = cpu.get("vendor_id") or ("x86 flags" if "sse2" in (cpu.get("flags") or "").split() else None)
    if not host_cpu or "CPU implementer" in cpu:
        return {"emulated": False, "emulation": None}
    how = f"uname says {machine} but /proc/cpuinfo describes a {host_cpu} CPU ({cpu.get('model name', '?')})"
    qemu = Path(f"/proc/sys/fs/binfmt_misc/qemu-{'aarch64' if machine in ('aarch64', 'arm64') else 'arm'}")
    if qemu.exists():
        interp = next((ln.split()[1] for ln in (_read(str(qemu)) or "").splitlines() if ln.startswith("interpreter")),
                      "qemu")
        how += f"; binfmt_misc runs {machine} programs with {interp}"
    return {"emulated": True, "emulation": f"qemu-user: {how}"}


# The CPU features the peak-arithmetic table (edgecnn/bench/peak.py) looks at, as /proc/cpuinfo spells them.
ISA_FLAGS = ("fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "i8mm", "bf16", "sve")


def isa(cpu: dict[str, str]) -> list[str]:
    """The relevant vector features this CPU reports (x86 "flags", ARM "Features"), or [] if unreadable."""
    words = set((cpu.get("flags") or cpu.get("Features") or "").split())
    return [f for f in ISA_FLAGS if f in words]


def _max_freq_mhz() -> int | None:
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    return round(int(khz) / 1000) if khz and khz.isdigit() else None


def wait_cool(limit_c: float, read=None, poll_s: float = 2.0) -> dict:
    """Sleep until the temperature drops below ``limit_c`` (at most ``COOL_WAIT_MAX_S``).

    Args:
        read: ``() -> degrees C or None``; default this machine's ``temperature_c`` (the adb
            worker passes one that reads the phone's over adb).
        poll_s: seconds between reads.

    Returns:
        ``{"waited_s", "temp_c", "cooled"}``; ``cooled`` is None where no temperature is readable.
    """
    read = read or temperature_c
    start = time.monotonic()
    temp = read()
    while temp is not None and temp >= limit_c and time.monotonic() - start < COOL_WAIT_MAX_S:
        time.sleep(poll_s)
        temp = read()
    return {"waited_s": round(time.monotonic() - start, 1), "temp_c": temp,
            "cooled": None if temp is None else temp < limit_c}


def rss_mb(peak: bool) -> float | None:
    """Peak or current resident memory of this process, in MB.

    Linux peak is ``VmHWM`` from ``/proc/self/status``, which belongs to this
    program's memory map. ``getrusage``'s ``ru_maxrss`` survives ``exec``: a
    runner started by a big process (``edgecnn run`` after training) would report
    its parent's size. ``getrusage`` is the fallback elsewhere (macOS).
    """
    if peak:
        status = _read("/proc/self/status") or ""
        hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), None)
        if hwm is not None:
            return round(int(hwm) / 1024, 1)
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS
    statm = _read("/proc/self/statm")
    if not statm:
        return None
    return round(int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


# -- the model --------------------------------------------------------------------------------------

class Loaded:
    """One model ready to run: ``call()`` runs one inference on inputs bound at load.

    Attributes:
        call: runs the model once; returns when the result is ready.
        profile: ``profile(n)`` runs ``n`` calls on a profiling copy and returns the profile dict.
        runtime, version: the runtime's name and version.
        note: how the runtime was set up, in words (threads, precision hint).
        precision: what the runtime computed in, where it differs from the artifact's (OpenVINO bf16), else None.
        input_shapes: the shapes fed, batch included.
        import_rss_mb: resident memory once the runtime was imported, before the model
            loaded (peak RSS minus this is roughly what the model itself costs).
    """

    def __init__(self, call, profile, runtime: str, version: str, note: str, input_shapes: list,
                 precision: str | None = None, import_rss_mb: float | None = None, infer=None):
        self.call, self.profile = call, profile
        self.infer = infer  # infer(arrays) -> the first output (logits) as numpy, for the "check" command
        self.runtime, self.version, self.note = runtime, version, note
        self.input_shapes, self.precision, self.import_rss_mb = input_shapes, precision, import_rss_mb


def _version(dist: str, module) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # not installed as a distribution (a source build): the module may still say
        return str(getattr(module, "__version__", "unknown"))


# What installs a runtime where a plain `pip install NAME` does not (the README's boards section): on aarch64
# executorch 1.4's dependencies do not resolve (a CUDA torch, coremltools built from source), so torch's
# 2.9.1 CPU build, then executorch 1.0.1 (built for it) without its dependencies; OpenVINO's newest aarch64
# wheel is 2025.2.0. One pip call per entry.
INSTALL = {
    "aarch64": {"executorch": ["torch==2.9.1", "--no-deps executorch==1.0.1", "ruamel.yaml tabulate flatbuffers"],
                "openvino": ["openvino==2025.2.0"], "onnxruntime": ["onnxruntime==1.32.0"]},
}


def install_steps(module: str, machine: str | None = None) -> list[str]:
    """The pip arguments that install ``module`` on ``machine`` (this one by default), one string per pip call."""
    machine = (machine or platform.machine()).lower()
    machine = "aarch64" if machine in ("arm64", "aarch64") else machine
    return INSTALL.get(machine, {}).get(module, [module])


def install_hint(module: str, machine: str | None = None) -> str:
    """``pip install A && pip install B``: the install of ``module`` on ``machine`` as one shell line."""
    return " && ".join(f"pip install {args}" for args in install_steps(module, machine))


def _missing(runtime: str) -> RunnerError:
    return RunnerError(f"{runtime} is not installed on this device ({platform.machine()}, "
                       f"Python {platform.python_version()}): {install_hint(runtime)}")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _fixed_batch(batch: int, fixed) -> RunnerError:
    return RunnerError(f"--batch {batch}: this artifact's batch is fixed to {fixed} (it was exported for "
                       f"batch {fixed}); bench it with --batch {fixed}")


def make_inputs(sidecar: dict, batch: int) -> list:
    """Random float32 arrays of the sidecar's input shapes, batch ``batch``; a ``mask`` input is all ones.

    The batch is the first dimension of every input of rank 2 or more (the
    presence mask of band-aware models, ``[bands]``, has none).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = []
    for spec in sidecar["inputs"]:
        shape = list(spec["shape"])
        if len(shape) >= 2:
            shape[0] = batch
        if spec.get("name") == "mask":
            arrays.append(np.ones(shape, np.float32))
        else:
            arrays.append(rng.standard_normal(shape, dtype=np.float32))
    return arrays


def open_executorch(path: Path, sidecar: dict, threads: int, batch: int) -> Loaded:
    """A ``.pte`` on the ExecuTorch runtime's Python bindings, XNNPACK threadpool of ``threads``.

    The bindings are the C++ runtime that ``executorch.runtime.Runtime`` wraps;
    importing them directly skips ``executorch.exir`` (the exporter), which the
    public module drags in: about 10 s and 130 MB less on this x86 host, more on
    a Pi, with the same execution (same loader, same verification, same kernels).
    They link against libtorch, so torch is imported first either way.
    """
    try:
        import torch  # noqa: F401  (loads libtorch, which the bindings link against)
        try:
            from executorch.extension.pybindings import _portable_lib as et
        except ImportError:  # a layout without the private module: the public one exports the same names
            from executorch.extension.pybindings import portable_lib as et
    except ImportError:
        raise _missing("executorch") from None
    import executorch

    imported = rss_mb(peak=False)
    # Before loading: the XNNPACK delegate takes the threadpool when the method
    # is initialised, and the pool defaults to one thread per core.
    et._unsafe_reset_threadpool(threads)
    try:
        method = et._load_program(str(path), enable_etdump=False).load_method("forward")
    except Exception as e:
        raise RunnerError(f"executorch could not load {path.name}: {first_line(e)}") from None
    arrays = make_inputs(sidecar, batch)
    meta = method.method_meta()
    for i, a in enumerate(arrays):
        sizes = list(meta.input_tensor_meta(i).sizes())
        if a.ndim >= 2 and sizes and sizes[0] < batch:  # sizes are the upper bounds of dynamic shapes
            raise _fixed_batch(batch, sizes[0])
    tensors = [torch.from_numpy(a) for a in arrays]

    def call():
        method(tensors)

    def profile(n: int) -> dict:
        return profile_executorch(et, path, tensors, n)

    def infer(given: list):
        return method([torch.from_numpy(a) for a in given])[0].numpy().copy()

    # executorch 1.0 (the aarch64 wheel that pairs with PyPI's CPU-only torch 2.9.1) cannot report its pool.
    counted = getattr(et, "_threadpool_get_thread_count", None)
    pool = f"{counted()} threads" if counted else f"set to {threads} threads (this executorch cannot report it)"
    return Loaded(call, profile, "executorch", _version("executorch", executorch),
                  f"XNNPACK threadpool {pool}", [list(a.shape) for a in arrays], import_rss_mb=imported,
                  infer=infer)


def open_openvino(path: Path, sidecar: dict, threads: int, batch: int) -> Loaded:
    """An OpenVINO IR compiled for the CPU with the sidecar's config (the precision parity was measured with).

    Added: ``PERFORMANCE_HINT=LATENCY`` (one stream: what batch-1 latency
    wants) and ``INFERENCE_NUM_THREADS``. The note says which precision the
    plugin actually used, and whether this CPU would pick bf16 by itself.
    """
    try:
        import openvino as ov
    except ImportError:
        raise _missing("openvino") from None

    imported = rss_mb(peak=False)
    core = ov.Core()
    config = dict((sidecar.get("runtime") or {}).get("config") or {})
    config.update({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    try:
        compiled = core.compile_model(str(path), "CPU", config)
    except Exception as e:
        raise RunnerError(f"openvino could not load {path.name}: {first_line(e)}") from None
    arrays = make_inputs(sidecar, batch)
    for port, a in zip(compiled.inputs, arrays):
        first = port.get_partial_shape()[0] if a.ndim >= 2 else None
        if first is not None and first.is_static and first.get_length() != batch:
            raise _fixed_batch(batch, first.get_length())
    request = compiled.create_infer_request()

    def call():
        request.infer(arrays, share_inputs=True)

    def profile(n: int) -> dict:
        return profile_openvino(core, path, {**config, "PERF_COUNT": True}, arrays, n)

    ran = _ov_type(compiled.get_property("INFERENCE_PRECISION_HINT"))
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    where = "from the sidecar" if "INFERENCE_PRECISION_HINT" in config else "OpenVINO's default"
    note = f"OpenVINO INFERENCE_PRECISION_HINT={ran} ({where}), LATENCY hint, {threads} threads"
    if "BF16" in caps and ran != "bf16":
        note += "; this CPU has bf16, which OpenVINO would use without the hint"
    precision = "bf16" if ran == "bf16" and sidecar.get("precision") == "fp32" else None

    def infer(given: list):
        import numpy as np

        return np.array(compiled.create_infer_request().infer(given)[compiled.outputs[0]])

    return Loaded(call, profile, "openvino", _version("openvino", ov), note, [list(a.shape) for a in arrays],
                  precision, imported, infer)


def _ov_type(value) -> str:
    """``<Type: 'float32'>`` -> ``f32``; ``bf16`` stays ``bf16``."""
    text = str(value)
    match = re.search(r"'(\w+)'", text)
    name = match.group(1) if match else text
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def _ort_options(ort, sidecar: dict, threads: int):
    options = ort.SessionOptions()
    # What edgecnn.export.onnx.load sets (the sidecar's config, if any), plus the
    # thread count; graph optimisations at their default, ORT_ENABLE_ALL, said explicitly.
    for key, value in ((sidecar.get("runtime") or {}).get("config") or {}).items():
        setattr(options, key, value)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def _ort_disabled(sidecar: dict) -> list | None:
    return (sidecar.get("runtime") or {}).get("disabled_optimizers") or None


def open_onnxruntime(path: Path, sidecar: dict, threads: int, batch: int) -> Loaded:
    """An ``.onnx`` on onnxruntime's CPU provider with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise _missing("onnxruntime") from None

    imported = rss_mb(peak=False)
    try:
        # The optimizers the exporter turned off (a layer kept in float must stay float here too).
        session = ort.InferenceSession(str(path), _ort_options(ort, sidecar, threads),
                                       providers=["CPUExecutionProvider"], disabled_optimizers=_ort_disabled(sidecar))
    except Exception as e:
        raise RunnerError(f"onnxruntime could not load {path.name}: {first_line(e)}") from None
    arrays = make_inputs(sidecar, batch)
    for spec, a in zip(session.get_inputs(), arrays):
        first = spec.shape[0] if a.ndim >= 2 and spec.shape else None
        if isinstance(first, int) and first != batch:  # a str or None is a dynamic dimension
            raise _fixed_batch(batch, first)
    feed = {spec.name: a for spec, a in zip(session.get_inputs(), arrays)}
    outputs = [o.name for o in session.get_outputs()]

    def call():
        session.run(outputs, feed)

    def profile(n: int) -> dict:
        return profile_onnxruntime(ort, path, _ort_options(ort, sidecar, threads), feed, n, _ort_disabled(sidecar))

    def infer(given: list):
        return session.run(outputs[:1], {spec.name: a for spec, a in zip(session.get_inputs(), given)})[0]

    return Loaded(call, profile, "onnxruntime", _version("onnxruntime", ort),
                  f"CPUExecutionProvider, {threads} intra-op threads, ORT_ENABLE_ALL",
                  [list(a.shape) for a in arrays], import_rss_mb=imported, infer=infer)


OPENERS = {"executorch": open_executorch, "openvino": open_openvino, "onnxruntime": open_onnxruntime}


# -- profiles ---------------------------------------------------------------------------------------

def top_ops(ms_by_op: dict[str, float], counts: dict[str, int] | None = None) -> list[dict]:
    """The ``TOP_OPS`` slowest ops: ``{"op", "ms" (per call), "share" (of all ops' time)}``, slowest first."""
    total = sum(ms_by_op.values()) or 1.0
    rows = sorted(ms_by_op.items(), key=lambda kv: -kv[1])[:TOP_OPS]
    out = []
    for op, ms in rows:
        row = {"op": op, "ms": round(float(ms), 4), "share": round(float(ms / total), 4)}
        if counts:
            row["count"] = counts.get(op, 1)
        out.append(row)
    return out


def profile_openvino(core, path: Path, config: dict, arrays: list, n: int) -> dict:
    """Per-layer performance counters (``PERF_COUNT``), summed by layer type, per call."""
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    for _ in range(PROFILE_WARMUP):  # the first calls pay one-time costs
        request.infer(arrays)
    ms: dict[str, float] = {}
    count: dict[str, int] = {}
    for _ in range(n):
        request.infer(arrays, share_inputs=True)
        for layer in request.get_profiling_info():  # the last call's counters only: sum each call's
            if "EXECUTED" not in str(layer.status):
                continue  # fused into a neighbour or a no-op (Parameter, Result)
            ms[layer.node_type] = ms.get(layer.node_type, 0.0) + layer.real_time.total_seconds() * 1000 / n
            count[layer.node_type] = count.get(layer.node_type, 0) + 1
    count = {k: v // n for k, v in count.items()}
    return {"top_ops": top_ops(ms, count), "delegated_share": None, "source": "openvino perf counters",
            "profiled_calls": n, "ops_ms": round(sum(ms.values()), 4)}


def profile_onnxruntime(ort, path: Path, options, feed: dict, n: int, disabled: list | None = None) -> dict:
    """onnxruntime's profiler (a Chrome-trace JSON): kernel time per op type, per call.

    ``delegated_share`` is the share of kernel time on execution providers other
    than the CPU's; None when everything ran on the CPU provider.
    """
    with tempfile.TemporaryDirectory(prefix="edgecnn-ort-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=disabled)
        for _ in range(n + PROFILE_WARMUP):  # the first calls pay one-time costs: left out below
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in trace if e.get("name") == "model_run"), key=lambda e: e["ts"])
    warm = runs[PROFILE_WARMUP - 1] if len(runs) >= PROFILE_WARMUP else None
    first_end = warm["ts"] + warm["dur"] if warm else 0
    ms: dict[str, float] = {}
    count: dict[str, int] = {}
    by_provider: dict[str, float] = {}
    for e in trace:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e["ts"] < first_end:
            continue
        args = e.get("args", {})
        op = args.get("op_name", e["name"])
        t = e["dur"] / 1000 / n
        ms[op] = ms.get(op, 0.0) + t
        count[op] = count.get(op, 0) + 1
        provider = args.get("provider", "CPUExecutionProvider")
        by_provider[provider] = by_provider.get(provider, 0.0) + t
    count = {k: max(1, v // n) for k, v in count.items()}
    total = sum(by_provider.values()) or 1.0
    other = sum(t for p, t in by_provider.items() if p != "CPUExecutionProvider")
    return {"top_ops": top_ops(ms, count), "delegated_share": round(other / total, 4) if other else None,
            "source": "onnxruntime profiler", "profiled_calls": n, "ops_ms": round(sum(ms.values()), 4)}


def profile_executorch(et, path: Path, tensors: list, n: int) -> dict:
    """ETDump of ``n`` calls on a copy loaded with ``enable_etdump=True``, read with the devtools Inspector.

    A runtime built without the event tracer writes no ETDump (the pip wheel's
    case): the profile then has no ops and a ``note`` saying how to get them.
    """
    program = et._load_program(str(path), enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    for _ in range(n):  # ETDump keeps every call; the Inspector averages them (warm-up calls included)
        method(tensors)
    with tempfile.TemporaryDirectory(prefix="edgecnn-etdump-") as tmp:
        etdump = Path(tmp) / "profile.etdp"
        program.write_etdump_result_to_file(str(etdump))
        if not etdump.is_file() or etdump.stat().st_size == 0:
            return {"top_ops": [], "delegated_share": None, "source": "etdump", "note": NO_ETDUMP}
        return summarize_etdump(etdump)


# ETDump events that wrap or set up the run rather than compute part of it.
_ET_FRAME = re.compile(r"^(Method::|Program::|Module::)")


def summarize_etdump(etdump: Path) -> dict:
    """Top ops and the delegated share of an ETDump file, per call.

    Op events are the instructions of the program (portable kernels like
    ``native_call_as_strided_copy.out``, and ``DELEGATE_CALL`` for each
    delegate block); with XNNPACK kernel profiling, the delegate also logs
    each of its own ops (``is_delegated_op``), which then replace the
    ``DELEGATE_CALL`` that contains them. The delegated share is the time in
    XNNPACK over all op time.
    """
    try:
        from executorch.devtools import Inspector
    except ImportError as e:
        return {"top_ops": [], "delegated_share": None, "source": "etdump",
                "note": f"ETDump written but executorch.devtools cannot read it here ({first_line(e)})"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Output Buffer not found": we read timings only
        inspector = Inspector(etdump_path=str(etdump))
    events = [e for block in inspector.event_blocks for e in block.events
              if e.perf_data is not None and e.name and not _ET_FRAME.match(e.name)]
    inside = [e for e in events if e.is_delegated_op]
    if inside:  # the delegate's own ops replace the DELEGATE_CALL wrapping them
        events = [e for e in events if e.name != "DELEGATE_CALL"]
    ms: dict[str, float] = {}
    count: dict[str, int] = {}
    for e in events:
        ms[e.name] = ms.get(e.name, 0.0) + float(e.perf_data.avg)  # ms per call (one value per run)
        count[e.name] = count.get(e.name, 0) + 1
    total = sum(ms.values())
    delegated = sum(float(e.perf_data.avg) for e in (inside or [e for e in events if e.name == "DELEGATE_CALL"]))
    return {"top_ops": top_ops(ms, count), "delegated_share": round(delegated / total, 4) if total else None,
            "source": "etdump", "ops_ms": round(total, 4)}


# -- measuring --------------------------------------------------------------------------------------

def timed_calls(call, n: int, per: int = 1) -> list[float]:
    """``n`` samples, each the mean time of ``per`` consecutive calls (one clock read per sample); ms."""
    clock = time.perf_counter_ns
    inner = range(per)
    ns = []
    t0 = clock()
    for _ in range(n):
        for _ in inner:
            call()
        t1 = clock()
        ns.append(t1 - t0)
        t0 = t1  # the next sample starts where this one ended: one clock read per sample
    return [t / per / 1e6 for t in ns]


def timed_for(call, min_s: float, min_calls: int, per: int = 1, max_s: float | None = None) -> list[float]:
    """Samples of ``per`` calls each until at least ``min_s`` seconds and ``min_calls`` calls were measured.

    ``max_s`` stops a very slow model early (at least one sample is always taken).
    The clock reads that time the samples also decide when to stop, so the
    loop adds no clock reads of its own.
    """
    clock = time.perf_counter_ns
    inner = range(per)
    need_ns, cap_ns = int(min_s * 1e9), int((max_s if max_s is not None else 1e9) * 1e9)
    ns: list[int] = []
    start = t0 = clock()
    while True:
        for _ in inner:
            call()
        t1 = clock()
        ns.append(t1 - t0)
        t0 = t1
        spent = t1 - start
        if (spent >= need_ns and len(ns) * per >= min_calls) or spent >= cap_ns:
            break
    return [t / per / 1e6 for t in ns]


def settle_point(latencies_ms: list[float], window_ms: float = 200.0, tolerance: float = 0.03,
                 min_calls: int = 5) -> tuple[int, bool, float]:
    """How many executions of one run its latency took to settle: the warm-up rule of ``settle``, on logged times.

    Consecutive windows of at least ``window_ms`` and ``min_calls`` executions;
    settled when two consecutive windows' medians are within ``tolerance``.

    Returns:
        ``(executions up to the end of the settling window, settled, median of the last window in ms)``;
        all executions and False when it never settled.
    """
    previous, start = None, 0
    while start < len(latencies_ms):
        end, spent = start, 0.0
        while end < len(latencies_ms) and (end - start < min_calls or spent < window_ms):
            spent += latencies_ms[end]
            end += 1
        median = sorted(latencies_ms[start:end])[(end - start) // 2]
        if previous is not None and abs(median - previous) <= tolerance * previous:
            return end, True, median
        previous, start = median, end
    return len(latencies_ms), False, previous or 0.0


def settle(call, max_s: float, window_s: float = 0.2, tolerance: float = 0.03, min_calls: int = 5) -> dict:
    """Warm up until the latency settles: two consecutive windows' medians within ``tolerance``.

    The first calls pay for allocation, caches, thread pools waking and
    (OpenVINO, XNNPACK) packing weights, so they are never timed. A window
    lasts ``window_s`` and at least ``min_calls`` calls; warming stops at
    ``max_s`` even if the latency still moves (``settled`` is then False).
    The rule is ``settle_point``'s, applied to the calls so far (adb applies
    it to a logged run).

    Returns:
        ``{"call_ms": median of the last window, "calls", "seconds", "settled"}``.
    """
    start = time.perf_counter()
    lat: list[float] = []
    while True:
        lat += timed_for(call, window_s, min_calls, max_s=max(window_s, max_s - (time.perf_counter() - start)))
        _, settled, median = settle_point(lat, window_s * 1000, tolerance, min_calls)
        spent = time.perf_counter() - start
        if settled or spent >= max_s:
            return {"call_ms": median, "calls": len(lat), "seconds": round(spent, 3), "settled": settled}


def plain_loop_ns(call, n: int) -> int:
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(n):
        call()
    return clock() - t0


def harness_overhead_pct(call, n: int, per: int = 1) -> float:
    """How much longer a call takes in the timed loop than in a plain loop, in percent.

    ``n`` calls of each kind in eight blocks, ordered plain-timed-timed-plain-
    timed-plain-plain-timed so a linear drift of the machine adds the same to
    both; the middle two blocks of each kind are compared, so one stray spike
    of another process does not decide it. The timed loop is the one rounds
    use (samples of ``per`` calls). Noise can make it slightly negative; the
    host sizes ``n`` so each block lasts long enough for a stable figure.
    """
    size = max(per, n // 4)
    samples = max(1, size // per)
    plain, timed = [], []
    clock = time.perf_counter_ns
    for kind in "PTTPTPPT":
        if kind == "P":
            plain.append(plain_loop_ns(call, samples * per))
        else:
            t0 = clock()
            timed_calls(call, samples, per)
            timed.append(clock() - t0)
    p, t = sorted(plain)[1:3], sorted(timed)[1:3]  # the middle two of four
    return round((sum(t) - sum(p)) / sum(p) * 100, 3)


def heat() -> dict:
    """The CPU's state now, read cheaply after each round: temperature, clock, Pi throttling."""
    cpu = _cpuinfo() if not Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").exists() else {}
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    freq = round(int(khz) / 1000) if khz and khz.isdigit() else None
    if freq is None and cpu.get("cpu MHz"):
        try:
            freq = round(float(cpu["cpu MHz"]))
        except ValueError:
            freq = None
    return {"temp_c": temperature_c(), "freq_mhz": freq, "throttled": throttled()}


def round_answer(call, msg: dict) -> dict:
    """One round: a fixed count (``iters``) or a duration (``min_s`` and ``min_calls``), samples of ``per`` calls."""
    per = max(1, int(msg.get("per", 1)))
    if msg.get("iters") is not None:
        lat = timed_calls(call, max(1, int(msg["iters"]) // per), per)
    else:
        lat = timed_for(call, float(msg.get("min_s", 1.0)), int(msg.get("min_calls", 1)), per,
                        msg.get("max_s"))
    return {"ok": True, "latencies_ms": lat, "per": per, **heat()}


def _decode(spec: dict):
    """``{"shape", "b64"}`` (little-endian float32 bytes, base64) -> a numpy array."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(spec["b64"]), dtype="<f4").reshape(spec["shape"]).astype(np.float32)


def check_answer(model: Loaded, msg: dict) -> dict:
    """Run the host's images through the model, one at a time; the first output of each comes back.

    ``msg["inputs"]``: one ``{"shape": [N, ...], "b64": ...}`` per model input, image k being ``[k]`` of
    each. Answer: ``{"ok", "n", "shape": [N, ...], "b64"}`` (float32, as sent), or ``ok: false`` with the
    reason; the runner goes on either way (timing does not depend on it).
    """
    import base64

    import numpy as np

    if model.infer is None:
        return {"ok": False, "error": f"--check: this runner cannot feed inputs to {model.runtime}"}
    try:
        stacked = [_decode(spec) for spec in msg["inputs"]]
        n = stacked[0].shape[0]
        outs = [np.asarray(model.infer([np.ascontiguousarray(a[k]) for a in stacked]), dtype=np.float32)
                for k in range(n)]
        logits = np.stack(outs).reshape(n, -1)
    except Exception as e:
        return {"ok": False, "error": f"--check: {model.runtime} failed on the host's inputs: {first_line(e)}"}
    return {"ok": True, "n": int(n), "shape": list(logits.shape),
            "b64": base64.b64encode(logits.astype("<f4").tobytes()).decode("ascii")}


# -- the protocol -----------------------------------------------------------------------------------

def send(out, obj: dict) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def serve(model: Loaded, profile: bool, out, inp, ready: dict | None = None, describe=device_info) -> int:
    """Answer round and finish commands for ``model`` until finish or end of input; returns the exit status.

    Args:
        model: the loaded model.
        profile: profile at finish.
        out, inp: the protocol streams.
        ready: extra fields for the ready line (the cooling wait).
        describe: returns the ``device`` dict (the eager worker adds its GPU).
    """
    send(out, {"ok": True, "runtime": model.runtime, "runtime_version": model.version,
               "runtime_note": model.note, "precision": model.precision, "input_shapes": model.input_shapes,
               "device": describe(), "import_rss_mb": model.import_rss_mb, "pid": os.getpid(), **(ready or {})})
    for line in inp:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            send(out, {"ok": False, "error": f"not a JSON command: {line.strip()[:80]}"})
            continue
        cmd = msg.get("cmd")
        try:
            if cmd == "round":
                send(out, round_answer(model.call, msg))
            elif cmd == "check":  # the host's inputs through the model: logits back (edgecnn bench --check)
                send(out, check_answer(model, msg))
            elif cmd == "warmup":  # until the latency settles, at most max_s seconds
                send(out, {"ok": True, **settle(model.call, float(msg.get("max_s", 10)))})
            elif cmd == "overhead":  # one ABBA pass of the harness-overhead check (the host repeats it)
                send(out, {"ok": True, "overhead_pct": harness_overhead_pct(
                    model.call, int(msg.get("iters", 20)), max(1, int(msg.get("per", 1))))})
            elif cmd == "finish":
                peak = rss_mb(peak=True)  # before profiling loads a second copy
                n = int(msg.get("overhead_iters", 20))  # 0: the host ran "overhead" passes itself
                overhead = harness_overhead_pct(model.call, n, max(1, int(msg.get("per", 1)))) if n else None
                prof = model.profile(int(msg.get("profile_iters", 10))) if profile else None
                send(out, {"ok": True, "peak_rss_mb": peak, "device": describe(), "overhead_pct": overhead,
                           "profile": prof})
                return 0
            else:
                send(out, {"ok": False, "error": f"unknown command {cmd!r}; expected round or finish"})
        except Exception as e:  # the runtime failed mid-run: tell the host, then stop
            send(out, {"ok": False, "error": f"{model.runtime} failed during {cmd}: {first_line(e)}"})
            return 1
    return 0


def protocol_streams():
    """(out, in) for the protocol: a private copy of stdout, and stdin.

    Runtimes print to stdout from C++ at times; pointing file descriptor 1 at
    stderr keeps those lines out of the protocol.
    """
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out, sys.stdin


def load(artifact: Path, threads: int, batch: int) -> Loaded:
    """Read the sidecar next to ``artifact`` and open it with its runtime.

    Raises:
        RunnerError: unknown suffix, missing or damaged sidecar, missing numpy or
            runtime, a file the runtime cannot load, or a batch the artifact cannot take.
    """
    runtime = RUNTIMES.get(artifact.suffix.lower())
    if runtime is None:
        raise RunnerError(f"{artifact.name}: not an exported model (expected {', '.join(RUNTIMES)})")
    if not artifact.is_file():
        raise RunnerError(f"{artifact}: no such file")
    side = artifact.with_name(artifact.name + ".json")
    try:
        sidecar = json.loads(side.read_text())
        sidecar["inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunnerError(f"{side.name}: missing or damaged sidecar; copy it next to {artifact.name}") from None
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise _missing("numpy") from None
    if threads < 1 or batch < 1:
        raise RunnerError(f"--threads {threads} --batch {batch}: both must be at least 1")
    return OPENERS[runtime](artifact, sidecar, threads, batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True, help=".pte, .xml or .onnx; its sidecar beside it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="per-operator profile at finish")
    parser.add_argument("--wait-cool", type=float, default=None, metavar="C",
                        help=f"before measuring, wait (at most {COOL_WAIT_MAX_S} s) until the CPU is below C degrees")
    args = parser.parse_args(argv)
    out, inp = protocol_streams()
    try:
        model = load(args.artifact, args.threads, args.batch)
    except RunnerError as e:
        send(out, {"ok": False, "error": str(e)})
        return 2
    except Exception as e:  # a runtime failing in a way nobody foresaw still ends in one line
        send(out, {"ok": False, "error": f"{RUNTIMES.get(args.artifact.suffix.lower(), 'runtime')} failed while "
                                         f"loading {args.artifact.name}: {first_line(e)}"})
        return 2
    ready = {"cool": wait_cool(args.wait_cool)} if args.wait_cool is not None else {}
    return serve(model, args.profile, out, inp, ready)


if __name__ == "__main__":
    sys.exit(main())
