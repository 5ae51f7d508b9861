"""Launchers of kernels/triton/data.py: copies, gathers, scatters and shape ops, one program per row."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher, pow2

Q32 = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")


def _rows(t) -> int:
    return t.ne[1] * t.ne[2] * t.ne[3]


def _block(n: int) -> int:
    return pow2(n, 16, 1024)


@launcher("get_rows")
def get_rows(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a, b = n.src[0], n.src[1]
    if n.type.blck > 1:
        raise cx.unsupported(st, f"get_rows into {n.type.name}")
    return [Launch("lib", "get_rows", (_rows(n),), cx.tensors(st),
                   dict(DT=n.type.id, AT=a.type.id, IT=b.type.id, BLOCK=_block(n.ne[0])))]


@launcher("set_rows")
def set_rows(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    b, c = n.src[1], n.src[2]
    if n.type.blck > 1 and n.type.name not in Q32:
        raise cx.unsupported(st, f"set_rows into {n.type.name}")
    args = cx.tensor(st.dst) + cx.tensor(st.srcs[1]) + cx.tensor(st.srcs[2])
    if n.type.blck > 1:
        block, rows = _block(b.ne[0] // 32), 1
    else:                                      # short rows (a transposed V cache's are 1 element): many per program
        block = pow2(b.ne[0], 1, 1024)
        rows = max(1, min(256, 1024 // block))
    return [Launch("lib", "set_rows", ((_rows(b) + rows - 1) // rows,), args,
                   dict(DT=n.type.id, BT=b.type.id, CT=c.type.id, BLOCK=block, ROWS=rows))]


def _copy(st: LibStep, cx: LaunchCtx, dst_row: int, src_row: int) -> Launch:
    n = st.nodes[0]
    a = n.src[0]
    width = n.type.row_bytes(n.ne[0]) if a.type.blck > 1 else (n.ne[0] // 32 if n.type.blck > 1 else n.ne[0])
    return Launch("lib", "copy_convert", (_rows(n),), cx.tensor(dst_row) + cx.tensor(src_row),
                  dict(DT=n.type.id, AT=a.type.id, BLOCK=_block(width)))


@launcher("cpy", "dup", "cont")
def copy_convert(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a = n.src[0]
    if a.type.blck > 1 and a.type != n.type:
        raise cx.unsupported(st, f"{a.type.name} to {n.type.name}")
    if n.type.blck > 1 and a.type != n.type and n.type.name not in Q32:
        raise cx.unsupported(st, f"quantizing to {n.type.name}")
    return [_copy(st, cx, st.dst, st.srcs[0])]


@launcher("set")
def set_(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    b = n.src[1]
    out = []
    da, aa = cx.low.args[st.dst], cx.low.args[st.srcs[0]]
    if (da.buf, da.offset) != (aa.buf, aa.offset):          # not in place: dst = a first
        out.append(_copy(st, cx, st.dst, st.srcs[0]))
    p = st.params
    block = 256
    args = cx.tensor(st.dst) + cx.tensor(st.srcs[1]) + [int(p["offset"]), int(p["nb1"]), int(p["nb2"]),
                                                        int(p["nb3"])]
    out.append(Launch("lib", "set_values", ((b.nelements + block - 1) // block,), args,
                      dict(DT=n.type.id, BT=b.type.id, BLOCK=block)))
    return out


@launcher("concat")
def concat(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    dim = int(st.params.get("dim", 0))
    return [Launch("lib", "concat", (_rows(n),), cx.tensors(st),
                   dict(dim=dim, DT=n.type.id, BLOCK=_block(n.ne[0] // n.type.blck)))]


@launcher("pad")
def pad(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    lp = [int(v) for v in st.params.get("lp", (0, 0, 0, 0))]
    return [Launch("lib", "pad", (_rows(n),), cx.tensors(st) + lp,
                   dict(DT=n.type.id, AT=n.src[0].type.id, BLOCK=_block(n.ne[0])))]


@launcher("repeat")
def repeat(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    if n.src[0].nelements == 0:
        return []
    if n.type.blck > 1:
        raise cx.unsupported(st, f"repeat of {n.type.name}")
    return [Launch("lib", "repeat", (_rows(n),), cx.tensor(st.dst) + cx.tensor(st.srcs[0]),
                   dict(DT=n.type.id, AT=n.src[0].type.id, BLOCK=_block(n.ne[0])))]


@launcher("arange")
def arange(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    block = 256
    return [Launch("lib", "arange", ((n.ne[0] + block - 1) // block,),
                   cx.tensor(st.dst) + [float(st.params["start"]), float(st.params["step"])],
                   dict(DT=n.type.id, BLOCK=block))]


@launcher("diag_mask_inf", "diag_mask_zero")
def diag_mask(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a = n.src[0]
    value = float("-inf") if st.op == "diag_mask_inf" else 0.0
    return [Launch("lib", "diag_mask", (_rows(a),), cx.tensor(st.dst) + cx.tensor(st.srcs[0]) +
                   [int(st.params["n_past"]), value], dict(DT=n.type.id, AT=a.type.id, BLOCK=_block(a.ne[0])))]
