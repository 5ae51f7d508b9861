/* GC_PROVIDES: mul_mat */
/* mul_mat: dst[i0, i1, i2, i3] = sum_k src0[k, i0, i2/r2, i3/r3] * src1[k, i1, i2, i3] (ggml_mul_mat;
 * src0 broadcast over dims 2, 3 by integer division). Numerics as ggml's CPU backend (graphc.quants
 * mul_mat_quant): f16/bf16 weights see activations rounded to f16/bf16; quantized weights see them
 * quantized to q8_0 / q8_1 / q8_K (x86 flavour) once per thread and column, then exact integer block
 * dot products (AVX-512 VNNI + VBMI, AVX2 maddubs, or scalar). Thread ith computes the dst rows i0 in
 * gc_chunk(dst->ne[0], ith, nth) for every column, as graphc.h fixes.
 *
 * Loop order: for every dst slice (i2, i3) and tile of GC_MM_CT columns, the tile's activations are
 * prepared into thread scratch (they stay in L2), then every weight row of the thread is read once per
 * tile and dotted with up to 4 columns at a time from registers (GEMV: weights stream exactly once).
 * Float weights are also blocked over K (GC_MM_KB) so that 4 weight rows stay in L1. */
#ifndef GC_MATMUL_H
#define GC_MATMUL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "graphc.h"
#include "dequant.h"
#include "quant.h"

#define GC_MM_CT 32      /* columns per tile */
#define GC_MM_KB 1024    /* K block of the float kernels */

#if defined(__GNUC__)
#define GC_MM_INLINE static inline __attribute__((always_inline))
#else
#define GC_MM_INLINE static inline
#endif

enum { GC_MM_FLOAT = 0, GC_MM_Q32 = 1, GC_MM_QK = 2, GC_MM_NONE = -1 };

static inline int gc_mm_kind(int32_t t) {
    switch (t) {
    case GC_F32: case GC_F16: case GC_BF16: return GC_MM_FLOAT;
    case GC_Q4_0: case GC_Q4_1: case GC_Q5_0: case GC_Q5_1: case GC_Q8_0: return GC_MM_Q32;
    case GC_Q2_K: case GC_Q3_K: case GC_Q4_K: case GC_Q5_K: case GC_Q6_K: return GC_MM_QK;
    default: return GC_MM_NONE;
    }
}

static inline size_t gc_mm_align(size_t n) { return (n + 63) & ~(size_t)63; }

/* bytes of one prepared activation column of K elements */
static inline size_t gc_mm_act_bytes(int32_t wtype, int64_t K) {
    switch (gc_mm_kind(wtype)) {
    case GC_MM_Q32: return gc_mm_align((size_t)((K / 32 + 3) / 4) * sizeof(gc_act4));
    case GC_MM_QK: return gc_mm_align((size_t)(K / 256) * sizeof(block_q8_K));
    default: return gc_mm_align((size_t)K * sizeof(float));
    }
}

static inline size_t gc_scratch_mul_mat(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    const int64_t K = src[0]->ne[0];
    return 64 + gc_mm_align((size_t)K * sizeof(float)) + GC_MM_CT * gc_mm_act_bytes(src[0]->type, K);
}

/* 1 when gc_op_mul_mat handles these tensors (checked once at load time by the generated gc_check) */
static inline int gc_supports_mul_mat(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)params;
    const gc_tensor *a = src[0], *b = src[1];
    const int32_t t = a->type;
    if (gc_mm_kind(t) == GC_MM_NONE || dst->type != GC_F32) return 0;
    if (b->type != GC_F32 && b->type != GC_F16 && b->type != GC_BF16) return 0;
    if (a->nb[0] != gc_type_size(t) || a->ne[0] % gc_type_blck(t) != 0 || b->ne[0] != a->ne[0]) return 0;
    if (a->ne[2] <= 0 || a->ne[3] <= 0 || dst->ne[2] % a->ne[2] || dst->ne[3] % a->ne[3]) return 0;
    return dst->ne[0] == a->ne[1] && dst->ne[1] == b->ne[1] && dst->ne[2] == b->ne[2] && dst->ne[3] == b->ne[3];
}

