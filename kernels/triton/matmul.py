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

from .common import Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, at, get, hf, put, row_get, scale_min_k4, tsize, u8, u32le


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
def gemv_program(D, WB, W, XB, X, UNIT: tl.constexpr, BM: tl.constexpr, SPLIT: tl.constexpr):
    """A block GEMV program (pm, s, b): rows pm*BM.. of batch b, the s-th of SPLIT ranges of UNIT-element
    units of K. Returns the rows' mask, their weight rows' and x's addresses, the unit range [lo, hi) and
    dst's byte offsets (from DB)."""
    pm = tl.program_id(0).to(tl.int64)
    ps = tl.program_id(1).to(tl.int64)
    pb = tl.program_id(2).to(tl.int64)
    i2 = pb % D[3]
    i3 = pb // D[3]
    w2 = i2 // (D[3] // W[3])
    w3 = i3 // (D[4] // W[4])
    units = W[1] // UNIT
    per = (units + SPLIT - 1) // SPLIT
    lo = ps * per
    hi = tl.minimum(lo + per, units)
    rows = pm * BM + tl.arange(0, BM).to(tl.int64)
    mr = rows < D[1]
    wrow = WB + W[0] + tl.where(mr, rows, 0) * W[6] + w2 * W[7] + w3 * W[8]
    xrow = XB + X[0] + i2 * X[7] + i3 * X[8]
    return mr, wrow, xrow, lo, hi, D[0] + rows * D[5] + i2 * D[7] + i3 * D[8]


@triton.jit
def gemv_store(dp, out, mr, DT: tl.constexpr, SPLIT: tl.constexpr):
    """A block GEMV's rows: stored, or with SPLIT > 1 added into the f32 dst zero_dst cleared."""
    if SPLIT == 1:
        put(dp, out, DT, mr)
    else:
        tl.atomic_add(dp.to(tl.pointer_type(tl.float32)), out, mask=mr, sem="relaxed")


@triton.jit
def gemv_q32(DB, D, WB, W, XB, X, WT: tl.constexpr, XT: tl.constexpr, DT: tl.constexpr, BM: tl.constexpr,
             NB: tl.constexpr, SPLIT: tl.constexpr):
    """dst[i] = sum_k w[i, k] * x[k] for one column x and 32-element block weights (q4_0 q4_1 q5_0 q5_1
    q8_0), a block at a time: each block's scale (and min) is loaded once, its quants as [BM, NB, 16] bytes
    (lo and hi nibbles: elements j and j + 16), and dst += d * sum(q * x) (+ m * sum(x)). Program (pm, s, b):
    rows pm*BM.., the s-th of SPLIT ranges of blocks; SPLIT > 1 adds into dst (f32, zeroed by zero_dst
    first) with atomics."""
    mr, wrow, xrow, b_lo, b_hi, dp = gemv_program(D, WB, W, XB, X, 32, BM, SPLIT)
    jj = tl.arange(0, 16).to(tl.int64)
    acc = tl.zeros([BM, NB], tl.float32)
    for b0 in range(b_lo, b_hi, NB):
        kb = b0 + tl.arange(0, NB).to(tl.int64)
        mb = kb < b_hi
        m2 = mr[:, None] & mb[None, :]
        m3 = m2[:, :, None]
        bp = wrow[:, None] + kb[None, :] * tsize(WT)                         # [BM, NB] block addresses
        xlo = get(xrow + (kb[:, None] * 32 + jj[None, :]) * X[5], XT, mb[:, None])          # [NB, 16]
        xhi = get(xrow + (kb[:, None] * 32 + 16 + jj[None, :]) * X[5], XT, mb[:, None])
        d = hf(bp, m2)
        if WT == Q8_0:
            qlo = tl.load((bp[:, :, None] + 2 + jj[None, None, :]).to(tl.pointer_type(tl.int8)), mask=m3,
                          other=0).to(tl.float32)
            qhi = tl.load((bp[:, :, None] + 18 + jj[None, None, :]).to(tl.pointer_type(tl.int8)), mask=m3,
                          other=0).to(tl.float32)
        else:
            qs: tl.constexpr = 2 if (WT == Q4_0) else (4 if (WT == Q4_1) else (6 if (WT == Q5_0) else 8))
            qb = u8(bp[:, :, None] + qs + jj[None, None, :], m3)              # [BM, NB, 16]
            lo = qb & 0xF
            hi = qb >> 4
            if WT != Q4_0 and WT != Q4_1:                                      # q5: the 5th bits
                hoff: tl.constexpr = 2 if WT == Q5_0 else 4
                qh = u32le(bp + hoff, m2)[:, :, None]
                lo = lo | (((qh >> jj[None, None, :].to(tl.uint32)) & 1).to(tl.int32) << 4)
                hi = hi | (((qh >> (jj[None, None, :] + 16).to(tl.uint32)) & 1).to(tl.int32) << 4)
            off: tl.constexpr = 8 if WT == Q4_0 else (16 if WT == Q5_0 else 0)
            qlo = (lo - off).to(tl.float32)
            qhi = (hi - off).to(tl.float32)
        s = tl.sum(qlo * xlo[None, :, :], axis=2) + tl.sum(qhi * xhi[None, :, :], axis=2)
        acc += d * s
        if WT == Q4_1 or WT == Q5_1:                                           # + m * sum(x)
            acc += hf(bp + 2, m2) * (tl.sum(xlo, axis=1) + tl.sum(xhi, axis=1))[None, :]
    gemv_store(DB + dp, tl.sum(acc, axis=1), mr, DT, SPLIT)


