/* q4_0, q4_K and q6_K weights re-laid out 8 rows at a time (types GC_Q4_0X8, GC_Q4_KX8, GC_Q6_KX8;
 * targets/c/repack.py writes them at load),
 * the layout ggml's CPU REPACK path uses for the same reason: a vector lane per weight row.
 *
 * Layout: rows 8g .. 8g+7 are one group, stored where those 8 rows were (8 x the q4_0 row bytes); block
 * b of the group is 144 bytes at b * 144: the 8 rows' f16 scales (16 bytes), then 4 chunks of 32 bytes,
 * chunk i holding for row r (bytes 4r .. 4r+3) the q4_0 quant bytes 4i .. 4i+3 of that row's block b.
 * A quant byte's low nibble is element k, its high nibble element k + 16 (q4_0's own packing).
 *
 * So a 32-byte load of chunk i, masked to low (high) nibbles, holds elements 4i..4i+3 (16+4i..) of all
 * 8 rows as unsigned bytes, and one broadcast of the activation's 4 matching bytes multiplies them all:
 * 8 byte products (VNNI: one dpbusd each) give the 8 rows' integer block dots in 8 int32 lanes, then ONE
 * int->float conversion and ONE fma per 8 rows and block (the row-at-a-time kernels need them per row).
 * The weights are read as a single forward stream, as the GEMV needs.
 * Numerics: the integer block dots are exact; per row the f32 terms (int * (d_w * d_x)) are summed over
 * blocks in block order, as gc_q32_rowk does on AVX2.
 * Registers: AVX-512 VNNI builds have 32 vector registers and unpack a whole block before the columns.
 * AVX2 builds have 16: their kernels take one unpacked vector at a time through every column of the call
 * (GC_X8_NC = 4), so only that vector, the columns' running sums and accumulators are live, and the sums
 * are chains (GC_MM_CHAIN) that gcc does not regroup; unpacking a block first spilled at 4 columns (q6_K
 * even at 1). q4_0's GEMV (1 column: no spill) keeps the whole-block form, which streamed faster. The
 * integer sums are exact in any order, so every form gives the same bits. */
#ifndef GC_MATMUL_X8_H
#define GC_MATMUL_X8_H

#include <stdint.h>
#include <string.h>
#include "graphc.h"
#include "dequant.h"
#include "quant.h"

#define GC_X8_BLOCK 144   /* bytes of one block of 8 rows */

#if defined(GC_MM_AVX512) || defined(GC_MM_AVX2)
#define GC_X8_NC 4        /* columns per call */

static inline __m256i gc_x8_bcast(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* the 8 rows' integer dot of block j of act group a with the unpacked chunks lo[4] / hi[4], plus bias */
GC_MM_INLINE __m256i gc_x8_idot(const __m256i *lo, const __m256i *hi, const gc_act4 *a, int j) {
    const int8_t *xl = a->qs + 16 * j, *xh = a->qs + 64 + 16 * j;
    const __m256i bias = _mm256_set1_epi32(a->bsum[j]);
#if defined(GC_MM_AVX512)
    __m256i p = _mm256_dpbusd_epi32(bias, lo[0], gc_x8_bcast(xl));
    p = _mm256_dpbusd_epi32(p, lo[1], gc_x8_bcast(xl + 4));
    p = _mm256_dpbusd_epi32(p, lo[2], gc_x8_bcast(xl + 8));
    p = _mm256_dpbusd_epi32(p, lo[3], gc_x8_bcast(xl + 12));
    p = _mm256_dpbusd_epi32(p, hi[0], gc_x8_bcast(xh));
    p = _mm256_dpbusd_epi32(p, hi[1], gc_x8_bcast(xh + 4));
    p = _mm256_dpbusd_epi32(p, hi[2], gc_x8_bcast(xh + 8));
    return _mm256_dpbusd_epi32(p, hi[3], gc_x8_bcast(xh + 12));
#else
    /* u8 (0..15) x s8 (-128..127) pairs: |a pair| <= 3840, so 8 of them still fit in int16 (30720) */
    __m256i s = _mm256_maddubs_epi16(lo[0], gc_x8_bcast(xl));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[1], gc_x8_bcast(xl + 4)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[2], gc_x8_bcast(xl + 8)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[3], gc_x8_bcast(xl + 12)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[0], gc_x8_bcast(xh)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[1], gc_x8_bcast(xh + 4)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[2], gc_x8_bcast(xh + 8)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[3], gc_x8_bcast(xh + 12)));
    return _mm256_add_epi32(_mm256_madd_epi16(s, _mm256_set1_epi16(1)), bias);
