"""RWKV-4 checkpoints end to end: graphc (frontends.rwkv4, models.rwkv) against the `rwkv` package
(ChatRWKV's own RWKV class, strategy "cpu fp32") on small random checkpoints.

Bounds (NMSE = mse / mean square of the reference), measured on this machine:
- graphc vs the package, f32 weights, RNN (token by token) and sequence mode, ref and c: ~5e-14
  (asserted <= 1e-10); the state after the tokens: ~3e-13 (asserted <= 1e-10).
- graphc sequence mode vs its own RNN mode: ~1e-14 (asserted <= 1e-10).
- quantized (q8_0 / q5_1 / q4_0, activations quantized to q8 as ggml does) vs the f32 model, 3 layers,
  n_embd 128, 24 tokens, 48 random models: NMSE max 2.4e-4 / 5.2e-3 / 2.9e-2 (asserted 1e-3 / 2e-2 /
  8e-2); top-1 agreement mean 97% / 90% / 77%, min 88% / 71% / 58% (asserted >= 70% / 50% / 40%:
  random heads give nearly flat logits, so near-ties flip easily). The C target's q4_0 equals ref's
  (NMSE ~0, asserted <= 1e-8).
- large exponents (keys x100, time_first x20: |k| and pp reach ~800, where exp overflows f32):
  finite, NMSE vs the package ~1e-12 (asserted <= 1e-8).
- f16 / bf16 checkpoints: graphc keeps f16 matrices and rounds activations to f16 for them (ggml's f16
  mul_mat), bf16 matrices widen to f32; the package widens both to f32 but layer-norms the embedding
  at load in the file's precision: NMSE ~3e-6 (asserted <= 1e-4).
"""
from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest

os.environ.setdefault("RWKV_JIT_ON", "0")        # the rwkv package scripts its functions otherwise

import graphc.models
from graphc.errors import ParseError, RunError
from graphc.frontends import rwkv4 as R
from graphc.models.rwkv import RWKVModel, load_rwkv

CFG = R.RWKV4Config(n_layer=2, n_embd=64, n_att=64, n_ffn=256, n_vocab=300)
N_SEQ = 8                     # the sequence graph's token count (n_batch)
N_TOK = 11                    # N_SEQ tokens in one run, then the rest one by one


def nmse(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sum((a - b) ** 2) / np.sum(b ** 2))


def _package_run(path: str, toks: list[int], seq_mode: bool = True):
    """The rwkv package: logits token by token (RNN), its state after them, and its sequence mode."""
    import rwkv.model as rwkv_model        # a test dependency (pyproject's test extra): missing -> the test fails
    m = rwkv_model.RWKV(model=path[:-len(".pth")], strategy="cpu fp32", verbose=False)
    state, rnn = None, []
    for t in toks:
        out, state = m.forward([t], state)
        rnn.append(out.numpy().copy())
    seq = m.forward(list(toks), None, full_output=True)[0].numpy() if seq_mode else None
    return np.stack(rnn), [s.numpy().copy() for s in state], seq


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A random f32 .pth checkpoint, the tokens fed, and the package's results on them."""
    import torch  # noqa: F401  (a test dependency: missing -> the test fails)
    rng = np.random.default_rng()
    path = str(tmp_path_factory.mktemp("rwkv") / "model.pth")
    R.save_checkpoint(path, R.random_state_dict(CFG, rng))
    toks = [int(t) for t in rng.integers(0, CFG.n_vocab, N_TOK)]
    rnn, state, seq = _package_run(path, toks)
    return path, toks, rnn, state, seq


def _feed(model: RWKVModel, toks: list[int]) -> np.ndarray:
    """The first N_SEQ tokens in one call (sequence graph), the rest one call each (RNN graph)."""
    return np.concatenate([model.logits(toks[:N_SEQ])] + [model.logits([t]) for t in toks[N_SEQ:]])


@pytest.fixture(scope="module", params=["ref", "c", "opencl", "triton"])
def model(request, ckpt):
    return load_rwkv(ckpt[0], target=request.param, n_batch=N_SEQ)


# --- parity with the rwkv package -----------------------------------------------------------------

