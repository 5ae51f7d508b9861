"""The shared code-generation layer (graphc/codegen): one lowering, printers per language.

- every elementwise op of the op table has its one formula for the compiled targets;
- one fused kernel printed in C, OpenCL C and Triton from the same lowered step: the same body;
- the Triton printer's kernel runs through Triton's interpreter on the CPU and matches the ref target;
  the OpenCL printer's kernel is built and run on an OpenCL device (PoCL in CI) and matches ref;
- custom ops with kernels run on the C target like built-in ops, hostile names stay out of the code.
"""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest

import graphc
from graphc.codegen import cstyle, opencl, triton
from graphc.codegen.formulas import has_formula
from graphc.codegen.lower import EwStep, Unsupported, lower
from graphc.custom import register_custom_op, unregister_custom_op
from graphc.ops import kind_ops
from graphc.passes import run_pipeline
from graphc.targets.c.library import C_LIBRARY

from op_cases import nmse


def test_every_elementwise_op_has_a_formula():
    assert {op for op in kind_ops("elementwise") if not has_formula(op)} == set()


def _fused_graph(btype: str = "f16"):
    """add(x, b broadcast) -> gelu -> mul x -> maximum with a row-broadcast c -> scale: one fused step."""
    g = graphc.GraphBuilder("fused")
    x = g.set_input(g.new_tensor_2d("f32", 48, 5, name="x"))
    b = g.set_input(g.new_tensor_1d(btype, 48, name="b"))
    c = g.set_input(g.new_tensor_2d("f32", 1, 5, name="c"))
    y = g.mul(g.unary(g.add(x, b), "gelu"), x)
    return g.build(g.scale(g.maximum(y, c), 0.5))


def _ew_step(graph) -> tuple[object, EwStep]:
    low = lower(run_pipeline(graph), C_LIBRARY)
    steps = [s for s in low.steps if isinstance(s, EwStep)]
    assert len(steps) == 1 and len(steps[0].body) == 5
    return low, steps[0]


def _feeds(rng):
    return {"x": rng.standard_normal((5, 48), dtype=np.float32),
            "b": rng.standard_normal(48).astype(np.float16).astype(np.float32),
            "c": rng.standard_normal((5, 1), dtype=np.float32)}


def _ref_fused(graph, feeds) -> np.ndarray:
    """ref's value of the fused step (the graph's output)."""
    (out,) = graphc.compile(graph, target="ref").run(feeds).values()
    return out


def test_three_printers_print_one_body():
    _, st = _ew_step(_fused_graph())
    c_lines = cstyle.CStyle().body(st.body)
    cl_lines = opencl.OpenCLStyle().body(st.body)
    tr_lines = triton.TritonStyle().body(st.body)
    assert len(c_lines) == len(cl_lines) == len(tr_lines) == 5
    assert "tanhf(" in c_lines[1] and "tanh(" in cl_lines[1] and "libdevice.tanh(" in tr_lines[1]
    assert "?" in c_lines[3] and "tl.where(" in tr_lines[3]
    for tr in tr_lines:
        ast.parse(tr)
    # the same operation order: strip each language's spelling and compare
    def skeleton(s: str) -> str:
        for a, b in (("tanhf", "T"), ("libdevice.tanh", "T"), ("tanh", "T"), ("const float ", ""), (";", ""),
                     ("f)", ")"), ("f ", " ")):
            s = s.replace(a, b)
        return s
    assert [skeleton(s) for s in c_lines] == [skeleton(s) for s in cl_lines]


def _arena_for(low, st, by_name):
    """One byte arena holding every row the step touches at 64-byte-aligned offsets, inputs filled in."""
    rows = sorted({ld.arg for ld in st.loads} | {s.arg for s in st.stores})
    offsets, size = {}, 0
    for r in rows:
        offsets[r] = size
        size += (low.args[r].t.nbytes + 63) // 64 * 64
    arena = np.zeros(size, np.uint8)
    for ld in st.loads:
        raw = np.ascontiguousarray(by_name[low.args[ld.arg].t.name]).view(np.uint8).ravel()
        arena[offsets[ld.arg]:offsets[ld.arg] + raw.size] = raw
    return rows, offsets, arena


