"""The Triton target on a CUDA GPU: bandwidth, GEMV/GEMM against torch, LLaMA-3-8B-shaped decode/prefill.

    python bench/gpu.py [--out DIR] [--quick]

Prints a markdown section (BENCHMARKS.md's "Triton target" section is this output) and writes it with the
raw numbers to DIR/gpu.md and DIR/gpu.json. Every figure is next to its peer from the same run:
  - copy bandwidth (torch: a 1 GiB device-to-device copy, read + write bytes): the physical limit;
  - quantized GEMV (one column, decode) for q4_0 / q8_0 / q4_K / q6_K / f16 weights at LLaMA-3-8B's
    shapes, as GB/s of weight bytes read and as a fraction of copy bandwidth, next to torch's f16 GEMV
    (torch.mv on the same shape in f16: what an unquantized model reads at best);
  - GEMM (prefill, 512 columns): graphc q4_0 / f16 against torch bf16 (cuBLAS) in TFLOP/s;
  - a LLaMA-3-8B-shaped decode graph (32 layers, 4096-row KV cache, random weights: shape decides speed)
    in tokens/s and as a fraction of bandwidth (weight bytes per token / time), eager launches against the
    CUDA graph replay, launches per token; and a 512-token prefill.
Needs a CUDA GPU, triton==3.6.0 and torch. llama.cpp is not built for CUDA on these machines, so its
published figures (docs/anchors.md) are the peers for the end-to-end numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphc  # noqa: E402
from graphc.models.testing import shaped_graph  # noqa: E402

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (4096, 128256)]       # (K, M): ne0 of w, rows
TYPES = ["q4_0", "q8_0", "q4_K", "q6_K", "f16"]


def gpu_line() -> str:
    import torch
    import triton
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, sm_{p.major}{p.minor}; "
            f"torch {torch.__version__}, triton {triton.__version__}")


def bench(fn, rep_ms: int = 200) -> float:
    """Median milliseconds of fn (triton.testing.do_bench: L2 flushed between runs)."""
    from triton.testing import do_bench
    return float(do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def copy_bandwidth() -> float:
    import torch
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = bench(lambda: b.copy_(a))
    return 2 * a.numel() / (ms * 1e-3) / 1e9


def random_weight(t, rng) -> memoryview:
    """Raw bytes for a weight tensor (a bytes-like value is ggml data for any type): every byte below
    0x3c, so f16 values and scales are finite (|d| < 1)."""
    pattern = rng.integers(0, 0x3C, 1 << 24, dtype=np.uint8)
    return memoryview(np.resize(pattern, t.nbytes))


def gemv_graph(wtype: str, K: int, M: int, N: int = 1):
    g = graphc.GraphBuilder(f"gemv {wtype} {K}x{M}")
    w = g.set_param(g.new_tensor_2d(wtype, K, M, name="w"))
    x = g.set_input(g.new_tensor_2d("f32", K, N, name="x"))
    return g.build(g.mul_mat(w, x))


def kernel_ms(module) -> float:
    """The module's kernels alone (no host work): its launches, timed on the GPU."""
    exe = module._exe
    return bench(exe._launch_all)


def gemv_rows(bw: float, rng, quick: bool) -> list[dict]:
    import torch
    out = []
    for K, M in (SHAPES[:1] if quick else SHAPES):
        xt = torch.randn(K, dtype=torch.float16, device="cuda")
        wt = torch.randn(M, K, dtype=torch.float16, device="cuda")
        torch_ms = bench(lambda wt=wt, xt=xt: torch.mv(wt, xt))
        del wt
        for wtype in TYPES:
            g = gemv_graph(wtype, K, M)
            w = g.get("w")
            m = graphc.compile(g, target="triton", weights={"w": random_weight(w, rng)})
            m.run({"x": rng.standard_normal((1, K)).astype(np.float32)})      # compiles (and tunes) first
            ms = kernel_ms(m)
            gbs = w.nbytes / (ms * 1e-3) / 1e9
            out.append(dict(K=K, M=M, type=wtype, ms=ms, weight_bytes=w.nbytes, gbs=gbs, of_copy=gbs / bw,
                            torch_f16_ms=torch_ms, torch_f16_gbs=M * K * 2 / (torch_ms * 1e-3) / 1e9,
                            kernels=[la.kernel for la in m._exe.gen.launches],
                            consts=[{k: v for k, v in la.consts.items() if k.isupper() or k == "num_warps"}
                                    for la in m._exe.gen.launches]))
            print(f"  gemv {wtype:5s} K={K} M={M}: {ms * 1e3:8.1f} us {gbs:7.1f} GB/s ({gbs / bw:.0%} of copy)",
                  flush=True)
    return out


