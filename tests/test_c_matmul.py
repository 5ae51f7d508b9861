"""The C target's mul_mat kernels (kernels/c/matmul.h, quant.h) against graphc.quants.mul_mat_quant,
which reproduces ggml's CPU mul_mat (x86 activation quantization, integer block dots).

matmul.h is compiled into a tiny shared library several times: -march=native (AVX-512 VNNI where the
machine has it), -march=icelake-server (AVX-512 VNNI), -march=skylake-avx512 (AVX-512 float kernels next
to the AVX2 integer ones: no VNNI), -march=haswell, -march=znver2 and -march=znver3 (AVX2 + FMA + F16C) and
-march=x86-64 (portable scalar), each at -O3 with -Wall -Wextra -Werror, and once with the
undefined-behaviour sanitizer. Every build is compiled on every host (test_build_warning_free: a warning
under a tier this CPU lacks still fails here); the numeric tests run for the builds this CPU can execute
(RUNNABLE, decided at collection), so a build the host cannot run is a compile test, never a skip.
Threads are simulated by calling ith = 0..nth-1 in turn, each with its own scratch, exactly as the
generated driver does, with the shared work counter (even nth) and without (odd nth).
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from graphc import quants
from graphc.types import get_type

KERNELS = Path(__file__).resolve().parent.parent / "kernels" / "c"
HARNESS = r"""
#include "matmul.h"
void mm(const gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, int ith, int nth) {
    gc_op_mul_mat(ctx, dst, src, 0, ith, nth);
}
size_t mm_scratch(const gc_tensor *dst, const gc_tensor *const *src) { return gc_scratch_mul_mat(dst, src, 0); }
/* the activation quantizers the build uses (SIMD where it has them) next to the portable ones */
void q32(const float *x, int64_t n, int q81, int c, gc_act4 *fast, gc_act4 *ref) {
    gc_quantize_act_q32(x, n, q81, c, fast);
    gc_quantize_act_q32_scalar(x, n, q81, c, ref);
}
void q8k(const float *x, int64_t n, int perm, block_q8_K *fast, block_q8_K *ref) {
    gc_quantize_act_q8_K(x, n, perm, fast);
    gc_quantize_act_q8_K_scalar(x, n, perm, ref);
}
"""
# ubsan: native, undefined-behaviour sanitizer
BUILDS = ("native", "icelake-server", "skylake-avx512", "haswell", "znver2", "znver3", "x86-64", "ubsan")
WFLAGS = ("-Wall", "-Wextra", "-Werror")
# ISA macros of extensions gcc only emits through their own intrinsics, which matmul.h does not use
# (system, crypto, random-number, cache-control instructions): a host without them (a VM hiding MWAITX,
# no SGX) still runs the build
INTRINSIC_ONLY = {"__AES__", "__PCLMUL__", "__VAES__", "__VPCLMULQDQ__", "__SHA__", "__RDRND__", "__RDSEED__",
                  "__RDPID__", "__FSGSBASE__", "__XSAVE__", "__XSAVEC__", "__XSAVEOPT__", "__XSAVES__",
                  "__CLFLUSHOPT__", "__CLWB__", "__CLZERO__", "__WBNOINVD__", "__MWAITX__", "__PKU__", "__SGX__",
                  "__PCONFIG__", "__SHSTK__", "__PTWRITE__", "__WAITPKG__", "__MOVDIRI__", "__MOVDIR64B__",
                  "__ENQCMD__", "__SERIALIZE__", "__TSXLDTRK__", "__UINTR__", "__HRESET__", "__KL__", "__WIDEKL__",
                  "__RTM__", "__LWP__", "__CLDEMOTE__", "__AMX_TILE__", "__AMX_INT8__", "__AMX_BF16__"}
QTYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K")
FTYPES = ("f32", "f16", "bf16")
ACT4 = 384          # sizeof(gc_act4): qs, bias, d, s (what the quantizers write: ACT4_QUANT bytes), bsum
ACT4_QUANT = 320
NMSE_Q = 1e-10      # quantized: same integer dots, f32 summation order differs
NMSE_F = 1e-10      # float: f32 SIMD accumulation vs the oracle's float64


class GcTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_int64 * 4),
                ("type", ctypes.c_int32)]


class GcCtx(ctypes.Structure):
    _fields_ = [("n_threads", ctypes.c_int), ("scratch", ctypes.POINTER(ctypes.c_void_p)),
                ("scratch_size", ctypes.c_size_t), ("work", ctypes.POINTER(ctypes.c_int))]


def _cc() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def _flags(build: str) -> list[str]:
    if build == "ubsan":
        return ["-O1", "-march=native", "-fsanitize=undefined", "-fno-sanitize-recover=all"]
    return ["-O3", f"-march={build}"]


def _isa_macros(cc: str, march: str) -> set[str] | None:
    """The instruction-set macros (__AVX2__, __AVX512VNNI__, ...) the compiler defines for -march (None: it
    does not know that -march)."""
    r = subprocess.run([cc, f"-march={march}", "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return set(re.findall(r"^#define (__[A-Z0-9_]+__) 1$", r.stdout, re.M)) - INTRINSIC_ONLY


def _runnable_builds() -> tuple[str, ...]:
    """The builds this CPU can execute: native, x86-64 and ubsan (native) always; another -march when every
    extension it lets the compiler use is one the compiler finds on this CPU under -march=native."""
    cc = _cc()
    always = ("native", "x86-64", "ubsan")
    if cc is None:                 # test_build_warning_free fails on the missing compiler
        return always
    host = _isa_macros(cc, "native")

    def runs(build: str) -> bool:
        need = _isa_macros(cc, build)
        return host is not None and need is not None and need <= host
    return tuple(b for b in BUILDS if b in always or runs(b))


RUNNABLE = _runnable_builds()


def _cpuinfo_flags() -> set[str]:
    return set(Path("/proc/cpuinfo").read_text().split())


def _compile(build: str, d: Path, *extra: str) -> Path:
    """The harness under the build's flags with -Wall -Wextra -Werror; fails on any warning."""
    cc = _cc()
    assert cc, "no C compiler: graphc's C target needs one (a broken setup, not a skip)"
    (d / "h.c").write_text(HARNESS)
    out = d / ("h.o" if "-c" in extra else "mm.so")
    link = [] if "-c" in extra else ["-lm"]
    cmd = [cc, *_flags(build), *WFLAGS, "-fPIC", *extra, f"-I{KERNELS}", str(d / "h.c"), "-o", str(out), *link]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, f"{' '.join(cmd)}:\n{r.stderr}"
    return out


