"""Launchers of kernels/opencl/norm.cl: row reductions and normalisations, one work-group per row."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher


def rows_of(t) -> int:
    return t.ne[1] * t.ne[2] * t.ne[3]


@launcher("norm", "rms_norm", "l2_norm")
def norm(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    a = st.nodes[0].src[0]
    L = cx.work_group(256)
    return [Launch(f"gc_{st.op}", cx.slots(st), (rows_of(a) * L,), (L,))]
