/* GC_PROVIDES: mul_mat */
/* mul_mat: dst[i0, i1, i2, i3] = sum_k src0[k, i0, i2/r2, i3/r3] * src1[k, i1, i2, i3] (ggml_mul_mat;
 * src0 broadcast over dims 2, 3 by integer division). Numerics as ggml's CPU backend (graphc.quants
 * mul_mat_quant): f16/bf16 weights see activations rounded to f16/bf16; quantized weights see them
 * quantized to q8_0 / q8_1 / q8_K (x86 flavour) once per thread and column, then exact integer block
 * dot products (AVX-512 VNNI + VBMI, AVX2 maddubs, or scalar). Threads take chunks of dst rows of one
 * column tile from a shared counter (gc_op_mul_mat).
 *
 * Loop order: for every dst slice (i2, i3) and tile of GC_MM_CT columns, the tile's activations are
 * prepared into thread scratch (they stay in L2), then every weight row of the thread is read once per
 * tile and dotted with up to 4 columns at a time from registers (GEMV: weights stream exactly once).
 * Float weights are also blocked over K (GC_MM_KB) so that 4 weight rows stay in L1.
 *
 * Measured on AMD Zen 5 (what shaped the quantized kernels): a GEMV is a DRAM stream, and one core
 * streams fastest when it reads ONE row at a time with loads in address order that never step back
 * into a cache line already requested (interleaving 2-4 rows, or overlapping 64-byte loads at +8,
 * halved the bandwidth); so GEMV walks one row at a time and only GEMM tiles (>= 8 columns, compute
 * bound) pair rows to share activation loads. */
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
/* software prefetch distance (bytes ahead in the weight row) of the quantized GEMV kernels: the
 * hardware prefetchers alone leave a single-core stream ~10-20% short (tuned on Zen 5, 1 thread) */
#define GC_MM_PF 4096
#define GC_MM_PF_Q8 6144

#if defined(__GNUC__)
#define GC_MM_INLINE static inline __attribute__((always_inline))
#else
#define GC_MM_INLINE static inline
#endif

/* AVX2 has 16 vector registers: its integer kernels build each sum as a chain, one term at a time, so
 * that only the chain's value and one new term are live. gcc's reassociation regroups such a chain into
 * a tree (more terms live at once: with 4 columns' sums that spilled to the stack); an empty asm that
 * claims to change the value after each step keeps the chain as written. */
#if defined(__GNUC__)
#define GC_MM_CHAIN(v) __asm__("" : "+x"(v))
#else
#define GC_MM_CHAIN(v) ((void)0)
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

/* the type whose rows an 8-row-group layout holds (matmul_x8.h), or t itself */
static inline int32_t gc_x8_base_type(int32_t t) {
    return t == GC_Q4_0X8 ? GC_Q4_0 : t == GC_Q4_KX8 ? GC_Q4_K : t == GC_Q6_KX8 ? GC_Q6_K : t;
}

/* 1 when gc_op_mul_mat handles these tensors (checked once at load time by the generated gc_check) */
static inline int gc_supports_mul_mat(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)params;
    const gc_tensor *a = src[0], *b = src[1];
    const int32_t t = gc_x8_base_type(a->type);
    if (t != a->type && (a->ne[1] % 8 || a->ne[2] != 1 || a->ne[3] != 1 ||
                         a->nb[1] != gc_type_size(t) * (a->ne[0] / gc_type_blck(t))))
        return 0;                                  /* 8-row groups of one 2-D matrix, rows packed */
    if (gc_mm_kind(t) == GC_MM_NONE || dst->type != GC_F32) return 0;
    if (b->type != GC_F32 && b->type != GC_F16 && b->type != GC_BF16) return 0;
    if (a->nb[0] != gc_type_size(t) || a->ne[0] % gc_type_blck(t) != 0 || b->ne[0] != a->ne[0]) return 0;
    if (a->ne[2] <= 0 || a->ne[3] <= 0 || dst->ne[2] % a->ne[2] || dst->ne[3] % a->ne[3]) return 0;
    return dst->ne[0] == a->ne[1] && dst->ne[1] == b->ne[1] && dst->ne[2] == b->ne[2] && dst->ne[3] == b->ne[3];
}

/* ================================================================================================
 * float weights: micro-kernels of NR weight rows x NC columns over k in [k0, k1)
 * ================================================================================================ */

#if defined(__AVX2__) || defined(__AVX512F__)
static inline float gc_mm_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#if defined(__AVX512F__)
#define GC_VF __m512
#define GC_VL 16
#define GC_VZERO() _mm512_setzero_ps()
#define GC_VLOAD(p) _mm512_loadu_ps(p)
#define GC_VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define GC_VADD(a, b) _mm512_add_ps(a, b)
#define GC_VSUM(v) _mm512_reduce_add_ps(v)
#define GC_WL_F32(p) _mm512_loadu_ps(p)
#define GC_WL_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define GC_WL_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define GC_VF __m256
#define GC_VL 8
#define GC_VZERO() _mm256_setzero_ps()
#define GC_VLOAD(p) _mm256_loadu_ps(p)
#define GC_VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define GC_VADD(a, b) _mm256_add_ps(a, b)
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
#define GC_VADD(a, b) ((a) + (b))
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
    if (NR * NC == 1) {        /* GEMV: 4 independent sums, or the FMA latency chain limits the stream */ \
        GC_VF s1 = GC_VZERO(), s2 = GC_VZERO(), s3 = GC_VZERO();                                       \
        for (; k + 4 * GC_VL <= k1; k += 4 * GC_VL) {                                                  \
            acc[0][0] = GC_VFMA(WLOAD(w[0] + k), GC_VLOAD(x[0] + k), acc[0][0]);                       \
            s1 = GC_VFMA(WLOAD(w[0] + k + GC_VL), GC_VLOAD(x[0] + k + GC_VL), s1);                     \
            s2 = GC_VFMA(WLOAD(w[0] + k + 2 * GC_VL), GC_VLOAD(x[0] + k + 2 * GC_VL), s2);             \
            s3 = GC_VFMA(WLOAD(w[0] + k + 3 * GC_VL), GC_VLOAD(x[0] + k + 3 * GC_VL), s3);             \
        }                                                                                              \
        acc[0][0] = GC_VADD(GC_VADD(acc[0][0], s1), GC_VADD(s2, s3));                                  \
    }                                                                                                  \
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
/* permutation indices: a 4-block group's nibbles (q4/q5: one byte permute of two 64-byte loads), q8_0's
 * element halves (qword permute of two 2-block vectors) and the lane scales (byte permute) */
