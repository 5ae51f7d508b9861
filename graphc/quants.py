"""Tensor data <-> bytes, and ggml's quantization formats (placeholder: plain types only)."""
from __future__ import annotations

import numpy as np

from .types import GGMLType


def encode(values: np.ndarray, t: GGMLType) -> np.ndarray:
    """numpy values (last axis = ne0) -> raw ggml bytes (uint8, flat)."""
    if t.np_dtype is None:
        raise NotImplementedError(t.name)
    return np.ascontiguousarray(values, dtype=t.np_dtype).reshape(-1).view(np.uint8)