/* ================================================================================================
 * float weights: micro-kernels of NR weight rows x NC columns over k in [k0, k1)
 * ================================================================================================ */

#if defined(__AVX512F__)
#define GC_VF __m512
#define GC_VL 16
#define GC_VZERO() _mm512_setzero_ps()
#define GC_VLOAD(p) _mm512_loadu_ps(p)
#define GC_VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define GC_VSUM(v) _mm512_reduce_add_ps(v)
#define GC_WL_F32(p) _mm512_loadu_ps(p)
#define GC_WL_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define GC_WL_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
static inline float gc_mm_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define GC_VF __m256
#define GC_VL 8
#define GC_VZERO() _mm256_setzero_ps()
#define GC_VLOAD(p) _mm256_loadu_ps(p)
#define GC_VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define GC_VSUM(v) gc_mm_hsum8(v)
#define GC_WL_F32(p) _mm256_loadu_ps(p)
#define GC_WL_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define GC_WL_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#else
#define GC_VF float
#define GC_VL 1
#define GC_VZERO() 0.0f
#define GC_VLOAD(p) (*(p))
#define GC_VFMA(a, b, c) ((a) * (b) + (c))
#define GC_VSUM(v) (v)
#define GC_WL_F32(p) (*(p))
#define GC_WL_F16(p) gc_fp16_to_fp32(*(p))
#define GC_WL_BF16(p) gc_bf16_to_fp32(*(p))
#endif

#define GC_SL_F32(p) (*(p))
#define GC_SL_F16(p) gc_fp16_to_fp32(*(p))
#define GC_SL_BF16(p) gc_bf16_to_fp32(*(p))

/* out[r * NC + c] = dot(w[r][k0..k1), x[c][k0..k1)) */
#define GC_MM_FKERNEL(NAME, WT, WLOAD, SLOAD)                                                          \
GC_MM_INLINE void NAME(const int NR, const int NC, const WT *const *w, const float *const *x,         \
                       int64_t k0, int64_t k1, float *out) {                                          \
    GC_VF acc[4][4];                                                                                   \
    for (int r = 0; r < NR; r++)                                                                       \
        for (int c = 0; c < NC; c++) acc[r][c] = GC_VZERO();                                           \
    int64_t k = k0;                                                                                    \
    for (; k + GC_VL <= k1; k += GC_VL) {                                                              \
        GC_VF xv[4];                                                                                   \
        for (int c = 0; c < NC; c++) xv[c] = GC_VLOAD(x[c] + k);                                       \
        for (int r = 0; r < NR; r++) {                                                                 \
            const GC_VF wv = WLOAD(w[r] + k);                                                          \
            for (int c = 0; c < NC; c++) acc[r][c] = GC_VFMA(wv, xv[c], acc[r][c]);                    \
        }                                                                                              \
    }                                                                                                  \
    for (int r = 0; r < NR; r++)                                                                       \
        for (int c = 0; c < NC; c++) {                                                                 \
            float s = GC_VSUM(acc[r][c]);                                                              \
            for (int64_t kk = k; kk < k1; kk++) s += SLOAD(w[r] + kk) * x[c][kk];                      \
            out[r * NC + c] = s;                                                                       \
        }                                                                                              \
}

GC_MM_FKERNEL(gc_mm_fk_f32, float, GC_WL_F32, GC_SL_F32)
GC_MM_FKERNEL(gc_mm_fk_f16, gc_half, GC_WL_F16, GC_SL_F16)
GC_MM_FKERNEL(gc_mm_fk_bf16, uint16_t, GC_WL_BF16, GC_SL_BF16)

