"""The command line: every subcommand, and errors as one line with the right exit status."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.cli import main

K, M, N = 16, 6, 4


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def model(tmp_path: Path):
    """A small graph file, its weights file and an independent numpy version of it."""
    rng = np.random.default_rng()
    g = graphc.GraphBuilder("cli mlp")
    x = g.set_input(g.new_tensor_2d("f32", K, N, name="x"))
    ids = g.set_input(g.new_tensor_1d("i32", 3, name="ids"))
    w = g.set_param(g.new_tensor_2d("f32", K, M, name="w"))
    y = g.set_name(g.soft_max(g.mul_mat(w, x)), "y")
    rows = g.set_name(g.get_rows(w, ids), "rows")
    graphc.save_graph(g.build(y, rows), tmp_path / "m.graph")
    wv = rng.standard_normal((M, K)).astype(np.float32)
    np.savez(tmp_path / "w.npz", w=wv)

    def ref(xv, idv):
        return softmax(xv.astype(np.float64) @ wv.T.astype(np.float64)), wv[idv]
    return tmp_path, ref


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphc: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_inspect(model, capsys):
    d, _ = model
    rc, out, err = run_cli(capsys, "inspect", d / "m.graph")
    assert rc == 0, err
    assert "graph cli mlp: 3 leafs, 3 nodes" in out
    for word in ("mul_mat", "soft_max", "get_rows", "in", "param", "ops:", "bytes by role"):
        assert word in out
    by_role = {ln.split()[0]: int(ln.split()[1].replace(",", ""))
               for ln in out.split("bytes by role")[1].splitlines()[1:]}
    assert by_role["inputs"] == N * K * 4 + 3 * 4
    assert by_role["params"] == M * K * 4
    assert by_role["outputs"] == N * M * 4 + 3 * K * 4
    assert by_role["intermediates"] == N * M * 4      # mul_mat before soft_max


def test_compile_then_run_artifact(model, capsys):
    d, ref = model
    rc, out, err = run_cli(capsys, "compile", d / "m.graph", "-o", d / "art", "--weights", d / "w.npz")
    assert rc == 0, err
    assert (d / "art" / "manifest.json").is_file() and "-> " in out
    rc, out, err = run_cli(capsys, "run", d / "art", "--random-inputs", "--seed", "5", "-o", d / "o1.npz")
    assert rc == 0, err
    assert "random inputs, seed 5" in out and "y" in out and "min" in out
    rc, _, err = run_cli(capsys, "run", d / "art", "--random-inputs", "--seed", "5", "-o", d / "o2.npz")
    assert rc == 0, err
    with np.load(d / "o1.npz") as a, np.load(d / "o2.npz") as b:
        assert set(a.files) == {"y", "rows"}
        np.testing.assert_array_equal(a["y"], b["y"])
        assert a["y"].shape == (N, M)
        assert np.all((a["rows"] != 0).any(axis=1))        # random ids stayed inside the table


def test_run_graph_with_input_files(model, capsys):
    d, ref = model
    rng = np.random.default_rng()
    xv = rng.standard_normal((N, K)).astype(np.float32)
    idv = rng.integers(0, M, size=3).astype(np.int32)
    np.save(d / "x.npy", xv)
    np.savez(d / "ids.npz", ids=idv)
    rc, out, err = run_cli(capsys, "run", d / "m.graph", "--weights", d / "w.npz",
                           "--inputs", f"x={d / 'x.npy'}", d / "ids.npz", "-o", d / "out.npz")
    assert rc == 0, err
    want_y, want_rows = ref(xv, idv)
    with np.load(d / "out.npz") as z:
        np.testing.assert_allclose(z["y"], want_y, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(z["rows"], want_rows)


def test_convert(model, capsys):
    d, _ = model
    rc, out, err = run_cli(capsys, "convert", d / "m.graph", "-o", d / "copy.graph")
    assert rc == 0, err
    from graphc.frontends.graph_text import dumps
    assert dumps(graphc.load_graph(d / "copy.graph")) == dumps(graphc.load_graph(d / "m.graph"))
    rc, _, err = run_cli(capsys, "convert", d / "m.graph", "-o", d / "copy.xyz")
    assert rc == 1 and "cannot write graphs with extension '.xyz'" in one_error_line(err)


def test_errors_are_one_line(model, capsys):
    d, _ = model
    rc, _, err = run_cli(capsys, "inspect", d / "missing.graph")
    assert rc == 1 and "missing.graph: no such file" in one_error_line(err)
    bad = d / "bad.graph"
    bad.write_text('graphc 1\ngraph "b"\n%0 "a" = leaf : f99[3] input\n')
    for cmd in (["inspect", bad], ["compile", bad, "-o", d / "o"], ["run", bad, "--random-inputs"]):
        rc, _, err = run_cli(capsys, *cmd)
        line = one_error_line(err)
        assert rc == 1 and f"{bad}:3:" in line, line
    rc, _, err = run_cli(capsys, "run", d / "m.graph", "--random-inputs")        # no weights
    assert rc == 1 and "missing weights" in one_error_line(err)
    rc, _, err = run_cli(capsys, "run", d / "m.graph", "--weights", d / "w.npz",
                         "--inputs", f"x={d / 'nope.npy'}")
    assert rc == 1 and "nope.npy: no such file" in one_error_line(err)
    np.save(d / "bare.npy", np.zeros(3, np.float32))                    # an .npy without NAME=: a usage error
    rc, _, err = run_cli(capsys, "run", d / "m.graph", "--weights", d / "w.npz", "--inputs", d / "bare.npy")
    assert rc == 2 and "a bare file must be an .npz; use NAME=" in one_error_line(err)
    rc, _, err = run_cli(capsys, "compile", d / "m.graph", "-o", d / "o", "--target", "vulkan")
    assert rc == 1 and "unknown target 'vulkan'" in one_error_line(err)


def test_usage_errors_exit_2(model, capsys):
    d, _ = model
    for argv in ([], ["frobnicate"], ["compile", d / "m.graph"], ["run", d / "m.graph", "--weights", d / "w.npz"],
                 ["run", d / "m.graph", "--seed", "3"], ["run", d / "m.graph", "--opt", "novalue"]):
        rc, _, err = run_cli(capsys, *argv)
        assert rc == 2, (argv, err)
        one_error_line(err)


def test_help_and_debug_via_subprocess(model):
    d, _ = model
    env = {**os.environ, "PYTHONPATH": ""}
    for cmd in ([], ["compile"], ["run"], ["inspect"], ["convert"]):
        p = subprocess.run([sys.executable, "-m", "graphc", *cmd, "--help"], capture_output=True, text=True, env=env)
        assert p.returncode == 0 and "examples:" in p.stdout, p.stderr
    p = subprocess.run([sys.executable, "-m", "graphc", "inspect", str(d / "nope.graph")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "graphc", "--debug", "inspect", str(d / "nope.graph")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "Traceback" in p.stderr and "ParseError" in p.stderr