def gemm_rows(rng, quick: bool) -> list[dict]:
    import torch
    out = []
    K, M, N = 4096, 4096, 512
    a = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(K, N, dtype=torch.bfloat16, device="cuda")
    torch_ms = bench(lambda: a @ b)
    for wtype in (["q4_0"] if quick else ["q4_0", "q4_K", "f16"]):
        g = gemv_graph(wtype, K, M, N)
        w = g.get("w")
        m = graphc.compile(g, target="triton", weights={"w": random_weight(w, rng)})
        m.run({"x": rng.standard_normal((N, K)).astype(np.float32)})
        ms = kernel_ms(m)
        flops = 2.0 * M * N * K
        out.append(dict(M=M, N=N, K=K, type=wtype, ms=ms, tflops=flops / (ms * 1e-3) / 1e12,
                        torch_bf16_ms=torch_ms, torch_tflops=flops / (torch_ms * 1e-3) / 1e12))
        print(f"  gemm {wtype}: {ms:.3f} ms vs torch bf16 {torch_ms:.3f} ms", flush=True)
    return out


def llama_rows(bw: float, rng, quick: bool) -> list[dict]:
    out = []
    n_layer = 4 if quick else 32
    for wtype in (["q4_0"] if quick else ["q4_0", "q4_K_M"]):
        for n_tokens in (1, 512):
            g = shaped_graph(wtype=wtype, n_layer=n_layer, n_tokens=n_tokens, n_ctx=4096)
            weights = {}
            for t in g.leafs:
                if t.weight is not None:
                    t.weight = None
                    weights[t.name] = random_weight(t, rng)
            wbytes = sum(len(a) for a in weights.values())
            row = dict(type=wtype, n_layer=n_layer, n_tokens=n_tokens, weight_bytes=wbytes)
            for graph_mode in (False, True):
                t0 = time.perf_counter()
                m = graphc.compile(g, target="triton", weights=weights, cuda_graph=graph_mode)
                feeds = llama_feeds(n_tokens, rng)
                m.run(feeds)
                m.run(feeds)                                     # the second run captures the CUDA graph
                start = time.perf_counter() - t0
                n = 20 if n_tokens == 1 else 5
                t1 = time.perf_counter()
                for _ in range(n):
                    m.run(feeds)
                per_run = (time.perf_counter() - t1) / n
                key = "graph" if graph_mode else "eager"
                row[f"{key}_ms"] = per_run * 1e3
                row[f"{key}_tok_s"] = n_tokens / per_run
                row[f"{key}_start_s"] = start
                row["launches"] = m._exe.launches_per_run
                del m
            row["of_copy"] = wbytes / (row["graph_ms"] * 1e-3) / 1e9 / bw if n_tokens == 1 else None
            out.append(row)
            print(f"  llama {wtype} T={n_tokens}: eager {row['eager_tok_s']:.1f} tok/s, graph "
                  f"{row['graph_tok_s']:.1f} tok/s, {row['launches']} launches/run", flush=True)
    return out


def llama_feeds(n_tokens: int, rng, n_ctx: int = 4096) -> dict:
    """Inputs of shaped_graph's graph as graphc.models.llm feeds them: tokens at positions 0.. of the cache."""
    from graphc.models.llm_graph import kq_mask, v_indices
    pos = np.arange(n_tokens, dtype=np.int32)
    return {"tokens": rng.integers(0, 128256, n_tokens).astype(np.int32), "pos": pos,
            "kq_mask": kq_mask(pos, n_ctx), "v_idxs": v_indices(pos, 8 * 128, n_ctx)}


