"""rope, normal (adjacent pairs) and neox (mode 2: halves), with freq_scale, YaRN and freq_factors, as
kernels/opencl/rope.cl and targets/ref/attention.py. theta = pos * theta_scale^i is accumulated in f32 one
factor at a time (every lane walks the chain up to its own i, as the reference does); cos/sin in f64,
times mscale. One program per row of a ([ne0, heads, tokens, ne3]); pos[i2] is token i2's position.
theta_scale, the YaRN corrections and mscale depend on parameters only: the launcher computes them."""
import triton
import triton.language as tl

from .common import flat_at, get, get_index, put, row_at


@triton.jit
def rope(DB, D, AB, A, PB, P, FB, F, n_dims, theta_scale, freq_scale, ext_factor, low, high, mscale,
         NEOX: tl.constexpr, HAS_FF: tl.constexpr, DT: tl.constexpr, AT: tl.constexpr, PT: tl.constexpr,
         FT: tl.constexpr, HALF: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    i2 = (r // A[2]) % A[3]
    x = row_at(AB, A, r)
    y = row_at(DB, D, r)
    hd = n_dims // 2
    p0 = get_index(flat_at(PB, P, i2), PT, True).to(tl.int32).to(tl.float32)
    i = tl.arange(0, HALF)
    m = i < hd
    t = tl.zeros([HALF], tl.float32) + p0
    for kk in range(0, hd):
        t = tl.where(i > kk, t * theta_scale, t)
    if HAS_FF:
        theta_extrap = t / get(flat_at(FB, F, i.to(tl.int64)), FT, m)
    else:
        theta_extrap = t
    theta_interp = freq_scale * theta_extrap
    th = theta_interp
    if ext_factor != 0.0:
        denom = tl.maximum(0.001, high - low)
        ramp = 1.0 - tl.minimum(1.0, tl.maximum(0.0, (i.to(tl.float32) - low) / denom))
        mix = ramp * ext_factor
        th = theta_interp * (1.0 - mix) + theta_extrap * mix
    cs = tl.cos(th.to(tl.float64)).to(tl.float32) * mscale
    sn = tl.sin(th.to(tl.float64)).to(tl.float32) * mscale
    il = i.to(tl.int64)
    if NEOX:
        j0 = il
        j1 = il + hd
    else:
        j0 = 2 * il
        j1 = 2 * il + 1
    x0 = get(x + j0 * A[5], AT, m)
    x1 = get(x + j1 * A[5], AT, m)
    put(y + j0 * D[5], x0 * cs - x1 * sn, DT, m)
    put(y + j1 * D[5], x0 * sn + x1 * cs, DT, m)
    for k0 in range(n_dims, A[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        mk = k < A[1]
        put(y + k * D[5], get(x + k * A[5], AT, mk), DT, mk)
