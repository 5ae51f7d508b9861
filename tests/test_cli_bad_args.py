"""Every subcommand with bad arguments: exit status 2 (usage) or 1 (error) and exactly one
`graphc: error: ...` line on stderr, never an internal error or a traceback.

The battery: missing files, directories for files, text files renamed .gguf/.ggml/.graph, empty files,
negative/zero/non-numeric numbers, unknown targets and pass names, bad --opt, bad --inputs, unwritable
output paths and the generate sampling options out of range. A new subcommand must get cases here
(test_every_subcommand_is_covered reads `graphc --help`).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.cli import main, sampling_seed

K, M, N = 8, 4, 2


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A good two-input graph, a one-input graph and their weights, and a zoo of bad files."""
    d = tmp_path_factory.mktemp("bad_args")
    g = graphc.GraphBuilder("two")
    x = g.set_input(g.new_tensor_2d("f32", K, N, name="x"))
    ids = g.set_input(g.new_tensor_1d("i32", 3, name="ids"))
    w = g.set_param(g.new_tensor_2d("f32", K, M, name="w"))
    graphc.save_graph(g.build(g.set_name(g.mul_mat(w, x), "y"), g.set_name(g.get_rows(w, ids), "rows")),
                      d / "two.graph")
    g1 = graphc.GraphBuilder("one")
    x1 = g1.set_input(g1.new_tensor_2d("f32", K, N, name="x"))
    w1 = g1.set_param(g1.new_tensor_2d("f32", K, M, name="w"))
    graphc.save_graph(g1.build(g1.set_name(g1.mul_mat(w1, x1), "y")), d / "one.graph")
    np.savez(d / "w.npz", w=np.ones((M, K), np.float32))
    np.savez(d / "x_only.npz", x=np.ones((N, K), np.float32))
    np.save(d / "x.npy", np.ones((N, K), np.float32))
    np.save(d / "x_shape.npy", np.ones((N + 1, K), np.float32))
    np.save(d / "x_int.npy", np.ones((N, K), np.int32))
    np.save(d / "ids_float.npy", np.ones(3, np.float32))
    np.save(d / "ids_big.npy", np.full(3, 1000, np.int32))
    for name in ("text.gguf", "text.ggml", "text.graph", "text.dot", "text.npz", "text.npy", "text.pth",
                 "text.safetensors"):
        (d / name).write_text("hello, this is just some text\n")
    for name in ("empty.gguf", "empty.ggml", "empty.graph", "empty.dot", "empty.npz", "empty.npy", "empty.pth"):
        (d / name).write_bytes(b"")
    (d / "short.ggml").write_bytes(b"lmgg\x01\x00\x00\x00" + b"\xff" * 40)
    (d / "short.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    (d / "dir.graph").mkdir()
    (d / "a_file").write_text("x")
    return {p.name: p for p in d.iterdir()} | {"dir": d, "missing": d / "missing.graph"}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    from graphc.models.testing import make_tiny_gguf
    p = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    make_tiny_gguf(p, arch="llama", wtype="f32")
    return p


def run_bad(capsys, argv: list, want: tuple[int, ...] = (1, 2), match: str | None = None) -> tuple[str, str]:
    """(the error line, '' when all is well or what is wrong)."""
    argv = [str(a) for a in argv]
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    line = lines[0] if lines else ""
    what = " ".join(argv)
    if "internal error" in err or "Traceback" in err:
        return line, f"{what}: {err.strip()}"
    if rc not in want:
        return line, f"{what}: exit status {rc}, want {want} (stderr {err.strip()!r})"
    if len(lines) != 1 or not line.startswith("graphc: error: "):
        return line, f"{what}: stderr is not one 'graphc: error:' line: {err.strip()!r}"
    if match is not None and not re.search(match, line):
        return line, f"{what}: {line!r} does not say {match!r}"
    return line, ""


def check(capsys, argv: list, want: tuple[int, ...] = (1, 2), match: str | None = None) -> str:
    line, problem = run_bad(capsys, argv, want, match)
    assert not problem, problem
    return line


def check_all(capsys, cases: list, want: tuple[int, ...] = (1, 2)) -> None:
    problems = [p for argv in cases for p in [run_bad(capsys, argv, want)[1]] if p]
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)


def bad_file_cases(f: dict[str, Path]) -> list[Path]:
    return [f["missing"], f["dir"], f["dir.graph"], f["text.gguf"], f["text.ggml"], f["text.graph"], f["text.dot"],
            f["text.pth"], f["text.safetensors"], f["empty.gguf"], f["empty.ggml"], f["empty.graph"], f["empty.dot"],
            f["empty.pth"], f["short.ggml"], f["short.gguf"]]


