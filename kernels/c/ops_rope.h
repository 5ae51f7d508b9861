/* GC_PROVIDES: rope */
/* rope, normal (adjacent pairs) and neox (halves) modes, with freq_scale, YaRN (ext_factor, attn_factor,
 * beta_fast/slow over n_ctx_orig) and freq_factors, as targets/ref/attention.py (ggml_rope_cache_init):
 * theta = pos * theta_scale^i accumulated in f32, cos/sin times mscale. a is [ne0, heads, tokens, ne3];
 * pos[i2] is token i2's position. Rows split over threads; the cos/sin cache is rebuilt per token. */
#ifndef GC_OPS_ROPE_H
#define GC_OPS_ROPE_H

#include "ops_common.h"

static inline size_t gc_scratch_rope(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    return gc_rows_bytes(src[0]->ne[0], 5);
}

static inline float gc_rope_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    const float denom = n_rot * 2.0f * 3.14159265358979323846f;
    return (float)n_dims * logf((float)n_ctx_orig / denom) / (2.0f * logf(base));
}

/* cos/sin (times mscale) of the n_dims/2 angles of position pos */
static inline void gc_rope_cache(const gc_p_rope *p, int32_t pos, const float *ff, float *cs, float *sn) {
    const int half = p->n_dims / 2;
    const float theta_scale = (float)pow((double)p->freq_base, (double)(-2.0f / (float)p->n_dims));
    float low = 0.0f, high = 0.0f, mscale = p->attn_factor;
    if (p->ext_factor != 0.0f) {
        const float start = floorf(gc_rope_corr_dim(p->n_dims, p->n_ctx_orig, p->beta_fast, p->freq_base));
        const float end = ceilf(gc_rope_corr_dim(p->n_dims, p->n_ctx_orig, p->beta_slow, p->freq_base));
        low = 0.0f > start ? 0.0f : start;
        high = (float)(p->n_dims - 1) < end ? (float)(p->n_dims - 1) : end;
        mscale = mscale * (1.0f + 0.1f * logf(1.0f / p->freq_scale));
    }
    float t = (float)pos;
    for (int i = 0; i < half; i++) {
        const float theta_extrap = ff ? t / ff[i] : t;
        const float theta_interp = p->freq_scale * theta_extrap;
        float th = theta_interp;
        if (p->ext_factor != 0.0f) {
            const float denom = 0.001f > high - low ? 0.001f : high - low;
            const float y = ((float)i - low) / denom;
            const float ramp = 1.0f - fminf(1.0f, fmaxf(0.0f, y));
            const float mix = ramp * p->ext_factor;
            th = theta_interp * (1.0f - mix) + theta_extrap * mix;
        }
        cs[i] = cosf(th) * mscale;
        sn[i] = sinf(th) * mscale;
        t = t * theta_scale;
    }
}

GC_OP void gc_op_rope(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                      int ith, int nth) {
    const gc_p_rope *p = (const gc_p_rope *)params;
    const gc_tensor *a = src[0], *pos = src[1], *fft = src[2];
    const int64_t ne0 = a->ne[0];
    const int n_dims = p->n_dims, half = n_dims / 2;
    if (n_dims <= 0 || n_dims > ne0) return;
    float *cs = gc_scratch_row(ctx, ith, ne0, 0), *sn = gc_scratch_row(ctx, ith, ne0, 1);
    float *tmp = gc_scratch_row(ctx, ith, ne0, 2), *otmp = gc_scratch_row(ctx, ith, ne0, 3);
    float *ff = NULL;
    if (fft) {
        ff = gc_scratch_row(ctx, ith, ne0, 4);
        for (int i = 0; i < half; i++) ff[i] = gc_get_f32(fft->type, gc_flat_ptr(fft, i));
    }
    int64_t r0, r1;
    gc_chunk(gc_nrows(a), ith, nth, &r0, &r1);
    int64_t cached = -1;
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(a->ne, ir, &i1, &i2, &i3);
        if (i2 != cached) {
            int32_t ps = (int32_t)gc_get_i64(pos->type, gc_flat_ptr(pos, i2));
            gc_rope_cache(p, ps, ff, cs, sn);
            cached = i2;
        }
        const float *x = gc_load_row(a, gc_row_ptr(a, i1, i2, i3), ne0, tmp);
        char *dp = gc_row_ptr(dst, i1, i2, i3);
        float *y = gc_out_row(dst, dp, otmp);
        if (y == x) {   /* in place: rotate through otmp */
            y = otmp;
        }
        if (p->mode == 2) {
            for (int i = 0; i < half; i++) {
                const float x0 = x[i], x1 = x[i + half];
                y[i] = x0 * cs[i] - x1 * sn[i];
                y[i + half] = x0 * sn[i] + x1 * cs[i];
            }
        } else {
            for (int i = 0; i < half; i++) {
                const float x0 = x[2 * i], x1 = x[2 * i + 1];
                y[2 * i] = x0 * cs[i] - x1 * sn[i];
                y[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
            }
        }
        for (int64_t i = n_dims; i < ne0; i++) y[i] = x[i];
        if (y != (float *)dp) gc_store_row(dst, dp, y, ne0);
    }
}

#endif