#endif
}

/* out[8 c + r] = dot(row 8g + r, column c) for the NC columns x[c], one group grp of nb blocks: each block
 * unpacked whole, then the columns (AVX-512's 32 registers hold that for 4 columns; AVX2 runs it for
 * the GEMV only, where it measured 5-10% faster than gc_x8_q4_0_kc below on this stream) */
GC_MM_INLINE void gc_x8_q4_0_kb(const int NC, const char *grp, int64_t nb, const gc_act4 *const *x, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[GC_X8_NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = grp + b * GC_X8_BLOCK;
        _mm_prefetch(blk + GC_MM_PF, _MM_HINT_T0);
        _mm_prefetch(blk + GC_MM_PF + 64, _MM_HINT_T0);
        _mm_prefetch(blk + GC_MM_PF + 128, _MM_HINT_T0);
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256i lo[4], hi[4];
        for (int i = 0; i < 4; i++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * i));
            lo[i] = _mm256_and_si256(q, m4);
            hi[i] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        const int j = (int)(b & 3);
        for (int c = 0; c < NC; c++) {
            const gc_act4 *a = x[c] + (b >> 2);
            const __m256i p = gc_x8_idot(lo, hi, a, j);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, _mm256_set1_ps(a->d[4 * j])), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

#if defined(GC_MM_AVX2) && !defined(__AVX512F__)
#define GC_X8_Q4_0_NARROW 1
/* AVX2 (16 ymm registers) with several columns, block j of activation group g: half a chunk at a time
 * (its low nibbles through every column, then its high nibbles), so one unpacked vector, the NC columns'
 * int16 sums and NC accumulators are live (2 NC + 5 registers), never the 8 unpacked vectors of a block
 * next to 4 columns' sums and accumulators (which spilled: gc_x8_q4_0_kb at NC = 4). The int16 sums are
 * exact in any order (|8 pairs| <= 30720), so the results are gc_x8_q4_0_kb's bit for bit. */
GC_MM_INLINE void gc_x8_q4_0_blk(const int NC, const char *blk, const gc_act4 *const *x, int64_t g, int j,
                                 __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i s[GC_X8_NC];
    for (int i = 0; i < 4; i++)
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * i));
            const __m256i w = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4);
            for (int c = 0; c < NC; c++) {
                const __m256i t = _mm256_maddubs_epi16(w, gc_x8_bcast(x[c][g].qs + 64 * h + 16 * j + 4 * i));
                s[c] = i || h ? _mm256_add_epi16(s[c], t) : t;
                GC_MM_CHAIN(s[c]);
            }
        }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
    for (int c = 0; c < NC; c++) {
        const gc_act4 *a = x[c] + g;
        const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(s[c], _mm256_set1_epi16(1)), _mm256_set1_epi32(a->bsum[j]));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, _mm256_set1_ps(a->d[4 * j])), acc[c]);
    }
}

/* whole activation groups of 4 blocks with constant j (no index arithmetic per block), then the tail;
 * the prefetches as gc_x8_q4_0_kb's (3 lines per block: 9 lines once per 4 blocks was slower) */
