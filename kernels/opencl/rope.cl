/* rope, normal (adjacent pairs) and neox (mode 2: halves), with freq_scale, YaRN and freq_factors, as
 * kernels/c/ops_rope.h and targets/ref/attention.py: theta = pos * theta_scale^i accumulated in f32 one
 * factor at a time (so each work-item walks the chain up to its own i), cos/sin times mscale. One
 * work-group per row of a ([ne0, heads, tokens, ne3]); pos[i2] is token i2's position. Where the device
 * has double, theta_scale and cos/sin are computed in double and rounded, as the C library does. */

inline float gc_rope_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    const float denom = n_rot * 2.0f * 3.14159265358979323846f;
    return (float)n_dims * log((float)n_ctx_orig / denom) / (2.0f * log(base));
}

__kernel void gc_rope(__global char *db, const gc_t d, __global char *ab, const gc_t a, __global char *pb,
                      const gc_t pos, __global char *fb, const gc_t ff, const gc_p_rope p) {
    long i1, i2, i3;
    gc_unravel_row(a.ne, get_group_id(0), &i1, &i2, &i3);
    const long ne0 = a.ne[0];
    const int n_dims = p.n_dims, hd = n_dims / 2;
    const __global char *x = GC_ROW(ab, a, i1, i2, i3);
    __global char *y = GC_ROW(db, d, i1, i2, i3);
    const int l = get_local_id(0), L = get_local_size(0);
    if (n_dims <= 0 || n_dims > ne0) return;
#ifdef cl_khr_fp64
    const float theta_scale = (float)pow((double)p.freq_base, (double)(-2.0f / (float)n_dims));
#else
    const float theta_scale = pow(p.freq_base, -2.0f / (float)n_dims);
#endif
    float low = 0.0f, high = 0.0f, mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
        const float start = floor(gc_rope_corr_dim(n_dims, p.n_ctx_orig, p.beta_fast, p.freq_base));
        const float end = ceil(gc_rope_corr_dim(n_dims, p.n_ctx_orig, p.beta_slow, p.freq_base));
        low = fmax(0.0f, start);
        high = fmin((float)(n_dims - 1), end);
        mscale = mscale * (1.0f + 0.1f * log(1.0f / p.freq_scale));
    }
    const float p0 = (float)(int)gc_get_index(pos.type, gc_flat_at(pb, pos, i2));
    for (int i = l; i < hd; i += L) {
        float t = p0;
        for (int k = 0; k < i; k++) t = t * theta_scale;
        const float theta_extrap = ff.type >= 0 ? t / gc_get_f32(ff.type, gc_flat_at(fb, ff, i)) : t;
        const float theta_interp = p.freq_scale * theta_extrap;
        float th = theta_interp;
        if (p.ext_factor != 0.0f) {
            const float denom = fmax(0.001f, high - low);
            const float yv = ((float)i - low) / denom;
            const float ramp = 1.0f - fmin(1.0f, fmax(0.0f, yv));
            const float mix = ramp * p.ext_factor;
            th = theta_interp * (1.0f - mix) + theta_extrap * mix;
        }
#ifdef cl_khr_fp64
        const float cs = (float)cos((double)th) * mscale, sn = (float)sin((double)th) * mscale;
#else
        const float cs = cos(th) * mscale, sn = sin(th) * mscale;
#endif
        const long j0 = p.mode == 2 ? i : 2 * i, j1 = p.mode == 2 ? i + hd : 2 * i + 1;
        const float x0 = gc_get_f32(a.type, x + j0 * a.nb[0]), x1 = gc_get_f32(a.type, x + j1 * a.nb[0]);
        gc_set_f32(d.type, y + j0 * d.nb[0], x0 * cs - x1 * sn);
        gc_set_f32(d.type, y + j1 * d.nb[0], x0 * sn + x1 * cs);
    }
    for (long i = n_dims + l; i < ne0; i += L) gc_set_f32(d.type, y + i * d.nb[0], gc_get_f32(a.type, x + i * a.nb[0]));
}
