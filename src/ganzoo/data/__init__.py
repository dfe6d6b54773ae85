"""Data layer: sources -> prepared tensors on disk -> on-device batches."""
