"""The recipe schema.

Every section forbids unknown keys, so a typo is an error rather than a
silently ignored setting. Defaults describe a small run on the built-in
dataset; the shipped recipes spell out what they change.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer, field_validator, model_validator

from edgecnn.core.sensors import Band, BandError, resolve_bands

from edgecnn.core.contracts import MAX_PIXELS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    name: str = Field("cnn_attn", description="registry name, see `edgecnn info --help`")
    heads: int = Field(8, ge=1, description="attention heads (cnn_attn only)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the head")
    num_kernels: int = Field(4, ge=1, description="kernel sets in a DynamicConv2D stem (resnet34_dynconv*)")
    wave_context: bool = Field(True, description="*_wave models: each band's kernel also depends on the mean "
                                                 "embedding of the sensor's whole band list")
    layers: list[int] = Field(
        [3, 4, 6, 3], min_length=4, max_length=4,
        description="blocks per stage of the resnet34* models: the default is ResNet-34, [1, 1, 1, 1] a ResNet-10 "
                    "(a quick check of a recipe, or of the band handling, at a fifth of the weights)",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from edgecnn.core.catalog import ALIASES, model_names  # torch-free: validating a recipe loads no model code

        name = ALIASES.get(name, name)
        names = model_names()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown model; {hint}choose one of: {', '.join(names)}")
        return name

    @field_validator("layers")
    @classmethod
    def _positive(cls, layers: list[int]) -> list[int]:
        if any(n < 1 for n in layers):
            raise ValueError("every stage needs at least one block, e.g. [1, 1, 1, 1]")
        return layers


class _Banded(Section):
    """A section with a ``bands`` list: read as names, the wavelengths kept in ``band_specs``."""

    # The bands with their wavelengths, parallel to ``bands`` (the names the rest of the code reads).
    _band_specs: tuple[Band, ...] | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_wavelengths(cls, data: Any, handler: Any) -> _Banded:
        # The field validator below reduces data.bands to names; the wavelengths are resolved here, around it,
        # because a field validator cannot keep anything beside its field. A bad band list is reported by the
        # field validator, at data.bands.
        if not isinstance(data, dict):
            return handler(data)  # an already validated config keeps its own
        if "bands" in data and data["bands"] is None:  # bands: null (an override) means the default
            data = {k: v for k, v in data.items() if k != "bands"}
        specs = None
        if "bands" in data:
            try:
                specs = tuple(resolve_bands(data["bands"]))
            except BandError:
                pass
        self = handler(data)
        # Always set, so that two configs with the same bands compare equal however they were written.
        self._band_specs = specs if specs is not None else self._unwritten_specs()
        return self

    def _unwritten_specs(self) -> tuple[Band, ...]:
        """The band specs when the input wrote no ``bands`` (the default, or a mirror of another section's)."""
        return tuple(Band(name) for name in self.bands)

    @field_validator("bands", mode="before", check_fields=False)
    @classmethod
    def _band_names(cls, bands: Any) -> list[str]:
        return [b.name for b in resolve_bands(bands)]

    @field_serializer("bands", check_fields=False)
    def _write_wavelengths(self, bands: list[str]) -> list[str | dict[str, Any]]:
        # A run's recipe.yaml keeps the wavelengths (so eval and export know them); a list of names stays names.
        return [b.as_dict() if b.center_nm is not None else b.name for b in self.band_specs]

    # nodata and std, where a section has them (data and each of data.sources).
    @field_validator("nodata", check_fields=False)
    @classmethod
    def _finite_nodata(cls, nodata: float | None) -> float | None:
        if nodata is not None and nodata != nodata:
            raise ValueError("NaN is always nodata; give a number, or leave nodata out")
        return nodata

    @field_validator("std", check_fields=False)
    @classmethod
    def _positive_std(cls, std: list[float] | None) -> list[float] | None:
        if std is not None and any(s <= 0 for s in std):
            raise ValueError("every std must be > 0")
        return std

    @property
    def band_specs(self) -> list[Band]:
        """``bands`` with their centre wavelengths and widths (``center_nm`` None for a band given by name only)."""
        if self._band_specs is None or [b.name for b in self._band_specs] != self.bands:
            return [Band(name) for name in self.bands]
        return list(self._band_specs)



class SourceConfig(_Banded):
    """One folder of a run over several sensors (``data.sources``): its own bands and normalisation."""

    root: Path = Field(..., description="folder with train/ and val/, as data.root")
    bands: list[str] = Field(..., min_length=1, description="its files' bands in file order, in any form "
                                                            "data.bands takes (a preset, a pick, names, items)")
    name: str | None = Field(None, description="what logs and eval.json call it (default: the root folder's name)")
    mean: list[float] | None = Field(None, min_length=1, description="per band; unset: from this source's "
                                                                     "training files")
    std: list[float] | None = Field(None, min_length=1, description="per band; unset: as mean")
    nodata: float | None = Field(None, description="a value that means nodata in every band of this source "
                                                   "(default data.nodata)")

    @field_validator("root")
    @classmethod
    def _expand_user(cls, path: Path) -> Path:
        return path.expanduser()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or any(c in name for c in ",:@/")):
            raise ValueError(f"name {name!r}: give a short word without , : @ or / (it names columns)")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> SourceConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither (then they are computed from its training files)")
        if self.mean is not None and not len(self.mean) == len(self.std) == len(self.bands):
            raise ValueError(f"{len(self.bands)} bands but {len(self.mean)} mean and {len(self.std)} std values; "
                             f"give one per band")
        return self

