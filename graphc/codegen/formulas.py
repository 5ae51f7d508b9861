"""The f32 formula of every elementwise op, once, for every compiled target (c, opencl, triton).

Each is ggml CPU's f32 code (ggml-cpu unary-ops.cpp, binary-ops.cpp, vec.h) in the same operation order,
written with the expression IR (graphc.codegen.expr); a printer renders it in its language. The `ref`
target keeps its own numpy formulas: it is the independent oracle these are tested against.

formula(node, arg) -> Expr, where arg(slot, i0_add=0) is the value of source `slot` at the current
element (i0_add: the element that far along dim 0, for glu's halves of one source).
"""
from __future__ import annotations

from typing import Callable

from graphc.custom import get_custom_op
from graphc.errors import CompileError
from graphc.ir import Tensor

from .expr import Expr, Index, call, i64, select

GELU_COEF_A = 0.044715
GELU_QUICK_COEF = -1.702
SQRT_2_OVER_PI = 0.79788456080286535587989211986876
SQRT_2_INV = 0.70710678118654752440084436210484
NEG_INF = float("-inf")

Arg = Callable[..., Expr]


# --- activations (GGML_UNARY_OP_*, graphc's one_minus) ------------------------------------------------

def sigmoid(x): return 1.0 / (1.0 + call("exp", -x))
def silu(x): return x / (1.0 + call("exp", -x))
def hardsigmoid(x): return call("fmin", 1.0, call("fmax", 0.0, (x + 3.0) / 6.0))


def gelu(x):
    inner = (SQRT_2_OVER_PI * x) * (1.0 + (GELU_COEF_A * x) * x)
    return (0.5 * x) * (1.0 + call("tanh", inner))


def gelu_quick(x): return x * (1.0 / (1.0 + call("exp", GELU_QUICK_COEF * x)))
def gelu_erf(x): return (0.5 * x) * (1.0 + call("erf", x * SQRT_2_INV))


# ggml's GGML_GELU_FP16 lookup tables: the formula at x rounded to f16, the result rounded to f16
def gelu_table(x):
    inner = call("f16_round", gelu(call("f16_round", x)))
    return select(x <= -10.0, 0.0, select(x >= 10.0, x, inner))


def gelu_quick_table(x): return call("f16_round", gelu_quick(call("f16_round", x)))


UNARY: dict[str, Callable[[Expr], Expr]] = {
    "abs": lambda x: call("fabs", x),
    "sgn": lambda x: select(x > 0.0, 1.0, select(x < 0.0, -1.0, 0.0)),
    "neg": lambda x: -x,
    "step": lambda x: select(x > 0.0, 1.0, 0.0),
    "tanh": lambda x: call("tanh", x),
    "elu": lambda x: select(x > 0.0, x, call("expm1", x)),
    "relu": lambda x: select(x > 0.0, x, 0.0),
    "sigmoid": sigmoid,
    "silu": silu,
    "hardsigmoid": hardsigmoid,
    "hardswish": lambda x: x * hardsigmoid(x),
    "exp": lambda x: call("exp", x),
    "expm1": lambda x: call("exp", x) - 1.0,          # ggml: expf(x) - 1, not expm1f
    "softplus": lambda x: select(x > 20.0, x, call("log", 1.0 + call("exp", x))),
    "one_minus": lambda x: 1.0 - x,                   # graphc (RWKV)
    "gelu": gelu,
    "gelu_quick": gelu_quick,
    "gelu_erf": gelu_erf,
}
TABLE_VARIANT = {"gelu": gelu_table, "gelu_quick": gelu_quick_table}

