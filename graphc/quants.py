"""Tensor data <-> bytes, and ggml's quantization formats (numpy, vectorised over blocks).

Layouts, quantizers and dot products follow ggml 0.15.3 (`src/ggml-quants.c`, `src/ggml-cpu/quants.c`,
ggml-reference §5). Every float step is done in float32 in ggml's order of operations, so that:
  * dequantize is bit-exact with gguf.quants / ggml's to_float,
  * quantize (q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 q8_K q4_K q6_K) is byte-exact with ggml's `*_ref` quantizers,
  * mul_mat_quant follows ggml's CPU mul_mat: activations quantized to vec_dot_type (by default the
    x86-64 AVX flavour of q8_0/q8_1, which is what ggml runs on x86), integer block dots, f32 scaling in
    the order of the generic `ggml_vec_dot_*` code. ggml's own SIMD paths sum the same terms in another
    order, so results agree with real ggml to ~1e-13 NMSE, not bit for bit.
Types without a native decoder here (iq*, tq*, mxfp4) are decoded through gguf.quants when installed.
"""
from __future__ import annotations

import numpy as np

from .types import QK_K, GGMLType, get_type

F32 = np.float32
_QUANTIZERS: dict = {}    # name -> fn(blocks f32 (nb, blck)) -> uint8 (nb, size)
_UNPACKERS: dict = {}     # name -> fn(blocks u8 (nb, size)) -> dict of fields (ints and f32 scales)
_DEQUANTIZERS: dict = {}  # name -> fn(fields) -> f32 (nb, blck)


def _reg(table: dict, *names: str):
    def deco(fn):
        for n in names:
            table[n] = fn
        return fn
    return deco


# ---------------------------------------------------------------------------------------------
# scalar helpers
# ---------------------------------------------------------------------------------------------

def fp16_round(x: np.ndarray) -> np.ndarray:
    """f32 -> nearest f16 (ties to even, as GGML_FP32_TO_FP16) -> f32."""
    return np.asarray(x, dtype=F32).astype(np.float16).astype(F32)


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    """(nb,) f32 -> (nb, 2) uint8 little-endian f16."""
    return np.ascontiguousarray(np.asarray(v, dtype=F32).astype("<f2")).view(np.uint8).reshape(-1, 2)


def _f16_field(blocks: np.ndarray, off: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, off:off + 2]).view("<f2").reshape(-1).astype(F32)


def _roundf(v: np.ndarray) -> np.ndarray:
    """C roundf (half away from zero), exact in f32 (no |v|+0.5 rounding trap)."""
    a = np.abs(v)
    fl = np.floor(a)
    return np.copysign(fl + np.floor(F32(2) * (a - fl)), v)


def _nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int (magic-number add: ties to even) for |v| <= 4194303."""
    return np.rint(v).astype(np.int32)


def _recip_or_zero(d: np.ndarray) -> np.ndarray:
    """`d ? 1.0f/d : 0.0f` in f32."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(F32)


def _signed_absmax(blocks: np.ndarray) -> np.ndarray:
    """The value of largest |x| per block, first one on ties (ggml's `if (amax < fabsf(v))`)."""
    idx = np.abs(blocks).argmax(axis=-1)[:, None]
    return np.take_along_axis(blocks, idx, axis=-1)[:, 0]


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(nb, 32) values 0..15 -> (nb, 16): element j in the low nibble, j+16 in the high nibble."""
    q = q.astype(np.uint8)
    return (q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0xF, qs >> 4], axis=-1)


def _pack_bits32(bits: np.ndarray) -> np.ndarray:
    """(nb, 32) 0/1 -> (nb, 4) bytes of the little-endian u32 whose bit i is element i."""
    return np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little")


def _unpack_bits32(qh: np.ndarray) -> np.ndarray:
    return np.unpackbits(qh, axis=-1, bitorder="little")


def _c_u8(v: np.ndarray) -> np.ndarray:
    """C's (int8_t)/(uint8_t) cast of already-truncated small floats, without NaN warnings."""
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64).astype(np.uint8)


def _blocks_f32(x: np.ndarray, blck: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=F32)
    return x.reshape(-1, blck)


# ---------------------------------------------------------------------------------------------
# 32-element block types
# ---------------------------------------------------------------------------------------------

