"""mul_mat as dequant + matmul super-kernels that read ggml's block layouts directly, and out_prod.

dst[i, j] = sum_k w[i, k] * x[j, k] (w: src0, rows of K elements of any type; x: src1, f32/f16/bf16),
with w broadcast over dst's ne2/ne3. Weights are decoded in registers, a [BM, BK] tile at a time, and
never written back; activations are used in f32 (no 8-bit quantization of x: the result is ref's
"dequant" mode, f32 math on the dequantized weights). Two forms, picked by the launcher:
  GEMV  (decode, BN == 1): products summed across the tile, split over BM rows per program;
  GEMM  (prefill): tl.dot of the decoded [BM, BK] tile and x's [BK, BN] tile, f32 accumulation, IEEE f32
        inputs (no TF32 rounding) so the result stays within ggml's f32 bound.
"""
import triton
import triton.language as tl

from .common import at, get, put, row_get


@triton.jit
def mul_mat(DB, D, WB, W, XB, X, WT: tl.constexpr, XT: tl.constexpr, DT: tl.constexpr,
            BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GEMV: tl.constexpr):
    pm = tl.program_id(0).to(tl.int64)
    pn = tl.program_id(1).to(tl.int64)
    pb = tl.program_id(2).to(tl.int64)
    i2 = pb % D[3]
    i3 = pb // D[3]
    w2 = i2 // (D[3] // W[3])
    w3 = i3 // (D[4] // W[4])
    K = W[1]
    rows = pm * BM + tl.arange(0, BM).to(tl.int64)
    mr = rows < D[1]
    wrow = WB + W[0] + tl.where(mr, rows, 0) * W[6] + w2 * W[7] + w3 * W[8]
    cols = pn * BN + tl.arange(0, BN).to(tl.int64)
    mc = cols < D[2]
    xrow = XB + X[0] + tl.where(mc, cols, 0) * X[6] + i2 * X[7] + i3 * X[8]
    if GEMV:
        acc = tl.zeros([BM, BK], tl.float32)
        for k0 in range(0, K, BK):
            k = k0 + tl.arange(0, BK).to(tl.int64)
            mk = k < K
            w = row_get(wrow[:, None], W[5], k[None, :], WT, mr[:, None] & mk[None, :])
            xv = get(xrow + k * X[5], XT, mk)
            acc += w * xv[None, :]
        out = tl.sum(acc, axis=1)
        put(DB + D[0] + rows * D[5] + pn * D[6] + i2 * D[7] + i3 * D[8], out, DT, mr & (pn < D[2]))
    else:
        acc = tl.zeros([BM, BN], tl.float32)
        for k0 in range(0, K, BK):
            k = k0 + tl.arange(0, BK).to(tl.int64)
            mk = k < K
            w = row_get(wrow[:, None], W[5], k[None, :], WT, mr[:, None] & mk[None, :])
            xv = get(xrow[None, :] + k[:, None] * X[5], XT, mk[:, None] & mc[None, :])
            acc += tl.dot(w, xv, input_precision="ieee")
        put(DB + D[0] + rows[:, None] * D[5] + cols[None, :] * D[6] + i2 * D[7] + i3 * D[8], acc, DT,
            mr[:, None] & mc[None, :])


@triton.jit
def out_prod(DB, D, AB, A, BB, B, AT: tl.constexpr, BT: tl.constexpr, DT: tl.constexpr, BLOCK: tl.constexpr):
    """dst[i0, i1, i2, i3] = sum_k a[i0, k, a2, a3] * b[i1, k, i2, i3]; one program per dst row."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % D[2]
    i2 = (r // D[2]) % D[3]
    i3 = r // (D[2] * D[3])
    a2 = i2 // (D[3] // A[3])
    a3 = i3 // (D[4] // A[4])
    for c0 in range(0, D[1], BLOCK):
        i0 = c0 + tl.arange(0, BLOCK).to(tl.int64)
        m = i0 < D[1]
        acc = tl.zeros([BLOCK], tl.float32)
        for k in range(0, A[2]):
            kk = i1 * 0 + k                     # as int64
            bv = get(at(BB, B, i1, kk, i2, i3), BT, True)
            acc += bv * row_get(at(AB, A, 0, kk, a2, a3), A[5], i0, AT, m)
        put(at(DB, D, i0, i1, i2, i3), acc, DT, m)
