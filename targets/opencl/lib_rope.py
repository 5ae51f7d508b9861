"""Launcher of kernels/opencl/rope.cl: one work-group per row, its work-items over the rotated pairs."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher


@launcher("rope")
def rope(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    a = st.nodes[0].src[0]
    L = cx.work_group(64)
    return [Launch("gc_rope", cx.slots(st), (a.ne[1] * a.ne[2] * a.ne[3] * L,), (L,))]
