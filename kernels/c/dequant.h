/* GC_PROVIDES: */
/* ggml block layouts, fp16/bf16 conversions and row dequantizers (bit-exact with graphc.quants and
 * ggml's to_float). Shared by the op library and the matmul kernels: keep the names stable. */
#ifndef GC_DEQUANT_H
#define GC_DEQUANT_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include "graphc.h"

#if defined(__AVX2__) || defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

/* Float code whose every rounding must match ggml's reference C (quantizers, dequantizers): GCC
 * would otherwise contract a*b+c into an fma under -march=native. Clang contracts only within one
 * expression, so exact code keeps each rounding step in its own statement. */
#if defined(__GNUC__) && !defined(__clang__)
#define GC_EXACT __attribute__((optimize("fp-contract=off")))
#else
#define GC_EXACT
#endif

#define GC_QK 32
#define GC_QK_K 256

typedef uint16_t gc_half;

typedef struct { gc_half d; uint8_t qs[16]; } block_q4_0;
typedef struct { gc_half d; gc_half m; uint8_t qs[16]; } block_q4_1;
typedef struct { gc_half d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
typedef struct { gc_half d; gc_half m; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1;
typedef struct { gc_half d; int8_t qs[32]; } block_q8_0;
typedef struct { gc_half d; gc_half s; int8_t qs[32]; } block_q8_1;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; gc_half d; gc_half dmin; } block_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; gc_half d; } block_q3_K;
typedef struct { gc_half d; gc_half dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct { gc_half d; gc_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; gc_half d; } block_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K");

/* ---- scalar fp16 / bf16 ---------------------------------------------------------------------- */

static inline uint32_t gc_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float gc_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float gc_fp16_to_fp32(gc_half h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return gc_bits_f32(sign | 0x7F800000u | (man << 13));     /* inf / nan */
    if (exp == 0) {
        if (man == 0) return gc_bits_f32(sign);
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return gc_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
#endif
}

static inline gc_half gc_fp32_to_fp16(float f) {
#if defined(__F16C__)
    return (gc_half)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    uint32_t u = gc_f32_bits(f), sign = (u >> 16) & 0x8000, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (gc_half)(sign | 0x7E00 | ((a >> 13) & 0x3FF));  /* nan stays nan */
    if (a >= 0x477FF000u) return (gc_half)(sign | 0x7C00);                       /* rounds to inf */
    if (a < 0x38800000u) {                                                       /* f16 subnormal/0 */
        if (a < 0x33000000u) return (gc_half)sign;                               /* < half of 2^-24 */
        uint32_t e = a >> 23, m = (a & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e;                  /* value = m * 2^(e-150); f16 unit 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (gc_half)(sign | q);
    }
    uint32_t r = a + 0xFFFu + ((a >> 13) & 1);       /* round to nearest even at bit 13 */
    return (gc_half)(sign | ((r - 0x38000000u) >> 13));
#endif
}

static inline float gc_bf16_to_fp32(uint16_t h) { return gc_bits_f32((uint32_t)h << 16); }

static inline uint16_t gc_fp32_to_bf16(float f) {
    uint32_t u = gc_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 64);      /* quiet nan */
    return (uint16_t)((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
}

/* ---- row conversions --------------------------------------------------------------------------- */

static inline void gc_fp16_to_fp32_row(const gc_half *x, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
#elif defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
#endif
    for (; i < n; i++) y[i] = gc_fp16_to_fp32(x[i]);
}

static inline void gc_fp32_to_fp16_row(const float *x, gc_half *y, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) y[i] = gc_fp32_to_fp16(x[i]);
}

static inline void gc_bf16_to_fp32_row(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gc_bf16_to_fp32(x[i]);
}

static inline void gc_fp32_to_bf16_row(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gc_fp32_to_bf16(x[i]);
}

/* ---- block dequantizers (n = elements, a multiple of the block size) ------------------------- */

static GC_EXACT void gc_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, y += GC_QK) {
        const float d = gc_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((x[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static GC_EXACT void gc_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, y += GC_QK) {
        const float d = gc_fp16_to_fp32(x[i].d), m = gc_fp16_to_fp32(x[i].m);
        for (int j = 0; j < 16; j++) {
            float a = (float)(x[i].qs[j] & 0xF) * d, b = (float)(x[i].qs[j] >> 4) * d;
            y[j] = a + m;
            y[j + 16] = b + m;
        }
    }
}

static GC_EXACT void gc_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, y += GC_QK) {
        const float d = gc_fp16_to_fp32(x[i].d);
        uint32_t qh; memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (float)(((x[i].qs[j] & 0xF) | h0) - 16) * d;
            y[j + 16] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static GC_EXACT void gc_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, y += GC_QK) {
        const float d = gc_fp16_to_fp32(x[i].d), m = gc_fp16_to_fp32(x[i].m);
        uint32_t qh; memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            float a = (float)((x[i].qs[j] & 0xF) | h0) * d, b = (float)((x[i].qs[j] >> 4) | h1) * d;
            y[j] = a + m;
            y[j + 16] = b + m;
        }
    }
}

static GC_EXACT void gc_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK; i++, y += GC_QK) {
        const float d = gc_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

static GC_EXACT void gc_dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK_K; i++) {
        const float d = gc_fp16_to_fp32(x[i].d), dmin = gc_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int c = 0; c < 2; c++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) {
                        float v = dl * (float)((q[l + 16 * half] >> shift) & 3);
                        *y++ = v - ml;
                    }
                }
            }
        }
    }
}

