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
