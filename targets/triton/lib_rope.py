"""Launcher of kernels/triton/rope.py: one program per row; the parameter-only factors (theta_scale, YaRN's
correction range, mscale) computed here as targets/ref/attention.py computes them, in f32."""
from __future__ import annotations

import numpy as np

from graphc.codegen.lower import LibStep
from graphc.targets.ref.attention import yarn_corr_dims
from graphc.targets.ref.libm import logf

from .library import Launch, LaunchCtx, launcher, pow2

F = np.float32


@launcher("rope")
def rope(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a, pos = n.src[0], n.src[1]
    ff = n.src[2] if len(n.src) > 2 else None
    p = st.params
    n_dims = int(p["n_dims"])
    if int(p["mode"]) not in (0, 2):
        raise cx.unsupported(st, f"rope mode {p['mode']}")
    if n_dims <= 0 or n_dims > a.ne[0] or n_dims % 2:
        raise cx.unsupported(st, f"n_dims {n_dims} with rows of {a.ne[0]}")
    freq_base, freq_scale, ext = F(p["freq_base"]), F(p["freq_scale"]), F(p["ext_factor"])
    theta_scale = F(np.float64(freq_base) ** np.float64(F(-2.0) / F(n_dims)))
    low, high = yarn_corr_dims(n_dims, p["n_ctx_orig"], freq_base, p["beta_fast"], p["beta_slow"])
    mscale = F(p["attn_factor"])
    if ext != 0:
        mscale = mscale * (F(1) + F(0.1) * logf(F(1) / freq_scale))
    args = cx.tensor(st.dst) + cx.tensor(st.srcs[0]) + cx.tensor(st.srcs[1])
    args += cx.tensor(st.srcs[2] if ff is not None else None)
    args += [n_dims] + [float(v) for v in (theta_scale, freq_scale, ext, low, high, mscale)]
    rows = a.ne[1] * a.ne[2] * a.ne[3]
    return [Launch("lib", "rope", (rows,), args,
                   dict(NEOX=int(p["mode"]) == 2, HAS_FF=ff is not None, DT=n.type.id, AT=a.type.id,
                        PT=pos.type.id, FT=cx.type_of(ff), HALF=pow2(n_dims // 2, 16),
                        BLOCK=pow2(max(a.ne[0] - n_dims, 1), 16, 256)))]
