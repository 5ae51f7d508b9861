"""Shared pytest fixtures (keep small; several helpers add to this file)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# ggml's CPU backend reads this once at init: compare op by op, never a fused pair (rms_norm+mul, ...)
os.environ.setdefault("GGML_CPU_DISABLE_FUSION", "1")
sys.path.insert(0, os.path.dirname(__file__))   # lets tests import shared tables such as op_cases


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A fresh generator per test; its seed is attached to the test report for reproduction."""
    seed = np.random.SeedSequence().entropy
    request.node.user_properties.append(("seed", seed))
    print(f"rng seed: {seed}")   # shown with a failing test's captured output
    return np.random.default_rng(seed)


@pytest.fixture
def nmse():
    """ggml test-backend-ops' normalised MSE: mse(actual, expected) / mse(expected, 0)."""
    from op_cases import nmse as f
    return f
