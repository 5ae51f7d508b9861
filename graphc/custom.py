"""Custom ops (ggml's map_unary / map_binary / custom idea).

A user registers a named function in Python: a reference implementation in numpy, optionally a
shape rule and kernels for the compiled targets. Graph files name the function and never carry code;
compiling a graph whose custom op is not registered is a clear error. Kernels (`kernels=`):

  "expr"  (elementwise ops) a Python function of the sources' values, as expressions of
          graphc.codegen.expr, returning the result's value: the one formula every compiled target
          prints and fuses like a built-in elementwise op, e.g. lambda x, y: x * (1.0 - y).
  "c"     C statements: the body of a function of the C target's calling convention
              (const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, int n_src,
               int ith, int nth)
          run by every thread (split the rows with gc_chunk(nrows, ith, nth, &r0, &r1); kernels/c/
          graphc.h has gc_tensor and the helpers). It is compiled into the program under a synthesised
          name; the op's name never appears in generated code.
Registered kernels are code the user chose to run, like the numpy function.
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
    kernels: dict = field(default_factory=dict)   # "expr" -> formula function; target name -> kernel text
    elementwise: bool = False                                  # result[i] depends on inputs[i] only


_REGISTRY: dict[str, CustomOp] = {}


def register_custom_op(name: str, ref: RefFn, *, shape: ShapeFn | None = None,
                       kernels: dict | None = None, elementwise: bool = False) -> CustomOp:
    """Register (or replace) a custom op under `name`."""
    if not isinstance(name, str) or not name or len(name.encode()) > 63:
        raise ValueError("a custom op name is a non-empty string of at most 63 bytes")
    kernels = dict(kernels or {})
    for key, k in kernels.items():
        if key == "expr":
            if not callable(k) or not elementwise:
                raise ValueError("kernels['expr'] is a function of the sources' expressions, for elementwise=True ops")
        elif not isinstance(key, str) or not isinstance(k, str):
            raise ValueError(f"kernels[{key!r}] must be kernel source text for that target")
    op = CustomOp(name, ref, shape, kernels, elementwise)
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