/* NR x nc block (NR in {1, 4}, nc in 1..4) for weight type t, dispatched to constant shapes */
#define GC_MM_FDISPATCH(FN, WT)                                                                         \
    const WT *wp[4];                                                                                   \
    for (int i = 0; i < nr; i++) wp[i] = (const WT *)w[i];                                             \
    switch (nc) {                                                                                      \
    case 1: if (nr == 4) FN(4, 1, wp, x, k0, k1, out); else FN(1, 1, wp, x, k0, k1, out); break; \
    case 2: if (nr == 4) FN(4, 2, wp, x, k0, k1, out); else FN(1, 2, wp, x, k0, k1, out); break; \
    case 3: if (nr == 4) FN(4, 3, wp, x, k0, k1, out); else FN(1, 3, wp, x, k0, k1, out); break; \
    default: if (nr == 4) FN(4, 4, wp, x, k0, k1, out); else FN(1, 4, wp, x, k0, k1, out); break; \
    }

static inline void gc_mm_fblock(int32_t t, int nr, int nc, const void *const *w, const float *const *x,
                         int64_t k0, int64_t k1, float *out) {
    if (t == GC_F32) { GC_MM_FDISPATCH(gc_mm_fk_f32, float) }
    else if (t == GC_F16) { GC_MM_FDISPATCH(gc_mm_fk_f16, gc_half) }
    else { GC_MM_FDISPATCH(gc_mm_fk_bf16, uint16_t) }
}

/* ================================================================================================
 * 32-element block types (q4_0 q4_1 q5_0 q5_1 q8_0): one weight row x up to 4 q8_0/q8_1 columns
 * ================================================================================================ */

GC_MM_INLINE int gc_q32_bs(const int32_t t) {
    return t == GC_Q4_0 ? 18 : t == GC_Q4_1 ? 20 : t == GC_Q5_0 ? 22 : t == GC_Q5_1 ? 24 : 34;
}

#if defined(GC_MM_AVX512)
/* byte-permutation indices that pull a 4-block group's quants and scales out of two 64-byte loads */
typedef struct { __m512i qlo, qhi, sc; } gc_q32_idx;

static inline void gc_q32_idx_make(int32_t t, gc_q32_idx *ix) {
    const int bs = gc_q32_bs(t), qo = t == GC_Q4_0 ? 2 : t == GC_Q4_1 ? 4 : t == GC_Q5_0 ? 6 : 8;
    const int boff = t == GC_Q8_0 ? 64 : 4 * bs - 64;     /* second load; q8_0: [64,128) */
    uint8_t lo[64], hi[64], sc[64];
    for (int p = 0; p < 64; p++) {
        const int j = p / 16, k = p % 16;
        int src = t == GC_Q8_0 ? bs * j + 2 + k : bs * j + qo + k;
        lo[p] = (uint8_t)(src < 64 ? src : 64 + src - boff);
        src = bs * j + 18 + k;                              /* q8_0 upper halves, loads at 8 and 72 */
        hi[p] = (uint8_t)(src < 72 ? src - 8 : 64 + src - 72);
        const int lane = (p % 32) / 2;
        src = bs * (lane / 4) + (p >= 32 ? 2 : 0) + (p % 2);  /* d (bytes 0..31), m (32..63) */
        sc[p] = (uint8_t)(src < 64 ? src : 64 + src - boff);
    }
    ix->qlo = _mm512_loadu_si512(lo);
    ix->qhi = _mm512_loadu_si512(hi);
    ix->sc = _mm512_loadu_si512(sc);
}

