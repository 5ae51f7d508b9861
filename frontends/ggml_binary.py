"""Reader for ggml's binary graph export (`ggml_graph_export`, file versions 1 and 2; ggml-reference §1).

The file does not say which ggml build wrote it, and both the record layout and the op/type numbering
changed many times (frontends/ggml_enums.py holds every era since 2023-07-23). So the reader tries each
era whose layout has the header's version: it walks the records with that era's sizes and type table
(checking every count, dim, type, op and source index against the file before using it) and keeps the
eras whose records end exactly at the end of the file. It then rebuilds the nodes through
GraphBuilder.op with each remaining era's op table and keeps the eras under which every rebuilt node
has the file's type, ne and nb. When several eras fit but read the bytes differently (for example unary
id 8 is GELU from 2024-05-01 and GELU_QUICK before), the newest era's reading wins and the others are
listed in info.alternatives; `era=<commit>` picks one, `strict=True` refuses instead. Eras before
2023-07-23 (no op_params in the file) are not known and such files are refused.

Roles (the file has flags only in version 2: INPUT 1, OUTPUT 2, PARAM 4):
- a leaf that a cpy / set_rows node writes into (the root of its destination) is STATE, e.g. a KV cache;
- a leaf flagged INPUT (v2) or named in `inputs=` is an INPUT; its bytes in the file stay available as
  info.leaf_data[name] but are not bound;
- every other leaf is a PARAM whose data is bound, without copying, to its bytes in the file;
- outputs: nodes flagged OUTPUT (v2), else the names in `outputs=`, else (v1, or a v2 file without output
  flags) the last node, as llama.cpp's metal example read gf.nodes[n_nodes-1], plus every node that no
  other node uses.
Leaf data are uint8 views of one read-only np.memmap of the file (info.mapping).

Views are rebuilt as ggml's import did: RESHAPE, VIEW, TRANSPOSE and PERMUTE alias src0, and CPY (and
SET_ROWS) return a view of the destination. ggml's REPEAT keeps only its source; graphc's needs a tensor of
the target shape, so the first earlier tensor of the same type and ne is used (shape only), else a
zero-stride zero constant `<name>_shape` appended to the leafs.
"""
from __future__ import annotations

import os
import warnings
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from graphc import ops
from graphc.builder import GraphBuilder
from graphc.errors import EraWarning, GraphError, ParseError
from graphc.ir import MAX_DIMS, Flag, Graph, Tensor, nbytes, new_tensor
from graphc.types import TYPES, GGMLType
from graphc.verify import MAX_ELEMENTS, verify

from .ggml_enums import ERAS, Era, Layout, era_index

MAGIC = 0x67676D6C
HEADER = 24
MAX_BYTES_PER_TENSOR = 1 << 46   # sane bound on one node's nbytes (nodes carry no data, but compilers allocate them)
MAX_STRIDE = 1 << 48

# op semantics that changed inside the export years (index of the first era that has the change)
_ROPE_YARN = era_index("ff904332")        # op_params grew to 64 bytes with YaRN's rope layout
_CONCAT_DIM = era_index("1a815669")       # ggml_concat(a, b, dim) appeared inside this era (2024-05-28)
_FA_SOFTCAP = era_index("879dcb84")       # flash_attn_ext logit_softcap appeared inside this era (2024-08-24)
_ACTIVATION_OPS = {"ABS", "SGN", "NEG", "STEP", "TANH", "ELU", "RELU", "GELU", "GELU_QUICK", "SILU"}
_SIMPLE = {"DUP": "dup", "ADD": "add", "ADD1": "add1", "SUB": "sub", "MUL": "mul", "DIV": "div", "SQR": "sqr",
           "SQRT": "sqrt", "LOG": "log", "SIN": "sin", "COS": "cos", "SUM": "sum", "SUM_ROWS": "sum_rows",
           "MEAN": "mean", "ARGMAX": "argmax", "CONT": "cont", "TRANSPOSE": "transpose", "GET_ROWS": "get_rows",
           "CPY": "cpy", "OUT_PROD": "out_prod", "SET_ROWS": "set_rows", "RWKV_WKV": "rwkv_wkv6",
           "RWKV_WKV6": "rwkv_wkv6"}
