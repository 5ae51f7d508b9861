"""End-to-end LLM decode and prefill: graphc's C target vs llama.cpp (llama-cpp-python) on the same GGUF file.

The model is LLaMA-shaped (TinyLlama-1.1B's widths: 2048 embedding, 32 heads / 4 KV heads of 64, 5632 FFN,
32000 vocabulary) with random q4_0 weights (llama.cpp's q4_0 file type: output matrix q6_K), written once
by graphc.models.testing.make_tiny_gguf into bench/.cache/. Both engines use the same threads, an f16 KV
cache and no flash attention (llama-cpp-python's defaults). Prefill: a 128-token prompt in one batch;
decode: 32 single tokens after it. Bytes per decoded token = the weights read (every matrix but the
token embedding table, of which one row is read), so decode GB/s compares with the copy bandwidth.
Each engine runs in a process of its own: llama.cpp's worker threads keep polling for a while after its
context is closed, and on a 2-core machine they halved graphc's figures when both ran in one process.
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
SHAPE = dict(n_embd=2048, n_head=32, n_head_kv=4, head_dim=64, n_ff=5632, n_vocab=32000, context_length=2048,
             rope_linear=0.0, rope_freqs=False, eps=1e-5)
N_PROMPT, N_DECODE, N_CTX = 128, 32, 512
PREFILL_NOTE = ("Known differences: graphc's prefill graph computes logits for all prompt positions "
                "(`logits()` returns every position; llama.cpp computes only the last row's), and llama.cpp "
                "repacks q4_0 weights at load into interleaved multi-row blocks (its REPACK path) for a faster "
                "prefill GEMM; graphc multiplies the file's blocks as stored. Both read the same weight bytes per "
                "decoded token. Where graphc is slower on a CPU tier, issue 13 tracks it; the GEMV table above "
                "shows how much of it is the quantized kernels.")


def model_file(n_layer: int, wtype: str = "q4_0") -> Path:
    from graphc.models.testing import make_tiny_gguf
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"llama-shaped-{n_layer}L-{wtype}.gguf"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        make_tiny_gguf(tmp, arch="llama", wtype=wtype, seed=1, n_layer=n_layer, **SHAPE)
        os.replace(tmp, path)
    return path


def weight_bytes_per_token(path: Path) -> int:
    from graphc.frontends.gguf import GGUFFile
    f = GGUFFile(str(path))
    return sum(e.nbytes for n, e in f.tensors.items() if n != "token_embd.weight")


def _median(xs):
    return statistics.median(xs)


def run_llama_cpp(path: Path, n_threads: int, prompt: list[int], repeat: int) -> tuple[float, float]:
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_batch=N_PROMPT, n_ubatch=N_PROMPT, n_threads=n_threads,
                n_threads_batch=n_threads, verbose=False)
    def last_logits() -> np.ndarray:                 # without logits_all only the last row is kept, in C
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    pre, dec = [], []
    for _ in range(repeat + 1):                      # the first round warms up
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        pre.append(time.perf_counter() - t0)
        tok = int(np.argmax(last_logits()))
        t0 = time.perf_counter()
        for _ in range(N_DECODE):
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
        dec.append((time.perf_counter() - t0) / N_DECODE)
    llm.close()
    return N_PROMPT / _median(pre[1:]), 1.0 / _median(dec[1:])


def run_graphc(path: Path, n_threads: int, prompt: list[int], repeat: int, target: str = "c",
               march: str = "native") -> tuple[float, float]:
    """graphc's prefill and decode tokens/s; like llama.cpp above, only the last position's logits (what
    generate() asks for)."""
    import graphc.models
    opts = {"march": march} if target == "c" else {}
    m = graphc.models.load(path, target=target, n_ctx=N_CTX, n_batch=N_PROMPT, n_threads=n_threads, **opts)
    m.prepare(len(prompt), N_DECODE)
    pre, dec = [], []
    for _ in range(repeat + 1):
        m.reset_state()
        t0 = time.perf_counter()
        last = m.logits(prompt, all_positions=False)[-1]
        pre.append(time.perf_counter() - t0)
        tok = int(np.argmax(last))
        t0 = time.perf_counter()
        for _ in range(N_DECODE):
            tok = int(np.argmax(m.logits([tok], all_positions=False)[-1]))
        dec.append((time.perf_counter() - t0) / N_DECODE)
    return N_PROMPT / _median(pre[1:]), 1.0 / _median(dec[1:])


def measure(quick: bool, copy_gbs: float, n_threads: int) -> dict:
    n_layer = 4 if quick else 8
    path = model_file(n_layer)
    prompt = [int(t) for t in np.random.default_rng(0).integers(3, SHAPE["n_vocab"], N_PROMPT)]
    repeat = 2 if quick else 3
    res = {"n_layer": n_layer, "path": path.name, "mib": path.stat().st_size / 2**20,
           "bytes": weight_bytes_per_token(path), "copy": copy_gbs, "threads": n_threads}
    for name, fn in (("llama.cpp", run_llama_cpp), ("graphc c", run_graphc)):
        res[name] = _in_own_process(fn, path, n_threads, prompt, repeat)
    try:
        res["graphc opencl"] = _in_own_process(run_graphc, path, n_threads, prompt, repeat, "opencl")
        res["opencl profile"] = _in_own_process(opencl_profile, path, prompt)
    except Exception as e:     # no OpenCL device here: the table says so
        res["opencl error"] = f"{type(e).__name__}: {e}"
    return res


def opencl_profile(path: Path, prompt: list[int]) -> dict:
    """Where an OpenCL prefill and a decode step spend their kernel time (profiling events), by kernel label."""
    import graphc.models
    m = graphc.models.load(path, target="opencl", n_ctx=N_CTX, n_batch=N_PROMPT, profile=True)
    m.logits(prompt)
    tok = int(np.argmax(m.logits(prompt[:1])[-1]))
    for _ in range(4):
        tok = int(np.argmax(m.logits([tok])[-1]))
    out = {}
    for key, mod in m.modules.items():
        rows = mod._exe.profile()
        out["decode" if key[0] == 1 else "prefill"] = {"total": sum(s for _, _, s in rows), "top": rows[:6]}
    return out


def _in_own_process(fn, *args):
    """fn(*args) in a fresh process (spawned: nothing of this process's threads or libraries comes along)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


def section(r: dict) -> list[str]:
    gb = r["bytes"] / 1e9
    lines = ["## End to end: LLaMA-shaped GGUF model, graphc C target vs llama.cpp", "",
             f"{r['n_layer']}-layer LLaMA-shaped model ({r['path']}, {r['mib']:.0f} MiB; TinyLlama-1.1B widths, "
             f"random q4_0 weights, q6_K output), {r['threads']} threads each, f16 KV cache, same file. Prefill: "
             f"{N_PROMPT}-token prompt in one batch; decode: {N_DECODE} tokens after it (median of rounds). "
             f"Decode reads {gb * 1e3:.0f} MB of weights per token.", "",
             "| engine | prefill tokens/s | decode tokens/s | decode weight GB/s | % of copy bandwidth |",
             "|---|---:|---:|---:|---:|"]
    for eng in ("llama.cpp", "graphc c", "graphc opencl"):
        if eng not in r:
            continue
        pre, dec = r[eng]
        lines.append(f"| {eng} | {pre:.1f} | {dec:.1f} | {dec * gb:.1f} | {100 * dec * gb / r['copy']:.0f}% |")
    (lp, ld), (gp, gd) = r["llama.cpp"], r["graphc c"]
    lines += ["", f"graphc / llama.cpp: prefill **{gp / lp:.2f}x**, decode **{gd / ld:.2f}x**.", "", PREFILL_NOTE, ""]
    if "graphc opencl" in r:
        op, od = r["graphc opencl"]
        lines += [f"OpenCL ({r.get('opencl device', 'the default device')}) / C: prefill **{op / gp:.2f}x**, "
                  f"decode **{od / gd:.2f}x**.", ""]
        for phase, p in r.get("opencl profile", {}).items():
            lines.append(f"Where an OpenCL {phase} run spends its kernel time (profiling events, "
                         f"{p['total'] * 1e3:.1f} ms of kernels in all, over the runs made):")
            lines.append("")
            for label, n, sec in p["top"]:
                lines.append(f"- {label}: {sec * 1e3:.1f} ms over {n} launches ({100 * sec / p['total']:.0f}%)")
            lines.append("")
    elif "opencl error" in r:
        lines += [f"OpenCL not measured: {r['opencl error']}", ""]
    return lines


if __name__ == "__main__":
    import sys
    quick = "--quick" in sys.argv
    print("\n".join(section(measure(quick, 37.0, os.cpu_count() or 1))))
