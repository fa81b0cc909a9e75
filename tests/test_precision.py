"""Adaptive rounds (``edgecnn bench --precision``): the sequential interval keeps its coverage when the
number of rounds depends on the data, checked by simulation from per-round data recorded on a 2-core VM.

Pure numpy and about ten seconds: the CI suite runs it on every push.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgecnn.core import stats

RECORDED = Path(__file__).parent / "data" / "bench_rounds.json"
SIMS = 150  # simulated benches per recorded row
MAX_ROUNDS = 30
CALLS = 15  # samples per simulated round (the recorded rounds are subsampled to this, for speed)
REPS = 100  # bootstrap resamples per look (the bench uses 1000)


def _process(rounds: list[list[float]], rng: np.random.Generator):
    """A generator of rounds like the recorded ones, with drift and outliers added.

    Round levels: the recorded medians' level times exp(AR(1) drift) whose spread is the recorded rounds'
    (at least 1%), one round in 20 is 30% slow (another job), and one call in 100 is 3x slow (a preemption).
    Inside a round: the recorded calls relative to their round's median.
    """
    med = np.array([np.median(r) for r in rounds])
    level = float(np.median(med))
    sd = max(float(np.std(np.log(med), ddof=1)), 0.01)
    resid = np.concatenate([np.asarray(r) / m for r, m in zip(rounds, med)])
    phi = 0.5

    def draw(n_rounds: int, calls: int) -> np.ndarray:
        z = np.empty(n_rounds)
        z[0] = rng.normal(0, sd)
        for i in range(1, n_rounds):
            z[i] = phi * z[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi * phi))
        busy = np.where(rng.random(n_rounds) < 0.05, 1.3, 1.0)
        x = level * np.exp(z)[:, None] * busy[:, None] * rng.choice(resid, (n_rounds, calls))
        return np.where(rng.random(x.shape) < 0.01, 3 * x, x)

    # The target precision: about what look 4 (round 10) reaches, so that benches stop at different looks
    # (the optional stopping under test), not all at the first or the last.
    return draw, 120 * sd


def _one_bench(draw, schedule: list[int], precision: float) -> tuple[float, float, int]:
    """Rounds added until the look's interval is within ``precision`` % (or MAX_ROUNDS): ``(low, high, rounds)``."""
    data = draw(MAX_ROUNDS, CALLS)
    for r in schedule:
        _, low, high = stats.sequential_ci(list(data[:r]), len(schedule), reps=REPS)
        med = float(np.median(data[:r]))
        if (high - low) / 2 / med * 100 <= precision or r == schedule[-1]:
            return low, high, r
    raise AssertionError("the schedule ends at MAX_ROUNDS")


def coverage(seed: int = 0) -> dict[str, tuple[float, float]]:
    """Per recorded row: (share of simulated benches whose interval covers the long-run median, mean rounds)."""
    doc = json.loads(RECORDED.read_text())
    rng = np.random.default_rng(seed)
    schedule = stats.looks(MAX_ROUNDS)
    out = {}
    for name, rounds in doc["rows"].items():
        draw, precision = _process(rounds, rng)
        truth = float(np.median(draw(20_000, CALLS)))  # the long-run median of the process
        hits, used = 0, []
        for _ in range(SIMS):
            low, high, r = _one_bench(draw, schedule, precision)
            hits += low <= truth <= high
            used.append(r)
        out[name] = (hits / SIMS, float(np.mean(used)))
    return out


def test_looks_and_alpha_spending():
    assert stats.looks(30) == [5, 8, 11, 17, 30]  # 25 moves onto max rounds (within a quarter of it)
    assert stats.looks(60) == [5, 8, 11, 17, 25, 38, 60]
    assert stats.looks(40) == [5, 8, 11, 17, 25, 40]
    assert stats.looks(5) == [5] and stats.looks(3) == [3]
    n = len(stats.looks(60))
    assert sum(stats.look_alpha(n) for _ in range(n)) == pytest.approx(0.05)  # the planned looks share alpha
    # Student's t from numpy alone matches the tables.
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.776, abs=2e-3)
    assert stats.t_quantile(0.975, 29) == pytest.approx(2.045, abs=2e-3)
    assert stats.t_quantile(0.9995, 9) == pytest.approx(4.781, abs=5e-3)


