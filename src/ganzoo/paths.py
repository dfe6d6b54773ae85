"""Every output path of a run, named once. `RunPaths.of(cfg)` is what the loop, evaluation,
tracking, registration and the flows use, so a renamed file changes in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ganzoo.config import Config

SIDECAR = "mlflow_run.json"  # beside the checkpoint: which MLflow run trained it


@dataclass(frozen=True)
class RunPaths:
    checkpoint_dir: Path  # <train.out_dir>/<variant>/
    metrics_dir: Path  # <train.metrics_dir>/<variant>/
    eval_dir: Path  # <eval.out_dir>/<variant>/

    @classmethod
    def of(cls, cfg: Config) -> RunPaths:
        return cls(checkpoint_dir=Path(cfg.train.out_dir) / cfg.variant,
                   metrics_dir=Path(cfg.train.metrics_dir) / cfg.variant,
                   eval_dir=Path(cfg.eval.out_dir) / cfg.variant)

    @property
    def last(self) -> Path:
        """The resumable checkpoint."""
        return self.checkpoint_dir / "last.pt"

    @property
    def best(self) -> Path:
        """The checkpoint of the best in-loop evaluation (monitor.keep_best)."""
        return self.checkpoint_dir / "best.pt"

    @property
    def sidecar(self) -> Path:
        return self.checkpoint_dir / SIDECAR

    @property
    def history(self) -> Path:
        """Loss history CSV (`dvc plots`)."""
        return self.metrics_dir / "losses.csv"

    @property
    def metrics(self) -> Path:
        """`ganzoo evaluate`'s metrics.json (`dvc metrics`)."""
        return self.eval_dir / "metrics.json"

    @property
    def sheets(self) -> Path:
        return self.eval_dir / "sheets"
