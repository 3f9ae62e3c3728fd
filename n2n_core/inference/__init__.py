"""Inference: denoising images of any size with a model (tiles, row streams, precision, runtime settings, export)."""
