"""Prefect flows over the ganzoo stages (see docs/orchestration.md).

`flows.pipeline`  prepare -> classifier -> train -> evaluate -> register for one variant (`python -m flows.pipeline`)
`flows.sweep`     several variants, a comparison table and the registry decisions
`flows.deploy`    the cron-scheduled deployment (flow.serve) and the work-pool deployment

The flows call `ganzoo.stages` exactly as the CLI and `dvc.yaml` do and add only orchestration:
retries for transient failures, artifacts, and parallelism across variants.
"""
