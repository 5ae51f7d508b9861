"""The .graph text format: lossless round trips, canonical text, and errors with locations."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from graphc import ops
from graphc.builder import GraphBuilder, _clip_name
from graphc.compare import graph_diff, graphs_equal
from graphc.errors import GraphcError, GraphError, ParseError
from graphc.frontends import graph_text
from graphc.frontends.graph_text import dump, dumps, format_f32, load, loads
from graphc.ir import Flag, Graph
from graphc.types import TYPES

DOC = Path(__file__).resolve().parents[1] / "docs" / "graph-format.md"


def rng() -> np.random.Generator:
    return np.random.default_rng()


def roundtrip(g: Graph) -> Graph:
    """print -> parse -> compare, and the printed text is canonical (print(parse(t)) == t)."""
    text = dumps(g)
    g2 = loads(text)
    diff = graph_diff(g, g2)
    assert diff is None, f"{diff}\n{text}"
    assert dumps(g2) == text
    return g2


def f32(b: GraphBuilder, *ne, name="", flags=Flag.NONE, type="f32"):
    t = b.new_tensor(type, ne, name=name)
    t.flags |= flags
    return t


def const(b: GraphBuilder, values, type=None, name=""):
    return b.constant(np.asarray(values), type, name=name)


# --------------------------------------------------------------------------------------
# one small graph per op
# --------------------------------------------------------------------------------------

def _per_op_graphs() -> dict[str, list[Graph]]:
    out: dict[str, list[Graph]] = {}

    def add(op: str, make):
        b = GraphBuilder(f"op {op}")
        res = make(b)
        res = res if isinstance(res, tuple) else (res,)
        out.setdefault(op, []).append(b.build(*res))

    for op in ("add", "sub", "mul", "div", "maximum", "minimum"):
        add(op, lambda b, op=op: getattr(b, op)(f32(b, 8, 4, 2, name="a", flags=Flag.INPUT),
                                                f32(b, 8, 1, 2, name="b", flags=Flag.INPUT)))
    add("add1", lambda b: b.add1(f32(b, 8, 4, name="a"), const(b, [2.5], name="one")))
    for op in ("sqr", "sqrt", "log", "sin", "cos", "dup", "cont", "sum", "sum_rows", "mean", "argmax"):
        add(op, lambda b, op=op: getattr(b, op)(f32(b, 6, 3, name="x", flags=Flag.INPUT)))
    for u in ops.UNARY_OPS:
        add("unary", lambda b, u=u: b.unary(f32(b, 5, 2, name="x", flags=Flag.INPUT), u))
    add("scale", lambda b: b.scale_bias(f32(b, 4, name="x"), -0.0, float("nan")))
    add("clamp", lambda b: b.clamp(f32(b, 4, name="x"), -1.5, float("inf")))
    add("leaky_relu", lambda b: b.leaky_relu(f32(b, 4, name="x"), 0.01))
    add("diag_mask_inf", lambda b: b.diag_mask_inf(f32(b, 4, 4, name="kq"), 1))
    add("diag_mask_zero", lambda b: b.diag_mask_zero(f32(b, 4, 4, name="kq"), 0))
    for g in ops.GLU_OPS:
        add("glu", lambda b, g=g: b.glu(f32(b, 8, 3, name="x"), g, swapped=True))
    add("glu", lambda b: b.swiglu_split(f32(b, 8, 3, name="gate"), f32(b, 8, 3, name="up")))
    for op in ("norm", "rms_norm", "l2_norm"):
        add(op, lambda b, op=op: getattr(b, op)(f32(b, 16, 2, name="x"), 1e-6))
    add("group_norm", lambda b: b.group_norm(f32(b, 4, 4, 6, name="x"), 3, 1e-5))
    add("soft_max", lambda b: b.soft_max_ext(f32(b, 5, 3, 2, name="kq"), f32(b, 5, 4, type="f16", name="mask"),
                                             0.125, 0.0, sinks=f32(b, 2, name="sinks")))
    add("soft_max", lambda b: b.soft_max(f32(b, 5, 3, name="x")))
    add("mul_mat", lambda b: b.mul_mat(b.set_param(f32(b, 32, 3, type="q8_0", name="w"),
                                                   "model.gguf", "blk.0.ffn_up.weight"),
                                       f32(b, 32, 2, name="x", flags=Flag.INPUT)))
    add("out_prod", lambda b: b.out_prod(f32(b, 4, 3, name="a"), f32(b, 5, 3, name="b")))
    add("repeat", lambda b: b.repeat(f32(b, 8, 1, name="a"), f32(b, 8, 4, name="like")))
    add("concat", lambda b: b.concat(f32(b, 4, 2, name="a"), f32(b, 4, 3, name="b"), 1))

    def _set(b):
        a, x = f32(b, 8, 4, name="a"), f32(b, 8, 2, name="b")
        return b.set_2d(a, x, a.nb[1], 32)
    add("set", _set)

    def _kv(b):   # a KV-cache store: cpy the new keys into a view of a state leaf
        cache = b.set_state(f32(b, 8 * 16, type="f16", name="cache_k"))
        k = f32(b, 8, 2, name="k_cur", flags=Flag.INPUT)
        dst = b.view_2d(cache, 8, 2, cache.nb[1] * 0 + 16, 3 * 16)
        return b.cpy(k, dst)
    add("cpy", _kv)
    add("reshape", lambda b: b.reshape_3d(f32(b, 8, 6, name="x"), 4, 2, 6))
    add("view", lambda b: b.view_3d(f32(b, 8, 6, name="x"), 2, 3, 2, 64, 8, 4))
    add("permute", lambda b: b.permute(f32(b, 8, 3, 2, name="q"), 0, 2, 1, 3))
    add("transpose", lambda b: b.cont(b.transpose(f32(b, 8, 3, name="x"))))
    add("get_rows", lambda b: b.get_rows(b.set_param(f32(b, 8, 10, name="tok_embd")),
                                         const(b, np.array([3, 0, 9], np.int32), name="ids")))

    def _set_rows(b):
        dst = b.set_state(f32(b, 8, 6, name="cache"))
        return b.set_rows(dst, f32(b, 8, 3, name="rows"), const(b, np.array([1, 4, 5], np.int64), name="idx"))
    add("set_rows", _set_rows)
    add("pad", lambda b: b.pad_ext(f32(b, 4, 3, name="x"), 1, 2, 0, 1, 0, 0, 0, 0))
    add("arange", lambda b: b.arange(0.0, 5.0, 0.5))

    def _rope(b):
        a = f32(b, 8, 2, 3, name="q")
        pos = b.set_input(f32(b, 3, type="i32", name="pos"))
        return b.rope_ext(a, pos, f32(b, 4, name="freq_factors"), 8, 2, 4096, 500000.0, 0.25, 0.0, 1.0, 32.0, 1.0)
    add("rope", _rope)
    add("rope", lambda b: b.rope(f32(b, 8, 2, 3, name="q"), f32(b, 3, type="i32", name="pos"), 4))

    def _fa(b):
        q = f32(b, 8, 3, 4, name="q")
        k, v = f32(b, 8, 5, 2, type="f16", name="k"), f32(b, 8, 5, 2, type="f16", name="v")
        return b.flash_attn_ext(q, k, v, f32(b, 5, 3, type="f16", name="mask"), 0.125, 0.0, 30.0)
    add("flash_attn_ext", _fa)

    def _wkv6(b):
        k, v, r, td = (f32(b, 4, 2, 3, name=n) for n in "kvrw")
        return b.rwkv_wkv6(k, v, r, f32(b, 4, 2, name="tf"), td, b.set_state(f32(b, 32, 1, name="state")))
    add("rwkv_wkv6", _wkv6)

    def _wkv7(b):
        r, w, k, v, a, bb = (f32(b, 4, 2, 3, name=n) for n in "rwkvab")
        return b.rwkv_wkv7(r, w, k, v, a, bb, b.set_state(f32(b, 32, 1, name="state")))
    add("rwkv_wkv7", _wkv7)
    add("rwkv_wkv4", lambda b: b.rwkv_wkv4(f32(b, 4, 3, name="k"), f32(b, 4, 3, name="v"), f32(b, 4, name="w"),
                                           f32(b, 4, name="u"), b.set_state(f32(b, 12, 1, name="state"))))
    add("custom", lambda b: b.custom("my_rotate", f32(b, 8, 2, name="x"), f32(b, 8, 2, name="y"),
                                     type="f16", ne=(4, 4, 2)))
    add("custom", lambda b: b.custom("zero_src_op", type="i32", ne=(3,)))
    add("all_reduce", lambda b: b.all_reduce(f32(b, 8, 2, name="partial"), 4))
    add("all_gather", lambda b: b.all_gather(f32(b, 3, 2, name="logits_shard"), 4, 11))
    return out


PER_OP = _per_op_graphs()


def test_per_op_graphs_cover_every_op():
    seen = {n.op for gs in PER_OP.values() for g in gs for n in g.nodes}
    assert seen == set(ops.OPS) - {"none"}
    unary = {n.params["op"] for g in PER_OP["unary"] for n in g.nodes}
    assert unary == set(ops.UNARY_OPS)


@pytest.mark.parametrize("op", sorted(PER_OP))
def test_roundtrip_each_op(op):
    for g in PER_OP[op]:
        roundtrip(g)


def test_kv_cache_view_relation_is_printed_and_checked():
    g = PER_OP["cpy"][0]
    text = dumps(g)
    assert "view_of(%1, 48)" in text and "state" in text
    # the view relation is derived from the op on reading; a text that disagrees is refused
    bad = text.replace("view_of(%1, 48)", "view_of(%1, 16)")
    with pytest.raises(ParseError, match=r"views %1 at offset 48") as e:
        loads(bad)
    assert e.value.line == bad.splitlines().index(next(ln for ln in bad.splitlines() if "16)" in ln)) + 1
    # leaving the relation out is fine: it is derived
    g2 = loads(re.sub(r" view_of\(%\d+, \d+\)", "", text))
    assert graphs_equal(g, g2)


# --------------------------------------------------------------------------------------
# types, names, floats, data
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tname", sorted(TYPES))
def test_every_type_roundtrips_as_leaf_data_and_cpy_destination(tname):
    t = TYPES[tname]
    b = GraphBuilder(tname)
    leaf = f32(b, t.blck, 2, type=tname, name=f"const {tname}")
    leaf.data = rng().integers(0, 256, leaf.nbytes, dtype=np.uint8)
    w = b.set_param(f32(b, t.blck * 2, 3, type=tname, name="w"), "weights/model Q4.gguf", f"blk.0.{tname}")
    src = f32(b, t.blck, 2, name="src", flags=Flag.INPUT)
    dst = b.set_state(f32(b, t.blck, 2, type=tname, name="dst"))
    g = b.build(b.cpy(src, dst))
    g.leafs += [leaf, w]                               # unused leafs are kept too
    g2 = roundtrip(g)
    assert g2.leafs[-1].weight.file == "weights/model Q4.gguf"
    assert g2.leafs[-2].data.tobytes() == leaf.data.tobytes()


WEIRD_NAMES = ["", '"', "\\", '\\"', "\n", "\r\n\t", "\x01\x7f\x1b[31m", "% 0 = leaf : f32[1]", "# not a comment",
               "tab\there", "üñí©ødé ✓", "emoji 🦙🦙", "\u2028\u2029\u200b\u202e", "\ufeffbom", "a\u0301", "_",
               "x" * 63, "é" * 31, "🦙" * 15 + "abc", "\\x41\\u0041", "${x}", "{s=1}"]


def test_weird_names_roundtrip():
    b = GraphBuilder("graph \x00 name \"quoted\" \\ 🦙\n")
    ts = [b.set_input(f32(b, 4, name=n)) if i % 2 else f32(b, 4, name=n) for i, n in enumerate(WEIRD_NAMES)]
    acc = ts[0]
    for t in ts[1:]:
        acc = b.add(acc, t)
        acc.name = _clip_name("→" + t.name)
    g = b.build(acc)
    g.leafs[0].name = ""                               # build() names unnamed tensors; "" is legal too
    g2 = roundtrip(g)
    assert [t.name for t in g2.leafs] == WEIRD_NAMES
    assert all(len(t.name.encode()) <= 63 for t in g2.tensors())


SPECIAL_F32 = [0.0, -0.0, 1.0, -1.5, 0.1, 1e-6, 1.0 / 3.0, float("inf"), float("-inf"), float("nan"),
               1.401298464324817e-45, -1.401298464324817e-45, 1.1754942106924411e-38, 3.4028234663852886e38,
               16777217.0, 2.0 ** -149 * 3, 123456.789]


def _bits(v: float) -> int:
    return int(np.array(v, dtype=np.float32).view(np.uint32))


@pytest.mark.parametrize("v", SPECIAL_F32, ids=repr)
def test_f32_params_keep_exact_bits(v):
    b = GraphBuilder()
    y = b.clamp(f32(b, 4, name="x"), v, -v)
    g2 = roundtrip(b.build(y))
    p = g2.nodes[0].params
    assert _bits(p["min"]) == _bits(v) and _bits(p["max"]) == _bits(-v)


def test_nan_payloads_keep_their_bits():
    for bits in (0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7FFFFFFF, 0xFFC12345):
        v = float(np.array(bits, dtype=np.uint32).view(np.float32))
        text = format_f32(v)
        assert _bits(graph_text._parse_float_text(text)) == _bits(v), text
    with pytest.raises(ValueError):
        graph_text._parse_float_text("nan:0x3f800000")     # that is 1.0, not a nan


@settings(max_examples=200, deadline=None)
@given(st.floats(width=32))
def test_format_f32_roundtrips_any_float32(v):
    text = format_f32(v)
    assert _bits(graph_text._parse_float_text(text)) == _bits(v)


def test_defaults_are_left_out_but_minus_zero_is_not():
    b = GraphBuilder()
    y = b.soft_max_ext(f32(b, 4, 2, name="x"), None, 1.0, -0.0)
    text = dumps(b.build(y))
    assert "max_bias=-0.0" in text and "scale=" not in text
    roundtrip(b.build(y))


def test_data_limits_and_checks():
    b = GraphBuilder()
    c = const(b, np.zeros(graph_text.MAX_INLINE_BYTES // 4 + 1, np.float32), name="big")
    with pytest.raises(GraphError, match="weights file"):
        dumps(b.build(c))
    head = "graphc 1\n"
    n = graph_text.MAX_INLINE_BYTES // 4 + 1
    with pytest.raises(ParseError, match="limited") as e:
        loads(head + f'%0 "big" = leaf : f32[{n}] data("{"A" * (4 * ((4 * n + 2) // 3))}")\n')
    assert e.value.line == 2
    with pytest.raises(ParseError, match="not valid base64"):
        loads(head + '%0 "c" = leaf : f32[2] data("AAAA!AAAAAA=")\n')
    with pytest.raises(ParseError, match="base64 characters"):
        loads(head + '%0 "c" = leaf : f32[3] data("AAAA")\n')


def test_limits_on_ids_dims_tensors_and_lines(monkeypatch):
    with pytest.raises(ParseError, match="too large"):
        loads("graphc 1\n%0 \"x\" = leaf : f32[" + "9" * 30 + "]\n")
    with pytest.raises(ParseError, match="too large"):
        loads("graphc 1\n%" + "1" * 30 + " \"x\" = leaf : f32[1]\n")
    with pytest.raises(ParseError, match="characters long"):
        loads("graphc 1\n%0 \"x\" = leaf : f32[" + "9" * 5000 + "]\n")
    with pytest.raises(ParseError, match="elements"):
        loads("graphc 1\n%0 \"x\" = leaf : f32[4611686018427387904, 4611686018427387904]\n")
    with pytest.raises(ParseError, match="characters long") as e:
        loads("graphc 1\n\n%0 \"x\" = leaf : f32[1]" + " " * 5000 + "input\n")
    assert e.value.line == 3
    monkeypatch.setattr(graph_text, "MAX_TENSORS", 3)
    text = "graphc 1\n" + "".join(f'%{i} "x" = leaf : f32[1]\n' for i in range(4))
    with pytest.raises(ParseError, match="more than 3 tensors") as e:
        loads(text)
    assert e.value.line == 5


# --------------------------------------------------------------------------------------
# text details: header, comments, file io, errors
# --------------------------------------------------------------------------------------

def test_comments_blank_lines_crlf_and_any_id_order():
    text = ("# a hand-written graph\n\ngraphc 1   # version\r\ngraph \"hand\"\n\n"
            "%10 \"x\" = leaf : f32[4, 2] input   # the input\n"
            "   %3 \"#y\" = scale(%10) {s=2} : f32[4, 2] output\n# end\n")
    g = loads(text)
    assert g.name == "hand" and [t.name for t in g.tensors()] == ["x", "#y"]
    assert g.nodes[0].params == {"s": 2.0, "b": 0.0}
    # the canonical text renumbers and drops comments; it parses back to the same graph
    assert graphs_equal(loads(dumps(g)), g)
    assert dumps(g).startswith("graphc 1\ngraph \"hand\"\n%0 \"x\" = leaf")


def test_dump_and_load_files(tmp_path):
    g = PER_OP["rope"][0]
    p = tmp_path / "rope model.graph"
    dump(g, p)
    assert graphs_equal(load(p), g)
    with pytest.raises(ParseError) as e:
        load(tmp_path / "missing.graph")
    assert e.value.file.endswith("missing.graph")
    (tmp_path / "bad.graph").write_bytes(b"graphc 1\n%0 \"x\" = leaf : f32[1]\n%1 \"\xff\" = leaf : f32[1]\n")
    with pytest.raises(ParseError) as e:
        load(tmp_path / "bad.graph")
    assert (e.value.line, e.value.column) == (3, 5) and "UTF-8" in str(e.value)


GOOD = 'graphc 1\ngraph "g"\n%0 "x" = leaf : f32[8, 4] input\n'
ERRORS = [  # text after GOOD, expected message, line, column
    ('%1 "y" = foo(%0) : f32[8]', "unknown op 'foo'", 4, 10),
    ('%1 "y" = scale(%0) {s=1, q=2} : f32[8, 4]', "scale has no parameter 'q'", 4, 26),
    ('%1 "y" = scale(%0) {s=1, s=2} : f32[8, 4]', "given twice", 4, 26),
    ('%1 "y" = scale(%0) {s=true} : f32[8, 4]', "f32 number", 4, 23),
    ('%1 "y" = scale(%0) : f32[8, 4]', "needs parameter 's'", 4, 10),
    ('%1 "y" = unary(%0) {op=silly} : f32[8, 4]', "not one of", 4, 10),
    ('%1 "y" = permute(%0) {axes=[0, 1, 2]} : f32[8, 4]', "4 integers", 4, 10),
    ('%1 "y" = mul_mat(%0, %0) {prec=99999999999} : f32[4, 4]', "does not fit i32", 4, 10),
    ('%1 "y" = scale(%7) {s=1} : f32[8, 4]', "%7 is not defined", 4, 16),
    ('%0 "y" = leaf : f32[1]', "%0 is already defined on line 3", 4, 1),
    ('%1 "y" = scale(%0) {s=1} : f32[8, 5]', "scale gives f32[8, 4], the text says f32[8, 5]", 4, 10),
    ('%1 "y" = scale(%0) {s=1} : f32[8, 4] nb[4, 4, 4, 4]', "strides", 4, 10),
    ('%1 "y" = mul_mat(%0, %0) : f32[4, 5]', "mul_mat gives f32[4, 4]", 4, 10),
    ('%1 "y" = add(%0, %0, %0) : f32[8, 4]', "at most 2 sources", 4, 10),
    ('%1 "y" = add(%0) : f32[8, 4]', "missing source", 4, 10),
    ('%1 "y" = scale(%0) {s=1} : f33[8, 4]', "unknown tensor type 'f33'", 4, 28),
    ('%1 "y" = leaf : q4_0[8]', "divisible by 32", 4, 10),
    ('%1 "y" = leaf : f32[1, 2, 3, 4, 5]', "at most 4 dims", 4, 33),
    ('%1 "y" = leaf() : f32[1]', "a leaf is written `leaf`", 4, 10),
    ('%1 "y" = none : f32[1]', "expected 'leaf'", 4, 10),
    ('%1 "y" = leaf : f32[8, 4] frob', "unknown flag 'frob'", 4, 27),
    ('%1 "y" = leaf : f32[8, 4] input input', "given twice", 4, 33),
    ('%1 "y" = leaf : f32[8, 4] view_of(%0, 0)', "a leaf is not a view", 4, 27),
    ('%1 "y" = leaf : f32[8, 4] weight("a")', "weight takes a file and a tensor name", 4, 27),
    ('%1 "y" = leaf : f32[8, 4] nb[4, 32]', "nb needs 4 strides", 4, 27),
    ('%1 "y" = leaf : f32[8, 4] nb[4, 64, 256, 256]', "a leaf is contiguous", 4, 10),
    ('%1 "y\\q" = leaf : f32[1]', "unknown escape \\q", 4, 6),
    ('%1 "y\\ud800" = leaf : f32[1]', "not a unicode character", 4, 6),
    ('%1 "y\\x4" = leaf : f32[1]', "2 hex digits", 4, 6),
    ('%1 "' + "a" * 64 + '" = leaf : f32[1]', "at most 63 UTF-8 bytes", 4, 4),
    ('%1 "y\\0" = leaf : f32[1]', "without NUL", 4, 4),
    ('%1 "x" = leaf : f32[8, 4] input', "need unique names", 4, None),
    ('%1 "y" = scale(%0) {s=1} : f32[8, 4] input', "only leafs can be inputs", 4, None),
    ('%1 "y" = scale(%0) {s=1e39} : f32[8, 4]', "out of float32 range", 4, 23),
    ('%1 "y" = scale(%0) {s=1} : f32[8, 4] view_of(%0, 0)', "scale does not make a view", 4, 38),
    ('%1 "y" = arange() {start=0, stop=inf} : f32[1]', "finite", 4, 10),
    ('%1 "y" = scale(%0) {s=1} f32[8, 4]', "unexpected 'f32', expected ':'", 4, 26),
    ('%1 "y" = scale(%0 {s=1} : f32[8, 4]', "expected one of: ')', ','", 4, 19),
    ('%1 "y" = scale(%0) {s=1} : f32[8, 4', "unexpected end of line, expected one of: ',', ']'", 4, 36),
    ('%1 "y = leaf : f32[1]', "unexpected character '\"'", 4, 4),
    ('%1 "y" = leaf : f32[-1]', "expected a non-negative integer", 4, 21),
    ('graphc 1', "a second header", 4, None),
    ('graph "again"', "the graph line comes once", 4, 1),
    ('$', "unexpected character '$', expected one of", 4, 1),
]


@pytest.mark.parametrize("tail,msg,line,col", ERRORS, ids=[e[1][:30] for e in ERRORS])
def test_errors_name_line_column_and_what_was_wrong(tail, msg, line, col):
    with pytest.raises(ParseError) as e:
        loads(GOOD + tail + "\n", file="m.graph")
    err = e.value
    assert msg in str(err), str(err)
    assert (err.file, err.line, err.column) == ("m.graph", line, col), str(err)
    assert str(err).startswith(f"m.graph:{line}")


@pytest.mark.parametrize("text,msg", [
    ("", "empty file"), ("# only a comment\n\n", "empty file"), ("graphc 2\n", "unsupported format version 2"),
    ('graph "x"\n', "starts with the line 'graphc 1'"), ("graphc\n", "unexpected end of line"),
    ('%0 "x" = leaf : f32[1]\n', "starts with the line 'graphc 1'"),
])
def test_header_errors(text, msg):
    with pytest.raises(ParseError, match=re.escape(msg)) as e:
        loads(text)
    assert e.value.line >= 1


def test_printer_refuses_graphs_it_cannot_write_losslessly():
    b = GraphBuilder()
    x = f32(b, 4, name="x")
    y = b.scale(x, 2.0)
    g = Graph("g", [], [y])                        # y's source is not in the graph
    with pytest.raises(GraphError, match="not an earlier tensor"):
        dumps(g)
    x.flags = Flag(8)
    with pytest.raises(GraphError, match="unknown flag bits"):
        dumps(Graph("g", [x], []))
    x.flags, x.name = Flag.NONE, "bad \ud800"
    with pytest.raises(GraphError, match="surrogate"):
        dumps(Graph("g", [x], []))


# --------------------------------------------------------------------------------------
# graph_diff
# --------------------------------------------------------------------------------------

def test_graph_diff_finds_each_kind_of_difference():
    def make():
        b = GraphBuilder("g")
        x, w = b.set_input(f32(b, 4, 2, name="x")), b.set_param(f32(b, 4, 3, name="w"), "m.gguf", "w")
        c = const(b, np.ones((2, 3), np.float32), name="c")
        y = b.add(b.mul_mat(w, x), c)
        return b.build(b.scale(b.permute(y, 1, 0, 2, 3), 0.0))
    a = make()
    assert graph_diff(a, make()) is None and graphs_equal(a, make())
    def by(g, name):
        return next(t for t in g.tensors() if t.name == name)
    edits = {
        "graph name": lambda g: setattr(g, "name", "h"),
        "name": lambda g: setattr(g.nodes[0], "name", "z"),
        "flags": lambda g: setattr(by(g, "x"), "flags", Flag.OUTPUT),
        "weight": lambda g: setattr(by(g, "w"), "weight", None),
        "param s": lambda g: g.nodes[-1].params.__setitem__("s", -0.0),
        "data differs": lambda g: by(g, "c").data.__setitem__(5, 1),
        "sources": lambda g: setattr(g.nodes[0], "src", (by(g, "w"), by(g, "w"))),
        "view_offs": lambda g: setattr(g.nodes[2], "view_offs", 4),
        "view_src": lambda g: setattr(g.nodes[2], "view_src", g.nodes[0]),
        "nb": lambda g: setattr(g.nodes[2], "nb", (4, 4, 4, 4)),
        "ne": lambda g: setattr(by(g, "x"), "ne", (4, 2, 1, 2)),
        "type": lambda g: setattr(by(g, "x"), "type", TYPES["f16"]),
        "nodes": lambda g: g.nodes.pop(),
    }
    assert [n.op for n in a.nodes] == ["mul_mat", "add", "permute", "scale"]
    for what, edit in edits.items():
        b = make()
        edit(b)
        d = graph_diff(a, b)
        assert d is not None and what in d, (what, d)


# --------------------------------------------------------------------------------------
# the examples in docs/graph-format.md are valid canonical text
# --------------------------------------------------------------------------------------

def test_doc_examples_parse_and_are_canonical():
    blocks = re.findall(r"```graph\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    for text in blocks:
        g = loads(text, file="graph-format.md")
        canonical = dumps(g)
        if "#" not in text:
            assert canonical == text
        assert graphs_equal(loads(canonical), g)


# --------------------------------------------------------------------------------------
# hypothesis: random graphs round-trip; random and mutated text only raise located errors
# --------------------------------------------------------------------------------------

names = st.text(max_size=24).filter(lambda s: "\0" not in s).map(_clip_name)
floats32 = st.floats(width=32)
FLOAT_TYPES = ["f32", "f16", "bf16"]


@st.composite
def random_graphs(draw) -> Graph:
    b = GraphBuilder(draw(names))
    dims = st.integers(1, 4)

    def leaf(ne, type="f32"):
        t = b.new_tensor(type, ne, name=draw(names))
        role = draw(st.sampled_from(["none", "input", "param", "weight", "state", "data"]))
        if role == "input":
            b.set_input(t)
        elif role == "param":
            b.set_param(t)
        elif role == "weight":
            b.set_param(t, draw(names), draw(names))
        elif role == "state":
            b.set_state(t)
        elif role == "data":
            t.data = np.frombuffer(draw(st.binary(min_size=t.nbytes, max_size=t.nbytes)), np.uint8).copy()
        return t

    pool = [leaf([draw(dims) for _ in range(draw(st.integers(1, 4)))], draw(st.sampled_from(["f32", "f32", "f16"])))]
    for _ in range(draw(st.integers(1, 7))):
        x = draw(st.sampled_from(pool))
        step = draw(st.sampled_from(STEPS))
        try:
            y = step(draw, b, x, leaf)
        except GraphError:
            continue                                  # an op that does not fit this x: try another step
        if draw(st.booleans()):
            y.name = draw(names)
        pool.append(y)
    outs = [pool[-1]] + draw(st.lists(st.sampled_from(pool), max_size=2))
    g = b.build(*outs)
    # outputs need unique names; rename clashes the way a user would have to
    seen: set[str] = set()
    for i, t in enumerate(g.tensors()):
        if t.flags:
            if t.name in seen:
                t.name = f"t{i}"
            seen.add(t.name)
    return g


def _same_shape(ne, draw):
    return [n if draw(st.booleans()) else 1 for n in ne]   # b broadcasts into a


def _need(cond: bool) -> None:
    if not cond:
        raise GraphError("step does not fit", None, "test")


def _view_step(d, b, x, leaf):
    _need(x.ne[0] > 0 and x.ne[1] > 0)
    if d(st.booleans()):
        n = d(st.integers(1, x.ne[0]))
        return b.view_1d(x, n, x.nb[0] * d(st.integers(0, x.ne[0] - n)))
    return b.view_2d(x, 1, x.ne[1], x.nb[1], x.nb[0] * d(st.integers(0, x.ne[0] - 1)))


def _get_rows_step(d, b, x, leaf):
    _need(x.ne[1] > 0)
    rows = np.asarray(d(st.lists(st.integers(0, x.ne[1] - 1), min_size=1, max_size=3)), np.int32)
    idx = rows.reshape(1, 1, -1) * np.ones((x.ne[3], x.ne[2], 1), np.int32)   # numpy order: [ne3, ne2, k]
    return b.get_rows(x, b.constant(idx, name=d(names)))


STEPS = [
    lambda d, b, x, leaf: b.unary(x, d(st.sampled_from(sorted(ops.UNARY_OPS)))),
    lambda d, b, x, leaf: getattr(b, d(st.sampled_from(["sqr", "sqrt", "log", "sin", "cos", "cont", "dup",
                                                         "sum_rows", "mean", "sum"])))(x),
    lambda d, b, x, leaf: b.scale_bias(x, d(floats32), d(floats32)),
    lambda d, b, x, leaf: b.clamp(x, d(floats32), d(floats32)),
    lambda d, b, x, leaf: getattr(b, d(st.sampled_from(["norm", "rms_norm", "l2_norm"])))(x, d(floats32)),
    lambda d, b, x, leaf: getattr(b, d(st.sampled_from(["add", "sub", "mul", "div", "maximum", "minimum"])))(
        x, leaf(_same_shape(x.ne, d)) if d(st.booleans()) else x),
    lambda d, b, x, leaf: b.mul_mat(leaf([x.ne[0], d(st.integers(1, 4))], d(st.sampled_from(FLOAT_TYPES))), x),
    lambda d, b, x, leaf: b.permute(x, *d(st.permutations(range(4)))),
    lambda d, b, x, leaf: b.transpose(x),
    lambda d, b, x, leaf: b.reshape_1d(x, x.nelements),
    _view_step,
    lambda d, b, x, leaf: b.soft_max_ext(x, None, d(floats32), d(floats32)),
    lambda d, b, x, leaf: b.concat(x, x, d(st.integers(0, 3))),
    lambda d, b, x, leaf: b.cpy(x, b.set_state(b.new_tensor(d(st.sampled_from(FLOAT_TYPES)), x.ne, name=d(names)))),
    lambda d, b, x, leaf: b.pad(x, *(d(st.integers(0, 2)) for _ in range(4))),
    lambda d, b, x, leaf: b.glu(x, d(st.sampled_from(sorted(ops.GLU_OPS))), d(st.booleans())),
    lambda d, b, x, leaf: b.diag_mask_inf(x, d(st.integers(-3, 3))),
    _get_rows_step,
    lambda d, b, x, leaf: b.custom(d(st.sampled_from(["f", "my op", "κ"])), x, leaf(x.ne[:2]),
                                   type=d(st.sampled_from(FLOAT_TYPES)), ne=[d(st.integers(1, 3))]),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_graphs())
def test_random_graphs_roundtrip_both_ways(g):
    roundtrip(g)


def _check_located(text):
    try:
        g = loads(text)
    except ParseError as e:
        assert e.line is not None and e.line >= 1, str(e)
        assert e.column is None or e.column >= 1, str(e)
        return None
    # anything accepted is a valid graph that prints canonically and reads back equal
    again = loads(dumps(g))
    assert graphs_equal(g, again)
    return g


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_raises_located_parse_errors(text):
    _check_located(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list('graphc1 %0"=:[],()_{}#\n\\xs-.e9') + ["leaf", "f32", "scale", "input", "nb",
                                                                        "view_of", "data", "%1", '"x"', "s=1"]),
                max_size=60).map("".join))
def test_random_token_soup_after_header(text):
    _check_located("graphc 1\n" + text)


def _rich_text() -> str:
    b = GraphBuilder("rich \"ünïcode\"")
    x = b.set_input(f32(b, 8, 3, 2, name="x"))
    w = b.set_param(f32(b, 32, 8, type="q8_0", name="w"), "m.gguf", "blk.0.w")
    pos = b.set_input(f32(b, 2, type="i32", name="pos"))
    cache = b.set_state(f32(b, 8 * 8, type="f16", name="cache"))
    q = b.rope_ext(x, pos, None, 8, 2, 0, 10000.0, 1.0, 0.0, 1.0, 32.0, 1.0)
    kq = b.soft_max_ext(b.permute(q, 0, 2, 1, 3), None, 0.35355339, -0.0)
    st_ = b.cpy(b.cont(b.view_1d(x, 8, 16)), b.view_1d(cache, 8, 16))
    m = b.mul_mat(b.cont(b.transpose(b.mul_mat(w, b.new_tensor("f32", (32, 8), name="h")))), b.constant(
        np.arange(32, dtype=np.float32).reshape(4, 8), name="c"))
    return dumps(b.build(kq, st_, b.custom("fn", m, type="f32", ne=(2, 2))))


RICH = _rich_text()


def test_rich_text_is_canonical():
    assert dumps(loads(RICH)) == RICH


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(RICH.encode("utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "token_del", "token_dup",
                                     "token_swap"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.sampled_from(list(b'%"=:[](){},_#\n\\0123456789-.ex ')))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "truncate":
            del data[i:]
        else:
            toks = re.split(rb"(\s+)", bytes(data))
            words = [k for k in range(0, len(toks), 2) if toks[k]]
            if not words:
                continue
            k = draw(st.sampled_from(words))
            if kind == "token_del":
                toks[k] = b""
            elif kind == "token_dup":
                toks[k] = toks[k] + b" " + toks[k]
            else:
                k2 = draw(st.sampled_from(words))
                toks[k], toks[k2] = toks[k2], toks[k]
            data = bytearray(b"".join(toks))
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_text_only_raises_located_parse_errors(data):
    try:
        _check_located(data)
    except GraphcError as e:           # loads converts GraphErrors; nothing else may escape
        pytest.fail(f"{type(e).__name__} escaped loads: {e}")


@st.composite
def plausible_text(draw) -> str:
    """Lines that parse but mix real ops, params, types and shapes at random: stresses the shape rules."""
    lines = ["graphc 1"]
    n_leaf = draw(st.integers(1, 4))
    small = st.integers(0, 6) | st.sampled_from([32, 256, 2**40])
    for i in range(n_leaf):
        t = draw(st.sampled_from(["f32", "f32", "f16", "i32", "q8_0", draw(st.sampled_from(sorted(TYPES)))]))
        dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
        dims[0] *= TYPES[t].blck
        lines.append(f'%{i} "l{i}" = leaf : {t}[{", ".join(map(str, dims))}]')
    for i in range(n_leaf, n_leaf + draw(st.integers(1, 4))):
        op = draw(st.sampled_from(sorted(set(ops.OPS) - {"none"})))
        d = ops.OPS[op]
        srcs = [draw(st.sampled_from([f"%{j}" for j in range(i)] + ["_"]))
                for _ in range(draw(st.integers(0, len(d.srcs))))]
        vals = st.sampled_from(["0", "1", "-1", "3", "2147483648", "1e-5", "-inf", "nan", "[0, 1, 2, 3]",
                                "[3, 3, 3, 3]", "[1, 2]", '"f"', "silu", "swiglu", "true"])
        params = [f"{p.name}={draw(vals)}" for p in d.params if draw(st.booleans())]
        t = draw(st.sampled_from(["f32", "f16", "i32", "q8_0"]))
        dims = draw(st.lists(small, min_size=1, max_size=4))
        attrs = draw(st.lists(st.sampled_from(["input", "output", "state", "nb[4, 16, 64, 64]",
                                               f"view_of(%{i - 1}, 0)"]),
                              max_size=2, unique=True))
        lines.append(f'%{i} "n{i}" = {op}({", ".join(srcs)}) {{{", ".join(params)}}} : '
                     f'{t}[{", ".join(map(str, dims))}] ' + " ".join(attrs))
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plausible_text())
def test_plausible_random_ops_only_raise_located_parse_errors(text):
    _check_located(text)
