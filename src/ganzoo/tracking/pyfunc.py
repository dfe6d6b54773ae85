"""The generator as an MLflow pyfunc model (what `ganzoo register` logs and `mlflow models serve`
serves). The model's only artifact is the ganzoo checkpoint and its code is `model_code.py`
(an import of GeneratorModel, nothing pickled). The ganzoo package that logged it ships with it
(MLflow's `code_paths`: `code/ganzoo/` in the model folder, put on `sys.path` at load), so loading
needs ganzoo's dependencies (the model's pinned `pip_requirements`) but no separately installed
ganzoo, no params.yaml, data or source tree. Where a ganzoo is already imported (the `ganzoo`
CLI itself), that one is used.

Request table (a pandas DataFrame; over REST, `{"dataframe_split": {"columns": [...], "data": [...]}}`),
one row per request, at most MAX_ROWS rows and MAX_IMAGES images in all (a served model must not be
asked for unbounded memory: one over-large request answers 400 before anything is generated):

- sampling variants: `n` (images, a whole number, default 1), `seed` (a whole number, default 0;
  the same seed gives the same images), `label` (cgan: the class of all n images; omitted, classes
  are drawn from the seed), `codes` (infogan: "cat=3,c1=0.5" as for `ganzoo sample --codes`).
- translation variants (pix2pix, cyclegan, discogan): `image` (a base64-encoded PNG; converted to
  the model's channel count, centre-cropped and resized to its image size, as `ganzoo translate`
  converts a file) and `direction` ("AtoB" default, or
  "BtoA" for the two-way variants).

Any other column (a misspelt `lable`) is refused with 400 rather than ignored. That is why the
signature declares outputs only: with input columns declared, MLflow drops unknown columns and
casts `n` = 1.5 to 1 before the model sees the request. The accepted columns are in the model's
metadata (`request_columns`) and its input example.

Response: one row per image, columns `request` (the row it answers) and `image` (base64 PNG), so
a REST client gets `{"predictions": [{"request": 0, "image": "iVBOR..."}, ...]}`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import numbers
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from ganzoo.data.images import decode_image, png_bytes, to_unit_range
from ganzoo.errors import ConfigError, GanzooError
from ganzoo.sampling import generate, parse_codes, source_shape

MAX_IMAGES = 1024  # per request, all rows together (~1.3 MB of PNGs at 32x32)
MAX_ROWS = 256  # per request: each row is a separate generation (or a decoded input image)
OUTPUT_SCHEMA = Schema([ColSpec("long", "request"), ColSpec("string", "image")])


def bad_request(message: str) -> MlflowException:
    """The client's mistake: the scoring server answers it with HTTP 400 and this message."""
    return MlflowException.invalid_parameter_value(message)


def encode_png(image: torch.Tensor) -> str:
    """One [-1, 1] CHW image -> base64 PNG (greyscale or RGB)."""
    return base64.b64encode(png_bytes(image)).decode("ascii")


