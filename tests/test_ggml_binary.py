"""The ggml binary graph export reader (frontends/ggml_binary.py) on the real fixture files.

Every .ggml fixture loads without hints, reports its layout and era, equals the graph that
tests/fixture_graph.py rebuilds from the .json, binds leaf data as views of the file mapping, and
reproduces ggml's stored results on ref. Damaged files give one ParseError naming the file and a byte
offset, never a crash, hang or large allocation.
"""
from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc
from graphc.compare import graph_diff
from graphc.errors import ParseError
from graphc.frontends import ggml_binary as gb
from graphc.frontends.ggml_enums import ERAS
from graphc.ir import Flag

import fixture_graph as fg
from test_fixtures import bound, configured, nmse

# 2024-05 files fit older eras too; test_era_hint_and_strict checks that loading them warns.
pytestmark = pytest.mark.filterwarnings("ignore:.*fits ggml eras that read it differently:UserWarning")

BUILDS = {"2024-05-17-7cf94a2b": ("v1 200/240", "4871e505", 200, 240),
          "2024-10-09-2327bda7": ("v2 204/244", "e5c233e5", 204, 244)}
CASES = [(b, g) for b in BUILDS for g in fg.GRAPHS]


def _path(build: str, name: str):
    return fg.FIXTURES / build / f"{name}.ggml"


def _raw(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr).tobytes()


def test_every_export_fixture_is_present():
    assert all(_path(b, g).exists() for b, g in CASES)


@pytest.mark.parametrize("build,name", CASES)
def test_fixture_loads_and_equals_the_json_graph(build, name):
    layout, commit, leaf_bytes, node_bytes = BUILDS[build]
    f = fg.rebuild(build, name)
    g, info = gb.load_with_info(_path(build, name))
    assert info.layout == layout and info.n_leafs == len(f.meta["leafs"]) and info.n_nodes == len(f.meta["nodes"])
    assert f.meta["export"]["leaf_record_bytes"] == leaf_bytes and f.meta["export"]["node_record_bytes"] == node_bytes
    assert any(commit in e for e in info.eras), info.eras     # the writer's own enum tables are among the matches
    assert info.era == info.eras[-1]
    if build.startswith("2024-10"):                           # v2 has flags: equal with no hints at all
        assert graph_diff(g, f.graph) is None, graph_diff(g, f.graph)
    hinted, _ = gb.load_with_info(_path(build, name), inputs=f.meta["inputs"], outputs=f.meta["outputs"])
    assert graph_diff(hinted, f.graph) is None, graph_diff(hinted, f.graph)
    # the same wiring either way; without hints v1 follows the documented role rule
    users = g.consumers()
    for t, h in zip(g.tensors(), hinted.tensors()):
        if t.is_leaf and t.name in f.meta["state"]:
            assert t.flags == Flag.STATE
        elif build.startswith("2024-05") and t.is_leaf:
            assert t.flags == Flag.PARAM and t.data is not None
        elif build.startswith("2024-05"):
            assert bool(t.flags & Flag.OUTPUT) == (not users[t] or t is g.nodes[-1]), t.name
        t.flags, t.data = h.flags, h.data
    assert graph_diff(g, f.graph) is None
    assert graphc.load_graph(_path(build, name)).nodes[-1].name == f.meta["nodes"][-1]   # via the registry


@pytest.mark.parametrize("build,name", CASES)
def test_leaf_data_is_the_npz_bytes_and_maps_the_file(build, name):
    f = fg.rebuild(build, name, with_data=False)
    g, info = gb.load_with_info(_path(build, name))
    assert isinstance(info.mapping, np.memmap) and len(info.mapping) == os.path.getsize(_path(build, name))
    for leaf in g.leafs:
        d = info.leaf_data[leaf.name]
        assert d.dtype == np.uint8 and d.nbytes == leaf.nbytes
        assert d.tobytes() == _raw(f.arrays[leaf.name]), leaf.name
        assert np.shares_memory(d, info.mapping)
        if leaf.flags & (Flag.PARAM | Flag.STATE):
            assert leaf.data is not None and np.shares_memory(leaf.data, info.mapping)


