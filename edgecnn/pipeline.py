"""``edgecnn run``: the stages a recipe's ``pipeline:`` section lists, chained in one folder.

Read top to bottom: train the recipe into ``out``, fine-tune it with QAT for
each listed backend (``out/qat-<backend>``), export each listed artifact
(float and PTQ ones into ``out/export``, QAT ones into ``out/qat-*/export``),
time them all in one ``edgecnn bench`` run (``out/bench.json``), and write the
report (``out/report``). Each stage is the function its own command calls, so
the chain does nothing a user could not do by hand.

Re-running the same command resumes: training and QAT continue from their
last checkpoint (or say they are finished), and ``out/pipeline.json`` records
each artifact with a stamp of the checkpoint it came from (and, for PTQ, the
calibration count), so an artifact whose inputs have not changed is not
exported again, and the bench is not repeated while its artifacts and settings
are the ones it timed. A changed input never reuses a stale result: a changed
export or bench setting redoes that stage; a recipe that differs from the one
a finished run was trained with (or a changed ``pipeline.qat_epochs``) is
refused, naming the keys, as ``edgecnn train --resume`` does. The report is
always rewritten (seconds).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgecnn.bench.api import BenchRequest, bench, save
from edgecnn.bench.console import print_rows
from edgecnn.config import Recipe
from edgecnn.config.schema import QAT_FOR_TARGET
from edgecnn.core import contracts as C
from edgecnn.core.progress import Progress
from edgecnn.errors import UserError
from edgecnn.export.api import export_run
from edgecnn.export.artifact import check_sidecar, max_drop_of, read_sidecar
from edgecnn.files import atomic_write_text
from edgecnn.quantize.qat import evaluate_any, qat_run
from edgecnn.report import build
from edgecnn.report.console import print_result
from edgecnn.train.loop import recipe_differences, train
from edgecnn.train.run import read_run_recipe

STATE = C.PIPELINE
BENCH = C.BENCH
REPORT = "report"


def run(recipe: Recipe, out: Path, console: Console | None = None) -> dict:
    """Run ``recipe.pipeline.stages`` into the folder ``out``: each stage below, in order.

    Returns:
        ``{"out", "stages": [{"stage", "status", "seconds"}], "artifacts", "bench", "report"}``;
        ``report`` is what ``edgecnn.report.build`` returned (or None without a report stage).

    Raises:
        UserError: from any stage (bad data, a failed export, an unreachable bench device),
            or a stage that needs a trained run when ``train`` is not listed and ``out`` holds none.
    """
    stages, out = recipe.pipeline.stages, Path(out)
    console = console or Console()
    chain = Chain(out, console, total=_count_steps(recipe))
    if "train" in stages:
        _train_stage(chain, recipe)
    if not (out / C.LAST).exists():
        raise UserError(f"{out}: no trained run to continue from; add train to pipeline.stages "
                        "or pass --out a folder written by edgecnn train")
    if "qat" in stages:
        _qat_stage(chain, recipe)
    if "export" in stages:
        _export_stage(chain, recipe)
    # The artifacts this pipeline lists (pipeline.json may remember others from an earlier export list).
    recorded = [chain.recorded("exports", _export_label(item)) for item in recipe.pipeline.export]
    artifacts = [Path(e["path"]) for e in recorded if e and Path(e["path"]).is_file()]
    if "bench" in stages:
        _bench_stage(chain, recipe, artifacts)
    report = None
    if "report" in stages:
        with chain.step("report", f"report -> {out / REPORT}"):
            report = build([out], out / REPORT)
    chain.summary()
    if report is not None:
        print_result(console, report)
    return {"out": str(out), "stages": chain.done, "artifacts": [str(a) for a in artifacts],
            "bench": str(out / BENCH) if (out / BENCH).is_file() else None, "report": report}


def _train_stage(chain: Chain, recipe: Recipe) -> None:
    """Train into the pipeline's folder, resuming an interrupted run; a finished one is kept."""
    out = chain.out
    with chain.step("train", f"train {recipe.model.name} ({recipe.train.epochs} epochs)") as step:
        _same_recipe(out, recipe)
        if _finished(out, recipe.train.epochs):
            step.skip(f"{out} is finished")
        else:
            train(recipe, out, resume=(out / C.LAST).exists(), console=chain.console)
        _evaluate(out, chain.console)


