"""tools/paper_tables.py --smoke: the procedure that regenerates the paper's tables, on the built-in dataset.

Only Table 4 (the two small models) runs here, to stay within CI's budget; the
other tables use the same code path with other recipes.
"""

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_table4_smoke(tmp_path: Path):
    out = tmp_path / "paper"
    proc = subprocess.run([sys.executable, "tools/paper_tables.py", "--smoke", "--out", str(out),
                           "--models", "cnn_attn_224,cnn_224", "train.threads=1", "pipeline.bench.threads=1",
                           "data.image_size=32", "data.train_per_class=8", "data.val_per_class=4"],  # smaller still
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    text = (out / "tables.md").read_text()
    assert "Table 4: ablation" in text and "Table 3" not in text  # Table 3 needs ResNet-34 too
    row = next(line for line in text.splitlines() if line.startswith("| CNN + Self-Attention"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    ev = json.loads((out / "cnn_attn_224" / "eval.json").read_text())
    assert cells[1] == f"{100 * ev['accuracy']:.2f}%" and cells[5] == f"{ev['macs']:,}"
    bench = json.loads((out / "cnn_attn_224" / "bench.json").read_text())["rows"]
    et = next(r for r in bench if r["kind"] == "artifact")
    assert et["target"] == "executorch" and et["precision"] == "int8"
    assert cells[7] == f"{et['latency_ms_p50']:.2f}"
    assert cells[9:13] == ["71.33%", "73.07%", "71.33%", "70.74%"]  # the paper's figures beside ours

    bad = subprocess.run([sys.executable, "tools/paper_tables.py", "--data", str(tmp_path / "nowhere")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "no train/ folder" in bad.stderr
