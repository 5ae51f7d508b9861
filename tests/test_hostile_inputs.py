"""Hostile inputs: tensor names that try to break out of generated code, and malformed files of every
frontend (the gaps the per-parser fuzzers of test_weights, test_graph_text, test_ggml_binary and test_dot
leave: .npy/.npz, safetensors and .graph cut at every length, counts and dims past int64, cycles).

Names are free text (ggml's 63 bytes): they reach generated code only inside sanitised comments (C and
OpenCL `/* */` without `*`, `/`, `\\` or unprintables, Triton `#` without `\\` or unprintables), never as
code, strings or identifiers. Every name below goes through the builder, the .graph text round trip, the
.ggml export reader and GGUF weight binding, compiles on every target, and must give the results the
same graph gives under plain names. A malformed file is one graphc error (ParseError, GraphError or
CompileError), never another exception, a hang or a large allocation.
"""
from __future__ import annotations

import io
import os
import re
import struct
import tokenize
import tracemalloc
import zipfile

import numpy as np
import pytest

import graphc
from graphc.errors import CompileError, GraphcError, GraphError, ParseError
from graphc.frontends.gguf import write_gguf

MARK = "ZQ"          # in every payload name: found anywhere in generated code but a comment is a failure

PAYLOADS = [
    'ZQ"quote"', "ZQ'single'", "ZQ back\\slash\\", "ZQ */ int evil = 1; /*", "/* ZQ open comment",
    "ZQ // line comment", "ZQ new\nline", "ZQ cr\r\nlf", "ZQ tab\there", "ZQ \x0b\x0c\x1b[31m", "ZQ \x7f\x85",
    "ZQ\u2028\u2029", "ZQ #include <stdlib.h>", 'ZQ """ triple', "ZQ ''' triple", "ZQ {{ x }}", "ZQ }} {%",
    "ZQ %s%n%x%%", "ZQ $ORIGIN ${HOME}", "ZQ ??/ ??= ??'", "ZQ\\u0041\\x41\\0", "ZQ );system(\"id\");(",
    "ZQ __kernel void k()", "ZQ # -*- coding: latin-1 -*-", "ZQ \U0001F999 é ü 中文",
    "ZQ" + "n" * 61,                                   # 63 bytes: the longest name ggml keeps
    "ZQ" + "é" * 30 + "x",                             # 63 bytes of UTF-8 in 33 characters
    "ZQ@:;,.<>[]()!&|^~`-+=?",
]
KEYWORDS = ["int", "return", "void", "static", "const", "__kernel", "__global", "kernel", "def", "import",
            "lambda", "None", "pass", "tl", "triton", "self", "T", "ctx", "ith", "nth", "main", "x", "y"]

N_INPUTS, N_PARAMS = 4, 4


