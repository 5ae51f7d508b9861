"""Helpers every Triton library kernel uses: addresses in a buffer, typed loads and stores, ggml's block
decoders and reference quantizers. The Triton twin of kernels/opencl/graphc.cl + dequant.cl.

A tensor reaches a kernel as its buffer (a uint8 pointer: the arena, a weight, state) and a descriptor
tuple T = (off, ne0, ne1, ne2, ne3, nb0, nb1, nb2, nb3): the byte offset, shape and byte strides. Element
types are constexpr ggml type ids (graphc.types). Indices are made int64 before they meet a stride, so no
address overflows 32 bits. Loaded as a module by targets/triton/loader.py (compiled or interpreted).
"""
import triton
import triton.language as tl

F32 = tl.constexpr(0)
F16 = tl.constexpr(1)
Q4_0 = tl.constexpr(2)
Q4_1 = tl.constexpr(3)
Q5_0 = tl.constexpr(6)
Q5_1 = tl.constexpr(7)
Q8_0 = tl.constexpr(8)
Q8_1 = tl.constexpr(9)
Q2_K = tl.constexpr(10)
Q3_K = tl.constexpr(11)
Q4_K = tl.constexpr(12)
Q5_K = tl.constexpr(13)
Q6_K = tl.constexpr(14)
Q8_K = tl.constexpr(15)
I8 = tl.constexpr(24)
I16 = tl.constexpr(25)
I32 = tl.constexpr(26)
I64 = tl.constexpr(27)
F64 = tl.constexpr(28)
BF16 = tl.constexpr(30)


# (elements per block, bytes per block) of every type id: compile-time facts (constexpr functions), so
# `if blck(TY) == 1:` picks one branch when Triton compiles a kernel, as it does in the interpreter
_LAYOUT = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
           10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
           24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}


@triton.constexpr_function
def blck(TY):
    return _LAYOUT[TY][0] if TY in _LAYOUT else 1


@triton.constexpr_function
def tsize(TY):
    return _LAYOUT[TY][1] if TY in _LAYOUT else 4


# --- addresses -------------------------------------------------------------------------------------------

@triton.jit
def at(B, T, i0, i1, i2, i3):
    """The address of element (i0, i1, i2, i3) of T (indices int64)."""
    return B + T[0] + i0 * T[5] + i1 * T[6] + i2 * T[7] + i3 * T[8]


