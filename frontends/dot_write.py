"""Write a graph as GraphViz .dot: ggml-style record labels that `dot -Tsvg` renders, plus graphc_*
attributes carrying every field, so frontends/dot.py reads graphc's own .dot back losslessly.

    digraph G {
      newrank = true; rankdir = TB; graphc_version = "1"; graphc_graph = "\"mlp\"";
      "n0" [ style = filled; fillcolor = white; shape = record; label="h (f32)|0 [128, 4] | <x>unary(x)";
             graphc_kind = "node"; graphc_index = "0"; graphc_name = "\"h\""; graphc_op = "unary";
             graphc_params = "{\"op\": \"gelu\"}"; graphc_type = "f32"; graphc_ne = "128,4,1,1";
             graphc_nb = "4,512,2048,2048"; graphc_src = "l0"; ]
      "l0" -> "n0" [ arrowhead = vee; style = solid; label = "src 0"; ]
    }

Attribute values: names, params and weight bindings are JSON (dot_syntax.to_json, safe inside a DOT
string), leaf data is base64, ne/nb are comma lists, flags `input|output|param|state`, graphc_view
`<id>@<byte offset>`. Fusion groups: a tensor attribute `fusion_group` (not in the IR yet) becomes a
`cluster_` subgraph around its members.
"""
from __future__ import annotations

import base64
import os
from collections import defaultdict

import numpy as np

from graphc.errors import ParseError
from graphc.ir import FLAG_NAMES, Graph, Tensor, role_of
from graphc.verify import verify

from .dot_syntax import quote_dot, to_json

VERSION = "1"

# graphc op -> ggml_op_symbol (GC); graphc-only ops get a readable call
SYMBOL = {
    "dup": "x", "add": "x+y", "add1": "x+y", "sub": "x-y", "mul": "x*y", "div": "x/y", "sqr": "x^2",
    "sqrt": "√x", "log": "log(x)", "sin": "sin(x)", "cos": "cos(x)", "sum": "Σx", "sum_rows": "Σx_k",
    "mean": "Σx/n", "argmax": "argmax(x)", "repeat": "repeat(x)", "concat": "concat(x, y)", "norm": "norm(x)",
    "rms_norm": "rms_norm(x)", "group_norm": "group_norm(x)", "l2_norm": "l2_norm(x)", "mul_mat": "X*Y",
    "out_prod": "X*Y", "scale": "x*v", "set": "y-\\>view(x)", "cpy": "x-\\>y", "cont": "cont(x)",
    "reshape": "reshape(x)", "view": "view(x)", "permute": "permute(x)", "transpose": "transpose(x)",
    "get_rows": "get_rows(x)", "set_rows": "set_rows(x)", "diag_mask_inf": "diag_mask_inf(x)",
    "diag_mask_zero": "diag_mask_zero(x)", "soft_max": "soft_max(x)", "rope": "rope(x)", "clamp": "clamp(x)",
    "pad": "pad(x)", "arange": "arange(start, stop, step)", "leaky_relu": "leaky_relu(x)",
    "flash_attn_ext": "flash_attn_ext(x)", "rwkv_wkv6": "rwkv_wkv6(k, v, r, tf, td, s)",
    "rwkv_wkv7": "rwkv_wkv7(r, w, k, v, a, b, s)", "unary": "unary(x)", "glu": "glu(x)", "custom": "custom(x)",
    "maximum": "max(x,y)", "minimum": "min(x,y)",
}
_RECORD_SPECIAL = set('{}|<>\\')


def _record_text(s: str) -> str:
    """Text shown inside a record label: record syntax characters escaped, newlines shown as \\n, and
    '"' shown as "'" (a DOT string cannot hold a backslash before a quote; the name itself is in graphc_name)."""
    out = []
    for c in s:
        if c == '"':
            out.append("'")
        elif c in _RECORD_SPECIAL:
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF:
            out.append("?")
        else:
            out.append(c)
    return "".join(out)


def _dims(ne: tuple[int, ...]) -> str:
    return f"[{ne[0]}, {ne[1]}]" if ne[2] == 1 and ne[3] == 1 else f"[{ne[0]}, {ne[1]}, {ne[2]}]"


