"""How well a row uses the hardware: achieved GMAC/s and its fraction of the CPU's arithmetic peak.

peak = MACs per cycle per core (for the row's precision, from the ISA the
device reports) x cores used (min(threads, cores)) x clock (the maximum from
cpufreq where readable, else /proc/cpuinfo's "cpu MHz", which a VM reports
as the nominal clock). It is an upper bound no runtime reaches: memory,
im2col/packing, non-MAC ops (softmax, norms) and the Python call all cost
time. A fraction near 1 or above means the peak was taken from the wrong
table row (it says which in ``peak_isa``); "unknown" (None) is said rather
than guessed where the core is not in the table.

MACs per cycle per core, the best of the vector units the ISA has, by precision:

=========================  =====  ====================================================================
ISA (/proc/cpuinfo flag)    MAC/c  why (instruction, width, issue rate)
=========================  =====  ====================================================================
fp32, avx512f (Intel)       32     2 x 512-bit FMA ports x 16 lanes (Intel optimization manual, Xeon SP)
fp32, avx512f (AMD Zen 4)   16     512-bit ops run on 256-bit pipes: 2 x 8 lanes (AMD Zen 4 guide)
fp32, fma + avx2            16     2 x 256-bit FMA ports x 8 lanes (Haswell and later, Zen 2/3)
bf16, amx_bf16              512    AMX TMUL: 1024 bf16 FLOP... per cycle per core = 512 MACs (Intel AMX)
bf16, avx512_bf16 (Intel)   64     VDPBF16PS: 32 MACs per 512-bit op, 2 ports
int8, amx_int8              1024   AMX TMUL: 2048 int8 ops per cycle per core (Intel AMX overview)
int8, avx512_vnni (Intel)   128    VPDPBUSD: 64 u8xs8 MACs per 512-bit op, 2 ports
int8, avx512_vnni (Zen 4)   64     the same op on 256-bit pipes
int8, avx_vnni              64     VPDPBUSD ymm: 32 MACs, 2 ports
int8, avx2 (no VNNI)        32     VPMADDUBSW+VPMADDWD+VPADDD for 32 MACs; 2 of the 3 share the 2 multiply ports
fp32, asimd (big ARM core)  8      2 x 128-bit FMLA pipes x 4 lanes (Cortex-A72/A76/A78/X software guides)
int8, i8mm                  64     SMMLA: 32 MACs per 128-bit op, 2 pipes
int8, asimddp               32     SDOT: 16 MACs per 128-bit op, 2 pipes
int8, asimd only            16     SMLAL/SMLAL2 widening multiply-accumulate: 8 lanes, 2 pipes
=========================  =====  ====================================================================

Little ARM cores (Cortex-A53/A55/A35/A510/A520: in-order, narrower pipes)
and unknown x86 vendors give None. So does a row from an emulated device
(qemu's speed has nothing to do with the table).
"""

from __future__ import annotations

LITTLE_ARM = ("Cortex-A53", "Cortex-A55", "Cortex-A35", "Cortex-A510", "Cortex-A520")


def _amd_half_width(row: dict) -> bool:
    """AMD before Zen 5 executes 512-bit ops on 256-bit pipes (family 25 = Zen 3/Zen 4)."""
    return (row.get("cpu_vendor") == "AuthenticAMD" and row.get("cpu_family") is not None
            and int(row["cpu_family"]) <= 25)


def macs_per_cycle(row: dict) -> tuple[int, str] | None:
    """``(MACs per cycle per core, ISA name)`` for the row's precision on its device, or None if unknown."""
    flags = set(row.get("isa") or [])
    precision = (row.get("precision") or "").lower()
    x86 = row.get("cpu_vendor") in ("GenuineIntel", "AuthenticAMD")
    if flags & {"asimd"}:  # ARM
        model = row.get("cpu_model") or ""
        if any(little in model for little in LITTLE_ARM) or "Cortex" not in model:
            return None
        if precision == "int8":
            for flag, macs in (("i8mm", 64), ("asimddp", 32), ("asimd", 16)):
                if flag in flags:
                    return macs, flag
        if precision == "fp32":
            return 8, "asimd"
        return None
    if not x86:
        return None
    half = _amd_half_width(row)
    if precision == "int8":
        if "amx_int8" in flags:
            return 1024, "amx_int8"
        if "avx512_vnni" in flags:
            return (64, "avx512_vnni (256-bit pipes)") if half else (128, "avx512_vnni")
        if "avx_vnni" in flags:
            return 64, "avx_vnni"
        if "avx2" in flags:
            return 32, "avx2 (no VNNI)"
        return None
    if precision == "bf16":
        if "amx_bf16" in flags:
            return 512, "amx_bf16"
        if "avx512_bf16" in flags:
            return (32, "avx512_bf16 (256-bit pipes)") if half else (64, "avx512_bf16")
        return None
    if precision == "fp32":
        if "avx512f" in flags:
            return (16, "avx512f (256-bit pipes)") if half else (32, "avx512f")
        if {"fma", "avx2"} <= flags:
            return 16, "fma+avx2"
    return None


def utilisation(row: dict, macs: int | None) -> dict:
    """``gmacs_per_s``, ``peak_gmacs_per_s``, ``peak_fraction``, ``peak_isa`` of a row (None where unknown).

    Args:
        row: a bench row with its latency, precision, threads and device fields.
        macs: multiply-accumulates of one image through the model.
    """
    out = {"macs": macs, "gmacs_per_s": None, "peak_gmacs_per_s": None, "peak_fraction": None, "peak_isa": None}
    p50 = row.get("latency_ms_p50")
    if not macs or not p50:
        return out
    out["gmacs_per_s"] = macs * (row.get("batch") or 1) / (p50 / 1000) / 1e9
    if row.get("emulated") or row.get("kind") == "eager" and row.get("device") == "cuda":
        return out
    table = macs_per_cycle(row)
    mhz = row.get("max_freq_mhz") or row.get("freq_mhz")
    cores = min(row.get("threads") or 1, row.get("cores") or 1)
    if table is None or not mhz:
        return out
    per_cycle, name = table
    peak = per_cycle * cores * mhz * 1e6 / 1e9
    out.update(peak_gmacs_per_s=peak, peak_fraction=out["gmacs_per_s"] / peak, peak_isa=name)
    return out