_ALL_SLOTS = ("soft_max", "rope", "flash_attn_ext")
_WRITES = ("cpy", "set_rows")     # ops whose result is their destination's memory


@dataclass
class Record:
    kind: str                     # "leaf" | "node"
    index: int
    offset: int                   # byte offset of the record in the file
    type: GGMLType
    op_id: int
    flags: int
    ne: tuple[int, int, int, int]
    nb: tuple[int, int, int, int]
    name: str
    op_params: bytes
    src: tuple[int, ...] = ()     # -1 | leaf index | n_leafs + node index (normalised)
    data: tuple[int, int] | None = None   # (offset, length) of the data after the record


@dataclass
class LoadInfo:
    path: str
    version: int
    layout: str                   # e.g. "v1 200/240"
    era: str                      # the newest matching era, e.g. "ggml e5c233e5 (2024-10-03..2024-11-01, v2 204/244)"
    eras: list[str]               # every era the file is consistent with (all give the same graph)
    n_leafs: int
    n_nodes: int
    size_eval: int
    mapping: np.ndarray           # read-only np.memmap of the whole file
    leaf_data: dict[str, np.ndarray] = field(default_factory=dict)   # every leaf's bytes (views of mapping)
    # other eras that also fit the bytes but read them differently (an older enum numbering), each
    # "commits: the first difference"; the newest reading wins unless strict=True
    alternatives: list[str] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, offset: int, message: str, progress: int = 0):
        super().__init__(message)
        self.offset, self.message, self.progress = offset, message, progress


# --- public API ------------------------------------------------------------------------------

def load(path: "str | os.PathLike[str]", inputs: Iterable[str] = (), outputs: Iterable[str] | None = None,
         era: str | None = None, strict: bool = False) -> Graph:
    """Read a ggml graph export. `inputs` / `outputs`: tensor names (the roles v1 files do not record);
    `era`: a ggml commit prefix from frontends.ggml_enums, for a file that fits several eras; `strict`:
    refuse such a file instead of taking the newest era's reading."""
    return load_with_info(path, inputs, outputs, era, strict)[0]


def load_with_info(path: "str | os.PathLike[str]", inputs: Iterable[str] = (),
                   outputs: Iterable[str] | None = None, era: str | None = None,
                   strict: bool = False) -> tuple[Graph, LoadInfo]:
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size < HEADER:
            raise ParseError(f"{size} bytes is too short for the {HEADER}-byte ggml export header", path, offset=size)
        mm = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    return _Reader(path, mm, set(inputs), None if outputs is None else list(outputs), era, strict).run()


# --- reading ---------------------------------------------------------------------------------