def _flags(t: Tensor) -> str:
    return "|".join(name for flag, name in FLAG_NAMES.items() if t.flags & flag)


# fill colours by role (ggml's dump: yellow params, pink leafs, white nodes; graphc adds state and outputs)
_COLORS = {"input": "pink", "state": "orange", "param": "yellow", "constant": "pink", "output": "lightblue",
           "intermediate": "white"}


def _attrs(pairs: list[tuple[str, str]]) -> str:
    return " ".join(f"{k} = {quote_dot(v)};" for k, v in pairs)


def dumps(graph: Graph) -> str:
    verify(graph)
    ids: dict[int, str] = {id(t): f"l{i}" for i, t in enumerate(graph.leafs)}
    ids.update({id(t): f"n{i}" for i, t in enumerate(graph.nodes)})
    lines = ["digraph G {", "  newrank = true;", "  rankdir = TB;",
             f"  graphc_version = {quote_dot(VERSION)};", f"  graphc_graph = {quote_dot(to_json(graph.name))};"]
    for kind, tensors in (("node", graph.nodes), ("leaf", graph.leafs)):
        for i, t in enumerate(tensors):
            shown = f"{_record_text(t.name)} ({t.type.name})"
            if kind == "node":
                label = f"{shown}|{i} {_dims(t.ne)} | <x>{SYMBOL.get(t.op, t.op + '(x)')}"
            else:
                label = f"<x>{shown}|CONST {i} {_dims(t.ne)}"
            pairs = [("style", "filled"), ("fillcolor", _COLORS[role_of(t)]), ("shape", "record"), ("label", label),
                     ("graphc_kind", kind), ("graphc_index", str(i)), ("graphc_name", to_json(t.name)),
                     ("graphc_type", t.type.name), ("graphc_ne", ",".join(map(str, t.ne))),
                     ("graphc_nb", ",".join(map(str, t.nb)))]
            if t.flags:
                pairs.append(("graphc_flags", _flags(t)))
            if kind == "node":
                pairs += [("graphc_op", t.op), ("graphc_params", to_json(dict(t.params))),
                          ("graphc_src", ",".join("" if s is None else ids[id(s)] for s in t.src))]
                if t.view_src is not None:
                    pairs.append(("graphc_view", f"{ids[id(t.view_src)]}@{t.view_offs}"))
            if t.weight is not None:
                pairs.append(("graphc_weight", to_json({"file": t.weight.file, "tensor": t.weight.tensor})))
            if t.data is not None:
                raw = np.ascontiguousarray(t.data).view(np.uint8).tobytes()
                pairs.append(("graphc_data", base64.b64encode(raw).decode("ascii")))
            lines.append(f"  {quote_dot(ids[id(t)])} [ {_attrs(pairs)} ]")
    for t in graph.nodes:
        for j, s in enumerate(t.src):
            if s is not None:
                lines.append(f"  {quote_dot(ids[id(s)])} -> {quote_dot(ids[id(t)])} "
                             f"[ arrowhead = vee; style = solid; label = \"src {j}\"; ]")
    lines += _clusters(graph, ids)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _clusters(graph: Graph, ids: dict[int, str]) -> list[str]:
    """Hook for fusion: tensors sharing a `fusion_group` value are drawn inside one cluster."""
    groups: dict[str, list[Tensor]] = defaultdict(list)
    for t in graph.tensors():
        g = getattr(t, "fusion_group", None)
        if g is not None:
            groups[str(g)].append(t)
    out = []
    for k, (g, members) in enumerate(groups.items()):
        out.append(f"  subgraph {quote_dot(f'cluster_{k}')} {{ label = {quote_dot(_record_text(g))}; style = dashed; "
                   + " ".join(f"{quote_dot(ids[id(t)])};" for t in members) + " }")
    return out


def dump(graph: Graph, path: "str | os.PathLike[str]") -> None:
    text = dumps(graph)
    try:
        with open(os.fspath(path), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except UnicodeEncodeError as e:
        raise ParseError(f"cannot write a name as UTF-8: {e.reason}", os.fspath(path)) from None
