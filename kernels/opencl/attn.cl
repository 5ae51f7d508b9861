/* flash_attn_ext as targets/ref/attention.py and kernels/c/ops_attn.h: per query row, scores K.Q (Q first
 * taken through K's vec_dot_type as ggml does: f16/bf16 rounding, or 8-bit block quantization for
 * block-typed K) times scale (softcap: softcap*tanh(s*scale/softcap)), plus slope*mask (mask read as f16;
 * -inf keys skipped), softmax with sinks, times V; f32 accumulation. dst is [Dv, n_head, n_q, ne3].
 *
 * One work-group per query row (query x head x batch). The prepared Q row sits in local memory; pass 1:
 * every work-item scores its own keys (j = l, l + L, ...) for the row max; pass 2 walks the keys in chunks
 * of L: each work-item scores and exponentiates one key of the chunk into local memory, then each owns
 * output dimensions d = l, l + L, ... and adds the chunk's p_j * v_j[d] in key order, as C does. */

#define GC_FA_D 1024        /* largest head dimension (Q, K and V rows) */
#define GC_FA_L 64          /* work-items per work-group, at most */

/* Q row element values as ggml's vec_dot with K's type sees them; the whole work-group calls this */
inline void gc_fa_round_q(__local float *q, long n, long ktype) {
    const int l = get_local_id(0), L = get_local_size(0);
    switch (ktype) {
    case GC_F16:
        for (long i = l; i < n; i += L) q[i] = gc_f16_round(q[i]);
        break;
    case GC_BF16:
        for (long i = l; i < n; i += L) q[i] = as_float((uint)gc_f32_to_bf16(q[i]) << 16);
        break;
    case GC_Q4_0: case GC_Q4_1: case GC_Q5_0: case GC_Q5_1: case GC_Q8_0:
        /* q8_0 / q8_1 as ggml's x86 from_float makes them (id = 127/amax, ties to even) */
        for (long b = 32 * l; b + 32 <= n; b += 32 * L) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(q[b + j]));
            const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
            const float dh = gc_f16_round(d);
            for (int j = 0; j < 32; j++) {
                float v = rint(q[b + j] * id);
                v = v > 127.0f ? 127.0f : (v < -128.0f ? -128.0f : v);
                q[b + j] = v * dh;
            }
        }
        break;
    case GC_Q2_K: case GC_Q3_K: case GC_Q4_K: case GC_Q5_K: case GC_Q6_K:
        /* q8_K (quantize_row_q8_K_ref: iscale = -127/max, nearest int, d = 1/iscale) */
        for (long b = 256 * l; b + 256 <= n; b += 256 * L) {
            float amax = 0.0f, mx = 0.0f;
            for (int j = 0; j < 256; j++)
                if (amax < fabs(q[b + j])) { amax = fabs(q[b + j]); mx = q[b + j]; }
            if (amax == 0.0f) { for (int j = 0; j < 256; j++) q[b + j] = 0.0f; continue; }
            const float iscale = -127.0f / mx, d = 1.0f / iscale;
            for (int j = 0; j < 256; j++) {
                float v = rint(iscale * q[b + j]);
                q[b + j] = d * (v > 127.0f ? 127.0f : v);
            }
        }
        break;
    default:
        break;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* score of key j for the prepared row q (-INFINITY: masked out) */
inline float gc_fa_score(const __local float *q, const __global char *kr, const gc_t k, const __global char *mr,
                         const gc_t m, float scale, float softcap, float slope) {
    float mv = 0.0f;
    if (m.type >= 0) {
        mv = slope * gc_f16_round(gc_get_f32(m.type, mr));
        if (mv == -INFINITY) return -INFINITY;
    }
    float s = 0.0f;
    for (long i = 0; i < k.ne[0]; i++) s += q[i] * gc_row_get(k.type, kr, k.nb[0], i);
    s *= scale;
    if (softcap != 0.0f) s = softcap * tanh(s);
    return s + mv;
}

