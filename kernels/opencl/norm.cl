/* Reductions along ne0 and normalisations (targets/ref/reduce.py, kernels/c/ops_norm.h): one work-group
 * per row, sums in f32 as a tree in local memory (ref sums in f64; a tree of f32 sums stays within
 * ~1e-7 relative of it). Sources and destination may be any strided view, f32/f16/bf16. */

/* kind 0 norm, 1 rms_norm, 2 l2_norm */
inline void gc_norm_row(__global char *db, const gc_t d, const __global char *ab, const gc_t a, float eps,
                        int kind, __local float *red) {
    const long n = a.ne[0];
    long i1, i2, i3;
    gc_unravel_row(a.ne, get_group_id(0), &i1, &i2, &i3);
    const __global char *x = GC_ROW(ab, a, i1, i2, i3);
    __global char *y = GC_ROW(db, d, i1, i2, i3);
    const int l = get_local_id(0), L = get_local_size(0);
    float scale, mean = 0.0f;
    if (kind == 0) {
        float s = 0.0f;
        for (long i = l; i < n; i += L) s += gc_get_f32(a.type, x + i * a.nb[0]);
        mean = gc_wg_sum(s, red) / (float)n;
        float s2 = 0.0f;
        for (long i = l; i < n; i += L) {
            const float v = gc_get_f32(a.type, x + i * a.nb[0]) - mean;
            s2 += v * v;
        }
        const float var = gc_wg_sum(s2, red) / (float)n;
        scale = 1.0f / sqrt(var + eps);
    } else {
        float s2 = 0.0f;
        for (long i = l; i < n; i += L) {
            const float v = gc_get_f32(a.type, x + i * a.nb[0]);
            s2 += v * v;
        }
        const float ss = gc_wg_sum(s2, red);
        scale = kind == 1 ? 1.0f / sqrt(ss / (float)n + eps) : 1.0f / fmax(sqrt(ss), eps);
    }
    for (long i = l; i < n; i += L)
        gc_set_f32(d.type, y + i * d.nb[0], (gc_get_f32(a.type, x + i * a.nb[0]) - mean) * scale);
}

__kernel void gc_norm(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_norm p) {
    __local float red[GC_WG];
    gc_norm_row(db, d, ab, a, p.eps, 0, red);
}

__kernel void gc_rms_norm(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_rms_norm p) {
    __local float red[GC_WG];
    gc_norm_row(db, d, ab, a, p.eps, 1, red);
}

__kernel void gc_l2_norm(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_l2_norm p) {
    __local float red[GC_WG];
    gc_norm_row(db, d, ab, a, p.eps, 2, red);
}

/* ---- group_norm: groups of ceil(ne2 / n_groups) channels along ne2, per i3; one work-group per group -- */
__kernel void gc_group_norm(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_group_norm p) {
    __local float red[GC_WG];
    const long ne0 = a.ne[0], ne1 = a.ne[1], ne2 = a.ne[2];
    const long G = p.n_groups > 0 ? p.n_groups : 1;
    const long per = (ne2 + G - 1) / G, ngr = per > 0 ? (ne2 + per - 1) / per : 0;
    const long u = get_group_id(0), i3 = u / ngr, c0 = (u % ngr) * per, c1 = min(c0 + per, ne2);
    const long cnt = ne0 * ne1 * (c1 - c0);
    const int l = get_local_id(0), L = get_local_size(0);
    float s = 0.0f;
    for (long f = l; f < cnt; f += L) {
        const long i0 = f % ne0, i1 = (f / ne0) % ne1, i2 = c0 + f / (ne0 * ne1);
        s += gc_get_f32(a.type, GC_AT(ab, a, i0, i1, i2, i3));
    }
    const float mean = gc_wg_sum(s, red) / (float)cnt;
    float s2 = 0.0f;
    for (long f = l; f < cnt; f += L) {
        const long i0 = f % ne0, i1 = (f / ne0) % ne1, i2 = c0 + f / (ne0 * ne1);
        const float v = gc_get_f32(a.type, GC_AT(ab, a, i0, i1, i2, i3)) - mean;
        s2 += v * v;
    }
    const float scale = 1.0f / sqrt(gc_wg_sum(s2, red) / (float)cnt + p.eps);
    for (long f = l; f < cnt; f += L) {
        const long i0 = f % ne0, i1 = (f / ne0) % ne1, i2 = c0 + f / (ne0 * ne1);
        gc_set_f32(d.type, GC_AT(db, d, i0, i1, i2, i3), (gc_get_f32(a.type, GC_AT(ab, a, i0, i1, i2, i3)) - mean) * scale);
    }
}

/* ---- sum (one work-group), sum_rows and mean (one per row) ------------------------------------------ */
__kernel void gc_sum(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_sum p) {
    __local float red[GC_WG];
    const long total = GC_NELEMENTS(a);
    float s = 0.0f;
    for (long f = get_local_id(0); f < total; f += get_local_size(0)) {
        const long i0 = f % a.ne[0], r = f / a.ne[0];
        long i1, i2, i3;
        gc_unravel_row(a.ne, r, &i1, &i2, &i3);
        s += gc_get_f32(a.type, GC_AT(ab, a, i0, i1, i2, i3));
    }
    s = gc_wg_sum(s, red);
    if (get_local_id(0) == 0) gc_set_f32(d.type, db + d.off, s);
}

