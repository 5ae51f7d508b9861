"""mul_mat and out_prod. `a` is broadcast over dims 2, 3 of `b` by integer division (GQA), not modulo.

Numerics (option quant_matmul):
- "ggml" (default), as ggml's CPU backend: b is converted to a's vec_dot_type first. f32 weights: f32;
  f16 / bf16 weights: b rounded to f16 / bf16; quantized weights: graphc.quants.mul_mat_quant (b
  quantized to q8_0 / q8_1 / q8_K and integer dot products, as ggml does).
- "dequant": dequantized (or f16-widened) weights times the f32 activations.
Float products accumulate in float64 and are rounded once to f32; ggml accumulates in f32 SIMD lanes
(or sgemm tiles), so results differ from ggml's in the last bits only.
"""
from __future__ import annotations

import numpy as np

from graphc import quants
from graphc.runtime import bf16_bits_to_f32, f32_to_bf16_bits

from .libm import f32
from .registry import impl

MODES = ("ggml", "dequant")


def div_broadcast_matmul(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """lhs (B3, B2, M, K) @ rhs (A3, A2, K, N), rhs slice (i3 // r3, i2 // r2); float64 result."""
    b3, b2, m, k = lhs.shape
    a3, a2, _, n = rhs.shape
    r3, r2 = b3 // a3, b2 // a2
    l6 = lhs.astype(np.float64).reshape(a3, r3, a2, r2 * m, k)
    out = np.matmul(l6, rhs.astype(np.float64)[:, None])
    return out.reshape(b3, b2, m, n)


def round_to_vec_dot(x: np.ndarray, wtype_name: str) -> np.ndarray:
    """Activations converted to a float weight type's vec_dot_type (f16 or bf16) and back."""
    if wtype_name == "f16":
        return x.astype(np.float16).astype(np.float32)
    if wtype_name == "bf16":
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    return x


def weights_times(ctx, a, bv: np.ndarray) -> np.ndarray:
    """ggml_mul_mat(a, b) for a tensor `a` and b's values bv (B3, B2, M, K): (B3, B2, M, N) f32."""
    mode = ctx.opts.get("quant_matmul", "ggml")
    if a.type.is_quantized and mode == "ggml":
        return _quant_times(ctx, a, bv)
    av = f32(ctx.load(a))
    if mode == "ggml":
        bv = round_to_vec_dot(bv, a.type.name)
    return f32(div_broadcast_matmul(bv, av.swapaxes(-1, -2)))


def _quant_times(ctx, a, bv: np.ndarray) -> np.ndarray:
    raw = ctx.mem.rows_raw(a)                      # (A3, A2, N, row_bytes)
    a3, a2, n, _ = raw.shape
    b3, b2, m, k = bv.shape
    r3, r2 = b3 // a3, b2 // a2
    out = np.empty((b3, b2, m, n), dtype=np.float32)
    for i3 in range(a3):                           # weights are usually one slice: a3 = a2 = 1
        for i2 in range(a2):
            sl = (slice(i3 * r3, (i3 + 1) * r3), slice(i2 * r2, (i2 + 1) * r2))
            x = np.ascontiguousarray(bv[sl], dtype=np.float32).reshape(-1, k)
            y = quants.mul_mat_quant(np.ascontiguousarray(raw[i3, i2]), a.type, x)
            out[sl] = np.asarray(y, dtype=np.float32).reshape(r3, r2, m, n)
    return out


@impl("mul_mat")
def mul_mat(ctx, node):
    a, b = node.src[0], node.src[1]
    return weights_times(ctx, a, f32(ctx.load(b)))


@impl("out_prod")
def out_prod(ctx, node):
    """dst[i0, i1, i2, i3] = sum_k a[i0, k, i2/r2, i3/r3] * b[i1, k, i2, i3] (a dequantized)."""
    av = f32(ctx.load(node.src[0]))                # (A3, A2, K, ne00)
    bv = f32(ctx.load(node.src[1]))                # (B3, B2, K, ne10)
    return f32(div_broadcast_matmul(bv.swapaxes(-1, -2), av))