static GC_EXACT void gc_dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK_K; i++) {
        const float d = gc_fp16_to_fp32(x[i].d);
        const uint8_t *raw = x[i].scales, *q = x[i].qs, *hm = x[i].hmask;
        int8_t sc[16];
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? (raw[j] & 0xF) : (raw[j - 8] >> 4);
            int hi = (raw[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            sc[j] = (int8_t)((lo | (hi << 4)) - 32);
        }
        int is = 0;
        uint8_t m = 1;
        for (int c = 0; c < 2; c++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d * (float)sc[is++];
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
            }
        }
    }
}

static inline void gc_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static GC_EXACT void gc_dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK_K; i++) {
        const float d = gc_fp16_to_fp32(x[i].d), dmin = gc_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            gc_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            gc_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) { float v = d1 * (float)(q[l] & 0xF); *y++ = v - m1; }
            for (int l = 0; l < 32; l++) { float v = d2 * (float)(q[l] >> 4); *y++ = v - m2; }
        }
    }
}

static GC_EXACT void gc_dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK_K; i++) {
        const float d = gc_fp16_to_fp32(x[i].d), dmin = gc_fp16_to_fp32(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        unsigned u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            gc_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            gc_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                float v = d1 * (float)((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0));
                *y++ = v - m1;
            }
            for (int l = 0; l < 32; l++) {
                float v = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0));
                *y++ = v - m2;
            }
        }
    }
}

static GC_EXACT void gc_dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / GC_QK_K; i++) {
        const float d = gc_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int c = 0; c < 2; c++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* Any float or block type -> f32 (n elements). Returns 0, or -1 for a type it cannot decode. */
static inline int gc_dequantize_row(int32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case GC_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 0;
    case GC_F16: gc_fp16_to_fp32_row((const gc_half *)src, dst, n); return 0;
    case GC_BF16: gc_bf16_to_fp32_row((const uint16_t *)src, dst, n); return 0;
    case GC_Q4_0: gc_dequantize_row_q4_0((const block_q4_0 *)src, dst, n); return 0;
    case GC_Q4_1: gc_dequantize_row_q4_1((const block_q4_1 *)src, dst, n); return 0;
    case GC_Q5_0: gc_dequantize_row_q5_0((const block_q5_0 *)src, dst, n); return 0;
    case GC_Q5_1: gc_dequantize_row_q5_1((const block_q5_1 *)src, dst, n); return 0;
    case GC_Q8_0: gc_dequantize_row_q8_0((const block_q8_0 *)src, dst, n); return 0;
    case GC_Q2_K: gc_dequantize_row_q2_K((const block_q2_K *)src, dst, n); return 0;
    case GC_Q3_K: gc_dequantize_row_q3_K((const block_q3_K *)src, dst, n); return 0;
    case GC_Q4_K: gc_dequantize_row_q4_K((const block_q4_K *)src, dst, n); return 0;
    case GC_Q5_K: gc_dequantize_row_q5_K((const block_q5_K *)src, dst, n); return 0;
    case GC_Q6_K: gc_dequantize_row_q6_K((const block_q6_K *)src, dst, n); return 0;
    default: return -1;
    }
}

/* elements per block and bytes per block of a type (0 when unknown) */
static inline int64_t gc_type_blck(int32_t type) {
    switch (type) {
    case GC_Q4_0: case GC_Q4_1: case GC_Q5_0: case GC_Q5_1: case GC_Q8_0: case GC_Q8_1: return 32;
    case GC_Q2_K: case GC_Q3_K: case GC_Q4_K: case GC_Q5_K: case GC_Q6_K: case GC_Q8_K: return 256;
    default: return 1;
    }
}

static inline int64_t gc_type_size(int32_t type) {
    switch (type) {
    case GC_F32: case GC_I32: return 4;
    case GC_F16: case GC_BF16: case GC_I16: return 2;
    case GC_I8: return 1;
    case GC_I64: case GC_F64: return 8;
    case GC_Q4_0: return 18; case GC_Q4_1: return 20; case GC_Q5_0: return 22; case GC_Q5_1: return 24;
    case GC_Q8_0: return 34; case GC_Q8_1: return 36; case GC_Q2_K: return 84; case GC_Q3_K: return 110;
    case GC_Q4_K: return 144; case GC_Q5_K: return 176; case GC_Q6_K: return 210; case GC_Q8_K: return 292;
    default: return 0;
    }
}

#endif
