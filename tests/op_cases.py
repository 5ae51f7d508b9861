"""The op table shared by test_ops.py (ref vs numpy) and test_ops_ggml.py (ref vs real ggml).

Each Case names its inputs (type and ggml-order shape, drawn fresh per run), a builder that makes
the graphc graph from them, a numpy formula written from ggml's documented semantics (float64, on
exactly the values the graph sees: f16-rounded, bf16-rounded or dequantized), and where
ggml-python 0.15.3 has the op, the same graph through ggml's C API.

Formulas take and return numpy-order 4-D arrays: shape (ne3, ne2, ne1, ne0).
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from graphc.builder import GraphBuilder
from graphc.custom import register_custom_op
from graphc.ir import Tensor
from graphc.types import get_type

try:  # real ggml through ggml-python; only the ggml tests and quantized inputs need it
    import ggml as gg
except Exception:  # pragma: no cover - the venv has it
    gg = None

Gen = Callable[[np.random.Generator, tuple], np.ndarray]
Arr = np.ndarray


# --- comparison (ggml test-backend-ops' normalised MSE) -----------------------------------

def nmse(actual: Arr, expected: Arr) -> float:
    """mse(actual, expected) / mse(expected, 0); 0 when both are all zero."""
    a = np.asarray(actual, np.float64).ravel()
    b = np.asarray(expected, np.float64).ravel()
    den = float(np.sum(b * b))
    num = float(np.sum((a - b) ** 2))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def compare(actual: Arr, expected: Arr, tol: float, what: str = "") -> float:
    """Same shape, same non-finite entries (inf signs, nan), NMSE of the finite rest <= tol."""
    a = np.asarray(actual, np.float64)
    b = np.asarray(expected, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != expected {b.shape}"
    fa, fb = np.isfinite(a), np.isfinite(b)
    bad = fa != fb
    bad |= ~fa & ~fb & ~((np.isnan(a) & np.isnan(b)) | (a == b))
    assert not bad.any(), (f"{what}: non-finite mismatch at {np.argwhere(bad)[:5].tolist()}: "
                           f"{a[bad][:5]} vs {b[bad][:5]}")
    err = nmse(a[fa], b[fb])
    assert err <= tol, (f"{what}: NMSE {err:.3g} > {tol:.3g} "
                        f"(max abs diff {np.max(np.abs(a[fa] - b[fb]), initial=0):.3g})")
    return err


# --- value generators ---------------------------------------------------------------------

def normal(rng: np.random.Generator, shape: tuple) -> Arr:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple) -> Arr:
    return rng.uniform(0.1, 4.0, shape)


def uniform(lo: float, hi: float) -> Gen:
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def away_from_zero(rng: np.random.Generator, shape: tuple) -> Arr:
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def ints(lo: int, hi: int) -> Gen:
    return lambda rng, shape: rng.integers(lo, hi, shape)


def distinct(n: int) -> Gen:
    """Rows of distinct indices in [0, n) along the last axis (set_rows must not write a row twice)."""
    def gen(rng, shape):
        rows = int(np.prod(shape[:-1]))
        return np.stack([rng.permutation(n)[:shape[-1]] for _ in range(rows)]).reshape(shape)
    return gen


def causal_mask(n_past: int = 0, extra_rows: int = 0) -> Gen:
    """0 / -inf attention mask over [n_kv, n_q]: key i visible from query j when i <= n_past + j; random bias added."""
    def gen(rng, shape):
        nkv, nq = shape[-1], shape[-2]
        i = np.arange(nkv)[None, :]
        j = np.arange(nq)[:, None]
        m = np.where(i <= n_past + j, rng.uniform(-1.0, 0.0, (nq, nkv)), -np.inf)
        return np.broadcast_to(m, shape).copy()
    return gen


# --- exact roundings and quantizers (numpy, independent of graphc) ------------------------

def f16(x: Arr) -> Arr:
    return np.asarray(x, np.float64).astype(np.float16).astype(np.float64)


def bf16_bits(x: Arr) -> Arr:
    """float32 -> bf16 bits, round to nearest even (ggml_compute_fp32_to_bf16; no nans here)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16(x: Arr) -> Arr:
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def q8_0_roundtrip(x: Arr) -> Arr:
    """quantize_row_q8_0 then dequantize: d = amax/127 (stored f16), q = round(x/d)."""
    b = np.asarray(x, np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.round(b * idv)
    return (q * f16(d)).reshape(np.shape(x))


def q4_0_roundtrip(x: Arr) -> Arr:
    """quantize_row_q4_0_ref then dequantize: d = (value of largest |x|)/-8, q = min(15, trunc(x/d + 8.5))."""
    b = np.asarray(x, np.float32).reshape(-1, 32)
    mx = b[np.arange(len(b)), np.argmax(np.abs(b), axis=1)][:, None]
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.minimum(15, np.trunc((b * idv).astype(np.float32) + np.float32(8.5)))
    return ((q - 8) * f16(d)).reshape(np.shape(x))


def ggml_type_id(name: str) -> int:
    return getattr(gg, "GGML_TYPE_" + get_type(name).name.upper())


def ggml_quantize(x: Arr, tname: str) -> Arr:
    """ggml's reference quantizer (ggml_quantize_chunk): float rows (last axis) -> raw bytes."""
    t = get_type(tname)
    x = np.ascontiguousarray(x, np.float32)
    ne0 = x.shape[-1]
    nrows = x.size // ne0
    out = np.zeros(nrows * t.row_bytes(ne0), np.uint8)
    n = gg.ggml_quantize_chunk(ggml_type_id(tname), x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                               out.ctypes.data_as(ctypes.c_void_p), 0, nrows, ne0, None)
    assert n == out.size, f"ggml_quantize_chunk wrote {n} bytes, expected {out.size}"
    return out


def ggml_dequantize(raw: Arr, tname: str, n: int) -> Arr:
    """ggml's to_float for `n` values of type `tname` from raw bytes."""
    raw = np.ascontiguousarray(raw, np.uint8)
    t = get_type(tname)
    assert raw.size == n // t.blck * t.size, f"{raw.size} bytes do not hold {n} {tname} values"
    out = np.empty(n, np.float32)
    traits = gg.ggml_get_type_traits(ggml_type_id(tname)).contents
    traits.to_float(raw.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)
    return out


# --- cases ----------------------------------------------------------------------------------

@dataclass
class In:
    name: str
    type: str
    ne: tuple[int, ...]
    gen: Gen = normal

    @property
    def ne4(self) -> tuple[int, int, int, int]:
        ne = tuple(self.ne) + (1,) * (4 - len(self.ne))
        return ne  # type: ignore[return-value]

    @property
    def np_shape(self) -> tuple[int, int, int, int]:
        n = self.ne4
        return (n[3], n[2], n[1], n[0])


@dataclass
class Case:
    id: str
    inputs: list[In]
    build: Callable[[GraphBuilder, dict[str, Tensor]], Tensor]
    numpy: Callable[[dict[str, Arr]], Arr]
    ggml: Callable[[Any, dict[str, Any]], Any] | None = None
    tol: float = 1e-7         # ref vs numpy formula
    tol_ggml: float = 1e-7    # ref vs ggml
    exact: bool = False       # integer result: compare exactly
    why_ggml: str = ""        # why there is no ggml graph, or why tol_ggml is looser
    ref_opts: dict | None = None      # RefExecutable options for the numpy comparison (default: DEQUANT)


# ref options: exact math (numpy comparisons) and ggml CPU emulation (comparisons with real ggml, whose
# graphs also get gelu's table form: graphc.builder.use_gelu_table)
DEQUANT = {"quant_matmul": "dequant"}
GGML_MODE = {"quant_matmul": "ggml"}


@dataclass
class Fed:
    """One prepared input: what the formula sees, what ref is fed, and ggml's raw bytes."""
    inp: In
    values: Arr   # float64 / int64, numpy 4-D
    feed: Arr     # for ref: float32 values, ints, or uint8 raw bytes (bf16, quantized)
    raw: Arr      # uint8 raw ggml bytes


def prepare(case: Case, rng: np.random.Generator) -> dict[str, Fed]:
    out = {}
    for i in case.inputs:
        t = get_type(i.type)
        v = np.asarray(i.gen(rng, i.np_shape))
        if t.name in ("i32", "i64", "i16", "i8"):
            iv = v.astype(t.np_dtype)
            out[i.name] = Fed(i, iv.astype(np.int64), iv, iv.view(np.uint8).ravel())
        elif t.name == "f32":
            f = v.astype(np.float32)
            out[i.name] = Fed(i, f.astype(np.float64), f, f.view(np.uint8).ravel())
        elif t.name == "f16":
            h = v.astype(np.float16)
            out[i.name] = Fed(i, h.astype(np.float64), h.astype(np.float32), h.view(np.uint8).ravel())
        elif t.name == "bf16":
            bits = bf16_bits(v)
            raw = bits.view(np.uint8).ravel()
            out[i.name] = Fed(i, bf16(v), raw, raw)
        elif t.is_quantized:
            raw = ggml_quantize(v, t.name)
            deq = ggml_dequantize(raw, t.name, v.size).reshape(v.shape)
            out[i.name] = Fed(i, deq.astype(np.float64), raw, raw)
        else:
            raise AssertionError(f"no generator for type {t.name}")
    return out


def build_graph(case: Case):
    """The graphc graph of a case: leafs named after the inputs, all marked inputs. Returns (graph, out).

    A builder may return a tuple: all are outputs, expanded in that order (ggml_build_forward_expand
    order is how ggml sequences a write before a read of the same memory); the last one is checked."""
    g = GraphBuilder(case.id)
    T = {i.name: g.set_input(g.new_tensor(i.type, i.ne4, name=i.name)) for i in case.inputs}
    res = case.build(g, T)
    outs = res if isinstance(res, tuple) else (res,)
    graph = g.build(*outs)
    return graph, outs[-1]


CASES: list[Case] = []


def case(id: str, inputs: list[In], build, numpy, ggml=None, **kw) -> Case:
    c = Case(id, inputs, build, numpy, ggml, **kw)
    assert all(c.id != o.id for o in CASES), f"duplicate case id {id}"
    CASES.append(c)
    return c


def tile_to(b: Arr, shape: tuple) -> Arr:
    """ggml's modulo broadcast of b over a tensor of `shape` (each dim a whole multiple)."""
    reps = [s // d for s, d in zip(shape, b.shape)]
    assert all(r * d == s for r, d, s in zip(reps, b.shape, shape)), (b.shape, shape)
    return np.tile(b, reps)


NO_GGML_GRAPHC = "graphc extension; ggml has no such op"

# --- binary elementwise --------------------------------------------------------------------

_BIN_NP = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "maximum": np.maximum, "minimum": np.minimum}
_BIN_SHAPES = {"same": ((7, 5, 3, 2), (7, 5, 3, 2)), "row": ((7, 5, 3, 2), (7,)),
               "bcast13": ((7, 5, 3, 2), (7, 1, 3, 1)), "bcast02": ((6, 4, 3, 2), (1, 4, 1, 2)),
               "tile": ((6, 6, 2, 1), (3, 2, 1, 1))}

for _op, _fn in _BIN_NP.items():
    for _sname, (_sa, _sb) in _BIN_SHAPES.items():
        case(f"{_op}-{_sname}",
             [In("a", "f32", _sa), In("b", "f32", _sb, away_from_zero if _op == "div" else normal)],
             lambda g, T, op=_op: getattr(g, op)(T["a"], T["b"]),
             lambda X, fn=_fn: fn(X["a"], tile_to(X["b"], X["a"].shape)),
             None if _op in ("maximum", "minimum") else
             (lambda ctx, T, op=_op: getattr(gg, "ggml_" + op)(ctx, T["a"], T["b"])),
             why_ggml=NO_GGML_GRAPHC if _op in ("maximum", "minimum") else "")

case("add-f16a-f32b", [In("a", "f16", (8, 3, 2)), In("b", "f32", (8, 1, 2))],
     lambda g, T: g.add(T["a"], T["b"]),
     lambda X: f16(X["a"] + tile_to(X["b"], X["a"].shape)),
     lambda ctx, T: gg.ggml_add(ctx, T["a"], T["b"]))
case("mul-f16a-f32b", [In("a", "f16", (8, 3, 2)), In("b", "f32", (8, 3, 2))],
     lambda g, T: g.mul(T["a"], T["b"]),
     lambda X: f16(X["a"] * X["b"]),
     lambda ctx, T: gg.ggml_mul(ctx, T["a"], T["b"]))

case("add1", [In("a", "f32", (5, 4, 3)), In("b", "f32", (1,))],
     lambda g, T: g.add1(T["a"], T["b"]),
     lambda X: X["a"] + X["b"].ravel()[0],
     lambda ctx, T: gg.ggml_add1(ctx, T["a"], T["b"]))

# --- simple unary math ------------------------------------------------------------------

for _op, _fn, _gen in (("sqr", np.square, normal), ("sqrt", np.sqrt, positive), ("log", np.log, positive),
                       ("sin", np.sin, uniform(-6, 6)), ("cos", np.cos, uniform(-6, 6))):
    case(_op, [In("a", "f32", (9, 4, 3), _gen)],
         lambda g, T, op=_op: getattr(g, op)(T["a"]),
         lambda X, fn=_fn: fn(X["a"]),
         lambda ctx, T, op=_op: getattr(gg, "ggml_" + op)(ctx, T["a"]))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * x * (1.0 + 0.044715 * x * x)))


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY_NP: dict[str, Callable[[Arr], Arr]] = {
    "abs": np.abs, "sgn": np.sign, "neg": np.negative, "step": lambda x: (x > 0).astype(np.float64),
    "tanh": np.tanh, "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "relu": lambda x: np.maximum(x, 0), "sigmoid": _sigmoid, "gelu": _gelu_tanh,
    "gelu_quick": lambda x: x * _sigmoid(1.702 * x), "gelu_erf": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x: x * _sigmoid(x), "hardswish": lambda x: x * np.clip((x + 3) / 6, 0, 1),
    "hardsigmoid": lambda x: np.clip((x + 3) / 6, 0, 1), "exp": np.exp, "expm1": np.expm1,
    "softplus": lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))), "one_minus": lambda x: 1 - x,
}
# ggml's CPU gelu and gelu_quick (and geglu / geglu_quick) look results up in an f16 table indexed by
# f16(x) (GGML_GELU_FP16 / GGML_GELU_QUICK_FP16 in vec.h): real ggml differs from the exact function by
# f16 input and output rounding (NMSE ~1e-7). The ggml comparison therefore runs these ops with their
# table=true parameter (use_gelu_table) and keeps ggml's 1e-7; the *-table cases below check that form
# against a numpy model of the table.
TABLE_WHY = "compared with table=true: ggml 0.15.3 CPU evaluates gelu/gelu_quick through an f16 lookup table"

