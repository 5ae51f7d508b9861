"""Every op graphc knows, defined once: sources, typed parameters and the shape rule.

Semantics are ggml's (ggml-reference §4); graphc extensions (maximum, minimum, unary one_minus,
rwkv_wkv4, custom) are marked. A shape rule takes the sources, the normalised params and, for ops whose
result shape is chosen by the caller (reshape, view, custom), the declared shape, and returns a
Spec. It raises GraphError naming the rule broken.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import GraphError
from .ir import MAX_DIMS, Tensor, contiguous_strides, nbytes
from .types import F32, GGMLType, I32, get_type

REQUIRED = object()

# GGML_UNARY_OP names and ids (GC numbering); one_minus is graphc's (RWKV's `1 - x`).
UNARY_OPS: dict[str, int | None] = {
    "abs": 0, "sgn": 1, "neg": 2, "step": 3, "tanh": 4, "elu": 5, "relu": 6, "sigmoid": 7,
    "gelu": 8, "gelu_quick": 9, "silu": 10, "hardswish": 11, "hardsigmoid": 12, "exp": 13,
    "expm1": 14, "softplus": 15, "gelu_erf": 16, "one_minus": None,
}
# GGML_GLU_OP names and ids.
GLU_OPS: dict[str, int] = {"reglu": 0, "geglu": 1, "swiglu": 2, "geglu_erf": 4, "geglu_quick": 5}
ROPE_MODES = {"normal": 0, "neox": 2}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str              # i32 | i64 | f32 | bool | str | i32x4 | type | choice
    default: Any = REQUIRED
    choices: tuple = ()


@dataclass(frozen=True)
class Spec:
    """What a shape rule returns: the result's type and shape, and what it aliases if a view."""
    type: GGMLType
    ne: tuple[int, int, int, int]
    nb: tuple[int, int, int, int] | None = None   # None: contiguous
    view_of: Tensor | None = None                  # source whose memory the result aliases
    offset: int = 0                                # byte offset into view_of (not its root)


@dataclass(frozen=True)
class Decl:
    """The caller's chosen shape for reshape / view / custom."""
    type: GGMLType | None
    ne: tuple[int, int, int, int]
    nb: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class OpDef:
    name: str
    srcs: tuple[str, ...]          # names of the source slots
    n_required: int                # how many leading slots must be set
    params: tuple[Param, ...]
    rule: Callable[..., Spec]
    kind: str                      # the op's class, read by fusion and every target: see OP_KINDS
    ggml: str | None               # GGML_OP_<name>, None for graphc-only ops
    declared: bool = False         # result shape comes from the caller (Decl)
    inplace_ok: bool = False       # ggml_op_can_inplace: may reuse a source's memory


OPS: dict[str, OpDef] = {}

# An op's class, the one fact fusion and the targets' lowering decide by:
#   leaf         no op (weights, inputs, constants)
#   view         alias-only: re-describes its source's memory, no work
#   write        writes into another tensor's memory (cpy, set_rows: KV cache stores)
#   elementwise  result[i] depends only on the sources at i (broadcast sources allowed)
#   reduce       row-wise (or wider) reductions and normalisations
#   matmul       mul_mat / out_prod
#   other        everything else (rope, get_rows, concat, attention, rwkv, custom ...)
OP_KINDS = ("leaf", "view", "write", "elementwise", "reduce", "matmul", "other")


def _op(name, srcs, params=(), kind="other", ggml=None, n_required=None, declared=False, inplace_ok=False):
    assert kind in OP_KINDS, kind
    def deco(rule):
        OPS[name] = OpDef(name, tuple(srcs), len(srcs) if n_required is None else n_required,
                          tuple(params), rule, kind, ggml if ggml is not None else name.upper(),
                          declared, inplace_ok)
        return rule
    return deco


# --- helpers --------------------------------------------------------------------------

def can_repeat(small: Tensor, big: Tensor) -> bool:
    """ggml_can_repeat(small, big): small tiles big by whole multiples in every dim."""
    if small.nelements == 0:
        return big.nelements == 0
    return all(small.ne[i] > 0 and big.ne[i] % small.ne[i] == 0 for i in range(MAX_DIMS))


