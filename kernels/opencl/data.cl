/* Copies, gathers, scatters and shape ops (kernels/c/ops_data.h, targets/ref/shape.py): one work-group
 * per destination row (or per source row for set_rows), its work-items striding over the row. Conversions
 * go through f32 (f16 one RNE rounding, bf16 ggml's rounding, block types ggml's reference quantizer);
 * same-type copies move bytes; integers convert exactly. */

inline int gc_is_int(long type) { return type == GC_I32 || type == GC_I16 || type == GC_I8 || type == GC_I64; }

inline void gc_copy_bytes(__global char *d, const __global char *s, int n) {
    for (int k = 0; k < n; k++) d[k] = s[k];
}

/* one plain element converted between types as ggml/ref do (int -> int exact, else through f32) */
inline void gc_convert_elem(long st, const __global char *s, long dt, __global char *d) {
    if (st == dt) { gc_copy_bytes(d, s, gc_type_size(st)); return; }
    if (gc_is_int(st) && gc_is_int(dt)) {
        const long v = gc_get_index(st == GC_I64 ? GC_I64 : GC_I32, s);
        const long w = st == GC_I16 ? (long)*(const __global short *)s : st == GC_I8 ? (long)*(const __global char *)s : v;
        switch (dt) {
        case GC_I32: *(__global int *)d = (int)w; break;
        case GC_I16: *(__global short *)d = (short)w; break;
        case GC_I8: *(__global char *)d = (char)w; break;
        default: *(__global long *)d = w; break;
        }
        return;
    }
    gc_set_f32(dt, d, gc_get_f32(st, s));
}

inline void gc_zero_elem(long type, __global char *d) {
    for (int k = 0; k < gc_type_size(type); k++) d[k] = 0;
}

/* ---- get_rows: dst[:, i10, i11, i12] = a[:, b[i10, i11, i12], i11, i12]; out of range -> zeros ---------- */
__kernel void gc_get_rows(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *bb,
                          const gc_t b, const gc_p_get_rows p) {
    long i10, i11, i12;
    gc_unravel_row(d.ne, get_group_id(0), &i10, &i11, &i12);
    const long row = gc_get_index(b.type, GC_AT(bb, b, i10, i11, i12, 0));
    __global char *dp = GC_ROW(db, d, i10, i11, i12);
    const int l = get_local_id(0), L = get_local_size(0);
    if (row < 0 || row >= a.ne[1]) {
        for (long i = l; i < d.ne[0]; i += L) gc_zero_elem(d.type, dp + i * d.nb[0]);
        return;
    }
    const __global char *sp = GC_ROW(ab, a, row, i11, i12);
    if (a.type == d.type && gc_type_blck(a.type) == 1) {
        for (long i = l; i < d.ne[0]; i += L) gc_copy_bytes(dp + i * d.nb[0], sp + i * a.nb[0], gc_type_size(a.type));
        return;
    }
    for (long i = l; i < d.ne[0]; i += L) gc_set_f32(d.type, dp + i * d.nb[0], gc_row_get(a.type, sp, a.nb[0], i));
}

/* ---- set_rows: dst (a view of a) [:, c[i, i2 % c.ne1, i3 % c.ne2], i2, i3] = b[:, i, i2, i3] ---------- */
__kernel void gc_set_rows(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *bb,
                          const gc_t b, __global char *cb, const gc_t c, const gc_p_set_rows p) {
    long i, i2, i3;
    gc_unravel_row(b.ne, get_group_id(0), &i, &i2, &i3);
    const long row = gc_get_index(c.type, GC_AT(cb, c, i, i2 % c.ne[1], i3 % c.ne[2], 0));
    if (row < 0 || row >= d.ne[1]) return;
    const __global char *sp = GC_ROW(bb, b, i, i2, i3);
    __global char *dp = GC_ROW(db, d, row, i2, i3);
    const int l = get_local_id(0), L = get_local_size(0);
    const int blck = gc_type_blck(d.type);
    if (blck > 1) {                                   /* one work-item per block: the reference quantizer */
        for (long k = l; k < b.ne[0] / blck; k += L) {
            float x[32];
            for (int j = 0; j < 32; j++) x[j] = gc_get_f32(b.type, sp + (k * 32 + j) * b.nb[0]);
            gc_quantize_block(d.type, x, (__global uchar *)dp + k * gc_type_size(d.type));
        }
        return;
    }
    for (long k = l; k < b.ne[0]; k += L) gc_convert_elem(b.type, sp + k * b.nb[0], d.type, dp + k * d.nb[0]);
}

