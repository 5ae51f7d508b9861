"""Read GraphViz .dot files: ggml_graph_dump_dot dumps of every era, and graphc's own .dot files.

A ggml dump prints per tensor only its name, type, [ne0, ne1(, ne2)] and the op's *symbol*, plus
src-slot edges. The rest is inferred where the shapes leave one answer (ADD vs ADD1, MUL_MAT vs
OUT_PROD, permute axes, concat dim, reshape ne3, ...), taken from naming conventions (`gate_silu` ->
silu) or from a hints file (docs/dot-hints.md). Nothing is guessed silently: every inference and
convention is a line of the report (load_with_report), and whatever stays open is ONE ParseError
listing every unresolved tensor with its line and candidates.

graphc's own .dot (written by dot_write.py, graph attribute graphc_version) carries every field as
graphc_* attributes and reads back losslessly.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from graphc import ops
from graphc.builder import GraphBuilder
from graphc.errors import GraphError, ParseError
from graphc.ir import FLAG_NAMES, MAX_DIMS, Flag, Graph, Tensor, WeightRef, contiguous_strides, new_tensor
from graphc.types import TYPES, get_type
from graphc.verify import verify

from .dot_hints import TENSOR_KEYS, Hints, load_hints
from .dot_syntax import DotGraph, DotNode, from_json, parse, read_text

MAX_TENSORS = 1 << 20
MAX_DIM = 1 << 40
MAX_LABEL = 4096
GRAPHC_VERSION = "1"

# --- ggml op symbols, all eras (ggml-reference §2.2 plus the 2023 ops before GGML_OP_UNARY) ----------
# symbol -> ggml op names that print it. Symbols are printed raw: CPY/SET keep their `\>` escape.
_SYMBOLS_TEXT = r"""
none NONE|x DUP|x+y ADD,ADD1|x[i]+y ADD_ID|view(x,nb,offset)+=y->x ACC|x-y SUB|x*y MUL|x/y DIV|x^2 SQR
√x SQRT|log(x) LOG|sin(x) SIN|cos(x) COS|Σx SUM|Σx_k SUM_ROWS|cumsum(x) CUMSUM|Σx/n MEAN|argmax(x) ARGMAX
count_equal(x) COUNT_EQUAL|repeat(x) REPEAT|repeat_back(x) REPEAT_BACK|concat(x, y) CONCAT|concat(x) CONCAT
silu_back(x) SILU_BACK|norm(x) NORM|rms_norm(x) RMS_NORM|rms_norm_back(x) RMS_NORM_BACK
group_norm(x) GROUP_NORM|l2_norm(x) L2_NORM|X*Y MUL_MAT,OUT_PROD|X[i]*Y MUL_MAT_ID|x*v SCALE
y-\>view(x) SET|y->view(x) SET|x-\>y CPY|x->y CPY|cont(x) CONT|reshape(x) RESHAPE|view(x) VIEW
permute(x) PERMUTE|transpose(x) TRANSPOSE|get_rows(x) GET_ROWS|get_rows_back(x) GET_ROWS_BACK
set_rows(x) SET_ROWS|diag(x) DIAG|diag_mask_inf(x) DIAG_MASK_INF|diag_mask_zero(x) DIAG_MASK_ZERO
soft_max(x) SOFT_MAX|soft_max_back(x) SOFT_MAX_BACK|rope(x) ROPE|rope_back(x) ROPE_BACK|clamp(x) CLAMP
alibi(x) ALIBI|conv_1d(x) CONV_1D|conv_2d(x) CONV_2D|conv_transpose_1d(x) CONV_TRANSPOSE_1D
conv_transpose_2d(x) CONV_TRANSPOSE_2D|im2col(x) IM2COL|pool_1d(x) POOL_1D|pool_2d(x) POOL_2D
upscale(x) UPSCALE|pad(x) PAD|pad_reflect_1d(x) PAD_REFLECT_1D|roll(x) ROLL|arange(start, stop, step) ARANGE
timestep_embedding(timesteps, dim, max_period) TIMESTEP_EMBEDDING|argsort(x) ARGSORT|top_k(x) TOP_K
leaky_relu(x) LEAKY_RELU|flash_attn(x) FLASH_ATTN|flash_ff(x) FLASH_FF|flash_attn_ext(x) FLASH_ATTN_EXT
flash_attn_back(x) FLASH_ATTN_BACK|ssm_conv(x) SSM_CONV|ssm_scan(x) SSM_SCAN|win_part(x) WIN_PART
win_unpart(x) WIN_UNPART|get_rel_pos(x) GET_REL_POS|add_rel_pos(x) ADD_REL_POS
rwkv_wkv6(k, v, r, tf, td, s) RWKV_WKV6|rwkv_wkv7(r, w, k, v, a, b, s) RWKV_WKV7
gated_linear_attn(k, v, q, gate, s) GATED_LINEAR_ATTN|unary(x) UNARY|glu(x) GLU
f(x) MAP_UNARY|f(x,y) MAP_BINARY|custom_f32(x) MAP_CUSTOM1_F32|custom_f32(x,y) MAP_CUSTOM2_F32
custom_f32(x,y,z) MAP_CUSTOM3_F32|custom(x) MAP_CUSTOM1,CUSTOM|custom(x,y) MAP_CUSTOM2|custom(x,y,z) MAP_CUSTOM3
map_custom(x) MAP_CUSTOM1|map_custom(x,y) MAP_CUSTOM2|map_custom(x,y,z) MAP_CUSTOM3
cross_entropy_loss(x,y) CROSS_ENTROPY_LOSS|cross_entropy_loss_back(x,y) CROSS_ENTROPY_LOSS_BACK
adamw(x) OPT_STEP_ADAMW|sgd(x) OPT_STEP_SGD
abs(x) ABS|sgn(x) SGN|-x NEG|step(x) STEP|tanh(x) TANH|elu(x) ELU|relu(x) RELU|gelu(x) GELU
gelu_quick(x) GELU_QUICK|silu(x) SILU
"""
SYMBOLS: dict[str, tuple[str, ...]] = {}
for _line in _SYMBOLS_TEXT.strip().splitlines():
    for _item in _line.split("|"):
        _sym, _, _names = _item.rpartition(" ")
        SYMBOLS[_sym] = tuple(_names.split(","))

# ggml op -> graphc op (and fixed params); ops missing here have no graphc equivalent
_PLAIN = ("DUP ADD ADD1 SUB MUL DIV SQR SQRT LOG SIN COS SUM SUM_ROWS MEAN ARGMAX REPEAT CONCAT NORM RMS_NORM "
          "GROUP_NORM L2_NORM MUL_MAT OUT_PROD SCALE SET CPY CONT RESHAPE VIEW PERMUTE TRANSPOSE GET_ROWS SET_ROWS "
          "DIAG_MASK_INF DIAG_MASK_ZERO SOFT_MAX ROPE CLAMP PAD ARANGE LEAKY_RELU FLASH_ATTN_EXT RWKV_WKV6 "
          "RWKV_WKV7 UNARY GLU").split()
GGML_TO_GRAPHC: dict[str, tuple[str, dict[str, Any]]] = {n: (n.lower(), {}) for n in _PLAIN}
for _n in ("ABS SGN NEG STEP TANH ELU RELU GELU GELU_QUICK SILU").split():   # 2023: own ops, later UNARY
    GGML_TO_GRAPHC[_n] = ("unary", {"op": _n.lower()})
for _n in ("MAP_UNARY MAP_BINARY MAP_CUSTOM1 MAP_CUSTOM2 MAP_CUSTOM3 MAP_CUSTOM1_F32 MAP_CUSTOM2_F32 "
           "MAP_CUSTOM3_F32 CUSTOM").split():
    GGML_TO_GRAPHC[_n] = ("custom", {})

_EDGE_OLD = {"x": 0, "y": 1}
_PADDED = {"soft_max", "rope", "flash_attn_ext"}     # built like ggml's *_ext calls: every slot, None if unused


def _n_dims(ne: tuple[int, ...]) -> int:
    return max([i + 1 for i in range(4) if ne[i] != 1] or [1])


class _Unresolved(Exception):
    """One tensor the dump and the hints do not pin down."""


@dataclass
class _Rec:
    """One tensor line of a ggml dump."""
    nid: str
    line: int
    kind: str                       # leaf | node
    index: int
    name: str | None
    type: str | None
    dims: tuple[int, ...]           # 2 or 3 printed sizes (ne3 never; leafs only ne0, ne1)
    sym: str | None = None
    grad: str | None = None
    values: list[str] | None = None
    scalar: str | None = None       # old 1-element leaf: its printed value
    color: str = ""
    srcs: dict[int, tuple[str, int]] = field(default_factory=dict)   # slot -> (source id, edge line)

    def where(self) -> str:
        nm = f" {self.name!r}" if self.name is not None else ""
        return f"line {self.line}: {self.kind} {self.index}{nm}"


# =====================================================================================
# entry points
# =====================================================================================

def load(path: "str | os.PathLike[str]", hints: Any = None, inputs: "Iterable[str] | None" = None,
         outputs: "Iterable[str] | None" = None) -> Graph:
    """Read a .dot file (ggml dump or graphc's own). hints: a hints file, a dict, or None for the
    sidecar `<path>.hints` when it exists. inputs / outputs (ggml dumps): the input leafs and output
    nodes by name; with inputs given, every other leaf without a role hint that is not state or an
    integer constant is a param (weights), not an input."""
    return load_with_report(path, hints, inputs, outputs)[0]


def load_with_report(path: "str | os.PathLike[str]", hints: Any = None, inputs: "Iterable[str] | None" = None,
                     outputs: "Iterable[str] | None" = None) -> tuple[Graph, list[str]]:
    """Like load, also returning what was inferred or taken by convention, one line each."""
    path = os.fspath(path)
    try:
        text = read_text(path)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    return loads_with_report(text, path, load_hints(hints, path), _stem(path), inputs, outputs)


def loads(text: str, file: str | None = None, hints: Any = None) -> Graph:
    return loads_with_report(text, file, hints)[0]


def loads_with_report(text: str, file: str | None = None, hints: Any = None, default_name: str = "",
                      inputs: "Iterable[str] | None" = None,
                      outputs: "Iterable[str] | None" = None) -> tuple[Graph, list[str]]:
    h = hints if isinstance(hints, Hints) else load_hints(hints, None)
    dg = parse(text, file)
    if "graphc_version" in dg.attrs:
        if inputs is not None or outputs is not None:
            raise ParseError("a .dot written by graphc records its inputs and outputs; inputs= and outputs= "
                             "are for ggml dumps", file)
        return _GraphcReader(dg, file).read(), []
    return _GgmlReader(dg, file, h, default_name, _names(inputs), _names(outputs)).read()


def _names(names: "Iterable[str] | None") -> list[str] | None:
    return None if names is None else [names] if isinstance(names, str) else [str(n) for n in names]


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".dot", ".gv"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


# =====================================================================================
# ggml dumps
# =====================================================================================

_DIMS = r"\[(?P<dims>-?[0-9]{1,20}(?:, -?[0-9]{1,20}){1,2})\]"
_TYPE = r"[A-Za-z0-9_]{1,16}"
_NODE_RE = re.compile(r"(?:(?:(?P<name>.*) \((?P<type>" + _TYPE + r")\)|\((?P<type2>" + _TYPE + r")\))\|)?"
                      r"(?P<index>[0-9]{1,9}) " + _DIMS + r" \| <x>(?P<sym>.*?)(?: \| <g>(?P<grad>.*))?", re.S)
_LEAF_RE = re.compile(r"<x>(?:(?:(?P<name>.*) \((?P<type>" + _TYPE + r")\)|\((?P<type2>" + _TYPE + r")\))\|)?"
                      r"CONST (?P<index>[0-9]{1,9}) " + _DIMS + r"(?: \| \((?P<values>[^()]*)\))?", re.S)
_SCALAR_RE = re.compile(r"<x>(?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|inf|nan|-?nan))", re.I)
_NAME_TOKEN = re.compile(r"[A-Za-z0-9]+")


class _GgmlReader:
    def __init__(self, dg: DotGraph, file: str | None, hints: Hints, default_name: str,
                 inputs: list[str] | None = None, outputs: list[str] | None = None):
        self.dg, self.file, self.h, self.default_name = dg, file, hints, default_name
        self.inputs, self.outputs = inputs, outputs        # roles named by the caller (None: inferred)
        self.report: list[str] = []
        self.issues: list[str] = []
        self.made: dict[str, Tensor] = {}          # dot id -> tensor (placeholders for unresolved nodes)
        self.line_of: dict[int, int] = {}
        self.b = GraphBuilder()

    def error(self, msg: str, line: int | None = None) -> ParseError:
        return ParseError(msg, self.file, line)

    # -- the whole graph -------------------------------------------------------------------
    def read(self) -> tuple[Graph, list[str]]:
        leafs, nodes = self.records()
        self.edges(leafs, nodes)
        if not self.dg.attrs.get("rankdir") and not nodes:
            raise self.error("no tensors: not a ggml_graph_dump_dot file")
        era = []
        if self.dg.attrs.get("rankdir", "").upper() == "LR":
            era.append("rankdir LR")
        if any(r.name is None for r in leafs + nodes):
            self.report.append("names are not printed (a dump from before June 2023): leafs are named leaf_<i>, "
                               "nodes node_<i> (ggml's own naming)")
        out_leafs = [self.leaf(r) for r in leafs]
        out_nodes: list[Tensor] = []
        for r in nodes:
            out_nodes.extend(self.node(r))
        unused = self.h.unused()
        if unused:
            self.issues.append(f"hints name tensors that are not in the dump: {', '.join(unused)}")
        if self.issues:
            raise ParseError(f"{len(self.issues)} tensor(s) could not be resolved from the dump"
                             f"{' and ' + self.h.file if self.h.file else ''}; add them to the hints file "
                             f"(docs/dot-hints.md):\n  " + "\n  ".join(self.issues), self.file,
                             _first_line(self.issues))
        self.roles(leafs, nodes, out_leafs, out_nodes)
        name = self.h.graph if self.h.graph is not None else self.default_name
        g = Graph(name, out_leafs, out_nodes)
        try:
            verify(g)
        except GraphError as e:
            line = next((self.line_of.get(id(t)) for t in g.tensors() if t.name == e.tensor), None)
            raise self.error(str(e), line) from None
        return g, self.report

    # -- tensor lines ----------------------------------------------------------------------
    def records(self) -> tuple[list[_Rec], list[_Rec]]:
        leafs: list[_Rec] = []
        nodes: list[_Rec] = []
        if len(self.dg.nodes) > MAX_TENSORS:
            raise self.error(f"more than {MAX_TENSORS} tensors")
        for dn in self.dg.nodes.values():
            if not dn.declared:
                raise self.error(f"edge names {dn.id!r}, which has no node line", dn.line)
            r = self.record(dn)
            if r.scalar is not None:
                r.index = len(leafs)          # its position: every leaf is printed, in order
            (leafs if r.kind == "leaf" else nodes).append(r)
        for what, recs in (("leaf", leafs), ("node", nodes)):
            last = -1
            for r in recs:
                if r.index <= last:
                    raise self.error(f"{what} index {r.index} after {what} {last}: the dump's order is broken", r.line)
                last = r.index
        return leafs, nodes

    def record(self, dn: DotNode) -> _Rec:
        label = dn.attrs.get("label")
        if label is None:
            raise self.error(f"node {dn.id!r} has no label", dn.line)
        if len(label) > MAX_LABEL:
            raise self.error(f"label longer than {MAX_LABEL} characters", dn.line)
        color = dn.attrs.get("fillcolor", "")
        m = _LEAF_RE.fullmatch(label)
        if m:
            r = _Rec(dn.id, dn.line, "leaf", int(m["index"]), m["name"], m["type"] or m["type2"],
                     self.dims(m["dims"], dn.line), color=color)
            if m["values"] is not None:
                r.values = [v.strip() for v in m["values"].split(",")]
            return r
        m = _SCALAR_RE.fullmatch(label)
        if m:   # May 2023 and earlier: a 1-element leaf prints its value instead of CONST
            return _Rec(dn.id, dn.line, "leaf", -1, None, None, (1, 1), scalar=m["value"], color=color)
        m = _NODE_RE.fullmatch(label)
        if m:
            return _Rec(dn.id, dn.line, "node", int(m["index"]), m["name"], m["type"] or m["type2"],
                        self.dims(m["dims"], dn.line), sym=m["sym"], grad=m["grad"], color=color)
        raise self.error(f"label {label[:60]!r} is not a ggml tensor label "
                         "('NAME (type)|i [ne0, ne1] | <x>SYMBOL' or '<x>NAME (type)|CONST i [ne0, ne1]')", dn.line)

    def dims(self, text: str, line: int) -> tuple[int, ...]:
        ds = tuple(int(x) for x in text.split(", "))
        if any(d < 0 or d > MAX_DIM for d in ds):
            raise self.error(f"dims [{text}] out of range (0..{MAX_DIM})", line)
        return ds

    def edges(self, leafs: list[_Rec], nodes: list[_Rec]) -> None:
        by_id = {r.nid: r for r in leafs + nodes}
        for e in self.dg.edges:
            dst, src = by_id.get(e.dst), by_id.get(e.src)
            if dst is None or src is None:
                raise self.error(f"edge {e.src!r} -> {e.dst!r} names an unknown node", e.line)
            label = e.attrs.get("label", "")
            m = re.fullmatch(r"(src|opt) ([0-9]{1,2})", label)
            if m:
                slot = int(m.group(2)) + (2 if m.group(1) == "opt" else 0)
            elif label in _EDGE_OLD:
                slot = _EDGE_OLD[label]
            else:
                raise self.error(f"edge label {label[:40]!r} is not a source slot ('src j', 'x', 'y', 'opt j')", e.line)
            if slot >= 10:
                raise self.error(f"source slot {slot} (ggml has 10)", e.line)
            if e.attrs.get("style") == "dashed" or e.src_port == "g" or e.dst_port == "g":
                self.issues.append(f"line {e.line}: edge from a gradient tensor: backward graphs cannot be "
                                   "rebuilt from a dump")
                continue
            if dst.kind == "leaf":
                raise self.error("an edge into a leaf: leafs have no sources", e.line)
            if slot in dst.srcs:
                raise self.error(f"{dst.kind} {dst.index} has two edges for source slot {slot}", e.line)
            dst.srcs[slot] = (src.nid, e.line)

    # -- leafs ------------------------------------------------------------------------------
    def leaf(self, r: _Rec) -> Tensor:
        hint = self.h.tensor("leaf", r.index, r.name)
        name = r.name if r.name is not None else f"leaf_{r.index}"
        tname = hint.get("type") or r.type or self.h.defaults.get("leaf_type")
        if tname is None:
            self.issues.append(f"{r.where()}: the dump prints no type; hint `type` (or [defaults] leaf_type); "
                               f"candidates: f32, f16, i32, q4_0, ...")
            tname = "f32"
        elif r.type is None:
            self.report.append(f"leaf {name!r}: type {tname} from the hints")
        ne = list(r.dims) + [1, 1]
        if "ne" in hint:
            ne = list(hint["ne"]) + [1] * (4 - len(hint["ne"]))
            if ne[:2] != list(r.dims[:2]):
                self.issues.append(f"{r.where()}: hinted ne {hint['ne']} does not start with the printed "
                                   f"{list(r.dims)}")
        elif "ne3" in hint:
            ne[3] = hint["ne3"]
        bad = set(hint) - {"role", "type", "ne", "ne3", "weight", "output"}
        if bad:
            self.issues.append(f"{r.where()}: hint key(s) {sorted(bad)} do not apply to a leaf")
        try:
            t = new_tensor(name, tname, ne)
        except (GraphError, ValueError) as e:
            self.issues.append(f"{r.where()}: {e}")
            t = new_tensor(name, "f32", [1])
        if r.scalar is not None:
            self.report.append(f"leaf {name!r}: 1-element leaf printing {r.scalar} (rounded; not used as data)")
        self.made[r.nid] = t
        self.line_of[id(t)] = r.line
        return t

    # -- nodes ------------------------------------------------------------------------------
    def node(self, r: _Rec) -> list[Tensor]:
        hint = dict(self.h.tensor("node", r.index, r.name))
        name = r.name if r.name is not None else f"node_{r.index}"
        n_slots = max(r.srcs) + 1 if r.srcs else 0
        srcs: list[Tensor | None] = [None] * n_slots
        for slot, (sid, _line) in r.srcs.items():
            s = self.made.get(sid)
            if s is None:
                self.issues.append(f"{r.where()}: source {slot} is a later node (the dump's order is not "
                                   "topological)")
                return [self.placeholder(r, name)]
            srcs[slot] = s
        try:
            made = self.resolve(r, name, srcs, hint)
        except _Unresolved as e:
            self.issues.append(f"{r.where()} ({r.sym}): {e}")
            return [self.placeholder(r, name)]
        for t in made:
            self.line_of[id(t)] = r.line
        self.made[r.nid] = made[-1]
        return made

    def placeholder(self, r: _Rec, name: str) -> Tensor:
        """Stands in for an unresolved node so later nodes can still be checked."""
        try:
            t = new_tensor(name, r.type or "f32", list(r.dims))
        except (GraphError, ValueError):
            t = new_tensor(name, "f32", [1])
        self.made[r.nid] = t
        return t

    def resolve(self, r: _Rec, name: str, srcs: list[Tensor | None], hint: dict) -> list[Tensor]:
        if r.sym is None or r.sym not in SYMBOLS:
            raise _Unresolved(f"unknown op symbol {r.sym!r}; hint `op` (a graphc op name)")
        ggml_ops = SYMBOLS[r.sym]
        if ggml_ops == ("NONE",):
            raise _Unresolved("a node without an op (a 2023 training param): hint role and rebuild it as a leaf")
        if r.grad is not None:
            self.report.append(f"{name!r}: its gradient ({r.grad}) is ignored")
        if "op" in hint:
            if hint["op"] not in ops.OPS or hint["op"] == "none":
                raise _Unresolved(f"hinted op {hint['op']!r} is not a graphc op")
            cands = [(hint["op"], {})]
        else:
            cands = []
            for gop in ggml_ops:
                if gop not in GGML_TO_GRAPHC:
                    raise _Unresolved(f"ggml op {gop} has no graphc equivalent; hint op = \"custom\" and fn = "
                                      "\"<registered custom op>\"")
                cands.append(GGML_TO_GRAPHC[gop])
        if r.type is not None and r.type not in TYPES and r.type.lower() not in {k.lower() for k in TYPES}:
            raise _Unresolved(f"unknown type {r.type!r}")
        fits: list[tuple[str, list[Tensor], list[str]]] = []
        why: list[str] = []
        for op, fixed in cands:
            try:
                options = self.param_options(op, fixed, r, name, srcs, hint)
            except _Unresolved as e:
                why.append(f"{op}: {e}")
                continue
            for params, decl, notes, use_srcs in options:
                try:
                    made = self.make(op, params, decl, r, name, use_srcs)
                except _Unresolved as e:
                    why.append(f"{op}{_fmt_params(params)}: {e}")
                    continue
                fits.append((op + _fmt_params(params), made, notes))
        if not fits:
            raise _Unresolved("; ".join(why) if why else "no op fits")
        if len(fits) > 1:
            ops_ = [f[0] for f in fits]
            if {o.split("(")[0] for o in ops_} == {"add", "add1"}:
                fits = [f for f in fits if f[0].startswith("add1")]
                fits[0][2].append("x+y with a 1-element b: add1 (add would compute the same)")
            else:
                raise _Unresolved(f"ambiguous, candidates: {', '.join(ops_)}; hint `op` or the params")
        label, made, notes = fits[0]
        for n in notes:
            self.report.append(f"{name!r}: {n}")
        return made

    def make(self, op: str, params: dict, decl: ops.Decl | None, r: _Rec, name: str, srcs: list) -> list[Tensor]:
        """Build the node(s) and check them against the printed type and dims."""
        if op in _PADDED and len(srcs) < len(ops.OPS[op].srcs):
            srcs = list(srcs) + [None] * (len(ops.OPS[op].srcs) - len(srcs))
        try:
            t = self.b.op(op, srcs, params, name, decl)
        except GraphError as e:
            raise _Unresolved(str(e).replace(f"tensor {name!r}: ", "")) from None
        except (ValueError, TypeError, ArithmeticError, KeyError, IndexError) as e:
            raise _Unresolved(f"{op}: {e}") from None
        out = [t]
        if r.type is not None and t.type.name.lower() != r.type.lower():
            raise _Unresolved(f"gives type {t.type.name}, the dump says {r.type}")
        if op == "cont" and tuple(t.ne[:len(r.dims)]) != r.dims:   # ggml_cont_Nd: cont + reshape in graphc
            t.name = f"{name} (cont)"
            decl2 = ops.Decl(None, self.full_ne(r, t.nelements, {}))
            t2 = self.b.op("reshape", [t], {}, name, decl2)
            self.check_dims(t2, r)
            self.report.append(f"{name!r}: cont with a new shape (ggml_cont_{len(r.dims)}d) = cont {t.name!r} "
                               "+ reshape")
            return out + [t2]
        self.check_dims(t, r)
        return out

    def check_dims(self, t: Tensor, r: _Rec) -> None:
        ne = t.ne
        if len(r.dims) == 2:
            ok = tuple(ne[:2]) == r.dims and ne[2] == 1 and ne[3] == 1
        else:
            ok = tuple(ne[:3]) == r.dims and not (ne[2] == 1 and ne[3] == 1)
        if not ok:
            shown = list(ne[:2]) if ne[2] == 1 and ne[3] == 1 else list(ne[:3])
            raise _Unresolved(f"gives {shown} (ne {list(ne)}), the dump says {list(r.dims)}")

    def full_ne(self, r: _Rec, count: int | None, hint: dict) -> tuple[int, int, int, int]:
        """The node's ne: printed dims; ne3 from the hint, or from the element count when known."""
        if len(r.dims) == 2:
            return (r.dims[0], r.dims[1], 1, 1)
        if "ne3" in hint:
            return (*r.dims, hint["ne3"])          # type: ignore[return-value]
        p = r.dims[0] * r.dims[1] * r.dims[2]
        if count is not None and p and count % p == 0:
            return (*r.dims, count // p)            # type: ignore[return-value]
        if count is None and r.dims[2] != 1:
            return (*r.dims, 1)                     # type: ignore[return-value]
        raise _Unresolved("ne3 is not printed and cannot be derived; hint `ne3`")

    # -- params per op ------------------------------------------------------------------------
    def param_options(self, op: str, fixed: dict, r: _Rec, name: str, srcs: list,
                      hint: dict) -> list[tuple[dict, ops.Decl | None, list[str], list[Tensor]]]:
        """Every params/decl choice the dump and hints allow for `op` (several only where the shapes
        must pick: permute axes, concat dim)."""
        d = ops.OPS[op]
        known = {p.name for p in d.params}
        given: dict[str, Any] = dict(self.h.ops.get(op, {}))
        given.update(hint.get("params", {}))
        for k, v in hint.items():
            if k not in TENSOR_KEYS:
                if k not in known:
                    raise _Unresolved(f"hint key {k!r} is not a parameter of {op} (it takes {sorted(known) or 'none'})")
                given[k] = v
        if op == "unary" and "unary" in hint:
            given["op"] = hint["unary"]
        if op == "glu" and "glu" in hint:
            given["op"] = hint["glu"]
        if op == "custom" and "fn" in hint:
            given["fn"] = hint["fn"]
        given.update(fixed)
        notes: list[str] = []
        a = srcs[0] if srcs else None
        need: list[str] = []

        def require(*names: str, why: str = "") -> None:
            for n in names:
                if n not in given:
                    need.append(n)
            if need:
                raise _Unresolved(f"needs {', '.join(need)} (not in the dump{why}); hint them")

        def default(n: str, v: Any, why: str) -> None:
            if n not in given:
                given[n] = v
                notes.append(f"{n} = {v} ({why})")

        decl = None
        if op == "unary" and "op" not in given:
            given["op"] = self.from_name(name, list(ops.UNARY_OPS), "unary op", notes)
        elif op == "glu" and "op" not in given:
            given["op"] = self.from_name(name, list(ops.GLU_OPS), "glu op", notes)
            default("swapped", False, "not printed; ggml_<glu> without _swapped")
        elif op == "scale":
            require("s")
            default("b", 0.0, "no bias: ggml_scale")
        elif op in ("norm", "rms_norm", "l2_norm"):
            require("eps")
        elif op == "group_norm":
            require("n_groups", "eps")
        elif op in ("clamp",):
            require("min", "max")
        elif op == "leaky_relu":
            require("negative_slope")
        elif op in ("diag_mask_inf", "diag_mask_zero"):
            require("n_past")
        elif op == "soft_max":
            if len(srcs) > 1 and srcs[1] is not None:
                require("scale", why=": a soft_max with a mask is ggml_soft_max_ext")
                default("max_bias", 0.0, "no ALiBi")
            else:
                default("scale", 1.0, "no mask: ggml_soft_max")
                default("max_bias", 0.0, "no mask: ggml_soft_max")
        elif op == "rope":
            if isinstance(given.get("mode"), str):
                if given["mode"] not in ops.ROPE_MODES:
                    raise _Unresolved(f"rope mode {given['mode']!r}: one of {', '.join(ops.ROPE_MODES)} or a number")
                given["mode"] = ops.ROPE_MODES[given["mode"]]
            require("n_dims", "mode", "freq_base")
            for p in d.params:
                if p.name not in given:
                    default(p.name, p.default, "ggml_rope_ext's usual value")
        elif op == "flash_attn_ext":
            require("scale")
            default("max_bias", 0.0, "no ALiBi")
            default("softcap", 0.0, "no softcap")
        elif op == "set":
            require("nb1", "nb2", "nb3", "offset")
        elif op == "arange":
            require("start", "stop", "step")
        elif op == "pad":
            if "lp" not in given and "rp" not in given:
                require("lp")
            if a is not None:
                full = self.full_ne(r, None, hint) if len(r.dims) == 2 or r.dims[2] != 1 else None
                if full is not None:
                    if "lp" in given and "rp" not in given:
                        given["rp"] = tuple(full[i] - a.ne[i] - given["lp"][i] for i in range(4))
                    elif "rp" in given and "lp" not in given:
                        given["lp"] = tuple(full[i] - a.ne[i] - given["rp"][i] for i in range(4))
        elif op == "custom":
            require("fn")
            t = get_type(r.type) if r.type else (a.type if a is not None else None)
            if t is None:
                raise _Unresolved("custom op without a printed type or sources; hint `type`")
            decl = ops.Decl(t, self.full_ne(r, None, hint))
        elif op == "reshape":
            if a is None:
                raise _Unresolved("reshape without a source")
            decl = ops.Decl(None, self.full_ne(r, a.nelements, hint))
        elif op == "view":
            return [self.view_option(r, a, given, hint, notes) + (srcs,)]
        elif op == "repeat":
            if a is None:
                raise _Unresolved("repeat without a source")
            if len(r.dims) == 3 and "ne3" not in hint:   # like ggml, graphc's repeat keeps only a
                target = (*r.dims, a.ne[3])
                notes.append(f"ne3 = {a.ne[3]} (not printed; taken from the source)")
            else:
                target = self.full_ne(r, None, hint)
            return [(given, ops.Decl(None, target), notes, srcs[:1])]
        elif op == "permute" and "axes" not in given:
            return self.permute_options(r, a, given, notes, srcs)
        elif op == "concat" and "dim" not in given:
            opts = []
            for dim in range(MAX_DIMS):
                opts.append(({**given, "dim": dim}, None,
                             notes + [f"dim {dim} (the only one that fits the shapes)"], srcs))
            return opts
        return [(given, decl, notes, srcs)]

    def from_name(self, name: str, choices: list[str], what: str, notes: list[str]) -> str:
        """llama.cpp names say the activation (`ffn_silu`, `gate_gelu`): use it when exactly one fits."""
        toks = {t.lower() for t in _NAME_TOKEN.findall(name)}
        words = set(re.findall(r"[a-z0-9]+(?:_[a-z0-9]+)*", name.lower()))
        hits = sorted({c for c in choices if c in toks or c in words})
        if len(hits) > 1:   # prefer the longest (gelu_quick over gelu)
            longest = [c for c in hits if not any(o != c and c in o for o in hits)]
            hits = longest
        if len(hits) == 1:
            notes.append(f"{what} {hits[0]} from the name {name!r}")
            return hits[0]
        raise _Unresolved(f"the {what} is not printed; hint `{what.split()[0]}` (candidates: "
                          f"{', '.join(hits or choices)})")

    def permute_options(self, r: _Rec, a: Tensor | None, given: dict, notes: list[str], srcs: list) -> list:
        import itertools
        if a is None:
            raise _Unresolved("permute without a source")
        fits = []
        for axes in itertools.permutations(range(4)):
            ne = [0] * 4
            for i, ax in enumerate(axes):
                ne[ax] = a.ne[i]
            try:
                self.check_dims(Tensor("", a.type, tuple(ne), a.nb), r)      # type: ignore[arg-type]
            except _Unresolved:
                continue
            fits.append(axes)
        if not fits:
            raise _Unresolved(f"no permutation of {list(a.ne)} gives {list(r.dims)}")
        # axes that differ only in where size-1 dims go compute the same: keep those in place if possible
        def key(ax):
            return tuple(ax[i] for i in range(4) if a.ne[i] != 1)
        groups = {key(ax) for ax in fits}
        if len(groups) > 1:
            raise _Unresolved(f"ambiguous permute axes: {', '.join(str(list(ax)) for ax in fits)}; hint `axes`")
        best = min(fits, key=lambda ax: (sum(ax[i] != i for i in range(4) if a.ne[i] == 1), ax))
        why = "the only axes that fit the shapes" if len(fits) == 1 else \
            f"fits the shapes; {len(fits)} axes differ only in size-1 dims"
        return [({**given, "axes": best}, None, notes + [f"axes {list(best)} ({why})"], srcs)]

    def view_option(self, r: _Rec, a: Tensor | None, given: dict, hint: dict, notes: list[str]):
        if a is None:
            raise _Unresolved("view without a source")
        ne = self.full_ne(r, None, {**hint, **({} if len(r.dims) == 2 or "ne3" in hint else {"ne3": 1})})
        if len(r.dims) == 3 and "ne3" not in hint:
            notes.append("ne3 = 1 (not printed)")
        missing = [k for k in ("offset",) if k not in given]
        nb_h = hint.get("nb")
        one_d = ne[1] == ne[2] == ne[3] == 1
        if nb_h is None and not one_d:
            missing.append("nb")
        if missing:
            raise _Unresolved(f"needs {', '.join(missing)} (a view's offset and strides are not in the dump); "
                              "hint them")
        if nb_h is None or nb_h == "contiguous":
            nb = contiguous_strides(a.type, ne)
            nb = (a.nb[0], *nb[1:])
        elif nb_h == "source":     # ggml_view_Nd(a, ..., a->nb[1], ..., offset): the rest filled
            nb = self.fill_nb(a, ne, list(a.nb[1:max(2, _n_dims(ne))]))
        elif len(nb_h) == 4:
            nb = tuple(nb_h)
        else:
            nb = self.fill_nb(a, ne, list(nb_h))
        return ({"offset": given["offset"]}, ops.Decl(None, ne, nb), notes)

    @staticmethod
    def fill_nb(a: Tensor, ne: tuple[int, ...], given: list[int]) -> tuple[int, int, int, int]:
        """nb0 from the source, nb1.. as given, the rest filled from the last one as ggml_view_Nd does."""
        nb = [a.nb[0], *given]
        row = a.nb[0] * (ne[0] // a.type.blck)
        while len(nb) < 4:
            nb.append(row if len(nb) == 1 else nb[-1] * ne[len(nb) - 1])
        return tuple(nb)   # type: ignore[return-value]

    # -- roles ---------------------------------------------------------------------------------
    def roles(self, leafs: list[_Rec], nodes: list[_Rec], out_leafs: list[Tensor], out_nodes: list[Tensor]) -> None:
        written = {id(n.view_src) for n in out_nodes if n.op in ("cpy", "set_rows") and n.view_src is not None}
        consumed = {id(s) for n in out_nodes for s in n.src if s is not None}
        by: dict[str, list[str]] = {}
        self.check_named(out_leafs, out_nodes)
        for r, t in zip(leafs, out_leafs):
            hint = self.h.tensor("leaf", r.index, r.name)
            role = hint.get("role")
            if role is not None:
                roles = [role] if isinstance(role, str) else role
                for x in roles:
                    t.flags |= {"input": Flag.INPUT, "output": Flag.OUTPUT, "param": Flag.PARAM,
                                "state": Flag.STATE, "none": Flag.NONE}[x]
                if "none" in roles and r.values is not None:
                    self.const_data(t, r, by)
            elif "weight" in hint:
                t.flags |= Flag.PARAM               # bound to a weights file below
            elif id(t) in written:
                t.flags |= Flag.STATE
                by.setdefault("state (a cpy/set_rows writes into it)", []).append(t.name)
            elif self.inputs is not None and t.name in self.inputs:
                t.flags |= Flag.INPUT
                by.setdefault("inputs (named in inputs=)", []).append(t.name)
            elif self.inputs is not None and not (r.values is not None and self.const_data(t, r, by)):
                t.flags |= Flag.PARAM
                by.setdefault("params (not named in inputs=)", []).append(t.name)
            elif self.inputs is not None:
                pass                                # an integer constant (const_data bound it)
            elif t.type.is_quantized:
                t.flags |= Flag.PARAM
                by.setdefault("params (quantized: weights)", []).append(t.name)
            elif r.values is not None and self.const_data(t, r, by):
                pass
            else:
                t.flags |= Flag.INPUT
                by.setdefault("inputs (no role hint; leaf data is not in a dump)", []).append(t.name)
            if hint.get("output"):
                t.flags |= Flag.OUTPUT
            if "weight" in hint:
                w = hint["weight"]
                t.weight = (WeightRef(w, t.name) if isinstance(w, str)
                            else WeightRef(w["file"], w.get("tensor") or t.name))
                t.flags |= Flag.PARAM
        for what, names in by.items():
            self.report.append(f"leafs taken as {what}: {', '.join(map(repr, names))}")
        outs = []
        rec_of = {id(self.made[r.nid]): r for r in nodes if r.nid in self.made}
        for t in out_nodes:
            r = rec_of.get(id(t))
            hint = self.h.tensor("node", r.index, r.name) if r is not None else {}
            role = hint.get("role")
            roles = [] if role is None else ([role] if isinstance(role, str) else role)
            bad = [x for x in roles if x not in ("output", "none")]
            if bad:
                raise self.error(f"node {t.name!r}: role {bad[0]} is for leafs only", r.line if r else None)
            want = hint.get("output", True if "output" in roles else (False if "none" in roles else None))
            if want is None and self.outputs is not None:
                want = t.name in self.outputs
            if want is None:
                want = id(t) not in consumed and r is not None
                if want:
                    outs.append(t.name)
            if want:
                t.flags |= Flag.OUTPUT
        if outs:
            self.report.append(f"outputs (nodes nothing consumes): {', '.join(map(repr, outs))}")

    def check_named(self, out_leafs: list[Tensor], out_nodes: list[Tensor]) -> None:
        """Names given as inputs= must be leafs of the dump, names given as outputs= nodes."""
        leaf_names, node_names = {t.name for t in out_leafs}, {t.name for t in out_nodes}
        for what, names, want, other in (("inputs", self.inputs, leaf_names, node_names),
                                         ("outputs", self.outputs, node_names, leaf_names)):
            for nm in names or ():
                if nm not in want:
                    kind = ("a leaf" if what == "outputs" else "a node") if nm in other else None
                    raise self.error(f"{what} must be {'leafs' if what == 'inputs' else 'nodes'}; {nm!r} is {kind}"
                                     if kind else f"the dump has no tensor named {nm!r}")

    def const_data(self, t: Tensor, r: _Rec, by: dict) -> bool:
        """Printed values are exact only for integer leafs (`%d`); those become constant data."""
        if not t.type.is_int or r.values is None or len(r.values) != t.nelements:
            return False
        try:
            vals = np.array([int(v) for v in r.values], dtype=t.type.np_dtype)
        except (ValueError, OverflowError):
            return False
        t.data = vals.view(np.uint8).copy()
        by.setdefault("constants (integer values printed in the dump)", []).append(t.name)
        return True


def _fmt_params(p: dict) -> str:
    keep = {k: v for k, v in p.items() if k in ("axes", "dim", "op")}
    if not keep:
        return ""
    return "(" + ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in keep.items()) + ")"


def _first_line(issues: list[str]) -> int | None:
    for s in issues:
        m = re.match(r"line ([0-9]+):", s)
        if m:
            return int(m.group(1))
    return None


# =====================================================================================
# graphc's own .dot
# =====================================================================================

_FLAG_BY_NAME = {name: flag for flag, name in FLAG_NAMES.items()}


class _GraphcReader:
    def __init__(self, dg: DotGraph, file: str | None):
        self.dg, self.file = dg, file

    def error(self, msg: str, line: int | None = None) -> ParseError:
        return ParseError(msg, self.file, line)

    def json(self, dn: DotNode, key: str, default: Any = None) -> Any:
        if key not in dn.attrs:
            return default
        try:
            return from_json(dn.attrs[key])
        except (ValueError, RecursionError) as e:
            raise self.error(f"{key}: bad value ({str(e)[:80]})", dn.line) from None

    def ints(self, dn: DotNode, key: str) -> tuple[int, int, int, int]:
        text = dn.attrs.get(key)
        if text is None or not re.fullmatch(r"[0-9]{1,19}(,[0-9]{1,19}){3}", text):
            raise self.error(f"{key} must be 4 comma-separated sizes, got {str(text)[:40]!r}", dn.line)
        v = tuple(int(x) for x in text.split(","))
        if any(x >= 1 << 62 for x in v):
            raise self.error(f"{key} {list(v)} out of range", dn.line)
        return v   # type: ignore[return-value]

    def read(self) -> Graph:
        if self.dg.attrs["graphc_version"] != GRAPHC_VERSION:
            raise self.error(f"graphc .dot version {self.dg.attrs['graphc_version'][:20]!r}; "
                             f"this graphc reads {GRAPHC_VERSION}")
        name = self.dg.attrs.get("graphc_graph", '""')
        try:
            gname = from_json(name)
        except ValueError:
            gname = None
        if not isinstance(gname, str):
            raise self.error("graphc_graph must be a JSON string")
        leafs: dict[int, DotNode] = {}
        nodes: dict[int, DotNode] = {}
        for dn in self.dg.nodes.values():
            kind = dn.attrs.get("graphc_kind")
            if kind not in ("leaf", "node"):
                raise self.error(f"node {dn.id[:40]!r}: graphc_kind must be leaf or node", dn.line)
            idx = dn.attrs.get("graphc_index", "")
            if not re.fullmatch(r"[0-9]{1,9}", idx):
                raise self.error("graphc_index must be a number", dn.line)
            table = leafs if kind == "leaf" else nodes
            if int(idx) in table:
                raise self.error(f"{kind} {idx} appears twice", dn.line)
            table[int(idx)] = dn
        for what, table in (("leaf", leafs), ("node", nodes)):
            if sorted(table) != list(range(len(table))):
                raise self.error(f"{what} indices must be 0..{len(table) - 1}")
        made: dict[str, Tensor] = {}
        out_leafs = [self.leaf(leafs[i], made) for i in range(len(leafs))]
        out_nodes = [self.node(nodes[i], made) for i in range(len(nodes))]
        self.check_edges(made)
        g = Graph(gname, out_leafs, out_nodes)
        try:
            verify(g)
        except GraphError as e:
            raise self.error(str(e)) from None
        return g

    def common(self, dn: DotNode) -> tuple[str, Any, tuple, tuple, Flag]:
        name = self.json(dn, "graphc_name")
        if not isinstance(name, str):
            raise self.error("graphc_name must be a JSON string", dn.line)
        try:
            type_ = get_type(dn.attrs.get("graphc_type", ""))
        except ValueError as e:
            raise self.error(str(e), dn.line) from None
        ne, nb = self.ints(dn, "graphc_ne"), self.ints(dn, "graphc_nb")
        flags = Flag.NONE
        for f in filter(None, dn.attrs.get("graphc_flags", "").split("|")):
            if f not in _FLAG_BY_NAME:
                raise self.error(f"unknown flag {f[:20]!r}", dn.line)
            flags |= _FLAG_BY_NAME[f]
        return name, type_, ne, nb, flags

    def leaf(self, dn: DotNode, made: dict[str, Tensor]) -> Tensor:
        name, type_, ne, nb, flags = self.common(dn)
        try:
            t = new_tensor(name, type_, ne)
        except GraphError as e:
            raise self.error(str(e), dn.line) from None
        if t.nb != nb:
            raise self.error(f"a leaf is contiguous: nb {list(t.nb)}, graphc_nb says {list(nb)}", dn.line)
        t.flags = flags
        w = self.json(dn, "graphc_weight")
        if w is not None:
            if not (isinstance(w, dict) and set(w) == {"file", "tensor"}
                    and all(isinstance(v, str) for v in w.values())):
                raise self.error('graphc_weight must be {"file": ..., "tensor": ...}', dn.line)
            t.weight = WeightRef(w["file"], w["tensor"])
        data = dn.attrs.get("graphc_data")
        if data is not None:
            if len(data) > 4 * ((t.nbytes + 2) // 3) + 4:
                raise self.error(f"graphc_data is longer than the tensor's {t.nbytes} bytes", dn.line)
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise self.error("graphc_data is not valid base64", dn.line) from None
            if len(raw) != t.nbytes:
                raise self.error(f"graphc_data holds {len(raw)} bytes, the tensor needs {t.nbytes}", dn.line)
            t.data = np.frombuffer(raw, np.uint8).copy()
        made[dn.id] = t
        return t

    def node(self, dn: DotNode, made: dict[str, Tensor]) -> Tensor:
        name, type_, ne, nb, flags = self.common(dn)
        op = dn.attrs.get("graphc_op", "")
        if op not in ops.OPS or op == "none":
            raise self.error(f"unknown graphc_op {op[:30]!r}", dn.line)
        params = self.json(dn, "graphc_params", {})
        if not isinstance(params, dict):
            raise self.error("graphc_params must be a JSON object", dn.line)
        src_ids = dn.attrs.get("graphc_src", "")
        srcs: list[Tensor | None] = []
        for sid in (src_ids.split(",") if src_ids else []):
            if sid == "":
                srcs.append(None)
            elif sid in made:
                srcs.append(made[sid])
            else:
                raise self.error(f"graphc_src names {sid[:30]!r}, which is not an earlier tensor", dn.line)
        d = ops.OPS[op]
        decl = ops.Decl(type_, ne, nb) if d.declared else None
        try:
            t = GraphBuilder().op(op, srcs, params, name, decl)
        except GraphError as e:
            raise self.error(str(e), dn.line) from None
        except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as e:
            raise self.error(f"{op}: {e}", dn.line) from None
        t.name = name
        if (t.type, t.ne, t.nb) != (type_, ne, nb):
            raise self.error(f"{op} gives {t.type.name} ne {list(t.ne)} nb {list(t.nb)}, the file says "
                             f"{type_.name} ne {list(ne)} nb {list(nb)}", dn.line)
        view = dn.attrs.get("graphc_view")
        if view is not None:
            vid, _, offs = view.rpartition("@")
            if t.view_src is None or made.get(vid) is not t.view_src or str(t.view_offs) != offs:
                raise self.error(f"graphc_view {view[:40]!r} does not match what {op} views", dn.line)
        elif t.view_src is not None:
            raise self.error(f"{op} makes a view but graphc_view is missing", dn.line)
        t.flags = flags
        t._dot_line = dn.line   # type: ignore[attr-defined]
        made[dn.id] = t
        return t

    def check_edges(self, made: dict[str, Tensor]) -> None:
        """Edges are drawn for the eye; they must agree with graphc_src."""
        want: dict[tuple[int, int], int] = {}
        for dn in self.dg.nodes.values():
            t = made[dn.id]
            for j, s in enumerate(t.src):
                if s is not None:
                    want[(id(t), j)] = id(s)
        seen = set()
        for e in self.dg.edges:
            m = re.fullmatch(r"src ([0-9]{1,2})", e.attrs.get("label", ""))
            if m is None or e.src not in made or e.dst not in made:
                raise self.error("edge does not name two tensors and a 'src j' slot", e.line)
            key = (id(made[e.dst]), int(m.group(1)))
            if want.get(key) != id(made[e.src]) or key in seen:
                raise self.error("edge does not match graphc_src", e.line)
            seen.add(key)
        if len(seen) != len(want):
            raise self.error(f"{len(want) - len(seen)} source(s) in graphc_src have no edge")
