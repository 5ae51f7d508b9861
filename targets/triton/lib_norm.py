"""Launchers of kernels/triton/norm.py: row reductions and normalisations, one program per row."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher, pow2

NORM_KIND = {"norm": 0, "rms_norm": 1, "l2_norm": 2}


def _rows(t) -> int:
    return t.ne[1] * t.ne[2] * t.ne[3]


def _block(n: int) -> int:
    return pow2(n, 16, 1024)


@launcher("norm", "rms_norm", "l2_norm")
def norm(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n, a = st.nodes[0], st.nodes[0].src[0]
    return [Launch("lib", "norm_rows", (_rows(a),), cx.tensors(st) + [float(st.params["eps"])],
                   dict(KIND=NORM_KIND[st.op], DT=n.type.id, AT=a.type.id, BLOCK=_block(a.ne[0])))]


@launcher("sum_rows", "mean")
def row_sum(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n, a = st.nodes[0], st.nodes[0].src[0]
    return [Launch("lib", "row_sum", (_rows(a),), cx.tensors(st),
                   dict(MEAN=int(st.op == "mean"), DT=n.type.id, AT=a.type.id, BLOCK=_block(a.ne[0])))]


@launcher("sum")
def sum_(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n, a = st.nodes[0], st.nodes[0].src[0]
    return [Launch("lib", "sum_all", (1,), cx.tensors(st),
                   dict(DT=n.type.id, AT=a.type.id, BLOCK=_block(a.nelements)))]


@launcher("argmax")
def argmax(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    a = st.nodes[0].src[0]
    return [Launch("lib", "argmax", (a.ne[1],), cx.tensors(st), dict(AT=a.type.id, BLOCK=_block(a.ne[0])))]


@launcher("group_norm")
def group_norm(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n, a = st.nodes[0], st.nodes[0].src[0]
    G = max(1, int(st.params.get("n_groups", 1)))
    per = (a.ne[2] + G - 1) // G
    ngr = (a.ne[2] + per - 1) // per if per > 0 else 0
    return [Launch("lib", "group_norm", (ngr * a.ne[3],), cx.tensors(st) + [float(st.params["eps"]), per, max(ngr, 1)],
                   dict(DT=n.type.id, AT=a.type.id, BLOCK=_block(a.ne[0] * a.ne[1] * per)))]


@launcher("soft_max")
def soft_max(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a = n.src[0]
    mask = n.src[1] if len(n.src) > 1 else None
    sinks = n.src[2] if len(n.src) > 2 else None
    args = cx.tensor(st.dst) + cx.tensor(st.srcs[0])
    args += cx.tensor(st.srcs[1] if mask is not None else None)
    args += cx.tensor(st.srcs[2] if sinks is not None else None)
    args += [float(st.params.get("scale", 1.0)), float(st.params.get("max_bias", 0.0))]
    return [Launch("lib", "soft_max", (_rows(a),), args,
                   dict(DT=n.type.id, AT=a.type.id, MT=cx.type_of(mask), ST=cx.type_of(sinks),
                        HAS_MASK=mask is not None, HAS_SINKS=sinks is not None, BLOCK=_block(a.ne[0])))]
