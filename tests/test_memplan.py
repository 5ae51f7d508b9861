"""The one-arena memory planner (graphc.memplan) and ref running planned Programs on that arena.

Every test that plans memory runs check_plan. The end-to-end proof is ref: a planned Program backs every
intermediate with a view of ONE arena, so a plan that lets two live tensors share bytes changes results;
outputs and state must be bit-identical to the plain graph's. Measured ratios (arena / liveness lower
bound) are printed (-s) for the fixtures, the tiny decoder and a LLaMA-7B-shaped decoder graph.
"""
from __future__ import annotations

import os
import sys
import time
import xml.etree.ElementTree as ET
from typing import Callable

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import graphc
from graphc import memplan
from graphc.builder import GraphBuilder
from graphc.errors import GraphError, RunError
from graphc.ir import Graph, Tensor, full_numpy_shape, new_tensor
from graphc.program import ALIGN, Kernel, Program, unfused
from graphc.targets.ref import RefExecutable

import fixture_graph as fg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import tiny_decoder as td  # noqa: E402

RATIO = 1.1


def _programs() -> dict[str, Callable[[Graph], Program]]:
    progs: dict[str, Callable[[Graph], Program]] = {"unfused": unfused}
    try:
        from graphc.passes.fuse import fuse
        progs["fused"] = fuse
    except ImportError:
        pass
    return progs


PROGRAMS = _programs()


def planned(program: Program, **kw) -> Program:
    memplan.plan(program, **kw)
    memplan.check_plan(program)
    p = program.plan
    assert p is not None and p.size >= p.lower_bound and p.naive >= p.lower_bound
    return program


def _int_bound(graph: Graph, t: Tensor) -> int:
    """Indices must stay inside every table they index (get_rows rows, set_rows destination rows)."""
    bound = 16
    for n in graph.nodes:
        if n.op == "get_rows" and n.src[1] is t:
            bound = min(bound, n.src[0].ne[1])
        if n.op == "set_rows" and n.src[2] is t:
            bound = min(bound, n.ne[1])
    return bound