# --- every command on bad graph / model files -------------------------------------------------

@pytest.mark.parametrize("command", ["compile", "run", "inspect", "convert"])
def test_graph_commands_on_bad_files(files, capsys, command):
    out = files["dir"] / "out"
    extra = {"compile": ["-o", out], "run": ["--random-inputs"], "inspect": [], "convert": ["-o", out]}[command]
    check_all(capsys, [[command, path, *extra] for path in bad_file_cases(files)])


@pytest.mark.parametrize("command", ["generate", "bench"])
def test_model_commands_on_bad_files(files, capsys, command):
    extra = ["--prompt-ids", "1", "-n", "1", "--target", "ref"] if command == "generate" else \
        ["-p", "1", "-n", "1", "-r", "1", "--target", "ref"]
    check_all(capsys, [[command, path, *extra] for path in bad_file_cases(files) + [files["two.graph"]]])


# --- compile / run / inspect / convert -----------------------------------------------------------

def test_compile_bad_arguments(files, capsys):
    g, w, out = files["two.graph"], files["w.npz"], files["dir"] / "c_out"
    cases = [
        ["compile", g],                                                   # no -o / --emit-lib
        ["compile", g, "-o", out, "--target", "vulkan"],
        ["compile", g, "-o", out, "--weights", w, "--disable-pass", "nope"],
        ["compile", g, "-o", out, "--weights", w, "--dump-after", "nope", "--dump-dir", out],
        ["compile", g, "-o", out, "--weights", w, "--dump-after", "fuse"],
        ["compile", g, "-o", out, "--weights", w, "--no-passes", "--disable-pass", "fuse"],
        ["compile", g, "-o", out, "--weights", w, "--opt", "novalue"],
        ["compile", g, "-o", out, "--weights", w, "--opt", "=3"],
        ["compile", g, "-o", out, "--weights", w, "--opt", "1x=3"],
        ["compile", g, "-o", out, "--weights", w, "--opt", "bogus_option=3"],
        ["compile", g, "-o", out, "--weights", w, "--target", "c", "--threads", "0"],
        ["compile", g, "-o", out, "--weights", w, "--target", "c", "--threads", "-2"],
        ["compile", g, "-o", out, "--weights", w, "--target", "c", "--threads", "many"],
        ["compile", g, "-o", out, "--weights", w, "--target", "ref", "--threads", "2"],   # for target c
        ["compile", g, "-o", out, "--weights", w, "--target", "ref", "--march", "native"],
        ["compile", g, "-o", out, "--weights", w, "--target", "ref", "--emit-lib", out],
        ["compile", g, "-o", out, "--weights", w, "--cuda-arch", "sm_80"],
        ["compile", g, "-o", out, "--weights", w, "--device", "0"],
        ["compile", g, "-o", out, "--weights", w, "--quantize", "q9_9"],
        ["compile", g, "-o", out, "--weights", w, "--quantize", "q8_0", "--quantize-min-elements", "-5"],
        ["compile", g, "-o", out, "--weights", w, "--quantize", "q8_0", "--quantize-min-elements", "x"],
        ["compile", g, "-o", out, "--weights", w, "--quantize", "q8_0", "--quantize-override", "nope"],
        ["compile", g, "-o", out, "--weights", w, "--quantize", "q8_0", "--quantize-override", "w=q9_9"],
        ["compile", g, "-o", out, "--weights", w, "--quantize-get-rows"],
        ["compile", g, "-o", out],                                               # no weights
        ["compile", g, "-o", out, "--weights", files["missing"]],
        ["compile", g, "-o", out, "--weights", files["dir"]],
        ["compile", g, "-o", out, "--weights", files["text.gguf"]],
        ["compile", g, "-o", out, "--weights", files["text.npz"]],
        ["compile", g, "-o", out, "--weights", files["text.npy"]],
        ["compile", g, "-o", out, "--weights", files["text.safetensors"]],
        ["compile", g, "-o", out, "--weights", files["empty.npz"]],
        ["compile", g, "-o", out, "--weights", files["empty.gguf"]],
        ["compile", g, "-o", out, "--weights", files["short.gguf"]],
        ["compile", g, "-o", out, "--weights", files["x_only.npz"]],             # names inputs only
        ["compile", g, "-o", files["a_file"], "--weights", w],                   # -o is a file
        ["compile", g, "-o", "/proc/graphc-nope/out", "--weights", w],           # unwritable
        ["compile", g, "-o", files["dir"], "--weights", w],                      # a non-empty non-artifact dir
        ["compile", g, "-o", out, "--weights", w, "--dump-dir", files["a_file"]],
        ["compile", g, "-o", out, "--weights", w, "--quantize", "q8_0", "--save-gguf", "/proc/graphc-nope/w.gguf"],
        ["compile", g, "-o", out, "--weights", w, "--input", "x"],              # .graph records its roles
        ["compile", g, "-o", out, "--weights", w, "--era", "zz"],
        ["compile", g, "-o", out, "--weights", w, "--era", "abc"],
    ]
    check_all(capsys, cases)


