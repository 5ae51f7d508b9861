/* GC_PROVIDES: flash_attn_ext */
/* flash_attn_ext as targets/ref/attention.py: per query row, scores K.Q (Q first taken through K's
 * vec_dot_type as ggml does: f16/bf16 rounding, or 8-bit block quantization for block-typed K) times
 * scale (softcap: softcap*tanh(s*scale/softcap)), plus slope*mask (mask read as f16; -inf keys skipped),
 * softmax with sinks, times V; f32 accumulation. Result [DV, n_head, n_q, ne3]. Rows (query x head x
 * batch) split over threads; two passes over the keys with the scores in scratch. */
#ifndef GC_OPS_ATTN_H
#define GC_OPS_ATTN_H

#include "ops_common.h"

static inline int64_t gc_fa_width(const gc_tensor *const *src) {
    int64_t w = src[1]->ne[1];
    if (src[0]->ne[0] > w) w = src[0]->ne[0];
    if (src[2]->ne[0] > w) w = src[2]->ne[0];
    return w;
}

static inline size_t gc_scratch_flash_attn_ext(const gc_tensor *dst, const gc_tensor *const *src,
                                               const void *params) {
    (void)dst; (void)params;
    return gc_rows_bytes(gc_fa_width(src), 5);
}

/* q8_0 / q8_1 as ggml's x86 from_float makes them (id = 127/amax, round to nearest even), back to f32 */
static inline GC_EXACT void gc_fa_round_q8(float *x, int64_t n) {
    for (int64_t b = 0; b + GC_QK <= n; b += GC_QK) {
        float amax = 0.0f;
        for (int j = 0; j < GC_QK; j++) amax = fmaxf(amax, fabsf(x[b + j]));
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const float dh = gc_fp16_to_fp32(gc_fp32_to_fp16(d));
        for (int j = 0; j < GC_QK; j++) {
            float q = nearbyintf(x[b + j] * id);
            q = q > 127.0f ? 127.0f : (q < -128.0f ? -128.0f : q);
            x[b + j] = q * dh;
        }
    }
}

/* q8_K (quantize_row_q8_K_ref: iscale = -127/max, nearest int, d = 1/iscale), back to f32 */
static inline GC_EXACT void gc_fa_round_q8K(float *x, int64_t n) {
    for (int64_t b = 0; b + GC_QK_K <= n; b += GC_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GC_QK_K; j++)
            if (amax < fabsf(x[b + j])) { amax = fabsf(x[b + j]); max = x[b + j]; }
        if (amax == 0.0f) { for (int j = 0; j < GC_QK_K; j++) x[b + j] = 0.0f; continue; }
        const float iscale = -127.0f / max, d = 1.0f / iscale;
        for (int j = 0; j < GC_QK_K; j++) {
            float q = nearbyintf(iscale * x[b + j]);
            q = q > 127.0f ? 127.0f : q;
            x[b + j] = d * q;
        }
    }
}

/* Q values as ggml's vec_dot with K's type sees them */
static inline void gc_fa_round_q(float *q, int64_t n, int32_t ktype) {
    switch (ktype) {
    case GC_F16: for (int64_t i = 0; i < n; i++) q[i] = gc_fp16_to_fp32(gc_fp32_to_fp16(q[i])); break;
    case GC_BF16: for (int64_t i = 0; i < n; i++) q[i] = gc_bf16_to_fp32(gc_fp32_to_bf16(q[i])); break;
    case GC_Q4_0: case GC_Q4_1: case GC_Q5_0: case GC_Q5_1: case GC_Q8_0: gc_fa_round_q8(q, n); break;
    case GC_Q2_K: case GC_Q3_K: case GC_Q4_K: case GC_Q5_K: case GC_Q6_K: gc_fa_round_q8K(q, n); break;
    default: break;
    }
}

