/* GC_PROVIDES: norm rms_norm l2_norm group_norm sum sum_rows mean argmax soft_max */
/* Reductions along ne0 and normalisations, as targets/ref/reduce.py (ggml-cpu/ops.cpp): sums of f32
 * terms accumulate in f64 (ggml_float) and are rounded to f32 where ggml stores a float. Rows are split
 * over threads with gc_chunk; sources and destination may be any strided view, f32/f16/bf16. */
#ifndef GC_OPS_NORM_H
#define GC_OPS_NORM_H

#include "ops_common.h"

/* scratch: two rows of the widest of dst / src0 */
static inline size_t gc_norm_rows_bytes(const gc_tensor *dst, const gc_tensor *const *src) {
    int64_t n = dst->ne[0] > src[0]->ne[0] ? dst->ne[0] : src[0]->ne[0];
    return gc_rows_bytes(n, 2);
}

#define GC_ROW_SCRATCH(op) \
    static inline size_t gc_scratch_##op(const gc_tensor *dst, const gc_tensor *const *src, const void *params) { \
        (void)params; return gc_norm_rows_bytes(dst, src); }

GC_ROW_SCRATCH(norm)
GC_ROW_SCRATCH(rms_norm)
GC_ROW_SCRATCH(l2_norm)
GC_ROW_SCRATCH(sum_rows)
GC_ROW_SCRATCH(mean)
GC_ROW_SCRATCH(argmax)
GC_ROW_SCRATCH(soft_max)

static inline size_t gc_scratch_sum(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)params; (void)dst;
    return gc_rows_bytes(src[0]->ne[0], 1);
}

/* the row-wise normalisations: kind 0 norm, 1 rms_norm, 2 l2_norm */
static inline void gc_norm_rows(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *a, float eps, int kind,
                                int ith, int nth) {
    const int64_t n = a->ne[0];
    int64_t r0, r1;
    gc_chunk(gc_nrows(a), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0), *otmp = gc_scratch_row(ctx, ith, n, 1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(a->ne, ir, &i1, &i2, &i3);
        const float *x = gc_load_row(a, gc_row_ptr(a, i1, i2, i3), n, tmp);
        char *dp = gc_row_ptr(dst, i1, i2, i3);
        float *y = gc_out_row(dst, dp, otmp);
        if (kind == 0) {
            const float mean = (float)gc_sum_f64(x, n) / (float)n;
            double s2 = 0.0;
            for (int64_t i = 0; i < n; i++) { float d = x[i] - mean; y[i] = d; s2 += (double)(d * d); }
            const float var = (float)(s2 / (double)n);
            const float scale = 1.0f / sqrtf(var + eps);
            gc_vec_scale(y, y, scale, n);
        } else if (kind == 1) {
            const float msq = (float)(gc_sumsq_f64(x, n) / (double)n);
            gc_vec_scale(y, x, 1.0f / sqrtf(msq + eps), n);
        } else {
            const float nrm = sqrtf((float)gc_sumsq_f64(x, n));
            gc_vec_scale(y, x, 1.0f / fmaxf(nrm, eps), n);
        }
        if (y != (float *)dp) gc_store_row(dst, dp, y, n);
    }
}

GC_OP void gc_op_norm(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                      int ith, int nth) {
    gc_norm_rows(ctx, dst, src[0], ((const gc_p_norm *)params)->eps, 0, ith, nth);
}

GC_OP void gc_op_rms_norm(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                          int ith, int nth) {
    gc_norm_rows(ctx, dst, src[0], ((const gc_p_rms_norm *)params)->eps, 1, ith, nth);
}

GC_OP void gc_op_l2_norm(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                         int ith, int nth) {
    gc_norm_rows(ctx, dst, src[0], ((const gc_p_l2_norm *)params)->eps, 2, ith, nth);
}

