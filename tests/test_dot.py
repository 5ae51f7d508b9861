"""GraphViz .dot: ggml dumps of every era (with hints), graphc's own lossless .dot, and fuzzing."""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import graphc
from graphc.builder import use_gelu_table
from graphc.builder import GraphBuilder
from graphc.cli import main
from graphc.compare import graph_diff, graphs_equal
from graphc.errors import GraphError, ParseError
from graphc.frontends import dot, dot_write
from graphc.frontends.dot_syntax import from_json, parse, to_json
from graphc.ir import Flag

import fixture_graph as fg
from test_fixtures import bound, nmse
from test_graph_text import PER_OP, random_graphs

HINTS = fg.Path(__file__).resolve().parent / "data" / "dot_hints"


def hints_for(name: str):
    p = HINTS / f"{name}.hints"
    return str(p) if p.exists() else {}       # {}: no hints (and no sidecar lookup)


def load_fixture_dot(build: str, name: str):
    return dot.load_with_report(fg.FIXTURES / build / f"{name}.dot", hints_for(name))


# --------------------------------------------------------------------------------------
# ggml's own dumps: every fixture, every build, run on ref against ggml's stored results
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,name", fg.available(), ids=lambda x: x)
def test_fixture_dump_rebuilds_the_graph_and_ggml_results(build, name):
    g, report = load_fixture_dot(build, name)
    f = fg.rebuild(build, name, with_data=False)
    # the dump + hints give ggml's graph exactly, except the leaf roles a dump cannot show
    for x, y in zip(g.tensors(), f.graph.tensors()):
        x.flags = y.flags
    assert graph_diff(g, f.graph) is None
    g, _ = load_fixture_dot(build, name)
    weights = {t.name: f.arrays[t.name] for t in g.leafs if t.flags & (Flag.PARAM | Flag.STATE)}
    inputs = {t.name: f.arrays[t.name] for t in g.leafs if t.flags & Flag.INPUT}
    assert set(weights) | set(inputs) == {t.name for t in g.leafs}
    # every node is read below: passes=False keeps each intermediate in its own buffer (no shared arena)
    m = graphc.compile(use_gelu_table(g), target="ref", weights=weights, passes=False, quant_matmul="ggml")
    outputs = m.run(inputs)
    assert set(f.meta["outputs"]) - set(outputs) <= {"bias_repeated"}   # consumed, so not taken as an output
    failures = []
    for node in f.meta["nodes"]:
        got = outputs[node] if node in outputs else m.read(node)
        err = nmse(got, f.arrays[node], node)
        if not err <= bound(build, name, node, "ggml"):
            failures.append(f"{node}: nmse {err:.3g}")
    assert not failures, failures
    # the report says what was taken by convention
    text = "\n".join(report)
    assert "inputs" in text and "outputs (nodes nothing consumes)" in text
    if name.startswith("ffn"):
        assert "unary op silu from the name 'gate_silu'" in text and "params (quantized" in text
    if name == "views":
        assert "state (a cpy/set_rows writes into it): 'kv_cache'" in text
        assert "dim 2" in text if build.startswith("2024-05") else "dim 1" in text
    if name == "attn":
        assert "axes [1, 2, 0, 3] (the only axes that fit the shapes)" in text


@pytest.mark.parametrize("name,expect", [
    ("attn", [(4, "x_rmsnorm", "eps"), (12, "k_rope", "n_dims, mode, freq_base"),
              (16, "q_rope", "n_dims, mode, freq_base"), (19, "kq_soft", "scale")]),
    ("views", [(5, "rows_view", "offset, nb"), (7, "rows_view_scaled", "s"), (8, "kv_cache_dst", "offset, nb"),
               (10, "kv_cache_read", "offset, nb"), (16, "scores_masked", "n_past")]),
    ("mlp", [(6, "h", "unary")]),
])
@pytest.mark.parametrize("build", fg.BUILDS)
def test_missing_hints_give_one_error_listing_every_node(build, name, expect):
    with pytest.raises(ParseError) as e:
        dot.load(fg.FIXTURES / build / f"{name}.dot", hints={})
    msg = str(e.value)
    assert f"{len(expect)} tensor(s) could not be resolved" in msg
    assert e.value.line == expect[0][0]
    listed = re.findall(r"^  line (\d+): node \d+ '([^']+)'", msg, re.M)
    assert listed == [(str(line), nm) for line, nm, _ in expect]
    for _, nm, what in expect:
        assert re.search(rf"'{nm}' .*(needs {what}|hint `{what}`)", msg), (nm, msg)


