"""Canonicalisation: one strided view per alias chain, no redundant copies, no no-op ops, constants folded.

Rules (each keeps every value any output or state sees bit-identical):
- alias chains: permute/transpose of permute/transpose -> one permute (identity: removed); reshape of
  reshape -> one reshape; view or reshape of any alias with the base's nb0 -> one view of the base; an
  alias that describes exactly its source (same type, ne, nb, offset) -> its source.
- copies: cont/dup of a tensor that already has the result's layout -> the tensor itself; cpy(a, b) into
  a scratch leaf b that nothing else touches, with a's layout -> a.
- no-ops: scale by 1 with bias 0; add/sub of an all-zero constant; mul/div by an all-one constant.
  A removed copy or no-op X of Y is only replaced by Y when X's memory is never written into and no
  writer changes Y's memory after X (else a reader of X would see the newer bytes). An output X keeps
  its node (and name); only its consumers are rewired.
- outputs: an output left viewing a computed tensor (its source copy removed above) gets a copy of its own
  (graphc.passes.rewrite.materialise_output_views), so that tensor never sits in the reused arena.
- constants: a node whose sources are all constants (leafs without input/param/state flags with data,
  or views of such leafs that nothing writes) is computed once by the ref interpreter and becomes a
  constant leaf, unless its result exceeds FOLD_LIMIT bytes or its ref result depends on target options.
"""
from __future__ import annotations

import numpy as np

from ..ir import Flag, Graph, Tensor
from ..ops import Decl
from ..program import root_of
from .rewrite import (OBSERVABLE, clone, is_alias, is_writer, layout_equal, materialise_output_views, remake,
                      replace_uses, writers_by_root)

FOLD_LIMIT = 1 << 20          # bytes: larger constants are cheaper to compute than to store
# ops whose ref result depends on a target option (quant_matmul) or on user code: not folded
_NO_FOLD_OPS = {"mul_mat", "custom"}


def canonicalize(graph: Graph, stats: dict[str, int] | None = None) -> Graph:
    g = clone(graph)
    c = _Canon(g)
    for n in list(g.nodes):
        if id(n) in c.gone:
            continue
        if is_alias(n):
            c.alias(n)
        elif n.op in ("cont", "dup", "cpy", "scale", "add", "sub", "mul", "div"):
            c.copy_or_noop(n)
        if id(n) not in c.gone and not is_alias(n) and not is_writer(n):
            c.fold(n)
    c.drop_bypassed()
    g.nodes = [n for n in g.nodes if id(n) not in c.gone and not n.is_leaf]
    # an output view whose source copy was removed may now view a computed tensor: give it its own copy
    c.stats["output copies"] = materialise_output_views(g)
    if stats is not None:
        stats.update(c.stats)
    return g


def _offs(t: Tensor) -> int:
    return t.view_offs if t.is_view else 0


