"""The CLI on real models: `inspect` / `convert` of GGUF files, `bench`, `devices`, and file kinds by magic bytes."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import graphc
import graphc.models
from graphc.cli import main
from graphc.frontends.gguf import GGUFFile, write_gguf
from graphc.models.testing import make_tiny_gguf


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphc: error: "), err
    return lines[0]


def summary_field(out: str, key: str) -> str:
    """The value of one `  key   value` line of inspect's summary."""
    for line in out.splitlines():
        if line.startswith("  ") and line[2:].startswith(key + " ") and line[2:2 + 16].rstrip() == key:
            return line[2 + 16:].strip()
    raise AssertionError(f"no summary line {key!r} in:\n{out}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return make_tiny_gguf(tmp_path_factory.mktemp("cli-models") / "tiny.gguf", arch="llama", wtype="q4_K_M", seed=3)


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory) -> str:
    return make_tiny_gguf(tmp_path_factory.mktemp("cli-models") / "gemma.gguf", arch="gemma3", wtype="q8_0", seed=4)


def _independent_table(path: str) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, type, ne, bytes) of every tensor, read with gguf-py (llama.cpp's own reader), not graphc's."""
    import gguf
    r = gguf.GGUFReader(path)
    return [(t.name, t.tensor_type.name.lower(), tuple(int(d) for d in t.shape), int(t.n_bytes)) for t in r.tensors]


# --- inspect --------------------------------------------------------------------------------------------

def test_inspect_gguf_shows_the_metadata_summary_and_tensor_table(tiny, capsys):
    rc, out, err = run_cli(capsys, "inspect", tiny)
    assert rc == 0, err
    table = _independent_table(tiny)
    n_params = sum(int(np.prod(ne)) for _, _, ne, _ in table)
    assert out.startswith("GGUF model tiny.gguf: GGUF v3, ")
    assert summary_field(out, "architecture") == "llama"
    assert summary_field(out, "name") == "tiny-llama-q4_K_M"
    assert summary_field(out, "file type") == "Q4_K - Medium"
    assert summary_field(out, "parameters").endswith(f"({n_params:,})")
    assert summary_field(out, "context length") == "256"
    assert summary_field(out, "layers") == "2"
    assert summary_field(out, "heads") == "4"
    assert summary_field(out, "kv heads") == "2"
    assert summary_field(out, "embedding size") == "256"
    assert summary_field(out, "vocabulary") == "320 tokens, tokenizer llama (SentencePiece)"
    assert summary_field(out, "chat template") == "no"
    assert summary_field(out, "file size").startswith(f"{os.path.getsize(tiny) / 1024:.2f} KiB "
                                                      f"({os.path.getsize(tiny):,} bytes")
    # the vocabulary arrays are counted, never printed
    assert re.search(r"^  tokenizer\.ggml\.tokens\s+= \[320 strings\]$", out, re.M)
    assert re.search(r"^  tokenizer\.ggml\.scores\s+= \[320 float32\]$", out, re.M)
    assert "<0x41>" not in out and "\u2581the" not in out
    # the tensor table: every tensor with its type, ggml shape and bytes, as gguf-py reads them
    for name, ty, ne, nbytes in table:
        row = re.search(rf"^  {re.escape(name)}\s+(\S+)\s+\[([0-9, ]+)\]\s+([0-9,]+)$", out, re.M)
        assert row, name
        assert row.group(1).lower() == ty and row.group(2) == ", ".join(map(str, ne))   # gguf-py: q4_k
        assert int(row.group(3).replace(",", "")) == nbytes
    # the totals per type
    for ty in {t for _, t, _, _ in table}:
        rows = [r for r in table if r[1] == ty]
        m = re.search(rf"(?i)^  {ty}\s+(\d+) tensors\s+([0-9,]+) elements\s+([0-9,]+) bytes", out, re.M)
        assert m and int(m.group(1)) == len(rows), ty
        assert int(m.group(3).replace(",", "")) == sum(r[3] for r in rows)
    total = re.search(r"^  total\s+(\d+) tensors\s+([0-9,]+) elements\s+([0-9,]+) bytes", out, re.M)
    assert int(total.group(1)) == len(table) and int(total.group(2).replace(",", "")) == n_params


def test_inspect_never_prints_huge_arrays_and_never_reads_tensor_data(tmp_path, capsys, monkeypatch):
    """A vocabulary of 262144 strings, a chat template, and one 4 GiB tensor in a sparse file: the summary
    counts them; GGUFFile.raw / mapping (the tensor bytes) are never asked for."""
    path = tmp_path / "big.gguf"
    toks = [f"tok{i}" for i in range(262144)]
    md = {"general.architecture": "llama", "general.name": "big", "llama.context_length": 8192,
          "llama.block_count": 1, "llama.embedding_length": 4096, "llama.attention.head_count": 32,
          "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": toks,
          "tokenizer.chat_template": "{% for m in messages %}" + "x" * 5000 + "{% endfor %}"}
    write_gguf(path, md, [("blk.0.attn_q.weight", "f32", (8,), np.zeros(8, np.float32))])
    data = bytearray(path.read_bytes())
    at = data.index(b"blk.0.attn_q.weight") + len(b"blk.0.attn_q.weight")
    assert struct.unpack_from("<IQ", data, at) == (1, 8)
    struct.pack_into("<Q", data, at + 4, 1 << 30)              # 2^30 f32 elements: 4 GiB of data
    with GGUFFile(path) as f:
        data_start = f.tensors["blk.0.attn_q.weight"].offset
    path.write_bytes(bytes(data[:data_start]))
    with open(path, "r+b") as fh:
        fh.truncate(data_start + (4 << 30))                     # sparse: no disk space, no data to read

    def no_data(*_a, **_k):
        raise AssertionError("inspect read tensor data")
    monkeypatch.setattr(GGUFFile, "raw", no_data)
    monkeypatch.setattr(GGUFFile, "mapping", property(no_data))
    rc, out, err = run_cli(capsys, "inspect", path)
    assert rc == 0, err
    assert re.search(r"^  tokenizer\.ggml\.tokens\s+= \[262144 strings\]$", out, re.M)
    assert "tok12345" not in out and "x" * 100 not in out
    assert summary_field(out, "vocabulary") == "262,144 tokens, tokenizer gpt2 (byte-level BPE)"
    assert summary_field(out, "chat template") == f"yes ({len(md['tokenizer.chat_template']):,} characters)"
    assert summary_field(out, "kv heads") == "32 (= heads: no head_count_kv)"
    assert summary_field(out, "parameters") == f"1.07 B ({1 << 30:,})"
    assert re.search(rf"^  blk\.0\.attn_q\.weight\s+f32\s+\[{1 << 30}\]\s+{4 << 30:,}$", out, re.M)
    assert len(out) < 20000


def test_inspect_graph_shows_the_decode_graph_and_its_plan(tiny, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "inspect", tiny, "--graph", "--tokens", "2", "--ctx", "32")
    assert rc == 0, err
    assert summary_field(out, "architecture") == "llama"
    m = graphc.models.load(tiny, target="ref", n_ctx=32)
    g = m.graph(2, 32)                                        # GGUFModel.graph: what the model compiles
    head = re.search(r"^graph (\S+): (\d+) leafs, (\d+) nodes$", out, re.M)
    assert head and head.group(1) == g.name and int(head.group(2)) == len(g.leafs)
    assert int(head.group(3)) == len(g.nodes)
    assert "tokens i32[2]" in out and "pos i32[2]" in out and "kq_mask f32[32, 2]" in out
    assert "logits f32[320, 2]" in out
    assert re.search(rf"^graph {g.name}: {len(g.nodes)} nodes -> \d+ kernels$", out, re.M)
    assert "memory plan: " in out
    # the cache is state: 2 layers x (K + V) x 32 rows x 128 f16 values
    state = re.search(r"^  state\s+([0-9,]+)$", out, re.M)
    assert int(state.group(1).replace(",", "")) == 2 * 2 * 32 * 128 * 2
    # --plan alone on a GGUF implies --graph; --svg draws the arena
    rc, out, err = run_cli(capsys, "inspect", tiny, "--plan", "--ctx", "16")
    assert rc == 0 and "memory plan: " in out and "kq_mask f32[16]" in out, err
    svg = tmp_path / "arena.svg"
    rc, out, err = run_cli(capsys, "inspect", tiny, "--svg", svg, "--ctx", "16")
    assert rc == 0 and f"wrote {svg}" in out and svg.read_text().lstrip().startswith("<svg"), err


def test_inspect_graph_option_errors(tiny, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "inspect", tiny, "--tokens", "4")
    assert rc == 2 and "--tokens and --ctx go with --graph" in one_error_line(err)
    rc, _, err = run_cli(capsys, "inspect", tiny, "--graph", "--tokens", "0")
    assert rc == 2 and "--tokens must be at least 1" in one_error_line(err)
    rc, _, err = run_cli(capsys, "inspect", tiny, "--graph", "--tokens", "9", "--ctx", "8")
    assert rc == 2 and "does not fit in --ctx 8" in one_error_line(err)
    rc, _, err = run_cli(capsys, "inspect", tiny, "--graph", "--ctx", "100000")
    assert rc == 1 and "context_length 256" in one_error_line(err)
    graphc.save_graph(graphc.models.load(tiny, target="ref", n_ctx=8).graph(1, 8), tmp_path / "g.graph")
    rc, _, err = run_cli(capsys, "inspect", tmp_path / "g.graph", "--graph")
    assert rc == 1 and "not a GGUF model, which --graph is for" in one_error_line(err)


# --- convert, then run and compile the graph -----------------------------------------------------------

def _feed(model, ids: list[int], n_ctx: int) -> dict[str, np.ndarray]:
    """The inputs the model makes for feeding ids into an empty cache (graphc.models.llm_graph's helpers)."""
    from graphc.models.llm_graph import kq_mask, positions, v_indices
    c = model.cfg
    pos = positions(0, len(ids))
    feed = {"tokens": np.asarray(ids, np.int32), "pos": pos, "kq_mask": kq_mask(pos, n_ctx, 0),
            "v_idxs": v_indices(pos, c.n_embd_v_gqa, n_ctx)}
    if c.has_swa:
        feed["kq_mask_swa"] = kq_mask(pos, n_ctx, c.n_swa)
    return feed


@pytest.mark.parametrize("which", ["tiny", "tiny_gemma"])
def test_convert_gguf_then_run_and_compile_give_the_models_logits(which, request, tmp_path, capsys):
    src = Path(request.getfixturevalue(which))
    models = tmp_path / "models"
    models.mkdir()
    gguf = models / "model.gguf"
    shutil.copy(src, gguf)
    out = tmp_path / "graphs" / "prefill.graph"
    out.parent.mkdir()
    T, C = 3, 16
    rc, text, err = run_cli(capsys, "convert", gguf, "-o", out, "--tokens", T, "--ctx", C)
    assert rc == 0, err
    assert text.startswith(f"wrote {out}: graph ") and "bound to ../models/model.gguf" in text
    body = out.read_text()
    assert 'weight("../models/model.gguf", "token_embd.weight")' in body     # by reference, not copied
    assert "data(" not in body and len(body) < 64 * 1024 < os.path.getsize(gguf)

    model = graphc.models.load(gguf, target="ref", n_ctx=C)
    ids = [1, 100, 200]
    want = model.logits(ids)                                  # (T, n_vocab) from an empty cache
    np.savez(tmp_path / "in.npz", **_feed(model, ids, C))
    rc, text, err = run_cli(capsys, "run", out, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "out.npz",
                            "--target", "ref")
    assert rc == 0, err
    got = np.load(tmp_path / "out.npz")["logits"].reshape(T, -1)
    np.testing.assert_array_equal(got, want)

    rc, text, err = run_cli(capsys, "compile", out, "-o", tmp_path / "art", "--target", "ref")
    assert rc == 0 and "compiled" in text, err
    rc, text, err = run_cli(capsys, "run", tmp_path / "art", "--inputs", tmp_path / "in.npz",
                            "-o", tmp_path / "out2.npz")
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "out2.npz")["logits"].reshape(T, -1), want)
    # the C target (compile's default) computes the same up to float summation order
    rc, text, err = run_cli(capsys, "compile", out, "-o", tmp_path / "art-c")
    assert rc == 0 and "for c" in text, err
    rc, text, err = run_cli(capsys, "run", tmp_path / "art-c", "--inputs", tmp_path / "in.npz",
                            "-o", tmp_path / "out3.npz")
    assert rc == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "out3.npz")["logits"].reshape(T, -1), want, rtol=1e-4, atol=1e-4)

    rc, text, err = run_cli(capsys, "run", out, "--random-inputs", "--seed", "5")
    assert rc == 0, err
    assert re.search(r"^  logits\s+\(" + f"{T}, {model.n_vocab}" + r"\)\s+float32\s+min", text, re.M)


