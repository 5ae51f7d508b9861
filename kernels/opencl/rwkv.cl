/* RWKV linear-attention recurrences, as targets/ref/rwkv.py and kernels/c/ops_rwkv.h.
 * wkv6 / wkv7: inputs [S, H, T]; the state holds n_seqs blocks of H*S*S floats; the T tokens are n_seqs runs
 * of T/n_seqs; the result [S*H, T + S*n_seqs] holds the T output rows, then every sequence's final state.
 * The state lives in its place in the result from the start; each work-item owns one column (wkv6) or one
 * row (wkv7) of one head's S x S state, which no other work-item touches, so there are no barriers. */

/* element i of row (h, t) of an [S, H, T] input */
inline float gc_rwkv_in(const __global char *b, const gc_t x, long i, long h, long t) {
    return gc_get_f32(x.type, GC_AT(b, x, i, h, t, 0));
}

/* out[t,h,j] = sum_i r[i] (tf[h,i] k[i] v[j] + st[i][j]);  st[i][j] = st[i][j] td[i] + k[i] v[j] */
__kernel void gc_rwkv_wkv6(__global char *db, const gc_t d, __global char *kb, const gc_t k, __global char *vb,
                           const gc_t v, __global char *rb, const gc_t r, __global char *fb, const gc_t tf,
                           __global char *wb, const gc_t td, __global char *sb, const gc_t state,
                           const gc_p_rwkv_wkv6 p) {
    const long S = k.ne[0], H = k.ne[1], T = k.ne[2], C = S * H;
    const long n_seqs = state.ne[1], per = n_seqs > 0 ? T / n_seqs : 0;
    const long g = get_global_id(0);
    if (g >= n_seqs * H * S) return;
    const long j = g % S, h = (g / S) % H, seq = g / (S * H);
    const long base = T * C + seq * H * S * S + h * S * S;     /* this head's state in dst, flat */
    for (long i = 0; i < S; i++) {
        const long e = seq * H * S * S + h * S * S + i * S + j;
        gc_set_f32(d.type, gc_flat_at(db, d, base + i * S + j), gc_get_f32(state.type, gc_flat_at(sb, state, e)));
    }
    for (long t = seq * per; t < (seq + 1) * per; t++) {
        const float vj = gc_rwkv_in(vb, v, j, h, t);
        float o = 0.0f;
        for (long i = 0; i < S; i++) {
            __global float *st = (__global float *)gc_flat_at(db, d, base + i * S + j);
            const float kv = gc_rwkv_in(kb, k, i, h, t) * vj;
            const float tfi = gc_get_f32(tf.type, gc_flat_at(fb, tf, h * S + i));
            const float tmp = kv * tfi + *st;
            o += gc_rwkv_in(rb, r, i, h, t) * tmp;
            *st = *st * gc_rwkv_in(wb, td, i, h, t) + kv;
        }
        *(__global float *)gc_flat_at(db, d, t * C + h * S + j) = o;
    }
}

