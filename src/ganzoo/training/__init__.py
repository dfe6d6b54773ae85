"""The one training loop, checkpoints, and device/AMP/DDP plumbing."""