def test_convert_default_is_the_one_token_decode_graph(tiny, tmp_path, capsys):
    out = tmp_path / "decode.graph"
    rc, text, err = run_cli(capsys, "convert", tiny, "-o", out)
    assert rc == 0, err
    g = graphc.load_graph(out)
    ins = {t.name: t.ne for t in g.inputs}
    assert ins["tokens"][0] == 1 and ins["kq_mask"][:2] == (256, 1)      # ctx: min(4096, context_length 256)
    assert {t.weight.file for t in g.leafs if t.weight is not None} == {os.path.relpath(tiny, tmp_path)}
    rc, text, err = run_cli(capsys, "convert", tiny, "-o", out, "--hints", "x.hints")
    assert rc == 2 and "--hints applies to .dot dumps only" in one_error_line(err)
    rc, text, err = run_cli(capsys, "convert", out, "-o", tmp_path / "again.graph", "--tokens", "2")
    assert rc == 1 and "not a GGUF model, which --tokens is for" in one_error_line(err)


# --- file kinds by magic bytes --------------------------------------------------------------------------

def test_a_text_file_renamed_gguf_is_one_clear_error(tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_text("hello, I am a text file\n")
    for args in (["inspect", fake], ["inspect", fake, "--graph"], ["convert", fake, "-o", tmp_path / "x.graph"],
                 ["compile", fake, "-o", tmp_path / "art"], ["run", fake, "--random-inputs"]):
        rc, out, err = run_cli(capsys, *args)
        line = one_error_line(err)
        assert rc == 1 and f"{fake}: not a GGUF model" in line and "text starting 'hello, I am a text" in line, args
        assert "cannot read yet" not in line
    for args in (["generate", fake, "-p", "hi"], ["bench", fake, "-p", "4", "-n", "0"]):
        rc, out, err = run_cli(capsys, *args)
        line = one_error_line(err)
        assert rc == 1 and "not a model graphc knows" in line and "text starting 'hello, I am a text" in line, args
    for name in ("ckpt.pth", "ckpt.safetensors"):                 # the RWKV kinds are by their bytes too
        (tmp_path / name).write_text("not a checkpoint either")
        rc, out, err = run_cli(capsys, "generate", tmp_path / name, "--prompt-ids", "1")
        assert rc == 1 and "text starting 'not a checkpoint" in one_error_line(err)


def test_a_gguf_is_known_by_its_bytes_whatever_its_name(tiny, tmp_path, capsys):
    renamed = tmp_path / "weights.bin"
    shutil.copy(tiny, renamed)
    rc, out, err = run_cli(capsys, "inspect", renamed)
    assert rc == 0 and summary_field(out, "architecture") == "llama", err
    rc, out, err = run_cli(capsys, "compile", renamed, "-o", tmp_path / "art")   # a model, not a graph
    line = one_error_line(err)
    assert rc == 1 and "a GGUF model, not a graph file" in line and "graphc convert" in line


# --- bench ----------------------------------------------------------------------------------------------

def _md_rows(out: str) -> list[list[str]]:
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_bench_prints_a_llama_bench_table(tiny, capsys):
    rc, out, err = run_cli(capsys, "bench", tiny, "-p", "8", "-n", "4", "-r", "2", "--target", "ref")
    assert rc == 0, err
    rows = _md_rows(out)
    assert rows[0] == ["model", "size", "params", "target", "threads", "test", "t/s"]
    assert all(set(c) <= set("-:") for c in rows[1])
    body = rows[2:]
    assert [r[5] for r in body] == ["pp8", "tg4"]
    n_params = sum(int(np.prod(ne)) for _, _, ne, _ in _independent_table(tiny))
    for r in body:
        assert r[0].startswith("llama ") and r[0].endswith("Q4_K - Medium")
        assert r[2] == f"{n_params / 1e6:.2f} M" and r[3] == "ref" and r[4] == "-"
        m = re.fullmatch(r"(\d+\.\d\d) ± (\d+\.\d\d)", r[6])
        assert m and float(m.group(1)) > 0 and float(m.group(2)) >= 0, r


def test_bench_json(tiny, capsys):
    rc, out, err = run_cli(capsys, "bench", tiny, "-p", "8", "-n", "4", "-r", "2", "-t", "1", "--target", "c",
                           "-o", "json")
    assert rc == 0, err
    res = json.loads(out)
    assert [r["test"] for r in res] == ["pp8", "tg4"]
    assert [(r["n_prompt"], r["n_gen"]) for r in res] == [(8, 0), (0, 4)]
    for r in res:
        assert r["target"] == "c" and r["n_threads"] == 1 and r["model_filename"] == "tiny.gguf"
        assert len(r["samples_ns"]) == len(r["samples_ts"]) == 2 and min(r["samples_ns"]) > 0
        n = r["n_prompt"] + r["n_gen"]
        assert r["samples_ts"] == pytest.approx([n * 1e9 / ns for ns in r["samples_ns"]])
        assert r["avg_ts"] == pytest.approx(np.mean(r["samples_ts"])) and r["avg_ts"] > 0
        assert r["stddev_ts"] == pytest.approx(np.std(r["samples_ts"], ddof=1))
        assert r["model_size"] == sum(t[3] for t in _independent_table(tiny))


def test_bench_an_rwkv_checkpoint_known_by_its_bytes(tmp_path, capsys):
    from graphc.frontends import rwkv4 as R
    cfg = R.RWKV4Config(n_layer=1, n_embd=32, n_att=32, n_ffn=64, n_vocab=50)
    sd = R.random_state_dict(cfg, np.random.default_rng(0))
    path = R.save_checkpoint(str(tmp_path / "rwkv.safetensors"), sd)
    renamed = tmp_path / "rwkv.pth"                       # a safetensors file under a torch name
    shutil.copy(path, renamed)
    rc, out, err = run_cli(capsys, "bench", renamed, "-p", "4", "-n", "2", "-r", "1", "--target", "ref")
    assert rc == 0, err
    body = _md_rows(out)[2:]
    n_params = sum(a.size for a in sd.values())
    assert [r[5] for r in body] == ["pp4", "tg2"]
    assert all(r[0].startswith("rwkv4 ") and r[2] == f"{n_params / 1e3:.2f} K" for r in body), body
    assert all(float(r[6].split(" ± ")[0]) > 0 and r[6].endswith(" ± 0.00") for r in body)     # one run: sd 0


def test_bench_usage_errors(tiny, capsys):
    for args, msg in ((["-p", "0", "-n", "0"], "nothing to measure"), (["-r", "0"], "-r must be at least 1"),
                      (["-p", "-1"], "-p must be at least 0"), (["-t", "2", "--target", "ref"], "--target c"),
                      (["-o", "csv"], "invalid choice")):
        rc, out, err = run_cli(capsys, "bench", tiny, *args)
        assert rc == 2 and msg in one_error_line(err), args
    rc, out, err = run_cli(capsys, "bench", tiny, "-p", "512", "-n", "0", "--target", "ref")
    assert rc == 1 and "context_length 256" in one_error_line(err)     # the tiny model holds 256 tokens


# --- devices --------------------------------------------------------------------------------------------

def _cpuinfo() -> tuple[str | None, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None, []
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), None)
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return model, flags


