"""Training: the trainer (train.py), its methods (methods.py: Noise2Noise, Neighbor2Neighbor), data-parallel
runs (distributed.py), evaluation and metrics (evaluate.py, metrics.py), model cards (card.py) and the memory
a run needs (memory.py).

May import the framework (n2n_core.nn), the data (n2n_core.data), the models and the inference room (a
trainer validates by denoising); knows nothing of HTTP.
"""