typedef struct { __m512i qlo, qhi, sc; } gc_q32_idx;

static inline void gc_q32_idx_make(int32_t t, gc_q32_idx *ix) {
    const int bs = gc_q32_bs(t), qo = t == GC_Q4_0 ? 2 : t == GC_Q4_1 ? 4 : t == GC_Q5_0 ? 6 : 8;
    const int boff = 64;                                    /* the second load covers [64, 4 bs) */
    uint8_t lo[64], sc[64];
    for (int p = 0; p < 64; p++) {
        const int src = bs * (p / 16) + qo + p % 16;
        lo[p] = (uint8_t)(src < 64 ? src : 64 + src - boff);
        const int lane = (p % 32) / 2;
        const int ssrc = bs * (lane / 4) + (p >= 32 ? 2 : 0) + (p % 2);  /* d (bytes 0..31), m (32..63) */
        sc[p] = (uint8_t)(ssrc < 64 ? ssrc : 64 + ssrc - boff);
    }
    ix->qlo = _mm512_loadu_si512(lo);
    ix->qhi = _mm512_setzero_si512();
    if (t == GC_Q8_0) {  /* qwords of [block0 block1] [block2 block3]: element halves 0..15 / 16..31 */
        ix->qlo = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0);
        ix->qhi = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);
    }
    ix->sc = _mm512_loadu_si512(sc);
}

/* unsigned quants (u = q + c; lo: elements 0..15 of the 4 blocks, hi: 16..31) and lane scales */
GC_MM_INLINE void gc_q32_load4(const int32_t t, const uint8_t *p, const gc_q32_idx *ix,
                               __m512i *lo, __m512i *hi, __m512 *d, __m512 *m) {
    const int bs = gc_q32_bs(t);
    /* the group's bytes [0, 4 bs) as [0, 64) and a masked load of [64, 4 bs) (q8_0: [64, 128)): loads
     * that never step back into a line already read keep the DRAM stream fast, and the masked part
     * never reads past the end of the row */
    const __m512i a = _mm512_loadu_si512(p);
    const __m512i b = t == GC_Q8_0 ? _mm512_loadu_si512(p + 64)
                                   : _mm512_maskz_loadu_epi8((__mmask64)((1ULL << (4 * bs - 64)) - 1), p + 64);
    const __m512i s = _mm512_permutex2var_epi8(a, ix->sc, b);
    *d = _mm512_cvtph_ps(_mm512_castsi512_si256(s));
    if (t == GC_Q4_1 || t == GC_Q5_1) *m = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(s, 1));
    if (t == GC_Q8_0) {
        /* blocks as 32-byte loads in address order (a stream the hardware prefetchers follow well from
         * DRAM), then qword shuffles into the lo/hi layout of the activations */
        const __m512i x80 = _mm512_set1_epi8((char)0x80);
        const __m512i v0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                                              _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
        const __m512i v1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 70))),
                                              _mm256_loadu_si256((const __m256i *)(p + 104)), 1);
        *lo = _mm512_xor_si512(_mm512_permutex2var_epi64(v0, ix->qlo, v1), x80);
        *hi = _mm512_xor_si512(_mm512_permutex2var_epi64(v0, ix->qhi, v1), x80);
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
    __m512 acc[4], accm[4];
    for (int c = 0; c < NC; c++) acc[c] = accm[c] = _mm512_setzero_ps();
    const int64_t ng = nb / 4;
    const int pfd = t == GC_Q8_0 ? GC_MM_PF_Q8 : GC_MM_PF;
    for (int64_t g = 0; g < ng; g++) {
        __m512i lo, hi;
        __m512 d, m = _mm512_setzero_ps();
        _mm_prefetch(row + g * 4 * bs + pfd, _MM_HINT_T0);
        _mm_prefetch(row + g * 4 * bs + pfd + 64, _MM_HINT_T0);
        gc_q32_load4(t, (const uint8_t *)row + g * 4 * bs, ix, &lo, &hi, &d, &m);
        for (int c = 0; c < NC; c++) {
            const gc_act4 *a = x[c] + g;
            __m512i dp = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->bias), lo, _mm512_loadu_si512(a->qs));
            dp = _mm512_dpbusd_epi32(dp, hi, _mm512_loadu_si512(a->qs + 64));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(d, _mm512_loadu_ps(a->d)), acc[c]);
            if (has_m) accm[c] = _mm512_fmadd_ps(m, _mm512_loadu_ps(a->s), accm[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        out[c] = _mm512_reduce_add_ps(_mm512_add_ps(acc[c], accm[c])) + gc_dot_q32_scalar(t, row, x[c], 4 * ng, nb);
}

/* GEMM micro-kernel: 2 weight rows x 4 columns, so every activation load feeds two rows */
static inline void gc_q32_rows2x4(const int32_t t, const char *row0, const char *row1, int64_t nb,
                                  const gc_act4 *const *x, float *out0, float *out1, const gc_q32_idx *ix) {
    const int bs = gc_q32_bs(t);
    const int has_m = t == GC_Q4_1 || t == GC_Q5_1;
    __m512 acc0[4], acc1[4];
    for (int c = 0; c < 4; c++) acc0[c] = acc1[c] = _mm512_setzero_ps();
    const int64_t ng = nb / 4;
    for (int64_t g = 0; g < ng; g++) {
        __m512i lo0, hi0, lo1, hi1;
        __m512 d0, d1, m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
        _mm_prefetch(row0 + g * 4 * bs + GC_MM_PF, _MM_HINT_T0);
        _mm_prefetch(row0 + g * 4 * bs + GC_MM_PF + 64, _MM_HINT_T0);
        _mm_prefetch(row1 + g * 4 * bs + GC_MM_PF, _MM_HINT_T0);
        _mm_prefetch(row1 + g * 4 * bs + GC_MM_PF + 64, _MM_HINT_T0);
        gc_q32_load4(t, (const uint8_t *)row0 + g * 4 * bs, ix, &lo0, &hi0, &d0, &m0);
        gc_q32_load4(t, (const uint8_t *)row1 + g * 4 * bs, ix, &lo1, &hi1, &d1, &m1);
        for (int c = 0; c < 4; c++) {
            const gc_act4 *a = x[c] + g;
            const __m512i bias = _mm512_loadu_si512(a->bias), y0 = _mm512_loadu_si512(a->qs), y1 = _mm512_loadu_si512(a->qs + 64);
            const __m512 ad = _mm512_loadu_ps(a->d);
            __m512i p0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo0, y0), hi0, y1);
            __m512i p1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo1, y0), hi1, y1);
            acc0[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_mul_ps(d0, ad), acc0[c]);
            acc1[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_mul_ps(d1, ad), acc1[c]);
            if (has_m) {
                const __m512 as = _mm512_loadu_ps(a->s);
                acc0[c] = _mm512_fmadd_ps(m0, as, acc0[c]);
                acc1[c] = _mm512_fmadd_ps(m1, as, acc1[c]);
            }
        }
    }
    for (int c = 0; c < 4; c++) {
        out0[c] = _mm512_reduce_add_ps(acc0[c]) + gc_dot_q32_scalar(t, row0, x[c], 4 * ng, nb);
        out1[c] = _mm512_reduce_add_ps(acc1[c]) + gc_dot_q32_scalar(t, row1, x[c], 4 * ng, nb);
    }
}
#define GC_MM_HAVE_Q32_2X4 1

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

