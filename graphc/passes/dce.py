"""Dead-code elimination: keep what an output or a side effect needs, drop the rest.

Live from the start: outputs (nodes or leafs); writers (cpy, set_rows) into memory seen from outside the
graph: a leaf flagged input/param/state, or an output node. Then, for every live tensor: its sources,
its root (views need their root's memory), and every writer into that root (the bytes a reader sees
depend on them). Leafs flagged input, param or state always stay (the API feeds and binds them by
name); other unused leafs (constants, scratch destinations) go.
"""
from __future__ import annotations

from ..ir import Flag, Graph, Tensor
from ..program import root_of
from .rewrite import OBSERVABLE, clone, is_writer, writers_by_root


def live_set(graph: Graph) -> set[int]:
    """ids of the tensors an output or side effect needs."""
    writers = writers_by_root(graph)
    todo: list[Tensor] = [t for t in graph.tensors() if t.has(Flag.OUTPUT)]
    for n in graph.nodes:
        if is_writer(n):
            r = n.view_src
            if (r.is_leaf and r.flags & OBSERVABLE) or r.has(Flag.OUTPUT):
                todo.append(n)
    live: set[int] = set()
    while todo:
        t = todo.pop()
        if id(t) in live:
            continue
        live.add(id(t))
        todo.extend(s for s in t.src if s is not None)
        r = root_of(t)
        todo.append(r)
        todo.extend(writers.get(id(r), ()))
    return live


def dce(graph: Graph, stats: dict[str, int] | None = None) -> Graph:
    g = clone(graph)
    live = live_set(g)
    nodes = [n for n in g.nodes if id(n) in live]
    leafs = [t for t in g.leafs if id(t) in live or t.flags & OBSERVABLE]
    if stats is not None:
        stats["nodes removed"] = len(g.nodes) - len(nodes)
        stats["leafs removed"] = len(g.leafs) - len(leafs)
    g.nodes, g.leafs = nodes, leafs
    return g
