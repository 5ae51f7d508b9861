#!/usr/bin/env bash
# Every GPU check of the Triton target in one run (the GPU machines are lent for minutes): install graphc
# offline against the machine's own torch/triton, run the op cases and fixtures on the GPU against ref,
# load an artifact built ahead of time (cubins, no recompiling), run bench/gpu.py. Results go to $OUT
# (default ./gpu-out): env.txt, tests.txt, aot.txt, gpu.md, gpu.json.
#   tools/gpu_check.sh [--quick]
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
{ nvidia-smi; python3 -c 'import torch, triton; print(torch.__version__, triton.__version__)'; } >"$OUT/env.txt" 2>&1
# no network there: install without dependencies or build isolation; report what graphc needs and lacks
python3 -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT/env.txt" 2>&1
python3 - >>"$OUT/env.txt" 2>&1 <<'PY'
import importlib
for m in ("numpy", "networkx", "jinja2", "lark", "cffi", "pytest", "torch", "triton", "gguf"):
    try:
        importlib.import_module(m); print("have", m)
    except ImportError as e:
        print("MISSING", m, e)
PY
export GRAPHC_CACHE_DIR="$OUT/cache"
# 1. correctness on the GPU: every op case, fused and unfused, the fixtures, the tiny decoder, torch I/O
GRAPHC_TEST_TRITON_DEVICE=cuda timeout 240 python3 -m pytest -q -x -p no:cacheprovider \
  tests/test_triton_target.py >"$OUT/tests.txt" 2>&1
echo "pytest rc=$?" >>"$OUT/tests.txt"
# 2. ahead of time: build for this GPU's arch, load it back, check it loaded the cubins and matches JIT
timeout 120 python3 - >"$OUT/aot.txt" 2>&1 <<'PY'
import tempfile, numpy as np, torch, graphc
cap = torch.cuda.get_device_capability()
arch = f"sm_{cap[0]}{cap[1]}"
g = graphc.GraphBuilder("aot")
x = g.set_input(g.new_tensor_2d("f32", 4096, 1, name="x"))
w = g.set_param(g.new_tensor_2d("q4_0", 4096, 1024, name="w"))
graph = g.build(g.unary(g.mul_mat(w, g.rms_norm(x, 1e-5)), "silu"))
rng = np.random.default_rng(0)
wv = memoryview(rng.integers(0, 0x3C, w.nbytes, dtype=np.uint8))
d = tempfile.mkdtemp()
graphc.compile(graph, target="triton", weights={"w": wv}, cuda_arch=arch, autotune=False).save(d)
m = graphc.load(d, autotune=False)
j = graphc.compile(graph, target="triton", weights={"w": wv}, autotune=False)
feeds = {"x": rng.standard_normal((1, 4096)).astype(np.float32)}
a, b = m.run(feeds), j.run(feeds)
print("arch", arch, "prebuilt", m._exe.prebuilt, "max diff", max(float(np.abs(a[k] - b[k]).max()) for k in a))
PY
echo "aot rc=$?" >>"$OUT/aot.txt"
# 3. measurements (BENCHMARKS.md's Triton section)
timeout 300 python3 bench/gpu.py --out "$OUT" "$@" >"$OUT/bench.txt" 2>&1
echo "bench rc=$?" >>"$OUT/bench.txt"
tail -n 5 "$OUT"/tests.txt "$OUT"/aot.txt; cat "$OUT/gpu.md" 2>/dev/null
