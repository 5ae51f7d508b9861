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

from graphc.targets.opencl import codegen as clcodegen

UNSUPPORTED = re.compile(r"^op \S+ is not supported on target opencl yet")


def _compile_pair(graph, **opts):
    try:
        mo = graphc.compile(graph, target="opencl", **opts)
    except clcodegen.Unsupported as e:
        assert UNSUPPORTED.match(str(e)), str(e)
        return e, None, None
    return (mo,) + _ref_and_bound(graph)


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_case_matches_ref(c, rng):
    graph, _ = build_graph(c)
    fed = prepare(c, rng)
    feeds = {k: v.feed for k, v in fed.items() if k in graph}
    mo, mr, bound = _compile_pair(graph)
    if mr is None:
        pytest.fail(f"{c.id}: {mo}")
    _check_outputs(mo.run(feeds), mr.run(feeds), bound, c.exact, c.id)


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_case_unfused_matches_ref(c, rng):
    """passes=False: one kernel per node, so every library kernel meets views and strides as given."""
    graph, _ = build_graph(c)
    fed = prepare(c, rng)
    feeds = {k: v.feed for k, v in fed.items() if k in graph}
    mo, mr, bound = _compile_pair(graph, passes=False)
    if mr is None:
        pytest.fail(f"{c.id}: {mo}")
    _check_outputs(mo.run(feeds), mr.run(feeds), bound, c.exact, c.id)


@pytest.mark.parametrize("case", [c for c in FIXTURE_CASES if c[2] == "ggml"], ids=fixture_ids)
def test_fixture_matches_ref(case):
    build, name, config = case
    f = fg.rebuild(build, name)
    mo, mr, bound = _compile_pair(configured(f.graph, config)[0])
    if mr is None:
        pytest.fail(f"{build}/{name}: {mo}")
    for run in range(2):                         # state persists between runs on both
        _check_outputs(mo.run(f.inputs), mr.run(f.inputs), bound, False, f"{build}/{name} run {run}")


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