def decode_png(text: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """base64 PNG/JPEG -> [-1, 1] CHW of `shape`: the conversion `ganzoo translate` applies to a file."""
    c, h, _ = shape
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise bad_request("column 'image' must hold base64-encoded PNG/JPEG images (not valid base64)") from None
    try:
        arr = decode_image(data, c, h, name="in column 'image'")
    except GanzooError as err:
        raise bad_request(f"column 'image' must hold base64-encoded PNG/JPEG images ({err})") from None
    return to_unit_range(torch.from_numpy(arr))


def input_schema(variant) -> Schema:
    """The request columns the model accepts (documentation and validation: see the module
    docstring for why the logged signature leaves them out)."""
    if variant.translates:
        return Schema([ColSpec("string", "image"), ColSpec("string", "direction", required=False)])
    cols: list[ColSpec | TensorSpec] = [ColSpec("long", "n", required=False), ColSpec("long", "seed", required=False)]
    if variant.takes_labels:
        cols.append(ColSpec("long", "label", required=False))
    if variant.takes_codes:
        cols.append(ColSpec("string", "codes", required=False))
    return Schema(cols)


def request_columns(variant) -> list[str]:
    return [str(name) for name in input_schema(variant).input_names()]


def input_example(variant) -> pd.DataFrame:
    if variant.translates:
        blank = torch.zeros(variant.data.image_shape)
        return pd.DataFrame({"image": [encode_png(blank)], "direction": ["AtoB"]})
    example = {"n": [2], "seed": [0]}
    if variant.takes_labels:
        example["label"] = [1]
    return pd.DataFrame(example)


def signature(variant) -> ModelSignature:
    return ModelSignature(inputs=None, outputs=OUTPUT_SCHEMA)  # inputs: ganzoo checks them (module docstring)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value != ""


def whole_number(row: int, column: str, value, lo: int, hi: int, hint: str) -> int:
    """A request value that must be an integer in lo..hi: 3 and 3.0 pass; 1.5, "3", true do not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise bad_request(f"row {row}: {column} = {value!r} must be a whole number ({hint})")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        number = int(float(value))
    else:
        raise bad_request(f"row {row}: {column} = {value!r} must be a whole number ({hint})")
    if not lo <= number <= hi:
        raise bad_request(f"row {row}: {column} = {number} is out of range ({hint})")
    return number


def check_request(variant, frame: pd.DataFrame) -> list[int]:
    """Refuse a request before any work: unknown columns, too many rows or images, non-integer
    or out-of-range numbers. Returns each row's image count."""
    allowed = request_columns(variant)
    for col in frame.columns:
        if col not in allowed:
            close = difflib.get_close_matches(str(col), allowed, n=1)
            hint = (" (it is unconditional)" if col == "label" else
                    f" (did you mean {close[0]!r}?)" if close else "")
            raise bad_request(f"unknown column {col!r}{hint}; this {variant.name} model takes {', '.join(allowed)}")
    if not 1 <= len(frame) <= MAX_ROWS:
        raise bad_request(f"{len(frame)} rows: send 1..{MAX_ROWS} rows per request (split larger requests)")
    if variant.translates:
        if "image" not in frame.columns:
            raise bad_request(f"column 'image' is missing; this {variant.name} model takes {', '.join(allowed)}")
        return [1] * len(frame)
    counts = []
    for i, n in enumerate(frame["n"] if "n" in frame.columns else [None] * len(frame)):
        counts.append(whole_number(i, "n", n, 1, MAX_IMAGES, f"1..{MAX_IMAGES} images per request")
                      if _present(n) else 1)
    if sum(counts) > MAX_IMAGES:
        raise bad_request(f"{sum(counts)} images in {len(frame)} rows: ask for at most {MAX_IMAGES} images "
                          "per request, all rows together (split larger requests)")
    return counts


class GeneratorModel(PythonModel):
    """Loads the checkpoint artifact with `ganzoo.training.checkpoint.load_variant`."""

    def load_context(self, context):
        from ganzoo.training.checkpoint import load_variant

        device = (context.model_config or {}).get("device", "cpu")
        self.variant, _, _ = load_variant(context.artifacts["checkpoint"], device=device)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        counts = check_request(self.variant, frame)
        rows = []
        for i, (request, n) in enumerate(zip(frame.to_dict("records"), counts, strict=True)):
            images = self._translate(request) if self.variant.translates else self._sample(i, request, n)
            rows += [{"request": i, "image": encode_png(img)} for img in images]
        return pd.DataFrame(rows, columns=["request", "image"])

    def _sample(self, row: int, request: dict, n: int) -> torch.Tensor:
        # The CLI's own sampling path (same seeds, same errors), not a copy of it.
        seed = 0
        if _present(request.get("seed")):  # torch's generator takes any 64-bit seed
            seed = whole_number(row, "seed", request["seed"], -(2**63), 2**64 - 1, "a 64-bit integer")
        labels = None
        if _present(request.get("label")):  # a column only conditional models accept (check_request)
            classes = self.variant.data.num_classes or 1
            label = whole_number(row, "label", request["label"], 0, classes - 1, f"classes are 0..{classes - 1}")
            labels = torch.full((n,), label, dtype=torch.long)
        if _present(request.get("codes")) and not isinstance(request["codes"], str):
            raise bad_request(f"row {row}: codes = {request['codes']!r} must be text such as \"cat=3,c1=0.5\"")
        try:
            codes = parse_codes(request["codes"]) if _present(request.get("codes")) else None
            return generate(self.variant, n, seed=seed, labels=labels, codes=codes)
        except GanzooError as err:  # labels for an unconditional model, unknown codes...
            raise bad_request(str(err)) from None

    @torch.no_grad()
    def _translate(self, request: dict) -> torch.Tensor:
        direction = request.get("direction") if _present(request.get("direction")) else "AtoB"
        if direction not in ("AtoB", "BtoA"):
            raise bad_request(f"direction = {direction!r}: use AtoB or BtoA")
        x = decode_png(request["image"], source_shape(self.variant, direction)).unsqueeze(0).to(self.variant.device)
        self.variant.eval()
        try:
            return self.variant.translate(x, direction).float().cpu()
        except GanzooError as err:  # e.g. BtoA asked of a one-way pix2pix
            raise bad_request(str(err)) from None


# What loading the model imports (the generator's code and ganzoo's own imports on that path),
# as distribution names; ganzoo itself ships as code (`code_paths`), so it is not among them.
RUNTIME_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pandas", "pillow", "mlflow", "pydantic", "pyyaml",
                         "scipy", "tqdm")