def test_run_bad_arguments(files, capsys):
    g, g1, w, d = files["two.graph"], files["one.graph"], files["w.npz"], files["dir"]
    base = ["run", g, "--weights", w]
    cases = [
        base,                                                            # inputs missing
        base + ["--seed", "3"],                                          # --seed without --random-inputs
        base + ["--random-inputs", "--seed", "-1"],
        base + ["--random-inputs", "--seed", "abc"],
        base + ["--inputs", "x"],                                        # no such file, no '='
        base + ["--inputs", "x=" + str(files["missing"])],
        base + ["--inputs", "=" + str(files["x.npy"])],
        base + ["--inputs", "x=" + str(d)],
        base + ["--inputs", str(d)],
        base + ["--inputs", "x=" + str(files["text.npy"])],
        base + ["--inputs", "x=" + str(files["empty.npy"])],
        base + ["--inputs", str(files["text.npz"])],
        base + ["--inputs", str(files["empty.npz"])],
        base + ["--inputs", str(files["x.npy"])],                        # bare .npy, two inputs
        base + ["--inputs", "x=" + str(files["w.npz"])],                 # NAME= with an .npz
        base + ["--inputs", "x=" + str(files["x_shape.npy"]), "--random-inputs"],
        base + ["--inputs", "x=" + str(files["x_int.npy"]), "--random-inputs"],
        base + ["--inputs", "ids=" + str(files["ids_float.npy"]), "--random-inputs"],
        base + ["--inputs", "nope=" + str(files["x.npy"]), "--random-inputs"],
        base + ["--inputs", "w=" + str(files["x.npy"]), "--random-inputs"],   # a param, not an input
        base + ["--inputs", "y=" + str(files["x.npy"]), "--random-inputs"],   # a node
        base + ["--random-inputs", "-o", "/proc/graphc-nope/out.npz"],
        base + ["--random-inputs", "-o", str(d)],
        base + ["--random-inputs", "--target", "vulkan"],
        base + ["--random-inputs", "--opt", "novalue"],
        base + ["--random-inputs", "--disable-pass", "nope"],
        base + ["--random-inputs", "--input", "x"],
        base + ["--random-inputs", "--output-node", "y"],
        base + ["--random-inputs", "--quantize", "q9_9"],
        ["run", g1, "--weights", w, "--inputs", str(files["x.npy"]), str(files["x.npy"])],
        ["run", g1, "--weights", w, "--inputs", str(files["x_shape.npy"])],
        ["run", d, "--random-inputs"],                                    # a directory that is no artifact
    ]
    check_all(capsys, cases)


def test_inspect_and_convert_bad_arguments(files, capsys):
    g, d = files["two.graph"], files["dir"]
    cases = [
        ["inspect", g, "--svg", "/proc/graphc-nope/a.svg"],
        ["inspect", g, "--quantize", "q9_9"],
        ["inspect", g, "--quantize-override", "w=q8_0"],
        ["inspect", g, "--tokens", "0"],
        ["inspect", g, "--ctx", "-1"],
        ["inspect", g, "--era", "zz"],
        ["inspect", g, "--input", "x"],
        ["inspect", g, "--bogus"],
        ["convert", g],                                                  # -o is required
        ["convert", g, "-o", d / "copy.xyz"],
        ["convert", g, "-o", "/proc/graphc-nope/copy.graph"],
        ["convert", g, "-o", d],
        ["convert", g, "-o", d / "copy.graph", "--hints", files["missing"]],
        ["convert", g, "-o", d / "copy.graph", "--input", "x"],
        ["convert", g, "-o", d / "copy.graph", "--tokens", "-3"],
    ]
    check_all(capsys, cases)


# --- generate / bench / devices / no command ---------------------------------------------------------