/* block b = 4 g + j of a row (j constant in the unrolled loop: no index arithmetic per block) */
GC_MM_INLINE void gc_q32_blk(const int32_t t, const int NC, const char *row, int64_t g, const int j,
                             const gc_act4 *const *x, __m256 *acc, float *accm) {
    const int bs = gc_q32_bs(t);
    const int has_m = t == GC_Q4_1 || t == GC_Q5_1;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    const int64_t b = 4 * g + j;
    const uint8_t *p = (const uint8_t *)row + b * bs;
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
        const gc_act4 *a = x[c] + g;
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

/* whole 4-block activation groups with the block's place j in it constant, then the tail: the same
 * operations per block as ggml's AVX2 vec_dot (one maddubs, one madd, one conversion and one fma per
 * block and column), in block order */
GC_MM_INLINE void gc_q32_rowk(const int32_t t, const int NC, const char *row, int64_t nb,
                              const gc_act4 *const *x, float *out, const gc_q32_idx *ix) {
    (void)ix;
    const int bs = gc_q32_bs(t);
    const int pfd = t == GC_Q8_0 ? GC_MM_PF_Q8 : GC_MM_PF;
    __m256 acc[4];
    float accm[4] = {0, 0, 0, 0};
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    int64_t g = 0;
    for (; 4 * g + 4 <= nb; g++) {
        _mm_prefetch(row + 4 * g * bs + pfd, _MM_HINT_T0);
        _mm_prefetch(row + 4 * g * bs + pfd + 64, _MM_HINT_T0);
        for (int j = 0; j < 4; j++) gc_q32_blk(t, NC, row, g, j, x, acc, accm);
    }
    if (4 * g < nb) {
        _mm_prefetch(row + 4 * g * bs + pfd, _MM_HINT_T0);
        _mm_prefetch(row + 4 * g * bs + pfd + 64, _MM_HINT_T0);
        for (int j = 0; 4 * g + j < nb; j++) gc_q32_blk(t, NC, row, g, j, x, acc, accm);
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
 * K-quants: one weight row x up to 4 q8_K columns. Sub-block scales are applied in the integer
 * domain (maddubs: u8 weight x s8 activation pairs -> s16, then a 16-bit multiply-add with the
 * sub-block scale -> s32), so each super-block costs one int->float conversion per column; the
 * q4_K mins and q6_K's -32 offset come from the activations' 16-element sums (bsums).
 * ================================================================================================ */

#if defined(GC_MM_AVX512) || defined(GC_MM_AVX2)
/* q4_K / q5_K: the 8 six-bit scales (bytes 0..7) and mins (bytes 8..15) of a super-block, computed in a
 * vector register. s12 is read as 16 bytes: the 4 after the scales are the block's first quants. */
static inline __m128i gc_mm_k4_scales_v(const uint8_t *s12) {
    const __m128i w = _mm_loadu_si128((const __m128i *)s12);
    const __m128i x = _mm_shuffle_epi32(w, 0x98);           /* w0 w2 w1 w2 */
    const __m128i y = _mm_shuffle_epi32(w, 0x50);           /* w0 w0 w1 w1 */
    const __m128i ev = _mm_and_si128(x, _mm_set1_epi32(0x3F3F3F3F));
    const __m128i od = _mm_or_si128(_mm_and_si128(_mm_srlv_epi32(x, _mm_setr_epi32(0, 0, 0, 4)), _mm_set1_epi32(0x0F0F0F0F)),
                                    _mm_and_si128(_mm_srli_epi32(y, 2), _mm_set1_epi32(0x30303030)));
    return _mm_blend_epi32(ev, od, 0xA);
}
#endif

#if defined(GC_MM_AVX512)
/* byte-permute indices (even bytes; odd bytes are zeroed by the mask) that widen q4_K's scale bytes to
 * 16-bit lanes: vector t of a super-block holds stored sub-blocks 2t, 2t+1 (lanes 0..15, 16..31) =
 * original sub-blocks (0,2) (1,3) (4,6) (5,7); mins: lane i of 16 = min of bsums i = sub-block i/2 */
typedef struct { __m512i sc[4], hb[4]; __m256i mn; } gc_k4_idx;

static inline void gc_k4_idx_make(gc_k4_idx *ix) {
    static const int8_t sbs[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
    for (int t = 0; t < 4; t++) {
        uint8_t b[64], h[64];
        for (int p = 0; p < 64; p++) {
            b[p] = (uint8_t)sbs[t][p >= 32];
            h[p] = (uint8_t)(1u << sbs[t][p >= 32]);   /* q5_K: bit sb of qh[l] is element l's 5th bit */
        }
        ix->sc[t] = _mm512_loadu_si512(b);
        ix->hb[t] = _mm512_loadu_si512(h);
    }
    uint8_t m[32];
    for (int p = 0; p < 32; p++) m[p] = (uint8_t)(8 + p / 4);
    ix->mn = _mm256_loadu_si256((const __m256i *)m);
}

/* q4_K (Q5 = 0) and q5_K (Q5 = 1): the same layout of scales, mins and nibbles; q5_K adds 16 where
 * its qh bit is set */
GC_MM_INLINE void gc_q45k_rowk(const int Q5, const int NC, const char *row, int64_t nsb, const block_q8_K *const *y,
                               float *out, const gc_k4_idx *ix) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(16);
    const __mmask64 even = (__mmask64)0x5555555555555555ULL;
    const int64_t bsize = Q5 ? (int64_t)sizeof(block_q5_K) : (int64_t)sizeof(block_q4_K);
    __m512 acc[4];
    __m256 accm[4];
    for (int c = 0; c < NC; c++) { acc[c] = _mm512_setzero_ps(); accm[c] = _mm256_setzero_ps(); }
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *x = (const uint8_t *)row + i * bsize;     /* d, dmin, scales[12], (qh[32]), qs[128] */
        const uint8_t *qs = x + (Q5 ? 48 : 16);
        for (int l = 0; l < 3; l++) _mm_prefetch((const char *)x + GC_MM_PF_Q8 + 64 * l, _MM_HINT_T0);
        const __m128i sm = gc_mm_k4_scales_v(x + 4);
        const __m512i sm5 = _mm512_castsi128_si512(sm);
        __m512i sc[4], q[4];
        for (int t = 0; t < 4; t++) sc[t] = _mm512_maskz_permutexvar_epi8(even, ix->sc[t], sm5);
        const __m256i mn = _mm256_maskz_permutexvar_epi8((__mmask32)0x55555555u, ix->mn, _mm256_castsi128_si256(sm));
        const __m512i v0 = _mm512_loadu_si512(qs), v1 = _mm512_loadu_si512(qs + 64);
        q[0] = _mm512_and_si512(v0, m4);
        q[1] = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
        q[2] = _mm512_and_si512(v1, m4);
        q[3] = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
        if (Q5) {
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + 16)));
            for (int t = 0; t < 4; t++) q[t] = _mm512_mask_add_epi8(q[t], _mm512_test_epi8_mask(qh, ix->hb[t]), q[t], b16);
        }
        uint16_t hd, hdm;
        memcpy(&hd, x, 2);
        memcpy(&hdm, x + 2, 2);
        const float d = gc_fp16_to_fp32(hd), dmin = gc_fp16_to_fp32(hdm);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            __m512i s = _mm512_setzero_si512();
            for (int t = 0; t < 4; t++)
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(q[t], _mm512_loadu_si512(b->qs + 64 * t)), sc[t]);
            const __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), mn);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(d * b->d), acc[c]);
            accm[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(-dmin * b->d), accm[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = _mm512_reduce_add_ps(acc[c]) + gc_mm_hsum8(accm[c]);
}

/* q6_K: vector t holds elements 64t..64t+63 (natural order), 16-bit lane L of it uses scale 4t + L/8 */
typedef struct { __m512i sc[4]; } gc_k6_idx;

static inline void gc_k6_idx_make(gc_k6_idx *ix) {
    for (int t = 0; t < 4; t++) {
        int16_t b[32];
        for (int l = 0; l < 32; l++) b[l] = (int16_t)(4 * t + l / 8);
        ix->sc[t] = _mm512_loadu_si512(b);
    }
}

GC_MM_INLINE void gc_q6k_rowk(const int NC, const char *row, int64_t nsb, const block_q8_K *const *y, float *out,
                              const gc_k6_idx *ix) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    /* 16-bit lane shifts of the broadcast qh: lower 256 bits / upper 256 bits */
    const __m512i sh_lo = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512 acc[4];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const block_q6_K *x = (const block_q6_K *)row + i;
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)x + GC_MM_PF_Q8 + 64 * l, _MM_HINT_T0);
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
        __m512i u[4], sc[4];
        for (int c2 = 0; c2 < 2; c2++) {
            const __m512i ql = _mm512_loadu_si512(x->ql + 64 * c2);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * c2)));
            const __m512i hl = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_lo), m3), 4);
            const __m512i hh = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m3), 4);
            u[2 * c2] = _mm512_or_si512(_mm512_and_si512(ql, m4), hl);
            u[2 * c2 + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hh);
        }
        for (int t = 0; t < 4; t++) sc[t] = _mm512_permutexvar_epi16(ix->sc[t], _mm512_castsi256_si512(s16));
        const float d = gc_fp16_to_fp32(x->d);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            /* sum_j sc_j (dot(u, y)_j - 32 bsum_j): the offset in lanes 0..7 */
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), s16), 5);
            __m512i s = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
            for (int t = 0; t < 4; t++)
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(u[t], _mm512_loadu_si512(b->qs + 64 * t)), sc[t]);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(d * b->d), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = _mm512_reduce_add_ps(acc[c]);
}

