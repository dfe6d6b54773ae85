"""Typed, validated configuration: params.yaml -> Config, with dotted overrides.

`params.yaml` is the single source (DVC reads it too). Every section rejects unknown keys and
names the valid ones. Variant-specific hyper-parameters live in `model:` and are validated by
the variant's own `HParams` model (see `ganzoo.variants.registry.resolve`), because a variant's
defaults live beside the variant, not here.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ganzoo.errors import ConfigError


class _Section(BaseModel):
    # allow_inf_nan=False: `train.lr=.inf` (or 1e400, which YAML reads as inf) trains NaNs.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# Seeds feed random.seed, torch.manual_seed and the samplers' `seed * 1000 + rank` (which must stay
# within torch's 64-bit range): 0..2**32-1 is what numpy accepts too, and plenty of streams.
MAX_SEED = 2**32 - 1


DATA_SOURCES = (
    "auto", "digits", "mnist", "fashion_mnist", "cifar10", "folder",
    "paired_folder", "unpaired_folder", "digits_paired", "digits_unpaired",
    "photos", "photos_paired", "photos_unpaired",  # the embedded colour tasks (ganzoo.data.photos)
)


class DataConfig(_Section):
    # auto: the variant's embedded offline default (digits; digits_paired for pix2pix;
    # digits_unpaired for cyclegan/discogan), resolved by ganzoo.variants.registry.resolve.
    source: Literal[DATA_SOURCES] = "auto"  # type: ignore[valid-type]
    root: str | None = None
    image_size: int = Field(default=32, ge=8, le=512)
    channels: Literal[1, 3] | None = None  # None keeps the source's channel count
    prepared_dir: str = "data/prepared"
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    limit: int | None = Field(default=None, ge=1)  # keep only the first N images (quick runs)
    download: bool = True
    # How prepare fits an image to a square: center_crop (no distortion) or stretch (pix2pix's resize).
    resize: Literal["center_crop", "stretch"] = "center_crop"
    # Training jitter (load at 286/256 x size, random crop, random flip; ganzoo.data.jitter).
    # None: the papers' setting, resolved by the registry: on for pix2pix and cyclegan from 128 px.
    jitter: bool | None = None

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"must be a power of two (8, 16, 32, 64, 128, 256, 512), got {v}")
        return v


class TrainConfig(_Section):
    steps: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float | None = Field(default=None, gt=0)  # None: the variant's paper default
    lr_g: float | None = Field(default=None, gt=0)  # per-network rates override lr
    lr_d: float | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=500, ge=1)
    log_every: int = Field(default=50, ge=1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out_dir: str = "checkpoints"
    metrics_dir: str = "metrics"
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    cuda_graphs: bool = False
    sync_batchnorm: bool = False
    progress: bool = True
    threads: int | None = Field(default=None, ge=1)  # CPU threads; None leaves torch's default

    @field_validator("amp", "channels_last", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        # YAML 1.1 reads a bare `off`/`on` as a boolean: `--set train.amp=off` must still work.
        return {False: "off", True: "on"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v


class EvalConfig(_Section):
    n_samples: int = Field(default=2000, ge=2)
    seed: int = Field(default=1234, ge=0, le=MAX_SEED)
    batch_size: int = Field(default=500, ge=1)
    # auto: classifier with labels, rotation (self-supervised, trained on the real images) without
    features: Literal["auto", "classifier", "rotation", "inception"] = "auto"
    inception_weights: str | None = None
    classifier_steps: int = Field(default=600, ge=1)
    classifier_dir: str = "data/classifier"
    out_dir: str = "eval"
    kid_subset_size: int = Field(default=1000, ge=2)
    pr_k: int = Field(default=3, ge=1)
    bootstrap: int = Field(default=200, ge=0)  # FID interval replicates over generated samples; 0: none
    ci_level: float = Field(default=0.95, gt=0, lt=1)


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "ganzoo"
    image_every: int = Field(default=500, ge=1)
    log_every: int = Field(default=50, ge=1)
    registered_name: str | None = None  # None: ganzoo-<variant>-<source>
    # A challenger takes `champion` only when better by more than the noise: its interval and the
    # champion's apart by more than champion_margin (interval), or its value better by more (margin).
    champion_gate: Literal["interval", "margin"] = "interval"
    champion_margin: float = Field(default=0.0, ge=0)
    # Register a version only when it takes `champion` (a scheduled retrain that loses adds none).
    only_champion: bool = False
    # Seconds a finished command waits for logging that a slow or absent store held back; what is
    # still queued then is recorded in the sidecar (training never waits on the store).
    flush_timeout: float = Field(default=30.0, ge=0)


class MonitorConfig(_Section):
    """In-loop health (ganzoo.evaluation.monitor): every eval_every steps a fixed probe set is
    scored in the evaluation classifier's feature space; it never changes what is trained."""

    eval_every: int = Field(default=200, ge=0)  # 0: off
    n_probe: int = Field(default=500, ge=16)  # probe samples (fixed z / labels / codes)
    seed: int = 4321  # the probe's noise: the same samples at every evaluation and across resumes
    coverage_alarm: float = Field(default=0.7, ge=0, le=1)  # alarm when fewer classes hold >= 2% of samples
    entropy_alarm: float = Field(default=0.6, ge=0, le=1)  # alarm when class entropy falls below this x its best
    stop_on_alarm: bool = False  # a collapse alarm ends the run (after writing the checkpoint)
    patience: int = Field(default=0, ge=0)  # early stopping: evaluations without a better primary metric; 0 off
    keep_best: bool = True  # write best.pt beside last.pt at every new best