def test_generate_sampling_arguments(files, capsys, tiny_gguf):
    m = tiny_gguf
    base = ["generate", m, "--prompt-ids", "1", "2", "--target", "ref"]
    for flag, value, words in (("--temperature", "-1", ">= 0"), ("--temperature", "nan", "finite"),
                               ("--temperature", "hot", "not a number"), ("--top-p", "2", r"\(0, 1\]"),
                               ("--top-p", "0", r"\(0, 1\]"), ("--top-p", "-0.5", r"\(0, 1\]"),
                               ("--top-k", "-1", "at least 0"), ("-n", "-5", "at least 0"),
                               ("--max-tokens", "ten", "not an integer"), ("--ctx", "0", "at least 1"),
                               ("--threads", "0", "at least 1"), ("--threads", "-4", "at least 1"),
                               ("--seed", "-1", "at least 0")):
        line = check(capsys, base + [flag, value], want=(2,), match=words)
        assert flag in line or "--max-tokens" in line, line
    check(capsys, ["generate", m, "--prompt-ids", "-3", "--target", "ref"], want=(2,))
    check(capsys, ["generate", m], want=(2,))                            # no prompt
    check(capsys, ["generate", m, "-p", "hi", "--prompt-ids", "1"], want=(2,))
    check(capsys, base + ["--target", "vulkan"])
    check(capsys, base + ["--device", "0"])
    check(capsys, base + ["--quantize", "q9_9"])
    check(capsys, base + ["--ctx", "100000000"])                         # more than the model's context
    check(capsys, ["generate", m, "--prompt-ids", "999999", "-n", "1", "--target", "ref"])   # outside the vocab


def test_bench_and_devices_bad_arguments(files, capsys, tiny_gguf):
    m = tiny_gguf
    for extra in (["-p", "-1"], ["-n", "-1"], ["-r", "0"], ["-t", "0", "--target", "c"], ["-p", "0", "-n", "0"],
                  ["-p", "x"], ["--target", "vulkan", "-p", "1", "-n", "0", "-r", "1"], ["-o", "xml"],
                  ["--device", "0"]):
        check(capsys, ["bench", m, *extra])
    check(capsys, ["bench"], want=(2,))
    check(capsys, ["devices", "extra"], want=(2,))
    check(capsys, ["devices", "--bogus"], want=(2,))
    check(capsys, [], want=(2,))
    check(capsys, ["frobnicate"], want=(2,))


def test_every_subcommand_is_covered():
    """The battery names every command `graphc --help` lists."""
    p = subprocess.run([sys.executable, "-m", "graphc", "--help"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ""})
    assert p.returncode == 0, p.stderr
    listed = set(re.findall(r"^    ([\w-]+)(?: |$)", p.stdout, re.M))
    covered = {"compile", "run", "inspect", "convert", "generate", "bench", "devices"}
    assert listed and listed <= covered, f"commands without bad-argument cases: {sorted(listed - covered)}"


def test_help_says_what_each_command_reads():
    def help_of(*cmd: str) -> str:
        p = subprocess.run([sys.executable, "-m", "graphc", *cmd, "--help"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": "", "COLUMNS": "200"})
        assert p.returncode == 0, p.stderr
        return " ".join(p.stdout.split())
    for cmd in ("compile", "run"):
        text = help_of(cmd)
        for word in (".graph", ".ggml", ".dot", ".gguf", ".safetensors", ".npz", "--input NAME", "--era COMMIT"):
            assert word in text, (cmd, word)
    assert "lone FILE.npy" in help_of("run")


def test_sampling_seed_is_printed_when_sampling_without_one(capsys):
    assert sampling_seed(5, 0.8) == 5 and sampling_seed(None, 0.0) is None
    assert capsys.readouterr().err == ""
    seed = sampling_seed(None, 0.7)
    err = capsys.readouterr().err.strip().splitlines()
    assert isinstance(seed, int) and seed >= 0 and len(err) == 1 and f"--seed {seed}" in err[0], err


def test_model_generate_checks_its_arguments(tiny_gguf):
    from graphc.models import load
    m = load(tiny_gguf, target="ref", n_ctx=16)
    for kw in ({"temperature": -1.0}, {"top_p": 2.0}, {"top_p": 0.0}, {"top_k": -1}, {"max_tokens": -5},
               {"temperature": float("nan")}, {"seed": -1}):
        with pytest.raises(graphc.RunError):
            m.generate([1, 2], **{"max_tokens": 1, **kw})
    with pytest.raises(graphc.RunError, match="vocabulary"):
        m.generate([1, m.n_vocab], max_tokens=1)
