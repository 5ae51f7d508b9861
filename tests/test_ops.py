"""Every op in graphc.ops.OPS, run by the ref target, against an independent numpy formula (op_cases.py)."""
from __future__ import annotations

import numpy as np
import pytest

from graphc import ops
from graphc.builder import use_gelu_table
from graphc.ir import Tensor, full_numpy_shape
from op_cases import CASE_IDS, CASES, DEQUANT, GLU_ACT, UNARY_NP, Case, build_graph, compare, prepare


def to_values(arr: np.ndarray, t: Tensor) -> np.ndarray:
    """A tensor's contents as float64 / int64 numpy 4-D; raw uint8 bytes are decoded by t's type."""
    from op_cases import ggml_dequantize
    arr = np.asarray(arr)
    full = full_numpy_shape(t.ne)
    if arr.dtype == np.uint8 and t.type.name not in ("i8",):
        if t.type.name == "f16":
            arr = arr.view(np.float16)
        elif t.type.name == "bf16":
            arr = (arr.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = ggml_dequantize(arr, t.type.name, t.nelements)
    if t.type.is_int:
        return arr.astype(np.int64).reshape(full)
    return arr.astype(np.float64).reshape(full)


def run_ref(c: Case, fed: dict, opts: dict, gelu_table: bool = False) -> tuple[np.ndarray, Tensor]:
    """ref's result of a case; gelu_table: gelu-family nodes in ggml's CPU table form (use_gelu_table)."""
    from graphc.targets.ref import RefExecutable
    graph, out = build_graph(c)
    if gelu_table:                          # the copy's tensors sit at the same positions
        where, i = next((w, i) for w in ("nodes", "leafs") for i, t in enumerate(getattr(graph, w)) if t is out)
        graph = use_gelu_table(graph)
        out = getattr(graph, where)[i]
    ex = RefExecutable(graph, **opts)
    for t in graph.leafs:
        ex.write(t, fed[t.name].feed)
    ex.run()
    return to_values(ex.read(out), out), out


def expected_4d(c: Case, fed: dict, out: Tensor) -> np.ndarray:
    want = np.asarray(c.numpy({k: f.values for k, f in fed.items()}))
    full = full_numpy_shape(out.ne)
    assert want.size == int(np.prod(full)), f"{c.id}: formula gives {want.shape}, node is {full}"
    return want.reshape(full)


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op(c: Case, rng):
    fed = prepare(c, rng)
    got, out = run_ref(c, fed, c.ref_opts or DEQUANT)
    want = expected_4d(c, fed, out)
    if c.exact:
        np.testing.assert_array_equal(got, want, err_msg=c.id)
    else:
        compare(got, want, c.tol, c.id)


def test_evaluate_matches_executable(rng):
    """graphc.targets.ref.evaluate (by leaf name) gives the same node values as RefExecutable."""
    from graphc.targets.ref import evaluate
    from op_cases import BY_ID
    c = BY_ID["mul_mat-bcast"]
    fed = prepare(c, rng)
    graph, out = build_graph(c)
    res = evaluate(graph, {k: f.feed for k, f in fed.items()}, **DEQUANT)
    compare(to_values(res[out.name], out), expected_4d(c, fed, out), c.tol, c.id)


# --- the table covers everything ------------------------------------------------------------------

def _covered() -> tuple[set, set, set]:
    op_names, unary, glu = set(), set(), set()
    for c in CASES:
        graph, _ = build_graph(c)
        for n in graph.nodes:
            op_names.add(n.op)
            if n.op == "unary":
                unary.add(n.params["op"])
            if n.op == "glu":
                glu.add((n.params["op"], n.src[1] is not None if len(n.src) > 1 else False, n.params["swapped"]))
    return op_names, unary, glu


def test_every_op_has_a_case():
    op_names, unary, glu = _covered()
    assert set(ops.OPS) - {"none"} <= op_names, f"ops without a case: {sorted(set(ops.OPS) - {'none'} - op_names)}"
    assert set(ops.UNARY_OPS) <= unary, f"unary ops without a case: {sorted(set(ops.UNARY_OPS) - unary)}"
    assert set(UNARY_NP) == set(ops.UNARY_OPS)
    assert set(GLU_ACT) == set(ops.GLU_OPS)
    for g in ops.GLU_OPS:
        for split, sw in ((False, False), (False, True), (True, False)):
            assert (g, split, sw) in glu, f"glu {g} split={split} swapped={sw} has no case"


def test_cases_without_ggml_say_why():
    for c in CASES:
        if c.ggml is None or c.tol_ggml > 1e-7:
            assert c.why_ggml, f"{c.id}: no ggml graph or a looser ggml bound needs a reason"
