"""The standalone C library artifact (graphc compile --target c --emit-lib DIR; Module.emit_lib).

Each emitted library is built with -Wall -Wextra -Werror; its example is built with `make` and run in a
subprocess whose environment has no PYTHONPATH (no Python builds or runs it). The numbers it writes are
compared with graphc.compile(..., target="c", repack=False) on the same inputs (equal bytes: the same
generated code; the library keeps the file's weight layout) and with ref (NMSE <= 1e-7 for f32 graphs; the
quantized decoder gets test_c_target's DECODER_BOUND).
Also: weights-file errors (truncated, damaged, another model's, not a pack, missing), name lookup
errors, roles, reset_state, weird tensor names (only ever escaped C string literals), and the CLI.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import graphc
from graphc.builder import GraphBuilder
from graphc.cli import main as cli_main
from graphc.errors import CompileError
from graphc.util import sha256_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from examples import tiny_decoder as td  # noqa: E402

el = importlib.import_module("graphc.targets.c.emit_lib")

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                                reason="needs make and cc")

DECODER_BOUND = 1e-3        # test_c_target: a quantized decoder vs ref's ggml mode (f16 rounding flips)
F32_BOUND = 1e-7
WEIRD_X = 'x "q" \\b */ ??= é'
WEIRD_W = 'w*/"\\ /*'
WEIRD_S = 'acc /* "st" */ ??)'
WEIRD_Y = 'out\\"*/ ?? end'
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CFLAGS", "LIB_CFLAGS")}


def nmse(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.mean((a - b) ** 2) / max(np.mean(b ** 2), 1e-30))


def make(d, *targets) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "-C", str(d), "CFLAGS=-O2 -Wall -Wextra -Werror", *targets], capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def example(d, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(d / "example"), *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=120, cwd=d)


def manifest(d) -> dict:
    return json.loads((d / "manifest.json").read_text(encoding="utf-8"))


def c_quote(name: str) -> str:
    """How example.c prints a name."""
    out = []
    for ch in name:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def fill(t: dict, j: int, s: int) -> np.ndarray:
    """example.c's deterministic input values (see its header), as numpy."""
    n = int(np.prod(t["ne"]))
    k = np.arange(n, dtype=np.uint32)
    x = (k * np.uint32(2654435761)) ^ np.uint32(((s + 1) * 40503) & 0xFFFFFFFF) \
        ^ np.uint32((((j + 1) * 97) << 16) & 0xFFFFFFFF)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0x5BD1E995)
    x ^= x >> np.uint32(15)
    if t["type"] == "f32":
        v = ((x % np.uint32(2001)).astype(np.int32) - 1000).astype(np.float32) / np.float32(1000)
    elif t["type"] == "i32":
        v = (s * n + k.astype(np.int64)).astype(np.int32)
    else:
        raise AssertionError(f"fill for {t['type']} not replicated here")
    return v.reshape(t["shape"])


# --- fixtures: one decoder library, one weird-name library -------------------------------------------

@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    """The tiny decoder (q4_0 weights, a q8_0 head, f16 KV cache state) with its weights in a GGUF file the
    graph is bound to: the library takes weights.bin or that GGUF file."""
    from graphc.quantize import save_gguf
    cfg = td.Config()
    g = td.build(cfg, 2)
    w = td.random_weights(g, seed=int(np.random.default_rng().integers(1 << 30)))
    top = tmp_path_factory.mktemp("declib")
    gb = save_gguf(top / "decoder.gguf", g, weights=w)
    mc = graphc.compile(gb, target="c", n_threads=2, repack=False)
    d = top / "lib"
    assert mc.emit_lib(d, werror=True) == str(d)
    make(d)
    return cfg, gb, top / "decoder.gguf", mc, d


def decoder_inputs(cfg, d):
    """Two steps of real decoder inputs (prefill 2 tokens, then 2 more), written as example's -i file."""
    toks = [int(t) for t in np.random.default_rng().integers(0, cfg.n_vocab, 4)]
    steps = [td.step_inputs(cfg, toks[:2], 0), td.step_inputs(cfg, toks[2:], 2)]
    order = [t["name"] for t in manifest(d)["tensors"] if "input" in t["roles"]]
    assert order == ["tokens", "pos", "kq_mask"]
    (d / "in.bin").write_bytes(b"".join(np.ascontiguousarray(s[n]).tobytes() for s in steps for n in order))
    return steps


