/* GC_PROVIDES: */
/* Shared helpers of the op library (ops_*.h): row addressing, f32 row load/store through any strides
 * and float or block type, element conversion, ggml's reference quantizers. Internal to the library. */
#ifndef GC_OPS_COMMON_H
#define GC_OPS_COMMON_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "graphc.h"
#include "graphc_params.h"
#include "dequant.h"

#define GC_OP static inline
#define GC_ALIGN_UP(n) (((n) + 63) & ~(size_t)63)

static inline int64_t gc_nrows(const gc_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

static inline int64_t gc_nelements(const gc_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

/* row number ir (i1 fastest) -> (i1, i2, i3) of a tensor's ne */
static inline void gc_unravel_row(const int64_t *ne, int64_t ir, int64_t *i1, int64_t *i2, int64_t *i3) {
    *i1 = ir % ne[1];
    ir /= ne[1];
    *i2 = ir % ne[2];
    *i3 = ir / ne[2];
}

static inline char *gc_row_ptr(const gc_tensor *t, int64_t i1, int64_t i2, int64_t i3) {
    return t->data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

/* the element at flat index f (ggml element order) */
static inline char *gc_flat_ptr(const gc_tensor *t, int64_t f) {
    int64_t i0 = f % t->ne[0];
    f /= t->ne[0];
    int64_t i1 = f % t->ne[1];
    f /= t->ne[1];
    int64_t i2 = f % t->ne[2];
    return t->data + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + (f / t->ne[2]) * t->nb[3];
}

static inline int gc_is_float_type(int32_t type) { return type == GC_F32 || type == GC_F16 || type == GC_BF16; }

/* one plain element as f32 (ints converted) */
static inline float gc_get_f32(int32_t type, const char *p) {
    switch (type) {
    case GC_F32: { float v; memcpy(&v, p, 4); return v; }
    case GC_F16: { uint16_t h; memcpy(&h, p, 2); return gc_fp16_to_fp32(h); }
    case GC_BF16: { uint16_t h; memcpy(&h, p, 2); return gc_bf16_to_fp32(h); }
    case GC_I32: { int32_t v; memcpy(&v, p, 4); return (float)v; }
    case GC_I16: { int16_t v; memcpy(&v, p, 2); return (float)v; }
    case GC_I8: return (float)*(const int8_t *)p;
    case GC_I64: { int64_t v; memcpy(&v, p, 8); return (float)v; }
    case GC_F64: { double v; memcpy(&v, p, 8); return (float)v; }
    default: return 0.0f;
    }
}

static inline int64_t gc_trunc_i64(double v) { return isfinite(v) ? (int64_t)v : 0; }

/* one plain element from a value (ints kept exact; floats to ints truncate, non-finite -> 0) */
static inline void gc_put_f32(int32_t type, char *p, float v) {
    switch (type) {
    case GC_F32: memcpy(p, &v, 4); break;
    case GC_F16: { uint16_t h = gc_fp32_to_fp16(v); memcpy(p, &h, 2); break; }
    case GC_BF16: { uint16_t h = gc_fp32_to_bf16(v); memcpy(p, &h, 2); break; }
    case GC_I32: { int32_t x = (int32_t)gc_trunc_i64(v); memcpy(p, &x, 4); break; }
    case GC_I16: { int16_t x = (int16_t)gc_trunc_i64(v); memcpy(p, &x, 2); break; }
    case GC_I8: *(int8_t *)p = (int8_t)gc_trunc_i64(v); break;
    case GC_I64: { int64_t x = gc_trunc_i64(v); memcpy(p, &x, 8); break; }
    case GC_F64: { double x = v; memcpy(p, &x, 8); break; }
    default: break;
    }
}

static inline int gc_is_int_type(int32_t type) {
    return type == GC_I32 || type == GC_I16 || type == GC_I8 || type == GC_I64;
}

static inline int64_t gc_get_i64(int32_t type, const char *p) {
    switch (type) {
    case GC_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GC_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GC_I8: return *(const int8_t *)p;
    case GC_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return gc_trunc_i64(gc_get_f32(type, p));
    }
}

/* convert one element between plain types the way ggml/ref do (floats through f32; int -> int exact) */
static inline void gc_convert_elem(int32_t st, const char *s, int32_t dt, char *d) {
    if (st == dt) { memcpy(d, s, (size_t)gc_type_size(st)); return; }
    if (gc_is_int_type(st) && gc_is_int_type(dt)) {
        int64_t v = gc_get_i64(st, s);
        switch (dt) {
        case GC_I32: { int32_t x = (int32_t)v; memcpy(d, &x, 4); break; }
        case GC_I16: { int16_t x = (int16_t)v; memcpy(d, &x, 2); break; }
        case GC_I8: *(int8_t *)d = (int8_t)v; break;
        default: memcpy(d, &v, 8); break;
        }
        return;
    }
    gc_put_f32(dt, d, gc_get_f32(st, s));
}

/* ---- ggml's reference quantizers (quantize_row_*_ref; graphc.quants is byte-identical) ------------ */

static inline int gc_q_trunc(float t, int hi) {   /* (int8_t)(t) then MIN(hi, .), NaN -> 0 */
    if (t != t) return 0;
    if (t >= (float)hi) return hi;
    return (int)(int8_t)(int)t;
}

static GC_EXACT void gc_qref_row_q4_0(const float *x, block_q4_0 *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, x += GC_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GC_QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = gc_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            float x0 = x[j] * id, x1 = x[16 + j] * id;
            int q0 = gc_q_trunc(x0 + 8.5f, 15), q1 = gc_q_trunc(x1 + 8.5f, 15);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
        }
    }
}

static GC_EXACT void gc_qref_row_q4_1(const float *x, block_q4_1 *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, x += GC_QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < GC_QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = gc_fp32_to_fp16(d);
        y[i].m = gc_fp32_to_fp16(min);
        for (int j = 0; j < 16; j++) {
            float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            int q0 = gc_q_trunc(x0 + 0.5f, 15), q1 = gc_q_trunc(x1 + 0.5f, 15);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
        }
    }
}