def pip_requirements() -> list[str]:
    """ganzoo's runtime dependencies, pinned to the versions that produced the model."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in RUNTIME_DISTRIBUTIONS:
        try:
            found.append(f"{dist}=={version(dist).split('+')[0]}")  # drop local tags such as +cpu / +cu124
        except PackageNotFoundError:
            found.append(dist)
    return found


def package_dir() -> str:
    """The folder of the ganzoo package this process runs: what the model ships as its code."""
    import ganzoo

    return str(Path(ganzoo.__file__).resolve().parent)


def log_generator(variant, checkpoint_path, run_id: str | None = None, name: str = "generator"):
    """Log the checkpoint as a pyfunc model, an output of run `run_id` (or of the active run);
    returns MLflow's ModelInfo. Through `Model.log` with the run's id rather than inside
    `mlflow.start_run(run_id)`: reopening a finished run would set it RUNNING and move its end
    time to now, stretching the training run's duration by however long registering took."""
    from mlflow.models import Model

    return Model.log(
        artifact_path=None,  # deprecated in favour of `name`, but still a required argument
        name=name,
        flavor=mlflow.pyfunc,
        run_id=run_id,
        python_model=str(Path(__file__).with_name("model_code.py")),
        code_paths=[package_dir()],
        artifacts={"checkpoint": str(checkpoint_path)},
        signature=signature(variant),
        input_example=input_example(variant),
        pip_requirements=pip_requirements(),
        # No model_config here: MLflow would log it as params of the training run; load_context's
        # default is the CPU, and loaders pass {"device": ...} at load time.
        metadata={"ganzoo_variant": variant.name, "image_shape": list(variant.data.image_shape),
                  "request_columns": request_columns(variant), "max_images_per_request": MAX_IMAGES,
                  "max_rows_per_request": MAX_ROWS},
    )


def load_variant_from_uri(uri: str, device: str = "cpu"):
    """The trained Variant behind an MLflow model URI (`models:/NAME@champion`, `runs:/ID/generator`),
    from the store `$MLFLOW_TRACKING_URI` names, else ./mlflow.db."""
    from ganzoo.tracking.store import resolve_uri

    tracking_uri = resolve_uri(None)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(uri, model_config={"device": str(device)})
    except MlflowException as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ConfigError(f"cannot load {uri} from {tracking_uri} ({first}); register a model first "
                          f"(`ganzoo register`) or point MLFLOW_TRACKING_URI at the right store") from None
    wrapped = model.unwrap_python_model()
    if not isinstance(wrapped, GeneratorModel):
        raise ConfigError(f"{uri} is not a ganzoo generator model")
    return wrapped.variant
