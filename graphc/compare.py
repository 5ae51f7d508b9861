"""Structural equality of graphs: what a lossless round trip (text, export, ...) must keep.

Two graphs are equal when their leaf and node lists match position by position: names, types, ne,
nb, ops, params (floats bit for bit, so -0.0 != 0.0 and nan == nan of the same bits), flags,
weight bindings, data bytes, and the wiring: each source and view_src is compared by its position
in the graph, not by identity or name (names need not be unique).
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .ir import Graph, Tensor


def graphs_equal(a: Graph, b: Graph) -> bool:
    return graph_diff(a, b) is None


def graph_diff(a: Graph, b: Graph) -> str | None:
    """None when `a` and `b` are structurally equal, else the first difference in words."""
    if a.name != b.name:
        return f"graph name {a.name!r} != {b.name!r}"
    for what, la, lb in (("leafs", a.leafs, b.leafs), ("nodes", a.nodes, b.nodes)):
        if len(la) != len(lb):
            return f"{len(la)} {what} != {len(lb)} {what}"
    pos_a, pos_b = _positions(a), _positions(b)
    for what, la, lb in (("leaf", a.leafs, b.leafs), ("node", a.nodes, b.nodes)):
        for i, (x, y) in enumerate(zip(la, lb)):
            d = tensor_diff(x, y, pos_a, pos_b)
            if d is not None:
                return f"{what} {i} ({x.name!r}): {d}"
    return None


def _positions(g: Graph) -> dict[int, str]:
    pos = {id(t): f"leaf {i}" for i, t in enumerate(g.leafs)}
    pos.update({id(t): f"node {i}" for i, t in enumerate(g.nodes)})
    return pos


def _where(t: Tensor | None, pos: dict[int, str]) -> str | None:
    if t is None:
        return None
    return pos.get(id(t), f"outside the graph ({t.name!r})")


def tensor_diff(x: Tensor, y: Tensor, pos_x: dict[int, str], pos_y: dict[int, str]) -> str | None:
    """The first field in which x and y differ; sources and views are compared by graph position."""
    fields = [
        ("name", x.name, y.name), ("type", x.type.name, y.type.name),
        ("ne", _ints(x.ne), _ints(y.ne)), ("nb", _ints(x.nb), _ints(y.nb)),
        ("op", x.op, y.op), ("flags", int(x.flags), int(y.flags)), ("weight", x.weight, y.weight),
        ("view_offs", int(x.view_offs), int(y.view_offs)),
        ("view_src", _where(x.view_src, pos_x), _where(y.view_src, pos_y)),
        ("sources", [_where(s, pos_x) for s in x.src], [_where(s, pos_y) for s in y.src]),
    ]
    for what, u, v in fields:
        if u != v:
            return f"{what} {u!r} != {v!r}"
    if set(x.params) != set(y.params):
        return f"param names {sorted(x.params)} != {sorted(y.params)}"
    for k in x.params:
        if not same_value(x.params[k], y.params[k]):
            return f"param {k} {x.params[k]!r} != {y.params[k]!r}"
    dx, dy = _bytes(x.data), _bytes(y.data)
    if dx != dy:
        if dx is None or dy is None:
            return (f"data {'none' if dx is None else f'{len(dx)} bytes'} != "
                    f"{'none' if dy is None else f'{len(dy)} bytes'}")
        first = next((i for i in range(min(len(dx), len(dy))) if dx[i] != dy[i]), min(len(dx), len(dy)))
        return f"data differs ({len(dx)} vs {len(dy)} bytes, first at byte {first})"
    return None


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same kind; floats bit for bit."""
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return (isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating))
                and struct.pack("<d", float(a)) == struct.pack("<d", float(b)))
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(same_value(u, v) for u, v in zip(a, b)))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _ints(xs) -> tuple[int, ...]:
    return tuple(int(v) for v in xs)


def _bytes(d: np.ndarray | None) -> bytes | None:
    return None if d is None else np.ascontiguousarray(d).tobytes()