def test_sequential_interval_covers_under_optional_stopping():
    """Stopping when the interval first looks narrow biases a plain interval; the sequential one holds 95%."""
    result = coverage()
    for name, (cov, rounds) in result.items():
        print(f"{name}: coverage {cov:.1%} over {SIMS} adaptive benches, {rounds:.1f} rounds on average")
        assert cov >= 0.95, (name, cov)
    # The benches did stop at different looks (the point of the check), not all at the first or the last.
    assert any(5 < r < MAX_ROUNDS for _, r in result.values())


def test_plain_interval_checked_every_round_undercovers():
    """The control: the fixed-rounds 95% interval looked at after every round, stopping when narrow enough,
    covers less than the sequential one on the same data (the reason for the sequential scheme)."""
    doc = json.loads(RECORDED.read_text())
    rng = np.random.default_rng(1)
    name, rounds = next(iter(doc["rows"].items()))
    draw, precision = _process(rounds, rng)
    truth = float(np.median(draw(20_000, CALLS)))
    plain = seq = 0
    for _ in range(60):
        data = draw(MAX_ROUNDS, CALLS)
        for r in range(5, MAX_ROUNDS + 1):
            med = float(np.median(data[:r]))
            se = stats.bootstrap_log_se(list(data[:r]), reps=REPS)
            half = stats.t_quantile(0.975, r - 1) * se
            if half * 100 <= precision or r == MAX_ROUNDS:
                plain += med * np.exp(-half) <= truth <= med * np.exp(half)
                break
        low, high, _ = _one_bench(lambda n, c, d=data: d, stats.looks(MAX_ROUNDS), precision)
        seq += low <= truth <= high
    print(f"{name}: stopping when first narrow, the plain 95% interval covered {plain / 60:.0%}, "
          f"the sequential one {seq / 60:.0%}")
    assert seq >= plain


class _Stub:
    """A worker that answers rounds with draws around ``ms`` (spread ``sd``), as a runner process would."""

    def __init__(self, ms: float, sd: float, seed: int):
        self.ms, self.sd, self.rng = ms, sd, np.random.default_rng(seed)

    def ask(self, message: dict, timeout: float, doing: str) -> dict:
        level = self.ms * np.exp(self.rng.normal(0, self.sd))
        return {"ok": True, "latencies_ms": list(level * self.rng.lognormal(0, 0.05, 30))}


def _jobs(*specs):
    from edgecnn.bench.api import Job

    jobs = []
    for i, (ms, sd) in enumerate(specs):
        job = Job(row={"error": None, "name": f"r{i}"}, start=None)
        job.worker = _Stub(ms, sd, i)
        jobs.append(job)
    return jobs


def test_adaptive_rounds_stop_on_precision_and_limits(monkeypatch):
    from edgecnn.bench import api

    monkeypatch.setattr(api, "SETTLE_S", 0.0)
    plan = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=5.0, max_time=600)
    quiet, noisy = _jobs((1.0, 0.002), (1.0, 0.3))
    api._rounds([quiet, noisy], plan, 30)
    # The quiet row stopped at the first look and was timed on beside the noisy one (one stretch of the host's
    # time for both floors), keeping its look and its stop.
    assert quiet.stopped_by == "precision" and len(quiet.rounds) == 40 and quiet.look == 1
    assert noisy.stopped_by == "max rounds" and len(noisy.rounds) == 40
    # With a time budget a stopped row leaves the rounds: the budget is for the rows still going.
    budget = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=5.0, max_time=600, time_left=600)
    quiet, noisy = _jobs((1.0, 0.002), (1.0, 0.3))
    api._rounds([quiet, noisy], budget, 30)
    assert quiet.stopped_by == "precision" and len(quiet.rounds) == 5 and len(noisy.rounds) == 40
    # The last look is at max rounds: the limit's interval is the schedule's last look, alpha not spent twice.
    assert noisy.look == len(stats.looks(40))
    # Stopped by max time between looks: the interval spends the next planned look's share.
    timed = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=3.0, max_time=0.0)
    (late,) = _jobs((1.0, 0.3))
    api._rounds([late], timed, 30)
    assert late.stopped_by == "max time" and len(late.rounds) == 1 and late.look == 1 < len(stats.looks(40))
    # --rounds N: exactly N, no looks.
    fixed = api.Plan(None, None, 7, 0.01, 0.0)
    (job,) = _jobs((1.0, 0.3))
    api._rounds([job], fixed, 30)
    assert len(job.rounds) == 7 and job.stopped_by is None and job.look is None


