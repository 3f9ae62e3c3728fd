"""The framework: modules with their own forward passes and vector-Jacobian products, on plain torch tensors.

module.py (Module, the layer protocol), layers/ (convolutions, activations, pooling, containers, ...),
functional/ (pure tensor functions: convolutions, padding, the neighbour sub-sampler), loss.py, optim.py,
init.py, serialize.py (safetensors files), checks.py, atomic.py.

This package knows nothing of images, noise, files of photos or named models, and imports nothing else of
n2n_core (tests/test_layout.py checks it).
"""
