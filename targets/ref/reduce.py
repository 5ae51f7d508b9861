"""Reductions along ne0 and normalisations (ggml-cpu/ops.cpp): sum, sum_rows, mean, argmax, norm,
rms_norm, l2_norm, group_norm, soft_max. Sums accumulate in float64 like ggml's `ggml_float` and are
rounded to f32 where ggml stores them in a float."""
from __future__ import annotations

import math

import numpy as np

from .libm import expf, f32
from .registry import impl

ONE = np.float32(1.0)


def sum64(x: np.ndarray, axis=-1, keepdims=True) -> np.ndarray:
    return np.sum(x.astype(np.float64), axis=axis, keepdims=keepdims)


@impl("sum")
def sum_(ctx, node):
    return f32(sum64(ctx.load(node.src[0]), axis=None, keepdims=False)).reshape(1, 1, 1, 1)


@impl("sum_rows")
def sum_rows(ctx, node):
    return f32(sum64(ctx.load(node.src[0])))


@impl("mean")
def mean(ctx, node):
    x = ctx.load(node.src[0])
    return f32(sum64(x)) / np.float32(x.shape[-1])


@impl("argmax")
def argmax(ctx, node):
    x = f32(ctx.load(node.src[0]))
    # ggml keeps the LAST index of the maximum: `max = MAX(max, x[i]); if (max == x[i]) idx = i;`
    rev = x[..., ::-1]
    idx = x.shape[-1] - 1 - np.argmax(rev, axis=-1)
    # result ne = [ne1]: numpy (1, 1, 1, ne1)
    return idx.astype(np.int32).reshape(1, 1, 1, -1)


@impl("norm")
def norm(ctx, node):
    x = f32(ctx.load(node.src[0]))
    eps = np.float32(node.params["eps"])
    n = x.shape[-1]
    m = f32(sum64(x)) / np.float32(n)
    d = x - m
    var = f32(sum64(d * d) / n)
    return d * (ONE / np.sqrt(var + eps))


@impl("rms_norm")
def rms_norm(ctx, node):
    x = f32(ctx.load(node.src[0]))
    eps = np.float32(node.params["eps"])
    mean_sq = f32(sum64(x * x) / x.shape[-1])
    return x * (ONE / np.sqrt(mean_sq + eps))


@impl("l2_norm")
def l2_norm(ctx, node):
    x = f32(ctx.load(node.src[0]))
    eps = np.float32(node.params["eps"])
    norm_ = np.sqrt(f32(sum64(x * x)))
    return x * (ONE / np.fmax(norm_, eps))


@impl("group_norm")
def group_norm(ctx, node):
    """Groups of ceil(ne2 / n_groups) channels along ne2 (the last group may be smaller), per ne3."""
    x = f32(ctx.load(node.src[0]))
    eps = np.float32(node.params["eps"])
    n_ch, n_groups = x.shape[1], node.params["n_groups"]
    per = (n_ch + n_groups - 1) // n_groups
    out = np.empty_like(x)
    for start in range(0, n_ch, per):   # one step per group, vectorised inside
        g = x[:, start:start + per]
        n = g.shape[1] * g.shape[2] * g.shape[3]
        m = f32(sum64(g, axis=(1, 2, 3)) / n)
        d = g - m
        var = f32(sum64(d * d, axis=(1, 2, 3)) / n)
        out[:, start:start + per] = d * (ONE / np.sqrt(var + eps))
    return out


def alibi_slopes(n_head: int, max_bias: float) -> np.ndarray:
    """Per-head ALiBi slope (ggml soft_max / flash_attn_ext); all 1 when max_bias == 0."""
    if max_bias <= 0:
        return np.ones(n_head, dtype=np.float32)
    n_log2 = 1 << int(math.floor(math.log2(n_head)))
    mb = np.float32(max_bias)
    m0 = np.float32(2.0 ** float(-mb / np.float32(n_log2)))                     # powf(2, -mb/n_log2)
    m1 = np.float32(2.0 ** float(-(mb / np.float32(2)) / np.float32(n_log2)))  # powf(2, -(mb/2)/n_log2)
    h = np.arange(n_head)
    return np.where(h < n_log2, np.power(np.float64(m0), h + 1),
                    np.power(np.float64(m1), 2 * (h - n_log2) + 1)).astype(np.float32)


def mask_rows(mask: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Mask rows 0..ne1-1 for every (i3, i2): dims 2 and 3 broadcast by modulo."""
    m = mask[:, :, :shape[2], :]
    return np.tile(m, (shape[0] // m.shape[0], shape[1] // m.shape[1], 1, 1))


@impl("soft_max")
def soft_max(ctx, node):
    x = f32(ctx.load(node.src[0]))
    mask_t = node.src[1] if len(node.src) > 1 else None
    sinks_t = node.src[2] if len(node.src) > 2 else None
    w = x * np.float32(node.params.get("scale", 1.0))
    if mask_t is not None:
        slope = alibi_slopes(x.shape[1], node.params.get("max_bias", 0.0))[None, :, None, None]
        w = w + slope * mask_rows(f32(ctx.load(mask_t)), x.shape)
    mx = np.max(w, axis=-1, keepdims=True)
    if sinks_t is not None:
        sk = f32(ctx.load(sinks_t)).reshape(-1)[None, :, None, None]
        mx = np.maximum(mx, sk)
    with np.errstate(all="ignore"):
        e = expf(w - mx)
        s = sum64(e)
        if sinks_t is not None:
            s = s + expf(sk - mx).astype(np.float64)
        return e * f32(1.0 / s)
