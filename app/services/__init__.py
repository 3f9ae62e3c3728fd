"""The service's work, without HTTP: the model registry (registry.py), the denoising queue (denoiser.py),
bytes to images and back (imaging.py, through n2n_core.data.images), uploaded datasets (datasets.py), model
names and noise specs. Raises plain exceptions (ValueError and its own); app.api.errors maps them to HTTP.
"""