class _Lines:
    """Stands for the bench's Progress: keeps every text it was given."""

    def __init__(self):
        self.texts: list[str] = []

    def update(self, text: str) -> None:
        self.texts.append(text)


def test_progress_shows_each_rows_current_plus_minus(monkeypatch):
    from edgecnn.bench import api

    monkeypatch.setattr(api, "SETTLE_S", 0.0)
    # One quiet row stops at its first look: the line was drawn only before each round, so the look that ended
    # the rounds was never shown and the row read "± at the first look" to the end.
    plan = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=5.0, max_time=600)
    (quiet,) = _jobs((1.0, 0.002))
    lines = _Lines()
    api._rounds([quiet], plan, 30, lines)
    assert quiet.stopped_by == "precision" and len(quiet.rounds) == 5
    assert "± at the first look" in lines.texts[0]
    last = lines.texts[-1].splitlines()[1]
    half = (quiet.ci[2] - quiet.ci[1]) / 2 / quiet.ci[0] * 100
    assert last.endswith(f"5 rounds, ±{half:.1f}% at round 5, stopped: precision"), last
    # Two rows: each look's ± shows right after that look, not one round later.
    quiet, noisy = _jobs((1.0, 0.002), (1.0, 0.3))
    lines = _Lines()
    api._rounds([quiet, noisy], plan, 30, lines)
    looks = stats.looks(40)
    for text in lines.texts:
        head, q, n = text.splitlines()
        # Rounds every row has finished (both are timed to the limit, the quiet one past its stop): a line drawn
        # between two rows' turns in a round comes before that round's look.
        done = min(int(q.split()[1]), int(n.split()[1]))
        if done >= looks[0]:  # once a look has passed, both rows show a ± at the latest look reached
            latest = max(x for x in looks if x <= done)
            assert "±" in q and "at round 5" in q and f"at round {latest}," in n + ",", text
        else:
            assert "± at the first look" in q and "± at the first look" in n
        # A row stopped on its precision while another goes on is still timed: it says so, not "stopped".
        assert "stopped: precision" not in q or "stopped:" in n, text
    assert any(t.splitlines()[1].endswith("precise: timed on for the floor") for t in lines.texts)
    assert lines.texts[-1].splitlines()[1].endswith("stopped: precision")
    half = (noisy.ci[2] - noisy.ci[1]) / 2 / noisy.ci[0] * 100
    assert lines.texts[-1].splitlines()[2].endswith(f"40 rounds, ±{half:.1f}% at round 40, stopped: max rounds")
    # A row a limit stops before its first look has no ± to show, and says so.
    timed = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=3.0, max_time=0.0)
    (late,) = _jobs((1.0, 0.3))
    api._rounds([late], timed, 30, lines)
    assert late.stopped_by == "max time"
    assert lines.texts[-1].splitlines()[1].endswith("1 rounds, no ±, stopped: max time")


def test_budget_decides_rows(monkeypatch):
    from edgecnn.bench import api

    monkeypatch.setattr(api, "SETTLE_S", 0.0)
    plan = api.Plan(None, None, 60, 0.01, 0.0, adaptive=True, precision=0.1, max_time=600, budget_ms=1.0)
    above, below, near = _jobs((3.0, 0.05), (0.3, 0.05), (1.0, 0.05))
    api._rounds([above, below, near], plan, 30)
    assert above.stopped_by == "above budget" and len(above.rounds) == 5
    # Below the budget and apart from the other in-budget rows: ranked, so it stops though not within 0.1%.
    assert below.stopped_by == "within budget" and len(below.rounds) == 5
    assert near.stopped_by == "max rounds"  # its interval straddles the budget: timed to the limit


