"""One-arena memory planning for a Program (issue 4 point 7): liveness, placement, in-place reuse, a checker.

A root tensor needs memory iff it, or a view of it, is some kernel's output ("materialised"). Its live
interval runs, in schedule (kernel) order, from the kernel that computes it to the last kernel that reads
or writes it through any view. Roots in region "arena" (graphc.program.region_of) share one buffer;
inputs, outputs, state and weights keep their own persistent regions and are not planned here.

Placement follows ggml-alloc (ggml-reference §6): walk the kernels, allocate what each produces by best
fit from a coalescing free list (else grow the tail), then free what dies there; an in-place-capable op
takes over its source's block when ggml's rules allow. A second, offline packing (largest first, each at
the best-fitting gap among the blocks it shares time with) is also tried and the smaller arena kept.
check_plan re-derives the intervals from the program itself and proves that no two simultaneously live
tensors overlap; a plan that fails it would corrupt values on any target (ref included).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from .errors import GraphError
from .ir import Tensor
from .ops import get_op
from .program import ALIAS_ONLY, ALIGN, ArenaPlan, Program, materialised, region_of, root_of

__all__ = ["Interval", "liveness", "plan", "check_plan", "report", "svg"]


@dataclass(eq=False)
class Interval:
    root: Tensor
    first: int        # kernel index that computes the root
    last: int         # last kernel index that reads or writes it (through any view)
    size: int         # root.nbytes

    def overlaps(self, other: "Interval") -> bool:
        return self.first <= other.last and other.first <= self.last


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def liveness(program: Program) -> dict[int, Interval]:
    """id(root) -> live interval of every materialised arena root, in schedule order."""
    mat = materialised(program)
    ivs: dict[int, Interval] = {}
    producer: dict[int, int] = {}
    for ki, k in enumerate(program.kernels):
        for n in k.nodes:
            if not n.is_view:
                producer[id(n)] = ki
            for x in (n, *n.src, *k.inputs):
                if x is None:
                    continue
                r = root_of(x)
                if id(r) not in mat or region_of(r) != "arena":
                    continue
                iv = ivs.get(id(r))
                if iv is None:
                    ivs[id(r)] = Interval(r, ki, ki, r.nbytes)
                else:
                    iv.last = max(iv.last, ki)
    for rid, iv in ivs.items():
        if producer.get(rid) != iv.first:
            raise GraphError(f"tensor {iv.root.name!r} is used in kernel {iv.first} before the kernel that computes it "
                             f"({producer.get(rid)}): the schedule is not topological", iv.root.name, "schedule")
    return ivs


def _reads(program: Program, ki: int) -> dict[int, int]:
    """id(root) -> how many source slots of kernel ki's nodes read it (through views too) or write it via a
    view (cpy, set_rows); pure views (reshape, permute, ...) touch no memory and count nothing."""
    cnt: dict[int, int] = {}
    for n in program.kernels[ki].nodes:
        if n.op in ALIAS_ONLY:
            continue
        for x in (*n.src, n if n.is_view else None):
            if x is not None:
                cnt[id(root_of(x))] = cnt.get(id(root_of(x)), 0) + 1
    return cnt


def _inplace_source(n: Tensor, ki: int, ivs: dict[int, Interval], reads: dict[int, int],
                    taken: set[int]) -> Tensor | None:
    """ggml's rule (ggml_gallocr_allocate_node): an in-place-capable op reuses a source owned by the arena
    (not an output), of identical type/ne/nb, whose only remaining reader is this node (no other slot in
    this kernel, no later kernel, no live view); a view source counts when it starts at its root's first byte."""
    if n.is_view or not get_op(n.op).inplace_ok or n.nbytes == 0:
        return None
    for s in n.src:
        if s is None:
            continue
        r = root_of(s)
        iv = ivs.get(id(r))
        if (iv is None or iv.last != ki or iv.first >= ki or id(r) in taken or reads.get(id(r)) != 1
                or s.type is not n.type or s.ne != n.ne or s.nb != n.nb or (s.is_view and s.view_offs != 0)):
            continue
        return r
    return None