/* q2_K / q3_K: 2-bit quants; vector t holds elements 64t..64t+63 = qs[32c + l] (c = t/2) shifted right
 * by 2j, j = 2(t%2) in the lower 256 bits and 2(t%2)+1 in the upper; 16-element sub-blocks like q6_K */
static inline void gc_q23k_unpack(const uint8_t *qs, __m512i *u) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    for (int c = 0; c < 2; c++) {
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
        u[2 * c] = _mm512_and_si512(_mm512_srlv_epi16(q, sh01), m3);
        u[2 * c + 1] = _mm512_and_si512(_mm512_srlv_epi16(q, sh23), m3);
    }
}

/* q2_K: sum_j sc_j dot(u, y)_j * d - sum_j m_j bsum_j * dmin (scales: low nibble sc, high nibble m) */
GC_MM_INLINE void gc_q2k_rowk(const int NC, const char *row, int64_t nsb, const block_q8_K *const *y, float *out,
                              const gc_k6_idx *ix) {
    __m512 acc[4];
    __m256 accm[4];
    for (int c = 0; c < NC; c++) { acc[c] = _mm512_setzero_ps(); accm[c] = _mm256_setzero_ps(); }
    for (int64_t i = 0; i < nsb; i++) {
        const block_q2_K *x = (const block_q2_K *)row + i;
        for (int l = 0; l < 2; l++) _mm_prefetch((const char *)x + GC_MM_PF_Q8 + 64 * l, _MM_HINT_T0);
        const __m128i sb = _mm_loadu_si128((const __m128i *)x->scales);
        const __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(sb, _mm_set1_epi8(0x0F)));
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), _mm_set1_epi8(0x0F)));
        __m512i u[4], sc[4];
        gc_q23k_unpack(x->qs, u);
        for (int t = 0; t < 4; t++) sc[t] = _mm512_permutexvar_epi16(ix->sc[t], _mm512_castsi256_si512(s16));
        const float d = gc_fp16_to_fp32(x->d), dmin = gc_fp16_to_fp32(x->dmin);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            __m512i s = _mm512_setzero_si512();
            for (int t = 0; t < 4; t++)
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(u[t], _mm512_loadu_si512(b->qs + 64 * t)), sc[t]);
            const __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), m16);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(d * b->d), acc[c]);
            accm[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(-dmin * b->d), accm[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = _mm512_reduce_add_ps(acc[c]) + gc_mm_hsum8(accm[c]);
}

/* q3_K: u = q + 4 in [0, 8) (2 low bits | hmask bit << 2), so sum_j sc_j (dot(u, y)_j - 4 bsum_j) */
GC_MM_INLINE void gc_q3k_rowk(const int NC, const char *row, int64_t nsb, const block_q8_K *const *y, float *out,
                              const gc_k6_idx *ix) {
    __m512i hb[4];
    for (int t = 0; t < 4; t++) {   /* hmask bit of element 32 j' + l is bit j' = 2t, 2t+1 of hmask[l] */
        hb[t] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * t))), _mm256_set1_epi8((char)(1 << (2 * t + 1))), 1);
    }
    const __m128i hsh = _mm_setr_epi16(0, 0, 2, 2, 4, 4, 6, 6);
    const __m128i hsel = _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11);
    const __m512i four = _mm512_set1_epi8(4);
    __m512 acc[4];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const block_q3_K *x = (const block_q3_K *)row + i;
        for (int l = 0; l < 2; l++) _mm_prefetch((const char *)x + GC_MM_PF_Q8 + 64 * l, _MM_HINT_T0);
        /* 16 six-bit scales: low nibbles of bytes 0..7 (j < 8) / high nibbles (j >= 8), 2 high bits from
         * byte 8 + j % 4 at bit 2 (j / 4); minus 32 */
        const __m128i sb = _mm_maskz_loadu_epi8((__mmask16)0x0FFF, x->scales);
        const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(sb, _mm_srli_epi16(sb, 4)), _mm_set1_epi8(0x0F));
        const __m128i hi = _mm_and_si128(_mm_srlv_epi16(_mm_shuffle_epi8(sb, hsel), hsh), _mm_set1_epi8(3));
        const __m128i s8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
        const __m256i s16 = _mm256_cvtepi8_epi16(s8);
        __m512i u[4], sc[4];
        gc_q23k_unpack(x->qs, u);
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x->hmask));
        for (int t = 0; t < 4; t++) {
            u[t] = _mm512_mask_add_epi8(u[t], _mm512_test_epi8_mask(hm, hb[t]), u[t], four);
            sc[t] = _mm512_permutexvar_epi16(ix->sc[t], _mm512_castsi256_si512(s16));
        }
        const float d = gc_fp16_to_fp32(x->d);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), s16), 2);
            __m512i s = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
            for (int t = 0; t < 4; t++)
                s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(u[t], _mm512_loadu_si512(b->qs + 64 * t)), sc[t]);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(d * b->d), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = _mm512_reduce_add_ps(acc[c]);
}
#define GC_MM_HAVE_Q23K 1