GC_MM_INLINE void gc_x8_q4_0_kc(const int NC, const char *grp, int64_t nb, const gc_act4 *const *x, float *out) {
    __m256 acc[GC_X8_NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const char *blk = grp + b * GC_X8_BLOCK;
        for (int j = 0; j < 4; j++) {
            _mm_prefetch(blk + j * GC_X8_BLOCK + GC_MM_PF, _MM_HINT_T0);
            _mm_prefetch(blk + j * GC_X8_BLOCK + GC_MM_PF + 64, _MM_HINT_T0);
            _mm_prefetch(blk + j * GC_X8_BLOCK + GC_MM_PF + 128, _MM_HINT_T0);
            gc_x8_q4_0_blk(NC, blk + j * GC_X8_BLOCK, x, b >> 2, j, acc);
        }
    }
    for (; b < nb; b++) gc_x8_q4_0_blk(NC, grp + b * GC_X8_BLOCK, x, b >> 2, (int)(b & 3), acc);
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}
#endif

/* the AVX2 kernels of an AVX-512 CPU without VNNI (-march=skylake-avx512) have 32 registers: there
 * gc_x8_q4_0_kb does not spill and measured 7% faster than gc_x8_q4_0_kc at 8 and 32 columns */
GC_MM_INLINE void gc_x8_q4_0_k(const int NC, const char *grp, int64_t nb, const gc_act4 *const *x, float *out) {
#if defined(GC_X8_Q4_0_NARROW)
    if (NC > 1) {
        gc_x8_q4_0_kc(NC, grp, nb, x, out);
        return;
    }
#endif
    gc_x8_q4_0_kb(NC, grp, nb, x, out);
}

#else
#define GC_X8_NC 1

GC_MM_INLINE void gc_x8_q4_0_k(const int NC, const char *grp, int64_t nb, const gc_act4 *const *x, float *out) {
    for (int c = 0; c < NC; c++)
        for (int r = 0; r < 8; r++) {
            float sum = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)grp + b * GC_X8_BLOCK;
                const gc_act4 *a = x[c] + b / 4;
                const int j = (int)(b % 4);
                gc_half h;
                memcpy(&h, blk + 2 * r, 2);
                int isum = a->bsum[j];
                for (int i = 0; i < 4; i++)
                    for (int k = 0; k < 4; k++) {
                        const uint8_t q = blk[16 + 32 * i + 4 * r + k];
                        isum += (q & 15) * a->qs[16 * j + 4 * i + k] + (q >> 4) * a->qs[64 + 16 * j + 4 * i + k];
                    }
                sum += (float)isum * (gc_fp16_to_fp32(h) * a->d[4 * j]);
            }
            out[8 * c + r] = sum;
        }
}
#endif

/* ------------------------------------------------------------------------------------------------
 * q4_K in 8-row groups (GC_Q4_KX8). Super-block s of a group is 1184 bytes at s * 1184: the 8 rows'
 * f16 d (16 bytes) and dmin (16), the 6-bit sub-block scales unpacked to bytes sc[sb][r] (64), the mins
 * as byte pairs mn[p][r][2] = (min of sub-block 2p, of 2p+1) of row r (64), then 32 chunks of 32 bytes:
 * chunk 8c + i holds for row r (bytes 4r..4r+3) the quant bytes 32c + 4i .. +3 of that row's super-block
 * (low nibbles: elements 64c + 4i.., sub-block 2c; high nibbles: 64c + 32 + 4i.., sub-block 2c + 1).
 * The activations are q8_K in element order. Per row: d dx sum_sb sc[sb] dot_sb - dmin dx sum_sb mn[sb]
 * (sum of the sub-block's activations), in integers up to the two products (ggml's order of terms).
 * Unpacked scales make a group 1184 bytes instead of 1152 (2.8% more to read); they save the 6-bit
 * unpacking per row and super-block, which is what limited the row-at-a-time kernel.
 * ------------------------------------------------------------------------------------------------ */
#define GC_X8K_BLOCK 1184

