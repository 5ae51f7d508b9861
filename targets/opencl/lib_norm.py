"""Launchers of kernels/opencl/norm.cl: row reductions and normalisations, one work-group per row."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher


def rows_of(t) -> int:
    return t.ne[1] * t.ne[2] * t.ne[3]


@launcher("norm", "rms_norm", "l2_norm", "sum_rows", "mean", "soft_max")
def per_row(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    a = st.nodes[0].src[0]
    L = cx.work_group(256)
    return [Launch(f"gc_{st.op}", cx.slots(st), (rows_of(a) * L,), (L,))]


@launcher("argmax")
def argmax(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    a = st.nodes[0].src[0]
    L = cx.work_group(256)
    return [Launch("gc_argmax", cx.slots(st), (a.ne[1] * L,), (L,))]


@launcher("sum")
def sum_(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    L = cx.work_group(256)
    return [Launch("gc_sum", cx.slots(st), (L,), (L,))]


@launcher("group_norm")
def group_norm(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    a = st.nodes[0].src[0]
    G = max(1, int(st.params.get("n_groups", 1)))
    per = (a.ne[2] + G - 1) // G
    ngr = (a.ne[2] + per - 1) // per if per > 0 else 0
    L = cx.work_group(256)
    return [Launch("gc_group_norm", cx.slots(st), (ngr * a.ne[3] * L,), (L,))]
