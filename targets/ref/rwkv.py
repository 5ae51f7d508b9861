"""RWKV linear-attention recurrences rwkv_wkv6 and rwkv_wkv7 (ggml-cpu/ops.cpp, scalar path).

Inputs are [S, H, T] (numpy (T, H, S)); the state holds n_seqs blocks of H*S*S floats and the T tokens
are n_seqs consecutive runs of T/n_seqs. The result is [S*H, T + S*n_seqs]: T rows of outputs, then
the final state of every sequence. The loop runs over tokens, vectorised over sequences and heads.
"""
from __future__ import annotations

import numpy as np

from .libm import f32
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
