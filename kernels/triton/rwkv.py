"""RWKV linear-attention recurrences, as kernels/opencl/rwkv.cl and targets/ref/rwkv.py.
wkv6 / wkv7: inputs [S, H, T]; the state holds n_seqs blocks of H*S*S floats; the T tokens are n_seqs runs
of T/n_seqs; the result [S*H, T + S*n_seqs] holds the T output rows, then every sequence's final state.
One program per (sequence, head) keeps that head's S x S state in registers for all its tokens.
wkv4: one program per BLOCK channels, the state (aa, bb, pp) in registers."""
import triton
import triton.language as tl

from .common import at, flat_at, get, put


@triton.jit
def inp(B, T, TY: tl.constexpr, i, h, t, m):
    """Elements i of row (h, t) of an [S, H, T] input."""
    return get(at(B, T, i, h, t, 0), TY, m)


@triton.jit
def head_state(K, SB, S_, ST: tl.constexpr, BS: tl.constexpr):
    """One program's (head, sequence) of a wkv6/wkv7 launch: sizes from K [S, H, T], this program's
    indices and its [S, S] state matrix, loaded."""
    pid = tl.program_id(0).to(tl.int64)
    S = K[1]
    H = K[2]
    T = K[3]
    C = S * H
    n_seqs = S_[2]
    per = T // n_seqs
    h = pid % H
    seq = pid // H
    i = tl.arange(0, BS).to(tl.int64)
    mi = i < S
    m2 = mi[:, None] & mi[None, :]
    hs = seq * H * S * S + h * S * S
    st = get(flat_at(SB, S_, hs + i[:, None] * S + i[None, :]), ST, m2)
    return S, H, T, C, per, h, seq, i, mi, m2, hs, st


@triton.jit
def wkv6(DB, D, KB, K, VB, V, RB, R, FB, F, WB, W, SB, S_, DT: tl.constexpr, KT: tl.constexpr,
         VT: tl.constexpr, RT: tl.constexpr, FT: tl.constexpr, WT: tl.constexpr, ST: tl.constexpr,
         BS: tl.constexpr):
    """out[t,h,j] = sum_i r[i] (tf[h,i] k[i] v[j] + st[i][j]);  st[i][j] = st[i][j] td[i] + k[i] v[j]"""
    S, H, T, C, per, h, seq, i, mi, m2, hs, st = head_state(K, SB, S_, ST, BS)
    tf = get(flat_at(FB, F, h * S + i), FT, mi)
    for t in range(seq * per, (seq + 1) * per):
        tt = seq * 0 + t
        kv = inp(KB, K, KT, i, h, tt, mi)[:, None] * inp(VB, V, VT, i, h, tt, mi)[None, :]
        tmp = kv * tf[:, None] + st
        o = tl.sum(inp(RB, R, RT, i, h, tt, mi)[:, None] * tmp, axis=0)
        st = st * inp(WB, W, WT, i, h, tt, mi)[:, None] + kv
        put(flat_at(DB, D, tt * C + h * S + i), o, DT, mi)
    put(flat_at(DB, D, T * C + hs + i[:, None] * S + i[None, :]), st, DT, m2)


@triton.jit
def wkv7(DB, D, RB, R, WB, W, KB, K, VB, V, AB, A, BB, B, SB, S_, DT: tl.constexpr, RT: tl.constexpr,
         WT: tl.constexpr, KT: tl.constexpr, VT: tl.constexpr, AT: tl.constexpr, BT: tl.constexpr,
         ST: tl.constexpr, BS: tl.constexpr):
    """sa[i] = sum_j a[j] st[i][j];  st[i][j] = st[i][j] w[j] + v[i] k[j] + sa[i] b[j];  out[i] = sum_j st[i][j] r[j]"""
    S, H, T, C, per, h, seq, i, mi, m2, hs, st = head_state(K, SB, S_, ST, BS)
    for t in range(seq * per, (seq + 1) * per):
        tt = seq * 0 + t
        sa = tl.sum(inp(AB, A, AT, i, h, tt, mi)[None, :] * st, axis=1)
        st = st * inp(WB, W, WT, i, h, tt, mi)[None, :] + \
            inp(VB, V, VT, i, h, tt, mi)[:, None] * inp(KB, K, KT, i, h, tt, mi)[None, :] + \
            sa[:, None] * inp(BB, B, BT, i, h, tt, mi)[None, :]
        o = tl.sum(st * inp(RB, R, RT, i, h, tt, mi)[None, :], axis=1)
        put(flat_at(DB, D, tt * C + h * S + i), o, DT, mi)
    put(flat_at(DB, D, T * C + hs + i[:, None] * S + i[None, :]), st, DT, m2)


@triton.jit
def wkv4_max(a, b):
    """max that keeps a NaN from either side (torch.maximum / np.maximum)."""
    return tl.where((a > b) | (a != a), a, b)


@triton.jit
def wkv4(DB, D, KB, K, VB, V, WB, W, UB, U, SB, S_, DT: tl.constexpr, KT: tl.constexpr, VT: tl.constexpr,
         WT: tl.constexpr, UT: tl.constexpr, ST: tl.constexpr, BLOCK: tl.constexpr):
    """RWKV-4's WKV with a running max exponent pp (ChatRWKV's att_seq); state [3*C, n_seqs]: rows aa, bb,
    pp per sequence; dst [C, T + 3*n_seqs]: T wkv rows, then each sequence's new aa, bb, pp rows."""
    c = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    C = K[1]
    T = K[2]
    n_seqs = S_[2]
    per = T // n_seqs
    m = c < C
    wc = get(flat_at(WB, W, c), WT, m)
    uc = get(flat_at(UB, U, c), UT, m)
    for seq in range(0, n_seqs):
        sq = c * 0 + seq
        aa = get(at(SB, S_, c, sq, 0, 0), ST, m)
        bb = get(at(SB, S_, C + c, sq, 0, 0), ST, m)
        pp = get(at(SB, S_, 2 * C + c, sq, 0, 0), ST, m)
        for t in range(seq * per, (seq + 1) * per):
            tt = c * 0 + t
            kk = get(at(KB, K, c, tt, 0, 0), KT, m)
            vv = get(at(VB, V, c, tt, 0, 0), VT, m)
            ww = uc + kk
            q = wkv4_max(pp, ww)
            e1 = tl.exp(pp - q)
            e2 = tl.exp(ww - q)
            put(at(DB, D, c, tt, 0, 0), (e1 * aa + e2 * vv) / (e1 * bb + e2), DT, m)
            ww = wc + pp
            q = wkv4_max(ww, kk)
            e1 = tl.exp(ww - q)
            e2 = tl.exp(kk - q)
            aa = e1 * aa + e2 * vv
            bb = e1 * bb + e2
            pp = q
        put(at(DB, D, c, T + 3 * sq, 0, 0), aa, DT, m)
        put(at(DB, D, c, T + 3 * sq + 1, 0, 0), bb, DT, m)
        put(at(DB, D, c, T + 3 * sq + 2, 0, 0), pp, DT, m)