inline void gc_row_sum(__global char *db, const gc_t d, const __global char *ab, const gc_t a, int mean,
                       __local float *red) {
    long i1, i2, i3;
    gc_unravel_row(a.ne, get_group_id(0), &i1, &i2, &i3);
    const __global char *x = GC_ROW(ab, a, i1, i2, i3);
    float s = 0.0f;
    for (long i = get_local_id(0); i < a.ne[0]; i += get_local_size(0)) s += gc_get_f32(a.type, x + i * a.nb[0]);
    s = gc_wg_sum(s, red);
    if (mean) s = s / (float)a.ne[0];
    if (get_local_id(0) == 0) gc_set_f32(d.type, GC_ROW(db, d, i1, i2, i3), s);
}

__kernel void gc_sum_rows(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_sum_rows p) {
    __local float red[GC_WG];
    gc_row_sum(db, d, ab, a, 0, red);
}

__kernel void gc_mean(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_mean p) {
    __local float red[GC_WG];
    gc_row_sum(db, d, ab, a, 1, red);
}

/* ---- argmax: the LAST index of each row's maximum (ggml), as i32 -------------------------------------- */
__kernel void gc_argmax(__global char *db, const gc_t d, __global char *ab, const gc_t a, const gc_p_argmax p) {
    __local float vbuf[GC_WG];
    __local int ibuf[GC_WG];
    const long i1 = get_group_id(0);
    const int l = get_local_id(0), L = get_local_size(0);
    const __global char *x = GC_ROW(ab, a, i1, 0, 0);
    float best = -INFINITY;
    int idx = -1;
    for (long i = l; i < a.ne[0]; i += L) {
        const float v = gc_get_f32(a.type, x + i * a.nb[0]);
        if (v >= best) { best = v; idx = (int)i; }
    }
    vbuf[l] = best;
    ibuf[l] = idx;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = L / 2; s > 0; s >>= 1) {
        if (l < s) {
            const float v = vbuf[l + s];
            const int j = ibuf[l + s];
            if (v > vbuf[l] || (v == vbuf[l] && j > ibuf[l])) { vbuf[l] = v; ibuf[l] = j; }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) *(__global int *)(db + d.off + i1 * d.nb[0]) = ibuf[0] < 0 ? 0 : ibuf[0];
}

/* ---- soft_max: softmax(x * scale + slope * mask) along ne0, with optional sinks ------------------------ */
__kernel void gc_soft_max(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *mb,
                          const gc_t m, __global char *sb, const gc_t sk, const gc_p_soft_max p) {
    __local float red[GC_WG];
    long i1, i2, i3;
    gc_unravel_row(a.ne, get_group_id(0), &i1, &i2, &i3);
    const int l = get_local_id(0), L = get_local_size(0);
    const long n = a.ne[0];
    const __global char *x = GC_ROW(ab, a, i1, i2, i3);
    const int has_mask = m.type >= 0;
    const float slope = has_mask ? gc_alibi_slope(p.max_bias, a.ne[2], i2) : 1.0f;
    const __global char *mr = has_mask ? GC_ROW(mb, m, i1, i2 % m.ne[2], i3 % m.ne[3]) : x;
    float mx = -INFINITY;
    for (long i = l; i < n; i += L) {
        float w = gc_get_f32(a.type, x + i * a.nb[0]) * p.scale;
        if (has_mask) w += slope * gc_get_f32(m.type, mr + i * m.nb[0]);
        mx = gc_nan_max(mx, w);
    }
    mx = gc_wg_max(mx, red);
    float skv = 0.0f;
    const int has_sinks = sk.type >= 0;
    if (has_sinks) {
        skv = gc_get_f32(sk.type, gc_flat_at(sb, sk, i2));
        mx = isnan(mx) ? mx : fmax(skv, mx);
    }
    float s = 0.0f;
    for (long i = l; i < n; i += L) {
        float w = gc_get_f32(a.type, x + i * a.nb[0]) * p.scale;
        if (has_mask) w += slope * gc_get_f32(m.type, mr + i * m.nb[0]);
        s += exp(w - mx);
    }
    s = gc_wg_sum(s, red);
    if (has_sinks) s += exp(skv - mx);
    const float inv = 1.0f / s;
    __global char *y = GC_ROW(db, d, i1, i2, i3);
    for (long i = l; i < n; i += L) {
        float w = gc_get_f32(a.type, x + i * a.nb[0]) * p.scale;
        if (has_mask) w += slope * gc_get_f32(m.type, mr + i * m.nb[0]);
        gc_set_f32(d.type, y + i * d.nb[0], exp(w - mx) * inv);
    }
}