class DataConfig(_Banded):
    source: Literal["synth", "folder"] = "synth"
    root: Path | None = Field(None, description="folder with train/ and val/ (source: folder)")
    sources: list[SourceConfig] | None = Field(
        None, min_length=1,
        description="several folders in one run, each with its own bands: [{root: ~/s2, bands: sentinel2}, "
                    "{root: ~/l8, bands: landsat8}] (instead of data.root; docs/multispectral.md). Each batch "
                    "comes from one source; data.bands, mean and std then mirror the first source")
    image_size: int = Field(64, ge=8, le=1024)
    num_classes: int | None = Field(
        None, ge=2, description="synth: classes generated (default 10); folder: first N class folders in sorted order (default all)"
    )
    classes: list[str] | None = Field(None, description="folder: explicit class folder names")
    train_per_class: int = Field(200, ge=1, description="synth: training images per class")
    val_per_class: int = Field(50, ge=1, description="synth: validation images per class")
    bands: list[str] = Field(
        ["R", "G", "B"], min_length=1,
        description="the input bands in file order: names ([R, G, B, NIR]), a sensor preset (sentinel2), a pick "
                    "from one (sentinel2:B04,B03,B02,B08) or {name, center_nm, fwhm_nm} items "
                    "(docs/multispectral.md); read as the list of names, wavelengths in band_specs")
    mean: list[float] | None = Field(None, min_length=1, description="per band; unset: 0.5 for synth and 8-bit "
                                     "photos (in 0..1), computed from the training split for multi-band files")
    std: list[float] | None = Field(None, min_length=1, description="per band; unset: as mean (0.25 for photos)")
    nodata: float | None = Field(None, description="folder: a value that means nodata in every band (on top of "
                                                   "the files' own nodata value or mask, and NaN)")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="folder: the most pixels (width x height) one file may "
                            "decode; a GeoTIFF/JPEG2000 counts the overview it is read from. A file over it is "
                            "skipped (predict: an error); Pillow refuses photos over this default on its own")
    cache: Literal["disk", "off"] = Field("disk", description="folder: decode each file once into a memory-mapped "
                                                             "cache (off: decode every epoch)")
    cache_dir: Path | None = Field(None, description="folder: where the decoded cache lives "
                                                     "(default <data.root>/.edgecnn-cache, else ~/.cache/edgecnn)")
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    on_device: bool = Field(False, description="synth on a GPU: keep the whole dataset in GPU memory")

    @field_validator("root", "cache_dir")
    @classmethod
    def _expand_user(cls, path: Path | None) -> Path | None:
        return path.expanduser() if path is not None else None

    @field_validator("cache", mode="before")
    @classmethod
    def _yaml_off(cls, cache):
        # YAML reads a bare `off` (and `no`) as false: that is what the user meant by it.
        return {False: "off", True: "disk"}.get(cache, cache) if isinstance(cache, bool) else cache

    def _unwritten_specs(self) -> tuple[Band, ...]:
        return tuple(self.sources[0].band_specs) if self.sources else super()._unwritten_specs()

    @model_validator(mode="after")
    def _mirror_first_source(self) -> DataConfig:
        """With ``sources``: data.bands, mean and std are the first source's (what stages that read one band
        list, as export does, work with), so they may be written only as that source's (recipe.yaml does)."""
        if self.sources is None:
            return self
        if self.root is not None:
            raise ValueError("data.sources and data.root together: list every folder in data.sources (each with "
                             "root and bands) and drop data.root")
        if "source" in self.model_fields_set and self.source != "folder":
            raise ValueError("data.sources are folders; drop data.source or set it to folder")
        first = self.sources[0]
        if "bands" in self.model_fields_set and self.bands != first.bands:
            raise ValueError(f"with data.sources, data.bands is the first source's ({', '.join(first.bands)}); give "
                             f"each source its bands and drop data.bands (as an override: data.bands=null)")
        if self.mean is not None and (self.mean, self.std) != (first.mean, first.std):
            raise ValueError("with data.sources, give mean and std inside each source (or leave them out to compute "
                             "them per source) and drop data.mean/data.std")
        self.source, self.bands, self.mean, self.std = "folder", list(first.bands), first.mean, first.std
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            s.name = s.name or s.root.name or f"source{i + 1}"
            if s.name in seen:
                raise ValueError(f"two sources are named '{s.name}'; give each a name, e.g. {{root: {s.root}, "
                                 f"bands: ..., name: {s.name}{i + 1}}}")
            seen.add(s.name)
        return self

    def source_configs(self) -> list[DataConfig]:
        """Each source as a single-folder ``data`` section: its root, bands, mean/std and nodata, the rest
        (image size, classes, cache, workers) shared. ``[self]`` for a run without ``sources``."""
        if not self.sources:
            return [self]
        shared = self.model_dump(mode="json", exclude={"sources", "root", "bands", "mean", "std", "nodata", "source"})
        return [DataConfig.model_validate(shared | {
            "source": "folder", "root": str(s.root), "bands": s.model_dump(mode="json")["bands"], "mean": s.mean,
            "std": s.std, "nodata": self.nodata if s.nodata is None else s.nodata}) for s in self.sources]

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both data.mean and data.std, or neither (then they are computed or defaulted)")
        if self.mean is None and self.source == "synth":  # the built-in data are 8-bit: the photo default
            self.mean, self.std = [0.5] * len(self.bands), [0.25] * len(self.bands)
        if self.mean is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}; give one per band")
        if self.mean is not None and len(self.mean) != len(self.bands):
            raise ValueError(f"{len(self.bands)} bands {self.bands} but {len(self.mean)} mean/std values; give one per band")
        if len({b.upper() for b in self.bands}) != len(self.bands) or any(not b.strip() or "," in b for b in self.bands):
            raise ValueError(f"data.bands {self.bands}: names must be unique, non-empty and free of commas")
        if self.source == "folder" and self.root is None and not self.sources:
            raise ValueError("source: folder needs data.root (a folder with train/ and val/)")
        if self.on_device and self.source != "synth":
            raise ValueError("data.on_device keeps the built-in dataset on the GPU; it needs source: synth")
        if self.source == "synth" and self.num_classes is None:
            self.num_classes = 10
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError("data.classes lists a class twice")
        return self


