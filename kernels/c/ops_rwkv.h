/* GC_PROVIDES: rwkv_wkv6 rwkv_wkv7 rwkv_wkv4 */
/* RWKV linear-attention recurrences, as targets/ref/rwkv.py (ggml-cpu/ops.cpp). Inputs [S, H, T]; the
 * state holds n_seqs blocks of H*S*S floats; the T tokens are n_seqs runs of T/n_seqs. The result
 * [S*H, T + S*n_seqs] holds the T output rows, then every sequence's final state. Heads are independent:
 * threads split (sequence, head) pairs; each keeps its S*S state in scratch. */
#ifndef GC_OPS_RWKV_H
#define GC_OPS_RWKV_H

#include "ops_common.h"

static inline size_t gc_scratch_rwkv_wkv6(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    const int64_t S = src[0]->ne[0];
    return GC_ALIGN_UP((size_t)(S * S) * sizeof(float)) + gc_rows_bytes(S, 8);
}

static inline size_t gc_scratch_rwkv_wkv7(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    const int64_t S = src[2]->ne[0];
    return GC_ALIGN_UP((size_t)(S * S) * sizeof(float)) + gc_rows_bytes(S, 8);
}

/* f32 value at flat index f of a 2-D-flattened result (contiguous or not) */
static inline float *gc_rwkv_out(const gc_tensor *dst, int64_t f) { return (float *)gc_flat_ptr(dst, f); }

/* row (token t, head h) of an [S, H, T] input as S floats */
static inline const float *gc_rwkv_row(const gc_tensor *x, int64_t h, int64_t t, float *tmp) {
    return gc_load_row(x, GC_AT(x, 0, h, t, 0), x->ne[0], tmp);
}

static inline float *gc_rwkv_vec(const gc_ctx *ctx, int ith, int64_t S, int k) {
    return (float *)((char *)ctx->scratch[ith] + GC_ALIGN_UP((size_t)(S * S) * sizeof(float)) +
                     (size_t)k * GC_ALIGN_UP((size_t)S * sizeof(float)));
}

/* out[t,h,j] = sum_i r[i] (tf[h,i] k[i] v[j] + st[i][j]);  st[i][j] = st[i][j] td[i] + k[i] v[j] */
GC_OP void gc_op_rwkv_wkv6(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                           int ith, int nth) {
    (void)params;
    const gc_tensor *k = src[0], *v = src[1], *r = src[2], *tf = src[3], *td = src[4], *state = src[5];
    const int64_t S = k->ne[0], H = k->ne[1], T = k->ne[2], C = S * H;
    const int64_t n_seqs = state->ne[1], per = n_seqs > 0 ? T / n_seqs : 0;
    float *st = (float *)ctx->scratch[ith];
    float *kb = gc_rwkv_vec(ctx, ith, S, 0), *vb = gc_rwkv_vec(ctx, ith, S, 1), *rb = gc_rwkv_vec(ctx, ith, S, 2);
    float *wb = gc_rwkv_vec(ctx, ith, S, 3), *ob = gc_rwkv_vec(ctx, ith, S, 4), *tfh = gc_rwkv_vec(ctx, ith, S, 5);
    int64_t u0, u1;
    gc_chunk(n_seqs * H, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t seq = u / H, h = u % H, base = seq * H * S * S + h * S * S;
        for (int64_t e = 0; e < S * S; e++) st[e] = gc_get_f32(state->type, gc_flat_ptr(state, base + e));
        for (int64_t i = 0; i < S; i++) tfh[i] = gc_get_f32(tf->type, gc_flat_ptr(tf, h * S + i));
        for (int64_t t = seq * per; t < (seq + 1) * per; t++) {
            const float *kk = gc_rwkv_row(k, h, t, kb), *vv = gc_rwkv_row(v, h, t, vb);
            const float *rr = gc_rwkv_row(r, h, t, rb), *ww = gc_rwkv_row(td, h, t, wb);
            memset(ob, 0, (size_t)S * sizeof(float));
            for (int64_t i = 0; i < S; i++) {
                const float ki = kk[i], ri = rr[i], tfi = tfh[i], wi = ww[i];
                float *row = st + i * S;
                for (int64_t j = 0; j < S; j++) {
                    const float kv = ki * vv[j];
                    const float tmp = kv * tfi + row[j];
                    ob[j] += ri * tmp;
                    row[j] = row[j] * wi + kv;
                }
            }
            for (int64_t j = 0; j < S; j++) *gc_rwkv_out(dst, t * C + h * S + j) = ob[j];
        }
        for (int64_t e = 0; e < S * S; e++) *gc_rwkv_out(dst, T * C + base + e) = st[e];
    }
}

