"""A/B of the C target's quantized GEMM/GEMV kernels (8-row groups "x8", or rows as stored) for one -march.

    python bench/x8.py [--march haswell] [--rows] [--base DIR] [--new DIR] [--types q4_0,q4_K,q6_K]
                       [--cols 1,8,32] [--shapes 4096x4096,4096x11008] [--rounds 5] [--reps 10]
                       [--stat min|median] [--callgrind] [--threads 1]

    e.g. git archive HEAD kernels/c | tar -x -C /tmp/before && python bench/x8.py --base /tmp/before/kernels/c

Weights of each type and shape (ne0 x ne1 = K x N, ggml's order) are quantized once (cached in
$TMPDIR/graphc-x8-bench) and re-laid out as targets/c/repack.py does at load; a small C program
(kernels/c/matmul.h at -O3 -march=<march>) runs gc_op_mul_mat on them with M f32 activation columns.
--base DIR builds the same program a second time from another copy of kernels/c (the "before"): the two
then run interleaved, round by round (a shared, noisy machine), and their outputs are compared bit for
bit. Each run reports the fastest (--stat min, the default: other processes only ever slow a call down)
or the median of its --reps calls; the table shows the best run of each. --callgrind counts the
instructions of one call under valgrind instead (repeatable: what decisions should rest on; valgrind
has no AVX-512, so AVX2 -march values only).
--cols: 1 column is a GEMV (decode), 8 and 32 prefill tiles. --rows times the weights as stored (the row
kernels that every other type, and repack=False, use) instead of their 8-row layout.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphc import quants  # noqa: E402
from graphc.targets.c import repack  # noqa: E402
from graphc.types import get_type  # noqa: E402

KERNELS = ROOT / "kernels" / "c"
CACHE = Path(tempfile.gettempdir()) / "graphc-x8-bench"

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "matmul.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = aligned_alloc(64, (*n + 63) & ~(size_t)63);
    if (fread(p, 1, *n, f) != *n) { perror(path); exit(2); }
    fclose(f);
    return p;
}
static _Alignas(64) int work[16];

/* one mul_mat on nth threads (callgrind counts this function and what it calls) */
__attribute__((noinline)) void bench_once(gc_ctx *ctx, const gc_tensor *dst, const gc_tensor *const *src, int nth) {
#ifdef _OPENMP
    if (nth > 1) {
        #pragma omp parallel num_threads(nth)
        gc_op_mul_mat(ctx, dst, src, 0, omp_get_thread_num(), nth);
        return;
    }
#endif
    gc_op_mul_mat(ctx, dst, src, 0, 0, 1);
}

/* argv: weights x out type K N row_bytes M reps nth */
int main(int argc, char **argv) {
    if (argc != 11) { fprintf(stderr, "usage\n"); return 2; }
    size_t nw, nx;
    char *w = slurp(argv[1], &nw);
    float *x = slurp(argv[2], &nx);
    const int type = atoi(argv[4]);
    const int64_t K = atoll(argv[5]), N = atoll(argv[6]), rb = atoll(argv[7]), M = atoll(argv[8]);
    const int reps = atoi(argv[9]), nth = atoi(argv[10]);
    gc_tensor a = {w, {K, N, 1, 1}, {0, rb, rb * N, rb * N}, type};
    a.nb[0] = gc_type_size(gc_x8_base_type(type));
    gc_tensor b = {(char *)x, {K, M, 1, 1}, {4, 4 * K, 4 * K * M, 4 * K * M}, GC_F32};
    float *out = aligned_alloc(64, (size_t)(4 * N * M + 63) & ~(size_t)63);
    gc_tensor d = {(char *)out, {N, M, 1, 1}, {4, 4 * N, 4 * N * M, 4 * N * M}, GC_F32};
    const gc_tensor *src[2] = {&a, &b};
    const size_t ss = gc_scratch_mul_mat(&d, src, 0);
    void *scr[64];
    for (int i = 0; i < nth; i++) scr[i] = aligned_alloc(64, (ss + 63) & ~(size_t)63);
    gc_ctx ctx = {nth, scr, ss, work};
    double *t = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    for (int r = -1; r < reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bench_once(&ctx, &d, src, nth);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r >= 0) t[r] = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    if (reps > 0) {
        qsort(t, (size_t)reps, sizeof(double), cmpd);
        printf("median %.9f min %.9f\n", t[reps / 2], t[0]);
    }
    FILE *f = fopen(argv[3], "wb");
    fwrite(out, 4, (size_t)(N * M), f);
    fclose(f);
    return 0;
}
"""


def build(kdir: Path, march: str, out: Path) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    src = out.with_suffix(".c")
    src.write_text(HARNESS)
    subprocess.run([cc, "-O3", f"-march={march}", "-fopenmp", "-g", f"-I{kdir}", str(src), "-o", str(out), "-lm"],
                   check=True)
    return out