def _find_inplace(program: Program, ivs: dict[int, Interval]) -> dict[int, int]:
    inplace: dict[int, int] = {}
    by_first: dict[int, list[Interval]] = {}
    for iv in ivs.values():
        by_first.setdefault(iv.first, []).append(iv)
    for ki in sorted(by_first):
        reads = _reads(program, ki)
        taken: set[int] = set()
        for iv in by_first[ki]:
            src = _inplace_source(iv.root, ki, ivs, reads, taken)
            if src is not None:
                taken.add(id(src))
                inplace[id(iv.root)] = id(src)
    return inplace


# --- placement ------------------------------------------------------------------------------

class _FreeList:
    """ggml's dynamic allocator: free blocks sorted by offset (coalesced) below `end`, the tail above it."""

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []    # [offset, size]
        self.end = 0
        self.high = 0

    def alloc(self, size: int) -> int:
        best = -1
        for i, (_, bs) in enumerate(self.blocks):
            if bs >= size and (best < 0 or bs < self.blocks[best][1]):
                best = i
        if best >= 0:
            off = self.blocks[best][0]
            self.blocks[best][0] += size
            self.blocks[best][1] -= size
            if self.blocks[best][1] == 0:
                del self.blocks[best]
            return off
        # grow the tail; a free block touching it is part of it
        if self.blocks and self.blocks[-1][0] + self.blocks[-1][1] == self.end:
            self.end = self.blocks.pop()[0]
        off = self.end
        self.end += size
        self.high = max(self.high, self.end)
        return off

    def free(self, off: int, size: int) -> None:
        if size == 0:
            return
        i = 0
        while i < len(self.blocks) and self.blocks[i][0] < off:
            i += 1
        self.blocks.insert(i, [off, size])
        if i + 1 < len(self.blocks) and off + size == self.blocks[i + 1][0]:      # merge right
            self.blocks[i][1] += self.blocks.pop(i + 1)[1]
        if i > 0 and self.blocks[i - 1][0] + self.blocks[i - 1][1] == off:        # merge left
            self.blocks[i - 1][1] += self.blocks.pop(i)[1]
            i -= 1
        if self.blocks[i][0] + self.blocks[i][1] == self.end:                      # back into the tail
            self.end = self.blocks.pop(i)[0]


def _groups(ivs: dict[int, Interval], inplace: dict[int, int], align: int) -> dict[int, list[Interval]]:
    """In-place chains (head root id -> members in order): one block shared over their joint interval."""
    head = {}
    for rid in ivs:
        h = rid
        while h in inplace:
            h = inplace[h]
        head[rid] = h
    groups: dict[int, list[Interval]] = {}
    for rid, iv in ivs.items():
        groups.setdefault(head[rid], []).append(iv)
    for g in groups.values():
        g.sort(key=lambda iv: iv.first)
    return groups


def _best_fit_online(ivs: dict[int, Interval], inplace: dict[int, int], align: int,
                     largest_first: bool = False) -> tuple[dict[int, int], int]:
    """ggml's order: tensors allocated as kernels create them; `largest_first` takes the tensors born at the
    same kernel biggest first (the small ones then fill what the big ones leave)."""
    fl = _FreeList()
    offsets: dict[int, int] = {}
    block: dict[int, tuple[int, int]] = {}      # id(root) -> (offset, aligned size) it owns
    events: dict[int, tuple[list[Interval], list[Interval]]] = {}
    for iv in ivs.values():
        events.setdefault(iv.first, ([], []))[0].append(iv)
        events.setdefault(iv.last, ([], []))[1].append(iv)
    for ki in sorted(events):
        born, dying = events[ki]
        if largest_first:
            born = sorted(born, key=lambda iv: -iv.size)
        for iv in born:
            rid = id(iv.root)
            if rid in inplace:                  # take over the source's whole block; it is not freed
                blk = block.pop(inplace[rid])
            elif iv.size == 0:
                blk = (0, 0)
            else:
                size = _align(iv.size, align)
                blk = (fl.alloc(size), size)
            block[rid] = blk
            offsets[rid] = blk[0]
        for iv in dying:
            blk = block.pop(id(iv.root), None)     # None: handed on in place
            if blk is not None:
                fl.free(*blk)
    return offsets, fl.high


