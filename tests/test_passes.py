"""The pass pipeline (graphc.passes): every pass alone and the whole pipeline keep ref's results on every
fixture graph and every op case; each rewrite rule on its own; dumps, disabling, errors, API and CLI."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphc
from graphc import CompileError, Flag, GraphBuilder
from graphc.frontends import graph_text
from graphc.ir import Graph
from graphc.passes import PASS_NAMES, PASSES, canonicalize, clone, cse, dce, run_pipeline, schedule
from graphc.passes.canonicalize import FOLD_LIMIT
from graphc.passes.schedule import dependencies, peak_bytes
from graphc.program import Program
from graphc.targets.ref import RefExecutable
from graphc.verify import verify

import fixture_graph as fg
from op_cases import CASE_IDS, CASES as OP_CASES, DEQUANT, build_graph, prepare
from test_fixtures import CASES as FIXTURE_CASES, bound, configured, fixture_ids, nmse

GRAPH_PASSES = {"canonicalize": canonicalize, "dce": dce, "cse": cse, "schedule": schedule}


# --- helpers ------------------------------------------------------------------------------------

def only(*names: str) -> list[str]:
    """disable= for running just `names` (and verify)."""
    return [n for n in PASS_NAMES if n not in names and n != "verify"]


def variants(graph: Graph) -> dict[str, "Graph | Program"]:
    """Each pass alone, fuse alone, plan alone, and the whole pipeline (verifying after every pass)."""
    out: dict[str, Graph | Program] = {}
    for name, fn in GRAPH_PASSES.items():
        g = fn(graph)
        verify(g)
        out[name] = g
    out["fuse"] = run_pipeline(graph, disable=only("fuse"), verify_each=True)
    out["plan"] = run_pipeline(graph, disable=only("plan"), verify_each=True)
    out["pipeline"] = run_pipeline(graph, verify_each=True)
    return out


def run_ref(what: "Graph | Program", feeds: dict[str, np.ndarray], opts: dict, runs: int = 1) -> list[dict]:
    """Outputs and state (by name) after each of `runs` runs with the same feeds."""
    ex = RefExecutable(what, **opts)
    g = what.graph if isinstance(what, Program) else what
    seen = []
    for _ in range(runs):
        for name, v in feeds.items():
            if name in g:                     # an op case may declare a shape-only leaf (repeat's b)
                ex.write(g.get(name), v)
        ex.run()
        seen.append({t.name: ex.read(t) for t in g.tensors() if t.flags & (Flag.OUTPUT | Flag.STATE)})
    return seen


def assert_same_results(graph: Graph, feeds: dict, opts: dict, runs: int = 1, what: str = "") -> dict:
    """Every variant gives bit-identical outputs and state to the graph as given; returns the variants."""
    text_before = graph_text.dumps(graph)
    want = run_ref(graph, feeds, opts, runs)
    vs = variants(graph)
    for name, v in vs.items():
        got = run_ref(v, feeds, opts, runs)
        for r, (g_run, w_run) in enumerate(zip(got, want)):
            assert g_run.keys() == w_run.keys(), f"{what} after {name}: tensors {sorted(g_run)} != {sorted(w_run)}"
            for k in w_run:
                assert g_run[k].shape == w_run[k].shape, f"{what} after {name}: {k} shape"
                np.testing.assert_array_equal(g_run[k], w_run[k], err_msg=f"{what} after {name}: {k} (run {r})")
    assert graph_text.dumps(graph) == text_before, f"{what}: a pass changed its input graph"
    return vs


# --- every fixture graph and every op case ---------------------------------------------------------

@pytest.mark.parametrize("case", FIXTURE_CASES, ids=fixture_ids)
def test_fixture_results_survive_every_pass(case):
    build, name, config = case
    f = fg.rebuild(build, name)
    graph, opts = configured(f.graph, config)
    vs = assert_same_results(graph, f.inputs, opts, runs=2, what=f"{build}/{name}")
    for node, got in run_ref(vs["pipeline"], f.inputs, opts)[0].items():   # and still ggml's
        if node in f.meta["outputs"]:
            assert nmse(got, f.arrays[node], node) <= bound(build, name, node, config), node
    for g in [vs[n] for n in GRAPH_PASSES] + [vs["pipeline"].graph]:
        assert peak_bytes(g.nodes) <= peak_bytes(f.graph.nodes)


@pytest.mark.parametrize("c", OP_CASES, ids=CASE_IDS)
def test_op_case_results_survive_every_pass(c, rng):
    fed = prepare(c, rng)
    graph, _ = build_graph(c)
    assert_same_results(graph, {k: v.feed for k, v in fed.items()}, c.ref_opts or DEQUANT, what=c.id)


def test_decoder_results_survive_every_pass(rng):
    """A 2-layer LLaMA-style decoder with q4_0 weights and f16 KV caches written by set_rows; 3 steps."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import tiny_decoder as td
    cfg = td.Config()
    g0 = td.build(cfg, 3)
    m = graphc.compile(g0, passes=False, weights=td.random_weights(g0, seed=int(rng.integers(1 << 31))))
    feeds = td.step_inputs(cfg, [int(x) for x in rng.integers(0, cfg.n_vocab, 3)], 0)
    assert_same_results(m.graph, feeds, {}, runs=3, what="tiny decoder")


