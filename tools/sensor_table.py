"""One model for several sensors: trained on Sentinel-2, evaluated zero-shot on Landsat-8 and PlanetScope.

    python tools/sensor_table.py [--out runs/sensors] [--data DIR] [--epochs N] [overrides...]

On the built-in spectral data (``edgecnn data synth --format tiff --sensor NAME``: the same scenes as
each sensor's bands see them; written into ``--data``, by default ``<out>/data``), it trains and
evaluates, through the edgecnn CLI only:

- with wavelengths: ``cnn_attn_wave`` trained on Sentinel-2's bands, evaluated on each sensor; and the same
  trained with half its batches a random sub-sensor (``train.band_subsets=sensors``), and with those
  sub-sensors the layouts of Landsat-8 and PlanetScope (``train.sub_sensors``: their band lists, not
  their files) (``edgecnn eval RUN data.root=... data.bands=...``); skipped with a message while this
  checkout has no such model;
- without wavelengths: ``cnn_attn_dynconv_mask`` trained on Sentinel-2 over random band subsets; on
  another sensor each band fills the slot of the Sentinel-2 band with the same name or the nearest
  centre wavelength, the slots left over zero-filled and masked (``core.sensors.match_bands``);
- per sensor: ``cnn_attn`` (the plain model a wavelength stem folds into) trained on that sensor itself.

Every run is kept in ``--out`` and reused (or resumed) on a second call. Prints a Markdown table stamped
with the command, the CPU, the commit and the versions.

Cost: with the recipe's 30 epochs (since ba391b6), 2228 s (37 minutes) of two otherwise idle cores on a 2-core
AMD EPYC (Zen 3), measured at 1fbb5aa: the three per-sensor runs about 10 minutes together, the three
wavelength runs about 6 minutes each, the band-robust run without wavelengths about 8 minutes (14 s an epoch:
it validates 21 band subsets every epoch).
``--epochs 10`` takes about a third of that (the wavelength column then trails: sub-sensors need the epochs).
``--epochs 1 --per-class 10 --size 16 --classes 3`` is a smoke run (242 s of wall time there at 5bbc833, seven runs).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from stamp import commit, cpu

TRAINED_ON = "sentinel2"
SENSORS = ("sentinel2", "landsat8", "planetscope")
RECIPE = "cross_sensor"  # the shipped recipe (recipes/cross_sensor.yaml)
ROWS = {  # column -> (run folder, model, trained on, extra overrides)
    "with wavelengths": ("cnn_attn_wave", "cnn_attn_wave", TRAINED_ON, ["train.band_subsets=none"]),
    # The same over sub-sensors (band lists, not masks): better on fewer bands, worse on the whole sensor.
    "with wavelengths, sub-sensors": ("cnn_attn_wave-sensors", "cnn_attn_wave", TRAINED_ON,
                                      ["train.band_subsets=sensors"]),
    # The sub-sensors drawn from the layouts of the sensors it is for (their band lists, never their files).
    "with wavelengths, named sub-sensors": ("cnn_attn_wave-named", "cnn_attn_wave", TRAINED_ON,
                                            ["train.band_subsets=sensors", "train.sub_sensors=[landsat8,planetscope]"]),
    "without wavelengths": ("cnn_attn_dynconv_mask", "cnn_attn_dynconv_mask", TRAINED_ON,
                            ["train.band_subsets=per_sample"]),
}
PER_SENSOR = ("cnn_attn", ["train.band_subsets=none"])


def edgecnn(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"edgecnn {' '.join(args)} failed:\n{proc.stderr.strip()[-2000:]}")
    return proc


def make_data(data: Path, args) -> None:
    """Each sensor's rendering of the same scenes (one seed), unless already there."""
    for sensor in SENSORS:
        if not (data / sensor / "val").is_dir():
            print(f"rendering the scenes as {sensor} sees them ...", flush=True)
            edgecnn("data", "synth", "--format", "tiff", "--sensor", sensor, "--out", str(data / sensor),
                    "--classes", str(args.classes), "--train-per-class", str(args.per_class),
                    "--val-per-class", str(max(1, args.per_class // 2)), "--image-size", str(args.size))


def train(run: Path, model: str, sensor: str, data: Path, extra: list[str], args) -> None:
    """One run: trained, or resumed where it stopped (a finished run: nothing to do)."""
    print(f"training {model} on {sensor} ...", flush=True)
    resume = ["--resume"] if (run / "last.pt").exists() else []
    epochs = [f"train.epochs={args.epochs}"] if args.epochs else []
    edgecnn("train", RECIPE, f"name={run.name}", f"model.name={model}", f"data.root={data / sensor}",
            f"data.bands={sensor}", f"data.image_size={args.size}", *epochs, *extra, *args.overrides,
            "--out", str(run), *resume)


def accuracy(run: Path, sensor: str, trained_on: str, data: Path) -> float:
    """Validation accuracy of a run on one sensor's files (its own: as trained; another: matched or by
    wavelength, as ``edgecnn eval`` does it for the run's model)."""
    other = [] if sensor == trained_on else [f"data.root={data / sensor}", f"data.bands={sensor}"]
    return json.loads(edgecnn("eval", str(run), *other, "--json").stdout)["accuracy"]


def available(model: str, extra: list[str]) -> bool:
    return edgecnn("validate", RECIPE, f"model.name={model}", *extra, check=False).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sensors"))
    ap.add_argument("--data", type=Path, default=None, help="the three sensors' folders (default <out>/data)")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--per-class", type=int, default=100, help="training images per class (val: half)")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("overrides", nargs="*", help="dotted.key=value applied to every run (e.g. train.threads=2)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = args.data or args.out / "data"
    make_data(data, args)

    table: dict[str, dict[str, float | str]] = {s: {} for s in SENSORS}
    model, extra = PER_SENSOR  # first: the figures the wavelength column is held to
    for s in SENSORS:
        run = args.out / f"{model}-{s}"
        train(run, model, s, data, extra, args)
        table[s]["per-sensor model"] = accuracy(run, s, s, data)
    for column, (folder, model, trained_on, extra) in ROWS.items():
        if not available(model, extra):
            print(f"skipping '{column}': this checkout has no model {model} (the wavelength stem, "
                  f"models/wave_conv.py)", flush=True)
            for s in SENSORS:
                table[s][column] = "n/a"
            continue
        run = args.out / folder
        train(run, model, trained_on, data, extra, args)
        for s in SENSORS:
            table[s][column] = accuracy(run, s, trained_on, data)

    env = json.loads((args.out / ROWS["without wavelengths"][0] / "env.json").read_text()) \
        if (args.out / ROWS["without wavelengths"][0] / "env.json").exists() else {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if k in ("torch", "edgecnn") and v)
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    epochs = len((args.out / f"{PER_SENSOR[0]}-{TRAINED_ON}" / "metrics.csv").read_text().splitlines()) - 1
    print(f"\n`{command}`: {args.classes} classes, {args.per_class} training / {max(1, args.per_class // 2)} "
          f"validation images per class at {args.size} px, {epochs} epochs; {cpu()}, commit {commit()}"
          + (f", {versions}" if versions else "") + f"; {time.perf_counter() - t0:.0f} s\n")
    columns = [*ROWS, "per-sensor model"]
    print("| trained on | evaluated on | " + " | ".join(f"accuracy {c}" for c in columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for s in SENSORS:
        cells = [v if isinstance(v, str) else f"{100 * v:.1f}%" for v in (table[s][c] for c in columns)]
        print(f"| {TRAINED_ON} | {s} | " + " | ".join(cells) + " |")
    print(f"\nThe per-sensor model ({PER_SENSOR[0]}, the same size as the folded wavelength model) is trained on "
          f"the sensor it is evaluated on; the other columns are one run each, trained on {TRAINED_ON}.")


if __name__ == "__main__":
    main()
