"""graphc.quants against gguf.quants (numpy) and real ggml 0.15.3 (ggml-python, ctypes)."""
from __future__ import annotations

import ctypes
import json
import platform
import time

import numpy as np
import pytest

from fixture_graph import FIXTURES
from graphc import quants as Q
from graphc.types import TYPES, get_type

import gguf.quants as gq  # noqa: E402  (a test dependency: missing means a broken install)
from gguf.constants import GGMLQuantizationType as GQT  # noqa: E402

FIX = FIXTURES / "0.15.3"
LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
KQ = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
MATMUL = LEGACY + KQ
IS_X86 = platform.machine().lower() in ("x86_64", "amd64")


def rng() -> np.random.Generator:
    return np.random.default_rng()


def nmse(a: np.ndarray, ref: np.ndarray) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(((a - ref) ** 2).sum() / max((ref ** 2).sum(), 1e-300))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def edge_blocks(blck: int, g: np.random.Generator) -> np.ndarray:
    """Blocks that stress the quantizers: zero, one huge value, negative max, ties of |max|, exact .5
    products, constant, all positive, tiny."""
    v = g.standard_normal((9, blck)).astype(np.float32)
    v[0] = 0
    v[1, g.integers(blck)] = 1e4
    v[2] = -np.abs(v[2])
    v[2, g.integers(blck)] = -50
    v[3, 0], v[3, blck - 1] = 7.0, -7.0                    # |max| tie: the first one wins
    v[3, 1:blck - 1] = np.clip(v[3, 1:blck - 1], -6, 6)
    v[4] = (g.integers(-254, 255, blck) / 2).astype(np.float32)   # halves: round-half cases
    v[4, 0] = 127.0                                         # d = 1 for q8_0 -> x*id lands on .5
    v[5] = 3.25
    v[6] = np.abs(v[6]) + 1
    v[7] *= 1e-6
    v[8] = (g.integers(-8, 8, blck)).astype(np.float32)
    v[8, 0] = -8.0                                          # q4_0 d = 1 exactly
    return v


def sample(shape: tuple[int, ...], blck: int, g: np.random.Generator) -> np.ndarray:
    """Random rows of varied scale with the edge blocks spliced in."""
    x = g.standard_normal(shape).astype(np.float32) * g.uniform(0.01, 20, shape[:-1] + (1,)).astype(np.float32)
    flat = x.reshape(-1, blck)
    e = edge_blocks(blck, g)
    k = min(len(e), len(flat))
    flat[g.choice(len(flat), k, replace=False)] = e[g.choice(len(e), k, replace=False)]
    return flat.reshape(shape)


SHAPES = [(1, 1), (3, 2), (2, 3, 4), (5, 8)]   # (..., blocks per row)


def shaped(lead_blocks: tuple[int, ...], blck: int) -> tuple[int, ...]:
    return (*lead_blocks[:-1], lead_blocks[-1] * blck)


# ---------------------------------------------------------------------------------------------
# vs gguf.quants
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", LEGACY + ["bf16"])
@pytest.mark.parametrize("sb", SHAPES)
def test_quantize_matches_gguf(t, sb):
    g = rng()
    blck = 32
    x = sample(shaped(sb, blck), blck, g)
    if t == "bf16":
        x.reshape(-1)[:8] = [np.nan, -np.inf, np.inf, -0.0, 1e-40, np.float32(1.00390625), 3.4e38, -np.nan]
        nan_payload = np.array([0x7F800001, 0xFFC00123], np.uint32).view(np.float32)
        x.reshape(-1)[8:10] = nan_payload
    ours = Q.quantize(x, t)
    ref = gq.quantize(x, GQT[t.upper()])
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    assert np.array_equal(ours, ref), f"{t}: {np.count_nonzero(ours != ref)} bytes differ"
    assert np.array_equal(Q.encode(x, get_type(t)), ref.reshape(-1))


def _gguf_can_dequantize(name: str) -> bool:
    try:
        qt = GQT[name.upper()]
    except KeyError:
        return False
    return name in ("f32", "f16") or qt in gq._type_traits


DEQ_TYPES = sorted(n for n, t in TYPES.items() if (t.is_quantized or n == "bf16") and _gguf_can_dequantize(n))
# where the f16 scale fields sit in each block: kept finite so that both sides compare real numbers
F16_FIELDS = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0], "q2_K": [80, 82],
              "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208]}