/* unsigned quants (u = q + c; lo: elements 0..15 of the 4 blocks, hi: 16..31) and lane scales */
GC_MM_INLINE void gc_q32_load4(const int32_t t, const uint8_t *p, const gc_q32_idx *ix,
                               __m512i *lo, __m512i *hi, __m512 *d, __m512 *m) {
    const int bs = gc_q32_bs(t);
    const __m512i a = _mm512_loadu_si512(p);
    const __m512i b = _mm512_loadu_si512(p + (t == GC_Q8_0 ? 64 : 4 * bs - 64));
    const __m512i s = _mm512_permutex2var_epi8(a, ix->sc, b);
    *d = _mm512_cvtph_ps(_mm512_castsi512_si256(s));
    if (t == GC_Q4_1 || t == GC_Q5_1) *m = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(s, 1));
    if (t == GC_Q8_0) {
        const __m512i x80 = _mm512_set1_epi8((char)0x80);
        *lo = _mm512_xor_si512(_mm512_permutex2var_epi8(a, ix->qlo, b), x80);
        const __m512i a2 = _mm512_loadu_si512(p + 8), b2 = _mm512_loadu_si512(p + 72);
        *hi = _mm512_xor_si512(_mm512_permutex2var_epi8(a2, ix->qhi, b2), x80);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i nib = _mm512_permutex2var_epi8(a, ix->qlo, b);
    *lo = _mm512_and_si512(nib, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(nib, 4), m4);
    if (t == GC_Q5_0 || t == GC_Q5_1) {
        const int qho = t == GC_Q5_0 ? 2 : 4;
        uint64_t ml = 0, mh = 0;
        for (int j = 0; j < 4; j++) {
            uint32_t qh;
            memcpy(&qh, p + bs * j + qho, 4);
            ml |= (uint64_t)(qh & 0xFFFF) << (16 * j);
            mh |= (uint64_t)(qh >> 16) << (16 * j);
        }
        const __m512i b16 = _mm512_set1_epi8(16);
        *lo = _mm512_mask_add_epi8(*lo, (__mmask64)ml, *lo, b16);
        *hi = _mm512_mask_add_epi8(*hi, (__mmask64)mh, *hi, b16);
    }
}

GC_MM_INLINE void gc_q32_rowk(const int32_t t, const int NC, const char *row, int64_t nb,
                              const gc_act4 *const *x, float *out, const gc_q32_idx *ix) {
    const int bs = gc_q32_bs(t);
    const int has_m = t == GC_Q4_1 || t == GC_Q5_1;
    __m512 acc[4];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    const int64_t ng = nb / 4;
    for (int64_t g = 0; g < ng; g++) {
        __m512i lo, hi;
        __m512 d, m = _mm512_setzero_ps();
        gc_q32_load4(t, (const uint8_t *)row + g * 4 * bs, ix, &lo, &hi, &d, &m);
        for (int c = 0; c < NC; c++) {
            const gc_act4 *a = x[c] + g;
            __m512i dp = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->bias), lo, _mm512_loadu_si512(a->qs));
            dp = _mm512_dpbusd_epi32(dp, hi, _mm512_loadu_si512(a->qs + 64));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(d, _mm512_loadu_ps(a->d)), acc[c]);
            if (has_m) acc[c] = _mm512_fmadd_ps(m, _mm512_loadu_ps(a->s), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        out[c] = _mm512_reduce_add_ps(acc[c]) + gc_dot_q32_scalar(t, row, x[c], 4 * ng, nb);
}

#elif defined(GC_MM_AVX2)
typedef int gc_q32_idx;
static inline void gc_q32_idx_make(int32_t t, gc_q32_idx *ix) { (void)t; *ix = 0; }

