/* graphc C runtime contract: what generated code and the kernel library agree on.
 *
 * Every tensor a kernel touches is described by a gc_tensor: a pointer to its first byte (the arena,
 * the weights mapping or a persistent region, plus its offset), ggml's ne[4] and byte strides nb[4]
 * (ne[0] innermost; views keep their own strides), and ggml's type id.
 *
 * Every op of the library has ONE signature:
 *     void gc_op_<op>(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src,
 *                     const void *params, int ith, int nth);
 * src[j] is source slot j of the graphc op (NULL for an empty slot); params points at the op's
 * parameter struct gc_p_<op>, generated from graphc/ops.py (graphc_params.h: fields in the op's
 * parameter order; i32/bool/choice -> int32_t (a choice is its index in the op's choices), i64 ->
 * int64_t, f32 -> float, i32x4 -> int32_t[4]).
 * Threading: all nth threads call every kernel with their ith in [0, nth); a kernel splits its own
 * work by ith and never waits for other threads; the generated driver puts a barrier between
 * kernels. Ops that need per-thread scratch export
 *     size_t gc_scratch_<op>(const gc_tensor *dst, const gc_tensor *const *src, const void *params);
 * (bytes per thread); the driver allocates the maximum once and passes it as ctx->scratch[ith].
 * ctx->work, when not NULL, is a pair of counters shared by the threads, zero when a step starts; a
 * kernel that takes work from work[0] leaves both zero again before the barrier that follows it
 * (gc_op_mul_mat: the last thread out resets them). Which thread computes an element never changes its
 * value: results do not depend on nth or on timing.
 */
#ifndef GRAPHC_H
#define GRAPHC_H

#include <stddef.h>
#include <stdint.h>

typedef struct gc_tensor {
    char *data;
    int64_t ne[4];
    int64_t nb[4];
    int32_t type;
} gc_tensor;

typedef struct gc_ctx {
    int n_threads;
    void **scratch;          /* scratch[ith]: per-thread work memory, scratch_size bytes each */
    size_t scratch_size;
    int *work;               /* NULL, or 2 ints (zero between steps) a kernel may hand work out with */
    int (*host)(int index);  /* the host's collectives (graphc/parallel.py): host step `index`, thread 0 */
} gc_ctx;

/* ggml type ids (graphc/types.py) */
enum {
    GC_F32 = 0, GC_F16 = 1, GC_Q4_0 = 2, GC_Q4_1 = 3, GC_Q5_0 = 6, GC_Q5_1 = 7, GC_Q8_0 = 8,
    GC_Q8_1 = 9, GC_Q2_K = 10, GC_Q3_K = 11, GC_Q4_K = 12, GC_Q5_K = 13, GC_Q6_K = 14, GC_Q8_K = 15,
    GC_I8 = 24, GC_I16 = 25, GC_I32 = 26, GC_I64 = 27, GC_F64 = 28, GC_BF16 = 30,
    /* graphc's own weight layouts (never in a file: targets/c/repack.py writes them at load) */
    GC_Q4_0X8 = 200, GC_Q4_KX8 = 201, GC_Q6_KX8 = 202
};

/* [start, end) of n items for thread ith of nth: contiguous, balanced chunks */
static inline void gc_chunk(int64_t n, int ith, int nth, int64_t *start, int64_t *end) {
    int64_t per = (n + nth - 1) / nth;
    *start = per * ith < n ? per * ith : n;
    *end = *start + per < n ? *start + per : n;
}

#define GC_AT(t, i0, i1, i2, i3) \
    ((t)->data + (i0) * (t)->nb[0] + (i1) * (t)->nb[1] + (i2) * (t)->nb[2] + (i3) * (t)->nb[3])

/* --- helpers shared by generated code and every library header (added by the C target) ---------
 * Conventions for library headers (kernels/c/ops_*.h, matmul.h, quant.h):
 *  - define every function `static inline` (unused ones then raise no -Wall warning) and #include the
 *    headers you depend on yourself (with include guards): the generated translation unit includes
 *    only the headers that define a gc_op_<op> the Program uses, plus elementwise.h;
 *  - an op is "provided" when a header defines `gc_op_<op>(` AND targets/c/library.py lists it (the one
 *    table the lowering queries; tests/test_c_library.py checks the two agree);
 *  - an op that handles only some types/shapes also defines
 *        static inline int gc_supports_<op>(const gc_tensor *dst, const gc_tensor *const *src, const void *params);
 *    (1 = supported): the generated gc_check() calls it for every node at load time, BEFORE any run,
 *    and the Python side turns a 0 into CompileError "op X is not supported on target c yet";
 *  - reductions split rows (i1, i2, i3 flattened, i1 fastest) with gc_chunk(nrows, ith, nth).
 */
#include <string.h>
#include <math.h>

/* Copy n tensor descriptors from a constant table (the generated program's gc_T0) into an instance's own.
 * Not a plain struct assignment: GCC 12.2 (-O2 and up) miscompiles a copy of more than 32 bytes from data
 * whose initializer it can see when it tunes for the AVX-512 cores (-march/-mtune skylake-avx512, icelake-*,
 * rocketlake, ..., hence -march=native on those CPUs): their 256-bit "by pieces" moves store each 32 bytes as
 * one 256-bit integer constant, and ix86_convert_const_wide_int_to_broadcast takes a constant whose upper
 * 64-bit words are zero for a broadcast of its lowest: {16, 16, 0, 0} is stored as {16, 16, 16, 16} (later
 * GCC checks that the constant spans the whole mode). A table row ending in nb {.., 16, 16} then got type 16.
 * The empty asm hides the source from the optimiser: an ordinary copy of loaded bytes. */
static inline void gc_copy_tensors(gc_tensor *dst, const gc_tensor *src, int n) {
#if defined(__GNUC__)
    __asm__("" : "+r"(src));
#endif
    memcpy(dst, src, (size_t)n * sizeof(gc_tensor));
}

/* f16 <-> f32, round to nearest even (ggml's GGML_FP32_TO_FP16 / GGML_FP16_TO_FP32), portable */
static inline float gc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (man << 13);                   /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);           /* normal */
    } else if (man == 0) {
        bits = sign;                                                /* +-0 */
    } else {                                                        /* subnormal: renormalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t gc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);      /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {                                         /* below f16's smallest normal */
        if (ax < 0x33000000u) return (uint16_t)sign;                /* < 2^-25: rounds to 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;                                  /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);                   /* round to nearest even at bit 13 */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

/* bf16 <-> f32 (ggml_compute_fp32_to_bf16: nearest even, NaN stays a quiet NaN) */
static inline float gc_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t gc_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

#endif