def markdown(r: dict) -> str:
    lines = ["## Triton target on a CUDA GPU (bench/gpu.py)", "", f"GPU: {r['gpu']}. Measured {r['date']}.",
             f"Copy bandwidth (torch device copy, read + write): **{r['copy_gbs']:.0f} GB/s**.", "",
             "### Decode GEMV (one column): weight bytes read per second", "",
             "| K x M | type | graphc us | GB/s | of copy | torch f16 mv GB/s |", "|---|---|---|---|---|---|"]
    for x in r["gemv"]:
        lines.append(f"| {x['K']}x{x['M']} | {x['type']} | {x['ms'] * 1e3:.1f} | {x['gbs']:.0f} | "
                     f"{x['of_copy']:.0%} | {x['torch_f16_gbs']:.0f} |")
    lines += ["", "### Prefill GEMM (4096x4096 weight, 512 columns)", "",
              "| type | graphc ms | TFLOP/s | torch bf16 ms | torch TFLOP/s |", "|---|---|---|---|---|"]
    for x in r["gemm"]:
        lines.append(f"| {x['type']} | {x['ms']:.3f} | {x['tflops']:.1f} | {x['torch_bf16_ms']:.3f} | "
                     f"{x['torch_tflops']:.1f} |")
    lines += ["", "### LLaMA-3-8B-shaped graph (random weights, 4096-row KV cache)", "",
              "| weights | tokens | eager tok/s | CUDA graph tok/s | launches/run (eager) | of copy bw |",
              "|---|---|---|---|---|---|"]
    for x in r["llama"]:
        frac = f"{x['of_copy']:.0%}" if x["of_copy"] else "-"
        lines.append(f"| {x['type']} ({x['weight_bytes'] / 2**30:.2f} GiB, {x['n_layer']} layers) | {x['n_tokens']} | "
                     f"{x['eager_tok_s']:.1f} | {x['graph_tok_s']:.1f} | {x['launches']} (graph: 1) | {frac} |")
    return "\n".join(lines) + "\n"


def measure(quick: bool) -> dict:
    rng = np.random.default_rng(0)
    r = {"gpu": gpu_line(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(r["gpu"], flush=True)
    r["copy_gbs"] = copy_bandwidth()
    print(f"  copy {r['copy_gbs']:.0f} GB/s", flush=True)
    for name, fn in (("gemv", lambda: gemv_rows(r["copy_gbs"], rng, quick)),
                     ("gemm", lambda: gemm_rows(rng, quick)),
                     ("llama", lambda: llama_rows(r["copy_gbs"], rng, quick))):
        try:
            r[name] = fn()
        except Exception as e:                       # one table failing still leaves the others
            print(f"  {name} failed: {type(e).__name__}: {e}", flush=True)
            r[name] = []
    return r


NOT_MEASURED = ("## Triton target on a CUDA GPU (bench/gpu.py)\n\nnot measured: {why}. `tools/gpu_check.sh` "
                "runs every GPU check and this benchmark on a machine with a CUDA GPU.\n")


def section(quick: bool) -> str:
    """BENCHMARKS.md's Triton section: measured where torch sees a CUDA GPU, else a line saying why not."""
    try:
        import torch
        import triton  # noqa: F401
    except ImportError as e:
        return NOT_MEASURED.format(why=f"{e.name} is not installed")
    if not torch.cuda.is_available():
        return NOT_MEASURED.format(why="no CUDA GPU on this machine (torch sees none)")
    return markdown(measure(quick))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="directory for gpu.md and gpu.json")
    ap.add_argument("--quick", action="store_true", help="one shape per table and a 4-layer model")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU (torch sees none)")
        return 1
    r = measure(args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(r, indent=1))
    md = markdown(r)
    (out / "gpu.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
