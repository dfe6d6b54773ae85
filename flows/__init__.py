"""Prefect flows over the ganzoo stages (see docs/orchestration.md).

`flows.pipeline`  prepare -> classifier -> train -> evaluate -> register for one variant (`python -m flows.pipeline`)
`flows.sweep`     several variants, a comparison table and the registry decisions
`flows.deploy`    the cron-scheduled deployment (flow.serve) and the work-pool deployments
`flows.runlog`    what a run tells Prefect's UI: stage messages, training progress, run names

The flows call `ganzoo.stages` exactly as the CLI and `dvc.yaml` do and add only orchestration:
retries for transient failures, artifacts, logs, and parallelism across variants.
"""

import os

# No usage telemetry leaves the machine unless the user asks for it, as for MLflow
# (ganzoo.tracking): set before any `import prefect`, which reads them (DO_NOT_TRACK: the SDK's
# events; the other: the anonymous report of a server that a flow starts, e.g. the temporary one).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