@pytest.mark.parametrize("build", BUILDS)
def test_build_warning_free(build, tmp_path):
    """Every build compiles without a warning on every host, whether or not this CPU can run it (the `lib`
    fixture builds the runnable ones again as shared libraries, -Werror too). -fkeep-inline-functions also
    compiles every static inline function on its own: gc_op_mul_mat and the row kernels as the generated
    code calls them, not only as inlined into the harness where gcc proves other things (gcc 12's
    -Wmaybe-uninitialized on the GEMV output tile showed only this way)."""
    obj = _compile(build, tmp_path, "-std=gnu11", "-fkeep-inline-functions", "-c")
    # the kernels really were compiled for this build (nm: binutils, next to gcc)
    nm = shutil.which("nm")
    if nm:
        syms = subprocess.run([nm, str(obj)], capture_output=True, text=True, check=True).stdout
        assert {"gc_op_mul_mat", "gc_quantize_act_q8_K_scalar", "mm", "mm_scratch", "q32", "q8k"} <= set(syms.split())


def test_runnable_builds():
    """The collection-time choice of numeric builds agrees with /proc/cpuinfo: an AVX2 host runs the AVX2
    build and an AVX-512 host the AVX-512 one (item 5 of issue 13: AVX2-only machines test their own
    kernels), and no build needing an extension the CPU lacks is run."""
    have = _cpuinfo_flags()
    assert {"native", "x86-64", "ubsan"} <= set(RUNNABLE)
    avx2 = {"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "abm", "popcnt", "sse4_2"}
    avx512 = avx2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}
    vnni = avx512 | {"avx512_vnni", "avx512vbmi", "avx512_vbmi2", "avx512ifma", "avx512_bitalg",
                     "avx512_vpopcntdq", "gfni"}
    need = {"haswell": avx2, "znver2": avx2 | {"sse4a", "adx"}, "skylake-avx512": avx512, "icelake-server": vnni}
    for build, flags in need.items():
        if build in RUNNABLE:
            assert flags <= have, f"{build} runs although the CPU lacks {sorted(flags - have)}"
    if avx2 | {"lahf_lm"} <= have:
        assert "haswell" in RUNNABLE, "an AVX2 CPU must run the AVX2 build"
    if avx512 | {"adx", "lahf_lm", "3dnowprefetch"} <= have:          # 3dnowprefetch: PREFETCHW
        assert "skylake-avx512" in RUNNABLE, "an AVX-512 CPU must run the skylake-avx512 build"