# --- canonicalize -----------------------------------------------------------------------------------

def _ops(g: Graph) -> list[str]:
    return [n.op for n in g.nodes]


def _check_same(g0: Graph, g1: Graph, rng, opts=None) -> None:
    feeds = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in g0.inputs}
    want, got = run_ref(g0, feeds, opts or {})[0], run_ref(g1, feeds, opts or {})[0]
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_view_chains_merge_into_one_view(rng):
    g = GraphBuilder("chains")
    x = g.set_input(g.new_tensor_3d("f32", 8, 6, 4, name="x"))
    r = g.reshape_2d(g.reshape_3d(x, 4, 12, 4), 48, 4)                          # reshape of reshape
    v = g.view_2d(g.view_2d(x, 8, 10, 32, 16), 4, 5, 64, 8)                     # view of view (strided)
    p = g.permute(g.permute(x, 1, 2, 0, 3), 2, 0, 1, 3)                          # permute∘permute = identity
    t = g.transpose(g.transpose(x))                                              # transpose∘transpose = identity
    q = g.permute(g.transpose(x), 0, 2, 1, 3)                                    # one permute
    outs = [g.sqr(r), g.sqr(v), g.add(p, t), g.cont(q)]
    g0 = g.build(*outs)
    g1 = canonicalize(g0)
    verify(g1)
    assert _ops(g0).count("reshape") == 2 and _ops(g1).count("reshape") == 1
    assert _ops(g1).count("view") == 1 and _ops(g1).count("transpose") == 0
    assert _ops(g1).count("permute") == 1
    add = next(n for n in g1.nodes if n.op == "add")
    assert add.src[0] is add.src[1] is next(t for t in g1.leafs if t.name == "x")   # identities gone
    v1 = next(n for n in g1.nodes if n.op == "view")
    assert v1.src[0].name == "x" and v1.params["offset"] == 24 and v1.nb[1] == 64
    _check_same(g0, g1, rng)


def test_alias_outputs_keep_their_node_and_name(rng):
    g = GraphBuilder("alias out")
    x = g.set_input(g.new_tensor_2d("f32", 8, 6, name="x"))
    y = g.set_name(g.transpose(g.transpose(x)), "y")
    g0 = g.build(g.sqr(y), y)
    g1 = canonicalize(g0)
    assert "y" in g1 and g1.get("y").has(Flag.OUTPUT) and g1.get("y").op == "permute"
    assert next(n for n in g1.nodes if n.op == "sqr").src[0].name == "x"
    _check_same(g0, g1, rng)


