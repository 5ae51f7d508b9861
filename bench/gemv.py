"""C-target mul_mat benchmark: graphc's kernels (kernels/c/matmul.h) vs ggml (ggml-python) vs numpy.

    python bench/gemv.py [--quick] [--threads N]

GEMV (1 column) for q4_0, q8_0, q4_K weights at 4096x4096 and 11008x4096, rotating through enough
matrices to exceed the L3 cache twice, reported as GB/s of weights read next to the measured copy
bandwidth; GEMM (256 and 512 columns) as GFLOP/s. graphc's kernel runs in a small C harness: one OpenMP
parallel region per mul_mat whose threads call gc_op_mul_mat(ith, nth), as the generated driver does.
bench/run.py calls section() to put these rows into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import N_THREADS, best_time, copy_bandwidth, matrices_for  # noqa: E402

from graphc import quants  # noqa: E402
from graphc.types import get_type  # noqa: E402

ROUNDS = 5
KERNELS = Path(__file__).resolve().parent.parent / "kernels" / "c"
HARNESS = r"""
#include <stdlib.h>
#include <omp.h>
#include "matmul.h"
static int gc_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/* median seconds per mul_mat over reps calls rotating through the nw weight tensors (the median, as
 * bench/run.py's best_time uses for ggml: robust on a shared machine) */
double gc_bench(const gc_tensor *ws, int nw, const gc_tensor *x, const gc_tensor *dst, int nth, int reps,
                void **scratch, size_t scratch_size) {
    static _Alignas(64) int work[16];
    gc_ctx ctx = {nth, scratch, scratch_size, work};
    double *t = malloc(sizeof(double) * (size_t)reps), med;
    for (int r = -nw; r < reps; r++) {             /* one untimed pass over every matrix first */
        const gc_tensor *src[2] = {&ws[(r + nw) % nw], x};
        double t0 = omp_get_wtime();
        #pragma omp parallel num_threads(nth)
        gc_op_mul_mat(&ctx, dst, src, 0, omp_get_thread_num(), nth);
        if (r >= 0) t[r] = omp_get_wtime() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), gc_cmp);
    med = t[reps / 2];
    free(t);
    return med;
}
size_t gc_bench_scratch(const gc_tensor *w, const gc_tensor *x, const gc_tensor *dst) {
    const gc_tensor *src[2] = {w, x};
    return gc_scratch_mul_mat(dst, src, 0);
}
"""


class GcTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_int64 * 4),
                ("type", ctypes.c_int32)]


def tensor(ptr: int, type_id: int, ne: tuple, nb0: int, row_bytes: int) -> GcTensor:
    t = GcTensor()
    t.data = ptr
    ne = tuple(ne) + (1,) * (4 - len(ne))
    t.ne[:] = ne
    t.nb[:] = [nb0, row_bytes, row_bytes * ne[1], row_bytes * ne[1] * ne[2]]
    t.type = type_id
    return t


_LIB = None


def march() -> str:
    """The -march graphc's kernels are built for here: GRAPHC_BENCH_MARCH (bench/isa.py sets it per ISA tier)."""
    return os.environ.get("GRAPHC_BENCH_MARCH", "native")


