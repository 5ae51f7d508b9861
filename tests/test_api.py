"""The Python API: compile, run, weights, state, save/load artifacts and their error messages."""
from __future__ import annotations

import json

import numpy as np
import pytest

import graphc
from graphc import CompileError, Flag, GraphBuilder, ParseError, RunError


def nmse(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.mean((got - want) ** 2) / max(np.mean(want ** 2), 1e-300))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


K, M, N = 24, 10, 3      # x: [K, N] ggml (numpy (N, K)); W: [K, M] ggml (numpy (M, K))


def mlp_graph(bind: dict | None = None) -> graphc.Graph:
    g = GraphBuilder("tiny mlp")
    x = g.set_input(g.new_tensor_2d("f32", K, N, name="x"))
    w = g.set_param(g.new_tensor_2d("f32", K, M, name="w"), **(bind or {}).get("w", {}))
    b = g.set_param(g.new_tensor_1d("f32", M, name="b"), **(bind or {}).get("b", {}))
    y = g.soft_max(g.add(g.mul_mat(w, x), b))
    g.set_name(y, "y")
    return g.build(y)


@pytest.fixture
def weights(rng) -> dict[str, np.ndarray]:
    return {"w": rng.standard_normal((M, K)).astype(np.float32), "b": rng.standard_normal(M).astype(np.float32)}


