"""Latency statistics, one helper for every timing path (bench rows local/ssh/adb, ``bench-train``).

numpy and the standard library only: no torch, so the report and the adb path
can use it without importing a model stack.

What a row says and why it can be trusted:

* **The median and its 95% interval.** Timings of one runtime are not
  independent: the machine drifts (heat, other load, frequency), so calls
  within a round resemble each other more than calls of different rounds.
  An interval computed as if every call were independent is far too narrow
  (two consecutive benches would routinely land outside each other's). So
  with three or more rounds the interval comes from a **two-stage bootstrap**:
  resample the rounds with replacement, then the calls inside each chosen
  round, and take the median of the pooled sample; the 2.5th and 97.5th
  percentiles of those medians are the interval. It widens when the rounds
  disagree and narrows with more rounds. With fewer than three rounds there
  is nothing to resample between, and the interval is the distribution-free
  **order-statistic interval** (the ranks come from Binomial(n, 0.5)), exact
  for independent calls whatever their distribution.
* **p90 and p99 with intervals.** Order-statistic intervals over all calls
  (Binomial(n, q) ranks). A tail percentile needs many calls: p99's interval
  only closes on both sides from about 300 calls, and is only tight from
  about a thousand; the row says so when it rests on fewer.
* **A ratio between two rows** (``ratio_ci``) combines both medians'
  intervals on the log scale (the delta method: half-widths add in
  quadrature), so it needs only the rows' fields and works on saved files.
* **Batched timing.** Calls shorter than about a millisecond are timed in
  batches of ``k`` consecutive calls with one clock read per batch; each
  sample is then the mean of ``k`` calls. The median of such means is the
  median of calls for any roughly symmetric spread; p90/p99 of means are
  *below* the tails of single calls, and the row says so.
* **Adaptive rounds** (``edgecnn bench --precision P``, ``sequential_ci``).
  Rounds are added until the interval is narrow enough, and deciding to stop
  when an interval first looks narrow is optional stopping: a plain 95%
  interval checked after every round covers less than 95% at the round it
  stops. So the interval is only looked at on a schedule fixed before the
  first round (``looks``: rounds 5, 8, 11, 17, 25, 38, ... about 50% apart,
  the last one at max rounds), and each of its K looks spends alpha / K (a
  Bonferroni split over the planned looks), so the interval at the stopping
  look covers with at least 95% by the union bound. A limit that stops a row
  between looks spends the share of the next look, which then never comes.
  At such levels a percentile bootstrap would need tens of thousands of
  resamples; instead the two-stage bootstrap gives the standard error of the
  log median, and the interval is ``median * exp(+-t * se)`` with Student's t
  on rounds - 1 degrees of freedom (rounds are the independent units).
  tests/test_precision.py checks the coverage by simulation from per-round
  data recorded on a 2-core VM.
* **The floor** (``latency_ms_floor``): the fastest sample of the run (one call, or the mean of a
  batch of calls), the minimum Chen and Revels (2016, BenchmarkTools.jl) report: on a shared machine the
  host's noise only adds time. On these VMs it comes in spells that slow most calls for seconds to
  minutes, yet leave a few fast calls now and then: in one bench of 7 December 2026 only 3 of 60 eager
  rounds held any call under 3.25 ms (the median of the next run's quietest round), and its lowest round
  median was 7.7% above that run's while its fastest call was 2.6% above. The lowest round median (the
  floor earlier that day) needs a whole quiet second; the fastest call a quiet few milliseconds. Over six
  benches back to back the fastest call of each row stayed within 2.6% (eager fp32), 1.8% and 0.6% (the
  INT8 rows), the lowest round within 7.7%, 3.4% and 2.3%; in the next six, on a busier host, the fastest
  call agreed on 6 of 9 pairs and the lowest round on 2 (docs/precision.md). The cost: it lies below the
  quiet machine's median by the spread of quiet calls (about 8% for the eager row there, 3-5% for the
  INT8 rows, 5-10% in the simulation), it drifts down slowly with the number of calls, and it carries no
  interval. A run that never meets a quiet moment still reads slow, and no figure over that run alone can
  tell. tests/test_precision.py simulates it. The bench keeps every row in the rounds until the last one
  stops (bench/api.py ``_rounds``), so a row's floor is taken over the same stretch of the host's time as
  the slowest row's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 0  # the same samples always give the same interval
P99_MIN_CALLS = 1000  # below this a p99 is flagged as resting on too few calls
P90_MIN_CALLS = 100


MIN_ROUNDS = 5  # adaptive rounds never stop before this: the between-round bootstrap needs some rounds
# The looks of adaptive rounds: 5, 8, 11, 17, 25, 38, 57 -> 60 (max rounds 60). About 50% apart: every planned
# look takes its share of alpha from all of them, and looks 25% apart (13 to 60) left the last interval 40% wider.
LOOK_GROWTH = 1.5


def looks(max_rounds: int) -> list[int]:
    """The rounds after which adaptive timing checks its intervals: ``MIN_ROUNDS`` first, then ~50% apart,
    the last at ``max_rounds`` (a last look within a quarter of it moves onto it)."""
    out, x = [], float(MIN_ROUNDS)
    while round(x) <= max_rounds:
        if not out or round(x) > out[-1]:
            out.append(round(x))
        x *= LOOK_GROWTH
    if not out:
        return [max_rounds]
    if out[-1] < max_rounds:
        if len(out) > 1 and max_rounds - out[-1] < 0.25 * out[-1]:
            out[-1] = max_rounds
        else:
            out.append(max_rounds)
    return out


def look_alpha(n_looks: int, confidence: float = CONFIDENCE) -> float:
    """The share of alpha each look of a schedule of ``n_looks`` spends: alpha / n_looks (they sum to alpha)."""
    return (1 - confidence) / max(1, n_looks)


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (numpy only: the CDF integrated on a fine grid; ~1e-4 absolute)."""
    return _t_quantile(round(p, 12), max(1, int(df)))


