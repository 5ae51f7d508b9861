"""Weight files (GGUF, safetensors, .npy, .npz): readers, binding to graphs, zero copy, damage, fuzzing."""
from __future__ import annotations

import json
import mmap
import os
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import graphc
from graphc import CompileError, GraphBuilder, ParseError, RunError, quants
from graphc.frontends.gguf import Value, ValueType, read_gguf, write_gguf
from graphc.frontends.safetensors import read_safetensors, write_safetensors
from graphc.frontends.weights import open_weights, tensor_data
from graphc.types import get_type

import gguf   # a test dependency: missing it fails the suite, never skips

GQT = gguf.GGMLQuantizationType

TYPES = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
NE0, ROWS, NX = 256, 6, 3


def file_mapping_of(arr: np.ndarray) -> np.memmap | None:
    """The np.memmap that owns the file mapping an array is a view of (walking .base), or None."""
    b = arr
    while isinstance(b, np.ndarray):
        if isinstance(b, np.memmap) and isinstance(b.base, mmap.mmap):
            return b
        b = b.base
    return None


def assert_mapped_from(buf: np.ndarray, path: str, offset: int, nbytes: int) -> None:
    """buf IS bytes [offset, offset + nbytes) of the read-only mapping of `path`."""
    mm = file_mapping_of(buf)
    assert mm is not None, "buffer is not a view of a file mapping"
    assert os.path.samefile(mm.filename, path)
    assert np.shares_memory(buf, mm) and not buf.flags.writeable
    start = buf.__array_interface__["data"][0] - mm.__array_interface__["data"][0]
    assert (start, buf.size) == (offset, nbytes)


def write_with_gguf_package(path, tensors: dict[str, tuple[str, np.ndarray]], meta=None, align=None) -> None:
    """tensors: {name: (type, raw uint8 rows (numpy shape (..., row_bytes)))} written by gguf.GGUFWriter."""
    w = gguf.GGUFWriter(str(path), "test")
    if align:
        w.add_custom_alignment(align)
    for k, (kind, v) in (meta or {}).items():
        getattr(w, f"add_{kind}")(k, v)
    for name, (tname, raw) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=GQT(get_type(tname).id))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def table_graph(tname: str, file: str, tensor: str, n_rows: int = 4):
    g = GraphBuilder("weights test")
    w = g.set_param(g.new_tensor_2d(tname, NE0, ROWS, name="W"), file=file, tensor=tensor)
    idx = g.set_input(g.new_tensor_1d("i32", n_rows, name="idx"))
    x = g.set_input(g.new_tensor_2d("f32", NE0, NX, name="x"))
    rows = g.set_name(g.get_rows(w, idx), "rows")
    y = g.set_name(g.mul_mat(w, x), "y")
    return g.build(rows, y)


def random_raw(tname: str, rng, shape=(ROWS, NE0)) -> np.ndarray:
    """Raw rows of a type: ggml's quantizer where graphc has it, else random bytes with bit 6 clear
    (every f16 scale then has exponent < 16: finite, |d| < 2) for q2_K, q3_K, q5_K."""
    try:
        return quants.quantize(rng.standard_normal(shape).astype(np.float32), tname)
    except NotImplementedError:
        t = get_type(tname)
        return rng.integers(0, 256, (*shape[:-1], t.row_bytes(shape[-1])), dtype=np.uint8) & 0xBF


# --- GGUF through the full path --------------------------------------------------------------

