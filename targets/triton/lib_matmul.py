"""Launchers of kernels/triton/matmul.py: mul_mat's dequant+matmul super-kernel (GEMV form for one
column, tl.dot GEMM form otherwise) and out_prod. One column of 32-element block weights (q4_0 .. q8_0)
or q4_K runs a block GEMV (gemv_q32, gemv_q4k) with the autotuner's options (tuning.py: rows per program, blocks per
step, split-K, measured on the GPU and cached on disk); the rest use `tiles`."""
from __future__ import annotations

from graphc.codegen.lower import LibStep

from .library import Launch, LaunchCtx, launcher, pow2
from .tuning import Tunable

WEIGHTS = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "f32", "f16", "bf16")
FLOAT = ("f32", "f16", "bf16")


Q32 = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")


def tiles(cx: LaunchCtx, wtype: str, M: int, N: int, K: int) -> tuple[int, int, int]:
    """(BM, BN, BK) of the general kernel for a [M x K] weight times N columns. The interpreter runs a
    program's tile as numpy arrays, so there fewer, larger tiles are faster."""
    blk = 256 if wtype.endswith("_K") else 32
    if N == 1:
        if cx.device.mode == "interpret":
            return pow2(M, 16, 64), 1, pow2(K, blk, 512)
        return pow2(M, 1, 8), 1, pow2(K, blk, 256)
    return pow2(M, 16, 64), pow2(N, 16, 64), 32


def _block_gemv(st: LibStep, cx: LaunchCtx, M: int, K: int, batch: int) -> Tunable:
    """The block GEMV's options (gemv_q32, or gemv_q4k in 64-element chunks): rows per program, units
    (blocks / chunks) per step, split-K (f32 dst only), warps."""
    n, w, x = st.nodes[0], st.nodes[0].src[0], st.nodes[0].src[1]
    kernel, unit = ("gemv_q4k", 64) if w.type.name == "q4_K" else ("gemv_q32", 32)
    nblk = K // unit
    args = cx.tensor(st.dst) + cx.tensor(st.srcs[0]) + cx.tensor(st.srcs[1])
    consts = dict(WT=w.type.id, XT=x.type.id, DT=n.type.id)
    tun = Tunable(f"{kernel} {w.type.name} {M}x{K} b{batch} {x.type.name}->{n.type.name}")

    def option(bm: int, nb: int, split: int, warps: int) -> None:
        ls = []
        if split > 1:
            ls.append(Launch("lib", "zero_dst", (n.ne[1] * n.ne[2] * n.ne[3],), cx.tensor(st.dst),
                             dict(BLOCK=pow2(n.ne[0], 16, 1024))))
        ls.append(Launch("lib", kernel, ((M + bm - 1) // bm, split, batch), list(args),
                         dict(consts, BM=bm, NB=nb, SPLIT=split, num_warps=warps)))
        tun.options[f"bm{bm} nb{nb} split{split} warps{warps}"] = ls

    forced = cx.overrides
    splittable = n.type.name == "f32"
    if "gemv_split" in forced or "gemv_rows" in forced or cx.device.mode == "interpret":
        split = int(forced.get("gemv_split", 1)) if splittable else 1
        option(int(forced.get("gemv_rows", pow2(M, 16, 64))), 16, max(1, min(split, nblk)), 4)
        return tun
    # the default where nothing was measured: 4 rows of 256 elements a step; split K until the GPU has
    # about 512 programs (a 1024-row K/V projection of a 4096 input has 256 without)
    programs = (M + 3) // 4 * batch
    split = 1
    while splittable and programs * split < 512 and split < 8 and nblk // (split * 2) >= 8:
        split *= 2
    option(4, 8, split, 4)
    for bm in (2, 4, 8):
        for nb in (4, 8):
            for sp in (1, 2, 4, 8):
                if (sp == 1 or (splittable and nblk // sp >= nb)) and f"bm{bm} nb{nb} split{sp} warps4" \
                        not in tun.options:
                    option(bm, nb, sp, 4)
    return tun


@launcher("mul_mat")
def mul_mat(st: LibStep, cx: LaunchCtx) -> "list[Launch] | Tunable":
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
    if N == 1 and (wt in Q32 or wt == "q4_K"):
        return _block_gemv(st, cx, M, K, n.ne[2] * n.ne[3])
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
