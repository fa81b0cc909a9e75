"""Band-robust training and evaluation through the CLI (the DynamicConv2D issue)."""

import json
from pathlib import Path

import pytest

from conftest import DYN_TINY, cli

DYN = ["recipes/quickstart_dynconv.yaml", *DYN_TINY]


def test_dynconv_trains_and_reports_every_subset(tmp_path: Path):
    run = tmp_path / "dyn"
    out = cli("train", *DYN, "--out", str(run), check=True).stdout
    assert "mean over band subsets" in out
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val_accuracy_RG" in header and "val_accuracy_B" in header and "val_accuracy_subset_mean" in header

    result = json.loads(cli("eval", str(run), "--json", check=True).stdout)
    assert list(result["subsets"]) == ["RGB", "RG", "RB", "GB", "R", "G", "B"]  # the paper's Table 2 order
    assert all({"accuracy", "precision", "recall", "f1"} <= set(m) for m in result["subsets"].values())
    one = json.loads(cli("eval", str(run), "--channels", "gr", "--json", check=True).stdout)
    assert list(one["subsets"]) == ["RG"]
    table = cli("eval", str(run), check=True).stdout
    assert "per band subset" in table and "GB" in table

    for bad in ("RX", "", "RR", ","):
        proc = cli("eval", str(run), "--channels", bad)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (bad, proc.stderr)
        assert "valid bands are R, G, B" in proc.stderr or "empty" in proc.stderr, proc.stderr

    # Pruning writes a new run that eval reads like any other.
    pruned = tmp_path / "dyn_pruned"
    cli("prune", str(run), "--out", str(pruned), "--min-share", "0.2", check=True)
    record = json.loads((pruned / "prune.json").read_text())
    assert set(record["accuracy_before"]) == set(record["accuracy_after"]) == set(result["subsets"])
    assert 1 <= len(record["kept"]) <= 4
    ev = json.loads(cli("eval", str(pruned), "--json", check=True).stdout)
    assert ev["subsets"]["RGB"]["accuracy"] == pytest.approx(record["accuracy_after"]["RGB"])
    again = cli("prune", str(run), "--out", str(pruned))
    assert again.returncode == 2 and "already holds a run" in again.stderr
    plain = cli("prune", str(tmp_path / "nope"))
    assert plain.returncode == 2


def test_four_band_input(tmp_path: Path):
    run = tmp_path / "nir"
    cli("train", *DYN, "model.name=resnet34_dynconv_mask", "data.bands=[R,G,B,NIR]",
        "data.mean=[0.5,0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25,0.25]", "--out", str(run), check=True)
    result = json.loads(cli("eval", str(run), "--json", check=True).stdout)
    assert len(result["subsets"]) == 15 and "R,G,B,NIR" in result["subsets"] and "NIR" in result["subsets"]
    one = json.loads(cli("eval", str(run), "--channels", "r,nir", "--json", check=True).stdout)
    assert list(one["subsets"]) == ["R,NIR"]
    bad = cli("eval", str(run), "--channels", "RG")  # multi-letter bands need commas
    assert bad.returncode == 2 and "R,G" in bad.stderr


def test_plain_model_zero_fill_baselines(tmp_path: Path):
    """A plain ResNet-34 evaluated per subset: trained on RGB only, and trained on subsets."""
    rgb, sub = tmp_path / "rgb", tmp_path / "sub"
    cli("train", *DYN, "model.name=resnet34", "train.band_subsets=none", "--out", str(rgb), check=True)
    assert json.loads(cli("eval", str(rgb), "--json", check=True).stdout)["subsets"] == {}
    assert len(json.loads(cli("eval", str(rgb), "--channels", "all", "--json", check=True).stdout)["subsets"]) == 7
    cli("train", *DYN, "model.name=resnet34", "train.band_subsets=per_sample", "--out", str(sub), check=True)
    assert len(json.loads(cli("eval", str(sub), "--json", check=True).stdout)["subsets"]) == 7


def test_info_macs_per_subset_within_one_percent_of_resnet34():
    base = json.loads(cli("info", "recipes/resnet34_96.yaml", "--json", check=True).stdout)["macs"]
    pruned = json.loads(cli("info", "recipes/resnet34_dynconv_mask.yaml", "--json", check=True).stdout)
    assert pruned["input_size"] == 96 and len(pruned["per_subset"]) == 7
    for name, c in pruned["per_subset"].items():
        assert c["macs_folded"] <= base * 1.01, name
        assert c["macs"] <= base * 1.01, name  # even unfolded, mixing kernels first costs ~nothing
    paper = json.loads(cli("info", "recipes/resnet34_dynconv.yaml", "--json", check=True).stdout)
    assert all("macs_folded" not in c for c in paper["per_subset"].values())  # input attention: no exact fold
    assert paper["macs"] <= base * 1.01