def _same(a: Tensor, type_: GGMLType | None = None) -> Spec:
    return Spec(type_ or a.type, a.ne)


def _need(cond: bool, msg: str, rule: str) -> None:
    if not cond:
        raise GraphError(msg, None, rule)


def _float_src(t: Tensor, what: str) -> None:
    _need(t.type.is_float or t.type.is_quantized, f"{what} must be a float type, got {t.type.name}", "type")


def _is_matrix(t: Tensor) -> bool:
    return t.ne[2] == 1 and t.ne[3] == 1


# --- leafs ----------------------------------------------------------------------------

@_op("none", (), kind="leaf", ggml="NONE")
def _none():  # leafs are created directly, never through a shape rule
    raise GraphError("a leaf has no shape rule", None, "op")


# --- elementwise ----------------------------------------------------------------------

def _binary_rule(a: Tensor, b: Tensor) -> Spec:
    _need(can_repeat(b, a),
          f"b {list(b.ne)} does not broadcast into a {list(a.ne)} (each a.ne[i] must be a multiple of b.ne[i])",
          "broadcast")
    _float_src(a, "a")
    _float_src(b, "b")
    _need(not a.type.is_quantized, "a quantized tensor cannot be the target of an elementwise op", "type")
    return _same(a)


for _name in ("add", "sub", "mul", "div"):
    _op(_name, ("a", "b"), kind="elementwise", inplace_ok=True)(_binary_rule)
for _name in ("maximum", "minimum"):   # graphc: RWKV's elementwise max/min (ggml had them as map ops)
    _op(_name, ("a", "b"), kind="elementwise", ggml="")(_binary_rule)


@_op("add1", ("a", "b"), kind="elementwise", inplace_ok=True)
def _add1(a, b):
    _need(b.nelements == 1, f"add1 needs a scalar b, got ne {list(b.ne)}", "scalar")
    return _same(a)


def _unary_like(a, **_):
    _float_src(a, "a")
    _need(not a.type.is_quantized, "elementwise ops need an unquantized source", "type")
    return _same(a)


for _name in ("sqr", "sqrt", "log", "sin", "cos"):
    _op(_name, ("a",), kind="elementwise", inplace_ok=_name in ("sqr", "sqrt", "log"))(_unary_like)

# `table`: gelu / gelu_quick as ggml's CPU build computes them (GGML_GELU_FP16: the formula at x rounded to f16,
# the result rounded to f16, exact limits outside (-10, 10)). A graphc parameter: graphs built for llama.cpp's
# CPU numerics (graphc.models) or compared with ggml's CPU results set it; graphc.builder.use_gelu_table sets it.
TABLE_UNARY = ("gelu", "gelu_quick")
TABLE_GLU = ("geglu", "geglu_quick")


def _table_ok(op: str, table: bool, allowed: tuple) -> None:
    _need(not table or op in allowed, f"table=true is only for {', '.join(allowed)}, not {op}", "params")


@_op("unary", ("a",), (Param("op", "choice", choices=tuple(UNARY_OPS)), Param("table", "bool", False)),
     kind="elementwise", inplace_ok=True)
def _unary(a, op, table):
    _table_ok(op, table, TABLE_UNARY)
    return _unary_like(a)


_op("scale", ("a",), (Param("s", "f32"), Param("b", "f32", 0.0)), kind="elementwise", inplace_ok=True)(_unary_like)
_op("clamp", ("a",), (Param("min", "f32"), Param("max", "f32")), kind="elementwise")(_unary_like)
_op("leaky_relu", ("a",), (Param("negative_slope", "f32"),), kind="elementwise")(_unary_like)
_op("diag_mask_inf", ("a",), (Param("n_past", "i32"),), kind="elementwise", inplace_ok=True)(_unary_like)
_op("diag_mask_zero", ("a",), (Param("n_past", "i32"),), kind="elementwise", inplace_ok=True)(_unary_like)