def _greedy_by_size(ivs: dict[int, Interval], inplace: dict[int, int], align: int) -> tuple[dict[int, int], int]:
    """Offline: largest block first, at the smallest gap (among blocks live at the same time) that fits."""
    groups = list(_groups(ivs, inplace, align).values())
    items = [(max(_align(iv.size, align) for iv in g), g[0].first, max(iv.last for iv in g), g) for g in groups]
    items.sort(key=lambda it: (-it[0], it[1], -it[2]))
    n = len(items)
    pf = np.zeros(n, np.int64)      # placed blocks: first, last, offset, end
    pl = np.zeros(n, np.int64)
    po = np.zeros(n, np.int64)
    pe = np.zeros(n, np.int64)
    m = 0
    offsets: dict[int, int] = {}
    high = 0
    for size, first, last, g in items:
        off = 0
        if size and m:
            sel = (pf[:m] <= last) & (first <= pl[:m]) & (pe[:m] > po[:m])
            if sel.any():
                o, e = po[:m][sel], pe[:m][sel]
                order = np.argsort(o, kind="stable")
                o, e = o[order], e[order]
                reach = np.maximum.accumulate(e)                 # end of everything below each block
                gap_start = np.concatenate(([0], reach))
                gap_end = np.concatenate((o, [np.iinfo(np.int64).max]))
                gap = gap_end - gap_start
                fits = np.nonzero(gap >= size)[0]
                best = fits[np.argmin(gap[fits])]
                off = int(gap_start[best])
        if size:
            pf[m], pl[m], po[m], pe[m] = first, last, off, off + size
            m += 1
            high = max(high, off + size)
        for iv in g:
            offsets[id(iv.root)] = off
    return offsets, high


# Every packer is a heuristic that some interval sets defeat; the plan keeps the smallest arena of all of them.
PACKERS = (("best-fit", _best_fit_online),
           ("best-fit largest-first", lambda ivs, inplace, align: _best_fit_online(ivs, inplace, align, True)),
           ("greedy-by-size", _greedy_by_size))


def _lower_bound(ivs: dict[int, Interval], inplace: dict[int, int]) -> int:
    """max over kernels of the bytes live there; an in-place result shares its source's bytes where it starts."""
    if not ivs:
        return 0
    steps = max(iv.last for iv in ivs.values()) + 2
    delta = np.zeros(steps, np.int64)
    for rid, iv in ivs.items():
        start = iv.first + 1 if rid in inplace else iv.first
        if start <= iv.last:
            delta[start] += iv.size
            delta[iv.last + 1] -= iv.size
    return int(np.cumsum(delta).max(initial=0))


def plan(program: Program, align: int = ALIGN) -> Program:
    """Place every materialised arena root at an `align`-aligned offset of one arena; sets program.plan."""
    if align <= 0 or align & (align - 1):
        raise GraphError(f"arena alignment must be a power of two, got {align}", "", "align")
    t0 = time.perf_counter()
    ivs = liveness(program)
    inplace = _find_inplace(program, ivs)
    candidates = [(name, *packer(ivs, inplace, align)) for name, packer in PACKERS]
    how, offsets, size = min(candidates, key=lambda c: c[2])
    program.plan = ArenaPlan(offsets=offsets, size=size, lower_bound=_lower_bound(ivs, inplace),
                             naive=sum(iv.size for iv in ivs.values()), inplace=inplace, align=align)
    p = program.plan
    program.log.append(f"plan: {len(ivs)} arena tensors, {len(inplace)} in place, arena {p.size:,d} B "
                       f"({how}; tried {', '.join(f'{c[0]} {c[2]:,d}' for c in candidates)}), "
                       f"lower bound {p.lower_bound:,d} B, naive {p.naive:,d} B "
                       f"[{(time.perf_counter() - t0) * 1e3:.1f} ms]")
    return program