#if defined(GC_MM_AVX512)
GC_MM_INLINE void gc_x8_q4_K_k(const int NC, const char *grp, int64_t nsb, const block_q8_K *const *y, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[GC_X8_NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk = (const uint8_t *)grp + s * GC_X8K_BLOCK;
        const uint8_t *qs = blk + 160;
        __m256i isum[GC_X8_NC], imin[GC_X8_NC];
        for (int c = 0; c < NC; c++) {
            const block_q8_K *a = y[c] + s;
            /* sub-block sums of the activations as int16 pairs (2p, 2p+1) for the mins */
            const __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            const __m128i s8 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            int32_t pr[4];
            _mm_storeu_si128((__m128i *)pr, s8);
            __m256i mn = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 96))),
                                           _mm256_set1_epi32(pr[0]));
            for (int p = 1; p < 4; p++)
                mn = _mm256_add_epi32(mn, _mm256_madd_epi16(
                    _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 96 + 16 * p))), _mm256_set1_epi32(pr[p])));
            imin[c] = mn;
            isum[c] = _mm256_setzero_si256();
        }
        for (int ch = 0; ch < 4; ch++) {
            _mm_prefetch((const char *)qs + 256 * ch + GC_MM_PF, _MM_HINT_T0);
            _mm_prefetch((const char *)qs + 256 * ch + GC_MM_PF + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)qs + 256 * ch + GC_MM_PF + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)qs + 256 * ch + GC_MM_PF + 192, _MM_HINT_T0);
            for (int h = 0; h < 2; h++) {                 /* sub-block 2 ch + h */
                const int sb = 2 * ch + h;
                __m256i w[8];
                for (int i = 0; i < 8; i++) {
                    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 256 * ch + 32 * i));
                    w[i] = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4);
                }
                const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 32 + 8 * sb)));
                for (int c = 0; c < NC; c++) {
                    const int8_t *x = y[c][s].qs + 32 * sb;
                    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w[0], gc_x8_bcast(x));
                    for (int i = 1; i < 8; i++) p = _mm256_dpbusd_epi32(p, w[i], gc_x8_bcast(x + 4 * i));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(p, sc));
                }
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
        for (int c = 0; c < NC; c++) {
            const __m256 dx = _mm256_set1_ps(y[c][s].d);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(d, dx), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin[c]), _mm256_mul_ps(dmin, dx), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

#elif defined(GC_MM_AVX2)
/* 16 x int16 (row r: lanes 2r, 2r+1) = the 8 bytes v[r] each twice */
static inline __m256i gc_x8_dup16(const uint8_t *v) {
    const __m128i b = _mm_loadl_epi64((const __m128i *)v);
    return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b));
}

/* sub-block 2 ch + h (h constant: low or high nibbles) of super-block s into the NC columns' isum */
GC_MM_INLINE void gc_x8_q4_K_sb(const int NC, const int h, const uint8_t *blk, int ch, const block_q8_K *const *y,
                                int64_t s, __m256i *isum) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = blk + 160 + 256 * ch;
    const int sb = 2 * ch + h;
    __m256i p[GC_X8_NC];
    for (int i = 0; i < 8; i++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * i));
        const __m256i w = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4);
        for (int c = 0; c < NC; c++) {
            const __m256i t = _mm256_maddubs_epi16(w, gc_x8_bcast(y[c][s].qs + 32 * sb + 4 * i));
            p[c] = i ? _mm256_add_epi16(p[c], t) : t;   /* |8 pairs| <= 30720 */
            GC_MM_CHAIN(p[c]);
        }
    }
    const __m256i sc = gc_x8_dup16(blk + 32 + 8 * sb);
    for (int c = 0; c < NC; c++) {
        isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p[c], sc));
        GC_MM_CHAIN(isum[c]);
    }
}

/* AVX2 (16 ymm registers): sub-block by sub-block, one 4-element vector at a time: one unpacked vector,
 * the NC columns' int16 sums and int32 super-block sums are live (never 8 unpacked vectors next to them:
 * spilled at NC = 4); the mins' products come after the sub-blocks, when those registers are free. */
