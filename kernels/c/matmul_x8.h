/* q4_0 weights re-laid out 8 rows at a time (type GC_Q4_0X8; targets/c/repack.py writes it at load),
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
 * blocks in block order, as gc_q32_rowk does on AVX2. */
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

/* out[8 c + r] = dot(row 8g + r, column c) for the NC columns x[c], one group grp of nb blocks */
GC_MM_INLINE void gc_x8_q4_0_k(const int NC, const char *grp, int64_t nb, const gc_act4 *const *x, float *out) {
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

/* rows [r0, r1) (multiples of 8) of dst for the nct prepared columns cols[] of one tile */
static inline void gc_x8_rows(const gc_tensor *dst, const gc_tensor *a, const char *wbase, const char *const *cols,
                              int nct, int64_t c0, int64_t i2, int64_t i3, int64_t r0, int64_t r1) {
    const int64_t nb = a->ne[0] / 32;
    for (int64_t r = r0; r < r1; r += 8) {
        const char *grp = wbase + r * a->nb[1];
        for (int c = 0; c < nct; c += GC_X8_NC) {
            const int nc = nct - c < GC_X8_NC ? nct - c : GC_X8_NC;
            float out[8 * GC_X8_NC];
            const gc_act4 *xc[GC_X8_NC];
            for (int j = 0; j < nc; j++) xc[j] = (const gc_act4 *)cols[c + j];
            switch (nc) {              /* constant column counts: the accumulators stay in registers */
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