class _OverheadStub:
    """A worker whose ``overhead`` passes read ``figures`` in turn, each taking ``pass_s`` seconds."""

    def __init__(self, figures, pass_s: float):
        self.figures, self.pass_s, self.asked = list(figures), pass_s, 0

    def ask(self, message: dict, timeout: float, doing: str) -> dict:
        assert message["cmd"] == "overhead"
        time.sleep(self.pass_s)
        self.asked += 1
        return {"ok": True, "overhead_pct": self.figures[self.asked - 1]}


def _overhead_job(figures, pass_s: float, timed_s: float):
    from edgecnn.bench.api import Job

    job = Job(row={"error": None, "name": "r"}, start=None, call_s=1e-4, timed_s=timed_s)
    job.worker = _OverheadStub(figures, pass_s)
    return job


def test_overhead_check_stops_when_judged_when_noisy_and_when_it_outgrows_the_rounds():
    from edgecnn.bench import api

    steady = _overhead_job([0.1, 0.2, 0.15, 9, 9, 9, 9, 9], 0.0, timed_s=60)
    api._overhead(steady, 30)  # three close passes: the interval is narrow, judged
    assert steady.worker.asked == api.OVERHEAD_MIN_PASSES and steady.row["harness_overhead_judged"] is True
    assert steady.row["harness_overhead_ci_low"] < 0.15 < steady.row["harness_overhead_ci_high"]
    noisy = _overhead_job([0, 6, -3, 5, -4, 7, 1, -2], 0.0, timed_s=60)
    api._overhead(noisy, 30)  # never narrow: every pass runs, reported with its interval, not judged
    assert noisy.worker.asked == api.OVERHEAD_MAX_PASSES and noisy.row["harness_overhead_judged"] is False
    assert noisy.row["harness_overhead_ci_high"] - noisy.row["harness_overhead_ci_low"] > 2 * api.OVERHEAD_HALF_PP
    short = _overhead_job([0.1, 0.2, 0.15], 0.05, timed_s=0.01)
    api._overhead(short, 30)  # rounds of 10 ms: one 50 ms pass already cost more, so one pass and no interval
    assert short.worker.asked == 1 and short.row["harness_overhead_pct"] == 0.1
    assert short.row["harness_overhead_ci_low"] is None and short.row["harness_overhead_judged"] is False
    assert [j.row["harness_overhead_stopped_by"] for j in (steady, noisy, short)] == \
        ["judged", "max passes", "rounds' time"]


def test_overhead_check_respects_the_time_budget(monkeypatch):
    from edgecnn.bench import api
    from edgecnn.bench.console import _overhead_part

    # No time left: not even the first pass runs (it used to, always: a bench overran its budget by a pass a row).
    spent = _overhead_job([0.1, 0.2, 0.15], 0.0, timed_s=60)
    api._overhead(spent, 30, deadline=time.monotonic())
    assert spent.worker.asked == 0 and spent.row.get("harness_overhead_pct") is None
    assert spent.row["harness_overhead_judged"] is False and spent.row["harness_overhead_stopped_by"] == "time budget"
    # Less time left than a pass is estimated to take (2n calls of the row's call time: about 1 s here): skipped too.
    tight = _overhead_job([0.1, 0.2, 0.15], 0.0, timed_s=60)
    api._overhead(tight, 30, deadline=time.monotonic() + 0.5)
    assert tight.worker.asked == 0 and tight.row["harness_overhead_stopped_by"] == "time budget"
    row = {"harness_overhead_pct": None, "harness_overhead_stopped_by": "time budget"}
    assert _overhead_part([row]) == "harness overhead vs a plain loop: not judged: no time left in the budget"
    # Passes of 0.1 s estimated at 0.2 s (short blocks): they run while the time left holds one, measured from the
    # first pass on (about five fit here), and the check ends within the budget, reported as stopped by it.
    monkeypatch.setattr(api, "OVERHEAD_BLOCK_S", 0.025)
    noisy = _overhead_job([0, 6, -3, 5, -4, 7, 1, -2], 0.1, timed_s=60)
    deadline = time.monotonic() + 0.55
    api._overhead(noisy, 30, deadline=deadline)
    assert time.monotonic() < deadline + 0.1  # never a whole pass past it (the old check ran one after it)
    assert 1 <= noisy.worker.asked < api.OVERHEAD_MAX_PASSES
    assert noisy.row["harness_overhead_stopped_by"] == "time budget" and noisy.row["harness_overhead_judged"] is False
    assert noisy.row["harness_overhead_pct"] is not None
    assert _overhead_part([noisy.row]).endswith("not judged: no time left in the budget)")
    # A budget with room changes nothing: three close passes, judged.
    roomy = _overhead_job([0.1, 0.2, 0.15, 9, 9], 0.0, timed_s=60)
    api._overhead(roomy, 30, deadline=time.monotonic() + 60)
    assert roomy.worker.asked == api.OVERHEAD_MIN_PASSES and roomy.row["harness_overhead_judged"] is True