def test_cont_of_contiguous_is_removed_and_strided_cont_kept(rng):
    g = GraphBuilder("cont")
    x = g.set_input(g.new_tensor_2d("f32", 8, 6, name="x"))
    a = g.cont(x)                                         # already contiguous: removed
    b = g.cont(g.transpose(x))                            # a real copy: kept
    c = g.set_name(g.cont(g.reshape_1d(x, 48)), "c")      # contiguous but an output: node kept
    d = g.dup(g.view_1d(x, 8, 32))                        # a contiguous view: removed
    g0 = g.build(g.sqr(a), g.sqr(b), c, g.add(g.reshape_1d(c, 48), g.reshape_1d(g.cont(c), 48)), g.sqr(d))
    g1 = canonicalize(g0)
    verify(g1)
    assert _ops(g0).count("cont") == 4 and _ops(g1).count("cont") == 2 and "dup" not in _ops(g1)
    assert g1.get("c").op == "cont" and g1.get("c").has(Flag.OUTPUT)
    sq = [n for n in g1.nodes if n.op == "sqr"]
    assert sq[0].src[0].name == "x" and sq[-1].src[0].op == "view"
    _check_same(g0, g1, rng)


def _kv_graph(cont_read: bool) -> tuple[Graph, str]:
    """read the cache, then cpy new rows into it, then read again (a state write between the reads)."""
    g = GraphBuilder("kv")
    kv = g.set_state(g.new_tensor_2d("f32", 16, 8, name="kv"))
    new = g.set_input(g.new_tensor_2d("f32", 16, 2, name="new"))
    q = g.set_input(g.new_tensor_2d("f32", 16, 3, name="q"))
    before = g.view_2d(kv, 16, 8, kv.nb[1], 0)
    first = g.cont(before) if cont_read else before
    s1 = g.mul_mat(first, q)
    store = g.set_name(g.cpy(new, g.view_2d(kv, 16, 2, kv.nb[1], 2 * kv.nb[1])), "store")
    g.build_forward_expand(s1)
    g.build_forward_expand(store)
    s2 = g.mul_mat(g.view_2d(kv, 16, 8, kv.nb[1], 0), q)
    s1b = g.mul_mat(first, q) if cont_read else None
    outs = [g.set_name(g.add(s1, s2), "out")]
    if s1b is not None:
        outs.append(g.set_name(g.sqr(s1b), "out_b"))
    return g.build(*outs), "store"


def test_cont_is_kept_when_its_source_is_written_later(rng):
    g0, _ = _kv_graph(cont_read=True)
    g1 = canonicalize(g0)
    assert _ops(g1).count("cont") == 1          # the snapshot before the cpy must stay a copy
    feeds = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in g0.inputs}
    want, got = run_ref(g0, feeds, {}, runs=2), run_ref(g1, feeds, {}, runs=2)
    for w, gg in zip(want, got):
        for k in w:
            np.testing.assert_array_equal(gg[k], w[k], err_msg=k)


def test_no_op_ops_are_removed(rng):
    g = GraphBuilder("noops")
    x = g.set_input(g.new_tensor_2d("f32", 8, 6, name="x"))
    zeros = g.constant(np.zeros(8, np.float32), name="zeros")
    ones = g.constant(np.ones((6, 8), np.float16), name="ones")
    halves = g.constant(np.full(8, 0.5, np.float32), name="halves")
    scratch = g.new_tensor_2d("f32", 8, 6, name="scratch")
    a = g.scale(x, 1.0)                      # no-op
    b = g.add(a, zeros)                      # no-op (broadcast zeros)
    c = g.mul(b, ones)                       # no-op (f16 ones)
    d = g.div(g.sub(c, zeros), ones)         # two no-ops
    e = g.cpy(d, scratch)                    # plain copy into a scratch leaf: no-op
    keep1 = g.scale_bias(x, 1.0, 0.5)        # a bias: kept
    keep2 = g.add(x, halves)                 # not zero: kept
    keep3 = g.scale(x, 2.0)
    g0 = g.build(g.sqr(e), keep1, keep2, keep3)
    g1 = dce(canonicalize(g0))
    verify(g1)
    assert _ops(g1) == ["sqr", "scale", "add", "scale"]
    assert g1.nodes[0].src[0].name == "x"
    assert {t.name for t in g1.leafs} == {"x", "halves"}      # unused constants and the scratch leaf dropped
    _check_same(g0, g1, rng)