def test_matches_rwkv_package(model, ckpt):
    _, toks, rnn, state, seq = ckpt
    model.reset_state()
    got = _feed(model, toks)
    assert sorted(model.modules) == [1, N_SEQ]             # one sequence run, then RNN steps
    assert got.shape == (N_TOK, CFG.n_vocab) and model.n_past == N_TOK
    assert nmse(got, rnn) <= 1e-10
    assert nmse(got[:N_SEQ], seq[:N_SEQ]) <= 1e-10          # the package's own sequence mode
    mine = model.state()
    assert len(mine) == len(state) == 5 * CFG.n_layer
    for i, (a, b) in enumerate(zip(mine, state)):
        assert nmse(a, b) <= 1e-10, f"state {i} (layer {i // 5}, {['att_xx', 'aa', 'bb', 'pp', 'ffn_xx'][i % 5]})"


def test_sequence_mode_matches_own_rnn_mode(model, ckpt):
    toks = ckpt[1]
    model.reset_state()
    assert model.n_past == 0
    seq = model.logits(toks[:N_SEQ])
    seq_state = model.state()
    model.reset_state()
    rnn = np.concatenate([model.logits([t]) for t in toks[:N_SEQ]])
    assert nmse(seq, rnn) <= 1e-10
    for a, b in zip(model.state(), seq_state):
        assert nmse(a, b) <= 1e-10
    assert not np.array_equal(seq[0], seq[1])              # the state moves: positions differ


def test_split_does_not_matter_and_generate(ckpt):
    """5 tokens run as graphs of 4 + 1; greedy generate continues from the state."""
    path, toks = ckpt[0], ckpt[1]
    m = graphc.models.load(path, target="ref", n_batch=N_SEQ)
    assert isinstance(m, RWKVModel) and m.tokenizer is None
    whole = m.logits(toks[:5])
    assert sorted(m.modules) == [1, 4]
    m.reset_state()
    parts = np.concatenate([m.logits(toks[:2]), m.logits(toks[2:5])])
    assert nmse(parts, whole) <= 1e-10
    m.reset_state()
    out = m.generate(toks[:3], max_tokens=4, temperature=0)
    m.reset_state()
    ids, want = list(toks[:3]), []
    last = m.logits(ids)[-1]
    for _ in range(4):
        want.append(int(np.argmax(last)))
        last = m.logits([want[-1]])[-1]
    assert out == want
    with pytest.raises(RunError, match="no tokenizer"):
        m.generate("text", max_tokens=1)
    with pytest.raises(RunError, match="outside the vocabulary"):
        m.logits([CFG.n_vocab])


# --- quantization ---------------------------------------------------------------------------------

QCFG = R.RWKV4Config(n_layer=3, n_embd=128, n_att=128, n_ffn=512, n_vocab=512)
QBOUND = {"q8_0": (1e-3, 0.7), "q5_1": (2e-2, 0.5), "q4_0": (8e-2, 0.4)}


@pytest.fixture(scope="module")
def qckpt(tmp_path_factory):
    rng = np.random.default_rng()
    path = R.save_checkpoint(str(tmp_path_factory.mktemp("rwkvq") / "model.safetensors"),
                             R.random_state_dict(QCFG, rng))
    toks = [int(t) for t in rng.integers(0, QCFG.n_vocab, 24)]
    return path, toks, load_rwkv(path, target="ref", n_batch=32).logits(toks)


def test_quantized_vs_f32(qckpt):
    path, toks, base = qckpt
    errs = {}
    for q, (bound, top1) in QBOUND.items():
        m = load_rwkv(path, target="ref", quantize=q, n_batch=32)
        plan = m.quantize_plan
        assert sorted(plan.changed) == sorted(_matrices(QCFG))  # every matrix that feeds mul_mat
        assert plan["emb.weight"] == "f32"                       # get_rows table kept by default
        got = m.logits(toks)
        errs[q] = nmse(got, base)
        agree = float(np.mean(got.argmax(1) == base.argmax(1)))
        assert np.isfinite(got).all()
        assert errs[q] <= bound, f"{q}: NMSE {errs[q]:.3g} > {bound}"
        assert agree >= top1, f"{q}: top-1 agreement {agree:.2f} < {top1}"
        # one quantization, shared: the sequence graph and the RNN graph read the same bytes
        a, b = (np.asarray(m.modules[n].graph.get("head.weight").data) for n in (1, 16))
        assert np.shares_memory(a, b)
    assert errs["q8_0"] < errs["q5_1"] < errs["q4_0"]


