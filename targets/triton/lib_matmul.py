"""Launchers of kernels/triton/matmul.py: mul_mat's dequant+matmul super-kernel (GEMV form for one
column, tl.dot GEMM form otherwise) and out_prod. Block sizes: `tiles` (the autotuner's cache, where it
has measured this shape on this GPU, else the defaults here)."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher, pow2

WEIGHTS = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "f32", "f16", "bf16")
FLOAT = ("f32", "f16", "bf16")


def tiles(cx: LaunchCtx, wtype: str, M: int, N: int, K: int) -> tuple[int, int, int]:
    """(BM, BN, BK) for a [M x K] weight times N columns. The interpreter runs a program's tile as numpy
    arrays, so there fewer, larger tiles are faster."""
    blk = 256 if wtype.endswith("_K") else 32
    if N == 1:
        if cx.device.mode == "interpret":
            return pow2(M, 16, 64), 1, pow2(K, blk, 512)
        return pow2(M, 1, 8), 1, pow2(K, blk, 256)
    return pow2(M, 16, 64), pow2(N, 16, 64), 32


@launcher("mul_mat")
def mul_mat(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    w, x = n.src[0], n.src[1]
    wt = w.type.name
    if wt not in WEIGHTS:
        raise cx.unsupported(st, f"{wt} weights")
    if x.type.name not in FLOAT or n.type.name not in FLOAT or w.ne[0] % w.type.blck or \
            (w.type.blck > 1 and w.nb[0] != w.type.size):
        raise cx.unsupported(st, f"{n.type.name} = {wt} x {x.type.name} with these strides")
    if w.ne[2] <= 0 or w.ne[3] <= 0 or n.ne[2] % w.ne[2] or n.ne[3] % w.ne[3]:
        raise cx.unsupported(st, "src0 does not broadcast over dst")
    if n.nelements == 0:
        return []
    M, N, K = n.ne[0], n.ne[1], w.ne[0]
    BM, BN, BK = tiles(cx, wt, M, N, K)
    grid = ((M + BM - 1) // BM, (N + BN - 1) // BN, n.ne[2] * n.ne[3])
    return [Launch("lib", "mul_mat", grid, cx.tensor(st.dst) + cx.tensor(st.srcs[0]) + cx.tensor(st.srcs[1]),
                   dict(WT=w.type.id, XT=x.type.id, DT=n.type.id, BM=BM, BN=BN, BK=BK, GEMV=N == 1))]


@launcher("out_prod")
def out_prod(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    n = st.nodes[0]
    a, b = n.src[0], n.src[1]
    if a.type.blck > 1 and a.nb[0] != a.type.size:
        raise cx.unsupported(st, f"{a.type.name} rows with gaps")
    return [Launch("lib", "out_prod", (n.ne[1] * n.ne[2] * n.ne[3],), cx.tensors(st),
                   dict(AT=a.type.id, BT=b.type.id, DT=n.type.id, BLOCK=pow2(n.ne[0], 16, 256)))]