for _op, _fn in UNARY_NP.items():
    _gen = uniform(-4, 4) if _op == "softplus" else (lambda rng, s: 2.0 * rng.standard_normal(s))
    _has = _op != "one_minus"
    _table = _op in ("gelu", "gelu_quick")
    case(f"unary-{_op}", [In("a", "f32", (13, 4, 3), _gen)],
         lambda g, T, op=_op: g.unary(T["a"], op),
         lambda X, fn=_fn: fn(X["a"]),
         (lambda ctx, T, op=_op: getattr(gg, "ggml_" + op)(ctx, T["a"])) if _has else None,
         why_ggml=TABLE_WHY if _table else ("" if _has else NO_GGML_GRAPHC))



def gelu_table_np(x: Arr, quick: bool = False) -> Arr:
    """ggml's table lookup: f16(f(f16(x))); gelu (not gelu_quick) passes |x| >= 10 around the table."""
    y = f16((UNARY_NP["gelu_quick"] if quick else _gelu_tanh)(f16(x)))
    if not quick:
        y = np.where(x <= -10, 0.0, np.where(x >= 10, x, y))
    return y


case("unary-gelu-table", [In("a", "f32", (16, 4, 3), uniform(-12, 12))],
     lambda g, T: g.unary(T["a"], "gelu", table=True),
     lambda X: gelu_table_np(X["a"]), lambda ctx, T: gg.ggml_gelu(ctx, T["a"]))
case("unary-gelu_quick-table", [In("a", "f32", (16, 4, 3), uniform(-12, 12))],
     lambda g, T: g.unary(T["a"], "gelu_quick", table=True),
     lambda X: gelu_table_np(X["a"], True), lambda ctx, T: gg.ggml_gelu_quick(ctx, T["a"]))
case("glu-geglu-table", [In("a", "f32", (12, 3), uniform(-12, 12))], lambda g, T: g.glu(T["a"], "geglu", table=True),
     lambda X: gelu_table_np(X["a"][..., :6]) * X["a"][..., 6:],
     lambda ctx, T: gg.ggml_geglu(ctx, T["a"]))
case("glu-geglu_quick-table-split", [In("a", "f32", (6, 3), uniform(-12, 12)), In("b", "f32", (6, 3))],
     lambda g, T: g.glu_split(T["a"], T["b"], "geglu_quick", table=True),
     lambda X: gelu_table_np(X["a"], True) * X["b"],
     lambda ctx, T: gg.ggml_geglu_quick_split(ctx, T["a"], T["b"]))

case("unary-softplus-large", [In("a", "f32", (16, 3), uniform(15, 30))],
     lambda g, T: g.softplus(T["a"]), lambda X: UNARY_NP["softplus"](X["a"]),
     lambda ctx, T: gg.ggml_softplus(ctx, T["a"]))

F16_OUT_WHY = "f16 result: a one-ulp f16 flip where the f32 value lies at a rounding boundary is allowed"
for _op in ("silu", "gelu", "relu", "tanh", "exp", "neg"):
    case(f"unary-{_op}-f16", [In("a", "f16", (16, 3, 2))],
         lambda g, T, op=_op: g.unary(T["a"], op),
         lambda X, op=_op: f16(UNARY_NP[op](X["a"])),
         lambda ctx, T, op=_op: getattr(gg, "ggml_" + op)(ctx, T["a"]),
         tol=1e-6, tol_ggml=1e-6, why_ggml=F16_OUT_WHY)

# --- glu --------------------------------------------------------------------------------

GLU_ACT = {"reglu": UNARY_NP["relu"], "geglu": _gelu_tanh, "swiglu": UNARY_NP["silu"],
           "geglu_erf": UNARY_NP["gelu_erf"], "geglu_quick": UNARY_NP["gelu_quick"]}

for _op, _act in GLU_ACT.items():
    _gop = lambda op=_op: getattr(gg, "GGML_GLU_OP_" + op.upper())
    _table = _op in ("geglu", "geglu_quick")
    _kw = dict(why_ggml=TABLE_WHY if _table else "")
    for _sw in (False, True):
        case(f"glu-{_op}" + ("-swapped" if _sw else ""), [In("a", "f32", (12, 3, 2))],
             lambda g, T, op=_op, sw=_sw: g.glu(T["a"], op, sw),
             lambda X, act=_act, sw=_sw: (act(X["a"][..., 6:]) * X["a"][..., :6]) if sw
             else (act(X["a"][..., :6]) * X["a"][..., 6:]),
             lambda ctx, T, g_=_gop, sw=_sw: gg.ggml_glu(ctx, T["a"], g_(), sw), **_kw)
    case(f"glu-{_op}-split", [In("a", "f32", (6, 3, 2)), In("b", "f32", (6, 3, 2))],
         lambda g, T, op=_op: g.glu_split(T["a"], T["b"], op),
         lambda X, act=_act: act(X["a"]) * X["b"],
         lambda ctx, T, g_=_gop: gg.ggml_glu_split(ctx, T["a"], T["b"], g_()), **_kw)

