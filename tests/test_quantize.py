"""Quantization on the fly (graphc.quantize, compile(quantize=...), the CLI flags) against gguf.quants."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import gguf.quants as gq
from gguf.constants import GGMLQuantizationType as GQT

import graphc
from graphc import CompileError, GraphBuilder
from graphc import quants as Q
from graphc.cli import main
from graphc.quantize import apply, parse_override, plan, save_gguf

LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
D, H, V, T, DV = 256, 512, 40, 4, 32       # K-quants need ne0 % 256 == 0 for the big matrices
SOURCE = {"tok_embd": "f32", "wv": "f32", "ffn_up": "f16", "ffn_down": "bf16", "w_r": "f32",
          "norm": "f32", "up_b": "f32", "w_small": "f32", "w_odd": "f32", "w_add": "f32"}
MATMUL = ["wv", "ffn_up", "ffn_down", "w_r"]           # what a default plan quantizes


def build(types: dict[str, str] | None = None) -> graphc.Graph:
    """A small transformer-ish graph touching every rule: get_rows table, norm weight, bias, a weight used
    through a view at a row offset and one through a reshape, small / odd-sized / non-mul_mat weights."""
    ty = {**SOURCE, **(types or {})}
    g = GraphBuilder("qmodel")
    w = {n: g.set_param(g.new_tensor(ty[n], _NE[n], name=n)) for n in SOURCE}
    x = g.set_input(g.new_tensor_2d("f32", D, T, name="x"))
    ids = g.set_input(g.new_tensor_1d("i32", T, name="ids"))
    h = g.add(g.add(x, g.get_rows(w["tok_embd"], ids)), w["w_add"])
    h = g.mul(g.rms_norm(h, 1e-5), w["norm"])
    up = g.silu(g.add(g.mul_mat(w["ffn_up"], h), w["up_b"]))
    y = g.set_name(g.mul_mat(w["ffn_down"], up), "y")
    wv = w["wv"]
    yv = g.set_name(g.mul_mat(g.view_2d(wv, D, DV, wv.nb[1], DV * wv.nb[1]), h), "yv")   # rows DV..2DV
    yr = g.set_name(g.mul_mat(g.reshape_3d(w["w_r"], D, 8, 2), g.reshape_3d(h, D, 2, 2)), "yr")
    ys = g.set_name(g.mul_mat(w["w_small"], g.view_2d(h, 32, T, h.nb[1], 0)), "ys")
    yo = g.set_name(g.mul_mat(w["w_odd"], g.view_2d(h, 48, T, h.nb[1], 0)), "yo")
    return g.build(y, yv, yr, ys, yo)


_NE = {"tok_embd": (D, V), "wv": (D, 2 * DV), "ffn_up": (D, H), "ffn_down": (H, D), "w_r": (D, 16),
       "norm": (D,), "up_b": (H,), "w_small": (32, 16), "w_odd": (48, 40), "w_add": (D, T)}


def make_weights(rng) -> dict[str, np.ndarray]:
    out = {}
    for n, ne in _NE.items():
        v = (rng.standard_normal(tuple(reversed(ne))) * 0.1).astype(np.float32)
        out[n] = v.astype(np.float16) if SOURCE[n] == "f16" else v
    return out


def f32_values(name: str, v: np.ndarray) -> np.ndarray:
    """What the stored weight holds, as f32 (ggml's quantize tools widen f16/bf16 first)."""
    if SOURCE[name] == "bf16":
        bits = gq.quantize(np.asarray(v, np.float32), GQT.BF16).view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(v.shape)
    return np.asarray(v, np.float32)


def inputs(rng) -> dict[str, np.ndarray]:
    return {"x": rng.standard_normal((T, D)).astype(np.float32), "ids": rng.integers(0, V, T).astype(np.int32)}


def raw_of(m: graphc.Module, name: str) -> np.ndarray:
    """The bytes the executable holds for a leaf."""
    return np.array(m._exe.mem.byte_span(m.graph.get(name)))


def nrel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


# --- byte-identical with gguf.quants through the whole compile path --------------------------------

@pytest.mark.parametrize("qt", LEGACY)
def test_compile_bytes_match_gguf(qt, rng, tmp_path):
    w = make_weights(rng)
    m = graphc.compile(build(), weights=w, quantize={"default": qt, "get_rows": True})
    changed = set(m.quantize_plan.changed)
    assert changed == set(MATMUL) | {"tok_embd"}
    m2 = graphc.load(m.save(tmp_path / "art"))     # and through an artifact
    for name in changed:
        want = gq.quantize(f32_values(name, w[name]), GQT[qt.upper()]).reshape(-1)
        for mod in (m, m2):
            t = mod.graph.get(name)
            assert t.type.name == qt and t.nb[1] == graphc.get_type(qt).row_bytes(t.ne[0])
            got = raw_of(mod, name)
            assert got.size == want.size and np.array_equal(got, want), \
                f"{qt} {name}: {np.count_nonzero(got != want)} bytes differ"
    for name in set(SOURCE) - changed:              # the rest keep type and bytes
        assert m.graph.get(name).type.name == SOURCE[name]


@pytest.mark.parametrize("qt", ["q4_K", "q6_K"])
def test_k_quants_compile(qt, rng):
    w = make_weights(rng)
    m = graphc.compile(build(), weights=w, quantize=qt)
    assert set(m.quantize_plan.changed) == set(MATMUL)
    for name in MATMUL:
        want = Q.quantize(f32_values(name, w[name]), qt).reshape(-1)
        assert np.array_equal(raw_of(m, name), want)


# --- plan rules --------------------------------------------------------------------------------------

def test_plan_rules():
    p = plan(build(), "q4_0")
    rules = {n: d.rule for n, d in p.decisions.items()}
    assert {n for n in p if p[n] == "q4_0"} == set(MATMUL)
    assert rules["norm"] == rules["up_b"] == "1-D"
    assert rules["w_small"] == "small" and rules["w_odd"] == "block" and rules["w_add"] == "other-use"
    assert rules["tok_embd"] == "get_rows"
    assert "x" not in p and "ids" not in p                       # inputs are never weights
    assert p["norm"] == "f32" and p["ffn_up"] == "q4_0"          # kept weights map to their own type
    for n in p:
        assert p.reason(n)                                       # every decision explains itself
    s = p.summary()
    assert "4 of 10 weights" in s and "1-D" in s and "small" in s
    assert all(n in p.table() for n in SOURCE)
    assert plan(build(), "q4_0", get_rows=True)["tok_embd"] == "q4_0"
    assert plan(build(), "q4_0", min_elements=0)["w_small"] == "q4_0"
    k = plan(build(), "q4_K")   # w_r, wv (ne0 256) fit; 48/32-wide ones never
    assert k["ffn_down"] == "q4_K" and k.decisions["w_odd"].rule == "block"
    assert plan(build({"ffn_up": "f16"}), "f16").decisions["ffn_up"].rule == "already"
    assert plan(build({"wv": "q8_0"}), "q4_0").decisions["wv"].rule == "not-float"


def test_overrides_win():
    ov = {"ffn_*": "q4_1", "w_s*": "q5_0", "re:^w_r$": "keep", "ffn_down": "q8_0"}
    p = plan(build(), "q4_0", overrides=ov)
    assert p["ffn_down"] == "q8_0"        # exact name beats the earlier-matching pattern
    assert p["ffn_up"] == "q4_1"          # glob
    assert p["w_small"] == "q5_0"         # override beats the small-tensor rule
    assert p["w_r"] == "f32"              # keep beats the mul_mat rule
    assert p["wv"] == "q4_0" and p["norm"] == "f32"
    assert p.decisions["w_r"].reason == "override 're:^w_r$': keep"


def test_override_errors():
    g = build()
    bad = {"nosuch": "q4_0", "w_odd": "q4_0", "w_add": "q8_0", "tok_embd": "q3_0", "re:(": "q4_0"}
    for key, typ in bad.items():
        with pytest.raises(CompileError) as e:
            plan(g, "q4_0", overrides={key: typ})
        msg = str(e.value)
        assert key in msg, msg
    with pytest.raises(CompileError, match="ne0 48"):
        plan(g, "q4_0", overrides={"w_odd": "q4_0"})
    with pytest.raises(CompileError, match="feeds add"):
        plan(g, "q4_0", overrides={"w_add": "q8_0"})
    with pytest.raises(CompileError, match="matches no weight"):
        plan(g, "q4_0", overrides={"nosuch*": "keep"})
    assert parse_override("blk.*.attn=Q4_K") == ("blk.*.attn", "q4_K")
    for item in ("nokey", "=q4_0", "w="):
        with pytest.raises(CompileError, match="NAME=TYPE"):
            parse_override(item)


@pytest.mark.parametrize("bad", ["q3_0", "i32", "f32", "q8_1", "", 4, ["q4_0"]])
def test_bad_qtype_is_a_clear_error(bad, rng):
    with pytest.raises(CompileError, match="quantize"):
        graphc.compile(build(), weights=make_weights(rng), quantize=bad)


@pytest.mark.parametrize("spec,msg", [({"overrides": {}}, "default"), ({"default": "q4_0", "typo": 1}, "typo"),
                                      ({"default": "q4_0", "get_rows": "yes"}, "get_rows"),
                                      ({"default": "q4_0", "min_elements": -1}, "min_elements"),
                                      ({"default": "q4_0", "overrides": ["w"]}, "overrides")])
def test_bad_spec(spec, msg):
    with pytest.raises(CompileError, match=msg):
        graphc.compile(build(), weights=None, quantize=spec)   # fails before weights are needed


# --- numerics: close to f32, exactly a graph built with gguf-quantized weights -----------------------

# Bounds on the relative L2 error ||q - f|| / ||f|| of each output vs the unquantized graph (0.1-scale
# normal weights, normal inputs). Both weights and, as ggml's CPU mul_mat does, activations are quantized
# (q8_0/q8_1); maxima measured over seeds: q4_x ~0.12, q5_x ~0.06, q8_0 ~0.012; bounds are ~2x those.
BOUND = {"q4_0": 0.25, "q4_1": 0.25, "q5_0": 0.12, "q5_1": 0.12, "q8_0": 0.025}


@pytest.mark.parametrize("qt", LEGACY)
def test_outputs_close_and_exact(qt, rng):
    w, inp = make_weights(rng), inputs(rng)
    full = graphc.compile(build(), weights=w).run(inp)
    m = graphc.compile(build(), weights=w, quantize=qt)
    got = m.run(inp)
    for k in got:
        assert np.all(np.isfinite(got[k]))
        assert nrel(got[k], full[k]) < BOUND[qt], (k, nrel(got[k], full[k]))
    # the same graph built with quantized weight types, weights from gguf.quants: identical outputs
    direct_w = {n: (gq.quantize(f32_values(n, v), GQT[qt.upper()]).reshape(-1) if n in MATMUL else v)
                for n, v in w.items()}
    direct = graphc.compile(build({n: qt for n in MATMUL}), weights=direct_w).run(inp)
    for k in got:
        assert np.array_equal(got[k], direct[k]), k


def test_apply_returns_new_graph_and_weights(rng):
    g, w, inp = build(), make_weights(rng), inputs(rng)
    p = plan(g, "q8_0", overrides={"w_small": "f16"})
    g2, w2 = apply(g, p, w)
    assert g.get("ffn_up").type.name == "f16" and g2.get("ffn_up").type.name == "q8_0"   # input untouched
    assert g2.get("w_small").type.name == "f16" and w2["w_small"].dtype == np.float16
    view = next(n for n in g2.nodes if n.op == "view" and n.view_src is g2.get("wv"))
    assert view.type.name == "q8_0" and view.view_offs == DV * view.nb[1] and view.params["offset"] == view.view_offs
    assert set(w2) == set(p.changed)
    want = gq.quantize(f32_values("ffn_down", w["ffn_down"]), GQT.Q8_0).reshape(-1)
    assert np.array_equal(w2["ffn_down"], want)
    a = graphc.compile(g2, weights={**w, **w2}).run(inp)          # what apply returns compiles again
    b = graphc.compile(g, weights=w, quantize=p).run(inp)          # the same plan through compile
    for k in a:
        assert np.array_equal(a[k], b[k])


def test_progress(rng, capsys):
    w = make_weights(rng)
    calls = []
    graphc.compile(build(), weights=w, quantize={"default": "q8_0", "progress": lambda *a: calls.append(a)})
    assert [c[0] for c in calls] == [1, 2, 3, 4] and all(c[1] == 4 for c in calls)
    done = [c[2] for c in calls]
    assert done == sorted(done) and done[-1] == calls[-1][3]
    graphc.compile(build(), weights=w, quantize="q8_0")
    assert capsys.readouterr().err == ""                          # small jobs are quiet
    graphc.compile(build(), weights=w, quantize={"default": "q8_0", "progress": True})
    err = capsys.readouterr().err
    assert "quantize: tensor 4/4" in err and "MB" in err


# --- saved GGUF --------------------------------------------------------------------------------------

def test_save_gguf_reloads(rng, tmp_path):
    from graphc.frontends.weights import open_weights
    w, inp = make_weights(rng), inputs(rng)
    m = graphc.compile(build(), weights=w, quantize={"default": "q4_0", "get_rows": True})
    want = m.run(inp)
    bound = save_gguf(tmp_path / "q.gguf", m.graph, graph_path=tmp_path / "q.graph")
    assert all(t.weight is not None and t.data is None for t in bound.params)
    with open_weights(str(tmp_path / "q.gguf")) as f:
        assert sorted(f.names()) == sorted(SOURCE)
        for name in m.quantize_plan.changed:
            ty, ne = f.info(name)
            assert ty.name == "q4_0" and tuple(ne) == m.graph.get(name).ne
            assert np.array_equal(np.asarray(f.raw(name)).reshape(-1), raw_of(m, name))
    m2 = graphc.compile(tmp_path / "q.graph")                     # bindings point into the GGUF
    got = m2.run(inp)
    for k in want:
        assert np.array_equal(got[k], want[k])


# --- the command line --------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path: Path, rng):
    w = make_weights(rng)
    graphc.save_graph(build(), tmp_path / "m.graph")
    np.savez(tmp_path / "w.npz", **w)
    inp = inputs(rng)
    np.savez(tmp_path / "in.npz", **inp)
    return tmp_path, w, inp


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_compile_quantize(files, capsys):
    d, w, inp = files
    rc, out, err = cli(capsys, "compile", d / "m.graph", "-o", d / "art", "--weights", d / "w.npz",
                       "--quantize", "q5_0", "--quantize-override", "ffn_down=q8_0", "--quantize-override",
                       "w_s*=q4_1", "--quantize-get-rows")
    assert rc == 0, err
    assert "quantize q5_0: 6 of 10 weights" in out and "1-D" in out, out
    m = graphc.load(d / "art")
    types = {n: m.graph.get(n).type.name for n in SOURCE}
    assert types["ffn_down"] == "q8_0" and types["w_small"] == "q4_1" and types["tok_embd"] == "q5_0"
    assert types["ffn_up"] == "q5_0" and types["norm"] == "f32"
    api = graphc.compile(d / "m.graph", weights=d / "w.npz", quantize={
        "default": "q5_0", "overrides": {"ffn_down": "q8_0", "w_s*": "q4_1"}, "get_rows": True})
    a, b = m.run(inp), api.run(inp)
    for k in a:
        assert np.array_equal(a[k], b[k])
    want = gq.quantize(f32_values("ffn_up", w["ffn_up"]), GQT.Q5_0).reshape(-1)
    assert np.array_equal(raw_of(m, "ffn_up"), want)


def test_cli_run_and_inspect(files, capsys):
    d, _, inp = files
    rc, out, err = cli(capsys, "run", d / "m.graph", "--weights", d / "w.npz", "--inputs", d / "in.npz",
                       "--quantize", "q8_0", "-o", d / "out.npz")
    assert rc == 0, err
    assert "quantize q8_0: 4 of 10" in out
    api = graphc.compile(d / "m.graph", weights=d / "w.npz", quantize="q8_0").run(inp)
    with np.load(d / "out.npz") as z:
        for k in api:
            assert np.array_equal(z[k], api[k])
    rc, out, err = cli(capsys, "inspect", d / "m.graph", "--quantize", "q4_K", "--quantize-min-elements", "0")
    assert rc == 0, err
    assert "ffn_down" in out and "f32 -> q4_K" in out and "ne0 48 is not a multiple" in out


def test_cli_save_gguf(files, capsys):
    d, _, inp = files
    rc, out, err = cli(capsys, "compile", d / "m.graph", "-o", d / "art", "--weights", d / "w.npz",
                       "--quantize", "q4_0", "--save-gguf", d / "q.gguf")
    assert rc == 0, err
    assert os.path.isfile(d / "q.gguf") and os.path.isfile(d / "q.graph") and "q.gguf" in out
    rc, out, err = cli(capsys, "compile", d / "q.graph", "-o", d / "art2")   # later: no quantizing again
    assert rc == 0, err and "quantize" not in out
    a, b = graphc.load(d / "art").run(inp), graphc.load(d / "art2").run(inp)
    for k in a:
        assert np.array_equal(a[k], b[k])


def test_cli_errors(files, capsys):
    d, _, _ = files
    base = ["compile", d / "m.graph", "-o", d / "art", "--weights", d / "w.npz"]
    for extra, needle in ((["--quantize", "q9_9"], "q9_9"),
                          (["--quantize", "q4_0", "--quantize-override", "w"], "NAME=TYPE"),
                          (["--quantize", "q4_0", "--quantize-override", "w_odd=q4_0"], "w_odd"),
                          (["--quantize", "q4_0", "--quantize-override", "zz=q4_0"], "matches no weight")):
        rc, out, err = cli(capsys, *base, *extra)
        lines = err.strip().splitlines()
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("graphc: error:") and needle in err, err
    rc, _, err = cli(capsys, *base, "--quantize-get-rows")
    assert rc == 2 and "--quantize" in err


def test_views_and_hand_made_plans(rng):
    """A view starting mid-block keeps its weight; a permute keeping dim 0 passes the weight on; a
    hand-made plan gets the same hard checks as overrides."""
    g = GraphBuilder("views")
    x = g.set_input(g.new_tensor_3d("f32", 64, 3, 2, name="x"))
    a = g.set_param(g.new_tensor_2d("f32", 128, 64, name="a"))
    b = g.set_param(g.new_tensor_3d("f32", 64, 2, 32, name="b"))
    ya = g.mul_mat(g.view_2d(a, 64, 64, a.nb[1], 16 * a.nb[0]), g.view_2d(x, 64, 3, x.nb[1], 0))  # 16 columns in
    yb = g.mul_mat(g.permute(b, 0, 2, 1, 3), x)                                                  # b: [64, 32, 2]
    graph = g.build(ya, yb)
    p = plan(graph, "q8_0")
    assert p.decisions["a"].rule == "view" and p["b"] == "q8_0"
    with pytest.raises(CompileError, match="does not start rows on q8_0 blocks"):
        plan(graph, "q8_0", overrides={"a": "q8_0"})
    with pytest.raises(CompileError, match="cannot turn 'a'"):
        apply(graph, {"a": "q8_0"})
    w = {"a": rng.standard_normal((64, 128)).astype(np.float32),
         "b": rng.standard_normal((32, 2, 64)).astype(np.float32)}
    inp = {"x": rng.standard_normal((2, 3, 64)).astype(np.float32)}
    m = graphc.compile(graph, weights=w, quantize="q8_0")
    assert m.graph.get("b").type.name == "q8_0"
    g2 = GraphBuilder("views")
    x2 = g2.set_input(g2.new_tensor_3d("f32", 64, 3, 2, name="x"))
    b2 = g2.set_param(g2.new_tensor_3d("q8_0", 64, 2, 32, name="b"))
    ref = graphc.compile(g2.build(g2.mul_mat(g2.permute(b2, 0, 2, 1, 3), x2)),
                         weights={"b": gq.quantize(w["b"], GQT.Q8_0).reshape(-1)}).run(inp)
    got = m.run(inp)
    assert np.array_equal(got[m.outputs[1].name], next(iter(ref.values())))
