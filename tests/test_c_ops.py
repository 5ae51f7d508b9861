"""The C op library (kernels/c/ops_*.h) against the ref target, op by op, before any codegen.

A small harness library includes every ops_*.h and exports each gc_op_<op> (and its gc_scratch_<op>);
it is built once per session with the system C compiler under -O2 -Wall -Wextra -Werror, twice: with
-march=native (AVX2/AVX-512/F16C paths) and for baseline x86-64 (the portable fallbacks); it is also
compiled (not run) for every x86 tier in TIERS, so a warning in a SIMD path this CPU lacks still fails
(test_headers_compile_alone). A graph from tests/op_cases.py (plus extra cases here) runs node by node
on the ref target's own memory: nodes whose op the library provides call the C function on gc_tensor
descriptors of ref's buffers (views keep their offsets and strides), with nth = 1 or 3 (threads
simulated by calling ith = 0..2 in turn); other nodes run on ref. Results must match a pure ref run:
bytes exactly for copies, gathers, scatters and quantization, NMSE <= 1e-7 for f32 arithmetic.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from graphc.ir import Tensor
from graphc.ops import OPS
from graphc.types import get_type
from op_cases import CASES, Case, In, build_graph, causal_mask, compare, distinct, ints, prepare, uniform

KERNELS = Path(__file__).resolve().parent.parent / "kernels" / "c"
HEADERS = ("ops_norm.h", "ops_rope.h", "ops_data.h", "ops_attn.h", "ops_rwkv.h")
REF_OPTS = {"quant_matmul": "ggml"}
BYTE_EXACT = {"cpy", "dup", "cont", "set", "set_rows", "get_rows", "concat", "pad", "repeat", "diag_mask_inf",
              "diag_mask_zero", "argmax", "arange"}



def provided() -> dict[str, str]:
    """op name -> header, from the `/* GC_PROVIDES: ... */` markers."""
    out = {}
    for h in HEADERS:
        m = re.search(r"/\* GC_PROVIDES:([^*]*)\*/", (KERNELS / h).read_text())
        assert m, f"{h} has no GC_PROVIDES marker"
        for op in m.group(1).split():
            assert op in OPS, f"{h} provides unknown op {op!r}"
            out[op] = h
    return out


PROVIDED = provided()


# --- the harness library -------------------------------------------------------------------------

def _params_header() -> str:
    from graphc.targets.c.params import header
    return header()


def _harness_source() -> str:
    lines = ["#include <stddef.h>"] + [f'#include "{h}"' for h in HEADERS]
    for op in sorted(PROVIDED):
        lines.append(f"void h_op_{op}(const gc_ctx *c, const gc_tensor *d, const gc_tensor *const *s, const void *p, "
                     f"int ith, int nth) {{ gc_op_{op}(c, d, s, p, ith, nth); }}")
    return "\n".join(lines) + "\n"


def _harness_full_source() -> str:
    """The harness: every op's wrapper and every scratch-size wrapper."""
    src = _harness_source()
    for op in sorted(_scratch_ops()):
        src += (f"size_t hs_{op}(const gc_tensor *d, const gc_tensor *const *s, const void *p) "
                f"{{ return gc_scratch_{op}(d, s, p); }}\n")
    return src


def _scratch_ops() -> set[str]:
    text = "".join((KERNELS / h).read_text() for h in HEADERS)
    direct = set(re.findall(r"size_t gc_scratch_(\w+)\(", text))
    direct |= set(re.findall(r"GC_ROW_SCRATCH\((\w+)\)", text))
    return direct & set(PROVIDED)


def _cdef() -> str:
    body = re.sub(r"^#.*$", "", _params_header(), flags=re.M)
    decls = ["typedef struct gc_tensor { char *data; int64_t ne[4]; int64_t nb[4]; int32_t type; } gc_tensor;",
             "typedef struct gc_ctx { int n_threads; void **scratch; size_t scratch_size; int *work; } gc_ctx;", body]
    for op in sorted(PROVIDED):
        decls.append(f"void h_op_{op}(const gc_ctx *, const gc_tensor *, const gc_tensor *const *, const void *, "
                     "int, int);")
    for op in sorted(_scratch_ops()):
        decls.append(f"size_t hs_{op}(const gc_tensor *, const gc_tensor *const *, const void *);")
    return "\n".join(decls)