case("glu-swiglu-builder", [In("a", "f32", (10, 4))],
     lambda g, T: g.swiglu_swapped(T["a"]),
     lambda X: UNARY_NP["silu"](X["a"][..., 5:]) * X["a"][..., :5],
     lambda ctx, T: gg.ggml_swiglu_swapped(ctx, T["a"]))

# --- scale, clamp, leaky_relu, masks ----------------------------------------------------------

case("scale", [In("a", "f32", (9, 4, 2))], lambda g, T: g.scale(T["a"], 0.37),
     lambda X: X["a"] * np.float32(0.37), lambda ctx, T: gg.ggml_scale(ctx, T["a"], 0.37))
case("scale-bias", [In("a", "f32", (9, 4, 2))], lambda g, T: g.scale_bias(T["a"], 1.5, -0.25),
     lambda X: X["a"] * 1.5 - 0.25, lambda ctx, T: gg.ggml_scale_bias(ctx, T["a"], 1.5, -0.25))
case("clamp", [In("a", "f32", (9, 4, 2))], lambda g, T: g.clamp(T["a"], -0.5, 0.75),
     lambda X: np.clip(X["a"], -0.5, 0.75), lambda ctx, T: gg.ggml_clamp(ctx, T["a"], -0.5, 0.75))
case("leaky_relu", [In("a", "f32", (9, 4, 2))], lambda g, T: g.leaky_relu(T["a"], 0.125),
     lambda X: np.where(X["a"] > 0, X["a"], 0.125 * X["a"]),
     lambda ctx, T: gg.ggml_leaky_relu(ctx, T["a"], 0.125, False))


def _diag_mask(x: Arr, n_past: int, value: float) -> Arr:
    i = np.arange(x.shape[-1])[None, :]
    j = np.arange(x.shape[-2])[:, None]
    return np.where(i > n_past + j, value, x)


for _np_ in (0, 2):
    case(f"diag_mask_inf-past{_np_}", [In("a", "f32", (7, 4, 3))], lambda g, T, p=_np_: g.diag_mask_inf(T["a"], p),
         lambda X, p=_np_: _diag_mask(X["a"], p, -np.inf), lambda ctx, T, p=_np_: gg.ggml_diag_mask_inf(ctx, T["a"], p))
    case(f"diag_mask_zero-past{_np_}", [In("a", "f32", (7, 4, 3))], lambda g, T, p=_np_: g.diag_mask_zero(T["a"], p),
         lambda X, p=_np_: _diag_mask(X["a"], p, 0.0), lambda ctx, T, p=_np_: gg.ggml_diag_mask_zero(ctx, T["a"], p))

# --- reductions and norms -------------------------------------------------------------------

case("sum", [In("a", "f32", (7, 5, 3, 2))], lambda g, T: g.sum(T["a"]),
     lambda X: X["a"].sum().reshape(1, 1, 1, 1), lambda ctx, T: gg.ggml_sum(ctx, T["a"]))
case("sum_rows", [In("a", "f32", (7, 5, 3, 2))], lambda g, T: g.sum_rows(T["a"]),
     lambda X: X["a"].sum(-1, keepdims=True), lambda ctx, T: gg.ggml_sum_rows(ctx, T["a"]))
case("mean", [In("a", "f32", (7, 5, 3, 2))], lambda g, T: g.mean(T["a"]),
     lambda X: X["a"].mean(-1, keepdims=True), lambda ctx, T: gg.ggml_mean(ctx, T["a"]))
# collectives in a group of one (graphc/parallel.py; tests/test_tensor_parallel.py runs several ranks)
case("all_reduce", [In("a", "f32", (7, 5, 3))], lambda g, T: g.all_reduce(g.mul(T["a"], T["a"]), 1),
     lambda X: X["a"] * X["a"], None, why_ggml="a torch.distributed collective; ggml has none")
case("all_gather", [In("a", "f32", (7, 5))], lambda g, T: g.all_gather(T["a"], 1, 7),
     lambda X: X["a"], None, exact=True, why_ggml="a torch.distributed collective; ggml has none")
case("argmax", [In("a", "f32", (11, 6))], lambda g, T: g.argmax(T["a"]),
     lambda X: np.argmax(X["a"], axis=-1).reshape(1, 1, 1, -1), lambda ctx, T: gg.ggml_argmax(ctx, T["a"]),
     exact=True)


def _norm(x, eps):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)


def _group_norm(x, G, eps):
    C = x.shape[1]
    per = -(-C // G)
    y = np.empty_like(x)
    for s in range(0, C, per):
        blk = x[:, s:s + per]
        m = blk.mean(axis=(1, 2, 3), keepdims=True)
        v = ((blk - m) ** 2).mean(axis=(1, 2, 3), keepdims=True)
        y[:, s:s + per] = (blk - m) / np.sqrt(v + eps)
    return y


case("norm", [In("a", "f32", (16, 5, 3), lambda r, s: r.standard_normal(s) * 3 + 1)],
     lambda g, T: g.norm(T["a"], 1e-5), lambda X: _norm(X["a"], np.float32(1e-5)),
     lambda ctx, T: gg.ggml_norm(ctx, T["a"], 1e-5))
case("rms_norm", [In("a", "f32", (16, 5, 3))], lambda g, T: g.rms_norm(T["a"], 1e-6),
     lambda X: X["a"] / np.sqrt((X["a"] ** 2).mean(-1, keepdims=True) + np.float32(1e-6)),
     lambda ctx, T: gg.ggml_rms_norm(ctx, T["a"], 1e-6))
case("rms_norm-mul", [In("a", "f32", (16, 5, 3)), In("w", "f32", (16,))],
     lambda g, T: g.mul(g.rms_norm(T["a"], 1e-6), T["w"]),
     lambda X: X["a"] / np.sqrt((X["a"] ** 2).mean(-1, keepdims=True) + np.float32(1e-6)) * X["w"],
     lambda ctx, T: gg.ggml_mul(ctx, gg.ggml_rms_norm(ctx, T["a"], 1e-6), T["w"]))
case("l2_norm", [In("a", "f32", (16, 5, 3))], lambda g, T: g.l2_norm(T["a"], 1e-6),
     lambda X: X["a"] / np.maximum(np.sqrt((X["a"] ** 2).sum(-1, keepdims=True)), np.float32(1e-6)),
     lambda ctx, T: gg.ggml_l2_norm(ctx, T["a"], 1e-6))
case("l2_norm-eps-wins", [In("a", "f32", (8, 3), uniform(-1e-3, 1e-3))], lambda g, T: g.l2_norm(T["a"], 0.5),
     lambda X: X["a"] / np.maximum(np.sqrt((X["a"] ** 2).sum(-1, keepdims=True)), 0.5),
     lambda ctx, T: gg.ggml_l2_norm(ctx, T["a"], 0.5))
case("group_norm", [In("a", "f32", (6, 5, 8, 2), lambda r, s: r.standard_normal(s) * 2 + 0.5)],
     lambda g, T: g.group_norm(T["a"], 3, 1e-6), lambda X: _group_norm(X["a"], 3, np.float32(1e-6)),
     lambda ctx, T: gg.ggml_group_norm(ctx, T["a"], 3, 1e-6))

# --- soft_max ----------------------------------------------------------------------------------


def alibi_slopes(n_head: int, max_bias: float) -> Arr:
    if max_bias <= 0:
        return np.ones(n_head)
    n_log2 = 2 ** int(math.floor(math.log2(n_head)))
    m0 = 2.0 ** (-max_bias / n_log2)
    m1 = 2.0 ** (-max_bias / 2.0 / n_log2)
    return np.array([m0 ** (h + 1) if h < n_log2 else m1 ** (2 * (h - n_log2) + 1) for h in range(n_head)])


def softmax_np(x: Arr, mask: Arr | None = None, scale: float = 1.0, max_bias: float = 0.0,
               sinks: Arr | None = None) -> Arr:
    """x: (n3, H, rows, cols); mask rows >= x rows, dims 2,3 broadcast by modulo; sinks one logit per head."""
    w = x * np.float32(scale)
    if mask is not None:
        m = tile_to(mask[:, :, :x.shape[2], :], x.shape)
        w = w + alibi_slopes(x.shape[1], float(np.float32(max_bias)))[None, :, None, None] * m
    M = w.max(-1, keepdims=True)
    if sinks is not None:
        s = sinks.ravel()[None, :, None, None]
        M = np.maximum(M, s)
    e = np.exp(w - M)
    S = e.sum(-1, keepdims=True)
    if sinks is not None:
        S = S + np.exp(s - M)
    return e / S


case("soft_max", [In("a", "f32", (10, 4, 3))], lambda g, T: g.soft_max(T["a"]),
     lambda X: softmax_np(X["a"]), lambda ctx, T: gg.ggml_soft_max(ctx, T["a"]))
case("soft_max-scale-maskf32", [In("a", "f32", (10, 4, 3)), In("m", "f32", (10, 4))],
     lambda g, T: g.soft_max_ext(T["a"], T["m"], 0.5, 0.0),
     lambda X: softmax_np(X["a"], X["m"], 0.5),
     lambda ctx, T: gg.ggml_soft_max_ext(ctx, T["a"], T["m"], 0.5, 0.0))
case("soft_max-maskf16-causal-padded", [In("a", "f32", (10, 4, 3)), In("m", "f16", (10, 6), causal_mask(6))],
     lambda g, T: g.soft_max_ext(T["a"], T["m"], 0.25, 0.0),
     lambda X: softmax_np(X["a"], X["m"], 0.25),
     lambda ctx, T: gg.ggml_soft_max_ext(ctx, T["a"], T["m"], 0.25, 0.0))
case("soft_max-mask-per-head-modulo", [In("a", "f32", (8, 3, 4, 2)), In("m", "f32", (8, 3, 2, 1))],
     lambda g, T: g.soft_max_ext(T["a"], T["m"], 1.0, 0.0),
     lambda X: softmax_np(X["a"], X["m"]),
     lambda ctx, T: gg.ggml_soft_max_ext(ctx, T["a"], T["m"], 1.0, 0.0))
case("soft_max-alibi", [In("a", "f32", (10, 4, 6)), In("m", "f32", (10, 4), causal_mask(6))],
     lambda g, T: g.soft_max_ext(T["a"], T["m"], 0.7, 8.0),
     lambda X: softmax_np(X["a"], X["m"], 0.7, 8.0),
     lambda ctx, T: gg.ggml_soft_max_ext(ctx, T["a"], T["m"], 0.7, 8.0))
case("soft_max-alibi-f16mask-pow2", [In("a", "f32", (9, 3, 4)), In("m", "f16", (9, 3))],
     lambda g, T: g.soft_max_ext(T["a"], T["m"], 1.0, 4.0),
     lambda X: softmax_np(X["a"], X["m"], 1.0, 4.0),
     lambda ctx, T: gg.ggml_soft_max_ext(ctx, T["a"], T["m"], 1.0, 4.0))


def _sm_sinks_ggml(ctx, T, mask=True):
    r = gg.ggml_soft_max_ext(ctx, T["a"], T["m"] if mask else None, 0.5, 0.0)
    gg.ggml_soft_max_add_sinks(r, T["s"])
    return r


case("soft_max-sinks", [In("a", "f32", (10, 4, 3)), In("m", "f32", (10, 4), causal_mask(6)),
                        In("s", "f32", (3,), uniform(-1, 3))],
     lambda g, T: g.soft_max_ext(T["a"], T["m"], 0.5, 0.0, sinks=T["s"]),
     lambda X: softmax_np(X["a"], X["m"], 0.5, 0.0, X["s"]), _sm_sinks_ggml)
case("soft_max-sinks-nomask", [In("a", "f32", (10, 4, 3)), In("s", "f32", (3,), uniform(-1, 3))],
     lambda g, T: g.soft_max_ext(T["a"], None, 0.5, 0.0, sinks=T["s"]),
     lambda X: softmax_np(X["a"], None, 0.5, 0.0, X["s"]), lambda ctx, T: _sm_sinks_ggml(ctx, T, False))

# --- mul_mat, out_prod -------------------------------------------------------------------------


def matmul_np(a: Arr, b: Arr) -> Arr:
    """ggml mul_mat: a (A3,A2,N,K) broadcast over b (B3,B2,M,K) by integer division -> (B3,B2,M,N)."""
    a = np.repeat(np.repeat(a, b.shape[0] // a.shape[0], axis=0), b.shape[1] // a.shape[1], axis=1)
    return b @ np.swapaxes(a, -1, -2)


case("mul_mat-f32", [In("a", "f32", (32, 6)), In("b", "f32", (32, 5))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))
case("mul_mat-vec", [In("a", "f32", (48, 7)), In("b", "f32", (48,))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))
case("mul_mat-bcast", [In("a", "f32", (16, 6, 2, 1)), In("b", "f32", (16, 5, 4, 3))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))
case("mul_mat-bcast3", [In("a", "f32", (16, 6, 3, 1)), In("b", "f32", (16, 5, 3, 2))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))
case("mul_mat-permuted", [In("a", "f32", (16, 3, 6)), In("b", "f32", (16, 6, 5))],
     # llama-style: both operands permuted views (dims 1<->2), not transposed
     lambda g, T: g.mul_mat(g.permute(T["a"], 0, 2, 1, 3), g.permute(T["b"], 0, 2, 1, 3)),
     lambda X: matmul_np(np.swapaxes(X["a"], 1, 2), np.swapaxes(X["b"], 1, 2)),
     lambda ctx, T: gg.ggml_mul_mat(ctx, gg.ggml_permute(ctx, T["a"], 0, 2, 1, 3),
                                    gg.ggml_permute(ctx, T["b"], 0, 2, 1, 3)))
case("mul_mat-f16", [In("a", "f16", (64, 6, 2)), In("b", "f32", (64, 5, 2))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))
case("mul_mat-bf16", [In("a", "bf16", (64, 6)), In("b", "f32", (64, 5))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))

# Quantized weights. The numpy formula is exact math on the dequantized weights (ref mode "dequant");
# against ggml, ref runs in mode "ggml", where b is quantized to the weight type's vec_dot_type first.
QUANT_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs")
for _qt in QUANT_TYPES:
    _K = get_type(_qt).blck * (2 if get_type(_qt).blck == 32 else 1)
    case(f"mul_mat-{_qt}", [In("a", _qt, (_K, 6, 2)), In("b", "f32", (_K, 5, 2))],
         lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], X["b"]),
         lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]))