def random_blocks(t: str, nblocks: int, g: np.random.Generator) -> np.ndarray:
    tt = get_type(t)
    raw = g.integers(0, 256, (nblocks, tt.size), dtype=np.uint8)
    for off in F16_FIELDS.get(t, []):
        raw[:, off:off + 2] = (g.standard_normal(nblocks) * 10.0 ** g.integers(-6, 3, nblocks)).astype("<f2") \
            .view(np.uint8).reshape(-1, 2)
    if t == "bf16":
        raw = (g.standard_normal(nblocks * tt.size // 2).astype(np.float32).view(np.uint32) >> 16) \
            .astype("<u2").view(np.uint8).reshape(nblocks, tt.size)
    return raw


def test_deq_type_list_is_complete():
    # the graphc table's block types that gguf decodes, at least the ones the brief names
    for n in ["bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]:
        assert n in DEQ_TYPES


@pytest.mark.parametrize("t", DEQ_TYPES)
def test_dequantize_matches_gguf(t):
    g = rng()
    tt = get_type(t)
    for rows, bpr in [(1, 1), (3, 2), (4, 5)]:
        raw = random_blocks(t, rows * bpr, g).reshape(rows, bpr * tt.size)
        ours = Q.dequantize(raw, t)
        with np.errstate(all="ignore"):   # random bytes: some iq/tq scales are inf/nan
            ref = gq.dequantize(raw, GQT[t.upper()])
        assert ours.dtype == np.float32 and ours.shape == (rows, bpr * tt.blck)
        assert same_bits(ours, ref), f"{t}: {np.count_nonzero(ours.view(np.uint32) != ref.view(np.uint32))} differ"
        dec = Q.decode(raw.reshape(-1), tt, bpr * tt.blck)
        assert same_bits(dec.reshape(ours.shape), ours)


def _structured(t: str) -> np.dtype:
    return {"q8_1": np.dtype([("d", "<f2"), ("s", "<f2"), ("qs", "i1", 32)]),
            "q8_K": np.dtype([("d", "<f4"), ("qs", "i1", 256), ("bsums", "<i2", 16)])}[t]


@pytest.mark.parametrize("t", ["q8_1", "q8_K"])
def test_q8_1_q8_K_dequantize_layout(t):
    """gguf has no q8_1/q8_K: check against an independent struct decode (x = d * qs)."""
    g = rng()
    x = sample((3, 2 * get_type(t).blck), get_type(t).blck, g)
    raw = Q.quantize(x, t)
    blocks = raw.reshape(-1).view(_structured(t))
    want = (blocks["d"].astype(np.float32)[:, None] * blocks["qs"].astype(np.float32)).reshape(x.shape)
    assert same_bits(Q.dequantize(raw, t), want)
    xb = x.reshape(-1, get_type(t).blck)
    d32 = (np.abs(xb).max(1) / np.float32(127)).astype(np.float32)       # the f32 scale before storing
    if t == "q8_K":   # bsums are the sums of 16 quants; d is stored as f32
        assert np.array_equal(blocks["bsums"], blocks["qs"].reshape(-1, 16, 16).astype(np.int32).sum(-1))
        assert np.allclose(np.abs(blocks["d"]), d32, rtol=1e-6, atol=0)   # d = max/-127: signed
    else:             # s = fp16(d * sum(qs)) with the f32 d
        ssum = blocks["qs"].astype(np.int32).sum(-1).astype(np.float32) * d32
        assert np.array_equal(blocks["s"], ssum.astype(np.float16))
        assert np.array_equal(blocks["d"], d32.astype(np.float16))
    # half a step, plus what storing d in f16 costs (127 * |d16 - d32|)
    d, d32 = np.abs(blocks["d"].astype(np.float64))[:, None], d32.astype(np.float64)[:, None]
    err = np.abs(Q.dequantize(raw, t).reshape(xb.shape).astype(np.float64) - xb)
    assert np.all(err <= 0.5 * d32 + 127 * np.abs(d - d32) + 1e-6 * (d + d32))


# ---------------------------------------------------------------------------------------------
# plain types, encode/decode, helpers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", ["f32", "f16", "f64", "i8", "i16", "i32", "i64"])
def test_plain_roundtrip(t):
    g = rng()
    tt = get_type(t)
    shape = (2, 3, int(g.integers(1, 9)))
    v = (g.standard_normal(shape) * 100).astype(tt.np_dtype)
    raw = Q.encode(v, tt)
    assert raw.dtype == np.uint8 and raw.ndim == 1 and raw.size == v.size * tt.size
    little = np.ascontiguousarray(v.astype(np.dtype(tt.np_dtype).newbyteorder("<")))
    assert np.array_equal(raw, little.view(np.uint8).reshape(-1))
    back = Q.decode(raw, tt, shape[-1])
    assert back.dtype == np.dtype(tt.np_dtype) and back.shape == (6, shape[-1])
    assert np.array_equal(back.reshape(shape), v)
    assert Q.decode(raw[: tt.row_bytes(shape[-1])], tt, shape[-1]).shape == (shape[-1],)


def test_f16_bf16_encode():
    g = rng()
    v = g.standard_normal((4, 16)).astype(np.float32) * 1000
    raw = Q.encode(v, get_type("f16"))
    assert np.array_equal(raw.view(np.float16).reshape(v.shape), v.astype(np.float16))
    assert np.array_equal(Q.decode(raw, get_type("f16"), 16), v.astype(np.float16))
    # f64 input goes through f32 like ggml: 1 + 2^-11 + 2^-40 -> f32 1 + 2^-11, an f16 tie -> 1.0
    # (a direct f64 -> f16 cast would give 1 + 2^-10)
    d = np.array([1 + 2.0 ** -11 + 2.0 ** -40])
    assert Q.encode(d, get_type("f16")).view(np.float16)[0] == np.float16(1.0)
    b = Q.encode(v, get_type("bf16"))
    dec = Q.decode(b, get_type("bf16"), 16)
    assert dec.dtype == np.float32 and np.all(np.abs(dec - v) <= np.abs(v) * 2.0 ** -8)
    x = g.standard_normal(1000).astype(np.float32) * 1e3
    assert np.array_equal(Q.fp16_round(x), x.astype(np.float16).astype(np.float32))


def test_decode_encode_block_types():
    g = rng()
    x = sample((2, 3, 64), 32, g)
    raw = Q.encode(x, get_type("q5_1"))
    assert raw.shape == (6 * 48,)
    assert np.array_equal(Q.decode(raw, get_type("q5_1"), 64).reshape(x.shape),
                          Q.dequantize(Q.quantize(x, "q5_1"), "q5_1"))
    assert Q.decode(raw.reshape(2, 3, 48), get_type("q5_1"), 64).shape == (2, 3, 64)


def test_errors():
    with pytest.raises(ValueError):
        Q.quantize(np.zeros((2, 48), np.float32), "q4_0")
    with pytest.raises(ValueError):
        Q.decode(np.zeros(35, np.uint8), get_type("q8_0"), 32)
    with pytest.raises(ValueError):
        Q.decode(np.zeros((2, 30), np.uint8), get_type("q8_0"), 32)
    with pytest.raises(NotImplementedError, match="iq2_xxs"):
        Q.quantize(np.zeros((1, 256), np.float32), "iq2_xxs")
    with pytest.raises(ValueError):
        Q.mul_mat_quant(np.zeros((4, 18), np.uint8), "q4_0", np.zeros((2, 64), np.float32))
    with pytest.raises(NotImplementedError, match="iq4_xs"):
        Q.mul_mat_quant(np.zeros((4, 136), np.uint8), "iq4_xs", np.zeros((2, 256), np.float32))


def test_vec_dot_type():
    want = {"f32": "f32", "f16": "f16", "bf16": "bf16", "q4_0": "q8_0", "q5_0": "q8_0", "q8_0": "q8_0",
            "q4_1": "q8_1", "q5_1": "q8_1", "q2_K": "q8_K", "q3_K": "q8_K", "q4_K": "q8_K", "q5_K": "q8_K",
            "q6_K": "q8_K"}
    for w, a in want.items():
        assert Q.vec_dot_type(get_type(w)) is get_type(a)
        assert Q.vec_dot_type(w).name == a


# ---------------------------------------------------------------------------------------------
# mul_mat_quant without ggml: against an f64 evaluation of the same quantized operands
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", MATMUL)
def test_mul_mat_matches_quantized_operands(t):
    """y must equal deq(W) . deq(quantize_act(x)) up to f32 accumulation; for q4_1/q5_1 ggml uses
    s = fp16(d*sum q) instead of d*sum q, which that formula is corrected for."""
    g = rng()
    tt = get_type(t)
    M, N = int(g.integers(1, 6)), int(g.integers(1, 40))
    K = tt.blck * int(g.integers(1, 5)) * (8 if tt.blck == 32 else 1)
    x = sample((M, K), tt.blck, g)
    if t in Q._QUANTIZERS:
        w = Q.quantize(sample((N, K), tt.blck, g), t)
    else:
        w = random_blocks(t, N * K // tt.blck, g).reshape(N, -1)
    y = Q.mul_mat_quant(w, t, x)
    vt = Q.vec_dot_type(tt)
    xq = Q.quantize_activations(x, vt)
    want = Q.dequantize(xq, vt).astype(np.float64) @ Q.dequantize(w, t).astype(np.float64).T
    if t in ("q4_1", "q5_1"):
        f = xq.reshape(M, -1, 36)
        d = f[:, :, 0:2].copy().view("<f2")[..., 0].astype(np.float64)
        s = f[:, :, 2:4].copy().view("<f2")[..., 0].astype(np.float64)
        qsum = f[:, :, 4:].view(np.int8).astype(np.float64).sum(-1)
        m = w.reshape(N, -1, tt.size)[:, :, 2:4].copy().view("<f2")[..., 0].astype(np.float64)
        want += (s - d * qsum) @ m.T     # (M, nb) @ (nb, N)
    assert y.shape == (M, N) and y.dtype == np.float32
    assert nmse(y, want) <= 1e-11, nmse(y, want)


@pytest.mark.parametrize("t", MATMUL)
def test_mul_mat_close_to_float_math(t):
    """vs f64 math on dequantized weights and unquantized x: the only extra error is the q8
    activation rounding (~ (amax/127)^2/12 per element, NMSE ~ 3e-5 for Gaussian rows); bound 5e-4."""
    g = rng()
    tt = get_type(t)
    M, N, K = 4, 48, 512
    x = g.standard_normal((M, K)).astype(np.float32)
    w = Q.quantize(g.standard_normal((N, K)).astype(np.float32), t) if t in Q._QUANTIZERS \
        else random_blocks(t, N * K // tt.blck, g).reshape(N, -1)
    y = Q.mul_mat_quant(w, t, x)
    want = x.astype(np.float64) @ Q.dequantize(w, t).astype(np.float64).T
    assert nmse(y, want) <= 5e-4


@pytest.mark.parametrize("name,wt", [("ffn_q4", "q4_0"), ("ffn_q8", "q8_0")])
def test_fixture_ffn(name, wt):
    """Real ggml (x86, 2 threads) results stored in the shared fixture."""
    meta = json.loads((FIX / f"{name}.json").read_text())
    z = np.load(FIX / f"{name}.npz")
    types = {t["name"]: t["type"] for t in meta["tensors"]}
    assert types["ffn_gate"] == wt
    x = z["x"].reshape(-1, z["x"].shape[-1])
    for leaf in ("ffn_gate", "ffn_up", "ffn_down"):   # ggml's quantize_chunk output, byte for byte
        assert np.array_equal(Q.quantize(z[f"{leaf}__f32_source"], wt), z[leaf].reshape(z[leaf].shape[-2:]))
    for node, w, src in (("gate", "ffn_gate", x), ("up", "ffn_up", x),
                         ("y", "ffn_down", z["gate_x_up"].reshape(-1, 256))):
        got = Q.mul_mat_quant(z[w].reshape(z[w].shape[-2:]), wt, src)
        ref = z[node].reshape(got.shape)
        assert nmse(got, ref) <= 1e-10, (node, nmse(got, ref))


@pytest.mark.parametrize("t", ["q4_0", "q4_K"])
def test_mul_mat_speed(t):
    g = rng()
    x = g.standard_normal((8, 4096)).astype(np.float32)
    w = Q.quantize(g.standard_normal((256, 4096)).astype(np.float32), t)
    Q.mul_mat_quant(w[:2], t, x[:1])
    t0 = time.perf_counter()
    Q.mul_mat_quant(w, t, x)
    assert time.perf_counter() - t0 < 1.0


def test_mul_mat_chunking_is_invisible():
    """Chunked and single-shot evaluation give identical bits (outputs are independent)."""
    g = rng()
    x = g.standard_normal((70, 512)).astype(np.float32)
    w = Q.quantize(g.standard_normal((300, 512)).astype(np.float32), "q6_K")
    y = Q.mul_mat_quant(w, "q6_K", x)
    assert same_bits(y[17:19, 250:260], Q.mul_mat_quant(w[250:260], "q6_K", x[17:19]))


# ---------------------------------------------------------------------------------------------
# vs real ggml through ggml-python (ctypes)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def G():
    import ggml
    return ggml


def _fptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def g_quantize_chunk(G, x: np.ndarray, t: str) -> np.ndarray:
    tt = get_type(t)
    x = np.ascontiguousarray(x, np.float32)
    rows, ne0 = x.shape
    out = np.zeros((rows, tt.row_bytes(ne0)), np.uint8)
    n = G.ggml_quantize_chunk(tt.id, _fptr(x), out.ctypes.data_as(ctypes.c_void_p), 0, rows, ne0, None)
    assert n == out.size
    return out


def g_from_float(G, x: np.ndarray, t: str, ref: bool) -> np.ndarray:
    """ref: type traits from_float_ref (quantize_row_*_ref); else CPU traits from_float (what mul_mat uses)."""
    tt = get_type(t)
    x = np.ascontiguousarray(x, np.float32)
    out = np.zeros((x.shape[0], tt.row_bytes(x.shape[1])), np.uint8)   # zeroed: q8_K leaves bsums of zero blocks
    fn = G.ggml_get_type_traits(tt.id).contents.from_float_ref if ref else \
        G.ggml_get_type_traits_cpu(tt.id).contents.from_float
    for r in range(x.shape[0]):
        fn(_fptr(x[r]), out[r].ctypes.data_as(ctypes.c_void_p), x.shape[1])
    return out


def g_to_float(G, raw: np.ndarray, t: str, ne0: int) -> np.ndarray:
    raw = np.ascontiguousarray(raw, np.uint8)
    out = np.zeros((raw.shape[0], ne0), np.float32)
    fn = G.ggml_get_type_traits(get_type(t).id).contents.to_float
    for r in range(raw.shape[0]):
        fn(raw[r].ctypes.data_as(ctypes.c_void_p), _fptr(out[r]), ne0)
    return out


def g_mul_mat(G, w_raw: np.ndarray, t: str, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
    """ggml_mul_mat(W, x) in a ggml graph computed by ggml_graph_compute_with_ctx."""
    tt = get_type(t)
    x = np.ascontiguousarray(x, np.float32)
    w_raw = np.ascontiguousarray(w_raw, np.uint8)
    (M, K), N = x.shape, w_raw.shape[0]
    ctx = G.ggml_init(G.ggml_init_params(mem_size=w_raw.nbytes + 12 * x.nbytes + 4 * M * N + (16 << 20),
                                         mem_buffer=None, no_alloc=False))
    assert ctx is not None
    try:
        w = G.ggml_new_tensor_2d(ctx, tt.id, K, N)
        ctypes.memmove(G.ggml_get_data(w), w_raw.ctypes.data, w_raw.nbytes)
        xt = G.ggml_new_tensor_2d(ctx, 0, K, M)
        ctypes.memmove(G.ggml_get_data(xt), x.ctypes.data, x.nbytes)
        y = G.ggml_mul_mat(ctx, w, xt)
        gf = G.ggml_new_graph(ctx)
        G.ggml_build_forward_expand(gf, y)
        G.ggml_graph_compute_with_ctx(ctx, gf, n_threads)
        out = np.empty((M, N), np.float32)
        ctypes.memmove(out.ctypes.data, G.ggml_get_data(y), out.nbytes)
        return out
    finally:
        G.ggml_free(ctx)


@pytest.mark.ggml
@pytest.mark.parametrize("t", LEGACY + ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"])
def test_quantize_chunk_vs_ggml(G, t):
    """Ours vs ggml_quantize_chunk (no imatrix): byte-exact where implemented."""
    g = rng()
    tt = get_type(t)
    x = sample((5, 4 * tt.blck), tt.blck, g)
    ref = g_quantize_chunk(G, x, t)
    if t not in Q._QUANTIZERS:
        with pytest.raises(NotImplementedError, match=t):
            Q.quantize(x, t)
        return
    ours = Q.quantize(x, t)
    assert np.array_equal(ours, ref), f"{t}: blocks differ: {np.nonzero((ours != ref).reshape(-1, tt.size).any(1))[0]}"


@pytest.mark.ggml
@pytest.mark.parametrize("t", ["q4_K", "q6_K"])
def test_kquant_quantize_many_blocks_vs_ggml(G, t):
    g = rng()
    x = g.standard_normal((24, 1024)).astype(np.float32) * g.uniform(1e-3, 1e3, (24, 1)).astype(np.float32)
    x[3, 256:512] = np.abs(x[3, 256:512])           # all positive: min clamps to 0
    x[4, :256] = 2.5                                 # constant super-block
    x[5, 512:768] = 0                                # zero super-block
    x[6, 100] = 1e6                                  # one huge value
    x[7, :32] = 0                                    # one zero sub-block
    assert np.array_equal(Q.quantize(x, t), g_quantize_chunk(G, x, t))


@pytest.mark.ggml
@pytest.mark.parametrize("t", ["q8_0", "q8_1", "q8_K"])
def test_activation_quantizers_vs_ggml(G, t):
    g = rng()
    tt = get_type(t)
    x = sample((6, 4 * tt.blck), tt.blck, g)
    if t != "q8_K":   # q8_K has no from_float_ref in ggml's base traits; its CPU from_float is the ref
        assert np.array_equal(Q.quantize(x, t), g_from_float(G, x, t, ref=True))
        assert np.array_equal(Q.quantize_activations(x, t, "ref"), Q.quantize(x, t))
    cpu = g_from_float(G, x, t, ref=False)
    if IS_X86 or t == "q8_K":
        assert np.array_equal(Q.quantize_activations(x, t), cpu)
    if t == "q8_K":
        assert np.array_equal(Q.quantize(x, t), cpu)


@pytest.mark.ggml
@pytest.mark.parametrize("t", LEGACY + KQ)
def test_dequantize_vs_ggml_to_float(G, t):
    g = rng()
    tt = get_type(t)
    raw = random_blocks(t, 12, g).reshape(3, -1)
    assert same_bits(Q.dequantize(raw, t), g_to_float(G, raw, t, 4 * tt.blck))


def _cpu_flags() -> set:
    try:
        return {f for line in open("/proc/cpuinfo") if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    except OSError:
        return set()


# ggml built for a CPU with AVX512-FP16 (Sapphire Rapids and later) multiplies and adds f16 dot products in
# f16 (ggml_vec_dot_f16's fma on ph registers): its f16 mul_mat is an f16 rounding away from graphc's f32
# sums (NMSE 2.2e-7 at K = 128) and overflows to inf at K = 2048 with these values. graphc keeps ggml's f32
# sums (every other x86 build); there the test compares with exact sums of the same f16 operands.
GGML_F16_FMA = "avx512_fp16" in _cpu_flags()


@pytest.mark.ggml
@pytest.mark.parametrize("t", MATMUL + ["f16", "bf16", "f32"])
def test_mul_mat_vs_ggml(G, t):
    g = rng()
    tt = get_type(t)
    blck = max(tt.blck, 32)
    for M, N, K in [(1, 7, blck), (3, 33, 4 * blck), (8, 64, 2048 if blck == 32 else 4096)]:
        x = g.standard_normal((M, K)).astype(np.float32) * g.uniform(0.1, 10, (M, 1)).astype(np.float32)
        if M == 8:   # eighths: many x*id products land on .5, where ggml's x86 q8 rounding (ties to even) matters
            x = (np.round(x * 8) / 8).astype(np.float32)
        wf = sample((N, K), blck, g)
        w = g_quantize_chunk(G, wf, t) if tt.is_quantized else Q.quantize(wf, t)
        y = Q.mul_mat_quant(w, t, x)
        if t == "f16" and GGML_F16_FMA:      # ggml's f16 sums here are f16 (and overflow): exact sums instead
            wf16 = np.ascontiguousarray(w).view(np.float16).reshape(N, K).astype(np.float64)
            exact = wf16 @ x.astype(np.float16).astype(np.float64).T
            assert nmse(y, exact.T.astype(np.float32)) <= 1e-10, (M, N, K)
            continue
        ref = g_mul_mat(G, w, t, x, n_threads=2)
        assert nmse(y, ref) <= 1e-10, (M, N, K, nmse(y, ref))