def hostile_graph(names: list[str], graph_name: str = 'ZQ graph */ "name" \n') -> tuple[graphc.Graph, dict, dict]:
    """A chain of elementwise ops and a matmul over inputs, params and nodes named by `names` in turn (every
    third node an output); the feeds and weights it takes."""
    g = graphc.GraphBuilder(graph_name)
    it = iter(names)
    rng = np.random.default_rng(5)
    xs = [g.set_input(g.new_tensor_2d("f32", 16, 3, name=next(it))) for _ in range(N_INPUTS)]
    ws = [g.set_param(g.new_tensor_2d("f32", 16, 3, name=next(it))) for _ in range(N_PARAMS - 1)]
    mat = g.set_param(g.new_tensor_2d("f32", 16, 16, name=next(it)))
    feeds = {x.name: rng.uniform(-1, 1, (3, 16)).astype(np.float32) for x in xs}
    weights = {w.name: rng.uniform(-1, 1, (3, 16)).astype(np.float32) for w in ws}
    weights[mat.name] = rng.uniform(-0.3, 0.3, (16, 16)).astype(np.float32)
    t = xs[0]
    for i, name in enumerate(it):
        k = i % 6
        if k == 0:
            t = g.add(t, xs[(i // 6) % N_INPUTS])
        elif k == 1:
            t = g.mul(t, ws[(i // 6) % len(ws)])
        elif k == 2:
            t = g.tanh(t)
        elif k == 3:
            t = g.mul_mat(mat, t)
        elif k == 4:
            t = g.scale(g.sub(t, xs[(i // 6 + 1) % N_INPUTS]), 0.5)
        else:
            t = g.neg(t)
        g.set_name(t, name)
        if i % 3 == 2:
            g.set_output(t)
    graph = g.build(t)
    leafs = {t.name for t in graph.leafs}
    return graph, {k: v for k, v in feeds.items() if k in leafs}, {k: v for k, v in weights.items() if k in leafs}


def _plain(names: list[str]) -> list[str]:
    return [f"t{i}" for i in range(len(names))]


def _outputs_by_position(graph: graphc.Graph) -> list[str]:
    return [t.name for t in graph.nodes + graph.leafs if t.has(graphc.Flag.OUTPUT)]


def _sources(m: graphc.Module) -> list[str]:
    gen = getattr(m._exe, "gen", None)
    return [gen.source] if gen is not None and gen.source else []


def _strip_c_comments(src: str) -> str:
    """C / OpenCL source without its one-line comments (a comment a name broke onto two lines stays)."""
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*[^\n]*?\*/", "", src))


def check_source(target: str, src: str, names: list[str]) -> None:
    """Payload names occur only in comments of one line; no name is present verbatim where it holds a
    character the target's comments may not hold."""
    if target == "triton":
        toks = list(tokenize.generate_tokens(io.StringIO(src).readline))     # also: it is valid Python
        bad = [t for t in toks if MARK in t.string and t.type != tokenize.COMMENT]
        assert not bad, bad[:3]
        unsafe = [n for n in names if any(not c.isprintable() or c == "\\" for c in n)]
    else:
        assert MARK not in _strip_c_comments(src), \
            [ln for ln in _strip_c_comments(src).splitlines() if MARK in ln][:3]
        unsafe = [n for n in names if any(not c.isprintable() or c in "*/\\" for c in n)]
    for n in unsafe:
        assert n not in src, n


TARGETS = ["ref", "c", "opencl", "triton"]


def _target_opts(target: str) -> dict:
    if target == "c":
        return {"n_threads": 2, "extra_cflags": ["-O1"]}
    if target == "opencl":
        pytest.importorskip("pyopencl")
    if target == "triton":
        pytest.importorskip("triton")
    return {}


def _compile_and_check(target: str, graph: graphc.Graph, feeds: dict, weights, want: list[np.ndarray],
                       names: list[str], **kw) -> None:
    m = graphc.compile(graph, target=target, weights=weights, **kw, **_target_opts(target))
    got = m.run(feeds)
    outs = _outputs_by_position(m.graph)
    assert len(outs) == len(want)
    for name, w in zip(outs, want):
        np.testing.assert_allclose(got[name], w, rtol=2e-4, atol=2e-5, err_msg=repr(name))
    for src in _sources(m):
        check_source(target, src, names)
    if target != "ref":
        assert _sources(m), f"target {target} shows no generated source"


@pytest.fixture(scope="module")
def plain_results():
    """The outputs under plain names, in output order: what every hostile run must give."""
    out = {}
    for key, names in (("payloads", PAYLOADS), ("keywords", KEYWORDS)):
        graph, feeds, weights = hostile_graph(_plain(names), "plain")
        m = graphc.compile(graph, target="ref", weights=weights)
        got = m.run(feeds)
        out[key] = [got[n] for n in _outputs_by_position(m.graph)]
    return out


def _rename(d: dict, names: list[str], plain: list[str]) -> dict:
    """A feeds/weights dict of the hostile graph, keyed by the plain graph's names."""
    pos = {n: i for i, n in enumerate(names)}
    return {plain[pos[k]] if k in pos else k: v for k, v in d.items()}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("key", ["payloads", "keywords"])
def test_hostile_names_built_in_memory(target, key, plain_results, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    names = PAYLOADS if key == "payloads" else KEYWORDS
    graph, feeds, weights = hostile_graph(names)
    assert [t.name for t in graph.leafs + graph.nodes if t.name in names]    # the names survived the builder
    _compile_and_check(target, graph, feeds, weights, plain_results[key], names)


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_names_through_the_graph_text_format(target, plain_results, tmp_path, monkeypatch):
    """.graph text round trip (names quoted and escaped), weights bound by name from a GGUF file whose tensor
    names are the same hostile names."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    graph, feeds, weights = hostile_graph(PAYLOADS)
    path = tmp_path / "hostile.graph"
    graphc.save_graph(graph, path)
    back = graphc.load_graph(path)
    assert [t.name for t in back.leafs + back.nodes] == [t.name for t in graph.leafs + graph.nodes]
    assert back.name == graph.name
    gguf = tmp_path / "hostile.gguf"
    write_gguf(gguf, {"general.name": graph.name},
               [(n, "f32", a.shape[::-1], a.reshape(-1).view(np.uint8)) for n, a in weights.items()])
    _compile_and_check(target, str(path), feeds, str(gguf), plain_results["payloads"], PAYLOADS)


def test_hostile_names_bound_by_weight_references(tmp_path, plain_results, monkeypatch):
    """weight("file.gguf", NAME) in a .graph file: the reference's tensor name is free text too."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    graph, feeds, weights = hostile_graph(PAYLOADS)
    gguf = tmp_path / "w.gguf"
    write_gguf(gguf, {}, [(n, "f32", a.shape[::-1], a.reshape(-1).view(np.uint8)) for n, a in weights.items()])
    for t in graph.leafs:
        if t.name in weights:
            t.weight = graphc.ir.WeightRef("w.gguf", t.name)
    graphc.save_graph(graph, tmp_path / "ref.graph")
    text = (tmp_path / "ref.graph").read_text(encoding="utf-8")
    assert "weight(" in text
    for target in ("ref", "c"):
        _compile_and_check(target, str(tmp_path / "ref.graph"), feeds, None, plain_results["payloads"], PAYLOADS)


def test_names_that_are_not_text_are_graph_errors(tmp_path):
    """NUL, lone surrogates (bytes that are not UTF-8, as surrogateescape reads them) and names past 63
    bytes: one GraphError from the builder, the verifier and the text format; a GGUF tensor with such a
    name is read (surrogateescape) and simply binds to nothing."""
    for bad in ("ZQ\x00nul", "ZQ\udcff\udcfe", "n" * 64, "é" * 32):
        g = graphc.GraphBuilder("bad")
        x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
        y = g.set_name(g.neg(x), "y")
        graph = g.build(y)
        graph.get("x").name = bad
        with pytest.raises(GraphError, match="name must be text"):
            graphc.verify(graph)
        with pytest.raises(GraphcError):          # refused when written, else when read back
            graphc.save_graph(graph, tmp_path / "bad.graph")
            graphc.load_graph(tmp_path / "bad.graph")
    with pytest.raises(GraphError, match="not text"):
        graphc.GraphBuilder("s").new_tensor_1d("f32", 4, name="x\udcff")
    with pytest.raises(GraphError, match="must be a str"):
        graphc.GraphBuilder("s").new_tensor_1d("f32", 4, name=b"x")
    (tmp_path / "s.graph").write_text('graph "s"\nx = input f32 [4] name="x\\ud800"\n', encoding="utf-8")
    with pytest.raises(GraphcError):
        graphc.load_graph(tmp_path / "s.graph")
    # a GGUF file with a non-UTF-8 tensor name next to a good one: the good one binds
    gguf = tmp_path / "s.gguf"
    one = np.ones(4, np.float32).view(np.uint8)
    write_gguf(gguf, {}, [("ZQ\udcff\udcfe", "f32", (4,), one), ("w", "f32", (4,), one)])
    g = graphc.GraphBuilder("s")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    w = g.set_param(g.new_tensor_1d("f32", 4, name="w"))
    m = graphc.compile(g.build(g.set_name(g.add(x, w), "y")), target="ref", weights=str(gguf))
    np.testing.assert_array_equal(m.run({"x": np.zeros(4, np.float32)})["y"], np.ones(4, np.float32))


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_names_from_a_ggml_export(target, tmp_path, monkeypatch):
    """A real ggml export (fixture mlp.ggml) with every record's name field rewritten: names read from a
    binary file compile on every target, with the same results as the original names."""
    import fixture_graph as fg
    from test_ggml_binary import _bytes, _record_offsets
    from graphc.frontends.ggml_enums import ERAS
    from graphc.frontends import ggml_binary as gb
    build = "2024-10-09-2327bda7"
    if not (fg.FIXTURES / build / "mlp.ggml").exists():
        pytest.skip("ggml fixtures not present")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    data = bytearray(_bytes(build, "mlp"))
    _, info = gb.load_with_info(fg.FIXTURES / build / "mlp.ggml")
    layout = next(e for e in ERAS if e.name == info.era).layout
    offs = _record_offsets(build, "mlp")
    records = [offs[2 * i] for i in range(info.n_leafs)] + [offs[2 * info.n_leafs + j] for j in range(info.n_nodes)]
    names = PAYLOADS[:len(records)]
    for rec, name in zip(records, names):
        at = rec + 8 + 4 * layout.flags + 64
        raw = name.encode("utf-8")
        data[at:at + 64] = raw + b"\0" * (64 - len(raw))
    path = tmp_path / "hostile.ggml"
    path.write_bytes(bytes(data))
    orig = graphc.load_graph(fg.FIXTURES / build / "mlp.ggml")
    hostile = graphc.load_graph(path)
    assert [t.name for t in hostile.leafs + hostile.nodes] == names
    rng = np.random.default_rng(1)
    feeds = {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in orig.inputs}
    want_m = graphc.compile(orig, target="ref")
    want = want_m.run(feeds)
    pos = {t.name: i for i, t in enumerate(orig.leafs + orig.nodes)}
    hfeeds = {names[pos[k]]: v for k, v in feeds.items()}
    m = graphc.compile(str(path), target=target, **_target_opts(target))
    got = m.run(hfeeds)
    for k, v in want.items():
        np.testing.assert_allclose(got[names[pos[k]]], v, rtol=2e-4, atol=2e-5)
    for src in _sources(m):
        check_source(target, src, names)
    # a name field that is not UTF-8: one ParseError naming the record
    bad = bytearray(data)
    at = records[0] + 8 + 4 * layout.flags + 64
    bad[at:at + 4] = b"\xff\xfe\0\0"
    path.write_bytes(bytes(bad))
    with pytest.raises(ParseError, match="name is not UTF-8"):
        graphc.load_graph(path)


@pytest.mark.parametrize("target", TARGETS)
def test_a_custom_op_named_like_code(target, tmp_path, monkeypatch):
    """A custom op's name is data: registered, it compiles (elementwise, by its formula) with the name in
    no generated code but comments; unregistered, it is one CompileError however it is spelled."""
    from graphc.custom import register_custom_op, unregister_custom_op
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    name = 'ZQ */ system("id"); /*\n'
    g = graphc.GraphBuilder("c")
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    graph = g.build(g.set_name(g.custom(name, x), "y"))
    with pytest.raises(CompileError, match="custom op .* is not registered"):
        graphc.compile(graph, target=target, **_target_opts(target))
    register_custom_op(name, lambda a: a * 3.0, kernels={"expr": lambda a: a * 3.0}, elementwise=True)
    try:
        m = graphc.compile(graph, target=target, **_target_opts(target))
        xv = np.arange(8, dtype=np.float32)
        np.testing.assert_allclose(m.run({"x": xv})["y"], xv * 3.0)
        for src in _sources(m):
            check_source(target, src, [name])
    finally:
        unregister_custom_op(name)


# --- malformed files: the gaps the per-parser fuzzers leave -------------------------------------------

class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _one_graphc_error(fn, *args, what: str = "", limit: int = 64 << 20, seconds: float = 30) -> "GraphcError | None":
    """Call fn: it returns, or raises a GraphcError; anything else fails, and so does taking longer than
    `seconds` (a hang). Peak Python allocations stay under `limit` bytes (huge counts never become huge
    buffers)."""
    import signal
    tracemalloc.start()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        fn(*args)
        err = None
    except _Hang:
        raise AssertionError(f"{what}: no answer in {seconds} s") from None
    except GraphcError as e:
        err = e
    except Exception as e:                                   # noqa: BLE001 - the point of the test
        raise AssertionError(f"{what}: {type(e).__name__}: {e}") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"{what}: {peak} bytes allocated"
    return err


def _open_weights(path):
    from graphc.frontends.weights import open_weights
    with open_weights(path) as wf:
        for name in wf.names():
            wf.info(wf.resolve(name))
            wf.raw(wf.resolve(name))


def test_every_truncation_of_small_files(tmp_path):
    """Each file kind cut at every length: a graphc error or (for lengths a format cannot tell from a
    whole file) a valid result; never another exception."""
    from graphc.frontends.safetensors import write_safetensors
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "z.npz", a=a, b=a[0])
    np.savez_compressed(tmp_path / "c.npz", a=a)
    write_safetensors(tmp_path / "s.safetensors", {"a": ("F32", (2, 3), a.reshape(-1))}, {"k": "v"})
    write_gguf(tmp_path / "g.gguf", {"s": "x"}, [("a", "f32", (3, 2), a.reshape(-1).view(np.uint8))])
    g = graphc.GraphBuilder("t")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    w = g.set_param(g.new_tensor_1d("f32", 4, name="w"))
    graph = g.build(g.set_name(g.add(x, w), "y"))
    graph.get("w").data = np.ones(4, np.float32).view(np.uint8)
    graphc.save_graph(graph, tmp_path / "t.graph")
    graphc.save_graph(graph, tmp_path / "t.dot")
    cut = tmp_path / "cut"
    counts = {}
    for name, reader in (("a.npy", _open_weights), ("z.npz", _open_weights), ("c.npz", _open_weights),
                         ("s.safetensors", _open_weights), ("g.gguf", _open_weights),
                         ("t.graph", graphc.load_graph), ("t.dot", graphc.load_graph)):
        data = (tmp_path / name).read_bytes()
        target = cut.with_suffix(os.path.splitext(name)[1])
        errors = 0
        for n in range(len(data)):
            target.write_bytes(data[:n])
            errors += _one_graphc_error(reader, str(target), what=f"{name} cut at {n}") is not None
        counts[name] = (errors, len(data))
        assert errors >= len(data) // 2, (name, errors, len(data))     # most prefixes are refused
    print("truncations (refused, lengths):", counts)
    assert counts


def _npy_header(descr: str, shape: str, fortran: bool = False, version: int = 1) -> bytes:
    d = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}".encode("latin-1")
    pad = (-(10 + len(d) + 1)) % 64
    d += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H", len(d)) + d


NPY_BAD = {
    "2^40 elements": _npy_header("<f4", "(1099511627776,)") + b"\0" * 64,
    "dims overflow int64": _npy_header("<f4", "(4294967296, 4294967296, 4294967296)") + b"\0" * 64,
    "negative dim": _npy_header("<f4", "(-4,)") + b"\0" * 16,
    "object dtype": _npy_header("|O", "(2,)") + b"\0" * 16,
    "not a dict": b"\x93NUMPY\x01\x00" + struct.pack("<H", 6) + b"[1,2]\n",
    "code in the header": _npy_header("<f4", "(__import__('os').getpid(),)") + b"\0" * 16,
    "huge header length": b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{",
    "unknown version": b"\x93NUMPY\x09\x00" + struct.pack("<H", 10) + b"{}" + b" " * 8,
    "structured dtype": _npy_header("[('a', '<f4')]", "(2,)").replace(b"'[(", b"[(").replace(b")]'", b")]"),
    "short data": _npy_header("<f4", "(100,)") + b"\0" * 8,
    "unsupported dtype": _npy_header("<c16", "(2,)") + b"\0" * 32,
}


@pytest.mark.parametrize("case", sorted(NPY_BAD))
def test_malformed_npy_and_npz(tmp_path, case):
    data = NPY_BAD[case]
    p = tmp_path / "bad.npy"
    p.write_bytes(data)
    err = _one_graphc_error(_open_weights, str(p), what=case)
    assert err is not None and isinstance(err, (ParseError, CompileError)), case
    # the same array inside an .npz, stored and compressed
    for comp in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        z = tmp_path / "bad.npz"
        with zipfile.ZipFile(z, "w", comp) as zf:
            zf.writestr("w.npy", data)
        err = _one_graphc_error(_open_weights, str(z), what=f"{case} in npz")
        assert err is not None, case


def test_malformed_npz_archives(tmp_path):
    """Zip-level damage: a member claiming 2^40 bytes, a zip bomb, names with paths, no members."""
    z = tmp_path / "bad.npz"
    member = _npy_header("<f4", "(2,)") + b"\0" * 8
    for comp in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        bio = io.BytesIO()
        with zipfile.ZipFile(bio, "w", comp) as zf:
            zf.writestr("w.npy", member)
        raw = bytearray(bio.getvalue())
        i = raw.rfind(b"PK\x01\x02")             # the central directory entry: claim 2^32-1 bytes inflated
        struct.pack_into("<I", raw, i + 24, 0xFFFFFFFF)
        z.write_bytes(bytes(raw))
        err = _one_graphc_error(_open_weights, str(z), what=f"huge member {comp}")
        assert err is not None
    for members in ({"../evil.npy": _npy_header("<f4", "(2,)") + b"\0" * 8}, {}):
        with zipfile.ZipFile(z, "w") as zf:
            for k, v in members.items():
                zf.writestr(k, v)
        _one_graphc_error(_open_weights, str(z), what=f"members {list(members)}")


def test_graph_text_cycles_and_huge_dims(tmp_path):
    """A .graph file whose nodes refer to later ones (a cycle) or to themselves, dims past int64, counts of
    2^40 elements: one graphc error each, no allocation."""
    g = graphc.GraphBuilder("c")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    a = g.set_name(g.neg(x), "a")
    b = g.set_name(g.add(a, x), "b")
    graph = g.build(b)
    graphc.save_graph(graph, tmp_path / "ok.graph")
    text = (tmp_path / "ok.graph").read_text(encoding="utf-8")
    assert '%1 "a" = unary(%0)' in text, text
    variants = {"cycle": text.replace('%1 "a" = unary(%0)', '%1 "a" = unary(%2)'),
                "self reference": text.replace('%1 "a" = unary(%0)', '%1 "a" = unary(%1)'),
                "undefined": text.replace('%1 "a" = unary(%0)', '%1 "a" = unary(%9)')}
    variants["dims past int64"] = re.sub(r"\[4\]", "[9223372036854775808]", text, count=1)
    variants["2^40 elements"] = re.sub(r"\[4\]", "[1099511627776]", text, count=1)
    variants["2^62 x 4 elements"] = re.sub(r"\[4\]", "[4611686018427387904, 4]", text, count=1)
    for what, v in variants.items():
        assert v != text, what
        (tmp_path / "bad.graph").write_text(v, encoding="utf-8")
        err = _one_graphc_error(lambda: graphc.compile(str(tmp_path / "bad.graph"), target="ref"), what=what)
        assert err is not None, (what, v)


def test_ggml_export_with_counts_and_offsets_outside_the_file(tmp_path):
    """Header counts of 2^32-1 records and a leaf whose data would lie past the end: one ParseError."""
    import fixture_graph as fg
    path = fg.FIXTURES / "2024-10-09-2327bda7" / "mlp.ggml"
    if not path.exists():
        pytest.skip("ggml fixtures not present")
    data = bytearray(path.read_bytes())
    for what, (at, fmt, value) in {"2^32-1 leafs": (8, "<I", 0xFFFFFFFF), "2^32-1 nodes": (12, "<I", 0xFFFFFFFF),
                                   "size_eval 2^63": (16, "<Q", 1 << 63)}.items():
        bad = bytearray(data)
        struct.pack_into(fmt, bad, at, value)
        (tmp_path / "bad.ggml").write_bytes(bytes(bad))
        _one_graphc_error(graphc.load_graph, str(tmp_path / "bad.ggml"), what=what)
    (tmp_path / "bad.ggml").write_bytes(bytes(data[:len(data) // 2]))
    assert _one_graphc_error(graphc.load_graph, str(tmp_path / "bad.ggml"), what="half") is not None


def test_gguf_offsets_outside_the_file_through_compile(tmp_path):
    """GGUF damage reached through graphc.compile(weights=...), not just the reader: a tensor whose offset
    points past the end, a count of 2^40 tensors, dims whose product overflows int64."""
    a = np.ones(4, np.float32)
    good = tmp_path / "w.gguf"
    write_gguf(good, {}, [("w", "f32", (4,), a.view(np.uint8))])
    data = good.read_bytes()
    g = graphc.GraphBuilder("t")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    w = g.set_param(g.new_tensor_1d("f32", 4, name="w"))
    graph = g.build(g.set_name(g.add(x, w), "y"))
    name_at = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00w") + 9      # the tensor info after its name
    cases = {
        "offset past the end": (name_at + 4 + 8 + 4, "<Q", 1 << 40),
        "2^40 tensors": (8, "<Q", 1 << 40),
        "dims overflow": (name_at + 4, "<Q", 1 << 62),
    }
    for what, (at, fmt, value) in cases.items():
        bad = bytearray(data)
        struct.pack_into(fmt, bad, at, value)
        p = tmp_path / "bad.gguf"
        p.write_bytes(bytes(bad))
        err = _one_graphc_error(graphc.compile, graph, "ref", str(p), what=what)
        assert isinstance(err, (ParseError, CompileError)), (what, err)