_LIBS: dict[str, ctypes.CDLL] = {}   # per process: xdist interleaves the params, the module fixture is set up again


@pytest.fixture(scope="module", params=RUNNABLE)
def lib(request, tmp_path_factory):
    if request.param in _LIBS:
        return _LIBS[request.param]
    so = _compile(request.param, tmp_path_factory.mktemp(f"mm_{request.param}"), "-shared")
    h = ctypes.CDLL(str(so))
    h.mm.argtypes = [ctypes.POINTER(GcCtx), ctypes.POINTER(GcTensor), ctypes.POINTER(ctypes.POINTER(GcTensor)),
                     ctypes.c_int, ctypes.c_int]
    h.mm_scratch.argtypes = [ctypes.POINTER(GcTensor), ctypes.POINTER(ctypes.POINTER(GcTensor))]
    h.mm_scratch.restype = ctypes.c_size_t
    h.q32.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    h.q8k.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    _LIBS[request.param] = h
    return h


def _desc(arr: np.ndarray, type_id: int, ne0: int | None = None, nb0: int | None = None) -> GcTensor:
    """gc_tensor over a numpy array (numpy shape = reversed ne). Block rows: pass ne0 and nb0 (block bytes)."""
    t = GcTensor()
    t.data = arr.ctypes.data
    shape, strides = list(arr.shape[::-1]), list(arr.strides[::-1])
    if ne0 is not None:                       # arr is (..., row_bytes) uint8
        shape[0], strides[0] = ne0, nb0
    shape += [1] * (4 - len(shape))
    strides += [strides[-1] * shape[len(strides) - 1]] * (4 - len(strides))
    t.ne[:] = shape
    t.nb[:] = strides
    t.type = type_id
    return t


def run_c(lib, w: np.ndarray, wtype: str, K: int, x: np.ndarray, xtype: str, nth: int,
          type_id: int | None = None, row_bytes: int | None = None) -> np.ndarray:
    """w: uint8 (A3, A2, N, >= row_bytes) raw rows (may be a view); x: (B3, B2, M, K) of xtype (any strides).
    type_id: the weights' type in C when it is not wtype's (re-laid-out weights: GC_Q4_0X8, GC_Q4_KX8);
    row_bytes: their row stride in the type's own layout (what nb[1] says) when w's rows are not that."""
    t = get_type(wtype)
    a = _desc(w, t.id if type_id is None else type_id, ne0=K, nb0=t.size)  # nb[0]: bytes per element/block
    if row_bytes is not None:
        a.nb[1] = row_bytes
    b = _desc(x, get_type(xtype).id)
    out = np.full((x.shape[0], x.shape[1], x.shape[2], w.shape[2]), np.nan, np.float32)
    d = _desc(out, 0)
    src = (ctypes.POINTER(GcTensor) * 2)(ctypes.pointer(a), ctypes.pointer(b))
    size = lib.mm_scratch(ctypes.byref(d), src)
    bufs = [np.empty(size, np.uint8) for _ in range(nth)]
    ptrs = (ctypes.c_void_p * nth)(*[bb.ctypes.data for bb in bufs])
    # even nth: work handed out through the shared counter (thread 0, called first, takes every chunk but
    # the first ones of the others); odd nth: no counter, thread ith takes every nth chunk
    work = (ctypes.c_int * 2)(0, 0)
    ctx = GcCtx(nth, ptrs, size, work if nth % 2 == 0 else None)
    for ith in range(nth):
        lib.mm(ctypes.byref(ctx), ctypes.byref(d), src, ith, nth)
    assert list(work) == [0, 0], "the last thread out leaves the counter reset"
    return out


