"""flash_attn_ext as targets/ref/attention.py computes it in its "dequant" mode (the Triton target's
numerics for every weight product): per query row, scores K.Q with Q in f32 and K dequantized, times
scale (softcap: softcap*tanh(s*scale/softcap)), plus slope*mask (mask read as f16; -inf keys skipped,
their V never read), softmax with sinks, times V; f32 accumulation. dst is [Dv, n_head, n_q, ne3]. sc is
the scale applied before softcap's tanh (scale / softcap when softcap != 0). One program per query row
(query x head x batch), BN keys at a time: pass 1 finds the row max, pass 2 sums exp(s - max) and the
weighted V rows."""
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .common import alibi_slope, at, flat_at, get, max_nan, nan_max, put, row_get


@triton.jit
def scores(qr, KB, K, MB, M, j, mj, hk, bk, mrow, d, md, scale, softcap, slope, KT: tl.constexpr,
           MT: tl.constexpr, HAS_MASK: tl.constexpr):
    """Scores of keys j ([BN]) for the prepared row qr ([BD]); -inf where masked out."""
    kr = at(KB, K, 0, j, hk, bk)
    kt = row_get(kr[:, None], K[5], d[None, :], KT, mj[:, None] & md[None, :])
    s = tl.sum(kt * qr[None, :], axis=1) * scale
    if softcap != 0.0:
        s = softcap * libdevice.tanh(s)
    if HAS_MASK:
        mv = slope * get(mrow + j * M[5], MT, mj).to(tl.float16).to(tl.float32)
        s = tl.where(mv == float("-inf"), float("-inf"), s + mv)
    return s


@triton.jit
def flash_attn_ext(DB, D, QB, Q, KB, K, VB, V, MB, M, SB, S, sc, max_bias, softcap,
                   DT: tl.constexpr, QT: tl.constexpr, KT: tl.constexpr, VT: tl.constexpr, MT: tl.constexpr,
                   ST: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SINKS: tl.constexpr,
                   BD: tl.constexpr, BDV: tl.constexpr, BN: tl.constexpr):
    ir = tl.program_id(0).to(tl.int64)
    H = Q[3]
    Nq = Q[2]
    Nk = K[2]
    h = ir % H
    iq = (ir // H) % Nq
    b = ir // (H * Nq)
    hk = h // (H // K[3])
    bk = b // (Q[4] // K[4])
    d = tl.arange(0, BD).to(tl.int64)
    md = d < Q[1]
    qv = row_get(at(QB, Q, 0, iq, h, b), Q[5], d, QT, md)
    qr = qv                                 # f32 Q against dequantized K: ref's dequant mode
    if HAS_MASK:
        slope = alibi_slope(max_bias, H, h)
        mrow = at(MB, M, 0, iq, h % M[3], b % M[4])
    else:
        slope = 1.0
        mrow = QB
    mx = tl.full([BN], float("-inf"), tl.float32)
    for j0 in range(0, Nk, BN):
        j = j0 + tl.arange(0, BN).to(tl.int64)
        mj = j < Nk
        s = scores(qr, KB, K, MB, M, j, mj, hk, bk, mrow, d, md, sc, softcap, slope, KT, MT, HAS_MASK)
        mx = tl.where(mj, nan_max(mx, s), mx)
    mxs = max_nan(mx)
    skv = 0.0
    if HAS_SINKS:
        skv = get(flat_at(SB, S, h), ST, True)
        mxs = tl.where(mxs != mxs, mxs, tl.maximum(skv, mxs))
    e = tl.arange(0, BDV).to(tl.int64)
    me = e < V[1]
    acc = tl.zeros([BDV], tl.float32)
    tot = tl.zeros([BN], tl.float32)
    for j0 in range(0, Nk, BN):
        j = j0 + tl.arange(0, BN).to(tl.int64)
        mj = j < Nk
        s = scores(qr, KB, K, MB, M, j, mj, hk, bk, mrow, d, md, sc, softcap, slope, KT, MT, HAS_MASK)
        p = tl.where(mj & (s != float("-inf")), tl.exp(s - mxs), 0.0)
        tot += p
        vr = at(VB, V, 0, j, hk, bk)
        vt = row_get(vr[:, None], V[5], e[None, :], VT, (p != 0.0)[:, None] & me[None, :])
        acc += tl.sum(p[:, None] * vt, axis=0)
    total = tl.sum(tot, axis=0)
    if HAS_SINKS:
        total += tl.exp(skv - mxs)
    inv = tl.where(total == 0.0, 0.0, 1.0 / total)
    put(at(DB, D, e, h, iq, b), acc * inv, DT, me)