case("mul_mat-q8_0-ggml-mode", [In("a", "q8_0", (64, 6)), In("b", "f32", (64, 5))],
     # ref's ggml mode: b quantized to q8_0 (vec_dot_type of q8_0) before the integer dot products
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], q8_0_roundtrip(X["b"])),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]), ref_opts=GGML_MODE, tol=1e-6)
case("mul_mat-q4_0-ggml-mode", [In("a", "q4_0", (64, 6)), In("b", "f32", (64, 5))],
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], q8_0_roundtrip(X["b"])),
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]), ref_opts=GGML_MODE, tol=1e-6)
case("mul_mat-f16-ggml-mode", [In("a", "f16", (64, 6)), In("b", "f32", (64, 5))],
     # f16's vec_dot_type is f16: ggml rounds b to f16
     lambda g, T: g.mul_mat(T["a"], T["b"]), lambda X: matmul_np(X["a"], f16(X["b"])),
     # not rounding b would give ~1e-7, so the bound is tight
     lambda ctx, T: gg.ggml_mul_mat(ctx, T["a"], T["b"]), ref_opts=GGML_MODE, tol=1e-10)


def out_prod_np(a: Arr, b: Arr) -> Arr:
    """ggml out_prod: a (A3,A2,K,M), b (B3,B2,K,N) -> (B3,B2,N,M) = b^T a, a broadcast by division."""
    a = np.repeat(np.repeat(a, b.shape[0] // a.shape[0], axis=0), b.shape[1] // a.shape[1], axis=1)
    return np.swapaxes(b, -1, -2) @ a


case("out_prod", [In("a", "f32", (6, 9)), In("b", "f32", (5, 9))],
     lambda g, T: g.out_prod(T["a"], T["b"]), lambda X: out_prod_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_out_prod(ctx, T["a"], T["b"]))
case("out_prod-bcast", [In("a", "f32", (6, 9, 2, 1)), In("b", "f32", (5, 9, 4, 2))],
     lambda g, T: g.out_prod(T["a"], T["b"]), lambda X: out_prod_np(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_out_prod(ctx, T["a"], T["b"]))

# --- shapes, views and copies ---------------------------------------------------------------------

case("repeat", [In("a", "f32", (3, 1, 2)), In("b", "f32", (6, 4, 2, 2))],
     lambda g, T: g.repeat(T["a"], T["b"]), lambda X: tile_to(X["a"], X["b"].shape),
     lambda ctx, T: gg.ggml_repeat(ctx, T["a"], T["b"]))
for _d in range(4):
    _nb = [4, 3, 2, 2]
    _nb[_d] = 3
    case(f"concat-dim{_d}", [In("a", "f32", (4, 3, 2, 2)), In("b", "f32", tuple(_nb))],
         lambda g, T, d=_d: g.concat(T["a"], T["b"], d),
         lambda X, d=_d: np.concatenate([X["a"], X["b"]], axis=3 - d),
         lambda ctx, T, d=_d: gg.ggml_concat(ctx, T["a"], T["b"], d))
case("pad", [In("a", "f32", (5, 3, 2))], lambda g, T: g.pad(T["a"], 2, 1, 0, 1),
     lambda X: np.pad(X["a"], ((0, 1), (0, 0), (0, 1), (0, 2))), lambda ctx, T: gg.ggml_pad(ctx, T["a"], 2, 1, 0, 1))
case("pad_ext", [In("a", "f32", (5, 3, 2))], lambda g, T: g.pad_ext(T["a"], 1, 2, 0, 1, 1, 0, 0, 1),
     lambda X: np.pad(X["a"], ((0, 1), (1, 0), (0, 1), (1, 2))),
     lambda ctx, T: gg.ggml_pad_ext(ctx, T["a"], 1, 2, 0, 1, 1, 0, 0, 1))
case("arange", [], lambda g, T: g.arange(0.5, 7.3, 0.7),
     lambda X: (np.float32(0.5) + np.float32(0.7) * np.arange(10)).reshape(1, 1, 1, -1),
     lambda ctx, T: gg.ggml_arange(ctx, 0.5, 7.3, 0.7))
case("arange-neg-step", [], lambda g, T: g.arange(3.0, -2.0, -0.5),
     lambda X: (3.0 - 0.5 * np.arange(10)).reshape(1, 1, 1, -1),
     why_ggml="ggml_arange asserts stop > start; graphc also accepts a descending range")


def np_permute(x: Arr, axes: tuple[int, int, int, int]) -> Arr:
    """ggml_permute on a numpy 4-D array: source dim i goes to result dim axes[i] (ggml order)."""
    perm = [0] * 4
    for i, ax in enumerate(axes):
        perm[3 - ax] = 3 - i
    return np.transpose(x, perm)


case("cont-transpose", [In("a", "f32", (5, 4, 3))], lambda g, T: g.cont(g.transpose(T["a"])),
     lambda X: np.swapaxes(X["a"], -1, -2), lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_transpose(ctx, T["a"])))
for _ax in ((0, 2, 1, 3), (2, 0, 3, 1), (1, 2, 3, 0)):
    case("cont-permute-" + "".join(map(str, _ax)), [In("a", "f32", (5, 4, 3, 2))],
         lambda g, T, ax=_ax: g.cont(g.permute(T["a"], *ax)),
         lambda X, ax=_ax: np_permute(X["a"], ax),
         lambda ctx, T, ax=_ax: gg.ggml_cont(ctx, gg.ggml_permute(ctx, T["a"], *ax)))
case("cont-reshape-transpose", [In("a", "f32", (6, 4))],
     lambda g, T: g.cont(g.transpose(g.reshape_3d(T["a"], 3, 2, 4))),
     lambda X: np.swapaxes(X["a"].reshape(1, 4, 2, 3), -1, -2),
     lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_transpose(ctx, gg.ggml_reshape_3d(ctx, T["a"], 3, 2, 4))))
case("reshape-4d-add", [In("a", "f32", (12, 2)), In("b", "f32", (3, 2, 2, 2))],
     lambda g, T: g.add(g.reshape_4d(T["a"], 3, 2, 2, 2), T["b"]),
     lambda X: X["a"].reshape(2, 2, 2, 3) + X["b"],
     lambda ctx, T: gg.ggml_add(ctx, gg.ggml_reshape_4d(ctx, T["a"], 3, 2, 2, 2), T["b"]))
case("cont-view_1d", [In("a", "f32", (10, 3))], lambda g, T: g.cont(g.view_1d(T["a"], 7, 4 * 12)),
     lambda X: X["a"].ravel()[12:19].reshape(1, 1, 1, 7),
     lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_view_1d(ctx, T["a"], 7, 4 * 12)))