def random_inputs(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for t in graph.inputs:
        if t.type.is_int:      # distinct indices: set_rows with repeats would depend on write order
            vals = rng.permutation(_int_bound(graph, t))[: t.nelements] % _int_bound(graph, t)
            out[t.name] = np.resize(vals, full_numpy_shape(t.ne)).astype(t.type.np_dtype)
        else:
            out[t.name] = rng.standard_normal(full_numpy_shape(t.ne)).astype(np.float32)
    return out


def run_twice(exe: RefExecutable, graph: Graph, inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Outputs and state after each of two runs (state carries over: the arena must not clobber it)."""
    results = []
    for _ in range(2):
        for name, v in inputs.items():
            exe.write(graph.get(name), v)
        exe.run()
        results.append({t.name: exe.read(t) for t in graph.outputs + graph.state})
    return results


def assert_same_results(graph: Graph, program: Program, inputs: dict[str, np.ndarray], **opts) -> None:
    want = run_twice(RefExecutable(graph, **opts), graph, inputs)
    got = run_twice(RefExecutable(program, **opts), graph, inputs)
    for w, g in zip(want, got):
        assert w.keys() == g.keys()
        for name in w:
            np.testing.assert_array_equal(g[name], w[name], err_msg=name)   # bit-identical (NaN == NaN)


def _ratio(p) -> float:
    return p.size / p.lower_bound if p.lower_bound else 1.0


# --- fixtures and the tiny decoder: plan, check, same results ----------------------------------

@pytest.mark.parametrize("kind", list(PROGRAMS))
@pytest.mark.parametrize("build,name", fg.available(), ids=lambda x: x)
def test_fixture_graph_on_the_arena(build, name, kind, rng):
    f = fg.rebuild(build, name)
    prog = planned(PROGRAMS[kind](f.graph))
    p = prog.plan
    print(f"{build}/{name} [{kind}]: {memplan.summary(prog)}")
    assert p.size <= RATIO * p.lower_bound + ALIGN     # tiny graphs: one alignment pad may dominate
    assert_same_results(f.graph, prog, random_inputs(f.graph, rng))


@pytest.mark.parametrize("kind", list(PROGRAMS))
@pytest.mark.parametrize("n_tokens", [1, 8])
def test_tiny_decoder_on_the_arena(n_tokens, kind, rng):
    cfg = td.Config()
    g0 = td.build(cfg, n_tokens)
    m = graphc.compile(g0, weights=td.random_weights(g0, seed=int(rng.integers(1 << 31))))
    g = m.graph
    prog = planned(PROGRAMS[kind](g))
    p = prog.plan
    print(f"tiny decoder T={n_tokens} [{kind}]: {memplan.summary(prog)}")
    assert p.size <= RATIO * p.lower_bound
    assert p.size < p.naive / 2
    assert p.inplace, "rms_norm -> mul, mul_mat -> rope and mul_mat -> soft_max chains reuse memory in ggml"
    tokens = list(rng.integers(0, cfg.n_vocab, n_tokens))
    inputs = {k: v.reshape(g.get(k).shape) for k, v in td.step_inputs(cfg, tokens, n_past=2).items()}
    assert_same_results(g, prog, inputs)


def test_program_without_plan_runs_like_the_graph(rng):
    f = fg.rebuild("0.15.3", "attn")
    assert_same_results(f.graph, unfused(f.graph), random_inputs(f.graph, rng))


# --- in-place reuse: where ggml does it, and never elsewhere -----------------------------------

def _chain_graph(final_output_inplace: bool = False):
    g = GraphBuilder("chain")
    x = g.set_input(g.new_tensor_2d("f32", 40, 3, "x"))
    y = g.set_input(g.new_tensor_2d("f32", 40, 3, "y"))
    h = g.set_name(g.add(x, y), "h")              # arena: inputs are never reused (not owned by the arena)
    a = g.set_name(g.silu(h), "a")
    b = g.set_name(g.scale(a, 0.5), "b")
    c = g.set_name(g.sqr(b), "c")
    out = g.set_name(g.unary(c, "tanh") if final_output_inplace else g.sum_rows(c), "out")
    return g.build(out)


def test_unary_chain_is_computed_in_place(rng):
    graph = _chain_graph()
    prog = planned(unfused(graph))
    p = prog.plan
    ids = {t.name: id(t) for t in graph.nodes}
    assert p.inplace == {ids["a"]: ids["h"], ids["b"]: ids["a"], ids["c"]: ids["b"]}
    assert len({p.offsets[ids[n]] for n in "habc"}) == 1
    assert p.size == memplan._align(40 * 3 * 4, ALIGN) and p.lower_bound == 40 * 3 * 4
    assert_same_results(graph, prog, random_inputs(graph, rng))
    exe = RefExecutable(prog)
    for name in "habc":      # one arena block held all four: none of them has a value after the run
        with pytest.raises(RunError, match="arena"):
            exe.read(graph.get(name))


def test_outputs_are_never_planned_nor_reused():
    graph = _chain_graph(final_output_inplace=True)
    prog = planned(unfused(graph))
    out = graph.get("out")
    assert id(out) not in prog.plan.offsets and id(out) not in prog.plan.inplace
    assert id(graph.get("x")) not in prog.plan.inplace.values()


def test_no_reuse_for_multi_use_other_layout_or_non_inplace_ops(rng):
    g = GraphBuilder("multi")
    x = g.set_input(g.new_tensor_2d("f32", 32, 4, "x"))
    h = g.set_name(g.add(x, x), "h")
    a = g.set_name(g.silu(h), "a")                    # h is read again later: no reuse
    s = g.set_name(g.mul(a, a), "s")                  # a read by two slots of one node (ggml: 2 children)
    c = g.set_name(g.clamp(s, -1.0, 1.0), "c")        # clamp is not in ggml_op_can_inplace
    t = g.set_name(g.cont(g.transpose(c)), "t")       # cont is not either
    u = g.set_name(g.silu(t), "u")                    # t: same type, but ne/nb differ from c...
    d = g.set_name(g.add(u, g.cont(g.transpose(h))), "d")
    e = g.set_name(g.silu(g.view_1d(d, 4 * 31, 4 * 4)), "e")   # d dies here, but the view starts 16 bytes in
    out = g.set_name(g.sum_rows(e), "out")
    graph = g.build(out)
    prog = planned(unfused(graph))
    names = {id(t): t.name for t in graph.tensors()}
    pairs = {names[k]: names[v] for k, v in prog.plan.inplace.items()}
    for n in ("a", "s", "c", "t", "e"):
        assert n not in pairs, pairs
    assert pairs.get("u") == "t"                      # ...and u reuses t: t dies at u, identical layout
    assert pairs.get("d") == "u"
    assert_same_results(graph, prog, random_inputs(graph, rng))


# --- a wrong plan is caught by the checker and corrupts ref's results ---------------------------

def test_corrupted_plan_is_caught_and_changes_results(rng):
    cfg = td.Config()
    g0 = td.build(cfg, 4)
    g = graphc.compile(g0, weights=td.random_weights(g0, seed=int(rng.integers(1 << 31)))).graph
    prog = planned(unfused(g))
    p = prog.plan
    ivs = memplan.liveness(prog)
    # a long-lived tensor a, and a tensor b written while a is still to be read: put b over a
    a, b = max(((x, y) for x in ivs.values() for y in ivs.values()
                if x.first < y.first < x.last and x.size >= y.size > 0
                and id(y.root) not in p.inplace and id(y.root) not in p.inplace.values()),
               key=lambda xy: xy[0].last - xy[1].first)
    p.offsets[id(b.root)] = p.offsets[id(a.root)]
    with pytest.raises(GraphError) as e:
        memplan.check_plan(prog)
    assert a.root.name in str(e.value) and b.root.name in str(e.value)
    tokens = list(rng.integers(0, cfg.n_vocab, 4))
    inputs = {k: v.reshape(g.get(k).shape) for k, v in td.step_inputs(cfg, tokens, n_past=0).items()}
    with pytest.raises(AssertionError):
        assert_same_results(g, prog, inputs)


def test_check_plan_rejects_bad_offsets_and_sizes():
    graph = _chain_graph()
    for spoil in ("misalign", "past_end", "missing", "stray", "fake_inplace"):
        prog = planned(unfused(graph))
        p = prog.plan
        h, out = graph.get("h"), graph.get("out")
        if spoil == "misalign":
            p.offsets[id(h)] += 8
            p.size += 64
        elif spoil == "past_end":
            p.size = 40 * 3 * 4 - 1
        elif spoil == "missing":
            del p.offsets[id(h)]
        elif spoil == "stray":
            p.offsets[id(out)] = 0
        else:
            p.inplace[id(graph.get("c"))] = id(h)
        with pytest.raises(GraphError):
            memplan.check_plan(prog)
    prog.plan = None
    with pytest.raises(GraphError, match="no memory plan"):
        memplan.check_plan(prog)


def test_ref_rejects_a_plan_that_places_nothing():
    graph = _chain_graph()
    prog = planned(unfused(graph))
    prog.plan.offsets.clear()
    with pytest.raises(graphc.CompileError, match="no offset"):
        RefExecutable(prog)


# --- fused programs: an unmaterialised value read elsewhere fails loudly -----------------------

def test_fused_intermediate_read_outside_its_kernel_fails():
    graph = _chain_graph()
    h, a, b, c, out = (graph.get(n) for n in ("h", "a", "b", "c", "out"))
    kernels = [Kernel("k0", [h, a], "elementwise", [a], [graph.get("x"), graph.get("y")]),
               Kernel("k1", [b, c], "elementwise", [c], [a]),
               Kernel("k2", [out], "reduce", [out], [c])]
    prog = planned(Program(graph, kernels))
    assert id(h) not in prog.plan.offsets and id(b) not in prog.plan.offsets
    x = np.random.default_rng().standard_normal((3, 40)).astype(np.float32)
    exe = RefExecutable(prog)
    exe.write(graph.get("x"), x)
    exe.write(graph.get("y"), x)
    exe.run()
    want = (x + x) / (1 + np.exp(-(x + x))) * 0.5
    np.testing.assert_allclose(exe.read(out)[0, 0, :, 0], (want ** 2).sum(-1), rtol=1e-5)
    broken = Program(graph, [Kernel("k0", [h], "elementwise", [], []),     # h never leaves its kernel...
                             Kernel("k0b", [a], "unary", [a], [h]),        # ...but another kernel reads it
                             kernels[1], kernels[2]])
    exe = RefExecutable(planned(broken))
    exe.write(graph.get("x"), x)
    exe.write(graph.get("y"), x)
    with pytest.raises(RunError, match="not materialised"):
        exe.run()


def test_schedule_that_reads_before_producing_is_rejected():
    graph = _chain_graph()
    prog = unfused(graph)
    prog.kernels[1], prog.kernels[2] = prog.kernels[2], prog.kernels[1]
    with pytest.raises(GraphError, match="not topological"):
        memplan.plan(prog)


# --- alignment, zero sizes, report and drawing -------------------------------------------------

@pytest.mark.parametrize("align", [16, 64, 256, 4096])
def test_alignment(align, rng):
    f = fg.rebuild("0.15.3", "attn")
    prog = planned(unfused(f.graph), align=align)
    assert prog.plan.align == align
    assert all(off % align == 0 for off in prog.plan.offsets.values())
    assert prog.plan.size % align == 0
    assert_same_results(f.graph, prog, random_inputs(f.graph, rng))


@pytest.mark.parametrize("align", [0, 3, 48, -64])
def test_bad_alignment(align):
    with pytest.raises(GraphError, match="power of two"):
        memplan.plan(unfused(_chain_graph()), align=align)


def test_zero_size_tensors(rng):
    g = GraphBuilder("empty")
    x = g.set_input(g.new_tensor_2d("f32", 8, 0, "x"))
    y = g.set_input(g.new_tensor_2d("f32", 8, 3, "y"))
    e = g.set_name(g.silu(g.scale(x, 2.0)), "e")          # zero bytes, in the arena
    h = g.set_name(g.scale(g.add(y, y), 2.0), "h")
    out = g.set_name(g.add(h, h), "out")
    out2 = g.set_name(g.scale(e, 3.0), "out2")
    graph = g.build(out, out2)
    prog = planned(unfused(graph))
    ivs = memplan.liveness(prog)
    assert any(iv.size == 0 for iv in ivs.values())
    assert prog.plan.size == memplan._align(8 * 3 * 4, ALIGN)
    assert_same_results(graph, prog, random_inputs(graph, rng))


def test_empty_arena():
    g = GraphBuilder("only outputs")
    x = g.set_input(g.new_tensor_1d("f32", 5, "x"))
    graph = g.build(g.silu(x))
    prog = planned(unfused(graph))
    assert prog.plan.size == prog.plan.lower_bound == prog.plan.naive == 0
    assert "arena 0 bytes" in memplan.report(prog)


def test_report_table():
    graph = _chain_graph()
    prog = planned(unfused(graph))
    text = memplan.report(prog)
    head, cols, *rows = text.splitlines()
    assert "arena 512 bytes" in head and "lower bound 480" in head and "naive sum 1,920" in head
    assert cols.split()[:4] == ["tensor", "kernel", "offset", "size"]
    assert [r.split()[0] for r in rows] == ["h", "a", "b", "c"]
    assert rows[1].split()[-1] == "h" and rows[0].split()[-1] == "0..1"


def test_svg_is_valid_xml(tmp_path):
    g = GraphBuilder("svg")
    x = g.set_input(g.new_tensor_1d("f32", 100, "x"))
    a = g.set_name(g.add(x, x), 'a <&> "quoted"\x01\x7f')     # names are free text
    b = g.set_name(g.mul(a, x), "b")
    graph = g.build(g.add(a, b))
    prog = planned(unfused(graph))
    path = tmp_path / "arena.svg"
    memplan.svg(prog, str(path))
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    rects = root.findall("{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 1 + len(prog.plan.offsets)          # the frame + one per tensor
    titles = [r.find("{http://www.w3.org/2000/svg}title").text for r in rects[1:]]
    assert any(t.startswith('a <&> "quoted"') for t in titles)


def test_cli_inspect_plan(tmp_path, capsys):
    from graphc.cli import main
    path = fg.FIXTURES / "2024-05-17-7cf94a2b" / "attn.ggml"
    svg_path = tmp_path / "a.svg"
    assert main(["inspect", str(path), "--plan", "--svg", str(svg_path)]) == 0
    out = capsys.readouterr().out
    assert "kernels" in out and "memory plan: arena" in out and "lower bound" in out
    assert "kq_soft" in out and "rope" in out
    ET.parse(svg_path)


# --- random graphs: the planner is safe and exact on whatever it is given ----------------------

_UNARY = ("silu", "gelu", "neg", "tanh")


@st.composite
def random_graph(draw):
    g = GraphBuilder("random")
    rows = draw(st.integers(1, 5))
    x = g.set_input(g.new_tensor_2d("f32", 16, rows, "x"))
    vals = [x]
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["unary", "scale", "binary", "transpose", "rms_norm", "sqr", "clamp"]))
        a = draw(st.sampled_from(vals))
        if kind == "unary":
            t = g.unary(a, draw(st.sampled_from(_UNARY)))
        elif kind == "scale":
            t = g.scale(a, 0.5)
        elif kind == "binary":
            b = draw(st.sampled_from([v for v in vals if v.ne == a.ne]))
            t = g.op(draw(st.sampled_from(["add", "mul", "sub"])), [a, b])
        elif kind == "transpose":
            t = g.cont(g.transpose(a))
        elif kind == "rms_norm":
            t = g.rms_norm(a, 1e-5)
        elif kind == "sqr":
            t = g.sqr(a)
        else:
            t = g.clamp(a, -1.0, 1.0)
        vals.append(t)
    outs = draw(st.lists(st.sampled_from(vals[1:]), min_size=1, max_size=3, unique_by=id))
    return g.build(*outs)


@settings(max_examples=40, deadline=None)
@given(graph=random_graph(), align=st.sampled_from([16, 64]))
def test_random_graphs_plan_and_run(graph, align):
    prog = planned(unfused(graph), align=align)
    rng = np.random.default_rng()
    assert_same_results(graph, prog, random_inputs(graph, rng))


@settings(max_examples=60, deadline=None)
@given(spec=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12), st.sampled_from([1, 16, 250, 1024, 12_500]),
                               st.integers(1, 4)), min_size=1, max_size=80))
# found by this test: both ggml's birth-order best fit and greedy-by-size put the two 12 KiB blocks at 0 (28 KiB
# where 20 KiB fits); best fit taking the larger of two tensors born together first packs it exactly
@example(spec=[(0, 1, 1024, 2), (0, 0, 1024, 3), (1, 1, 1024, 2), (2, 0, 1024, 3)])
def test_placements_never_overlap_and_stay_near_the_bound(spec):
    """Every packing on arbitrary interval sets (sizes spread over four orders of magnitude): aligned,
    disjoint in memory whenever live together; the kept one within 1.5 x the bound. The bound (most bytes
    live at once) is not always reachable: the best packing of some interval sets needs more. On 20,000
    random sets like these the kept packing stayed within 1.41 x, and beyond 1.25 x in 0.03 % of them; on
    real graphs the target is 1.1 x (RATIO, test_llama7b_shaped_plan_is_fast_and_tight)."""
    ivs = {}
    for i, (first, length, words, mult) in enumerate(spec):
        t = new_tensor(f"t{i}", "f32", [words * mult])
        ivs[id(t)] = memplan.Interval(t, first, first + length, t.nbytes)
    lb = memplan._lower_bound(ivs, {})
    sizes = []
    for _, packer in memplan.PACKERS:
        offs, size = packer(ivs, {}, ALIGN)
        items = list(ivs.values())
        for i, a in enumerate(items):
            oa = offs[id(a.root)]
            assert oa % ALIGN == 0 and oa + a.size <= size
            for b in items[i + 1:]:
                ob = offs[id(b.root)]
                assert not (a.overlaps(b) and oa < ob + b.size and ob < oa + a.size), (a.root.name, b.root.name)
        sizes.append(size)
    aligned = {k: memplan.Interval(iv.root, iv.first, iv.last, memplan._align(iv.size, ALIGN)) for k, iv in ivs.items()}
    assert lb <= min(sizes) <= 1.5 * memplan._lower_bound(aligned, {})


# --- a LLaMA-7B-shaped decoder (32 layers, q4_0): plan time and arena vs bound vs naive ---------

LLAMA_7B = td.Config(n_vocab=32000, n_embd=4096, n_head=32, n_ff=11008, n_layer=32, n_ctx=2048, weight_type="q4_0")


@pytest.mark.parametrize("kind", list(PROGRAMS))
@pytest.mark.parametrize("n_tokens", [1, 512])
def test_llama7b_shaped_plan_is_fast_and_tight(n_tokens, kind):
    graph = td.build(LLAMA_7B, n_tokens)
    prog = PROGRAMS[kind](graph)
    t0 = time.perf_counter()
    memplan.plan(prog)
    dt = time.perf_counter() - t0
    memplan.check_plan(prog)
    p = prog.plan
    print(f"LLaMA-7B-shaped T={n_tokens} [{kind}]: {len(graph.nodes)} nodes, {len(prog.kernels)} kernels, "
          f"plan {dt * 1e3:.1f} ms; {memplan.summary(prog)}")
    assert len(graph.nodes) > 1000 and dt < 1.0
    assert p.size <= RATIO * p.lower_bound
    assert p.naive > 20 * p.size
