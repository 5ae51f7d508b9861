"""Launchers of kernels/triton/rwkv.py: one program per (sequence, head) (wkv6 / wkv7) or per BLOCK
channels (wkv4)."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher, pow2

NAMES = {"rwkv_wkv6": ("K", "V", "R", "F", "W", "S"), "rwkv_wkv7": ("R", "W", "K", "V", "A", "B", "S"),
         "rwkv_wkv4": ("K", "V", "W", "U", "S")}


@launcher("rwkv_wkv6", "rwkv_wkv7", "rwkv_wkv4")
def rwkv(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    if n.type.name != "f32":
        raise cx.unsupported(st, f"{n.type.name} result")
    state = n.src[-1]
    consts = {f"{x}T": s.type.id for x, s in zip(NAMES[st.op], n.src)}
    consts["DT"] = n.type.id
    if st.op == "rwkv_wkv4":
        C = n.src[0].ne[0]
        block = pow2(C, 16, 256)
        return [Launch("lib", "wkv4", ((C + block - 1) // block,), cx.tensors(st), {**consts, "BLOCK": block})]
    k = n.src[0] if st.op == "rwkv_wkv6" else n.src[2]
    if state.ne[1] <= 0 or k.ne[2] % state.ne[1]:
        raise cx.unsupported(st, f"{k.ne[2]} tokens over {state.ne[1]} sequences")
    return [Launch("lib", st.op[len("rwkv_"):], (state.ne[1] * k.ne[1],), cx.tensors(st),
                   {**consts, "BS": pow2(k.ne[0], 16)})]
