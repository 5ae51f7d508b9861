/* Activation quantizers (ggml's x86 flavour of q8_0 / q8_1, and q8_K) and integer block dot products
 * for the quantized mul_mat (matmul.h). Numerics follow graphc.quants.mul_mat_quant: activations are
 * quantized exactly as graphc.quants.quantize_activations(x, t, "x86"); integer dot products are exact;
 * only the f32 summation order of the scaled block terms differs from ggml's generic code.
 *
 * The quantized activations live in thread scratch in graphc's own layout, chosen so that SIMD code
 * can read them without shuffles (nothing outside this file and matmul.h sees it):
 *  - 32-element block types (q4_0 q4_1 q5_0 q5_1 q8_0): groups of 4 blocks, gc_act4. Byte 16j+k of
 *    qs is element k of block j, byte 64+16j+k is element 16+k (the order in which a 4-block group of
 *    nibbles unpacks). bias[l] = -c * (sum of the 8 activations that feed int32 lane l), where the
 *    weights are read as unsigned u = q + c (c = 8 q4_0, 16 q5_0, 128 q8_0, 0 q4_1/q5_1): every lane
 *    then holds an exact signed partial dot. d[l] = f16-rounded block scale of block l/4, s[4j] =
 *    q8_1's f16-rounded s of block j (0 in the other lanes).
 *  - K-quants: block_q8_K; for q4_K / q5_K the 32-element sub-blocks of every 128-element chunk are
 *    stored in the order 0 2 1 3 (how a 64-byte load of their nibbles unpacks). */
#ifndef GC_QUANT_H
#define GC_QUANT_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "graphc.h"
#include "dequant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__AVX512VBMI__)
#define GC_MM_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define GC_MM_AVX2 1
#endif

typedef struct {
    int8_t qs[128];
    int32_t bias[16];
    float d[16];
    float s[16];
    int32_t bsum[16];        /* bsum[j] = the sum of block j's 4 bias lanes (gc_act4_bsums; j < 4) */
} gc_act4;

/* fill bsum of the groups of nb blocks (kernels that keep a lane per weight row need one bias per block) */
static inline void gc_act4_bsums(gc_act4 *g, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const int j = (int)(b % 4);
        const int32_t *bi = g[b / 4].bias + 4 * j;
        g[b / 4].bsum[j] = bi[0] + bi[1] + bi[2] + bi[3];
    }
}

/* weight value offset c of the 32-element types (u = q + c is what the SIMD code multiplies) */
static inline int gc_q32_offset(int32_t type) {
    switch (type) {
    case GC_Q4_0: return 8;
    case GC_Q5_0: return 16;
    case GC_Q8_0: return 128;
    default: return 0;
    }
}

/* ---- activation quantizers -------------------------------------------------------------------- */

/* One row of n (multiple of 32) f32 values -> (n/32 + 3)/4 gc_act4 groups, q8_0 (q81 = 0) or q8_1
 * (q81 = 1) as ggml's AVX quantize_row_q8_0/q8_1: d = amax/127, id = 127/amax, q = rint(x*id). */
static inline GC_EXACT void gc_quantize_act_q32_scalar(const float *x, int64_t n, int q81, int c, gc_act4 *out) {
    const int64_t nb = n / 32, ng = (nb + 3) / 4;
    memset(out, 0, (size_t)ng * sizeof(gc_act4));
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        gc_act4 *g = out + b / 4;
        const int j = (int)(b % 4);
        float amax = 0.0f;
        for (int k = 0; k < 32; k++) {
            const float a = fabsf(xb[k]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int k = 0; k < 32; k++) {
            const float v = rintf(xb[k] * id);
            const int q = v != v ? 0 : (v > 127.0f ? 127 : (v < -128.0f ? -128 : (int)v));
            sum += q;
            g->qs[(k < 16 ? 16 * j + k : 64 + 16 * j + k - 16)] = (int8_t)q;
        }
        for (int l = 0; l < 4; l++) {
            int ls = 0;
            for (int k = 0; k < 4; k++) ls += g->qs[16 * j + 4 * l + k] + g->qs[64 + 16 * j + 4 * l + k];
            g->bias[4 * j + l] = -c * ls;
            g->d[4 * j + l] = gc_fp16_to_fp32(gc_fp32_to_fp16(d));
        }
        if (q81) {
            const float s = (float)sum * d;
            g->s[4 * j] = gc_fp16_to_fp32(gc_fp32_to_fp16(s));
        }
    }
}