GC_MM_INLINE void gc_x8_q4_K_k(const int NC, const char *grp, int64_t nsb, const block_q8_K *const *y, float *out) {
    __m256 acc[GC_X8_NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk = (const uint8_t *)grp + s * GC_X8K_BLOCK;
        __m256i isum[GC_X8_NC];
        for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)blk + 160 + 256 * ch + GC_MM_PF + 64 * l, _MM_HINT_T0);
            gc_x8_q4_K_sb(NC, 0, blk, ch, y, s, isum);
            gc_x8_q4_K_sb(NC, 1, blk, ch, y, s, isum);
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
        for (int c = 0; c < NC; c++) {
            const block_q8_K *a = y[c] + s;
            /* sub-block sums of the activations as int16 pairs (2p, 2p+1) for the mins */
            const __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            const __m128i s8 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            int32_t pr[4];
            _mm_storeu_si128((__m128i *)pr, s8);
            __m256i mn = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 96))),
                                           _mm256_set1_epi32(pr[0]));
            for (int pp = 1; pp < 4; pp++)
                mn = _mm256_add_epi32(mn, _mm256_madd_epi16(
                    _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 96 + 16 * pp))), _mm256_set1_epi32(pr[pp])));
            const __m256 dx = _mm256_set1_ps(a->d);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(d, dx), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mn), _mm256_mul_ps(dmin, dx), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

#else
GC_MM_INLINE void gc_x8_q4_K_k(const int NC, const char *grp, int64_t nsb, const block_q8_K *const *y, float *out) {
    for (int c = 0; c < NC; c++)
        for (int r = 0; r < 8; r++) {
            float sum = 0.0f;
            for (int64_t s = 0; s < nsb; s++) {
                const uint8_t *blk = (const uint8_t *)grp + s * GC_X8K_BLOCK;
                const block_q8_K *a = y[c] + s;
                gc_half hd, hm;
                memcpy(&hd, blk + 2 * r, 2);
                memcpy(&hm, blk + 16 + 2 * r, 2);
                int isum = 0, imin = 0;
                for (int sb = 0; sb < 8; sb++) {
                    int dot = 0;
                    for (int i = 0; i < 8; i++)
                        for (int k = 0; k < 4; k++) {
                            const uint8_t q = blk[160 + 256 * (sb / 2) + 32 * i + 4 * r + k];
                            dot += ((sb & 1) ? q >> 4 : q & 15) * a->qs[32 * sb + 4 * i + k];
                        }
                    isum += blk[32 + 8 * sb + r] * dot;
                    imin += blk[96 + 16 * (sb / 2) + 2 * r + (sb & 1)] *
                            (a->bsums[2 * sb] + a->bsums[2 * sb + 1]);
                }
                sum += (float)isum * (gc_fp16_to_fp32(hd) * a->d) - (float)imin * (gc_fp16_to_fp32(hm) * a->d);
            }
            out[8 * c + r] = sum;
        }
}
#endif

/* ------------------------------------------------------------------------------------------------
 * q6_K in 8-row groups (GC_Q6_KX8), 1680 bytes per super-block (8 x 210, as stored): the 8 rows' f16 d
 * (16 bytes), the int8 sub-block scales sc[sb][r] (128), then for each 64-element chunk c (384 bytes at
 * 144 + 384 c) and i < 4, 96 bytes at 96 i: low parts A, low parts B, high parts H (32 bytes each; row r
 * at bytes 4r..4r+3, byte b) of the 6-bit values u = q + 32:
 *   A: low nibble = bits 0-3 of element 64c + 4i + b, high nibble = of element 64c + 32 + 4i + b;
 *   B: the same for elements 64c + 16 + 4i + b and 64c + 48 + 4i + b;
 *   H: bits 4-5 of those four elements: bits 0-1 = 64c + 4i + b, 2-3 = 64c + 32 + .., 4-5 = 64c + 16 + ..,
 *      6-7 = 64c + 48 + ...
 * Each 32-byte vector of u then holds 4 elements of one 16-element sub-block for all 8 rows, and the
 * kernel reads the bytes in address order (a forward stream: the GEMV is a DRAM stream). Per row: d dx sum_sb sc[sb] (dot_sb(u, x) -
 * 32 bsum_sb) with the integer parts exact.
 * ------------------------------------------------------------------------------------------------ */
#define GC_X8K6_BLOCK 1680