# -- the floor (latency_ms_floor): what survives the host's noise ------------------------------------------------
# The recorded rounds above come from a busy VM: their spread is mostly the host's noise, so they cannot stand for a
# quiet machine. The quiet process here is stated instead: the recorded row's level, round-to-round drift of
# QUIET_SD (AR(1), phi 0.5, as above; about what the quiet Zen 3 benches showed: round medians 4-6% apart over 5-8
# rounds), calls around their round's level with the shape of the quietest rounds recorded on 7 December 2026 (a
# sharp lower edge about 5% below the round's median, a tail to the right: 0.95 + 0.05 * Gamma(2, 0.6), 5th
# percentile 0.96, 95th 1.14; a deterministic computation has a fastest time, noise only adds) and one in 100 3x
# slow. The host's noise is then added on top, never subtracted (Chen and Revels 2016): bursts that slow the
# calls of a round by 5-60% of the level.
QUIET_SD = 0.02
FLOOR_SIMS = 100
CALLS_FLOOR = 240  # samples per simulated round: what a real round of the eager row holds (250-1100 in the INT8 rows)
NOISE = {  # name: (chance a round starts a burst, chance it goes on into the next round, share of its calls spared)
    "quiet": (0.0, 0.0, 0.0),
    "bursts in 1 round of 4": (0.25, 0.0, 0.0),
    "episodes of ~3 rounds": (0.15, 0.6, 0.0),
    # The pairs of 7 December 2026 (docs/precision.md): slow spells of about 20 rounds, half the time. A run that
    # begins in one and stops before it ends meets no quiet call: no figure of that run alone can tell.
    "spells of ~20 rounds, every call slowed": (0.05, 0.95, 0.0),
    # What the raw calls of that afternoon showed: spells spare a few calls (3 of 60 rounds of one run held one).
    "spells of ~20 rounds, a few calls spared": (0.05, 0.95, 0.01),
    # ... and spells that outlast a bench (three quarters of the time slow, ~60 rounds at a stretch).
    "long spells, a few calls spared": (0.05, 0.983, 0.01),
}
UNTELLABLE = "spells of ~20 rounds, every call slowed"


def _quiet_plus_noise(level: float, start: float, stay: float, spared: float, rng: np.random.Generator):
    phi = 0.5

    def draw(n_rounds: int, calls: int, noise: bool = True) -> np.ndarray:
        z = np.empty(n_rounds)
        z[0] = rng.normal(0, QUIET_SD)
        for i in range(1, n_rounds):
            z[i] = phi * z[i - 1] + rng.normal(0, QUIET_SD * np.sqrt(1 - phi * phi))
        x = level * np.exp(z)[:, None] * (0.95 + 0.05 * rng.gamma(2.0, 0.6, (n_rounds, calls)))
        x = np.where(rng.random(x.shape) < 0.01, 3 * x, x)
        if noise:
            burst, on = np.zeros(n_rounds, bool), rng.random() < start / (start + 1 - stay + 1e-12)
            for i in range(n_rounds):
                on = rng.random() < (stay if on else start)
                burst[i] = on
            slow = np.where(burst, rng.uniform(0.05, 0.6, n_rounds), 0.0)
            hit = rng.random(x.shape) >= spared
            x = x + level * slow[:, None] * rng.uniform(0.5, 1.5, x.shape) * hit
        return x

    return draw


