"""The Triton target's kernels compiled for real GPUs with no GPU present (triton.compile for sm_80 and
sm_90: PTX from Triton's LLVM backend, cubins from ptxas): every kernel of every op case, fused and
unfused, and of a LLaMA-3-8B-shaped decode graph; artifacts written by `graphc compile --target triton
--cuda-arch` and loaded back. The interpreter (test_triton_target.py) is lenient where the compiler is
not (constexpr branches, loop-carried values, shapes), so this is what shows the kernels build for GPUs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.cli import main
from graphc.errors import CompileError, ParseError
from graphc.models.testing import shaped_graph
from graphc.passes import run_pipeline
from graphc.program import unfused

from op_cases import CASE_IDS, CASES, build_graph
from test_c_target import F32_BOUND, _check_outputs

from graphc.targets.triton import _as_program, aot, codegen
from graphc.targets.triton.device import aot_device

ARCHS = (80, 90)


def _gens(graph):
    """The generated launches of a graph, fused and unfused, for an sm_90 GPU (None where Triton declines)."""
    out = []
    for prog in (run_pipeline(graph), unfused(graph)):
        try:
            out.append(codegen.generate(_as_program(prog), aot_device(90)))
        except codegen.Unsupported:
            pass
    return out


def _check_binary(ck, arch: int) -> None:
    assert f".target sm_{arch}" in ck.asm["ptx"]
    assert ck.asm["cubin"][:4] == b"\x7fELF"
    assert ck.metadata.target.arch == arch


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_case_kernels_compile_for_gpus(c):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import compile as triton_compile
    graph, _ = build_graph(c)
    seen = set()
    for gen in _gens(graph):
        for la in gen.launches:
            if la.module == codegen.HOST:   # a collective the host runs: no kernel
                continue
            fn = aot._cuda_fn(la.module, la.kernel, gen.source)
            spec = aot.spec_of(la, fn)
            key = spec.key + (gen.source if la.module == "gen" else "")
            if key in seen:
                continue
            seen.add(key)
            for arch in ARCHS:
                ck = triton_compile(aot._ast_source(spec, fn), target=GPUTarget("cuda", arch, 32),
                                    options=dict(spec.options))
                _check_binary(ck, arch)


@pytest.mark.parametrize("wtype,flash", [("q4_K_M", False), ("q4_0", True)], ids=["q4_K_M", "q4_0-flash"])
def test_llama_shaped_decode_graph_builds_and_loads(tmp_path: Path, wtype, flash):
    """LLaMA-3-8B's widths (4096 embedding, 32 heads / 8 KV heads of 128, 14336 FFN, 128256 vocabulary),
    two layers (every layer has the same kernels), one token over a 4096-row cache."""
    g = shaped_graph(wtype=wtype, n_layer=2, flash_attn=flash)
    gen = codegen.generate(_as_program(run_pipeline(g)), aot_device(90))
    kinds = {la.kernel for la in gen.launches}
    assert {"mul_mat", "rope", "get_rows", "set_rows", "norm_rows"} <= kinds
    assert ("flash_attn_ext" in kinds) == flash
    files = aot.build(gen, list(ARCHS), str(tmp_path))
    table = json.loads((tmp_path / aot.AOT_FILE).read_text())
    assert len(table["launches"]) == len(gen.launches) and table["archs"] == ["sm_80", "sm_90"]
    for k in table["kernels"]:
        for arch in ARCHS:
            base = f"{tmp_path}/kernels/{k['name']}.sm_{arch}"
            assert f".target sm_{arch}" in Path(base + ".ptx").read_text()
            assert Path(base + ".cubin").read_bytes()[:4] == b"\x7fELF"
            assert f"kernels/{k['name']}.sm_{arch}.cubin" in files
    kernels = aot.load(str(tmp_path), gen, 90)
    assert kernels is not None and len(kernels) == len(gen.launches)
    assert all(k.metadata.target.arch == 90 for k in kernels)
    assert aot.load(str(tmp_path), gen, 86) is None             # no sm_86 binaries: Triton's JIT instead
    other = codegen.generate(_as_program(run_pipeline(shaped_graph(wtype=wtype, n_layer=1, flash_attn=flash))),
                             aot_device(90))
    assert aot.load(str(tmp_path), other, 90) is None           # another graph's launches


def test_cuda_arch_names():
    assert aot.parse_archs("sm_90,sm_80, sm_90") == [80, 90]
    assert aot.parse_archs(["sm_86"]) == [86]
    for bad in ("90", "sm_9", "compute_90", "sm_61", "", "sm_90;rm"):
        with pytest.raises(CompileError, match="cuda arch"):
            aot.parse_archs(bad)


@pytest.fixture
def small_model(tmp_path: Path):
    rng = np.random.default_rng()
    g = graphc.GraphBuilder("aot mlp")
    x = g.set_input(g.new_tensor_2d("f32", 64, 3, name="x"))
    w = g.set_param(g.new_tensor_2d("f32", 64, 32, name='w */ "evil"\n'))
    y = g.set_name(g.unary(g.mul_mat(w, g.rms_norm(x, 1e-5)), "silu"), "y")
    graphc.save_graph(g.build(y), tmp_path / "m.graph")
    np.savez(tmp_path / "w.npz", **{'w */ "evil"\n': rng.standard_normal((32, 64)).astype(np.float32)})
    return tmp_path, rng


def test_cli_compile_cuda_arch_writes_kernels_and_loads(small_model, capsys):
    d, rng = small_model
    art = d / "art"
    rc = main(["compile", str(d / "m.graph"), "--target", "triton", "--cuda-arch", "sm_80,sm_90", "-o", str(art),
               "--weights", str(d / "w.npz"), "--quantize", "q4_0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    names = sorted(os.listdir(art / "kernels"))
    for arch in ARCHS:
        assert any(n.startswith("mul_mat_") and n.endswith(f".sm_{arch}.cubin") for n in names), names
        assert sum(n.endswith(f".sm_{arch}.ptx") for n in names) == sum(n.endswith(f".sm_{arch}.cubin")
                                                                         for n in names) >= 3
    assert all("evil" not in n for n in names)
    manifest = json.loads((art / "manifest.json").read_text())
    assert any(f.startswith("kernels/") and f.endswith(".cubin") for f in manifest["files"])

    # no GPU here: the artifact runs through the interpreter, like the module it was saved from
    m = graphc.load(art, device="interpret")
    assert m.target == "triton" and m.target_opts.get("cuda_arch") == "sm_80,sm_90"
    assert "artifact_dir" not in m.target_opts
    ref = graphc.load(art, target="ref", quant_matmul="dequant")
    feeds = {"x": rng.standard_normal((3, 64)).astype(np.float32)}
    _check_outputs(m.run(feeds), ref.run(feeds), F32_BOUND, False, "artifact")

    cubin = next(art / "kernels" / n for n in names if n.endswith(".cubin"))
    raw = cubin.read_bytes()
    cubin.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ParseError, match="content hash does not match"):
        graphc.load(art, device="interpret")


def test_cli_cuda_arch_errors(small_model, capsys):
    d, _ = small_model
    for argv, msg in ((["--target", "c", "--cuda-arch", "sm_90", "-o", str(d / "a")], "--cuda-arch is for --target"),
                      (["--target", "triton", "--cuda-arch", "sm_90"], "needs -o"),
                      (["--target", "triton", "--cuda-arch", "sm_61", "-o", str(d / "b")], "cuda arch 'sm_61'")):
        rc = main(["compile", str(d / "m.graph"), "--weights", str(d / "w.npz"), *argv])
        err = capsys.readouterr().err
        assert rc != 0 and msg in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_manifest_paths_stay_inside_the_artifact(small_model, capsys):
    d, _ = small_model
    art = d / "art"
    assert main(["compile", str(d / "m.graph"), "--target", "triton", "-o", str(art),
                 "--weights", str(d / "w.npz")]) == 0
    capsys.readouterr()
    mpath = art / "manifest.json"
    good = json.loads(mpath.read_text())
    for bad in ("../graph.graph", "/etc/passwd", "kernels/../../x", "a\\b"):
        m = dict(good, files={**good["files"], bad: {"sha256": "0" * 64, "bytes": 1}})
        mpath.write_text(json.dumps(m))
        with pytest.raises(ParseError, match="outside the artifact"):
            graphc.load(art, device="interpret")


@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_K"])
def test_every_autotuner_option_compiles(wtype):
    """The GPU measures every option of a tunable node at start: each must build for sm_90."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import compile as triton_compile
    g = graphc.GraphBuilder("gemv")
    w = g.set_param(g.new_tensor_2d(wtype, 4096, 1024, name="w"))
    x = g.set_input(g.new_tensor_1d("f32", 4096, name="x"))
    gen = codegen.generate(_as_program(run_pipeline(g.build(g.mul_mat(w, x)))), aot_device(90))
    assert len(gen.to_tune) == 1
    _, _, tun = gen.to_tune[0]
    assert len(tun.options) >= 12 and any("split8" in name for name in tun.options)
    seen = set()
    for launches in tun.options.values():
        for la in launches:
            fn = aot._cuda_fn(la.module, la.kernel, gen.source)
            spec = aot.spec_of(la, fn)
            if spec.key not in seen:
                seen.add(spec.key)
                _check_binary(triton_compile(aot._ast_source(spec, fn), target=GPUTarget("cuda", 90, 32),
                                             options=dict(spec.options)), 90)


