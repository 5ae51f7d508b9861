"""The reference interpreter's memory model (ggml aliasing) and a few semantic spot checks."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.builder import GraphBuilder
from graphc.custom import register_custom_op, unregister_custom_op
from graphc.errors import CompileError, RunError
from graphc.targets.ref import RefExecutable, compile as ref_compile, evaluate

rng = np.random.default_rng()


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_view_with_offset_and_stride_reads_the_root():
    g = GraphBuilder()
    a = g.set_input(g.new_tensor_2d("f32", 7, 5, name="a"))
    # 3 columns x 4 rows starting at row 1, column 2; nb1 = the root's row stride
    v = g.view_2d(a, 3, 4, a.nb[1], 1 * a.nb[1] + 2 * 4)
    out = g.scale(g.cont(v), 2.0)
    g.set_name(out, "out")
    av = f32(5, 7)
    res = evaluate(g.build(out), {"a": av})
    np.testing.assert_array_equal(res["out"][0, 0], av[1:5, 2:5] * np.float32(2))


def _numpy_permute(x: np.ndarray, axes: tuple[int, int, int, int]) -> np.ndarray:
    """ggml permute: source dim i goes to result dim axes[i]; numpy axis of ggml dim d is 3 - d."""
    perm = [3 - axes.index(3 - j) for j in range(4)]
    return x.transpose(perm)


@pytest.mark.parametrize("axes", [(0, 2, 1, 3), (1, 2, 0, 3), (2, 0, 3, 1), (3, 1, 0, 2)])
def test_permute_then_cont(axes):
    g = GraphBuilder()
    a = g.set_input(g.new_tensor_4d("f32", 5, 4, 3, 2, name="a"))
    p = g.permute(a, *axes)
    c = g.cont(p)
    g.set_name(c, "c")
    graph = g.build(c)
    av = f32(2, 3, 4, 5)
    ex = RefExecutable(graph)
    ex.write(a, av)
    ex.run()
    want = _numpy_permute(av, axes)
    np.testing.assert_array_equal(ex.read(c), want)
    np.testing.assert_array_equal(ex.read(p), want)           # the view itself reads through strides
    assert ex.read(c).shape == want.shape


def test_transpose_then_cont_and_mul_mat():
    g = GraphBuilder()
    a = g.set_input(g.new_tensor_2d("f32", 6, 8, name="a"))
    b = g.set_input(g.new_tensor_2d("f32", 8, 3, name="b"))
    at = g.cont(g.transpose(a))                                # ne [8, 6]
    y = g.mul_mat(at, b)                                       # ne [6, 3]: y = b @ at.T = b @ a
    g.set_name(y, "y")
    av, bv = f32(8, 6), f32(3, 8)
    res = evaluate(g.build(y), {"a": av, "b": bv})
    np.testing.assert_allclose(res["y"][0, 0], bv @ av, rtol=1e-5, atol=1e-5)


def _kv_graph():
    """rows (f32) copied into rows 2..3 of an f16 state cache; another view reads rows 0..3."""
    g = GraphBuilder()
    cache = g.set_state(g.new_tensor_2d("f16", 16, 6, name="cache"))
    rows = g.set_input(g.new_tensor_2d("f32", 16, 2, name="rows"))
    dst = g.view_2d(cache, 16, 2, cache.nb[1], 2 * cache.nb[1])
    store = g.cpy(rows, dst)
    read = g.cont(g.view_2d(cache, 16, 4, cache.nb[1], 0))
    g.set_name(read, "read")
    # build order: the store first, then the read (node order is execution order)
    g.build_forward_expand(store)
    return g.build(read), cache, rows, store, read


def test_cpy_into_state_view_is_seen_by_a_later_view():
    graph, cache, rows, store, read = _kv_graph()
    assert graph.nodes.index(store) < graph.nodes.index(read)
    ex = RefExecutable(graph)
    rv = f32(2, 16) * 100
    ex.write(rows, rv)
    ex.run()
    got = ex.read(read)[0, 0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got[2:4], rv.astype(np.float16))   # f32 -> f16 rounding (nearest even)
    np.testing.assert_array_equal(got[:2], 0)
    full = ex.read(cache)[0, 0]
    np.testing.assert_array_equal(full[2:4], rv.astype(np.float16))   # the leaf itself changed
    np.testing.assert_array_equal(full[4:], 0)


def test_state_persists_across_runs_and_resets():
    g = GraphBuilder()
    cache = g.set_state(g.new_tensor_2d("f32", 8, 6, name="cache"))
    rows = g.set_input(g.new_tensor_2d("f32", 8, 2, name="rows"))
    idx = g.set_input(g.new_tensor_1d("i64", 2, name="idx"))
    stored = g.set_rows(cache, rows, idx)
    total = g.sum_rows(g.cont(g.view_2d(cache, 8, 6, cache.nb[1], 0)))
    g.set_name(total, "total")
    g.build_forward_expand(stored)
    graph = g.build(total)
    ex = ref_compile(graph)
    r1, r2 = f32(2, 8), f32(2, 8)
    ex.write(rows, r1)
    ex.write(idx, np.array([0, 3]))
    ex.run()
    ex.write(rows, r2)
    ex.write(idx, np.array([5, 1]))
    ex.run()
    want = np.zeros((6, 8), np.float32)
    want[[0, 3]] = r1
    want[[5, 1]] = r2
    np.testing.assert_array_equal(ex.read(cache)[0, 0], want)
    np.testing.assert_allclose(ex.read(total)[0, 0, :, 0], want.sum(axis=1), rtol=1e-6, atol=1e-6)
    ex.reset_state()
    np.testing.assert_array_equal(ex.read(cache), 0)
    np.testing.assert_array_equal(ex.read(rows)[0, 0], r2)     # inputs are not state


def test_set_rows_into_f16_keeps_other_rows():
    g = GraphBuilder()
    dst = g.set_input(g.new_tensor_3d("f16", 4, 5, 2, name="dst"))
    src = g.set_input(g.new_tensor_3d("f32", 4, 2, 2, name="src"))
    idx = g.set_input(g.new_tensor_1d("i32", 2, name="idx"))   # broadcast over dim 2 (ne11 = 1)
    out = g.set_rows(dst, src, idx)
    g.set_name(out, "out")
    dv, sv = f32(2, 5, 4).astype(np.float16), f32(2, 2, 4)
    iv = rng.permutation(5)[:2].astype(np.int32)
    res = evaluate(g.build(out), {"dst": dv, "src": sv, "idx": iv})
    want = dv.copy()
    want[:, iv] = sv.astype(np.float16)
    np.testing.assert_array_equal(res["out"][0], want)


def test_set_writes_a_copy_not_the_source():
    g = GraphBuilder()
    a = g.set_input(g.new_tensor_2d("f32", 8, 6, name="a"))
    b = g.set_input(g.new_tensor_2d("f32", 3, 2, name="b"))
    s = g.set_2d(a, b, a.nb[1], 1 * a.nb[1] + 4 * 4)          # rows 1..2, columns 4..6
    g.set_name(s, "s")
    graph = g.build(s)
    av, bv = f32(6, 8), f32(2, 3)
    ex = RefExecutable(graph)
    ex.write(a, av)
    ex.write(b, bv)
    ex.run()
    want = av.copy()
    want[1:3, 4:7] = bv
    np.testing.assert_array_equal(ex.read(s)[0, 0], want)
    np.testing.assert_array_equal(ex.read(a)[0, 0], av)


def test_f16_node_results_are_rounded():
    g = GraphBuilder()
    a = g.set_input(g.new_tensor_1d("f16", 64, name="a"))
    b = g.set_input(g.new_tensor_1d("f16", 64, name="b"))
    y = g.mul(a, b)
    g.set_name(y, "y")
    av, bv = f32(64).astype(np.float16), f32(64).astype(np.float16)
    got = evaluate(g.build(y), {"a": av, "b": bv})["y"].reshape(-1)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, (av.astype(np.float32) * bv.astype(np.float32)).astype(np.float16))


def test_quant_matmul_options_agree():
    g = GraphBuilder()
    w = g.set_param(g.constant(f32(16, 64), type="q8_0", name="w"))
    x = g.set_input(g.new_tensor_2d("f32", 64, 5, name="x"))
    y = g.mul_mat(w, x)
    g.set_name(y, "y")
    graph = g.build(y)
    xv = f32(5, 64)
    a = evaluate(graph, {"x": xv}, quant_matmul="ggml")["y"][0, 0]
    b = evaluate(graph, {"x": xv}, quant_matmul="dequant")["y"][0, 0]
    assert a.shape == b.shape == (5, 16)
    assert not np.array_equal(a, b)                            # ggml mode quantizes the activations too
    nmse = float(((a - b) ** 2).sum() / (b ** 2).sum())
    assert nmse < 1e-3
    with pytest.raises(CompileError):
        RefExecutable(graph, quant_matmul="fast")


def test_custom_op_registered_and_unregistered():
    name = f"ref_test_op_{rng.integers(1 << 30)}"
    g = GraphBuilder()
    x = g.set_input(g.new_tensor_2d("f32", 5, 3, name="x"))
    y = g.custom(name, x)
    g.set_name(y, "y")
    graph = g.build(y)
    with pytest.raises(CompileError, match=name):
        RefExecutable(graph)
    register_custom_op(name, lambda v: np.tanh(v) * 2)
    try:
        xv = f32(3, 5)
        got = evaluate(graph, {"x": xv})["y"][0, 0]
        np.testing.assert_allclose(got, np.tanh(xv) * 2, rtol=1e-6)
    finally:
        unregister_custom_op(name)


def test_write_checks_and_raw_bytes():
    g = GraphBuilder()
    x = g.set_input(g.new_tensor_2d("f32", 4, 3, name="x"))
    ids = g.set_input(g.new_tensor_1d("i32", 2, name="ids"))
    y = g.get_rows(x, ids)
    g.set_name(y, "y")
    ex = RefExecutable(g.build(y))
    with pytest.raises(RunError):
        ex.write(x, f32(4, 3))                                 # transposed shape
    with pytest.raises(RunError):
        ex.write(x, np.zeros(10, np.uint8))                    # raw bytes of the wrong size
    with pytest.raises(RunError):
        ex.write(ids, np.array([0.5, 1.0]))                    # floats into an int tensor
    xv = f32(3, 4)
    ex.write(x, xv.view(np.uint8).reshape(-1))                 # raw ggml bytes
    ex.write(ids, np.array([2, 7], np.int32))
    with pytest.raises(RunError, match="out of range"):
        ex.run()
    ex.write(ids, np.array([2, 0], np.int32))
    ex.run()
    np.testing.assert_array_equal(ex.read(y)[0, 0], xv[[2, 0]])