/* position of sub-block (32 elements) sb of a super-block in the stored q8_K row for q4_K / q5_K */
static inline int gc_k4_pos(int sb) {
    static const int8_t pos[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    return pos[sb];
}

/* One row of n (multiple of 256) values -> n/256 block_q8_K, as ggml's quantize_row_q8_K (the same
 * on every architecture). perm: store sub-blocks in gc_k4_pos order (q4_K / q5_K weights). */
static inline GC_EXACT void gc_quantize_act_q8_K_scalar(const float *x, int64_t n, int perm, block_q8_K *y) {
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float amax = 0.0f, mx = 0.0f;
        for (int k = 0; k < 256; k++) {
            const float a = fabsf(x[k]);
            if (amax < a) { amax = a; mx = x[k]; }
        }
        if (amax == 0.0f) { memset(&y[i], 0, sizeof(block_q8_K)); continue; }
        const float iscale = -127.0f / mx;
        int8_t q[256];
        for (int k = 0; k < 256; k++) {
            const float v = rintf(iscale * x[k]);
            q[k] = (int8_t)(v != v ? 0 : v > 127.0f ? 127 : (int)v);     /* NaN: 0, as the SIMD code */
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int k = 0; k < 16; k++) s += q[16 * j + k];
            y[i].bsums[j] = (int16_t)s;
        }
        for (int sb = 0; sb < 8; sb++)
            memcpy(y[i].qs + 32 * (perm ? gc_k4_pos(sb) : sb), q + 32 * sb, 32);
        y[i].d = 1.0f / iscale;
    }
}

#if defined(GC_MM_AVX512) || defined(GC_MM_AVX2)
/* Block j of group g, from its 4 lane sums ls of the quants: the bias lanes (-c * sums), the f16-rounded
 * scale d and, for q8_1, s = d * (sum of the quants), f16-rounded: the scalar code's values exactly. */
static inline GC_EXACT void gc_q_act4_scales(gc_act4 *g, int j, __m128i ls, int c, float d, int q81) {
    _mm_storeu_si128((__m128i *)(g->bias + 4 * j), _mm_mullo_epi32(ls, _mm_set1_epi32(-c)));
    const float dr = gc_fp16_to_fp32(gc_fp32_to_fp16(d));
    _mm_storeu_ps(g->d + 4 * j, _mm_set1_ps(dr));
    float s = 0.0f;
    if (q81) {
        const __m128i t = _mm_add_epi32(ls, _mm_shuffle_epi32(ls, 0x4E));
        const int sum = _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1)));
        s = gc_fp16_to_fp32(gc_fp32_to_fp16((float)sum * d));
    }
    _mm_storeu_ps(g->s + 4 * j, _mm_setr_ps(s, 0.0f, 0.0f, 0.0f));
}
#endif

#if defined(GC_MM_AVX512)
/* The same quantizers with AVX-512: identical roundings (one f32 multiply, round to nearest even,
 * NaN -> 0, clamp), so the bytes are those of the scalar code. */
static inline __m512 gc_q_abs16(__m512 v) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF))); }

/* round(v) to int32 (nearest even), NaN -> 0, clamped to [lo, 127], as bytes */
static inline __m128i gc_q_round16(__m512 v, int lo) {
    __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), q);
    q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(lo)), _mm512_set1_epi32(127));
    return _mm512_cvtepi32_epi8(q);
}

static inline GC_EXACT void gc_quantize_act_q32(const float *x, int64_t n, int q81, int c, gc_act4 *out) {
    const int64_t nb = n / 32, ng = (nb + 3) / 4;
    if (nb % 4) memset(out + ng - 1, 0, sizeof(gc_act4));
    const __m128i ones = _mm_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        /* max_ps returns its second operand when the first is NaN: NaNs never reach amax */
        const __m512 m = _mm512_max_ps(gc_q_abs16(v1), _mm512_max_ps(gc_q_abs16(v0), _mm512_setzero_ps()));
        const float amax = _mm512_reduce_max_ps(m);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m128i q0 = gc_q_round16(_mm512_mul_ps(v0, vid), -128), q1 = gc_q_round16(_mm512_mul_ps(v1, vid), -128);
        gc_act4 *g = out + b / 4;
        const int j = (int)(b % 4);
        _mm_storeu_si128((__m128i *)(g->qs + 16 * j), q0);
        _mm_storeu_si128((__m128i *)(g->qs + 64 + 16 * j), q1);
        const __m128i ls = _mm_dpbusd_epi32(_mm_dpbusd_epi32(_mm_setzero_si128(), ones, q0), ones, q1);
        gc_q_act4_scales(g, j, ls, c, d, q81);
    }
}

