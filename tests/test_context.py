"""The context window: a prompt that does not fit fails before anything compiles, in the words of the
interface used; generation that fills the window stops cleanly, or shifts the context (llama.cpp's
--context-shift: keep the first tokens, drop the oldest half of the rest, go on)."""
import io
import time

import numpy as np
import pytest

import graphc.models
from graphc.cli import main
from graphc.errors import ContextOverflow
from graphc.frontends.gguf import open_gguf
from graphc.models.testing import make_tiny_gguf
from graphc.util import slow_step

N_CTX = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    seed = int(np.random.default_rng().integers(1 << 30))
    return make_tiny_gguf(tmp_path_factory.mktemp("ctx") / "tiny.gguf", arch="llama", wtype="q8_0", seed=seed)


def _prompt(n: int) -> list[int]:
    return [1] + np.random.default_rng().integers(3, 320, n - 1).tolist()


def test_prompt_too_long_fails_before_compiling(tiny):
    m = graphc.models.load(tiny, target="c", n_ctx=N_CTX, lazy=True)
    assert m.modules == {}
    with pytest.raises(ContextOverflow) as e:
        m.generate(_prompt(N_CTX + 3), max_tokens=2)
    assert (e.value.n_new, e.value.n_ctx, e.value.n_ctx_max) == (N_CTX + 3, N_CTX, 256)
    assert "n_ctx = 24" in str(e.value) and "at most the model's 256" in str(e.value)
    assert m.modules == {} and m.n_past == 0            # nothing compiled, nothing fed


def test_generation_stops_at_the_window(tiny):
    m = graphc.models.load(tiny, target="ref", n_ctx=N_CTX)
    prompt = _prompt(N_CTX - 5)
    out = m.generate(prompt, max_tokens=50, stop_at_eos=False)
    assert m.stats.stop == "context" and m.n_past == N_CTX
    assert len(out) == 6                                 # 5 fed after the prompt, the 6th sampled from the last
    want = graphc.models.load(tiny, target="ref", n_ctx=N_CTX)
    assert want.generate(prompt, max_tokens=6, stop_at_eos=False) == out
    assert want.stats.stop == "max_tokens"


def test_context_shift_keeps_the_bos_and_the_newer_half(tiny):
    m = graphc.models.load(tiny, target="ref", n_ctx=N_CTX)
    prompt = _prompt(N_CTX - 4)
    out = m.generate(prompt, max_tokens=30, stop_at_eos=False, ctx_shift=True, n_keep=2)
    assert len(out) == 30 and m.stats.stop == "max_tokens" and m.stats.shifts >= 1
    # the state is what feeding its tokens to a fresh model gives: shift_context re-feeds the kept ones
    held = list(m._fed)
    assert held[:3] == prompt[:3]                        # BOS + n_keep=2 survive every shift
    assert len(held) == m.n_past <= N_CTX
    fresh = graphc.models.load(tiny, target="ref", n_ctx=N_CTX)
    a = m.logits([out[-1]])
    b = fresh.logits(held + [out[-1]])[-1:]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_shift_context_drops_half_after_the_kept(tiny):
    m = graphc.models.load(tiny, target="ref", n_ctx=N_CTX)
    ids = _prompt(20)
    m.logits(ids)
    m.shift_context(n_keep=4)
    assert m._fed == ids[:4] + ids[4 + 8:] and m.n_past == 12


def test_cli_prompt_too_long_says_ctx_and_compiles_nothing(tiny, capsys):
    t0 = time.perf_counter()
    ids = [str(t) for t in _prompt(40)]
    assert main(["generate", tiny, "--prompt-ids", *ids, "--ctx", "16", "-n", "2"]) == 1
    err = capsys.readouterr().err
    assert "error: the prompt is 40 tokens, more than the context of 16 tokens (--ctx 16" in err
    assert "up to --ctx 256" in err and "compiling" not in err and err.count("\n") == 1
    assert time.perf_counter() - t0 < 30


def test_cli_stops_at_the_window_with_a_note(tiny, capsys):
    ids = [str(t) for t in _prompt(12)]
    assert main(["generate", tiny, "--prompt-ids", *ids, "--ctx", "16", "-n", "40", "--ids", "--target", "ref"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and len(out.split()) <= 5
    assert "note: generation stopped at the end of the context (16 tokens, --ctx 16)" in err
    assert main(["generate", tiny, "--prompt-ids", *ids, "--ctx", "16", "-n", "30", "--ids", "--target", "ref",
                 "--ctx-shift"]) == 0
    out, err = capsys.readouterr()
    assert "note:" not in err
    m = graphc.models.load(tiny, target="ref")
    assert len(out.split()) == 30 or int(out.split()[-1]) in m.eos_ids


def test_slow_step_reports_only_slow_steps():
    out = io.StringIO()
    with slow_step(out, "quick"):
        pass
    assert out.getvalue() == ""
    with slow_step(out, "compiling 2 graphs", after=0.05):
        time.sleep(0.3)
    text = out.getvalue()
    assert text.startswith("graphc: compiling 2 graphs ... ") and text.endswith(" s\n")
    assert float(text.split("... ")[1].split()[0]) >= 0.3 - 0.05


def test_gguf_metadata_is_parsed_once_per_file_version(tiny, tmp_path):
    a, b = open_gguf(tiny), open_gguf(tiny)
    assert a is b
    a.close()                                            # a shared file stays open for its other readers
    assert a.mapping.size > 0
    path = tmp_path / "other.gguf"
    make_tiny_gguf(path, arch="llama", wtype="f32", seed=1)
    first = open_gguf(path)
    make_tiny_gguf(path, arch="llama", wtype="q8_0", seed=1)     # rewritten: a new parse
    second = open_gguf(path)
    assert second is not first
    assert second.tensors["blk.0.attn_q.weight"].type.name == "q8_0"
