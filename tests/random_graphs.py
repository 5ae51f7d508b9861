"""Random valid graphs over graphc's op set (Hypothesis strategies), and everything a run of one needs that
can be read off the graph alone: input values, weights, and how exactly each output may match ref.

    from random_graphs import graphs, random_feeds, random_weights
    @given(graph=graphs())                # a verified graphc.ir.Graph of 1..MAX_OPS op families
    def test(graph): ...

A graph grows from one or two inputs by drawing op families (FAMILIES: elementwise unary/binary with
ggml's broadcasts, scale/clamp/glu, reductions and norms, soft_max with masks, mul_mat with f32 / f16 /
bf16 / every quantized weight type, out_prod, get_rows, views / reshape / permute / transpose + cont,
cpy into f16 / bf16 / quantized state, concat, repeat, pad, set, arange, rope, flash_attn_ext, the RWKV
WKV ops with their state carried in a state leaf, KV-cache writes (set_rows into a state tensor, then
reads of the cache) and registered custom ops with an "expr" kernel), each taking its sources from what
the graph already has (or fresh inputs and weights of a shape that fits). Shapes stay small (compile time
matters) with odd sizes among them; K-quant weights get ne0 = 256.

Nothing about a graph lives outside it: `random_feeds` and `random_weights` derive every value's range from
how the graph uses the leaf (indices in range of the table they index, distinct set_rows indices, causal
masks with a visible key per query, positive RWKV decays...), and `numeric_classes` says, per tensor, how
exactly a compiled target must reproduce ref (bit for bit, f32 rounding, or with low-precision roundings
in between). So a graph saved as a .graph file (tests/regressions/) replays with fresh values.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from graphc.builder import GraphBuilder
from graphc.custom import register_custom_op
from graphc.errors import GraphError
from graphc.ir import Flag, Graph, Tensor, full_numpy_shape
from graphc.ops import ALIAS_ONLY, GLU_OPS, UNARY_OPS, can_repeat
from graphc.program import root_of
from graphc.quants import MUL_MAT_TYPES
from graphc.types import get_type
from graphc.verify import verify

# --- registered custom ops (every compiled target prints their "expr" formula) ------------------------

CUSTOM_OPS = {"fuzz_cube": 1, "fuzz_mix": 2, "fuzz_fma3": 3}
register_custom_op("fuzz_cube", lambda x: np.asarray(x, np.float32) ** 3, elementwise=True,
                   kernels={"expr": lambda x: x * x * x})
register_custom_op("fuzz_mix", lambda x, y: (np.asarray(x, np.float32) * (np.float32(1) - np.asarray(y, np.float32))),
                   elementwise=True, kernels={"expr": lambda x, y: x * (1.0 - y)})
register_custom_op("fuzz_fma3", lambda a, b, c: (np.asarray(a, np.float32) * np.asarray(b, np.float32)
                                                 + np.asarray(c, np.float32)),
                   elementwise=True, kernels={"expr": lambda a, b, c: a * b + c})

# --- sizes and types ------------------------------------------------------------------------------------

NE0 = (1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 31, 32, 33, 64)
ROWS = (1, 2, 3, 4, 5, 6, 7)
MAX_ELEMENTS = 6144          # per tensor: keeps ref and Triton's interpreter quick
MAX_OPS = 8
QUANT_WEIGHTS = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs")
WEIGHT_TYPES = ("f32", "f16", "bf16") + QUANT_WEIGHTS
# ops whose result jumps where its argument crosses a point: never fed values that targets may round apart
DISCONTINUOUS_UNARY = ("sgn", "step")
# unary ops that grow fast: their argument is clamped first so no value overflows on one target only
GROWING_UNARY = ("exp", "expm1", "softplus")


def _elements(ne) -> int:
    return int(np.prod(ne))


class Skip(Exception):
    """A family found nothing in the pool it can read."""


class Builder:
    """One graph being drawn: the builder, the pool of values ops may read, and the leafs made so far."""

    def __init__(self, seed: int, name: str = "random"):
        self.rng = np.random.default_rng(seed)
        self.g = GraphBuilder(name)
        self.pool: list[Tensor] = []
        self.writes: list[Tensor] = []      # state writes: expanded even when nothing reads them
        self.caches: list[Tensor] = []      # state caches set_rows wrote into
        self.cls: dict[str, dict[int, int]] = {"ggml": {}, "dequant": {}}   # numeric classes so far
        self.n = 0

    # -- leafs --------------------------------------------------------------------------------------------
    def leaf(self, type_: str, ne, role: str = "input") -> Tensor:
        self.n += 1
        t = self.g.new_tensor(type_, tuple(ne), name=f"{role[0]}{self.n}")
        {"input": self.g.set_input, "param": self.g.set_param, "state": self.g.set_state}[role](t)
        return t

    def input(self, ne, type_: str = "f32") -> Tensor:
        t = self.leaf(type_, ne)
        self.pool.append(t)
        return t

    # -- choices (from the op's seed: uniform, where Hypothesis' own draws favour their simplest value) ------
    def one(self, seq):
        seq = list(seq)
        return seq[int(self.rng.integers(len(seq)))]

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def flag(self) -> bool:
        return bool(self.rng.integers(2))

    def maybe(self, pred: Callable[[Tensor], bool] = lambda t: True) -> Tensor | None:
        """A pool value that pred takes (the newest one half the time: deeper chains), or None."""
        cands = [t for t in self.pool if pred(t)]
        if not cands:
            return None
        return cands[-1] if self.flag() else self.one(cands)

    def pick(self, pred: Callable[[Tensor], bool] = lambda t: True) -> Tensor:
        """A pool value that pred takes; Skip (the family draws nothing) when there is none."""
        t = self.maybe(pred)
        if t is None:
            raise Skip
        return t

    def shape(self, ne0: int | None = None) -> tuple[int, int, int, int]:
        ne0 = ne0 if ne0 is not None else self.one(NE0)
        ne = [ne0, self.one(ROWS), self.one((1, 1, 2, 3)), self.one((1, 1, 1, 2))]
        while _elements(ne) > MAX_ELEMENTS:
            ne[self.int(1, 3)] = 1
        return tuple(ne)  # type: ignore[return-value]

    def classify(self, t: Tensor) -> None:
        """Give t and every new tensor it reads its numeric class (node_class), in both modes."""
        stack = [t]
        while stack:
            x = stack[-1]
            todo = [s for s in x.src if s is not None and id(s) not in self.cls["ggml"]]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            for mode, cls in self.cls.items():
                if id(x) in cls:
                    continue
                cls[id(x)] = EXACT if x.is_leaf else node_class(x, cls, mode)
                if x.view_src is not None and x.op not in ALIAS_ONLY:
                    cls[id(x.view_src)] = max(cls.get(id(x.view_src), EXACT), cls[id(x)])

    def shaky(self, t: Tensor) -> bool:
        """t may differ by a low-precision rounding step between targets: no argmax, sgn or step on it."""
        self.classify(t)
        return max(c[id(t)] for c in self.cls.values()) >= ROUNDED

    def add(self, t: Tensor | None) -> Tensor | None:
        if t is not None:
            self.classify(t)
        if t is not None and _elements(t.ne) <= 4 * MAX_ELEMENTS:
            self.pool.append(t)
        return t


def is_float(t: Tensor) -> bool:
    return t.type.name in ("f32", "f16", "bf16")


def is_f32(t: Tensor) -> bool:
    return t.type.name == "f32"


def fresh_or(b: Builder, pred: Callable[[Tensor], bool], make: Callable[[], Tensor]) -> Tensor:
    """A pool value that fits, or (when none does, or by a coin) a new input made to fit."""
    t = b.maybe(pred) if b.flag() else None
    return t if t is not None else make()


# --- op families ------------------------------------------------------------------------------------------
# Each takes the Builder, adds one small pattern of nodes and returns its last value (None: nothing to add;
# Skip: the pool holds nothing it can read). Shape rules are graphc's: a GraphError from the builder means
# the family drew something the op does not take, and the draw is dropped.

def f_unary(b: Builder):
    a = b.pick(is_float)
    op = b.one(UNARY_OPS)
    if op in DISCONTINUOUS_UNARY and b.shaky(a):
        op = "abs"
    if op in GROWING_UNARY:
        a = b.g.clamp(a, -8.0, 8.0)
    table = op in ("gelu", "gelu_quick") and b.flag()
    return b.g.unary(a, op, table=table)


def _broadcast_ne(b: Builder, ne) -> tuple[int, ...]:
    """A shape that tiles ne (ggml's can_repeat): each dim ne[i], 1, or a proper divisor."""
    out = []
    for n in ne:
        divs = [d for d in range(1, n + 1) if n % d == 0]
        out.append(b.one([n, 1] + divs) if b.flag() else n)
    return tuple(out)


def f_binary(b: Builder):
    a = b.pick(is_float)
    op = b.one(("add", "sub", "mul", "div", "maximum", "minimum"))
    y = b.maybe(lambda t: is_float(t) and can_repeat(t, a) and t is not a) if b.flag() else None
    if y is None:
        y = b.leaf(b.one(("f32", "f32", "f16")), _broadcast_ne(b, a.ne))
    if op == "div":                                # a denominator away from zero
        y = b.g.scale_bias(b.g.sqr(y), 1.0, 0.5)
    return b.g.op(op, [a, y])


def f_scale_like(b: Builder):
    a = b.pick(is_float)
    kind = b.one(("scale", "scale_bias", "clamp", "leaky_relu", "add1", "sqr", "sqrt", "log", "sin", "cos",
                  "diag_mask_zero"))
    g = b.g
    if kind == "scale":
        return g.scale(a, b.one((0.5, -1.25, 2.0, 0.125)))
    if kind == "scale_bias":
        return g.scale_bias(a, b.one((0.5, -1.5, 1.0)), b.one((0.25, -0.75, 3.0)))
    if kind == "clamp":
        return g.clamp(a, b.one((-1.0, -0.5, 0.0)), b.one((0.25, 1.0, 2.0)))
    if kind == "leaky_relu":
        return g.leaky_relu(a, b.one((0.01, 0.2, -0.5)))
    if kind == "add1":
        return g.add1(a, b.leaf("f32", (1,)))
    if kind in ("sqrt", "log"):                    # arguments kept >= 0.25
        return g.op(kind, [g.scale_bias(g.sqr(a), 1.0, 0.25)])
    if kind == "diag_mask_zero":
        return g.diag_mask_zero(a, b.int(0, 3))
    return g.op(kind, [a])


def f_glu(b: Builder):
    op = b.one(GLU_OPS)
    table = op in ("geglu", "geglu_quick") and b.flag()
    if b.flag():
        a = b.pick(lambda t: is_float(t) and t.ne[0] % 2 == 0)
        return b.g.glu(a, op, swapped=b.flag(), table=table)
    a = b.pick(is_float)
    y = b.maybe(lambda t: is_float(t) and t.ne == a.ne and t.type == a.type and t is not a) if b.flag() else None
    if y is None:
        y = b.leaf(a.type.name, a.ne)
    return b.g.glu_split(a, y, op, table=table)


def f_reduce(b: Builder):
    kind = b.one(("sum", "sum_rows", "mean", "argmax"))
    if kind == "argmax":
        return b.g.argmax(b.pick(lambda t: is_float(t) and t.ne[2] == 1 and t.ne[3] == 1 and not b.shaky(t)))
    return b.g.op(kind, [b.pick(lambda t: is_float(t) and not _zero_mean(t))])


def _zero_mean(t: Tensor) -> bool:
    """t is a mean-subtracting norm's result (through views, copies and plain scaling): its sums are rounding
    noise around 0, which no two targets share, so no sum or mean reads it."""
    while t.op in ALIAS_ONLY or t.op in ("cont", "dup", "cpy") or (t.op == "scale" and t.params["b"] == 0.0) \
            or (t.op == "unary" and t.params["op"] == "neg"):
        t = t.src[0]
    return t.op in ("norm", "group_norm")


def _varied(b: Builder, a: Tensor) -> Tensor:
    """a, or a plus fresh noise where a was computed: a mean-subtracting norm of (nearly) constant values
    (a broadcast, a repeat, a one-element soft_max) divides rounding noise by sqrt(eps), differently on
    every target. Views of inputs are kept as they are (their values are random)."""
    r = _root_leaf(a)
    if r.is_leaf and r.has(Flag.INPUT):
        return a
    return b.g.add(a, b.leaf("f32", a.ne))


def f_norm(b: Builder):
    a = b.pick(is_float)
    kind = b.one(("norm", "rms_norm", "l2_norm", "group_norm", "rms_norm_mul"))
    eps = b.one((1e-5, 1e-6, 1e-3))
    if kind in ("norm", "group_norm"):
        a = _varied(b, a)
    if kind == "group_norm":
        return b.g.group_norm(a, b.int(1, max(1, a.ne[2])), eps)
    if kind == "rms_norm_mul":                     # the llama pattern: rms_norm then a weight row
        w = b.leaf("f32", (a.ne[0],), "param")
        return b.g.mul(b.g.rms_norm(a, eps), w)
    return b.g.op(kind, [a], {"eps": eps})


def _mask(b: Builder, nkv: int, nq: int, heads: int = 1):
    rows = nq + b.int(0, 2)
    h = heads if heads > 1 and b.flag() else 1
    return b.leaf(b.one(("f32", "f16")), (nkv, rows, h))


def f_soft_max(b: Builder):
    a = b.pick(lambda t: is_f32(t) or t.type.name == "f16")
    g = b.g
    kind = b.one(("plain", "ext", "diag_mask_inf"))
    if kind == "plain":
        return g.soft_max(a)
    if kind == "diag_mask_inf":
        return g.soft_max(g.diag_mask_inf(a, b.int(0, 2)))
    mask = _mask(b, a.ne[0], a.ne[1], a.ne[2]) if b.flag() and a.ne[3] == 1 else None
    max_bias = b.one((0.0, 0.0, 8.0)) if mask is not None else 0.0
    sinks = b.leaf("f32", (a.ne[2],)) if b.flag() else None
    return g.soft_max_ext(a, mask, b.one((1.0, 0.5, 0.125)), max_bias, sinks)


def f_mul_mat(b: Builder):
    """A weight (param) of any type times activations; K fits the weight type's block."""
    wt = b.one(WEIGHT_TYPES)
    blck = get_type(wt).blck
    x = b.maybe(lambda t: is_float(t) and t.ne[0] % blck == 0 and t.ne[0] >= 2 and _elements(t.ne) >= 2) \
        if b.flag() else None
    if x is None:                                   # now and then enough rows / columns for the GEMM forms
        K = blck * b.int(1, 2) if blck > 1 else b.one(NE0)
        M = b.one(ROWS + (16, 33)) if K * 33 <= MAX_ELEMENTS else b.one(ROWS)
        x = b.leaf(b.one(("f32", "f32", "f32", "f16")), (K, M, b.one((1, 1, 2)), 1))
    N = b.one((1, 3, 4, 7, 8, 9, 16, 17, 40, 64))
    a2 = b.one([d for d in (1, x.ne[2]) if x.ne[2] % d == 0])
    a3 = b.one([d for d in (1, x.ne[3]) if x.ne[3] % d == 0])
    w = b.leaf(wt, (x.ne[0], N, a2, a3), "param")
    return b.g.mul_mat(w, x)


def f_mul_mat_act(b: Builder):
    """Activations times activations (attention's kq / kqv), permuted operands among them."""
    y = b.pick(lambda t: (is_float(t) or t.type.is_quantized and t.is_contiguous) and t.nb[0] <= t.nb[1])
    x = b.maybe(lambda t: is_float(t) and t.ne[0] == y.ne[0] and t.nb[0] <= t.nb[1] and t.ne[2] % y.ne[2] == 0
               and t.ne[3] % y.ne[3] == 0 and t is not y)
    if x is None:
        x = b.leaf("f32", (y.ne[0], b.one(ROWS), y.ne[2] * b.one((1, 1, 2)), y.ne[3]))
    if b.flag() and y.ne[2] == x.ne[2] and y.ne[3] == 1 and x.ne[3] == 1:   # llama: dims 1 and 2 swapped
        y, x = b.g.permute(y, 0, 2, 1, 3), b.g.permute(x, 0, 2, 1, 3)
    return b.g.mul_mat(y, x)


def f_out_prod(b: Builder):
    a = b.pick(lambda t: is_f32(t))
    y = b.leaf("f32", (b.one((1, 3, 5)), a.ne[1], a.ne[2] * b.one((1, 2)), a.ne[3]))
    return b.g.out_prod(a, y)


def f_view(b: Builder):
    a = b.pick(lambda t: is_float(t) or t.type.is_quantized and t.is_contiguous)
    g = b.g
    kind = b.one(("transpose", "permute", "reshape", "view_rows", "view_cols", "cont_transpose"))
    if kind in ("transpose", "cont_transpose"):
        if a.type.is_quantized:
            return None
        t = g.transpose(a)
        return g.cont(t) if kind == "cont_transpose" else t
    if kind == "permute":
        if a.type.is_quantized:
            return None
        axes = [int(i) for i in b.rng.permutation(4)]
        t = g.permute(a, *axes)
        return g.cont(t) if b.flag() else t
    if kind == "reshape":
        if not a.is_contiguous:
            a = g.cont(a)
        n = a.nelements
        blck = a.type.blck
        ne0s = [d for d in range(blck, n + 1, blck) if n % d == 0]
        ne0 = b.one(ne0s)
        rest = n // ne0
        ne1s = [d for d in range(1, rest + 1) if rest % d == 0]
        ne1 = b.one(ne1s)
        return g.reshape_3d(a, ne0, ne1, rest // ne1)
    if kind == "view_rows":                        # rows i0..i1 of the first matrix
        if a.ne[1] < 2:
            return None
        i0 = b.int(0, a.ne[1] - 1)
        n1 = b.int(1, a.ne[1] - i0)
        return g.view_2d(a, a.ne[0], n1, a.nb[1], i0 * a.nb[1])
    if a.type.is_quantized or a.ne[0] < 2:         # view_cols: a strided sub-block of columns
        return None
    c0 = b.int(0, a.ne[0] - 1)
    n0 = b.int(1, a.ne[0] - c0)
    return g.view_3d(a, n0, a.ne[1], a.ne[2], a.nb[1], a.nb[2], c0 * a.nb[0])


def f_copy(b: Builder):
    """dup / cont, or cpy into a state leaf of another type (f16, bf16, quantized: a cast into a cache)."""
    a = b.pick(lambda t: is_float(t))
    g = b.g
    kind = b.one(("dup", "cont", "cpy", "cpy", "cpy_view", "cpy_transposed"))
    if kind in ("dup", "cont"):
        return g.op(kind, [a])
    if kind == "cpy_transposed":                   # llama's transposed V-cache store: columns c0.. of [C, D]
        if a.ne[2] * a.ne[3] != 1:
            return None
        D, T = a.ne[0], a.ne[1]
        dst = b.leaf(b.one(("f32", "f16")), (T + b.int(0, 3), D), "state")
        c0 = b.int(0, dst.ne[0] - T)
        es = dst.type.size
        w = g.cpy(g.transpose(a), g.view_2d(dst, T, D, dst.nb[1], c0 * es))
        b.writes.append(w)
        return g.transpose(g.view_2d(dst, dst.ne[0], D, dst.nb[1], 0)) if b.flag() else w
    types = ["f32", "f16", "bf16"] + (["q8_0", "q4_0"] if a.ne[0] % 32 == 0 else [])
    dt = b.one(types)
    if kind == "cpy":
        dst = b.leaf(dt, a.ne if b.flag() or dt not in ("f32", "f16", "bf16") else (a.nelements,), "state")
        w = g.cpy(a, dst)
    else:                                          # into rows r0.. of a bigger state, like a KV-cache store
        extra = b.int(1, 3)
        if a.ne[2] * a.ne[3] != 1:
            return None
        dst = b.leaf(dt, (a.ne[0], a.ne[1] + extra), "state")
        r0 = b.int(0, extra)
        w = g.cpy(a, g.view_2d(dst, a.ne[0], a.ne[1], dst.nb[1], r0 * dst.nb[1]))
        b.writes.append(w)
        return g.view_2d(dst, a.ne[0], a.ne[1] + extra, dst.nb[1], 0) if b.flag() else w
    b.writes.append(w)
    return w


def f_concat(b: Builder):
    a = b.pick(is_float)
    dim = b.int(0, 3)
    y = b.maybe(lambda t: t.type == a.type and t is not a
               and all(t.ne[i] == a.ne[i] for i in range(4) if i != dim)) if b.flag() else None
    if y is None:
        ne = list(a.ne)
        ne[dim] = b.int(1, 3)
        y = b.leaf(a.type.name, ne)
    return b.g.concat(a, y, dim)


def f_repeat(b: Builder):
    a = b.pick(is_float)
    reps = [b.one((1, 1, 2, 3)) for _ in range(4)]
    ne = [n * r for n, r in zip(a.ne, reps)]
    if _elements(ne) > MAX_ELEMENTS:
        return None
    return b.g.repeat_4d(a, *ne)


def f_pad(b: Builder):
    a = b.pick(is_f32)
    if b.flag():
        return b.g.pad(a, b.int(0, 3), b.int(0, 2), b.int(0, 1), 0)
    return b.g.pad_ext(a, b.int(0, 2), b.int(0, 2), b.int(0, 1), b.int(0, 1), 0, b.int(0, 1), 0, 0)


def f_set(b: Builder):
    a = b.pick(lambda t: is_f32(t) and t.is_contiguous and t.ne[2] == 1 and t.ne[3] == 1)
    c0 = b.int(0, a.ne[0] - 1)
    r0 = b.int(0, a.ne[1] - 1)
    y = b.leaf("f32", (b.int(1, a.ne[0] - c0), b.int(1, a.ne[1] - r0)))
    return b.g.set_2d(a, y, a.nb[1], (r0 * a.ne[0] + c0) * 4)


def f_arange(b: Builder):
    a = b.pick(is_f32)
    n = a.ne[0]
    start = b.one((0.0, -2.5, 1.0))
    step = b.one((1.0, 0.5, -0.25))
    r = b.g.arange(start, start + step * n, step)
    if r.ne[0] != n:
        return r
    return b.g.add(a, r)


def f_get_rows(b: Builder):
    g = b.g
    if b.flag():                                    # an embedding table (param, any type) by token ids
        wt = b.one(("f32", "f16", "bf16", "q4_0", "q8_0", "q6_K", "q4_K"))
        D = get_type(wt).blck * b.int(1, 2) if get_type(wt).blck > 1 else b.one(NE0)
        table = b.leaf(wt, (D, b.int(2, 9)), "param")
        idx = b.leaf("i32", (b.int(1, 6),))
        return g.get_rows(table, idx)
    table = b.pick(lambda t: (is_float(t) or t.type.is_quantized) and t.ne[3] == 1)
    src = b.maybe(lambda t: t.op == "argmax" and t.ne[0] and table.ne[2] == 1
                 and t.src[0].ne[0] <= table.ne[1])
    idx = src if src is not None and b.flag() else b.leaf(b.one(("i32", "i32")), (b.int(1, 5), table.ne[2]))
    return g.get_rows(table, idx)


def f_kv_cache(b: Builder):
    """set_rows of this run's rows into a state cache (f32/f16/bf16/q8_0) at input positions, then a read of the
    whole cache: the value kept between runs."""
    g = b.g
    x = b.pick(lambda t: is_f32(t) and t.ne[3] == 1)
    T, H = x.ne[1], x.ne[2]
    # a second write into a cache written before (write order matters where rows overlap), or a new cache
    # (never the cache x itself is a view of: rows read while they are written race, in ggml as on the targets)
    old = [c for c in b.caches if c.ne[0] == x.ne[0] and c.ne[2] == H and c.ne[1] >= T and root_of(x) is not c]
    if old and b.flag():
        cache = b.one(old)
    else:
        dt = b.one(["f32", "f16", "f16", "bf16"] + (["q8_0"] if x.ne[0] % 32 == 0 else []))
        cache = b.leaf(dt, (x.ne[0], T + b.int(0, 4), H), "state")
        b.caches.append(cache)
    R = cache.ne[1]
    idx = b.leaf(b.one(("i32", "i64")), (T, b.one([d for d in (1, H) if H % d == 0])))
    w = g.set_rows(cache, x, idx)
    b.writes.append(w)
    kind = b.one(("read", "get_rows", "matmul", "leaf_view"))
    if kind == "read":
        return w
    if kind == "get_rows":
        return g.get_rows(w, b.leaf("i32", (b.int(1, 4), H)))
    if kind == "matmul":                            # attention scores against every cached row
        q = b.leaf("f32", (x.ne[0], b.one(ROWS), H))
        return g.mul_mat(w, q)
    return g.view_3d(cache, x.ne[0], R, H, cache.nb[1], cache.nb[2], 0)   # the leaf itself, read after the write


def f_attention(b: Builder):
    """A llama attention block: q/k/v projections, rope, f16/f32 KV caches written at the token positions,
    scores over every cached row (soft_max with mask and scale, or flash_attn_ext), the output projection."""
    g = b.g
    x = b.maybe(lambda t: is_f32(t) and t.ne[0] in (8, 16, 32, 64) and t.ne[2] == 1 and t.ne[3] == 1) \
        if b.flag() else None
    if x is None:
        x = b.leaf("f32", (b.one((8, 16, 32)), b.int(1, 4)))
    E, T = x.ne[0], x.ne[1]
    H = b.one([h for h in (1, 2, 4) if E % (2 * h) == 0])
    D = E // H
    wt = b.one(("f32", "f16", "q8_0", "q4_0", "q4_K") if E % 256 == 0 else
               ("f32", "f16", "q8_0", "q4_0") if E % 32 == 0 else ("f32", "f16"))

    def w():
        return b.leaf(wt, (E, E), "param")

    pos = b.leaf("i32", (T,))                       # rope positions and cache rows at once, as llama's
    mode = b.one((0, 2))
    q = g.rope_ext(g.reshape_3d(g.mul_mat(w(), x), D, H, T), pos, None, D, mode, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0)
    k = g.rope_ext(g.reshape_3d(g.mul_mat(w(), x), D, H, T), pos, None, D, mode, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0)
    v = g.mul_mat(w(), x)
    C = T + b.int(0, 4)
    ct = b.one(("f16", "f16", "f32"))
    es = get_type(ct).size
    k_all = g.set_rows(b.leaf(ct, (E, C), "state"), g.reshape_2d(k, E, T), pos)
    v_all = g.set_rows(b.leaf(ct, (E, C), "state"), v, pos)
    b.writes += [k_all, v_all]
    K = g.permute(g.view_3d(k_all, D, H, C, D * es, E * es, 0), 0, 2, 1, 3)          # [D, C, H]
    Q = g.permute(q, 0, 2, 1, 3)                                                     # [D, T, H]
    mask = b.leaf(b.one(("f32", "f16")), (C, T))
    if b.flag():
        V = g.permute(g.view_3d(v_all, D, H, C, D * es, E * es, 0), 0, 2, 1, 3)      # [D, C, H]
        out = g.reshape_2d(g.flash_attn_ext(Q, K, V, mask, 1.0 / math.sqrt(D), 0.0, 0.0), E, T)
    else:
        V = g.cont(g.permute(g.view_3d(v_all, D, H, C, D * es, E * es, 0), 1, 2, 0, 3))  # [C, D, H]
        kq = g.soft_max_ext(g.mul_mat(K, Q), mask, 1.0 / math.sqrt(D), 0.0)            # [C, T, H]
        out = g.cont_2d(g.permute(g.mul_mat(V, kq), 0, 2, 1, 3), E, T)
    return g.mul_mat(w(), out)


def f_rope(b: Builder):
    g = b.g
    a = b.pick(lambda t: t.type.name in ("f32", "f16") and t.ne[0] >= 2 and t.ne[0] % 2 == 0 and t.ne[3] == 1)
    n_dims = b.one([d for d in range(2, a.ne[0] + 1, 2)])
    mode = b.one((0, 2))
    pos = b.leaf("i32", (a.ne[2],))
    if b.flag():
        return g.rope(a, pos, n_dims, mode)
    ff = b.leaf("f32", (n_dims // 2 + b.int(0, 1),)) if b.flag() else None
    return g.rope_ext(a, pos, ff, n_dims, mode, b.one((0, 64)), b.one((10000.0, 500.0)), b.one((1.0, 0.5)),
                      b.one((0.0, 1.0)), b.one((1.0, 0.75)), 32.0, 1.0)


def f_flash_attn(b: Builder):
    g = b.g
    D = b.one((4, 8, 16, 32))
    Dv = D if b.flag() else b.one((8, 16))
    H = b.one((1, 2, 4))
    Hk = b.one([d for d in (1, 2, H) if H % d == 0])
    Nq, Nk = b.int(1, 5), b.int(1, 9)
    kv = b.one(("f16", "f16", "f32"))
    q = fresh_or(b, lambda t: is_f32(t) and t.ne[0] == D and t.ne[2] == H and t.ne[3] == 1,
                 lambda: b.leaf("f32", (D, Nq, H)))
    Nq = q.ne[1]
    k = b.leaf(kv, (D, Nk, Hk), "input")
    v = b.leaf(kv, (Dv, Nk, Hk), "input")
    mask = b.leaf("f16", (Nk, Nq + b.int(0, 2))) if b.flag() else None
    sinks = b.leaf("f32", (H,)) if b.flag() else None
    return g.flash_attn_ext(q, k, v, mask, 1.0 / math.sqrt(D), b.one((0.0, 0.0, 4.0)) if mask is not None else 0.0,
                            b.one((0.0, 0.0, 20.0)), sinks)


def f_rwkv(b: Builder):
    """A WKV op over fresh inputs whose state lives in a state leaf: the op's new state is copied back, as
    RWKV graphs do, so runs continue where the last one stopped."""
    g = b.g
    kind = b.one(("wkv4", "wkv6", "wkv7"))
    n_seqs = b.one((1, 2))
    if kind == "wkv4":
        C, T = b.one((3, 8, 16)), b.int(1, 3) * n_seqs
        st_leaf = b.leaf("f32", (3 * C, n_seqs), "state")
        out = g.rwkv_wkv4(b.leaf("f32", (C, T)), b.leaf("f32", (C, T)), b.leaf("f32", (C,)), b.leaf("f32", (C,)),
                          st_leaf)
        y, new = g.view_2d(out, C, T, out.nb[1], 0), g.view_1d(out, 3 * C * n_seqs, T * out.nb[1])
    else:
        S, H, T = b.one((2, 4)), b.one((1, 2)), b.int(1, 3) * n_seqs
        st_leaf = b.leaf("f32", (S * S * H, n_seqs), "state")
        ins = [b.leaf("f32", (S, H, T)) for _ in range(3)]
        if kind == "wkv6":
            out = g.rwkv_wkv6(ins[0], ins[1], ins[2], b.leaf("f32", (S, H)), b.leaf("f32", (S, H, T)), st_leaf)
        else:
            out = g.rwkv_wkv7(*ins, b.leaf("f32", (S, H, T)), b.leaf("f32", (S, H, T)), b.leaf("f32", (S, H, T)),
                              st_leaf)
        y, new = g.view_2d(out, S * H, T, out.nb[1], 0), g.view_1d(out, S * S * H * n_seqs, T * out.nb[1])
    b.writes.append(g.cpy(new, g.view_1d(st_leaf, st_leaf.nelements, 0)))
    return g.cont(y) if b.flag() else y


def f_custom(b: Builder):
    fn = b.one(CUSTOM_OPS)
    a = b.pick(is_f32)
    srcs = [a] + [b.maybe(lambda t: is_f32(t) and t.ne == a.ne and t.nb == a.nb) or b.leaf("f32", a.ne)
                  for _ in range(CUSTOM_OPS[fn] - 1)]
    if fn == "fuzz_cube":
        srcs = [b.g.clamp(a, -3.0, 3.0)]
    return b.g.custom(fn, *srcs)


FAMILIES: dict[str, Callable[[Builder], "Tensor | None"]] = {
    "unary": f_unary, "binary": f_binary, "scale_like": f_scale_like, "glu": f_glu, "reduce": f_reduce,
    "norm": f_norm, "soft_max": f_soft_max, "mul_mat": f_mul_mat, "mul_mat_act": f_mul_mat_act,
    "out_prod": f_out_prod, "view": f_view, "copy": f_copy, "concat": f_concat, "repeat": f_repeat,
    "pad": f_pad, "set": f_set, "arange": f_arange, "get_rows": f_get_rows, "kv_cache": f_kv_cache,
    "rope": f_rope, "attention": f_attention, "flash_attn": f_flash_attn, "rwkv": f_rwkv, "custom": f_custom,
}
# draws per family: the common ops of real graphs more often
WEIGHTS = {"unary": 3, "binary": 3, "scale_like": 2, "mul_mat": 3, "view": 3, "norm": 2, "soft_max": 2,
           "copy": 2, "kv_cache": 2, "get_rows": 2, "rope": 2}
FAMILY_LIST = [f for f, _ in FAMILIES.items() for _ in range(WEIGHTS.get(f, 1))]


def _sinks(made: list[Tensor]) -> list[Tensor]:
    read: set[int] = set()
    seen: set[int] = set()
    stack = list(made)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        for s in t.src:
            if s is not None:
                read.add(id(s))
                stack.append(s)
    return [t for t in made if id(t) not in read]


SEED = st.integers(0, 2**32 - 1)


@st.composite
def graphs(draw, max_ops: int = MAX_OPS, families: "tuple[str, ...] | None" = None) -> Graph:
    """A verified random graph: 1..max_ops op families over one or two inputs, 1..3 outputs, every state write
    kept (dce must keep them).

    Hypothesis draws the structure: a seed for the inputs, a list of one seed per op family, a seed for the
    outputs. Each seed drives that step's choices (family, sources, shapes, parameters) through numpy, so
    choices are uniform and shrinking works op by op: Hypothesis deletes list entries (fewer ops) and lowers
    seeds until the failure is as small as it gets."""
    fams = [f for f in FAMILY_LIST if families is None or f in families]
    b = Builder(draw(SEED))
    b.input(b.shape())
    if b.flag():
        b.input(b.shape(b.pool[0].ne[0]) if b.flag() else b.shape())
    made: list[Tensor] = []
    for seed in draw(st.lists(SEED, min_size=1, max_size=max_ops)):
        b.rng = np.random.default_rng(seed)
        fam = b.one(fams)
        n_before = len(b.writes)
        try:
            t = FAMILIES[fam](b)
        except (GraphError, Skip):
            del b.writes[n_before:]
            continue
        for w in b.writes:
            b.classify(w)
        if t is not None and b.add(t) is not None:
            made.append(t)
    b.rng = np.random.default_rng(draw(SEED))
    if not made:                                    # at least one node
        made.append(b.g.scale(b.pool[0], 2.0))
    outs = _sinks(made)                             # what nothing else reads: the graph's results
    if len(outs) > 3:                               # the rest is dead code (dce's work)
        outs = [outs[int(i)] for i in sorted(b.rng.choice(len(outs), b.int(1, 3), replace=False))]
    extra = [t for t in made if all(t is not o for o in outs)]
    if extra and b.flag():                          # an output that other nodes read too
        outs.append(b.one(extra))
    for w in b.writes:                              # expanded first: graph order is ggml's build order
        b.g.build_forward_expand(w)
    graph = b.g.build(*outs)
    for i, n in enumerate(graph.nodes):             # distinct names: Module.run keys outputs by name
        n.name = f"n{i}_{n.op}"
    return verify(graph)


def _pretty_graph(graph: Graph, p, cycle: bool) -> None:
    """Hypothesis prints a falsifying graph as .graph text (not as nested dataclasses)."""
    from graphc.frontends import graph_text
    p.text("graph_text.loads(\"\"\"\n" + graph_text.dumps(graph) + "\"\"\")")


try:
    from hypothesis.vendor.pretty import for_type_by_name
    for_type_by_name("graphc.ir", "Graph", _pretty_graph)
except ImportError:                                   # pragma: no cover - a Hypothesis without the hook
    pass


# --- values for a graph's leafs, read off the graph -----------------------------------------------------

def _root_leaf(t: Tensor) -> Tensor:
    while t.op in ALIAS_ONLY:
        t = t.src[0]
    return t


def leaf_uses(graph: Graph) -> dict[int, list[tuple[Tensor, int]]]:
    """id(leaf) -> (node, slot) of every read of it, through alias-only views."""
    uses: dict[int, list[tuple[Tensor, int]]] = {}
    for n in graph.nodes:
        if n.op in ALIAS_ONLY:
            continue
        for j, s in enumerate(n.src):
            if s is not None:
                r = _root_leaf(s)
                if r.is_leaf:
                    uses.setdefault(id(r), []).append((n, j))
    return uses


def _mask_values(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """A causal mask over [rows, nkv] with a random bias: query j sees keys i <= j + max(nkv - rows, 0),
    so every query sees key 0 (no all -inf row)."""
    nkv, rows = shape[-1], shape[-2]
    i, j = np.arange(nkv)[None, :], np.arange(rows)[:, None]
    m = np.where(i <= j + max(nkv - rows, 0), rng.uniform(-1.0, 0.0, (rows, nkv)), -np.inf)
    return np.broadcast_to(m, shape).astype(np.float32)


def _int_values(rng: np.random.Generator, t: Tensor, uses: list[tuple[Tensor, int]]) -> np.ndarray:
    shape = full_numpy_shape(t.ne)
    bounds, distinct = [], False
    for n, j in uses:
        if n.op == "get_rows" and j == 1:
            bounds.append(n.src[0].ne[1])
        elif n.op == "set_rows" and j == 2:
            bounds.append(n.ne[1])
            distinct = True
    bound = min(bounds) if bounds else 64          # positions (rope) up to 64 when nothing else bounds them
    if distinct:                                    # set_rows writing a row twice would depend on write order
        rows = int(np.prod(shape[:-1]))
        v = np.stack([rng.permutation(bound)[:shape[-1]] for _ in range(rows)]).reshape(shape)
    else:
        v = rng.integers(0, max(bound, 1), shape)
    return v.astype(t.type.np_dtype)


_RWKV_RANGES = {("rwkv_wkv6", 4): (0.3, 1.0), ("rwkv_wkv7", 1): (0.5, 1.0), ("rwkv_wkv7", 4): (-0.3, 0.3),
                ("rwkv_wkv7", 5): (-0.3, 0.3), ("rwkv_wkv4", 3): (-3.0, 3.0)}


def leaf_values(rng: np.random.Generator, graph: Graph, t: Tensor,
                uses: dict[int, list[tuple[Tensor, int]]] | None = None) -> np.ndarray:
    """Fresh values for leaf t in its full numpy shape, in the range its uses need."""
    uses = leaf_uses(graph) if uses is None else uses
    mine = uses.get(id(t), [])
    shape = full_numpy_shape(t.ne)
    if t.type.is_int:
        return _int_values(rng, t, mine)
    for n, j in mine:
        if (n.op, j) in (("soft_max", 1), ("flash_attn_ext", 3)):
            return _mask_values(rng, shape)
        if n.op == "rwkv_wkv4" and j == 2:           # w = -exp(time_decay)
            return (-np.exp(rng.uniform(-6.0, 2.0, shape))).astype(np.float32)
        if (n.op, j) in _RWKV_RANGES:
            return rng.uniform(*_RWKV_RANGES[n.op, j], shape).astype(np.float32)
    scale = 1.0
    for n, j in mine:
        if n.op == "mul_mat" and j == 0 and t.has(Flag.PARAM):
            scale = 1.0 / math.sqrt(t.ne[0])       # outputs of order 1, as trained weights give
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def random_feeds(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    uses = leaf_uses(graph)
    return {t.name: leaf_values(rng, graph, t, uses) for t in graph.leafs if t.has(Flag.INPUT)}


# byte offsets of the f16 scales (d, and dmin where there is one) in the blocks of the types graphc cannot
# quantize to: their weights are random bytes with those scales set to fit the wanted magnitude
_SCALE_FIELDS = {"q2_K": (80, 82), "q3_K": (108,), "q5_K": (0, 2), "iq4_nl": (0,), "iq4_xs": (0,)}


def _random_blocks(rng: np.random.Generator, t: Tensor, scale: float) -> np.ndarray:
    """Raw ggml bytes for leaf t: random quants, every block's scales set so its values have RMS `scale`."""
    from graphc.quants import dequantize
    T = t.type
    blocks = rng.integers(0, 256, (t.nelements // T.blck, T.size), dtype=np.uint8)
    offs = _SCALE_FIELDS[T.name]
    for o in offs:
        blocks[:, o:o + 2] = np.full((len(blocks), 1), 1.0, np.float16).view(np.uint8)
    rms = np.sqrt(np.mean(dequantize(blocks, T).astype(np.float64) ** 2, axis=1)) + 1e-6
    d = (scale * rng.uniform(0.5, 1.5, len(blocks)) / rms).astype(np.float16)
    for o in offs:
        blocks[:, o:o + 2] = d[:, None].view(np.uint8)
    return blocks.reshape(-1)


def random_weights(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Values for every weight leaf without data: f32 arrays (graphc converts and quantizes them at load), or
    raw bytes for the block types graphc does not quantize to (q2_K, q3_K, q5_K, iq4_nl, iq4_xs)."""
    uses = leaf_uses(graph)
    out = {}
    for t in graph.leafs:
        if t.has(Flag.INPUT) or t.has(Flag.STATE) or t.data is not None or t.weight is not None:
            continue
        v = leaf_values(rng, graph, t, uses)
        out[t.name] = _random_blocks(rng, t, float(np.sqrt(np.mean(v ** 2)))) if t.type.name in _SCALE_FIELDS else v
    return out


# --- how exactly a target must reproduce ref, per tensor ---------------------------------------------------
# EXACT: bit for bit (copies, views, gathers, conversions of exact values). F32: f32 arithmetic whose rounding
# order may differ. ROUNDED: f32 values rounded to a lower precision on the way (f16/bf16/quantized stores,
# and mul_mat's activation conversion in ref's "ggml" mode), where an ulp apart before may be a rounding step
# apart after. QUANT: a quantized mul_mat in ref's ggml mode (8-bit activations, integer dots, f32 block sums
# in another order). DEQUANT: compared with ref's "dequant" mode while the target quantizes activations.
EXACT, F32, ROUNDED, QUANT, DEQUANT = range(5)
CLASS_NAMES = ("exact", "f32", "rounded", "quant", "dequant")
_EXACT_OPS = ALIAS_ONLY | {"cpy", "dup", "cont", "get_rows", "set_rows", "concat", "repeat", "pad", "set", "argmax",
                           "diag_mask_inf", "diag_mask_zero", "maximum", "minimum"}
_EXACT_UNARY = ("abs", "neg", "relu", "sgn", "step")
_LOWP = ("f16", "bf16")


def needs_dequant_ref(graph: Graph) -> bool:
    """ref's ggml mode has no integer path for some weight types (iq4_nl, iq4_xs): compare with its dequant mode."""
    return any(n.op == "mul_mat" and n.src[0].type.name not in MUL_MAT_TYPES for n in graph.nodes)


def node_class(n: Tensor, cls: dict[int, int], mode: str) -> int:
    """The class of node n from its sources' classes (see numeric_classes)."""
    srcs = [s for s in n.src if s is not None]
    c = max((cls.get(id(s), EXACT) for s in srcs), default=EXACT)
    if n.op == "mul_mat":
        a, x = n.src[0], n.src[1]
        c = max(c, F32)
        if mode == "ggml" and a.type.name != "f32":
            if a.type.is_quantized:
                c = max(c, QUANT)
            elif cls.get(id(x), EXACT) > EXACT:
                c = max(c, ROUNDED)
    elif n.op == "get_rows" and n.src[0].type.is_quantized:
        c = max(c, F32)
    elif n.op == "unary" and n.params["op"] in _EXACT_UNARY:
        pass
    elif n.op not in _EXACT_OPS:
        c = max(c, F32)
    if c == F32 and n.type.name != "f32" and not n.type.is_int:
        c = ROUNDED                                   # f32 work stored as f16 / bf16 / quantized
    return c


def numeric_classes(graph: Graph, mode: str) -> dict[int, int]:
    """id(tensor) -> class, for a target compared with ref in `mode` ("ggml": targets that quantize activations
    as ggml does, C and OpenCL; "dequant": Triton, f32 math on dequantized weights)."""
    cls: dict[int, int] = {id(t): EXACT for t in graph.leafs}
    for _ in range(2):                                # state read before its write holds the last run's writes
        for n in graph.nodes:
            c = cls[id(n)] = node_class(n, cls, mode)
            if n.view_src is not None and n.op not in ALIAS_ONLY:   # a write: its root holds such values now
                cls[id(n.view_src)] = max(cls.get(id(n.view_src), EXACT), c)
    if mode == "ggml" and needs_dequant_ref(graph):
        for k, v in cls.items():
            if v >= F32:
                cls[k] = max(v, DEQUANT)
    return cls


# NMSE bounds per class (ggml's test-backend-ops measure; see tests/test_random_graphs.py for the reasons)
BOUNDS = {EXACT: 0.0, F32: 1e-7, ROUNDED: 1e-4, QUANT: 1e-5, DEQUANT: 5e-4}