static inline GC_EXACT void gc_quantize_act_q8_K(const float *x, int64_t n, int perm, block_q8_K *y) {
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < 256; k += 16) m = _mm512_max_ps(gc_q_abs16(_mm512_loadu_ps(x + k)), m);
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) { memset(&y[i], 0, sizeof(block_q8_K)); continue; }
        const __m512 va = _mm512_set1_ps(amax);
        int k0 = 0;                                   /* the first element of largest magnitude */
        for (int k = 0; k < 256; k += 16) {
            const __mmask16 e = _mm512_cmp_ps_mask(gc_q_abs16(_mm512_loadu_ps(x + k)), va, _CMP_EQ_OQ);
            if (e) { k0 = k + __builtin_ctz((unsigned)e); break; }
        }
        const float iscale = -127.0f / x[k0];
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int j = 0; j < 16; j++) {
            const __m128i q = gc_q_round16(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), vs), -128);
            const int sb = j / 2;
            _mm_storeu_si128((__m128i *)(y[i].qs + 32 * (perm ? gc_k4_pos(sb) : sb) + 16 * (j % 2)), q);
            y[i].bsums[j] = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q));
        }
        y[i].d = 1.0f / iscale;
    }
}
#elif defined(GC_MM_AVX2)
/* AVX2 versions, same roundings as the scalar code */
static inline __m256 gc_q_abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float gc_q_hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* round(v) to int32 (nearest even), NaN -> 0, clamped to [lo, 127] */
static inline __m256i gc_q_round8(__m256 v, int lo) {
    __m256i q = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    q = _mm256_and_si256(q, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_ORD_Q)));
    return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(lo)), _mm256_set1_epi32(127));
}

/* 16 int32 (two vectors, elements 0..7 and 8..15) -> 16 bytes in element order */
static inline __m128i gc_q_pack16(__m256i a, __m256i b) {
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);   /* 16 x int16 in order */
    return _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

static inline GC_EXACT void gc_quantize_act_q32(const float *x, int64_t n, int q81, int c, gc_act4 *out) {
    const int64_t nb = n / 32, ng = (nb + 3) / 4;
    if (nb % 4) memset(out + ng - 1, 0, sizeof(gc_act4));
    for (int64_t b = 0; b < nb; b++) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 32 * b + 8 * k);
            m = _mm256_max_ps(gc_q_abs8(v[k]), m);          /* NaN (first operand) never wins */
        }
        const float amax = gc_q_hmax8(m);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = gc_q_round8(_mm256_mul_ps(v[k], vid), -128);
        gc_act4 *g = out + b / 4;
        const int j = (int)(b % 4);
        _mm_storeu_si128((__m128i *)(g->qs + 16 * j), gc_q_pack16(q[0], q[1]));
        _mm_storeu_si128((__m128i *)(g->qs + 64 + 16 * j), gc_q_pack16(q[2], q[3]));
        /* lane l: elements 4l..4l+3 and 16+4l..16+4l+3 */
        const __m256i sa = _mm256_add_epi32(q[0], q[2]), sb = _mm256_add_epi32(q[1], q[3]);
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(sa, sb), _mm256_setzero_si256());
        const __m128i ls = _mm_unpacklo_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        gc_q_act4_scales(g, j, ls, c, d, q81);
    }
}