def test_constants_are_folded(rng):
    g = GraphBuilder("fold")
    x = g.set_input(g.new_tensor_1d("f32", 16, name="x"))
    a = g.constant(rng.standard_normal(16).astype(np.float32), name="a")
    b = g.constant(rng.standard_normal(16).astype(np.float32), name="b")
    w = g.set_param(g.new_tensor_1d("f32", 16, name="w"))
    w.data = rng.standard_normal(16).astype(np.float32).view(np.uint8)
    ab = g.unary(g.add(a, g.view_1d(b, 16, 0)), "tanh")        # constant chain through a view: folded
    ar = g.arange(0.0, 16.0)                                    # no sources: folded
    gl = g.unary(a, "gelu", table=True)                          # folded too (the table is an op parameter)
    pw = g.mul(w, a)                                             # a param: may be rebound, kept
    big_n = FOLD_LIMIT // 4 + 64
    big = g.sqr(g.constant(np.ones(big_n, np.float32), name="big"))   # too large to store: kept
    g0 = g.build(g.add(g.add(g.add(g.mul(x, ab), ar), gl), pw), g.set_name(g.sum(big), "big_sum"))
    g1 = dce(canonicalize(g0))
    verify(g1)
    assert "tanh" not in [n.params.get("op") for n in g1.nodes] and "arange" not in _ops(g1)
    assert _ops(g1).count("unary") == 0 and "sqr" in _ops(g1) and _ops(g1).count("mul") == 2
    assert "a" in g1 and "b" not in g1                          # b only fed the folded chain
    folded = [t for t in g1.leafs if t.data is not None and t.name not in ("a", "w", "big")]
    assert len(folded) == 3
    _check_same(g0, g1, rng, {})


def test_folded_constants_survive_save_and_load(rng, tmp_path):
    g = GraphBuilder("fold save")
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    c = g.unary(g.constant(rng.standard_normal(8).astype(np.float32), name="c"), "tanh")
    g0 = g.build(g.set_name(g.add(x, c), "y"))
    m = graphc.compile(g0, target="ref")       # folding evaluates through ref: bit-equal to ref's tanh
    assert "unary" not in _ops(m.graph)
    xv = rng.standard_normal(8).astype(np.float32)
    first = m.run({"x": xv})["y"]
    m.save(tmp_path / "art")
    np.testing.assert_array_equal(graphc.load(tmp_path / "art").run({"x": xv})["y"], first)
    np.testing.assert_array_equal(graphc.compile(g0, target="ref", passes=False).run({"x": xv})["y"], first)


# --- dce --------------------------------------------------------------------------------------------

