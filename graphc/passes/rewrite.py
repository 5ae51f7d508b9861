"""Shared helpers of the graph passes: copying a graph, memory facts (who writes which root), rewiring uses.

Memory model (ggml's): a root tensor (a leaf, or a node that is not a view) owns bytes; alias ops
(view, reshape, permute, transpose) only re-describe them and compute nothing; a *writer* (cpy,
set_rows: a node that is a view but not an alias op) stores into its destination's root. A node reads
the roots of its sources at the moment it runs, so writers order reads of the same root.
"""
from __future__ import annotations

from typing import Any

from ..builder import GraphBuilder
from ..ir import Flag, Graph, Tensor
from ..ops import Decl
from ..program import ALIAS_ONLY, is_writer, root_of

__all__ = ["clone", "is_alias", "is_writer", "writers_by_root", "reads", "replace_uses", "remake",
           "layout_equal", "materialise_output_views", "snapshot_aliased_writes", "OBSERVABLE"]

# a leaf with any of these flags is seen from outside the graph (fed, bound or kept between runs)
OBSERVABLE = Flag.INPUT | Flag.PARAM | Flag.STATE


def clone(graph: Graph) -> Graph:
    """Passes never mutate their input: each works on a copy."""
    return graph.copy()


def is_alias(t: Tensor) -> bool:
    return t.op in ALIAS_ONLY


def writers_by_root(graph: Graph) -> dict[int, list[Tensor]]:
    """id(root) -> writer nodes into it, in graph order."""
    out: dict[int, list[Tensor]] = {}
    for n in graph.nodes:
        if is_writer(n):
            out.setdefault(id(n.view_src), []).append(n)
    return out


def reads(n: Tensor) -> list[Tensor]:
    """Roots whose memory node n reads when it runs (alias nodes read nothing; a writer's destination
    operand is written, not read, except by set_rows/cpy semantics that keep other bytes as they are)."""
    if is_alias(n):
        return []
    srcs = [s for s in n.src if s is not None]
    if is_writer(n) and n.op in ("cpy", "set_rows"):
        dst = n.src[1] if n.op == "cpy" else n.src[0]
        srcs = [s for s in srcs if s is not dst]
    out: list[Tensor] = []
    for s in srcs:
        r = root_of(s)
        if all(r is not o for o in out):
            out.append(r)
    return out


def layout_equal(a: Tensor, b: Tensor) -> bool:
    """Same type, shape and strides: one can stand for the other in any consumer or view."""
    return a.type is b.type and a.ne == b.ne and a.nb == b.nb


def replace_uses(graph: Graph, old: Tensor, new: Tensor) -> int:
    """Make every consumer of `old` read `new` (layouts must be equal). Views rooted at `old` are moved
    onto new's root at new's offset. Returns the number of rewired sources."""
    assert layout_equal(old, new), (old, new)
    n_rewired = 0
    base, offs = root_of(new), (new.view_offs if new.is_view else 0)
    for t in graph.nodes:
        if any(s is old for s in t.src):
            t.src = tuple(new if s is old else s for s in t.src)
            n_rewired += 1
        if t.view_src is old:
            t.view_src, t.view_offs = base, t.view_offs + offs
    return n_rewired


def remake(t: Tensor, op: str, srcs: list[Tensor | None], params: dict[str, Any] | None = None,
           decl: Decl | None = None) -> None:
    """Turn node t into `op(srcs)` in place (keeping its name, flags and identity), through the builder's
    shape rule; the result must describe exactly the same type, shape and memory as before."""
    made = GraphBuilder().op(op, srcs, params, t.name, decl)
    assert layout_equal(made, t), (t, made)
    assert (made.view_src is t.view_src or (made.view_src is None and t.view_src is None)) and \
        made.view_offs == t.view_offs, (t, made)
    t.op, t.src, t.params = made.op, made.src, made.params


def materialise_output_views(graph: Graph) -> int:
    """Give every output that views an intermediate node's memory (a transpose, reshape or view of a computed
    tensor, a cpy into one) a copy of its own, IN PLACE: a `cont` of it at the end of the graph takes its name
    and OUTPUT flag, and the view, renamed "<name> (view)", stays for its other readers. ggml keeps such a
    view's source alive to the end of the graph (gallocr never frees a tensor whose view has no children);
    graphc's memory regions are per root (graphc.program.region_of), so without this the root would sit in
    the arena, its bytes reused before the user reads the output. The copy reads the root after every node
    has run, as reading the view after the run would. Views of inputs, weights, state and outputs are kept:
    their roots persist. Returns the number of outputs copied."""
    b = GraphBuilder()
    made: list[Tensor] = []
    for t in graph.tensors():
        r = t.view_src
        if not (t.flags & Flag.OUTPUT) or r is None or r.is_leaf or r.flags & Flag.OUTPUT:
            continue
        c = b.op("cont", [t], name=t.name)
        c.flags = Flag.OUTPUT
        t.flags &= ~Flag.OUTPUT
        b.set_name(t, f"{t.name} (view)")
        made.append(c)
    graph.nodes.extend(made)
    return len(made)


def snapshot_aliased_writes(graph: Graph) -> int:
    """A writer (cpy, set_rows) whose data source views the memory it writes into (set_rows(cache,
    view(cache), idx): rows moved within a cache) reads a copy of that source taken just before it, IN PLACE.
    ref reads every source whole before it stores (its semantics: the values as they were); a compiled
    target copies row by row on several threads, so rows written early were read late (in ggml a race).
    Returns the number of sources copied."""
    b = GraphBuilder()
    out: list[Tensor] = []
    n_copied = 0
    for n in graph.nodes:
        if is_writer(n) and n.op in ("cpy", "set_rows"):
            dst = n.src[1] if n.op == "cpy" else n.src[0]
            srcs = list(n.src)
            for j, s in enumerate(srcs):
                if s is None or s is dst or root_of(s) is not n.view_src:
                    continue
                c = b.op("cont", [s], name=f"{s.name} (snapshot)")
                out.append(c)
                srcs[j] = c
                n_copied += 1
            n.src = tuple(srcs)
        out.append(n)
    graph.nodes = out
    return n_copied
