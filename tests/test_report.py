"""``edgecnn report``: every file it writes, checked against the files it read; and the page in a real browser.

Inputs are built once for the module: a copy of the suite's tiny quickstart run (cnn_attn), exported
to ONNX fp32 and INT8 and OpenVINO fp32 (each measured by its real runtime at
export), and a tiny band-robust ablation run (``cnn`` trained on band subsets)
that is never benched, so its row must show gaps.

``edgecnn bench`` really times the eager reference and both ONNX artifacts on
this machine (few calls: the figures only have to be read back, not be good);
the OpenVINO artifact is left unbenched. What this machine cannot produce is
a second bench file written here in the contracts.md format, a stand-in: a
CUDA GPU reference row (there is no GPU here) and a row that failed on a Pi
(``error``; there is no Pi), with invented latencies.
"""

import json
import os
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT, TINY, cli, copy_run

GAP = "—"
BENCH_TIME = "2026-01-01T12:00:00+00:00"


def bench_row(**fields) -> dict:
    keys = ("name kind artifact sidecar run model target precision runtime runtime_version runtime_note device "
            "device_desc cpu_model cores governor freq_mhz temp_c board throttled threads batch warmup iters "
            "input_shape latency_ms_p50 latency_ms_p90 latency_ms_p99 latency_ms_mean latency_ms_min latency_ms_std "
            "cv throughput_ips peak_rss_mb size_mb ratio_vs_ref harness_overhead_pct warning error profile "
            "timestamp edgecnn_version").split()
    row = dict.fromkeys(keys)
    row.update(threads=1, batch=1, timestamp=BENCH_TIME, **fields)
    return row


def artifact_row(run: Path, stem: str, device: str, **fields) -> dict:
    art = run / "export" / stem
    side = json.loads(Path(f"{art}.json").read_text())
    return bench_row(name=Path(stem).stem, kind="artifact", artifact=str(art), sidecar=f"{art}.json", run=str(run),
                     model=side["model"], target=side["target"], precision=side["precision"],
                     runtime=side["runtime"]["name"], runtime_version=side["runtime"]["version"], device=device,
                     size_mb=side["size_bytes"] / 1e6, **fields)


def timing(p50: float, ref: float) -> dict:
    return dict(latency_ms_p50=p50, latency_ms_p90=p50 * 1.2, latency_ms_p99=p50 * 1.5, latency_ms_mean=p50 * 1.05,
                throughput_ips=1000 / (p50 * 1.05), cv=0.05, peak_rss_mb=120.0, ratio_vs_ref=p50 / ref)