def test_dce_keeps_state_writes_and_drops_dead_nodes(rng):
    g = GraphBuilder("dce")
    x = g.set_input(g.new_tensor_2d("f32", 8, 2, name="x"))
    unused_in = g.set_input(g.new_tensor_1d("f32", 4, name="unused_in"))
    unused_w = g.set_param(g.new_tensor_1d("f32", 4, name="unused_w"))
    unused_w.data = np.zeros(16, np.uint8)
    cache = g.set_state(g.new_tensor_2d("f32", 8, 4, name="cache"))
    dead_c = g.constant(np.ones(8, np.float32), name="dead_c")
    g.build_forward_expand(g.add(x, dead_c))                               # nobody needs it
    g.build_forward_expand(g.sqr(unused_in))
    store = g.cpy(g.silu(x), g.view_2d(cache, 8, 2, cache.nb[1], cache.nb[1]))   # side effect: stays
    g.build_forward_expand(store)
    g0 = g.build(g.set_name(g.sum(x), "total"))
    g0.leafs.append(unused_w)                 # a bound weight nothing reads (the builder only adds reachable ones)
    g1 = dce(g0)
    verify(g1)
    assert _ops(g1) == ["unary", "view", "cpy", "sum"]
    assert {t.name for t in g1.leafs} == {"x", "unused_in", "unused_w", "cache"}
    feeds = {"x": rng.standard_normal((2, 8)).astype(np.float32), "unused_in": np.zeros(4, np.float32)}
    want, got = run_ref(g0, feeds, {}, 2), run_ref(g1, feeds, {}, 2)
    for w, gg in zip(want, got):
        assert w.keys() == gg.keys() == {"total", "cache"}
        for k in w:
            np.testing.assert_array_equal(gg[k], w[k])
    assert np.any(got[-1]["cache"] != 0)


# --- cse --------------------------------------------------------------------------------------------

def test_cse_merges_identical_nodes(rng):
    g = GraphBuilder("cse")
    x = g.set_input(g.new_tensor_2d("f32", 8, 4, name="x"))
    w = g.set_input(g.new_tensor_2d("f32", 8, 5, name="w"))
    a1, a2 = g.mul_mat(w, x), g.mul_mat(w, x)
    s1, s2 = g.scale(a1, 0.0), g.scale(a2, -0.0)          # -0.0 and 0.0 differ: kept apart
    v1, v2 = g.view_1d(x, 8, 0), g.view_1d(x, 8, 0)
    o1 = g.set_name(g.add(g.silu(a1), g.silu(a2)), "o1")
    o2 = g.set_name(g.sqr(v1), "o2")
    o3 = g.set_name(g.sqr(v2), "o3")                     # same as o2 but both are outputs: kept
    o4 = g.set_name(g.silu(a2), "o4")                    # an output equal to an earlier silu: merged, named o4
    g0 = g.build(o1, o2, o3, g.add(s1, s2), o4)
    g1 = cse(g0)
    verify(g1)
    assert _ops(g1).count("mul_mat") == 1 and _ops(g1).count("unary") == 1 and _ops(g1).count("scale") == 2
    assert _ops(g1).count("view") == 1 and _ops(g1).count("sqr") == 2
    assert g1.get("o4").op == "unary" and g1.get("o4").has(Flag.OUTPUT)
    add = g1.get("o1")
    assert add.src[0] is add.src[1] is g1.get("o4")
    _check_same(g0, g1, rng)


def test_cse_does_not_merge_reads_across_a_state_write(rng):
    g0, store = _kv_graph(cont_read=False)
    g1 = cse(g0)
    verify(g1)
    assert _ops(g1).count("mul_mat") == 2            # the read before the cpy and the one after it
    assert _ops(g1).count("view") == 2               # identical views merged (addresses only): 3 -> 2
    stats: dict = {}
    cse(g0, stats)
    assert stats["kept apart by a state write"] == 1
    feeds = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in g0.inputs}
    for w, gg in zip(run_ref(g0, feeds, {}, 2), run_ref(g1, feeds, {}, 2)):
        for k in w:
            np.testing.assert_array_equal(gg[k], w[k], err_msg=k)


def test_views_fixture_keeps_the_cache_read_after_the_store(rng):
    f = fg.rebuild("0.15.3", "views")
    prog = run_pipeline(f.graph, verify_each=True)
    order = [n.name for n in prog.graph.nodes]
    assert order.index("kv_store") < order.index("kv_scores")
    ids = rng.permutation(100)[:5].astype(np.int32)
    feeds = {**f.inputs, "ids": ids}
    want, got = run_ref(f.graph, feeds, {}, 2), run_ref(prog, feeds, {}, 2)
    for w, gg in zip(want, got):
        for k in w:
            np.testing.assert_array_equal(gg[k], w[k], err_msg=k)