case("cont-view_2d", [In("a", "f32", (8, 6))], lambda g, T: g.cont(g.view_2d(T["a"], 3, 4, 32, 4 * 2 + 32)),
     lambda X: X["a"][:, :, 1:5, 2:5],
     lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_view_2d(ctx, T["a"], 3, 4, 32, 4 * 2 + 32)))
case("cont-view_3d-stride", [In("a", "f32", (8, 6, 2))],
     # every other row, 5 columns starting at 1
     lambda g, T: g.cont(g.view_3d(T["a"], 5, 3, 2, 64, 192, 4)),
     lambda X: X["a"][:, :, 0::2, 1:6],
     lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_view_3d(ctx, T["a"], 5, 3, 2, 64, 192, 4)))
case("cont-view_4d", [In("a", "f32", (4, 3, 2, 2))],
     lambda g, T: g.cont(g.view_4d(T["a"], 2, 3, 2, 1, 16, 48, 96, 96 + 8)),
     lambda X: X["a"][1:2, :, :, 2:4],
     lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_view_4d(ctx, T["a"], 2, 3, 2, 1, 16, 48, 96, 96 + 8)))
case("cont-view-of-node", [In("a", "f32", (8, 6)), In("b", "f32", (8, 6))],
     lambda g, T: g.cont(g.view_2d(g.add(T["a"], T["b"]), 4, 3, 64, 4 * 4)),
     lambda X: (X["a"] + X["b"])[:, :, 0::2, 4:8],
     lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_view_2d(ctx, gg.ggml_add(ctx, T["a"], T["b"]), 4, 3, 64, 16)))
case("cont-f16-transpose", [In("a", "f16", (5, 4))], lambda g, T: g.cont(g.transpose(T["a"])),
     lambda X: np.swapaxes(X["a"], -1, -2), lambda ctx, T: gg.ggml_cont(ctx, gg.ggml_transpose(ctx, T["a"])))
case("dup", [In("a", "f32", (5, 4, 3))], lambda g, T: g.dup(T["a"]), lambda X: X["a"],
     lambda ctx, T: gg.ggml_dup(ctx, T["a"]))
case("dup-permuted", [In("a", "f32", (5, 4, 3))], lambda g, T: g.dup(g.permute(T["a"], 1, 0, 2, 3)),
     lambda X: np.swapaxes(X["a"], -1, -2), lambda ctx, T: gg.ggml_dup(ctx, gg.ggml_permute(ctx, T["a"], 1, 0, 2, 3)))

_CPY_NP = {"f32": lambda x: x, "f16": f16, "bf16": bf16, "q8_0": q8_0_roundtrip, "q4_0": q4_0_roundtrip}
for _dt, _fn in _CPY_NP.items():
    case(f"cpy-f32-{_dt}", [In("a", "f32", (64, 3)), In("d", _dt, (64, 3), lambda r, s: np.zeros(s))],
         lambda g, T: g.cpy(T["a"], T["d"]), lambda X, fn=_fn: fn(X["a"]),
         lambda ctx, T: gg.ggml_cpy(ctx, T["a"], T["d"]),
         # q4_0 / q8_0: one quantization step where x/d lies within float error of a rounding boundary
         tol=1e-6 if _dt.startswith("q") else 1e-7)
case("cpy-f16-f32", [In("a", "f16", (16, 3)), In("d", "f32", (16, 3), lambda r, s: np.zeros(s))],
     lambda g, T: g.cpy(T["a"], T["d"]), lambda X: X["a"], lambda ctx, T: gg.ggml_cpy(ctx, T["a"], T["d"]))
case("cpy-transposed-f32-reshaped", [In("a", "f32", (5, 4)), In("d", "f32", (20,), lambda r, s: np.zeros(s))],
     lambda g, T: g.cpy(g.transpose(T["a"]), T["d"]),
     lambda X: np.swapaxes(X["a"], -1, -2).reshape(1, 1, 1, 20),
     lambda ctx, T: gg.ggml_cpy(ctx, gg.ggml_transpose(ctx, T["a"]), T["d"]))


def set_np(a: Arr, b: Arr, nb: tuple[int, int, int], offset: int) -> Arr:
    """ggml_set on f32 tensors: b written through a view of a with byte strides (4, *nb) at `offset`."""
    out = a.copy().ravel()
    i3, i2, i1, i0 = np.indices(b.shape)
    pos = (offset + i0 * 4 + i1 * nb[0] + i2 * nb[1] + i3 * nb[2]) // 4
    out[pos.ravel()] = b.ravel()
    return out.reshape(a.shape)


case("set", [In("a", "f32", (6, 5, 2)), In("b", "f32", (3, 2, 2))],
     lambda g, T: g.set(T["a"], T["b"], 24, 120, 240, 4 + 2 * 24),
     lambda X: set_np(X["a"], X["b"], (24, 120, 240), 4 + 48),
     lambda ctx, T: gg.ggml_set(ctx, T["a"], T["b"], 24, 120, 240, 4 + 48))
case("set_1d", [In("a", "f32", (10,)), In("b", "f32", (4,))], lambda g, T: g.set_1d(T["a"], T["b"], 12),
     lambda X: set_np(X["a"], X["b"], (40, 40, 40), 12), lambda ctx, T: gg.ggml_set_1d(ctx, T["a"], T["b"], 12))
case("set_2d", [In("a", "f32", (6, 5)), In("b", "f32", (2, 3))], lambda g, T: g.set_2d(T["a"], T["b"], 48, 8),
     lambda X: set_np(X["a"], X["b"], (48, 120, 120), 8), lambda ctx, T: gg.ggml_set_2d(ctx, T["a"], T["b"], 48, 8))


def get_rows_np(a: Arr, idx: Arr) -> Arr:
    """a (A3,A2,R,C), idx (1,A3,A2,n) -> (A3,A2,n,C)."""
    A3, A2 = a.shape[:2]
    out = np.empty((A3, A2, idx.shape[-1], a.shape[-1]))
    for i3 in range(A3):
        for i2 in range(A2):
            out[i3, i2] = a[i3, i2, idx[0, i3, i2]]
    return out


for _t, _C in (("f32", 6), ("f16", 6), ("bf16", 6), ("q4_0", 64), ("q8_0", 32), ("q4_K", 256), ("q6_K", 256)):
    case(f"get_rows-{_t}", [In("a", _t, (_C, 10)), In("i", "i32", (7,), ints(0, 10))],
         lambda g, T: g.get_rows(T["a"], T["i"]), lambda X: get_rows_np(X["a"], X["i"]),
         lambda ctx, T: gg.ggml_get_rows(ctx, T["a"], T["i"]))
case("get_rows-3d", [In("a", "f32", (4, 5, 3, 2)), In("i", "i32", (6, 3, 2), ints(0, 5))],
     lambda g, T: g.get_rows(T["a"], T["i"]), lambda X: get_rows_np(X["a"], X["i"]),
     lambda ctx, T: gg.ggml_get_rows(ctx, T["a"], T["i"]))
case("get_rows-i32", [In("a", "i32", (4, 5), ints(-100, 100)), In("i", "i32", (6,), ints(0, 5))],
     lambda g, T: g.get_rows(T["a"], T["i"]), lambda X: get_rows_np(X["a"], X["i"]),
     lambda ctx, T: gg.ggml_get_rows(ctx, T["a"], T["i"]), exact=True)


def set_rows_np(a: Arr, b: Arr, idx: Arr, conv=lambda x: x) -> Arr:
    """a (A3,A2,R,C) <- rows of b (A3,A2,n,C) at idx (1,c2,c1,n), idx dims broadcast by modulo."""
    out = a.copy()
    for i3 in range(a.shape[0]):
        for i2 in range(a.shape[1]):
            rows = idx[0, i3 % idx.shape[1], i2 % idx.shape[2]]
            out[i3, i2, rows] = conv(b[i3, i2])
    return out


case("set_rows-f32-i64", [In("a", "f32", (8, 6, 2)), In("b", "f32", (8, 3, 2)), In("i", "i64", (3, 2), distinct(6))],
     lambda g, T: g.set_rows(T["a"], T["b"], T["i"]), lambda X: set_rows_np(X["a"], X["b"], X["i"]),
     lambda ctx, T: gg.ggml_set_rows(ctx, T["a"], T["b"], T["i"]))
case("set_rows-f32-i32-bcast", [In("a", "f32", (8, 6, 4, 2)), In("b", "f32", (8, 3, 4, 2)),
                                In("i", "i32", (3, 2, 1), distinct(6))],
     lambda g, T: g.set_rows(T["a"], T["b"], T["i"]), lambda X: set_rows_np(X["a"], X["b"], X["i"]),
     lambda ctx, T: gg.ggml_set_rows(ctx, T["a"], T["b"], T["i"]))
