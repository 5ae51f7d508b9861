"""graphc benchmarks: every figure next to its peer measured in the same run and the memory limit.

    python bench/run.py [--write BENCHMARKS.md] [--quick]

It measures the machine's copy bandwidth, the tiny decoder of examples/ on each target, the pass
pipeline (fusion, arena) on a LLaMA-7B-shaped graph and the fixtures, the C target's mul_mat kernels
against real ggml (ggml-python) and numpy (bench/gemv.py), and a LLaMA-shaped GGUF model's prefill and
decode tokens/s against llama.cpp (llama-cpp-python) on the same file (bench/llm.py).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "bench"))

import graphc  # noqa: E402

N_THREADS = int(os.environ.get("GRAPHC_BENCH_THREADS", os.cpu_count() or 1))
L3_BYTES = 32 << 20


def mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def cpu_line() -> str:
    """The CPU model and the x86 ISA flags that decide which kernels run (speed differs by tier)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                model = val.strip()
            elif key.strip() == "flags":
                flags = set(val.split())
    except OSError:
        pass
    isa = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                       "avx512_bf16", "avx_vnni", "amx_int8") if f in flags]
    return f"CPU: {model}; ISA flags: {' '.join(isa) or 'none of the x86 SIMD tiers'}"


def best_time(fn, repeat: int) -> float:
    """Median of `repeat` timings of fn() (after one warm-up): robust on a shared, noisy machine."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(repeat: int) -> float:
    """GB/s of a large numpy copy, counting bytes read plus bytes written."""
    n = 256 << 20
    src = np.ones(n, dtype=np.uint8)
    dst = np.empty_like(src)
    t = best_time(lambda: np.copyto(dst, src), repeat)
    return 2 * n / t / 1e9


def matrices_for(nbytes_each: int) -> int:
    """How many weight matrices to rotate through so the set exceeds the L3 cache twice over."""
    return max(2, -(-2 * L3_BYTES // nbytes_each))


def decoder_rows(repeat: int) -> list[dict]:
    """One decode step of the tiny decoder on each target: the whole graph, one call per run."""
    from tiny_decoder import Config, build, random_weights, step_inputs
    cfg = Config()
    g = build(cfg, 1)
    inp = step_inputs(cfg, [1], 0)
    rows = []
    for target in ("ref", "c"):
        m = graphc.compile(g, target=target, weights=random_weights(g))
        rows.append({"what": f"tiny decoder decode step on {target!r} ({len(g.nodes)} nodes)",
                     "s": best_time(lambda: m.run(inp), repeat)})  # noqa: B023 -- called at once, inside the loop
    return rows


def pipeline_rows(repeat: int) -> list[dict]:
    """Kernels before/after fusion, arena vs liveness lower bound vs naive sum, and pipeline time."""
    from graphc.passes import run_pipeline
    from graphc.program import unfused
    from tiny_decoder import Config, build
    llama7b = Config(n_vocab=32000, n_embd=4096, n_head=32, n_ff=11008, n_layer=32, n_ctx=2048, weight_type="q4_0")
    graphs = [("LLaMA-7B-shaped decode (1 token)", build(llama7b, 1)),
              ("LLaMA-7B-shaped prefill (512 tokens)", build(llama7b, 512))]
    fixtures = ROOT.parent / "shared" / "fixtures" / "ggml" / "2024-10-09-2327bda7"
    for f in sorted(fixtures.glob("*.ggml")):
        graphs.append((f"fixture {f.stem} (ggml export)", graphc.load_graph(f)))
    rows = []
    for what, g in graphs:
        t = best_time(lambda: run_pipeline(g), repeat)  # noqa: B023 -- called at once, inside the loop
        p = run_pipeline(g)
        rows.append({"what": what, "nodes": len(g.nodes), "before": len(unfused(g).kernels),
                     "after": len(p.kernels), "arena": p.plan.size, "bound": p.plan.lower_bound,
                     "naive": p.plan.naive, "s": t})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", metavar="FILE", help="rewrite this markdown file with the results")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and smaller shapes")
    args = ap.parse_args()
    rep = 3 if args.quick else 10

    bw = copy_bandwidth(rep)
    dec = decoder_rows(rep)
    prow = pipeline_rows(3)

    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (bench/run.py) on {datetime.date.today()}: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}. "
        "Peers are measured in the same run; the machine is shared and noisy, so read the ratios.",
        "",
        cpu_line() + " (every table below was measured on this CPU).",
        "",
        f"Measured copy bandwidth (numpy, 256 MiB, read + write): **{bw:.1f} GB/s**. It counts bytes read "
        "plus bytes written by one numpy thread; a read-only stream (a GEMV) can exceed it, so ratios above "
        "100% mean the copy test understates read bandwidth.",
        "",
        "## Whole graphs",
        "",
        "| what | time per run |",
        "|---|---:|",
        *[f"| {r['what']} | {r['s'] * 1e3:.3f} ms |" for r in dec],
        "",
    ]
    lines += [
        "## Pass pipeline: fusion and the one-arena memory plan",
        "",
        "Every graph through all passes (verify, canonicalize, dce, cse, schedule, fuse, plan). Kernels: "
        "one per node before fusion, fused super-kernels after. Arena: the planned intermediate memory; lower "
        "bound: the most bytes live at any step; naive: every intermediate in its own buffer.",
        "",
        "| graph | nodes | kernels before | kernels after | arena | lower bound | arena / bound | naive sum "
        "| pipeline time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in prow:
        ratio = r["arena"] / r["bound"] if r["bound"] else 1.0
        lines.append(f"| {r['what']} | {r['nodes']} | {r['before']} | {r['after']} | {mib(r['arena'])} | "
                     f"{mib(r['bound'])} | {ratio:.3f} | {mib(r['naive'])} | {r['s'] * 1e3:.0f} ms |")
    lines += ["", "Targets (issue 4): arena within 10% of the lower bound; the LLaMA-7B-shaped graph through all "
              "passes in under 2 s.", ""]
    import startup                         # from `graphc generate` to the first token, cold and warm
    try:
        lines += startup.section(startup.measure(args.quick, N_THREADS))
    except (RuntimeError, OSError) as e:
        lines += ["## Start-up: time to the first token", "", f"not measured: {e}", ""]
    import isa                             # every x86 tier this CPU runs, against peers built for it
    tiers = isa.tiers()
    lines += ["## ISA tiers", "", "The C target's tables below come once per x86 tier this CPU runs, each against "
              "ggml / llama.cpp built for the same tier (bench/isa.py): " +
              "; ".join(f"**{t.name}**: graphc -march={t.march}, {t.note}" for t in tiers) + ".", ""]
    import gemv
    for t in tiers:                        # the C target's mul_mat kernels (bench/gemv.py)
        try:
            lines += gemv.section(isa.run_tier(t, "gemv", args.quick), t.name, t.note)
        except (RuntimeError, OSError) as e:   # no C compiler or peers: say so instead of failing the run
            lines += [f"## C target: mul_mat kernels ({t.name} tier)", "", f"not measured: {e}", ""]
    try:                                   # the OpenCL target next to C (bench/opencl.py)
        import opencl
        lines += opencl.section(opencl.measure(args.quick))
    except Exception as e:                 # no OpenCL device or pyopencl: say so instead of failing the run
        lines += ["## OpenCL target next to the C target", "", f"not measured: {type(e).__name__}: {e}", ""]
    import gpu                             # the Triton target on a CUDA GPU, where there is one (bench/gpu.py)
    lines += gpu.section(args.quick).splitlines() + [""]
    import llm
    for t in tiers:                        # end to end: LLaMA-shaped GGUF models vs llama.cpp (bench/llm.py)
        try:
            lines += llm.section(isa.run_tier(t, "llm", args.quick), t.name, t.note)
        except (RuntimeError, OSError) as e:   # llama-cpp-python missing: say so instead of failing the run
            lines += [f"## End to end: LLaMA-shaped GGUF models vs llama.cpp ({t.name} tier)", "",
                      f"not measured: {e}", ""]
    import tp                              # tensor parallelism: 1, 2 and 4 ranks on this host (bench/tp.py)
    try:
        lines += tp.measure(args.quick)
    except (RuntimeError, OSError) as e:
        lines += ["## Tensor parallelism (torchrun, gloo, C target; one host)", "", f"not measured: {e}", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()