def random_weights(rng, wtype: str, rows: int, K: int) -> np.ndarray:
    """(rows, row_bytes) raw weights: ggml's quantizer where graphc has one, else random blocks with sane scales."""
    t = get_type(wtype)
    if wtype in FTYPES or wtype in quants._QUANTIZERS:
        return quants.quantize(rng.standard_normal((rows, K), dtype=np.float32), t)
    nb = rows * K // t.blck
    raw = rng.integers(0, 256, (nb, t.size), dtype=np.uint8)
    offs = {"q2_K": (80, 82), "q3_K": (108,), "q5_K": (0, 2)}[wtype]
    for o in offs:
        raw[:, o:o + 2] = quants._f16_bytes(rng.uniform(1e-3, 1e-2, nb).astype(np.float32))
    return raw.reshape(rows, -1)


def expected(w: np.ndarray, wtype: str, x: np.ndarray) -> np.ndarray:
    a3, a2, n, rb = w.shape
    b3, b2, m, k = x.shape
    r3, r2 = b3 // a3, b2 // a2
    out = np.empty((b3, b2, m, n), np.float32)
    for i3 in range(b3):
        for i2 in range(b2):
            wr = np.ascontiguousarray(w[i3 // r3, i2 // r2, :, :get_type(wtype).row_bytes(k)])
            out[i3, i2] = quants.mul_mat_quant(wr, wtype, np.asarray(x[i3, i2], np.float32))
    return out


def nmse(a: np.ndarray, e: np.ndarray) -> float:
    return float(np.sum((a.astype(np.float64) - e) ** 2) / max(np.sum(e.astype(np.float64) ** 2), 1e-300))


def check(lib, rng, wtype: str, K: int, N: int, M: int, *, wb=(1, 1), xb=(1, 1), nth: int = 1,
          x_stride: str = "contig", xtype: str = "f32", w_pad: int = 0) -> None:
    t = get_type(wtype)
    rb = t.row_bytes(K)
    w = np.zeros((*wb, N, rb + w_pad), np.uint8)
    for i in np.ndindex(*wb):
        w[i][:, :rb] = random_weights(rng, wtype, N, K)
    shape = (*xb, M, K)
    if x_stride == "transposed":          # nb0 != element size: the K axis is the slow one
        x = rng.standard_normal((*xb, K, M), dtype=np.float32).swapaxes(-1, -2)
    elif x_stride == "padded":            # rows further apart than K elements
        x = rng.standard_normal((*xb, M, K + 7), dtype=np.float32)[..., 3:K + 3]
    else:
        x = rng.standard_normal(shape, dtype=np.float32)
    if xtype != "f32":
        x = (x.astype(np.float16) if xtype == "f16" else x)
    got = run_c(lib, w, wtype, K, x, xtype, nth)
    exp = expected(w, wtype, np.asarray(x, np.float32))
    assert np.all(np.isfinite(got)), "some outputs were not written"
    err = nmse(got, exp)
    assert err <= (NMSE_Q if t.is_quantized else NMSE_F), f"{wtype} K={K} N={N} M={M}: nmse {err:.3g}"


@pytest.mark.parametrize("wtype", QTYPES + FTYPES)
@pytest.mark.parametrize("M", [1, 3, 8])
def test_gemv(lib, rng, wtype, M):
    K = 512 if get_type(wtype).blck == 256 else 384   # 384: 12 blocks of 32 = 3 full SIMD groups
    check(lib, rng, wtype, K, 37, M, nth=1)
    check(lib, rng, wtype, K, 37, M, nth=3)


@pytest.mark.parametrize("wtype", QTYPES + FTYPES)
def test_gemm_tiles(lib, rng, wtype):
    """More columns than one tile (GC_MM_CT), an odd count, and K with a partial SIMD group."""
    K = 768 if get_type(wtype).blck == 256 else 352   # 352 = 11 blocks: 2 groups + 3 tail blocks
    check(lib, rng, wtype, K, 19, 45, nth=3)


@pytest.mark.parametrize("wtype", ["q4_0", "q5_1", "q8_0", "q4_K", "q6_K", "f16", "f32"])
def test_broadcast_and_strides(lib, rng, wtype):
    K = 256 if get_type(wtype).blck == 256 else 96
    check(lib, rng, wtype, K, 10, 5, wb=(1, 2), xb=(3, 4), nth=3, x_stride="padded", w_pad=6)
    check(lib, rng, wtype, K, 9, 4, wb=(2, 1), xb=(2, 3), nth=2, x_stride="transposed")


@pytest.mark.parametrize("wtype", ["q4_0", "q4_K", "f16", "bf16"])
def test_f16_activations(lib, rng, wtype):
    K = 256
    check(lib, rng, wtype, K, 8, 3, nth=2, xtype="f16")


@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q5_0", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"])
def test_rows_columns_threads(lib, rng, wtype):
    """Every column count 1..9 (GEMV forms and the 4-column groups with a remainder) with 1..3 threads
    and row counts that split unevenly (odd, below and above one thread's share)."""
    K = 512 if get_type(wtype).blck == 256 else 160     # 160: 5 blocks of 32, a group of 4 and a tail
    for M in range(1, 10):
        nth = 1 + M % 3
        check(lib, rng, wtype, K, 4 * M + 1 + (M % 2) * 6, M, nth=nth)