@pytest.mark.parametrize("tname", TYPES)
def test_gguf_every_type_bound_zero_copy_and_exact(tmp_path, rng, tname):
    raw = random_raw(tname, rng)
    path = tmp_path / "m.gguf"
    write_with_gguf_package(path, {"other": ("f32", random_raw("f32", rng, (2, 32))), "blk.0.w": (tname, raw)})
    want = gguf.quants.dequantize(raw, GQT(get_type(tname).id)).astype(np.float64)   # (ROWS, NE0)
    entry = read_gguf(path).tensors["blk.0.w"]
    idx = rng.integers(0, ROWS, 4).astype(np.int32)
    x = rng.standard_normal((NX, NE0)).astype(np.float32)
    graph = table_graph(tname, "m.gguf", "blk.0.w")
    graphc.save_graph(graph, tmp_path / "g.graph")
    for mode in ("dequant", "ggml"):
        m = graphc.compile(str(tmp_path / "g.graph"), target="ref", quant_matmul=mode)
        buf = m._exe.mem.buffer(m.graph.get("W"))
        assert_mapped_from(buf, str(path), entry.offset, entry.nbytes)
        out = m.run({"idx": idx, "x": x})
        np.testing.assert_array_equal(out["rows"], want[idx].astype(np.float32))
        expect = x.astype(np.float64) @ want.T
        if mode == "dequant" or tname == "f32":
            np.testing.assert_allclose(out["y"], expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
        elif get_type(tname).is_quantized:   # ggml quantizes the activations first: its exact path is the oracle
            exact = quants.mul_mat_quant(raw, tname, x).astype(np.float64)
            assert np.mean((out["y"] - exact) ** 2) / np.mean(exact ** 2) < 1e-12
        else:   # f16 / bf16 weights: ggml rounds the activations to the weight type first
            assert np.mean((out["y"] - expect) ** 2) / np.mean(expect ** 2) < 1e-4
    # compile(weights=path) binds by leaf name, also in place
    graph2 = table_graph(tname, "unused.gguf", "x")
    graph2.get("W").weight = None
    graph2.get("W").name = "blk.0.w"
    m2 = graphc.compile(graph2, target="ref", weights=str(path), quant_matmul="dequant")
    assert_mapped_from(m2._exe.mem.buffer(m2.graph.get("blk.0.w")), str(path), entry.offset, entry.nbytes)
    np.testing.assert_array_equal(m2.run({"idx": idx, "x": x})["rows"], want[idx].astype(np.float32))


def test_mapped_weights_are_never_written(tmp_path, rng):
    raw = random_raw("f32", rng)
    write_with_gguf_package(tmp_path / "m.gguf", {"W": ("f32", raw)})
    m = graphc.compile(table_graph("f32", str(tmp_path / "m.gguf"), "W"))
    with pytest.raises(RunError, match="read-only"):
        m._exe.write(m.graph.get("W"), np.zeros((ROWS, NE0), np.float32))
    # a graph that writes into its weight gets its own copy; the file stays as it was
    g = GraphBuilder()
    w = g.set_param(g.new_tensor_1d("f32", 8, name="w"), file=str(tmp_path / "v.npy"))
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    out = g.set_name(g.add(g.cpy(x, w), w), "out")
    v = rng.standard_normal(8).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    xv = rng.standard_normal(8).astype(np.float32)
    res = graphc.compile(g.build(out)).run({"x": xv})["out"]
    np.testing.assert_array_equal(res, xv + xv)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), v)


def test_gguf_metadata_every_value_type_matches_gguf_reader(tmp_path, rng):
    meta = {"u8": ("uint8", 200), "i8": ("int8", -5), "u16": ("uint16", 60000), "i16": ("int16", -3000),
            "u32": ("uint32", 4_000_000_000), "i32": ("int32", -7), "f32": ("float32", 0.25), "b": ("bool", True),
            "s": ("string", "héllo ✓"), "u64": ("uint64", 2**64 - 1), "i64": ("int64", -2**63),
            "f64": ("float64", 1e-300),
            "ai": ("array", [1, 2, 3]), "af": ("array", [0.5, 1.5]), "as": ("array", ["a", "", "ccc"]),
            "ab": ("array", [True, False])}
    path = tmp_path / "m.gguf"
    write_with_gguf_package(path, {"t": ("q8_0", random_raw("q8_0", rng, (2, 64)))}, meta, align=64)
    f = read_gguf(path)
    ref = gguf.GGUFReader(str(path))
    assert f.version == 3 and f.alignment == 64 and f.data_offset % 64 == 0
    for k, (_kind, v) in meta.items():
        got = f.metadata[k]
        rf = ref.fields[k]
        assert f.value_types[k][0] == ValueType(int(rf.types[0]))
        if isinstance(v, list):
            assert list(got) == v
            assert f.value_types[k][1] == ValueType(int(rf.types[1]))
        elif isinstance(v, float):
            assert got == np.float32(v) if k == "f32" else got == v
        else:
            assert got == v
    (t,) = ref.tensors
    assert f.tensors["t"].offset == int(t.data_offset)
    np.testing.assert_array_equal(f.raw("t"), np.asarray(t.data).reshape(-1))
    assert f.tensors["t"].ne == tuple(int(d) for d in t.shape)


