/* GC_PROVIDES: get_rows set_rows set cpy dup cont concat pad arange diag_mask_inf diag_mask_zero out_prod repeat */
/* Copies, gathers, scatters and shape ops, as targets/ref/shape.py: conversions go through f32 (f16 one
 * RNE rounding, bf16 GGML_FP32_TO_BF16, block types ggml's reference quantizer), same-type copies move
 * bytes (block rows raw, never re-quantized). Work is split over destination rows with gc_chunk. */
#ifndef GC_OPS_DATA_H
#define GC_OPS_DATA_H

#include "ops_common.h"

/* elements per stored unit along ne0 (1, or the block size) and bytes per unit */
static inline int64_t gc_unit_ne0(const gc_tensor *t) { return t->ne[0] / gc_type_blck(t->type); }

/* ---- get_rows ------------------------------------------------------------------------------------ */

static inline size_t gc_scratch_get_rows(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    return gc_rows_bytes(src[0]->ne[0], 1);
}

/* dst[:, i10, i11, i12] = a[:, b[i10, i11, i12], i11, i12]; an index out of range gives a zero row */
GC_OP void gc_op_get_rows(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                          int ith, int nth) {
    (void)params;
    const gc_tensor *a = src[0], *b = src[1];
    const int64_t n = a->ne[0];
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i10, i11, i12;
        gc_unravel_row(dst->ne, ir, &i10, &i11, &i12);
        const int64_t row = gc_get_i64(b->type, b->data + i10 * b->nb[0] + i11 * b->nb[1] + i12 * b->nb[2]);
        char *dp = gc_row_ptr(dst, i10, i11, i12);
        if (row < 0 || row >= a->ne[1]) {
            for (int64_t i = 0; i < n; i++) memset(dp + i * dst->nb[0], 0, (size_t)gc_type_size(dst->type));
            continue;
        }
        const char *sp = gc_row_ptr(a, row, i11, i12);
        if (a->type == dst->type && !gc_is_float_type(a->type)) {      /* i32 tables: exact */
            const int64_t es = gc_type_size(a->type);
            for (int64_t i = 0; i < n; i++) memcpy(dp + i * dst->nb[0], sp + i * a->nb[0], (size_t)es);
            continue;
        }
        if (gc_type_blck(a->type) > 1 && dst->type == GC_F32 && dst->nb[0] == 4) {
            gc_dequantize_row(a->type, sp, (float *)dp, n);             /* straight into dst */
            continue;
        }
        const float *x = gc_load_row(a, sp, n, tmp);
        gc_store_row(dst, dp, x, n);
    }
}

/* ---- set_rows ------------------------------------------------------------------------------------ */

static inline size_t gc_scratch_set_rows(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    return gc_rows_bytes(src[1]->ne[0], 1);
}

/* dst (a view of a) [:, c[i, i2 % c.ne1, i3 % c.ne2], i2, i3] = b[:, i, i2, i3]; other rows untouched */
GC_OP void gc_op_set_rows(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                          int ith, int nth) {
    (void)params;
    const gc_tensor *b = src[1], *c = src[2];
    const int64_t n = b->ne[0];
    int64_t r0, r1;
    gc_chunk(gc_nrows(b), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i, i2, i3;
        gc_unravel_row(b->ne, ir, &i, &i2, &i3);
        const int64_t row = gc_get_i64(c->type, c->data + i * c->nb[0] + (i2 % c->ne[1]) * c->nb[1] +
                                                    (i3 % c->ne[2]) * c->nb[2]);
        if (row < 0 || row >= dst->ne[1]) continue;
        const float *x = gc_load_row(b, gc_row_ptr(b, i, i2, i3), n, tmp);
        gc_store_row(dst, gc_row_ptr(dst, row, i2, i3), x, n);
    }
}

/* ---- cpy / dup / cont ---------------------------------------------------------------------------- */

static inline size_t gc_scratch_cpy(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)src; (void)params;
    return gc_rows_bytes(dst->ne[0], 1);
}
static inline size_t gc_scratch_dup(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    return gc_scratch_cpy(dst, src, params);
}
static inline size_t gc_scratch_cont(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    return gc_scratch_cpy(dst, src, params);
}

/* a multi-index walking a tensor in ggml element order */
typedef struct { int64_t i[4]; } gc_idx4;

static inline void gc_idx_set(gc_idx4 *ix, const int64_t *ne, int64_t f) {
    for (int d = 0; d < 4; d++) { ix->i[d] = f % ne[d]; f /= ne[d]; }
}