typedef struct { gc_k4_idx k4; gc_k6_idx k6; } gc_qk_idx;
static inline void gc_qk_idx_make(gc_qk_idx *ix) { gc_k4_idx_make(&ix->k4); gc_k6_idx_make(&ix->k6); }
#define GC_QK_IX4(ix) , &(ix)->k4
#define GC_QK_IX6(ix) , &(ix)->k6

#elif defined(GC_MM_AVX2)
typedef int gc_qk_idx;
static inline void gc_qk_idx_make(gc_qk_idx *ix) { *ix = 0; }
#define GC_QK_IX4(ix)
#define GC_QK_IX6(ix)

/* 16-bit lanes all equal to byte j of v (a 16-byte vector broadcast to both 128-bit halves) */
static inline __m256i gc_mm_bcast16(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0xFF00 | j)));   /* 0xFF: zero high byte */
}

/* sub-blocks 2 j + h (h = 0: low nibbles, 1: high) of a q4_K / q5_K super-block x into the NC columns'
 * sums s (j, h constant): one unpacked vector and the columns' sums live (16 registers: the 8 unpacked
 * vectors of a super-block next to 4 columns' sums spilled) */
GC_MM_INLINE void gc_q45k_sb(const int Q5, const int NC, const uint8_t *x, const int j, const int h, __m256i sm,
                             const block_q8_K *const *y, int64_t i, __m256i *s) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = x + (Q5 ? 48 : 16);
    const int sb = 2 * j + h;
    const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
    __m256i q = _mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, m4);
    if (Q5) {   /* bit sb of qh[l]: the 5th bit of element l of sub-block sb */
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(x + 16));
        const __m256i bit = _mm256_set1_epi8((char)(1 << sb));
        q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), _mm256_set1_epi8(16)));
    }
    const __m256i scv = gc_mm_bcast16(sm, sb);
    const int pos = gc_k4_pos(sb);
    for (int c = 0; c < NC; c++) {
        const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(y[c][i].qs + 32 * pos)));
        s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(p, scv));
        GC_MM_CHAIN(s[c]);
    }
}

GC_MM_INLINE void gc_q45k_rowk(const int Q5, const int NC, const char *row, int64_t nsb, const block_q8_K *const *y,
                               float *out) {
    const int64_t bsize = Q5 ? (int64_t)sizeof(block_q5_K) : (int64_t)sizeof(block_q4_K);
    __m256 acc[4];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *x = (const uint8_t *)row + i * bsize;     /* d, dmin, scales[12], (qh[32]), qs[128] */
        for (int l = 0; l < 3; l++) _mm_prefetch((const char *)x + GC_MM_PF_Q8 + 64 * l, _MM_HINT_T0);
        const __m256i sm = _mm256_broadcastsi128_si256(gc_mm_k4_scales_v(x + 4));
        __m256i s[4];
        for (int c = 0; c < NC; c++) s[c] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            gc_q45k_sb(Q5, NC, x, j, 0, sm, y, i, s);
            gc_q45k_sb(Q5, NC, x, j, 1, sm, y, i, s);
        }
        /* mins widened to 16 bits, each twice: lane i pairs with bsums i (sub-block i/2) */
        const __m256i mn = _mm256_shuffle_epi8(sm, _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1,
                                                                   12, -1, 12, -1, 13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1));
        uint16_t hd, hdm;
        memcpy(&hd, x, 2);
        memcpy(&hdm, x + 2, 2);
        const float d = gc_fp16_to_fp32(hd), dmin = gc_fp16_to_fp32(hdm);
        for (int c = 0; c < NC; c++) {
            const block_q8_K *b = y[c] + i;
            const __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b->bsums), mn);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]), _mm256_set1_ps(d * b->d), acc[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(-dmin * b->d), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) out[c] = gc_mm_hsum8(acc[c]);
}