def test_write_gguf_round_trips_byte_for_byte_and_v2(tmp_path, rng):
    src = tmp_path / "a.gguf"
    write_with_gguf_package(src, {"a": ("q4_K", random_raw("q4_K", rng, (3, 256))),
                                  "b": ("f16", random_raw("f16", rng, (5, 8)))},
                            {"name": ("string", "x"), "v": ("array", [1.0, 2.0])})
    f = read_gguf(src)
    out = tmp_path / "b.gguf"
    write_gguf(out, f.typed_metadata(), [(n, e.type, e.ne, f.raw(n)) for n, e in f.tensors.items()])
    assert out.read_bytes() == src.read_bytes()
    # plain Python values, explicit types, alignment; version 2 has the same layout
    write_gguf(out, {"general.alignment": 128, "n": 3, "big": 2**40, "x": 1.5, "ok": False, "toks": ["a", "b"],
                     "arr": np.arange(4, dtype=np.uint16), "e": Value(ValueType.ARRAY, [], ValueType.STRING),
                     "nest": [[1, 2], [3]]},
               [("t", "q8_0", (64, 2), random_raw("q8_0", rng, (2, 64)))], version=2)
    g = read_gguf(out)
    assert (g.version, g.alignment, g.data_offset % 128) == (2, 128, 0)
    assert g.metadata["big"] == 2**40 and g.metadata["toks"] == ["a", "b"] and g.metadata["e"] == []
    assert g.metadata["nest"][0].tolist() == [1, 2] and g.value_types["arr"] == (ValueType.ARRAY, ValueType.UINT16)
    r = gguf.GGUFReader(str(out))   # the gguf package reads what we write
    assert r.tensors[0].name == "t" and list(r.tensors[0].shape) == [64, 2]
    with pytest.raises(ValueError, match="takes 136 bytes"):
        write_gguf(out, {}, [("t", "q8_0", (64, 2), b"\0" * 10)])


# --- safetensors and numpy ------------------------------------------------------------------

def handmade_safetensors(path, entries: dict[str, tuple[str, tuple, bytes]], pad: int = 0) -> None:
    header, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, data) in entries.items():
        blob += b"\0" * pad        # leave a gap: offsets need not be aligned or dense
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)


ST_CASES = [("F32", "f32", np.float32), ("F16", "f16", np.float16), ("BF16", "bf16", None), ("I32", "i32", np.int32),
            ("I64", "i64", np.int64), ("I8", "i8", np.int8), ("F64", "f64", np.float64), ("I16", "i16", np.int16)]


@pytest.mark.parametrize("dtype,tname,np_dtype", ST_CASES)
def test_safetensors_zero_copy_every_dtype(tmp_path, rng, dtype, tname, np_dtype):
    shape = (3, 5)
    if np_dtype is None:
        data = quants.quantize(rng.standard_normal(shape).astype(np.float32), "bf16")
        want = quants.dequantize(data, "bf16")
    elif np.dtype(np_dtype).kind == "i":
        want = rng.integers(-100, 100, shape).astype(np_dtype)
        data = want
    else:
        want = rng.standard_normal(shape).astype(np_dtype)
        data = want
    path = tmp_path / "m.safetensors"
    handmade_safetensors(path, {"pad": ("U8", (3,), b"abc"), "w": (dtype, shape, np.ascontiguousarray(data).tobytes())},
                         pad=1)
    f = read_safetensors(path)
    assert f.metadata == {"format": "pt"} and f.tensors["w"].shape == shape
    g = GraphBuilder()
    w = g.set_param(g.new_tensor_2d(tname, 5, 3, name="w"), file=str(path))
    y = g.set_name(g.cont(w), "y")
    m = graphc.compile(g.build(y))
    e = f.tensors["w"]
    assert_mapped_from(m._exe.mem.buffer(m.graph.get("w")), str(path), e.offset, e.nbytes)
    np.testing.assert_array_equal(m.run({})["y"], want)


