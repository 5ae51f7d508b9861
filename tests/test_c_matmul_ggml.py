"""Quantized mul_mat of the C target (weight repacking on and off) and of ref's ggml emulation against
real ggml's CPU mul_mat (ggml-python), on the same weight bytes and activations.

ggml computes a quantized mul_mat in one of two ways on x86, chosen by weight type and row count:
- its REPACK path (weights in a CPU_REPACK buffer, as llama.cpp places them): q4_0 and q4_K (AVX2) and
  q2_K (AVX-512) with rows in groups of 8, 8-row interleaved blocks; activations quantized 4 columns at
  a time (ggml_quantize_mat_q8_K_4x8 / q8_0_4x8) for the GEMM and by row (from_float) for the rest;
- its vec_dot path (ggml_vec_dot_<type>_q8_K / _q8_0 / _q8_1, activations quantized by from_float) for
  every other type and shape.
(A llama.cpp built with AMX kernels puts q4_0/q4_1/q8_0/q4_K/q5_K/q6_K/iq4_xs weights in an AMX buffer
first, whose kernels are a third path; it is not compared here.)

Both of ggml's paths quantize the activations to the same integers and compute the same exact integer
block dots; they differ only in the order their f32 terms are summed, so they disagree with each other in
the last bits (NMSE 1e-14 .. 3e-13 here, about a third of the outputs bit-equal). graphc's three
implementations (ref: the generic vec_dot order; C row kernels, repack=False; C 8-row kernels,
repack=True) must sit within that same noise of BOTH ggml paths, for every weight type, shapes whose rows
do and do not come in groups of 8, and column counts that exercise GEMV (1), ggml's 4-column GEMM groups
and their remainders (3, 4, 5, 10) and more than one of graphc's 32-column tiles (33, 40). A different
activation quantization (one int8 off by one) moves an output by ~1e-3 of its column's RMS, a wrong scale
or sum by much more; the per-element bound here is 2e-5 of the column's RMS (observed <= ~4e-6).

A model's logits are a different matter: a last-bit difference upstream flips the f16 rounding of the KV
cache or the 8-bit rounding of some activation now and then, and flips compound through the layers, so
implementations that agree here to 1e-14 (ref, C with and without repacking, llama.cpp's vec_dot path)
differ pairwise by NMSE 1e-6 .. 1e-4 on the logits of some tiny q4_K_M models and by 1e-14 on others, no
one of them closest to llama.cpp; tests/test_models_llm.py bounds that.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

import graphc
from graphc.builder import GraphBuilder
from graphc.targets.c import repack as c_repack
from op_cases import ggml_quantize, ggml_type_id

import ggml as gg  # noqa: E402  (a test dependency: missing means a broken install)

pytestmark = pytest.mark.ggml

K_TYPES = ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K")
Q32_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")
SHAPES = ((64, 256), (40, 512), (16, 1024))     # (rows, K): 40 rows are not 8-row groups for ggml or graphc
COLS = (1, 3, 4, 5, 10, 33, 40)
REL = 2e-5          # |got - ggml| / RMS of ggml's column, per element
NMSE = 1e-11        # over a whole output


def _ggml_repacks(wtype: str, rows: int) -> bool:
    """ggml's ggml_repack_get_optimal_repack_type on x86 (ggml-cpu/repack.cpp): the types it re-lays out."""
    if rows % 8:
        return False
    if wtype in ("q4_0", "q4_K"):
        return bool(gg.ggml_cpu_has_avx2())
    return wtype == "q2_K" and bool(gg.ggml_cpu_has_avx512())