FLAVORS = {"native": ["-march=native"], "portable": ["-march=x86-64", "-mtune=generic"]}
# GRAPHC_TEST_CFLAGS adds flags to every harness build, e.g. "-fsanitize=undefined -fno-sanitize-recover"
EXTRA_CFLAGS = os.environ.get("GRAPHC_TEST_CFLAGS", "").split()


class Harness:
    def __init__(self, lib, ffi):
        self.lib, self.ffi = lib, ffi


@pytest.fixture(scope="session")
def harness_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("c_ops")


_BUILT: dict[str, Harness] = {}


def build(flavor: str, workdir: Path) -> Harness:
    if flavor in _BUILT:
        return _BUILT[flavor]
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler found (set CC)")
    import cffi
    d = workdir / flavor
    d.mkdir(exist_ok=True)
    (d / "graphc_params.h").write_text(_params_header())
    (d / "harness.c").write_text(_harness_full_source())
    so = d / "harness.so"
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", *FLAVORS[flavor], *EXTRA_CFLAGS, "-fPIC", "-shared",
           f"-I{d}", f"-I{KERNELS}", str(d / "harness.c"), "-o", str(so), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"harness build failed ({' '.join(cmd)}):\n{r.stderr}"
    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    h = Harness(ffi.dlopen(str(so)), ffi)
    _BUILT[flavor] = h
    return h


# --- running a graph with the C ops on ref's memory ---------------------------------------------

def _tensor(h: Harness, ex, t: Tensor, keep: list):
    if t is None:
        return h.ffi.NULL
    ct = h.ffi.new("gc_tensor *")
    buf = ex.mem.buffer(t)
    ct.data = h.ffi.cast("char *", buf.ctypes.data) + (t.view_offs if t.is_view else 0)
    for i in range(4):
        ct.ne[i] = t.ne[i]
        ct.nb[i] = t.nb[i]
    ct.type = t.type.id
    keep.append(ct)
    return ct


def _params(h: Harness, n: Tensor):
    from graphc.codegen.params import field_values
    p = h.ffi.new(f"gc_p_{n.op} *")
    for f, v in field_values(n.op, n.params):
        setattr(p, f.name, v)
    return p