class _Reader:
    def __init__(self, path: str, mm: np.ndarray, inputs: set[str], outputs: list[str] | None, era: str | None,
                 strict: bool):
        self.path, self.mm, self.inputs, self.outputs, self.era_hint = path, mm, inputs, outputs, era
        self.strict = strict
        self.buf = memoryview(mm)
        self.size = len(mm)

    def fail(self, offset: int | None, message: str) -> ParseError:
        return ParseError(message, self.path, offset=offset)

    def run(self) -> tuple[Graph, LoadInfo]:
        magic, version, n_leafs, n_nodes, size_eval = struct.unpack_from("<IIIIQ", self.buf, 0)
        if magic != MAGIC:
            raise self.fail(0, f"not a ggml graph export (magic {magic:#010x}, expected {MAGIC:#010x})")
        if n_nodes == 0:
            raise self.fail(12, "the graph has no nodes (nothing to compute)")
        eras = [e for e in ERAS if e.layout.version == version]
        if self.era_hint is not None:
            eras = [e for e in eras if e.commit.startswith(self.era_hint.lower())]
            if not eras:
                raise self.fail(4, f"no known ggml era {self.era_hint!r} with file version {version}")
        if not eras:
            raise self.fail(4, f"file version {version} is not one ggml wrote (1 or 2)")
        # the records can never outnumber what the file could hold
        smallest = min(e.layout.leaf_bytes for e in eras)
        if n_leafs + n_nodes > (self.size - HEADER) // smallest:
            raise self.fail(8, f"header claims {n_leafs} leafs and {n_nodes} nodes, more than {self.size} bytes "
                               "can hold")
        walked: list[tuple[list[Era], list[Record]]] = []
        best: _Bad | None = None
        groups: dict[tuple[Layout, str], list[Era]] = {}
        for e in eras:
            groups.setdefault((e.layout, e.types_key), []).append(e)
        for (layout, _), members in groups.items():     # oldest first: on a tie the newest layout's error wins
            try:
                walked.append((members, self.walk(layout, members[-1], n_leafs, n_nodes,
                                                  max(len(e.ops) for e in members))))
            except _Bad as b:
                best = b if best is None or b.progress >= best.progress else best
        if not walked:
            assert best is not None
            names = ", ".join(sorted({lay.describe() for lay, _ in groups}))
            raise self.fail(best.offset, f"{best.message} (no known layout fits; tried {names})")
        names = {r.name for r in walked[0][1]}        # roles asked for must name tensors of the file
        for nm in sorted(self.inputs) + list(self.outputs or []):
            if nm not in names:
                raise self.fail(HEADER, f"the file has no tensor named {nm!r}")
        leaf_names = {r.name for r in walked[0][1] if r.kind == "leaf"}
        for nm in sorted(self.inputs - leaf_names):
            raise self.fail(HEADER, f"inputs must be leafs; {nm!r} is a node (computed by the graph)")
        node_names = {r.name for r in walked[0][1] if r.kind == "node"}
        for nm in self.outputs or []:
            if nm not in node_names:
                raise self.fail(HEADER, f"outputs must be nodes; {nm!r} is a leaf")
        results: dict[tuple, tuple[Graph, list[np.ndarray], list[Era]]] = {}
        best = unknown_op = None
        for members, recs in walked:
            tried: dict[tuple, Any] = {}
            for e in members:
                # the records were checked with the group's newest op table; an older era of the group may
                # have fewer ops (ops were removed as well as added): an id past its table rules it out
                unknown = next((r for r in recs if r.kind == "node" and not 0 < r.op_id < len(e.ops)), None)
                if unknown is not None:         # said only when no era that knows every op id says more
                    unknown_op = _Bad(unknown.offset + 4, f"node {unknown.index} ({unknown.name!r}): op id "
                                                          f"{unknown.op_id} is unknown to {e.name} ({len(e.ops)} ops)")
                    continue
                key = self.semantics_key(e, recs)
                if key in tried:
                    if tried[key] is not None:
                        results[tried[key]][2].append(e)
                    continue
                tried[key] = None
                try:
                    g, data = self.build(e, recs)
                except _Bad as b:               # eras run oldest first: on a tie the newest era's error wins
                    best = b if best is None or b.offset >= best.offset else best
                    continue
                sig = _signature(g)
                tried[key] = sig
                results.setdefault(sig, (g, data, []))[2].append(e)
        if not results:
            best = best or unknown_op
            assert best is not None
            raise self.fail(best.offset, best.message)
        ranked = sorted(results.items(), key=lambda kv: -max(e.index for e in kv[1][2]))
        (sig, (graph, leaf_data, matched)), others = ranked[0], ranked[1:]
        alternatives = [f"{', '.join(e.commit for e in es)}: {_first_difference(osig, sig)}"
                        for osig, (_, _, es) in others]
        if others and self.strict:
            raise self.fail(HEADER, "the file fits ggml eras that read it differently (newest first: "
                                    f"{', '.join(e.commit for e in matched)}; " + "; ".join(alternatives)
                            + "); pass era=<commit>")
        if others:   # never silently: the choice of era changes what the file means
            what = (f"{self.path}: the file fits ggml eras that read it differently; took the newest "
                    f"({matched[-1].commit}); others: " + "; ".join(alternatives))
            warnings.warn(EraWarning(f"{what} (pass era=<commit> or strict=True)",
                                     cli=f"{what} (pick one with --era COMMIT)"), stacklevel=3)
        matched.sort(key=lambda e: e.index)
        info = LoadInfo(self.path, version, matched[-1].layout.describe(), matched[-1].name,
                        [e.name for e in matched], n_leafs, n_nodes, size_eval, self.mm,
                        alternatives=alternatives)
        for t, d in zip(graph.leafs, leaf_data):
            info.leaf_data.setdefault(t.name, d)
        return graph, info

    # -- pass 1: records ------------------------------------------------------------------------
    def walk(self, layout: Layout, era: Era, n_leafs: int, n_nodes: int, n_ops: int) -> list[Record]:
        """The records under one layout and type table; op ids are checked against n_ops, the longest op
        table of the eras sharing them (each era is checked against its own table before it builds)."""
        recs: list[Record] = []
        pos = HEADER
        for kind, count in (("leaf", n_leafs), ("node", n_nodes)):
            fixed = layout.leaf_bytes if kind == "leaf" else layout.node_bytes
            for i in range(count):
                if pos + fixed > self.size:
                    raise _Bad(pos, f"{kind} {i}: the file ends inside its {fixed}-byte record", len(recs))
                try:
                    rec = self.record(layout, era, kind, i, pos, n_leafs, n_nodes, n_ops)
                except _Bad as b:
                    b.progress = len(recs)
                    raise
                pos += fixed
                has_data = kind == "leaf" or (layout.flags and rec.flags & 4)
                if has_data:
                    n = nbytes(rec.type, rec.ne, rec.nb)
                    if pos + n > self.size:
                        raise _Bad(rec.offset, f"{kind} {i} ({rec.name!r}): its {n} data bytes run past the end "
                                               f"of the file ({self.size} bytes)", len(recs))
                    rec.data = (pos, n)
                    pos += n
                recs.append(rec)
        if pos != self.size:
            raise _Bad(pos, f"the records end at byte {pos} but the file has {self.size} bytes", len(recs) + 1)
        return recs

    def record(self, layout: Layout, era: Era, kind: str, i: int, pos: int, n_leafs: int, n_nodes: int,
               n_ops: int) -> Record:
        b = self.buf
        type_id, op_id = struct.unpack_from("<II", b, pos)
        p = pos + 8
        flags = 0
        if layout.n_dims:
            p += 4   # n_dims: import ignores it since 2023-12 and ne carries the same facts
        if layout.flags:
            flags = struct.unpack_from("<i", b, p)[0]
            p += 4
            if not 0 <= flags < 32:
                raise _Bad(pos + 8, f"{kind} {i}: flags {flags:#x} has unknown bits")
        dims = struct.unpack_from("<8Q", b, p)
        p += 64
        ne, nb = tuple(dims[0::2]), tuple(dims[1::2])
        raw_name = bytes(b[p:p + layout.max_name])
        p += layout.max_name
        op_params = bytes(b[p:p + layout.max_op_params])
        p += layout.max_op_params
        where = f"{kind} {i}"
        if type_id not in era.types:
            raise _Bad(pos, f"{where}: unknown type id {type_id}")
        tname = era.types[type_id]
        type_ = next((t for t in TYPES.values() if t.name.lower() == tname.lower()), None)
        if type_ is None:
            raise _Bad(pos, f"{where}: type {tname} (id {type_id}) is not supported by graphc")
        if kind == "leaf" and op_id != 0:
            raise _Bad(pos + 4, f"{where}: a leaf must have op NONE (0), got op id {op_id}")
        if kind == "node" and not 0 < op_id < n_ops:
            raise _Bad(pos + 4, f"{where}: unknown op id {op_id}")
        dims_at = p - 64 - layout.max_name - layout.max_op_params
        if any(n > MAX_ELEMENTS for n in ne) or ne[0] * ne[1] * ne[2] * ne[3] > MAX_ELEMENTS:
            raise _Bad(dims_at, f"{where}: dims {list(ne)} exceed {MAX_ELEMENTS} elements")
        if any(s > MAX_STRIDE for s in nb):
            raise _Bad(dims_at, f"{where}: strides {list(nb)} are out of range")
        if ne[0] % type_.blck:
            raise _Bad(dims_at, f"{where}: {type_.name} needs ne0 divisible by {type_.blck}, got {ne[0]}")
        if nbytes(type_, ne, nb) > MAX_BYTES_PER_TENSOR:
            raise _Bad(dims_at, f"{where}: spans more than {MAX_BYTES_PER_TENSOR} bytes")
        name_at = dims_at + 64
        if b"\0" not in raw_name:
            raise _Bad(name_at, f"{where}: name field is not NUL-terminated")
        try:
            name = raw_name[:raw_name.index(b"\0")].decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(name_at, f"{where}: name is not UTF-8") from None
        where = f"{where} ({name!r})"
        src: tuple[int, ...] = ()
        if kind == "node":
            raw = struct.unpack_from(f"<{layout.max_src}i", b, p)
            base = n_leafs if layout.node_base is None else layout.node_base
            out = []
            for j, s in enumerate(raw):
                if s == -1:
                    out.append(-1)
                elif 0 <= s < n_leafs:
                    out.append(s)
                elif base <= s < base + i:
                    out.append(n_leafs + s - base)
                else:
                    why = ("not an earlier node (forward reference or cycle)" if base + i <= s < base + n_nodes
                           else f"out of range (-1, leaf 0..{n_leafs - 1} or {base} + node index)")
                    raise _Bad(p + 4 * j, f"{where}: source {j} index {s} is {why}")
            src = tuple(out)
        return Record(kind, i, pos, type_, op_id, flags, ne, nb, name, op_params, src)

    # -- pass 2: graph ---------------------------------------------------------------------------
    def semantics_key(self, era: Era, recs: list[Record]) -> tuple:
        """Eras that name every used op id alike (and read params alike) build the same graph once."""
        used = sorted({r.op_id for r in recs if r.kind == "node"})
        un = sorted({_i32(r.op_params, 0) for r in recs if r.kind == "node" and era.ops[r.op_id] == "UNARY"})
        return (era.types_key, tuple(era.ops[i] for i in used),
                tuple(era.unary[u] if 0 <= u < len(era.unary) else None for u in un),
                era.index < _ROPE_YARN, (era.index > _CONCAT_DIM) - (era.index < _CONCAT_DIM),
                (era.index > _FA_SOFTCAP) - (era.index < _FA_SOFTCAP), era.layout.flags)

    def build(self, era: Era, recs: list[Record]) -> tuple[Graph, list[np.ndarray]]:
        g = GraphBuilder(os.path.splitext(os.path.basename(self.path))[0])
        made: list[Tensor] = []
        leaf_data: list[np.ndarray] = []
        leafs = [r for r in recs if r.kind == "leaf"]
        nodes = [r for r in recs if r.kind == "node"]
        for r in leafs:
            t = new_tensor(r.name, r.type, r.ne)
            if t.nb != r.nb:
                raise _Bad(r.offset, f"leaf {r.index} ({r.name!r}): strides {list(r.nb)} are not contiguous "
                                     f"({list(t.nb)})")
            assert r.data is not None
            leaf_data.append(self.mm[r.data[0]:r.data[0] + r.data[1]])
            made.append(t)
        for r in nodes:
            srcs = [made[s] if s >= 0 else None for s in r.src]
            while srcs and srcs[-1] is None:
                srcs.pop()
            try:
                op, srcs, params, decl = _decode(era, r, srcs, made)
                if op in _ALL_SLOTS:        # the builder's methods pass every slot of these ops
                    srcs = list(srcs) + [None] * (len(ops.OPS[op].srcs) - len(srcs))
                t = g.op(op, srcs, params, r.name, decl)
            except GraphError as e:
                raise _Bad(r.offset, f"node {r.index} ({r.name!r}, {era.ops[r.op_id]}): {e}") from None
            except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as e:   # as graph_text and dot
                raise _Bad(r.offset, f"node {r.index} ({r.name!r}, {era.ops[r.op_id]}): cannot be rebuilt from "
                                     f"its sources and params ({type(e).__name__}: {e})") from None
            if (t.type, t.ne, t.nb) != (r.type, r.ne, r.nb):
                raise _Bad(r.offset, f"node {r.index} ({r.name!r}, {era.ops[r.op_id]}): rebuilt as {t.type.name} "
                                     f"ne {list(t.ne)} nb {list(t.nb)}, the file says {r.type.name} ne {list(r.ne)} "
                                     f"nb {list(r.nb)}")
            t.name = r.name
            made.append(t)
        graph = Graph(g.name, made[:len(leafs)], made[len(leafs):])
        self.assign_roles(graph, recs, leaf_data, era)
        try:
            verify(graph)
        except GraphError as e:
            bad = next((r.offset for r, t in zip(recs, made) if e.tensor is not None and t.name == e.tensor), HEADER)
            raise _Bad(bad, f"the graph read with {era.name} is invalid: {e}") from None
        return graph, leaf_data

    def assign_roles(self, graph: Graph, recs: list[Record], leaf_data: list[np.ndarray], era: Era) -> None:
        written = {id(n.view_src) for n in graph.nodes if n.op in _WRITES and n.view_src is not None}
        for t, r, d in zip(graph.leafs, recs, leaf_data):
            if id(t) in written:
                t.flags = Flag.STATE
            elif (era.layout.flags and r.flags & 1) or t.name in self.inputs:
                t.flags = Flag.INPUT
                continue
            else:
                t.flags = Flag.PARAM
            t.data = d
        node_recs = [r for r in recs if r.kind == "node"]
        flagged = [t for t, r in zip(graph.nodes, node_recs) if era.layout.flags and r.flags & 2]
        if self.outputs is not None:
            flagged = [t for t in graph.nodes if t.name in self.outputs]
            leaf_outs = [nm for nm in self.outputs if nm not in {t.name for t in graph.nodes}]
            if leaf_outs:
                raise _Bad(HEADER, f"outputs must be nodes; {leaf_outs[0]!r} is a leaf")
        elif not flagged and graph.nodes:
            users = graph.consumers()
            flagged = [t for t in graph.nodes if not users[t]]
            if graph.nodes[-1] not in flagged:
                flagged.append(graph.nodes[-1])
        for t in flagged:
            t.flags |= Flag.OUTPUT