def harness():
    """Compile the harness once (-O3 -march=<march()> -fopenmp) and load it."""
    global _LIB
    if _LIB is None:
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise RuntimeError("no C compiler for the C-target benchmark")
        d = Path(tempfile.mkdtemp(prefix="graphc-bench-"))
        (d / "h.c").write_text(HARNESS)
        subprocess.run([cc, "-O3", f"-march={march()}", "-fopenmp", "-fPIC", "-shared", f"-I{KERNELS}",
                        str(d / "h.c"), "-o", str(d / "h.so"), "-lm"], check=True)
        lib = ctypes.CDLL(str(d / "h.so"))
        lib.gc_bench.restype = ctypes.c_double
        lib.gc_bench.argtypes = [ctypes.POINTER(GcTensor), ctypes.c_int, ctypes.POINTER(GcTensor),
                                 ctypes.POINTER(GcTensor), ctypes.c_int, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.gc_bench_scratch.restype = ctypes.c_size_t
        lib.gc_bench_scratch.argtypes = [ctypes.POINTER(GcTensor)] * 3
        _LIB = lib
    return _LIB


def graphc_time(raws: list[np.ndarray], wtype: str, K: int, N: int, x: np.ndarray, reps: int) -> float:
    """Seconds per graphc mul_mat(W, x) for x (M, K) f32, rotating through raws. Weights graphc re-lays out
    at load (targets/c/repack.py: q4_0, q4_K, q6_K in 8-row groups) are timed in that layout, as the C
    target runs them."""
    from graphc.targets.c import repack
    lib = harness()
    t = get_type(wtype)
    M = x.shape[0]
    rb = t.row_bytes(K)
    type_id, mats = t.id, raws
    if wtype in repack.C_TYPE and N % 8 == 0:
        type_id, mats = repack.C_TYPE[wtype], [repack.RELAYOUT[wtype](r, N, K) for r in raws]
    ws = (GcTensor * len(raws))(*[tensor(r.ctypes.data, type_id, (K, N), t.size, rb) for r in mats])
    xt = tensor(x.ctypes.data, 0, (K, M), 4, 4 * K)
    out = np.empty((M, N), np.float32)
    dt = tensor(out.ctypes.data, 0, (N, M), 4, 4 * N)
    size = lib.gc_bench_scratch(ws[0], xt, dt)
    bufs = [np.empty(size + 64, np.uint8) for _ in range(N_THREADS)]
    ptrs = (ctypes.c_void_p * N_THREADS)(*[b.ctypes.data for b in bufs])
    s = lib.gc_bench(ws, len(raws), xt, dt, N_THREADS, reps, ptrs, size)
    # the result must be right, not just fast
    y = quants.mul_mat_quant(raws[(reps - 1) % len(raws)][: min(N, 64)], t, x[: min(M, 8)])
    ref = out[: min(M, 8), : min(N, 64)]
    err = float(np.sum((ref - y) ** 2) / np.sum(y.astype(np.float64) ** 2))
    if not err <= 1e-10:
        raise AssertionError(f"graphc {wtype} mul_mat result is wrong (nmse {err:.3g})")
    return s


def ggml_time(raws: list[np.ndarray], wtype: str, K: int, N: int, x: np.ndarray, repeat: int) -> float:
    """Seconds per mul_mat(W, x) in real ggml (ggml-python), rotating through raws, N_THREADS threads."""
    import ggml as gg
    t = get_type(wtype)
    M = x.shape[0]
    size = sum(r.size for r in raws) + x.nbytes * (1 + len(raws)) + 4 * N * M * len(raws) + (64 << 20)
    ctx = gg.ggml_init(gg.ggml_init_params(mem_size=size, mem_buffer=None))
    try:
        xs = gg.ggml_new_tensor_2d(ctx, 0, K, M)
        ctypes.memmove(gg.ggml_get_data(xs), x.ctypes.data, x.nbytes)
        graphs = []
        for raw in raws:
            w = gg.ggml_new_tensor_2d(ctx, t.id, K, N)
            ctypes.memmove(gg.ggml_get_data(w), raw.ctypes.data, raw.nbytes)
            gf = gg.ggml_new_graph(ctx)
            gg.ggml_build_forward_expand(gf, gg.ggml_mul_mat(ctx, w, xs))
            graphs.append(gf)
        state = {"i": 0}

        def one():
            gg.ggml_graph_compute_with_ctx(ctx, graphs[state["i"] % len(graphs)], N_THREADS)
            state["i"] += 1
        return best_time(one, repeat * len(graphs))
    finally:
        gg.ggml_free(ctx)


def weights(rng, wtype: str, N: int, K: int, count: int) -> list[np.ndarray]:
    """`count` distinct matrices (quantizing is slow in numpy: make two, then perturb bytes). Types graphc
    has no quantizer for (q2_K, q3_K, q5_K) get random blocks with sane f16 scales (a speed test)."""
    base = [_random_matrix(rng, wtype, N, K) for _ in range(min(2, count))]
    out = []
    for i in range(count):
        r = base[i % len(base)].copy()
        if i >= len(base):                  # distinct memory with the same value statistics
            r = np.roll(r, i, axis=0)
        out.append(r)
    return out


def _random_matrix(rng, wtype: str, N: int, K: int) -> np.ndarray:
    t = get_type(wtype)
    if not t.is_quantized or wtype in quants._QUANTIZERS:
        return quants.quantize(rng.standard_normal((N, K), dtype=np.float32), wtype)
    nb = N * K // t.blck
    raw = rng.integers(0, 256, (nb, t.size), dtype=np.uint8)
    for o in {"q2_K": (80, 82), "q3_K": (108,), "q5_K": (0, 2)}[wtype]:
        raw[:, o:o + 2] = np.frombuffer(rng.uniform(1e-3, 1e-2, nb).astype(np.float16).tobytes(),
                                        np.uint8).reshape(nb, 2)
    return raw.reshape(N, -1)


GEMV_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "f16", "bf16")
GEMM_TYPES = ("f16", "q4_0", "q8_0", "q4_K", "q6_K")