static inline void gc_idx_next(gc_idx4 *ix, const int64_t *ne) {
    for (int d = 0; d < 4; d++) {
        if (++ix->i[d] < ne[d]) return;
        ix->i[d] = 0;
    }
}

static inline const char *gc_idx_ptr(const gc_tensor *t, const gc_idx4 *ix) {
    return t->data + ix->i[0] * t->nb[0] + ix->i[1] * t->nb[1] + ix->i[2] * t->nb[2] + ix->i[3] * t->nb[3];
}

/* block-typed rows copied raw: the byte stream of a's rows laid into dst's rows */
static inline void gc_copy_block_rows(const gc_tensor *dst, const gc_tensor *a, int ith, int nth) {
    const int64_t rba = gc_unit_ne0(a) * gc_type_size(a->type), rbd = gc_unit_ne0(dst) * gc_type_size(dst->type);
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(dst->ne, ir, &i1, &i2, &i3);
        char *dp = gc_row_ptr(dst, i1, i2, i3);
        int64_t off = ir * rbd, done = 0;
        while (done < rbd) {
            const int64_t ra = off / rba, inrow = off % rba;
            int64_t take = rba - inrow < rbd - done ? rba - inrow : rbd - done;
            int64_t j1, j2, j3;
            gc_unravel_row(a->ne, ra, &j1, &j2, &j3);
            memcpy(dp + done, gc_row_ptr(a, j1, j2, j3) + inrow, (size_t)take);
            done += take;
            off += take;
        }
    }
}

/* a's values in ggml element order written into dst's elements in order, converted to dst's type */
static inline void gc_copy_convert(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *a, int ith, int nth) {
    if (gc_type_blck(a->type) > 1) {
        if (a->type == dst->type) gc_copy_block_rows(dst, a, ith, nth);
        return;   /* quantized -> other type: rejected by ops.py */
    }
    const int64_t n = dst->ne[0];
    const int same_shape = a->ne[0] == dst->ne[0] && a->ne[1] == dst->ne[1] && a->ne[2] == dst->ne[2] &&
                           a->ne[3] == dst->ne[3];
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0);
    const int dblk = gc_type_blck(dst->type) > 1;
    const int plain = !dblk && (a->type == dst->type || gc_is_int_type(a->type) || gc_is_int_type(dst->type));
    const int64_t es = gc_type_size(a->type);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(dst->ne, ir, &i1, &i2, &i3);
        char *dp = gc_row_ptr(dst, i1, i2, i3);
        gc_idx4 ix;
        gc_idx_set(&ix, a->ne, ir * n);
        if (same_shape && !plain) {       /* whole source row: vector conversions */
            const float *x = gc_load_row(a, gc_idx_ptr(a, &ix), n, tmp);
            gc_store_row(dst, dp, x, n);
            continue;
        }
        if (plain) {
            if (a->type == dst->type && same_shape && a->nb[0] == es && dst->nb[0] == es) {
                memmove(dp, gc_idx_ptr(a, &ix), (size_t)(n * es));
                continue;
            }
            for (int64_t i = 0; i < n; i++, gc_idx_next(&ix, a->ne))
                gc_convert_elem(a->type, gc_idx_ptr(a, &ix), dst->type, dp + i * dst->nb[0]);
            continue;
        }
        for (int64_t i = 0; i < n; i++, gc_idx_next(&ix, a->ne)) tmp[i] = gc_get_f32(a->type, gc_idx_ptr(a, &ix));
        gc_store_row(dst, dp, tmp, n);
    }
}

GC_OP void gc_op_cpy(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                     int ith, int nth) {
    (void)params;
    gc_copy_convert(ctx, dst, src[0], ith, nth);
}

GC_OP void gc_op_dup(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                     int ith, int nth) {
    (void)params;
    gc_copy_convert(ctx, dst, src[0], ith, nth);
}

GC_OP void gc_op_cont(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                      int ith, int nth) {
    (void)params;
    gc_copy_convert(ctx, dst, src[0], ith, nth);
}

/* ---- set ----------------------------------------------------------------------------------------- */

/* dst = a, then b written at byte `offset` of dst through strides (a.nb0, nb1, nb2, nb3). Each thread
 * copies its own span of dst's elements and writes only b's elements landing there: no race. */
