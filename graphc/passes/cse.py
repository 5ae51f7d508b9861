"""Common-subexpression elimination: a node identical to an earlier one (same op, params, sources, type,
ne, nb and view root/offset) is replaced by it.

Not merged: writers (cpy, set_rows: each is a side effect); custom ops (user code may be impure); a
node whose own memory is written into later (its value is not fixed); two outputs (each keeps its
name); two compute nodes with a writer into a root they read between them (e.g. a read of the KV cache
before a cpy into it and the same read after it). Alias nodes only describe addresses, so identical
views merge even across writes: their consumers still read at their own place in the order. When a
later output merges into an earlier non-output, the survivor takes the output's name and flag.
"""
from __future__ import annotations

from typing import Hashable

from ..ir import Flag, Graph, Tensor
from .rewrite import clone, is_alias, is_writer, reads, replace_uses, writers_by_root


def _key(n: Tensor) -> Hashable:
    params = repr(sorted(n.params.items()))       # repr: -0.0 and 0.0 (and nan payloads) stay apart
    srcs = tuple(None if s is None else id(s) for s in n.src)
    view = (id(n.view_src), n.view_offs) if n.view_src is not None else None
    return (n.op, params, srcs, n.type.name, n.ne, n.nb, view)


def cse(graph: Graph, stats: dict[str, int] | None = None) -> Graph:
    g = clone(graph)
    pos = {id(n): i for i, n in enumerate(g.nodes)}
    writers = writers_by_root(g)
    table: dict[Hashable, Tensor] = {}
    gone: set[int] = set()
    kept_by_state = 0
    for n in g.nodes:
        if is_writer(n) or n.op == "custom" or writers.get(id(n)):
            continue
        key = _key(n)
        a = table.get(key)
        if a is None:
            table[key] = n
            continue
        if a.has(Flag.OUTPUT) and n.has(Flag.OUTPUT):
            continue
        if not is_alias(n) and any(pos[id(a)] < pos[id(w)] < pos[id(n)]
                                   for r in reads(n) for w in writers.get(id(r), ())):
            table[key] = n                # later duplicates may merge with this newer read
            kept_by_state += 1
            continue
        if n.has(Flag.OUTPUT):
            a.name, a.flags = n.name, a.flags | Flag.OUTPUT
        replace_uses(g, n, a)
        gone.add(id(n))
    g.nodes = [n for n in g.nodes if id(n) not in gone]
    if stats is not None:
        stats["nodes merged"] = len(gone)
        stats["kept apart by a state write"] = kept_by_state
    return g