# --- schedule ---------------------------------------------------------------------------------------

def _wide_graph(n: int = 6) -> Graph:
    """n big intermediates made first, each reduced later: ggml's order keeps all of them live."""
    g = GraphBuilder("wide")
    x = g.set_input(g.new_tensor_2d("f32", 64, 32, name="x"))
    bigs = [g.scale(g.sqr(x), float(i + 1)) for i in range(n)]
    for b in bigs:
        g.build_forward_expand(b)
    sums = [g.sum_rows(b) for b in bigs]
    acc = sums[0]
    for s in sums[1:]:
        acc = g.add(acc, s)
    return g.build(g.set_name(acc, "y"))


def _uniq(g: Graph) -> Graph:
    """Unique node names (test graphs reuse ggml's derived names), so orders can be compared by name."""
    for i, n in enumerate(g.nodes):
        if not n.flags:
            n.name = f"n{i}"
    return g


def _order_respects(g0: Graph, g1: Graph) -> None:
    """Every data and memory-order edge of g0 still points forward in g1 (node names unique)."""
    assert len({n.name for n in g0.nodes}) == len(g0.nodes)
    pos = {id(n): i for i, n in enumerate(g1.nodes)}
    by_name = {n.name: n for n in g1.nodes}
    names0 = [n.name for n in g0.nodes]
    for i, d in enumerate(dependencies(g0.nodes)):
        for j in d:
            assert pos[id(by_name[names0[j]])] < pos[id(by_name[names0[i]])], (names0[j], names0[i])


def test_schedule_lowers_the_peak_and_keeps_results(rng):
    g0 = _uniq(_wide_graph())
    stats: dict = {}
    g1 = schedule(g0, stats)
    verify(g1)
    assert peak_bytes(g1.nodes) == stats["peak after"] < stats["peak before"] == peak_bytes(g0.nodes)
    assert peak_bytes(g1.nodes) <= peak_bytes(g0.nodes) / 2
    _order_respects(g0, g1)
    _check_same(g0, g1, rng)


def test_schedule_keeps_side_effect_order(rng):
    g = GraphBuilder("side effects")
    kv = g.set_state(g.new_tensor_2d("f32", 16, 8, name="kv"))
    x = g.set_input(g.new_tensor_2d("f32", 16, 8, name="x"))
    big = [g.sqr(g.scale(x, float(i))) for i in range(3)]
    r1 = g.sum_rows(g.view_2d(kv, 16, 8, kv.nb[1], 0))                 # read before the first write
    w1 = g.cpy(big[0], g.view_2d(kv, 16, 8, kv.nb[1], 0))              # write
    for t in (*big, r1, w1):
        g.build_forward_expand(t)
    r2 = g.sum_rows(g.view_2d(kv, 16, 8, kv.nb[1], 0))                 # read between the writes
    g.build_forward_expand(r2)
    w2 = g.cpy(big[1], g.view_2d(kv, 16, 8, kv.nb[1], 0))
    g.build_forward_expand(w2)
    r3 = g.sum_rows(g.add(big[2], g.view_2d(kv, 16, 8, kv.nb[1], 0)))
    g0 = _uniq(g.build(g.set_name(g.add(g.add(r1, r2), r3), "y")))
    deps = dependencies(g0.nodes)
    idx = {id(n): i for i, n in enumerate(g0.nodes)}
    assert idx[id(r1)] in deps[idx[id(w1)]]                            # write after read
    assert idx[id(w1)] in deps[idx[id(w2)]]                            # write after write
    assert idx[id(w1)] in deps[idx[id(r2)]] and idx[id(r2)] in deps[idx[id(w2)]]
    g1 = schedule(g0)
    _order_respects(g0, g1)
    feeds = {"x": rng.standard_normal((8, 16)).astype(np.float32)}
    for w, gg in zip(run_ref(g0, feeds, {}, 2), run_ref(g1, feeds, {}, 2)):
        for k in w:
            np.testing.assert_array_equal(gg[k], w[k], err_msg=k)


