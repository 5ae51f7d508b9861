"""Weights the C target re-lays out at load (targets/c/repack.py): which ones, the same results as the
file's layout, one copy per process, and the compile cache's copy checked before it is used.

The kernels themselves are tested against ggml's numerics in test_c_matmul.py (test_*_x8_relayout)."""
from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import quants
from graphc.builder import GraphBuilder
from graphc.targets.c import repack


def nmse(a: np.ndarray, e: np.ndarray) -> float:
    return float(np.sum((a.astype(np.float64) - e) ** 2) / max(np.sum(e.astype(np.float64) ** 2), 1e-300))


def _graph(rng, wtype: str = "q4_K", rows: int = 24, k: int = 512, tied: bool = False):
    """y = W x (+ a row of W gathered by get_rows when tied): W quantized, x an input of 3 columns."""
    g = GraphBuilder("repack")
    w_data = quants.quantize(rng.standard_normal((rows, k), dtype=np.float32), wtype)
    w = g.set_param(g.new_tensor_2d(wtype, k, rows, "w"))
    x = g.set_input(g.new_tensor_2d("f32", k, 3, "x"))
    y = g.mul_mat(w, x)
    if tied:
        ids = g.set_input(g.new_tensor_1d("i32", 1, "ids"))
        y = g.add(y, g.sum(g.get_rows(w, ids)))
    graph = g.build(g.set_name(y, "y"))
    graph.get("w").data = w_data
    return graph


def test_eligible_weights_only(rng):
    assert [t.name for t in repack.eligible(_graph(rng, "q4_K"))] == ["w"]
    assert [t.name for t in repack.eligible(_graph(rng, "q6_K"))] == ["w"]
    assert [t.name for t in repack.eligible(_graph(rng, "q4_0", k=96))] == ["w"]
    assert repack.eligible(_graph(rng, "q4_K", tied=True)) == []        # also read by get_rows
    assert repack.eligible(_graph(rng, "q4_K", rows=20)) == []          # rows not in groups of 8
    assert repack.eligible(_graph(rng, "q8_0", k=96)) == []             # no 8-row layout for the type


@pytest.mark.parametrize("wtype,k", [("q4_0", 96), ("q4_K", 512), ("q6_K", 256)])
def test_same_results_as_the_file_layout(rng, tmp_path, monkeypatch, wtype, k):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    g = _graph(rng, wtype, k=k)
    x = rng.standard_normal((3, k), dtype=np.float32)
    a = graphc.compile(g, target="c", n_threads=2)
    b = graphc.compile(g, target="c", n_threads=2, repack=False)
    assert a._exe.gen.source != b._exe.gen.source                       # the layouts' C types differ
    got, want = a.run({"x": x})["y"], b.run({"x": x})["y"]
    assert nmse(got, want) < 1e-10
    assert np.array_equal(a.read("w"), b.read("w"))                    # reads see the file's layout


def test_one_copy_per_process_and_a_checked_cache(rng, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    g = _graph(rng, "q4_K")
    x = rng.standard_normal((3, 512), dtype=np.float32)
    m1 = graphc.compile(g, target="c", n_threads=2)
    m2 = graphc.compile(g, target="c", n_threads=2)
    assert m1._exe._keep[0] is m2._exe._keep[0]                        # one copy, shared by both modules
    want = m1.run({"x": x})["y"]
    files = sorted((tmp_path / "weights").glob("*.q4_Kx8"))
    assert len(files) == 1 and files[0].with_suffix(".sha256").is_file()
    # a later process (the table emptied) reads the cache; a corrupted file is made again, never used
    del m1, m2
    repack._made.clear()
    raw = bytearray(files[0].read_bytes())
    raw[100] ^= 0xFF
    files[0].write_bytes(bytes(raw))
    m3 = graphc.compile(g, target="c", n_threads=2)
    assert nmse(m3.run({"x": x})["y"], want) < 1e-12
    assert files[0].read_bytes() != bytes(raw)                         # rewritten with the right bytes


def test_the_layout_sizes(rng):
    """q4_0 and q6_K keep their bytes (q4_0's layout is a permutation of them); q4_K adds 32 bytes of
    unpacked scales per 8 rows and super-block."""
    raw = quants.quantize(rng.standard_normal((16, 96), dtype=np.float32), "q4_0")
    assert np.array_equal(np.sort(repack.relayout_q4_0_x8(raw, 16, 96)), np.sort(raw.reshape(-1)))
    raw = quants.quantize(rng.standard_normal((16, 256), dtype=np.float32), "q6_K")
    assert repack.relayout_q6_K_x8(raw, 16, 256).size == raw.size
    raw = quants.quantize(rng.standard_normal((16, 512), dtype=np.float32), "q4_K")
    assert repack.relayout_q4_K_x8(raw, 16, 512).size == raw.size + 2 * 2 * 32