def _matrices(cfg: R.RWKV4Config) -> list[str]:
    names = ["head.weight"]
    for i in range(cfg.n_layer):
        names += [f"blocks.{i}.{s}.weight" for s in ("att.key", "att.value", "att.receptance", "att.output",
                                                      "ffn.key", "ffn.receptance", "ffn.value")]
    return names


@pytest.mark.parametrize("target", ["c", "opencl", "triton"])
def test_quantized_matches_ref(ckpt, target):
    """The compiled targets' quantized mul_mat gives ref's q4_0 results: C and OpenCL as ggml computes it
    (integer dot products with 8-bit activations), Triton as ref's dequant mode (f32 activations)."""
    path, toks = ckpt[0], ckpt[1]
    mode = "dequant" if target == "triton" else "ggml"
    r = load_rwkv(path, target="ref", quantize="q4_0", quant_matmul=mode)
    m = load_rwkv(path, target=target, quantize="q4_0")
    want = np.concatenate([r.logits([t]) for t in toks[:4]])
    got = np.concatenate([m.logits([t]) for t in toks[:4]])
    assert nmse(got, want) <= 1e-8


# --- numerics -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["ref", "c", "opencl", "triton"])
def test_large_exponents_stay_finite(target, tmp_path):
    import torch  # noqa: F401  (a test dependency: missing -> the test fails)
    rng = np.random.default_rng()
    sd = R.random_state_dict(CFG, rng)
    for i in range(CFG.n_layer):
        sd[f"blocks.{i}.att.key.weight"] *= 100.0        # |k| in the hundreds: exp(k) overflows f32
        sd[f"blocks.{i}.att.time_first"] *= 20.0
    path = R.save_checkpoint(str(tmp_path / "big.pth"), sd)
    toks = [int(t) for t in rng.integers(0, CFG.n_vocab, N_TOK)]
    rnn, state, _ = _package_run(path, toks)
    m = load_rwkv(path, target=target, n_batch=N_SEQ)
    got = _feed(m, toks)
    pp = [s for i, s in enumerate(m.state()) if i % 5 == 3]
    assert max(float(np.abs(p).max()) for p in pp) > 100.0   # the running max really is large
    assert np.isfinite(got).all() and all(np.isfinite(s).all() for s in m.state())
    assert nmse(got, rnn) <= 1e-8


@pytest.mark.parametrize("dtype,ext,bound", [("bf16", ".pth", 1e-4), ("f16", ".safetensors", 1e-4)])
def test_half_precision_checkpoints(dtype, ext, bound, tmp_path):
    """bf16 matrices widen to f32 exactly (as the package does); f16 matrices stay f16 (mul_mat rounds
    the activations to f16, as ggml does). The package reads the same values from a .pth; it also
    layer-norms the embedding table (ln0) at load in the file's precision, graphc does ln0 in f32 in
    the graph: both differences are ~1e-6."""
    import torch  # noqa: F401  (a test dependency: missing -> the test fails)
    rng = np.random.default_rng()
    sd = R.random_state_dict(CFG, rng)
    pth = R.save_checkpoint(str(tmp_path / "half.pth"), sd, dtype)
    path = pth if ext == ".pth" else R.save_checkpoint(str(tmp_path / "half.safetensors"), sd, dtype)
    toks = [int(t) for t in rng.integers(0, CFG.n_vocab, 6)]
    rnn, _, _ = _package_run(pth, toks)
    m = load_rwkv(path, target="ref")
    want_type = "f16" if dtype == "f16" else "f32"
    assert m.modules[1].graph.get("blocks.0.att.key.weight").type.name == want_type
    got = np.concatenate([m.logits(toks[:4]), m.logits(toks[4:])])
    assert nmse(got, rnn) <= bound


