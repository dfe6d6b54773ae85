"""The benchmarks: scripts run as modules from the repository root (see common.py)."""