def test_conversions_between_stored_and_graph_types(tmp_path, rng):
    x = rng.standard_normal((4, 64)).astype(np.float32)
    bf, h, q = quants.quantize(x, "bf16"), x.astype(np.float16), quants.quantize(x, "q4_0")
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"bf": ("BF16", (4, 64), bf), "h": ("F16", (4, 64), h), "f": ("F32", (4, 64), x),
                             "d": ("F64", (4, 64), x.astype(np.float64) / 3), "i": ("I64", (4, 64), np.arange(256)),
                             "u8": ("U8", (4, 36), q)})
    wf = open_weights(path)

    def leaf(tname, name="t"):
        return graphc.ir.new_tensor(name, tname, (64, 4))
    as_f32 = lambda key: tensor_data(wf, key, leaf("f32")).view(np.float32).reshape(4, 64)
    np.testing.assert_array_equal(as_f32("bf"), quants.dequantize(bf, "bf16"))              # exact
    np.testing.assert_array_equal(as_f32("h"), h.astype(np.float32))                        # exact
    np.testing.assert_array_equal(tensor_data(wf, "f", leaf("f16")).view(np.float16).reshape(4, 64), h)  # RNE
    np.testing.assert_array_equal(tensor_data(wf, "f", leaf("bf16")).reshape(4, -1), bf)
    np.testing.assert_array_equal(as_f32("d"), (x.astype(np.float64) / 3).astype(np.float32))
    np.testing.assert_array_equal(tensor_data(wf, "f", leaf("q4_0")).reshape(4, -1), q)     # ggml's quantizer
    np.testing.assert_array_equal(tensor_data(wf, "i", leaf("i32")).view(np.int32), np.arange(256))
    raw = tensor_data(wf, "u8", leaf("q4_0"))                                               # uint8 = raw bytes
    assert np.shares_memory(raw, wf.mapping)
    with pytest.raises(CompileError,
                       match=r"integer and float.*graph tensor 't' is f32 ne \[64, 4, 1, 1\]"
                             r".*'i' is I64 shape \(4, 64\)"):
        tensor_data(wf, "i", leaf("f32"))
    with pytest.raises(CompileError,
                       match=r"shapes differ: graph tensor 't' is f32 ne \[32, 8, 1, 1\].*'f' is F32 shape \(4, 64\)"):
        tensor_data(wf, "f", graphc.ir.new_tensor("t", "f32", (32, 8)))
    with pytest.raises(CompileError, match=r"has no tensor 'bg'.*nearest: 'bf'"):
        tensor_data(wf, "bg", leaf("f32"))
    wf.close()
    gpath = tmp_path / "q.gguf"
    write_gguf(gpath, {}, [("q", "q8_0", (64, 4), quants.quantize(x, "q8_0"))])
    with open_weights(gpath) as gw:
        got = tensor_data(gw, "q", leaf("f32")).view(np.float32).reshape(4, 64)
        np.testing.assert_array_equal(got, gguf.quants.dequantize(quants.quantize(x, "q8_0"), GQT.Q8_0))
        with pytest.raises(CompileError, match="will not re-quantize q8_0 data to q4_0"):
            tensor_data(gw, "q", leaf("q4_0"))