def test_triton_printer_kernel_runs_like_ref(rng):
    """The printed kernel, run by Triton's interpreter on the CPU (installed by make test; no GPU needed)."""
    import torch
    from graphc.targets.triton import loader
    graph = _fused_graph()
    low, st = _ew_step(graph)
    src = triton.kernel_source([("k0_0", st)])
    ast.parse(src)
    feeds = _feeds(rng)
    by_name = {"x": feeds["x"], "b": feeds["b"].astype(np.float16), "c": feeds["c"]}
    rows, offsets, arena = _arena_for(low, st, by_name)
    assert triton.args_of(st) == rows
    buf = torch.from_numpy(arena)                       # shares arena's memory: the kernel writes into it
    mod = loader.generated("interpret", src)
    block = 64
    args = [x for r in rows for x in (buf, offsets[r])]
    mod.k0_0[((5 * 48 + block - 1) // block,)](*args, BLOCK=block)
    o = offsets[st.stores[0].arg]
    out = arena[o:o + 5 * 48 * 4].view(np.float32).reshape(5, 48)
    assert nmse(out, _ref_fused(graph, feeds)) <= 1e-7


def test_opencl_printer_kernel_runs_like_ref(rng):
    import pyopencl as cl          # installed by make test with a PoCL CPU driver (no skip: a failure here)
    graph = _fused_graph()
    low, st = _ew_step(graph)
    src = opencl.kernel_source([("k0_0", st)])
    ctx = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(ctx)
    feeds = _feeds(rng)
    by_name = {"x": feeds["x"], "b": feeds["b"].astype(np.float16), "c": feeds["c"]}
    rows, offsets, arena = _arena_for(low, st, by_name)
    buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=arena)
    prog = cl.Program(ctx, src).build()
    assert opencl.args_of(st) == rows and opencl.range_of(st) == (64, 5)
    args = [x for r in rows for x in (buf, np.uint64(offsets[r]))]
    prog.k0_0(queue, opencl.range_of(st), None, *args)
    cl.enqueue_copy(queue, arena, buf)
    o = offsets[st.stores[0].arg]
    out = arena[o:o + 5 * 48 * 4].view(np.float32).reshape(5, 48)
    assert nmse(out, _ref_fused(graph, feeds)) <= 1e-7


# --- custom ops on the compiled targets --------------------------------------------------------------------

HOSTILE = 'evil"*/ #include <x>\n\\ int main'


def test_custom_ops_run_on_c_with_synthesised_names(rng):
    register_custom_op(HOSTILE, lambda a, b: (a * (1.0 - b)).astype(np.float32), elementwise=True,
                       kernels={"expr": lambda a, b: a * (1.0 - b)})
    body = """
    const gc_tensor *a = src[0];
    int64_t r0, r1;
    gc_chunk(a->ne[1] * a->ne[2] * a->ne[3], ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        for (int64_t i0 = 0; i0 < a->ne[0]; i0++)
            *(float *)(dst->data + r * dst->nb[1] + i0 * 4) = 2.0f * *(const float *)(a->data + r * a->nb[1] + i0 * 4);
"""
    register_custom_op(HOSTILE + "2", lambda a: (2 * a).astype(np.float32), kernels={"c": body},
                       shape=lambda srcs: ("f32", srcs[0].ne))
    try:
        g = graphc.GraphBuilder("custom")
        x = g.set_input(g.new_tensor_2d("f32", 16, 3, name=HOSTILE))
        y = g.set_input(g.new_tensor_2d("f32", 16, 3, name="y"))
        z = g.custom(HOSTILE + "2", g.add(g.custom(HOSTILE, x, y), y))
        graph = g.build(g.unary(z, "tanh"))
        from graphc.targets.c import generate_source
        src = generate_source(graph).source
        assert "evil" in src and "evil" not in re.sub(r"/\*.*?\*/", "", src, flags=re.S)   # comments only
        assert "#include <x>" not in src.replace("evil\"?? #include <x>?? int main", "")
        feeds = {HOSTILE: rng.standard_normal((3, 16), dtype=np.float32),
                 "y": rng.standard_normal((3, 16), dtype=np.float32)}
        got = graphc.compile(graph, target="c", n_threads=2, serial_work=0).run(feeds)
        want = graphc.compile(graph, target="ref").run(feeds)
        for k in want:
            assert nmse(got[k], want[k]) <= 1e-7
    finally:
        unregister_custom_op(HOSTILE)
        unregister_custom_op(HOSTILE + "2")


def test_custom_op_without_a_c_kernel_is_unsupported():
    register_custom_op("codegen_test_nokernel", lambda a: a, shape=lambda srcs: ("f32", srcs[0].ne))
    try:
        g = graphc.GraphBuilder("nok")
        x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
        graph = g.build(g.custom("codegen_test_nokernel", x))
        with pytest.raises(Unsupported, match="has no c kernel"):
            graphc.compile(graph, target="c")
    finally:
        unregister_custom_op("codegen_test_nokernel")


def test_custom_kernels_are_checked_at_registration():
    with pytest.raises(ValueError):
        register_custom_op("codegen_test_bad", lambda a: a, kernels={"expr": lambda a: a})   # not elementwise
    with pytest.raises(ValueError):
        register_custom_op("codegen_test_bad", lambda a: a, kernels={"c": 42})


def test_default_target_is_c():
    from graphc.targets import DEFAULT_TARGET
    assert DEFAULT_TARGET == "c"
