"""Pass-level properties on random graphs (random_graphs.py) and on every saved regression graph:

- every pass keeps results: the pipeline with each pass disabled, and the pipeline up to each pass, give
  ref's results bit for bit (ref without passes is the oracle; ref computes the same numpy work whatever the
  grouping, as tests/test_passes.py asserts on the op cases);
- the arena checker (graphc.memplan.check_plan) accepts every plan made for them, fused or not, at several
  alignments, and each plan is at least its liveness lower bound;
- the scheduler keeps its docstring's promise (graphc/passes/schedule.py): the new order is kept only when its
  peak of live intermediates is lower, otherwise the original order stays; so the peak never rises. That peak is
  the arena's own measure: for one kernel per node it equals memplan's liveness lower bound without in-place
  reuse, which is asserted too (in-place reuse depends on which producer and consumer end up adjacent, which the
  scheduler does not promise anything about; the test reports how often that bound moves either way).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from hypothesis import given

import graphc
from graphc import memplan
from graphc.passes import PASS_NAMES, canonicalize, clone, cse, dce, run_pipeline, schedule
from graphc.passes.fuse import fuse
from graphc.passes.schedule import peak_bytes
from graphc.program import unfused
from graphc.verify import verify

import differential as d
import random_graphs as rg
from differential import examples, fuzz_settings, runs_for

REGRESSION_FILES = sorted(glob.glob(os.path.join(d.REGRESSIONS, "*.graph")))


def _each_pass_keeps_results(graph) -> None:
    rng = np.random.default_rng()
    runs = runs_for(graph)
    for i, name in enumerate(PASS_NAMES):
        d.check_graph(graph, "ref", runs=runs, rng=rng, disable_passes=(name,))
        d.check_graph(graph, "ref", runs=runs, rng=rng, passes=list(PASS_NAMES[:i + 1]))


def _plans_check(graph) -> None:
    m = graphc.compile(graph, target="ref", weights=rg.random_weights(graph, np.random.default_rng()),
                       quant_matmul=d.ref_mode(graph, "ref"))
    memplan.check_plan(m.program)                     # the pipeline's own plan
    g = m.program.graph
    for make in (unfused, fuse):
        for align in (16, 64, 256):
            prog = memplan.plan(make(g), align=align)
            memplan.check_plan(prog)
            p = prog.plan
            assert p.size >= p.lower_bound and all(o % align == 0 for o in p.offsets.values())


def _before_schedule(graph):
    g = verify(clone(graph))
    for p in (canonicalize, dce, cse):
        g = p(g)
    return g


def _arena_bound(graph, inplace: bool) -> int:
    prog = unfused(graph)
    ivs = memplan.liveness(prog)
    return memplan._lower_bound(ivs, memplan._find_inplace(prog, ivs) if inplace else {})


_moves = {"same": 0, "lower": 0, "higher": 0}


def _schedule_keeps_its_promise(graph) -> None:
    g = _before_schedule(graph)
    stats: dict[str, int] = {}
    s = schedule(g, stats)
    before, after = peak_bytes(g.nodes), peak_bytes(s.nodes)
    assert after <= before
    same_order = [id(n) for n in g.nodes] == [id(n) for n in s.nodes] or \
        [n.name for n in g.nodes] == [n.name for n in s.nodes]
    assert same_order or after < before, "a reordering kept without a lower peak"
    assert stats["peak before"] == before and stats["peak after"] == after
    # the scheduler's peak is the arena's liveness bound (no in-place reuse) for one kernel per node
    assert _arena_bound(g, False) == before and _arena_bound(s, False) == after
    b0, b1 = _arena_bound(g, True), _arena_bound(s, True)
    _moves["same" if b0 == b1 else "lower" if b1 < b0 else "higher"] += 1


@fuzz_settings(examples("ref") // 3)
@given(graph=rg.graphs())
def test_every_pass_keeps_results_on_random_graphs(graph):
    _each_pass_keeps_results(graph)


@fuzz_settings(examples("ref"))
@given(graph=rg.graphs())
def test_every_random_plan_passes_the_arena_checker(graph):
    _plans_check(graph)


def test_scheduler_never_raises_the_peak(capsys):
    @fuzz_settings(examples("ref"))
    @given(graph=rg.graphs(max_ops=12))
    def check(graph):
        _schedule_keeps_its_promise(graph)

    _moves.update(same=0, lower=0, higher=0)
    check()
    with capsys.disabled():
        print(f"\nschedule: arena lower bound with in-place reuse after vs before: {_moves}")


@pytest.mark.parametrize("path", REGRESSION_FILES, ids=os.path.basename)
def test_pass_properties_on_regression_graphs(path):
    graph = graphc.load_graph(path)
    run_pipeline(graph, verify_each=True)             # the pipeline alone, without compile's rewrites
    _each_pass_keeps_results(graph)
    _plans_check(graph)
    _schedule_keeps_its_promise(graph)
