"""Elementwise ops: binary (b tiled by modulo), unary, glu, scale, clamp, leaky_relu, diag_mask.

Every formula is ggml CPU's f32 code (src/ggml-cpu/unary-ops.cpp, binary-ops.cpp, vec.h), with the
same f32 operation order; f16/bf16 results are rounded when the node is stored.

gelu / gelu_quick (and geglu / geglu_quick): ggml's CPU build defines GGML_GELU_FP16, so on f32 it
looks the result up in a table indexed by the input rounded to f16 (for -10 < x < 10), giving ~1e-3
relative error. By default the reference computes the exact f32 formula instead; the op parameter
`table=true` (graphc.ops) reproduces the table (round x to f16, formula, round to f16).
"""
from __future__ import annotations

import numpy as np

from .libm import erff, expf, expm1f, f32, logf, tanhf
from .registry import impl

GELU_COEF_A = np.float32(0.044715)
GELU_QUICK_COEF = np.float32(-1.702)
SQRT_2_OVER_PI = np.float32(0.79788456080286535587989211986876)
SQRT_2_INV = np.float32(0.70710678118654752440084436210484)
ONE, HALF = np.float32(1.0), np.float32(0.5)


def tile_to(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """ggml_can_repeat broadcasting: b's index in each dim is i % b.ne[i]."""
    if 0 in shape:                           # an empty result: nothing to tile (b may be empty too)
        return np.zeros(shape, dtype=b.dtype)
    reps = tuple(s // bs for s, bs in zip(shape, b.shape))
    return np.tile(b, reps) if any(r != 1 for r in reps) else b


_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "maximum": np.maximum, "minimum": np.minimum,   # graphc: NaN-propagating elementwise max/min
}


@impl(*_BINARY)
def binary(ctx, node):
    a, b = ctx.load(node.src[0]), ctx.load(node.src[1])
    with np.errstate(all="ignore"):
        return _BINARY[node.op](f32(a), tile_to(f32(b), a.shape))


@impl("add1")
def add1(ctx, node):
    a, b = ctx.load(node.src[0]), ctx.load(node.src[1])
    return f32(a) + f32(b).reshape(-1)[0]


# --- unary ------------------------------------------------------------------------------

def gelu(x: np.ndarray) -> np.ndarray:
    # 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x)))
    inner = (SQRT_2_OVER_PI * x) * (ONE + (GELU_COEF_A * x) * x)
    return (HALF * x) * (ONE + tanhf(inner))


def gelu_quick(x: np.ndarray) -> np.ndarray:
    return x * (ONE / (ONE + expf(GELU_QUICK_COEF * x)))


def gelu_erf(x: np.ndarray) -> np.ndarray:
    return (HALF * x) * (ONE + erff(x * SQRT_2_INV))


def _f16_table(fn, x: np.ndarray) -> np.ndarray:
    """ggml_table_*_f16[fp16(x)]: the formula at x rounded to f16, result rounded to f16."""
    return fn(x.astype(np.float16).astype(np.float32)).astype(np.float16).astype(np.float32)


def gelu_ggml(x: np.ndarray, table: bool) -> np.ndarray:
    if not table:
        return gelu(x)
    # GGML_GELU_FP16: exact limits outside (-10, 10), table inside
    return np.where(x <= -10, np.float32(0), np.where(x >= 10, x, _f16_table(gelu, x)))


def gelu_quick_ggml(x: np.ndarray, table: bool) -> np.ndarray:
    return _f16_table(gelu_quick, x) if table else gelu_quick(x)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (ONE + expf(-x))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return ONE / (ONE + expf(-x))


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    # fminf(1, fmaxf(0, (x + 3)/6)); fmin/fmax ignore NaN operands
    return np.fmin(ONE, np.fmax(np.float32(0), (x + np.float32(3)) / np.float32(6)))


_ZERO = np.float32(0)

UNARY = {
    "abs": np.abs,
    "sgn": lambda x: np.where(x > 0, ONE, np.where(x < 0, -ONE, _ZERO)),
    "neg": np.negative,
    "step": lambda x: np.where(x > 0, ONE, _ZERO),
    "tanh": tanhf,
    "elu": lambda x: np.where(x > 0, x, expm1f(x)),
    "relu": lambda x: np.where(x > 0, x, _ZERO),
    "sigmoid": sigmoid,
    "gelu_erf": gelu_erf,
    "silu": silu,
    "hardswish": lambda x: x * hardsigmoid(x),
    "hardsigmoid": hardsigmoid,
    "exp": expf,
    "expm1": lambda x: expf(x) - ONE,            # ggml: expf(x) - 1.0f, not expm1f
    "softplus": lambda x: np.where(x > 20, x, logf(ONE + expf(x))),
    "one_minus": lambda x: ONE - x,              # graphc (RWKV)
}


def unary_fn(name: str, table: bool = False):
    if name == "gelu":
        return lambda x: gelu_ggml(x, table)
    if name == "gelu_quick":
        return lambda x: gelu_quick_ggml(x, table)
    return UNARY[name]


@impl("unary")
def unary(ctx, node):
    fn = unary_fn(node.params["op"], bool(node.params.get("table")))
    with np.errstate(all="ignore"):
        return fn(f32(ctx.load(node.src[0])))


_SIMPLE = {"sqr": lambda x: x * x, "sqrt": np.sqrt, "log": logf,
           "sin": lambda x: _sincos(x, np.sin), "cos": lambda x: _sincos(x, np.cos)}


def _sincos(x, fn):
    with np.errstate(all="ignore"):
        return fn(x.astype(np.float64)).astype(np.float32)


@impl(*_SIMPLE)
def simple(ctx, node):
    with np.errstate(all="ignore"):
        return _SIMPLE[node.op](f32(ctx.load(node.src[0])))


# --- glu: x * gate, x and gate are the two halves of a row (or a and b) --------------------

def _glu_act(op: str, x: np.ndarray, g: np.ndarray, table: bool) -> np.ndarray:
    if op == "reglu":
        return np.where(x > 0, x * g, _ZERO)
    if op == "geglu":
        return gelu_ggml(x, table) * g
    if op == "swiglu":
        return silu(x) * g
    if op == "geglu_erf":
        return gelu_erf(x) * g
    if op == "geglu_quick":
        return gelu_quick_ggml(x, table) * g
    raise KeyError(op)


@impl("glu")
def glu(ctx, node):
    a = f32(ctx.load(node.src[0]))
    b = node.src[1] if len(node.src) > 1 else None
    if b is not None:
        x, g = a, f32(ctx.load(b))          # ggml ignores `swapped` when the gate is a separate tensor
    else:
        nc = a.shape[-1] // 2
        first, second = a[..., :nc], a[..., nc:2 * nc]
        x, g = (second, first) if node.params.get("swapped") else (first, second)
    with np.errstate(all="ignore"):
        return _glu_act(node.params["op"], x, g, bool(node.params.get("table")))


# --- parameterised elementwise --------------------------------------------------------------

@impl("scale")
def scale(ctx, node):
    x = f32(ctx.load(node.src[0]))
    s, b = np.float32(node.params["s"]), np.float32(node.params.get("b", 0.0))
    return x * s if b == 0 else x * s + b


@impl("clamp")
def clamp(ctx, node):
    x = f32(ctx.load(node.src[0]))
    lo, hi = np.float32(node.params["min"]), np.float32(node.params["max"])
    y = np.where(x < hi, x, hi)            # MIN(x, max) = x < max ? x : max
    return np.where(y > lo, y, lo)         # MAX(y, min) = y > min ? y : min


@impl("leaky_relu")
def leaky_relu(ctx, node):
    x = f32(ctx.load(node.src[0]))
    ns = np.float32(node.params["negative_slope"])
    return np.where(x > 0, x, _ZERO) + ns * np.where(x < 0, x, _ZERO)


@impl("diag_mask_inf", "diag_mask_zero")
def diag_mask(ctx, node):
    x = f32(ctx.load(node.src[0]))
    n_past = node.params["n_past"]
    ne0, ne1 = x.shape[-1], x.shape[-2]
    i = np.arange(ne0)[None, :]
    j = np.arange(ne1)[:, None]
    value = np.float32(-np.inf) if node.op == "diag_mask_inf" else _ZERO
    return np.where(i > n_past + j, value, x)
