/* graphc OpenCL runtime contract: what generated kernels and the kernel library (kernels/opencl/<file>.cl) agree on.
 *
 * OpenCL C 1.2 with no extensions: f16 is read and written with vload_half/vstore_half (no cl_khr_fp16),
 * f64 only under cl_khr_fp64, reductions in local memory (no subgroups).
 *
 * Memory: the arena is ONE buffer; weights, inputs, outputs and state have buffers of their own. A kernel
 * gets, for every tensor it touches, the buffer (`__global char *`) and a gc_t by value: the tensor's
 * byte offset in that buffer, ggml's ne[4] and byte strides nb[4] (ne[0] innermost; views keep their own
 * strides) and ggml's type id. So the same compiled kernel serves every layer and every graph.
 * Library kernel arguments, in order: dst buffer, dst gc_t, then for EVERY source slot of the op
 * (graphc.ops) its buffer and gc_t (an empty slot gets a 64-byte dummy buffer and type -1), then the op's
 * parameter struct gc_p_<op> by value (generated from graphc/ops.py like the C target's graphc_params.h),
 * then whatever extra arguments the op's launcher (targets/opencl/lib_*.py) passes.
 * Floating point follows ref's order of operations: FP_CONTRACT is off, and programs are built with
 * -cl-fp32-correctly-rounded-divide-sqrt where the device supports it.
 */
#pragma OPENCL FP_CONTRACT OFF
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double gc_wide;    /* long sums that ref keeps in f64 (ggml_float) */
#else
typedef float gc_wide;
#endif

typedef struct gc_t {
    long off;
    long ne[4];
    long nb[4];
    long type;
} gc_t;

/* ggml type ids (graphc/types.py) */
#define GC_F32 0
#define GC_F16 1
#define GC_Q4_0 2
#define GC_Q4_1 3
#define GC_Q5_0 6
#define GC_Q5_1 7
#define GC_Q8_0 8
#define GC_Q8_1 9
#define GC_Q2_K 10
#define GC_Q3_K 11
#define GC_Q4_K 12
#define GC_Q5_K 13
#define GC_Q6_K 14
#define GC_Q8_K 15
#define GC_I8 24
#define GC_I16 25
#define GC_I32 26
#define GC_I64 27
#define GC_F64 28
#define GC_BF16 30

/* the byte address of element (i0, i1, i2, i3) of tensor t in buffer b */
#define GC_AT(b, t, i0, i1, i2, i3) \
    ((b) + (t).off + (i0) * (t).nb[0] + (i1) * (t).nb[1] + (i2) * (t).nb[2] + (i3) * (t).nb[3])
#define GC_ROW(b, t, i1, i2, i3) ((b) + (t).off + (i1) * (t).nb[1] + (i2) * (t).nb[2] + (i3) * (t).nb[3])
#define GC_NROWS(t) ((t).ne[1] * (t).ne[2] * (t).ne[3])
#define GC_NELEMENTS(t) ((t).ne[0] * (t).ne[1] * (t).ne[2] * (t).ne[3])

/* f16 bits -> f32 with integer and f32 operations only: exact for every f16 (a subnormal becomes a normal
 * f32 through the power-of-two scale), branch-free so that it vectorises; some drivers implement
 * vload_half as a slow scalar routine */
