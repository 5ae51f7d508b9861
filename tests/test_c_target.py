"""The C target (targets/c) against the reference target: every op case, every fixture graph, the tiny decoder,
plus build cache, missing compiler, warning-free code (-Wall -Wextra -Werror) and an ASan/UBSan run.

Ops whose library kernel has not landed yet must fail at compile time with exactly
"op X is not supported on target c yet"; a case passes when it either matches ref or raises that.

Bounds: NMSE <= 1e-7 for f32 work (ref's f32 operation order; the C target builds with -ffp-contract=off).
Quantized matmuls are compared with ref's ggml mode (activations quantized to 8-bit blocks as ggml does);
the integer dot products are exact but the f32 accumulation order of block sums differs, so those graphs
get QUANT_BOUND. Weight types ref's ggml mode lacks are compared with ref's "dequant" mode (f32 math on
dequantized weights), where the C target's 8-bit activations differ by ~1e-2 relative: DEQUANT_BOUND.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc
from graphc import CompileError, RunError

import fixture_graph as fg
from op_cases import CASE_IDS, CASES, build_graph, compare, prepare
from op_union import c_cases, prefixed, union, union_feeds
from test_fixtures import CASES as FIXTURE_CASES, configured, fixture_ids

from graphc.ops import ALIAS_ONLY, kind_ops
from graphc.targets.c import codegen, generate_source, supported
from graphc.targets.c import build as cbuild

F32_BOUND = 1e-7
QUANT_BOUND = 1e-5
DEQUANT_BOUND = 5e-4
# A whole decoder: its quantized matmuls differ from ref's by f32 ulps (block-sum order); the attention's
# kq = K(f16) x q converts q to f16 as ggml does, and a q element that an ulp moves across an f16 rounding
# boundary changes by ~1e-3 relative (measured on an AVX2 EPYC: 4 of 40 seeds reach NMSE 6e-5..8e-5 at the
# third step; the others stay at 1e-15). The bound allows such flips and still catches a wrong kernel.
DECODER_BOUND = 1e-3
UNSUPPORTED = re.compile(r"^op \S+ is not supported on target c yet")
_DECODER_DIR = os.path.join(os.path.dirname(__file__), "..", "examples")


def _quant_matmul(graph) -> bool:
    return any(n.op in ("mul_mat", "out_prod") and n.src[0].type.is_quantized for n in graph.nodes)


def _compile_pair(graph, **c_opts):
    """(c module or the Unsupported error, ref module, bound)."""
    c_opts.setdefault("serial_work", 0)      # split every step over the threads, however small
    try:
        mc = graphc.compile(graph, target="c", **c_opts)
    except codegen.Unsupported as e:
        assert UNSUPPORTED.match(str(e)), str(e)
        return e, None, None
    return (mc,) + _ref_and_bound(graph)


def _ref_and_bound(graph):
    """ref's module for graph (ggml's integer matmul path where it has one) and the bound to compare with."""
    bound = QUANT_BOUND if _quant_matmul(graph) else F32_BOUND
    try:
        mr = graphc.compile(graph, target="ref", quant_matmul="ggml")
    except CompileError:                     # a weight type without ref's ggml integer path
        mr = graphc.compile(graph, target="ref", quant_matmul="dequant")
        bound = DEQUANT_BOUND
    return mr, bound


def _check_outputs(got: dict, want: dict, bound: float, exact: bool, what: str) -> None:
    assert got.keys() == want.keys()
    for k in want:
        if exact or want[k].dtype.kind in "iu":
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{what}: {k}")
        else:
            compare(got[k], want[k], bound, f"{what}: {k}")


# --- every op case ------------------------------------------------------------------------------

@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_case_matches_ref(c, rng):
    graph, _ = build_graph(c)
    fed = prepare(c, rng)
    feeds = {k: v.feed for k, v in fed.items() if k in graph}
    mc, mr, bound = _compile_pair(graph)
    if mr is None:
        return                                   # the clear "not supported yet" error, checked above
    _check_outputs(mc.run(feeds), mr.run(feeds), bound, c.exact, c.id)


def test_supported_op_cases_summary(capsys):
    """How many op cases run on C now; every pure elementwise/copy case must (the C target's own kernels)."""
    n_ok, missing = 0, []
    for c in CASES:
        graph, _ = build_graph(c)
        if supported(graph):
            n_ok += 1
        elif all(n.op in kind_ops("elementwise") | ALIAS_ONLY for n in graph.nodes):
            missing.append(c.id)
    with capsys.disabled():
        print(f"\nC target: {n_ok}/{len(CASES)} op cases supported")
    assert not missing, f"elementwise cases without C code: {missing}"


# --- fixtures and the tiny decoder ------------------------------------------------------------------

@pytest.mark.parametrize("case", [c for c in FIXTURE_CASES if c[2] == "ggml"], ids=fixture_ids)
def test_fixture_matches_ref(case):
    build, name, config = case
    f = fg.rebuild(build, name)
    mc, mr, bound = _compile_pair(configured(f.graph, config)[0])
    if mr is None:
        return
    for run in range(2):                         # state persists between runs on both
        _check_outputs(mc.run(f.inputs), mr.run(f.inputs), bound, False, f"{build}/{name} run {run}")


def _decoder(rng):
    sys.path.insert(0, _DECODER_DIR)
    import tiny_decoder as td
    cfg = td.Config()
    g = td.build(cfg, 3)
    return td, cfg, g, td.random_weights(g, seed=int(rng.integers(1 << 31)))


def test_tiny_decoder_matches_ref(rng):
    td, cfg, g, w = _decoder(rng)
    try:
        mc = graphc.compile(g, target="c", weights=w)
    except codegen.Unsupported as e:
        assert UNSUPPORTED.match(str(e)), str(e)
        return
    mr = graphc.compile(g, target="ref", weights=w)
    for step in range(3):
        feeds = td.step_inputs(cfg, [int(x) for x in rng.integers(0, cfg.n_vocab, 3)], 3 * step)
        _check_outputs(mc.run(feeds), mr.run(feeds), DECODER_BOUND, False, f"decoder step {step}")


# --- runtime behaviour -----------------------------------------------------------------------------

def _mlp_graph(name: str = "x"):
    g = graphc.GraphBuilder("c-ew")
    x = g.set_input(g.new_tensor_2d("f32", 37, 5, name))
    b = g.set_input(g.new_tensor_1d("f32", 37, "b"))
    h = g.silu(g.add(x, b))
    y = g.mul(g.scale(h, 0.5), g.sqr(x))
    return g.build(y), y


def test_threads_give_the_same_results(rng):
    graph, _ = _mlp_graph()
    feeds = {"x": rng.standard_normal((5, 37)).astype(np.float32), "b": rng.standard_normal(37).astype(np.float32)}
    outs = [graphc.compile(graph, target="c", n_threads=n, serial_work=sw).run(feeds)
            for n in (1, 2, 3) for sw in (0, 1 << 30)]
    want = graphc.compile(graph, target="ref").run(feeds)
    for o in outs:
        for k in want:
            np.testing.assert_array_equal(o[k], outs[0][k])     # the split never changes a result
            compare(o[k], want[k], F32_BOUND, k)      # libm's expf may differ from ref's by an ulp


def test_small_steps_run_on_one_thread_without_barriers(rng):
    """Steps below serial_work run on thread 0 in one group; a program of only those opens no thread team."""
    graph, _ = _mlp_graph()
    small = graphc.compile(graph, target="c", n_threads=2)._exe.gen.source
    assert "if(0)" in small and "(ctx, T, ith, nth);" not in small
    split = graphc.compile(graph, target="c", n_threads=2, serial_work=0)._exe.gen.source
    assert "if(1)" in split and "(ctx, T, 0, 1);" not in split
    g = graphc.GraphBuilder("c-mixed")                  # small, big, small: one barrier each side of the big one
    x = g.set_input(g.new_tensor_2d("f32", 512, 256, "x"))
    y = g.set_input(g.new_tensor_1d("f32", 8, "y"))
    big = g.sqr(g.add(x, x))
    graph = g.build(g.exp(y), big, g.neg(g.scale(y, 2.0)))
    src = graphc.compile(graph, target="c", n_threads=3)._exe.gen.source
    assert "if(1)" in src and src.count("(ctx, T, ith, nth);") == 1
    feeds = {"x": rng.standard_normal((256, 512)).astype(np.float32), "y": rng.standard_normal(8).astype(np.float32)}
    got = graphc.compile(graph, target="c", n_threads=3).run(feeds)
    want = graphc.compile(graph, target="ref").run(feeds)
    for k in want:
        compare(got[k], want[k], F32_BOUND, k)
    with pytest.raises(CompileError, match="serial_work"):
        graphc.compile(graph, target="c", serial_work=-1)


def test_intermediates_cannot_be_read(rng):
    """A value fused into registers has no memory; one planned in the arena is reused: both are RunErrors."""
    g = graphc.GraphBuilder("c-arena")
    x = g.set_input(g.new_tensor_2d("f32", 16, 4, "x"))
    w = g.set_input(g.new_tensor_1d("f32", 16, "w"))
    a = g.add(x, w)                                   # materialised: read through a reshape by another kernel
    r = g.mul(g.sqr(g.reshape_1d(a, 64)), g.reshape_1d(x, 64))   # sqr stays in registers
    graph = g.build(r)
    m = graphc.compile(graph, target="c")
    feeds = {"x": rng.standard_normal((4, 16)).astype(np.float32), "w": rng.standard_normal(16).astype(np.float32)}
    out = m.run(feeds)
    want = graphc.compile(graph, target="ref").run(feeds)
    np.testing.assert_array_equal(out[r.name], want[r.name])
    for op in ("add", "sqr"):
        with pytest.raises(RunError):
            m.read([n for n in m.graph.nodes if n.op == op][0])


def test_tensor_names_never_become_code(rng):
    graph, y = _mlp_graph("x */ #error boom\n/* \\")
    src = generate_source(graph).source
    assert not re.search(r"^\s*#\s*error", src, re.M) and "x */" not in src   # only escaped, inside comments
    feeds = {"x */ #error boom\n/* \\": rng.standard_normal((5, 37)).astype(np.float32),
             "b": rng.standard_normal(37).astype(np.float32)}
    want = graphc.compile(graph, target="ref").run(feeds)
    got = graphc.compile(graph, target="c").run(feeds)
    compare(got[y.name], want[y.name], F32_BOUND, y.name)


def _table_flavors() -> list[tuple[str, tuple[str, ...]]]:
    """(-march, extra flags) this CPU runs, among those under which gcc 12.2 miscompiled gc_create's copy of the
    tensor table (kernels/c/graphc.h: gc_copy_tensors): native, and on x86 the tunings of the AVX-512 cores
    (256-bit "by pieces" moves): haswell tuned for skylake-avx512 (any AVX2 CPU runs it), skylake-avx512,
    icelake-server."""
    out: list[tuple[str, tuple[str, ...]]] = [("native", ())]
    have = cbuild.host_features()
    if platform.machine().lower() not in ("x86_64", "amd64") or have is None:
        return out
    cc = cbuild.find_compiler().path
    for march, extra in (("haswell", ("-mtune=skylake-avx512",)), ("skylake-avx512", ()), ("icelake-server", ())):
        if set(cbuild.required_features(cc, [f"-march={march}", *extra])) <= have:
            out.append((march, extra))
    return out


def test_tensor_table_is_copied_intact():
    """gcc 12.2 tuning for the AVX-512 cores stored a 32-byte piece {v, v, 0, 0} of a copy from constant data as
    the broadcast {v, v, v, v}: gc_create's `I->T[i] = gc_T0[i]` gave the second tensor of a small table the
    type nb[3] when its ne[2] was 1 (set_1d, pad, soft_max, out_prod then read a source as no type at all).
    Each library op below takes that tensor as a source; every -march this CPU runs must get the values."""
    g = graphc.GraphBuilder("c-table")
    a = g.set_input(g.new_tensor_1d("f32", 10, "a"))
    b = g.set_input(g.new_tensor_1d("f32", 4, "b"))
    y = g.set_1d(a, b, 12)
    set_graph = g.build(y)
    g = graphc.GraphBuilder("c-table-pad")
    x = g.set_input(g.new_tensor_2d("f32", 7, 4, "x"))
    p = g.pad_ext(g.tanh(x), 2, 1, 1, 1, 0, 0, 0, 0)
    pad_graph = g.build(p)
    av, bv = np.arange(10, dtype=np.float32), -np.arange(1, 5, dtype=np.float32)
    xv = np.linspace(-2, 2, 28, dtype=np.float32).reshape(4, 7)
    want_set = np.concatenate([av[:3], bv, av[7:]])
    want_pad = np.pad(np.tanh(xv), ((1, 1), (2, 1)))
    flavors = _table_flavors()
    if cbuild.host_features() is not None and {"avx2", "fma", "f16c"} <= cbuild.host_features():
        assert ("haswell", ("-mtune=skylake-avx512",)) in flavors, "an AVX2 CPU must run the AVX2 build"
    for march, extra in flavors:
        opts = dict(march=march, extra_cflags=extra, split_kernels=False, n_threads=1)
        got = graphc.compile(set_graph, target="c", passes=False, **opts).run({"a": av, "b": bv})[y.name]
        np.testing.assert_array_equal(got, want_set, err_msg=f"set_1d, -march={march} {' '.join(extra)}")
        got = graphc.compile(pad_graph, target="c", passes=False, **opts).run({"x": xv})[p.name]
        np.testing.assert_allclose(got, want_pad, rtol=1e-6, atol=1e-6,
                                   err_msg=f"pad, -march={march} {' '.join(extra)}")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_f16_and_bf16_conversions_round_like_ggml(rng):
    """Stores through the C helpers round exactly as numpy / ggml (nearest even, overflow, subnormals, NaN)."""
    g = graphc.GraphBuilder("conv")
    x = g.set_input(g.new_tensor_1d("f32", 4096, "x"))
    h = g.cpy(x, g.set_input(g.new_tensor_1d("f16", 4096, "h")))
    bb = g.cpy(x, g.set_input(g.new_tensor_1d("bf16", 4096, "bb")))
    graph = g.build(h, bb)
    vals = np.concatenate([rng.standard_normal(1000) * 10.0 ** rng.integers(-9, 6, 1000),
                           [65504, 65519.99, 65520, 1e-8, 5.96e-8, 2.98e-8, 3e-8, -0.0, np.inf, -np.inf, np.nan],
                           rng.standard_normal(4096 - 1011)]).astype(np.float32)
    mc, mr = graphc.compile(graph, target="c"), graphc.compile(graph, target="ref")
    feeds = {"x": vals, "h": np.zeros(4096, np.float16), "bb": np.zeros(4096, np.float32)}
    got, want = mc.run(feeds), mr.run(feeds)
    for k in want:
        np.testing.assert_array_equal(got[k].view(np.uint16) if got[k].dtype == np.float16 else got[k],
                                      want[k].view(np.uint16) if want[k].dtype == np.float16 else want[k])


# --- build: cache, compiler, warnings, sanitizers -------------------------------------------------

def test_split_and_whole_builds_agree(tmp_path, monkeypatch):
    """The program linked to the shared kernel library and the same source compiled whole (the headers
    inlined, as emit_lib builds it) give identical bits."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    graph, _ = _mlp_graph()
    rng = np.random.default_rng()
    feeds = {"x": rng.standard_normal((5, 37)).astype(np.float32), "b": rng.standard_normal(37).astype(np.float32)}
    split = graphc.compile(graph, target="c")
    whole = graphc.compile(graph, target="c", split_kernels=False)
    assert split._exe.built.path != whole._exe.built.path
    assert any(p.name.startswith("libgck-") for p in (tmp_path / "cache").iterdir())
    got, want = split.run(feeds), whole.run(feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_build_cache_hit_and_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    graph, _ = _mlp_graph()
    first = graphc.compile(graph, target="c")._exe.built
    again = graphc.compile(graph, target="c")._exe.built
    other = graphc.compile(graph, target="c", extra_cflags=["-O2"])._exe.built
    assert not first.cached and again.cached and again.path == first.path and not other.cached
    assert other.key != first.key
    files = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name != ".locks")
    libs = [n for n in files if not n.endswith(".sha256")]
    assert files == sorted(libs + [n + ".sha256" for n in libs])      # each library with its digest sidecar
    kernels = [n for n in libs if n.startswith("libgck-")]             # one kernel library per set of flags
    assert len(kernels) == 2
    assert sorted(set(libs) - set(kernels)) == sorted([f"{first.key}.so", f"{other.key}.so"])   # no partial files
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    off = graphc.compile(graph, target="c")._exe.built
    assert not off.cached and not off.path.startswith(str(tmp_path))


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-cc-graphc")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    with pytest.raises(CompileError, match="C compiler"):
        cbuild.find_compiler()
    monkeypatch.delenv("CC")
    with pytest.raises(CompileError, match="C compiler"):
        cbuild.build("int x;\n")


def test_every_op_case_builds_warning_free(tmp_path, monkeypatch):
    """All supported op cases in one program: -Wall -Wextra (always on) with -Werror."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    cases = c_cases(supported)
    assert len(cases) >= 200
    graphc.compile(union(cases), target="c", extra_cflags=["-Werror"])


def test_every_op_case_under_sanitizers(tmp_path, rng):
    """All supported op cases in one program built with -fsanitize=address,undefined, run in a subprocess
    (libasan must be loaded first), split over 3 threads; every output compared with ref."""
    libasan = subprocess.run([cbuild.find_compiler().path, "-print-file-name=libasan.so"],
                             capture_output=True, text=True).stdout.strip()
    assert os.path.isabs(libasan) and os.path.exists(libasan), "the compiler ships no libasan"
    cases = c_cases(supported)
    feeds, per_case = union_feeds(cases, rng)
    np.savez(tmp_path / "in.npz", **feeds)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np, graphc
        from graphc.targets.c import supported
        from op_union import c_cases, union
        feeds = dict(np.load({str(tmp_path / "in.npz")!r}))
        m = graphc.compile(union(c_cases(supported)), target="c", sanitize=True, n_threads=3, serial_work=0)
        np.savez({str(tmp_path / "out.npz")!r}, **m.run(feeds))
        print("SANITIZED-OK")
    """)
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0", GRAPHC_CACHE_DIR=str(tmp_path),
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0 and "SANITIZED-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-6000:]
    assert "runtime error" not in r.stderr, r.stderr[-6000:]
    got = dict(np.load(tmp_path / "out.npz"))
    for i, (c, own) in enumerate(zip(cases, per_case)):
        graph, _ = build_graph(c)
        mr, bound = _ref_and_bound(graph)
        want = mr.run(own)
        _check_outputs({k: got[prefixed(i, k)] for k in want}, want, bound, c.exact, c.id)


def test_c_is_a_known_target():
    from graphc.targets import available_targets, get_target
    assert "c" in available_targets()
    assert get_target("c").ACCEPTS_PROGRAM
