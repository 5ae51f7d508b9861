/* mul_mat: dst[i0, i1, i2, i3] = sum_k src0[k, i0, i2/r2, i3/r3] * src1[k, i1, i2, i3] (ggml_mul_mat; src0
 * broadcast over dims 2, 3), with ggml's CPU numerics (graphc.quants.mul_mat_quant, kernels/c/matmul.h):
 *   1. gc_mm_prepare: every src1 column (i1, i2, i3) into scratch, once: quantized weights see it quantized
 *      to q8_0 / q8_1 (ggml's x86 flavour: d = amax/127, id = 127/amax, rint) or q8_K; f16 / bf16 weights
 *      see it rounded to f16 / bf16; f32 weights as is;
 *   2. gc_mm_q32 / gc_mm_qk / gc_mm_f: a work-group computes a tile of NR weight rows x NC columns; its
 *      work-items stride over the blocks of K, take exact integer block dot products (signed weight
 *      values times the 8-bit activations), scale them in f32 as ggml's generic vec_dot does, and the
 *      partial sums meet in local memory. NC = 1 is the GEMV form (decode); wider tiles reuse every
 *      unpacked weight block across NC columns (prefill).
 * Prepared column layouts: q8_0/q8_1 blocks of 40 bytes {float d (f16-rounded); float s (q8_1, f16-rounded);
 * char q[32]}; q8_K blocks of 292 bytes {float d; short bsums[16]; char q[256]}; float columns K floats. */

#define GC_MM_NR 4          /* weight rows per work-group, at most */
#define GC_MM_NC 8          /* columns per work-group, at most */
#define GC_MM_L 64          /* work-items per work-group, at most (the local buffer's size) */

/* ---- 1. src1 columns -> scratch ---------------------------------------------------------------------- */
/* kind: 0 q8_0, 1 q8_1, 2 q8_K, 3 f32, 4 f16-rounded, 5 bf16-rounded; one work-group per column */
__kernel void gc_mm_prepare(__global char *bb, const gc_t b, __global char *sb, const ulong soff, const int kind,
                            const long col_bytes) {
    const long col = get_group_id(0);
    const long i1 = col % b.ne[1], i2 = (col / b.ne[1]) % b.ne[2], i3 = col / (b.ne[1] * b.ne[2]);
    const __global char *x = GC_ROW(bb, b, i1, i2, i3);
    __global char *o = sb + soff + col * col_bytes;
    const long K = b.ne[0];
    const int l = get_local_id(0), L = get_local_size(0);
    if (kind >= 3) {
        for (long k = l; k < K; k += L) {
            const float v = gc_get_f32(b.type, x + k * b.nb[0]);
            ((__global float *)o)[k] = kind == 3 ? v : kind == 4 ? gc_f16_round(v) : as_float((uint)gc_f32_to_bf16(v) << 16);
        }
        return;
    }
    if (kind < 2) {
        for (long blk = l; blk < K / 32; blk += L) {
            float amax = 0.0f;
            for (int k = 0; k < 32; k++) {
                const float a = fabs(gc_get_f32(b.type, x + (32 * blk + k) * b.nb[0]));
                amax = a > amax ? a : amax;
            }
            const float d = amax / 127.0f;
            const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
            __global char *ob = o + blk * 40;
            int sum = 0;
            for (int k = 0; k < 32; k++) {
                const float v = rint(gc_get_f32(b.type, x + (32 * blk + k) * b.nb[0]) * id);
                const int q = isnan(v) ? 0 : (v > 127.0f ? 127 : (v < -128.0f ? -128 : (int)v));
                sum += q;
                ob[8 + k] = (char)q;
            }
            ((__global float *)ob)[0] = gc_f16_round(d);
            ((__global float *)ob)[1] = kind == 1 ? gc_f16_round((float)sum * d) : 0.0f;
        }
        return;
    }
    for (long blk = l; blk < K / 256; blk += L) {
        const __global char *xb = x + 256 * blk * b.nb[0];
        __global char *ob = o + blk * 292;
        float amax = 0.0f, mx = 0.0f;
        for (int k = 0; k < 256; k++) {
            const float v = gc_get_f32(b.type, xb + k * b.nb[0]);
            if (amax < fabs(v)) { amax = fabs(v); mx = v; }
        }
        if (amax == 0.0f) {
            for (int k = 0; k < 292; k++) ob[k] = 0;
            continue;
        }
        const float iscale = -127.0f / mx;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int k = 16 * j; k < 16 * j + 16; k++) {
                const float v = rint(iscale * gc_get_f32(b.type, xb + k * b.nb[0]));
                const int q = isnan(v) ? 0 : (v > 127.0f ? 127 : (int)v);
                ob[36 + k] = (char)q;
                s += q;
            }
            ((__global short *)(ob + 4))[j] = (short)s;
        }
        ((__global float *)ob)[0] = 1.0f / iscale;
    }
}