#if defined(GC_MM_AVX512)
GC_MM_INLINE void gc_x8_q6_K_k(const int NC, const char *grp, int64_t nsb, const block_q8_K *const *y, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[GC_X8_NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk = (const uint8_t *)grp + s * GC_X8K6_BLOCK;
        const uint8_t *qv = blk + 144;
        __m256i isum[GC_X8_NC];
        for (int c = 0; c < NC; c++) {
            /* the -32 offset: 32 sum_sb sc[sb] bsum_sb, from int16 pairs (sb 2p, 2p+1) */
            const int16_t *bs = y[c][s].bsums;
            __m256i off = _mm256_setzero_si256();
            for (int p = 0; p < 8; p++) {
                const __m128i s0 = _mm_loadl_epi64((const __m128i *)(blk + 16 + 16 * p));
                const __m128i s1 = _mm_loadl_epi64((const __m128i *)(blk + 24 + 16 * p));
                int32_t pair;
                memcpy(&pair, bs + 2 * p, 4);
                off = _mm256_add_epi32(off, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(s0, s1)),
                                                              _mm256_set1_epi32(pair)));
            }
            isum[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
        }
        for (int ch = 0; ch < 4; ch++) {
            for (int l = 0; l < 6; l++) _mm_prefetch((const char *)qv + 384 * ch + 64 * l + GC_MM_PF, _MM_HINT_T0);
            /* u[q][i]: sub-block 4 ch + q, elements 4i..4i+3 of it */
            __m256i u[4][4];
            for (int i = 0; i < 4; i++) {
                const uint8_t *v = qv + 384 * ch + 96 * i;
                const __m256i la = _mm256_loadu_si256((const __m256i *)v);
                const __m256i lb = _mm256_loadu_si256((const __m256i *)(v + 32));
                const __m256i h = _mm256_loadu_si256((const __m256i *)(v + 64));
                u[0][i] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
                u[2][i] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                                          _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
                u[1][i] = _mm256_or_si256(_mm256_and_si256(lb, m4), _mm256_and_si256(h, m30));
                u[3][i] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                          _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
            }
            for (int q = 0; q < 4; q++) {
                const int sb = 4 * ch + q;
                const __m128i sc8 = _mm_loadl_epi64((const __m128i *)(blk + 16 + 8 * sb));
                const __m256i sc = _mm256_cvtepi8_epi32(sc8);
                for (int c = 0; c < NC; c++) {
                    const int8_t *x = y[c][s].qs + 16 * sb;
                    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u[q][0], gc_x8_bcast(x));
                    p = _mm256_dpbusd_epi32(p, u[q][1], gc_x8_bcast(x + 4));
                    p = _mm256_dpbusd_epi32(p, u[q][2], gc_x8_bcast(x + 8));
                    p = _mm256_dpbusd_epi32(p, u[q][3], gc_x8_bcast(x + 12));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(p, sc));
                }
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(d, _mm256_set1_ps(y[c][s].d)), acc[c]);
    }
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

#elif defined(GC_MM_AVX2)
/* the 32-byte vector of u = q + 32 of sub-block q (of 4) of a chunk, for elements 4i..4i+3 of it (v: the
 * chunk's 96 bytes at i): low nibbles from A (q 0, 2) or B (q 1, 3), bits 4-5 from H */