def weird_graph():
    g = GraphBuilder("weird */ \"graph\"")
    x = g.set_input(g.new_tensor_2d("f32", 64, 3, WEIRD_X))
    w = g.set_param(g.new_tensor_2d("f32", 64, 32, WEIRD_W))
    b = g.set_param(g.new_tensor_1d("f32", 32, "bias"))
    acc = g.set_state(g.new_tensor_2d("f32", 32, 3, WEIRD_S))
    y = g.set_name(g.add(acc, g.silu(g.add(g.mul_mat(w, x), b))), WEIRD_Y)
    g.build_forward_expand(g.set_name(g.cpy(y, acc), "acc update"))
    return g.build(y)


def weird_weights(rng):
    return {WEIRD_W: (rng.standard_normal((32, 64)) / 8).astype(np.float32),
            "bias": rng.standard_normal(32).astype(np.float32)}


@pytest.fixture(scope="module")
def weird(tmp_path_factory):
    g = weird_graph()
    w = weird_weights(np.random.default_rng())
    mc = graphc.compile(g, target="c", weights=w, n_threads=1, repack=False)
    d = tmp_path_factory.mktemp("weirdlib") / "lib"
    graphc.targets.c.emit_lib(mc, d, werror=True)
    make(d)
    return g, w, mc, d


# --- the decoder: two steps through the KV cache -------------------------------------------------------

def test_decoder_library_matches_c_module_and_ref(decoder):
    cfg, g, gguf, mc, d = decoder
    steps = decoder_inputs(cfg, d)
    r = example(d, "-i", "in.bin", "-o", "out.bin", "-n", 2, "-t", 2)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("ok"), r.stderr
    got = np.fromfile(d / "out.bin", dtype=np.float32).reshape(2, 2, cfg.n_vocab)

    mc.reset_state()
    want = np.stack([mc.run(s)["logits"] for s in steps])
    assert got.tobytes() == want.tobytes()            # the same code on the same bytes

    mr = graphc.compile(g, target="ref")
    ref = np.stack([mr.run(s)["logits"] for s in steps])
    assert nmse(got, ref) <= DECODER_BOUND

    r = example(d, "-w", gguf, "-i", "in.bin", "-o", "out_g.bin", "-n", 2)   # the GGUF file, mapped directly
    assert r.returncode == 0, r.stderr
    assert (d / "out_g.bin").read_bytes() == got.tobytes()

    mc.reset_state()                                  # state matters: step 2 alone differs
    alone = mc.run(steps[1])["logits"]
    assert nmse(alone, got[1]) > 1e-3
    r = example(d, "-i", "in.bin", "-o", "out_r.bin", "-n", 2, "-r")  # -r: gcm_reset_state before step 2
    assert r.returncode == 0, r.stderr
    got_r = np.fromfile(d / "out_r.bin", dtype=np.float32).reshape(2, 2, cfg.n_vocab)
    assert got_r[0].tobytes() == got[0].tobytes() and got_r[1].tobytes() == alone.tobytes()

    r = example(d, "-n", 2)                          # deterministic inputs, as `make run`
    assert r.returncode == 0 and len(re.findall(r'^step \d output "logits" f32', r.stdout, re.M)) == 2, r.stdout


def test_weights_pack_holds_the_bytes_the_c_target_binds(decoder):
    cfg, g, gguf, mc, d = decoder
    m = manifest(d)
    raw = (d / el.WEIGHTS_NAME).read_bytes()
    assert len(raw) == m["weights_pack"]["bytes"] and raw[:8] == el.PACK_MAGIC
    leafs = {t.name: t for t in mc.graph.leafs}
    types = set()
    for e in m["weights_pack"]["entries"]:
        assert e["offset"] % 64 == 0
        t = leafs[e["name"]]
        assert raw[e["offset"]:e["offset"] + e["nbytes"]] == mc._exe.mem.buffer(t).tobytes()
        types.add(e["type"])
    assert {"q4_0", "q8_0", "f32"} <= types
    assert {e["name"] for e in m["weights_pack"]["entries"]} >= {t.name for t in mc.graph.params}
    data = np.frombuffer(raw, dtype=np.uint8)[m["weights_pack"]["data_offset"]:]
    assert f"{el.checksum(data):016x}" == m["weights_pack"]["checksum"]
    for f, info in m["files"].items():                # every file hashed in the manifest
        assert sha256_file(d / f) == info["sha256"]
    kinds = {b["kind"] for b in m["buffers"]}
    assert {"arena", "weight", "state", "io"} <= kinds
    assert all(k["kind"] in ("elementwise", "reduce", "matmul", "dequant_matmul", "other") for k in m["kernels"])
    assert m["gguf"]["file"] == str(gguf) and m["gguf"]["bytes"] == os.path.getsize(gguf)
    graw = np.fromfile(gguf, dtype=np.uint8)
    for e, off in zip(m["weights_pack"]["entries"], m["gguf"]["offsets"]):
        assert graw[off:off + e["nbytes"]].tobytes() == raw[e["offset"]:e["offset"] + e["nbytes"]]
    out = subprocess.run(["nm", "-D", "--defined-only", str(d / el.LIB_NAME)], capture_output=True, text=True)
    if out.returncode == 0:                           # only the API is exported
        syms = {ln.split()[-1] for ln in out.stdout.splitlines() if ln.split()[1:2] == ["T"]}
        assert syms and all(s.startswith("gcm_") for s in syms), syms