/* ---- the tile: which rows and columns a work-group computes, and the local reduction ---------------- */
/* Kernels are specialised by macro for each weight type and tile width (NC = 1: the GEMV form; GC_MM_NC:
 * GEMM), so the type's switch folds away and acc[][] stays in registers. A tile that runs past the last
 * row or column reads the last one again (clamped) and does not store it. */
typedef struct { long r0, nr, c0, nc, i2, i3, w2, w3; } gc_mm_tile;

inline gc_mm_tile gc_mm_tile_of(const gc_t d, const gc_t w, int NC) {
    gc_mm_tile t;
    t.r0 = get_group_id(0) * GC_MM_NR;
    t.nr = min((long)GC_MM_NR, d.ne[0] - t.r0);
    t.c0 = get_group_id(1) * NC;
    t.nc = min((long)NC, d.ne[1] - t.c0);
    const long z = get_group_id(2);
    t.i2 = z % d.ne[2];
    t.i3 = z / d.ne[2];
    t.w2 = t.i2 / (d.ne[2] / w.ne[2]);
    t.w3 = t.i3 / (d.ne[3] / w.ne[3]);
    return t;
}

/* sum every work-item's acc[r][c] and store the tile into dst (f32) */
inline void gc_mm_finish(float acc[GC_MM_NR][GC_MM_NC], __local float *red, __global char *db, const gc_t d,
                         const gc_mm_tile t, const int NC) {
    const int l = get_local_id(0), L = get_local_size(0);
    for (int r = 0; r < GC_MM_NR; r++)
        for (int c = 0; c < NC; c++) red[(r * NC + c) * L + l] = acc[r][c];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int o = l; o < t.nr * NC; o += L) {
        const int r = o / NC, c = o % NC;
        if (c >= t.nc) continue;
        const __local float *v = red + o * L;
        float s = 0.0f;
        for (int k = 0; k < L; k++) s += v[k];
        *(__global float *)GC_AT(db, d, t.r0 + r, t.c0 + c, t.i2, t.i3) = s;
    }
}

inline long gc_mm_col(const gc_t d, long c, long i2, long i3) { return c + d.ne[1] * (i2 + d.ne[2] * i3); }

/* the rows of weight row r of the tile (clamped) and the prepared column c (clamped) */
#define GC_MM_WROW(r) ((const __global uchar *)GC_ROW(wb, w, t.r0 + ((r) < t.nr ? (r) : t.nr - 1), t.w2, t.w3))
#define GC_MM_ACT(c) (act + ((c) < t.nc ? (c) : t.nc - 1) * col_bytes)

#define GC_MM_ARGS __global char *db, const gc_t d, __global char *wb, const gc_t w, __global char *sb, \
                   const ulong soff, const long col_bytes
#define GC_MM_PASS db, d, wb, w, sb, soff, col_bytes

/* ---- 2a. 32-element block types: q4_0 q4_1 q5_0 q5_1 q8_0 ------------------------------------------ */
/* 16 bytes at any address. vload16 is the portable form; where the compiler is clang (PoCL, Rusticl, ROCm),
 * a vector typedef with alignment 1 gives the same unaligned load inline (PoCL calls vload16 out of line). */
