"""MLflow: experiment tracking, the model registry with champion gating, and the served pyfunc
model. The only package that imports mlflow (inside its modules, which the stages import lazily).

- `open_tracker(cfg)`: training hooks + evaluation logging (`tracker.py`, `store.py`).
- `ganzoo.tracking.registry.register_checkpoint`: `ganzoo register`.
- `ganzoo.tracking.pyfunc`: the generator as an MLflow pyfunc model; `load_variant_from_uri`.
"""

from ganzoo.tracking.tracker import NullTracker, Tracker, open_tracker

__all__ = ["NullTracker", "Tracker", "open_tracker"]
