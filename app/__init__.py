"""The n2n HTTP service: FastAPI on top of n2n_core."""