def test_partial_hints_leave_only_the_rest(tmp_path):
    h = tmp_path / "h.toml"
    h.write_text("[op.rms_norm]\neps = 1e-5\n[op.rope]\nn_dims = 16\nmode = 0\nfreq_base = 1e4\n")
    with pytest.raises(ParseError, match=r"1 tensor\(s\)[^\n]*\n  line 19: node 15 'kq_soft'"):
        dot.load(fg.FIXTURES / "0.15.3" / "attn.dot", hints=str(h))


def test_hint_errors_are_reported(tmp_path):
    path = fg.FIXTURES / "0.15.3" / "mlp.dot"
    with pytest.raises(ParseError, match=r"hints name tensors that are not in the dump: tensor.nope"):
        dot.load(path, hints={"tensor": {"h": {"unary": "gelu"}, "nope": {"eps": 1.0}}})
    with pytest.raises(ParseError, match=r"hint key 'eps' is not a parameter of unary"):
        dot.load(path, hints={"tensor": {"h": {"unary": "gelu", "eps": 1.0}}})
    with pytest.raises(ParseError, match=r"'silly' is not one of"):
        dot.load(path, hints={"tensor": {"h": {"unary": "silly"}}})
    with pytest.raises(ParseError, match=r"\[op.nope\]: unknown graphc op"):
        dot.load(path, hints={"op": {"nope": {}}})
    bad = tmp_path / "bad.hints"
    bad.write_text("[tensor.h]\nunary = \n")
    with pytest.raises(ParseError, match="bad TOML") as e:
        dot.load(path, hints=str(bad))
    assert e.value.line == 2
    with pytest.raises(ParseError, match="hints file not found"):
        dot.load(path, hints=str(tmp_path / "none"))


