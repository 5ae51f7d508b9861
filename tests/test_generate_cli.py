"""`graphc generate`: streams the same greedy tokens the Python API makes, reports tokens/s, clear errors."""
import numpy as np
import pytest

import graphc.models
from graphc.cli import main
from graphc.models.testing import make_tiny_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    seed = int(np.random.default_rng().integers(1 << 30))
    return make_tiny_gguf(tmp_path_factory.mktemp("gen") / "tiny.gguf", arch="llama", wtype="q8_0", seed=seed)


@pytest.mark.parametrize("target", ["ref", "c", "opencl", "triton"])
def test_generate_streams_the_greedy_text(tiny, target, capsys):
    assert main(["generate", tiny, "--prompt", "hello world", "-n", "6", "--target", target, "--ctx", "64"]) == 0
    out, err = capsys.readouterr()
    # Triton multiplies quantized weights by f32 activations: ref's dequant mode (the others: ggml's)
    mode = "dequant" if target == "triton" else "ggml"
    m = graphc.models.load(tiny, target="ref", n_ctx=64, quant_matmul=mode)
    ids = m.generate("hello world", max_tokens=6, temperature=0)
    assert out.rstrip("\n") == m.detokenize(ids).rstrip("\n")
    assert "prompt:" in err and "tokens/s" in err and f"decode: {len(ids)} tokens" in err


def test_generate_ids_and_sampling_seed(tiny, capsys):
    args = ["generate", tiny, "--prompt-ids", "1", "267", "290", "-n", "5", "--ids", "--target", "ref",
            "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out.split()
    assert main(args) == 0
    assert capsys.readouterr().out.split() == first                  # the seed fixes the samples
    m = graphc.models.load(tiny, target="ref")
    # 5 samples, or fewer when one is an end-of-generation token (the random tiny model can sample it)
    assert (len(first) == 5 or int(first[-1]) in m.eos_ids) and all(0 <= int(t) < 320 for t in first)
    assert [str(t) for t in m.generate([1, 267, 290], max_tokens=5, temperature=0.9, top_k=20, top_p=0.9,
                                       seed=3)] == first


def test_generate_errors(tiny, tmp_path, capsys):
    assert main(["generate", str(tmp_path / "none.gguf"), "-p", "x"]) == 1
    assert "no such model file" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\0" * 64)
    assert main(["generate", str(junk), "-p", "x"]) == 1
    assert "not a model graphc knows" in capsys.readouterr().err
    assert main(["generate", tiny, "-p", "x", "-n", "-1"]) == 2
    assert main(["generate", tiny]) == 2                               # a prompt is required
    assert main(["generate", tiny, "-p", "x", "--ctx", "100000", "--target", "ref"]) == 1
    assert "context" in capsys.readouterr().err
    assert main(["generate", tiny, "-p", "x", "--device", "0"]) == 2         # --device is for --target opencl
    assert "--device is for --target opencl" in capsys.readouterr().err
    assert main(["generate", tiny, "-p", "x", "--target", "opencl", "--device", "no such device"]) == 1
    err = capsys.readouterr().err
    assert "no device matches" in err and "0:0" in err                   # the error lists the devices


def test_stream_text_holds_back_incomplete_pieces_until_finish():
    import io
    from graphc.models.base import stream_text

    class Bytes:                                  # each id is one UTF-8 byte of the text
        def detokenize(self, ids):
            return bytes(ids).decode("utf-8", errors="replace")
    out = io.StringIO()
    s = stream_text(Bytes(), out)
    for b in "a é".encode() + "€".encode()[:2]:
        s(b)
    assert out.getvalue() == "a é"               # the euro sign's first two bytes wait
    s.finish()
    assert out.getvalue() == "a é\ufffd"          # generation stopped inside it: shown as replacement