/* 32 bytes, 0xFF where bit i of qh is set */
static inline __m256i gc_mm_bits32(uint32_t qh) {
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

GC_MM_INLINE void gc_q32_rowk(const int32_t t, const int NC, const char *row, int64_t nb,
                              const gc_act4 *const *x, float *out, const gc_q32_idx *ix) {
    (void)ix;
    const int bs = gc_q32_bs(t);
    const int has_m = t == GC_Q4_1 || t == GC_Q5_1;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4];
    float accm[4] = {0, 0, 0, 0};
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = (const uint8_t *)row + b * bs;
        const int j = (int)(b % 4);
        float dw, mw;
        gc_q32_scales(t, row, b, &dw, &mw);
        __m256i wq;
        if (t == GC_Q8_0) {
            wq = _mm256_loadu_si256((const __m256i *)(p + 2));
        } else {
            const int qo = t == GC_Q4_0 ? 2 : t == GC_Q4_1 ? 4 : t == GC_Q5_0 ? 6 : 8;
            const __m128i q = _mm_loadu_si128((const __m128i *)(p + qo));
            wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            if (t == GC_Q5_0 || t == GC_Q5_1) {
                uint32_t qh;
                memcpy(&qh, p + (t == GC_Q5_0 ? 2 : 4), 4);
                wq = _mm256_or_si256(wq, _mm256_and_si256(gc_mm_bits32(qh), _mm256_set1_epi8(16)));
            }
        }
        const __m256i aw = t == GC_Q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
        for (int c = 0; c < NC; c++) {
            const gc_act4 *a = x[c] + b / 4;
            __m256i y = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(a->qs + 64 + 16 * j)),
                                         _mm_loadu_si128((const __m128i *)(a->qs + 16 * j)));
            __m256i p32;
            if (t == GC_Q8_0) {  /* signed weights: |w| * sign(y, w), no offset */
                p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(y, wq)), ones);
            } else {
                p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, y), ones);
                p32 = _mm256_add_epi32(p32, _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(a->bias + 4 * j))));
            }
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(dw * a->d[4 * j]), acc[c]);
            if (has_m) accm[c] += mw * a->s[4 * j];
        }
    }
    for (int c = 0; c < NC; c++) out[c] = gc_mm_hsum8(acc[c]) + accm[c];
}

#else
typedef int gc_q32_idx;
static inline void gc_q32_idx_make(int32_t t, gc_q32_idx *ix) { (void)t; *ix = 0; }

GC_MM_INLINE void gc_q32_rowk(const int32_t t, const int NC, const char *row, int64_t nb,
                              const gc_act4 *const *x, float *out, const gc_q32_idx *ix) {
    (void)ix;
    for (int c = 0; c < NC; c++) out[c] = gc_dot_q32_scalar(t, row, x[c], 0, nb);
}
#endif

#define GC_Q32_ROWFN(NAME, T)                                                                         \
static inline void NAME(int nc, const char *row, int64_t nb, const gc_act4 *const *x, float *out,            \
                 const gc_q32_idx *ix) {                                                              \
    switch (nc) {                                                                                     \
    case 1: gc_q32_rowk(T, 1, row, nb, x, out, ix); break;                                            \
    case 2: gc_q32_rowk(T, 2, row, nb, x, out, ix); break;                                            \
    case 3: gc_q32_rowk(T, 3, row, nb, x, out, ix); break;                                            \
    default: gc_q32_rowk(T, 4, row, nb, x, out, ix); break;                                           \
    }                                                                                                 \
}
GC_Q32_ROWFN(gc_mm_row_q4_0, GC_Q4_0)
GC_Q32_ROWFN(gc_mm_row_q4_1, GC_Q4_1)
GC_Q32_ROWFN(gc_mm_row_q5_0, GC_Q5_0)
GC_Q32_ROWFN(gc_mm_row_q5_1, GC_Q5_1)
GC_Q32_ROWFN(gc_mm_row_q8_0, GC_Q8_0)

/* ================================================================================================
 * K-quants: one weight row x up to 4 q8_K columns
 * ================================================================================================ */

#if defined(GC_MM_AVX512)
/* q4_K: 8 six-bit scales and mins of a super-block into bytes sc[0..7], mn[0..7] */
static inline void gc_mm_k4_scales(const uint8_t *s12, uint8_t *sc, uint8_t *mn) {
    uint32_t w[3], o[4];
    memcpy(w, s12, 12);
    o[0] = w[0] & 0x3F3F3F3Fu;                                               /* scales 0..3 */
    o[1] = (w[2] & 0x0F0F0F0Fu) | ((w[0] >> 6) & 0x03030303u) << 4;         /* scales 4..7 */
    o[2] = w[1] & 0x3F3F3F3Fu;                                               /* mins 0..3 */
    o[3] = ((w[2] >> 4) & 0x0F0F0F0Fu) | ((w[1] >> 6) & 0x03030303u) << 4;  /* mins 4..7 */
    memcpy(sc, o, 8);
    memcpy(mn, o + 2, 8);
}