@_op("glu", ("a", "b"), (Param("op", "choice", choices=tuple(GLU_OPS)), Param("swapped", "bool", False),
                         Param("table", "bool", False)), kind="elementwise", n_required=1)
def _glu(a, b, op, table, **_):
    _table_ok(op, table, TABLE_GLU)
    _unary_like(a)
    if b is None:
        _need(a.ne[0] % 2 == 0, f"glu without b needs an even ne0, got {a.ne[0]}", "shape")
        return Spec(a.type, (a.ne[0] // 2, a.ne[1], a.ne[2], a.ne[3]))
    _need(a.ne == b.ne, f"glu a {list(a.ne)} and b {list(b.ne)} must have the same shape", "shape")
    return _same(a)


@_op("dup", ("a",), kind="elementwise")
def _dup(a):
    return _same(a)


@_op("cont", ("a",), kind="elementwise")
def _cont(a):
    return _same(a)


# --- reductions and normalisation -------------------------------------------------------

@_op("sum", ("a",), kind="reduce")
def _sum(a):
    _unary_like(a)
    return Spec(a.type, (1, 1, 1, 1))


@_op("sum_rows", ("a",), kind="reduce")
def _sum_rows(a):
    _unary_like(a)
    return Spec(a.type, (1, a.ne[1], a.ne[2], a.ne[3]))


@_op("mean", ("a",), kind="reduce")
def _mean(a):
    _unary_like(a)
    return Spec(F32, (1, a.ne[1], a.ne[2], a.ne[3]))


@_op("argmax", ("a",), kind="reduce")
def _argmax(a):
    _unary_like(a)
    _need(_is_matrix(a), f"argmax needs a matrix, got ne {list(a.ne)}", "shape")
    return Spec(I32, (a.ne[1], 1, 1, 1))


def _norm_rule(a, **_):
    _unary_like(a)
    return _same(a)


_op("norm", ("a",), (Param("eps", "f32"),), kind="reduce")(_norm_rule)
_op("rms_norm", ("a",), (Param("eps", "f32"),), kind="reduce", inplace_ok=True)(_norm_rule)
_op("l2_norm", ("a",), (Param("eps", "f32"),), kind="reduce")(_norm_rule)
_op("group_norm", ("a",), (Param("n_groups", "i32"), Param("eps", "f32")), kind="reduce")(_norm_rule)


@_op("soft_max", ("a", "mask", "sinks"), (Param("scale", "f32", 1.0), Param("max_bias", "f32", 0.0)),
     kind="reduce", n_required=1, inplace_ok=True)
def _soft_max(a, mask, sinks):
    _unary_like(a)
    if mask is not None:
        _need(mask.type.name in ("f16", "f32"), f"soft_max mask must be f16 or f32, got {mask.type.name}", "type")
        _need(mask.ne[0] == a.ne[0], f"mask ne0 {mask.ne[0]} != a ne0 {a.ne[0]}", "shape")
        _need(mask.ne[1] >= a.ne[1], f"mask has {mask.ne[1]} rows, a needs {a.ne[1]}", "shape")
        _need(a.ne[2] % mask.ne[2] == 0 and a.ne[3] % mask.ne[3] == 0,
              f"mask dims 2,3 {mask.ne[2:]} must divide a's {a.ne[2:]}", "broadcast")
    if sinks is not None:
        _need(sinks.type == F32 and sinks.nelements == a.ne[2],
              f"sinks must be f32 with one value per head ({a.ne[2]})", "shape")
    return Spec(F32, a.ne)


# --- matrix products --------------------------------------------------------------------

@_op("mul_mat", ("a", "b"), (Param("prec", "i32", 0),), kind="matmul")
def _mul_mat(a, b):
    _need(a.ne[0] == b.ne[0], f"mul_mat needs a.ne0 == b.ne0, got {a.ne[0]} and {b.ne[0]}", "inner dim")
    _need(b.ne[2] % a.ne[2] == 0 and b.ne[3] % a.ne[3] == 0,
          f"mul_mat broadcasts a over b by division: b dims 2,3 {b.ne[2:]} must be multiples of a's {a.ne[2:]}",
          "broadcast")
    _need(not a.nb[0] > a.nb[1], "mul_mat's a must not be transposed (nb0 > nb1)", "layout")
    _need(not b.type.is_quantized, "mul_mat's b must not be quantized", "type")
    return Spec(F32, (a.ne[1], b.ne[1], b.ne[2], b.ne[3]))


@_op("out_prod", ("a", "b"), kind="matmul")
def _out_prod(a, b):
    _need(a.ne[1] == b.ne[1], f"out_prod needs a.ne1 == b.ne1, got {a.ne[1]} and {b.ne[1]}", "inner dim")
    _need(b.ne[2] % a.ne[2] == 0 and b.ne[3] % a.ne[3] == 0,
          "out_prod: b dims 2,3 must be multiples of a's", "broadcast")
    return Spec(F32, (a.ne[0], b.ne[0], b.ne[2], b.ne[3]))


# --- shape and memory ops ---------------------------------------------------------------

@_op("repeat", ("a",), kind="elementwise", declared=True)
def _repeat(a, decl: Decl):
    """ggml_repeat(a, b) uses b only for its shape and keeps only a as a source: so does graphc."""
    if a.nelements:
        ok = all(n > 0 and n % m == 0 for n, m in zip(decl.ne, a.ne))
    else:
        ok = not decl.ne[0] * decl.ne[1] * decl.ne[2] * decl.ne[3]
    _need(ok, f"repeat: a {list(a.ne)} does not tile {list(decl.ne)}", "broadcast")
    return Spec(a.type, decl.ne)


@_op("concat", ("a", "b"), (Param("dim", "i32", 0),), kind="other")
def _concat(a, b, dim):
    _need(0 <= dim < MAX_DIMS, f"concat dim {dim} is not 0..3", "param")
    _need(a.type == b.type, f"concat needs equal types, got {a.type.name} and {b.type.name}", "type")
    _need(all(a.ne[i] == b.ne[i] for i in range(MAX_DIMS) if i != dim),
          f"concat along {dim}: a {list(a.ne)} and b {list(b.ne)} differ in another dim", "shape")
    ne = list(a.ne)
    ne[dim] += b.ne[dim]
    return Spec(a.type, tuple(ne))


@_op("set", ("a", "b"), (Param("nb1", "i64"), Param("nb2", "i64"), Param("nb3", "i64"), Param("offset", "i64")),
     kind="other")
def _set(a, b, nb1, nb2, nb3, offset):
    _need(a.nelements >= b.nelements, "set: b has more elements than a", "shape")
    _need(offset >= 0, "set: negative offset", "bounds")
    end = offset + nbytes(a.type, b.ne, (a.nb[0], nb1, nb2, nb3))
    _need(b.nelements == 0 or end <= a.nbytes,
          f"set: the view of a at offset {offset} ends at byte {end}, past a's {a.nbytes}", "bounds")
    return _same(a)


@_op("cpy", ("a", "b"), kind="write")
def _cpy(a, b):
    _need(a.nelements == b.nelements, f"cpy needs equal element counts, got {a.nelements} and {b.nelements}", "shape")
    _need(not a.type.is_quantized or a.type == b.type,
          "cpy from a quantized type needs the same destination type", "type")
    return Spec(b.type, b.ne, b.nb, view_of=b, offset=0)


@_op("reshape", ("a",), kind="view", declared=True)
def _reshape(a, decl: Decl):
    _need(a.is_contiguous, "reshape needs a contiguous source (insert cont)", "layout")
    n = decl.ne[0] * decl.ne[1] * decl.ne[2] * decl.ne[3]
    _need(n == a.nelements, f"reshape from {list(a.ne)} to {list(decl.ne)} changes the element count", "shape")
    _need(decl.ne[0] % a.type.blck == 0, f"{a.type.name} rows need ne0 divisible by {a.type.blck}", "block size")
    return Spec(a.type, decl.ne, None, view_of=a, offset=0)


@_op("view", ("a",), (Param("offset", "i64", 0),), kind="view", declared=True)
def _view(a, offset, decl: Decl):
    _need(offset >= 0, f"negative view offset {offset}", "bounds")
    nb = decl.nb if decl.nb is not None else contiguous_strides(a.type, decl.ne)
    _need(nb[0] == a.nb[0], f"a view keeps its source's nb0 ({a.nb[0]}), got {nb[0]}", "layout")
    return Spec(a.type, decl.ne, nb, view_of=a, offset=offset)


@_op("permute", ("a",), (Param("axes", "i32x4"),), kind="view")
def _permute(a, axes):
    _need(sorted(axes) == [0, 1, 2, 3], f"permute axes {list(axes)} are not a permutation of 0..3", "param")
    ne, nb = [0] * 4, [0] * 4
    for i, ax in enumerate(axes):
        ne[ax], nb[ax] = a.ne[i], a.nb[i]
    return Spec(a.type, tuple(ne), tuple(nb), view_of=a, offset=0)


@_op("transpose", ("a",), kind="view")
def _transpose(a):
    return Spec(a.type, (a.ne[1], a.ne[0], a.ne[2], a.ne[3]), (a.nb[1], a.nb[0], a.nb[2], a.nb[3]), view_of=a)


@_op("get_rows", ("a", "b"), kind="other")
def _get_rows(a, b):
    _need(b.type == I32, f"get_rows indices must be i32, got {b.type.name}", "type")
    _need(b.ne[1] == a.ne[2] and b.ne[2] == a.ne[3] and b.ne[3] == 1,
          f"get_rows: indices {list(b.ne)} do not fit a {list(a.ne)} (need b.ne1 == a.ne2, b.ne2 == a.ne3, b.ne3 == 1)",
          "shape")
    return Spec(I32 if a.type == I32 else F32, (a.ne[0], b.ne[0], b.ne[1], b.ne[2]))


@_op("set_rows", ("a", "b", "c"), kind="write")
def _set_rows(a, b, c):
    _need(b.type == F32, f"set_rows source must be f32, got {b.type.name}", "type")
    _need(c.type.name in ("i32", "i64"), f"set_rows indices must be i32 or i64, got {c.type.name}", "type")
    _need(a.ne[0] == b.ne[0] and a.ne[2] == b.ne[2] and a.ne[3] == b.ne[3],
          f"set_rows: rows {list(b.ne)} do not fit destination {list(a.ne)}", "shape")
    _need(b.ne[1] == c.ne[0] and b.ne[2] % c.ne[1] == 0 and b.ne[3] % c.ne[2] == 0 and c.ne[3] == 1,
          f"set_rows: indices {list(c.ne)} do not fit rows {list(b.ne)}", "shape")
    return Spec(a.type, a.ne, a.nb, view_of=a, offset=0)


@_op("pad", ("a",), (Param("lp", "i32x4", (0, 0, 0, 0)), Param("rp", "i32x4", (0, 0, 0, 0))), kind="other")
def _pad(a, lp, rp):
    _unary_like(a)
    _need(all(p >= 0 for p in lp + rp), "pad amounts must be >= 0", "param")
    return Spec(a.type, tuple(a.ne[i] + lp[i] + rp[i] for i in range(MAX_DIMS)))


@_op("arange", (), (Param("start", "f32"), Param("stop", "f32"), Param("step", "f32", 1.0)), kind="other")
def _arange(start, stop, step):
    forward = step > 0 and stop >= start
    backward = step < 0 and stop <= start
    _need(forward or backward, f"arange({start}, {stop}, {step}) has a zero step or runs backwards", "param")
    _need(all(math.isfinite(v) for v in (start, stop, step)), "arange needs finite start, stop and step", "param")
    steps = np.ceil((np.float32(stop) - np.float32(start)) / np.float32(step))   # ggml: ceilf in f32
    return Spec(F32, (int(steps), 1, 1, 1))


# --- positional encodings and attention -------------------------------------------------

@_op("rope", ("a", "pos", "freq_factors"),
     (Param("n_dims", "i32"), Param("mode", "i32", 0), Param("n_ctx_orig", "i32", 0),
      Param("freq_base", "f32", 10000.0), Param("freq_scale", "f32", 1.0), Param("ext_factor", "f32", 0.0),
      Param("attn_factor", "f32", 1.0), Param("beta_fast", "f32", 32.0), Param("beta_slow", "f32", 1.0)),
     kind="other", n_required=2, inplace_ok=True)
def _rope(a, pos, freq_factors, n_dims, mode, **_):
    _unary_like(a)
    _need(mode in ROPE_MODES.values(), f"rope mode {mode} is not supported (0 normal, 2 neox)", "param")
    _need(0 < n_dims <= a.ne[0] and n_dims % 2 == 0,
          f"rope n_dims {n_dims} must be even and within ne0 {a.ne[0]}", "param")
    _need(pos.type == I32 and pos.ne[0] == a.ne[2] and pos.nelements == pos.ne[0],
          f"rope positions must be an i32 vector of a.ne2 = {a.ne[2]} values, got {pos.type.name} {list(pos.ne)}",
          "shape")
    if freq_factors is not None:
        _need(freq_factors.type == F32 and freq_factors.ne[0] >= n_dims // 2,
              f"rope freq_factors must be f32 with >= n_dims/2 = {n_dims // 2} values", "shape")
    return Spec(a.type, a.ne)


@_op("flash_attn_ext", ("q", "k", "v", "mask", "sinks"),
     (Param("scale", "f32", 1.0), Param("max_bias", "f32", 0.0), Param("softcap", "f32", 0.0), Param("prec", "i32", 0)),
     kind="other", n_required=3)
def _flash_attn_ext(q, k, v, mask, sinks):
    _need(k.ne[0] == q.ne[0], f"flash_attn_ext: k head dim {k.ne[0]} != q head dim {q.ne[0]}", "shape")
    _need(v.ne[1] == k.ne[1], f"flash_attn_ext: v has {v.ne[1]} positions, k has {k.ne[1]}", "shape")
    _need(q.ne[2] % k.ne[2] == 0 and q.ne[3] % k.ne[3] == 0 and k.ne[2:] == v.ne[2:],
          "flash_attn_ext: q heads must be a multiple of k/v heads (GQA)", "broadcast")
    if mask is not None:
        _need(mask.ne[0] == k.ne[1] and mask.ne[1] >= q.ne[1],
              f"flash_attn_ext: mask {list(mask.ne)} must be [n_kv={k.ne[1]}, >= n_q={q.ne[1]}]", "shape")
    return Spec(F32, (v.ne[0], q.ne[2], q.ne[1], q.ne[3]))


@_op("rwkv_wkv6", ("k", "v", "r", "tf", "td", "state"), kind="other")
def _wkv6(k, v, r, tf, td, state):
    S, H, T = k.ne[0], k.ne[1], k.ne[2]
    for nm, t in (("v", v), ("r", r), ("td", td)):
        _need(t.ne[:3] == (S, H, T), f"rwkv_wkv6: {nm} {list(t.ne)} must be [{S}, {H}, {T}]", "shape")
    _need(tf.nelements == S * H, f"rwkv_wkv6: tf must hold S*H = {S * H} values", "shape")
    n_seqs = state.ne[1]
    _need(state.nelements == S * S * H * n_seqs,
          f"rwkv_wkv6: state must hold S*S*H*n_seqs = {S * S * H * n_seqs} values", "shape")
    return Spec(F32, (S * H, T + S * n_seqs, 1, 1))


@_op("rwkv_wkv7", ("r", "w", "k", "v", "a", "b", "state"), kind="other")
def _wkv7(r, w, k, v, a, b, state):
    S, H, T = k.ne[0], k.ne[1], k.ne[2]
    for nm, t in (("r", r), ("w", w), ("v", v), ("a", a), ("b", b)):
        _need(t.ne[:3] == (S, H, T), f"rwkv_wkv7: {nm} {list(t.ne)} must be [{S}, {H}, {T}]", "shape")
    n_seqs = state.ne[1]
    _need(state.nelements == S * S * H * n_seqs,
          f"rwkv_wkv7: state must hold S*S*H*n_seqs = {S * S * H * n_seqs} values", "shape")
    return Spec(F32, (S * H, T + S * n_seqs, 1, 1))


@_op("rwkv_wkv4", ("k", "v", "w", "u", "state"), kind="other", ggml="")
def _wkv4(k, v, w, u, state):
    """graphc: RWKV-4's WKV in the running-max form (ChatRWKV). k, v [C, T]; w (= -exp(time_decay)) and
    u (time_first) hold C values; state [3*C, n_seqs]: per sequence the rows aa, bb, pp. Result
    [C, T + 3*n_seqs]: T rows of wkv, then every sequence's new aa, bb, pp rows."""
    C, T = k.ne[0], k.ne[1]
    for nm, t in (("k", k), ("v", v), ("w", w), ("u", u), ("state", state)):
        _float_src(t, nm)
        _need(not t.type.is_quantized, f"rwkv_wkv4: {nm} must not be quantized", "type")
    _need(k.ne[2] == 1 and k.ne[3] == 1 and v.ne == k.ne,
          f"rwkv_wkv4: k {list(k.ne)} and v {list(v.ne)} must be the same [C, T] matrix", "shape")
    _need(w.nelements == C and u.nelements == C, f"rwkv_wkv4: w and u must hold C = {C} values each", "shape")
    n_seqs = state.ne[1]
    _need(state.ne[0] == 3 * C and state.ne[2] == 1 and state.ne[3] == 1 and n_seqs >= 1,
          f"rwkv_wkv4: state {list(state.ne)} must be [3*C = {3 * C}, n_seqs]", "shape")
    _need(T % n_seqs == 0, f"rwkv_wkv4: {T} tokens do not split into {n_seqs} equal sequences", "shape")
    return Spec(F32, (C, T + 3 * n_seqs, 1, 1))


# --- custom ops (registered by name; see graphc.custom) ----------------------------------

@_op("custom", tuple(f"s{i}" for i in range(10)), (Param("fn", "str"),), kind="other", ggml="CUSTOM",
     n_required=0, declared=True)
def _custom(*srcs, fn, decl: Decl):
    from .custom import lookup_shape
    rule = lookup_shape(fn)
    if rule is not None:
        t, ne = rule([s for s in srcs if s is not None])
        return Spec(get_type(t), tuple(ne))
    _need(decl.type is not None, f"custom op {fn!r}: no output type given", "shape")
    return Spec(decl.type, decl.ne)


# --- collectives (tensor parallelism, graphc/parallel.py; run by the host through torch.distributed) --------
# `world` is the number of ranks the graph was sharded for: a run in another group size is an error, and a
# graph for one rank runs anywhere (the collectives then copy).

@_op("all_reduce", ("a",), (Param("world", "i32", 1),), kind="other", ggml="")
def _all_reduce(a, world):
    _float_src(a, "all_reduce")
    _need(a.type == F32, f"all_reduce sums f32 tensors, got {a.type.name}", "type")
    _need(world >= 1, f"all_reduce world must be >= 1, got {world}", "param")
    return _same(a)


@_op("all_gather", ("a",), (Param("world", "i32", 1), Param("total", "i64")), kind="other", ggml="")
def _all_gather(a, world, total):
    """Every rank's rows (ne[0]) concatenated in rank order, `total` rows in all: rank r holds rows
    [r * chunk, min((r + 1) * chunk, total)), chunk = ceil(total / world) (torch.chunk's split)."""
    _need(a.type == F32, f"all_gather gathers f32 tensors, got {a.type.name}", "type")
    _need(world >= 1 and total >= 1, f"all_gather needs world >= 1 and total >= 1, got {world}, {total}", "param")
    chunk = -(-total // world)
    last = total - (world - 1) * chunk
    _need(last > 0, f"all_gather of {total} rows over {world} ranks leaves a rank no row", "shape")
    _need(a.ne[0] in (chunk, last), f"all_gather of {total} rows over {world} ranks takes {chunk} rows per rank "
          f"({last} on the last), got {a.ne[0]}", "shape")
    return Spec(F32, (int(total), a.ne[1], a.ne[2], a.ne[3]))


COLLECTIVES = ("all_reduce", "all_gather")


# --- params -----------------------------------------------------------------------------

def _as_f32(v: Any) -> float:
    return float(np.float32(v))


def normalize_params(op: str, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults, check kinds and ranges, round f32 params to f32. Unknown names are errors."""
    d = get_op(op)
    known = {p.name for p in d.params}
    extra = set(given) - known
    if extra:
        raise GraphError(f"{op} has no parameter(s) {sorted(extra)}; it takes {sorted(known) or 'none'}", None, "param")
    out: dict[str, Any] = {}
    for p in d.params:
        if p.name in given and given[p.name] is not None:
            v = given[p.name]
        elif p.default is REQUIRED:
            raise GraphError(f"{op} needs parameter {p.name!r}", None, "param")
        else:
            v = p.default
        try:
            out[p.name] = _coerce(p, v)
        except (TypeError, ValueError, OverflowError) as e:
            raise GraphError(f"{op} parameter {p.name!r}: {e}", None, "param") from None
    return out


def _coerce(p: Param, v: Any) -> Any:
    k = p.kind
    if k in ("i32", "i64"):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"expected an integer, got {v!r}")
        lim = 2**31 if k == "i32" else 2**63
        if not -lim <= int(v) < lim:
            raise ValueError(f"{v} does not fit {k}")
        return int(v)
    if k == "f32":
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"expected a number, got {v!r}")
        return _as_f32(v)
    if k == "bool":
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"expected true/false, got {v!r}")
        return bool(v)
    if k == "str":
        if not isinstance(v, str) or not v:
            raise TypeError(f"expected a non-empty string, got {v!r}")
        return v
    if k == "choice":
        if v not in p.choices:
            raise ValueError(f"{v!r} is not one of {', '.join(p.choices)}")
        return v
    if k == "i32x4":
        vals = tuple(int(x) for x in v)
        if len(vals) != 4 or any(isinstance(x, bool) for x in v):
            raise ValueError(f"expected 4 integers, got {v!r}")
        return vals
    raise AssertionError(f"unknown param kind {k}")


@functools.lru_cache(maxsize=None)
def _rule_params(op: str) -> frozenset | None:
    """Parameter names a shape rule takes (None: it takes any); rules list only what they check."""
    sig = inspect.signature(OPS[op].rule)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(sig.parameters)


def get_op(op: str) -> OpDef:
    try:
        return OPS[op]
    except KeyError:
        raise GraphError(f"unknown op {op!r}", None, "op") from None


def infer(op: str, srcs: "list[Tensor | None] | tuple", params: dict[str, Any], decl: Decl | None = None) -> Spec:
    """Apply an op's shape rule to sources and normalised params."""
    d = get_op(op)
    srcs = list(srcs)
    if len(srcs) > len(d.srcs):
        raise GraphError(f"{op} takes at most {len(d.srcs)} sources, got {len(srcs)}", None, "sources")
    srcs += [None] * (len(d.srcs) - len(srcs))
    missing = [d.srcs[i] for i in range(d.n_required) if srcs[i] is None]
    if missing:
        raise GraphError(f"{op} is missing source(s) {missing}", None, "sources")
    accepted = _rule_params(op)
    kw = {k: v for k, v in params.items() if accepted is None or k in accepted}
    if d.declared:
        if decl is None:
            raise GraphError(f"{op} needs the result shape from its caller", None, "shape")
        kw["decl"] = decl
    return d.rule(*srcs, **kw)


def kind_ops(kind: str) -> frozenset[str]:
    """Every op of one class (OP_KINDS)."""
    assert kind in OP_KINDS, kind
    return frozenset(name for name, d in OPS.items() if d.kind == kind)


# ops whose result only re-describes memory: no kernel work at all (cpy and set_rows write, so they are not here)
ALIAS_ONLY = kind_ops("view")