class AugmentConfig(Section):
    hflip: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a vertical flip")
    rotation: float = Field(0.0, ge=0.0, le=180.0, description="max rotation in degrees")
    distortion: float = Field(0.0, ge=0.0, le=1.0, description="random elastic distortion strength")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    step_size: int = Field(30, ge=1, description="StepLR: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="StepLR: decay factor")
    band_subsets: Literal["none", "per_batch", "per_sample", "sensors"] = Field(
        "none",
        description="train on random band subsets (subset size uniform, then the subset); "
        "missing bands are zero-filled and band-aware models also get the presence mask; "
        "sensors (wavelength models): each batch's subset is a sensor of its own, the images carry only "
        "its bands and the stem is set to them, as for another satellite",
    )
    sub_sensors: list[str] = Field(
        default_factory=list,
        description="with band_subsets=sensors: the sensor presets the model is for, e.g. [landsat8, planetscope] "
        "(all = every preset); every sub-sensor batch is then one of their band layouts (the run's bands nearest to "
        "theirs) instead of a random subset. The model sees those sensors' bands as the run's files render them, "
        "never their files",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="CPU threads per process (default: cores / local processes)")
    amp: bool = Field(False, description="bf16 autocast for the forward pass (GPU fast path)")
    channels_last: bool = Field(False, description="NHWC memory layout (faster convolutions on GPUs)")
    compile: bool = Field(False, description="torch.compile the model (slow first epoch, faster after)")


# QAT backend that produces each export target's INT8 (onnx has none).
QAT_FOR_TARGET = {"executorch": "xnnpack", "openvino": "openvino"}


class ExportItem(Section):
    target: Literal["executorch", "openvino", "onnx"]
    int8: Literal["none", "ptq", "qat"] = Field(
        "none", description="none: fp32; ptq: calibrated from the float run; qat: from the pipeline's QAT run")
    channels: str | None = Field(None, description="band subset to fold in, e.g. RG (band-robust models)")
    max_drop: float | None = Field(None, ge=0, description="int8 ptq only: accuracy budget in points; layers that "
                                                           "cost most are kept in float until it holds")

    @model_validator(mode="after")
    def _qat_exists(self) -> ExportItem:
        if self.max_drop is not None and self.int8 != "ptq":
            raise ValueError("max_drop is an accuracy budget for int8: ptq; drop it or set int8: ptq")
        if self.int8 == "qat" and self.target not in QAT_FOR_TARGET:
            raise ValueError(f"{self.target} has no QAT backend; use int8: ptq")
        if self.int8 == "qat" and self.channels:
            raise ValueError("a QAT artifact is the full-band model; drop channels or use int8: ptq")
        return self


class BenchStage(Section):
    device: str = Field("local", description="local, ssh://user@host[:port] or adb://SERIAL")
    threads: int = Field(2, ge=1)
    warmup: int | None = Field(None, ge=0, description="untimed calls; unset: until the latency settles")
    iters: int | None = Field(None, ge=1, description="timed calls; unset: rounds of at least min_time seconds")
    rounds: int | None = Field(None, ge=1, description="exactly this many rounds; unset: adaptive, to precision")
    precision: float = Field(3.0, gt=0, description="adaptive rounds: median interval half-width, % of the median")
    max_time: float = Field(300.0, ge=0, description="adaptive rounds: seconds of rounds at most")
    max_rounds: int = Field(60, ge=5, description="adaptive rounds: rounds at most")
    budget_ms: float | None = Field(None, gt=0, description="adaptive rounds: also stop a row once its interval "
                                                             "decides it against this budget (edgecnn sweep)")
    min_time: float = Field(1.0, gt=0, description="seconds each round measures at least (without iters)")
    cooldown: float = Field(0.0, ge=0, description="seconds of pause before each round")
    eager: bool = Field(True, description="the run's PyTorch fp32 model as the reference row "
                                          "(on this machine; left out when device is ssh:// or adb://)")
    time_budget_s: float | None = Field(
        None, ge=1, description="adaptive rounds: seconds for the whole bench stage, loading to finish; the rounds "
                                "get what loading and warm-up leave (docs/precision.md); unset: only max_time. "
                                "Fixed rounds or iters (an override on a recipe that sets it) run in full: the "
                                "budget then does not apply")



class PipelineConfig(Section):
    """What ``edgecnn run`` does after (or instead of) training; ``edgecnn train`` ignores it."""

    stages: list[Literal["train", "qat", "export", "bench", "report"]] = Field(
        ["train", "export", "bench", "report"], min_length=1, description="stages to run, in chain order")
    qat: list[Literal["xnnpack", "openvino"]] = Field([], description="QAT runs made by the qat stage")
    qat_epochs: int = Field(3, ge=1)
    export: list[ExportItem] = Field(
        [ExportItem(target="executorch"), ExportItem(target="executorch", int8="ptq"),
         ExportItem(target="openvino"), ExportItem(target="openvino", int8="ptq")],
        description="artifacts made by the export stage")
    calib: int = Field(256, ge=1, description="PTQ calibration images")
    bench: BenchStage = BenchStage()

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        order = ["train", "qat", "export", "bench", "report"]
        if [s for s in order if s in self.stages] != self.stages:
            raise ValueError(f"stages {self.stages}: list each at most once, in the order {' -> '.join(order)}")
        for item in self.export:
            backend = QAT_FOR_TARGET.get(item.target)
            if item.int8 == "qat" and backend not in self.qat:
                raise ValueError(f"export {item.target} int8: qat needs '{backend}' in pipeline.qat")
        return self


class Recipe(Section):
    name: str = Field(..., min_length=1, description="run name; default run folder is runs/<name>")
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    pipeline: PipelineConfig = PipelineConfig()

    @model_validator(mode="after")
    def _wavelengths_for_wave_models(self) -> Recipe:
        from edgecnn.core.catalog import reads_wavelengths

        if reads_wavelengths(self.model.name):
            specs = [b for s in self.data.sources or [] for b in s.band_specs] or self.data.band_specs
            missing = [b.name for b in specs if b.center_nm is None]
            if missing:
                raise ValueError(
                    f"data.bands: {self.model.name} generates each band's kernel from its wavelength, but "
                    f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} none; give a sensor preset "
                    f"(data.bands=sentinel2), a pick (sentinel2:B04,B03,B02) or {{name, center_nm, fwhm_nm}} items")
        return self

    @model_validator(mode="after")
    def _sensors_need_wavelengths(self) -> Recipe:
        from edgecnn.core.catalog import reads_wavelengths

        if self.train.band_subsets == "sensors" and not reads_wavelengths(self.model.name):
            raise ValueError(f"train.band_subsets=sensors sets the stem to each batch's bands by wavelength, which "
                             f"{self.model.name} cannot; use per_sample or per_batch, or a wavelength model "
                             f"(cnn_attn_wave, resnet34_wave)")
        if self.train.sub_sensors and self.train.band_subsets != "sensors":
            raise ValueError("train.sub_sensors names the sensors that band_subsets=sensors draws; set "
                             "train.band_subsets=sensors, or drop train.sub_sensors")
        for name in self.train.sub_sensors:
            if name != "all":
                resolve_bands(name)  # an unknown preset: one line with "did you mean"
        return self

    @model_validator(mode="after")
    def _sources_fit_the_model(self) -> Recipe:
        # A plain first convolution has one input channel per band: only a wavelength-conditioned stem reads
        # band lists of several lengths with one set of weights.
        from edgecnn.core.catalog import reads_wavelengths

        sources = self.data.sources or []
        counts = {s.name: len(s.bands) for s in sources}
        if len(set(counts.values())) > 1 and not reads_wavelengths(self.model.name):
            shown = ", ".join(f"{n} {c}" for n, c in counts.items())
            raise ValueError(f"data.sources have different band counts ({shown}) but {self.model.name} has no "
                             f"wavelength stem; use model.name: cnn_attn_wave, or give every source as many bands")
        return self