@pytest.mark.parametrize("build,name", CASES)
def test_compiled_export_reproduces_ggml(build, name):
    f = fg.rebuild(build, name, with_data=False)
    g, info = gb.load_with_info(_path(build, name), inputs=f.meta["inputs"], outputs=f.meta["outputs"])
    g, opts = configured(g, "ggml")
    m = graphc.compile(g, target="ref", passes=False, **opts)   # intermediates are read
    inputs = {n: info.leaf_data[n].view(g.get(n).type.np_dtype).reshape(g.get(n).shape) for n in f.meta["inputs"]}
    out = m.run(inputs)
    assert set(f.meta["outputs"]) <= set(out)
    bad = [f"{n}: {nmse(m.read(n), f.arrays[n], n):.3g}" for n in f.meta["nodes"]
           if not nmse(m.read(n), f.arrays[n], n) <= bound(build, name, n, "ggml")]
    assert not bad, bad


def test_views_kv_cache_is_state_written_by_cpy():
    g = gb.load(_path("2024-10-09-2327bda7", "views"))
    cache = g.get("kv_cache")
    assert cache.flags == Flag.STATE and g.get("kv_store").view_src is cache and g.get("kv_store").view_offs == 384
    assert g.get("kv_cache_read").view_src is cache and g.get("rows_view").view_src is g.get("rows")
    assert g.get("mat_t").view_src is g.get("mat")


def test_era_hint_and_strict():
    p = _path("2024-05-17-7cf94a2b", "mlp")
    with pytest.warns(UserWarning, match="fits ggml eras that read it differently; took the newest"):
        g, info = gb.load_with_info(p)
    # GELU is unary id 8 from 2024-05-01; before, id 8 was GELU_QUICK: the bytes fit both readings
    assert info.alternatives and "gelu_quick" in " ".join(info.alternatives)
    assert g.get("h").params == {"op": "gelu", "table": False}
    old, old_info = gb.load_with_info(p, era="04848e2c")
    assert old.get("h").params == {"op": "gelu_quick", "table": False} and "04848e2c" in old_info.era
    with pytest.raises(ParseError, match=r"mlp.ggml at byte 24: the file fits ggml eras that read it differently"):
        gb.load(p, strict=True)
    with pytest.raises(ParseError, match=r"no known ggml era 'ffffff'"):
        gb.load(p, era="ffffff")
    with pytest.raises(ParseError, match="no tensor named 'nope'"):
        gb.load(p, inputs=["nope"])


def test_enum_tables_match_the_fixture_writers():
    import json
    for build, (_, commit, _, _) in BUILDS.items():
        enums = json.loads((fg.FIXTURES / build / "mlp.json").read_text())["enums"]
        era = next(e for e in ERAS if e.commit == commit)
        assert list(era.ops) == enums["op"] and list(era.unary) == enums["unary_op"]
        want = {t["id"]: t["name"].lower() for t in enums["type"] if t["blck_size"]}
        assert set(era.types) == set(want)
        assert all(era.types[i].lower() == want[i] for i in want if i <= 30)   # later ones are spelt 4x4 vs 4_4


# --- damaged files ------------------------------------------------------------------------

def _bytes(build: str, name: str) -> bytes:
    return _path(build, name).read_bytes()