# --- op mapping ------------------------------------------------------------------------------

def _i32(p: bytes, i: int) -> int:
    return struct.unpack_from("<i", p, 4 * i)[0]


def _f32(p: bytes, i: int) -> float:
    return struct.unpack_from("<f", p, 4 * i)[0]


def _decode(era: Era, r: Record, srcs: list, made: list[Tensor]
            ) -> tuple[str, list, dict[str, Any], ops.Decl | None]:
    """The graphc op, sources, params and declared shape of one node record."""
    name, p, a = era.ops[r.op_id], r.op_params, (srcs[0] if srcs else None)

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise GraphError(msg, None, "op")

    if name in _SIMPLE:
        op = _SIMPLE[name]
        if op == "cpy" and len(srcs) > 2:
            srcs = srcs[:2]
        return op, srcs, {}, None
    if name in _ACTIVATION_OPS:          # before 2023-07-23 activations were ops of their own
        return "unary", srcs, {"op": name.lower()}, None
    if name == "UNARY":
        u = _i32(p, 0)
        need(0 <= u < len(era.unary), f"unknown unary op id {u}")
        un = era.unary[u].lower()
        need(un in ops.UNARY_OPS, f"unary op {era.unary[u]} is not supported by graphc")
        return "unary", srcs, {"op": un}, None
    if name == "MUL_MAT":
        return "mul_mat", srcs, {"prec": _i32(p, 0)}, None
    if name == "RESHAPE":
        return "reshape", srcs, {}, ops.Decl(None, r.ne)
    if name == "VIEW":
        return "view", srcs, {"offset": struct.unpack_from("<Q", p, 0)[0]}, ops.Decl(None, r.ne, r.nb)
    if name == "PERMUTE":
        return "permute", srcs, {"axes": tuple(_i32(p, i) for i in range(4))}, None
    if name == "SCALE":
        need(len(srcs) == 1, "scale by a tensor (ggml before 2023-12-22) is not supported")
        return "scale", srcs, {"s": _f32(p, 0)}, None
    if name in ("NORM", "RMS_NORM"):
        return name.lower(), srcs, {"eps": _f32(p, 0)}, None
    if name == "GROUP_NORM":
        return "group_norm", srcs, {"n_groups": _i32(p, 0), "eps": _f32(p, 1) if _i32(p, 1) else 1e-6}, None
    if name in ("DIAG_MASK_INF", "DIAG_MASK_ZERO"):
        return name.lower(), srcs, {"n_past": _i32(p, 0)}, None
    if name == "SOFT_MAX":
        need(len(srcs) <= 2, "soft_max with an ALiBi positions tensor (ggml 2024-02..05) is not supported")
        if not any(p):                   # plain ggml_soft_max before soft_max_ext stored no params
            return "soft_max", srcs, {}, None
        return "soft_max", srcs, {"scale": _f32(p, 0), "max_bias": _f32(p, 1)}, None
    if name == "ROPE":
        need(len(srcs) >= 2, "rope without a positions tensor (ggml before 2023-09-28) is not supported")
        if era.index < _ROPE_YARN:      # {n_past, n_dims, mode, n_ctx, freq_base, freq_scale, xpos...}
            prm = dict(n_dims=_i32(p, 1), mode=_i32(p, 2), n_ctx_orig=_i32(p, 3), freq_base=_f32(p, 4),
                       freq_scale=_f32(p, 5))
        else:                            # {n_past, n_dims, mode, n_ctx, n_ctx_orig, base, scale, ext, attn, beta f/s}
            prm = dict(n_dims=_i32(p, 1), mode=_i32(p, 2), n_ctx_orig=_i32(p, 4), freq_base=_f32(p, 5),
                       freq_scale=_f32(p, 6), ext_factor=_f32(p, 7), attn_factor=_f32(p, 8),
                       beta_fast=_f32(p, 9), beta_slow=_f32(p, 10))
        return "rope", srcs, prm, None
    if name == "CONCAT":
        need(len(srcs) == 2 and all(s is not None for s in srcs), "concat needs two sources")
        if era.index < _CONCAT_DIM:      # ggml_concat(a, b) joined along dim 2
            dims = [2]
        elif era.index == _CONCAT_DIM:   # the dim argument appeared inside this era (2024-05-28)
            dims = [_i32(p, 0), 2]
        else:
            dims = [_i32(p, 0)]
        for d in dims:
            if 0 <= d < MAX_DIMS and all(r.ne[k] == srcs[0].ne[k] + (srcs[1].ne[k] if k == d else 0)
                                         for k in range(MAX_DIMS)):
                return "concat", srcs, {"dim": d}, None
        return "concat", srcs, {"dim": dims[0]}, None
    if name == "REPEAT":
        need(len(srcs) == 1, "repeat takes one source in a ggml file")
        return "repeat", [a], {}, ops.Decl(None, r.ne)
    if name == "CLAMP":
        return "clamp", srcs, {"min": _f32(p, 0), "max": _f32(p, 1)}, None
    if name == "LEAKY_RELU":
        return "leaky_relu", srcs, {"negative_slope": _f32(p, 0)}, None
    if name == "SET":
        need(_i32(p, 4) == 0, "an in-place ggml_set writes its destination; not supported")
        return "set", srcs, {k: _i32(p, i) & 0xFFFFFFFF for i, k in enumerate(("nb1", "nb2", "nb3", "offset"))}, None
    if name == "PAD":                    # ggml_pad pads at the end; the amounts are the shape difference
        need(a is not None, "pad needs a source")
        return "pad", srcs, {"rp": tuple(r.ne[i] - a.ne[i] for i in range(MAX_DIMS))}, None
    if name == "ARANGE":
        return "arange", [], {"start": _f32(p, 0), "stop": _f32(p, 1), "step": _f32(p, 2)}, None
    if name == "FLASH_ATTN_EXT":
        w2, w3 = _i32(p, 2), _i32(p, 3)  # prec moved from word 2 to 3 when softcap took word 2 (2024-08-24)
        late = era.index > _FA_SOFTCAP or (era.index == _FA_SOFTCAP and w2 != 10)
        softcap = _f32(p, 2) if late else 0.0
        prec = (w3 if late else w2)
        return "flash_attn_ext", srcs, {"scale": _f32(p, 0), "max_bias": _f32(p, 1), "softcap": softcap,
                                        "prec": prec}, None
    raise GraphError(f"op {name} is not supported by graphc", None, "op")


def _signature(g: Graph) -> tuple:
    """What the graph means, to tell apart eras that read the same bytes differently."""
    pos = {id(t): i for i, t in enumerate(g.tensors())}
    return tuple((t.name, t.type.name, t.ne, t.nb, t.op, tuple(sorted((k, repr(v)) for k, v in t.params.items())),
                  tuple(pos.get(id(s), -1) if s is not None else None for s in t.src), int(t.flags))
                 for t in g.tensors())


def _first_difference(a: tuple, b: tuple) -> str:
    for x, y in zip(a, b):
        if x != y:
            show = lambda t: f"{t[4]}({', '.join(f'{k}={v}' for k, v in t[5])})"  # noqa: E731
            return f"tensor {x[0]!r} reads as {show(x)} there, not {show(y)}"
    return "different tensors"