/* q3_K's 16 six-bit scales minus 32 as int8 (AVX512 has a vector version inline in gc_q3k_rowk) */
static inline __m128i gc_mm_k3_scales(const uint8_t *s12) {
    int32_t w2;
    memcpy(&w2, s12 + 8, 4);
    const __m128i sb = _mm_insert_epi32(_mm_loadl_epi64((const __m128i *)s12), w2, 2);
    const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(sb, _mm_srli_epi16(sb, 4)), _mm_set1_epi8(0x0F));
    const __m128i hsel = _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11);
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi8(sb, hsel), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* elements 128 c2 + 32 j .. +31 of a q2_K / q3_K / q6_K super-block x as unsigned values u (j constant):
 * q6_K: 4 low bits | 2 high bits << 4 (u = q + 32); q2_K: 2 bits; q3_K: 2 bits | the hmask bit << 2
 * (u = q + 4) */
GC_MM_INLINE __m256i gc_k16_u(const int32_t T, const uint8_t *x, const int c2, const int j) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    if (T == GC_Q6_K) {
        const block_q6_K *b6 = (const block_q6_K *)x;
        const __m256i ql = _mm256_loadu_si256((const __m256i *)(b6->ql + 64 * c2 + 32 * (j & 1)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b6->qh + 32 * c2));
        const __m256i lo = _mm256_and_si256(j & 2 ? _mm256_srli_epi16(ql, 4) : ql, m4);
        return _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), m3), 4));
    }
    const uint8_t *qs = T == GC_Q2_K ? ((const block_q2_K *)x)->qs : ((const block_q3_K *)x)->qs;
    const __m256i u = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(qs + 32 * c2)), 2 * j), m3);
    if (T != GC_Q3_K) return u;
    /* bit 4 c2 + j of hmask[l]: element 128 c2 + 32 j + l is not offset by -4; the bit moved to bit 2 of its
     * byte (16-bit shifts: masked) */
    const __m256i hm = _mm256_loadu_si256((const __m256i *)((const block_q3_K *)x)->hmask);
    const int sh = 4 * c2 + j - 2;
    const __m256i hb = sh >= 0 ? _mm256_srli_epi16(hm, sh) : _mm256_slli_epi16(hm, -sh);
    return _mm256_or_si256(u, _mm256_and_si256(hb, _mm256_set1_epi8(4)));
}

/* elements 128 c2 + 32 j .. +31 (j constant) into the NC columns' sums s: one unpacked vector and the
 * columns' sums live (the 4 vectors of a 128-element half next to 4 columns' sums spilled) */
GC_MM_INLINE void gc_k16_part(const int32_t T, const int NC, const uint8_t *x, const int c2, const int j,
                              __m256i sh, const block_q8_K *const *y, int64_t i, __m256i *s) {
    const __m256i u = gc_k16_u(T, x, c2, j);
    /* scales 8 c2 + 2 j (lanes 0..7 of 16-bit pairs) and 8 c2 + 2 j + 1: int16 scales 2 j, 2 j + 1 of the half sh */
    const char lo = (char)(4 * j), hi = (char)(4 * j + 2);
    const __m256i scs = _mm256_shuffle_epi8(sh, _mm256_setr_epi8(
        lo, (char)(lo + 1), lo, (char)(lo + 1), lo, (char)(lo + 1), lo, (char)(lo + 1),
        lo, (char)(lo + 1), lo, (char)(lo + 1), lo, (char)(lo + 1), lo, (char)(lo + 1),
        hi, (char)(hi + 1), hi, (char)(hi + 1), hi, (char)(hi + 1), hi, (char)(hi + 1),
        hi, (char)(hi + 1), hi, (char)(hi + 1), hi, (char)(hi + 1), hi, (char)(hi + 1)));
    for (int c = 0; c < NC; c++) {
        const __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(y[c][i].qs + 128 * c2 + 32 * j)));
        s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(p, scs));
        GC_MM_CHAIN(s[c]);
    }
}

/* the K-quants with 16-element sub-blocks: q2_K (T = GC_Q2_K: 2 bits, scale and min nibbles), q3_K
 * (2 bits + hmask bit, u = q + 4, signed 6-bit scales) and q6_K (4 + 2 bits, u = q + 32, int8 scales):
 * sum_j sc_j (dot(u, y)_j - off bsum_j) - (q2_K) dmin/d sum_j m_j bsum_j */
GC_MM_INLINE void gc_k16_rowk(const int32_t T, const int NC, const char *row, int64_t nsb, const block_q8_K *const *y,
                              float *out) {
    const int64_t bsize = T == GC_Q2_K ? (int64_t)sizeof(block_q2_K) : T == GC_Q3_K ? (int64_t)sizeof(block_q3_K)
                                                                       : (int64_t)sizeof(block_q6_K);
    const int off_shift = T == GC_Q3_K ? 2 : 5;      /* offset 4 (q3_K) or 32 (q6_K) */
    __m256 acc[4];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *x = (const uint8_t *)row + i * bsize;
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)x + GC_MM_PF_Q8 + 64 * l, _MM_HINT_T0);
        __m128i s8;
        float d;
        __m256i s[4];
        if (T == GC_Q2_K) {
            s8 = _mm_and_si128(_mm_loadu_si128((const __m128i *)((const block_q2_K *)x)->scales), _mm_set1_epi8(0x0F));
            d = gc_fp16_to_fp32(((const block_q2_K *)x)->d);
        } else if (T == GC_Q3_K) {
            s8 = gc_mm_k3_scales(((const block_q3_K *)x)->scales);
            d = gc_fp16_to_fp32(((const block_q3_K *)x)->d);
        } else {
            s8 = _mm_loadu_si128((const __m128i *)((const block_q6_K *)x)->scales);
            d = gc_fp16_to_fp32(((const block_q6_K *)x)->d);
        }
        const __m256i s16 = _mm256_cvtepi8_epi16(s8);
        for (int c = 0; c < NC; c++)   /* -off sum_j sc_j bsum_j (q2_K: no offset) */
            s[c] = T == GC_Q2_K ? _mm256_setzero_si256() : _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(
                       _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[c][i].bsums), s16), off_shift));
        for (int c2 = 0; c2 < 2; c2++) {
            /* the 16 sign-extended scales' half c2 (sub-blocks 8 c2 .. 8 c2 + 7) in both 128-bit lanes */
            const __m256i sh = _mm256_permute2x128_si256(s16, s16, c2 ? 0x11 : 0x00);
            gc_k16_part(T, NC, x, c2, 0, sh, y, i, s);
            gc_k16_part(T, NC, x, c2, 1, sh, y, i, s);
            gc_k16_part(T, NC, x, c2, 2, sh, y, i, s);
            gc_k16_part(T, NC, x, c2, 3, sh, y, i, s);
        }
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]), _mm256_set1_ps(d * y[c][i].d), acc[c]);
        if (T == GC_Q2_K) {   /* the mins (high nibbles of the scales), read again: no register held for them */
            const block_q2_K *b2 = (const block_q2_K *)x;
            const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const __m128i *)b2->scales), 4),
                                                                   _mm_set1_epi8(0x0F)));
            const float dmin = gc_fp16_to_fp32(b2->dmin);
            for (int c = 0; c < NC; c++) {
                const __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[c][i].bsums), m16);
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(-dmin * y[c][i].d), acc[c]);
            }
        }
    }
    for (int c = 0; c < NC; c++) out[c] = gc_mm_hsum8(acc[c]);
}
#define gc_q2k_rowk(...) gc_k16_rowk(GC_Q2_K, __VA_ARGS__)
#define gc_q3k_rowk(...) gc_k16_rowk(GC_Q3_K, __VA_ARGS__)
#define gc_q6k_rowk(...) gc_k16_rowk(GC_Q6_K, __VA_ARGS__)
#define GC_MM_HAVE_Q23K 1
#endif