static GC_EXACT void gc_qref_row_q5_0(const float *x, block_q5_0 *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, x += GC_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GC_QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = gc_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            float x0 = x[j] * id, x1 = x[16 + j] * id;
            int q0 = gc_q_trunc(x0 + 16.5f, 31), q1 = gc_q_trunc(x1 + 16.5f, 31);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (((uint32_t)q0 & 0x10u) >> 4) << j;
            qh |= (((uint32_t)q1 & 0x10u) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static GC_EXACT void gc_qref_row_q5_1(const float *x, block_q5_1 *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, x += GC_QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < GC_QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = gc_fp32_to_fp16(d);
        y[i].m = gc_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            int q0 = gc_q_trunc(x0 + 0.5f, 255), q1 = gc_q_trunc(x1 + 0.5f, 255);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (((uint32_t)q0 & 0x10u) >> 4) << j;
            qh |= (((uint32_t)q1 & 0x10u) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static GC_EXACT void gc_qref_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, x += GC_QK) {
        float amax = 0.0f;
        for (int j = 0; j < GC_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = gc_fp32_to_fp16(d);
        for (int j = 0; j < GC_QK; j++) {
            float v = roundf(x[j] * id);
            y[i].qs[j] = (int8_t)(v != v ? 0 : (v > 127.0f ? 127 : (v < -128.0f ? -128 : (int)v)));
        }
    }
}

/* f32 row -> the reference quantizer of `type`; returns -1 for a type without one here */
static inline int gc_quantize_row_ref(int32_t type, const float *x, void *y, int64_t n) {
    switch (type) {
    case GC_Q4_0: gc_qref_row_q4_0(x, (block_q4_0 *)y, n); return 0;
    case GC_Q4_1: gc_qref_row_q4_1(x, (block_q4_1 *)y, n); return 0;
    case GC_Q5_0: gc_qref_row_q5_0(x, (block_q5_0 *)y, n); return 0;
    case GC_Q5_1: gc_qref_row_q5_1(x, (block_q5_1 *)y, n); return 0;
    case GC_Q8_0: gc_qref_row_q8_0(x, (block_q8_0 *)y, n); return 0;
    default: return -1;
    }
}

/* ---- f32 rows through strides -------------------------------------------------------------------- */

/* n values of the row at p (t's type, stride t->nb[0]) as f32: p itself when already contiguous f32,
 * else converted into tmp (n floats). Block types need adjacent blocks (as ggml). */
static inline const float *gc_load_row(const gc_tensor *t, const char *p, int64_t n, float *tmp) {
    const int64_t s = t->nb[0];
    switch (t->type) {
    case GC_F32:
        if (s == 4) return (const float *)p;
        for (int64_t i = 0; i < n; i++) memcpy(tmp + i, p + i * s, 4);
        return tmp;
    case GC_F16:
        if (s == 2) gc_fp16_to_fp32_row((const gc_half *)p, tmp, n);
        else for (int64_t i = 0; i < n; i++) tmp[i] = gc_get_f32(GC_F16, p + i * s);
        return tmp;
    case GC_BF16:
        for (int64_t i = 0; i < n; i++) tmp[i] = gc_get_f32(GC_BF16, p + i * s);
        return tmp;
    default:
        if (gc_type_blck(t->type) > 1) {
            if (gc_dequantize_row(t->type, p, tmp, n) != 0) memset(tmp, 0, (size_t)n * sizeof(float));
        } else {
            for (int64_t i = 0; i < n; i++) tmp[i] = gc_get_f32(t->type, p + i * s);
        }
        return tmp;
    }
}

/* store n f32 values into the row at p in t's type and stride (block types: reference quantizer) */
static inline void gc_store_row(const gc_tensor *t, char *p, const float *x, int64_t n) {
    const int64_t s = t->nb[0];
    switch (t->type) {
    case GC_F32:
        if (s == 4) { if ((const char *)x != p) memmove(p, x, (size_t)n * 4); }
        else for (int64_t i = 0; i < n; i++) memcpy(p + i * s, x + i, 4);
        return;
    case GC_F16:
        if (s == 2) gc_fp32_to_fp16_row(x, (gc_half *)p, n);
        else for (int64_t i = 0; i < n; i++) gc_put_f32(GC_F16, p + i * s, x[i]);
        return;
    default:
        if (gc_type_blck(t->type) > 1) gc_quantize_row_ref(t->type, x, p, n);
        else for (int64_t i = 0; i < n; i++) gc_put_f32(t->type, p + i * s, x[i]);
        return;
    }
}

/* a row the op writes as f32: dst's own memory when it is contiguous f32, else tmp (then gc_store_row) */
static inline float *gc_out_row(const gc_tensor *t, char *p, float *tmp) {
    return (t->type == GC_F32 && t->nb[0] == 4) ? (float *)p : tmp;
}

/* per-thread scratch for ops that convert rows: k rows of n floats, 64-byte aligned pieces */
static inline size_t gc_rows_bytes(int64_t n, int k) { return (size_t)k * GC_ALIGN_UP((size_t)n * sizeof(float)); }

static inline float *gc_scratch_row(const gc_ctx *ctx, int ith, int64_t n, int k) {
    return (float *)((char *)ctx->scratch[ith] + (size_t)k * GC_ALIGN_UP((size_t)n * sizeof(float)));
}

/* ---- vector helpers ------------------------------------------------------------------------------ */

static inline double gc_sum_f64(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i];
    return s;
}

static inline double gc_sumsq_f64(const float *x, int64_t n) {   /* sum of f32 squares, in f64 */
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) { float q = x[i] * x[i]; s += (double)q; }
    return s;
}

static inline void gc_vec_scale(float *y, const float *x, float s, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512 vs = _mm512_set1_ps(s);
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
#elif defined(__AVX2__)
    __m256 vs = _mm256_set1_ps(s);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
#endif
    for (; i < n; i++) y[i] = x[i] * s;
}

static inline float gc_vec_dot(const float *x, const float *y, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
    s = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

/* y += a * x */
static inline void gc_vec_axpy(float *y, const float *x, float a, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512 va = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(x + i), va, _mm512_loadu_ps(y + i)));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

/* ALiBi slope of head h (ggml soft_max / flash_attn_ext), as the reference computes it */
static inline float gc_alibi_slope(float max_bias, int64_t n_head, int64_t h) {
    if (max_bias <= 0.0f) return 1.0f;
    int64_t n_log2 = 1;
    while (n_log2 * 2 <= n_head) n_log2 *= 2;
    const float m0 = (float)pow(2.0, (double)(-max_bias / (float)n_log2));
    const float m1 = (float)pow(2.0, (double)(-(max_bias / 2.0f) / (float)n_log2));
    return h < n_log2 ? (float)pow((double)m0, (double)(h + 1)) : (float)pow((double)m1, (double)(2 * (h - n_log2) + 1));
}

#endif
