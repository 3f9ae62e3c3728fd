"""Inference: denoising images of any size with a model (infer.py: tiles and batches; streaming.py: row
streams), precision and runtime settings (precision.py, runtime.py), the noise-adaptive wrapper of the blind
model (noise_adaptive.py) and ONNX export (export.py).

May import the framework (n2n_core.nn), the data (n2n_core.data), models.py and analysis.py; knows nothing
of training or HTTP.
"""