GC_MM_INLINE __m256i gc_x8_q6_u(const uint8_t *v, const int q, __m256i m4, __m256i m30) {
    const __m256i l = _mm256_loadu_si256((const __m256i *)(v + 32 * (q & 1)));
    const __m256i h = _mm256_loadu_si256((const __m256i *)(v + 64));
    const __m256i lo = _mm256_and_si256(q & 2 ? _mm256_srli_epi16(l, 4) : l, m4);
    const __m256i hi = q == 0 ? _mm256_slli_epi16(h, 4) : q == 1 ? h : q == 2 ? _mm256_slli_epi16(h, 2)
                                                                      : _mm256_srli_epi16(h, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
}

/* sub-block q (constant: the unpacking differs) of chunk ch of super-block s into the NC columns' isum */
GC_MM_INLINE void gc_x8_q6_K_sb(const int NC, const int q, const uint8_t *blk, int ch, const block_q8_K *const *y,
                                int64_t s, __m256i *isum) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const uint8_t *v = blk + 144 + 384 * ch;
    const int sb = 4 * ch + q;
    const __m128i sc8 = _mm_loadl_epi64((const __m128i *)(blk + 16 + 8 * sb));
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sc8, sc8));
    for (int i = 0; i < 4; i += 2) {
        const __m256i u0 = gc_x8_q6_u(v + 96 * i, q, m4, m30), u1 = gc_x8_q6_u(v + 96 * (i + 1), q, m4, m30);
        for (int c = 0; c < NC; c++) {
            const int8_t *x = y[c][s].qs + 16 * sb + 4 * i;
            /* u8 (0..63) x s8 pairs: |a pair| <= 16002, so two of them fit in int16 */
            const __m256i t = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(u0, gc_x8_bcast(x)),
                                                                 _mm256_maddubs_epi16(u1, gc_x8_bcast(x + 4))), sc);
            isum[c] = _mm256_add_epi32(isum[c], t);
            GC_MM_CHAIN(isum[c]);
        }
    }
}

/* AVX2 (16 ymm registers): sub-block by sub-block, two 4-element vectors at a time, so only two unpacked
 * vectors and the NC columns' int32 sums are live (not the 16 vectors of a 64-element chunk, which
 * spilled even at NC = 1); the -32 offset's products come last, when those registers are free. */
GC_MM_INLINE void gc_x8_q6_K_k(const int NC, const char *grp, int64_t nsb, const block_q8_K *const *y, float *out) {
    __m256 acc[GC_X8_NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *blk = (const uint8_t *)grp + s * GC_X8K6_BLOCK;
        __m256i isum[GC_X8_NC];
        for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            for (int l = 0; l < 6; l++) _mm_prefetch((const char *)blk + 144 + 384 * ch + 64 * l + GC_MM_PF, _MM_HINT_T0);
            gc_x8_q6_K_sb(NC, 0, blk, ch, y, s, isum);
            gc_x8_q6_K_sb(NC, 1, blk, ch, y, s, isum);
            gc_x8_q6_K_sb(NC, 2, blk, ch, y, s, isum);
            gc_x8_q6_K_sb(NC, 3, blk, ch, y, s, isum);
        }
        /* the -32 offset: 32 sum_sb sc[sb] bsum_sb, from int16 pairs (sb 2p, 2p+1) of 32 sc (|32 sc| <= 4096
         * fits int16; each product |<= 4096 * 2048|, so exact in int32) */
        for (int p = 0; p < 8; p++) {
            const __m128i s0 = _mm_loadl_epi64((const __m128i *)(blk + 16 + 16 * p));
            const __m128i s1 = _mm_loadl_epi64((const __m128i *)(blk + 24 + 16 * p));
            const __m256i sc32 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(s0, s1)), 5);
            for (int c = 0; c < NC; c++) {
                int32_t pair;
                memcpy(&pair, y[c][s].bsums + 2 * p, 4);
                isum[c] = _mm256_sub_epi32(isum[c], _mm256_madd_epi16(sc32, _mm256_set1_epi32(pair)));
                GC_MM_CHAIN(isum[c]);
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(d, _mm256_set1_ps(y[c][s].d)), acc[c]);
    }
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

