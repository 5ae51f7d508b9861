"""The OpenCL target (targets/opencl) against the reference target on an OpenCL device (PoCL's CPU device
in CI; `make test` installs it): every op case, every fixture graph, the tiny decoder, state kept on the
device, device selection, the program cache and build errors.

Same bounds as the C target (tests/test_c_target.py): NMSE <= 1e-7 for f32 work, QUANT_BOUND for
quantized matmuls against ref's ggml mode (8-bit activations as ggml makes them), DEQUANT_BOUND where ref
has only its dequant mode. No test is skipped when no device is found: the target's error (how to get
a driver) fails them.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc

import fixture_graph as fg
from op_cases import CASE_IDS, CASES, build_graph, compare, prepare
from test_c_target import DECODER_BOUND, _check_outputs, _decoder, _ref_and_bound
from test_fixtures import CASES as FIXTURE_CASES, configured, fixture_ids

from graphc.targets.c import Unsupported as CUnsupported
from graphc.targets.opencl import codegen as clcodegen

UNSUPPORTED = re.compile(r"^op \S+ is not supported on target opencl yet")


def _compile_pair(graph, **opts):
    """(opencl module, ref module, bound); (error, None, None) where OpenCL declines the graph, which is
    only allowed, with the clear "not supported" error, where the C target declines it too."""
    try:
        mo = graphc.compile(graph, target="opencl", **opts)
    except clcodegen.Unsupported as e:
        assert UNSUPPORTED.match(str(e)), str(e)
        if "has no opencl kernel" not in str(e):     # a custom op registered with C code only
            assert not c_supported(graph), f"the C target runs this graph, OpenCL declines it: {e}"
        return e, None, None
    return (mo,) + _ref_and_bound(graph)


def c_supported(graph) -> bool:
    try:
        graphc.compile(graph, target="c")
    except CUnsupported:
        return False
    return True


def _run_case(c, rng, **opts):
    """Compile op case c for OpenCL and ref, run both on fresh inputs and compare; the OpenCL module, or
    None where both OpenCL and C decline it (checked by _compile_pair)."""
    graph, _ = build_graph(c)
    fed = prepare(c, rng)
    feeds = {k: v.feed for k, v in fed.items() if k in graph}
    mo, mr, bound = _compile_pair(graph, **opts)
    if mr is None:
        return None
    _check_outputs(mo.run(feeds), mr.run(feeds), bound, c.exact, c.id)
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
    mo, mr, bound = _compile_pair(configured(f.graph, config)[0])
    if mr is None:
        return                                   # declined by C as well, checked above
    for run in range(2):                         # state persists between runs on both
        _check_outputs(mo.run(f.inputs), mr.run(f.inputs), bound, False, f"{build}/{name} run {run}")


MATMUL_CASES = [c for c in CASES if c.id.startswith("mul_mat")]


@pytest.mark.parametrize("c", MATMUL_CASES, ids=[c.id for c in MATMUL_CASES])
def test_mul_mat_gpu_work_groups(c, rng, monkeypatch):
    """On a CPU device mul_mat runs one work-item per tile; GPUs take 64 work-items per tile that meet in a
    local-memory reduction. PoCL runs that form too when told to, so both are checked here."""
    from graphc.targets.opencl import lib_matmul
    monkeypatch.setattr(lib_matmul, "lanes", lambda features: lib_matmul.LANES)
    mo = _run_case(c, rng)
    if mo is not None:
        assert any(la.local_size == (lib_matmul.LANES, 1, 1) for la in mo._exe.gen.launches
                   if la.kernel.startswith("gc_mm_"))


def test_tiny_decoder_matches_ref(rng):
    td, cfg, g, w = _decoder(rng)
    mo = graphc.compile(g, target="opencl", weights=w)
    mr = graphc.compile(g, target="ref", weights=w)
    for step in range(3):
        feeds = td.step_inputs(cfg, [int(x) for x in rng.integers(0, cfg.n_vocab, 3)], 3 * step)
        _check_outputs(mo.run(feeds), mr.run(feeds), DECODER_BOUND, False, f"decoder step {step}")
    for t in g.state:                            # state stays on the device; reading it brings it back
        compare(mo.read(t.name).astype(np.float32), mr.read(t.name).astype(np.float32), DECODER_BOUND, t.name)
    mo.reset_state()
    mr.reset_state()
    feeds = td.step_inputs(cfg, [1, 2, 3], 0)
    _check_outputs(mo.run(feeds), mr.run(feeds), DECODER_BOUND, False, "after reset")


# --- runtime behaviour -----------------------------------------------------------------------------

def _ew_graph(name: str = "x"):
    g = graphc.GraphBuilder("cl-ew")
    x = g.set_input(g.new_tensor_2d("f32", 37, 5, name))
    b = g.set_input(g.new_tensor_1d("f16", 37, "b"))
    y = g.mul(g.scale(g.silu(g.add(x, b)), 0.5), g.sqr(x))
    return g.build(y, g.rms_norm(y, 1e-5))


def _ew_feeds(rng, name: str = "x"):
    return {name: rng.standard_normal((5, 37)).astype(np.float32), "b": rng.standard_normal(37).astype(np.float16)}


def test_tensor_names_never_become_code(rng):
    hostile = 'x"*/ __kernel void evil() {}\n#define A'
    graph = _ew_graph(hostile)
    gen = graphc.targets.opencl.generate_source(graph)
    code = re.sub(r"/\*.*?\*/", "", gen.source, flags=re.S)
    assert "evil" not in code and "#define A" not in code
    feeds = _ew_feeds(rng, hostile)
    got = graphc.compile(graph, target="opencl").run(feeds)
    want = graphc.compile(graph, target="ref").run(feeds)
    for k in want:
        compare(got[k], want[k], 1e-7, k)


def test_device_selection(monkeypatch):
    from graphc.targets.opencl import device
    devs = device.list_devices()
    assert devs, "no OpenCL device: " + device.HOW_TO_GET_ONE
    first = device.all_devices()[0][2]
    assert device.select(0) == first and device.select("0:0") == first
    assert device.select(devs[0][1].name[:5].lower()) is not None
    monkeypatch.setenv(device.ENV, "0:0")
    assert device.select(None) == first
    monkeypatch.setenv(device.ENV, "no-such-device")
    with pytest.raises(graphc.CompileError, match="GRAPHC_OPENCL_DEVICE='no-such-device'.*0:0"):
        device.select(None)
    with pytest.raises(graphc.CompileError, match="no device matches device='99'"):
        device.select("99")


def test_program_cache_and_build_errors(tmp_path, monkeypatch):
    from graphc.targets.opencl import build, device
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    src = "__kernel void twice(__global float *x) { x[get_global_id(0)] *= 2.0f; }\n// " + str(tmp_path)
    dc = device.DeviceContext(device.select(0))
    build.build(dc, src, "a test kernel")
    cached = list((tmp_path / "opencl").glob("*.bin"))
    assert len(cached) == 1
    fresh = device.DeviceContext(device.select(0))           # a new context loads the binary from disk
    prog = build.build(fresh, src, "a test kernel")
    x = np.arange(8, dtype=np.float32)
    buf = fresh.buffer(x.nbytes, host=x)
    prog.twice(fresh.queue, (8,), None, buf)
    fresh.cl.enqueue_copy(fresh.queue, x, buf)
    assert x.tolist() == [2.0 * i for i in range(8)]
    cached[0].write_bytes(b"garbage")                         # a damaged binary: rebuilt from source
    assert build.build(device.DeviceContext(device.select(0)), src, "a test kernel") is not None
    with pytest.raises(graphc.CompileError, match=r"building a broken kernel failed(.|\n)*error"):
        build.build(dc, "__kernel void broken( { }", "a broken kernel")


def test_intermediates_cannot_be_read_and_outputs_come_back(rng):
    graph = _ew_graph()
    m = graphc.compile(graph, target="opencl")
    feeds = _ew_feeds(rng)
    out1 = m.run(feeds)
    feeds2 = _ew_feeds(rng)
    out2 = m.run(feeds2)                                       # new inputs are uploaded, new outputs read
    want = graphc.compile(graph, target="ref")
    for f, got in ((feeds, out1), (feeds2, out2)):
        exp = want.run(f)
        for k in exp:
            compare(got[k], exp[k], 1e-7, k)


def test_artifact_and_cli_round_trip(tmp_path, rng, capsys):
    from graphc.cli import main
    graph = _ew_graph()
    gpath = tmp_path / "g.graph"
    graphc.save_graph(graph, gpath)
    assert main(["compile", str(gpath), "--target", "opencl", "--device", "0", "-o", str(tmp_path / "art")]) == 0
    m = graphc.load(tmp_path / "art")
    assert m.target == "opencl"
    feeds = _ew_feeds(rng)
    want = graphc.compile(graph, target="ref").run(feeds)
    got = m.run(feeds)
    for k in want:
        compare(got[k], want[k], 1e-7, k)
    np.save(tmp_path / "x.npy", feeds["x"])
    np.save(tmp_path / "b.npy", feeds["b"])
    capsys.readouterr()
    assert main(["run", str(gpath), "--target", "opencl", "--inputs", f"x={tmp_path / 'x.npy'}",
                 f"b={tmp_path / 'b.npy'}", "-o", str(tmp_path / "out.npz")]) == 0
    saved = np.load(tmp_path / "out.npz")
    for k in want:
        compare(saved[k], want[k], 1e-7, k)
    assert main(["run", str(gpath), "--target", "c", "--device", "0", "--random-inputs"]) == 2
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "target opencl" in out and "[0] 0:0" in out


def test_custom_expression_ops_run_on_opencl(rng):
    from graphc.custom import register_custom_op, unregister_custom_op
    name = 'cl "custom" */'
    register_custom_op(name, lambda a, b: (a * (1.0 - b)).astype(np.float32), elementwise=True,
                       kernels={"expr": lambda a, b: a * (1.0 - b)})
    try:
        g = graphc.GraphBuilder("custom")
        x = g.set_input(g.new_tensor_2d("f32", 16, 3, name="x"))
        y = g.set_input(g.new_tensor_2d("f32", 16, 3, name="y"))
        graph = g.build(g.unary(g.add(g.custom(name, x, y), y), "tanh"))
        feeds = {k: rng.standard_normal((3, 16), dtype=np.float32) for k in ("x", "y")}
        got = graphc.compile(graph, target="opencl").run(feeds)
        want = graphc.compile(graph, target="ref").run(feeds)
        for k in want:
            compare(got[k], want[k], 1e-7, k)
    finally:
        unregister_custom_op(name)
