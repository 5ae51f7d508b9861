"""Naming the roles a graph file does not record (issue 14, item 4).

A version-1 ggml export (2024) has no tensor flags, so every leaf is a weight; a ggml .dot dump prints
no leaf data, so every leaf is an input. graphc.load_graph(path, inputs=, outputs=, era=, strict=),
graphc.compile(path, graph_options=...) and the CLI's --input / --output-node / --era name them; the
era ambiguity is a graphc.EraWarning in the API and one `graphc: warning:` line in the CLI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.builder import use_gelu_table
from graphc.cli import main
from graphc.errors import CompileError, EraWarning, GraphcWarning, ParseError, RunError
from graphc.ir import Flag

import fixture_graph as fg
from test_fixtures import bound, nmse

V1 = "2024-05-17-7cf94a2b"          # file version 1: no flags
V1_ERA = "4871e505"                  # the era of its writer's enum tables (test_ggml_binary.BUILDS)
HINTS = Path(__file__).parent / "data" / "dot_hints"


def _ggml(name: str) -> Path:
    return fg.FIXTURES / V1 / f"{name}.ggml"


def _names(ts) -> set[str]:
    return {t.name for t in ts}


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", fg.GRAPHS)
def test_v1_export_with_named_roles_computes_what_ggml_did(name):
    f = fg.rebuild(V1, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EraWarning)          # one era named: nothing ambiguous is left
        g = graphc.load_graph(_ggml(name), inputs=f.meta["inputs"], outputs=f.meta["outputs"], era=V1_ERA)
    assert _names(g.inputs) == set(f.meta["inputs"])
    assert _names(t for t in g.nodes if t.has(Flag.OUTPUT)) == set(f.meta["outputs"])
    assert _names(g.params) == set(f.meta["weights"]) and _names(g.state) == set(f.meta["state"])
    m = graphc.compile(use_gelu_table(g), target="ref", quant_matmul="ggml")
    got = m.run(f.inputs)
    assert set(got) == set(f.meta["outputs"])
    for node, a in got.items():
        assert nmse(a, f.arrays[node], node) <= bound(V1, name, node, "ggml"), node


def test_without_roles_every_leaf_is_a_weight_and_the_error_says_how_to_name_inputs():
    m = graphc.compile(_ggml("mlp"), target="ref", graph_options={"era": V1_ERA})
    assert m.inputs == []
    with pytest.raises(RunError, match=r"unknown input 'x'.*graph_options=\{'inputs'.*load_graph\(path, inputs=\["):
        m.run({"x": np.zeros((4, 64), np.float32)})


def test_era_ambiguity_is_an_era_warning():
    with pytest.warns(EraWarning, match="fits ggml eras that read it differently") as rec:
        graphc.load_graph(_ggml("mlp"), inputs=["x"])
    w = rec[0].message
    assert isinstance(w, GraphcWarning) and isinstance(w, UserWarning)
    assert "era=<commit>" in str(w) and "--era COMMIT" in w.cli and "era=" not in w.cli
    with pytest.raises(ParseError, match="read it differently"):
        graphc.load_graph(_ggml("mlp"), strict=True)
    g = graphc.load_graph(_ggml("mlp"), era="04848e2c")        # the other reading: GELU_QUICK
    assert g.get("h").params["op"] == "gelu_quick"


def test_option_errors():
    with pytest.raises(ParseError, match="the file has no tensor named 'nope'"):
        graphc.load_graph(_ggml("mlp"), inputs=["nope"], era=V1_ERA)
    with pytest.raises(ParseError, match="inputs must be leafs; 'h' is a node"):
        graphc.load_graph(_ggml("mlp"), inputs=["h"], era=V1_ERA)
    with pytest.raises(ParseError, match="outputs must be nodes; 'x' is a leaf"):
        graphc.load_graph(_ggml("mlp"), outputs=["x"], era=V1_ERA)
    g = graphc.load_graph(_ggml("mlp"), inputs="x", outputs="h", era=V1_ERA)      # one name as a str
    assert _names(g.inputs) == {"x"} and _names(g.outputs) == {"h"}


def test_formats_that_record_roles_refuse_the_options(tmp_path):
    g = graphc.GraphBuilder("t")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    graph = g.build(g.set_name(g.scale(x, 2.0), "y"))
    graphc.save_graph(graph, tmp_path / "t.graph")
    graphc.save_graph(graph, tmp_path / "t.dot")               # graphc's own .dot records roles too
    with pytest.raises(ParseError, match=r"inputs= .*ggml graph exports \(\.ggml\).*'graph text'"):
        graphc.load_graph(tmp_path / "t.graph", inputs=["x"])
    with pytest.raises(ParseError, match=r"era= .*ggml graph exports \(\.ggml\) only"):
        graphc.load_graph(tmp_path / "t.graph", era="4871e505")
    with pytest.raises(ParseError, match="written by graphc records its inputs and outputs"):
        graphc.load_graph(tmp_path / "t.dot", outputs=["y"])
    with pytest.raises(CompileError, match="graph_options are for reading a graph file"):
        graphc.compile(graph, target="ref", graph_options={"inputs": ["x"]})


def _dump(tmp_path: Path) -> Path:
    """The 2024-05 mlp .dot dump with its hints (the activation is not printed) beside it."""
    p = tmp_path / "mlp.dot"
    shutil.copy(fg.FIXTURES / V1 / "mlp.dot", p)
    shutil.copy(HINTS / "mlp.hints", tmp_path / "mlp.dot.hints")
    return p


def test_dot_dump_inputs_make_the_other_leafs_weights(tmp_path):
    p = _dump(tmp_path)
    f = fg.rebuild(V1, "mlp")
    assert _names(graphc.load_graph(p).inputs) == {"x", "W1", "b1", "W2", "b2"}    # nothing tells weights apart
    g = graphc.load_graph(p, inputs=["x"], outputs=["y"])
    assert _names(g.inputs) == {"x"} and _names(g.params) == {"W1", "b1", "W2", "b2"} and _names(g.outputs) == {"y"}
    npz = fg.FIXTURES / V1 / "mlp.npz"
    m = graphc.compile(p, target="ref", weights=npz, graph_options={"inputs": ["x"]})
    y = m.run({"x": f.arrays["x"]})["y"]
    assert nmse(y, f.arrays["y"], "y") <= 1e-6
    with pytest.raises(CompileError, match=r"holds no weight of this graph, only tensors that are its inputs"):
        graphc.compile(p, target="ref", weights=npz)
    with pytest.raises(ParseError, match="the dump has no tensor named 'nope'"):
        graphc.load_graph(p, inputs=["nope"])
    with pytest.raises(ParseError, match="outputs must be nodes; 'x' is a leaf"):
        graphc.load_graph(p, outputs=["x"])


# --- the command line -------------------------------------------------------------------------

@pytest.fixture
def x_npy(tmp_path) -> Path:
    p = tmp_path / "x.npy"
    np.save(p, fg.rebuild(V1, "mlp").arrays["x"])
    return p


def test_cli_runs_a_v1_export_with_input_named(tmp_path, x_npy):
    """In a real process: the era notice is one `graphc: warning:` line in CLI words, no Python warning."""
    env = {**os.environ, "PYTHONPATH": ""}
    out = tmp_path / "out.npz"
    argv = [sys.executable, "-m", "graphc", "run", str(_ggml("mlp")), "--target", "ref", "--input", "x",
            "--inputs", str(x_npy), "-o", str(out)]                     # a lone .npy: the one input
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphc: warning: ") and "--era COMMIT" in lines[0], p.stderr
    assert "UserWarning" not in p.stderr and "warnings.warn" not in p.stderr
    with np.load(out) as z:
        assert nmse(z["y"], fg.rebuild(V1, "mlp").arrays["y"], "y") <= 4e-7
    p = subprocess.run(argv + ["--era", V1_ERA], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_cli_errors_say_how_to_name_inputs(capsys, x_npy):
    ggml = _ggml("mlp")
    rc, _, err = _cli(capsys, "run", ggml, "--era", V1_ERA, "--inputs", f"x={x_npy}")
    assert rc == 1 and err.count("\n") == 1 and err.startswith("graphc: error: unknown input 'x'"), err
    assert "--input x" in err and "inputs=" not in err
    rc, _, err = _cli(capsys, "run", ggml, "--era", V1_ERA, "--inputs", x_npy)
    assert rc == 2 and err.count("\n") == 1 and "--input NAME" in err, err
    rc, out, err = _cli(capsys, "run", ggml, "--era", V1_ERA, "--random-inputs", "--target", "ref")
    assert rc == 0 and "seed" not in out and "1 output(s)" in out, out          # no seed claimed for no inputs
    assert err.startswith("graphc: warning: the graph has no inputs") and "--input NAME" in err, err
    rc, out, _ = _cli(capsys, "run", ggml, "--era", V1_ERA, "--input", "x", "--output-node", "h",
                      "--random-inputs", "--seed", "4", "--target", "ref")
    assert rc == 0 and "random inputs, seed 4" in out and "  h " in out and "  y " not in out, out
    rc, _, err = _cli(capsys, "run", ggml, "--era", "ffffff", "--random-inputs")
    assert rc == 1 and "no known ggml era 'ffffff'" in err, err


def test_cli_weights_that_are_inputs_name_the_fix(capsys, tmp_path):
    p = _dump(tmp_path)
    npz = fg.FIXTURES / V1 / "mlp.npz"
    rc, _, err = _cli(capsys, "run", p, "--weights", npz, "--random-inputs", "--target", "ref")
    assert rc == 1 and err.count("\n") == 1 and "only tensors that are its inputs" in err and "--input NAME" in err
    rc, out, err = _cli(capsys, "run", p, "--weights", npz, "--input", "x", "--random-inputs", "--target", "ref")
    assert rc == 0 and "random inputs, seed" in out, err


def test_cli_option_misuse(capsys, tmp_path):
    g = graphc.GraphBuilder("t")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    graphc.save_graph(g.build(g.set_name(g.scale(x, 2.0), "y")), tmp_path / "t.graph")
    rc, _, err = _cli(capsys, "run", tmp_path / "t.graph", "--input", "x", "--random-inputs")
    assert rc == 2 and "--input is for ggml graph exports" in err and "records its inputs and outputs" in err, err
    rc, _, err = _cli(capsys, "compile", tmp_path / "t.graph", "-o", tmp_path / "a", "--target", "ref")
    assert rc == 0, err
    rc, _, err = _cli(capsys, "run", tmp_path / "a", "--era", "abc", "--random-inputs")
    assert rc == 2 and "an artifact directory" in err, err
    rc, _, err = _cli(capsys, "run", _ggml("mlp"), "--era", "not-hex", "--random-inputs")
    assert rc == 2 and "argument --era" in err, err
