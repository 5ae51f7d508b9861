"""Launchers of kernels/opencl/matmul.cl: mul_mat as a column preparation (8-bit quantization or rounding of
src1, once) plus a tiled dot-product kernel; out_prod."""
from __future__ import annotations

import numpy as np

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher

Q32 = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")
QK = ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K")
FLOAT = ("f32", "f16", "bf16")
NR, NC, LANES = 4, 8, 64       # kernels/opencl/matmul.cl: GC_MM_NR, GC_MM_NC, GC_MM_L (maxima)


def lanes(features) -> int:
    """Work-items per dot-product work-group. GPUs: LANES, reduced in local memory. CPU devices run a
    work-group's items as a loop, so one work-item per tile does the same work without the reduction and
    lets the compiler keep the tile in registers (measured on PoCL: f16 GEMM 1.5x, GEMV 1.4x faster)."""
    return 1 if features.kind == "cpu" else LANES


def _prepare_kind(wtype: str) -> tuple[int, int, int]:
    """(gc_mm_prepare's kind, elements per prepared block, its bytes) for weights of wtype."""
    if wtype in Q32:
        return (1 if wtype in ("q4_1", "q5_1") else 0), 32, 40
    if wtype in QK:
        return 2, 256, 292
    return {"f32": 3, "f16": 4, "bf16": 5}[wtype], 1, 4


@launcher("mul_mat")
def mul_mat(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    w, x = n.src[0], n.src[1]
    wt = w.type.name
    if wt not in Q32 + QK + FLOAT:
        raise cx.unsupported(st, f"{wt} weights")
    if n.type.name != "f32" or x.type.name not in FLOAT or w.nb[0] != w.type.size or w.ne[0] % w.type.blck:
        raise cx.unsupported(st, f"{n.type.name} = {wt} x {x.type.name} with these strides")
    if w.ne[2] <= 0 or w.ne[3] <= 0 or n.ne[2] % w.ne[2] or n.ne[3] % w.ne[3]:
        raise cx.unsupported(st, "src0 does not broadcast over dst")
    K = w.ne[0]
    kind, blck, nbytes = _prepare_kind(wt)
    col_bytes = (K // blck * nbytes + 63) // 64 * 64          # one prepared src1 column, 64-aligned
    ncols = x.ne[1] * x.ne[2] * x.ne[3]
    if ncols == 0 or n.nelements == 0:
        return []
    sbuf, soff = cx.scratch(col_bytes * ncols)
    L = cx.work_group(lanes(cx.features))
    prep = Launch("gc_mm_prepare", cx.tensor(st.srcs[1]) + [sbuf, soff, np.int32(kind), np.int64(col_bytes)],
                  (ncols * L,), (L,))
    nc = 1 if n.ne[1] == 1 else NC          # matmul.cl has kernels for these two tile widths
    groups = ((n.ne[0] + NR - 1) // NR, (n.ne[1] + nc - 1) // nc, n.ne[2] * n.ne[3])
    dot = Launch(f"gc_mm_{wt}_{nc}", cx.tensor(st.dst) + cx.tensor(st.srcs[0]) +
                 [sbuf, soff, np.int64(col_bytes)], (groups[0] * L, groups[1], groups[2]), (L, 1, 1))
    return [prep, dot]


@launcher("out_prod")
def out_prod(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a = n.src[0]
    if a.type.blck > 1 and a.nb[0] != a.type.size:
        raise cx.unsupported(st, f"{a.type.name} rows with gaps")
    L = cx.work_group(64)
    return [Launch("gc_out_prod", cx.slots(st), ((n.nelements + L - 1) // L * L,), (L,))]