def test_numpy_files_mapped_and_checked(tmp_path, rng):
    a, b = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float16)
    np.savez(tmp_path / "s.npz", a=a, b=b)
    np.savez_compressed(tmp_path / "c.npz", a=a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    np.save(tmp_path / "be.npy", a.astype(">f4"))
    np.save(tmp_path / "a.npy", a)
    t = graphc.ir.new_tensor("a", "f32", (8, 4))
    with open_weights(tmp_path / "s.npz") as wf:
        assert wf.names() == ["a", "b"] and wf.info("b") == (get_type("f16"), (3, 2, 1, 1))
        raw = tensor_data(wf, "a", t)
        assert np.shares_memory(raw, wf.mapping) and not raw.flags.writeable
        np.testing.assert_array_equal(raw.view(np.float32).reshape(4, 8), a)
    for name in ("c.npz", "f.npy", "be.npy", "a.npy"):
        with open_weights(tmp_path / name) as wf:
            raw = tensor_data(wf, wf.resolve("a"), t)
            np.testing.assert_array_equal(raw.view(np.float32).reshape(4, 8), a)
            if name == "a.npy":
                assert np.shares_memory(raw, wf.mapping)
    np.save(tmp_path / "o.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ParseError, match="o.npy"):
        open_weights(tmp_path / "o.npy")
    np.savez(tmp_path / "o.npz", o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ParseError, match="never unpickles"):
        tensor_data(open_weights(tmp_path / "o.npz"), "o", t)


# --- damaged files ----------------------------------------------------------------------------

def small_gguf(tmp_path, rng) -> bytes:
    path = tmp_path / "small.gguf"
    write_with_gguf_package(path, {"a": ("q4_0", random_raw("q4_0", rng, (2, 32))),
                                   "b": ("f32", random_raw("f32", rng, (1, 4)))},
                            {"s": ("string", "hi"), "arr": ("array", ["x", "yy"]), "n": ("uint32", 7)})
    return path.read_bytes()


def gguf_header(n_tensors=0, n_kv=0, version=3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def tinfo(name=b"t", ne=(32,), type_id=0, offset=0, n_dims=None) -> bytes:
    return gstr(name) + struct.pack("<I", len(ne) if n_dims is None else n_dims) + \
        struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", type_id, offset)


CRAFTED = {
    "version 1": (gguf_header(version=1), "v1"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "160-byte file claims 2^40 kv": (gguf_header(0, 2**40) + b"\0" * 136, "metadata entries cannot fit"),
    "2^63 tensors": (gguf_header(2**63, 0), "tensors cannot fit"),
    "1 TiB key": (gguf_header(0, 1) + struct.pack("<Q", 2**40) + b"\0" * 130, "over the limit"),
    "string past the end": (gguf_header(0, 1) + gstr(b"k") + struct.pack("<IQ", 8, 5000) + b"\0" * 20,
                            "needs 5000 bytes"),
    "2^31 element array": (gguf_header(0, 1) + gstr(b"k") + struct.pack("<IIQ", 9, 0, 2**31) + b"\0" * 40,
                           "over the limit"),
    "array of strings too long": (gguf_header(0, 1) + gstr(b"k") + struct.pack("<IIQ", 9, 8, 10**8) + b"\0" * 40,
                                  "array of 100000000 STRING"),
    "unknown value type": (gguf_header(0, 1) + gstr(b"k") + struct.pack("<I", 13) + b"\0" * 16,
                           "unknown value type 13"),
    "alignment 0": (gguf_header(0, 1) + gstr(b"general.alignment") + struct.pack("<II", 4, 0) + b"\0" * 16,
                    "power of two"),
    "alignment 2^31": (gguf_header(0, 1) + gstr(b"general.alignment") + struct.pack("<II", 4, 2**31) + b"\0" * 16,
                       "power of two"),
    "alignment as u64": (gguf_header(0, 1) + gstr(b"general.alignment") + struct.pack("<IQ", 10, 32) + b"\0" * 16,
                         "UINT32"),
    "5 dims": (gguf_header(1, 0) + tinfo(ne=(1, 1, 1, 1, 1)) + b"\0" * 64, "at most 4"),
    "dims overflow": (gguf_header(1, 0) + tinfo(ne=(2**32, 2**32)) + b"\0" * 64, "2\\^63-1 elements"),
    "2^42 dim wrapping": (gguf_header(1, 0) + tinfo(ne=(2**62, 4), type_id=0) + b"\0" * 64, "elements|exceed"),
    "type id 99": (gguf_header(1, 0) + tinfo(type_id=99) + b"\0" * 64, "unknown ggml type id 99"),
    "q4_0 ne0 33": (gguf_header(1, 0) + tinfo(ne=(33,), type_id=2) + b"\0" * 64, "divisible by 32"),
    "data past the end": (gguf_header(1, 0) + tinfo(ne=(16,)) + b"\0" * 64, "past the end"),
    "unaligned offset": (gguf_header(1, 0) + tinfo(ne=(4,), offset=4) + b"\0" * 128, "not a multiple"),
    "name of 64 bytes": (gguf_header(1, 0) + tinfo(name=b"n" * 64) + b"\0" * 64, "at most 63"),
    "duplicate tensor": (gguf_header(2, 0) + tinfo(ne=(4,)) + tinfo(ne=(4,), offset=32) + b"\0" * 96,
                         "duplicate tensor"),
    "duplicate key": (gguf_header(0, 2) + (gstr(b"k") + struct.pack("<IB", 0, 1)) * 2 + b"\0" * 16,
                      "duplicate metadata"),
    "nested too deep": (gguf_header(0, 1) + gstr(b"k") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 6
                        + b"\0" * 64, "nested"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_gguf_crafted_damage_is_one_parse_error_without_big_allocations(tmp_path, case):
    data, msg = CRAFTED[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(ParseError, match=msg) as e:
            read_gguf(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated for a {len(data)}-byte file"
    assert e.value.file == str(path) and e.value.offset is not None and 0 <= e.value.offset <= len(data)


def test_every_truncation_of_a_valid_gguf_is_a_parse_error(tmp_path, rng):
    data = small_gguf(tmp_path, rng)
    f = read_gguf(tmp_path / "small.gguf")
    end_of_data = max(e.offset + e.nbytes for e in f.tensors.values())
    path = tmp_path / "cut.gguf"
    for n in range(end_of_data):
        path.write_bytes(data[:n])
        with pytest.raises(ParseError):
            read_gguf(path)


SAFETENSORS_BAD = {
    "huge header length": (struct.pack("<Q", 2**62) + b"{}", "header length"),
    "not json": (struct.pack("<Q", 3) + b"{x}", "bad JSON"),
    "deep nesting": (struct.pack("<Q", 200002) + b"[" * 100001 + b"]" * 100001, "bad JSON|not an object"),
    "not an object": (struct.pack("<Q", 2) + b"[]", "not an object"),
    "unknown dtype": (b'{"w":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}', "unknown dtype"),
    "offsets past end": (b'{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}', "inside the"),
    "size mismatch": (b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', "takes 8 bytes"),
    "negative dim": (b'{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}', "non-negative"),
    "bool dim": (b'{"w":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', "non-negative ints"),
    "duplicate key": (b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{}}', "duplicate"),
    "bad metadata": (b'{"__metadata__":{"a":1}}', "strings to strings"),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS_BAD))
def test_safetensors_damage(tmp_path, case):
    data, msg = SAFETENSORS_BAD[case]
    if data.startswith(b"{"):
        data = struct.pack("<Q", len(data)) + data + b"\0" * 8
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ParseError, match=msg) as e:
        read_safetensors(path)
    assert e.value.file == str(path) and e.value.offset is not None


# --- fuzzing ------------------------------------------------------------------------------------

def check_parse(cls_read, path: str) -> None:
    """A mutated file either parses into in-bounds views or raises ParseError; nothing else."""
    try:
        f = cls_read(path)
    except ParseError:
        return
    size = os.path.getsize(path)
    for name, e in f.tensors.items():
        raw = f.raw(name)
        assert raw.size == e.nbytes and e.offset + e.nbytes <= size


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("u64"), st.integers(0, 10**6),
              st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1])),
    st.tuples(st.just("u32"), st.integers(0, 10**6), st.sampled_from([0, 3, 5, 9, 12, 13, 99, 2**31, 2**32 - 1])),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
)


def mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, v in muts:
        if not b:
            break
        pos %= len(b)
        if kind == "flip":
            b[pos] ^= v
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b.insert(pos, v)
        else:
            n = 8 if kind == "u64" else 4
            b[pos:pos + n] = v.to_bytes(n, "little")[: len(b) - pos]
    return bytes(b)


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory):
    rng = np.random.default_rng()
    d = tmp_path_factory.mktemp("seeds")
    g = small_gguf(d, rng)
    s = d / "s.safetensors"
    write_safetensors(s, {"a": ("F32", (2, 3), np.ones(6, np.float32)), "b": ("BF16", (4,), np.zeros(8, np.uint8))},
                      {"k": "v"})
    return {"gguf": g, "safetensors": s.read_bytes(), "dir": d}


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(muts=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_gguf_mutations(fuzz_seeds, muts):
    path = fuzz_seeds["dir"] / "fz.gguf"
    path.write_bytes(mutate(fuzz_seeds["gguf"], muts))
    check_parse(read_gguf, str(path))


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(muts=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_safetensors_mutations(fuzz_seeds, muts):
    path = fuzz_seeds["dir"] / "fz.safetensors"
    path.write_bytes(mutate(fuzz_seeds["safetensors"], muts))
    check_parse(read_safetensors, str(path))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(n_tensors=st.integers(0, 2**64 - 1), n_kv=st.integers(0, 2**64 - 1), version=st.integers(0, 2**32 - 1),
       tail=st.binary(max_size=200))
def test_fuzz_gguf_headers(fuzz_seeds, n_tensors, n_kv, version, tail):
    path = fuzz_seeds["dir"] / "hdr.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + tail)
    check_parse(read_gguf, str(path))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                               ["dtype", "shape", "data_offsets", "w", "__metadata__", "F32", "BF16"]), c, max_size=4),
                           max_leaves=12), tail=st.binary(max_size=64))
def test_fuzz_safetensors_headers(fuzz_seeds, header, tail):
    text = json.dumps({"w": header} if not isinstance(header, dict) else header).encode()
    path = fuzz_seeds["dir"] / "hdr.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + tail)
    check_parse(read_safetensors, str(path))