@_reg(_QUANTIZERS, "q4_0")
def _q4_0(b: np.ndarray) -> np.ndarray:
    d = (_signed_absmax(b) / F32(-8)).astype(F32)
    iq = _recip_or_zero(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.minimum(np.trunc(b * iq + F32(8.5)), 15)
    return np.concatenate([_f16_bytes(d), _pack_nibbles(_c_u8(q))], axis=1)


@_reg(_QUANTIZERS, "q4_1")
def _q4_1(b: np.ndarray) -> np.ndarray:
    mn, mx = b.min(axis=1), b.max(axis=1)
    d = ((mx - mn) / F32(15)).astype(F32)
    iq = _recip_or_zero(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.minimum(np.trunc((b - mn[:, None]) * iq + F32(0.5)), 15)
    return np.concatenate([_f16_bytes(d), _f16_bytes(mn), _pack_nibbles(_c_u8(q))], axis=1)


@_reg(_QUANTIZERS, "q5_0")
def _q5_0(b: np.ndarray) -> np.ndarray:
    d = (_signed_absmax(b) / F32(-16)).astype(F32)
    iq = _recip_or_zero(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = _c_u8(np.minimum(np.trunc(b * iq + F32(16.5)), 31))
    return np.concatenate([_f16_bytes(d), _pack_bits32(q >> 4 & 1), _pack_nibbles(q)], axis=1)


@_reg(_QUANTIZERS, "q5_1")
def _q5_1(b: np.ndarray) -> np.ndarray:
    mn, mx = b.min(axis=1), b.max(axis=1)
    d = ((mx - mn) / F32(31)).astype(F32)
    iq = _recip_or_zero(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = _c_u8(np.trunc((b - mn[:, None]) * iq + F32(0.5)))
    return np.concatenate([_f16_bytes(d), _f16_bytes(mn), _pack_bits32(q >> 4 & 1), _pack_nibbles(q)], axis=1)


def _q8_scale(b: np.ndarray, flavor: str) -> tuple[np.ndarray, np.ndarray]:
    """q8_0/q8_1 scale d and multiplier id. 'ref': id = 1/d (quantize_row_q8_*_ref);
    'x86': id = 127/amax (the AVX from_float that ggml's CPU mul_mat uses on x86-64)."""
    amax = np.abs(b).max(axis=1)
    d = (amax / F32(127)).astype(F32)
    if flavor == "ref":
        return d, _recip_or_zero(d)
    with np.errstate(divide="ignore"):
        return d, np.where(amax != 0, F32(127) / np.where(amax != 0, amax, F32(1)), F32(0)).astype(F32)


def _q8_values(b: np.ndarray, iq: np.ndarray, flavor: str) -> np.ndarray:
    v = b * iq[:, None]
    # ref: roundf (half away from zero); x86: _mm256_round_ps nearest-even, then saturating packs
    r = _roundf(v) if flavor == "ref" else np.rint(v)
    return np.clip(np.nan_to_num(r), -128, 127).astype(np.int8)


def _q8_0_flavored(b: np.ndarray, flavor: str) -> np.ndarray:
    d, iq = _q8_scale(b, flavor)
    return np.concatenate([_f16_bytes(d), _q8_values(b, iq, flavor).view(np.uint8)], axis=1)


def _q8_1_flavored(b: np.ndarray, flavor: str) -> np.ndarray:
    d, iq = _q8_scale(b, flavor)
    q = _q8_values(b, iq, flavor)
    s = (q.astype(np.int32).sum(axis=1).astype(F32) * d).astype(F32)
    return np.concatenate([_f16_bytes(d), _f16_bytes(s), q.view(np.uint8)], axis=1)


_QUANTIZERS["q8_0"] = lambda b: _q8_0_flavored(b, "ref")
_QUANTIZERS["q8_1"] = lambda b: _q8_1_flavored(b, "ref")


@_reg(_UNPACKERS, "q4_0")
def _u_q4_0(b):
    return {"d": _f16_field(b, 0), "q": _unpack_nibbles(b[:, 2:18]).astype(np.int8) - np.int8(8)}


@_reg(_UNPACKERS, "q4_1")
def _u_q4_1(b):
    return {"d": _f16_field(b, 0), "m": _f16_field(b, 2), "q": _unpack_nibbles(b[:, 4:20]).astype(np.int8)}


@_reg(_UNPACKERS, "q5_0")
def _u_q5_0(b):
    q = _unpack_nibbles(b[:, 6:22]) | (_unpack_bits32(b[:, 2:6]) << 4)
    return {"d": _f16_field(b, 0), "q": q.astype(np.int8) - np.int8(16)}


@_reg(_UNPACKERS, "q5_1")
def _u_q5_1(b):
    q = _unpack_nibbles(b[:, 8:24]) | (_unpack_bits32(b[:, 4:8]) << 4)
    return {"d": _f16_field(b, 0), "m": _f16_field(b, 2), "q": q.astype(np.int8)}


@_reg(_UNPACKERS, "q8_0")
def _u_q8_0(b):
    return {"d": _f16_field(b, 0), "q": np.ascontiguousarray(b[:, 2:34]).view(np.int8)}


@_reg(_UNPACKERS, "q8_1")
def _u_q8_1(b):
    return {"d": _f16_field(b, 0), "s": _f16_field(b, 2), "q": np.ascontiguousarray(b[:, 4:36]).view(np.int8)}


# gguf: d * q (q4_0, q5_0), d * q + m (q4_1, q5_1), q * d (q8_0); q8_1 ignores s like ggml's to_float
_DEQUANTIZERS.update({
    "q4_0": lambda f: f["d"][:, None] * f["q"].astype(F32),
    "q5_0": lambda f: f["d"][:, None] * f["q"].astype(F32),
    "q4_1": lambda f: f["d"][:, None] * f["q"].astype(F32) + f["m"][:, None],
    "q5_1": lambda f: f["d"][:, None] * f["q"].astype(F32) + f["m"][:, None],
    "q8_0": lambda f: f["q"].astype(F32) * f["d"][:, None],
    "q8_1": lambda f: f["q"].astype(F32) * f["d"][:, None],
})


# ---------------------------------------------------------------------------------------------
# K-quants (256-element super-blocks)
# ---------------------------------------------------------------------------------------------

def _q8_K(b: np.ndarray) -> np.ndarray:
    mx = _signed_absmax(b)
    nz = mx != 0
    with np.errstate(divide="ignore"):
        iscale = np.where(nz, F32(-127) / np.where(nz, mx, F32(1)), F32(0)).astype(F32)
    q = np.minimum(_nearest_int(b * iscale[:, None]), 127).astype(np.int8)
    q[~nz] = 0
    bsums = q.reshape(-1, 16, 16).astype(np.int32).sum(axis=2).astype("<i2")
    d = np.where(nz, F32(1) / np.where(nz, iscale, F32(1)), F32(0)).astype("<f4")
    return np.concatenate([d.view(np.uint8).reshape(-1, 4), q.view(np.uint8), bsums.view(np.uint8).reshape(-1, 32)],
                          axis=1)


_QUANTIZERS["q8_K"] = _q8_K


@_reg(_UNPACKERS, "q8_K")
def _u_q8_K(b):
    return {"d": np.ascontiguousarray(b[:, 0:4]).view("<f4").reshape(-1).astype(F32),
            "q": np.ascontiguousarray(b[:, 4:260]).view(np.int8),
            "bsums": np.ascontiguousarray(b[:, 260:292]).view("<i2").astype(np.int32)}


_DEQUANTIZERS["q8_K"] = lambda f: f["d"][:, None] * f["q"].astype(F32)


def _crumbs(qs: np.ndarray, nchunk: int) -> np.ndarray:
    """q2_K/q3_K 2-bit fields: (nb, 32*nchunk) bytes -> (nb, 128*nchunk); element 128c+32j+l is
    bits 2j..2j+1 of qs[32c+l]."""
    q = qs.reshape(-1, nchunk, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
    return (q & 3).reshape(qs.shape[0], -1)


def _hbits(hm: np.ndarray) -> np.ndarray:
    """(nb, 32) high-bit masks -> (nb, 256): element 32k+l is bit k of hm[l]."""
    return ((hm[:, None, :] >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1).reshape(hm.shape[0], 256)


def _k4_scales(sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """get_scale_min_k4 for j = 0..7 on (nb, 12) -> (nb, 8) scales and mins."""
    d, m, md = sc[:, 0:4], sc[:, 4:8], sc[:, 8:12]
    scales = np.concatenate([d & 63, (md & 0xF) | ((d >> 6) << 4)], axis=1)
    mins = np.concatenate([m & 63, (md >> 4) | ((m >> 6) << 4)], axis=1)
    return scales, mins


@_reg(_UNPACKERS, "q2_K")
def _u_q2_K(b):
    sc = b[:, 0:16]
    return {"sc": (sc & 0xF).astype(np.int32), "mn": (sc >> 4).astype(np.int32),
            "q": _crumbs(b[:, 16:80], 2).astype(np.int8), "d": _f16_field(b, 80), "dmin": _f16_field(b, 82)}


@_reg(_UNPACKERS, "q3_K")
def _u_q3_K(b):
    hm, qs, raw = b[:, 0:32], b[:, 32:96], b[:, 96:108]
    lo, hi = raw[:, 0:8], raw[:, 8:12]
    low4 = np.concatenate([lo & 0xF, lo >> 4], axis=1)                       # scales 0..15 low bits
    high2 = (hi[:, None, :] >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)) & 3
    sc = (low4 | (high2.reshape(-1, 16) << 4)).astype(np.int32) - 32
    q = _crumbs(qs, 2).astype(np.int8) - ((1 - _hbits(hm)).astype(np.int8) << 2)
    return {"sc": sc, "q": q, "d": _f16_field(b, 108)}


@_reg(_UNPACKERS, "q4_K")
def _u_q4_K(b):
    sc, mn = _k4_scales(b[:, 4:16])
    q = _unpack_nibbles(b[:, 16:144].reshape(-1, 4, 32)).reshape(-1, 256)
    return {"d": _f16_field(b, 0), "dmin": _f16_field(b, 2), "sc": sc.astype(np.int32), "mn": mn.astype(np.int32),
            "q": q.astype(np.int8)}


@_reg(_UNPACKERS, "q5_K")
def _u_q5_K(b):
    sc, mn = _k4_scales(b[:, 4:16])
    q = _unpack_nibbles(b[:, 48:176].reshape(-1, 4, 32)).reshape(-1, 256) | (_hbits(b[:, 16:48]) << 4)
    return {"d": _f16_field(b, 0), "dmin": _f16_field(b, 2), "sc": sc.astype(np.int32), "mn": mn.astype(np.int32),
            "q": q.astype(np.int8)}


@_reg(_UNPACKERS, "q6_K")
def _u_q6_K(b):
    ql = b[:, 0:128].reshape(-1, 2, 64)
    lo = np.concatenate([ql & 0xF, ql >> 4], axis=2)                          # (nb, 2, 128)
    qh = b[:, 128:192].reshape(-1, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
    q = (lo | ((qh & 3).reshape(-1, 2, 128) << 4)).reshape(-1, 256).astype(np.int8) - np.int8(32)
    return {"sc": np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.int32), "q": q,
            "d": _f16_field(b, 208)}


# gguf's float order: (d*sc)*q - (dmin*m) per sub-block
_DEQUANTIZERS.update({
    "q2_K": lambda f: ((f["d"][:, None] * f["sc"].astype(F32))[:, :, None] * f["q"].reshape(-1, 16, 16).astype(F32)
                       - (f["dmin"][:, None] * f["mn"].astype(F32))[:, :, None]),
    "q3_K": lambda f: (f["d"][:, None] * f["sc"].astype(F32))[:, :, None] * f["q"].reshape(-1, 16, 16).astype(F32),
    "q4_K": lambda f: ((f["d"][:, None] * f["sc"].astype(F32))[:, :, None] * f["q"].reshape(-1, 8, 32).astype(F32)
                       - (f["dmin"][:, None] * f["mn"].astype(F32))[:, :, None]),
    "q6_K": lambda f: (f["d"][:, None] * f["sc"].astype(F32))[:, :, None] * f["q"].reshape(-1, 16, 16).astype(F32),
})
_DEQUANTIZERS["q5_K"] = _DEQUANTIZERS["q4_K"]


# --- K-quant reference quantizers (q4_K, q6_K): ggml's make_qkx2_quants / make_qx_quants, vectorised over
# sub-blocks; sums run element by element in C's order so that every f32 rounding matches.

def _seq_sum(terms: np.ndarray) -> np.ndarray:
    """Sum along the last axis strictly left to right in f32 (C's `for (...) s += t`)."""
    acc = np.zeros(terms.shape[:-1], F32)
    for i in range(terms.shape[-1]):
        acc = (acc + terms[..., i]).astype(F32)
    return acc


def _make_qkx2(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """make_qkx2_quants(use_mad=false) on (ns, n) sub-blocks -> (scale, the_min, L)."""
    mn = np.minimum(x.min(axis=1), F32(0))
    mx = x.max(axis=1)
    sum_w = _seq_sum(w)
    sum_x = _seq_sum((w * x).astype(F32))
    flat = mx == mn
    rng = np.where(flat, F32(1), mx - mn).astype(F32)
    iscale = (F32(nmax) / rng).astype(F32)
    scale = (F32(1) / iscale).astype(F32)
    xm = (x - mn[:, None]).astype(F32)
    L = np.clip(_nearest_int(iscale[:, None] * xm), 0, nmax)
    diff = (scale[:, None] * L.astype(F32) + mn[:, None] - x).astype(F32)
    best = _seq_sum((w * (diff * diff)).astype(F32))
    minv = mn.copy()
    for step in range(nstep + 1):
        # C keeps using `min`, which a better trial replaces
        rng = np.where(flat, F32(1), mx - minv).astype(F32)
        isc = ((F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / rng).astype(F32)
        la = np.clip(_nearest_int(isc[:, None] * (x - minv[:, None]).astype(F32)), 0, nmax)
        lf = la.astype(F32)
        wl = (w * lf).astype(F32)
        sum_l = _seq_sum(wl)
        sum_l2 = _seq_sum((wl * lf).astype(F32))
        sum_xl = _seq_sum((wl * x).astype(F32))
        D = (sum_w * sum_l2 - sum_l * sum_l).astype(F32)
        ok = D > 0
        Ds = np.where(ok, D, F32(1))
        with np.errstate(divide="ignore", invalid="ignore"):
            this_scale = ((sum_w * sum_xl - sum_x * sum_l) / Ds).astype(F32)
            this_min = ((sum_l2 * sum_x - sum_l * sum_xl) / Ds).astype(F32)
            pos = this_min > 0
            this_scale = np.where(pos, sum_xl / np.where(sum_l2 != 0, sum_l2, F32(1)), this_scale).astype(F32)
        this_min = np.where(pos, F32(0), this_min)
        d2 = (this_scale[:, None] * lf + this_min[:, None] - x).astype(F32)
        cur = _seq_sum((w * (d2 * d2)).astype(F32))
        better = ok & (cur < best) & ~flat
        L = np.where(better[:, None], la, L)
        best = np.where(better, cur, best)
        scale = np.where(better, this_scale, scale)
        minv = np.where(better, this_min, minv)
    scale = np.where(flat, F32(0), scale)
    L = np.where(flat[:, None], 0, L)
    return scale.astype(F32), (-minv).astype(F32), L


@_reg(_QUANTIZERS, "q4_K")
def _q4_K(b: np.ndarray) -> np.ndarray:
    nb = b.shape[0]
    x = b.reshape(nb * 8, 32)
    av_x = np.sqrt((_seq_sum((x * x).astype(F32)) / F32(32)).astype(F32))
    w = (av_x[:, None] + np.abs(x)).astype(F32)
    scales, mins, L0 = _make_qkx2(x, w, 15, -1.0, 0.1, 20)
    scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
    max_scale = np.maximum(scales.max(axis=1), F32(0))
    max_min = np.maximum(mins.max(axis=1), F32(0))
    inv_s = np.where(max_scale > 0, F32(63) / np.where(max_scale > 0, max_scale, F32(1)), F32(0)).astype(F32)
    inv_m = np.where(max_min > 0, F32(63) / np.where(max_min > 0, max_min, F32(1)), F32(0)).astype(F32)
    ls = np.minimum(_nearest_int(inv_s[:, None] * scales).astype(np.uint8), 63)   # (uint8_t) cast, then MIN
    lm = np.minimum(_nearest_int(inv_m[:, None] * mins).astype(np.uint8), 63)
    sc = np.zeros((nb, 12), np.uint8)
    sc[:, 0:4] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
    sc[:, 4:8] = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    sc[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    dh = _f16_bytes((max_scale / F32(63)).astype(F32))
    dmh = _f16_bytes((max_min / F32(63)).astype(F32))
    d = np.ascontiguousarray(dh).view("<f2").reshape(-1).astype(F32)
    dmin = np.ascontiguousarray(dmh).view("<f2").reshape(-1).astype(F32)
    s_, m_ = _k4_scales(sc)
    dd = (d[:, None] * s_.astype(F32)).astype(F32)                                # (nb, 8)
    dm = (dmin[:, None] * m_.astype(F32)).astype(F32)
    xb = b.reshape(nb, 8, 32)
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.clip(_nearest_int(np.nan_to_num((xb + dm[:, :, None]) / dd[:, :, None])), 0, 15)
    # `if (!d) continue;` keeps make_qkx2_quants' levels for that sub-block
    L = np.where(dd[:, :, None] != 0, L, L0.reshape(nb, 8, 32)).astype(np.uint8).reshape(nb, 4, 64)
    qs = (L[:, :, :32] | (L[:, :, 32:] << 4)).reshape(nb, 128)
    return np.concatenate([dh, dmh, sc, qs], axis=1)


def _make_qx_rmse1(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """make_qx_quants(rmse_type=1, qw=NULL) on (ns, n) sub-blocks -> (scale, L in 0..2*nmax-1)."""
    mx = _signed_absmax(x)
    zero = np.abs(mx) < F32(1e-15)
    mxs = np.where(zero, F32(1), mx).astype(F32)
    w = (x * x).astype(F32)

    def trial(iscale):
        lv = np.clip(_nearest_int(iscale[:, None] * x), -nmax, nmax - 1)
        lf = lv.astype(F32)
        sumlx = _seq_sum(((w * x).astype(F32) * lf).astype(F32))
        suml2 = _seq_sum(((w * lf).astype(F32) * lf).astype(F32))
        return lv, sumlx, suml2

    iscale = (F32(-nmax) / mxs).astype(F32)
    L, sumlx, suml2 = trial(iscale)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / np.where(suml2 != 0, suml2, F32(1)), F32(0)).astype(F32)
    best = (scale * sumlx).astype(F32)
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        isc = ((-(F32(nmax) + F32(0.1) * F32(is_))) / mxs).astype(F32)
        lv, slx, sl2 = trial(isc)
        better = (sl2 > 0) & ((slx * slx).astype(F32) > (best * sl2).astype(F32))
        L = np.where(better[:, None], lv, L)
        with np.errstate(divide="ignore", invalid="ignore"):
            ns = (slx / np.where(sl2 != 0, sl2, F32(1))).astype(F32)
        scale = np.where(better, ns, scale)
        best = np.where(better, (ns * slx).astype(F32), best)
    scale = np.where(zero, F32(0), scale).astype(F32)
    L = np.where(zero[:, None], 0, L + nmax)
    return scale, L


@_reg(_QUANTIZERS, "q6_K")
def _q6_K(b: np.ndarray) -> np.ndarray:
    nb = b.shape[0]
    scales, L0 = _make_qx_rmse1(b.reshape(nb * 16, 16), 32)
    scales = scales.reshape(nb, 16)
    max_scale = _signed_absmax(scales)
    zero = np.abs(max_scale) < F32(1e-15)
    iscale = (F32(-128) / np.where(zero, F32(1), max_scale)).astype(F32)
    dh = _f16_bytes(np.where(zero, F32(0), F32(1) / iscale).astype(F32))
    sc = np.minimum(_nearest_int(iscale[:, None] * scales), 127).astype(np.int8)
    d = np.ascontiguousarray(dh).view("<f2").reshape(-1).astype(F32)
    dd = (d[:, None] * sc.astype(F32)).astype(F32)
    xb = b.reshape(nb, 16, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.clip(_nearest_int(np.nan_to_num(xb / dd[:, :, None])), -32, 31) + 32
    # `if (!d) continue;` keeps make_qx_quants' L for that sub-block; recompute it only where needed
    L = np.where((dd == 0)[:, :, None], L0.reshape(nb, 16, 16), L)
    L = L.astype(np.uint8).reshape(nb, 2, 4, 32)                       # chunk c, quarter k, lane l
    ql = np.concatenate([(L[:, :, 0] & 0xF) | ((L[:, :, 2] & 0xF) << 4),
                         (L[:, :, 1] & 0xF) | ((L[:, :, 3] & 0xF) << 4)], axis=2).reshape(nb, 128)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) | ((L[:, :, 3] >> 4) << 6))
    out = np.concatenate([ql, qh.reshape(nb, 64), sc.view(np.uint8), dh], axis=1)
    out[zero] = 0   # memset(&y[i], 0) and d = +0
    return out


# ---------------------------------------------------------------------------------------------
# other block types: gguf.quants (optional dependency) decodes them
# ---------------------------------------------------------------------------------------------

def _gguf_dequantize(raw: np.ndarray, t: GGMLType) -> np.ndarray:
    try:
        from gguf import quants as gq
        from gguf.constants import GGMLQuantizationType
    except ImportError:  # pragma: no cover - gguf is in the test extras
        raise NotImplementedError(f"dequantizing {t.name} needs the optional 'gguf' package") from None
    try:
        with np.errstate(all="ignore"):   # garbage scales may well make inf/nan, as in ggml
            return gq.dequantize(np.ascontiguousarray(raw), GGMLQuantizationType(t.id)).astype(F32, copy=False)
    except (NotImplementedError, ValueError) as e:
        raise NotImplementedError(f"dequantizing {t.name} is not supported: {e}") from None


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------

def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """GGML_FP32_TO_BF16: NaN -> quiet NaN (top half | 64), otherwise round to nearest even."""
    u = np.ascontiguousarray(x, dtype=F32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = np.where(nan, (u >> 16) | 64, (u + (0x7FFF + ((u >> 16) & 1))) >> 16)
    return r.astype("<u2")


def quantize(x: np.ndarray, t: "str | GGMLType") -> np.ndarray:
    """f32 values (..., ne0) -> uint8 (..., row_bytes) with ggml's reference quantizer (f16/bf16: conversion)."""
    t = get_type(t)
    x = np.asarray(x, dtype=F32)
    if x.ndim == 0:
        raise ValueError("quantize needs at least one axis (ne0)")
    lead, ne0 = x.shape[:-1], x.shape[-1]
    rb = t.row_bytes(ne0)
    if t.name == "bf16":
        return _bf16_bits(x).view(np.uint8).reshape(*lead, rb)
    if t.name in ("f32", "f16"):
        return np.ascontiguousarray(x.astype("<" + t.np_dtype[0] + str(t.size))).view(np.uint8).reshape(*lead, rb)
    fn = _QUANTIZERS.get(t.name)
    if fn is None:
        raise NotImplementedError(f"quantizing to {t.name} is not implemented (supported: {', '.join(_QUANTIZERS)})")
    if x.size == 0:
        return np.zeros((*lead, rb), np.uint8)
    with np.errstate(all="ignore"):   # inf/nan follow IEEE exactly as in C; no warnings
        return fn(_blocks_f32(x, t.blck)).reshape(*lead, rb)


def dequantize(raw: np.ndarray, t: "str | GGMLType") -> np.ndarray:
    """uint8 (..., row_bytes) -> f32 (..., ne0), bit-exact with gguf.quants.dequantize / ggml's to_float."""
    t = get_type(t)
    raw = np.ascontiguousarray(raw).view(np.uint8)
    if raw.ndim == 0 or raw.shape[-1] % t.size:
        raise ValueError(f"{t.name} rows must be a multiple of {t.size} bytes, got shape {raw.shape}")
    lead, ne0 = raw.shape[:-1], raw.shape[-1] // t.size * t.blck
    if t.name == "bf16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(F32).reshape(*lead, ne0)
    if not t.is_quantized:
        if not t.is_float:
            raise ValueError(f"dequantize: {t.name} is not a float or block type")
        return raw.view("<" + t.np_dtype[0] + str(t.size)).astype(F32).reshape(*lead, ne0)
    if raw.size == 0:
        return np.zeros((*lead, ne0), F32)
    unpack = _UNPACKERS.get(t.name)
    if unpack is None:
        return _gguf_dequantize(raw, t).reshape(*lead, ne0)
    with np.errstate(all="ignore"):
        out = _DEQUANTIZERS[t.name](unpack(raw.reshape(-1, t.size)))
    return out.astype(F32, copy=False).reshape(*lead, ne0)


def encode(values: np.ndarray, t: "str | GGMLType") -> np.ndarray:
    """numpy values (last axis = ne0) -> raw ggml bytes (uint8, flat). Floats go through f32 first
    (ggml converts from f32), so f16 is one RNE rounding of the f32 value and bf16 is GGML_FP32_TO_BF16."""
    t = get_type(t)
    v = np.asarray(values)
    if t.is_quantized or t.name in ("bf16", "f16"):
        return quantize(v.reshape(1) if v.ndim == 0 else v, t).reshape(-1)
    if t.np_dtype is None:
        raise NotImplementedError(t.name)
    dt = np.dtype(t.np_dtype).newbyteorder("<")
    return np.ascontiguousarray(v.astype(dt)).reshape(-1).view(np.uint8)


def decode(raw: np.ndarray, t: "str | GGMLType", ne0: int) -> np.ndarray:
    """raw uint8 (..., row_bytes) or flat -> values (..., ne0). Plain types keep their dtype
    (float32, float16, int32, ...); bf16 and block types give float32."""
    t = get_type(t)
    raw = np.ascontiguousarray(raw).view(np.uint8)
    rb = t.row_bytes(int(ne0))
    if raw.ndim == 0:
        raise ValueError("decode needs a byte array")
    if raw.ndim == 1 and raw.size != rb:
        if rb == 0 or raw.size % rb:
            raise ValueError(f"{raw.size} bytes are not whole {t.name} rows of {ne0} elements ({rb} bytes)")
        raw = raw.reshape(-1, rb)
    if raw.shape[-1] != rb:
        raise ValueError(f"{t.name} row of {ne0} elements is {rb} bytes, got last axis {raw.shape[-1]}")
    if t.np_dtype is not None:
        return raw.view(np.dtype(t.np_dtype).newbyteorder("<")).astype(t.np_dtype, copy=False)
    return dequantize(raw, t)


# ---------------------------------------------------------------------------------------------
# mul_mat as ggml's CPU backend does it
# ---------------------------------------------------------------------------------------------

_VEC_DOT = {"f32": "f32", "f16": "f16", "bf16": "bf16", "q4_0": "q8_0", "q5_0": "q8_0", "q8_0": "q8_0",
            "q4_1": "q8_1", "q5_1": "q8_1", "q2_K": "q8_K", "q3_K": "q8_K", "q4_K": "q8_K", "q5_K": "q8_K",
            "q6_K": "q8_K", "iq4_nl": "q8_0", "mxfp4": "q8_0"}
_K_TYPES = ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq3_s", "iq2_s",
            "iq4_xs", "iq1_m", "tq1_0", "tq2_0")
MUL_MAT_TYPES = ("f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K")


def vec_dot_type(t: "str | GGMLType") -> GGMLType:
    """The type ggml's CPU backend converts mul_mat's src1 (activations) to for weight type t."""
    t = get_type(t)
    name = _VEC_DOT.get(t.name) or ("q8_K" if t.name in _K_TYPES else None)
    if name is None:
        raise ValueError(f"{t.name} has no CPU vec_dot type")
    return get_type(name)


def quantize_activations(x: np.ndarray, t: "str | GGMLType", flavor: str = "x86") -> np.ndarray:
    """src1 rows -> vec_dot_type bytes as ggml's CPU `from_float` makes them. flavor 'x86': the AVX
    quantize_row_q8_0/q8_1 (id = 127/amax, ties to even) used on x86-64; 'ref': the *_ref quantizers
    (generic builds). q8_K and the others are the same in both."""
    t = get_type(t)
    if flavor not in ("x86", "ref"):
        raise ValueError(f"flavor must be 'x86' or 'ref', got {flavor!r}")
    x = np.asarray(x, dtype=F32)
    if flavor == "x86" and t.name in ("q8_0", "q8_1"):
        lead, ne0 = x.shape[:-1], x.shape[-1]
        fn = _q8_0_flavored if t.name == "q8_0" else _q8_1_flavored
        with np.errstate(all="ignore"):
            return fn(_blocks_f32(x, t.blck), "x86").reshape(*lead, t.row_bytes(ne0))
    return quantize(x, t)


def _fields(raw: np.ndarray, t: GGMLType, rows: int) -> dict:
    """Unpack (rows, row_bytes) blocks into fields shaped (rows, nb, ...)."""
    f = _UNPACKERS[t.name](raw.reshape(-1, t.size))
    return {k: v.reshape(rows, -1, *v.shape[1:]) for k, v in f.items()}


def _bmm(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """Exact integer batched matmul through BLAS: (B, M, k) @ (B, k, N); dtype must hold the sums exactly."""
    # C-contiguous operands keep numpy on its BLAS path
    return np.matmul(np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(b, dtype=dtype))


def _acc(terms: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """C's `for (b...) sumf += terms[b]` over axis 0 in f32, strictly in order."""
    acc = np.zeros(terms.shape[1:], F32) if start is None else start.astype(F32, copy=True)
    for t in terms:
        acc += t
    return acc


def _dot_q32(wt: str, w: dict, x: dict) -> np.ndarray:
    """q4_0/q5_0/q8_0 x q8_0 and q4_1/q5_1 x q8_1 (ggml_vec_dot_*_generic) for (N..) weights and (M..) rows."""
    # integer block dots, exact in f32 (|sum| <= 32*128*128 < 2^24): (nb, M, N)
    isum = _bmm(x["q"].transpose(1, 0, 2), w["q"].transpose(1, 2, 0), F32)
    dw, dx = w["d"].T[:, None, :], x["d"].T[:, :, None]            # (nb, 1, N), (nb, M, 1)
    if wt == "q4_0":
        terms = isum * dw * dx                                      # sumi*d_w*d_x
    elif wt == "q8_0":
        terms = isum * (dw * dx)
    elif wt == "q5_0":
        terms = (dw * dx) * isum
    else:                                                           # q4_1, q5_1: + m_w*s_x
        terms = (dw * dx) * isum + w["m"].T[:, None, :] * x["s"].T[:, :, None]
    return _acc(terms)


def _lane_sums(xq: np.ndarray, wfold: np.ndarray) -> np.ndarray:
    """aux32[b, lane, m, n] = sum over k = 8g+lane of xq[m,b,k]*wfold[n,b,k]: the 8 int32 lanes of the
    generic K-quant dot products. Exact in f32: |wfold| <= 128*32 (q6_K), |xq| <= 128, 32 terms -> <= 2^24."""
    M, nb, _ = xq.shape
    N = wfold.shape[0]
    a = xq.reshape(M, nb, 32, 8).transpose(1, 3, 0, 2)            # (nb, 8, M, 32)
    b = wfold.reshape(N, nb, 32, 8).transpose(1, 3, 2, 0)         # (nb, 8, 32, N)
    return _bmm(a, b, F32)


def _dot_k(wt: str, w: dict, x: dict) -> np.ndarray:
    """ggml_vec_dot_qN_K_q8_K_generic for (N, nb) weights and (M, nb) q8_K rows."""
    dy = x["d"].T[:, :, None]                                       # (nb, M, 1)
    dw = w["d"].T[:, None, :]                                       # (nb, 1, N)
    q, sc = w["q"].astype(np.int32), w["sc"]
    if wt == "q2_K":
        fold = (q.reshape(*q.shape[:2], 16, 16) * sc[..., None]).reshape(q.shape)
        isum = _bmm(x["q"].transpose(1, 0, 2), fold.transpose(1, 2, 0), F32)   # <= 15*3*128*256 < 2^24
        summs = _bmm(x["bsums"].transpose(1, 0, 2), w["mn"].transpose(1, 2, 0), np.float64).astype(F32)
        dall = dy * dw
        dmin = dy * w["dmin"].T[:, None, :]
        return _acc(dall * isum - dmin * summs)
    sub = 32 if wt in ("q4_K", "q5_K") else 16
    fold = (q.reshape(*q.shape[:2], 256 // sub, sub) * sc[..., None]).reshape(q.shape)
    aux = _lane_sums(x["q"], fold)                                  # (nb, 8, M, N)
    d = dw * dy                                                     # FP16_TO_FP32(x.d) * y.d
    sums = _acc(d[:, None] * aux)                                   # (8, M, N): sums[l] += d*aux32[l]
    if wt in ("q4_K", "q5_K"):
        mins = np.repeat(w["mn"], 2, axis=2)                        # mins[j/2] for the 16 bsums
        sumi = _bmm(x["bsums"].transpose(1, 0, 2), mins.transpose(1, 2, 0), np.float64).astype(F32)
        sumf = _acc(-((w["dmin"].T[:, None, :] * dy) * sumi))      # sumf -= dmin*sumi
    else:
        sumf = np.zeros(sums.shape[1:], F32)
    return _acc(sums, start=sumf)                                   # sumf += sums[l], l = 0..7


def mul_mat_quant(w_raw: np.ndarray, wtype: "str | GGMLType", x: np.ndarray, act: str = "x86") -> np.ndarray:
    """y = x @ W^T as ggml's CPU mul_mat computes it: W is (N, row_bytes) raw weights of type wtype,
    x is (M, K) f32 activations, y is (M, N) f32. Activation rows are quantized to vec_dot_type(wtype)
    (see quantize_activations for `act`), then each block's integer dot product is scaled in f32 in the
    order of ggml's generic vec_dot code. f32/f16/bf16 weights: products summed in f64 (ggml_float)."""
    wt = get_type(wtype)
    x = np.asarray(x, dtype=F32)
    w_raw = np.ascontiguousarray(w_raw).view(np.uint8)
    if x.ndim != 2 or w_raw.ndim != 2:
        raise ValueError(f"mul_mat_quant wants 2-D w_raw and x, got {w_raw.shape} and {x.shape}")
    if wt.name not in MUL_MAT_TYPES:
        raise NotImplementedError(f"mul_mat_quant: weight type {wt.name} is not supported")
    M, K = x.shape
    N = w_raw.shape[0]
    if w_raw.shape[1] != wt.row_bytes(K):
        raise ValueError(f"{wt.name} weight rows of {K} elements are {wt.row_bytes(K)} bytes, got {w_raw.shape[1]}")
    vt = vec_dot_type(wt)
    xq = quantize_activations(x, vt, act)
    if not wt.is_quantized:
        wv = dequantize(w_raw, wt).astype(np.float64)
        return (dequantize(xq, vt).astype(np.float64) @ wv.T).astype(F32)
    out = np.zeros((M, N), F32)
    if M == 0 or N == 0 or K == 0:   # an empty dot product is 0, as in ggml
        return out
    with np.errstate(all="ignore"):   # inf/nan scales propagate as IEEE says, as in ggml
        _mul_mat_blocks(w_raw, wt, xq, vt, out)
    return out


def _mul_mat_blocks(w_raw: np.ndarray, wt: GGMLType, xq: np.ndarray, vt: GGMLType, out: np.ndarray) -> None:
    (M, N), K = out.shape, w_raw.shape[1] // wt.size * wt.blck
    nb = K // wt.blck
    # chunk so the (nb, [8,] Mc, Nc) intermediates stay around 4M elements
    per = nb * (8 if wt.name in ("q3_K", "q4_K", "q5_K", "q6_K") else 1)
    nc = max(1, min(N, (1 << 22) // max(1, per * min(M, 64))))
    mc = max(1, min(M, (1 << 22) // max(1, per * nc)))
    kern = _dot_k if wt.blck == QK_K else _dot_q32
    for n0 in range(0, N, nc):
        wf = _fields(w_raw[n0:n0 + nc], wt, min(nc, N - n0))
        for m0 in range(0, M, mc):
            xf = _fields(xq[m0:m0 + mc], vt, min(mc, M - m0))
            out[m0:m0 + mc, n0:n0 + nc] = kern(wt.name, wf, xf)
