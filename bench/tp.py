"""Tensor parallelism on one host: decode and prefill tokens/s of a LLaMA-shaped model for 1, 2 and 4 CPU
ranks (gloo, graphc's C target), the bytes the collectives move per token, and the 8-GPU estimate on paper.

    python bench/tp.py [--layers N] [--quick]      # prints the BENCHMARKS.md section

Each rank count is one torchrun-style launch of this file's `--rank-worker` mode (RANK / WORLD_SIZE set
here); the host's cores are shared by its ranks (threads per rank = cores // ranks).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

def _worker(path: str, out: str, repeat: int) -> None:
    import torch.distributed as dist

    import graphc.models
    from llm import N_CTX, N_PROMPT, time_model
    m = graphc.models.load(path, target="c", n_ctx=N_CTX, n_batch=N_PROMPT, tensor_parallel=True)
    prompt = [int(t) for t in np.random.default_rng(0).integers(3, m.n_vocab, N_PROMPT)]
    prefill, decode = time_model(m, prompt, repeat, before_round=dist.barrier)
    weights = sum(np.asarray(t.data).nbytes for t in m._owner.graph.leafs if t.data is not None
                  and not t.name.startswith("cache_"))
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"prefill": prefill, "decode": decode, "weights": int(weights)}))
    dist.barrier()
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(path: Path, world: int, repeat: int) -> dict:
    port, cores = _port(), os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        procs = []
        for r in range(world):
            env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            procs.append(subprocess.Popen([sys.executable, __file__, "--rank-worker", str(path), out, str(repeat)],
                                          env=env))
        for p in procs:
            p.wait()
        if any(p.returncode for p in procs) or not os.path.exists(out):
            raise RuntimeError(f"{world} ranks failed")
        res = json.loads(Path(out).read_text())
    res["threads"] = max(1, cores // world)
    return res


def collective_bytes(E: int, V: int, n_layer: int, world: int) -> tuple[int, int]:
    """Per decoded token: (payload bytes all-reduced and all-gathered, bytes each rank sends in ring algorithms).
    Per layer two f32 all-reduces of E values (attention output, FFN output), one for the embedding, and an
    all-gather of the V logits (chunks of ceil(V / world))."""
    if world == 1:
        return 0, 0
    ar = (2 * n_layer + 1) * E * 4
    ag = -(-V // world) * world * 4
    ring = 2 * (world - 1) / world * ar + (world - 1) / world * ag
    return ar + ag, int(ring)


def estimate_8gpu() -> list[str]:
    """Llama-2-70B-shaped (E 8192, 80 layers, 32000 vocabulary, q4_0: 4.5 bits per weight) on 8 H100 SXM."""
    params, E, L, V, G = 69.0e9, 8192, 80, 32000, 8
    weight_bytes = params * 4.5 / 8
    hbm, nvlink = 3.35e12, 450e9          # H100 SXM: HBM3 bandwidth; NVLink 4: 900 GB/s both ways = 450 one way
    payload, ring = collective_bytes(E, V, L, G)
    read_1, read_8 = weight_bytes / hbm, weight_bytes / G / hbm
    comm_bw = ring / nvlink
    n_coll = 2 * L + 2
    latency = n_coll * 10e-6              # about 10 us per small NCCL all-reduce inside a CUDA graph (NVLink)
    t8 = read_8 + comm_bw + latency
    return [
        "On paper: a Llama-2-70B-shaped model (80 layers, n_embd 8192, 32,000 vocabulary) in q4_0 "
        f"({weight_bytes / 1e9:.1f} GB of weights) on 8 H100 SXM GPUs with NVLink 4 (HBM3 3.35 TB/s; NVLink "
        "900 GB/s per GPU, 450 GB/s each way):",
        "",
        "| | 1 GPU | 8 GPUs, tensor parallel |",
        "|---|---:|---:|",
        f"| weights per GPU | {weight_bytes / 1e9:.1f} GB | {weight_bytes / G / 1e9:.1f} GB |",
        f"| weight read per decoded token | {read_1 * 1e3:.2f} ms | {read_8 * 1e3:.2f} ms |",
        f"| collectives per token | - | {n_coll} ({payload / 1e6:.2f} MB payload, {ring / 1e6:.2f} MB sent per GPU) |",
        f"| their transfer at NVLink bandwidth | - | {comm_bw * 1e6:.0f} us |",
        f"| their latency (about 10 us each) | - | {latency * 1e3:.2f} ms |",
        f"| decode time per token (bound) | {read_1 * 1e3:.2f} ms | {t8 * 1e3:.2f} ms |",
        f"| decode tokens/s (bound) | {1 / read_1:.0f} | {1 / t8:.0f} ({read_1 / t8:.1f}x) |",
        "",
        "Decode on 8 GPUs is bound by the latency of its 162 small all-reduces more than by their bytes or the "
        "weight reads, which is why engines fuse them into fewer, larger collectives or overlap them with the "
        "next matmul; in prefill each collective carries a whole batch's rows, so its latency is paid once per "
        "batch and the scaling follows the FLOPs and weight reads (close to 8x).",
    ]


def section(layers: int, rows: list[tuple[int, dict]], bw: "list[tuple[int, int]]", path: Path) -> list[str]:
    from llm import N_DECODE, N_PROMPT
    from run import cpu_line
    base = rows[0][1]
    out = ["## Tensor parallelism (torchrun, gloo, C target; one host)", "",
           f"LLaMA-shaped model ({layers} layers, n_embd 2048, 32 heads / 4 KV heads, n_ff 5632, 32,000 "
           f"vocabulary, q4_0; {path.stat().st_size / 1e6:.0f} MB), {N_PROMPT}-token prompt, {N_DECODE} decoded "
           f"tokens, median of the rounds. {cpu_line()}.", "",
           "| ranks | threads per rank | weights per rank | prefill tokens/s | decode tokens/s | decode vs 1 rank "
           "| collective bytes per token (payload / sent per rank) |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for (world, r), (payload, ring) in zip(rows, bw):
        out.append(f"| {world} | {r['threads']} | {r['weights'] / 1e6:.1f} MB | {r['prefill']:.1f} | {r['decode']:.2f} "
                   f"| {r['decode'] / base['decode']:.2f}x | {payload / 1e3:.0f} KB / {ring / 1e3:.0f} KB |")
    out += ["", f"This machine has {os.cpu_count()} cores: 2 ranks run one thread each on the same cores one rank "
            "uses, and 4 ranks oversubscribe them, so the table shows what splitting costs (the collectives, the "
            "memory it saves per rank), not what more machines gain; each rank holds about 1/N of the weights "
            "(the norms are replicated). On one host, memory bandwidth is shared by the ranks: more ranks "
            "help only where one process cannot use the cores or the bandwidth, or across hosts.", ""]
    return out + estimate_8gpu() + [""]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-worker":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print("\n".join(measure(args.quick, args.layers)))


def measure(quick: bool, layers: int = 4) -> list[str]:
    """The BENCHMARKS.md section: 1, 2 and 4 ranks of the LLaMA-shaped model, then the 8-GPU estimate."""
    import llm
    path = llm.model_file(layers, "q4_0")
    repeat = 1 if quick else 3
    rows = [(w, run_ranks(path, w, repeat)) for w in (1, 2, 4)]
    bw = [collective_bytes(2048, 32000, layers, w) for w, _ in rows]
    return section(layers, rows, bw, path)


if __name__ == "__main__":
    main()
