"""Start-up: from `graphc generate MODEL` to its first generated token, cold and warm, next to llama.cpp.

Each figure is one fresh process, timed from its start to the first byte of its first token on stdout
(`--ids -n 1`: the token is printed as soon as it is sampled). Cold: an empty compile cache (the C
target builds its kernel library, every graph's program and the re-laid-out weights); warm: the same
command again (everything from the cache; the model file is in the page cache in both). llama.cpp:
llama-cpp-python loading the same file and evaluating the same prompt in a fresh process. Models: the demo's
tiny random LLaMA GGUF (examples/demo.py) and the 1.1B-parameter LLaMA-shaped q4_0 model of bench/llm.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = [1, 15, 27, 99, 310, 42, 7, 250]
N_CTX = 512                  # context rows for the large model (the demo model's context is 256)

# llama.cpp's own start-up, so nothing of graphc is imported; like graphc.models.testing.llama_cpp_model, it
# turns llama.cpp's extra buffer types (AMX, REPACK) off where its CPU library has AMX (faults on some VMs)
_LLAMA_CPP = """
import ctypes, os, sys, numpy as np
import llama_cpp, llama_cpp.llama_cpp as lib
from llama_cpp import Llama
cpu = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so")
if getattr(ctypes.CDLL(cpu), "ggml_cpu_has_amx_int8", lambda: 0)():
    default = lib.llama_model_default_params
    def params():
        p = default()
        p.use_extra_bufts = False
        return p
    lib.llama_model_default_params = params
llm = Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[3]), verbose=False)
llm.eval([int(t) for t in sys.argv[4:]])
print(int(np.argmax(llm.scores[llm.n_tokens - 1])), flush=True)
"""


def _first_token_seconds(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    first = p.stdout.read(1)
    dt = time.perf_counter() - t0
    out, err = p.communicate(timeout=1800)
    if p.returncode != 0 or not first.strip():
        raise RuntimeError(f"{' '.join(cmd[:4])} ...: exit {p.returncode}: {err.decode(errors='replace')[-500:]}")
    return dt


def _graphc(model: Path, cache: Path, n_threads: int, n_ctx: int) -> float:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache))
    env.pop("GRAPHC_NO_CACHE", None)
    cmd = [sys.executable, "-m", "graphc", "generate", str(model), "--prompt-ids", *map(str, PROMPT), "-n", "1",
           "--ids", "--ctx", str(n_ctx), "--threads", str(n_threads)]
    return _first_token_seconds(cmd, env)


def _llama_cpp(model: Path, n_threads: int, n_ctx: int) -> "float | None":
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    cmd = [sys.executable, "-c", _LLAMA_CPP, str(model), str(n_ctx), str(n_threads), *map(str, PROMPT)]
    return _first_token_seconds(cmd, dict(os.environ))


def models() -> list[tuple[str, Path, int]]:
    """(what, file, context rows)"""
    sys.path.insert(0, str(ROOT / "bench"))
    import llm
    from graphc.models.testing import make_tiny_gguf
    demo = llm.CACHE / "demo-tiny-llama-q4_0.gguf"
    if not demo.exists():
        llm.CACHE.mkdir(exist_ok=True)
        make_tiny_gguf(demo, arch="llama", wtype="q4_0", seed=7)          # examples/demo.py's model
    return [("demo model (tiny LLaMA, q4_0, 2 layers)", demo, 256),
            ("LLaMA-shaped 1.1B (22 layers, q4_0)", llm.model_file(22, "q4_0"), N_CTX)]


def measure(quick: bool, n_threads: int) -> list[dict]:
    rows = []
    for name, path, n_ctx in models():
        cache = Path(tempfile.mkdtemp(prefix="graphc-startup-"))
        try:
            cold = _graphc(path, cache, n_threads, n_ctx)
            warm = sorted(_graphc(path, cache, n_threads, n_ctx) for _ in range(1 if quick else 3))[0 if quick else 1]
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        rows.append({"what": name, "bytes": path.stat().st_size, "cold": cold, "warm": warm,
                     "llama_cpp": _llama_cpp(path, n_threads, n_ctx)})
    return rows


def section(rows: list[dict]) -> list[str]:
    lines = ["## Start-up: time to the first token", "",
             "`graphc generate MODEL --prompt-ids <8 ids> -n 1` in a fresh process, from its start to the first "
             "token on stdout (bench/startup.py). Cold: an empty compile cache (the C target's kernel library, "
             "each graph's program, the re-laid-out weights are built); warm: the same again (median of 3). "
             "llama.cpp: llama-cpp-python loading the file and evaluating the prompt in a fresh process. "
             "Targets (issue 14): warm <= 2 s, cold <= 20 s.", "",
             "| model | file | graphc cold | graphc warm | llama.cpp | warm / llama.cpp |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lc = r["llama_cpp"]
        lines.append(f"| {r['what']} | {r['bytes'] / 2**20:.0f} MiB | {r['cold']:.1f} s | {r['warm']:.2f} s | "
                     + (f"{lc:.2f} s | {r['warm'] / lc:.2f}x |" if lc else "not installed | |"))
    return lines + [""]


if __name__ == "__main__":
    print("\n".join(section(measure("--quick" in sys.argv, os.cpu_count() or 1))))
