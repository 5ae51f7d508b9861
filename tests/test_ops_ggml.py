"""Every op table case that ggml-python 0.15.3 has: ref (ggml emulation mode) against real ggml.

Both sides get the same raw input bytes (quantized weights from ggml_quantize_chunk). NMSE <= 1e-7,
ggml test-backend-ops' threshold, unless a case documents why not (Case.why_ggml).
"""
from __future__ import annotations

import ctypes
import os
import pickle

import numpy as np
import pytest

from graphc.errors import CompileError
from graphc.types import TYPES_BY_ID
from op_cases import CASES, GGML_MODE, Case, compare, ggml_dequantize, ggml_type_id, prepare
from test_ops import run_ref

import ggml as gg  # noqa: E402  (a test dependency: missing means a broken install)

pytestmark = pytest.mark.ggml
GGML_CASES = [c for c in CASES if c.ggml is not None]

# Known gaps in graphc (reported to the lead); strict, so each turns red once fixed.
# Weight types whose ggml integer dot product ref does not implement: compiling in ggml mode must say so.
UNSUPPORTED_GGML_MODE = {"mul_mat-iq4_nl": "iq4_nl", "mul_mat-iq4_xs": "iq4_xs"}
SUPPORTED_CASES = [c for c in GGML_CASES if c.id not in UNSUPPORTED_GGML_MODE]


def read_ggml(t) -> np.ndarray:
    """A ggml tensor's values as float64 / int64 numpy 4-D (copied out of the context)."""
    c = t.contents
    typ = TYPES_BY_ID[c.type]
    ne = [int(c.ne[i]) for i in range(4)]
    nb = [int(c.nb[i]) for i in range(4)]
    full = (ne[3], ne[2], ne[1], ne[0])
    n = int(np.prod(ne))
    span = gg.ggml_nbytes(t)
    raw = np.ctypeslib.as_array((ctypes.c_uint8 * span).from_address(gg.ggml_get_data(t))).copy()
    if typ.is_quantized or typ.name == "bf16":
        assert gg.ggml_is_contiguous(t), "non-contiguous block-type result"
        if typ.name == "bf16":
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64).reshape(full)
        return ggml_dequantize(raw, typ.name, n).astype(np.float64).reshape(full)
    v = np.lib.stride_tricks.as_strided(raw.view(np.dtype(typ.np_dtype)), shape=full, strides=tuple(reversed(nb)))
    return v.astype(np.int64 if typ.is_int else np.float64)


def run_ggml(c: Case, fed: dict) -> np.ndarray:
    size = 16 * 1024 * 1024 + 4 * sum(f.raw.size for f in fed.values())
    ctx = gg.ggml_init(gg.ggml_init_params(mem_size=size, mem_buffer=None))
    assert ctx, "ggml_init failed"
    try:
        T = {}
        for name, f in fed.items():
            t = gg.ggml_new_tensor(ctx, ggml_type_id(f.inp.type), 4, (ctypes.c_int64 * 4)(*f.inp.ne4))
            assert gg.ggml_nbytes(t) == f.raw.size, f"{name}: ggml wants {gg.ggml_nbytes(t)} bytes, have {f.raw.size}"
            ctypes.memmove(gg.ggml_get_data(t), f.raw.ctypes.data, f.raw.size)
            T[name] = t
        res = c.ggml(ctx, T)
        outs = res if isinstance(res, tuple) else (res,)
        gf = gg.ggml_new_graph(ctx)
        for o in outs:               # same expansion order as the graphc graph
            gg.ggml_build_forward_expand(gf, o)
        out = outs[-1]
        assert gg.ggml_graph_compute_with_ctx(ctx, gf, 1) == 0, "ggml compute failed"
        return read_ggml(out)
    finally:
        gg.ggml_free(ctx)


def in_child(fn):
    """Run fn in a forked child: a GGML_ASSERT aborts the child, not the test session."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            res = ("ok", fn())
        except BaseException as e:  # noqa: BLE001 - reported by the parent
            res = ("error", f"{type(e).__name__}: {e}")
        data = pickle.dumps(res)
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        pytest.fail(f"ggml crashed (wait status {status}); its message is in the captured stderr")
    kind, val = pickle.loads(data)
    if kind != "ok":
        pytest.fail(f"ggml side failed: {val}")
    return val


@pytest.mark.parametrize("c", [c for c in GGML_CASES if c.id in UNSUPPORTED_GGML_MODE], ids=lambda c: c.id)
def test_unsupported_ggml_mode_is_a_compile_error(c: Case, rng):
    fed = prepare(c, rng)
    with pytest.raises(CompileError, match=UNSUPPORTED_GGML_MODE[c.id] + ".*quant_matmul='dequant'"):
        run_ref(c, fed, GGML_MODE)


@pytest.mark.parametrize("c", SUPPORTED_CASES, ids=lambda c: c.id)
def test_op_vs_ggml(c: Case, rng):
    fed = prepare(c, rng)
    want = in_child(lambda: run_ggml(c, fed))
    got, out = run_ref(c, fed, GGML_MODE, gelu_table=True)
    assert got.shape == want.shape, f"{c.id}: ref shape {got.shape}, ggml {want.shape}"
    if c.exact:
        np.testing.assert_array_equal(got, want, err_msg=c.id)
    else:
        compare(got, want, c.tol_ggml, c.id)


def test_ggml_types_match_graphc():
    """graphc's type table agrees with ggml's block sizes and type sizes."""
    for tid, t in TYPES_BY_ID.items():
        assert gg.ggml_blck_size(tid) == t.blck, t.name
        assert gg.ggml_type_size(tid) == t.size, t.name