/* groups of ceil(ne2 / n_groups) channels along ne2 (the last may be smaller), per i3 */
GC_OP void gc_op_group_norm(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src,
                            const void *params, int ith, int nth) {
    (void)ctx;
    const gc_p_group_norm *p = (const gc_p_group_norm *)params;
    const gc_tensor *a = src[0];
    const int64_t ne0 = a->ne[0], ne1 = a->ne[1], ne2 = a->ne[2];
    const int64_t G = p->n_groups > 0 ? p->n_groups : 1;
    const int64_t per = (ne2 + G - 1) / G, ngr = per > 0 ? (ne2 + per - 1) / per : 0;
    int64_t u0, u1;
    gc_chunk(ngr * a->ne[3], ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t i3 = u / ngr, c0 = (u % ngr) * per, c1 = c0 + per < ne2 ? c0 + per : ne2;
        const double cnt = (double)(ne0 * ne1 * (c1 - c0));
        double s = 0.0;
        for (int64_t i2 = c0; i2 < c1; i2++)
            for (int64_t i1 = 0; i1 < ne1; i1++) {
                const char *r = gc_row_ptr(a, i1, i2, i3);
                for (int64_t i0 = 0; i0 < ne0; i0++) s += (double)gc_get_f32(a->type, r + i0 * a->nb[0]);
            }
        const float mean = (float)(s / cnt);
        double s2 = 0.0;
        for (int64_t i2 = c0; i2 < c1; i2++)
            for (int64_t i1 = 0; i1 < ne1; i1++) {
                const char *r = gc_row_ptr(a, i1, i2, i3);
                for (int64_t i0 = 0; i0 < ne0; i0++) {
                    float d = gc_get_f32(a->type, r + i0 * a->nb[0]) - mean;
                    s2 += (double)(d * d);
                }
            }
        const float scale = 1.0f / sqrtf((float)(s2 / cnt) + p->eps);
        for (int64_t i2 = c0; i2 < c1; i2++)
            for (int64_t i1 = 0; i1 < ne1; i1++) {
                const char *r = gc_row_ptr(a, i1, i2, i3);
                char *o = gc_row_ptr(dst, i1, i2, i3);
                for (int64_t i0 = 0; i0 < ne0; i0++)
                    gc_put_f32(dst->type, o + i0 * dst->nb[0], (gc_get_f32(a->type, r + i0 * a->nb[0]) - mean) * scale);
            }
    }
}

/* sum of every element, f64 accumulation; one thread does it (a single output) */
GC_OP void gc_op_sum(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                     int ith, int nth) {
    (void)params; (void)nth;
    if (ith != 0) return;
    const gc_tensor *a = src[0];
    float *tmp = gc_scratch_row(ctx, ith, a->ne[0], 0);
    double s = 0.0;
    for (int64_t ir = 0; ir < gc_nrows(a); ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(a->ne, ir, &i1, &i2, &i3);
        s += gc_sum_f64(gc_load_row(a, gc_row_ptr(a, i1, i2, i3), a->ne[0], tmp), a->ne[0]);
    }
    gc_put_f32(dst->type, dst->data, (float)s);
}

static inline void gc_row_sums(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *a, int mean, int ith,
                               int nth) {
    const int64_t n = a->ne[0];
    int64_t r0, r1;
    gc_chunk(gc_nrows(a), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(a->ne, ir, &i1, &i2, &i3);
        float v = (float)gc_sum_f64(gc_load_row(a, gc_row_ptr(a, i1, i2, i3), n, tmp), n);
        if (mean) v = v / (float)n;
        gc_put_f32(dst->type, gc_row_ptr(dst, i1, i2, i3), v);
    }
}

GC_OP void gc_op_sum_rows(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                          int ith, int nth) {
    (void)params;
    gc_row_sums(ctx, dst, src[0], 0, ith, nth);
}

GC_OP void gc_op_mean(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                      int ith, int nth) {
    (void)params;
    gc_row_sums(ctx, dst, src[0], 1, ith, nth);
}

