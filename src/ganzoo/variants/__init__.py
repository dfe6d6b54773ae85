"""Variants: one small class per paper, registered by name in `registry.py`."""