/* sa[i] = sum_j a[j] st[i][j];  st[i][j] = st[i][j] w[j] + v[i] k[j] + sa[i] b[j];  out[i] = sum_j st[i][j] r[j] */
__kernel void gc_rwkv_wkv7(__global char *db, const gc_t d, __global char *rb, const gc_t r, __global char *wb,
                           const gc_t w, __global char *kb, const gc_t k, __global char *vb, const gc_t v,
                           __global char *ab, const gc_t a, __global char *bb, const gc_t b, __global char *sb,
                           const gc_t state, const gc_p_rwkv_wkv7 p) {
    const long S = k.ne[0], H = k.ne[1], T = k.ne[2], C = S * H;
    const long n_seqs = state.ne[1], per = n_seqs > 0 ? T / n_seqs : 0;
    const long g = get_global_id(0);
    if (g >= n_seqs * H * S) return;
    const long i = g % S, h = (g / S) % H, seq = g / (S * H);
    const long base = T * C + seq * H * S * S + h * S * S + i * S;     /* state row i in dst, flat */
    for (long j = 0; j < S; j++) {
        const long e = seq * H * S * S + h * S * S + i * S + j;
        gc_set_f32(d.type, gc_flat_at(db, d, base + j), gc_get_f32(state.type, gc_flat_at(sb, state, e)));
    }
    for (long t = seq * per; t < (seq + 1) * per; t++) {
        float sa = 0.0f;
        for (long j = 0; j < S; j++) sa += gc_rwkv_in(ab, a, j, h, t) * *(__global float *)gc_flat_at(db, d, base + j);
        const float vi = gc_rwkv_in(vb, v, i, h, t);
        float o = 0.0f;
        for (long j = 0; j < S; j++) {
            __global float *st = (__global float *)gc_flat_at(db, d, base + j);
            const float s = *st * gc_rwkv_in(wb, w, j, h, t) + vi * gc_rwkv_in(kb, k, j, h, t) +
                            sa * gc_rwkv_in(bb, b, j, h, t);
            *st = s;
            o += s * gc_rwkv_in(rb, r, j, h, t);
        }
        *(__global float *)gc_flat_at(db, d, t * C + h * S + i) = o;
    }
}

/* rwkv_wkv4 (graphc): RWKV-4's WKV with a running max exponent pp, as ChatRWKV's att_seq. k, v [C, T];
 * w (= -exp(time_decay)), u (time_first): C values; state [3*C, n_seqs] = rows aa, bb, pp per sequence.
 * dst [C, T + 3*n_seqs]: T wkv rows, then each sequence's new aa, bb, pp rows. One work-item per channel. */

/* max that keeps a NaN from either side (torch.maximum / np.maximum) */
inline float gc_wkv4_max(float a, float b) { return (a > b || isnan(a)) ? a : b; }

__kernel void gc_rwkv_wkv4(__global char *db, const gc_t d, __global char *kb, const gc_t k, __global char *vb,
                           const gc_t v, __global char *wb, const gc_t w, __global char *ub, const gc_t u,
                           __global char *sb, const gc_t state, const gc_p_rwkv_wkv4 p) {
    const long C = k.ne[0], T = k.ne[1], n_seqs = state.ne[1], per = n_seqs > 0 ? T / n_seqs : 0;
    const long c = get_global_id(0);
    if (c >= C) return;
    const float wc = gc_get_f32(w.type, gc_flat_at(wb, w, c)), uc = gc_get_f32(u.type, gc_flat_at(ub, u, c));
    for (long seq = 0; seq < n_seqs; seq++) {
        float aa = gc_get_f32(state.type, GC_AT(sb, state, c, seq, 0, 0));
        float bb = gc_get_f32(state.type, GC_AT(sb, state, C + c, seq, 0, 0));
        float pp = gc_get_f32(state.type, GC_AT(sb, state, 2 * C + c, seq, 0, 0));
        for (long t = seq * per; t < (seq + 1) * per; t++) {
            const float kk = gc_get_f32(k.type, GC_AT(kb, k, c, t, 0, 0));
            const float vv = gc_get_f32(v.type, GC_AT(vb, v, c, t, 0, 0));
            float ww = uc + kk, q = gc_wkv4_max(pp, ww);
            float e1 = exp(pp - q), e2 = exp(ww - q);
            *(__global float *)GC_AT(db, d, c, t, 0, 0) = (e1 * aa + e2 * vv) / (e1 * bb + e2);
            ww = wc + pp;
            q = gc_wkv4_max(ww, kk);
            e1 = exp(ww - q);
            e2 = exp(kk - q);
            aa = e1 * aa + e2 * vv;
            bb = e1 * bb + e2;
            pp = q;
        }
        *(__global float *)GC_AT(db, d, c, T + 3 * seq, 0, 0) = aa;
        *(__global float *)GC_AT(db, d, c, T + 3 * seq + 1, 0, 0) = bb;
        *(__global float *)GC_AT(db, d, c, T + 3 * seq + 2, 0, 0) = pp;
    }
}