#if defined(__clang__)
typedef uchar16 __attribute__((aligned(1))) gc_uchar16_u;
typedef char16 __attribute__((aligned(1))) gc_char16_u;
#define GC_LDU16(p) (*(const __global gc_uchar16_u *)(p))
#define GC_LDC16(p) (*(const __global gc_char16_u *)(p))
#else
#define GC_LDU16(p) vload16(0, (const __global uchar *)(p))
#define GC_LDC16(p) vload16(0, (const __global char *)(p))
#endif

/* block b's signed weight values (q - 8 for q4_0 and so on) as two char16 halves (elements 0..15, 16..31),
 * its scale d and min m (0 if none) */
inline void gc_q32_block(const long type, const __global uchar *blk, char16 *lo, char16 *hi, float *d, float *m) {
    *d = gc_hf(blk);
    *m = 0.0f;
    switch (type) {
    case GC_Q4_0: {
        const uchar16 q = GC_LDU16(blk + 2);
        *lo = as_char16(q & (uchar)0xF) - (char)8;
        *hi = as_char16(q >> (uchar)4) - (char)8;
        break;
    }
    case GC_Q4_1: {
        *m = gc_hf(blk + 2);
        const uchar16 q = GC_LDU16(blk + 4);
        *lo = as_char16(q & (uchar)0xF);
        *hi = as_char16(q >> (uchar)4);
        break;
    }
    case GC_Q5_0: case GC_Q5_1: {
        const int o = type == GC_Q5_0 ? 2 : 4;
        const char c = type == GC_Q5_0 ? 16 : 0;
        if (type == GC_Q5_1) *m = gc_hf(blk + 2);
        /* the fifth bits: bit k of qh (little-endian) for element k */
        const uchar16 sh = (uchar16)(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
        const uchar b0 = blk[o], b1 = blk[o + 1], b2 = blk[o + 2], b3 = blk[o + 3];
        const uchar16 h0 = (((uchar16)(b0, b0, b0, b0, b0, b0, b0, b0, b1, b1, b1, b1, b1, b1, b1, b1) >> sh) &
                            (uchar)1) << (uchar)4;
        const uchar16 h1 = (((uchar16)(b2, b2, b2, b2, b2, b2, b2, b2, b3, b3, b3, b3, b3, b3, b3, b3) >> sh) &
                            (uchar)1) << (uchar)4;
        const uchar16 q = GC_LDU16(blk + o + 4);
        *lo = as_char16((q & (uchar)0xF) | h0) - c;
        *hi = as_char16((q >> (uchar)4) | h1) - c;
        break;
    }
    default:
        *lo = GC_LDC16(blk + 2);
        *hi = GC_LDC16(blk + 18);
    }
}

/* sum of the 32 products of a block's weights (lo, hi) and activations at a: exact (|w|, |a| <= 128, so
 * each product fits a short); vectors of at most 256 bits, which every x86 ABI passes in registers */
inline int gc_dot32(const char16 lo, const char16 hi, const __global char *a) {
    const short16 p = convert_short16(lo) * convert_short16(GC_LDC16(a));
    const short16 q = convert_short16(hi) * convert_short16(GC_LDC16(a + 16));
    const int8 s = (convert_int8(p.lo) + convert_int8(p.hi)) + (convert_int8(q.lo) + convert_int8(q.hi));
    const int4 t = s.lo + s.hi;
    return (t.x + t.y) + (t.z + t.w);
}

inline int gc_dot16(const char16 v, const __global char *a) {
    const short16 p = convert_short16(v) * convert_short16(GC_LDC16(a));
    const int8 s = convert_int8(p.lo) + convert_int8(p.hi);
    const int4 t = s.lo + s.hi;
    return (t.x + t.y) + (t.z + t.w);
}

inline void gc_mm_q32(const long type, const int NC, __local float *red, GC_MM_ARGS) {
    const gc_mm_tile t = gc_mm_tile_of(d, w, NC);
    const int l = get_local_id(0), L = get_local_size(0);
    const long nb = w.ne[0] / 32, bs = gc_type_size(type);
    float acc[GC_MM_NR][GC_MM_NC];
    const __global char *act = sb + soff + gc_mm_col(d, t.c0, t.i2, t.i3) * col_bytes;
    const __global uchar *wr[GC_MM_NR];
    const __global char *ac[GC_MM_NC];
    for (int r = 0; r < GC_MM_NR; r++) {
        wr[r] = GC_MM_WROW(r);
        for (int c = 0; c < GC_MM_NC; c++) acc[r][c] = 0.0f;
    }
    for (int c = 0; c < GC_MM_NC; c++) ac[c] = GC_MM_ACT(c);
    for (long b = l; b < nb; b += L) {
#pragma unroll
        for (int r = 0; r < GC_MM_NR; r++) {
            char16 lo, hi;
            float dw, mw;
            gc_q32_block(type, wr[r] + b * bs, &lo, &hi, &dw, &mw);
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const __global char *a = ac[c] + b * 40;
                const int isum = gc_dot32(lo, hi, a + 8);
                const float dx = ((const __global float *)a)[0], sx = ((const __global float *)a)[1];
                /* the min term only where the type has one: 0 * sx is not 0 for every sx */
                acc[r][c] += type == GC_Q4_1 || type == GC_Q5_1 ? (float)isum * (dw * dx) + mw * sx
                                                                : (float)isum * (dw * dx);
            }
        }
    }
    gc_mm_finish(acc, red, db, d, t, NC);
}