/* index of the LAST maximum of each row (ggml: max = MAX(max, x); if (max == x) idx = i) */
GC_OP void gc_op_argmax(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                        int ith, int nth) {
    (void)params;
    const gc_tensor *a = src[0];
    const int64_t n = a->ne[0];
    int64_t r0, r1;
    gc_chunk(a->ne[1], ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0);
    for (int64_t i1 = r0; i1 < r1; i1++) {
        const float *x = gc_load_row(a, gc_row_ptr(a, i1, 0, 0), n, tmp);
        float max = -INFINITY;
        int32_t idx = 0;
        for (int64_t i = 0; i < n; i++) {
            max = max > x[i] ? max : x[i];
            if (max == x[i]) idx = (int32_t)i;
        }
        memcpy(dst->data + i1 * dst->nb[0], &idx, 4);
    }
}

/* ---- soft_max ------------------------------------------------------------------------------------ */

/* y = exp(x - m) for n values; returns their f64 sum. Vector paths use a Cody-Waite range reduction and a
 * degree-6 polynomial (|rel err| < 2e-7, inputs <= 0 here; -inf -> 0, NaN stays NaN). */
#if defined(__AVX512F__)
static inline __m512 gc_exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f);
    __m512 xc = _mm512_max_ps(x, lo);                     /* NaN in x -> lo (fixed below) */
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 y = _mm512_scalef_ps(p, k);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(y, nan, x);
}
#endif

static inline double gc_exp_sub_sum(float *y, const float *x, float m, int64_t n) {
    int64_t i = 0;
    double sum = 0.0;
#if defined(__AVX512F__)
    const __m512 vm = _mm512_set1_ps(m);
    for (; i + 16 <= n; i += 16) {
        __m512 e = gc_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(y + i, e);
        __m256 lo = _mm512_castps512_ps256(e), hi = _mm512_extractf32x8_ps(e, 1);
        __m512d s = _mm512_add_pd(_mm512_cvtps_pd(lo), _mm512_cvtps_pd(hi));
        sum += _mm512_reduce_add_pd(s);
    }
#endif
    for (; i < n; i++) {
        y[i] = expf(x[i] - m);
        sum += (double)y[i];
    }
    return sum;
}

GC_OP void gc_op_soft_max(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                          int ith, int nth) {
    const gc_p_soft_max *p = (const gc_p_soft_max *)params;
    const gc_tensor *a = src[0], *mask = src[1], *sinks = src[2];
    const int64_t n = a->ne[0];
    int64_t r0, r1;
    gc_chunk(gc_nrows(a), ith, nth, &r0, &r1);
    float *w = gc_scratch_row(ctx, ith, n, 0), *tmp = gc_scratch_row(ctx, ith, n, 1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(a->ne, ir, &i1, &i2, &i3);
        const float *x = gc_load_row(a, gc_row_ptr(a, i1, i2, i3), n, tmp);
        for (int64_t i = 0; i < n; i++) w[i] = x[i] * p->scale;
        if (mask) {
            const float slope = gc_alibi_slope(p->max_bias, a->ne[2], i2);
            const char *mr = gc_row_ptr(mask, i1, i2 % mask->ne[2], i3 % mask->ne[3]);
            const int64_t ms = mask->nb[0];
            if (mask->type == GC_F16)
                for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, mr + i * ms, 2); w[i] += slope * gc_fp16_to_fp32(h); }
            else
                for (int64_t i = 0; i < n; i++) { float v; memcpy(&v, mr + i * ms, 4); w[i] += slope * v; }
        }
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mx = w[i] > mx ? w[i] : (w[i] != w[i] ? w[i] : mx);
        float sk = 0.0f;
        if (sinks) {
            sk = gc_get_f32(sinks->type, gc_flat_ptr(sinks, i2));
            mx = mx != mx ? mx : (sk > mx ? sk : mx);
        }
        char *dp = gc_row_ptr(dst, i1, i2, i3);
        float *y = gc_out_row(dst, dp, tmp);
        double s = gc_exp_sub_sum(y, w, mx, n);
        if (sinks) s += (double)expf(sk - mx);
        gc_vec_scale(y, y, (float)(1.0 / s), n);
        if (y != (float *)dp) gc_store_row(dst, dp, y, n);
    }
}

#endif