class GgmlCPU:
    """ggml_mul_mat on the CPU backend, the weights in a plain buffer (vec_dot path) or in ggml's
    CPU_REPACK buffer (its 8-row kernels, for the types _ggml_repacks names; another type there would
    crash in ggml's set_tensor)."""

    def __init__(self) -> None:
        self.backend = gg.ggml_backend_cpu_init()
        assert self.backend, "ggml_backend_cpu_init failed"
        gg.ggml_backend_cpu_set_n_threads(self.backend, 2)
        dev = gg.ggml_backend_dev_by_type(gg.GGML_BACKEND_DEVICE_TYPE_CPU)
        reg = gg.ggml_backend_dev_backend_reg(dev)
        p = gg.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
        self.repack = None
        if p:
            bufts = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(p)(dev)
            i = 0
            while bufts[i]:
                if gg.ggml_backend_buft_name(bufts[i]) == b"CPU_REPACK":
                    self.repack = bufts[i]
                i += 1

    def mul_mat(self, w_raw: np.ndarray, wtype: str, x: np.ndarray, repack: bool) -> np.ndarray:
        """w_raw: (rows, row_bytes) weight bytes, x: (M, K) f32 -> (M, rows) f32."""
        x = np.ascontiguousarray(x, np.float32)
        w_raw = np.ascontiguousarray(w_raw, np.uint8)
        (m, k), rows = x.shape, w_raw.shape[0]
        params = gg.ggml_init_params(mem_size=1 << 20, mem_buffer=None, no_alloc=True)
        cw, cx = gg.ggml_init(params), gg.ggml_init(params)
        bw = bx = None
        try:
            w = gg.ggml_new_tensor_2d(cw, ggml_type_id(wtype), k, rows)
            buft = self.repack if repack else gg.ggml_backend_get_default_buffer_type(self.backend)
            bw = gg.ggml_backend_alloc_ctx_tensors_from_buft(cw, buft)
            assert bw and gg.ggml_nbytes(w) == w_raw.size
            gg.ggml_backend_tensor_set(w, w_raw.ctypes.data, 0, w_raw.size)   # the repack buffer re-lays out here
            xt = gg.ggml_new_tensor_2d(cx, gg.GGML_TYPE_F32, k, m)
            y = gg.ggml_mul_mat(cx, w, xt)
            gf = gg.ggml_new_graph(cx)
            gg.ggml_build_forward_expand(gf, y)
            bx = gg.ggml_backend_alloc_ctx_tensors(cx, self.backend)
            assert bx
            gg.ggml_backend_tensor_set(xt, x.ctypes.data, 0, x.nbytes)
            assert gg.ggml_backend_graph_compute(self.backend, gf) == 0, "ggml compute failed"
            out = np.empty((m, rows), np.float32)
            gg.ggml_backend_tensor_get(y, out.ctypes.data, 0, out.nbytes)
            return out
        finally:
            for b in (bx, bw):
                if b:
                    gg.ggml_backend_buffer_free(b)
            gg.ggml_free(cx)
            gg.ggml_free(cw)


@pytest.fixture(scope="module")
def ggml_cpu() -> GgmlCPU:
    g = GgmlCPU()
    yield g
    gg.ggml_backend_free(g.backend)


