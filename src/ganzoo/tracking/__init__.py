"""MLflow: experiment tracking, the model registry with champion gating, and the served pyfunc
model. The only package that imports mlflow (inside its modules, which the stages import lazily).

- `open_tracker(cfg)`: training hooks + evaluation logging (`tracker.py`, `store.py`).
- `ganzoo.tracking.registry.register_checkpoint`: `ganzoo register`.
- `ganzoo.tracking.pyfunc`: the generator as an MLflow pyfunc model; `load_variant_from_uri`.
"""

import os

# No usage telemetry leaves the machine unless the user asks for it: read by MLflow at import,
# and every mlflow import in ganzoo passes through this package first.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from ganzoo.tracking.tracker import NullTracker, Tracker, open_tracker  # noqa: E402

__all__ = ["NullTracker", "Tracker", "open_tracker"]