def test_sidecar_hints_roles_weights_and_cli_report(tmp_path, capsys):
    src = fg.FIXTURES / "0.15.3" / "mlp.dot"
    (tmp_path / "mlp.dot").write_bytes(src.read_bytes())
    (tmp_path / "mlp.dot.hints").write_text(
        'graph = "my mlp"\n[tensor.h]\nunary = "gelu"\n[tensor.W1]\nrole = "param"\n'
        '[tensor.W2]\nweight = {file = "m.gguf", tensor = "fc2.weight"}\n[leaf.3]\nrole = "param"\n'
        '[tensor.W1_x_b1]\noutput = true\n')
    g = dot.load(tmp_path / "mlp.dot")
    assert g.name == "my mlp"
    assert [t.name for t in g.params] == ["W2", "W1", "b1"] and g.get("W2").weight.tensor == "fc2.weight"
    assert [t.name for t in g.inputs] == ["x", "b2"]
    assert [t.name for t in g.outputs] == ["W1_x_b1", "y"]
    rc = main(["convert", str(tmp_path / "mlp.dot"), "-o", str(tmp_path / "mlp.graph")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "inferred: 'h'" not in err and "inferred: leafs taken as inputs" in err
    assert graphs_equal(graphc.load_graph(tmp_path / "mlp.graph"), g)
    rc = main(["convert", str(src), "--hints", str(HINTS / "mlp.hints"), "-o", str(tmp_path / "b.graph")])
    assert rc == 0 and "inferred: outputs (nodes nothing consumes): 'y'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# other eras and label variants, as the dump functions of those years print them
# --------------------------------------------------------------------------------------

OLD_2023 = r'''digraph G {
  newrank = true;
  rankdir = LR;
  "0x10" [ style = filled; fillcolor = white; shape = record; label="0 [4, 2] | <x>X*Y"; ]
  "0x11" [ style = filled; fillcolor = white; shape = record; label="1 [4, 2] | <x>x+y | <g>x+y"; ]
  "0x12" [ style = filled; fillcolor = white; shape = record; label="2 [4, 2] | <x>silu(x)"; ]
  "0x13" [ style = filled; fillcolor = white; shape = record; label="3 [2, 4] | <x>transpose(x)"; ]
  "0x14" [ style = filled; fillcolor = white; shape = record; label="4 [2, 4] | <x>reshape(x)"; ]
  "0x20" [ style = filled; fillcolor = pink; shape = record; label="<x>CONST 0 [8, 4]"; ]
  "0x21" [ style = filled; fillcolor = pink; shape = record; label="<x>CONST 1 [8, 2]"; ]
  "0x22" [ style = filled; fillcolor = pink; shape = record; label="<x>2.0e+00"; ]
  "0x20":x -> "0x10":x [ arrowhead = vee; style = solid; label = "x"; ]
  "0x21":x -> "0x10":x [ arrowhead = vee; style = solid; label = "y"; ]
  "0x10":x -> "0x11":x [ arrowhead = vee; style = solid; label = "x"; ]
  "0x22":x -> "0x11":x [ arrowhead = vee; style = solid; label = "y"; ]
  "0x11":x -> "0x12":x [ arrowhead = vee; style = solid; label = "x"; ]
  "0x12":x -> "0x13":x [ arrowhead = vee; style = solid; label = "x"; ]
  "0x12":x -> "0x14":x [ arrowhead = vee; style = solid; label = "x"; ]
}
'''


def test_2023_dump_without_names_types_with_x_y_edges_and_scalar_leaf():
    with pytest.raises(ParseError, match=r"3 tensor\(s\).*\n  line 9: leaf 0: the dump prints no type"):
        dot.loads(OLD_2023, "old.dot", {})
    g, report = dot.loads_with_report(OLD_2023, "old.dot", {"defaults": {"leaf_type": "f32"}}, "old")
    assert [t.name for t in g.leafs] == ["leaf_0", "leaf_1", "leaf_2"]
    assert [(t.name, t.op) for t in g.nodes] == [("node_0", "mul_mat"), ("node_1", "add1"), ("node_2", "unary"),
                                                 ("node_3", "transpose"), ("node_4", "reshape")]
    assert g.nodes[2].params == {"op": "silu", "table": False} and g.nodes[4].ne == (2, 4, 1, 1)
    text = "\n".join(report)
    assert "named leaf_<i>" in text and "add1 (add would compute the same)" in text and "gradient" in text
    assert "printing 2.0e+00 (rounded; not used as data)" in text
    # a 3-dim print with ne2 == 1 means ne3 > 1: reshape takes ne3 from the element count
    assert dot.loads(OLD_2023.replace("[2, 4] | <x>reshape", "[2, 2, 1] | <x>reshape"), None,
                     {"defaults": {"leaf_type": "f32"}}).nodes[4].ne == (2, 2, 1, 2)


ODD = r'''digraph G {
  newrank = true;
  rankdir = TB;
  "0x1" [ style = filled; fillcolor = white; shape = record; label="a (b) [c]: x-\>y (f32)|0 [3, 2, 5] | <x>x*y"; ]
  "0x2" [ style = filled; fillcolor = white; shape = record; label="(f32)|1 [3, 2, 5] | <x>Σx/n"; ]
  "0x3" [ style = filled; fillcolor = white; shape = record; label="X (f32)|2 [5, 3, 2] | <x>permute(x)"; ]
  "0x4" [ style = filled; fillcolor = white; shape = record; label="y (f32)|3 [6, 5] | <x>cont(x)"; ]
  "0x9" [ style = filled; fillcolor = pink; shape = record; label="<x>in (f32)|CONST 0 [3, 2]"; ]
  "0xa" [ style = filled; fillcolor = pink; shape = record; label="<x>ids (i32)|CONST 1 [3, 1] | (2, 0, -1)"; ]
  "0x9" -> "0x1" [ arrowhead = vee; style = solid; label = "src 0"; ]
  "0x9" -> "0x1" [ arrowhead = vee; style = solid; label = "src 1"; ]
  "0x1" -> "0x2" [ arrowhead = vee; style = solid; label = "src 0"; ]
  "0x1" -> "0x3" [ arrowhead = vee; style = solid; label = "src 0"; ]
  "0x3" -> "0x4" [ arrowhead = vee; style = solid; label = "src 0"; ]
}
'''


def test_odd_names_3d_dims_permute_cont_nd_and_printed_int_values():
    hints = {"leaf": {"0": {"ne": [3, 2, 5]}}, "tensor": {"ids": {"role": "none"}}}
    with pytest.raises(ParseError, match="mean"):   # a mean of [3,2,5] is [1,2,5]: the dump says otherwise
        dot.loads(ODD, "odd.dot", hints)
    text = ODD.replace("(f32)|1 [3, 2, 5] | <x>Σx/n", "(f32)|1 [3, 2, 5] | <x>√x")
    g, report = dot.loads_with_report(text, "odd.dot", hints)
    a = g.nodes[0]
    assert a.name == "a (b) [c]: x-\\>y" and a.op == "mul" and g.nodes[1].name == "node_1"
    assert g.nodes[2].params["axes"] == (1, 2, 0, 3)
    assert [t.name for t in g.nodes[3:]] == ["y (cont)", "y"] and g.nodes[4].op == "reshape"
    assert g.nodes[4].ne == (6, 5, 1, 1)
    assert g.get("ids").data.view(np.int32).tolist() == [2, 0, -1]
    assert "cont with a new shape" in "\n".join(report)


def test_mul_mat_out_prod_ambiguity_and_unsupported_ops():
    def dump(sym, a=(4, 4), b=(4, 4), out=(4, 4)):
        return ('digraph G {\n rankdir = TB;\n'
                f' "n" [ label="o (f32)|0 [{out[0]}, {out[1]}] | <x>{sym}"; ]\n'
                f' "a" [ label="<x>a (f32)|CONST 0 [{a[0]}, {a[1]}]"; ]\n'
                f' "b" [ label="<x>b (f32)|CONST 1 [{b[0]}, {b[1]}]"; ]\n'
                ' "a" -> "n" [ label = "src 0"; ]\n "b" -> "n" [ label = "src 1"; ]\n}\n')
    with pytest.raises(ParseError, match=r"ambiguous, candidates: mul_mat, out_prod"):
        dot.loads(dump("X*Y"))
    assert dot.loads(dump("X*Y"), None, {"tensor": {"o": {"op": "out_prod"}}}).nodes[0].op == "out_prod"
    assert dot.loads(dump("X*Y", (4, 3), (4, 2), (3, 2))).nodes[0].op == "mul_mat"
    assert dot.loads(dump("X*Y", (3, 4), (2, 4), (3, 2))).nodes[0].op == "out_prod"
    with pytest.raises(ParseError, match=r"ggml op CONV_1D has no graphc equivalent"):
        dot.loads(dump("conv_1d(x)"))
    with pytest.raises(ParseError, match=r"unknown op symbol 'wat\(x\)'"):
        dot.loads(dump("wat(x)"))


# --------------------------------------------------------------------------------------
# graphc's own .dot: lossless, and graphviz renders it
# --------------------------------------------------------------------------------------

def roundtrip(g):
    text = dot_write.dumps(g)
    g2 = dot.loads(text)
    d = graph_diff(g, g2)
    assert d is None, f"{d}\n{text[:2000]}"
    assert dot_write.dumps(g2) == text
    return text


@pytest.mark.parametrize("op", sorted(PER_OP))
def test_roundtrip_each_op(op):
    for g in PER_OP[op]:
        roundtrip(g)


@pytest.mark.parametrize("build,name", fg.available(), ids=lambda x: x)
def test_roundtrip_fixture_graphs(build, name, tmp_path):
    g = fg.rebuild(build, name).graph      # with weight data: carried as base64
    roundtrip(g)
    graphc.save_graph(g, tmp_path / "g.dot")
    assert graphs_equal(graphc.load_graph(tmp_path / "g.dot"), g)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_graphs())
def test_random_graphs_roundtrip(g):
    roundtrip(g)


def test_odd_names_and_values_roundtrip_and_render(tmp_path):
    b = GraphBuilder('graph "q" \\ {x} <y> | z\n')
    x = b.set_input(b.new_tensor_2d("f32", 4, 3, name='x "1" \\'))
    w = b.set_param(b.new_tensor_2d("f16", 4, 2, name="w|<p>{q}"), "dir\\m \"1\".gguf", "blk.0\\w")
    y = b.scale_bias(b.mul_mat(w, x), float("nan"), -0.0)
    y2 = b.clamp(b.unary(y, "gelu"), float("-inf"), 3.5)
    b.set_name(y2, "κ\ty\\")
    c = b.constant(np.arange(6, dtype=np.int32), name="\\")
    g = b.build(y2, b.get_rows(x, c))
    y.params["s"] = float(np.array([0x7FC0BEEF], np.uint32).view(np.float32)[0])   # a nan with a payload
    text = roundtrip(g)
    path = tmp_path / "odd.dot"
    path.write_text(text, encoding="utf-8")
    r = subprocess.run([graphviz(), "-Tsvg", str(path), "-o", str(tmp_path / "odd.svg")],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and b"Warning" not in r.stderr and b"Error" not in r.stderr, r.stderr
    assert parse(text).attrs["graphc_version"] == "1"


def graphviz() -> str:
    """graphviz's `dot`; `make test` installs it (a missing one is a broken setup, not a skip)."""
    path = shutil.which("dot")
    assert path, "graphviz `dot` is not installed (make test installs it with apt-get)"
    return path


def test_writer_renders_fixtures_and_fusion_clusters(tmp_path):
    g = fg.rebuild("0.15.3", "attn").graph
    g.nodes[0].fusion_group = "rms_norm+mul"     # the hook for fused groups (not in the IR yet)
    g.nodes[1].fusion_group = "rms_norm+mul"
    text = dot_write.dumps(g)
    assert 'subgraph "cluster_0" { label = "rms_norm+mul"; style = dashed; "n0"; "n1"; }' in text
    assert graphs_equal(dot.loads(text), g)
    (tmp_path / "a.dot").write_text(text, encoding="utf-8")
    r = subprocess.run([graphviz(), "-Tsvg", str(tmp_path / "a.dot")], capture_output=True, timeout=60)
    assert r.returncode == 0 and b"<svg" in r.stdout and b"cluster_0" in r.stdout, r.stderr


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats() | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=8))
def test_attribute_json_codec(v):
    text = to_json(v)
    assert '\\"' not in text and not text.endswith("\\")
    back = from_json(text)
    assert to_json(back) == text