def _qat_stage(chain: Chain, recipe: Recipe) -> None:
    """QAT for each listed backend into ``qat-<backend>``, resuming or keeping as training does."""
    p, out = recipe.pipeline, chain.out
    for backend in p.qat:
        folder = out / f"qat-{backend}"
        with chain.step(f"qat {backend}", f"QAT for {backend} ({p.qat_epochs} epochs)") as step:
            _same_qat_epochs(folder, p.qat_epochs)
            if _finished(folder, p.qat_epochs):
                step.skip(f"{folder} is finished")
            else:
                qat_run(out, backend, epochs=p.qat_epochs, resume=(folder / C.LAST).exists(), console=chain.console)
            _evaluate(folder, chain.console)


def _export_stage(chain: Chain, recipe: Recipe) -> None:
    """Each export item; one is skipped only when its checkpoint, calibration and budget are unchanged."""
    p, out = recipe.pipeline, chain.out
    for item in p.export:
        source = out / f"qat-{QAT_FOR_TARGET[item.target]}" if item.int8 == "qat" else out
        label = _export_label(item)
        with chain.step(f"export {label}", f"export {label} from {source}") as step:
            done = chain.recorded("exports", label)
            calib = p.calib if item.int8 == "ptq" else None  # only PTQ calibrates
            if done and _unchanged(done, source) and done.get("calib") == calib \
                    and max_drop_of(done["path"]) == item.max_drop:  # the budget its sidecar records
                step.skip(f"{Path(done['path']).name} is up to date")
                continue
            if done and done.get("calib") != calib and _unchanged(done, source):
                step.note(f"pipeline.calib changed ({done.get('calib')} -> {calib}): exporting again")

            r = export_run(source, item.target, int8=item.int8 != "none", channels=item.channels,
                           calib=p.calib, max_drop=item.max_drop)
            parity = r["parity"]
            chain.console.print(f"{Path(r['path']).name}: {r['size_bytes'] / 1e6:.2f} MB, accuracy "
                                f"{parity['artifact']['accuracy']:.1%} through {r['target']}, top-1 agreement "
                                f"{parity['top1_agreement']:.1%} with PyTorch", highlight=False)
            chain.record("exports", label, {"path": str(Path(r["path"]).resolve()),
                                            "source": _stamp(_checkpoint(source)), "calib": calib})


def _bench_stage(chain: Chain, recipe: Recipe, artifacts: list[Path]) -> None:
    """Time ``artifacts``; skipped only when the same files were timed with the same settings."""
    b, out = recipe.pipeline.bench, chain.out
    # The eager reference runs on this machine: beside a board's rows its time means nothing.
    eager = b.eager and not b.device.startswith(("ssh://", "adb://"))
    with chain.step("bench", f"bench {len(artifacts)} artifacts on {b.device}") as step:
        # What the timings depend on: the files timed and every bench setting but the budget (a sweep's
        # budget only decides when adaptive rounds may stop: rows it still decides are reused).
        stamp = {"files": _stamp(*artifacts, *([_checkpoint(out)] if eager else [])),
                 "settings": b.model_dump(mode="json", exclude={"budget_ms"})}
        before = chain.state.get("bench")
        if (out / BENCH).is_file() and before == stamp and _decided(out / BENCH, b):
            step.skip(f"{out / BENCH} times these artifacts with these settings already")
            return
        changed = _changed_settings(before, stamp) if (out / BENCH).is_file() else []
        if changed:
            step.note(f"bench settings changed ({', '.join(changed)}): timing again")

        rows = bench(BenchRequest(tuple(artifacts), eager=out if eager else None, device=b.device, threads=b.threads,
                                  warmup=b.warmup, iters=b.iters, rounds=b.rounds, precision=b.precision,
                                  max_time=b.max_time, max_rounds=b.max_rounds, budget_ms=b.budget_ms,
                                  min_time=b.min_time, cooldown=b.cooldown,
                                  # fixed rounds run in full: the budget bounds adaptive ones
                                  time_budget=b.time_budget_s if b.rounds is None and b.iters is None else None))
        print_rows(chain.console, rows)
        save(out / BENCH, rows, ["edgecnn", "run", recipe.name, "--out", str(out)])
        chain.state["bench"] = stamp
        chain.save()