def test_devices_lists_every_target_with_its_features(capsys):
    rc, out, err = run_cli(capsys, "devices")
    assert rc == 0, err
    model, flags = _cpuinfo()
    c_line = next(ln for ln in out.splitlines() if ln.startswith("target c: "))
    if model:
        assert c_line.startswith(f"target c: {model} ({os.cpu_count()} threads")
    isa = next(ln for ln in out.splitlines() if ln.strip().startswith("ISA: "))
    shown = isa.split("ISA: ", 1)[1].split("  (absent:")[0].split()
    for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"):
        if flags:
            assert (f in shown) == (f in flags), f
    assert re.search(r"^    compiler: \S+", out, re.M)
    opencl = next(ln for ln in out.splitlines() if ln.startswith("target opencl"))
    if "device(s)" in opencl:                                  # the test environment has PoCL
        assert re.search(r"^\s+\[0\] 0:0 ", out, re.M) and "compute units" in out
    triton = next(ln for ln in out.splitlines() if ln.startswith("target triton"))
    assert "not usable" in triton or "the interpreter is available" in triton
    assert "CUDA GPU" in triton or "not usable" in triton


def test_devices_never_crashes(monkeypatch, capsys):
    import graphc.targets.opencl.device as ocl
    import graphc.targets.triton.device as tri

    def boom():
        raise RuntimeError("driver exploded\nwith two lines")
    monkeypatch.setattr(ocl, "list_devices", boom)
    monkeypatch.setattr(tri, "list_devices", boom)
    rc, out, err = run_cli(capsys, "devices")
    assert rc == 0 and err == ""
    assert "target opencl: not usable here (RuntimeError: driver exploded with two lines)" in out
    assert "target triton: not usable here (RuntimeError: driver exploded with two lines)" in out
    assert out.startswith("target c: ")