def floor_simulation(seed: int = 0) -> dict[str, dict]:
    """Per noise model, over pairs of runs (adaptive rounds stopping on the median at +-3%): how often two runs'
    floors (the fastest sample) agree within 5%, against the lowest round median and the lower quartile of the
    round medians (the floors before), and where the floor lies against the quiet process's median (its 5th and
    95th percentiles over the runs)."""
    level = float(np.median([np.median(r) for r in next(iter(json.loads(RECORDED.read_text())["rows"].values()))]))
    schedule = stats.looks(MAX_ROUNDS)
    out = {}
    for name, (start, stay, spared) in NOISE.items():
        rng = np.random.default_rng(seed)
        draw = _quiet_plus_noise(level, start, stay, spared, rng)
        quiet_median = float(np.median(draw(5_000, CALLS_FLOOR, noise=False)))
        agree = {"floor": 0, "lowest round": 0, "q25": 0, "median": 0}
        rounds, vs_quiet = [], []
        for _ in range(FLOOR_SIMS):
            figs: dict[str, list[float]] = {k: [] for k in agree}
            for _run in range(2):
                data = draw(MAX_ROUNDS, CALLS_FLOOR)
                _, _, r = _one_bench(lambda n, c, d=data: d[:, ::16], schedule, 3.0)  # looks on every 16th, for speed
                medians = np.median(data[:r], axis=1)
                figs["floor"].append(float(data[:r].min()))  # summarize's floor (tested below)
                figs["lowest round"].append(float(medians.min()))
                figs["q25"].append(float(np.quantile(medians, 0.25)))
                figs["median"].append(float(np.median(data[:r])))
                rounds.append(r)
                vs_quiet.append(figs["floor"][-1] / quiet_median)
            for k, (a, b) in figs.items():
                agree[k] += abs(b / a - 1) <= 0.05
        low, high = np.quantile(vs_quiet, [0.05, 0.95])
        out[name] = {"agree_5pct": {k: v / FLOOR_SIMS for k, v in agree.items()}, "rounds": float(np.mean(rounds)),
                     "vs_quiet_median": (float(low), float(high))}
    return out


def test_floor_agrees_between_runs_and_lies_below_the_quiet_machine():
    """Two runs' floors agree within 5% (the issue's criterion) under every noise model, spells that outlast a
    bench included, where the pooled medians often do not; and the floor lies below the quiet machine's median
    by about the spread of its quiet calls (what it costs)."""
    result = floor_simulation()
    for name, r in result.items():
        a = r["agree_5pct"]
        print(f"{name}: two runs within 5%: floor {a['floor']:.0%}, lowest round {a['lowest round']:.0%}, lower "
              f"quartile {a['q25']:.0%}, median {a['median']:.0%}; {r['rounds']:.1f} rounds; floor = "
              f"{r['vs_quiet_median'][0]:.3f}-{r['vs_quiet_median'][1]:.3f} x quiet median (5th-95th percentile)")
        assert a["floor"] >= max(a.values()) - 0.03, (name, r)  # no other figure does better
        if name != UNTELLABLE:
            assert a["floor"] >= 0.95, (name, r)
            assert 0.85 < r["vs_quiet_median"][0] and r["vs_quiet_median"][1] < 0.97, (name, r)
    # The noise is strong enough to matter: without it the medians agree, with it they often do not; spells
    # defeat the lower quartile, and spells that outlast a bench the lowest round median, not the fastest sample.
    assert result["quiet"]["agree_5pct"]["median"] > 0.95
    assert min(r["agree_5pct"]["median"] for r in result.values()) < 0.9
    assert result["spells of ~20 rounds, a few calls spared"]["agree_5pct"]["q25"] < 0.9
    assert result["long spells, a few calls spared"]["agree_5pct"]["lowest round"] < 0.9