@triton.jit
def row_at(B, T, r):
    """The address of flat row r (int64) of T: rows are (i1, i2, i3) in ggml order."""
    i1 = r % T[2]
    q = r // T[2]
    return B + T[0] + i1 * T[6] + (q % T[3]) * T[7] + (q // T[3]) * T[8]


@triton.jit
def flat_at(B, T, f):
    """The address of flat element f (int64, ggml element order) of T."""
    i0 = f % T[1]
    f1 = f // T[1]
    i1 = f1 % T[2]
    f2 = f1 // T[2]
    return B + T[0] + i0 * T[5] + i1 * T[6] + (f2 % T[3]) * T[7] + (f2 // T[3]) * T[8]


@triton.jit
def nrows(T):
    return T[2] * T[3] * T[4]


# --- plain elements --------------------------------------------------------------------------------------

@triton.jit
def f32_of_bf16(u):
    return (u.to(tl.uint32) << 16).to(tl.float32, bitcast=True)


@triton.jit
def bf16_bits(v):
    """ggml's f32 -> bf16: round to nearest even, NaN kept quiet."""
    u = v.to(tl.uint32, bitcast=True)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return tl.where(v != v, (u >> 16) | 64, r).to(tl.uint16)


@triton.jit
def get(P, TY: tl.constexpr, m):
    """Plain elements of type TY at u8 addresses P, as f32 (0 where m is false)."""
    if TY == F16:
        return tl.load(P.to(tl.pointer_type(tl.float16)), mask=m, other=0.0).to(tl.float32)
    elif TY == BF16:
        return f32_of_bf16(tl.load(P.to(tl.pointer_type(tl.uint16)), mask=m, other=0))
    elif TY == I32:
        return tl.load(P.to(tl.pointer_type(tl.int32)), mask=m, other=0).to(tl.float32)
    elif TY == I16:
        return tl.load(P.to(tl.pointer_type(tl.int16)), mask=m, other=0).to(tl.float32)
    elif TY == I8:
        return tl.load(P.to(tl.pointer_type(tl.int8)), mask=m, other=0).to(tl.float32)
    elif TY == I64:
        return tl.load(P.to(tl.pointer_type(tl.int64)), mask=m, other=0).to(tl.float32)
    elif TY == F64:
        return tl.load(P.to(tl.pointer_type(tl.float64)), mask=m, other=0.0).to(tl.float32)
    else:
        return tl.load(P.to(tl.pointer_type(tl.float32)), mask=m, other=0.0)


@triton.jit
def put(P, v, TY: tl.constexpr, m):
    """Store f32 values v as type TY (float -> int truncates; non-finite -> 0)."""
    if TY == F16:
        tl.store(P.to(tl.pointer_type(tl.float16)), v.to(tl.float16), mask=m)
    elif TY == BF16:
        tl.store(P.to(tl.pointer_type(tl.uint16)), bf16_bits(v), mask=m)
    elif TY == F64:
        tl.store(P.to(tl.pointer_type(tl.float64)), v.to(tl.float64), mask=m)
    elif TY == I32 or TY == I16 or TY == I8 or TY == I64:
        t = tl.where((v == v) & (tl.abs(v) < float("inf")), v, 0.0).to(tl.int64)
        if TY == I32:
            tl.store(P.to(tl.pointer_type(tl.int32)), t.to(tl.int32), mask=m)
        elif TY == I16:
            tl.store(P.to(tl.pointer_type(tl.int16)), t.to(tl.int16), mask=m)
        elif TY == I8:
            tl.store(P.to(tl.pointer_type(tl.int8)), t.to(tl.int8), mask=m)
        else:
            tl.store(P.to(tl.pointer_type(tl.int64)), t, mask=m)
    else:
        tl.store(P.to(tl.pointer_type(tl.float32)), v, mask=m)


@triton.jit
def get_index(P, TY: tl.constexpr, m):
    """An i32 or i64 index element, as int64."""
    if TY == I64:
        return tl.load(P.to(tl.pointer_type(tl.int64)), mask=m, other=0)
    else:
        return tl.load(P.to(tl.pointer_type(tl.int32)), mask=m, other=0).to(tl.int64)


@triton.jit
def is_int(TY: tl.constexpr):
    return TY == I32 or TY == I16 or TY == I8 or TY == I64


@triton.jit
def get_int(P, TY: tl.constexpr, m):
    if TY == I64:
        return tl.load(P.to(tl.pointer_type(tl.int64)), mask=m, other=0)
    elif TY == I16:
        return tl.load(P.to(tl.pointer_type(tl.int16)), mask=m, other=0).to(tl.int64)
    elif TY == I8:
        return tl.load(P.to(tl.pointer_type(tl.int8)), mask=m, other=0).to(tl.int64)
    else:
        return tl.load(P.to(tl.pointer_type(tl.int32)), mask=m, other=0).to(tl.int64)


@triton.jit
def move(Ps, Pd, TY: tl.constexpr, m):
    """Copy plain elements of type TY unchanged (their bits)."""
    if tsize(TY) == 8:
        tl.store(Pd.to(tl.pointer_type(tl.int64)), tl.load(Ps.to(tl.pointer_type(tl.int64)), mask=m), mask=m)
    elif tsize(TY) == 4:
        tl.store(Pd.to(tl.pointer_type(tl.int32)), tl.load(Ps.to(tl.pointer_type(tl.int32)), mask=m), mask=m)
    elif tsize(TY) == 2:
        tl.store(Pd.to(tl.pointer_type(tl.int16)), tl.load(Ps.to(tl.pointer_type(tl.int16)), mask=m), mask=m)
    else:
        tl.store(Pd, tl.load(Ps, mask=m), mask=m)


@triton.jit
def convert(Ps, ST: tl.constexpr, Pd, DT: tl.constexpr, m):
    """One plain element converted as ggml/ref do: same type -> bits, int -> int exact, else through f32."""
    if ST == DT:
        move(Ps, Pd, ST, m)
    elif is_int(ST) and is_int(DT):
        v = get_int(Ps, ST, m)
        if DT == I32:
            tl.store(Pd.to(tl.pointer_type(tl.int32)), v.to(tl.int32), mask=m)
        elif DT == I16:
            tl.store(Pd.to(tl.pointer_type(tl.int16)), v.to(tl.int16), mask=m)
        elif DT == I8:
            tl.store(Pd.to(tl.pointer_type(tl.int8)), v.to(tl.int8), mask=m)
        else:
            tl.store(Pd.to(tl.pointer_type(tl.int64)), v, mask=m)
    else:
        put(Pd, get(Ps, ST, m), DT, m)


@triton.jit
def zero(Pd, TY: tl.constexpr, m):
    put(Pd, tl.zeros(Pd.shape, tl.float32), TY, m)


# --- block types -----------------------------------------------------------------------------------------

@triton.jit
def u8(P, m):
    return tl.load(P, mask=m, other=0).to(tl.int32)


@triton.jit
def hf(P, m):
    return tl.load(P.to(tl.pointer_type(tl.float16)), mask=m, other=0.0).to(tl.float32)


@triton.jit
def u32le(P, m):
    return (u8(P, m) | (u8(P + 1, m) << 8) | (u8(P + 2, m) << 16) | (u8(P + 3, m) << 24)).to(tl.uint32)


@triton.jit
def scale_min_k4(j, q, m):
    """q4_K / q5_K: 6-bit scale and min j of the 12 packed bytes at q."""
    lo = j < 4
    jl = tl.where(lo, j, 0)
    jh = tl.where(lo, 4, j)
    d = tl.where(lo, u8(q + jl, m) & 63, (u8(q + jh + 4, m) & 0xF) | ((u8(q + jh - 4, m) >> 6) << 4))
    mn = tl.where(lo, u8(q + jl + 4, m) & 63, (u8(q + jh + 4, m) >> 4) | ((u8(q + jh, m) >> 6) << 4))
    return d, mn


@triton.jit
def dq(b, j, TY: tl.constexpr, m):
    """Element j (int32, < the block size) of the blocks at u8 addresses b, as f32."""
    if TY == Q4_0:
        qb = u8(b + 2 + (j % 16), m)
        q = tl.where(j < 16, qb & 0xF, qb >> 4)
        return (q - 8).to(tl.float32) * hf(b, m)
    elif TY == Q4_1:
        qb = u8(b + 4 + (j % 16), m)
        q = tl.where(j < 16, qb & 0xF, qb >> 4)
        return q.to(tl.float32) * hf(b, m) + hf(b + 2, m)
    elif TY == Q5_0 or TY == Q5_1:
        o: tl.constexpr = 2 if TY == Q5_0 else 4
        qh = u32le(b + o, m)
        h = ((qh >> j.to(tl.uint32)) & 1).to(tl.int32) << 4
        qb = u8(b + o + 4 + (j % 16), m)
        q = tl.where(j < 16, qb & 0xF, qb >> 4) | h
        if TY == Q5_0:
            return (q - 16).to(tl.float32) * hf(b, m)
        else:
            return q.to(tl.float32) * hf(b, m) + hf(b + 2, m)
    elif TY == Q8_0:
        return tl.load((b + 2 + j).to(tl.pointer_type(tl.int8)), mask=m, other=0).to(tl.float32) * hf(b, m)
    elif TY == Q8_1:
        return tl.load((b + 4 + j).to(tl.pointer_type(tl.int8)), mask=m, other=0).to(tl.float32) * hf(b, m)
    elif TY == Q2_K:
        c = j // 128
        r = j % 128
        s = r // 32
        hv = (r % 32) // 16
        lq = r % 16
        sc = u8(b + c * 8 + s * 2 + hv, m)
        dl = hf(b + 80, m) * (sc & 0xF).to(tl.float32)
        ml = hf(b + 82, m) * (sc >> 4).to(tl.float32)
        return dl * ((u8(b + 16 + c * 32 + lq + 16 * hv, m) >> (2 * s)) & 3).to(tl.float32) - ml
    elif TY == Q3_K:
        c = j // 128
        r = j % 128
        s = r // 32
        hv = (r % 32) // 16
        lq = 16 * hv + r % 16
        is_ = c * 8 + s * 2 + hv
        rb = u8(b + 96 + (is_ % 8), m)
        lo = tl.where(is_ < 8, rb & 0xF, rb >> 4)
        hi = (u8(b + 104 + (is_ & 3), m) >> (2 * (is_ >> 2))) & 3
        sc = (lo | (hi << 4)) - 32
        hm = u8(b + lq, m) & (1 << (c * 4 + s))
        q = ((u8(b + 32 + c * 32 + lq, m) >> (2 * s)) & 3) - tl.where(hm != 0, 0, 4)
        return (hf(b + 108, m) * sc.to(tl.float32)) * q.to(tl.float32)
    elif TY == Q4_K:
        g = j // 64
        r = j % 64
        sc, mn = scale_min_k4(2 * g + (r >= 32).to(tl.int32), b + 4, m)
        qb = u8(b + 16 + g * 32 + r % 32, m)
        q = tl.where(r < 32, qb & 0xF, qb >> 4)
        return (hf(b, m) * sc.to(tl.float32)) * q.to(tl.float32) - hf(b + 2, m) * mn.to(tl.float32)
    elif TY == Q5_K:
        g = j // 64
        r = j % 64
        lq = r % 32
        sc, mn = scale_min_k4(2 * g + (r >= 32).to(tl.int32), b + 4, m)
        qb = u8(b + 48 + g * 32 + lq, m)
        u = tl.where(r < 32, 1, 2) << (2 * g)
        q = tl.where(r < 32, qb & 0xF, qb >> 4) + tl.where((u8(b + 16 + lq, m) & u) != 0, 16, 0)
        return (hf(b, m) * sc.to(tl.float32)) * q.to(tl.float32) - hf(b + 2, m) * mn.to(tl.float32)
    elif TY == Q6_K:
        c = j // 128
        r = j % 128
        qt = r // 32
        lq = r % 32
        qlb = u8(b + c * 64 + lq + (qt & 1) * 32, m)
        lo = tl.where(qt < 2, qlb & 0xF, qlb >> 4)
        hi = (u8(b + 128 + c * 32 + lq, m) >> (2 * qt)) & 3
        sc = tl.load((b + 192 + c * 8 + lq // 16 + 2 * qt).to(tl.pointer_type(tl.int8)), mask=m, other=0)
        return (hf(b + 208, m) * sc.to(tl.float32)) * ((lo | (hi << 4)) - 32).to(tl.float32)
    else:
        return tl.zeros(j.shape, tl.float32)


@triton.jit
def row_get(R, nb0, k, TY: tl.constexpr, m):
    """Element k (int64) of a row at u8 address R of any type: plain types through the stride nb0, block
    types by block."""
    if blck(TY) == 1:
        return get(R + k * nb0, TY, m)
    else:
        return dq(R + (k // blck(TY)) * tsize(TY), (k % blck(TY)).to(tl.int32), TY, m)


# --- ggml's reference quantizers (q4_0 q4_1 q5_0 q5_1 q8_0), NB blocks of 32 at once ---------------------

@triton.jit
def round_away(v):
    """C's roundf: halves away from zero (exact: v - trunc(v) is exact in f32 for these magnitudes)."""
    t = v.to(tl.int32).to(tl.float32)
    return tl.where(tl.abs(v - t) >= 0.5, t + tl.where(v < 0, -1.0, 1.0), t)


@triton.jit
def q_trunc(t, hi: tl.constexpr):
    """(int8_t)(int)t, then MIN(hi, .); NaN -> 0."""
    ti = tl.where(t == t, tl.minimum(tl.maximum(t, -1e9), 1e9), 0.0).to(tl.int32)
    ti8 = ((ti + 128) & 255) - 128
    return tl.where(t != t, 0, tl.where(t >= hi, hi, ti8))


@triton.jit
def quantize_blocks(xlo, xhi, y, m, TY: tl.constexpr):
    """Blocks of 32 values (xlo: elements 0..15, xhi: 16..31, each [NB, 16]) -> their bytes at u8 block
    addresses y ([NB]); m masks whole blocks ([NB])."""
    jj = tl.arange(0, 16)
    m2 = m[:, None]
    if TY == Q8_0:
        amax = tl.maximum(tl.max(tl.abs(xlo), axis=1), tl.max(tl.abs(xhi), axis=1))
        d = amax / 127.0
        idd = tl.where(d != 0.0, 1.0 / d, 0.0)
        tl.store(y.to(tl.pointer_type(tl.float16)), d.to(tl.float16), mask=m)
        for half in tl.static_range(2):
            x = xlo if half == 0 else xhi
            v = round_away(x * idd[:, None])
            q = tl.where(v != v, 0.0, tl.minimum(tl.maximum(v, -128.0), 127.0)).to(tl.int8)
            tl.store((y[:, None] + 2 + half * 16 + jj[None, :]).to(tl.pointer_type(tl.int8)), q, mask=m2)
    elif TY == Q4_0 or TY == Q5_0:
        # the value of largest magnitude, the first one on ties (ggml's loop keeps the first)
        alo = tl.abs(xlo)
        ahi = tl.abs(xhi)
        amax = tl.maximum(tl.max(alo, axis=1), tl.max(ahi, axis=1))
        first = tl.minimum(tl.min(tl.where(alo == amax[:, None], jj[None, :], 32), axis=1),
                           tl.min(tl.where(ahi == amax[:, None], jj[None, :] + 16, 32), axis=1))
        mx = tl.sum(tl.where(jj[None, :] == first[:, None], xlo, 0.0), axis=1) + \
            tl.sum(tl.where(jj[None, :] + 16 == first[:, None], xhi, 0.0), axis=1)
        d = mx / -8.0 if TY == Q4_0 else mx / -16.0
        idd = tl.where(d != 0.0, 1.0 / d, 0.0)
        tl.store(y.to(tl.pointer_type(tl.float16)), d.to(tl.float16), mask=m)
        if TY == Q4_0:
            q0 = q_trunc(xlo * idd[:, None] + 8.5, 15)
            q1 = q_trunc(xhi * idd[:, None] + 8.5, 15)
            tl.store(y[:, None] + 2 + jj[None, :], ((q0 & 0xF) | ((q1 & 0xF) << 4)).to(tl.uint8), mask=m2)
        else:
            q0 = q_trunc(xlo * idd[:, None] + 16.5, 31)
            q1 = q_trunc(xhi * idd[:, None] + 16.5, 31)
            tl.store(y[:, None] + 6 + jj[None, :], ((q0 & 0xF) | ((q1 & 0xF) << 4)).to(tl.uint8), mask=m2)
            qh = tl.sum((((q0 >> 4) & 1) << jj[None, :]) | (((q1 >> 4) & 1) << (jj[None, :] + 16)), axis=1)
            for k in tl.static_range(4):
                tl.store(y + 2 + k, ((qh >> (8 * k)) & 255).to(tl.uint8), mask=m)
    else:                      # Q4_1, Q5_1
        mn = tl.minimum(tl.min(xlo, axis=1), tl.min(xhi, axis=1))
        mx = tl.maximum(tl.max(xlo, axis=1), tl.max(xhi, axis=1))
        d = (mx - mn) / 15.0 if TY == Q4_1 else (mx - mn) / 31.0
        idd = tl.where(d != 0.0, 1.0 / d, 0.0)
        tl.store(y.to(tl.pointer_type(tl.float16)), d.to(tl.float16), mask=m)
        tl.store((y + 2).to(tl.pointer_type(tl.float16)), mn.to(tl.float16), mask=m)
        hi: tl.constexpr = 15 if TY == Q4_1 else 255
        q0 = q_trunc((xlo - mn[:, None]) * idd[:, None] + 0.5, hi)
        q1 = q_trunc((xhi - mn[:, None]) * idd[:, None] + 0.5, hi)
        o: tl.constexpr = 4 if TY == Q4_1 else 8
        tl.store(y[:, None] + o + jj[None, :], ((q0 & 0xF) | ((q1 & 0xF) << 4)).to(tl.uint8), mask=m2)
        if TY == Q5_1:
            qh = tl.sum((((q0 >> 4) & 1) << jj[None, :]) | (((q1 >> 4) & 1) << (jj[None, :] + 16)), axis=1)
            for k in tl.static_range(4):
                tl.store(y + 4 + k, ((qh >> (8 * k)) & 255).to(tl.uint8), mask=m)


# --- reductions and small math ---------------------------------------------------------------------------

@triton.jit
def nan_max(a, b):
    return tl.where((a != a) | (b != b), float("nan"), tl.maximum(a, b))


@triton.jit
def max_nan(x):
    """The NaN-sticky max of a block (NaN if any element is NaN)."""
    anynan = tl.max((x != x).to(tl.int32), axis=0)
    return tl.where(anynan > 0, float("nan"), tl.max(x, axis=0))


@triton.jit
def alibi_slope(max_bias, n_head, h):
    """ALiBi slope of head h (soft_max, flash_attn_ext): m0^(h+1) or m1^(2(h-n)+1) with m0 = 2^(-max_bias/n),
    m1 = 2^(-max_bias/2/n), n the largest power of two <= n_head; as powers of 2 (1-ulp from powf)."""
    n_log2 = 1
    while n_log2 * 2 <= n_head:
        n_log2 = n_log2 * 2
    e = tl.where(h < n_log2, (-max_bias / n_log2) * (h + 1).to(tl.float32),
                 (-(max_bias / 2.0) / n_log2) * (2 * (h - n_log2) + 1).to(tl.float32))
    return tl.where(max_bias <= 0.0, 1.0, tl.exp2(e))