def test_graphc_dot_tampering_is_caught():
    text = dot_write.dumps(fg.rebuild("0.15.3", "views").graph)
    for old, new, msg in [
        ('graphc_ne = "64,5,1,1"', 'graphc_ne = "64,6,1,1"', "gives"),
        ('graphc_version = "1"', 'graphc_version = "2"', "version"),
        ('label = "src 1"', 'label = "src 2"', "edge does not match"),
        ('graphc_view = "l2@384"', 'graphc_view = "l2@0"', "graphc_view"),
        ('graphc_op = "mean"', 'graphc_op = "meen"', "unknown graphc_op"),
    ]:
        assert old in text, old
        with pytest.raises(ParseError, match=msg) as e:
            dot.loads(text.replace(old, new, 1))
        assert e.value.line is not None or "edge" not in msg


# --------------------------------------------------------------------------------------
# fuzzing: only located ParseErrors (or GraphErrors naming a tensor), never a crash
# --------------------------------------------------------------------------------------

def _check(text: str, hints=None) -> None:
    try:
        g = dot.loads(text, "f.dot", hints if hints is not None else {})
    except ParseError as e:
        assert e.file == "f.dot" and (e.line is None or e.line >= 1), str(e)
        assert e.line is not None or "hints" in str(e) or "could not be resolved" in str(e) or \
            "not a ggml" in str(e) or "indices must be" in str(e) or "graphc_src have no edge" in str(e) or \
            "tensor" in str(e), str(e)
        return
    except GraphError as e:
        assert e.tensor is not None, str(e)
        return
    graphc.verify(g)


