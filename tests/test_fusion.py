"""Fusion (graphc.passes.fuse): which nodes share a kernel, and proof on ref that the grouping is sound.

Structural tests build small graphs for each rule and check the kernels. `check_program` holds the
invariants every fused Program must keep (each node in exactly one kernel, kernels in dependency order,
a value read by another kernel is materialised, state writes keep their order against readers). The
semantic tests plan the Program on one arena (check_plan) and run it on ref, where a kernel's
unmaterialised values are temporaries dropped after the kernel: reading one elsewhere fails, and the
outputs and state must match the plain graph's (NMSE <= 1e-7, non-finite entries equal).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import graphc
from graphc import memplan
from graphc.builder import GraphBuilder
from graphc.custom import register_custom_op, unregister_custom_op
from graphc.ir import Flag, Graph, Tensor
from graphc.passes.fuse import describe, fuse
from graphc.passes.fusion_rules import DEQUANT_TYPES, base_of, op_class
from graphc.program import ALIAS_ONLY, Kernel, Program, root_of, unfused
from graphc.targets.ref import RefExecutable

import fixture_graph as fg
import op_cases as oc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import tiny_decoder as td  # noqa: E402

TOL = 1e-7


# --- invariants ------------------------------------------------------------------------------

def check_program(graph: Graph, prog: Program) -> None:
    kernel_of = {}
    for i, k in enumerate(prog.kernels):
        for n in k.nodes:
            assert id(n) not in kernel_of, f"{n.name!r} is in two kernels"
            kernel_of[id(n)] = i
    assert len(kernel_of) == len(graph.nodes) == sum(len(k.nodes) for k in prog.kernels)
    pos = {id(n): j for j, n in enumerate(graph.nodes)}
    names = [k.name for k in prog.kernels]
    assert len(set(names)) == len(names)
    for i, k in enumerate(prog.kernels):
        assert k.name.startswith(f"k{i}_") and k.name.replace("_", "").isalnum()
        assert [pos[id(n)] for n in k.nodes] == sorted(pos[id(n)] for n in k.nodes), "kernel nodes out of order"
        assert k.kind in ("elementwise", "reduce", "matmul", "dequant_matmul", "view", "other")
        assert (k.kind == "view") == all(n.op in ALIAS_ONLY for n in k.nodes)
        work = [n for n in k.nodes if n.op not in ALIAS_ONLY]
        assert sum(op_class(n) == "matmul" for n in work) <= 1 and sum(op_class(n) == "reduce" for n in work) <= 1
        if len(work) > 1:
            assert all(op_class(n) in ("elementwise", "reduce", "matmul") for n in work), k.name
        outs = {id(o) for o in k.outputs}
        assert outs <= {id(n) for n in k.nodes}
        want_inputs = {}
        for n in k.nodes:
            if n.flags & Flag.OUTPUT or op_class(n) == "write":
                assert id(n) in outs, f"{n.name!r} must be materialised"
            for s in n.src:
                if s is None or kernel_of.get(id(s)) == i:
                    continue
                b = base_of(s)
                want_inputs[id(b)] = b
                if not s.is_leaf:
                    assert kernel_of[id(s)] < i, f"{n.name!r} reads {s.name!r} from a later kernel"
                if not b.is_leaf:    # what a view reads lives in memory: its producer materialised it
                    assert id(b) in {id(o) for o in prog.kernels[kernel_of[id(b)]].outputs}, b.name
            if n.op in ALIAS_ONLY and k.kind != "view":
                assert kernel_of.get(id(base_of(n)), -1) != i, "a view inside a kernel reads memory, not a temporary"
        assert {id(t) for t in k.inputs} == set(want_inputs) and len(k.inputs) == len(want_inputs)
    # writes into memory keep their order against every node reading that memory
    for w in graph.nodes:
        if op_class(w) != "write":
            continue
        for n in graph.nodes:
            if n is w or n.op in ALIAS_ONLY:
                continue
            if any(s is not None and root_of(s) is root_of(w) for s in n.src):
                if pos[id(n)] < pos[id(w)]:
                    assert kernel_of[id(n)] < kernel_of[id(w)], f"{n.name!r} must read before {w.name!r} writes"
                else:
                    assert kernel_of[id(n)] > kernel_of[id(w)], f"{n.name!r} must read after {w.name!r} writes"


def fused(graph: Graph) -> Program:
    prog = fuse(graph)
    check_program(graph, prog)
    return prog


def kernel_with(prog: Program, name: str) -> Kernel:
    return next(k for k in prog.kernels if any(n.name == name for n in k.nodes))


def work_ops(k: Kernel) -> list[str]:
    return [op for n, op in zip(k.nodes, k.ops) if n.op not in ALIAS_ONLY]


def results(graph: Graph, prog: Program | None, feeds: dict, **opts) -> list[dict[str, np.ndarray]]:
    """Outputs and state after each of two runs (state carries over)."""
    exe = RefExecutable(prog if prog is not None else graph, **opts)
    out = []
    for _ in range(2):
        for name, v in feeds.items():
            exe.write(graph.get(name), v)
        exe.run()
        out.append({t.name: exe.read(t) for t in graph.outputs + graph.state})
    return out


def assert_same(graph: Graph, prog: Program, feeds: dict, **opts) -> None:
    memplan.plan(prog)
    memplan.check_plan(prog)      # planned: ref drops each kernel's temporaries after it
    want, got = results(graph, None, feeds, **opts), results(graph, prog, feeds, **opts)
    for w, g in zip(want, got):
        assert w.keys() == g.keys() and w
        for name in w:
            oc.compare(g[name].astype(np.float64), w[name].astype(np.float64), TOL, name)


def random_feeds(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for t in graph.inputs:
        if t.type.is_int:
            out[t.name] = rng.permutation(max(t.nelements, 4))[: t.nelements].reshape(t.shape).astype(t.type.np_dtype)
        else:
            out[t.name] = rng.standard_normal(t.shape).astype(np.float32)
    return out


def leaf(g: GraphBuilder, name: str, *ne: int, type: str = "f32") -> Tensor:
    return g.set_input(g.new_tensor(type, ne, name))


# --- reductions with prologue / epilogue ---------------------------------------------------------

def test_rms_norm_times_weight_is_one_kernel(rng):
    g = GraphBuilder("rms")
    x, w = leaf(g, "x", 64, 5), leaf(g, "w", 64)
    y = g.set_name(g.mul(g.set_name(g.rms_norm(x, 1e-5), "n"), w), "y")
    graph = g.build(y)
    prog = fused(graph)
    assert len(prog.kernels) == 1
    k = prog.kernels[0]
    assert (k.kind, work_ops(k), k.name) == ("reduce", ["rms_norm", "mul"], "k0_rms_norm_mul")
    assert k.outputs == [y] and {t.name for t in k.inputs} == {"x", "w"}
    assert_same(graph, prog, random_feeds(graph, rng))


def test_residual_add_feeds_rms_norm_and_stays_materialised(rng):
    g = GraphBuilder("add-rms")
    x, a, w = leaf(g, "x", 32, 3), leaf(g, "a", 32, 3), leaf(g, "w", 32)
    r = g.set_name(g.add(x, a), "resid")
    h = g.set_name(g.mul(g.rms_norm(r, 1e-6), w), "h")
    out = g.set_name(g.add(r, g.unary(g.mul_mat(leaf(g, "W", 32, 32), h), "silu")), "out")
    graph = g.build(out)
    prog = fused(graph)
    k = kernel_with(prog, "resid")
    assert work_ops(k) == ["add", "rms_norm", "mul"] and k.kind == "reduce"
    assert {o.name for o in k.outputs} == {"resid", "h"}          # resid is read again by the last add
    mm = kernel_with(prog, "out")
    assert work_ops(mm) == ["mul_mat", "silu", "add"] and mm.kind == "matmul"
    assert len(prog.kernels) == 2
    assert_same(graph, prog, random_feeds(graph, rng))


def test_norm_mul_add_is_one_kernel(rng):
    g = GraphBuilder("ln")
    x, w, b = leaf(g, "x", 48, 4), leaf(g, "w", 48), leaf(g, "b", 48)
    y = g.add(g.mul(g.norm(x, 1e-5), w), b)
    graph = g.build(y)
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["norm", "mul", "add"]]
    assert_same(graph, prog, random_feeds(graph, rng))


def test_soft_max_takes_its_scale_prologue_and_mask(rng):
    g = GraphBuilder("sm")
    x, mask = leaf(g, "x", 16, 6, 2), leaf(g, "mask", 16, 6)
    y = g.soft_max_ext(g.scale(x, 0.125), mask, 1.0, 0.0)
    graph = g.build(g.unary(y, "exp"))
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["scale", "soft_max", "exp"]]
    assert prog.kernels[0].kind == "reduce"
    assert_same(graph, prog, random_feeds(graph, rng))


def test_one_reduction_per_kernel_and_none_after_a_matmul(rng):
    g = GraphBuilder("two-red")
    x, W = leaf(g, "x", 32, 4), leaf(g, "W", 32, 32)
    a = g.rms_norm(g.rms_norm(x, 1e-5), 1e-5)       # second reduction: a new kernel
    b = g.soft_max(g.mul_mat(W, a))                 # softmax never joins the matmul's kernel
    graph = g.build(b)
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["rms_norm"], ["rms_norm"], ["mul_mat"], ["soft_max"]]
    assert_same(graph, prog, random_feeds(graph, rng))


def test_shape_changing_reduction_takes_prologue_and_row_epilogue(rng):
    g = GraphBuilder("sumrows")
    x, s = leaf(g, "x", 20, 7), leaf(g, "s", 1, 7)
    y = g.mul(g.sum_rows(g.sqr(x)), s)             # prologue sqr [20,7]; epilogue on [1,7]
    z = g.add(x, y)                                 # back at [20,7]: y broadcast, y materialised
    graph = g.build(z)
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["sqr", "sum_rows", "mul"], ["add"]]
    assert_same(graph, prog, random_feeds(graph, rng))


# --- matmul epilogues --------------------------------------------------------------------------

def test_matmul_bias_gelu_residual_is_one_kernel(rng):
    g = GraphBuilder("mlp")
    x, W, bias, res = leaf(g, "x", 32, 3), leaf(g, "W", 32, 24), leaf(g, "bias", 24), leaf(g, "res", 24, 3)
    y = g.set_name(g.add(g.gelu(g.add(g.mul_mat(W, x), bias)), res), "y")
    graph = g.build(y)
    prog = fused(graph)
    assert len(prog.kernels) == 1
    k = prog.kernels[0]
    assert (k.kind, work_ops(k), k.name) == ("matmul", ["mul_mat", "add", "gelu", "add"], "k0_mul_mat_add_gelu_add")
    assert k.outputs == [y] and {t.name for t in k.inputs} == {"x", "W", "bias", "res"}
    assert k.attrs["form"] == "gemv"
    assert_same(graph, prog, random_feeds(graph, rng))


def test_matmul_prologue_is_never_fused(rng):
    g = GraphBuilder("pro")
    x, W = leaf(g, "x", 32, 2), leaf(g, "W", 32, 8, type="q8_0")
    y = g.mul_mat(W, g.scale(x, 3.0))
    graph = g.build(y)
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["scale"], ["mul_mat"]]
    assert prog.kernels[0].outputs == [graph.nodes[0]]


@pytest.mark.parametrize("split", [True, False])
def test_swiglu_after_two_matmuls(split, rng):
    g = GraphBuilder("ffn")
    x = leaf(g, "x", 32, 4)
    Wg, Wu = (g.set_param(g.new_tensor("q4_0", (32, 64), n)) for n in ("Wg", "Wu"))
    gate = g.set_name(g.mul_mat(Wg, x), "gate")
    up = g.set_name(g.mul_mat(Wu, x), "up")
    if split:
        act = g.set_name(g.swiglu_split(gate, up), "act")
    else:     # swiglu over [gate; up] concatenated: halves ne0, so it starts its own kernel
        act = g.set_name(g.swiglu(g.concat(gate, up, 0)), "act")
    out = g.mul_mat(g.set_param(g.new_tensor("q4_0", (64, 32), "Wd")), act)
    graph = g.build(out)
    prog = fused(graph)
    if split:
        assert [work_ops(k) for k in prog.kernels] == [["mul_mat"], ["mul_mat", "swiglu"], ["mul_mat"]]
        assert kernel_with(prog, "gate").outputs == [gate]          # the first matmul is materialised
        assert kernel_with(prog, "act").outputs == [act]
        assert kernel_with(prog, "act").kind == "dequant_matmul"
    else:
        assert kernel_with(prog, "act").nodes == [act]
    vals = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in graph.params}
    m = graphc.compile(graph, weights=vals)
    g2 = m.graph
    assert_same(g2, fused(g2), random_feeds(g2, rng))


# --- elementwise groups ------------------------------------------------------------------------

def test_elementwise_dag_with_a_branch_used_outside(rng):
    g = GraphBuilder("ew")
    x, y, b = leaf(g, "x", 16, 4), leaf(g, "y", 16, 4), leaf(g, "b", 16)   # b broadcasts
    s = g.set_name(g.add(x, y), "s")
    e = g.set_name(g.unary(s, "exp"), "e")
    m = g.set_name(g.mul(g.neg(s), b), "m")
    t = g.set_name(g.add(e, m), "t")
    c = g.set_name(g.clamp(g.scale(t, 0.5), -2.0, 2.0), "c")
    other = g.mul_mat(leaf(g, "W", 16, 5), e)       # e is also read by a matmul (never a prologue)
    graph = g.build(c, other)
    prog = fused(graph)
    k = kernel_with(prog, "s")
    assert k.kind == "elementwise" and work_ops(k) == ["add", "exp", "neg", "mul", "add", "scale", "clamp"]
    assert {o.name for o in k.outputs} == {"e", "c"}
    assert [work_ops(k) for k in prog.kernels] == [work_ops(k), ["mul_mat"]]
    assert_same(graph, prog, random_feeds(graph, rng))


def test_branch_read_by_another_kernel_is_materialised(rng):
    g = GraphBuilder("mat")
    x, W = leaf(g, "x", 16, 4), leaf(g, "W", 16, 16)
    a = g.set_name(g.add(x, x), "a")
    b = g.set_name(g.unary(a, "tanh"), "b")
    c = g.set_name(g.mul_mat(W, a), "c")         # a leaves its kernel: a matmul never takes a prologue
    graph = g.build(b, c)
    prog = fused(graph)
    k = kernel_with(prog, "a")
    assert work_ops(k) == ["add", "tanh"] and {o.name for o in k.outputs} == {"a", "b"}
    assert_same(graph, prog, random_feeds(graph, rng))


def test_iteration_space_and_type_boundaries(rng):
    g = GraphBuilder("bound")
    x, h = leaf(g, "x", 16, 4), leaf(g, "h", 8, 4, type="f16")
    a = g.set_name(g.unary(x, "silu"), "a")
    r = g.set_name(g.glu(a, "geglu"), "r")            # halves ne0: a new iteration space
    q = g.set_name(g.mul(r, r), "q")                  # joins r
    f = g.set_name(g.add(h, q), "f")                  # f16 result: a value that may not stay in registers
    z = g.set_name(g.scale(f, 2.0), "z")              # f's consumer never joins through it
    graph = g.build(z)
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["silu"], ["geglu", "mul", "add"], ["scale"]]
    assert_same(graph, prog, random_feeds(graph, rng))


def test_views_ride_with_their_reader_or_get_a_view_kernel(rng):
    g = GraphBuilder("views")
    x, y = leaf(g, "x", 8, 6), leaf(g, "y", 6, 8)
    a = g.set_name(g.add(x, x), "a")
    t = g.set_name(g.transpose(a), "t")               # read by two kernels: a view kernel of its own
    u = g.set_name(g.add(g.cont(t), y), "u")
    v = g.set_name(g.sum_rows(g.cont(t)), "v")
    r = g.set_name(g.reshape_1d(a, 48), "r")          # read by one kernel: attached to it
    w = g.set_name(g.scale(r, 3.0), "w")
    graph = g.build(u, v, w)
    prog = fused(graph)
    tk = kernel_with(prog, "t")
    assert tk.kind == "view" and tk.nodes == [t] and tk.inputs == [a]
    wk = kernel_with(prog, "w")
    assert [n.name for n in wk.nodes] == ["r", "w"] and wk.inputs == [a]
    assert kernel_with(prog, "a").outputs == [a]      # read through views: materialised
    assert_same(graph, prog, random_feeds(graph, rng))


def test_custom_elementwise_ops_fuse_and_unknown_ones_do_not(rng):
    register_custom_op("fusion_test_sq", lambda a: a * a, elementwise=True)
    register_custom_op("fusion_test_opaque", lambda a: a[..., ::-1].copy())
    try:
        g = GraphBuilder("custom")
        x = leaf(g, "x", 12, 3)
        a = g.op("custom", [g.unary(x, "tanh")], {"fn": "fusion_test_sq"}, decl=_decl(x))
        b = g.op("custom", [a], {"fn": "fusion_test_opaque"}, decl=_decl(x))
        graph = g.build(g.scale(b, 0.5))
        prog = fused(graph)
        assert [work_ops(k) for k in prog.kernels] == [["tanh", "custom"], ["custom"], ["scale"]]
        assert all("fusion_test" not in k.name for k in prog.kernels)     # names never carry user text
        assert_same(graph, prog, random_feeds(graph, rng))
    finally:
        unregister_custom_op("fusion_test_sq")
        unregister_custom_op("fusion_test_opaque")


def _decl(t: Tensor):
    from graphc.ops import Decl
    return Decl(t.type, t.ne)


# --- order: dependencies and state writes -------------------------------------------------------

def test_state_write_keeps_its_order_against_readers(rng):
    g = GraphBuilder("state")
    z = leaf(g, "z", 16, 2)
    st = g.set_state(g.new_tensor_2d("f32", 16, 2, "st"))
    a = g.set_name(g.mul(z, z), "a")                   # group 0, open for same-shaped elementwise
    before = g.set_name(g.add(g.view_2d(st, 16, 2, 64, 0), z), "before")   # reads st before the write
    g.build_forward_expand(before)
    g.build_forward_expand(a)
    w = g.set_name(g.cpy(g.scale(z, 2.0), st), "w")    # writes st
    g.build_forward_expand(w)
    after = g.set_name(g.add(a, g.view_2d(st, 16, 2, 64, 0)), "after")     # must not join a's kernel
    graph = g.build(after, before)
    prog = fused(graph)
    ki = {id(n): i for i, k in enumerate(prog.kernels) for n in k.nodes}
    assert ki[id(before)] < ki[id(w)] < ki[id(after)]
    assert kernel_with(prog, "w").nodes[-1] is w and work_ops(kernel_with(prog, "w")) == ["cpy"]
    assert_same(graph, prog, random_feeds(graph, rng))


def test_no_cycle_between_kernels(rng):
    """c may not join a's kernel: it also reads m, whose kernel runs after a's and reads a."""
    g = GraphBuilder("cycle")
    x, idx = leaf(g, "x", 8, 8), leaf(g, "idx", 8, type="i32")
    a = g.set_name(g.add(x, x), "a")
    m = g.set_name(g.get_rows(a, idx), "m")            # "other": a closed kernel of its own, reads a
    c = g.set_name(g.mul(a, m), "c")
    d = g.set_name(g.sub(c, a), "d")
    graph = g.build(d)
    prog = fused(graph)
    assert [work_ops(k) for k in prog.kernels] == [["add"], ["get_rows"], ["mul", "sub"]]
    assert prog.kernels[0].outputs == [a]
    assert_same(graph, prog, random_feeds(graph, rng))


# --- dequant + matmul super-kernels ----------------------------------------------------------------

@pytest.mark.parametrize("wtype", sorted(DEQUANT_TYPES))
def test_dequant_matmul_forms(wtype):
    for cols, ne in ((1, (256, 1)), (8, (256, 8)), (8, (256, 2, 4)), (9, (256, 9)), (64, (256, 16, 4))):
        g = GraphBuilder("dq")
        W = g.set_param(g.new_tensor(wtype, (256, 16), "W"))
        x = leaf(g, "x", *ne)
        y = g.add(g.mul_mat(W, x), leaf(g, "bias", 16))
        prog = fused(g.build(y))
        (k,) = prog.kernels
        assert k.kind == "dequant_matmul" and work_ops(k) == ["mul_mat", "add"]
        assert k.attrs == {"form": "gemv" if cols <= 8 else "gemm", "wtype": wtype, "cols": cols}


@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16", "q2_K"])
def test_other_weight_types_stay_plain_matmul(wtype):
    g = GraphBuilder("mm")
    W = g.set_param(g.new_tensor(wtype, (256, 16), "W"))
    prog = fused(g.build(g.mul_mat(W, leaf(g, "x", 256, 3))))
    assert prog.kernels[0].kind == "matmul" and prog.kernels[0].attrs["form"] == "gemv"


def test_quantized_weight_read_through_a_view_is_dequant_matmul():
    g = GraphBuilder("mmv")
    W = g.set_param(g.new_tensor("q6_K", (256, 16), "W"))
    Wv = g.view_2d(W, 256, 8, W.nb[1], W.nb[1] * 8)
    prog = fused(g.build(g.mul_mat(Wv, leaf(g, "x", 256, 32))))
    (k,) = prog.kernels
    assert k.kind == "dequant_matmul" and k.attrs["form"] == "gemm" and k.inputs[0] is W


# --- whole graphs -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_tokens", [1, 8, 12])
def test_tiny_decoder_kernel_counts_and_results(n_tokens, rng):
    cfg = td.Config()
    g0 = td.build(cfg, n_tokens)
    before = len(unfused(g0).kernels)
    prog = fused(g0)
    work = [k for k in prog.kernels if k.kind != "view"]
    print(f"tiny decoder T={n_tokens}: {before} kernels unfused -> {len(prog.kernels)} fused ({len(work)} with work)")
    assert len(prog.kernels) <= 0.6 * before
    kinds = [k.kind for k in prog.kernels]
    # per layer: q, k, v, attn_output (+residual), gate, up (+swiglu), down (+residual); + the output head
    assert kinds.count("dequant_matmul") == 7 * cfg.n_layer + 1
    forms = {k.attrs["form"] for k in prog.kernels if k.kind == "dequant_matmul"}
    assert forms == {"gemv" if n_tokens <= 8 else "gemm"}
    assert sum(work_ops(k) == ["rms_norm", "mul"] for k in prog.kernels) == 2 * cfg.n_layer + 1
    assert sum(work_ops(k) == ["mul_mat", "add"] for k in prog.kernels) == 2 * cfg.n_layer   # residuals
    assert sum(work_ops(k) == ["mul_mat", "swiglu"] for k in prog.kernels) == cfg.n_layer
    assert "k1_rms_norm_mul" in describe(prog)
    m = graphc.compile(g0, weights=td.random_weights(g0, seed=int(rng.integers(1 << 31))))
    g = m.graph
    tokens = list(rng.integers(0, cfg.n_vocab, n_tokens))
    feeds = {k: v.reshape(g.get(k).shape) for k, v in td.step_inputs(cfg, tokens, n_past=3).items()}
    assert_same(g, fused(g), feeds)


@pytest.mark.parametrize("build,name", fg.available(), ids=lambda x: x)
def test_fixture_graphs_fuse_and_give_the_same_results(build, name, rng):
    f = fg.rebuild(build, name)
    prog = fused(f.graph)
    before = len(unfused(f.graph).kernels)
    print(f"{build}/{name}: {before} -> {len(prog.kernels)} kernels")
    assert len(prog.kernels) < before
    feeds = {}
    for t in f.graph.inputs:
        feeds[t.name] = (f.arrays[t.name] if t.type.is_int else
                         rng.standard_normal(t.shape).astype(np.float32).reshape(f.arrays[t.name].shape))
    assert_same(f.graph, prog, feeds)


@pytest.mark.parametrize("case", oc.CASES, ids=lambda c: c.id)
def test_op_case_graphs_fuse_and_give_the_same_results(case, rng):
    graph, _ = oc.build_graph(case)
    prog = fused(graph)
    feeds = {k: v.feed for k, v in oc.prepare(case, rng).items() if k in graph}   # repeat's b only gives a shape
    assert_same(graph, prog, feeds, **(case.ref_opts or oc.DEQUANT))


def test_describe_lists_every_op_and_materialised_values():
    g0 = td.build(td.Config(), 1)
    prog = fuse(g0)
    text = describe(prog)
    lines = text.splitlines()
    assert len(lines) == len(prog.kernels) + 2
    assert "dequant_matmul/gemv" in text and "rms_norm mul*" in text
    assert lines[-1].startswith(f"{len(g0.nodes)} nodes in {len(prog.kernels)} kernels")
    assert prog.log and prog.log[0].startswith("fuse:")


def test_empty_graph():
    prog = fuse(Graph("empty"))
    assert prog.kernels == [] and "0 nodes in 0 kernels" in describe(prog)