@functools.lru_cache(maxsize=256)
def _t_quantile(p: float, df: int) -> float:
    if p < 0.5:
        return -_t_quantile(1 - p, df)
    x = np.linspace(0.0, 200.0, 400_001)
    logpdf = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
              - (df + 1) / 2 * np.log1p(x * x / df))
    pdf = np.exp(logpdf)
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * (x[1] - x[0]))])
    return float(np.interp(p, cdf, x))


def bootstrap_log_se(rounds: Sequence[np.ndarray], reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> float:
    """Standard error of log(pooled median) by the two-stage bootstrap (rounds, then calls), vectorised.

    Scaled by sqrt(R / (R - 1)): the bootstrap's spread over R resampled rounds is that much too small.
    """
    rng = np.random.default_rng(seed)
    rs = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    n_r = len(rs)
    lens = np.array([len(r) for r in rs])
    width = int(lens.max())
    data = np.full((n_r, width), np.nan)
    for j, r in enumerate(rs):
        data[j, : len(r)] = r
    chunk = max(1, int(4e6 // (n_r * width)))  # resamples per step, so memory stays ~32 MB
    logs = []
    for start in range(0, reps, chunk):
        b = min(chunk, reps - start)
        pick = rng.integers(0, n_r, (b, n_r))  # rounds
        calls = (rng.random((b, n_r, width)) * lens[pick][..., None]).astype(np.int64)  # calls in each
        vals = data[pick[..., None], calls].reshape(b, -1)
        vals[(np.arange(width)[None, None, :] >= lens[pick][..., None]).reshape(b, -1)] = np.nan
        vals.sort(axis=1)  # NaNs (padding) sort last
        n = (lens[pick]).sum(axis=1)
        rows = np.arange(b)
        med = (vals[rows, (n - 1) // 2] + vals[rows, n // 2]) / 2
        logs.append(np.log(med))
    se = float(np.std(np.concatenate(logs), ddof=1))
    return se * math.sqrt(n_r / (n_r - 1)) if n_r > 1 else se


def sequential_ci(rounds: Sequence[np.ndarray], n_looks: int, confidence: float = CONFIDENCE,
                  reps: int = BOOTSTRAP_REPS) -> tuple[float, float, float]:
    """``(median, low, high)`` at a look of adaptive rounds whose schedule has ``n_looks`` looks
    (level 1 - ``look_alpha(n_looks)``)."""
    pooled = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds if len(r)])
    med = float(np.median(pooled))
    se = bootstrap_log_se(rounds, reps)
    t = t_quantile(1 - look_alpha(n_looks, confidence) / 2, len(rounds) - 1)
    return med, med * math.exp(-t * se), med * math.exp(t * se)


def binom_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` with P(X_(l) <= xi_q <= X_(u)) >= ``confidence`` for n independent samples.

    The number of samples below the true q-quantile is Binomial(n, q); ``l``
    is the largest rank with P(B <= l-1) <= alpha/2 and ``u`` the smallest with
    P(B >= u) <= alpha/2. ``l`` is 0 or ``u`` is n+1 when n is too small for
    that side to close (the caller then uses the extreme sample and says so).
    """
    alpha = 1 - confidence
    k = np.arange(n + 1)
    lgam = np.array([math.lgamma(i + 1) for i in k])
    logpmf = math.lgamma(n + 1) - lgam - lgam[::-1] + k * math.log(q) + (n - k) * math.log1p(-q)
    cdf = np.cumsum(np.exp(logpmf))  # cdf[j] = P(B <= j)
    # P(B <= l-1) <= alpha/2: the largest such l (l-1 indexes cdf).
    below = np.nonzero(cdf <= alpha / 2)[0]
    low = int(below[-1]) + 1 if below.size else 0
    # P(B >= u) = 1 - P(B <= u-1) <= alpha/2: the smallest such u.
    above = np.nonzero(1 - cdf <= alpha / 2)[0]
    high = int(above[0]) + 1 if above.size else n + 1
    return low, min(high, n + 1)


def quantile_ci(sorted_x: np.ndarray, q: float, confidence: float = CONFIDENCE) -> tuple[float, float, bool]:
    """Order-statistic interval of the q-quantile of sorted samples: ``(low, high, closed)``.

    ``closed`` is False when too few samples exist for one side to close; that
    side is then the extreme sample (an interval too narrow, flagged by the caller).
    """
    n = len(sorted_x)
    low, high = binom_ranks(n, q, confidence)
    closed = low >= 1 and high <= n
    return float(sorted_x[max(low, 1) - 1]), float(sorted_x[min(high, n) - 1]), closed


def bootstrap_median_ci(rounds: Sequence[np.ndarray], confidence: float = CONFIDENCE,
                        reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Two-stage bootstrap interval of the pooled median: resample rounds, then calls within each."""
    rng = np.random.default_rng(seed)
    rounds = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    medians = np.empty(reps)
    for i in range(reps):
        picked = np.bincount(rng.integers(0, len(rounds), len(rounds)), minlength=len(rounds))
        parts = [rounds[j][rng.integers(0, len(rounds[j]), len(rounds[j]) * c)] for j, c in enumerate(picked) if c]
        medians[i] = np.median(np.concatenate(parts))
    alpha = 1 - confidence
    low, high = np.quantile(medians, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def summarize(rounds: Sequence[Sequence[float]], calls_per_sample: int = 1, batch: int = 1,
              n_looks: int | None = None) -> dict:
    """The latency fields of a row from its samples (milliseconds), grouped by round.

    Args:
        rounds: one list of samples per round; a sample is one call's time, or
            the mean time of ``calls_per_sample`` consecutive calls.
        calls_per_sample: calls behind each sample (1: each call timed alone).
        batch: images per call, for the throughput.
        n_looks: adaptive rounds: the looks of the schedule this summary is one of (``sequential_ci``);
            None: a fixed number of rounds.

    Returns:
        ``latency_ms_{p50,p90,p99}`` with ``_ci_low``/``_ci_high``, ``latency_ms_floor``, ``latency_ms_{mean,min,std}``, ``cv``,
        ``throughput_ips``, ``calls``, ``samples``, ``rounds``, ``round_medians_ms`` (each round's median, in
        order: what any other estimator can be computed from afterwards), ``round_p50_spread_pct``, ``ci_method``,
        ``percentile_basis`` and ``stat_notes`` (a list of one-line cautions). Empty input gives {}.
    """
    rounds = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    if not rounds:
        return {}
    a = np.concatenate(rounds)
    s = np.sort(a)
    n = len(s)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(s, [50, 90, 99]))
    notes: list[str] = []
    lo50, hi50, method = _median_ci(rounds, s, n_looks, notes)
    # The pooled median is inside its interval by construction of a sane interval; guard rounding.
    lo50, hi50 = min(lo50, p50), max(hi50, p50)
    out = {"latency_ms_p50": p50, "latency_ms_p50_ci_low": lo50, "latency_ms_p50_ci_high": hi50}
    out["latency_ms_floor"] = float(s[0])  # the floor, the fastest sample: see the module's docstring
    calls = n * calls_per_sample
    for q, value, name, need in ((0.9, p90, "p90", P90_MIN_CALLS), (0.99, p99, "p99", P99_MIN_CALLS)):
        low, high, closed = quantile_ci(s, q)
        out[f"latency_ms_{name}"] = value
        out[f"latency_ms_{name}_ci_low"] = min(low, value)
        out[f"latency_ms_{name}_ci_high"] = max(high, value)
        if n < need:
            notes.append(f"{name} rests on {n} samples (needs about {need})"
                         + ("; its interval is open" if not closed else ""))
    spread = None
    medians = [float(np.median(r)) for r in rounds]
    if len(rounds) > 1 and p50:
        spread = (max(medians) - min(medians)) / p50 * 100
    basis = "calls" if calls_per_sample == 1 else f"means of {calls_per_sample} consecutive calls"
    if calls_per_sample > 1:
        notes.append(f"timed in batches of {calls_per_sample} calls: p90/p99 are of batch means "
                     "(single calls' tails are higher)")
    out.update(
        latency_ms_mean=mean, latency_ms_min=float(s[0]), latency_ms_std=std, cv=std / mean if mean else None,
        throughput_ips=batch * 1000.0 / mean if mean else None, calls=calls, samples=n, rounds=len(rounds),
        round_medians_ms=[round(m, 6) for m in medians], round_p50_spread_pct=spread, ci_method=method, percentile_basis=basis, stat_notes=notes,
    )
    return out


def _median_ci(rounds: list[np.ndarray], s: np.ndarray, n_looks: int | None, notes: list[str]) -> tuple:
    """``(low, high, method)`` of the pooled median: sequential at a look of adaptive rounds, the two-stage
    bootstrap over three or more fixed rounds, else order statistics (a note where it cannot close)."""
    if n_looks is not None and len(rounds) == 2:
        # Student's t on one degree of freedom at a look's level is tens to hundreds: two rounds a time budget
        # stopped gave "±3244729" in the demo. Over calls instead, said to be narrower than the truth.
        notes.append("median from 2 rounds (a limit stopped them): interval over calls, blind to round-to-round "
                     "drift")
    elif n_looks is not None and len(rounds) >= 3:
        # A limit that stopped the rows before the first look: nothing was chosen by its interval, so no alpha
        # was spent and the fixed-sample level holds (at a look's, 3 rounds of a slow host gave "±25" on 2.7).
        early = len(rounds) < MIN_ROUNDS
        _, low, high = sequential_ci(rounds, 1 if early else n_looks)
        if early:
            return low, high, (f"adaptive rounds stopped by a limit before the first look (round {MIN_ROUNDS}): "
                               "two-stage bootstrap SE of the log median, Student's t on rounds-1 at the full level")
        return low, high, (f"sequential over adaptive rounds (looks at rounds 5, 8, 11, 17, ..., each of the "
                           f"{n_looks} spends alpha/{n_looks}): two-stage bootstrap SE of the log median, "
                           "Student's t on rounds-1")
    if len(rounds) >= 3:
        low, high = bootstrap_median_ci(rounds)
        return low, high, f"two-stage bootstrap over {len(rounds)} rounds"
    low, high, closed = quantile_ci(s, 0.5)
    if not closed:
        notes.append(f"median from {len(s)} samples: interval cannot close")
    return low, high, "order statistics over calls (assumes independent calls)"


def half_width_pct(row: dict) -> float | None:
    """Half the width of the median's interval, in percent of the median."""
    p50, lo, hi = row.get("latency_ms_p50"), row.get("latency_ms_p50_ci_low"), row.get("latency_ms_p50_ci_high")
    if not p50 or lo is None or hi is None:
        return None
    return (hi - lo) / 2 / p50 * 100


def _log_se(p50: float, low: float, high: float, confidence: float) -> float:
    z = _z(confidence)
    return (math.log(max(high, 1e-12)) - math.log(max(low, 1e-12))) / (2 * z)


def _z(confidence: float) -> float:
    """The two-sided standard normal quantile (1.96 for 95%)."""
    return NormalDist().inv_cdf((1 + confidence) / 2)


def ratio_ci(row: dict, ref: dict, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """``(ratio, low, high)`` of ``row``'s median over ``ref``'s, or None where either lacks an interval.

    Each median's interval gives a standard error on the log scale; the two
    are independent measurements, so the log ratio's error is their
    quadrature sum.
    """
    keys = ("latency_ms_p50", "latency_ms_p50_ci_low", "latency_ms_p50_ci_high")
    if any(not row.get(k) for k in keys) or any(not ref.get(k) for k in keys):
        return None
    ratio = row["latency_ms_p50"] / ref["latency_ms_p50"]
    if row is ref:
        return ratio, ratio, ratio
    se = math.hypot(_log_se(*(row[k] for k in keys), confidence), _log_se(*(ref[k] for k in keys), confidence))
    z = _z(confidence)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


def overlap(a: dict, b: dict) -> bool:
    """Whether two rows' median intervals overlap (then they are not distinguishable)."""
    keys = ("latency_ms_p50_ci_low", "latency_ms_p50_ci_high")
    if any(a.get(k) is None for k in keys) or any(b.get(k) is None for k in keys):
        return False
    return a["latency_ms_p50_ci_low"] <= b["latency_ms_p50_ci_high"] and b["latency_ms_p50_ci_low"] <= \
        a["latency_ms_p50_ci_high"]


def wilson(correct: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``correct``/``n`` (accuracy over n validation images)."""
    if not n:
        return None
    z = _z(confidence)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