GC_MM_INLINE void gc_q4k_rowk(const int NC, const char *row, int64_t nsb, const block_q8_K *const *y, float *out) {
    /* dpbusd result t covers stored sub-blocks 2t, 2t+1 = original (0,2) (1,3) (4,6) (5,7) */
    const __m512i perm0 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i perm1 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i perm2 = _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4);
    const __m512i perm3 = _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 5, 5, 5, 5, 5, 5, 5, 5);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    float sum[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < nsb; i++) {
        const block_q4_K *x = (const block_q4_K *)row + i;
        uint8_t sc[8], mn[8];
        gc_mm_k4_scales(x->scales, sc, mn);
        const __m512i s32 = _mm512_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc));
        const __m512i s0 = _mm512_permutexvar_epi32(perm0, s32), s1 = _mm512_permutexvar_epi32(perm1, s32);
        const __m512i s2 = _mm512_permutexvar_epi32(perm2, s32), s3 = _mm512_permutexvar_epi32(perm3, s32);
        const __m512i v0 = _mm512_loadu_si512(x->qs), v1 = _mm512_loadu_si512(x->qs + 64);
        const __m512i q0 = _mm512_and_si512(v0, m4), q1 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
        const __m512i q2 = _mm512_and_si512(v1, m4), q3 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
        const float d = gc_fp16_to_fp32(x->d), dmin = gc_fp16_to_fp32(x->dmin);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            const __m512i z = _mm512_setzero_si512();
            __m512i acc = _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, q0, _mm512_loadu_si512(b->qs)), s0);
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, q1, _mm512_loadu_si512(b->qs + 64)), s1));
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, q2, _mm512_loadu_si512(b->qs + 128)), s2));
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, q3, _mm512_loadu_si512(b->qs + 192)), s3));
            int msum = 0;
            for (int j = 0; j < 8; j++) msum += mn[j] * (b->bsums[2 * j] + b->bsums[2 * j + 1]);
            sum[c] += (d * b->d) * (float)_mm512_reduce_add_epi32(acc) - (dmin * b->d) * (float)msum;
        }
    }
    for (int c = 0; c < NC; c++) out[c] = sum[c];
}

GC_MM_INLINE void gc_q6k_rowk(const int NC, const char *row, int64_t nsb, const block_q8_K *const *y, float *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    /* 16-bit lane shifts of the broadcast qh: lower 256 bits / upper 256 bits */
    const __m512i sh_lo = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512i pidx[4];
    for (int t = 0; t < 4; t++) {
        int32_t ix[16];
        for (int l = 0; l < 16; l++) ix[l] = 4 * t + l / 4;
        pidx[t] = _mm512_loadu_si512(ix);
    }
    float sum[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < nsb; i++) {
        const block_q6_K *x = (const block_q6_K *)row + i;
        const __m512i s16 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->scales));
        __m512i u[4], s[4];
        for (int c2 = 0; c2 < 2; c2++) {
            const __m512i ql = _mm512_loadu_si512(x->ql + 64 * c2);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * c2)));
            const __m512i hl = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_lo), m3), 4);
            const __m512i hh = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m3), 4);
            u[2 * c2] = _mm512_or_si512(_mm512_and_si512(ql, m4), hl);
            u[2 * c2 + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hh);
        }
        for (int t = 0; t < 4; t++) s[t] = _mm512_permutexvar_epi32(pidx[t], s16);
        const float d = gc_fp16_to_fp32(x->d);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            const __m512i z = _mm512_setzero_si512();
            __m512i acc = z;
            for (int t = 0; t < 4; t++)
                acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(
                          _mm512_dpbusd_epi32(z, u[t], _mm512_loadu_si512(b->qs + 64 * t)), s[t]));
            int bias = 0;
            for (int j = 0; j < 16; j++) bias += x->scales[j] * b->bsums[j];
            sum[c] += (d * b->d) * (float)(_mm512_reduce_add_epi32(acc) - 32 * bias);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = sum[c];
}

