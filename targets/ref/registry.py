"""The table op name -> numpy implementation, filled by the op-family modules."""
from __future__ import annotations

from typing import Callable

import numpy as np

# impl(ctx, node) -> values in numpy order (4-D, compute dtype) to store into the node, or None when the
# implementation wrote the node's memory itself (set_rows) or the op only aliases memory (views).
Impl = Callable[..., "np.ndarray | None"]
IMPLS: dict[str, Impl] = {}


def impl(*names: str):
    def deco(fn: Impl) -> Impl:
        for n in names:
            IMPLS[n] = fn
        return fn
    return deco
