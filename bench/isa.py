"""The ISA matrix: graphc's C kernels against ggml / llama.cpp built for the same x86 tier, in one run.

    python bench/isa.py [--quick]            # print the tiers this CPU runs and their measurements

Tiers (what the CPU has decides which run):
  AVX2     graphc built with -march=haswell; ggml-python and llama-cpp-python built with GGML_NATIVE=OFF
           and GGML_AVX/AVX2/FMA/F16C/BMI2=ON, GGML_AVX512=OFF into bench/.cache/peers-avx2 (`make bench`
           builds them there, for the benchmarks only: the test suite uses the venv's native build)
  native   graphc with -march=native and the venv's GGML_NATIVE=ON build, run when the CPU has AVX-512
           (on an AVX2-only CPU native is the AVX2 tier, measured once)
Each tier runs in a child process whose PYTHONPATH puts that tier's peers first and whose
GRAPHC_BENCH_MARCH picks graphc's build (bench/gemv.py, bench/llm.py read it); the child prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_AVX2 = HERE / ".cache" / "peers-avx2"
AVX2_FLAGS = {"avx", "avx2", "fma", "f16c", "bmi2"}


@dataclass(frozen=True)
class Tier:
    name: str            # what the tables call it
    march: str           # graphc's -march
    peers: Path | None   # where this tier's ggml-python / llama-cpp-python live (None: the venv's own)
    note: str            # how the peers were built


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def tiers() -> list[Tier]:
    flags = cpu_flags()
    out = []
    if AVX2_FLAGS <= flags:
        out.append(Tier("AVX2", "haswell", PEERS_AVX2 if (PEERS_AVX2 / "ggml").is_dir() else None,
                        "ggml / llama.cpp built with GGML_NATIVE=OFF, GGML_AVX2=ON, GGML_AVX512=OFF"
                        if (PEERS_AVX2 / "ggml").is_dir() else
                        "ggml / llama.cpp: the venv's native build (bench/.cache/peers-avx2 is missing: "
                        "`make bench` builds it), so these peers may use AVX-512"))
    if "avx512f" in flags or not out:
        out.append(Tier("native", "native", None, "ggml / llama.cpp built with GGML_NATIVE=ON (the venv's)"))
    return out


def run_tier(tier: Tier, what: str, quick: bool, timeout: float = 3600) -> dict:
    """bench/gemv.py's or bench/llm.py's measure() for one tier, in a child process."""
    env = dict(os.environ, GRAPHC_BENCH_MARCH=tier.march)
    if tier.peers is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tier.peers), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(HERE / "isa.py"), "--child", what] + (["--quick"] if quick else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{what} on tier {tier.name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _child(what: str, quick: bool) -> dict:
    sys.path.insert(0, str(HERE))
    from run import N_THREADS, copy_bandwidth
    bw = copy_bandwidth(3)
    if what == "gemv":
        import gemv
        return gemv.measure(quick, bw)
    import llm
    return llm.measure(quick, bw, N_THREADS, opencl=os.environ.get("GRAPHC_BENCH_MARCH") == "native")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=("gemv", "llm"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.quick)))
        return
    for t in tiers():
        print(t)
        for what in ("gemv", "llm"):
            print(json.dumps(run_tier(t, what, args.quick)))


if __name__ == "__main__":
    main()