@pytest.mark.parametrize("damage", ["truncated", "short", "flipped", "other model", "not a pack", "missing",
                                    "gguf flipped", "gguf truncated", "gguf for a pack-only library"])
def test_bad_weights_file_is_refused(decoder, weird, damage, tmp_path):
    d = decoder[4]
    raw = bytearray((d / el.WEIGHTS_NAME).read_bytes())
    graw = bytearray(decoder[2].read_bytes())
    p = tmp_path / "w.bin"
    if damage == "truncated":
        p.write_bytes(raw[:len(raw) // 2])
        want = r"is truncated: \d+ bytes, its header says \d+"
    elif damage == "short":
        p.write_bytes(raw[:40])
        want = "too short for a graphc weights pack"
    elif damage == "flipped":
        raw[-100] ^= 0x10                             # inside the last tensor's data
        p.write_bytes(raw)
        want = "damaged: content checksum"
    elif damage == "other model":
        shutil.copyfile(weird[3] / el.WEIGHTS_NAME, p)
        want = "belongs to another model"
    elif damage == "not a pack":
        p.write_bytes(np.random.default_rng().integers(0, 256, 300, dtype=np.uint8).tobytes())
        want = r"not a graphc weights pack \(bad magic\)"
    elif damage == "gguf flipped":
        graw[manifest(d)["gguf"]["offsets"][-1] + 5] ^= 0x01
        p.write_bytes(graw)
        want = "GGUF file does not hold the tensors this library was compiled with"
    elif damage == "gguf truncated":
        p.write_bytes(graw[:-1])
        want = r"GGUF file .* is \d+ bytes, this library was compiled against one of \d+ bytes"
    elif damage == "gguf for a pack-only library":
        p.write_bytes(graw)
        d = weird[3]
        want = "is a GGUF file, but this library's weights are not all unchanged tensors"
    else:
        want = "cannot open weights file .*No such file"
    r = example(d, "-w", p, "-n", 1)
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert re.search("^example: .*" + want, r.stderr), r.stderr
    assert "Segmentation" not in r.stderr


# --- weird names, roles, lookups, reset ---------------------------------------------------------------

def test_weird_names_are_string_literals_only(weird):
    g, w, mc, d = weird
    for f in (d / "src").iterdir():
        text = f.read_text(encoding="utf-8", errors="replace")
        for name in (WEIRD_X, WEIRD_W, WEIRD_S, WEIRD_Y):
            assert name not in text, (f.name, name)   # never raw (so never code, never a comment end)
    md = (d / "src" / "model_data.h").read_text()
    assert el.c_string(WEIRD_X) in md and el.c_string(WEIRD_Y) in md
    m = manifest(d)
    roles = {t["name"]: t["roles"] for t in m["tensors"]}
    assert roles[WEIRD_X] == ["input"] and roles[WEIRD_Y] == ["output"] and roles[WEIRD_S] == ["state"]
    assert roles[WEIRD_W] == ["weight"] and m["graph_name"] == g.name


def test_weird_graph_deterministic_inputs_match_c_module_and_ref(weird):
    g, w, mc, d = weird
    m = manifest(d)
    r = example(d, "-n", 3, "-o", "out.bin")
    assert r.returncode == 0, r.stderr
    ins = [t for t in m["tensors"] if "input" in t["roles"]]
    steps = [{t["name"]: fill(t, j, s) for j, t in enumerate(ins)} for s in range(3)]
    mc.reset_state()
    want = np.stack([mc.run(s)[WEIRD_Y] for s in steps])
    got = np.fromfile(d / "out.bin", dtype=np.float32).reshape(want.shape)
    assert got.tobytes() == want.tobytes()
    mr = graphc.compile(g, target="ref", weights=w)
    ref = np.stack([mr.run(s)[WEIRD_Y] for s in steps])
    assert nmse(got, ref) <= F32_BOUND
    assert nmse(got[2], got[0]) > 1e-3               # the state accumulates
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("step ")]
    assert len(lines) == 3
    for s, ln in enumerate(lines):
        assert ln.startswith(f"step {s} output {c_quote(WEIRD_Y)} f32 [32, 3, 1, 1] first: ")
        first = [float(v) for v in ln.split("first: ")[1].split(" sum:")[0].split()]
        assert np.array_equal(np.float32(first), got[s].reshape(-1)[:8])     # %.9g round-trips f32


API_CHECK = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "graphc_model.h"

/* argv: weights, input name, output name, state name, weight name */
int main(int argc, char **argv) {
    char err[512];
    if (argc != 6) return 2;
    gcm_model *m = gcm_create(argv[1], 1, err, sizeof err);
    if (!m) { printf("create failed: %s\n", err); return 1; }
    printf("version %d %d\n", gcm_api_version(), GCM_API_VERSION);
    printf("missing %d %s\n", gcm_find(m, "no such tensor", GCM_ANY), gcm_error(m));
    printf("missing-input %d %s\n", gcm_find(m, "nope\"\\", GCM_INPUT), gcm_error(m));
    printf("wrong-role %d %s\n", gcm_find(m, argv[3], GCM_INPUT), gcm_error(m));
    int x = gcm_find(m, argv[2], GCM_INPUT), y = gcm_find(m, argv[3], GCM_OUTPUT);
    int s = gcm_find(m, argv[4], GCM_STATE), w = gcm_find(m, argv[5], GCM_WEIGHT);
    printf("found %d\n", x >= 0 && y >= 0 && s >= 0 && w >= 0 && gcm_find(m, argv[2], GCM_ANY) == x);
    gcm_tensor_info xi, yi, wi;
    gcm_tensor(m, x, &xi); gcm_tensor(m, y, &yi); gcm_tensor(m, w, &wi);
    printf("names %d %d\n", strcmp(xi.name, argv[2]) == 0, strcmp(yi.name, argv[3]) == 0);
    printf("shape %s %d %lld %lld %zu %d\n", xi.type_name, xi.n_dims, (long long)xi.ne[0], (long long)xi.ne[1],
           xi.nbytes, xi.contiguous);
    char *buf = calloc(1, wi.nbytes + xi.nbytes + 64);
    printf("set-weight %d %s\n", gcm_set(m, w, buf, wi.nbytes), gcm_error(m));
    printf("set-output %d %s\n", gcm_set(m, y, buf, yi.nbytes), gcm_error(m));
    printf("set-size %d %s\n", gcm_set(m, x, buf, xi.nbytes - 1), gcm_error(m));
    printf("data-weight %d %s\n", gcm_data(m, w) == NULL, gcm_error(m));
    printf("index %d %s\n", gcm_get(m, 12345, buf, 4), gcm_error(m));
    printf("get-weight %d\n", gcm_get(m, w, buf, wi.nbytes));
    float *xs = (float *)gcm_data(m, x);
    for (int64_t i = 0; i < xi.nelements; i++) xs[i] = (float)(i % 7) * 0.25f - 0.5f;
    float *a = malloc(yi.nbytes), *b = malloc(yi.nbytes), *c = malloc(yi.nbytes);
    gcm_run(m); gcm_get(m, y, a, yi.nbytes);
    gcm_run(m); gcm_get(m, y, b, yi.nbytes);
    printf("reset %d\n", gcm_reset_state(m));
    gcm_run(m); gcm_get(m, y, c, yi.nbytes);
    printf("state-changes %d\n", memcmp(a, b, yi.nbytes) != 0);
    printf("reset-ok %d\n", memcmp(a, c, yi.nbytes) == 0);
    fwrite(a, 1, yi.nbytes, stderr);
    free(a); free(b); free(c); free(buf);
    gcm_free(m);
    return 0;
}
"""


def test_api_lookups_roles_and_reset_state(weird, tmp_path):
    g, w, mc, d = weird
    (tmp_path / "check.c").write_text(API_CHECK)
    exe = tmp_path / "check"
    r = subprocess.run(["cc", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(d), str(tmp_path / "check.c"),
                        "-o", str(exe), "-L", str(d), "-lgraphc_model", f"-Wl,-rpath,{d}"],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe), str(d / el.WEIGHTS_NAME), WEIRD_X, WEIRD_Y, WEIRD_S, WEIRD_W],
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stdout
    out = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in r.stdout.decode("utf-8").splitlines()}
    assert out["version"] == "1 1"
    assert out["missing"].startswith("-2 no tensor named \"no such tensor\"; the tensors are: ")
    assert c_quote(WEIRD_X) in out["missing"] and c_quote(WEIRD_W) in out["missing"]
    assert out["missing-input"] == f'-2 no input named "nope\\"\\\\"; the inputs are: {c_quote(WEIRD_X)}'
    assert out["wrong-role"].startswith(f"-2 no input named {c_quote(WEIRD_Y)}")
    assert out["found"] == "1" and out["names"] == "1 1"
    assert out["shape"] == f"f32 2 64 3 {64 * 3 * 4} 1"
    assert out["set-weight"].startswith("-3 ") and "read-only weight" in out["set-weight"]
    assert out["set-output"].startswith("-3 ") and "only inputs and state" in out["set-output"]
    assert out["set-size"].startswith("-1 ") and f"{64 * 3 * 4} bytes; got {64 * 3 * 4 - 1} bytes" in out["set-size"]
    assert out["data-weight"].startswith("1 ") and "read-only" in out["data-weight"]
    assert out["index"].startswith("-1 tensor index 12345 is out of range")
    assert out["get-weight"] == "0"
    assert out["state-changes"] == "1" and out["reset-ok"] == "1" and out["reset"] == "0"
    x = ((np.arange(64 * 3) % 7).astype(np.float32) * np.float32(0.25) - np.float32(0.5)).reshape(3, 64)
    mc.reset_state()
    assert np.frombuffer(r.stderr, dtype=np.float32).tobytes() == mc.run({WEIRD_X: x})[WEIRD_Y].tobytes()


# --- errors on the Python side, and the CLI ------------------------------------------------------------

def test_emit_lib_refuses_other_targets_and_foreign_dirs(weird, tmp_path):
    g, w, mc, d = weird
    mr = graphc.compile(g, target="ref", weights=w)
    with pytest.raises(CompileError, match="target 'c'"):
        mr.emit_lib(tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(CompileError, match="not a graphc C library"):
        mc.emit_lib(tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert el.c_string('a"\\?\n*/é') == '"a\\042\\134\\077\\012*/\\303\\251"'


def test_cli_emit_lib_with_quantize(tmp_path, capsys):
    from graphc.frontends.graph_text import dump
    g = weird_graph()
    dump(g, tmp_path / "m.graph")
    w = weird_weights(np.random.default_rng())
    np.savez(tmp_path / "w.npz", **w)
    d = tmp_path / "lib"
    argv = ["compile", str(tmp_path / "m.graph"), "--target", "c", "--emit-lib", str(d), "--weights",
            str(tmp_path / "w.npz"), "--quantize", "q4_0", "--threads", "1"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    assert "wrote the C library" in capsys.readouterr().out
    m = manifest(d)
    types = {e["name"]: e["type"] for e in m["weights_pack"]["entries"]}
    assert types[WEIRD_W] == "q4_0" and types["bias"] == "f32" and m["default_threads"] == 1
    make(d)
    r = example(d, "-n", 1, "-o", "out.bin")
    assert r.returncode == 0, r.stderr
    mc = graphc.compile(tmp_path / "m.graph", target="c", weights=tmp_path / "w.npz", quantize="q4_0", n_threads=1,
                        repack=False)
    ins = [t for t in m["tensors"] if "input" in t["roles"]]
    want = mc.run({t["name"]: fill(t, j, 0) for j, t in enumerate(ins)})[WEIRD_Y]
    assert np.fromfile(d / "out.bin", dtype=np.float32).tobytes() == want.tobytes()
    for bad in (["--emit-lib", str(tmp_path / "x"), "--target", "ref"], ["--target", "c"],
                ["--target", "c", "--emit-lib", str(tmp_path / "y"), "--threads", "0"]):
        assert cli_main(["compile", str(tmp_path / "m.graph"), *bad]) == 2
        assert capsys.readouterr().err.startswith("graphc: error: ")
