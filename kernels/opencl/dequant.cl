/* ggml's block types: element decoding (bit-exact with graphc.quants and kernels/c/dequant.h) and the
 * reference quantizers (ggml's quantize_row_*_ref, byte-exact), shared by every library program.
 * A block row is its blocks back to back; element i of a row is element i % blck of block i / blck. */

inline int gc_type_blck(long type) {
    switch (type) {
    case GC_Q4_0: case GC_Q4_1: case GC_Q5_0: case GC_Q5_1: case GC_Q8_0: case GC_Q8_1: return 32;
    case GC_Q2_K: case GC_Q3_K: case GC_Q4_K: case GC_Q5_K: case GC_Q6_K: case GC_Q8_K: return 256;
    default: return 1;
    }
}

inline int gc_type_size(long type) {
    switch (type) {
    case GC_F32: case GC_I32: return 4;
    case GC_F16: case GC_BF16: case GC_I16: return 2;
    case GC_I8: return 1;
    case GC_I64: case GC_F64: return 8;
    case GC_Q4_0: return 18;
    case GC_Q4_1: return 20;
    case GC_Q5_0: return 22;
    case GC_Q5_1: return 24;
    case GC_Q8_0: return 34;
    case GC_Q8_1: return 36;
    case GC_Q2_K: return 84;
    case GC_Q3_K: return 110;
    case GC_Q4_K: return 144;
    case GC_Q5_K: return 176;
    case GC_Q6_K: return 210;
    case GC_Q8_K: return 292;
    default: return 0;
    }
}