GC_OP void gc_op_set(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                     int ith, int nth) {
    const gc_p_set *p = (const gc_p_set *)params;
    const gc_tensor *a = src[0], *b = src[1];
    const int64_t es = gc_type_size(dst->type), total = gc_nelements(dst);
    const int contiguous = dst->nb[0] == es && dst->nb[1] == es * dst->ne[0] &&
                           dst->nb[2] == dst->nb[1] * dst->ne[1] && dst->nb[3] == dst->nb[2] * dst->ne[2];
    if (!contiguous && ith != 0) return;          /* unusual layout: one thread does it all */
    if (!contiguous) nth = 1;
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    if (dst->data != a->data) {
        for (int64_t ir = r0; ir < r1; ir++) {
            int64_t i1, i2, i3;
            gc_unravel_row(dst->ne, ir, &i1, &i2, &i3);
            char *dp = gc_row_ptr(dst, i1, i2, i3);
            gc_idx4 ix;
            gc_idx_set(&ix, a->ne, ir * dst->ne[0]);
            for (int64_t i = 0; i < dst->ne[0]; i++, gc_idx_next(&ix, a->ne))
                gc_convert_elem(a->type, gc_idx_ptr(a, &ix), dst->type, dp + i * dst->nb[0]);
        }
    }
    (void)ctx;
    const int64_t lo = r0 * dst->ne[0] * es, hi = r1 * dst->ne[0] * es;   /* this thread's bytes */
    for (int64_t i3 = 0; i3 < b->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < b->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < b->ne[1]; i1++)
                for (int64_t i0 = 0; i0 < b->ne[0]; i0++) {
                    const int64_t off = p->offset + i0 * es + i1 * p->nb1 + i2 * p->nb2 + i3 * p->nb3;
                    if (off < lo || off >= hi || off + es > total * es) continue;
                    gc_convert_elem(b->type, GC_AT(b, i0, i1, i2, i3), dst->type, dst->data + off);
                }
}

/* ---- concat, pad, repeat: byte copies of elements (blocks along ne0 for block types) ----------- */

GC_OP void gc_op_concat(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                        int ith, int nth) {
    (void)ctx;
    const int dim = ((const gc_p_concat *)params)->dim;
    const gc_tensor *a = src[0], *b = src[1];
    const int64_t es = gc_type_size(dst->type), blk = gc_type_blck(dst->type);
    const int64_t n0 = dst->ne[0] / blk, split = a->ne[dim] / (dim == 0 ? blk : 1);
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    const int64_t ebs = blk > 1 ? es : dst->nb[0];   /* dst stride between units */
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i[4];
        gc_unravel_row(dst->ne, ir, &i[1], &i[2], &i[3]);
        char *dp = gc_row_ptr(dst, i[1], i[2], i[3]);
        for (i[0] = 0; i[0] < n0; i[0]++) {
            const gc_tensor *s = i[dim] < split ? a : b;
            int64_t j[4] = {i[0], i[1], i[2], i[3]};
            if (s == b) j[dim] -= split;
            const int64_t sb0 = blk > 1 ? es : s->nb[0];
            memcpy(dp + i[0] * ebs, s->data + j[0] * sb0 + j[1] * s->nb[1] + j[2] * s->nb[2] + j[3] * s->nb[3],
                   (size_t)es);
        }
    }
}

GC_OP void gc_op_pad(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                     int ith, int nth) {
    (void)ctx;
    const gc_p_pad *p = (const gc_p_pad *)params;
    const gc_tensor *a = src[0];
    const int64_t es = gc_type_size(dst->type);
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i[4];
        gc_unravel_row(dst->ne, ir, &i[1], &i[2], &i[3]);
        char *dp = gc_row_ptr(dst, i[1], i[2], i[3]);
        int inside = 1;
        int64_t j[4];
        for (int d = 1; d < 4; d++) {
            j[d] = i[d] - p->lp[d];
            if (j[d] < 0 || j[d] >= a->ne[d]) inside = 0;
        }
        for (i[0] = 0; i[0] < dst->ne[0]; i[0]++) {
            j[0] = i[0] - p->lp[0];
            char *o = dp + i[0] * dst->nb[0];
            if (inside && j[0] >= 0 && j[0] < a->ne[0])
                gc_convert_elem(a->type, GC_AT(a, j[0], j[1], j[2], j[3]), dst->type, o);
            else
                memset(o, 0, (size_t)es);
        }
    }
}

