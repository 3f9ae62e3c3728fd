"""Shared test configuration: hypothesis profiles and data locations."""

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# The exactness checks (tiles and row streams against the whole-image forward, float32 against torch.nn)
# compare float32 with float32, so the suite runs float32 unless a test asks for a precision itself
# (tests/core/inference/test_precision.py and the service's precision tests ask for auto and bfloat16). Servers and
# subprocesses started by tests inherit it.
os.environ.setdefault("N2N_PRECISION", "float32")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test when this checkout has none."""
    if not (SHARED_DATA / "CBSD68").is_dir():
        pytest.skip("../shared/data is absent (fresh clone): this test needs the benchmark photographs")
    return SHARED_DATA