def _mutate(text: str, rng: np.random.Generator) -> str:
    lines = text.splitlines(keepends=True)
    k = rng.integers(6)
    if k == 0 and text:                                   # flip one character
        i = int(rng.integers(len(text)))
        return text[:i] + chr(int(rng.choice([0x22, 0x5C, 0x7C, 0x5B, 0x5D, 0x3B, 0x30 + rng.integers(10),
                                               0x78, 0x7B, 0x7D, 0x3E]))) + text[i + 1:]
    if k == 1 and lines:                                  # drop a line
        del lines[int(rng.integers(len(lines)))]
    elif k == 2 and lines:                                # duplicate a line
        i = int(rng.integers(len(lines)))
        lines.insert(int(rng.integers(len(lines))), lines[i])
    elif k == 3 and text:                                 # cut the file
        return text[: int(rng.integers(len(text)))]
    elif k == 4:                                          # change a number
        nums = list(re.finditer(r"[0-9]+", text))
        if nums:
            m = nums[int(rng.integers(len(nums)))]
            new = int(rng.choice([0, 1, 2, 3, 7, 64, 2**31, 2**40, 2**63, 10**30]))
            return text[:m.start()] + str(new) + text[m.end():]
    else:                                                 # swap two lines
        if len(lines) > 1:
            i, j = rng.integers(len(lines), size=2)
            lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def test_fuzz_mutated_fixture_dumps_and_graphc_dot():
    rng = np.random.default_rng()
    hints = {n: dot.load_hints(hints_for(n), None) for n in fg.GRAPHS}
    texts = [(n, (fg.FIXTURES / b / f"{n}.dot").read_text(encoding="utf-8")) for b, n in fg.available()]
    texts += [(n, dot_write.dumps(fg.rebuild("0.15.3", n).graph)) for n in ("views", "attn")]
    deadline, count = time.monotonic() + 3.0, 0
    while time.monotonic() < deadline:
        n, text = texts[int(rng.integers(len(texts)))]
        for _ in range(int(rng.integers(1, 4))):
            text = _mutate(text, rng)
        hints[n].used.clear()
        _check(text, hints[n])
        count += 1
    assert count > 50


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text):
    _check(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(['digraph', 'G', '{', '}', '"0x1"', '"0x2"', '->', '[', ']', ';', '=', 'label',
                                 '"x (f32)|0 [4, 2] | <x>x+y"', '"<x>a (f32)|CONST 0 [4, 2]"', '"src 0"', '"src 1"',
                                 ':x', 'subgraph', '"y"', '/*', '*/', '\n', ' ', '"', 'rankdir', 'TB']),
                max_size=40).map(" ".join))
def test_random_dot_token_soup(text):
    _check("digraph G { " + text)
    _check(text)


def test_doc_example_hints_parse():
    doc = (fg.Path(__file__).resolve().parents[1] / "docs" / "dot-hints.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    from graphc.frontends.dot_hints import load_hints, parse_hints_text
    h = load_hints(parse_hints_text(block), None)
    assert h.graph == "attn" and h.ops["rope"]["mode"] == "neox" and h.by_leaf[3]["role"] == "param"
    assert h.by_name["cache_view"]["nb"] == [256] and h.by_node[12]["op"] == "out_prod"