#if defined(GC_MM_AVX512) || defined(GC_MM_AVX2)
#define GC_QK_ROWFN(NAME, KFN, IX)                                                                    \
static inline void NAME(int nc, const char *row, int64_t nsb, const block_q8_K *const *y, float *out,  \
                        const gc_qk_idx *ix) {                                                        \
    (void)ix;                                                                                         \
    switch (nc) {                                                                                     \
    case 1: KFN(1, row, nsb, y, out IX(ix)); break;                                                   \
    case 2: KFN(2, row, nsb, y, out IX(ix)); break;                                                   \
    case 3: KFN(3, row, nsb, y, out IX(ix)); break;                                                   \
    default: KFN(4, row, nsb, y, out IX(ix)); break;                                                  \
    }                                                                                                 \
}
#define gc_q4k_rowk(...) gc_q45k_rowk(0, __VA_ARGS__)
#define gc_q5k_rowk(...) gc_q45k_rowk(1, __VA_ARGS__)
GC_QK_ROWFN(gc_mm_row_q4_K, gc_q4k_rowk, GC_QK_IX4)
GC_QK_ROWFN(gc_mm_row_q5_K, gc_q5k_rowk, GC_QK_IX4)
GC_QK_ROWFN(gc_mm_row_q6_K, gc_q6k_rowk, GC_QK_IX6)
#if defined(GC_MM_HAVE_Q23K)
GC_QK_ROWFN(gc_mm_row_q2_K, gc_q2k_rowk, GC_QK_IX6)
GC_QK_ROWFN(gc_mm_row_q3_K, gc_q3k_rowk, GC_QK_IX6)
#endif
#else
typedef int gc_qk_idx;
static inline void gc_qk_idx_make(gc_qk_idx *ix) { *ix = 0; }
#endif

static inline void gc_mm_row_qk(int32_t t, int nc, const char *row, int64_t nsb, const block_q8_K *const *y, float *out,
                                const gc_qk_idx *ix) {
#if defined(GC_MM_AVX512) || defined(GC_MM_AVX2)
    if (t == GC_Q4_K) { gc_mm_row_q4_K(nc, row, nsb, y, out, ix); return; }
    if (t == GC_Q5_K) { gc_mm_row_q5_K(nc, row, nsb, y, out, ix); return; }
    if (t == GC_Q6_K) { gc_mm_row_q6_K(nc, row, nsb, y, out, ix); return; }
#endif
#if defined(GC_MM_HAVE_Q23K)
    if (t == GC_Q2_K) { gc_mm_row_q2_K(nc, row, nsb, y, out, ix); return; }
    if (t == GC_Q3_K) { gc_mm_row_q3_K(nc, row, nsb, y, out, ix); return; }
#endif
    (void)ix;
    const int64_t bsize = gc_type_size(t);
    for (int c = 0; c < nc; c++) out[c] = gc_dot_k_scalar(t, row, bsize, y[c], 0, nsb);
}

#include "matmul_x8.h"

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

/* rows per work chunk: small enough that threads finish together (about 4 chunks per thread), large
 * enough that one chunk streams a long run of weight rows; a multiple of 8, so 8-row groups (GC_Q4_0X8)
 * stay whole and the 2-row GEMM kernel pairs rows alike in every chunk (which thread computes a row never
 * changes its result) */
static inline int64_t gc_mm_chunk_rows(int64_t nrows, int nth) {
    int64_t rc = nrows / (4 * (int64_t)nth);
    rc = rc < 16 ? 16 : rc > 1024 ? 1024 : rc;
    return (rc + 7) & ~(int64_t)7;
}