def weights(wtype: str, K: int, N: int, rows: bool = False) -> tuple[Path, int]:
    """The weights' file and their C type id (made once per type and shape): re-laid out in 8-row groups
    where the C target does that (repack.C_TYPE), as stored (row kernels) when rows or for other types."""
    CACHE.mkdir(parents=True, exist_ok=True)
    raw_path, path = CACHE / f"w-{wtype}-{K}x{N}.raw", CACHE / f"w-{wtype}-{K}x{N}.x8"
    if not raw_path.exists():
        rng = np.random.default_rng(1234)
        if wtype in quants._QUANTIZERS:
            raw = np.concatenate([quants.quantize(rng.standard_normal((min(512, N - r), K), dtype=np.float32), wtype)
                                  for r in range(0, N, 512)])
        else:   # no quantizer in graphc (q2_K, q3_K, q5_K): random blocks with sane f16 scales, as bench/gemv.py
            t = get_type(wtype)
            nb = N * K // t.blck
            raw = rng.integers(0, 256, (nb, t.size), dtype=np.uint8)
            for o in {"q2_K": (80, 82), "q3_K": (108,), "q5_K": (0, 2)}[wtype]:
                raw[:, o:o + 2] = np.frombuffer(rng.uniform(1e-3, 1e-2, nb).astype(np.float16).tobytes(),
                                                np.uint8).reshape(nb, 2)
        raw.reshape(-1).tofile(raw_path)
    if rows or wtype not in repack.C_TYPE:
        return raw_path, get_type(wtype).id
    if not path.exists():
        repack.RELAYOUT[wtype](np.fromfile(raw_path, np.uint8), N, K).tofile(path)
    return path, repack.C_TYPE[wtype]


def acts(K: int, M: int) -> Path:
    path = CACHE / f"x-{K}x{M}.f32"
    if not path.exists():
        np.random.default_rng(K * 7 + M).standard_normal((M, K), dtype=np.float32).tofile(path)
    return path


def run(exe: Path, wtype: str, K: int, N: int, M: int, reps: int, nth: int, out: Path,
        callgrind: bool = False, stat: str = "min", rows: bool = False) -> float:
    wpath, tid = weights(wtype, K, N, rows)
    args = [str(exe), str(wpath), str(acts(K, M)), str(out), str(tid), str(K), str(N),
            str(get_type(wtype).row_bytes(K)), str(M), str(reps), str(nth)]
    if callgrind:
        cg = out.with_suffix(".cg")
        r = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=bench_once",
                            f"--callgrind-out-file={cg}", *args], capture_output=True, text=True, check=True)
        m = re.search(r"Collected : (\d+)", r.stderr)
        return float(m.group(1))
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    v = r.stdout.split()
    return float(v[v.index(stat) + 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--march", default="haswell")
    ap.add_argument("--base", type=Path, help="another kernels/c directory: the 'before' of an A/B")
    ap.add_argument("--new", type=Path, default=KERNELS, help="the kernels/c directory of the 'after' (this tree's)")
    ap.add_argument("--types", default="q4_0,q4_K,q6_K")
    ap.add_argument("--shapes", default="4096x4096,4096x11008")
    ap.add_argument("--cols", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", choices=("min", "median"), default="min",
                    help="per run of --reps calls: the fastest call (default; other processes only ever slow a call "
                         "down) or the median")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--rows", action="store_true", help="weights as stored (the row kernels), not in 8-row groups "
                    "(types without an 8-row layout, q8_0 for one, always run as stored)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="graphc-x8-"))
    exes = {"new": build(a.new, a.march, work / "new")}
    if a.base:
        exes = {"base": build(a.base, a.march, work / "base"), **exes}
    hdr = f"{'type':6} {'shape':>11} {'cols':>4}" + "".join(f" {n:>14}" for n in exes)
    layout = "rows as stored" if a.rows else "8-row groups"
    what = "callgrind Ir of one call" if a.callgrind else \
        f"best of {a.rounds} interleaved rounds of the {a.stat} of {a.reps} calls, ms"
    print(f"-march={a.march}, {a.threads} thread(s), {layout}, {what}")
    print(hdr + ("  new/base  same bits" if a.base else ""))
    for wtype in a.types.split(","):
        for shape in a.shapes.split(","):
            K, N = (int(v) for v in shape.split("x"))
            for M in (int(c) for c in a.cols.split(",")):
                res = {n: [] for n in exes}
                outs = {n: work / f"out-{n}.f32" for n in exes}
                for _ in range(1 if a.callgrind else a.rounds):
                    for n, exe in exes.items():
                        res[n].append(run(exe, wtype, K, N, M, 0 if a.callgrind else a.reps, a.threads,
                                          outs[n], a.callgrind, a.stat, a.rows))
                best = {n: min(v) for n, v in res.items()}
                line = f"{wtype:6} {shape:>11} {M:>4}"
                for n in exes:
                    line += f" {best[n]:>14,.0f}" if a.callgrind else f" {1e3 * best[n]:>14.3f}"
                if a.base:
                    same = np.array_equal(np.fromfile(outs["base"], np.float32), np.fromfile(outs["new"], np.float32))
                    line += f"  {best['new'] / best['base']:8.3f}  {same}"
                    if not a.callgrind:
                        ratio = statistics.median(res["new"]) / statistics.median(res["base"])
                        line += f"  (median of rounds {ratio:.3f})"
                print(line, flush=True)


if __name__ == "__main__":
    main()