/* ---- cpy / dup / cont: a's elements in ggml order into dst's, converted ------------------------------- */
__kernel void gc_copy_convert(__global char *db, const gc_t d, __global char *ab, const gc_t a) {
    const long ir = get_group_id(0);
    long i1, i2, i3;
    gc_unravel_row(d.ne, ir, &i1, &i2, &i3);
    __global char *dp = GC_ROW(db, d, i1, i2, i3);
    const int l = get_local_id(0), L = get_local_size(0);
    const int ablk = gc_type_blck(a.type), dblk = gc_type_blck(d.type);
    if (ablk > 1) {                                   /* same block type: the rows' byte stream, raw */
        const long rba = a.ne[0] / ablk * gc_type_size(a.type), rbd = d.ne[0] / dblk * gc_type_size(d.type);
        for (long k = l; k < rbd; k += L) {
            const long off = ir * rbd + k, ra = off / rba;
            long j1, j2, j3;
            gc_unravel_row(a.ne, ra, &j1, &j2, &j3);
            dp[k] = GC_ROW(ab, a, j1, j2, j3)[off % rba];
        }
        return;
    }
    if (dblk > 1) {                                   /* quantize: one work-item per block of the row */
        for (long k = l; k < d.ne[0] / dblk; k += L) {
            float x[32];
            for (int j = 0; j < 32; j++) x[j] = gc_get_f32(a.type, gc_flat_at(ab, a, ir * d.ne[0] + k * 32 + j));
            gc_quantize_block(d.type, x, (__global uchar *)dp + k * gc_type_size(d.type));
        }
        return;
    }
    for (long k = l; k < d.ne[0]; k += L) gc_convert_elem(a.type, gc_flat_at(ab, a, ir * d.ne[0] + k), d.type, dp + k * d.nb[0]);
}

/* ---- set: dst = a (when not in place), then b at byte `offset` of dst through strides (nb0, nb1..3) --- */
__kernel void gc_set_values(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *bb,
                            const gc_t b, const gc_p_set p) {
    const long f = get_global_id(0);
    if (f >= GC_NELEMENTS(b)) return;
    long i0 = f % b.ne[0], r = f / b.ne[0];
    const long i1 = r % b.ne[1], i2 = (r / b.ne[1]) % b.ne[2], i3 = r / (b.ne[1] * b.ne[2]);
    const long es = gc_type_size(d.type);
    const long off = p.offset + i0 * es + i1 * p.nb1 + i2 * p.nb2 + i3 * p.nb3;
    if (off < 0 || off + es > GC_NELEMENTS(d) * es) return;
    gc_convert_elem(b.type, GC_AT(bb, b, i0, i1, i2, i3), d.type, db + d.off + off);
}