class Config(_Section):
    variant: str = "dcgan"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    data: DataConfig = Field(default_factory=DataConfig)
    model: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    # Set by ganzoo.variants.registry.resolve: the variant this config was resolved for (its
    # model section complete, data.source=auto replaced), so resolving again is free.
    _resolved_for: str | None = PrivateAttr(default=None)


# --------------------------------------------------------------------------- loading

DEFAULT_PARAMS = "params.yaml"


def suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; valid keys: {', '.join(sorted(valid))}"


def _fields_at(loc: tuple) -> list[str]:
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = field.annotation
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def format_validation_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"])
    key = ".".join(loc)
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}{suggest(loc[-1], _fields_at(loc))}"
    got = e.get("input")
    return f"{source}: {key} = {got!r} is invalid: {e['msg']}"


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 1e-4, true, null, [0.5, 0.999], "text"."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.lr=1e-4")
    key, _, value = assignment.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty key segment in {key!r}")
    node = raw
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = parse_value(value)


def read_params(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"params file {str(p)!r} not found; pass --params PATH to an existing YAML file")
    if p.is_dir():
        raise ConfigError(f"params file {str(p)!r} is a directory; pass --params PATH to a YAML file "
                          f"(e.g. {str(p / DEFAULT_PARAMS)!r})")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"params file {str(p)!r} is not text (a binary file?); pass --params PATH "
                          "to a YAML file such as params.yaml") from None
    except OSError as exc:
        raise ConfigError(f"params file {str(p)!r} cannot be read ({exc.strerror or exc}); "
                          "fix its permissions or pass another --params") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise ConfigError(f"{p}:{where} is not valid YAML; fix the syntax there") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections (variant, data, train, ...)")
    return raw


def config_from_dict(raw: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path | None = "params.yaml", overrides: list[str] | None = None) -> Config:
    """params file (optional) + dotted overrides -> validated Config (model section unresolved)."""
    raw = read_params(path) if path is not None else {}
    raw = copy.deepcopy(raw)
    for ov in overrides or []:
        apply_override(raw, ov)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        key = ".".join(str(p) for p in err.errors()[0]["loc"])
        from_cli = any(ov.partition("=")[0].strip() == key for ov in overrides or [])
        source = "--set" if from_cli or path is None else str(path)
        raise ConfigError(format_validation_error(err, source)) from None



def add_arguments(parser) -> None:
    """--params / --set, the same on the `ganzoo` CLI and every flow's command line."""
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, repeatable: --set train.lr=1e-4 --set variant=wgan_gp")


def load_from_args(params: str | Path | None, overrides: list[str] | None = None) -> Config:
    """load_config for a front end: a missing default params.yaml means the built-in defaults
    (run outside a project folder); any other missing file is an error."""
    if params is not None and str(params) == DEFAULT_PARAMS and not Path(params).exists():
        params = None
    return load_config(params, overrides)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}; used for MLflow params and DVC."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