@pytest.mark.parametrize("K,N,M,nth", [(32, 8, 1, 1), (96, 16, 1, 2), (160, 24, 3, 3), (256, 40, 9, 2),
                                       (384, 64, 45, 3), (128, 8, 33, 1)])
def test_q4_0_x8_relayout(lib, rng, K, N, M, nth):
    """q4_0 weights re-laid out in 8-row groups (targets/c/repack.py, GC_Q4_0X8) give what the rows as
    stored give: GEMV and GEMM column counts around the 4-column kernel, block counts that do not fill a
    4-block activation group, uneven work chunks; and the type is refused where its shape does not fit."""
    from graphc.targets.c.repack import GC_Q4_0X8, relayout_q4_0_x8
    raw = random_weights(rng, "q4_0", N, K)
    x = rng.standard_normal((1, 1, M, K), dtype=np.float32)
    w = relayout_q4_0_x8(raw, N, K).reshape(1, 1, N, -1)
    got = run_c(lib, w, "q4_0", K, x, "f32", nth, type_id=GC_Q4_0X8)
    want = expected(raw.reshape(1, 1, N, -1), "q4_0", x)
    assert np.all(np.isfinite(got)) and nmse(got, want) <= NMSE_Q, nmse(got, want)


@pytest.mark.parametrize("wtype", ["q4_K", "q6_K"])
@pytest.mark.parametrize("K,N,M,nth", [(256, 8, 1, 1), (512, 16, 1, 2), (256, 24, 3, 3), (768, 40, 9, 2),
                                       (256, 16, 45, 3)])
def test_k_quant_x8_relayout(lib, rng, wtype, K, N, M, nth):
    """q4_K / q6_K weights in 8-row groups (GC_Q4_KX8 with scales unpacked to bytes, GC_Q6_KX8 with the
    6-bit values split into nibble and 2-bit planes) give what the rows as stored give."""
    from graphc.targets.c import repack
    raw = random_weights(rng, wtype, N, K)
    x = rng.standard_normal((1, 1, M, K), dtype=np.float32)
    w = repack.RELAYOUT[wtype](raw, N, K).reshape(1, 1, N, -1)
    got = run_c(lib, w, wtype, K, x, "f32", nth, type_id=repack.C_TYPE[wtype], row_bytes=get_type(wtype).row_bytes(K))
    want = expected(raw.reshape(1, 1, N, -1), wtype, x)
    assert np.all(np.isfinite(got)) and nmse(got, want) <= NMSE_Q, nmse(got, want)


