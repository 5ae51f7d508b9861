"""rope (normal / neox, YaRN, freq_factors) and flash_attn_ext, as ggml-cpu/ops.cpp computes them."""
from __future__ import annotations

import math

import numpy as np

from .libm import cosf, f32, logf, sinf, tanhf, expf
from .matmul import div_broadcast_matmul, weights_times
from .reduce import alibi_slopes, mask_rows
from .registry import impl

F = np.float32


# --- rope -----------------------------------------------------------------------------------

def yarn_corr_dims(n_dims: int, n_ctx_orig: int, freq_base: float, beta_fast: float, beta_slow: float):
    """ggml_rope_yarn_corr_dims, in f32 like the C code (n_ctx_orig = 0 gives (0, -inf))."""
    def corr_dim(n_rot: float) -> np.float32:
        with np.errstate(all="ignore"):
            denom = F(n_rot) * F(2) * F(math.pi)
            return F(n_dims) * logf(F(n_ctx_orig) / denom) / (F(2) * logf(F(freq_base)))
    start = np.floor(corr_dim(beta_fast))
    end = np.ceil(corr_dim(beta_slow))
    low = F(0) if F(0) > start else start                        # MAX(0, start)
    high = F(n_dims - 1) if F(n_dims - 1) < end else end         # MIN(n_dims - 1, end)
    return F(low), F(high)


def rope_cos_sin(pos: np.ndarray, n_dims: int, p: dict, ff: np.ndarray | None):
    """cos and sin (already times mscale), shape (len(pos), n_dims/2), per ggml_rope_cache_init."""
    freq_base, freq_scale = F(p["freq_base"]), F(p["freq_scale"])
    ext_factor, mscale = F(p["ext_factor"]), F(p["attn_factor"])
    theta_scale = F(np.float64(freq_base) ** np.float64(F(-2.0) / F(n_dims)))   # powf(base, -2.0f/n_dims)
    low, high = yarn_corr_dims(n_dims, p["n_ctx_orig"], freq_base, p["beta_fast"], p["beta_slow"])
    half = n_dims // 2
    theta = np.empty((len(pos), half), dtype=np.float32)
    t = pos.astype(np.float32)
    for i in range(half):           # theta *= theta_scale, sequentially in f32 as ggml does
        theta[:, i] = t
        t = t * theta_scale
    theta_extrap = theta / ff[None, :half] if ff is not None else theta
    theta_interp = freq_scale * theta_extrap
    if ext_factor != 0:
        i = np.arange(half, dtype=np.float32)                  # i0/2
        denom = F(0.001) if F(0.001) > high - low else high - low
        y = (i - low) / denom
        ramp = F(1) - np.minimum(F(1), np.maximum(F(0), y))
        mix = ramp * ext_factor
        th = theta_interp * (F(1) - mix) + theta_extrap * mix
        mscale = mscale * (F(1) + F(0.1) * logf(F(1) / freq_scale))
    else:
        th = theta_interp
    return cosf(th) * mscale, sinf(th) * mscale


@impl("rope")
def rope(ctx, node):
    a, pos_t = node.src[0], node.src[1]
    ff_t = node.src[2] if len(node.src) > 2 else None
    x = f32(ctx.load(a))                                    # (ne3, ne2 tokens, ne1 heads, ne0)
    p = node.params
    n_dims, mode = p["n_dims"], p["mode"]
    pos = ctx.load(pos_t).reshape(-1)[:x.shape[1]].astype(np.int64)
    ff = f32(ctx.load(ff_t)).reshape(-1) if ff_t is not None else None
    c, s = rope_cos_sin(pos, n_dims, p, ff)
    c, s = c[None, :, None, :], s[None, :, None, :]
    out = x.copy()
    if mode == 0:        # normal: adjacent pairs (x[2i], x[2i+1])
        x0, x1 = x[..., 0:n_dims:2], x[..., 1:n_dims:2]
        out[..., 0:n_dims:2] = x0 * c - x1 * s
        out[..., 1:n_dims:2] = x0 * s + x1 * c
    elif mode == 2:      # neox: (x[i], x[i + n_dims/2])
        h = n_dims // 2
        x0, x1 = x[..., :h], x[..., h:n_dims]
        out[..., :h] = x0 * c - x1 * s
        out[..., h:n_dims] = x0 * s + x1 * c
    else:
        raise NotImplementedError(f"rope mode {mode}")
    return out


# --- flash_attn_ext -------------------------------------------------------------------------

@impl("flash_attn_ext")
def flash_attn_ext(ctx, node):
    """softmax(scale*K.Q (softcapped) + slope*mask) V, per query row; result ne [DV, n_head, n_q, ne3].

    As ggml: Q goes through K's vec_dot_type (f16 K: Q rounded to f16; quantized K: quantized Q),
    the mask is read as f16, positions whose mask is -inf are skipped, a row with nothing left is 0,
    and sinks add exp(sink - max) to the denominator. Not reproduced: ggml's CPU kernel accumulates
    V*p in an f16 buffer when V is f16 (an implementation precision detail); here it is f32/f64.
    """
    q_t, k_t, v_t = node.src[0], node.src[1], node.src[2]
    mask_t = node.src[3] if len(node.src) > 3 else None
    sinks_t = node.src[4] if len(node.src) > 4 else None
    prm = node.params
    scale, softcap = F(prm.get("scale", 1.0)), F(prm.get("softcap", 0.0))
    if softcap != 0:
        scale = scale / softcap
    q = f32(ctx.load(q_t))                                   # (q3, H, N, DK)
    s = weights_times(ctx, k_t, q) * scale                  # (q3, H, N, n_kv)
    if softcap != 0:
        s = softcap * tanhf(s)
    valid = np.ones(s.shape, dtype=bool)
    if mask_t is not None:
        m = ctx.load(mask_t).astype(np.float16).astype(np.float32)   # ggml reads the mask as f16
        mv = alibi_slopes(s.shape[1], prm.get("max_bias", 0.0))[None, :, None, None] * mask_rows(m, s.shape)
        valid = mv != -np.inf
        with np.errstate(invalid="ignore"):
            s = s + mv
    with np.errstate(all="ignore"):
        mx = np.max(np.where(valid, s, -np.inf), axis=-1, keepdims=True)
        if sinks_t is not None:
            sk = f32(ctx.load(sinks_t)).reshape(-1)[None, :, None, None]
            mx = np.maximum(mx, sk)
        pexp = np.where(valid, expf(s - mx), F(0))
        total = f32(np.sum(pexp.astype(np.float64), axis=-1, keepdims=True))
        if sinks_t is not None:
            total = total + expf(sk - mx)
        v = f32(ctx.load(v_t))                               # (v3, Hv, n_kv, DV)
        vkq = f32(div_broadcast_matmul(pexp, v))             # (q3, H, N, DV)
        inv = np.where(total == 0, F(0), F(1) / total)
        out = vkq * inv
    return out.transpose(0, 2, 1, 3)                        # permute(0, 2, 1, 3): (q3, N, H, DV)
