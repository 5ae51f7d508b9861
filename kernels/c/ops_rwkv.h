/* GC_PROVIDES: rwkv_wkv6 rwkv_wkv7 */
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

#endif