# --- checking -------------------------------------------------------------------------------

def check_plan(program: Program) -> None:
    """Prove the plan safe: every materialised arena root placed, aligned, inside the arena, and no two
    tensors live at the same kernel share a byte, except an in-place pair where the result starts exactly
    where its source dies. Raises GraphError naming the tensors otherwise."""
    p = program.plan
    if p is None:
        raise GraphError("program has no memory plan (run graphc.memplan.plan first)", "", "plan")
    align = p.align
    ivs = liveness(program)
    for rid, iv in ivs.items():
        name = iv.root.name
        if rid not in p.offsets:
            raise GraphError(f"arena tensor {name!r} has no offset in the plan", name, "plan")
        off = p.offsets[rid]
        if off < 0 or off % align:
            raise GraphError(f"arena tensor {name!r} at offset {off} is not {align}-byte aligned", name, "plan")
        if off + iv.size > p.size:
            raise GraphError(f"arena tensor {name!r} at {off} + {iv.size} bytes runs past the {p.size}-byte arena",
                             name, "plan")
    stray = set(p.offsets) - set(ivs)
    if stray:
        raise GraphError(f"the plan places {len(stray)} tensor(s) that are not materialised arena tensors", "", "plan")
    for rid, sid in p.inplace.items():
        a, s = ivs.get(rid), ivs.get(sid)
        if a is None or s is None or p.offsets[rid] != p.offsets[sid] or a.first != s.last:
            what = a.root.name if a is not None else "?"
            raise GraphError(f"in-place pair {what!r} <- {s.root.name if s else '?'!r} does not start where its "
                             "source dies at the same offset", what, "plan")
    live = [iv for iv in ivs.values() if iv.size > 0]
    n = len(live)
    if n < 2:
        return
    first = np.array([iv.first for iv in live], np.int64)
    last = np.array([iv.last for iv in live], np.int64)
    lo = np.array([p.offsets[id(iv.root)] for iv in live], np.int64)
    hi = lo + np.array([iv.size for iv in live], np.int64)
    pairs = {(rid, sid) for rid, sid in p.inplace.items()}
    for i in range(n - 1):
        clash = (first[i + 1:] <= last[i]) & (first[i] <= last[i + 1:]) & (lo[i + 1:] < hi[i]) & (lo[i] < hi[i + 1:])
        for j in (np.nonzero(clash)[0] + i + 1):
            a, b = live[i], live[int(j)]
            if (((id(a.root), id(b.root)) in pairs and a.first == b.last)
                    or ((id(b.root), id(a.root)) in pairs and b.first == a.last)):
                continue
            raise GraphError(f"arena tensors {a.root.name!r} (bytes {lo[i]}..{hi[i]}, kernels {a.first}..{a.last}) "
                             f"and {b.root.name!r} (bytes {lo[j]}..{hi[j]}, kernels {b.first}..{b.last}) "
                             "are live at the same time in overlapping memory", a.root.name, "plan overlap")


# --- reporting ------------------------------------------------------------------------------

def _show(name: str, width: int = 40) -> str:
    s = name if name.isprintable() and name else repr(name)
    return s if len(s) <= width else s[:width - 1] + "…"


