"""Scheduling: a topological order of the nodes that lowers the peak of live intermediate memory.

Edges: data (a node after its sources and its view root) and memory order: for every root that some
writer (cpy, set_rows) stores into, each access (a read by a compute node through any view, or a write)
keeps its place relative to the writes of that root in the original order (read-after-write,
write-after-read, write-after-write). Reads between two writes may move among themselves.

Peak (the arena's rule): the intermediates are the roots of non-leaf, non-output nodes; one is live from
the node computing it to the last node that uses it (as a source through any view, or as a write
destination). A greedy list scheduler picks, among ready nodes, the one with the least (bytes it
allocates - bytes it frees), ties by original order. The new order is kept only when its peak is lower;
otherwise the original order stays.
"""
from __future__ import annotations

from ..ir import Flag, Graph, Tensor
from ..program import root_of, written_roots
from .rewrite import clone, is_writer, reads


def is_intermediate(t: Tensor) -> bool:
    return not t.is_leaf and t.view_src is None and not t.has(Flag.OUTPUT)


def _uses(n: Tensor) -> list[Tensor]:
    """Roots whose memory node n touches (sources through views, and a writer's destination)."""
    out: list[Tensor] = []
    for t in [s for s in n.src if s is not None] + ([n.view_src] if n.view_src is not None else []):
        r = root_of(t)
        if all(r is not o for o in out):
            out.append(r)
    return out


def peak_bytes(nodes: list[Tensor]) -> int:
    """Max bytes of intermediates live at once when the nodes run in this order."""
    last: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for r in _uses(n):
            last[id(r)] = i
    live = peak = 0
    by_step: dict[int, list[Tensor]] = {}
    for i, n in enumerate(nodes):
        if is_intermediate(n):
            live += n.nbytes
            by_step.setdefault(last.get(id(n), i), []).append(n)
        peak = max(peak, live)
        for r in by_step.pop(i, ()):
            live -= r.nbytes
    return peak


def dependencies(nodes: list[Tensor]) -> list[set[int]]:
    """deps[i]: indices of the nodes that must run before node i (data and memory-order edges)."""
    index = {id(n): i for i, n in enumerate(nodes)}
    deps: list[set[int]] = [set() for _ in nodes]
    last_write: dict[int, int] = {}
    reads_since: dict[int, list[int]] = {}
    written = written_roots(nodes)
    for i, n in enumerate(nodes):
        for t in list(n.src) + [n.view_src]:
            if t is not None and id(t) in index:
                deps[i].add(index[id(t)])
        for r in reads(n):
            if id(r) in written:
                if id(r) in last_write:
                    deps[i].add(last_write[id(r)])
                reads_since.setdefault(id(r), []).append(i)
        if is_writer(n):
            r = id(n.view_src)
            if r in last_write:
                deps[i].add(last_write[r])
            deps[i].update(reads_since.pop(r, ()))
            last_write[r] = i
        deps[i].discard(i)
    return deps


def greedy_order(nodes: list[Tensor]) -> list[int]:
    deps = dependencies(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    # uses_left[id(root)]: nodes still to run that touch that intermediate root
    touch: list[list[Tensor]] = [[r for r in _uses(n) if is_intermediate(r)] for n in nodes]
    uses_left: dict[int, int] = {}
    for rs in touch:
        for r in rs:
            uses_left[id(r)] = uses_left.get(id(r), 0) + 1
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []

    def cost(i: int) -> int:
        n = nodes[i]
        alloc = n.nbytes if is_intermediate(n) and uses_left.get(id(n), 0) else 0
        freed = sum(r.nbytes for r in touch[i] if uses_left[id(r)] == 1)
        return alloc - freed

    while ready:
        best = min(ready, key=lambda i: (cost(i), i))
        ready.remove(best)
        order.append(best)
        for r in touch[best]:
            uses_left[id(r)] -= 1
        for u in users[best]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    assert len(order) == len(nodes), "dependency cycle"
    return order


def schedule(graph: Graph, stats: dict[str, int] | None = None) -> Graph:
    g = clone(graph)
    before = peak_bytes(g.nodes)
    order = [g.nodes[i] for i in greedy_order(g.nodes)]
    after = peak_bytes(order)
    accepted = after < before
    if accepted:
        moved = sum(1 for a, b in zip(order, g.nodes) if a is not b)
        g.nodes = order
    if stats is not None:
        stats["peak before"] = before
        stats["peak after"] = after if accepted else before
        stats["nodes moved"] = moved if accepted else 0
    return g