def test_schedule_never_raises_the_peak_on_op_cases():
    for c in OP_CASES:
        g0 = _uniq(build_graph(c)[0])
        g1 = schedule(g0)
        assert peak_bytes(g1.nodes) <= peak_bytes(g0.nodes), c.id
        _order_respects(g0, g1)


def test_decoder_schedule_lowers_the_peak():
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import tiny_decoder as td
    g0 = _uniq(td.build(td.Config(n_layer=4), 4))
    g1 = schedule(g0)
    assert peak_bytes(g1.nodes) < peak_bytes(g0.nodes)
    _order_respects(g0, g1)


# --- pipeline: names, purity, dumps, disabling, errors ----------------------------------------------

def test_pipeline_lists_its_passes_and_logs_each():
    assert PASS_NAMES == ("verify", "canonicalize", "dce", "cse", "schedule", "fuse", "plan")
    assert [p.name for p in PASSES] == list(PASS_NAMES)
    f = fg.rebuild("0.15.3", "attn")
    prog = run_pipeline(f.graph)
    for name in PASS_NAMES:
        assert any(line.startswith(name + ":") for line in prog.log), (name, prog.log)
    assert prog.log[-1].startswith("pipeline:")
    assert prog.plan is not None and prog.kernels
    assert not {id(t) for t in prog.graph.tensors()} & {id(t) for t in f.graph.tensors()}
    assert {t.name for t in prog.graph.tensors() if t.flags} == {t.name for t in f.graph.tensors() if t.flags}


def test_dump_dir_writes_text_and_dot_around_each_pass(tmp_path):
    f = fg.rebuild("0.15.3", "views")
    run_pipeline(f.graph, dump_dir=tmp_path / "all")
    files = sorted(os.listdir(tmp_path / "all"))
    for i, name in enumerate(PASS_NAMES, 1):
        for when in ("before", "after"):
            for ext in (".graph", ".dot"):
                assert f"{i:02d}-{when}-{name}{ext}" in files
    assert "07-after-plan.txt" in files and "06-after-fuse.txt" in files
    g = graph_text.load(tmp_path / "all" / "04-after-cse.graph")
    assert [n.name for n in g.nodes] == [n.name for n in cse(dce(canonicalize(f.graph))).nodes]
    assert "digraph" in (tmp_path / "all" / "02-before-canonicalize.dot").read_text()
    run_pipeline(f.graph, dump_dir=tmp_path / "some", dump_after=["cse", "dce"])
    assert sorted(os.listdir(tmp_path / "some")) == sorted(
        f"{i}-{w}-{n}{e}" for i, n in (("03", "dce"), ("04", "cse")) for w in ("before", "after")
        for e in (".graph", ".dot"))


def test_disabled_passes_do_not_run():
    g = GraphBuilder("dups")
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    g0 = g.build(g.set_name(g.add(g.sqr(x), g.sqr(x)), "y"))
    prog = run_pipeline(g0, disable=["cse", "plan"])
    assert _ops(prog.graph).count("sqr") == 2 and prog.plan is None
    assert "cse: disabled" in prog.log and "plan: disabled" in prog.log
    assert _ops(run_pipeline(g0).graph).count("sqr") == 1
    prog = run_pipeline(g0, disable=list(PASS_NAMES))
    assert len(prog.kernels) == len(prog.graph.nodes) == 3
    assert not {id(t) for t in prog.graph.tensors()} & {id(t) for t in g0.tensors()}


