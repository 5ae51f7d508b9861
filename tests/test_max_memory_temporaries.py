"""compile(max_memory=N) counts the generated code's temporary buffer (the C target's `CExecutable.temp`,
`gen.temp_size` bytes: values that cross steps inside one fused kernel), which only code generation knows:
a module whose plan fits N but whose temporaries do not is refused after generation and before the target
builds or allocates anything (the C target calls graphc.compile back: ACCEPTS_MEMORY_CHECK)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import graphc
from graphc.api import memory_needs, temporaries_bytes
from graphc.errors import CompileError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="the c target needs a C compiler")


def softmax_of_tanh() -> graphc.Graph:
    """tanh fused into soft_max's kernel: its 64x8 f32 result lives in the temporary buffer, not the arena."""
    g = graphc.GraphBuilder("softmax_of_tanh")
    x = g.set_input(g.new_tensor_2d("f32", 64, 8, name="x"))
    y = g.set_output(g.set_name(g.soft_max(g.tanh(x)), "y"))
    return g.build(y)


def test_max_memory_counts_c_temporaries(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    m = graphc.compile(softmax_of_tanh(), target="c", n_threads=1)
    temp = temporaries_bytes(m._exe)
    assert temp == m._exe.gen.temp_size == m._exe.temp.nbytes >= 64 * 8 * 4      # the C buffer it sizes
    planned = sum(memory_needs(m.program.graph, m.program).values())
    with pytest.raises(CompileError, match=rf"needs {planned + temp:,d} bytes \(.* \+ temporaries {temp:,d}\), "
                                           rf"more than the limit of {planned:,d} bytes; nothing was "
                                           rf"allocated"):
        graphc.compile(softmax_of_tanh(), target="c", n_threads=1, max_memory=planned)
    m2 = graphc.compile(softmax_of_tanh(), target="c", n_threads=1, max_memory=planned + temp)
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    e = np.exp(np.tanh(x) - np.tanh(x).max(axis=1, keepdims=True))
    np.testing.assert_allclose(m2.run({"x": x})["y"], e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_ref_has_no_temporaries():
    """ref keeps no buffer beyond the plan: its limit is the planned bytes, as before."""
    m = graphc.compile(softmax_of_tanh(), target="ref")
    assert temporaries_bytes(m._exe) == 0
    planned = sum(memory_needs(m.program.graph, m.program).values())
    graphc.compile(softmax_of_tanh(), target="ref", max_memory=planned)
    with pytest.raises(CompileError, match="nothing was allocated"):
        graphc.compile(softmax_of_tanh(), target="ref", max_memory=planned - 1)


def test_max_memory_counts_c_relaid_weights(tmp_path, monkeypatch):
    """q4_0 weights the C target re-lays out in 8-row groups are a second copy: counted, before the copy."""
    from graphc import quants
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    g = graphc.GraphBuilder("relaid")
    w = g.set_param(g.new_tensor_2d("q4_0", 256, 64, name="w"))
    x = g.set_input(g.new_tensor_2d("f32", 256, 2, name="x"))
    y = g.set_output(g.mul_mat(w, x))
    raw = quants.encode(np.random.default_rng(1).standard_normal((64, 256)).astype(np.float32),
                        graphc.types.get_type("q4_0"))
    weights = {"w": np.asarray(raw).view(np.uint8).reshape(64, -1)}
    m = graphc.compile(g.build(y), target="c", n_threads=1, weights=weights)
    planned = sum(memory_needs(m.program.graph, m.program).values())
    relaid = 64 * 256 // 32 * 18
    with pytest.raises(CompileError, match=rf"re-laid-out weights {relaid:,d}\), more than .*nothing was allocated"):
        graphc.compile(g.build(y), target="c", n_threads=1, weights=weights, max_memory=planned + relaid - 1)
    graphc.compile(g.build(y), target="c", n_threads=1, weights=weights, max_memory=planned + relaid)