/* ---- 2b. K-quants: q2_K q3_K q4_K q5_K q6_K ------------------------------------------------------- */
/* a super-block's 256 integer values (q2_K 0..3, q3_K -4..3, q4_K 0..15, q5_K 0..31, q6_K -32..31), in
 * loops over 32 consecutive bytes as ggml's dequantize_row_* has them, so that they vectorise */
inline void gc_k_decode(const long type, const __global uchar *x, char *q) {
    switch (type) {
    case GC_Q2_K:
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) q[128 * c + 32 * j + l] = (x[16 + 32 * c + l] >> (2 * j)) & 3;
        break;
    case GC_Q3_K:
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++)
                    q[128 * c + 32 * j + l] = (char)(((x[32 + 32 * c + l] >> (2 * j)) & 3) -
                                                     (((x[l] >> (4 * c + j)) & 1) ? 0 : 4));
        break;
    case GC_Q4_K:
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = x[16 + 32 * c + l] & 0xF;
                q[64 * c + 32 + l] = x[16 + 32 * c + l] >> 4;
            }
        break;
    case GC_Q5_K:
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = (x[48 + 32 * c + l] & 0xF) | (((x[16 + l] >> (2 * c)) & 1) << 4);
                q[64 * c + 32 + l] = (x[48 + 32 * c + l] >> 4) | (((x[16 + l] >> (2 * c + 1)) & 1) << 4);
            }
        break;
    default:     /* q6_K */
        for (int c = 0; c < 2; c++)
            for (int l = 0; l < 32; l++) {
                const int ql0 = x[64 * c + l], ql1 = x[64 * c + 32 + l], qh = x[128 + 32 * c + l];
                q[128 * c + l] = (char)(((ql0 & 0xF) | ((qh & 3) << 4)) - 32);
                q[128 * c + 32 + l] = (char)(((ql1 & 0xF) | (((qh >> 2) & 3) << 4)) - 32);
                q[128 * c + 64 + l] = (char)(((ql0 >> 4) | (((qh >> 4) & 3) << 4)) - 32);
                q[128 * c + 96 + l] = (char)(((ql1 >> 4) | (((qh >> 6) & 3) << 4)) - 32);
            }
    }
}

/* elements per sub-block of a K-quant type */
inline int gc_k_sub(const long type) { return type == GC_Q4_K || type == GC_Q5_K ? 32 : 16; }

