"""RWKV linear-attention recurrences rwkv_wkv6 and rwkv_wkv7 (ggml-cpu/ops.cpp, scalar path), and rwkv_wkv4 (graphc).

Inputs are [S, H, T] (numpy (T, H, S)); the state holds n_seqs blocks of H*S*S floats and the T tokens
are n_seqs consecutive runs of T/n_seqs. The result is [S*H, T + S*n_seqs]: T rows of outputs, then
the final state of every sequence. The loop runs over tokens, vectorised over sequences and heads.
"""
from __future__ import annotations

import numpy as np

from .libm import expf, f32
from .registry import impl


def _seq(x: np.ndarray, n_seqs: int) -> np.ndarray:
    """(T, H, S) values -> (n_seqs, T/n_seqs, H, S)."""
    t, h, s = x.shape
    return x.reshape(n_seqs, t // n_seqs, h, s)


def _load_ths(ctx, t) -> np.ndarray:
    x = f32(ctx.load(t))
    return x.reshape(-1, t.ne[1], t.ne[0])                 # (T, H, S); ne3 is 1


def _result(out: np.ndarray, state: np.ndarray, c: int) -> np.ndarray:
    """Stack outputs (T, C) over final states (n_seqs, H, S, S) -> numpy (1, 1, T + S*n_seqs, C)."""
    return np.concatenate([out.reshape(-1, c), state.reshape(-1, c)]).reshape(1, 1, -1, c)


@impl("rwkv_wkv6")
def wkv6(ctx, node):
    """out[t,h,j] = sum_i r[i] (tf[h,i] k[i] v[j] + st[h,i,j]);  st[h,i,j] = st[h,i,j] td[i] + k[i] v[j]."""
    k_t, v_t, r_t, tf_t, td_t, s_t = node.src[:6]
    s_, h_ = k_t.ne[0], k_t.ne[1]
    n_seqs = s_t.ne[1]
    k, v, r, td = (_seq(_load_ths(ctx, t), n_seqs) for t in (k_t, v_t, r_t, td_t))
    tf = f32(ctx.load(tf_t)).reshape(h_, s_)
    state = f32(ctx.load(s_t)).reshape(n_seqs, h_, s_, s_).copy()   # [seq, h, i (key), j (value)]
    steps = k.shape[1]
    out = np.empty((n_seqs, steps, h_, s_), dtype=np.float32)
    for t in range(steps):
        kt, vt, rt, wt = k[:, t], v[:, t], r[:, t], td[:, t]          # (n_seqs, H, S)
        kv = kt[..., :, None] * vt[..., None, :]                      # (n_seqs, H, S_i, S_j)
        tmp = kv * tf[None, :, :, None] + state
        out[:, t] = f32(np.einsum("nhi,nhij->nhj", rt.astype(np.float64), tmp.astype(np.float64)))
        state = state * wt[..., :, None] + kv
    return _result(out, state, s_ * h_)


@impl("rwkv_wkv7")
def wkv7(ctx, node):
    """sa[i] = sum_j a[j] st[i,j];  st[i,j] = st[i,j] w[j] + v[i] k[j] + sa[i] b[j];  out[i] = sum_j st[i,j] r[j]."""
    r_t, w_t, k_t, v_t, a_t, b_t, s_t = node.src[:7]
    s_, h_ = w_t.ne[0], w_t.ne[1]
    n_seqs = s_t.ne[1]
    r, w, k, v, a, b = (_seq(_load_ths(ctx, t), n_seqs) for t in (r_t, w_t, k_t, v_t, a_t, b_t))
    state = f32(ctx.load(s_t)).reshape(n_seqs, h_, s_, s_).copy()   # [seq, h, i (value), j (key)]
    steps = k.shape[1]
    out = np.empty((n_seqs, steps, h_, s_), dtype=np.float32)
    for t in range(steps):
        rt, wt, kt, vt, at, bt = r[:, t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t]
        sa = f32(np.einsum("nhij,nhj->nhi", state.astype(np.float64), at.astype(np.float64)))
        state = state * wt[..., None, :] + vt[..., :, None] * kt[..., None, :] + sa[..., :, None] * bt[..., None, :]
        out[:, t] = f32(np.einsum("nhij,nhj->nhi", state.astype(np.float64), rt.astype(np.float64)))
    return _result(out, state, s_ * h_)


@impl("rwkv_wkv4")
def wkv4(ctx, node):
    """RWKV-4 WKV with a running max exponent pp (ChatRWKV's att_seq), per channel, in f32:
    out = (e1 aa + e2 v) / (e1 bb + e2) with e1 = exp(pp - p), e2 = exp(u + k - p), p = max(pp, u + k);
    then aa, bb, pp advance with p = max(w + pp, k). The result stacks the T wkv rows over every
    sequence's new aa, bb, pp rows; the loop runs over tokens, vectorised over sequences and channels."""
    k_t, v_t, w_t, u_t, s_t = node.src[:5]
    c, steps_all = k_t.ne[0], k_t.ne[1]
    n_seqs = s_t.ne[1]
    k = f32(ctx.load(k_t)).reshape(n_seqs, steps_all // n_seqs, c)
    v = f32(ctx.load(v_t)).reshape(n_seqs, steps_all // n_seqs, c)
    w = f32(ctx.load(w_t)).reshape(c)
    u = f32(ctx.load(u_t)).reshape(c)
    st = f32(ctx.load(s_t)).reshape(n_seqs, 3, c)
    aa, bb, pp = st[:, 0].copy(), st[:, 1].copy(), st[:, 2].copy()
    out = np.empty_like(k)
    with np.errstate(all="ignore"):          # inf/nan inputs propagate as in C
        for t in range(k.shape[1]):
            kk, vv = k[:, t], v[:, t]
            ww = u + kk
            p = np.maximum(pp, ww)
            e1, e2 = expf(pp - p), expf(ww - p)
            out[:, t] = (e1 * aa + e2 * vv) / (e1 * bb + e2)
            ww = w + pp
            p = np.maximum(ww, kk)
            e1, e2 = expf(ww - p), expf(kk - p)
            aa, bb, pp = e1 * aa + e2 * vv, e1 * bb + e2, p
    res = np.concatenate([out.reshape(-1, c), np.stack([aa, bb, pp], axis=1).reshape(-1, c)])
    return res.reshape(1, 1, -1, c)
