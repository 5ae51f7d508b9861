"""Rebuild the real-ggml fixture graphs (/work/shared/fixtures/ggml/<build>/<name>.json) with GraphBuilder.

Each tensor record (op name, op_params as raw int32 words, source names, ne/nb, view offsets) becomes
the matching builder call; the rebuilt tensor's type, ne, nb and view offset are then checked against
the record, so a wrong mapping fails here and not as a numeric mismatch later.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from graphc.builder import GraphBuilder
from graphc.ir import Graph, Tensor

# The shared fixtures sit beside the checkout (../shared); GRAPHC_FIXTURES overrides. Missing fixtures
# are an error, never a skip.
FIXTURES = Path(os.environ.get("GRAPHC_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ggml"))
if not FIXTURES.is_dir():
    raise FileNotFoundError(f"ggml fixtures not found at {FIXTURES}; set GRAPHC_FIXTURES")
BUILDS = ("2024-05-17-7cf94a2b", "2024-10-09-2327bda7", "0.15.3")
GRAPHS = ("mlp", "attn", "ffn_q4", "ffn_q8", "views")


def f32(word: int) -> float:
    """A float op_param from its IEEE bit pattern (stored as a signed int32)."""
    return struct.unpack("<f", struct.pack("<i", word))[0]


@dataclass
class Fixture:
    build: str
    name: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]     # every npz array, 4-D (ne3, ne2, ne1, ne0)
    graph: Graph

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return {n: self.arrays[n] for n in self.meta["inputs"]}

    @property
    def data_leafs(self) -> dict[str, np.ndarray]:
        """Weights and the initial state, as stored by ggml (quantized ones as raw uint8 blocks)."""
        return {n: self.arrays[n] for n in self.meta["weights"] + self.meta["state"]}

    def records(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.meta["tensors"]}


def available() -> list[tuple[str, str]]:
    return [(b, g) for b in BUILDS for g in GRAPHS if (FIXTURES / b / f"{g}.json").exists()]


def _node(g: GraphBuilder, rec: dict, made: dict[str, Tensor], build: str) -> Tensor:
    op, p, ne, nb = rec["op"], rec["op_params"], rec["ne"], rec["nb"]
    s = [made[n] if n is not None else None for n in rec["src"]]
    a = s[0] if s else None
    src = lambda i: s[i] if len(s) > i else None  # noqa: E731
    simple: dict[str, Callable[..., Tensor]] = {
        "ADD": g.add, "SUB": g.sub, "MUL": g.mul, "DIV": g.div, "MUL_MAT": g.mul_mat, "GET_ROWS": g.get_rows,
        "CPY": g.cpy, "CONT": g.cont, "TRANSPOSE": g.transpose, "SUM_ROWS": g.sum_rows, "MEAN": g.mean,
    }
    if op in simple:
        return simple[op](*[x for x in s if x is not None])
    if op == "VIEW":
        offset = (p[0] & 0xFFFFFFFF) | ((p[1] & 0xFFFFFFFF) << 32)
        return g.view_4d(a, *ne, *nb[1:], offset)
    if op == "RESHAPE":
        return g.reshape_4d(a, *ne)
    if op == "PERMUTE":
        return g.permute(a, *p[:4])
    if op == "SCALE":
        bias = f32(p[1])     # 0.15.3 stores {scale, bias}; older builds leave word 1 zero
        return g.scale_bias(a, f32(p[0]), bias) if bias else g.scale(a, f32(p[0]))
    if op == "REPEAT":
        return g.repeat_4d(a, *rec["ne"])
    if op == "CONCAT":
        dim = 2 if build.startswith("2024-05") else p[0]   # 2024-05 ggml_concat had no dim: always 2
        return g.concat(a, src(1), dim)
    if op == "DIAG_MASK_INF":
        return g.diag_mask_inf(a, p[0])
    if op == "SOFT_MAX":
        return g.soft_max_ext(a, src(1), scale=f32(p[0]), max_bias=f32(p[1]))
    if op in ("RMS_NORM", "NORM"):
        return (g.rms_norm if op == "RMS_NORM" else g.norm)(a, f32(p[0]))
    if op == "GROUP_NORM":
        return g.group_norm(a, p[0], f32(p[1]))
    if op == "ROPE":
        return g.rope_ext(a, src(1), src(2), n_dims=p[1], mode=p[2], n_ctx_orig=p[4], freq_base=f32(p[5]),
                          freq_scale=f32(p[6]), ext_factor=f32(p[7]), attn_factor=f32(p[8]),
                          beta_fast=f32(p[9]), beta_slow=f32(p[10]))
    if op == "UNARY":
        return g.unary(a, rec["unary_op"].lower())
    raise NotImplementedError(f"fixture op {op} has no builder mapping")


def _raw(values: np.ndarray, t: Tensor) -> np.ndarray:
    if values.dtype == np.uint8:     # quantized: ggml's raw blocks
        return np.ascontiguousarray(values).reshape(-1)
    return np.ascontiguousarray(values, dtype=t.type.np_dtype).reshape(-1).view(np.uint8)


def rebuild(build: str, name: str, with_data: bool = True) -> Fixture:
    """The fixture's graph rebuilt with GraphBuilder. with_data: weights and the initial state are put
    into the leafs' data (else they must be given to compile(weights=...))."""
    folder = FIXTURES / build
    meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    with np.load(folder / f"{name}.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    g = GraphBuilder(meta["graph"])
    made: dict[str, Tensor] = {}
    for rec in meta["tensors"]:
        if rec["kind"] == "leaf":
            t = g.new_tensor(rec["type"], rec["ne"], name=rec["name"])
            role = rec["role"]
            if role == "input":
                g.set_input(t)
            elif role == "weight":
                g.set_param(t)
            elif role == "state":
                g.set_state(t)
            if with_data and role in ("weight", "state"):
                t.data = _raw(arrays[rec["name"]], t)
        else:
            t = g.set_name(_node(g, rec, made, build), rec["name"])
            if rec["role"] == "output":
                g.set_output(t)
        _check(t, rec, made)
        made[rec["name"]] = t
    for n in meta["nodes"]:          # ggml's node order (it carries the kv_store -> kv_cache_read side effect)
        g.build_forward_expand(made[n])
    graph = g.build()
    extra = [t for t in graph.leafs if t.name not in made]   # shape givers made for repeat
    graph.leafs = [made[n] for n in meta["leafs"]] + extra
    assert [t.name for t in graph.nodes] == meta["nodes"], "node order differs from ggml's"
    return Fixture(build, name, meta, arrays, graph)


def _check(t: Tensor, rec: dict, made: dict[str, Tensor]) -> None:
    where = f"{rec['name']} ({rec['op']})"
    assert t.type.name == rec["type"], f"{where}: type {t.type.name} != {rec['type']}"
    assert list(t.ne) == rec["ne"], f"{where}: ne {list(t.ne)} != {rec['ne']}"
    assert list(t.nb) == rec["nb"], f"{where}: nb {list(t.nb)} != {rec['nb']}"
    if rec.get("view_src"):
        assert t.view_src is made[rec["view_src"]], f"{where}: views {t.view_src}, ggml says {rec['view_src']}"
        assert t.view_offs == rec["view_offs"], f"{where}: view offset {t.view_offs} != {rec['view_offs']}"
    else:
        assert t.view_src is None, f"{where}: is a view in graphc but not in ggml"