def summary(program: Program) -> str:
    p = program.plan
    if p is None:
        return "no memory plan"
    ratio = p.size / p.lower_bound if p.lower_bound else 1.0
    return (f"arena {p.size:,d} bytes; liveness lower bound {p.lower_bound:,d}; naive sum {p.naive:,d}; "
            f"arena/lower bound {ratio:.3f}; arena/naive {p.size / p.naive if p.naive else 1.0:.3f}; "
            f"{len(p.offsets)} tensors, {len(p.inplace)} in place")


def report(program: Program) -> str:
    """The summary line and one row per arena tensor (by offset, then start)."""
    p = program.plan
    if p is None:
        return "no memory plan"
    ivs = liveness(program)
    names = {id(iv.root): iv.root.name for iv in ivs.values()}
    rows = [("tensor", "kernel", "offset", "size", "live", "in place of")]
    for iv in sorted(ivs.values(), key=lambda iv: (p.offsets[id(iv.root)], iv.first)):
        rid = id(iv.root)
        rows.append((_show(iv.root.name), program.kernels[iv.first].name, f"{p.offsets[rid]:,d}", f"{iv.size:,d}",
                     f"{iv.first}..{iv.last}", _show(names[p.inplace[rid]], 24) if rid in p.inplace else ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    right = {2, 3}
    lines = [summary(program)]
    for r in rows:
        lines.append("  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


def _xml_text(s: str) -> str:
    """Text safe inside XML 1.0 (names are free text: control characters are not allowed there)."""
    return escape("".join(c if c.isprintable() else "?" for c in s))


def svg(program: Program, path: str, width: int = 1000, height: int = 600) -> None:
    """Draw the arena over time: x = kernel index, y = byte offset, one rectangle per tensor."""
    p = program.plan
    if p is None:
        raise GraphError("program has no memory plan to draw", "", "plan")
    ivs = liveness(program)
    n_k = max(len(program.kernels), 1)
    left, top = 60, 30
    sx, sy = width / n_k, height / max(p.size, 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 20}" height="{height + top + 40}" '
           f'font-family="monospace" font-size="11">',
           f'<text x="{left}" y="18">{_xml_text(summary(program))}</text>',
           f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#f8f8f8" stroke="#888"/>',
           f'<line x1="{left}" y1="{top + p.lower_bound * sy:.2f}" x2="{left + width}" '
           f'y2="{top + p.lower_bound * sy:.2f}" stroke="red" stroke-dasharray="4 3"/>',
           f'<text x="{left}" y="{top + height + 15}">kernel 0</text>',
           f'<text x="{left + width}" y="{top + height + 15}" text-anchor="end">kernel {n_k - 1}</text>',
           f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">0</text>',
           f'<text x="{left - 4}" y="{top + height}" text-anchor="end">{p.size:,d}</text>']
    for i, iv in enumerate(sorted(ivs.values(), key=lambda iv: iv.first)):
        off = p.offsets[id(iv.root)]
        hue = (i * 47) % 360
        title = f"{iv.root.name} @{off} +{iv.size} B, kernels {iv.first}..{iv.last}"
        out.append(f'<rect x="{left + iv.first * sx:.2f}" y="{top + off * sy:.2f}" '
                   f'width="{max((iv.last - iv.first + 1) * sx, 0.5):.2f}" height="{max(iv.size * sy, 0.5):.2f}" '
                   f'fill="hsl({hue},60%,65%)" stroke="#333" stroke-width="0.3">'
                   f'<title>{_xml_text(title)}</title></rect>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def planned(what: Any, target: str) -> Program:
    """What a device target (opencl, triton) runs: a Program with its arena plan. A Graph becomes one
    kernel per node (the pass pipeline is the caller's: graphc.compile runs it), a Program without a plan
    is planned."""
    from .errors import CompileError
    from .ir import Graph
    from .program import unfused
    if isinstance(what, Graph):
        what = unfused(what)
    if not isinstance(what, Program):
        raise CompileError(f"target {target} compiles a Graph or a Program, got {type(what).__name__}")
    return what if what.plan is not None else plan(what)