/* dst rows [r0, r1) of one tile (slice i2, i3; columns c0 .. c0 + nct, prepared in cols[]) */
GC_MM_INLINE void gc_mm_tile_rows(const gc_tensor *dst, const gc_tensor *a, int kind, int32_t t, int64_t K,
                                  const char *wbase, const char *const *cols, int nct, int64_t c0,
                                  int64_t i2, int64_t i3, int64_t r0, int64_t r1,
                                  const gc_q32_idx *ixp, const gc_qk_idx *kixp) {
    gc_q32_idx ix = *ixp;
    gc_qk_idx kix = *kixp;
    if (kind == GC_MM_FLOAT) {
        /* GEMV (1-2 columns): one whole row at a time, a single forward stream from DRAM; more columns:
         * 4 rows by K blocks, so the 4 rows stay in L1 while every column passes over them */
        const int gemv = nct <= 2;
        const int64_t kb = gemv ? (K > 0 ? K : 1) : GC_MM_KB;
        for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kb) {
            const int64_t k1 = K - k0 < kb ? K : k0 + kb;
            for (int64_t r = r0; r < r1;) {
                const int nr = r1 - r >= 4 && !gemv ? 4 : 1;
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
        return;
    }
    int64_t r = r0;
#if defined(GC_MM_HAVE_Q32_2X4)
    /* many columns (prefill): pairs of rows share the activation loads; few columns keep one
     * weight stream (interleaved rows read from DRAM far slower than one sequential row) */
    if (kind == GC_MM_Q32 && nct >= 8)
        for (; r + 2 <= r1; r += 2) {
            const char *row0 = wbase + r * a->nb[1], *row1 = row0 + a->nb[1];
            int c = 0;
            for (; c + 4 <= nct; c += 4) {
                float o0[4], o1[4];
                const gc_act4 *xc[4];
                for (int j = 0; j < 4; j++) xc[j] = (const gc_act4 *)cols[c + j];
                gc_q32_rows2x4(t, row0, row1, K / 32, xc, o0, o1, &ix);
                for (int j = 0; j < 4; j++) {
                    gc_mm_store(dst, r, c0 + c + j, i2, i3, o0[j], 0);
                    gc_mm_store(dst, r + 1, c0 + c + j, i2, i3, o1[j], 0);
                }
            }
            for (; c < nct; c++)
                for (int i = 0; i < 2; i++) {
                    float o;
                    const gc_act4 *xc[1] = {(const gc_act4 *)cols[c]};
                    gc_q32_rowk(t, 1, row0 + i * a->nb[1], K / 32, xc, &o, &ix);
                    gc_mm_store(dst, r + i, c0 + c, i2, i3, o, 0);
                }
        }
#endif
    for (; r < r1; r++) {
        const char *row = wbase + r * a->nb[1];
        for (int c = 0; c < nct; c += 4) {
            const int nc = nct - c < 4 ? nct - c : 4;
            float out[4];
            if (kind == GC_MM_QK) {
                const block_q8_K *yc[4];
                for (int j = 0; j < nc; j++) yc[j] = (const block_q8_K *)cols[c + j];
                gc_mm_row_qk(t, nc, row, K / 256, yc, out, &kix);
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
            /* the row kernels write out[0..nc); gcc cannot always prove that through the nc switch
             * (-Wmaybe-uninitialized at -O3 when gc_op_mul_mat is compiled out of line). Zeroing
             * out[] instead cost 5-10% of LLaMA-shaped decode on an AVX2 EPYC (gcc 12), so the
             * warning is silenced for this one statement. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
            for (int j = 0; j < nc; j++) gc_mm_store(dst, r, c0 + c + j, i2, i3, out[j], 0);
#pragma GCC diagnostic pop
        }
    }
}

/* Work is (tile, chunk of rows) pairs in order; thread ith takes pair ith first, then the next free one
 * from a shared counter (ggml's scheme: a thread the OS delays does not hold the others back at the
 * barrier). Without a counter (ctx->work NULL) thread ith takes every nth pair. A thread prepares a
 * tile's activation columns when it first meets the tile. */
static inline void gc_op_mul_mat(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                   int ith, int nth) {
    (void)params;
    const gc_tensor *a = src[0], *b = src[1];
    const int32_t t = gc_x8_base_type(a->type);  /* 8-row groups: activations as for the stored type */
    const int x8 = t != a->type;
    const int kind = gc_mm_kind(t);
    if (kind == GC_MM_NONE || a->ne[2] <= 0 || a->ne[3] <= 0) return;   /* gc_supports_mul_mat refuses these */
    const int64_t K = a->ne[0], N0 = dst->ne[0], N1 = dst->ne[1];
    const int64_t r2 = dst->ne[2] / a->ne[2], r3 = dst->ne[3] / a->ne[3];
    const int64_t rc = gc_mm_chunk_rows(N0, nth), n_rchunks = (N0 + rc - 1) / rc;
    const int64_t n_ctiles = (N1 + GC_MM_CT - 1) / GC_MM_CT;
    const int64_t n_work = n_rchunks * n_ctiles * dst->ne[2] * dst->ne[3];
    char *scr = (char *)(((uintptr_t)ctx->scratch[ith] + 63) & ~(uintptr_t)63);
    float *tmp = (float *)scr;
    char *act = scr + gc_mm_align((size_t)K * sizeof(float));
    const size_t abytes = gc_mm_act_bytes(t, K);
    gc_q32_idx ix;
    gc_qk_idx kix;
    memset(&ix, 0, sizeof ix);
    memset(&kix, 0, sizeof kix);
    if (kind == GC_MM_Q32) gc_q32_idx_make(t, &ix);
    if (kind == GC_MM_QK) gc_qk_idx_make(&kix);
    const int c_off = gc_q32_offset(t), c_q81 = t == GC_Q4_1 || t == GC_Q5_1;
    const int k_perm = (t == GC_Q4_K || t == GC_Q5_K) && !x8;     /* x8 kernels read element order */
    int *counter = ctx->work;

    const char *cols[GC_MM_CT];
    int64_t tile = -1, c0 = 0, i2 = 0, i3 = 0;
    int nct = 0;
    for (int64_t w = ith; w < n_work;
         w = counter ? nth + __atomic_fetch_add(&counter[0], 1, __ATOMIC_RELAXED) : w + nth) {
        const int64_t wt = w / n_rchunks, r0 = (w % n_rchunks) * rc, r1 = r0 + rc < N0 ? r0 + rc : N0;
        if (wt != tile) {              /* prepare the tile's activation columns once per thread */
            tile = wt;
            c0 = (wt % n_ctiles) * GC_MM_CT;
            i2 = (wt / n_ctiles) % dst->ne[2];
            i3 = wt / n_ctiles / dst->ne[2];
            nct = (int)(N1 - c0 < GC_MM_CT ? N1 - c0 : GC_MM_CT);
            for (int c = 0; c < nct; c++) {
                const float *x = gc_mm_col_f32(b, c0 + c, i2, i3, tmp);
                char *o = act + (size_t)c * abytes;
                cols[c] = o;
                if (kind == GC_MM_Q32) {
                    gc_quantize_act_q32(x, K, c_q81, c_off, (gc_act4 *)o);
                    if (x8) gc_act4_bsums((gc_act4 *)o, K / 32);
                }
                else if (kind == GC_MM_QK) gc_quantize_act_q8_K(x, K, k_perm, (block_q8_K *)o);
                else if (t == GC_F16) for (int64_t k = 0; k < K; k++) ((float *)o)[k] = gc_fp16_to_fp32(gc_fp32_to_fp16(x[k]));
                else if (t == GC_BF16) for (int64_t k = 0; k < K; k++) ((float *)o)[k] = gc_bf16_to_fp32(gc_fp32_to_bf16(x[k]));
                else if (x == tmp) memcpy(o, x, (size_t)K * sizeof(float));
                else cols[c] = (const char *)x;
            }
        }
        const char *wbase = a->data + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        if (x8) gc_x8_rows(dst, a, wbase, cols, nct, c0, i2, i3, r0, r1);
        else gc_mm_tile_rows(dst, a, kind, t, K, wbase, cols, nct, c0, i2, i3, r0, r1, &ix, &kix);
    }
    /* the last thread out resets the counter for the next mul_mat (a barrier follows every step) */
    if (counter && __atomic_add_fetch(&counter[1], 1, __ATOMIC_ACQ_REL) == nth) {
        __atomic_store_n(&counter[0], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&counter[1], 0, __ATOMIC_RELEASE);
    }
}

#endif