def test_att_width_differs_from_embedding(tmp_path):
    """n_att comes from att.key.weight (the package's args.n_att), not n_embd. (The package's own
    sequence mode assumes n_att == n_embd; its RNN mode is the reference here.)"""
    import torch  # noqa: F401  (a test dependency: missing -> the test fails)
    cfg = R.RWKV4Config(n_layer=2, n_embd=64, n_att=96, n_ffn=128, n_vocab=256)
    rng = np.random.default_rng()
    path = R.save_checkpoint(str(tmp_path / "wide.pth"), R.random_state_dict(cfg, rng))
    toks = [int(t) for t in rng.integers(0, cfg.n_vocab, 5)]
    rnn, _, _ = _package_run(path, toks, seq_mode=False)
    m = load_rwkv(path, target="ref")
    assert m.config == cfg
    assert nmse(np.concatenate([m.logits(toks[:4]), m.logits(toks[4:])]), rnn) <= 1e-10


def test_wkv4_shape_rule():
    from graphc.builder import GraphBuilder
    from graphc.errors import GraphError
    g = GraphBuilder()
    f = lambda *ne, t="f32": g.new_tensor(t, ne)                       # noqa: E731
    out = g.rwkv_wkv4(f(8, 6), f(8, 6), f(8), f(8), f(24, 2))
    assert out.ne == (8, 6 + 6, 1, 1) and out.type.name == "f32"
    for bad, msg in [((f(8, 6), f(8, 5), f(8), f(8), f(24)), "same"), ((f(8, 6), f(8, 6), f(7), f(8), f(24)), "C = 8"),
                     ((f(8, 6), f(8, 6), f(8), f(8), f(8, 3)), r"3\*C"),
                     ((f(8, 6), f(8, 6), f(8), f(8), f(24, 4)), "equal"),
                     ((f(32, 6, t="q8_0"), f(32, 6), f(32), f(32), f(96)), "quantized")]:
        with pytest.raises(GraphError, match=msg):
            g.rwkv_wkv4(*bad)


# --- damaged and mismatched checkpoints ----------------------------------------------------------

def _sd() -> dict[str, np.ndarray]:
    return R.random_state_dict(R.RWKV4Config(2, 32, 32, 64, 50), np.random.default_rng())


def _renamed(old: str, new: str):
    def f(sd):
        sd[new] = sd.pop(old)
    return f


def _reshaped(name: str, shape: tuple[int, ...]):
    def f(sd):
        sd[name] = np.zeros(shape, np.float32)
    return f


def _layer_gap(sd):
    for k in [k for k in sd if k.startswith("blocks.1.")]:
        sd[k.replace("blocks.1.", "blocks.2.")] = sd.pop(k)


MISMATCH = [
    ("missing", lambda sd: sd.pop("blocks.1.att.time_decay"), r"missing tensor.*'blocks\.1\.att\.time_decay'"),
    ("layer gap", _layer_gap, r"missing tensor.*'blocks\.1\.ln1\.weight'"),
    ("key shape", _reshaped("blocks.1.att.key.weight", (32, 33)),
     r"'blocks\.1\.att\.key\.weight' has shape \[32, 33\], expected \[32, 32\]"),
    ("head vocab", _reshaped("head.weight", (51, 32)), r"'head\.weight' has shape \[51, 32\], expected \[50, 32\]"),
    ("mix shape", _reshaped("blocks.0.ffn.time_mix_k", (2, 32)), r"'blocks\.0\.ffn\.time_mix_k' has shape \[2, 32\]"),
    ("ffn width", _reshaped("blocks.1.ffn.value.weight", (32, 65)), r"'blocks\.1\.ffn\.value\.weight'.*n_ffn 64"),
    ("unexpected", lambda sd: sd.update({"blocks.0.att.extra": np.ones(3, np.float32)}),
     r"unexpected tensor.*att\.extra"),
    ("rwkv5", lambda sd: sd.update({"blocks.0.att.ln_x.weight": np.ones(32, np.float32)}), r"ln_x.*RWKV-5"),
    ("no blocks", lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("blocks.")], r"no blocks\.N"),
    ("not finite", lambda sd: sd["blocks.0.att.time_first"].__setitem__(3, np.nan),
     r"'blocks\.0\.att\.time_first'.*non-finite"),
    ("renamed", _renamed("ln_out.bias", "ln_out.b"), r"missing tensor.*'ln_out\.bias'"),
]


