"""Differential runs of one graph: a target with the full pass pipeline against `ref` without passes.

    outcome = check_graph(graph, "c", runs=3)     # "passed" or "declined"; AssertionError on a mismatch

Both modules get the same random weights (random_graphs.random_weights) and, run after run, the same fresh
random inputs (random_graphs.random_feeds); state carries over between runs on both. After every run each
output and each state tensor is compared at its numeric class's bound (random_graphs.numeric_classes):

  ref     against itself without passes: bit for bit, everything (the passes only regroup the same numpy
          work; tests/test_passes.py asserts the same on the op cases).
  c, opencl  against ref's quant_matmul="ggml" mode (8-bit / f16 activations as ggml's CPU backend makes
          them, which both follow); weight types without ref's integer path (iq4_nl, iq4_xs) against its
          "dequant" mode.
  triton  against ref's "dequant" mode (its kernels multiply dequantized weights by f32 activations).

Bounds (NMSE, ggml's test-backend-ops measure; random_graphs.BOUNDS):
  exact    0: copies, views, gathers, concats, pads, exact conversions and sign ops move bits, never round.
  f32      1e-7: ggml's own bound for f32 work (tests/test_c_target.py F32_BOUND): the targets sum and fuse in
           another order and use their own exp/tanh/erf, a few ulps apart; 1e-7 is a relative RMS error of
           3e-4, far above that and far below any wrong index, stride or formula.
  rounded  1e-4: an f32 value rounded to f16/bf16/q8_0/q4_0 on the way (a cast into a cache, f16 weights'
           f16 activations in ggml mode). Values a few ulps apart may round one step apart: one bf16 step is
           2^-8 .. 2^-7 relative, so one flipped element costs up to 6e-5 of a small output's NMSE (seen:
           1.45e-5 for a bf16 glu of 36 values, one element one bf16 step apart); an f16 step costs 2^-6 of that.
  quant    1e-5: quantized mul_mat in ggml mode (tests/test_c_target.py QUANT_BOUND): integer dot products
           are exact, the f32 sums of block products run in another order.
  dequant  5e-4: the target quantizes activations to 8 bits, ref's dequant mode does not
           (tests/test_c_target.py DEQUANT_BOUND: ~1e-2 relative per element).
Integer results (argmax) must match exactly. Non-finite values must sit at the same places.

A failure is shrunk by Hypothesis; `save_regression` writes the shrunk graph to tests/regressions/ (see the
README there), where tests/test_random_graphs.py replays it on every target on every run.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, settings

import graphc
from graphc import memplan
from graphc.frontends import graph_text
from graphc.ir import Flag, Graph

import random_graphs as rg
from op_cases import compare

TARGETS = ("ref", "c", "opencl", "triton")
TARGET_OPTS: dict[str, dict[str, Any]] = {
    "c": {"serial_work": 0},                 # split every step over the threads, however small
    "triton": {"device": os.environ.get("GRAPHC_TEST_TRITON_DEVICE", "interpret")},
}
# graphs per target in `make test` (measured on the 2-core CI machine: ref ~0.015 s a graph, C ~0.1-0.2 s,
# OpenCL ~0.9 s, Triton's interpreter ~0.35 s: about 150 worker-seconds in all)
EXAMPLES = {"ref": 300, "c": 150, "opencl": 60, "triton": 90}


def examples(target: str) -> int:
    """Graphs per target: GRAPHC_FUZZ_EXAMPLES when set (a longer campaign), else EXAMPLES."""
    env = os.environ.get("GRAPHC_FUZZ_EXAMPLES")
    return int(env) if env else EXAMPLES[target]


def fuzz_settings(n: int) -> settings:
    """n examples, no deadline (compiles vary), and no explain phase: it traces every line while shrinking,
    which slows Triton's interpreter tenfold."""
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much],
                    phases=[p for p in Phase if p is not Phase.explain])


def runs_for(graph: Graph) -> int:
    """State carries over between runs: graphs with state run 3 times (the last after reset_state), others
    twice (fresh inputs each)."""
    return 3 if graph.state else 2