def test_the_floor_is_the_fastest_sample_and_slow_calls_do_not_move_it():
    rng = np.random.default_rng(3)
    many = np.exp(rng.normal(0, 0.02, 60))
    rounds = [[m * 0.99, m, m * 1.01] for m in many]
    assert stats.summarize(rounds)["latency_ms_floor"] == pytest.approx(many.min() * 0.99)
    # Noise only raises values: slowing every call but one by 40% leaves the floor where it was, where the
    # pooled median moves by far more.
    fastest = int(np.argmin(many))
    slowed = [[x * (1.4 if (i, j) != (fastest, 0) else 1.0) for j, x in enumerate(r)] for i, r in enumerate(rounds)]
    assert stats.summarize(slowed)["latency_ms_floor"] == pytest.approx(many.min() * 0.99)
    assert stats.summarize(slowed)["latency_ms_p50"] > 1.05 * stats.summarize(rounds)["latency_ms_p50"]


def test_time_budget_stops_rows_and_says_so(monkeypatch):
    from edgecnn.bench import api

    monkeypatch.setattr(api, "SETTLE_S", 0.0)
    # The rounds get what the budget left: a row still going when it is spent stops by "time budget", not max time.
    plan = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=0.01, max_time=600, time_left=0.0)
    (row,) = _jobs((1.0, 0.3))
    api._rounds([row], plan, 30)
    assert row.stopped_by == "time budget" and len(row.rounds) == 1
    # max_time still applies when it is the smaller limit.
    plan = api.Plan(None, None, 40, 0.01, 0.0, adaptive=True, precision=0.01, max_time=0.0, time_left=600)
    (row,) = _jobs((1.0, 0.3))
    api._rounds([row], plan, 30)
    assert row.stopped_by == "max time"


def test_a_row_a_limit_stopped_says_which_with_or_without_a_budget(monkeypatch):
    from edgecnn.bench import api
    from edgecnn.bench.api import BenchRequest

    monkeypatch.setattr(api, "SETTLE_S", 0.0)
    for stop, req in (("max rounds", BenchRequest(max_rounds=5)),  # no budget: req.time_budget is None
                      ("time budget", BenchRequest(max_rounds=40, time_budget=60))):
        plan = api.Plan(None, None, req.max_rounds, 0.01, 0.0, adaptive=True, precision=0.01, max_time=600,
                        time_left=0.0 if req.time_budget else None)
        (row,) = _jobs((1.0, 0.3))
        row.row.update(warning=None, batch=1)
        api._rounds([row], plan, 30)
        api._fill_latencies(row, req)  # an adaptive bench without a budget used to raise TypeError here
        assert row.stopped_by == stop and row.row["stopped_by"] == stop
        flag = "--max-rounds" if req.time_budget is None else "the time budget (60 s for the bench)"
        assert row.row["warning"].startswith(f"stopped by {flag} after {len(row.rounds)} rounds"), row.row["warning"]


def test_time_budget_needs_adaptive_rounds():
    from edgecnn.bench.api import BenchRequest, _check_request
    from edgecnn.config.schema import BenchStage
    from edgecnn.errors import UserError

    with pytest.raises(UserError, match="--time-budget 60: a budget for adaptive rounds"):
        _check_request(BenchRequest(rounds=10, time_budget=60))
    with pytest.raises(UserError, match="--time-budget 0.5: must be at least 1"):
        _check_request(BenchRequest(time_budget=0.5))
    # In a recipe, fixed rounds (an override on a recipe with a budget) run in full: the pipeline
    # passes the budget only to adaptive rounds, so `edgecnn run quickstart pipeline.bench.rounds=2` works.
    assert BenchStage(rounds=10, time_budget_s=60).rounds == 10
    assert BenchStage(time_budget_s=60).time_budget_s == 60