static inline GC_EXACT void gc_quantize_act_q8_K(const float *x, int64_t n, int perm, block_q8_K *y) {
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 256; k += 8) m = _mm256_max_ps(gc_q_abs8(_mm256_loadu_ps(x + k)), m);
        const float amax = gc_q_hmax8(m);
        if (amax == 0.0f) { memset(&y[i], 0, sizeof(block_q8_K)); continue; }
        const __m256 va = _mm256_set1_ps(amax);
        int k0 = 0;                                   /* the first element of largest magnitude */
        for (int k = 0; k < 256; k += 8) {
            const int e = _mm256_movemask_ps(_mm256_cmp_ps(gc_q_abs8(_mm256_loadu_ps(x + k)), va, _CMP_EQ_OQ));
            if (e) { k0 = k + __builtin_ctz((unsigned)e); break; }
        }
        const float iscale = -127.0f / x[k0];
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int j = 0; j < 16; j++) {
            const __m256i a = gc_q_round8(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * j), vs), -128);
            const __m256i b = gc_q_round8(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * j + 8), vs), -128);
            const int sb = j / 2;
            _mm_storeu_si128((__m128i *)(y[i].qs + 32 * (perm ? gc_k4_pos(sb) : sb) + 16 * (j % 2)), gc_q_pack16(a, b));
            const __m256i t = _mm256_add_epi32(a, b);
            __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
            u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4E));
            u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1));
            y[i].bsums[j] = (int16_t)_mm_cvtsi128_si32(u);
        }
        y[i].d = 1.0f / iscale;
    }
}
#else
#define gc_quantize_act_q32 gc_quantize_act_q32_scalar
#define gc_quantize_act_q8_K gc_quantize_act_q8_K_scalar
#endif

/* ---- scalar block dot products (the portable path, and tails of the SIMD paths) ---------------- */

/* unsigned weight values u = q + c of 32-element block b of a row, in element order */
static inline void gc_q32_unpack(int32_t type, const char *row, int64_t b, uint8_t *u) {
    switch (type) {
    case GC_Q4_0: case GC_Q4_1: {
        const uint8_t *qs = type == GC_Q4_0 ? ((const block_q4_0 *)row)[b].qs : ((const block_q4_1 *)row)[b].qs;
        for (int k = 0; k < 16; k++) { u[k] = qs[k] & 0xF; u[k + 16] = qs[k] >> 4; }
        break;
    }
    case GC_Q5_0: case GC_Q5_1: {
        const uint8_t *qs, *qhp;
        if (type == GC_Q5_0) { qs = ((const block_q5_0 *)row)[b].qs; qhp = ((const block_q5_0 *)row)[b].qh; }
        else { qs = ((const block_q5_1 *)row)[b].qs; qhp = ((const block_q5_1 *)row)[b].qh; }
        uint32_t qh;
        memcpy(&qh, qhp, 4);
        for (int k = 0; k < 16; k++) {
            u[k] = (uint8_t)((qs[k] & 0xF) | ((qh >> k) & 1) << 4);
            u[k + 16] = (uint8_t)((qs[k] >> 4) | ((qh >> (k + 16)) & 1) << 4);
        }
        break;
    }
    default: {  /* q8_0 */
        const int8_t *qs = ((const block_q8_0 *)row)[b].qs;
        for (int k = 0; k < 32; k++) u[k] = (uint8_t)(qs[k] + 128);
    }
    }
}

/* scale d and min m (0 for symmetric types) of 32-element block b */
static inline void gc_q32_scales(int32_t type, const char *row, int64_t b, float *d, float *m) {
    gc_half hd, hm = 0;
    switch (type) {
    case GC_Q4_0: hd = ((const block_q4_0 *)row)[b].d; break;
    case GC_Q4_1: hd = ((const block_q4_1 *)row)[b].d; hm = ((const block_q4_1 *)row)[b].m; break;
    case GC_Q5_0: hd = ((const block_q5_0 *)row)[b].d; break;
    case GC_Q5_1: hd = ((const block_q5_1 *)row)[b].d; hm = ((const block_q5_1 *)row)[b].m; break;
    default: hd = ((const block_q8_0 *)row)[b].d;
    }
    *d = gc_fp16_to_fp32(hd);
    *m = gc_fp16_to_fp32(hm);
}

/* dot of 32-element blocks [b0, b1) of a weight row with an activation row (gc_act4 groups) */
static inline float gc_dot_q32_scalar(int32_t type, const char *row, const gc_act4 *act, int64_t b0, int64_t b1) {
    float sum = 0.0f;
    for (int64_t b = b0; b < b1; b++) {
        const gc_act4 *g = act + b / 4;
        const int j = (int)(b % 4);
        uint8_t u[32];
        gc_q32_unpack(type, row, b, u);
        int isum = g->bias[4 * j] + g->bias[4 * j + 1] + g->bias[4 * j + 2] + g->bias[4 * j + 3];
        for (int k = 0; k < 16; k++) isum += u[k] * g->qs[16 * j + k] + u[k + 16] * g->qs[64 + 16 * j + k];
        float dw, mw;
        gc_q32_scales(type, row, b, &dw, &mw);
        sum += (float)isum * (dw * g->d[4 * j]) + mw * g->s[4 * j];
    }
    return sum;
}