REGRESSIONS = os.environ.get("GRAPHC_REGRESSIONS_DIR",
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions"))
UNSUPPORTED = re.compile(r"^op \S+ is not supported on target (\w+) yet")


def unsupported_errors() -> tuple[type, ...]:
    """The targets' "not supported yet" errors (a target may decline an op it has no kernel for)."""
    from graphc.targets.c import codegen as c_codegen
    errs: list[type] = [c_codegen.Unsupported]
    try:
        from graphc.targets.opencl import codegen as cl_codegen
        errs.append(cl_codegen.Unsupported)
    except ImportError:                      # pragma: no cover - the test venv has pyopencl
        pass
    try:
        from graphc.targets.triton import codegen as tr_codegen
        errs.append(tr_codegen.Unsupported)
    except ImportError:                      # pragma: no cover - the test venv has triton
        pass
    return tuple(errs)


def ref_mode(graph: Graph, target: str) -> str:
    if target == "triton" or rg.needs_dequant_ref(graph):
        return "dequant"
    return "ggml"


def _compare(got: np.ndarray, want: np.ndarray, cls: int, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if cls == rg.EXACT or want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want, err_msg=f"{what} [{rg.CLASS_NAMES[cls]}]")
    else:
        compare(got, want, rg.BOUNDS[cls], f"{what} [{rg.CLASS_NAMES[cls]}]")


def check_graph(graph: Graph, target: str, runs: int = 2, rng: np.random.Generator | None = None,
                passes: Any = True, disable_passes: tuple[str, ...] = ()) -> str:
    """Compile graph for target (full pipeline by default) and ref without passes, run both `runs` times on
    fresh inputs and compare outputs and state after each run (with state, the last run follows
    reset_state() on both). Returns "passed", or "declined: <why>" when
    the target raised its clear "not supported yet" error; AssertionError on any mismatch."""
    rng = rng if rng is not None else np.random.default_rng()
    weights = rg.random_weights(graph, rng)
    mode = ref_mode(graph, target)
    want = graphc.compile(graph, target="ref", passes=False, weights=weights, quant_matmul=mode)
    opts = dict(TARGET_OPTS.get(target, {}))
    if target == "ref":
        opts["quant_matmul"] = mode
    if target == "c":                        # thread splits differ: 1, 2 or 3 threads
        opts["n_threads"] = int(rng.integers(1, 4))
    try:
        got = graphc.compile(graph, target=target, weights=weights, passes=passes, disable_passes=disable_passes,
                             **opts)
    except unsupported_errors() as e:
        m = UNSUPPORTED.match(str(e))
        assert m and m.group(1) == target, f"{target}: an unclear refusal: {e}"
        return f"declined: {e}"
    if got.program is not None and got.program.plan is not None:
        memplan.check_plan(got.program)      # the arena checker on every plan (the plan pass runs it too)
    if target == "ref":
        cls = {id(t): rg.EXACT for t in graph.tensors()}
    else:
        cls = rg.numeric_classes(graph, "dequant" if target == "triton" else "ggml")
    watched = [t for t in graph.tensors() if t.flags & (Flag.OUTPUT | Flag.STATE)]
    with warnings.catch_warnings():
        # Triton's interpreter evaluates masked-off lanes too (sin of a lane past the row end)
        warnings.simplefilter("ignore", RuntimeWarning)
        for run in range(runs):
            feeds = rg.random_feeds(graph, rng)
            if run == runs - 1 and graph.state:
                want.reset_state()           # the last run starts again from the initial state
                got.reset_state()
            w_out, g_out = want.run(feeds), got.run(feeds)
            assert g_out.keys() == w_out.keys()
            for t in watched:
                w = w_out[t.name] if t.name in w_out else want.read(t.name)
                g = g_out[t.name] if t.name in g_out else got.read(t.name)
                _compare(np.asarray(g), np.asarray(w), cls[id(t)], f"{target} run {run}: {t.name}")
    return "passed"


# --- regression files -------------------------------------------------------------------------------------

def regression_text(graph: Graph, target: str, error: BaseException | str) -> str:
    """A .graph file whose leading comments say where and how it failed."""
    msg = str(error).strip().splitlines() or [""]
    head = [f"# found by random-graph testing on target {target}", f"# error: {msg[0][:300]}"]
    head += [f"#   {line[:300]}" for line in msg[1:6]]
    return "\n".join(head) + "\n" + graph_text.dumps(graph)


def save_regression(graph: Graph, target: str, error: BaseException | str, directory: str = REGRESSIONS) -> str:
    """Write the (shrunk) failing graph as <target>-<hash>.graph under `directory`, print and return its path.
    The name depends only on the graph, so finding the same minimal graph again overwrites one file."""
    body = graph_text.dumps(graph)
    path = os.path.join(directory, f"{target}-{hashlib.sha256(body.encode()).hexdigest()[:12]}.graph")
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(regression_text(graph, target, error))
    print(f"random-graph failure on {target}: minimal graph saved to {path}")
    return path


XFAIL = re.compile(r"^#\s*xfail(?:\[([\w, ]+)\])?:\s*(.+)$")


def xfail_marks(path: str) -> dict[str, str]:
    """`# xfail: reason` (every target) or `# xfail[c, opencl]: reason` lines of a regression file:
    {target: reason} for the targets expected to fail it (strictly: a pass is reported)."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = XFAIL.match(line.strip())
            if m:
                for t in (m.group(1).replace(" ", "").split(",") if m.group(1) else TARGETS):
                    out[t] = m.group(2).strip()
    return out