def _compose(p1: tuple[int, ...], p2: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Axes of permute(permute(x, p1), p2): dim i of x lands at p2[p1[i]]."""
    return tuple(p2[p1[i]] for i in range(4))  # type: ignore[return-value]


def _axes(t: Tensor) -> tuple[int, ...]:
    return (1, 0, 2, 3) if t.op == "transpose" else tuple(t.params["axes"])


class _Canon:
    def __init__(self, g: Graph):
        self.g = g
        self.pos = {id(n): i for i, n in enumerate(g.nodes)}
        self.writers = writers_by_root(g)
        self.gone: set[int] = set()
        self.bypassed: list[Tensor] = []      # aliases a merged view no longer reads through
        self.stats = {"views merged": 0, "aliases removed": 0, "copies removed": 0, "no-ops removed": 0,
                      "constants folded": 0}

    # --- replacing a node by an equivalent tensor ------------------------------------------------
    def _forward(self, x: Tensor, y: Tensor, what: str) -> bool:
        """Consumers of x read y instead (layouts equal); x goes away unless it is an output."""
        if not layout_equal(x, y):
            return False
        if x.view_src is None and self.writers.get(id(x)):
            return False                      # something writes into x's own memory later
        if not is_alias(x):                   # x is a snapshot copy: y must not change after it
            px = self.pos[id(x)]
            if any(self.pos[id(w)] > px for w in self.writers.get(id(root_of(y)), [])):
                return False
        replace_uses(self.g, x, y)
        if not x.has(Flag.OUTPUT):
            self.gone.add(id(x))
            self.stats[what] += 1
        return True

    # --- alias chains ---------------------------------------------------------------------------
    def alias(self, n: Tensor) -> None:
        for _ in range(16):                   # each step shortens the chain; chains are short
            s = n.src[0]
            if layout_equal(n, s) and root_of(n) is root_of(s) and n.view_offs == _offs(s):
                self._forward(n, s, "aliases removed")
                return
            if not is_alias(s) or not self._merge(n, s):
                return

    def _merge(self, n: Tensor, s: Tensor) -> bool:
        base = s.src[0]
        if n.op in ("permute", "transpose") and s.op in ("permute", "transpose"):
            # an identity permute is removed by the next round's identity check (kept if an output)
            remake(n, "permute", [base], {"axes": _compose(_axes(s), _axes(n))})
        elif n.op == "reshape" and s.op == "reshape":
            remake(n, "reshape", [base], decl=Decl(None, n.ne))
        elif n.op in ("view", "reshape") and n.nb[0] == base.nb[0] and n.view_offs >= _offs(base):
            remake(n, "view", [base], {"offset": n.view_offs - _offs(base)}, Decl(None, n.ne, n.nb))
        else:
            return False
        self.bypassed.append(s)
        self.stats["views merged"] += 1
        return True

    def drop_bypassed(self) -> None:
        """Aliases left without users by merging go (they compute nothing; an output stays)."""
        used = {id(s) for n in self.g.nodes if id(n) not in self.gone for s in n.src if s is not None}
        todo = list(self.bypassed)
        while todo:
            s = todo.pop()
            if id(s) in self.gone or id(s) in used or s.has(Flag.OUTPUT):
                continue
            self.gone.add(id(s))
            if is_alias(s.src[0]):
                used = {id(x) for n in self.g.nodes if id(n) not in self.gone for x in n.src if x is not None}
                todo.append(s.src[0])

    # --- copies and no-ops ------------------------------------------------------------------------
    def copy_or_noop(self, n: Tensor) -> None:
        a = n.src[0]
        if n.op in ("cont", "dup"):
            self._forward(n, a, "copies removed")
        elif n.op == "cpy":
            b = n.src[1]
            if b.is_leaf and not b.flags and b.data is None and a.type is b.type and self._only_user(b, n):
                self._forward(n, a, "copies removed")
        elif n.op == "scale":
            if n.params["s"] == 1.0 and n.params["b"] == 0.0:
                self._forward(n, a, "no-ops removed")
        else:
            neutral = 0.0 if n.op in ("add", "sub") else 1.0
            vals = _constant_values(n.src[1], self.writers)
            if vals is not None and vals.size and np.all(vals == neutral):
                self._forward(n, a, "no-ops removed")

    def _only_user(self, b: Tensor, n: Tensor) -> bool:
        return all(t is n or (all(s is not b for s in t.src) and t.view_src is not b) for t in self.g.nodes)

    # --- constant folding -------------------------------------------------------------------------
    def _is_const(self, t: Tensor) -> bool:
        r = root_of(t)
        if not (r.is_leaf and not (r.flags & OBSERVABLE) and r.data is not None and not self.writers.get(id(r))):
            return False
        while is_alias(t):                    # views of a constant are constant
            t = t.src[0]
        return t is r

    def fold(self, n: Tensor) -> None:
        if n.op in _NO_FOLD_OPS or n.nbytes > FOLD_LIMIT or self.writers.get(id(n)):
            return
        srcs = [s for s in n.src if s is not None]
        if not all(self._is_const(s) for s in srcs):
            return
        data = _evaluate(n, srcs, self.pos)
        if data is None:
            return
        n.op, n.src, n.params, n.data = "none", (), {}, data
        self.g.leafs.append(n)
        self.stats["constants folded"] += 1


def _constant_values(t: Tensor, writers: dict[int, list[Tensor]]) -> np.ndarray | None:
    """The values of a contiguous f32/f16 constant leaf nothing writes, else None."""
    if not (t.is_leaf and not (t.flags & OBSERVABLE) and t.data is not None and not writers.get(id(t))):
        return None
    dt = {"f32": np.float32, "f16": np.float16}.get(t.type.name)
    if dt is None:
        return None
    return np.asarray(t.data, dtype=np.uint8).reshape(-1).view(dt)


def _evaluate(n: Tensor, srcs: list[Tensor], pos: dict[int, int]) -> np.ndarray | None:
    """n's bytes computed by the ref interpreter on the constant subgraph that feeds it."""
    from graphc.targets.ref import RefExecutable
    leafs: list[Tensor] = []
    chain: list[Tensor] = []
    todo = list(srcs)
    while todo:
        t = todo.pop()
        if any(t is o for o in leafs + chain):
            continue
        if t.is_leaf:
            leafs.append(t)
        else:
            chain.append(t)
            todo.extend(s for s in t.src if s is not None)
    chain.sort(key=lambda t: pos[id(t)])
    try:
        ex = RefExecutable(Graph("fold", leafs, chain + [n]))
        ex.run()
        return np.array(ex.mem.byte_span(n), dtype=np.uint8, copy=True)
    except Exception:  # noqa: BLE001 - an op that fails on constants fails at run time too: leave it there
        return None