case("set_rows-f16", [In("a", "f16", (8, 6)), In("b", "f32", (8, 3)), In("i", "i64", (3,), distinct(6))],
     lambda g, T: g.set_rows(T["a"], T["b"], T["i"]), lambda X: set_rows_np(X["a"], X["b"], X["i"], f16),
     lambda ctx, T: gg.ggml_set_rows(ctx, T["a"], T["b"], T["i"]))
case("set_rows-q8_0", [In("a", "q8_0", (32, 5)), In("b", "f32", (32, 2)), In("i", "i64", (2,), distinct(5))],
     lambda g, T: g.set_rows(T["a"], T["b"], T["i"]),
     lambda X: set_rows_np(X["a"], X["b"], X["i"], q8_0_roundtrip),
     lambda ctx, T: gg.ggml_set_rows(ctx, T["a"], T["b"], T["i"]), tol=1e-6)

# --- rope -------------------------------------------------------------------------------------------


def yarn_corr_dims(n_dims: int, n_ctx_orig: int, base: float, beta_fast: float, beta_slow: float):
    def dim(n_rot):
        return n_dims * math.log(n_ctx_orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))
    return max(0.0, math.floor(dim(beta_fast))), min(n_dims - 1.0, math.ceil(dim(beta_slow)))


def rope_np(x: Arr, pos: Arr, n_dims: int, mode: int, n_ctx_orig: int = 0, base: float = 10000.0,
            fscale: float = 1.0, ext: float = 0.0, attn: float = 1.0, beta_fast: float = 32.0,
            beta_slow: float = 1.0, ff: Arr | None = None) -> Arr:
    """x (n3, T, H, D), pos (T,): rotate pairs (2i, 2i+1) (mode 0) or (i, i + n_dims/2) (neox)."""
    half = n_dims // 2
    i = np.arange(half)
    theta = pos.reshape(-1, 1).astype(np.float64) * base ** (-2.0 * i / n_dims)
    if ff is not None:
        theta = theta / ff.ravel()[:half]
    th = fscale * theta
    mscale = attn
    if ext != 0.0:
        lo, hi = yarn_corr_dims(n_dims, n_ctx_orig, base, beta_fast, beta_slow)
        ramp = (1 - np.clip((i - lo) / max(0.001, hi - lo), 0, 1)) * ext
        th = th * (1 - ramp) + theta * ramp
        mscale *= 1.0 + 0.1 * math.log(1.0 / fscale)
    c = (np.cos(th) * mscale)[None, :, None, :]
    s = (np.sin(th) * mscale)[None, :, None, :]
    out = x.copy()
    if mode == 0:
        x0, x1 = x[..., 0:n_dims:2], x[..., 1:n_dims:2]
        out[..., 0:n_dims:2], out[..., 1:n_dims:2] = x0 * c - x1 * s, x0 * s + x1 * c
    else:
        x0, x1 = x[..., :half], x[..., half:n_dims]
        out[..., :half], out[..., half:n_dims] = x0 * c - x1 * s, x0 * s + x1 * c
    return out


