"""Random-graph differential testing: Hypothesis draws valid graphs over the whole op set (random_graphs.py),
each target compiles them with the full pass pipeline, and every output and state tensor must match `ref`
run WITHOUT passes on the same fresh random inputs and weights, run after run (state carried over). The
bounds per numeric class and why: differential.py. Every saved regression graph (tests/regressions/*.graph)
replays on every target on every run.

Graphs per target: differential.EXAMPLES (600 in all, sized for `make test` on 2 cores: ref is cheap, a C program
compiles in ~0.1-0.3 s against the cached kernel library, PoCL builds each new OpenCL program, and Triton's
interpreter is slow); GRAPHC_FUZZ_EXAMPLES=N runs N per target instead (and scales the pass-property tests
alike); tools/fuzz.py (`make fuzz`) runs longer, time-boxed campaigns. A failure is shrunk by Hypothesis
to a minimal graph, which is saved under tests/regressions/ (its path is printed; see
tests/regressions/README.md).
"""
from __future__ import annotations

import glob
import os

import pytest
from hypothesis import given
from hypothesis.control import current_build_context

import graphc

import differential as d
import random_graphs as rg

# the compiled targets' examples are split over several tests, which xdist runs side by side
SPLIT = {"ref": 1, "c": 3, "opencl": 3, "triton": 3}


def check_and_save(graph, target: str) -> str:
    """check_graph; on the shrunk example Hypothesis reports (its final run), save the graph as a regression."""
    try:
        return d.check_graph(graph, target, runs=d.runs_for(graph))
    except Exception as e:
        if current_build_context().is_final:
            d.save_regression(graph, target, e)
        raise


CASES = [(t, i) for t in d.TARGETS for i in range(SPLIT[t])]


@pytest.mark.parametrize("target,part", CASES, ids=[f"{t}-{i}" for t, i in CASES])
def test_random_graphs_match_unfused_ref(target, part):
    @d.fuzz_settings(max(1, d.examples(target) // SPLIT[target]))
    @given(graph=rg.graphs())
    def check(graph):
        check_and_save(graph, target)

    check()


# --- saved regressions: every file, every target, every run ------------------------------------------------

REGRESSION_FILES = sorted(glob.glob(os.path.join(d.REGRESSIONS, "*.graph")))


@pytest.mark.parametrize("target", d.TARGETS)
@pytest.mark.parametrize("path", REGRESSION_FILES, ids=os.path.basename)
def test_regression_graph(path, target, request):
    reason = d.xfail_marks(path).get(target)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    graph = graphc.load_graph(path)
    for _ in range(2):                          # fresh weights and inputs twice
        d.check_graph(graph, target, runs=3)


def test_regressions_exist():
    """The folder holds the graphs earlier campaigns found (and the replay above found them)."""
    assert REGRESSION_FILES, f"no regression graphs under {d.REGRESSIONS}"


# --- the strategies themselves -------------------------------------------------------------------------

@d.fuzz_settings(200)
@given(graph=rg.graphs())
def test_random_graphs_are_valid_and_round_trip(graph):
    """Every drawn graph verifies, survives the .graph text format (as regressions are stored) and gets values
    for each leaf it needs: integers in range, masks with a visible key per query, no all-zero inputs."""
    import numpy as np
    from graphc.compare import graph_diff
    from graphc.frontends import graph_text
    graphc.verify(graph)
    assert graph_diff(graph, graph_text.loads(graph_text.dumps(graph))) is None
    rng = np.random.default_rng()
    feeds = rg.random_feeds(graph, rng)
    for t in graph.inputs:
        v = feeds[t.name]
        if t.type.is_int:
            for n, j in rg.leaf_uses(graph).get(id(t), []):
                if n.op == "get_rows" and j == 1:
                    assert 0 <= v.min() and v.max() < n.src[0].ne[1]
        elif v.size > 1:
            assert np.any(v != 0)
    weights = rg.random_weights(graph, rng)
    assert set(weights) == {t.name for t in graph.leafs if t.has(graphc.Flag.PARAM)}