def test_unknown_pass_names_are_errors():
    g0 = _wide_graph(2)
    with pytest.raises(CompileError, match=r"unknown pass 'nope'; the passes are: verify, canonicalize, dce, "
                                           r"cse, schedule, fuse, plan"):
        run_pipeline(g0, disable=["nope"])
    with pytest.raises(CompileError, match="dump after: unknown pass 'cse2'"):
        run_pipeline(g0, dump_after=["cse2"])
    with pytest.raises(CompileError, match="unknown pass 'fusion'"):
        graphc.compile(g0, disable_passes=["fusion"])
    with pytest.raises(CompileError, match="unknown pass 'x'"):
        graphc.compile(g0, passes=["verify", "x"])
    with pytest.raises(CompileError, match="passes must be True, False or a list"):
        graphc.compile(g0, passes=3)


def test_verify_each_catches_a_broken_pass(monkeypatch):
    import graphc.passes as gp

    def broken(graph, stats=None):
        g = clone(graph)
        g.nodes = g.nodes[::-1]             # sources after their users
        return g
    monkeypatch.setattr(gp, "PASSES", [gp.Pass("broken", "graph", broken, "")] + gp.PASSES[1:])
    monkeypatch.setattr(gp, "PASS_NAMES", ("broken",) + gp.PASS_NAMES[1:])
    with pytest.raises(graphc.GraphError, match="is not an earlier tensor"):
        gp.run_pipeline(_wide_graph(2), verify_each=True)


# --- API and CLI ------------------------------------------------------------------------------------

def test_compile_runs_the_pipeline(rng, tmp_path):
    g0 = _wide_graph()
    xv = rng.standard_normal((32, 64)).astype(np.float32)
    plain = graphc.compile(g0, target="ref", passes=False)
    assert plain.program is None
    want = plain.run({"x": xv})["y"]
    m = graphc.compile(g0, target="ref", dump_dir=tmp_path / "d", dump_after=["schedule"], verify_passes=True)
    assert m.program is not None and m.program.plan is not None and m.graph is m.program.graph
    assert any(line.startswith("schedule:") and "nodes moved" in line for line in m.program.log)
    assert sorted(os.listdir(tmp_path / "d"))[0] == "05-after-schedule.dot"
    np.testing.assert_array_equal(m.run({"x": xv})["y"], want)
    some = graphc.compile(g0, target="ref", passes=["verify", "dce"])
    assert "cse: disabled" in some.program.log and some.program.plan is None
    np.testing.assert_array_equal(some.run({"x": xv})["y"], want)
    np.testing.assert_array_equal(graphc.compile(g0, target="ref", disable_passes=["schedule"]).run({"x": xv})["y"],
                                  want)


def test_cli_pass_options(tmp_path, capsys):
    from graphc.cli import main
    f = fg.rebuild("0.15.3", "mlp")
    graphc.save_graph(f.graph, tmp_path / "mlp.graph")
    src = str(tmp_path / "mlp.graph")
    assert main(["compile", src, "-o", str(tmp_path / "out"), "--dump-dir", str(tmp_path / "d"),
                 "--dump-after", "fuse", "--disable-pass", "cse", "--disable-pass", "dce"]) == 0
    assert sorted(os.listdir(tmp_path / "d")) == ["06-after-fuse.dot", "06-after-fuse.graph", "06-after-fuse.txt",
                                                  "06-before-fuse.dot", "06-before-fuse.graph"]
    assert main(["run", str(tmp_path / "out"), "--random-inputs", "--seed", "3", "--no-passes"]) == 0
    assert main(["run", src, "--random-inputs", "--seed", "3", "--debug"]) == 0
    out = capsys.readouterr().out
    assert "pass: schedule:" in out and "pass: pipeline:" in out
    assert main(["compile", src, "-o", str(tmp_path / "o2"), "--disable-pass", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown pass 'bogus'" in err and "verify, canonicalize, dce, cse, schedule, fuse, plan" in err
    assert main(["compile", src, "-o", str(tmp_path / "o3"), "--dump-after", "cse"]) == 2
    assert "--dump-after goes with --dump-dir" in capsys.readouterr().err