def _rope_case(id, ne, n_dims, mode, ctx_orig=0, base=10000.0, fs=1.0, ext=0.0, attn=1.0, bf=32.0, bs=1.0,
               ff=False, type_="f32", **kw):
    ins = [In("a", type_, ne), In("p", "i32", (ne[2],), ints(-5, 300))]
    if ff:
        ins.append(In("ff", "f32", (n_dims // 2,), uniform(1.0, 4.0)))
    f32 = lambda v: float(np.float32(v))   # params are f32 in ggml
    case(id, ins,
         lambda g, T: g.rope_ext(T["a"], T["p"], T.get("ff"), n_dims, mode, ctx_orig, base, fs, ext, attn, bf, bs),
         lambda X: (f16 if type_ == "f16" else (lambda v: v))(
             rope_np(X["a"], X["p"], n_dims, mode, ctx_orig, f32(base), f32(fs), f32(ext), f32(attn), f32(bf), f32(bs),
                     X.get("ff"))),
         lambda ctx, T: gg.ggml_rope_ext(ctx, T["a"], T["p"], T.get("ff"), n_dims, mode, ctx_orig, base, fs, ext,
                                         attn, bf, bs), **kw)


# angles up to ~300 rad are computed in f32 by ggml (theta *= theta_scale), hence 1e-6 against exact math
_rope_case("rope-normal", (16, 4, 5), 16, 0, tol=1e-6)
_rope_case("rope-neox-partial", (16, 3, 5, 2), 8, 2, tol=1e-6)
_rope_case("rope-normal-partial", (12, 2, 4), 6, 0, base=500.0, tol=1e-6)
_rope_case("rope-neox-yarn", (16, 4, 5), 16, 2, ctx_orig=4096, fs=0.25, ext=1.0, tol=1e-6)
_rope_case("rope-normal-yarn-ext-half", (32, 2, 3), 32, 0, ctx_orig=2048, base=1e6, fs=0.5, ext=0.5, attn=1.3,
           bf=16.0, bs=2.0, tol=1e-6)
_rope_case("rope-normal-freq-factors", (16, 4, 5), 16, 0, attn=0.7, ff=True, tol=1e-6)
_rope_case("rope-neox-freq-factors-scale", (16, 2, 5), 12, 2, fs=0.5, ff=True, tol=1e-6)
_rope_case("rope-neox-f16", (16, 3, 4), 16, 2, type_="f16", tol=2e-6, tol_ggml=2e-6, why_ggml=F16_OUT_WHY)

# --- flash_attn_ext ------------------------------------------------------------------------------


def flash_attn_np(q, k, v, mask=None, scale=1.0, max_bias=0.0, softcap=0.0, sinks=None) -> Arr:
    """q (B,H,Nq,D), k (B,Hk,Nk,D), v (B,Hk,Nk,Dv); heads broadcast by division; -> (B,Nq,H,Dv)."""
    H, Nq = q.shape[1], q.shape[2]
    k = np.repeat(k, H // k.shape[1], axis=1)
    v = np.repeat(v, H // v.shape[1], axis=1)
    s = (q @ np.swapaxes(k, -1, -2)) * np.float32(scale)
    if softcap:
        s = softcap * np.tanh(s / softcap)
    if mask is not None:
        s = s + alibi_slopes(H, max_bias)[None, :, None, None] * tile_to(mask[:, :, :Nq, :], s.shape)
    M = s.max(-1, keepdims=True)
    if sinks is not None:
        M = np.maximum(M, sinks.ravel()[None, :, None, None])
    p = np.exp(s - M)
    S = p.sum(-1, keepdims=True)
    if sinks is not None:
        S = S + np.exp(sinks.ravel()[None, :, None, None] - M)
    return np.swapaxes((p @ v) / S, 1, 2)


def _fa_case(id, D, Dv, Nq, Nk, H, Hk, B=1, kv="f32", mask=True, mask_rows=None, scale=None, max_bias=0.0,
             softcap=0.0, sinks=False, **kw):
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    ins = [In("q", "f32", (D, Nq, H, B)), In("k", kv, (D, Nk, Hk, B)), In("v", kv, (Dv, Nk, Hk, B))]
    if mask:
        ins.append(In("m", "f16", (Nk, mask_rows or Nq), causal_mask(Nk - Nq)))
    if sinks:
        ins.append(In("s", "f32", (H,), uniform(-1, 2)))

    def ggml_fa(ctx, T):
        r = gg.ggml_flash_attn_ext(ctx, T["q"], T["k"], T["v"], T.get("m"), scale, max_bias, softcap)
        if sinks:
            gg.ggml_flash_attn_ext_add_sinks(r, T["s"])
        return r

    case(id, ins,
         lambda g, T: g.flash_attn_ext(T["q"], T["k"], T["v"], T.get("m"), scale, max_bias, softcap, T.get("s")),
         lambda X: flash_attn_np(X["q"], X["k"], X["v"], X.get("m"), scale, float(np.float32(max_bias)),
                                 float(np.float32(softcap)), X.get("s")),
         ggml_fa, **kw)


_F16_KV_WHY = ("with f16 K/V ggml rounds q to f16 (K's vec_dot_type) and accumulates V*softmax in f16 "
               "(VKQ16), which ref does not emulate (observed NMSE <= 4e-7 over few keys); "
               "test-backend-ops allows 5e-4, we 1e-5 where the key count is small")
_fa_case("flash_attn_ext-f32", 16, 16, 3, 10, 4, 4)
_fa_case("flash_attn_ext-gqa-nomask", 16, 16, 4, 7, 4, 2, mask=False)
_fa_case("flash_attn_ext-dv-batch", 16, 8, 2, 6, 2, 1, B=2, mask_rows=5)
_fa_case("flash_attn_ext-softcap-f16kv", 32, 32, 3, 12, 4, 2, kv="f16", softcap=20.0, scale=0.3,
         tol=1e-6, tol_ggml=1e-5, why_ggml=_F16_KV_WHY)
_fa_case("flash_attn_ext-f16kv", 16, 16, 5, 9, 2, 2, kv="f16", tol=1e-6, tol_ggml=1e-5, why_ggml=_F16_KV_WHY)
_fa_case("flash_attn_ext-alibi", 16, 16, 3, 8, 6, 3, max_bias=8.0)
_fa_case("flash_attn_ext-sinks", 16, 16, 3, 8, 4, 2, sinks=True)
# ggml 0.15.3 switches kernels by size: >= 64 query rows take the tiled kernel (K/V converted to f32),
# one query row over >= 512 keys the split-KV kernel (partials reduced at the end).
_fa_case("flash_attn_ext-tiled", 16, 16, 64, 80, 2, 1)
_fa_case("flash_attn_ext-tiled-f16kv", 16, 16, 64, 80, 2, 2, kv="f16", tol=1e-6, tol_ggml=1e-6,
         why_ggml="ggml's tiled kernel keeps q in f32 with f16 K, ref rounds q to f16 as the one-row kernel does "
                  "(observed NMSE up to ~6e-8)")
_fa_case("flash_attn_ext-q8_0kv", 32, 32, 3, 10, 2, 1, kv="q8_0")   # ggml mode: q quantized to q8_0 too
_fa_case("flash_attn_ext-split-kv", 16, 16, 1, 512, 2, 1)
_fa_case("flash_attn_ext-split-kv-f16kv-sinks", 16, 16, 1, 512, 4, 2, kv="f16", sinks=True, tol=1e-6,
         tol_ggml=5e-4, why_ggml=_F16_KV_WHY + "; the f16 accumulator over 512 keys reaches ~2e-5, so ggml's own 5e-4")

# --- rwkv -----------------------------------------------------------------------------------------


def wkv6_np(k, v, r, tf, td, state) -> Arr:
    """k, v, r, td (1,T,H,S); tf (1,1,H,S); state (1,1,n_seqs,S*S*H) -> (1,1,T+S*n_seqs,S*H)."""
    _, T, H, S = k.shape
    n_seqs = state.shape[2]
    k, v, r, td = (x.reshape(T, H, S) for x in (k, v, r, td))
    tf = tf.reshape(H, S)
    st = state.reshape(n_seqs, H, S, S).copy()        # [seq][h][i=k index][j=v index]
    out = np.zeros((T, H, S))
    per = T // n_seqs
    for t in range(T):
        q = t // per
        kv = k[t][:, :, None] * v[t][:, None, :]
        out[t] = np.einsum("hi,hij->hj", r[t], tf[:, :, None] * kv + st[q])
        st[q] = st[q] * td[t][:, :, None] + kv
    return np.concatenate([out.ravel(), st.ravel()]).reshape(1, 1, T + S * n_seqs, H * S)


def wkv7_np(r, w, k, v, a, b, state) -> Arr:
    """r, w, k, v, a, b (1,T,H,S); state (1,1,n_seqs,S*S*H) -> (1,1,T+S*n_seqs,S*H)."""
    _, T, H, S = k.shape
    n_seqs = state.shape[2]
    r, w, k, v, a, b = (x.reshape(T, H, S) for x in (r, w, k, v, a, b))
    st = state.reshape(n_seqs, H, S, S).copy()        # [seq][h][i=v index][j=k index]
    out = np.zeros((T, H, S))
    per = T // n_seqs
    for t in range(T):
        q = t // per
        sa = np.einsum("hj,hij->hi", a[t], st[q])
        st[q] = st[q] * w[t][:, None, :] + v[t][:, :, None] * k[t][:, None, :] + sa[:, :, None] * b[t][:, None, :]
        out[t] = np.einsum("hij,hj->hi", st[q], r[t])
    return np.concatenate([out.ravel(), st.ravel()]).reshape(1, 1, T + S * n_seqs, H * S)


WKV7_SMALL_WHY = ("ggml's SIMD wkv7 walks each head in GGML_F32_STEP chunks (64 floats with AVX-512) with no "
                  "tail loop, so heads smaller than that read past the row; checked against numpy only")


def _wkv7_inputs(S: int, H: int, T: int, n_seqs: int, ab: float) -> list[In]:
    gens = {"w": uniform(0.5, 1.0), "a": uniform(-ab, ab), "b": uniform(-ab, ab)}
    return ([In(n, "f32", (S, H, T), gens.get(n, normal)) for n in ("r", "w", "k", "v", "a", "b")]
            + [In("st", "f32", (S * S * H, n_seqs), uniform(-0.5, 0.5))])


for _ns in (1, 2):
    _S, _H, _T = 4, 2, 6
    case(f"rwkv_wkv6-seqs{_ns}",
         [In("k", "f32", (_S, _H, _T)), In("v", "f32", (_S, _H, _T)), In("r", "f32", (_S, _H, _T)),
          In("tf", "f32", (_S, _H)), In("td", "f32", (_S, _H, _T), uniform(0.3, 1.0)),
          In("st", "f32", (_S * _S * _H, _ns), uniform(-0.5, 0.5))],
         lambda g, T: g.rwkv_wkv6(T["k"], T["v"], T["r"], T["tf"], T["td"], T["st"]),
         lambda X: wkv6_np(X["k"], X["v"], X["r"], X["tf"], X["td"], X["st"]),
         lambda ctx, T: gg.ggml_rwkv_wkv6(ctx, T["k"], T["v"], T["r"], T["tf"], T["td"], T["st"]))
    case(f"rwkv_wkv7-seqs{_ns}", _wkv7_inputs(_S, _H, _T, _ns, 0.5),
         lambda g, T: g.rwkv_wkv7(T["r"], T["w"], T["k"], T["v"], T["a"], T["b"], T["st"]),
         lambda X: wkv7_np(X["r"], X["w"], X["k"], X["v"], X["a"], X["b"], X["st"]), why_ggml=WKV7_SMALL_WHY)
case("rwkv_wkv7-head64-seqs2", _wkv7_inputs(64, 2, 4, 2, 0.05),
     lambda g, T: g.rwkv_wkv7(T["r"], T["w"], T["k"], T["v"], T["a"], T["b"], T["st"]),
     lambda X: wkv7_np(X["r"], X["w"], X["k"], X["v"], X["a"], X["b"], X["st"]),
     lambda ctx, T: gg.ggml_rwkv_wkv7(ctx, T["r"], T["w"], T["k"], T["v"], T["a"], T["b"], T["st"]))


def wkv4_np(k, v, w, u, state) -> Arr:
    """RWKV-4 WKV (ChatRWKV att_seq, running max pp) in float64. k, v (1,1,T,C); w, u C values;
    state (1,1,n_seqs,3C) rows aa, bb, pp -> (1,1,T+3*n_seqs,C)."""
    T, C = k.shape[-2], k.shape[-1]
    n_seqs = state.shape[2]
    k, v = k.reshape(n_seqs, T // n_seqs, C), v.reshape(n_seqs, T // n_seqs, C)
    w, u = w.reshape(C), u.reshape(C)
    aa, bb, pp = (x.copy() for x in np.moveaxis(state.reshape(n_seqs, 3, C), 1, 0))
    out = np.zeros_like(k)
    for t in range(k.shape[1]):
        q = np.maximum(pp, u + k[:, t])
        e1, e2 = np.exp(pp - q), np.exp(u + k[:, t] - q)
        out[:, t] = (e1 * aa + e2 * v[:, t]) / (e1 * bb + e2)
        q = np.maximum(w + pp, k[:, t])
        e1, e2 = np.exp(w + pp - q), np.exp(k[:, t] - q)
        aa, bb, pp = e1 * aa + e2 * v[:, t], e1 * bb + e2, q
    return np.concatenate([out.reshape(-1, C), np.stack([aa, bb, pp], 1).reshape(-1, C)]).reshape(1, 1, -1, C)


def wkv4_decay(rng, shape) -> Arr:
    """w = -exp(time_decay), time_decay spread over [-6, 2] as trained RWKV-4 models have."""
    return -np.exp(rng.uniform(-6.0, 2.0, shape))


def wkv4_state(fresh: bool = False) -> Gen:
    """Rows aa (any), bb (> 0), pp per sequence; fresh: ChatRWKV's initial state (0, 0, -1e30)."""
    def gen(rng, shape):
        st = np.empty(shape)
        C = shape[-1] // 3
        st[..., :C] = 0.0 if fresh else rng.standard_normal(shape[:-1] + (C,))
        st[..., C:2 * C] = 0.0 if fresh else rng.uniform(0.1, 4.0, shape[:-1] + (C,))
        st[..., 2 * C:] = -1e30 if fresh else rng.uniform(-5.0, 5.0, shape[:-1] + (C,))
        return st
    return gen


def _wkv4_inputs(C: int, T: int, n_seqs: int, kv: str = "f32", k_gen: Gen = normal, fresh: bool = False) -> list[In]:
    return [In("k", kv, (C, T), k_gen), In("v", kv, (C, T)), In("w", "f32", (C,), wkv4_decay),
            In("u", "f32", (C,), uniform(-3.0, 3.0)), In("st", "f32", (3 * C, n_seqs), wkv4_state(fresh))]


_WKV4 = (lambda g, T: g.rwkv_wkv4(T["k"], T["v"], T["w"], T["u"], T["st"]),
         lambda X: wkv4_np(X["k"], X["v"], X["w"], X["u"], X["st"]))
for _ns in (1, 2):
    case(f"rwkv_wkv4-seqs{_ns}", _wkv4_inputs(8, 6, _ns), *_WKV4, why_ggml=NO_GGML_GRAPHC)
case("rwkv_wkv4-f16kv-fresh", _wkv4_inputs(40, 5, 1, "f16", fresh=True), *_WKV4, why_ggml=NO_GGML_GRAPHC)
# |k| up to 300: exp(k) alone would overflow f32 (> 88.7); the running-max form stays finite
case("rwkv_wkv4-large-k", _wkv4_inputs(16, 7, 1, k_gen=uniform(-300.0, 300.0), fresh=True), *_WKV4,
     why_ggml=NO_GGML_GRAPHC)
case("rwkv_wkv4-transposed-k", [In("kt", "f32", (5, 12)), *_wkv4_inputs(12, 5, 1)[1:]],
     lambda g, T: g.rwkv_wkv4(g.transpose(T["kt"]), T["v"], T["w"], T["u"], T["st"]),
     lambda X: wkv4_np(np.swapaxes(X["kt"], -1, -2), X["v"], X["w"], X["u"], X["st"]), why_ggml=NO_GGML_GRAPHC)

# --- combinations: non-contiguous sources, index chains, writes into views -----------------------

case("add-permuted-a", [In("a", "f32", (6, 4, 3)), In("b", "f32", (6, 3, 4))],
     lambda g, T: g.add(g.permute(T["a"], 0, 2, 1, 3), T["b"]),
     lambda X: np.swapaxes(X["a"], 1, 2) + X["b"],
     lambda ctx, T: gg.ggml_add(ctx, gg.ggml_permute(ctx, T["a"], 0, 2, 1, 3), T["b"]))
case("mul-permuted-b", [In("a", "f32", (6, 4, 3)), In("b", "f32", (6, 3, 4))],
     lambda g, T: g.mul(T["a"], g.permute(T["b"], 0, 2, 1, 3)),
     lambda X: X["a"] * np.swapaxes(X["b"], 1, 2),
     lambda ctx, T: gg.ggml_mul(ctx, T["a"], gg.ggml_permute(ctx, T["b"], 0, 2, 1, 3)))
case("rms_norm-strided-view", [In("a", "f32", (16, 6))],
     lambda g, T: g.rms_norm(g.view_2d(T["a"], 8, 3, 128, 16), 1e-6),
     lambda X: (lambda v: v / np.sqrt((v ** 2).mean(-1, keepdims=True) + np.float32(1e-6)))(X["a"][:, :, 0::2, 4:12]),
     lambda ctx, T: gg.ggml_rms_norm(ctx, gg.ggml_view_2d(ctx, T["a"], 8, 3, 128, 16), 1e-6))
case("soft_max-permuted", [In("a", "f32", (8, 3, 4))],
     lambda g, T: g.soft_max_ext(g.permute(T["a"], 0, 2, 1, 3), None, 0.5, 0.0),
     lambda X: softmax_np(np.swapaxes(X["a"], 1, 2), None, 0.5),
     why_ggml="ggml_soft_max asserts a contiguous source; graphc accepts a permuted one")
case("sum_rows-transposed", [In("a", "f32", (5, 7))], lambda g, T: g.sum_rows(g.transpose(T["a"])),
     lambda X: np.swapaxes(X["a"], -1, -2).sum(-1, keepdims=True),
     why_ggml="ggml's CPU sum_rows asserts nb0 == sizeof(float); graphc accepts a transposed source")
case("scale-of-view", [In("a", "f32", (8, 6))], lambda g, T: g.scale(g.view_2d(T["a"], 4, 3, 64, 16), 2.5),
     lambda X: X["a"][:, :, 0::2, 4:8] * 2.5,
     why_ggml="ggml's CPU scale asserts a contiguous source; graphc accepts a strided view")
case("concat-f16-dim1", [In("a", "f16", (4, 3, 2)), In("b", "f16", (4, 2, 2))],
     lambda g, T: g.concat(T["a"], T["b"], 1), lambda X: np.concatenate([X["a"], X["b"]], axis=2),
     lambda ctx, T: gg.ggml_concat(ctx, T["a"], T["b"], 1))
case("repeat-f16", [In("a", "f16", (3, 2)), In("b", "f16", (6, 4, 2))],
     lambda g, T: g.repeat(T["a"], T["b"]), lambda X: tile_to(X["a"], X["b"].shape),
     lambda ctx, T: gg.ggml_repeat(ctx, T["a"], T["b"]))
case("get_rows-by-argmax", [In("e", "f32", (6, 9)), In("x", "f32", (9, 4))],
     lambda g, T: g.get_rows(T["e"], g.argmax(T["x"])),
     lambda X: get_rows_np(X["e"], np.argmax(X["x"], axis=-1).reshape(1, 1, 1, -1)),
     lambda ctx, T: gg.ggml_get_rows(ctx, T["e"], gg.ggml_argmax(ctx, T["x"])))


def _kv_np(X):
    cache = X["cache"].copy()
    cache[0, 0, 3:5] = X["k"][0, 0]                       # rows 3, 4 written
    return matmul_np(cache[:, :, :5], X["q"])             # then the first 5 rows read


case("cpy-into-cache-view-then-read",
     [In("cache", "f32", (8, 6)), In("k", "f32", (8, 2)), In("q", "f32", (8, 3))],
     # the llama KV-cache pattern: write new rows through a view, then read the cache through another view
     lambda g, T: (g.cpy(T["k"], g.view_2d(T["cache"], 8, 2, 32, 3 * 32)),
                   g.mul_mat(g.view_2d(T["cache"], 8, 5, 32, 0), T["q"])),
     _kv_np,
     lambda ctx, T: (gg.ggml_cpy(ctx, T["k"], gg.ggml_view_2d(ctx, T["cache"], 8, 2, 32, 96)),
                     gg.ggml_mul_mat(ctx, gg.ggml_view_2d(ctx, T["cache"], 8, 5, 32, 0), T["q"])))
case("set_rows-then-get_rows",
     [In("cache", "f16", (8, 6)), In("k", "f32", (8, 2)), In("i", "i64", (2,), distinct(6)),
      In("j", "i32", (6,), ints(0, 6))],
     lambda g, T: (lambda c: (c, g.get_rows(c, T["j"])))(g.set_rows(T["cache"], T["k"], T["i"])),
     lambda X: get_rows_np(set_rows_np(X["cache"], X["k"], X["i"], f16), X["j"]),
     lambda ctx, T: (lambda c: (c, gg.ggml_get_rows(ctx, c, T["j"])))(
         gg.ggml_set_rows(ctx, T["cache"], T["k"], T["i"])))

# --- edge values: ties, exact zeros, infinities, long contexts ------------------------------------

def small_ints(rng, shape):
    return rng.integers(-2, 3, shape).astype(np.float64)


case("argmax-ties", [In("a", "f32", (12, 7), lambda r, s: r.integers(0, 3, s).astype(np.float64))],
     # ties go to the LAST maximum: ggml_vec_argmax_f32 does `max = MAX(max, x[i]); if (max == x[i]) idx = i;`
     lambda g, T: g.argmax(T["a"]),
     lambda X: (X["a"].shape[-1] - 1 - np.argmax(X["a"][..., ::-1], axis=-1)).reshape(1, 1, 1, -1),
     lambda ctx, T: gg.ggml_argmax(ctx, T["a"]), exact=True)
for _op in ("sgn", "step", "relu", "abs", "elu", "hardswish"):
    case(f"unary-{_op}-zeros", [In("a", "f32", (15, 4), small_ints)],
         lambda g, T, op=_op: g.unary(T["a"], op), lambda X, op=_op: UNARY_NP[op](X["a"]),
         lambda ctx, T, op=_op: getattr(gg, "ggml_" + op)(ctx, T["a"]))
def _div_ieee(a: Arr, b: Arr) -> Arr:
    with np.errstate(divide="ignore"):
        return a / b        # x/0 = +-inf, as IEEE and ggml


case("div-by-zero", [In("a", "f32", (8, 3), away_from_zero), In("b", "f32", (8, 3), small_ints)],
     lambda g, T: g.div(T["a"], T["b"]), lambda X: _div_ieee(X["a"], X["b"]),
     lambda ctx, T: gg.ggml_div(ctx, T["a"], T["b"]))
case("sum-f16", [In("a", "f16", (16, 5, 2))], lambda g, T: g.sum(T["a"]),
     lambda X: f16(X["a"].sum()).reshape(1, 1, 1, 1), lambda ctx, T: gg.ggml_sum(ctx, T["a"]),
     tol=1e-6, tol_ggml=1e-6, why_ggml=F16_OUT_WHY)
case("rope-long-context", [In("a", "f32", (16, 2, 6)), In("p", "i32", (6,), ints(20000, 120000))],
     lambda g, T: g.rope_ext(T["a"], T["p"], None, 16, 2, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0),
     lambda X: rope_np(X["a"], X["p"], 16, 2),
     lambda ctx, T: gg.ggml_rope_ext(ctx, T["a"], T["p"], None, 16, 2, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0),
     # angles of ~1e5 rad: ggml's f32 angles (theta *= theta_scale) are off by ~1e-3 rad from exact math;
     # against ggml itself the bound stays 1e-7
     tol=1e-4)

# --- custom ops (graphc.custom registry) ------------------------------------------------------------

CUSTOM_WHY = "custom ops are Python functions registered with graphc; ggml has no equivalent graph"
# each carries kernels for the compiled targets: an elementwise formula (every target) and a C row function
register_custom_op("optests_cube", lambda x: np.asarray(x, np.float32) ** 3, elementwise=True,
                   kernels={"expr": lambda x: x * x * x})
ROWDOT_C = """
    const gc_tensor *a = src[0], *b = src[1];
    const int64_t nr = a->ne[1] * a->ne[2] * a->ne[3];
    int64_t r0, r1;
    gc_chunk(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i1 = r % a->ne[1], i2 = (r / a->ne[1]) % a->ne[2], i3 = r / (a->ne[1] * a->ne[2]);
        double s = 0;
        for (int64_t i0 = 0; i0 < a->ne[0]; i0++)
            s += (double)*(const float *)GC_AT(a, i0, i1, i2, i3) * (double)*(const float *)GC_AT(b, i0, i1, i2, i3);
        *(float *)GC_AT(dst, 0, i1, i2, i3) = (float)s;
    }
"""
register_custom_op("optests_rowdot",
                   lambda a, b: np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=-1,
                                       keepdims=True).astype(np.float32),
                   shape=lambda srcs: ("f32", (1, srcs[0].ne[1], srcs[0].ne[2], srcs[0].ne[3])),
                   kernels={"c": ROWDOT_C})

case("custom-elementwise", [In("a", "f32", (7, 3, 2))], lambda g, T: g.custom("optests_cube", T["a"]),
     lambda X: X["a"] ** 3, why_ggml=CUSTOM_WHY)
case("custom-shape-rule", [In("a", "f32", (7, 3, 2)), In("b", "f32", (7, 3, 2))],
     lambda g, T: g.custom("optests_rowdot", T["a"], T["b"]),
     lambda X: (X["a"] * X["b"]).sum(-1, keepdims=True), why_ggml=CUSTOM_WHY)
case("custom-in-graph", [In("a", "f32", (7, 3)), In("b", "f32", (7, 3))],
     lambda g, T: g.add(g.custom("optests_cube", g.mul(T["a"], T["b"])), T["b"]),
     lambda X: (X["a"] * X["b"]) ** 3 + X["b"], why_ggml=CUSTOM_WHY)

CASE_IDS = [c.id for c in CASES]
BY_ID = {c.id: c for c in CASES}