inline float gc_hf(const __global uchar *p) { return gc_h2f((ushort)p[0] | ((ushort)p[1] << 8)); }
inline uint gc_u32le(const __global uchar *p) {
    return (uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
}

/* q4_K / q5_K: 6-bit scale and min j of the 12 packed bytes */
inline void gc_scale_min_k4(int j, const __global uchar *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* element j of the block at b (block types only) */
inline float gc_dq_block(long type, const __global uchar *b, int j) {
    switch (type) {
    case GC_Q4_0: {
        const int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
        return (float)(q - 8) * gc_hf(b);
    }
    case GC_Q4_1: {
        const int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
        const float v = (float)q * gc_hf(b);
        return v + gc_hf(b + 2);
    }
    case GC_Q5_0: {
        const uint qh = gc_u32le(b + 2);
        const int h = j < 16 ? (int)((qh >> j) << 4) & 0x10 : (int)(qh >> (j - 4)) & 0x10;
        const int q = (j < 16 ? (b[6 + j] & 0xF) : (b[6 + j - 16] >> 4)) | h;
        return (float)(q - 16) * gc_hf(b);
    }
    case GC_Q5_1: {
        const uint qh = gc_u32le(b + 4);
        const int h = j < 16 ? (int)((qh >> j) << 4) & 0x10 : (int)(qh >> (j - 4)) & 0x10;
        const int q = (j < 16 ? (b[8 + j] & 0xF) : (b[8 + j - 16] >> 4)) | h;
        const float v = (float)q * gc_hf(b);
        return v + gc_hf(b + 2);
    }
    case GC_Q8_0:
        return (float)(char)b[2 + j] * gc_hf(b);
    case GC_Q8_1:
        return (float)(char)b[4 + j] * gc_hf(b);
    case GC_Q2_K: {
        const int c = j / 128, r = j % 128, s = r / 32, hv = (r % 32) / 16, l = r % 16;
        const int sc = b[c * 8 + s * 2 + hv];
        const float dl = gc_hf(b + 80) * (float)(sc & 0xF), ml = gc_hf(b + 82) * (float)(sc >> 4);
        const float v = dl * (float)((b[16 + c * 32 + l + 16 * hv] >> (2 * s)) & 3);
        return v - ml;
    }
    case GC_Q3_K: {
        const int c = j / 128, r = j % 128, s = r / 32, hv = (r % 32) / 16, l = 16 * hv + r % 16;
        const int is = c * 8 + s * 2 + hv;
        const __global uchar *raw = b + 96;
        const int lo = is < 8 ? (raw[is] & 0xF) : (raw[is - 8] >> 4);
        const int hi = (raw[8 + (is & 3)] >> (2 * (is >> 2))) & 3;
        const int sc = (lo | (hi << 4)) - 32;
        const int m = 1 << (c * 4 + s);
        const int q = ((b[32 + c * 32 + l] >> (2 * s)) & 3) - ((b[l] & m) ? 0 : 4);
        const float dl = gc_hf(b + 108) * (float)sc;
        return dl * (float)q;
    }
    case GC_Q4_K: {
        const int g = j / 64, r = j % 64, is = 2 * g + (r >= 32);
        int sc, m;
        gc_scale_min_k4(is, b + 4, &sc, &m);
        const int qb = b[16 + g * 32 + r % 32];
        const float d1 = gc_hf(b) * (float)sc, m1 = gc_hf(b + 2) * (float)m;
        const float v = d1 * (float)(r < 32 ? (qb & 0xF) : (qb >> 4));
        return v - m1;
    }
    case GC_Q5_K: {
        const int g = j / 64, r = j % 64, l = r % 32, is = 2 * g + (r >= 32);
        int sc, m;
        gc_scale_min_k4(is, b + 4, &sc, &m);
        const int qb = b[48 + g * 32 + l];
        const int u = (r < 32 ? 1 : 2) << (2 * g);
        const int q = (r < 32 ? (qb & 0xF) : (qb >> 4)) + ((b[16 + l] & u) ? 16 : 0);
        const float d1 = gc_hf(b) * (float)sc, m1 = gc_hf(b + 2) * (float)m;
        const float v = d1 * (float)q;
        return v - m1;
    }
    case GC_Q6_K: {
        const int c = j / 128, r = j % 128, quarter = r / 32, l = r % 32, is = l / 16;
        const int qlb = b[c * 64 + l + (quarter & 1) * 32];
        const int lo = quarter < 2 ? (qlb & 0xF) : (qlb >> 4);
        const int hi = (b[128 + c * 32 + l] >> (2 * quarter)) & 3;
        const int sc = (char)b[192 + c * 8 + is + 2 * quarter];
        const float dsc = gc_hf(b + 208) * (float)sc;
        return dsc * (float)((lo | (hi << 4)) - 32);
    }
    default:
        return 0.0f;
    }
}

/* element i of a row of any type: plain types through their stride nb0, block types by block */
inline float gc_row_get(long type, const __global char *row, long nb0, long i) {
    const int blck = gc_type_blck(type);
    if (blck == 1) return gc_get_f32(type, row + i * nb0);
    return gc_dq_block(type, (const __global uchar *)row + (i / blck) * gc_type_size(type), (int)(i % blck));
}

/* --- ggml's reference quantizers: one block of 32 values -> its bytes (q4_0 q4_1 q5_0 q5_1 q8_0) --- */

inline int gc_q_trunc(float t, int hi) {   /* (int8_t)(t) then MIN(hi, .), NaN -> 0 */
    if (isnan(t)) return 0;
    if (t >= (float)hi) return hi;
    return (int)(char)(int)t;
}

inline void gc_put_half(__global uchar *p, float v) { vstore_half_rte(v, 0, (__global half *)p); }

/* x: 32 values (private); y: the block's bytes. Returns 0, or -1 for a type without a quantizer here. */
inline int gc_quantize_block(long type, const float *x, __global uchar *y) {
    if (type == GC_Q4_0 || type == GC_Q5_0 || type == GC_Q8_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (type == GC_Q8_0) amax = fmax(amax, fabs(x[j]));
            else if (amax < fabs(x[j])) { amax = fabs(x[j]); max = x[j]; }
        }
        if (type == GC_Q8_0) {
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            gc_put_half(y, d);
            for (int j = 0; j < 32; j++) {
                const float v = round(x[j] * id);
                y[2 + j] = (uchar)(char)(isnan(v) ? 0 : (v > 127.0f ? 127 : (v < -128.0f ? -128 : (int)v)));
            }
            return 0;
        }
        const float d = type == GC_Q4_0 ? max / -8.0f : max / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        gc_put_half(y, d);
        uint qh = 0;
        const int off = type == GC_Q4_0 ? 2 : 6;
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[16 + j] * id;
            const int q0 = type == GC_Q4_0 ? gc_q_trunc(x0 + 8.5f, 15) : gc_q_trunc(x0 + 16.5f, 31);
            const int q1 = type == GC_Q4_0 ? gc_q_trunc(x1 + 8.5f, 15) : gc_q_trunc(x1 + 16.5f, 31);
            y[off + j] = (uchar)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (((uint)q0 & 0x10u) >> 4) << j;
            qh |= (((uint)q1 & 0x10u) >> 4) << (j + 16);
        }
        if (type == GC_Q5_0)
            for (int k = 0; k < 4; k++) y[2 + k] = (uchar)(qh >> (8 * k));
        return 0;
    }
    if (type == GC_Q4_1 || type == GC_Q5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = type == GC_Q4_1 ? (max - min) / 15.0f : (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        gc_put_half(y, d);
        gc_put_half(y + 2, min);
        uint qh = 0;
        const int off = type == GC_Q4_1 ? 4 : 8;
        for (int j = 0; j < 16; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            const int q0 = gc_q_trunc(x0 + 0.5f, type == GC_Q4_1 ? 15 : 255);
            const int q1 = gc_q_trunc(x1 + 0.5f, type == GC_Q4_1 ? 15 : 255);
            y[off + j] = (uchar)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (((uint)q0 & 0x10u) >> 4) << j;
            qh |= (((uint)q1 & 0x10u) >> 4) << (j + 16);
        }
        if (type == GC_Q5_1)
            for (int k = 0; k < 4; k++) y[4 + k] = (uchar)(qh >> (8 * k));
        return 0;
    }
    return -1;
}
