"""Launcher of kernels/opencl/attn.cl: flash_attn_ext, one work-group per query row."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher

FA_D, FA_L = 1024, 64          # kernels/opencl/attn.cl: GC_FA_D, GC_FA_L


@launcher("flash_attn_ext")
def flash_attn_ext(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    q, k, v = n.src[0], n.src[1], n.src[2]
    L = cx.work_group(FA_L)
    if max(q.ne[0], v.ne[0]) > FA_D or v.ne[0] > L * (FA_D // FA_L):
        raise cx.unsupported(st, f"head dimensions {q.ne[0]}/{v.ne[0]} above {FA_D}")
    for t in (q, k, v):
        if t.type.blck > 1 and t.nb[0] != t.type.size:
            raise cx.unsupported(st, f"{t.type.name} rows with gaps")
    rows = q.ne[1] * q.ne[2] * q.ne[3]
    return [Launch("gc_flash_attn_ext", cx.slots(st), (rows * L,), (L,))]