inline float gc_h2f(ushort h) {
    const uint m = (uint)(h & 0x7fff) << 13;
    const float mag = as_float(m) * 0x1p112f;
    const float v = (h & 0x7c00) == 0x7c00 ? as_float(m | 0x7f800000u) : mag;
    return as_float(as_uint(v) | ((uint)(h & 0x8000) << 16));
}
inline float gc_ld_f32(const __global char *p) { return *(const __global float *)p; }
inline float gc_ld_f16(const __global char *p) { return gc_h2f(*(const __global ushort *)p); }
inline float gc_ld_bf16(const __global char *p) { return as_float((uint)(*(const __global ushort *)p) << 16); }
inline void gc_st_f32(__global char *p, float v) { *(__global float *)p = v; }
inline void gc_st_f16(__global char *p, float v) { vstore_half_rte(v, 0, (__global half *)p); }
inline ushort gc_f32_to_bf16(float v) {
    uint u = as_uint(v);
    return isnan(v) ? (ushort)((u >> 16) | 64) : (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline void gc_st_bf16(__global char *p, float v) { *(__global ushort *)p = gc_f32_to_bf16(v); }
inline float gc_f16_round(float x) {
    ushort h; vstore_half_rte(x, 0, (half *)&h); return vload_half(0, (const half *)&h);
}
/* f32 -> f16 bits (round to nearest even) */
inline ushort gc_f2h(float x) { ushort h; vstore_half_rte(x, 0, (half *)&h); return h; }

/* [start, end) of n items for part i of n_parts: contiguous, balanced chunks */
inline void gc_chunk(long n, long i, long n_parts, long *start, long *end) {
    long per = (n + n_parts - 1) / n_parts;
    *start = min(per * i, n);
    *end = min(*start + per, n);
}

/* row number ir (i1 fastest) -> (i1, i2, i3) of ne */
inline void gc_unravel_row(const long *ne, long ir, long *i1, long *i2, long *i3) {
    *i1 = ir % ne[1];
    ir /= ne[1];
    *i2 = ir % ne[2];
    *i3 = ir / ne[2];
}

/* one plain element of any non-block type as f32 (ints converted as C converts them) */
inline float gc_get_f32(long type, const __global char *p) {
    switch (type) {
    case GC_F32: return *(const __global float *)p;
    case GC_F16: return gc_ld_f16(p);
    case GC_BF16: return gc_ld_bf16(p);
    case GC_I32: return (float)*(const __global int *)p;
    case GC_I16: return (float)*(const __global short *)p;
    case GC_I8: return (float)*(const __global char *)p;
    case GC_I64: return (float)*(const __global long *)p;
#ifdef cl_khr_fp64
    case GC_F64: return (float)*(const __global double *)p;
#endif
    default: return 0.0f;
    }
}

/* store an f32 into a plain element of any non-block type (float -> int truncates; non-finite -> 0) */
inline void gc_set_f32(long type, __global char *p, float v) {
    float t = isfinite(v) ? trunc(v) : 0.0f;
    switch (type) {
    case GC_F32: *(__global float *)p = v; break;
    case GC_F16: gc_st_f16(p, v); break;
    case GC_BF16: gc_st_bf16(p, v); break;
    case GC_I32: *(__global int *)p = (int)t; break;
    case GC_I16: *(__global short *)p = (short)t; break;
    case GC_I8: *(__global char *)p = (char)t; break;
    case GC_I64: *(__global long *)p = (long)t; break;
#ifdef cl_khr_fp64
    case GC_F64: *(__global double *)p = (double)v; break;
#endif
    default: break;
    }
}

/* an integer index element (i32 or i64) */
inline long gc_get_index(long type, const __global char *p) {
    return type == GC_I64 ? *(const __global long *)p : (long)*(const __global int *)p;
}

/* --- work-group reductions (local memory; no subgroups needed) ---------------------------------------
 * Library row kernels run one work-group per row with a power-of-two local size <= GC_WG; `buf` is a
 * __local float[GC_WG] of the kernel. Every work-item of the group must call these (they hold barriers). */
#define GC_WG 256

inline float gc_wg_sum(float v, __local float *buf) {
    const int l = get_local_id(0), n = get_local_size(0);
    buf[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (l < s) buf[l] += buf[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = buf[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* NaN-sticky max (ref's: a NaN anywhere makes the row NaN) */
inline float gc_nan_max(float a, float b) { return isnan(a) || isnan(b) ? NAN : fmax(a, b); }

/* the work-group's NaN-sticky max */
inline float gc_wg_max(float v, __local float *buf) {
    const int l = get_local_id(0), n = get_local_size(0);
    buf[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (l < s) buf[l] = gc_nan_max(buf[l], buf[l + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = buf[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* the address of flat element f (ggml element order) of t in buffer b */
inline __global char *gc_flat_at(__global char *b, const gc_t t, long f) {
    const long i0 = f % t.ne[0];
    f /= t.ne[0];
    const long i1 = f % t.ne[1];
    f /= t.ne[1];
    const long i2 = f % t.ne[2];
    return b + t.off + i0 * t.nb[0] + i1 * t.nb[1] + i2 * t.nb[2] + (f / t.ne[2]) * t.nb[3];
}

/* ALiBi slope of head h (soft_max, flash_attn_ext), as the reference computes it */
inline float gc_alibi_slope(float max_bias, long n_head, long h) {
    if (max_bias <= 0.0f) return 1.0f;
    long n_log2 = 1;
    while (n_log2 * 2 <= n_head) n_log2 *= 2;
    const float m0 = pow(2.0f, -max_bias / (float)n_log2);
    const float m1 = pow(2.0f, -(max_bias / 2.0f) / (float)n_log2);
    return h < n_log2 ? pow(m0, (float)(h + 1)) : pow(m1, (float)(2 * (h - n_log2) + 1));
}