__kernel void gc_flash_attn_ext(__global char *db, const gc_t d, __global char *qb, const gc_t q, __global char *kb,
                                const gc_t k, __global char *vb, const gc_t v, __global char *mb, const gc_t m,
                                __global char *sb, const gc_t sk, const gc_p_flash_attn_ext p) {
    __local float qrow[GC_FA_D];
    __local float pj[GC_FA_L];
    __local float red[GC_FA_L];
    const int l = get_local_id(0), L = get_local_size(0);
    const long H = q.ne[2], Nq = q.ne[1], Nk = k.ne[1], D = q.ne[0], Dv = v.ne[0];
    const long ir = get_group_id(0);
    const long h = ir % H, iq = (ir / H) % Nq, b = ir / (H * Nq);
    const long hk = h / (H / k.ne[2]), bk = b / (q.ne[3] / k.ne[3]);
    const __global char *qr = GC_ROW(qb, q, iq, h, b);
    for (long i = l; i < D; i += L) qrow[i] = gc_row_get(q.type, qr, q.nb[0], i);
    barrier(CLK_LOCAL_MEM_FENCE);
    gc_fa_round_q(qrow, D, k.type);

    const float softcap = p.softcap, scale = softcap != 0.0f ? p.scale / softcap : p.scale;
    const int has_mask = m.type >= 0;
    const float slope = has_mask ? gc_alibi_slope(p.max_bias, H, h) : 1.0f;
    const __global char *mr = has_mask ? GC_ROW(mb, m, iq, h % m.ne[2], b % m.ne[3]) : qr;
    const long mstep = has_mask ? m.nb[0] : 0;

    /* pass 1: the row max (NaN-sticky) */
    float mx = -INFINITY;
    for (long j = l; j < Nk; j += L)
        mx = gc_nan_max(mx, gc_fa_score(qrow, GC_ROW(kb, k, j, hk, bk), k, mr + j * mstep, m, scale, softcap, slope));
    mx = gc_wg_max(mx, red);
    float skv = 0.0f;
    if (sk.type >= 0) {
        skv = gc_get_f32(sk.type, gc_flat_at(sb, sk, h));
        mx = isnan(mx) ? mx : fmax(skv, mx);
    }

    /* pass 2: p_j = exp(s_j - max), sum_j p_j v_j over chunks of L keys */
    float acc[GC_FA_D / GC_FA_L];
    for (int c = 0; c < GC_FA_D / GC_FA_L; c++) acc[c] = 0.0f;
    gc_wide total = 0.0;
    for (long j0 = 0; j0 < Nk; j0 += L) {
        const long j = j0 + l;
        if (j < Nk) {
            const float s = gc_fa_score(qrow, GC_ROW(kb, k, j, hk, bk), k, mr + j * mstep, m, scale, softcap, slope);
            pj[l] = s == -INFINITY ? 0.0f : exp(s - mx);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const long n = min((long)L, Nk - j0);
        for (long jj = 0; jj < n; jj++) {
            const float w = pj[jj];
            if (l == 0) total += (gc_wide)w;
            if (w == 0.0f) continue;               /* a masked-out key: weight 0, V not read */
            const __global char *vr = GC_ROW(vb, v, j0 + jj, hk, bk);
            for (long e = l, c = 0; e < Dv; e += L, c++) acc[c] += w * gc_row_get(v.type, vr, v.nb[0], e);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) red[0] = (float)total;
    barrier(CLK_LOCAL_MEM_FENCE);
    float tot = red[0];
    if (sk.type >= 0) tot = tot + exp(skv - mx);
    const float inv = tot == 0.0f ? 0.0f : 1.0f / tot;
    __global char *y = GC_ROW(db, d, h, iq, b);
    for (long e = l, c = 0; e < Dv; e += L, c++) gc_set_f32(d.type, y + e * d.nb[0], acc[c] * inv);
}
