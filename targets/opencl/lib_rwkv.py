"""Launchers of kernels/opencl/rwkv.cl: one work-item per state column / row (wkv6 / wkv7) or channel (wkv4)."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher


@launcher("rwkv_wkv6", "rwkv_wkv7", "rwkv_wkv4")
def rwkv(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    if n.type.name != "f32":
        raise cx.unsupported(st, f"{n.type.name} result")
    if st.op == "rwkv_wkv4":
        items = n.src[0].ne[0]
    else:
        k = n.src[0] if st.op == "rwkv_wkv6" else n.src[2]
        state = n.src[-1]
        items = state.ne[1] * k.ne[1] * k.ne[0]
    L = cx.work_group(64)
    return [Launch(f"gc_{st.op}", cx.slots(st), ((items + L - 1) // L * L,), (L,))]
