"""Launchers of kernels/opencl/data.cl: copies, gathers, scatters and shape ops."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher

ROW = 64          # work-items per row


def _rows(t) -> int:
    return t.ne[1] * t.ne[2] * t.ne[3]


def _per_row(st: LibStep, cx: LaunchCtx, kernel: str, nrows: int, args=None) -> list[Launch]:
    L = cx.work_group(ROW)
    return [Launch(kernel, cx.slots(st) if args is None else args, (max(nrows, 0) * L,), (L,))]


@launcher("get_rows")
def get_rows(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    if n.type.blck > 1:
        raise cx.unsupported(st, f"get_rows into {n.type.name}")
    return _per_row(st, cx, "gc_get_rows", _rows(n))


@launcher("set_rows")
def set_rows(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    b = n.src[1]
    if n.type.blck > 1 and (n.type.blck != 32 or n.type.name not in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")):
        raise cx.unsupported(st, f"set_rows into {n.type.name}")
    return _per_row(st, cx, "gc_set_rows", _rows(b))


@launcher("cpy", "dup", "cont")
def copy_convert(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a = n.src[0]
    if a.type.blck > 1 and a.type != n.type:
        raise cx.unsupported(st, f"{a.type.name} to {n.type.name}")
    if n.type.blck > 1 and a.type != n.type and n.type.name not in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0"):
        raise cx.unsupported(st, f"quantizing to {n.type.name}")
    return _per_row(st, cx, "gc_copy_convert", _rows(n), cx.tensor(st.dst) + cx.tensor(st.srcs[0]))


@launcher("set")
def set_(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    b = n.src[1]
    out = []
    da, aa = cx.low.args[st.dst], cx.low.args[st.srcs[0]]
    if (da.buf, da.offset) != (aa.buf, aa.offset):          # not in place: dst = a first
        out += _per_row(st, cx, "gc_copy_convert", _rows(n), cx.tensor(st.dst) + cx.tensor(st.srcs[0]))
    total = b.nelements
    L = cx.work_group(64)
    out.append(Launch("gc_set_values", cx.slots(st), ((total + L - 1) // L * L,), (L,)))
    return out


@launcher("concat")
def concat(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    return _per_row(st, cx, "gc_concat", _rows(st.nodes[0]))


@launcher("pad")
def pad(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    return _per_row(st, cx, "gc_pad", _rows(st.nodes[0]))


@launcher("repeat")
def repeat(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    if n.src[0].nelements == 0:
        return []
    return _per_row(st, cx, "gc_repeat", _rows(n))


@launcher("arange")
def arange(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    L = cx.work_group(64)
    return [Launch("gc_arange", cx.slots(st), ((n.ne[0] + L - 1) // L * L,), (L,))]


@launcher("diag_mask_inf", "diag_mask_zero")
def diag_mask(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    return _per_row(st, cx, f"gc_{st.op}", _rows(st.nodes[0].src[0]))