def run_c_node(h: Harness, ex, n: Tensor, nth: int) -> None:
    keep: list = []
    dst = _tensor(h, ex, n, keep)
    srcs = [_tensor(h, ex, s, keep) for s in n.src]
    srcs += [h.ffi.NULL] * (len(OPS[n.op].srcs) - len(srcs))
    src_arr = h.ffi.new("gc_tensor *[]", srcs or [h.ffi.NULL])
    params = _params(h, n)
    size = getattr(h.lib, f"hs_{n.op}")(dst, src_arr, params) if n.op in _scratch_ops() else 0
    # each simulated thread gets its own scratch, poisoned so that reading unwritten scratch shows
    scratch = [np.full(max(int(size), 64) // 4 + 16, np.nan, np.float32) for _ in range(nth)]
    ptrs = h.ffi.new("void *[]", [h.ffi.cast("void *", ((s.ctypes.data + 63) // 64) * 64) for s in scratch])
    ctx = h.ffi.new("gc_ctx *", {"n_threads": nth, "scratch": ptrs, "scratch_size": int(size)})
    for ith in range(nth):
        getattr(h.lib, f"h_op_{n.op}")(ctx, dst, src_arr, params, ith, nth)


def execute(h: Harness | None, graph, fed: dict, nth: int):
    """Run graph on ref memory; nodes the library provides run in C when h is given."""
    from graphc.targets.ref import RefExecutable
    ex = RefExecutable(graph, **REF_OPTS)
    for t in graph.leafs:
        ex.write(t, fed[t.name].feed)
    used = set()
    for n in graph.nodes:
        if h is not None and n.op in PROVIDED:
            run_c_node(h, ex, n, nth)
            used.add(n.op)
        else:
            ex._run_node(n)
    return ex, used


def check(c: Case, flavor: str, nth: int, rng, workdir: Path) -> set[str]:
    h = build(flavor, workdir)
    fed = prepare(c, rng)
    graph, out = build_graph(c)
    ex_ref, _ = execute(None, graph, fed, nth)
    ex_c, used = execute(h, graph, fed, nth)
    assert used, f"{c.id}: no node uses a library op"
    if out.op in BYTE_EXACT or (out.op == "none"):
        got, want = ex_c.mem.buffer(out), ex_ref.mem.buffer(out)
        if not np.array_equal(got, want):
            bad = np.flatnonzero(got != want)
            pytest.fail(f"{c.id}: {bad.size} bytes differ, first at {bad[:8].tolist()}")
    else:
        got = ex_c.read(out).astype(np.float64)
        want = ex_ref.read(out).astype(np.float64)
        compare(got, want, 1e-7 if out.type.name == "f32" else 1e-6, c.id)
    return used


# --- extra cases: every block type, conversions, wide rows (vector paths + tails), views ----------

def _c(id: str, inputs: list[In], build) -> Case:
    return Case(id, inputs, build, lambda X: None)


def _zeros(rng, shape):
    return np.zeros(shape)


EXTRA: list[Case] = []
for _t in ("q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q5_K"):
    _n = get_type(_t).blck * 2
    EXTRA.append(_c(f"x-get_rows-{_t}", [In("a", _t, (_n, 9)), In("i", "i32", (5,), ints(0, 9))],
                    lambda g, T: g.get_rows(T["a"], T["i"])))
for _dt in ("q4_1", "q5_0", "q5_1", "q4_0", "q8_0", "f16", "bf16"):
    EXTRA.append(_c(f"x-cpy-f32-{_dt}-wide", [In("a", "f32", (96, 5)), In("d", _dt, (96, 5), _zeros)],
                    lambda g, T: g.cpy(T["a"], T["d"])))
    EXTRA.append(_c(f"x-set_rows-{_dt}", [In("a", _dt, (64, 7, 2), _zeros), In("b", "f32", (64, 3, 2)),
                                          In("i", "i32", (3, 2), distinct(7))],
                    lambda g, T: g.set_rows(T["a"], T["b"], T["i"])))
EXTRA += [
    _c("x-cpy-f16-bf16-transposed", [In("a", "f16", (6, 5)), In("d", "bf16", (5, 6), _zeros)],
       lambda g, T: g.cpy(g.transpose(T["a"]), T["d"])),
    _c("x-cpy-q4_0-same", [In("a", "q4_0", (64, 3)), In("d", "q4_0", (64, 3), _zeros)],
       lambda g, T: g.cpy(T["a"], T["d"])),
    _c("x-cpy-into-f16-view", [In("a", "f32", (8, 2)), In("d", "f16", (8, 6), _zeros)],
       lambda g, T: g.cpy(T["a"], g.view_2d(T["d"], 8, 2, 16, 2 * 16))),
    _c("x-cpy-i32-f32", [In("a", "i32", (7, 3), ints(-50, 50)), In("d", "f32", (21,), _zeros)],
       lambda g, T: g.cpy(T["a"], T["d"])),
    _c("x-cont-f16-permuted", [In("a", "f16", (5, 4, 3))], lambda g, T: g.cont(g.permute(T["a"], 2, 0, 1, 3))),
    _c("x-soft_max-wide-f16mask-alibi-sinks",
       [In("a", "f32", (100, 5, 6)), In("m", "f16", (100, 7), causal_mask(95)), In("s", "f32", (6,), uniform(-1, 2))],
       lambda g, T: g.soft_max_ext(T["a"], T["m"], 0.3, 8.0, sinks=T["s"])),
    _c("x-soft_max-wide-view", [In("a", "f32", (70, 4))],
       lambda g, T: g.soft_max_ext(g.view_2d(T["a"], 35, 4, 280, 20), None, 1.0, 0.0)),
    _c("x-rms_norm-f16-wide", [In("a", "f16", (257, 3, 2))], lambda g, T: g.rms_norm(T["a"], 1e-5)),
    _c("x-norm-wide", [In("a", "f32", (300, 3))], lambda g, T: g.norm(T["a"], 1e-5)),
    _c("x-l2_norm-permuted", [In("a", "f32", (40, 3, 2))], lambda g, T: g.l2_norm(g.permute(T["a"], 0, 2, 1, 3), 1e-6)),
    _c("x-sum_rows-f16", [In("a", "f16", (33, 4))], lambda g, T: g.sum_rows(T["a"])),
    _c("x-mean-wide", [In("a", "f32", (129, 5))], lambda g, T: g.mean(T["a"])),
    _c("x-group_norm-f16", [In("a", "f16", (4, 3, 7, 2))], lambda g, T: g.group_norm(T["a"], 2, 1e-5)),
    _c("x-rope-neox-f16-ff-yarn", [In("a", "f16", (64, 3, 5)), In("p", "i32", (5,), ints(0, 3000)),
                                   In("f", "f32", (16,), uniform(1.0, 4.0))],
       lambda g, T: g.rope_ext(T["a"], T["p"], T["f"], 32, 2, 4096, 10000.0, 0.5, 1.0, 1.0, 32.0, 1.0)),
    _c("x-rope-normal-permuted", [In("a", "f32", (16, 5, 3)), In("p", "i32", (5,), ints(0, 100))],
       lambda g, T: g.rope_ext(g.permute(T["a"], 0, 2, 1, 3), T["p"], None, 16, 0, 0, 10000.0, 1.0, 0.0, 1.0,
                               32.0, 1.0)),
    _c("x-flash_attn_ext-q4_0kv", [In("q", "f32", (64, 3, 4)), In("k", "q4_0", (64, 40, 2)),
                                   In("v", "q4_0", (64, 40, 2)), In("m", "f16", (40, 3), causal_mask(37))],
       lambda g, T: g.flash_attn_ext(T["q"], T["k"], T["v"], T["m"], 0.125, 0.0, 0.0, None)),
    _c("x-flash_attn_ext-q4_Kkv", [In("q", "f32", (256, 2, 2)), In("k", "q4_K", (256, 9, 1)),
                                   In("v", "f16", (256, 9, 1))],
       lambda g, T: g.flash_attn_ext(T["q"], T["k"], T["v"], None, 0.0625, 0.0, 0.0, None)),
    _c("x-flash_attn_ext-wide-f16-sinks-softcap", [In("q", "f32", (80, 4, 4, 2)), In("k", "f16", (80, 33, 2, 2)),
                                                   In("v", "f16", (48, 33, 2, 2)),
                                                   In("m", "f32", (33, 4, 1, 2), causal_mask(29)),
                                                   In("s", "f32", (4,), uniform(-1, 2))],
       lambda g, T: g.flash_attn_ext(T["q"], T["k"], T["v"], T["m"], 0.1, 4.0, 30.0, T["s"])),
    _c("x-rwkv_wkv6-head64", [In("k", "f32", (64, 2, 4)), In("v", "f32", (64, 2, 4)), In("r", "f32", (64, 2, 4)),
                              In("tf", "f32", (64, 2)), In("td", "f32", (64, 2, 4), uniform(0.3, 1.0)),
                              In("st", "f32", (64 * 64 * 2, 2), uniform(-0.5, 0.5))],
       lambda g, T: g.rwkv_wkv6(T["k"], T["v"], T["r"], T["tf"], T["td"], T["st"])),
    _c("x-concat-q8_0-dim1", [In("a", "q8_0", (64, 3, 2)), In("b", "q8_0", (64, 2, 2))],
       lambda g, T: g.concat(T["a"], T["b"], 1)),
    _c("x-concat-f16-dim0-permuted", [In("a", "f16", (4, 3, 2)), In("b", "f16", (2, 3, 2))],
       lambda g, T: g.concat(T["a"], g.cont(g.permute(g.permute(T["b"], 0, 1, 2, 3), 0, 1, 2, 3)), 0)),
    _c("x-pad-f16", [In("a", "f16", (5, 3, 2))], lambda g, T: g.pad_ext(T["a"], 1, 2, 0, 1, 1, 0, 0, 1)),
    _c("x-repeat-i32", [In("a", "i32", (3, 2), ints(-9, 9)), In("b", "i32", (6, 4, 2), ints(0, 1))],
       lambda g, T: g.repeat(T["a"], T["b"])),
    _c("x-set-f16", [In("a", "f16", (6, 5, 2)), In("b", "f16", (3, 2, 2))],
       lambda g, T: g.set(T["a"], T["b"], 12, 60, 120, 2 + 2 * 12)),
    _c("x-out_prod-q8_0", [In("a", "q8_0", (32, 9)), In("b", "f32", (5, 9))], lambda g, T: g.out_prod(T["a"], T["b"])),
    _c("x-diag_mask_inf-view", [In("a", "f32", (9, 4, 3))],
       lambda g, T: g.diag_mask_inf(g.view_3d(T["a"], 6, 4, 3, 36, 144, 8), 1)),
    _c("x-argmax-permuted", [In("a", "f32", (5, 37))], lambda g, T: g.argmax(g.cont(g.transpose(T["a"])))),
    _c("x-get_rows-f16-to-view", [In("a", "f16", (40, 10)), In("i", "i32", (6,), ints(0, 10))],
       lambda g, T: g.get_rows(g.view_2d(T["a"], 20, 10, 80, 20), T["i"])),
]


def _uses_library(c: Case) -> bool:
    try:
        graph, _ = build_graph(c)
    except Exception:
        return False
    return any(n.op in PROVIDED for n in graph.nodes)


ALL = [c for c in CASES if _uses_library(c)] + EXTRA
RUNS = [("native", 1), ("native", 3), ("portable", 3)]


@pytest.mark.parametrize("flavor,nth", RUNS, ids=[f"{f}-t{n}" for f, n in RUNS])
@pytest.mark.parametrize("c", ALL, ids=[c.id for c in ALL])
def test_c_op(c: Case, flavor: str, nth: int, rng, harness_dir):
    check(c, flavor, nth, rng, harness_dir)


def test_every_provided_op_is_tested():
    seen = set()
    for c in ALL:
        graph, _ = build_graph(c)
        seen |= {n.op for n in graph.nodes if n.op in PROVIDED}
    assert seen == set(PROVIDED), f"untested: {sorted(set(PROVIDED) - seen)}"


def test_quantizers_byte_identical(rng, harness_dir):
    """f32 -> every block type the library quantizes, including blocks with ties, zeros and one outlier,
    byte for byte against graphc.quants.quantize (ggml's reference quantizers)."""
    from graphc.quants import quantize
    h = build("native", harness_dir)
    x = rng.standard_normal((6, 128)).astype(np.float32)
    x[1] = 0.0
    x[2, :32] = np.round(x[2, :32] * 4) / 4          # many exact ties at rounding boundaries
    x[3, 5] = 1e4
    for t in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0"):
        graph_case = _c(f"q-{t}", [In("a", "f32", (128, 6)), In("d", t, (128, 6), _zeros)],
                        lambda g, T: g.cpy(T["a"], T["d"]))
        graph, out = build_graph(graph_case)
        from graphc.targets.ref import RefExecutable
        ex = RefExecutable(graph, **REF_OPTS)
        ex.write(graph.get("a"), x.reshape(1, 1, 6, 128))
        for n in graph.nodes:
            run_c_node(h, ex, n, 2)
        got = ex.mem.buffer(out)
        want = quantize(x, t).reshape(-1)
        assert np.array_equal(got, want), f"{t}: bytes differ at {np.flatnonzero(got != want)[:8].tolist()}"


# every x86 tier the C target is built for, compiled (not run) on any host: a warning that only one tier's
# SIMD path raises fails here even on a CPU without that tier
TIERS = ("native", "haswell", "znver2", "skylake-avx512", "icelake-server", "x86-64")


@pytest.mark.parametrize("march", TIERS)
def test_headers_compile_alone(harness_dir, march):
    """Each header builds on its own, warning-free, in C11 and as the generated code includes it; then the
    harness (every op) at -O3 as the C target builds programs, with -fkeep-inline-functions so each static
    inline function is also compiled on its own (unused ones are otherwise never analysed)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    assert cc, "no C compiler found (set CC)"
    d = harness_dir / f"alone-{march}"
    d.mkdir(exist_ok=True)
    (d / "graphc_params.h").write_text(_params_header())
    warn = ["-Wall", "-Wextra", "-Werror", f"-march={march}", f"-I{d}", f"-I{KERNELS}", "-c"]
    for hname in ("dequant.h",) + HEADERS:
        src = d / f"t_{hname}.c"
        src.write_text(f'#include "{hname}"\n#include "{hname}"\nint main(void) {{ return 0; }}\n')
        r = subprocess.run([cc, "-std=c11", "-O2", *warn, str(src), "-o", str(d / "t.o")],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "warning" not in r.stderr, f"{hname} (-march={march}):\n{r.stderr}"
    (d / "harness.c").write_text(_harness_full_source())
    cmd = [cc, "-std=gnu11", "-O3", "-fkeep-inline-functions", "-fPIC", *warn, str(d / "harness.c"),
           "-o", str(d / "harness.o")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, f"{' '.join(cmd)}:\n{r.stderr}"
