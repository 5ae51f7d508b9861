"""Custom ops (ggml's map_unary / map_binary / custom idea).

A user registers a named function in Python: a reference implementation in numpy, optionally a
shape rule and kernel source per target. Graph files name the function and never carry code;
compiling a graph whose custom op is not registered is a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import CompileError

# ref(inputs as float32/int numpy arrays in numpy order) -> numpy array of the result
RefFn = Callable[..., np.ndarray]
# shape(sources) -> (type name, ne) ; None: the node declares its type and shape itself
ShapeFn = Callable[[list], tuple]


@dataclass
class CustomOp:
    name: str
    ref: RefFn
    shape: ShapeFn | None = None
    kernels: dict[str, str] = field(default_factory=dict)   # target -> kernel source
    elementwise: bool = False                                  # result[i] depends on inputs[i] only


_REGISTRY: dict[str, CustomOp] = {}


def register_custom_op(name: str, ref: RefFn, *, shape: ShapeFn | None = None,
                       kernels: dict[str, str] | None = None, elementwise: bool = False) -> CustomOp:
    """Register (or replace) a custom op under `name`."""
    if not isinstance(name, str) or not name or len(name.encode()) > 63:
        raise ValueError("a custom op name is a non-empty string of at most 63 bytes")
    op = CustomOp(name, ref, shape, dict(kernels or {}), elementwise)
    _REGISTRY[name] = op
    return op


def unregister_custom_op(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_custom_op(name: str) -> CustomOp:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise CompileError(f"custom op {name!r} is not registered (registered: {known}); "
                           f"call graphc.register_custom_op({name!r}, ...) before compiling") from None


def lookup_shape(name: str) -> ShapeFn | None:
    op = _REGISTRY.get(name)
    return op.shape if op else None