def expected(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    return softmax(x.astype(np.float64) @ w["w"].T.astype(np.float64) + w["b"])


def test_compile_run_matches_numpy(rng, weights):
    m = graphc.compile(mlp_graph(), target="ref", weights=weights)
    assert isinstance(m, graphc.Module)
    assert [(i.name, i.shape, i.dtype) for i in m.inputs] == [("x", (N, K), np.dtype("float32"))]
    assert [(o.name, o.shape, o.dtype) for o in m.outputs] == [("y", (N, M), np.dtype("float32"))]
    x = rng.standard_normal((N, K)).astype(np.float32)
    out = m.run({"x": x})
    assert set(out) == {"y"}
    assert out["y"].shape == (N, M) and out["y"].dtype == np.float32
    assert nmse(out["y"], expected(x, weights)) < 1e-10
    # the full 4-D shape and float64 data are accepted too (float64 is rounded to f32)
    out4 = m.run({"x": x.astype(np.float64).reshape(1, 1, N, K)})
    np.testing.assert_array_equal(out4["y"], out["y"])


@pytest.mark.parametrize("target", ["ref", "c"])
def test_torch_tensors_in_and_out(rng, weights, target):
    """Hosts targets take torch tensors as arrays and give torch tensors back with outputs="torch"."""
    import torch
    m = graphc.compile(mlp_graph(), target=target, weights=weights)
    x = rng.standard_normal((N, K)).astype(np.float32)
    out = m.run({"x": torch.from_numpy(x)}, outputs="torch")
    assert isinstance(out["y"], torch.Tensor) and tuple(out["y"].shape) == (N, M)
    np.testing.assert_array_equal(out["y"].numpy(), m.run({"x": x})["y"])


def test_compile_does_not_touch_the_users_graph(weights):
    graph = mlp_graph()
    graphc.compile(graph, weights=weights)
    assert all(t.data is None for t in graph.leafs)


def test_weights_from_leaf_data_and_npz_file(tmp_path, rng, weights):
    graph = mlp_graph()
    for t in graph.leafs:
        if t.name in weights:
            t.data = np.ascontiguousarray(weights[t.name]).reshape(-1).view(np.uint8)
    x = rng.standard_normal((N, K)).astype(np.float32)
    y1 = graphc.compile(graph).run({"x": x})["y"]
    path = tmp_path / "w.npz"
    np.savez(path, unrelated=np.zeros(3), **weights)      # extra arrays in a file are ignored
    y2 = graphc.compile(mlp_graph(), weights=str(path)).run({"x": x})["y"]
    np.testing.assert_array_equal(y1, y2)
    assert nmse(y1, expected(x, weights)) < 1e-10
    raw = {k: v.tobytes() for k, v in weights.items()}      # bytes are raw ggml data for any type
    np.testing.assert_array_equal(graphc.compile(mlp_graph(), weights=raw).run({"x": x})["y"], y1)
    with pytest.raises(CompileError, match=r"raw f32 data must be 40 bytes, got 36"):
        graphc.compile(mlp_graph(), weights={**raw, "b": raw["b"][:36]})


def test_weight_bindings_resolve_relative_to_the_graph_file(tmp_path, rng, weights):
    d = tmp_path / "model"
    d.mkdir()
    np.savez(d / "params.npz", W=weights["w"])
    np.save(d / "bias.npy", weights["b"])
    graph = mlp_graph({"w": {"file": "params.npz", "tensor": "W"}, "b": {"file": "bias.npy"}})
    graphc.save_graph(graph, d / "mlp.graph")
    x = rng.standard_normal((N, K)).astype(np.float32)
    m = graphc.compile(str(d / "mlp.graph"))
    assert nmse(m.run({"x": x})["y"], expected(x, weights)) < 1e-10


def test_weight_errors(tmp_path, weights):
    with pytest.raises(CompileError, match=r"missing weights for 2 leaf\(s\): 'w' \(10, 24\) f32, 'b'"):
        graphc.compile(mlp_graph())
    with pytest.raises(CompileError, match=r"no leaf named 'wq'.*'w', 'b'"):
        graphc.compile(mlp_graph(), weights={**weights, "wq": weights["w"]})
    with pytest.raises(CompileError, match="'x' is an input"):
        graphc.compile(mlp_graph(), weights={**weights, "x": np.zeros((N, K), np.float32)})
    with pytest.raises(CompileError, match=r"'w' has numpy shape \(10, 24\).*got \(24, 10\)"):
        graphc.compile(mlp_graph(), weights={**weights, "w": weights["w"].T})
    with pytest.raises(CompileError, match="floating-point data, got int64"):
        graphc.compile(mlp_graph(), weights={**weights, "b": np.arange(M)})
    with pytest.raises(CompileError, match="'.pt' is not supported"):
        graphc.compile(mlp_graph({"w": {"file": "w.pt"}}), weights={"b": weights["b"]})
    with pytest.raises(CompileError, match="no such file"):
        graphc.compile(mlp_graph({"w": {"file": str(tmp_path / "nope.npz")}}), weights={"b": weights["b"]})
    np.savez(tmp_path / "other.npz", v=weights["w"])
    with pytest.raises(CompileError, match=r"has no array 'w' \(it has: v\)"):
        graphc.compile(mlp_graph({"w": {"file": str(tmp_path / "other.npz")}}), weights={"b": weights["b"]})


def test_target_and_option_errors(weights):
    with pytest.raises(CompileError, match=r"unknown target 'nope' \(known targets: .*ref"):
        graphc.compile(mlp_graph(), target="nope", weights=weights)
    with pytest.raises(CompileError, match="not a quantized type"):
        graphc.compile(mlp_graph(), weights=weights, quantize="q9_9")
    assert graphc.compile(mlp_graph(), weights=weights, quantize="q4_0").quantize_plan is not None  # test_quantize.py
    with pytest.raises(CompileError, match="takes a Graph or a path"):
        graphc.compile(42)
    from graphc.targets import available_targets, get_target
    assert "ref" in available_targets()
    assert callable(get_target("ref").compile)


def test_unregistered_custom_op_is_a_compile_error():
    g = GraphBuilder()
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    graph = g.build(g.custom("no_such_fn_xyz", x))
    with pytest.raises(CompileError, match="no_such_fn_xyz.*not registered"):
        graphc.compile(graph)


def test_run_errors_are_clear(weights, rng):
    m = graphc.compile(mlp_graph(), weights=weights)
    x = rng.standard_normal((N, K)).astype(np.float32)
    with pytest.raises(RunError, match=r"unknown input 'X'; the inputs are: 'x' \(3, 24\) float32"):
        m.run({"X": x})
    with pytest.raises(RunError, match=r"unknown input 'w' \(it is a tensor of the graph but not an input\)"):
        m.run({"x": x, "w": weights["w"]})
    with pytest.raises(RunError, match=r"missing input\(s\) 'x'"):
        m.run({})
    with pytest.raises(RunError,
                       match=r"input 'x' has numpy shape \(3, 24\) \(ggml ne \[24, 3, 1, 1\]\), got \(24, 3\)"):
        m.run({"x": x.T})
    with pytest.raises(RunError, match=r"input 'x' has numpy shape .* got \(2, 3, 24\)"):
        m.run({"x": np.stack([x, x])})
    with pytest.raises(RunError, match="'x' is f32 and takes floating-point data, got int32"):
        m.run({"x": np.zeros((N, K), np.int32)})
    with pytest.raises(RunError, match="dict of input name"):
        m.run([x])


def test_int_inputs_accept_any_integer_dtype_but_not_floats(rng):
    g = GraphBuilder("rows")
    table = g.set_param(g.new_tensor_2d("f32", 8, 20, name="table"))
    ids = g.set_input(g.new_tensor_1d("i32", 5, name="ids"))
    graph = g.build(g.set_name(g.get_rows(table, ids), "rows"))
    tab = rng.standard_normal((20, 8)).astype(np.float32)
    m = graphc.compile(graph, weights={"table": tab})
    idx = rng.integers(0, 20, size=5)                       # int64: cast, the values fit
    np.testing.assert_array_equal(m.run({"ids": idx})["rows"], tab[idx])
    with pytest.raises(RunError, match="'ids' is i32 and takes integer data, got float64"):
        m.run({"ids": idx.astype(np.float64)})
    with pytest.raises(RunError, match="outside the i32 range"):
        m.run({"ids": np.full(5, 2**40)})


def accumulator_graph(initial: np.ndarray | None) -> graphc.Graph:
    """acc (state) += x each run; the output is the updated accumulator (a cpy into the state leaf)."""
    g = GraphBuilder("acc")
    acc = g.set_state(g.new_tensor_1d("f32", 6, name="acc"))
    if initial is not None:
        acc.data = np.ascontiguousarray(initial, np.float32).view(np.uint8)
    x = g.set_input(g.new_tensor_1d("f32", 6, name="x"))
    total = g.set_name(g.cpy(g.add(acc, x), acc), "total")
    return g.build(total)


@pytest.mark.parametrize("with_initial", [False, True])
def test_state_persists_between_runs_and_resets(rng, with_initial):
    init = rng.standard_normal(6).astype(np.float32) if with_initial else None
    start = init if init is not None else np.zeros(6, np.float32)
    m = graphc.compile(accumulator_graph(init))
    assert [s.name for s in m.state] == ["acc"]
    x1, x2 = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    np.testing.assert_allclose(m.run({"x": x1})["total"], start + x1, rtol=1e-6)
    np.testing.assert_allclose(m.run({"x": x2})["total"], start + x1 + x2, rtol=1e-6)
    np.testing.assert_allclose(m.read("acc"), start + x1 + x2, rtol=1e-6)
    m.reset_state()
    np.testing.assert_allclose(m.run({"x": x2})["total"], start + x2, rtol=1e-6)


def test_save_load_round_trip(tmp_path, rng, weights):
    m = graphc.compile(mlp_graph(), weights=weights)
    out_dir = tmp_path / "art"
    m.save(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["format"] == "graphc-artifact" and manifest["format_version"] == 1
    assert manifest["graphc_version"] == graphc.__version__ and manifest["target"] == "c"   # the default target
    assert set(manifest["files"]) == {"graph.graph", "weights.npz"}
    roles = {t["name"]: t["role"] for t in manifest["tensors"]}
    assert roles == {"x": "input", "w": "param", "b": "param", "y": "output"}
    m2 = graphc.load(out_dir)
    x = rng.standard_normal((N, K)).astype(np.float32)
    np.testing.assert_array_equal(m.run({"x": x})["y"], m2.run({"x": x})["y"])
    assert [(i.name, i.shape) for i in m2.inputs] == [(i.name, i.shape) for i in m.inputs]
    m2.save(out_dir)      # saving over an artifact is allowed
    np.testing.assert_array_equal(graphc.load(out_dir).run({"x": x})["y"], m.run({"x": x})["y"])


def test_save_load_keeps_file_bound_weights_and_state(tmp_path, rng, weights):
    np.savez(tmp_path / "p.npz", w=weights["w"], b=weights["b"])
    graph = mlp_graph({"w": {"file": "p.npz"}, "b": {"file": "p.npz"}})
    graphc.save_graph(graph, tmp_path / "mlp.graph")
    m = graphc.compile(str(tmp_path / "mlp.graph"))
    m.save(tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["weights_file"] is None and len(manifest["external_weights"]) == 2
    x = rng.standard_normal((N, K)).astype(np.float32)
    np.testing.assert_array_equal(graphc.load(tmp_path / "art").run({"x": x})["y"], m.run({"x": x})["y"])

    init = rng.standard_normal(6).astype(np.float32)
    acc = graphc.compile(accumulator_graph(init))
    acc.save(tmp_path / "acc")
    loaded = graphc.load(tmp_path / "acc")
    x1 = rng.standard_normal(6).astype(np.float32)
    np.testing.assert_allclose(loaded.run({"x": x1})["total"], init + x1, rtol=1e-6)


def test_damaged_artifacts_are_clear_errors(tmp_path, weights):
    art = tmp_path / "art"
    graphc.compile(mlp_graph(), weights=weights).save(art)
    with open(art / "weights.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xfe")
    with pytest.raises(ParseError, match="weights.npz: damaged or unreadable artifact: content hash does not match"):
        graphc.load(art)
    graphc.compile(mlp_graph(), weights=weights).save(art)
    (art / "graph.graph").unlink()
    with pytest.raises(ParseError, match="graph.graph is missing"):
        graphc.load(art)
    graphc.compile(mlp_graph(), weights=weights).save(art)
    manifest = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ParseError, match="format version 99 is not supported"):
        graphc.load(art)
    (art / "manifest.json").write_text("{not json")
    with pytest.raises(ParseError, match="manifest is not valid JSON"):
        graphc.load(art)
    (art / "manifest.json").unlink()
    with pytest.raises(ParseError, match="no manifest.json"):
        graphc.load(art)
    with pytest.raises(ParseError, match="no such artifact directory"):
        graphc.load(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(CompileError, match="not a graphc artifact"):
        graphc.compile(mlp_graph(), weights=weights).save(tmp_path / "junk")


def test_load_graph_detects_formats(tmp_path, weights):
    graphc.save_graph(mlp_graph(), tmp_path / "a.graph")
    (tmp_path / "a.txt").write_bytes((tmp_path / "a.graph").read_bytes())   # found by its header
    assert [t.name for t in graphc.load_graph(tmp_path / "a.txt").nodes][-1] == "y"
    (tmp_path / "x.graph").write_bytes(b"lmgg\x01\x00\x00\x00" + bytes(16))   # a ggml export, misnamed
    with pytest.raises(ParseError, match=r"x.graph at byte 12: the graph has no nodes"):   # read as a ggml export
        graphc.load_graph(tmp_path / "x.graph")
    (tmp_path / "m.bin").write_bytes(b"\x00\x01 not a graph")
    with pytest.raises(ParseError, match=r"m.bin: unknown graph format \(extension '.bin'"):
        graphc.load_graph(tmp_path / "m.bin")
    with pytest.raises(ParseError, match="no such file"):
        graphc.load_graph(tmp_path / "none.graph")
    with pytest.raises(ParseError, match="is a directory"):
        graphc.load_graph(tmp_path)
    with pytest.raises(ParseError, match="cannot write graphs with extension '.xyz'"):
        graphc.save_graph(mlp_graph(), tmp_path / "a.xyz")


def test_public_exports():
    for name in ("__version__", "GraphBuilder", "Builder", "Graph", "Tensor", "Flag", "get_type", "errors",
                 "verify", "register_custom_op", "load_graph", "save_graph", "compile", "load", "Module"):
        assert hasattr(graphc, name), name
    assert graphc.Flag is Flag and graphc.get_type("q4_0").blck == 32


# --- max_memory ------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["ref", "c"])
def test_max_memory_refuses_before_allocating(target, weights, monkeypatch, tmp_path, rng):
    """compile(max_memory=N): arena + weights + state + inputs/outputs over N is a CompileError naming each
    size, raised before the target compiles or allocates anything; at the limit it compiles."""
    from graphc.api import memory_needs
    from graphc.passes import run_pipeline
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    need = memory_needs(mlp_graph(), run_pipeline(graphc.verify(mlp_graph())))
    assert need["weights"] == (M * K + M) * 4 and need["io"] == (N * K + N * M) * 4 and need["state"] == 0
    total = sum(need.values())
    target_mod = graphc.targets.get_target(target)

    def refuse(*a, **k):
        raise AssertionError("the target was asked to compile")
    with monkeypatch.context() as mp:
        mp.setattr(target_mod, "compile", refuse)
        with pytest.raises(CompileError, match=rf"needs {total:,d} bytes \(arena {need['arena']:,d} \+ weights "
                                               rf"{need['weights']:,d} \+ state 0 \+ inputs/outputs {need['io']:,d}\), "
                                               rf"more than the limit of {total - 1:,d}"):
            graphc.compile(mlp_graph(), target=target, weights=weights, max_memory=total - 1)
    # the generated code's temporaries count too (none on ref), known once the target generated its code
    from graphc.api import temporaries_bytes
    total += temporaries_bytes(graphc.compile(mlp_graph(), target=target, weights=weights)._exe)
    with pytest.raises(CompileError, match="max_memory"):
        graphc.compile(mlp_graph(), target=target, weights=weights, max_memory=total - 1)
    m = graphc.compile(mlp_graph(), target=target, weights=weights, max_memory=total)
    x = rng.standard_normal((N, K)).astype(np.float32)
    assert nmse(m.run({"x": x})["y"], expected(x, weights)) < 1e-10
    for bad in (0, -1, 1.5, "1GB", True):
        with pytest.raises(CompileError, match="max_memory must be a positive number of bytes"):
            graphc.compile(mlp_graph(), target=target, weights=weights, max_memory=bad)
    m.save(tmp_path / "art")
    with pytest.raises(CompileError, match="max_memory"):
        graphc.load(tmp_path / "art", max_memory=total - 1)
    assert graphc.load(tmp_path / "art", max_memory=total) is not None


def test_max_memory_counts_state_unless_shared(tmp_path, monkeypatch):
    g = GraphBuilder("acc")
    acc = g.set_state(g.new_tensor_1d("f32", 1000, name="acc"))
    x = g.set_input(g.new_tensor_1d("f32", 1000, name="x"))
    graph = g.build(g.set_name(g.cpy(g.add(acc, x), acc), "total"))
    from graphc.api import memory_needs
    need = memory_needs(graph)
    assert need["state"] == 4000 and need["weights"] == 0
    with pytest.raises(CompileError, match="state 4,000"):
        graphc.compile(graph, target="ref", max_memory=sum(need.values()) - 1)
    a = graphc.compile(graph, target="ref")
    graphc.compile(graph, target="ref", share_state=a, max_memory=sum(need.values()) - 4000)
