"""OpenCL target (PoCL here, or whatever device GRAPHC_OPENCL_DEVICE names) next to the C target, same run.

    python bench/opencl.py [--quick]

The same graphc graph (one mul_mat of a quantized weight leaf) is compiled for target "c" and target
"opencl" through the public API, and timed per Module.run (inputs written, outputs read back, as a user
runs it). For OpenCL the kernels' own time from OpenCL profiling events is shown too, so the rest
(Python enqueue and transfers) is visible. bench/run.py calls section() for BENCHMARKS.md; bench/llm.py
adds the OpenCL row of the end-to-end model table.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import N_THREADS, best_time  # noqa: E402

import graphc  # noqa: E402
from graphc import quants  # noqa: E402
from graphc.types import get_type  # noqa: E402

GEMV_TYPES = ("q4_0", "q8_0", "q4_K", "f16")
GEMM_TYPES = ("q4_0", "q8_0", "q4_K", "f16")


def _graph(wtype: str, K: int, N: int, M: int, raw: np.ndarray):
    g = graphc.GraphBuilder(f"mm-{wtype}")
    w = g.new_tensor_2d(wtype, K, N, "w")
    g.set_param(w)
    x = g.set_input(g.new_tensor_2d("f32", K, M, "x"))
    graph = g.build(g.mul_mat(w, x))
    return graph, {"w": raw}


def _device_name() -> str:
    from graphc.targets.opencl.device import context_for
    f = context_for().features
    return f"{f.platform} / {f.name} ({f.opencl_c.strip()}, driver {f.driver})"


def time_pair(wtype: str, K: int, N: int, M: int, repeat: int, rng) -> dict:
    if wtype in ("f16", "f32"):
        raw = rng.standard_normal((N, K), dtype=np.float32).astype(get_type(wtype).np_dtype)
    else:
        raw = quants.quantize(rng.standard_normal((N, K), dtype=np.float32), wtype)
    graph, w = _graph(wtype, K, N, M, raw)
    feeds = {"x": rng.standard_normal((M, K), dtype=np.float32)}
    out = {}
    for target, opts in (("c", {"n_threads": N_THREADS}), ("opencl", {"profile": True})):
        m = graphc.compile(graph, target=target, weights=w, **opts)
        m.run(feeds)
        out[target] = best_time(lambda m=m: m.run(feeds), repeat)
        if target == "opencl":
            prof = m._exe.profile()
            out["opencl kernels"] = sum(s for _, _, s in prof) / max(1, prof[0][1]) if prof else float("nan")
    return out


def measure(quick: bool) -> dict:
    rng = np.random.default_rng(0)
    K = N = 2048 if quick else 4096
    rep = 3 if quick else 5
    rows = []
    for wtype in GEMV_TYPES:
        rows.append({"what": f"GEMV {N}x{K}", "wtype": wtype, "bytes": N * get_type(wtype).row_bytes(K),
                     **time_pair(wtype, K, N, 1, rep, rng)})
    M = 64 if quick else 128
    for wtype in GEMM_TYPES:
        rows.append({"what": f"GEMM {N}x{K} x {M} cols", "wtype": wtype, "flop": 2 * N * K * M,
                     **time_pair(wtype, K, N, M, max(2, rep - 2), rng)})
    return {"device": _device_name(), "rows": rows}


# What `perf record` on the kernels PoCL compiled showed (2026-12-05, PoCL 3.0-rc2 from pip, 2-core EPYC);
# kept beside the table because the figures above are only readable with it.
PROFILE_NOTE = (
    "Where PoCL's time goes (perf on the kernel libraries PoCL compiles, not guessed): the kernels are "
    "most of a run (the 'kernels' column). PoCL runs a CPU work-group as a loop over its "
    "work-items, so graphc gives CPU devices one work-item per tile of 4 rows x 8 columns (GPUs get 64 with a "
    "local-memory reduction). Inside a work-item, explicit OpenCL vectors (char16 blocks, products in shorts) "
    "are what becomes SIMD; the pip build of PoCL targets AVX2 even on AVX-512 CPUs (its compiler reports "
    "avx512f disabled), and some builtins (vload16, min) are out-of-line calls, so the kernels avoid them in "
    "loops. What remains against C: one horizontal sum per 32-element block and column (the block's scale "
    "multiplies its integer sum in f32, in ggml's order), scalar f16 conversion (no F16C in PoCL's build), "
    "K-quant super-blocks unpacked to bytes before their dot products, and no AVX-VNNI/maddubs integer dot "
    "instructions, which the C target uses. These kernels are written for any OpenCL 1.2 device; a GPU run "
    "has not been measured in this project yet.")


def section(res: dict) -> list[str]:
    lines = ["## OpenCL target next to the C target: mul_mat", "",
             f"OpenCL device: {res['device']}. The same graph through graphc.compile on both targets; time per "
             f"Module.run (median), C with {N_THREADS} threads. 'kernels' is the OpenCL kernels' own time from "
             "profiling events; the rest of a run is enqueueing from Python and the input/output copies.", "",
             "| what | weights | C | OpenCL | OpenCL kernels | OpenCL / C speed |",
             "|---|---|---:|---:|---:|---:|"]
    for r in res["rows"]:
        unit = (f"{r['bytes'] / r['c'] / 1e9:.1f} GB/s" if "bytes" in r else f"{r['flop'] / r['c'] / 1e9:.1f} GFLOP/s")
        unit_cl = (f"{r['bytes'] / r['opencl'] / 1e9:.1f} GB/s" if "bytes" in r
                   else f"{r['flop'] / r['opencl'] / 1e9:.1f} GFLOP/s")
        lines.append(f"| {r['what']} | {r['wtype']} | {r['c'] * 1e3:.2f} ms ({unit}) | {r['opencl'] * 1e3:.2f} ms "
                     f"({unit_cl}) | {r['opencl kernels'] * 1e3:.2f} ms | **{r['c'] / r['opencl']:.2f}x** |")
    return lines + ["", PROFILE_NOTE, ""]


if __name__ == "__main__":
    print("\n".join(section(measure("--quick" in sys.argv))))