/* d and dmin of a super-block */
inline void gc_k_d(const long type, const __global uchar *x, float *d, float *dmin) {
    *dmin = 0.0f;
    switch (type) {
    case GC_Q2_K: *d = gc_hf(x + 80); *dmin = gc_hf(x + 82); break;
    case GC_Q3_K: *d = gc_hf(x + 108); break;
    case GC_Q4_K: case GC_Q5_K: *d = gc_hf(x); *dmin = gc_hf(x + 2); break;
    default: *d = gc_hf(x + 208);
    }
}

/* scale and min of sub-block j */
inline void gc_k_scales(const long type, const __global uchar *x, int j, int *sc, int *mn) {
    *mn = 0;
    switch (type) {
    case GC_Q2_K:
        *sc = x[j] & 0xF;
        *mn = x[j] >> 4;
        break;
    case GC_Q3_K: {
        const __global uchar *s = x + 96;
        const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *sc = (lo | hi << 4) - 32;
        break;
    }
    case GC_Q4_K: case GC_Q5_K:
        gc_scale_min_k4(j, x + 4, sc, mn);
        break;
    default:
        *sc = (char)x[192 + j];
    }
}

inline void gc_mm_qk(const long type, const int NC, __local float *red, GC_MM_ARGS) {
    const gc_mm_tile t = gc_mm_tile_of(d, w, NC);
    const int l = get_local_id(0), L = get_local_size(0);
    const long nsb = w.ne[0] / 256, bs = gc_type_size(type);
    const int sub = gc_k_sub(type);
    float acc[GC_MM_NR][GC_MM_NC];
    const __global char *act = sb + soff + gc_mm_col(d, t.c0, t.i2, t.i3) * col_bytes;
    const __global uchar *wr[GC_MM_NR];
    const __global char *ac[GC_MM_NC];
#pragma unroll
    for (int r = 0; r < GC_MM_NR; r++) {
        wr[r] = GC_MM_WROW(r);
#pragma unroll
        for (int c = 0; c < GC_MM_NC; c++) acc[r][c] = 0.0f;
    }
#pragma unroll
    for (int c = 0; c < GC_MM_NC; c++) ac[c] = GC_MM_ACT(c);
    for (long i = l; i < nsb; i += L) {
        for (int r = 0; r < GC_MM_NR; r++) {
            const __global uchar *x = wr[r] + i * bs;
            int isum[GC_MM_NC], msum[GC_MM_NC];
#pragma unroll
            for (int c = 0; c < GC_MM_NC; c++) { isum[c] = 0; msum[c] = 0; }
            float dw, dmin;
            gc_k_d(type, x, &dw, &dmin);
            char16 qv[16];                     /* the super-block's values, 16 per vector */
            gc_k_decode(type, x, (char *)qv);
            for (int j = 0; j < 256 / sub; j++) {
                int sc, mn;
                gc_k_scales(type, x, j, &sc, &mn);
#pragma unroll
                for (int c = 0; c < NC; c++) {
                    const __global char *y = ac[c] + i * 292;
                    const int s = sub == 32 ? gc_dot32(qv[2 * j], qv[2 * j + 1], y + 36 + 32 * j)
                                            : gc_dot16(qv[j], y + 36 + 16 * j);
                    isum[c] += sc * s;
                    const __global short *bsums = (const __global short *)(y + 4);
                    const int bsum = sub == 32 ? bsums[2 * j] + bsums[2 * j + 1] : bsums[j];
                    msum[c] += mn * bsum;
                }
            }
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const float yd = *(const __global float *)(ac[c] + i * 292);
                acc[r][c] += (dw * yd) * (float)isum[c] - (dmin * yd) * (float)msum[c];
            }
        }
    }
    gc_mm_finish(acc, red, db, d, t, NC);
}