#define GC_QK_ROWFN(NAME, KFN)                                                                        \
static inline void NAME(int nc, const char *row, int64_t nsb, const block_q8_K *const *y, float *out) {      \
    switch (nc) {                                                                                     \
    case 1: KFN(1, row, nsb, y, out); break;                                                          \
    case 2: KFN(2, row, nsb, y, out); break;                                                          \
    case 3: KFN(3, row, nsb, y, out); break;                                                          \
    default: KFN(4, row, nsb, y, out); break;                                                         \
    }                                                                                                 \
}
GC_QK_ROWFN(gc_mm_row_q4_K, gc_q4k_rowk)
GC_QK_ROWFN(gc_mm_row_q6_K, gc_q6k_rowk)
#endif

static inline void gc_mm_row_qk(int32_t t, int nc, const char *row, int64_t nsb, const block_q8_K *const *y, float *out) {
#if defined(GC_MM_AVX512)
    if (t == GC_Q4_K) { gc_mm_row_q4_K(nc, row, nsb, y, out); return; }
    if (t == GC_Q6_K) { gc_mm_row_q6_K(nc, row, nsb, y, out); return; }
#endif
    const int64_t bsize = gc_type_size(t);
    for (int c = 0; c < nc; c++) out[c] = gc_dot_k_scalar(t, row, bsize, y[c], 0, nsb);
}

/* ================================================================================================
 * the op
 * ================================================================================================ */

/* src1 column (i1, i2, i3) as contiguous f32: the tensor itself when it already is, else tmp */
static inline const float *gc_mm_col_f32(const gc_tensor *b, int64_t i1, int64_t i2, int64_t i3, float *tmp) {
    const char *p = GC_AT(b, 0, i1, i2, i3);
    const int64_t K = b->ne[0];
    if (b->type == GC_F32 && b->nb[0] == 4) return (const float *)p;
    for (int64_t k = 0; k < K; k++) {
        const char *e = p + k * b->nb[0];
        if (b->type == GC_F32) memcpy(&tmp[k], e, 4);
        else {
            uint16_t h;
            memcpy(&h, e, 2);
            tmp[k] = b->type == GC_F16 ? gc_fp16_to_fp32(h) : gc_bf16_to_fp32(h);
        }
    }
    return tmp;
}

static inline void gc_mm_store(const gc_tensor *dst, int64_t i0, int64_t i1, int64_t i2, int64_t i3, float v, int add) {
    float *o = (float *)GC_AT(dst, i0, i1, i2, i3);
    *o = add ? *o + v : v;
}