GC_OP void gc_op_repeat(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                        int ith, int nth) {
    (void)ctx; (void)params;
    const gc_tensor *a = src[0];
    if (gc_nelements(a) == 0) return;
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(dst->ne, ir, &i1, &i2, &i3);
        char *dp = gc_row_ptr(dst, i1, i2, i3);
        const char *sp = gc_row_ptr(a, i1 % a->ne[1], i2 % a->ne[2], i3 % a->ne[3]);
        for (int64_t i0 = 0; i0 < dst->ne[0]; i0++)
            gc_convert_elem(a->type, sp + (i0 % a->ne[0]) * a->nb[0], dst->type, dp + i0 * dst->nb[0]);
    }
}

/* ---- arange, diag_mask --------------------------------------------------------------------------- */

GC_OP GC_EXACT void gc_op_arange(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src,
                                 const void *params, int ith, int nth) {
    (void)ctx; (void)src;
    const gc_p_arange *p = (const gc_p_arange *)params;
    int64_t i0, i1;
    gc_chunk(dst->ne[0], ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        float v = p->step * (float)i;
        gc_put_f32(dst->type, dst->data + i * dst->nb[0], p->start + v);
    }
}

static inline void gc_diag_mask(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *a, int32_t n_past,
                                float value, int ith, int nth) {
    const int64_t n = a->ne[0];
    int64_t r0, r1;
    gc_chunk(gc_nrows(a), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, n, 0);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(a->ne, ir, &i1, &i2, &i3);
        const float *x = gc_load_row(a, gc_row_ptr(a, i1, i2, i3), n, tmp);
        if (x != tmp) memcpy(tmp, x, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            if (i > (int64_t)n_past + i1) tmp[i] = value;
        gc_store_row(dst, gc_row_ptr(dst, i1, i2, i3), tmp, n);
    }
}

static inline size_t gc_scratch_diag_mask_inf(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)dst; (void)params;
    return gc_rows_bytes(src[0]->ne[0], 1);
}
static inline size_t gc_scratch_diag_mask_zero(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    return gc_scratch_diag_mask_inf(dst, src, params);
}

GC_OP void gc_op_diag_mask_inf(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src,
                               const void *params, int ith, int nth) {
    gc_diag_mask(ctx, dst, src[0], ((const gc_p_diag_mask_inf *)params)->n_past, -INFINITY, ith, nth);
}

GC_OP void gc_op_diag_mask_zero(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src,
                                const void *params, int ith, int nth) {
    gc_diag_mask(ctx, dst, src[0], ((const gc_p_diag_mask_zero *)params)->n_past, 0.0f, ith, nth);
}

/* ---- out_prod ------------------------------------------------------------------------------------ */

static inline size_t gc_scratch_out_prod(const gc_tensor *dst, const gc_tensor *const *src, const void *params) {
    (void)params;
    return gc_rows_bytes(src[0]->ne[0] > dst->ne[0] ? src[0]->ne[0] : dst->ne[0], 2);
}

/* dst[i0, i1, i2, i3] = sum_k a[i0, k, i2 / r2, i3 / r3] * b[i1, k, i2, i3] (a dequantized) */
GC_OP void gc_op_out_prod(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, const void *params,
                          int ith, int nth) {
    (void)params;
    const gc_tensor *a = src[0], *b = src[1];
    const int64_t n = dst->ne[0], K = a->ne[1];
    const int64_t r2 = dst->ne[2] / a->ne[2], r3 = dst->ne[3] / a->ne[3];
    int64_t r0, r1;
    gc_chunk(gc_nrows(dst), ith, nth, &r0, &r1);
    float *tmp = gc_scratch_row(ctx, ith, a->ne[0], 0), *acc = gc_scratch_row(ctx, ith, a->ne[0], 1);
    for (int64_t ir = r0; ir < r1; ir++) {
        int64_t i1, i2, i3;
        gc_unravel_row(dst->ne, ir, &i1, &i2, &i3);
        memset(acc, 0, (size_t)n * sizeof(float));
        for (int64_t k = 0; k < K; k++) {
            const float bv = gc_get_f32(b->type, GC_AT(b, i1, k, i2, i3));
            const float *x = gc_load_row(a, gc_row_ptr(a, k, i2 / r2, i3 / r3), n, tmp);
            gc_vec_axpy(acc, x, bv, n);
        }
        gc_store_row(dst, gc_row_ptr(dst, i1, i2, i3), acc, n);
    }
}

#endif