def test_tuning_cache_choice_is_used_on_the_next_start(tmp_path, monkeypatch):
    """What a GPU measured is read back by the next start: that node is not measured again."""
    from graphc.targets.triton import tuning
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    g = graphc.GraphBuilder("gemv")
    w = g.set_param(g.new_tensor_2d("q4_0", 4096, 1024, name="w"))
    x = g.set_input(g.new_tensor_1d("f32", 4096, name="x"))
    prog = _as_program(run_pipeline(g.build(g.mul_mat(w, x))))
    dev = aot_device(90)
    first = codegen.generate(prog, dev)
    _, _, tun = first.to_tune[0]
    pick = "bm8 nb4 split4 warps4"
    assert pick in tun.options and pick != tun.default
    tuning.store(dev, tun.key, pick, {pick: 0.01})
    again = codegen.generate(prog, dev)
    assert again.to_tune == []
    gemv = next(la for la in again.launches if la.kernel == "gemv_q32")
    assert (gemv.consts["BM"], gemv.consts["NB"], gemv.consts["SPLIT"]) == (8, 4, 4)
    assert [la.kernel for la in again.launches] == ["zero_dst", "gemv_q32"]
    (tmp_path / "triton" / f"tuning-v{tuning.VERSION}.json").write_text("{damaged")
    assert len(codegen.generate(prog, dev).to_tune) == 1       # a damaged cache is measured again