def gemv_rows(K: int, N: int, repeat: int, rng, types: tuple = GEMV_TYPES) -> list[dict]:
    x = rng.standard_normal((1, K), dtype=np.float32)
    rows = []
    mats = [rng.standard_normal((N, K), dtype=np.float32) for _ in range(matrices_for(N * K * 4))]
    it = iter(range(1 << 30))
    t_np = best_time(lambda: mats[next(it) % len(mats)] @ x[0], repeat * len(mats))
    rows.append({"shape": f"{N}x{K}", "wtype": "f32", "impl": "numpy", "bytes": N * K * 4, "s": t_np})
    mats.clear()                            # free the f32 matrices before the quantized ones
    for wtype in types:
        nb = N * get_type(wtype).row_bytes(K)
        raws = weights(rng, wtype, N, K, matrices_for(nb))
        # alternate the two, ROUNDS times, and keep each one's best median: other processes on a shared
        # 2-core machine stall a 2-thread barrier for a scheduler tick, and that must not decide the ratio
        t_gg = t_gc = float("inf")
        for _ in range(ROUNDS):
            try:
                t_gg = min(t_gg, ggml_time(raws, wtype, K, N, x, repeat))
            except ImportError:
                t_gg = float("nan")
            t_gc = min(t_gc, graphc_time(raws, wtype, K, N, x, repeat * len(raws)))
        for impl, s in (("ggml", t_gg), ("graphc C", t_gc)):
            rows.append({"shape": f"{N}x{K}", "wtype": wtype, "impl": impl, "bytes": nb, "s": s})
    return rows


def gemm_rows(K: int, N: int, cols: tuple, repeat: int, rng) -> list[dict]:
    rows = []
    for M in cols:
        x = rng.standard_normal((M, K), dtype=np.float32)
        w32 = rng.standard_normal((N, K), dtype=np.float32)
        t_np = best_time(lambda: w32 @ x.T, repeat)  # noqa: B023 -- best_time calls it before the loop moves on
        rows.append({"shape": f"{N}x{K} x {M} cols", "wtype": "f32", "impl": "numpy", "flop": 2 * N * K * M, "s": t_np})
        for wtype in GEMM_TYPES:
            raws = weights(rng, wtype, N, K, 1)
            t_gg = t_gc = float("inf")
            for _ in range(2):
                try:
                    t_gg = min(t_gg, ggml_time(raws, wtype, K, N, x, repeat))
                except ImportError:
                    t_gg = float("nan")
                t_gc = min(t_gc, graphc_time(raws, wtype, K, N, x, repeat))
            for impl, s in (("ggml", t_gg), ("graphc C", t_gc)):
                rows.append({"shape": f"{N}x{K} x {M} cols", "wtype": wtype, "impl": impl,
                             "flop": 2 * N * K * M, "s": s})
    return rows


def measure(quick: bool, bw: float | None = None) -> dict:
    """GEMV and GEMM rows; `bw`: the copy bandwidth when the caller has measured it already."""
    rng = np.random.default_rng()
    rep = 3 if quick else 10
    # every type at 4096x4096; the types of LLaMA-shaped q4_0 / Q4_K_M models at the FFN shape too
    shapes = [(4096, 4096, GEMV_TYPES)] + ([] if quick else [(4096, 11008, ("q4_0", "q8_0", "q4_K", "q6_K"))])
    load0 = os.getloadavg()[0]
    res = {"bw": bw if bw is not None else copy_bandwidth(rep),
           "gemv": [r for K, N, types in shapes for r in gemv_rows(K, N, rep, rng, types)],
           "gemm": gemm_rows(4096, 4096, (256,), 2 if quick else 3, rng)}
    res["load"] = (load0, os.getloadavg()[0])
    res["march"] = march()
    return res


