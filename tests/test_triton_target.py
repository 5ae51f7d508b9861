"""The Triton target (targets/triton) against the reference target, through Triton's interpreter on the
CPU (no GPU in CI): every op case, fused and unfused, every fixture graph, the tiny decoder, state kept
between runs, tensor names never becoming code. test_triton_aot.py compiles the same kernels for real
GPUs (sm_80, sm_90) without one.

Bounds: NMSE <= 1e-7 for f32 work. Quantized matmuls: the Triton kernels multiply dequantized weights by
f32 activations (ref's "dequant" mode), so they are compared with ref's dequant mode at F32_BOUND, and
the C target's ggml-mode bound does not apply. Triton may decline an op only where the C target does.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import graphc
from graphc.errors import CompileError

import fixture_graph as fg
from op_cases import CASE_IDS, CASES, build_graph, compare, prepare
from test_c_target import DECODER_BOUND, F32_BOUND, _check_outputs, _decoder
from test_fixtures import CASES as FIXTURE_CASES, configured, fixture_ids
from test_opencl_target import c_supported

from graphc.targets.triton import codegen as tcodegen

UNSUPPORTED = re.compile(r"^op \S+ is not supported on target triton yet")
# the interpreter in CI; GRAPHC_TEST_TRITON_DEVICE=cuda runs the same cases on a GPU (tools/gpu_check.sh)
OPTS = {"device": os.environ.get("GRAPHC_TEST_TRITON_DEVICE", "interpret")}
# the interpreter evaluates masked-off lanes too (sin of a lane past the row end), numpy warns about them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _ref(graph):
    try:
        return graphc.compile(graph, target="ref", quant_matmul="dequant")
    except CompileError:
        return graphc.compile(graph, target="ref")


def _compile_pair(graph, **opts):
    """(triton module, ref module); (error, None) where Triton declines the graph, which is only allowed,
    with the clear "not supported" error, where the C target declines it too."""
    try:
        mo = graphc.compile(graph, target="triton", **OPTS, **opts)
    except tcodegen.Unsupported as e:
        assert UNSUPPORTED.match(str(e)), str(e)
        if "has no triton kernel" not in str(e) and "custom function" not in str(e):
            assert not c_supported(graph), f"the C target runs this graph, Triton declines it: {e}"
        return e, None
    return mo, _ref(graph)


def _run_case(c, rng, **opts):
    graph, _ = build_graph(c)
    fed = prepare(c, rng)
    feeds = {k: v.feed for k, v in fed.items() if k in graph}
    mo, mr = _compile_pair(graph, **opts)
    if mr is None:
        return None
    _check_outputs(mo.run(feeds), mr.run(feeds), F32_BOUND, c.exact, c.id)
    return mo


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_case_matches_ref(c, rng):
    _run_case(c, rng)


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_case_unfused_matches_ref(c, rng):
    """passes=False: one kernel per node, so every library kernel meets views and strides as given."""
    _run_case(c, rng, passes=False)


@pytest.mark.parametrize("case", [c for c in FIXTURE_CASES if c[2] == "ggml"], ids=fixture_ids)
def test_fixture_matches_ref(case):
    build, name, config = case
    f = fg.rebuild(build, name)
    graph = configured(f.graph, config)[0]
    mo, mr = _compile_pair(graph)
    if mr is None:
        return
    for run in range(2):                         # state persists between runs on both
        _check_outputs(mo.run(f.inputs), mr.run(f.inputs), F32_BOUND, False, f"{build}/{name} run {run}")


def test_tiny_decoder_matches_ref(rng):
    td, cfg, g, w = _decoder(rng)
    mo = graphc.compile(g, target="triton", weights=w, **OPTS)
    mr = graphc.compile(g, target="ref", weights=w, quant_matmul="dequant")
    for step in range(3):
        feeds = td.step_inputs(cfg, [int(x) for x in rng.integers(0, cfg.n_vocab, 3)], 3 * step)
        _check_outputs(mo.run(feeds), mr.run(feeds), DECODER_BOUND, False, f"decoder step {step}")
    for t in g.state:
        compare(mo.read(t.name).astype(np.float32), mr.read(t.name).astype(np.float32), DECODER_BOUND, t.name)
    mo.reset_state()
    mr.reset_state()
    feeds = td.step_inputs(cfg, [1, 2, 3], 0)
    _check_outputs(mo.run(feeds), mr.run(feeds), DECODER_BOUND, False, "after reset")


def test_torch_tensors_in_and_out(rng):
    """Module.run takes torch tensors and gives them back (outputs="torch"): on a GPU they stay on it; here
    the interpreter's buffers are host memory, so the same path runs with CPU tensors."""
    import torch
    td, cfg, g, w = _decoder(rng)
    mo = graphc.compile(g, target="triton", weights=w, **OPTS)
    mn = graphc.compile(g, target="triton", weights=w, **OPTS)
    for step in range(2):
        feeds = td.step_inputs(cfg, [int(x) for x in rng.integers(0, cfg.n_vocab, 3)], 3 * step)
        got = mo.run({k: torch.from_numpy(np.array(v)) for k, v in feeds.items()}, outputs="torch")
        want = mn.run(feeds)
        for name, v in want.items():
            assert isinstance(got[name], torch.Tensor) and tuple(got[name].shape) == v.shape
            np.testing.assert_array_equal(got[name].cpu().numpy(), v)          # the same kernels on the same data
    k = next(t.name for t in g.state)
    np.testing.assert_array_equal(mo.read_torch(k).cpu().numpy(), mn.read(k))
    bad = {k: torch.from_numpy(np.array(v)) for k, v in feeds.items()}
    name = next(n for n, v in feeds.items() if np.asarray(v).dtype == np.float32)
    bad[name] = bad[name].double()
    with pytest.raises(graphc.RunError, match="takes a torch.float32 tensor"):
        mo.run(bad)
    with pytest.raises(graphc.RunError, match="outputs must be"):
        mo.run(feeds, outputs="cupy")


