"""Fusion: partition a scheduled graph's nodes into kernels (graphc.program.Kernel).

One walk over the nodes in schedule order keeps a sequence of groups that is always a valid execution
order. A node either joins an open group holding one of its direct producers, or starts a new group at
the end. It may join group G only if every tensor it reads comes from a group at or before G and was
not overwritten (cpy/set_rows) by a later group than G, so the groups never form a cycle and state
writes keep their order relative to the readers of that state. What may join (fusion_rules classes):

  elementwise group  + elementwise node of the same iteration shape; + a reduction as its epilogue
                     (the group becomes its prologue: add -> rms_norm, scale -> soft_max)
  reduce group       + elementwise epilogue of the reduction's result shape (rms_norm -> mul(w) -> ...)
  matmul group       + elementwise epilogue (bias add, activation, residual add, glu with the other half
                     materialised); a matmul always starts a group: its prologue is never fused
  write / other      closed: one node per kernel

Values that stay inside a group are f32 and read directly (never through a view), so keeping them in
registers changes nothing; every node is in exactly one kernel (no recomputation); a node read by
another kernel, flagged OUTPUT, writing memory or read by nobody is a kernel output (materialised).

Views (view/reshape/permute/transpose) do no work: one whose readers all sit in one kernel is attached to
that kernel (inputs then name the tensor the view reads); any other view becomes a "view" kernel of its
own (no work, placed just before its first reader).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphc.ir import Flag, Graph, Tensor
from graphc.program import Kernel, Program, root_of

from .fusion_rules import base_of, fusable_value, matmul_attrs, op_class

_MAX_NAME_OPS = 5


@dataclass(eq=False)
class _Group:
    pos: int                               # place in the sequence (view groups: -1, placed by _order)
    cls: str                               # elementwise | reduce | matmul | write | other | view
    space: tuple | None                    # ne a joining node must produce; None: closed to joins
    nodes: list[Tensor] = field(default_factory=list)

    def accepts(self, n: Tensor, cls: str) -> bool:
        if self.space is None:
            return False
        if cls == "elementwise":
            return n.ne == self.space
        return cls == "reduce" and self.cls == "elementwise"   # one reduction per kernel, never after a matmul


def fuse(graph: Graph) -> Program:
    """Group graph.nodes (a topological order) into kernels; see the module doc for the rules."""
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    users = {id(t): us for t, us in graph.consumers().items()}

    group_of: dict[int, _Group] = {}
    seq: list[_Group] = []
    last_write: dict[int, int] = {}        # id(root) -> pos of the latest group that wrote into it
    views: list[Tensor] = []
    for n in graph.nodes:
        cls = op_class(n)
        if cls == "view":
            views.append(n)
            continue
        g = _pick(n, cls, _floor(n, group_of, last_write), group_of)
        if g is None:
            open_ = cls in ("elementwise", "reduce", "matmul") and fusable_value(n)
            g = _Group(len(seq), cls, n.ne if open_ else None)
            seq.append(g)
        elif cls == "reduce":
            g.cls, g.space = "reduce", (n.ne if fusable_value(n) else None)
        g.nodes.append(n)
        group_of[id(n)] = g
        if cls == "write":
            last_write[id(root_of(n))] = g.pos

    view_groups = _place_views(views, users, group_of)
    order = _order(seq, view_groups, group_of, users, index)
    kernels = [_kernel(i, g, group_of, users, index) for i, g in enumerate(order)]
    prog = Program(graph, kernels)
    n_view = sum(k.kind == "view" for k in kernels)
    n_out = sum(len(k.outputs) for k in kernels if k.kind != "view")
    prog.log.append(f"fuse: {len(graph.nodes)} nodes -> {len(kernels)} kernels "
                    f"({len(kernels) - n_view} with work, {n_view} view-only), {n_out} materialised values")
    return prog


def _floor(n: Tensor, group_of: dict[int, _Group], last_write: dict[int, int]) -> int:
    """The earliest group position n may run in: after its producers and after the latest write
    into any memory it reads."""
    floor = -1
    for s in n.src:
        if s is None:
            continue
        b = base_of(s)
        g = group_of.get(id(b))
        floor = max(floor, g.pos if g is not None else -1, last_write.get(id(root_of(b)), -1))
    return floor


def _pick(n: Tensor, cls: str, floor: int, group_of: dict[int, _Group]) -> _Group | None:
    """The latest open group holding a direct producer of n that n may join, or None."""
    if cls not in ("elementwise", "reduce"):
        return None
    cands = {id(g): g for s in n.src if s is not None and (g := group_of.get(id(s))) is not None}
    for g in sorted(cands.values(), key=lambda g: -g.pos):
        if g.pos < floor or not g.accepts(n, cls):
            continue
        inside = [s for s in n.src if s is not None and group_of.get(id(base_of(s))) is g]
        # in-group values are read directly (not through a view), are f32 and have the group's shape
        if all(s is base_of(s) and fusable_value(s) and s.ne == g.space for s in inside):
            return g
    return None


def _place_views(views: list[Tensor], users: dict[int, list[Tensor]], group_of: dict[int, _Group]) -> list[_Group]:
    """Attach each view to the one kernel reading it; otherwise give it a view kernel of its own."""
    own: list[_Group] = []
    for v in reversed(views):               # readers (later views included) are placed first
        readers = {id(group_of[id(u)]): group_of[id(u)] for u in users[id(v)]}
        if len(readers) == 1 and not v.flags & Flag.OUTPUT:
            g = next(iter(readers.values()))
        else:
            g = _Group(-1, "view", None)
            own.append(g)
        g.nodes.append(v)
        group_of[id(v)] = g
    return own


def _order(seq: list[_Group], view_groups: list[_Group], group_of: dict[int, _Group],
           users: dict[int, list[Tensor]], index: dict[int, int]) -> list[_Group]:
    """Sequence order, each view kernel just before its first reader (after its source when unread)."""
    # keys (pos, tier, node index, step back): a view kernel takes its first reader's key one step back, so it
    # runs just before that reader, and after the reader's own sources (a reader may be an unread view kernel,
    # placed after the group of the tensor it views: so is then the view it reads)
    key: dict[int, tuple] = {id(g): (g.pos, 1, 0, 0) for g in seq}
    for g in view_groups:                   # built in reverse graph order: readers' keys are known
        v = g.nodes[0]
        reader_keys = [key[id(group_of[id(u)])] for u in users[id(v)]]
        if reader_keys:
            first = min(reader_keys)
            key[id(g)] = first[:3] + (first[3] - 1,)
        else:
            src = group_of.get(id(base_of(v)))
            key[id(g)] = (src.pos if src is not None else -1, 2, index[id(v)], 0)
    order = sorted(seq + view_groups, key=lambda g: key[id(g)])
    at = {id(g): i for i, g in enumerate(order)}
    for g in order:                          # the construction guarantees this; a failure is a bug here
        for n in g.nodes:
            for s in n.src:
                sg = group_of.get(id(s)) if s is not None else None
                if sg is not None and sg is not g and at[id(sg)] > at[id(g)]:
                    raise AssertionError(f"fuse: kernel order broken at node {n.name!r}")
    return order


def _kernel(i: int, g: _Group, group_of: dict[int, _Group], users: dict[int, list[Tensor]],
            index: dict[int, int]) -> Kernel:
    nodes = sorted(g.nodes, key=lambda n: index[id(n)])
    inputs: dict[int, Tensor] = {}
    for n in nodes:
        for s in n.src:
            if s is not None and group_of.get(id(s)) is not g:
                b = base_of(s)
                inputs.setdefault(id(b), b)
    if g.cls == "view":
        kind, attrs, outputs = "view", {}, nodes[:1]
    else:
        kind, attrs = _kind(g, nodes)
        outputs = [n for n in nodes if op_class(n) != "view" and _leaves(n, g, group_of, users)]
    k = Kernel("", nodes, kind, outputs, list(inputs.values()), attrs)
    k.name = _name(i, k)
    return k


def _kind(g: _Group, nodes: list[Tensor]) -> tuple[str, dict]:
    if g.cls == "matmul":
        return matmul_attrs(next(n for n in nodes if op_class(n) == "matmul"))
    if g.cls in ("write", "other"):
        return "other", {}
    return g.cls, {}


def _leaves(n: Tensor, g: _Group, group_of: dict[int, _Group], users: dict[int, list[Tensor]]) -> bool:
    """Must n be materialised: read by another kernel, flagged OUTPUT, a write, or read by nobody."""
    us = users[id(n)]
    return (bool(n.flags & (Flag.OUTPUT | Flag.STATE)) or op_class(n) == "write" or not us
            or any(group_of[id(u)] is not g for u in us))


def _name(i: int, k: Kernel) -> str:
    """k<index>_<op names>: from op names only (never tensor or custom function names)."""
    ops = [op for n, op in zip(k.nodes, k.ops) if op_class(n) != "view"] or ["view"]
    tail = ops[:_MAX_NAME_OPS] + ([f"{len(ops) - _MAX_NAME_OPS}more"] if len(ops) > _MAX_NAME_OPS else [])
    return re.sub(r"[^a-z0-9_]", "_", f"k{i}_" + "_".join(tail).lower())


def describe(program: Program) -> str:
    """A table of the kernels: kind, form, what each holds (original ops, * = materialised) and reads."""
    rows = [("#", "kernel", "kind", "nodes", "out", "in", "ops (* materialised)")]
    for i, k in enumerate(program.kernels):
        outs = {id(o) for o in k.outputs}
        ops = " ".join(op + ("*" if id(n) in outs else "") for n, op in zip(k.nodes, k.ops))
        kind = k.kind + (f"/{k.attrs['form']}" if "form" in k.attrs else "")
        rows.append((str(i), k.name, kind, str(len(k.nodes)), str(len(k.outputs)), str(len(k.inputs)), ops))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    lines = ["  ".join(r[c].ljust(widths[c]) for c in range(len(widths))) + "  " + r[-1] for r in rows]
    n_nodes = sum(len(k.nodes) for k in program.kernels)
    work = [k for k in program.kernels if k.kind != "view"]
    lines.append(f"{n_nodes} nodes in {len(program.kernels)} kernels ({len(work)} with work); "
                 f"{sum(len(k.outputs) for k in work)} values materialised")
    return "\n".join(lines)