#else
GC_MM_INLINE void gc_x8_q6_K_k(const int NC, const char *grp, int64_t nsb, const block_q8_K *const *y, float *out) {
    static const int hshift[4] = {0, 4, 2, 6};      /* high-part bits of sub-block q (of 4) in a chunk */
    for (int c = 0; c < NC; c++)
        for (int r = 0; r < 8; r++) {
            float sum = 0.0f;
            for (int64_t s = 0; s < nsb; s++) {
                const uint8_t *blk = (const uint8_t *)grp + s * GC_X8K6_BLOCK;
                const block_q8_K *a = y[c] + s;
                gc_half hd;
                memcpy(&hd, blk + 2 * r, 2);
                int isum = 0;
                for (int sb = 0; sb < 16; sb++) {
                    const int ch = sb / 4, q = sb % 4;
                    int dot = 0;
                    for (int i = 0; i < 4; i++)
                        for (int b = 0; b < 4; b++) {
                            const uint8_t l = blk[144 + 384 * ch + 96 * i + 32 * (q & 1) + 4 * r + b];
                            const uint8_t h = blk[144 + 384 * ch + 96 * i + 64 + 4 * r + b];
                            const int u = ((q & 2) ? l >> 4 : l & 15) | (((h >> hshift[q]) & 3) << 4);
                            dot += (u - 32) * a->qs[16 * sb + 4 * i + b];
                        }
                    isum += (int8_t)blk[16 + 8 * sb + r] * dot;
                }
                sum += (float)isum * (gc_fp16_to_fp32(hd) * a->d);
            }
            out[8 * c + r] = sum;
        }
}
#endif

/* rows [r0, r1) (multiples of 8) of dst for the nct prepared columns cols[] of one tile */
static inline void gc_x8_rows(const gc_tensor *dst, const gc_tensor *a, const char *wbase, const char *const *cols,
                              int nct, int64_t c0, int64_t i2, int64_t i3, int64_t r0, int64_t r1) {
    const int64_t nb = a->ne[0] / 32;
    const int kq = a->type == GC_Q4_KX8 || a->type == GC_Q6_KX8;
    const int64_t group_bytes = kq ? nb / 8 * (a->type == GC_Q4_KX8 ? GC_X8K_BLOCK : GC_X8K6_BLOCK) : 8 * a->nb[1];
    for (int64_t r = r0; r < r1; r += 8) {
        const char *grp = wbase + r / 8 * group_bytes;
        for (int c = 0; c < nct; c += GC_X8_NC) {
            const int nc = nct - c < GC_X8_NC ? nct - c : GC_X8_NC;
            float out[8 * GC_X8_NC];
            const gc_act4 *xc[GC_X8_NC];
            for (int j = 0; j < nc; j++) xc[j] = (const gc_act4 *)cols[c + j];
            const block_q8_K *yc[GC_X8_NC];
            for (int j = 0; j < nc; j++) yc[j] = (const block_q8_K *)cols[c + j];
            if (a->type == GC_Q6_KX8) switch (nc) {
            case 1: gc_x8_q6_K_k(1, grp, nb / 8, yc, out); break;
#if GC_X8_NC >= 4
            case 2: gc_x8_q6_K_k(2, grp, nb / 8, yc, out); break;
            case 3: gc_x8_q6_K_k(3, grp, nb / 8, yc, out); break;
            default: gc_x8_q6_K_k(4, grp, nb / 8, yc, out); break;
#endif
            } else if (kq) switch (nc) {   /* constant column counts: the accumulators stay in registers */
            case 1: gc_x8_q4_K_k(1, grp, nb / 8, yc, out); break;
#if GC_X8_NC >= 4
            case 2: gc_x8_q4_K_k(2, grp, nb / 8, yc, out); break;
            case 3: gc_x8_q4_K_k(3, grp, nb / 8, yc, out); break;
            default: gc_x8_q4_K_k(4, grp, nb / 8, yc, out); break;
#endif
            } else switch (nc) {
            case 1: gc_x8_q4_0_k(1, grp, nb, xc, out); break;
#if GC_X8_NC >= 4
            case 2: gc_x8_q4_0_k(2, grp, nb, xc, out); break;
            case 3: gc_x8_q4_0_k(3, grp, nb, xc, out); break;
            default: gc_x8_q4_0_k(4, grp, nb, xc, out); break;
#endif
            }
            for (int j = 0; j < nc; j++) {
                float *o = (float *)GC_AT(dst, r, c0 + c + j, i2, i3);
                if (dst->nb[0] == 4) memcpy(o, out + 8 * j, 8 * sizeof(float));
                else for (int i = 0; i < 8; i++) *(float *)((char *)o + i * dst->nb[0]) = out[8 * j + i];
            }
        }
    }
}

#endif