def _activations(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    """Columns of N(0, 1) at scales 1e-3 .. 1e3, and (from 5 columns on) the quantizers' edge cases:
    an all-zero column, one whose largest |x| is a +v / -v tie in every 256-block, and one with outliers."""
    x = rng.standard_normal((m, k), dtype=np.float32)
    x *= np.float32(10.0) ** rng.integers(-3, 4, size=(m, 1)).astype(np.float32)
    if m >= 5:
        x[1] = 0.0
        x[2] = np.clip(x[2], -2.0, 2.0)
        x[2, 0::256], x[2, 7::256] = 3.0, -3.0
        x[3, rng.integers(0, k, size=4)] *= 50.0
    return x


def _graph(wtype: str, rng: np.random.Generator):
    """One graph for a weight type: a weight per shape, each multiplied by inputs of every column count."""
    g = GraphBuilder(f"mm_{wtype}")
    outs, raw, xs = [], {}, {}
    for s, (rows, k) in enumerate(SHAPES):
        raw[s] = ggml_quantize(rng.standard_normal((rows, k), dtype=np.float32), wtype).reshape(rows, -1)
        w = g.set_param(g.new_tensor_2d(wtype, k, rows, f"w{s}"))
        for m in COLS:
            x = g.set_input(g.new_tensor_2d("f32", k, m, f"x{s}_{m}"))
            outs.append(g.set_name(g.mul_mat(w, x), f"y{s}_{m}"))
            xs[f"x{s}_{m}"] = _activations(rng, m, k)
    graph = g.build(*outs)
    for s in raw:
        graph.get(f"w{s}").data = raw[s].reshape(-1)
    return graph, raw, xs


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got, want = got.astype(np.float64), want.astype(np.float64)
    assert got.shape == want.shape, what
    # q4_1/q5_1 at large scales: q8_1's f16 block sum overflows to inf in ggml, and must in graphc too
    fin = np.isfinite(want)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert np.array_equal(fin, np.isfinite(got)) and same[~fin].all(), f"{what}: non-finite outputs differ"
    got, want = np.where(fin, got, 0.0), np.where(fin, want, 0.0)
    rms = np.sqrt(np.mean(want ** 2, axis=1, keepdims=True))
    zero = rms[:, 0] == 0
    assert np.array_equal(got[zero], want[zero]), f"{what}: an all-zero column is not exactly zero"
    rel = np.abs(got - want)[~zero] / rms[~zero]
    worst = np.unravel_index(np.argmax(rel), rel.shape) if rel.size else None
    assert rel.size == 0 or rel.max() <= REL, (
        f"{what}: |diff| / column RMS {rel.max():.3g} > {REL} at (column, row) {worst}: more than the f32 "
        f"summation order explains (an activation quantized differently, a wrong scale or sum)")
    err = float(np.sum((got - want) ** 2) / max(np.sum(want ** 2), 1e-300))
    assert err <= NMSE, f"{what}: NMSE {err:.3g} > {NMSE}"


@pytest.mark.parametrize("wtype", K_TYPES + Q32_TYPES)
def test_quantized_mul_mat_follows_ggml(wtype, rng, ggml_cpu):
    graph, raw, xs = _graph(wtype, rng)
    x8 = [t.name for t in c_repack.eligible(graph)]          # graphc's 8-row layouts: q4_0, q4_K, q6_K
    assert x8 == ([f"w{s}" for s, (rows, _) in enumerate(SHAPES) if rows % 8 == 0] if wtype in c_repack.C_TYPE else [])
    got = {"ref": graphc.compile(graph, target="ref").run(xs),
           "c repack=False": graphc.compile(graph, target="c", n_threads=2, repack=False).run(xs),
           "c repack=True": graphc.compile(graph, target="c", n_threads=2, repack=True).run(xs)}
    n_same = n_all = 0
    for s, (rows, k) in enumerate(SHAPES):
        for m in COLS:
            x, name = xs[f"x{s}_{m}"], f"y{s}_{m}"
            paths = {"vec_dot": ggml_cpu.mul_mat(raw[s], wtype, x, repack=False)}
            if _ggml_repacks(wtype, rows) and ggml_cpu.repack is not None:
                paths["REPACK"] = ggml_cpu.mul_mat(raw[s], wtype, x, repack=True)
                n_same += int(np.sum(paths["REPACK"] == paths["vec_dot"]))
                n_all += paths["vec_dot"].size
            for impl, res in got.items():
                y = np.asarray(res[name]).reshape(m, rows)
                for path, want in paths.items():
                    _check(y, want, f"{wtype} {rows}x{k}, {m} columns: {impl} vs ggml's {path} path")
    if n_all:   # ggml's two paths differ in the last bits: else the weights never reached ggml's REPACK kernels
        assert n_same < n_all, f"{wtype}: ggml's REPACK and vec_dot results are bit-identical: was the weight repacked?"