/* sa[i] = sum_j a[j] st[i][j];  st[i][j] = st[i][j] w[j] + v[i] k[j] + sa[i] b[j];  out[i] = sum_j st[i][j] r[j] */
GC_OP void gc_op_rwkv_wkv7(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                           int ith, int nth) {
    (void)params;
    const gc_tensor *r = src[0], *w = src[1], *k = src[2], *v = src[3], *a = src[4], *b = src[5], *state = src[6];
    const int64_t S = k->ne[0], H = k->ne[1], T = k->ne[2], C = S * H;
    const int64_t n_seqs = state->ne[1], per = n_seqs > 0 ? T / n_seqs : 0;
    float *st = (float *)ctx->scratch[ith];
    float *rb = gc_rwkv_vec(ctx, ith, S, 0), *wb = gc_rwkv_vec(ctx, ith, S, 1), *kb = gc_rwkv_vec(ctx, ith, S, 2);
    float *vb = gc_rwkv_vec(ctx, ith, S, 3), *ab = gc_rwkv_vec(ctx, ith, S, 4), *bb = gc_rwkv_vec(ctx, ith, S, 5);
    int64_t u0, u1;
    gc_chunk(n_seqs * H, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t seq = u / H, h = u % H, base = seq * H * S * S + h * S * S;
        for (int64_t e = 0; e < S * S; e++) st[e] = gc_get_f32(state->type, gc_flat_ptr(state, base + e));
        for (int64_t t = seq * per; t < (seq + 1) * per; t++) {
            const float *rr = gc_rwkv_row(r, h, t, rb), *ww = gc_rwkv_row(w, h, t, wb);
            const float *kk = gc_rwkv_row(k, h, t, kb), *vv = gc_rwkv_row(v, h, t, vb);
            const float *aa = gc_rwkv_row(a, h, t, ab), *bv = gc_rwkv_row(b, h, t, bb);
            for (int64_t i = 0; i < S; i++) {
                float *row = st + i * S;
                const float sa = gc_vec_dot(aa, row, S), vi = vv[i];
                for (int64_t j = 0; j < S; j++) row[j] = row[j] * ww[j] + vi * kk[j] + sa * bv[j];
                *gc_rwkv_out(dst, t * C + h * S + i) = gc_vec_dot(row, rr, S);
            }
        }
        for (int64_t e = 0; e < S * S; e++) *gc_rwkv_out(dst, T * C + base + e) = st[e];
    }
}

/* --- rwkv_wkv4 (graphc): RWKV-4's WKV with a running max exponent pp, as ChatRWKV's att_seq ----------
 * k, v [C, T]; w (= -exp(time_decay)), u (time_first): C values; state [3*C, n_seqs] = rows aa, bb, pp
 * per sequence. dst [C, T + 3*n_seqs]: T wkv rows, then each sequence's new aa, bb, pp rows.
 * Channels are independent: thread ith takes channels gc_chunk(C) and keeps their aa, bb, pp in
 * scratch; tokens run outer so the channel loop walks contiguous rows. */
static inline size_t gc_scratch_rwkv_wkv4(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    return 3 * GC_ALIGN_UP((size_t)src[0]->ne[0] * sizeof(float));
}

static inline float gc_wkv4_at(const gc_tensor *x, int64_t i0, int64_t i1) {
    const char *p = x->data + i0 * x->nb[0] + i1 * x->nb[1];
    if (x->type == GC_F32) { float f; memcpy(&f, p, 4); return f; }
    return gc_get_f32(x->type, p);
}

/* max that keeps a NaN from either side (torch.maximum / np.maximum) */
static inline float gc_wkv4_max(float a, float b) { return (a > b || a != a) ? a : b; }

GC_OP void gc_op_rwkv_wkv4(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                           int ith, int nth) {
    (void)params;
    const gc_tensor *k = src[0], *v = src[1], *w = src[2], *u = src[3], *state = src[4];
    const int64_t C = k->ne[0], T = k->ne[1], n_seqs = state->ne[1], per = n_seqs > 0 ? T / n_seqs : 0;
    const size_t vec = GC_ALIGN_UP((size_t)C * sizeof(float));
    float *aa = (float *)ctx->scratch[ith];
    float *bb = (float *)((char *)aa + vec), *pp = (float *)((char *)aa + 2 * vec);
    int64_t c0, c1;
    gc_chunk(C, ith, nth, &c0, &c1);
    if (c0 >= c1) return;
    for (int64_t seq = 0; seq < n_seqs; seq++) {
        for (int64_t c = c0; c < c1; c++) {
            aa[c] = gc_get_f32(state->type, GC_AT(state, c, seq, 0, 0));
            bb[c] = gc_get_f32(state->type, GC_AT(state, C + c, seq, 0, 0));
            pp[c] = gc_get_f32(state->type, GC_AT(state, 2 * C + c, seq, 0, 0));
        }
        for (int64_t t = seq * per; t < (seq + 1) * per; t++) {
            for (int64_t c = c0; c < c1; c++) {
                const float kk = gc_wkv4_at(k, c, t), vv = gc_wkv4_at(v, c, t);
                const float wc = gc_get_f32(w->type, gc_flat_ptr(w, c)), uc = gc_get_f32(u->type, gc_flat_ptr(u, c));
                float ww = uc + kk, p = gc_wkv4_max(pp[c], ww);
                float e1 = expf(pp[c] - p), e2 = expf(ww - p);
                const float out = (e1 * aa[c] + e2 * vv) / (e1 * bb[c] + e2);
                memcpy(GC_AT(dst, c, t, 0, 0), &out, 4);
                ww = wc + pp[c];
                p = gc_wkv4_max(ww, kk);
                e1 = expf(ww - p);
                e2 = expf(kk - p);
                aa[c] = e1 * aa[c] + e2 * vv;
                bb[c] = e1 * bb[c] + e2;
                pp[c] = p;
            }
        }
        for (int64_t c = c0; c < c1; c++) {
            memcpy(GC_AT(dst, c, T + 3 * seq, 0, 0), &aa[c], 4);
            memcpy(GC_AT(dst, c, T + 3 * seq + 1, 0, 0), &bb[c], 4);
            memcpy(GC_AT(dst, c, T + 3 * seq + 2, 0, 0), &pp[c], 4);
        }
    }
}

#endif