/* signed weight values and integer sub-block scales/mins of one K-quant super-block, in element order;
 * sub = 16 or 32 elements per scale. Returns the super-block's d; *dmin its dmin (0 if none). */
static inline float gc_k_unpack(int32_t type, const char *blk, int8_t *q, int *sc, int *mn, int *sub, float *dmin) {
    *dmin = 0.0f;
    switch (type) {
    case GC_Q2_K: {
        const block_q2_K *x = (const block_q2_K *)blk;
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) q[128 * c + 32 * j + l] = (int8_t)((x->qs[32 * c + l] >> (2 * j)) & 3);
        for (int j = 0; j < 16; j++) { sc[j] = x->scales[j] & 0xF; mn[j] = x->scales[j] >> 4; }
        *sub = 16;
        *dmin = gc_fp16_to_fp32(x->dmin);
        return gc_fp16_to_fp32(x->d);
    }
    case GC_Q3_K: {
        const block_q3_K *x = (const block_q3_K *)blk;
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    const int e = 128 * c + 32 * j + l;
                    const int hb = (x->hmask[l] >> (e / 32)) & 1;
                    q[e] = (int8_t)(((x->qs[32 * c + l] >> (2 * j)) & 3) - (hb ? 0 : 4));
                }
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? x->scales[j] & 0xF : x->scales[j - 8] >> 4;
            const int hi = (x->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            sc[j] = (lo | hi << 4) - 32;
            mn[j] = 0;
        }
        *sub = 16;
        return gc_fp16_to_fp32(x->d);
    }
    case GC_Q4_K: case GC_Q5_K: {
        const uint8_t *scales, *qs, *qh = NULL;
        gc_half hd, hdm;
        if (type == GC_Q4_K) {
            const block_q4_K *x = (const block_q4_K *)blk;
            scales = x->scales; qs = x->qs; hd = x->d; hdm = x->dmin;
        } else {
            const block_q5_K *x = (const block_q5_K *)blk;
            scales = x->scales; qs = x->qs; qh = x->qh; hd = x->d; hdm = x->dmin;
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
                if (qh) { lo |= ((qh[l] >> (2 * c)) & 1) << 4; hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4; }
                q[64 * c + l] = (int8_t)lo;
                q[64 * c + 32 + l] = (int8_t)hi;
            }
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            gc_scale_min_k4(j, scales, &s, &m);
            sc[j] = s;
            mn[j] = m;
        }
        *sub = 32;
        *dmin = gc_fp16_to_fp32(hdm);
        return gc_fp16_to_fp32(hd);
    }
    default: {  /* q6_K */
        const block_q6_K *x = (const block_q6_K *)blk;
        for (int c = 0; c < 2; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *ql = x->ql + 64 * c, *qh = x->qh + 32 * c;
                int8_t *o = q + 128 * c;
                o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        for (int j = 0; j < 16; j++) { sc[j] = x->scales[j]; mn[j] = 0; }
        *sub = 16;
        return gc_fp16_to_fp32(x->d);
    }
    }
}

/* dot of K-quant super-blocks [i0, i1) of a weight row with a q8_K activation row */
static inline float gc_dot_k_scalar(int32_t type, const char *row, int64_t bsize, const block_q8_K *y,
                                    int64_t i0, int64_t i1) {
    const int perm = type == GC_Q4_K || type == GC_Q5_K;
    float sum = 0.0f;
    for (int64_t i = i0; i < i1; i++) {
        int8_t q[256];
        int sc[16], mn[16], sub;
        float dmin;
        const float d = gc_k_unpack(type, row + i * bsize, q, sc, mn, &sub, &dmin);
        int isum = 0, msum = 0;
        for (int j = 0; j < 256 / sub; j++) {
            const int8_t *yq = y[i].qs + (perm ? 32 * gc_k4_pos(j) : sub * j);
            int s = 0;
            for (int k = 0; k < sub; k++) s += q[sub * j + k] * yq[k];
            isum += sc[j] * s;
            const int bs = sub == 32 ? y[i].bsums[2 * j] + y[i].bsums[2 * j + 1] : y[i].bsums[j];
            msum += mn[j] * bs;
        }
        sum += (d * y[i].d) * (float)isum - (dmin * y[i].d) * (float)msum;
    }
    return sum;
}

#endif