/* ---- concat: byte copies of elements (whole blocks along ne0 for block types) -------------------------- */
__kernel void gc_concat(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *bb,
                        const gc_t b, const gc_p_concat p) {
    long i[4];
    gc_unravel_row(d.ne, get_group_id(0), &i[1], &i[2], &i[3]);
    __global char *dp = GC_ROW(db, d, i[1], i[2], i[3]);
    const int blk = gc_type_blck(d.type), es = gc_type_size(d.type), dim = p.dim;
    const long n0 = d.ne[0] / blk, split = a.ne[dim] / (dim == 0 ? blk : 1);
    const long ebs = blk > 1 ? es : d.nb[0];
    for (long k = get_local_id(0); k < n0; k += get_local_size(0)) {
        long j[4] = {k, i[1], i[2], i[3]};
        const int first = (dim == 0 ? k : i[dim]) < split;
        if (!first) j[dim] -= split;
        const __global char *s = first ? ab + a.off + j[0] * (blk > 1 ? es : a.nb[0]) + j[1] * a.nb[1] + j[2] * a.nb[2] + j[3] * a.nb[3]
                                       : bb + b.off + j[0] * (blk > 1 ? es : b.nb[0]) + j[1] * b.nb[1] + j[2] * b.nb[2] + j[3] * b.nb[3];
        gc_copy_bytes(dp + k * ebs, s, es);
    }
}

/* ---- pad: a at offsets lp, zeros elsewhere ------------------------------------------------------------- */
__kernel void gc_pad(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_pad p) {
    long i1, i2, i3;
    gc_unravel_row(d.ne, get_group_id(0), &i1, &i2, &i3);
    __global char *dp = GC_ROW(db, d, i1, i2, i3);
    const long j1 = i1 - p.lp[1], j2 = i2 - p.lp[2], j3 = i3 - p.lp[3];
    const int inside = j1 >= 0 && j1 < a.ne[1] && j2 >= 0 && j2 < a.ne[2] && j3 >= 0 && j3 < a.ne[3];
    for (long k = get_local_id(0); k < d.ne[0]; k += get_local_size(0)) {
        const long j0 = k - p.lp[0];
        if (inside && j0 >= 0 && j0 < a.ne[0]) gc_convert_elem(a.type, GC_AT(ab, a, j0, j1, j2, j3), d.type, dp + k * d.nb[0]);
        else gc_zero_elem(d.type, dp + k * d.nb[0]);
    }
}

/* ---- repeat: a tiled over dst (plain types; the generated copy kernels take float repeats) --------------- */
__kernel void gc_repeat(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_repeat p) {
    long i1, i2, i3;
    gc_unravel_row(d.ne, get_group_id(0), &i1, &i2, &i3);
    __global char *dp = GC_ROW(db, d, i1, i2, i3);
    const __global char *sp = GC_ROW(ab, a, i1 % a.ne[1], i2 % a.ne[2], i3 % a.ne[3]);
    for (long k = get_local_id(0); k < d.ne[0]; k += get_local_size(0))
        gc_convert_elem(a.type, sp + (k % a.ne[0]) * a.nb[0], d.type, dp + k * d.nb[0]);
}

/* ---- arange ------------------------------------------------------------------------------------------ */
__kernel void gc_arange(__global char *db, const gc_t d, const gc_p_arange p) {
    const long i = get_global_id(0);
    if (i >= d.ne[0]) return;
    const float v = p.step * (float)i;
    gc_set_f32(d.type, db + d.off + i * d.nb[0], p.start + v);
}

/* ---- diag_mask_inf / diag_mask_zero: elements i > n_past + i1 set to value ---------------------------- */
inline void gc_diag_mask(__global char *db, const gc_t d, const __global char *ab, const gc_t a, int n_past, float value) {
    long i1, i2, i3;
    gc_unravel_row(a.ne, get_group_id(0), &i1, &i2, &i3);
    const __global char *sp = GC_ROW(ab, a, i1, i2, i3);
    __global char *dp = GC_ROW(db, d, i1, i2, i3);
    for (long k = get_local_id(0); k < a.ne[0]; k += get_local_size(0)) {
        const float v = k > (long)n_past + i1 ? value : gc_get_f32(a.type, sp + k * a.nb[0]);
        gc_set_f32(d.type, dp + k * d.nb[0], v);
    }
}

__kernel void gc_diag_mask_inf(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_diag_mask_inf p) {
    gc_diag_mask(db, d, ab, a, p.n_past, -INFINITY);
}

__kernel void gc_diag_mask_zero(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_diag_mask_zero p) {
    gc_diag_mask(db, d, ab, a, p.n_past, 0.0f);
}