# -- the chain's bookkeeping -----------------------------------------------------------------------

class Chain:
    """One progress display for the whole chain: a numbered rule per step, a timed summary at the end,
    and ``pipeline.json``, the record that lets a re-run skip finished steps.

    (Stages draw their own progress bars; rich allows one live display at a time,
    so the chain's own display is the rules and the summary, not an outer bar.)
    """

    def __init__(self, out: Path, console: Console, total: int):
        self.out, self.console, self.total = out, console, total
        self.path = out / STATE
        self.state = self._load()
        self.done: list[dict] = []

    def _load(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Only a cache of what was done: losing it costs a re-export, never a wrong result.
            self.console.print(f"[yellow]{self.path} is damaged; every export and the bench run again[/]")
            return {}

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.state, indent=2) + "\n")

    def recorded(self, section: str, key: str) -> dict | None:
        return self.state.get(section, {}).get(key)

    def record(self, section: str, key: str, value: dict) -> None:
        self.state.setdefault(section, {})[key] = value
        self.save()

    @contextmanager
    def step(self, stage: str, title: str):
        self.console.rule(f"[bold][{len(self.done) + 1}/{self.total}] {title}")
        entry = {"stage": stage, "status": "done", "seconds": 0.0}
        t0 = time.perf_counter()
        try:
            yield Step(entry, self.console)
        except BaseException:
            entry["status"] = "failed"
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            self.done.append(entry)

    def summary(self) -> None:
        table = Table(title=f"edgecnn run -> {self.out}")
        for col in ("step", "status", "seconds"):
            table.add_column(col, justify="right" if col == "seconds" else "left")
        for e in self.done:
            table.add_row(e["stage"], e["status"], f"{e['seconds']:.1f}")
        table.add_row("total", "", f"{sum(e['seconds'] for e in self.done):.1f}")
        self.console.print(table)


class Step:
    def __init__(self, entry: dict, console: Console):
        self.entry, self.console = entry, console

    def skip(self, why: str) -> None:
        self.entry["status"] = "skipped"
        self.console.print(f"skipped: {why}", style="dim", markup=False, highlight=False)

    def note(self, why: str) -> None:
        self.console.print(why, style="dim", markup=False, highlight=False)


def _evaluate(run: Path, console: Console) -> None:
    """``eval.json`` for the report (accuracy, MACs, params), unless it is newer than the checkpoint."""
    result = run / "eval.json"
    if result.is_file() and result.stat().st_mtime_ns >= _checkpoint(run).stat().st_mtime_ns:
        return

    with Progress(f"evaluate {run.name}") as progress:  # tens of seconds for a QAT run's fake-quantized model
        progress.update("the validation split, with MACs and parameters")
        r = evaluate_any(run)
    console.print(f"{run}: val accuracy {r['accuracy']:.1%}, F1 {r['f1']:.1%}, {r['macs'] / 1e9:.3f} GMACs, "
                  f"{r['params'] / 1e6:.3f} M params -> {result}", highlight=False)


def _count_steps(recipe: Recipe) -> int:
    p = recipe.pipeline
    per_stage = {"train": 1, "qat": len(p.qat), "export": len(p.export), "bench": 1, "report": 1}
    return sum(per_stage[s] for s in p.stages)