static inline void gc_op_mul_mat(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                   int ith, int nth) {
    (void)params;
    const gc_tensor *a = src[0], *b = src[1];
    int64_t r0, r1;
    gc_chunk(dst->ne[0], ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    const int32_t t = a->type;
    const int kind = gc_mm_kind(t);
    if (kind == GC_MM_NONE || a->ne[2] <= 0 || a->ne[3] <= 0) return;   /* gc_supports_mul_mat refuses these */
    const int64_t K = a->ne[0], N1 = dst->ne[1];
    const int64_t r2 = dst->ne[2] / a->ne[2], r3 = dst->ne[3] / a->ne[3];
    char *scr = (char *)(((uintptr_t)ctx->scratch[ith] + 63) & ~(uintptr_t)63);
    float *tmp = (float *)scr;
    char *act = scr + gc_mm_align((size_t)K * sizeof(float));
    const size_t abytes = gc_mm_act_bytes(t, K);
    gc_q32_idx ix;
    if (kind == GC_MM_Q32) gc_q32_idx_make(t, &ix);
    const int c_off = gc_q32_offset(t), c_q81 = t == GC_Q4_1 || t == GC_Q5_1;
    const int k_perm = t == GC_Q4_K || t == GC_Q5_K;

    for (int64_t i3 = 0; i3 < dst->ne[3]; i3++)
    for (int64_t i2 = 0; i2 < dst->ne[2]; i2++) {
        const char *wbase = a->data + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        for (int64_t c0 = 0; c0 < N1; c0 += GC_MM_CT) {
            const int nct = (int)(N1 - c0 < GC_MM_CT ? N1 - c0 : GC_MM_CT);
            const char *cols[GC_MM_CT];
            /* prepare the tile's activation columns once */
            for (int c = 0; c < nct; c++) {
                const float *x = gc_mm_col_f32(b, c0 + c, i2, i3, tmp);
                char *o = act + (size_t)c * abytes;
                cols[c] = o;
                if (kind == GC_MM_Q32) gc_quantize_act_q32(x, K, c_q81, c_off, (gc_act4 *)o);
                else if (kind == GC_MM_QK) gc_quantize_act_q8_K(x, K, k_perm, (block_q8_K *)o);
                else if (t == GC_F16) for (int64_t k = 0; k < K; k++) ((float *)o)[k] = gc_fp16_to_fp32(gc_fp32_to_fp16(x[k]));
                else if (t == GC_BF16) for (int64_t k = 0; k < K; k++) ((float *)o)[k] = gc_bf16_to_fp32(gc_fp32_to_bf16(x[k]));
                else if (x == tmp) memcpy(o, x, (size_t)K * sizeof(float));
                else cols[c] = (const char *)x;
            }
            if (kind == GC_MM_FLOAT) {
                for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += GC_MM_KB) {
                    const int64_t k1 = K - k0 < GC_MM_KB ? K : k0 + GC_MM_KB;
                    for (int64_t r = r0; r < r1;) {
                        const int nr = r1 - r >= 4 ? 4 : 1;
                        const void *w[4];
                        for (int i = 0; i < nr; i++) w[i] = wbase + (r + i) * a->nb[1];
                        for (int c = 0; c < nct; c += 4) {
                            const int nc = nct - c < 4 ? nct - c : 4;
                            float out[16];
                            const float *xc[4];
                            for (int j = 0; j < nc; j++) xc[j] = (const float *)cols[c + j];
                            gc_mm_fblock(t, nr, nc, w, xc, k0, k1, out);
                            for (int i = 0; i < nr; i++)
                                for (int j = 0; j < nc; j++)
                                    gc_mm_store(dst, r + i, c0 + c + j, i2, i3, out[i * nc + j], k0 > 0);
                        }
                        r += nr;
                    }
                }
                continue;
            }
            for (int64_t r = r0; r < r1; r++) {
                const char *row = wbase + r * a->nb[1];
                for (int c = 0; c < nct; c += 4) {
                    const int nc = nct - c < 4 ? nct - c : 4;
                    float out[4];
                    if (kind == GC_MM_QK) {
                        const block_q8_K *yc[4];
                        for (int j = 0; j < nc; j++) yc[j] = (const block_q8_K *)cols[c + j];
                        gc_mm_row_qk(t, nc, row, K / 256, yc, out);
                    } else {
                        const gc_act4 *xc[4];
                        for (int j = 0; j < nc; j++) xc[j] = (const gc_act4 *)cols[c + j];
                        switch (t) {
                        case GC_Q4_0: gc_mm_row_q4_0(nc, row, K / 32, xc, out, &ix); break;
                        case GC_Q4_1: gc_mm_row_q4_1(nc, row, K / 32, xc, out, &ix); break;
                        case GC_Q5_0: gc_mm_row_q5_0(nc, row, K / 32, xc, out, &ix); break;
                        case GC_Q5_1: gc_mm_row_q5_1(nc, row, K / 32, xc, out, &ix); break;
                        default: gc_mm_row_q8_0(nc, row, K / 32, xc, out, &ix); break;
                        }
                    }
                    for (int j = 0; j < nc; j++) gc_mm_store(dst, r, c0 + c + j, i2, i3, out[j], 0);
                }
            }
        }
    }
}

#endif