/* ---- 2c. float weights: f32, f16, bf16 (activations prepared as f32 columns) ------------------------ */
inline void gc_mm_f(const long type, const int NC, __local float *red, GC_MM_ARGS) {
    const gc_mm_tile t = gc_mm_tile_of(d, w, NC);
    const int l = get_local_id(0), L = get_local_size(0);
    float acc[GC_MM_NR][GC_MM_NC];
    const __global char *act = sb + soff + gc_mm_col(d, t.c0, t.i2, t.i3) * col_bytes;
    const __global char *wr[GC_MM_NR];
    const __global float *ac[GC_MM_NC];
#pragma unroll
    for (int r = 0; r < GC_MM_NR; r++) {
        wr[r] = (const __global char *)GC_MM_WROW(r);
#pragma unroll
        for (int c = 0; c < GC_MM_NC; c++) acc[r][c] = 0.0f;
    }
#pragma unroll
    for (int c = 0; c < GC_MM_NC; c++) ac[c] = (const __global float *)GC_MM_ACT(c);
    const long nb0 = w.nb[0];
    for (long k = l; k < w.ne[0]; k += L) {
        float wv[GC_MM_NR];
#pragma unroll
        for (int r = 0; r < GC_MM_NR; r++) wv[r] = gc_get_f32(type, wr[r] + k * nb0);
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const float x = ac[c][k];
#pragma unroll
            for (int r = 0; r < GC_MM_NR; r++) acc[r][c] += wv[r] * x;
        }
    }
    gc_mm_finish(acc, red, db, d, t, NC);
}

/* the kernels: gc_mm_<type>_<NC> */
#define GC_MM_KERNEL(FAMILY, NAME, TYPE, NC) \
    __kernel void gc_mm_##NAME##_##NC(GC_MM_ARGS) {                                                       \
        __local float red[GC_MM_NR * GC_MM_NC * GC_MM_L];                                               \
        FAMILY(TYPE, NC, red, GC_MM_PASS);                                                              \
    }
#define GC_MM_KERNELS(FAMILY, NAME, TYPE) GC_MM_KERNEL(FAMILY, NAME, TYPE, 1) GC_MM_KERNEL(FAMILY, NAME, TYPE, 8)
GC_MM_KERNELS(gc_mm_q32, q4_0, GC_Q4_0)
GC_MM_KERNELS(gc_mm_q32, q4_1, GC_Q4_1)
GC_MM_KERNELS(gc_mm_q32, q5_0, GC_Q5_0)
GC_MM_KERNELS(gc_mm_q32, q5_1, GC_Q5_1)
GC_MM_KERNELS(gc_mm_q32, q8_0, GC_Q8_0)
GC_MM_KERNELS(gc_mm_qk, q2_K, GC_Q2_K)
GC_MM_KERNELS(gc_mm_qk, q3_K, GC_Q3_K)
GC_MM_KERNELS(gc_mm_qk, q4_K, GC_Q4_K)
GC_MM_KERNELS(gc_mm_qk, q5_K, GC_Q5_K)
GC_MM_KERNELS(gc_mm_qk, q6_K, GC_Q6_K)
GC_MM_KERNELS(gc_mm_f, f32, GC_F32)
GC_MM_KERNELS(gc_mm_f, f16, GC_F16)
GC_MM_KERNELS(gc_mm_f, bf16, GC_BF16)

/* ---- out_prod: dst[i0, i1, i2, i3] = sum_k a[i0, k, i2/r2, i3/r3] * b[i1, k, i2, i3] ------------------ */
__kernel void gc_out_prod(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *bb,
                          const gc_t b, const gc_p_out_prod p) {
    const long f = get_global_id(0);
    if (f >= GC_NELEMENTS(d)) return;
    const long i0 = f % d.ne[0], r = f / d.ne[0];
    long i1, i2, i3;
    gc_unravel_row(d.ne, r, &i1, &i2, &i3);
    const long a2 = i2 / (d.ne[2] / a.ne[2]), a3 = i3 / (d.ne[3] / a.ne[3]);
    float acc = 0.0f;
    for (long k = 0; k < a.ne[1]; k++) {
        const float bv = gc_get_f32(b.type, GC_AT(bb, b, i1, k, i2, i3));
        acc += bv * gc_row_get(a.type, GC_ROW(ab, a, k, a2, a3), a.nb[0], i0);
    }
    gc_set_f32(d.type, GC_AT(db, d, i0, i1, i2, i3), acc);
}
