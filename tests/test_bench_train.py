import json
from pathlib import Path

import pytest

from conftest import cli


@pytest.mark.slow
def test_bench_train_rows(tmp_path: Path):
    out = tmp_path / "rows.json"
    args = ["recipes/quickstart.yaml", "data.image_size=16", "train.batch_size=4", "train.threads=1",
            "--steps", "2", "--warmup", "1", "--json", str(out)]
    proc = cli("bench-train", *args, check=True)
    assert "images/s" in proc.stdout
    cli("bench-train", *args, "train.channels_last=true", check=True)  # appends
    rows = json.loads(out.read_text())
    assert [r["mode"] for r in rows] == ["train", "eval", "train", "eval"]
    for r in rows:
        assert r["images_per_s"] > 0 and r["step_ms_p50"] > 0 and r["batch"] == 4 and r["image_size"] == 16
        assert r["device_type"] == "cpu" and r["threads"] == 1
        # The median step with its interval, from the same statistics helper as edgecnn bench.
        assert r["step_ms_p50_ci_low"] <= r["step_ms_p50"] <= r["step_ms_p50_ci_high"]
        assert r["images_per_s_ci"][0] <= r["images_per_s"] <= r["images_per_s_ci"][1]
    assert rows[2]["channels_last"] is True
    # Band-robust models bench with their mask input.
    cli("bench-train", "recipes/quickstart_dynconv.yaml", "data.image_size=16", "train.batch_size=4",
        "train.threads=1", "--steps", "1", "--warmup", "0", check=True)


def test_damaged_json_file_is_one_line_before_any_timing(tmp_path: Path):
    out = tmp_path / "rows.json"
    for content, match in (('[{"mode": "train"', "damaged, not JSON (line 1"), ('{"rows": []}', "not a list of rows")):
        out.write_text(content)
        proc = cli("bench-train", "recipes/quickstart.yaml", "--steps", "1", "--warmup", "0", "--json", str(out))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and match in proc.stderr, proc.stderr
        assert "images/s" not in proc.stdout  # refused before timing anything
        assert out.read_text() == content  # left as it was
