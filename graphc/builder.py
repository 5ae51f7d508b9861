"""Build graphs in Python with ggml's function names and argument order.

    g = GraphBuilder("mlp")
    x = g.set_input(g.new_tensor_2d("f32", 64, 4, name="x"))
    w = g.set_param(g.new_tensor_2d("f32", 64, 10, name="w"))
    y = g.soft_max(g.mul_mat(w, x))
    graph = g.build(y)            # marks y as an output, orders nodes like ggml_build_forward_expand

Tensors are created unattached; `build_forward_expand` / `build` collect them in ggml's order
(depth-first, sources left to right, leafs and nodes in separate lists).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import ops
from .errors import GraphError
from .ir import (MAX_NAME, Flag, Graph, Tensor, WeightRef, contiguous_strides, ne_from_numpy, new_tensor,
                 pad_ne)
from .types import F32, GGMLType, get_type


def _clip_name(name: str) -> str:
    """Names hold at most MAX_NAME-1 bytes (ggml keeps a NUL); cut on a character boundary. A name must be
    text: GraphError for a non-string or one with lone surrogates (undecodable bytes kept by surrogateescape)."""
    if not isinstance(name, str):
        raise GraphError(f"a tensor name must be a str, got {type(name).__name__}", None, "name")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise GraphError(f"name {name!r} is not text (it holds a lone surrogate: bytes that are not UTF-8)",
                         None, "name") from None
    if len(raw) < MAX_NAME:
        return name
    return raw[:MAX_NAME - 1].decode("utf-8", errors="ignore")


class GraphBuilder:
    def __init__(self, name: str = ""):
        self.name = name
        self._leafs: list[Tensor] = []
        self._nodes: list[Tensor] = []
        self._seen: set[int] = set()

    # --- leafs ---------------------------------------------------------------------------
    def new_tensor(self, type: "str | GGMLType", ne: Sequence[int], name: str = "") -> Tensor:
        return new_tensor(_clip_name(name), type, ne)

    def new_tensor_1d(self, type, ne0: int, name: str = "") -> Tensor:
        return self.new_tensor(type, (ne0,), name)

    def new_tensor_2d(self, type, ne0: int, ne1: int, name: str = "") -> Tensor:
        return self.new_tensor(type, (ne0, ne1), name)

    def new_tensor_3d(self, type, ne0: int, ne1: int, ne2: int, name: str = "") -> Tensor:
        return self.new_tensor(type, (ne0, ne1, ne2), name)

    def new_tensor_4d(self, type, ne0: int, ne1: int, ne2: int, ne3: int, name: str = "") -> Tensor:
        return self.new_tensor(type, (ne0, ne1, ne2, ne3), name)

    def constant(self, array: np.ndarray, type: "str | GGMLType | None" = None, name: str = "") -> Tensor:
        """A leaf holding fixed data (numpy order in, stored as `type`, default: the array's own)."""
        from .quants import encode
        arr = np.asarray(array)
        t = get_type(type) if type is not None else get_type({"float32": "f32", "float16": "f16", "int32": "i32",
                                                              "int64": "i64", "int16": "i16", "int8": "i8",
                                                              "float64": "f32"}[arr.dtype.name])
        leaf = new_tensor(_clip_name(name), t, ne_from_numpy(arr.shape))
        leaf.data = encode(arr, t)
        return leaf

    # --- roles ---------------------------------------------------------------------------
    def set_name(self, t: Tensor, name: str) -> Tensor:
        t.name = _clip_name(name)
        return t

    def set_input(self, t: Tensor) -> Tensor:
        t.flags |= Flag.INPUT
        return t

    def set_output(self, t: Tensor) -> Tensor:
        t.flags |= Flag.OUTPUT
        return t

    def set_param(self, t: Tensor, file: str | None = None, tensor: str | None = None,
                  rows: "tuple[int, int] | None" = None, cols: "tuple[int, int] | None" = None) -> Tensor:
        """Mark a weight; optionally bind it to a tensor in a weights file (GGUF, safetensors, npz), or to
        a slice of one (rows / cols: WeightRef)."""
        t.flags |= Flag.PARAM
        if file is not None:
            t.weight = WeightRef(str(file), tensor if tensor is not None else t.name, rows, cols)
        return t

    def set_state(self, t: Tensor) -> Tensor:
        """Mark a leaf whose contents persist between runs (KV cache, RNN state)."""
        t.flags |= Flag.STATE
        return t

    # --- graph ---------------------------------------------------------------------------
    def build_forward_expand(self, t: Tensor) -> None:
        """Add t and everything it depends on, depth-first with sources left to right."""
        stack: list[tuple[Tensor, int]] = [(t, 0)]
        while stack:
            cur, i = stack.pop()
            if id(cur) in self._seen:
                continue
            srcs = [s for s in cur.src if s is not None]
            if i < len(srcs):
                stack.append((cur, i + 1))
                if id(srcs[i]) not in self._seen:
                    stack.append((srcs[i], 0))
                continue
            self._seen.add(id(cur))
            (self._leafs if cur.is_leaf else self._nodes).append(cur)

    def build(self, *outputs: Tensor) -> Graph:
        """Mark `outputs` as outputs, expand them, and return the graph (unnamed tensors get ggml's names)."""
        for o in outputs:
            self.set_output(o)
            self.build_forward_expand(o)
        for i, t in enumerate(self._leafs):
            if not t.name:
                t.name = f"leaf_{i}"
        for i, t in enumerate(self._nodes):
            if not t.name:
                t.name = f"node_{i}"
        return Graph(self.name, list(self._leafs), list(self._nodes))

    # --- the one place nodes are made ----------------------------------------------------
    def op(self, op: str, srcs: Sequence[Tensor | None], params: dict[str, Any] | None = None,
           name: str = "", decl: ops.Decl | None = None) -> Tensor:
        """Make a node of any op: normalise params, apply the shape rule, set up aliasing."""
        try:
            p = ops.normalize_params(op, params or {})
            spec = ops.infer(op, srcs, p, decl)
        except GraphError as e:
            names = ", ".join(repr(s.name) for s in srcs if s is not None)
            raise GraphError(f"{op}({names}): {e}", name or None, e.rule) from None
        nb = spec.nb if spec.nb is not None else contiguous_strides(spec.type, spec.ne)
        t = Tensor(name=_clip_name(name), type=spec.type, ne=spec.ne, nb=nb, op=op,
                   src=tuple(srcs), params=p)
        if spec.view_of is not None:
            root = spec.view_of.view_src or spec.view_of
            t.view_src, t.view_offs = root, spec.view_of.view_offs + spec.offset
        return t

    # --- elementwise ---------------------------------------------------------------------
    def dup(self, a): return self.op("dup", [a])
    def add(self, a, b): return self.op("add", [a, b])
    def sub(self, a, b): return self.op("sub", [a, b])
    def mul(self, a, b): return self.op("mul", [a, b])
    def div(self, a, b): return self.op("div", [a, b])
    def add1(self, a, b): return self.op("add1", [a, b])
    def maximum(self, a, b): return self.op("maximum", [a, b])
    def minimum(self, a, b): return self.op("minimum", [a, b])
    def sqr(self, a): return self.op("sqr", [a])
    def sqrt(self, a): return self.op("sqrt", [a])
    def log(self, a): return self.op("log", [a])
    def sin(self, a): return self.op("sin", [a])
    def cos(self, a): return self.op("cos", [a])
    def scale(self, a, s: float): return self.op("scale", [a], {"s": s})
    def scale_bias(self, a, s: float, b: float): return self.op("scale", [a], {"s": s, "b": b})
    def clamp(self, a, min: float, max: float): return self.op("clamp", [a], {"min": min, "max": max})
    def leaky_relu(self, a, negative_slope: float, inplace: bool = False):
        return self.op("leaky_relu", [a], {"negative_slope": negative_slope})

    def unary(self, a, op: str, table: bool = False):
        return self.op("unary", [a], {"op": op, "table": table} if table else {"op": op})
    def abs(self, a): return self.unary(a, "abs")
    def sgn(self, a): return self.unary(a, "sgn")
    def neg(self, a): return self.unary(a, "neg")
    def step(self, a): return self.unary(a, "step")
    def tanh(self, a): return self.unary(a, "tanh")
    def elu(self, a): return self.unary(a, "elu")
    def relu(self, a): return self.unary(a, "relu")
    def sigmoid(self, a): return self.unary(a, "sigmoid")
    def gelu(self, a): return self.unary(a, "gelu")
    def gelu_quick(self, a): return self.unary(a, "gelu_quick")
    def gelu_erf(self, a): return self.unary(a, "gelu_erf")
    def silu(self, a): return self.unary(a, "silu")
    def hardswish(self, a): return self.unary(a, "hardswish")
    def hardsigmoid(self, a): return self.unary(a, "hardsigmoid")
    def exp(self, a): return self.unary(a, "exp")
    def expm1(self, a): return self.unary(a, "expm1")
    def softplus(self, a): return self.unary(a, "softplus")
    def one_minus(self, a):
        """graphc: 1 - x (RWKV's time-mix complement)."""
        return self.unary(a, "one_minus")

    def glu(self, a, op: str, swapped: bool = False, table: bool = False):
        return self.op("glu", [a], {"op": op, "swapped": swapped, "table": table})

    def glu_split(self, a, b, op: str, table: bool = False):
        return self.op("glu", [a, b], {"op": op, "table": table})
    def reglu(self, a): return self.glu(a, "reglu")
    def geglu(self, a): return self.glu(a, "geglu")
    def swiglu(self, a): return self.glu(a, "swiglu")
    def geglu_erf(self, a): return self.glu(a, "geglu_erf")
    def geglu_quick(self, a): return self.glu(a, "geglu_quick")
    def reglu_swapped(self, a): return self.glu(a, "reglu", True)
    def geglu_swapped(self, a): return self.glu(a, "geglu", True)
    def swiglu_swapped(self, a): return self.glu(a, "swiglu", True)
    def reglu_split(self, a, b): return self.glu_split(a, b, "reglu")
    def geglu_split(self, a, b): return self.glu_split(a, b, "geglu")
    def swiglu_split(self, a, b): return self.glu_split(a, b, "swiglu")

    # --- reductions and norms ------------------------------------------------------------
    def sum(self, a): return self.op("sum", [a])
    def sum_rows(self, a): return self.op("sum_rows", [a])
    def mean(self, a): return self.op("mean", [a])
    def argmax(self, a): return self.op("argmax", [a])
    def norm(self, a, eps: float): return self.op("norm", [a], {"eps": eps})
    def rms_norm(self, a, eps: float): return self.op("rms_norm", [a], {"eps": eps})
    def l2_norm(self, a, eps: float): return self.op("l2_norm", [a], {"eps": eps})
    def group_norm(self, a, n_groups: int, eps: float):
        return self.op("group_norm", [a], {"n_groups": n_groups, "eps": eps})

    def soft_max(self, a): return self.op("soft_max", [a])

    def soft_max_ext(self, a, mask=None, scale: float = 1.0, max_bias: float = 0.0, sinks=None):
        return self.op("soft_max", [a, mask, sinks], {"scale": scale, "max_bias": max_bias})

    def diag_mask_inf(self, a, n_past: int): return self.op("diag_mask_inf", [a], {"n_past": n_past})
    def diag_mask_zero(self, a, n_past: int): return self.op("diag_mask_zero", [a], {"n_past": n_past})

    # --- products --------------------------------------------------------------------------
    def mul_mat(self, a, b): return self.op("mul_mat", [a, b])
    def out_prod(self, a, b): return self.op("out_prod", [a, b])

    # --- shapes, views and copies -------------------------------------------------------
    def repeat(self, a, b):
        """ggml_repeat: tile a to b's shape (b gives only the shape and is not a source)."""
        return self.repeat_4d(a, *b.ne)

    def repeat_4d(self, a, ne0: int, ne1: int, ne2: int, ne3: int):
        return self.op("repeat", [a], decl=ops.Decl(None, pad_ne((ne0, ne1, ne2, ne3))))
    def concat(self, a, b, dim: int = 0): return self.op("concat", [a, b], {"dim": dim})
    def cont(self, a): return self.op("cont", [a], name=f"{a.name} (cont)" if a.name else "")

    def cont_2d(self, a, ne0, ne1): return self.reshape_2d(self.cont(a), ne0, ne1)
    def cont_3d(self, a, ne0, ne1, ne2): return self.reshape_3d(self.cont(a), ne0, ne1, ne2)
    def cont_4d(self, a, ne0, ne1, ne2, ne3): return self.reshape_4d(self.cont(a), ne0, ne1, ne2, ne3)

    def cpy(self, a, b):
        name = f"{b.name} (copy of {a.name})" if b.name else f"{a.name} (copy)"
        return self.op("cpy", [a, b], name=name)

    def _reshape(self, a, ne):
        return self.op("reshape", [a], name=f"{a.name} (reshaped)" if a.name else "",
                       decl=ops.Decl(None, pad_ne(ne)))

    def reshape(self, a, b): return self._reshape(a, b.ne)
    def reshape_1d(self, a, ne0): return self._reshape(a, (ne0,))
    def reshape_2d(self, a, ne0, ne1): return self._reshape(a, (ne0, ne1))
    def reshape_3d(self, a, ne0, ne1, ne2): return self._reshape(a, (ne0, ne1, ne2))
    def reshape_4d(self, a, ne0, ne1, ne2, ne3): return self._reshape(a, (ne0, ne1, ne2, ne3))

    def _view(self, a, ne, nb123, offset):
        ne4 = pad_ne(ne)
        nb0 = a.nb[0]
        nb = [nb0, *nb123]
        # ggml fills the strides the caller did not give from the last one given
        row = nb0 * (ne4[0] // a.type.blck)
        while len(nb) < 4:
            nb.append(row if len(nb) == 1 else nb[-1] * ne4[len(nb) - 1])
        return self.op("view", [a], {"offset": offset}, name=f"{a.name} (view)" if a.name else "",
                       decl=ops.Decl(None, ne4, tuple(nb)))

    def view_1d(self, a, ne0, offset: int): return self._view(a, (ne0,), (), offset)
    def view_2d(self, a, ne0, ne1, nb1, offset: int): return self._view(a, (ne0, ne1), (nb1,), offset)
    def view_3d(self, a, ne0, ne1, ne2, nb1, nb2, offset: int):
        return self._view(a, (ne0, ne1, ne2), (nb1, nb2), offset)
    def view_4d(self, a, ne0, ne1, ne2, ne3, nb1, nb2, nb3, offset: int):
        return self._view(a, (ne0, ne1, ne2, ne3), (nb1, nb2, nb3), offset)

    def permute(self, a, axis0: int, axis1: int, axis2: int, axis3: int):
        return self.op("permute", [a], {"axes": (axis0, axis1, axis2, axis3)},
                       name=f"{a.name} (permuted)" if a.name else "")

    def transpose(self, a): return self.op("transpose", [a], name=f"{a.name} (transposed)" if a.name else "")

    def set(self, a, b, nb1: int, nb2: int, nb3: int, offset: int):
        return self.op("set", [a, b], {"nb1": nb1, "nb2": nb2, "nb3": nb3, "offset": offset})

    def set_1d(self, a, b, offset: int): return self.set(a, b, a.nb[1], a.nb[2], a.nb[3], offset)
    def set_2d(self, a, b, nb1: int, offset: int): return self.set(a, b, nb1, a.nb[2], a.nb[3], offset)

    def get_rows(self, a, b): return self.op("get_rows", [a, b])
    def set_rows(self, a, b, c): return self.op("set_rows", [a, b, c])

    def pad(self, a, p0: int, p1: int, p2: int = 0, p3: int = 0):
        return self.op("pad", [a], {"lp": (0, 0, 0, 0), "rp": (p0, p1, p2, p3)})

    def pad_ext(self, a, lp0, rp0, lp1, rp1, lp2, rp2, lp3, rp3):
        return self.op("pad", [a], {"lp": (lp0, lp1, lp2, lp3), "rp": (rp0, rp1, rp2, rp3)})

    def arange(self, start: float, stop: float, step: float = 1.0):
        return self.op("arange", [], {"start": start, "stop": stop, "step": step})

    # --- positions and attention --------------------------------------------------------
    def rope(self, a, pos, n_dims: int, mode: int = 0):
        return self.op("rope", [a, pos], {"n_dims": n_dims, "mode": mode})

    def rope_ext(self, a, pos, freq_factors, n_dims: int, mode: int, n_ctx_orig: int, freq_base: float,
                 freq_scale: float, ext_factor: float, attn_factor: float, beta_fast: float, beta_slow: float):
        return self.op("rope", [a, pos, freq_factors], dict(
            n_dims=n_dims, mode=mode, n_ctx_orig=n_ctx_orig, freq_base=freq_base, freq_scale=freq_scale,
            ext_factor=ext_factor, attn_factor=attn_factor, beta_fast=beta_fast, beta_slow=beta_slow))

    def flash_attn_ext(self, q, k, v, mask=None, scale: float = 1.0, max_bias: float = 0.0,
                       logit_softcap: float = 0.0, sinks=None):
        return self.op("flash_attn_ext", [q, k, v, mask, sinks],
                       {"scale": scale, "max_bias": max_bias, "softcap": logit_softcap})

    def rwkv_wkv6(self, k, v, r, tf, td, state): return self.op("rwkv_wkv6", [k, v, r, tf, td, state])
    def rwkv_wkv7(self, r, w, k, v, a, b, state): return self.op("rwkv_wkv7", [r, w, k, v, a, b, state])
    def rwkv_wkv4(self, k, v, w, u, state):
        """graphc: RWKV-4 WKV over T tokens (see graphc.ops); w = -exp(time_decay), u = time_first."""
        return self.op("rwkv_wkv4", [k, v, w, u, state])

    # --- collectives (graphc/parallel.py) ---------------------------------------------
    def all_reduce(self, a, world: int):
        """The sum of a over the `world` ranks of the process group (torch.distributed)."""
        return self.op("all_reduce", [a], {"world": world})

    def all_gather(self, a, world: int, total: int):
        """Every rank's rows of a (ne[0]), concatenated in rank order: `total` rows (ops.all_gather)."""
        return self.op("all_gather", [a], {"world": world, "total": total})

    # --- custom ------------------------------------------------------------------------
    def custom(self, fn: str, *srcs: Tensor, type: "str | GGMLType | None" = None,
               ne: Sequence[int] | None = None) -> Tensor:
        """A registered custom op over up to 10 sources; type and shape default to the first source's."""
        first = srcs[0] if srcs else None
        t = get_type(type) if type is not None else (first.type if first is not None else F32)
        shape = pad_ne(ne) if ne is not None else (first.ne if first is not None else (1, 1, 1, 1))
        return self.op("custom", list(srcs), {"fn": fn}, decl=ops.Decl(t, shape))

    def map_unary(self, a, fn: str): return self.custom(fn, a)
    def map_binary(self, a, b, fn: str): return self.custom(fn, a, b)


Builder = GraphBuilder


def use_gelu_table(graph: Graph) -> Graph:
    """A copy of `graph` whose gelu / gelu_quick (and geglu / geglu_quick) nodes compute as ggml's CPU build
    does, through its f16 table (the ops' `table` parameter); every other node is unchanged. For graphs
    compared with ggml's CPU results (its exports, llama.cpp's CPU backend)."""
    g = graph.copy()
    for n in g.nodes:
        if ((n.op == "unary" and n.params["op"] in ops.TABLE_UNARY)
                or (n.op == "glu" and n.params["op"] in ops.TABLE_GLU)):
            n.params = {**n.params, "table": True}
    return g