@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_K"])
@pytest.mark.parametrize("tiles", [{}, {"gemv_split": 4, "gemv_rows": 16}], ids=["whole-K", "split-K"])
def test_block_gemv_matches_ref(rng, wtype, tiles):
    """The block GEMV (one column; 32-element block weights, or q4_K by 64-element chunks) with and without
    split-K (zero dst, then atomic adds), over a broadcast batch: dst [M, 1, 3, 2] = w [K, M, 1, 2] x
    x [K, 1, 3, 2]."""
    from graphc import quants
    M, K = 40, (768 if wtype == "q4_K" else 320)
    g = graphc.GraphBuilder("gemv")
    w = g.set_param(g.new_tensor(wtype, (K, M, 1, 2), name="w"))
    x = g.set_input(g.new_tensor("f32", (K, 1, 3, 2), name="x"))
    graph = g.build(g.mul_mat(w, x))
    vals = rng.standard_normal((2, 1, M, K)).astype(np.float32)
    raw = np.concatenate([quants.quantize(vals[i, 0], wtype).reshape(-1) for i in range(2)])
    feeds = {"x": rng.standard_normal((2, 3, 1, K)).astype(np.float32)}
    mo = graphc.compile(graph, target="triton", weights={"w": raw}, tiles=tiles, **OPTS)
    kernels = [la.kernel for la in mo._exe.gen.launches]
    assert ("gemv_q4k" if wtype == "q4_K" else "gemv_q32") in kernels and ("zero_dst" in kernels) == bool(tiles)
    mr = graphc.compile(graph, target="ref", weights={"w": raw}, quant_matmul="dequant")
    _check_outputs(mo.run(feeds), mr.run(feeds), F32_BOUND, False, f"{wtype} {tiles}")