def _check_damaged(data: bytes, where: str) -> str:
    """Load `data` from a file: a valid graph or one ParseError naming the file and a byte offset; memory
    stays far below what huge counts or dims would need."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "damaged.ggml")
        with open(p, "wb") as fh:
            fh.write(data)
        tracemalloc.start()
        try:
            graphc.verify(gb.load(p))
            result = "ok"
        except ParseError as e:
            assert e.file == p and str(e).startswith(p), (where, str(e))
            assert e.offset is not None and 0 <= e.offset <= len(data), (where, str(e))
            result = str(e)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 16 * len(data) + (4 << 20), (where, peak)
    return result


def _record_offsets(build: str, name: str) -> list[int]:
    _, info = gb.load_with_info(_path(build, name))
    layout = next(e for e in ERAS if e.name == info.era).layout
    out, pos = [gb.HEADER], gb.HEADER
    f = fg.rebuild(build, name)
    for t in f.graph.leafs[:info.n_leafs]:
        pos += layout.leaf_bytes
        out.append(pos)
        pos += t.nbytes
        out.append(pos)
    for _ in f.graph.nodes:
        pos += layout.node_bytes
        out.append(pos)
    assert pos == len(_bytes(build, name))
    return out


@pytest.mark.parametrize("build", BUILDS)
def test_truncated_files(build, rng):
    data = _bytes(build, "views")
    cuts = set(_record_offsets(build, "views")) | {int(x) for x in rng.integers(0, len(data), 20)} | {0, 3, 23}
    for cut in sorted(c for c in cuts if c < len(data)):
        msg = _check_damaged(data[:cut], f"cut at {cut}")
        assert msg != "ok", cut
    assert "records end at byte" in _check_damaged(data + b"\0", "one byte extra")


def _u32(data: bytes, at: int, value: int, fmt: str = "<I") -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


@pytest.mark.parametrize("build", BUILDS)
def test_named_damage_gives_a_clear_error(build):
    data = _bytes(build, "views")
    layout = next(e for e in ERAS if e.commit == BUILDS[build][1]).layout
    n_leafs, n_nodes = struct.unpack_from("<II", data, 8)
    leaf0, dims = gb.HEADER, 8 + 4 * layout.flags
    node0 = _record_offsets(build, "views")[2 * n_leafs]
    src0 = node0 + layout.leaf_bytes
    cases = {
        "magic": (_u32(data, 0, 0x12345678), r"at byte 0: not a ggml graph export"),
        "version": (_u32(data, 4, 7), r"at byte 4: file version 7"),
        "huge n_leafs": (_u32(data, 8, 0xFFFFFFFF), r"at byte 8: header claims"),
        "huge n_nodes": (_u32(data, 12, 0x7FFFFFFF), r"at byte 8: header claims"),
        "no nodes": (_u32(data, 12, 0), r"at byte 12: the graph has no nodes"),
        "fewer nodes": (_u32(data, 12, n_nodes - 1), r"records end at byte"),
        "unknown type": (_u32(data, leaf0, 99), r"unknown type id 99"),
        "leaf with op": (_u32(data, leaf0 + 4, 3), r"a leaf must have op NONE"),
        "unknown op": (_u32(data, node0 + 4, 250), r"unknown op id 250"),
        "huge ne": (_u32(data, leaf0 + dims, 1 << 62, "<Q"), r"exceed .* elements|run past the end"),
        "huge nb": (_u32(data, leaf0 + dims + 8, 1 << 60, "<Q"), r"strides .* out of range"),
        "src out of range": (_u32(data, src0, 10**6, "<i"), r"source 0 index 1000000 is out of range"),
        "src negative": (_u32(data, src0, -5, "<i"), r"source 0 index -5 is out of range"),
        "forward reference": (_u32(data, src0, n_leafs + 3, "<i"), r"not an earlier node"),
        "self reference": (_u32(data, src0 + 4 * layout.max_src * 0, n_leafs, "<i"), r"not an earlier node"),
        "name without NUL": (data[:leaf0 + dims + 64] + b"x" * 64 + data[leaf0 + dims + 128:], r"not NUL-terminated"),
        "size_eval lie": (_u32(data, 16, 1 << 63, "<Q"), None),
    }
    for what, (bad, pattern) in cases.items():
        msg = _check_damaged(bad, what)
        if pattern is None:
            assert msg == "ok", (what, msg)      # size_eval is a memory hint only: never trusted
        else:
            import re
            assert re.search(pattern, msg), (what, msg)


def test_wrong_shape_is_reported_with_the_node():
    data = _bytes("2024-10-09-2327bda7", "mlp")
    n_leafs = struct.unpack_from("<I", data, 8)[0]
    node0 = _record_offsets("2024-10-09-2327bda7", "mlp")[2 * n_leafs]
    bad = _u32(data, node0 + 12 + 8, 5, "<Q")        # nb0 of node 0
    msg = _check_damaged(bad, "nb0")
    assert f"at byte {node0}: node 0 ('W1_x'" in msg and "the file says" in msg, msg


MUTABLE = [(b, g) for b in BUILDS for g in ("mlp", "views")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(MUTABLE), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                     min_size=1, max_size=4),
       header_bias=st.booleans())
def test_fuzz_byte_mutations(case, edits, header_bias):
    data = bytearray(_bytes(*case))
    limit = min(len(data), 2048) if header_bias else len(data)   # records and counts live near the start
    for frac, value in edits:
        data[min(int(frac * limit), len(data) - 1)] = value
    _check_damaged(bytes(data), f"{case} {edits}")


def test_systematic_field_mutations():
    """Every 4-byte word of every record header of one file set to a few hostile values."""
    data = _bytes("2024-10-09-2327bda7", "views")
    offsets = _record_offsets("2024-10-09-2327bda7", "views")
    n_leafs = struct.unpack_from("<I", data, 8)[0]
    starts = [0] + offsets[0:2 * n_leafs:2] + offsets[2 * n_leafs:-1]
    tried = 0
    for s in starts[:5]:
        for at in range(s, min(s + 96, len(data) - 4), 4):
            for v in (0xFFFFFFFF, 1):
                _check_damaged(_u32(data, at, v), f"word at {at} = {v:#x}")
                tried += 1
    assert tried > 200