GC_OP void gc_op_flash_attn_ext(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src,
                                const void *params, int ith, int nth) {
    const gc_p_flash_attn_ext *p = (const gc_p_flash_attn_ext *)params;
    const gc_tensor *q = src[0], *k = src[1], *v = src[2], *mask = src[3], *sinks = src[4];
    const int64_t D = q->ne[0], Dv = v->ne[0], Nq = q->ne[1], H = q->ne[2], B = q->ne[3], Nk = k->ne[1];
    const int64_t rh = H / k->ne[2], rb = B / k->ne[3];
    const int64_t w = gc_fa_width(src);
    float *qb = gc_scratch_row(ctx, ith, w, 0), *s = gc_scratch_row(ctx, ith, w, 1);
    float *kb = gc_scratch_row(ctx, ith, w, 2), *vb = gc_scratch_row(ctx, ith, w, 3);
    float *acc = gc_scratch_row(ctx, ith, w, 4);
    float scale = p->scale;
    const float softcap = p->softcap;
    if (softcap != 0.0f) scale = scale / softcap;
    int64_t r0, r1;
    gc_chunk(Nq * H * B, ith, nth, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        const int64_t h = ir % H, iq = (ir / H) % Nq, b = ir / (H * Nq);
        const int64_t hk = h / rh, bk = b / rb;
        const float *qr = gc_load_row(q, GC_AT(q, 0, iq, h, b), D, qb);
        if (qr != qb) memcpy(qb, qr, (size_t)D * sizeof(float));
        gc_fa_round_q(qb, D, k->type);
        const float slope = mask ? gc_alibi_slope(p->max_bias, H, h) : 1.0f;
        const char *mr = mask ? gc_row_ptr(mask, iq, h % mask->ne[2], b % mask->ne[3]) : NULL;
        float mx = -INFINITY;
        for (int64_t j = 0; j < Nk; j++) {
            float mv = 0.0f;
            if (mr) {
                float m = gc_get_f32(mask->type, mr + j * mask->nb[0]);
                mv = slope * gc_fp16_to_fp32(gc_fp32_to_fp16(m));
                if (mv == -INFINITY) { s[j] = -INFINITY; continue; }
            }
            const float *kr = gc_load_row(k, GC_AT(k, 0, j, hk, bk), D, kb);
            float sc = gc_vec_dot(qb, kr, D) * scale;
            if (softcap != 0.0f) sc = softcap * tanhf(sc);
            sc = sc + mv;
            s[j] = sc;
            if (mx == mx && (sc != sc || sc > mx)) mx = sc;   /* NaN propagates, as numpy's max */
        }
        float sk = 0.0f;
        if (sinks) {
            sk = gc_get_f32(sinks->type, gc_flat_ptr(sinks, h));
            mx = mx != mx ? mx : (sk > mx ? sk : mx);
        }
        memset(acc, 0, (size_t)Dv * sizeof(float));
        double total = 0.0;
        for (int64_t j = 0; j < Nk; j++) {
            if (s[j] == -INFINITY) continue;          /* a masked-out key: weight 0 */
            const float pj = expf(s[j] - mx);
            total += (double)pj;
            if (pj == 0.0f) continue;
            const float *vr = gc_load_row(v, GC_AT(v, 0, j, hk, bk), Dv, vb);
            if (pj != pj) { for (int64_t d = 0; d < Dv; d++) acc[d] += pj * vr[d]; continue; }
            gc_vec_axpy(acc, vr, pj, Dv);
        }
        float tot = (float)total;
        if (sinks) tot = tot + expf(sk - mx);
        const float inv = tot == 0.0f ? 0.0f : 1.0f / tot;
        char *dp = GC_AT(dst, 0, h, iq, b);
        float *y = gc_out_row(dst, dp, acc);
        gc_vec_scale(y, acc, inv, Dv);
        if (y != (float *)dp) gc_store_row(dst, dp, y, Dv);
    }
}

#endif
