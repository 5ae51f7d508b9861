"""share_state: a prefill graph and a decode graph over one KV cache give the same logits as one graph
fed token by token (the tiny decoder; on ref, c, opencl and triton)."""
import numpy as np
import pytest

import graphc
from graphc.errors import CompileError
from examples import tiny_decoder as td


def _modules(target, n_prefill):
    cfg = td.Config(weight_type="f32")
    pre_g, dec_g = td.build(cfg, n_prefill), td.build(cfg, 1)
    w = td.random_weights(dec_g, seed=int(np.random.default_rng().integers(1 << 30)))
    pre = graphc.compile(pre_g, target=target, weights=w)
    dec = graphc.compile(dec_g, target=target, weights=w, share_state=pre)
    return cfg, pre, dec, w


@pytest.mark.parametrize("target", ["ref", "c", "opencl", "triton"])
def test_prefill_then_decode_shares_the_cache(target):
    rng = np.random.default_rng()
    cfg, pre, dec, w = _modules(target, 5)
    toks = [int(t) for t in rng.integers(0, cfg.n_vocab, 8)]
    got = [pre.run(td.step_inputs(cfg, toks[:5], 0))["logits"]]
    for i in range(5, 8):
        got.append(dec.run(td.step_inputs(cfg, [toks[i]], i))["logits"])
    got = np.concatenate([x.reshape(-1, cfg.n_vocab) for x in got])

    solo = graphc.compile(td.build(cfg, 1), target=target, weights=w)     # its own cache, one token at a time
    want = np.stack([solo.run(td.step_inputs(cfg, [t], i))["logits"] for i, t in enumerate(toks)])
    nmse = np.mean((got - want) ** 2) / np.mean(want ** 2)
    # the prefill graph's GEMM sums in another order than the decode graph's GEMV on Triton (tl.dot tiles),
    # and an f16 cache entry may round the other way; a cache shared wrongly gives O(1) differences
    assert nmse < (1e-7 if target == "triton" else 1e-10)
    assert np.any(dec.read("blk.0.k_cache") != 0)
    pre.reset_state()                                   # one buffer: resetting one resets the other
    assert not np.any(dec.read("blk.0.k_cache"))


def test_share_state_mismatch_is_a_clear_error():
    cfg = td.Config(weight_type="f32")
    a = graphc.compile(td.build(cfg, 1), target="ref", weights=td.random_weights(td.build(cfg, 1)))
    other = td.Config(weight_type="f32", n_ctx=16)
    g = td.build(other, 1)
    with pytest.raises(CompileError, match=r"_cache.*f16 \[64, 16.*f16 \[64, 32"):
        graphc.compile(g, target="ref", weights=td.random_weights(g), share_state=a)
    with pytest.raises(CompileError, match="cannot share state"):
        graphc.compile(td.build(cfg, 1), target="c", weights=td.random_weights(td.build(cfg, 1)), share_state=a)
