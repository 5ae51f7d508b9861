"""Reductions along ne0 and normalisations (kernels/opencl/norm.cl, targets/ref/reduce.py): one program
per row, BLOCK lanes summing in f32 and reduced at the end (ref sums in f64; blocked f32 sums stay within
~1e-7 relative of it). Sources and destination may be any strided view, f32/f16/bf16."""
import triton
import triton.language as tl

from .common import alibi_slope, at, flat_at, get, max_nan, nan_max, put, row_at


@triton.jit
def norm_rows(DB, D, AB, A, eps, KIND: tl.constexpr, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """KIND 0 norm, 1 rms_norm, 2 l2_norm."""
    r = tl.program_id(0).to(tl.int64)
    x = row_at(AB, A, r)
    y = row_at(DB, D, r)
    n = A[1]
    mean = 0.0
    if KIND == 0:
        s = tl.zeros([BLOCK], tl.float32)
        for k0 in range(0, n, BLOCK):
            k = k0 + tl.arange(0, BLOCK).to(tl.int64)
            s += get(x + k * A[5], AT, k < n)
        mean = tl.sum(s, axis=0) / n.to(tl.float32)
    s2 = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, n, BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        v = tl.where(k < n, get(x + k * A[5], AT, k < n) - mean, 0.0)
        s2 += v * v
    ss = tl.sum(s2, axis=0)
    if KIND == 0:
        scale = 1.0 / tl.sqrt_rn(ss / n.to(tl.float32) + eps)
    elif KIND == 1:
        scale = 1.0 / tl.sqrt_rn(ss / n.to(tl.float32) + eps)
    else:
        scale = 1.0 / tl.maximum(tl.sqrt_rn(ss), eps)
    for k0 in range(0, n, BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < n
        put(y + k * D[5], (get(x + k * A[5], AT, m) - mean) * scale, DT, m)


@triton.jit
def group_norm(DB, D, AB, A, eps, per, ngr, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """Groups of `per` channels along ne2 (the last one shorter), per i3; one program per group."""
    u = tl.program_id(0).to(tl.int64)
    i3 = u // ngr
    c0 = (u % ngr) * per
    c1 = tl.minimum(c0 + per, A[3])
    ne01 = A[1] * A[2]
    cnt = ne01 * (c1 - c0)
    s = tl.zeros([BLOCK], tl.float32)
    for f0 in range(0, cnt, BLOCK):
        f = f0 + tl.arange(0, BLOCK).to(tl.int64)
        s += get(at(AB, A, f % A[1], (f // A[1]) % A[2], c0 + f // ne01, i3), AT, f < cnt)
    mean = tl.sum(s, axis=0) / cnt.to(tl.float32)
    s2 = tl.zeros([BLOCK], tl.float32)
    for f0 in range(0, cnt, BLOCK):
        f = f0 + tl.arange(0, BLOCK).to(tl.int64)
        v = tl.where(f < cnt, get(at(AB, A, f % A[1], (f // A[1]) % A[2], c0 + f // ne01, i3), AT, f < cnt) - mean,
                     0.0)
        s2 += v * v
    scale = 1.0 / tl.sqrt_rn(tl.sum(s2, axis=0) / cnt.to(tl.float32) + eps)
    for f0 in range(0, cnt, BLOCK):
        f = f0 + tl.arange(0, BLOCK).to(tl.int64)
        m = f < cnt
        i0 = f % A[1]
        i1 = (f // A[1]) % A[2]
        i2 = c0 + f // ne01
        put(at(DB, D, i0, i1, i2, i3), (get(at(AB, A, i0, i1, i2, i3), AT, m) - mean) * scale, DT, m)


@triton.jit
def sum_all(DB, D, AB, A, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    total = A[1] * A[2] * A[3] * A[4]
    s = tl.zeros([BLOCK], tl.float32)
    for f0 in range(0, total, BLOCK):
        f = f0 + tl.arange(0, BLOCK).to(tl.int64)
        s += get(flat_at(AB, A, f), AT, f < total)
    put(DB + D[0], tl.sum(s, axis=0), DT, True)


@triton.jit
def row_sum(DB, D, AB, A, MEAN: tl.constexpr, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """sum_rows (MEAN 0) and mean (1)."""
    r = tl.program_id(0).to(tl.int64)
    x = row_at(AB, A, r)
    s = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, A[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        s += get(x + k * A[5], AT, k < A[1])
    t = tl.sum(s, axis=0)
    if MEAN:
        t = t / A[1].to(tl.float32)
    put(row_at(DB, D, r), t, DT, True)


@triton.jit
def argmax(DB, D, AB, A, AT: tl.constexpr, BLOCK: tl.constexpr):
    """The LAST index of each row's maximum (ggml; NaNs never win), as i32."""
    r = tl.program_id(0).to(tl.int64)
    x = AB + A[0] + r * A[6]
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    idx = tl.full([BLOCK], -1, tl.int64)
    for k0 in range(0, A[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < A[1]
        v = get(x + k * A[5], AT, m)
        up = m & (v >= best)
        best = tl.where(up, v, best)
        idx = tl.where(up, k, idx)
    mx = tl.max(tl.where(idx >= 0, best, float("-inf")), axis=0)
    win = tl.max(tl.where((idx >= 0) & (best == mx), idx, -1), axis=0)
    tl.store((DB + D[0] + r * D[5]).to(tl.pointer_type(tl.int32)), tl.maximum(win, 0).to(tl.int32))


@triton.jit
def soft_max(DB, D, AB, A, MB, M, SB, S, scale, max_bias, DT: tl.constexpr, AT: tl.constexpr,
             MT: tl.constexpr, ST: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SINKS: tl.constexpr,
             BLOCK: tl.constexpr):
    """softmax(x * scale + slope * mask) along ne0, with optional sinks (one logit per head)."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % A[2]
    i2 = (r // A[2]) % A[3]
    i3 = r // (A[2] * A[3])
    n = A[1]
    x = at(AB, A, 0, i1, i2, i3)
    if HAS_MASK:
        slope = alibi_slope(max_bias, A[3], i2)
        mr = at(MB, M, 0, i1, i2 % M[3], i3 % M[4])
    else:
        slope = 1.0
        mr = x
    mx = tl.full([BLOCK], float("-inf"), tl.float32)
    for k0 in range(0, n, BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < n
        w = get(x + k * A[5], AT, m) * scale
        if HAS_MASK:
            w += slope * get(mr + k * M[5], MT, m)
        mx = tl.where(m, nan_max(mx, w), mx)
    mxs = max_nan(mx)
    skv = 0.0
    if HAS_SINKS:
        skv = get(flat_at(SB, S, i2), ST, True)
        mxs = tl.where(mxs != mxs, mxs, tl.maximum(skv, mxs))
    s = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, n, BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < n
        w = get(x + k * A[5], AT, m) * scale
        if HAS_MASK:
            w += slope * get(mr + k * M[5], MT, m)
        s += tl.where(m, tl.exp(w - mxs), 0.0)
    tot = tl.sum(s, axis=0)
    if HAS_SINKS:
        tot += tl.exp(skv - mxs)
    inv = 1.0 / tot
    y = at(DB, D, 0, i1, i2, i3)
    for k0 in range(0, n, BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < n
        w = get(x + k * A[5], AT, m) * scale
        if HAS_MASK:
            w += slope * get(mr + k * M[5], MT, m)
        put(y + k * D[5], tl.exp(w - mxs) * inv, DT, m)