def _act_edge_cases(rng, n: int) -> np.ndarray:
    """n f32 values (n a multiple of 256) whose blocks hit every branch of the activation quantizers."""
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(rng.choice([1e-3, 1.0, 30.0]))
    x[:32] = 0                                        # an all-zero q8_0 block
    x[32:64] = rng.integers(-127, 128, 32) + np.float32(0.5)   # ties at the rounding boundary ...
    x[32] = 127.0                                     # ... with amax 127: id = 1, v = x exactly
    x[64:96] *= np.float32(1e-30)                     # tiny, subnormal products
    x[96] = -np.float32(3e38)                         # huge magnitude
    x[128:160] = 2.5
    x[130] = -2.5                                     # equal magnitudes of both signs
    if n >= 512:
        x[256:512] = 0                                # an all-zero q8_K super-block
        x[300] = -0.0
    if n >= 768:
        x[512:768] = rng.uniform(-1, 1, 256).astype(np.float32)
        x[[515, 521, 700]] = [-2, 2, 2]               # q8_K: the first largest magnitude sets the sign
    return x


@pytest.mark.parametrize("n", [32, 96, 256, 768, 4096])
def test_activation_quantizers(lib, rng, n):
    """The SIMD activation quantizers write exactly the bytes of the portable ones (ties, zeros, signs,
    huge and tiny values, NaN and inf), for q8_0/q8_1 (every weight offset) and q8_K (both orders)."""
    for trial in range(3):
        x = _act_edge_cases(rng, max(n, 256))[:n].copy()
        if trial == 2:                                # NaN and inf: ignored by amax, quantized to 0
            x[rng.integers(0, n, 3)] = np.nan
            x[rng.integers(0, n, 2)] = np.inf
        ng = (n // 32 + 3) // 4
        for q81, c in ((0, 8), (0, 16), (0, 128), (1, 0)):
            fast, ref = np.full(ng * ACT4, 0xAB, np.uint8), np.full(ng * ACT4, 0xCD, np.uint8)
            lib.q32(x.ctypes.data, n, q81, c, fast.ctypes.data, ref.ctypes.data)
            assert np.array_equal(fast.reshape(ng, ACT4)[:, :ACT4_QUANT], ref.reshape(ng, ACT4)[:, :ACT4_QUANT]), \
                f"q8_{q81} activations differ (c={c}, trial {trial})"
        if n % 256 == 0:
            for perm in (0, 1):
                fast, ref = np.full(n // 256 * 292, 0xAB, np.uint8), np.full(n // 256 * 292, 0xCD, np.uint8)
                lib.q8k(x.ctypes.data, n, perm, fast.ctypes.data, ref.ctypes.data)
                assert np.array_equal(fast, ref), f"q8_K activations differ (perm={perm}, trial {trial})"
    # and both match graphc's q8_0 / q8_K quantizers (ggml's x86 numerics) on finite data
    x = _act_edge_cases(rng, max(n, 256))[:n].copy()
    fast, ref = np.zeros((n // 32 + 3) // 4 * ACT4, np.uint8), np.zeros((n // 32 + 3) // 4 * ACT4, np.uint8)
    lib.q32(x.ctypes.data, n, 0, 128, fast.ctypes.data, ref.ctypes.data)
    exp = quants.quantize_activations(x[None], "q8_0", "x86").reshape(-1, 34)
    g = fast.reshape(-1, ACT4)
    for b in range(n // 32):
        grp, j = g[b // 4], b % 4
        q = np.concatenate([grp[16 * j:16 * j + 16], grp[64 + 16 * j:64 + 16 * j + 16]]).view(np.int8)
        assert np.array_equal(q, exp[b, 2:].view(np.int8)), f"q8_0 block {b}"
        d = grp[192:256].view(np.float32)[4 * j]
        assert d == exp[b, :2].view(np.float16)[0].astype(np.float32), f"q8_0 scale of block {b}"
    if n % 256 == 0:
        fast, ref = np.zeros(n // 256 * 292, np.uint8), np.zeros(n // 256 * 292, np.uint8)
        lib.q8k(x.ctypes.data, n, 0, fast.ctypes.data, ref.ctypes.data)
        assert np.array_equal(fast, quants.quantize_activations(x[None], "q8_K", "x86").reshape(-1))


def test_small_and_empty(lib, rng):
    # more threads than rows. Not one row: NMSE over a single output is the relative error of one dot
    # product, and a random one can cancel to ~1e-3 of its terms (an integer sum of 34 from products up to
    # ~16000), where the f32 sum of the partial products is off by ~1e-5 relative; it failed about 1 run in 40
    check(lib, rng, "q8_0", 32, 5, 1, nth=8)
    check(lib, rng, "f32", 5, 3, 2, nth=2)            # K below one vector
    check(lib, rng, "f32", 1030, 6, 2, nth=1)         # K over one K block, with a tail
    w = np.zeros((1, 1, 4, 0), np.uint8)
    got = run_c(lib, w, "f32", 0, np.zeros((1, 1, 2, 0), np.float32), "f32", 2)
    assert np.all(got == 0)


def test_quantized_extremes(lib, rng):
    """All-zero activation blocks (d = 0), huge and tiny magnitudes, ties at the rounding boundary."""
    K, N = 256, 6
    for wtype in ("q4_0", "q4_1", "q8_0", "q4_K", "q6_K"):
        x = rng.standard_normal((1, 1, 4, K), dtype=np.float32)
        x[0, 0, 0, :64] = 0
        x[0, 0, 1] *= 300        # q8_1's s = sum*d still fits f16
        x[0, 0, 2] = np.round(x[0, 0, 2] * 4) / 4
        w = random_weights(rng, wtype, N, K)[None, None]
        got = run_c(lib, w, wtype, K, x, "f32", 2)
        exp = expected(w, wtype, x)
        assert nmse(got, exp) <= NMSE_Q, wtype


def test_supports(tmp_path):
    """gc_supports_mul_mat accepts what the kernels handle and refuses the rest (the C target then says so)."""
    cc = _cc()
    assert cc, "no C compiler: graphc's C target needs one (a broken setup, not a skip)"
    (tmp_path / "s.c").write_text('#include "matmul.h"\n'
                                  "int sup(const gc_tensor *d, const gc_tensor *const *s) "
                                  "{ return gc_supports_mul_mat(d, s, 0); }\n")
    so = tmp_path / "s.so"
    subprocess.run([cc, "-O2", *WFLAGS, "-fPIC", "-shared", f"-I{KERNELS}", str(tmp_path / "s.c"),
                    "-o", str(so), "-lm"], check=True)
    lib = ctypes.CDLL(str(so))
    lib.sup.argtypes = [ctypes.POINTER(GcTensor), ctypes.POINTER(ctypes.POINTER(GcTensor))]

    def sup(wtype: str, K: int = 64, xtype: str = "f32", w_ne2: int = 1, x_ne2: int = 2) -> int:
        t = get_type(wtype)
        a = GcTensor(None, (K, 4, w_ne2, 1), (t.size, 64, 64, 64), t.id)
        b = GcTensor(None, (K, 3, x_ne2, 1), (4, 4 * K, 4, 4), get_type(xtype).id)
        d = GcTensor(None, (4, 3, x_ne2, 1), (4, 16, 48, 48), 0)
        return lib.sup(ctypes.byref(d), (ctypes.POINTER(GcTensor) * 2)(ctypes.pointer(a), ctypes.pointer(b)))

    for wtype in QTYPES[:5] + FTYPES:
        assert sup(wtype) == 1
    assert sup("q4_K", K=256) == 1
    assert sup("q4_K", K=64) == 0          # not a whole super-block
    assert sup("iq4_nl") == 0              # no kernel for this weight type
    assert sup("f32", xtype="i32") == 0
    assert sup("q8_0", w_ne2=2, x_ne2=3) == 0   # 3 is not a multiple of 2