@pytest.fixture(scope="module")
def inputs(tiny_run, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    runs = root / "runs"
    attn, bands = runs / "quickstart", runs / "bands"
    copy_run(tiny_run, attn)  # the suite's tiny quickstart run (conftest.tiny_run), without its artifacts
    cli("eval", str(attn), check=True)
    cli("train", "recipes/quickstart_cnn.yaml", *TINY, "train.epochs=1", "train.band_subsets=per_batch",
        "--out", str(bands), check=True)
    cli("eval", str(bands), check=True)
    cli("export", str(attn), "--target", "onnx", check=True)
    cli("export", str(attn), "--target", "onnx", "--int8", "--calib", "16", check=True)
    cli("export", str(attn), "--target", "openvino", check=True)

    bench = root / "bench.json"
    onnx = [str(attn / "export" / f"cnn_attn-onnx-{p}.onnx") for p in ("fp32", "int8")]
    cli("bench", *onnx, "--eager", str(attn), "--threads", "1", "--warmup", "2", "--iters", "10", "--rounds", "2",
        "--json", str(bench), check=True)
    standin = root / "bench-standin.json"
    rows = [
        bench_row(name="cnn_attn-eager-bf16", kind="eager", run=str(attn), model="cnn_attn", target="eager",
                  precision="bf16", runtime="torch", runtime_version="2.13.0", device="cuda",
                  device_desc="NVIDIA H100", **timing(0.25, 0.25)),
        artifact_row(attn, "cnn_attn-onnx-int8.onnx", "ssh://pi@raspberrypi:22",
                     error="onnxruntime is not installed on this device: pip install onnxruntime"),
    ]
    standin.write_text(json.dumps({"edgecnn_bench": 1, "created": BENCH_TIME, "command": ["written by a test"],
                                   "rows": rows}, indent=2))
    rows = json.loads(bench.read_text())["rows"] + rows
    out = root / "report"
    proc = cli("report", str(runs), str(bench), str(standin), "--out", str(out), check=True)
    return {"root": root, "attn": attn, "bands": bands, "bench": bench, "standin": standin, "bench_rows": rows,
            "out": out, "stdout": proc.stdout}


def load(inputs, name):
    return json.loads((inputs["out"] / name).read_text())


def eval_of(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())


def sidecar(run: Path, stem: str) -> dict:
    return json.loads((run / "export" / f"{stem}.json").read_text())


def find(rows: list[dict], name: str, device: str | None) -> dict:
    [row] = [r for r in rows if r["name"] == name and r["device"] == device]
    return row


# -- the files -------------------------------------------------------------------------------------


def test_every_file_written(inputs):
    out = inputs["out"]
    plots = load(inputs, "plots.json")
    expected = {"report.md", "report.html", "results.csv", "results.json", "plots.json"} | {p["file"] for p in plots}
    assert {f.name for f in out.iterdir()} == expected  # nothing else: no temporaries left behind
    assert {p["file"] for p in plots} == {
        "accuracy_vs_latency_local.png", "accuracy_vs_latency_cuda.png", "accuracy_vs_macs.png",
        "accuracy_vs_params.png", "accuracy_vs_size.png", "bands_bands.png"}
    assert "wrote " in inputs["stdout"] and str(out / "report.html") in inputs["stdout"].replace("\n", "")


def test_rows_join_sidecars_eval_and_bench(inputs):
    attn, bench = inputs["attn"], {(r["name"], r["device"]): r for r in inputs["bench_rows"]}
    rows = load(inputs, "results.json")["rows"]
    ev = eval_of(attn)
    assert len(rows) == 7  # 2 eager attn, 1 unbenched band run, onnx fp32, onnx int8 x 2 devices, openvino unbenched

    for stem, device in (("cnn_attn-onnx-fp32.onnx", "local"), ("cnn_attn-onnx-int8.onnx", "local"),
                         ("cnn_attn-onnx-int8.onnx", "ssh://pi@raspberrypi:22"), ("cnn_attn-openvino-fp32.xml", None)):
        side = sidecar(attn, stem)
        row = find(rows, Path(stem).stem, device)
        measured = side["parity"]["artifact"]
        assert row["role"] == "edge" and row["target"] == side["target"] and row["precision"] == side["precision"]
        assert (row["accuracy"], row["macro_precision"], row["macro_recall"], row["macro_f1"]) == (
            measured["accuracy"], measured["precision"], measured["recall"], measured["f1"])
        assert row["top1_agreement"] == side["parity"]["top1_agreement"]
        assert row["size_bytes"] == side["size_bytes"] and row["size_mb"] == side["size_bytes"] / 1e6
        assert (row["macs"], row["params"]) == (ev["macs"], ev["params"])  # from the source run's eval.json
        assert row["variant"] == ("PTQ" if side["precision"] == "int8" else "fp32")
        b = bench.get((row["name"], device))
        for f in ("latency_ms_p50", "latency_ms_p90", "throughput_ips", "ratio_vs_ref", "error"):
            assert row[f] == (b[f] if b else None), f

    for precision, device, role in (("fp32", "local", "reference"), ("bf16", "cuda", "gpu-reference")):
        row = find(rows, f"cnn_attn-eager-{precision}", device)
        assert row["role"] == role and row["target"] == "eager"
        assert (row["accuracy"], row["macro_precision"], row["macro_recall"], row["macro_f1"]) == (
            ev["accuracy"], ev["precision"], ev["recall"], ev["f1"])
        assert row["latency_ms_p50"] == bench[row["name"], device]["latency_ms_p50"]
        assert (row["macs"], row["params"]) == (ev["macs"], ev["params"])


def test_csv_says_what_json_says(inputs):
    import csv

    rows = load(inputs, "results.json")["rows"]
    with open(inputs["out"] / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for r, c in zip(rows, table):
        assert c["name"] == r["name"] and c["device"] == ("" if r["device"] is None else r["device"])
        for k in ("accuracy", "macro_f1", "macs", "params", "latency_ms_p50", "latency_ms_p90", "size_mb",
                  "throughput_ips"):
            assert (c[k] == "") if r[k] is None else float(c[k]) == r[k], (r["name"], k)


class Tables(HTMLParser):
    """The cell texts of every ``<table id=...>`` in a page; note lines under rows kept apart."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.notes, self._table, self._row, self._cell, self._note = {}, [], None, None, None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr":
            self._row, self._note = [], "note" in (attrs.get("class") or "")
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            (self.notes if self._note else self._table).append(self._row)


def md_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            if not line.startswith("|--") and not line.startswith("|-"):
                current.append([c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")])
        else:
            current = None
    return tables


def expected_cells(row: dict) -> dict:
    """What a row's figures must read as, formatted here from the source files' numbers."""
    failed = row["error"] is not None
    return {
        "Accuracy": f"{row['accuracy']:.2%}", "Precision": f"{row['macro_precision']:.2%}",
        "Recall": f"{row['macro_recall']:.2%}", "F1-score": f"{row['macro_f1']:.2%}",
        "p50 (ms)": GAP if failed or row["latency_ms_p50"] is None else f"{row['latency_ms_p50']:.2f}",
        "Size (MB)": GAP if row["size_mb"] is None else f"{row['size_mb']:.2f}",
        "Device": row["device"] or GAP,
    }


def test_markdown_and_html_tables_show_the_source_numbers(inputs):
    attn = inputs["attn"]
    ev = eval_of(attn)
    md = (inputs["out"] / "report.md").read_text()
    page = Tables((inputs["out"] / "report.html").read_text())
    rows = load(inputs, "results.json")["rows"]
    by_role = {"gpu-reference": "GPU reference", "reference": "PyTorch reference", "edge": "Edge targets"}
    md_sections = {}
    for heading, table in zip([l for l in md.splitlines() if l.startswith("## ")], md_tables(md)):
        md_sections[heading[3:]] = table
    for role, title in by_role.items():
        mine = [r for r in rows if r["role"] == role]
        [md_table] = [t for h, t in md_sections.items() if h.startswith(title)]
        html_table = page.tables[role]
        for table in (md_table, html_table):
            head, body = table[0], table[1:]
            assert head[:7] == ["Model", "Accuracy", "Precision", "Recall", "F1-score", "FLOPs (MACs)", "Params"]
            assert len(body) == len(mine)
            for r, cells in zip(mine, body):
                got = dict(zip(head, cells))
                assert got["Model"] == r["name"]
                for col, want in expected_cells(r).items():
                    assert got[col] == want, (role, r["name"], col)
    # The paper's cost columns, from eval.json: MACs and params of the tiny model (about 12.5 M and 1.23 M).
    assert f"{ev['macs'] / 1e6:.4g} M" in md and f"{ev['params'] / 1e6:.4g} M" in md
    assert f"{ev['macs'] / 1e6:.4g} M" in (inputs["out"] / "report.html").read_text()


def test_gaps_for_unbenched_and_errors_shown(inputs):
    rows = load(inputs, "results.json")["rows"]
    md = (inputs["out"] / "report.md").read_text()
    html = (inputs["out"] / "report.html").read_text()
    page = Tables(html)

    band = find(rows, "cnn-eager-fp32", None)  # a run nobody benched: figures from eval.json, latency blank
    assert band["accuracy"] == eval_of(inputs["bands"])["accuracy"]
    assert band["latency_ms_p50"] is None and band["size_mb"] is None
    [cells] = [c for c in page.tables["reference"] if c[0] == "cnn-eager-fp32"]
    assert cells[7:12] == [GAP] * 5  # p50, floor, p90, size, vs ref

    ov = find(rows, "cnn_attn-openvino-fp32", None)
    assert ov["latency_ms_p50"] is None and ov["accuracy"] is not None
    assert "never benched (latency blank): cnn_attn-openvino-fp32" in md

    error = "onnxruntime is not installed on this device: pip install onnxruntime"
    failed = find(rows, "cnn_attn-onnx-int8", "ssh://pi@raspberrypi:22")
    assert failed["error"] == error and failed["latency_ms_p50"] is None
    assert f"error: {error}" in md
    assert [f"error: {error}"] in page.notes  # the line under the failed row
    assert "ssh://pi@raspberrypi:22" in [c[12] for c in page.tables["edge"]]


def test_band_subset_table_equals_eval_json(inputs):
    subsets = eval_of(inputs["bands"])["subsets"]
    assert list(subsets) == ["RGB", "RG", "RB", "GB", "R", "G", "B"]
    page = Tables((inputs["out"] / "report.html").read_text())
    table = page.tables["bands-bands"]
    assert table[0] == ["Bands", "Accuracy", "Precision", "Recall", "F1-score", "Images"]
    for (name, m), cells in zip(subsets.items(), table[1:]):
        assert cells == [name, f"{m['accuracy']:.2%}", f"{m['precision']:.2%}", f"{m['recall']:.2%}",
                         f"{m['f1']:.2%}", str(m["images"])]
    assert "## bands: accuracy per band subset" in (inputs["out"] / "report.md").read_text()


# -- the plots -------------------------------------------------------------------------------------


def test_plots_are_real_pngs(inputs):
    from PIL import Image

    for meta in load(inputs, "plots.json"):
        path = inputs["out"] / meta["file"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and 500 <= im.width <= 1200 and 300 <= im.height <= 900
            colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
            assert len(colors) > 50, f"{meta['file']} looks blank"  # axes, text, markers: many colours


def points(meta: dict) -> dict[str, tuple[float, float]]:
    return {p["name"]: (p["x"], p["y"]) for s in meta["series"] for p in s["points"]}


def pareto(pts: dict[str, tuple[float, float]]) -> list[str]:
    """Written out again here: a point is on the front when nothing is both faster and at least as accurate."""
    front = [n for n, (x, y) in pts.items()
             if not any((x2 <= x and y2 >= y) and (x2, y2) != (x, y) for m, (x2, y2) in pts.items() if m != n)]
    return sorted(front, key=lambda n: pts[n][0])


def test_plots_show_the_expected_series(inputs):
    attn, bands = inputs["attn"], inputs["bands"]
    plots = {m["file"]: m for m in load(inputs, "plots.json")}
    ev = eval_of(attn)

    def accuracy(b: dict) -> float:  # what the source file of a bench row says
        if b["kind"] == "eager":
            return eval_of(Path(b["run"]))["accuracy"]
        return json.loads(Path(b["sidecar"]).read_text())["parity"]["artifact"]["accuracy"]

    local = plots["accuracy_vs_latency_local.png"]
    expect = {b["name"]: (b["latency_ms_p50"], accuracy(b) * 100) for b in inputs["bench_rows"] if b["device"] == "local"}
    got = points(local)
    assert set(got) == set(expect)  # the failed Pi row and the unbenched artifact are not plotted
    for name, xy in got.items():
        assert xy == pytest.approx(expect[name]), name
    assert local["pareto"] == pareto(got) and local["device"] == "local"
    # Error bars as drawn: the bench's 95% interval of the median, and a Wilson interval of the accuracy.
    from edgecnn.core.stats import wilson

    by_name = {b["name"]: b for b in inputs["bench_rows"] if b["device"] == "local"}
    for s in local["series"]:
        for p in s["points"]:
            b = by_name[p["name"]]
            assert p["x_err"] == pytest.approx([b["latency_ms_p50_ci_low"], b["latency_ms_p50_ci_high"]])
            images = eval_of(attn)["images"]
            low, high = wilson(round(accuracy(b) * images), images)
            assert p["y_err"] == pytest.approx([100 * low, 100 * high])
            assert p["y_err"][0] < p["y"] < p["y_err"][1]
    assert {s["label"] for s in local["series"]} == {"eager fp32", "onnx fp32", "onnx PTQ"}

    cuda = plots["accuracy_vs_latency_cuda.png"]
    assert points(cuda) == {"cnn_attn-eager-bf16": pytest.approx((0.25, ev["accuracy"] * 100))}

    macs = points(plots["accuracy_vs_macs.png"])
    assert macs["cnn_attn-onnx-int8"] == pytest.approx((ev["macs"] / 1e6, sidecar(
        attn, "cnn_attn-onnx-int8.onnx")["parity"]["artifact"]["accuracy"] * 100))
    assert macs["cnn-eager-fp32"] == pytest.approx((eval_of(bands)["macs"] / 1e6, eval_of(bands)["accuracy"] * 100))
    assert plots["accuracy_vs_macs.png"]["xlabel"] == "MACs (M)"
    params = points(plots["accuracy_vs_params.png"])
    assert params["cnn_attn-eager-fp32"][0] == pytest.approx(ev["params"] / 1e6)
    size = points(plots["accuracy_vs_size.png"])
    assert set(size) == {"cnn_attn-onnx-fp32", "cnn_attn-onnx-int8", "cnn_attn-openvino-fp32"}
    assert size["cnn_attn-openvino-fp32"][0] == sidecar(attn, "cnn_attn-openvino-fp32.xml")["size_bytes"] / 1e6

    bars = plots["bands_bands.png"]
    subsets = eval_of(bands)["subsets"]
    for series, key in zip(bars["series"], ("accuracy", "f1")):
        assert [p["name"] for p in series["points"]] == list(subsets)
        assert [p["y"] for p in series["points"]] == pytest.approx([m[key] * 100 for m in subsets.values()])


# -- other inputs, the API, errors -----------------------------------------------------------------


def test_bench_file_alone_finds_its_runs_and_sidecars(inputs, tmp_path):
    """The API the pipeline calls; no torch is imported on the way."""
    code = ("import json, sys; from pathlib import Path; from edgecnn.report import build; "
            f"r = build([Path({str(inputs['bench'])!r}), Path({str(inputs['standin'])!r})], Path({str(tmp_path / 'r')!r})); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'files': r['files'], 'head': r['headline'], "
            "'rows': [x['name'] for x in r['rows']]}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["torch"] is False
    assert sorted(Path(f).name for f in result["files"]) == sorted(f.name for f in (tmp_path / "r").iterdir())
    # Only what the bench rows name: the unbenched run and artifact are not there.
    assert sorted(result["rows"]) == sorted(["cnn_attn-eager-fp32", "cnn_attn-eager-bf16", "cnn_attn-onnx-fp32",
                                             "cnn_attn-onnx-int8", "cnn_attn-onnx-int8"])
    assert result["head"]["columns"][:4] == ["Model", "Role", "Device", "Accuracy"]
    acc = f"{sidecar(inputs['attn'], 'cnn_attn-onnx-int8.onnx')['parity']['artifact']['accuracy']:.2%}"
    # The headline shows each accuracy with its Wilson 95% interval over the validation images.
    assert any(r[:3] == ["cnn_attn-onnx-int8", "edge", "local"] and r[3].startswith(acc + " ±")
               for r in result["head"]["rows"])


def test_cost_plots_need_more_than_one_architecture():
    """Accuracy against MACs or parameters of a single architecture would be one column of points."""
    from edgecnn.report.plots import draw_all
    from edgecnn.report.rows import COLUMNS

    def row(name, model, target):
        return {**dict.fromkeys(COLUMNS), "name": name, "model": model, "target": target, "precision": "fp32",
                "variant": "fp32", "accuracy": 0.9, "eval_images": 100, "macs": 1e6, "params": 1e5, "size_mb": 1.0}

    one = [row("a-onnx", "a", "onnx"), row("a-openvino", "a", "openvino")]
    kinds = {meta["kind"] for _, meta in draw_all(one, [])}
    assert "accuracy_vs_macs" not in kinds and "accuracy_vs_params" not in kinds and "accuracy_vs_size" in kinds
    two = one + [row("b-onnx", "b", "onnx")]
    assert {"accuracy_vs_macs", "accuracy_vs_params"} <= {meta["kind"] for _, meta in draw_all(two, [])}


def test_single_artifact_and_sidecar_paths(inputs, tmp_path):
    art = inputs["attn"] / "export" / "cnn_attn-onnx-int8.onnx"
    for i, path in enumerate((art, Path(f"{art}.json"))):
        cli("report", str(path), "--out", str(tmp_path / str(i)), check=True)
        rows = json.loads((tmp_path / str(i) / "results.json").read_text())["rows"]
        assert [(r["name"], r["device"], r["macs"]) for r in rows] == [
            ("cnn_attn-onnx-int8", None, eval_of(inputs["attn"])["macs"])]


def test_bad_inputs_exit_2_with_one_line(inputs, tmp_path):
    damaged = tmp_path / "bench.json"
    damaged.write_text(inputs["bench"].read_text()[:200])
    stranger = tmp_path / "other.json"
    stranger.write_text('{"hello": 1}')
    (tmp_path / "empty").mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    cases = {
        str(tmp_path / "missing"): "no such file or folder",
        str(damaged): "damaged (not valid JSON)",
        str(stranger): "not a file edgecnn writes",
        str(notes): "not a file edgecnn writes",
        str(tmp_path / "empty"): "holds no run folder",
    }
    for path, message in cases.items():
        proc = cli("report", path, "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, (path, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
        assert path in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written when an input is bad

    # A damaged file inside a walked folder is named too.
    run = tmp_path / "runs" / "r"
    shutil.copytree(inputs["attn"], run, ignore=shutil.ignore_patterns("*.pt", "export"))
    (run / "eval.json").write_text("{")
    proc = cli("report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {run.resolve() / 'eval.json'}: damaged (not valid JSON); re-create it with the edgecnn command "
        "that wrote it or leave it out")


# -- the page in a real browser --------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")

# Appended to a copy of the page (the report itself has no scripts): once everything has
# loaded, it writes what the browser made of the images and tables into the DOM.
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images).map(function (i) {
    var r = i.getBoundingClientRect();
    return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, shown: r.width * r.height};
  });
  var tables = Array.from(document.querySelectorAll("table")).map(function (t) {
    var r = t.getBoundingClientRect();
    return {id: t.id, rows: t.tBodies[0].rows.length, w: r.width, h: r.height};
  });
  var pre = document.createElement("pre");
  pre.id = "browser-check";
  var clipped = Array.from(document.querySelectorAll(".scroll"))
    .filter(function (d) { return d.scrollWidth > d.clientWidth + 1; })
    .map(function (d) { return d.querySelector("table").id; });
  pre.textContent = JSON.stringify({images: imgs, tables: tables, clipped: clipped,
                                    width: document.documentElement.scrollWidth});
  document.body.appendChild(pre);
});
</script>"""
# A broken image next to the real ones: proves the check can see an image that did not load.
BROKEN = '<img alt="broken on purpose" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAA">'


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1400,1000", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="chromium not installed (CI installs it)")
def test_report_renders_in_headless_chromium(inputs, tmp_path):
    assert CHROMIUM, "chromium is missing: .ci/run installs it with apt-get"
    html = (inputs["out"] / "report.html").read_text()
    assert "<script" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</main>", BROKEN + "</main>").replace("</body>", PROBE + "</body>"))
    proc = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    dom = Tables(proc.stdout)
    marker = '<pre id="browser-check">'
    assert marker in proc.stdout, proc.stderr[-2000:]
    check = json.loads(unescape(proc.stdout.split(marker, 1)[1].split("</pre>", 1)[0]))

    plots = load(inputs, "plots.json")
    *real, broken = check["images"]
    assert [i["alt"] for i in real] == [p["title"] for p in plots]
    for img in real:
        assert img["complete"] and img["w"] == 704 and img["h"] == 462 and img["shown"] > 10_000, img
    assert broken["alt"] == "broken on purpose" and broken["w"] == 0

    rows = load(inputs, "results.json")["rows"]
    tables = {t["id"]: t for t in check["tables"]}
    assert set(tables) == {"gpu-reference", "reference", "edge", "bands-bands", "devices"}
    for role in ("gpu-reference", "reference", "edge"):
        notes = sum(1 for r in rows if r["role"] == role and (r["error"] or r["warning"]))  # a line under each
        assert tables[role]["rows"] == sum(1 for r in rows if r["role"] == role) + notes
        assert tables[role]["h"] >= 20 * (tables[role]["rows"] + 1) and tables[role]["w"] > 300
    # Nothing wider than a 1400-px window: no table scrolls sideways, no page scrollbar.
    assert check["clipped"] == [] and check["width"] <= 1400
    assert dom.tables["edge"][0][:2] == ["Model", "Accuracy"]

    shot = tmp_path / "shot.png"
    proc = chromium("--window-size=1400,3000", f"--screenshot={shot}", (inputs["out"] / "report.html").as_uri())
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1400, 3000)
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 200  # text and plots, not a blank page


def test_without_matplotlib_the_error_names_the_extra(inputs, tmp_path):
    # matplotlib hidden from this interpreter (None in sys.modules makes its import fail), as on a core install.
    code = ("import sys; sys.modules['matplotlib'] = None; from edgecnn.cli import main; "
            f"sys.argv = ['edgecnn', 'report', {str(inputs['bench'])!r}, '--out', {str(tmp_path / 'r')!r}]; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: edgecnn report draws its plots with matplotlib, which is not installed: "
                                   "pip install 'edgecnn[report]'")