@triton.jit
def gemv_q4k(DB, D, WB, W, XB, X, WT: tl.constexpr, XT: tl.constexpr, DT: tl.constexpr, BM: tl.constexpr,
             NB: tl.constexpr, SPLIT: tl.constexpr):
    """gemv_q32's form for q4_K weights, in 64-element chunks of the 256-element super-blocks: a chunk's
    32 bytes hold sub-block 2g in the low nibbles and 2g + 1 in the high ones, each with a 6-bit scale and
    min (scale_min_k4), so dst += d*sc*sum(q*x) - dmin*mn*sum(x) per sub-block. NB chunks per step."""
    mr, wrow, xrow, c_lo, c_hi, dp = gemv_program(D, WB, W, XB, X, 64, BM, SPLIT)
    ll = tl.arange(0, 32).to(tl.int64)
    acc = tl.zeros([BM, NB], tl.float32)
    for c0 in range(c_lo, c_hi, NB):
        c = c0 + tl.arange(0, NB).to(tl.int64)
        mc = c < c_hi
        m2 = mr[:, None] & mc[None, :]
        bp = wrow[:, None] + (c // 4)[None, :] * 144                       # [BM, NB] super-block addresses
        g = (c % 4)[None, :]
        sc1, mn1 = scale_min_k4(2 * g, bp + 4, m2)
        sc2, mn2 = scale_min_k4(2 * g + 1, bp + 4, m2)
        qb = u8(bp[:, :, None] + 16 + g[:, :, None] * 32 + ll[None, None, :], m2[:, :, None])   # [BM, NB, 32]
        xlo = get(xrow + (c[:, None] * 64 + ll[None, :]) * X[5], XT, mc[:, None])              # [NB, 32]
        xhi = get(xrow + (c[:, None] * 64 + 32 + ll[None, :]) * X[5], XT, mc[:, None])
        slo = tl.sum((qb & 0xF).to(tl.float32) * xlo[None, :, :], axis=2)
        shi = tl.sum((qb >> 4).to(tl.float32) * xhi[None, :, :], axis=2)
        d = hf(bp, m2)
        dmin = hf(bp + 2, m2)
        xs_lo = tl.sum(xlo, axis=1)[None, :]
        xs_hi = tl.sum(xhi, axis=1)[None, :]
        acc += d * (sc1.to(tl.float32) * slo + sc2.to(tl.float32) * shi) - \
            dmin * (mn1.to(tl.float32) * xs_lo + mn2.to(tl.float32) * xs_hi)
    gemv_store(DB + dp, tl.sum(acc, axis=1), mr, DT, SPLIT)


@triton.jit
def zero_dst(DB, D, BLOCK: tl.constexpr):
    """Zero every element of an f32 tensor (before a split-K GEMV adds into it); one program per row."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % D[2]
    i2 = (r // D[2]) % D[3]
    i3 = r // (D[2] * D[3])
    for k0 in range(0, D[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        tl.store(at(DB, D, k, i1, i2, i3).to(tl.pointer_type(tl.float32)), tl.zeros([BLOCK], tl.float32),
                 mask=k < D[1])


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
