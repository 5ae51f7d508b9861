"""Every supported op case in ONE graph (disjoint subgraphs, names prefixed by the case number), so one
C translation unit covers the whole op table: built once with -Werror, once under ASan+UBSan."""
from __future__ import annotations

import numpy as np

from graphc.ir import Graph
from op_cases import CASES, build_graph, prepare


# weight types the C library's mul_mat takes (kernels/c/matmul.h gc_mm_kind); others are declined at load
C_MUL_MAT_TYPES = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}


def c_cases(supported) -> list:
    """The op cases the C target runs."""
    out = []
    for c in CASES:
        g, _ = build_graph(c)
        if supported(g) and all(n.src[0].type.name in C_MUL_MAT_TYPES for n in g.nodes if n.op == "mul_mat"):
            out.append(c)
    return out


def prefixed(i: int, name: str) -> str:
    return f"c{i}.{name}"[:63]


def union(cases: list) -> Graph:
    leafs, nodes = [], []
    for i, c in enumerate(cases):
        g = build_graph(c)[0].copy()
        for t in g.tensors():
            t.name = prefixed(i, t.name)
        leafs += g.leafs
        nodes += g.nodes
    return Graph("op-union", leafs, nodes)


def union_feeds(cases: list, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    """Feeds of the union graph, and each case's own feeds."""
    per_case, feeds = [], {}
    for i, c in enumerate(cases):
        g, _ = build_graph(c)
        own = {k: v.feed for k, v in prepare(c, rng).items() if k in g}
        per_case.append(own)
        feeds.update({prefixed(i, k): v for k, v in own.items()})
    return feeds, per_case