def _same_recipe(out: Path, recipe: Recipe) -> None:
    """A run folder is only continued (or called finished) for the recipe it was trained with.

    Raises:
        UserError: ``out`` holds a run whose stored recipe differs; the message names the keys.
    """
    if not C.is_run(out):
        return
    diff = recipe_differences(out, recipe)
    if diff:
        raise UserError(f"{out} holds a run trained with a different recipe; it differs at: {', '.join(diff)}; "
                        f"run the recipe and overrides it was trained with (see {out / C.RECIPE}), "
                        "or pass --out NEW_DIR for a new run")


def _same_qat_epochs(folder: Path, epochs: int) -> None:
    """A QAT folder fine-tuned for another number of epochs is neither resumed nor reused.

    Raises:
        UserError: the folder's recipe has ``train.epochs`` other than ``pipeline.qat_epochs``.
    """
    if not C.is_run(folder):
        return
    stored = read_run_recipe(folder).train.epochs
    if stored != epochs:
        raise UserError(f"pipeline.qat_epochs={epochs} but {folder} was fine-tuned for {stored} epochs; "
                        f"set pipeline.qat_epochs={stored}, or remove {folder} to fine-tune again")


def _decided(path: Path, b) -> bool:
    """Whether saved rows still answer under this budget: always without one (or with fixed rounds); with
    adaptive rounds and a budget, every row that stopped on it must lie on the same side of this one."""
    if b.budget_ms is None or b.rounds is not None or b.iters is not None:
        return True
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return False
    for r in rows:
        lo, hi, half = r.get("latency_ms_p50_ci_low"), r.get("latency_ms_p50_ci_high"), r.get("precision_pct")
        if r.get("error") or lo is None or hi is None:
            continue
        if not (lo > b.budget_ms or (hi < b.budget_ms and half is not None and half <= b.precision)):
            if r.get("stopped_by") in ("above budget", "within budget", "precision"):
                return False  # stopped early for another budget: not decided for this one
    return True


def _changed_settings(before, now: dict) -> list[str]:
    """The bench settings (dotted keys) that differ from the recorded ones; ``[]`` when only the files changed."""
    old = before.get("settings") if isinstance(before, dict) else None
    if old is None:
        return []
    return [f"pipeline.bench.{k}" for k in now["settings"] if old.get(k) != now["settings"][k]]


def _finished(run: Path, epochs: int) -> bool:
    """A run whose last checkpoint has every epoch (metrics.csv has a row per checkpointed epoch)."""
    metrics = run / C.METRICS
    if not (run / C.LAST).is_file() or not metrics.is_file():
        return False
    return len(metrics.read_text().strip().splitlines()) - 1 >= epochs


def _export_label(item) -> str:
    precision = {"none": "fp32", "ptq": "int8 (PTQ)", "qat": "int8 (QAT)"}[item.int8]
    return f"{item.target} {precision}" + (f" {item.channels}" if item.channels else "") + \
        (f" max-drop {item.max_drop:g}" if item.max_drop is not None else "")


def _checkpoint(run: Path) -> Path:
    """The checkpoint exports and the eager reference read (the one rule: best, else last)."""
    return C.checkpoint(run)


def _stamp(*paths: Path) -> list:
    """Which files, of which size and modification time: equal stamps mean nothing was rewritten.

    Files are named by absolute path, so ``--out runs/x`` and ``--out /home/me/runs/x`` agree.
    """
    out = []
    for p in paths:
        p = Path(p).resolve()
        st = p.stat() if p.exists() else None
        out.append([str(p), st.st_size if st else None, st.st_mtime_ns if st else None])
    return out


def _unchanged(done: dict, source: Path) -> bool:
    """An artifact recorded earlier is still valid: it and its sidecar are intact and its source checkpoint
    is the one it was exported from."""
    path = Path(done["path"])
    try:
        check_sidecar(path, read_sidecar(path))
    except UserError:
        return False
    return done.get("source") == _stamp(_checkpoint(source))