def _load_note(res: dict) -> str:
    """Other processes on the cores stall a 2-thread mul_mat for a scheduler tick: say how busy it was."""
    if "load" not in res:
        return ""
    a, b = res["load"]
    return (f" Load average (1 min): {a:.2f} before, {b:.2f} after these measurements (they add about "
            f"{N_THREADS} themselves; more means other processes shared the cores and the times are noisy).")


def section(res: dict, tier: str = "", peers: str = "") -> list[str]:
    """Markdown lines for BENCHMARKS.md: ratios to ggml and to the copy bandwidth next to every figure."""
    bw = res["bw"]
    title = "## C target: mul_mat kernels (kernels/c/matmul.h) vs ggml vs numpy"
    lines = [title + (f" ({tier} tier)" if tier else ""), "",
             (f"graphc built with -march={res.get('march', 'native')}; {peers}. " if peers else "") +
             "q4_0, q4_K and q6_K weights are timed in the 8-row layout the C target re-lays them out in at "
             "load (kernels/c/matmul_x8.h); ggml's rows are its plain mul_mat (ggml-python does not use the "
             "REPACK buffers llama.cpp loads into). "
             f"{N_THREADS} threads for ggml and graphc (numpy: its BLAS's own threads). graphc runs one OpenMP "
             "region per mul_mat in a C loop; ggml is called through ggml-python once per mul_mat, so its "
             "figure includes a few microseconds of Python per call. Copy bandwidth: "
             f"**{bw:.1f} GB/s** (read + write)." + _load_note(res), "",
             "### GEMV (1 column), weights rotated to exceed the L3 cache", "",
             "| shape (N x K) | weights | impl | time | GB/s of weights | vs copy bw | vs ggml |",
             "|---|---|---|---:|---:|---:|---:|"]
    gg = {(r["shape"], r["wtype"]): r["s"] for r in res["gemv"] if r["impl"] == "ggml"}
    for r in res["gemv"]:
        gbs = r["bytes"] / r["s"] / 1e9
        g = gg.get((r["shape"], r["wtype"]))
        rel = f"{g / r['s']:.2f}x" if g and r["impl"] != "ggml" else ""
        lines.append(f"| {r['shape']} | {r['wtype']} | {r['impl']} | {r['s'] * 1e3:.3f} ms | {gbs:.1f} | "
                     f"{gbs / bw:.0%} | {rel} |")
    lines += ["", "### GEMM (prefill-shaped mul_mat)", "",
              "| shape | weights | impl | time | GFLOP/s | vs ggml |", "|---|---|---|---:|---:|---:|"]
    gg = {(r["shape"], r["wtype"]): r["s"] for r in res["gemm"] if r["impl"] == "ggml"}
    for r in res["gemm"]:
        g = gg.get((r["shape"], r["wtype"]))
        rel = f"{g / r['s']:.2f}x" if g and r["impl"] != "ggml" else ""
        lines.append(f"| {r['shape']} | {r['wtype']} | {r['impl']} | {r['s'] * 1e3:.2f} ms | "
                     f"{r['flop'] / r['s'] / 1e9:.1f} | {rel} |")
    lines += ["", "vs ggml > 1 means graphc is faster. Targets (issue 13): every quantized GEMV and GEMM row "
              ">= 1.0x ggml built for the same tier.", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("gemv", "gemm"), help="measure only one part")
    ap.add_argument("--types", default=",".join(GEMV_TYPES),
                    help="GEMV weight types with --only gemv (default %(default)s)")
    args = ap.parse_args()
    types = tuple(t.strip() for t in args.types.split(",") if t.strip())
    bad = [t for t in types if t not in GEMV_TYPES]
    if bad:
        ap.error(f"--types: unknown {', '.join(bad)} (one of {' '.join(GEMV_TYPES)})")
    rng = np.random.default_rng()
    rep = 3 if args.quick else 10
    if args.only:
        load0 = os.getloadavg()[0]
        bw = copy_bandwidth(rep)
        res = {"bw": bw, "gemv": [], "gemm": []}
        if args.only == "gemv":
            shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (4096, 11008)]
            res["gemv"] = [r for K, N in shapes for r in gemv_rows(K, N, rep, rng, types)]
        else:
            res["gemm"] = gemm_rows(4096, 4096, (256,) if args.quick else (256, 512), 2 if args.quick else 3, rng)
        res["load"] = (load0, os.getloadavg()[0])
        res["march"] = march()
    else:
        res = measure(args.quick)
    print("\n".join(section(res)))


if __name__ == "__main__":
    main()