@pytest.mark.parametrize("ext", [".safetensors", ".pth"])
@pytest.mark.parametrize("what,damage,msg", MISMATCH, ids=[m[0] for m in MISMATCH])
def test_mismatched_checkpoint_is_a_clear_error(what, damage, msg, ext, tmp_path):
    if ext == ".pth":
        import torch  # noqa: F401  (a test dependency: missing -> the test fails)
    sd = _sd()
    damage(sd)
    path = R.save_checkpoint(str(tmp_path / f"bad{ext}"), sd)
    with pytest.raises(ParseError, match=msg) as e:
        graphc.models.load(path, target="ref")
    assert path in str(e.value)


def _write_bytes(data: bytes):
    def f(path: str) -> None:
        with open(path, "wb") as fh:
            fh.write(data)
    return f


def _truncate(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


def _flip_directory(path: str) -> None:
    """Scramble the zip's central directory (tensor bytes themselves carry no checksum torch checks)."""
    with open(path, "r+b") as fh:
        fh.seek(-200, 2)
        b = fh.read(200)
        fh.seek(-len(b), 1)
        fh.write(bytes(x ^ 0xFF for x in b))


class _Evil:
    """Unpickling this with plain pickle would create a file; weights_only refuses it."""
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "flipped"])
def test_damaged_pth_is_a_parse_error(how, tmp_path):
    import torch  # noqa: F401  (a test dependency: missing -> the test fails)
    path = R.save_checkpoint(str(tmp_path / "m.pth"), _sd())
    {"truncated": _truncate, "garbage": _write_bytes(b"PK\x03\x04" + os.urandom(300)),
     "empty": _write_bytes(b""), "flipped": _flip_directory}[how](path)
    with pytest.raises(ParseError) as e:
        load_rwkv(path, target="ref")
    assert path in str(e.value)


def test_pth_is_never_unpickled_freely(tmp_path):
    """A .pth whose pickle names a callable: torch.load(weights_only=True) refuses it, nothing runs."""
    import torch
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.pth")
    torch.save({"emb.weight": torch.zeros(4, 4), "x": _Evil(str(marker))}, path, pickle_protocol=2)
    with pytest.raises(ParseError, match="weights_only"):
        load_rwkv(path, target="ref")
    assert not marker.exists()
    legacy = str(tmp_path / "legacy.pth")              # a plain pickle of a dict with a string entry
    with open(legacy, "wb") as fh:
        pickle.dump({"emb.weight": "not a tensor"}, fh, protocol=2)
    with pytest.raises(ParseError):
        load_rwkv(legacy, target="ref")
    torch.save({"emb.weight": torch.zeros(4, 4, dtype=torch.int32)}, path)
    with pytest.raises(ParseError, match=r"'emb\.weight' is torch\.int32"):
        load_rwkv(path, target="ref")
    torch.save({"_strategy": "cpu fp32", "emb.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ParseError, match="convert_model"):
        load_rwkv(path, target="ref")
    assert zipfile.is_zipfile(path)


def test_damaged_safetensors_is_a_parse_error(tmp_path):
    path = R.save_checkpoint(str(tmp_path / "m.safetensors"), _sd())
    _truncate(path)
    with pytest.raises(ParseError, match="safetensors|data_offsets|header"):
        load_rwkv(path, target="ref")
    from graphc.frontends.safetensors import write_safetensors
    sd = {n: a.astype(np.int32 if n == "emb.weight" else np.float32) for n, a in _sd().items()}
    write_safetensors(path, {n: ("I32" if a.dtype == np.int32 else "F32", a.shape, a) for n, a in sd.items()})
    with pytest.raises(ParseError, match=r"'emb\.weight' is I32"):
        load_rwkv(path, target="ref")


def test_bad_options(ckpt):
    from graphc.errors import CompileError
    with pytest.raises(CompileError, match="n_batch"):
        load_rwkv(ckpt[0], target="ref", n_batch=0)
    with pytest.raises(CompileError, match="q3_x"):
        load_rwkv(ckpt[0], target="ref", quantize="q3_x")
    with pytest.raises(ParseError, match="no such file"):
        load_rwkv(str(ckpt[0]) + ".missing", target="ref")


# --- the example ------------------------------------------------------------------------------------

def test_example_runs(tmp_path, capsys):
    from examples import rwkv4 as ex
    ex.main(["--target", "ref", "--tokens", "4", "--generate", "3", "--out", str(tmp_path / "ex.safetensors")])
    out = capsys.readouterr().out
    assert "tokens/s" in out and "greedy" in out
