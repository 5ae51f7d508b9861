"""Launcher of kernels/triton/attn.py: flash_attn_ext, one program per query row."""
from __future__ import annotations

import numpy as np

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher, pow2

MAX_D = 1024


@launcher("flash_attn_ext")
def flash_attn_ext(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    q, k, v = n.src[0], n.src[1], n.src[2]
    mask = n.src[3] if len(n.src) > 3 else None
    sinks = n.src[4] if len(n.src) > 4 else None
    if max(q.ne[0], v.ne[0]) > MAX_D:
        raise cx.unsupported(st, f"head dimensions {q.ne[0]}/{v.ne[0]} above {MAX_D}")
    for t in (q, k, v):
        if t.type.blck > 1 and t.nb[0] != t.type.size:
            raise cx.unsupported(st, f"{t.type.name} rows with gaps")
    args = cx.tensor(st.dst) + cx.tensor(st.srcs[0]) + cx.tensor(st.srcs[1]) + cx.tensor(st.srcs[2])
    args += cx.tensor(st.srcs[3] if mask is not None else None)
    args += cx.tensor(st.srcs[4] if sinks is not None else None)
    p = st.params
    scale, softcap = float(p.get("scale", 1.0)), float(p.get("softcap", 0.0))
    sc = float(np.float32(scale) / np.float32(softcap)) if softcap != 0.0 else scale
    args += [sc, float(p.get("max_bias", 0.0)), softcap]
    rows = q.ne[1] * q.ne[2] * q.ne[3]
    BD = pow2(q.ne[0], max(16, k.type.blck))
    return [Launch("lib", "flash_attn_ext", (rows,), args,
                   dict(DT=n.type.id, QT=q.type.id, KT=k.type.id, VT=v.type.id, MT=cx.type_of(mask),
                        ST=cx.type_of(sinks), HAS_MASK=mask is not None, HAS_SINKS=sinks is not None,
                        BD=BD, BDV=pow2(v.ne[0], 16), BN=pow2(k.ne[1], 16, 64)))]
