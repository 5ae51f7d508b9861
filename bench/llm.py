"""End-to-end LLM decode and prefill: graphc's C target vs llama.cpp (llama-cpp-python) on the same GGUF file.

The models are LLaMA-shaped (TinyLlama-1.1B's widths: 2048 embedding, 32 heads / 4 KV heads of 64, 5632 FFN,
32000 vocabulary) with random weights in llama.cpp's q4_0 file type (output matrix q6_K) and its Q4_K_M mix
(q4_K, q6_K for attn_v / ffn_down on half the layers and the output), written once by
graphc.models.testing.make_tiny_gguf into bench/.cache/. Both engines use the same threads, an f16 KV
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
    from graphc.models.testing import llama_cpp_model     # (without AMX where its kernels fault: see there)
    llm = llama_cpp_model(path, n_ctx=N_CTX, n_batch=N_PROMPT, n_ubatch=N_PROMPT, n_threads=n_threads,
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
    return time_model(m, prompt, repeat)


def time_model(m, prompt: list[int], repeat: int, before_round=None) -> tuple[float, float]:
    """Prefill and decode tokens/s of a loaded model: the medians of `repeat` rounds after a warm-up round
    (before_round() runs ahead of each, e.g. a barrier between tensor-parallel ranks)."""
    m.prepare(len(prompt), N_DECODE)
    pre, dec = [], []
    for _ in range(repeat + 1):
        m.reset_state()
        if before_round is not None:
            before_round()
        t0 = time.perf_counter()
        last = m.logits(prompt, all_positions=False)[-1]
        pre.append(time.perf_counter() - t0)
        tok = int(np.argmax(last))
        t0 = time.perf_counter()
        for _ in range(N_DECODE):
            tok = int(np.argmax(m.logits([tok], all_positions=False)[-1]))
        dec.append((time.perf_counter() - t0) / N_DECODE)
    return N_PROMPT / _median(pre[1:]), 1.0 / _median(dec[1:])


WTYPES = ("q4_0", "q4_K_M")        # llama.cpp's file types: q4_0 matrices; the Q4_K_M mix (q4_K, q6_K)


def measure(quick: bool, copy_gbs: float, n_threads: int, opencl: bool = True) -> dict:
    """Prefill and decode tokens/s of llama.cpp and graphc's C target (built for GRAPHC_BENCH_MARCH) on
    each model of WTYPES; with opencl, graphc's OpenCL target on the q4_0 model too."""
    n_layer = 4 if quick else 8
    prompt = [int(t) for t in np.random.default_rng(0).integers(3, SHAPE["n_vocab"], N_PROMPT)]
    repeat = 2 if quick else 3
    march = os.environ.get("GRAPHC_BENCH_MARCH", "native")
    res = {"copy": copy_gbs, "threads": n_threads, "march": march, "models": []}
    from graphc.models.testing import llama_cpp_has_amx
    res["llama.cpp without extra buffers"] = llama_cpp_has_amx()    # see llama_cpp_model
    for wtype in WTYPES:
        path = model_file(n_layer, wtype)
        r = {"wtype": wtype, "n_layer": n_layer, "path": path.name, "mib": path.stat().st_size / 2**20,
             "bytes": weight_bytes_per_token(path)}
        r["llama.cpp"] = _in_own_process(run_llama_cpp, path, n_threads, prompt, repeat)
        r["graphc c"] = _in_own_process(run_graphc, path, n_threads, prompt, repeat, "c", march)
        if opencl and wtype == "q4_0":
            try:
                r["graphc opencl"] = _in_own_process(run_graphc, path, n_threads, prompt, repeat, "opencl")
                res["opencl profile"] = _in_own_process(opencl_profile, path, prompt)
            except Exception as e:     # no OpenCL device here: the table says so
                res["opencl error"] = f"{type(e).__name__}: {e}"
        res["models"].append(r)
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


def section(res: dict, tier: str = "", peers: str = "") -> list[str]:
    """Markdown for one ISA tier: a table per model, ratios to llama.cpp, the OpenCL profile if measured."""
    title = "## End to end: LLaMA-shaped GGUF models, graphc C target vs llama.cpp"
    lines = [title + (f" ({tier} tier)" if tier else ""), ""]
    m0 = res["models"][0]
    lines += [f"{m0['n_layer']}-layer LLaMA-shaped models (TinyLlama-1.1B widths, random weights), "
              f"{res['threads']} threads each, f16 KV cache, same file for both engines. graphc built with "
              f"-march={res['march']}; {peers or 'llama.cpp as installed'}. Prefill: {N_PROMPT}-token prompt in "
              f"one batch; decode: {N_DECODE} tokens after it (median of rounds); both compute the last "
              "position's logits only. Decode GB/s = the weight bytes read per token times tokens/s.", "",
              "| model | engine | prefill tokens/s | decode tokens/s | decode weight GB/s | % of copy bandwidth |",
              "|---|---|---:|---:|---:|---:|"]
    ratios = []
    for m in res["models"]:
        gb = m["bytes"] / 1e9
        name = f"{m['wtype']} ({m['path']}, {m['mib']:.0f} MiB)"
        for eng in ("llama.cpp", "graphc c", "graphc opencl"):
            if eng in m:
                pre, dec = m[eng]
                lines.append(f"| {name} | {eng} | {pre:.1f} | {dec:.1f} | {dec * gb:.1f} | "
                             f"{100 * dec * gb / res['copy']:.0f}% |")
        (lp, ld), (gp, gd) = m["llama.cpp"], m["graphc c"]
        ratios.append(f"{m['wtype']}: prefill **{gp / lp:.2f}x**, decode **{gd / ld:.2f}x**")
    lines += ["", "graphc C / llama.cpp: " + "; ".join(ratios) + ".", ""]
    if res.get("llama.cpp without extra buffers"):
        lines += ["This llama.cpp build has AMX kernels, whose first tile instruction faults on this machine (a VM "
                  "without AMX tile state), so it ran with its extra buffer types off: no AMX and no REPACK "
                  "(8-row weight layouts), i.e. its vec_dot kernels. With REPACK it is faster than this "
                  "(compare the AVX2 tier's llama.cpp, which has REPACK and no AMX).", ""]
    q4 = res["models"][0]
    if "graphc opencl" in q4:
        (op, od), (gp, gd) = q4["graphc opencl"], q4["graphc c"]
        lines += [f"OpenCL (the default device) / C on the q4_0 model: prefill **{op / gp:.2f}x**, "
                  f"decode **{od / gd:.2f}x**.", ""]
        for phase, p in res.get("opencl profile", {}).items():
            lines.append(f"Where an OpenCL {phase} run spends its kernel time (profiling events, "
                         f"{p['total'] * 1e3:.1f} ms of kernels in all, over the runs made):")
            lines.append("")
            for label, n, sec in p["top"]:
                lines.append(f"- {label}: {sec * 1e3:.1f} ms over {n} launches ({100 * sec / p['total']:.0f}%)")
            lines.append("")
    elif "opencl error" in res:
        lines += [f"OpenCL not measured: {res['opencl error']}", ""]
    return lines


if __name__ == "__main__":
    import sys
    quick = "--quick" in sys.argv
    print("\n".join(section(measure(quick, 37.0, os.cpu_count() or 1))))