# glu: the activation of x times the gate g
GLU: dict[str, Callable[[Expr, Expr], Expr]] = {
    "reglu": lambda x, g: select(x > 0.0, x * g, 0.0),
    "geglu": lambda x, g: gelu(x) * g,
    "swiglu": lambda x, g: silu(x) * g,
    "geglu_erf": lambda x, g: gelu_erf(x) * g,
    "geglu_quick": lambda x, g: gelu_quick(x) * g,
}
GLU_TABLE_VARIANT = {"geglu": lambda x, g: gelu_table(x) * g, "geglu_quick": lambda x, g: gelu_quick_table(x) * g}


# --- the ops ----------------------------------------------------------------------------------------

def _minmax(a, b, cmp):
    return select(a.ne(a) | b.ne(b), a + b, select(cmp(a, b), a, b))     # NaN propagates, like numpy


def _scale(n, x):
    s, b = float(n.params["s"]), float(n.params.get("b", 0.0))
    return x * s if b == 0.0 else x * s + b


def _clamp(n, x):
    y = select(x < float(n.params["max"]), x, float(n.params["max"]))
    return select(y > float(n.params["min"]), y, float(n.params["min"]))


def _leaky(n, x):
    ns = float(n.params["negative_slope"])
    return select(x > 0.0, x, 0.0) + ns * select(x < 0.0, x, 0.0)


def _diag_mask(value):
    def f(n, x):
        return select(Index(0) > i64(int(n.params["n_past"])) + Index(1), value, x)
    return f


def _unary(n: Tensor, arg: Arg) -> Expr:
    u = str(n.params["op"])
    fn = TABLE_VARIANT.get(u) if n.params.get("table") else None
    return (fn or UNARY[u])(arg(0))


def _glu(n: Tensor, arg: Arg) -> Expr:
    g = str(n.params["op"])
    fn = (GLU_TABLE_VARIANT.get(g) if n.params.get("table") else None) or GLU[g]
    if len(n.src) > 1 and n.src[1] is not None:
        return fn(arg(0), arg(1))
    first, second = arg(0, 0), arg(0, n.ne[0])
    x, gate = (second, first) if n.params.get("swapped") else (first, second)
    return fn(x, gate)


_ONE: dict[str, Callable] = {
    "sqr": lambda n, x: x * x,
    "sqrt": lambda n, x: call("sqrt", x),
    "log": lambda n, x: call("log", x),
    "sin": lambda n, x: call("sin", x),
    "cos": lambda n, x: call("cos", x),
    "scale": _scale,
    "clamp": _clamp,
    "leaky_relu": _leaky,
    "diag_mask_inf": _diag_mask(NEG_INF),
    "diag_mask_zero": _diag_mask(0.0),
    "dup": lambda n, x: x,
    "cont": lambda n, x: x,
    "repeat": lambda n, x: x,
}
_TWO: dict[str, Callable] = {
    "add": lambda a, b: a + b,
    "add1": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": lambda a, b: _minmax(a, b, lambda p, q: p >= q),
    "minimum": lambda a, b: _minmax(a, b, lambda p, q: p <= q),
}


def has_formula(op: str) -> bool:
    return op in _ONE or op in _TWO or op in ("unary", "glu")


def formula(n: Tensor, arg: Arg) -> Expr:
    """The value of node n at the current element (gelu/gelu_quick and their glu forms with table=true
    as ggml's f16 lookup tables compute them)."""
    if n.op in _TWO:
        return _TWO[n.op](arg(0), arg(1))
    if n.op in _ONE:
        return _ONE[n.op](n, arg(0))
    if n.op == "unary":
        return _unary(n, arg)
    if n.op == "glu":
        return _glu(n, arg)
    if n.op == "custom":            # a registered elementwise custom op's own formula
        fn = get_custom_op(str(n.params.get("fn"))).kernels["expr"]
        value = fn(*[arg(i) for i, s in enumerate(n.src) if s is not None])
        if not isinstance(value, Expr):
            raise CompileError(f"custom op {n.params.get('fn')!r}: kernels['expr'] returned "
                               f"{type(value).__name__}, not an expression")
        return value
    raise CompileError(f"op {n.op} has no elementwise formula")
