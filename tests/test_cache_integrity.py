"""Compile caches and artifacts: damaged, truncated or swapped files are found by their content hashes and
rebuilt (or refused with a clear error), never run; several processes filling one empty cache at once, and
several threads running one module at once.

Damage is done the way a disk, a crash or another process would leave it, with real files: a flipped
byte, a truncation, two cached libraries swapped (with and without their digest sidecars), a missing
sidecar. A library a process has loaded is never changed in place (that would change the running code of
the test process itself): damaged files are written beside it and renamed over it, and every check after
damage runs in a fresh process, which really loads what the cache holds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.errors import CompileError, ParseError
from graphc.targets.c import build as cbuild
from graphc.util import digest_line, sha256_file, verified_file

FAST = ["-O1"]            # the kernel library builds in about a second at -O1 (tens of seconds at -O3)

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc
    which, out = sys.argv[1], sys.argv[2]
    g = graphc.GraphBuilder("cache-" + which)
    x = g.set_input(g.new_tensor_2d("f32", 8, 3, name="x"))
    w = g.set_param(g.new_tensor_2d("f32", 8, 5, name="w"))
    y = g.mul_mat(w, x)
    y = g.add(y, y) if which == "a" else g.mul(y, y)
    graph = g.build(g.set_name(y, "y"))
    rng = np.random.default_rng(7)
    feeds = {"x": rng.standard_normal((3, 8)).astype(np.float32)}
    weights = {"w": rng.standard_normal((5, 8)).astype(np.float32)}
    m = graphc.compile(graph, target="c", weights=weights, n_threads=2, extra_cflags=["-O1"])
    got = m.run(feeds)["y"]
    want = graphc.compile(graph, target="ref", weights=weights).run(feeds)["y"]
    b = m._exe.built
    json.dump({"ok": bool(np.allclose(got, want, rtol=1e-5, atol=1e-5)), "cached": b.cached, "path": b.path,
               "needs": b.needs}, open(out, "w"))
""")


def _child(tmp_path: Path, which: str = "a", cache: "Path | None" = None) -> dict:
    """Compile graph `which` in a fresh process with the cache at `cache`; what it built and whether its
    results matched ref."""
    script = tmp_path / "child.py"
    if not script.exists():
        script.write_text(CHILD)
    out = tmp_path / f"out-{which}-{os.urandom(4).hex()}.json"
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache or tmp_path / "cache"))
    env.pop("GRAPHC_NO_CACHE", None)
    r = subprocess.run([sys.executable, str(script), which, str(out)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(out.read_text())


def _replace(path: Path, data: bytes) -> None:
    """Give path new contents through a new file renamed over it (a loaded library's pages stay intact)."""
    tmp = path.with_name(path.name + ".damage")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _flip(path: Path, at: "int | None" = None) -> None:
    raw = bytearray(path.read_bytes())
    i = len(raw) // 2 if at is None else at
    raw[i] ^= 0x01
    _replace(path, bytes(raw))


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name(a.name + ".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def _no_partial_files(cache: Path) -> None:
    leftovers = [p.name for p in cache.rglob("*") if p.name.endswith((".part", ".tmp", ".damage", ".swap"))]
    assert leftovers == []
    for so in cache.glob("*.so"):
        assert verified_file(so), so


# --- the C target's libraries ---------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "no sidecar", "sidecar of another file"])
def test_a_damaged_program_library_is_rebuilt(tmp_path, damage):
    first = _child(tmp_path)
    assert first["ok"] and not first["cached"]
    lib = Path(first["path"])
    side = lib.with_name(lib.name + ".sha256")
    assert side.read_text() == digest_line(sha256_file(lib), lib.name)      # sha256sum's format
    if damage == "flip":
        _flip(lib)
    elif damage == "truncate":
        _replace(lib, lib.read_bytes()[:len(lib.read_bytes()) // 2])
    elif damage == "empty":
        _replace(lib, b"")
    elif damage == "no sidecar":
        side.unlink()
    else:
        side.write_text(side.read_text().replace(lib.name, "0" * 64 + ".so"))
    assert not verified_file(lib)
    again = _child(tmp_path)
    assert again["ok"] and not again["cached"] and again["path"] == first["path"]    # rebuilt in place
    assert verified_file(lib)
    assert _child(tmp_path)["cached"]                                                  # and then a cache hit
    _no_partial_files(tmp_path / "cache")


@pytest.mark.parametrize("with_sidecars", [False, True])
def test_two_swapped_program_libraries_are_rebuilt(tmp_path, with_sidecars):
    a, b = _child(tmp_path, "a"), _child(tmp_path, "b")
    la, lb = Path(a["path"]), Path(b["path"])
    assert la != lb
    _swap(la, lb)
    if with_sidecars:          # digests moved with their files: each now names the other file
        _swap(la.with_name(la.name + ".sha256"), lb.with_name(lb.name + ".sha256"))
    assert not verified_file(la) and not verified_file(lb)
    a2, b2 = _child(tmp_path, "a"), _child(tmp_path, "b")
    assert a2["ok"] and b2["ok"] and not a2["cached"] and not b2["cached"]
    _no_partial_files(tmp_path / "cache")


@pytest.mark.parametrize("damage", ["flip", "truncate", "no sidecar"])
def test_a_damaged_kernel_library_is_rebuilt(tmp_path, damage):
    first = _child(tmp_path)
    (gck,) = map(Path, first["needs"])
    assert gck.name.startswith("libgck-") and verified_file(gck)
    if damage == "flip":
        _flip(gck)
    elif damage == "truncate":
        _replace(gck, gck.read_bytes()[:4096])
    else:
        gck.with_name(gck.name + ".sha256").unlink()
    again = _child(tmp_path)
    assert again["ok"] and again["cached"]          # the program is fine; its kernel library was rebuilt
    assert verified_file(gck)
    _no_partial_files(tmp_path / "cache")


def test_a_library_damaged_after_build_is_never_loaded(tmp_path, monkeypatch):
    """cbuild.load checks the bytes once more right before dlopen: damage in between is a CompileError."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    src = "#include <stddef.h>\nvoid *gc_create(char **b, int n) { (void)b; (void)n; return NULL; }\n"
    built = cbuild.build(src, extra_cflags=tuple(FAST), split=False)
    _flip(Path(built.path))
    with pytest.raises(CompileError, match="does not match its content hash"):
        cbuild.load(built)
    with pytest.raises(CompileError, match="does not match its content hash"):
        cbuild.load(built.path)
    again = cbuild.build(src, extra_cflags=tuple(FAST), split=False)      # a miss: built again
    assert not again.cached and verified_file(again.path)


def test_the_cache_key_names_the_cpu():
    """-march=native is spelled out by the compiler's predefined macros in the key: a cache shared by
    machines with different CPUs never hands one another's code."""
    cc = cbuild.find_compiler()
    fl = cbuild.flags(cc.path)
    macros = cbuild.predefined_macros(cc.path, tuple(fl))
    assert macros and "__OPTIMIZE__" in macros
    if cbuild.host_features() and "avx2" in cbuild.host_features():
        assert "__AVX2__" in macros and "avx2" in cbuild.required_features(cc.path, fl)
    assert cbuild.cache_key("x", cc, fl) != cbuild.cache_key("x", cc, [f for f in fl if f != "-march=native"])


def _foreign_march() -> "str | None":
    """A -march whose code needs CPU features this CPU lacks (None when there is none to try)."""
    have = cbuild.host_features()
    if have is None:
        return None
    cc = cbuild.find_compiler().path
    for march in ("diamondrapids", "graniterapids", "sapphirerapids", "znver5", "znver4", "icelake-server",
                  "skylake-avx512", "haswell"):
        fl = cbuild.flags(cc, march)
        if cbuild.predefined_macros(cc, tuple(fl)) and set(cbuild.required_features(cc, fl)) - have:
            return march
    return None


def test_a_march_this_cpu_lacks_is_a_clear_error(tmp_path, monkeypatch):
    march = _foreign_march()
    if march is None:
        pytest.skip("every -march tried runs on this CPU (or its features cannot be read)")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    g = graphc.GraphBuilder("m")
    x = g.set_input(g.new_tensor_1d("f32", 4, name="x"))
    graph = g.build(g.set_name(g.neg(x), "y"))
    with pytest.raises(CompileError, match=f"-march={march} needs CPU features this CPU lacks"):
        graphc.compile(graph, target="c", march=march)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.so"))


# --- processes and threads ---------------------------------------------------------------------------

def test_processes_filling_one_empty_cache_at_once(tmp_path):
    """4 processes compile the same graph into one empty cache at the same moment: all succeed with the
    right results, one kernel library and one program are left, each with its sidecar, nothing partial."""
    cache = tmp_path / "cache"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache))
    env.pop("GRAPHC_NO_CACHE", None)
    outs = [tmp_path / f"p{i}.json" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, str(script), "a", str(o)], env=env, stderr=subprocess.PIPE,
                              text=True) for o in outs]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-4000:]
    results = [json.loads(o.read_text()) for o in outs]
    assert all(r["ok"] for r in results)
    assert len({r["path"] for r in results}) == 1
    libs = sorted(p.name for p in cache.glob("*.so"))
    assert len(libs) == 2 and sum(n.startswith("libgck-") for n in libs) == 1
    _no_partial_files(cache)
    assert sorted(p.name for p in cache.iterdir() if p.name != ".locks") == sorted(libs + [n + ".sha256" for n in libs])


def _threads_graph():
    """y = softmax(W x) + state; state += x each run: results depend on the run's own inputs and order."""
    g = graphc.GraphBuilder("threads")
    x = g.set_input(g.new_tensor_2d("f32", 512, 16, name="x"))
    w = g.set_param(g.new_tensor_2d("f32", 512, 256, name="w"))
    y = g.soft_max(g.mul_mat(w, x))
    graph = g.build(g.set_name(g.scale(y, 2.0), "y"))
    return graph


@pytest.mark.parametrize("target", ["ref", "c", "opencl"])
def test_one_module_run_from_many_threads(target, tmp_path, monkeypatch):
    """8 threads run one module 25 times each with inputs of their own: runs take the module's lock, so
    every result is the one its inputs give (no thread sees another's inputs or outputs)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    if target == "opencl":
        pytest.importorskip("pyopencl")
    rng = np.random.default_rng(3)
    weights = {"w": rng.standard_normal((256, 512)).astype(np.float32)}
    graph = _threads_graph()
    opts = {"n_threads": 2, "extra_cflags": FAST} if target == "c" else {}
    m = graphc.compile(graph, target=target, weights=weights, **opts)
    ref = graphc.compile(graph, target="ref", weights=weights)
    feeds = [rng.standard_normal((16, 512)).astype(np.float32) for _ in range(8 * 25)]
    want = [m.run({"x": f})["y"] for f in feeds]            # one thread: the bits each run must give again
    for f, w in zip(feeds[:4], want):
        np.testing.assert_allclose(w, ref.run({"x": f})["y"], rtol=1e-3, atol=1e-4)
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(t, len(feeds), 8):
            got = m.run({"x": feeds[i]})["y"]
            if not np.array_equal(got, want[i]):
                errors.append(f"thread {t} run {i}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads)
    assert errors == []


def test_modules_sharing_state_share_one_lock(tmp_path, monkeypatch):
    """share_state modules write one state: their runs are serialised together; the accumulated state is
    exactly the sum of every run's input, whichever thread ran it."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))

    def acc_graph():
        g = graphc.GraphBuilder("acc")
        s = g.set_state(g.new_tensor_1d("f32", 32, name="s"))
        x = g.set_input(g.new_tensor_1d("f32", 32, name="x"))
        return g.build(g.set_name(g.cpy(g.add(s, x), s), "total"))

    a = graphc.compile(acc_graph(), target="c", n_threads=1, extra_cflags=FAST)
    b = graphc.compile(acc_graph(), target="c", n_threads=1, extra_cflags=FAST, share_state=a)
    assert a._lock is b._lock
    ones = np.ones(32, np.float32)

    def worker(m) -> None:
        for _ in range(200):
            m.run({"x": ones})

    threads = [threading.Thread(target=worker, args=(m,)) for m in (a, b, a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    np.testing.assert_array_equal(a.read("s"), np.full(32, 800.0, np.float32))


# --- OpenCL program binaries ----------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "old format"])
def test_a_damaged_opencl_binary_is_rebuilt(tmp_path, monkeypatch, damage):
    pytest.importorskip("pyopencl")
    from graphc.targets.opencl import build, device
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    srcs = [f"__kernel void k(__global float *x) {{ x[get_global_id(0)] *= {f}.0f; }}\n" for f in (2, 3)]
    for s in srcs:
        build.build(device.DeviceContext(device.select(0)), s, "a test kernel")
    files = sorted((tmp_path / "opencl").glob("*.bin"))
    assert len(files) == 2 and all(build._read(p) is not None for p in files)
    target = next(p for p in files if p.stem == build._key(srcs[0], build.options(
        device.DeviceContext(device.select(0))), device.DeviceContext(device.select(0))))
    if damage == "flip":
        _flip(target)
    elif damage == "truncate":
        _replace(target, target.read_bytes()[:100])
    elif damage == "swap":
        _swap(files[0], files[1])
    else:                                          # a bare binary, as version 1 wrote them
        _replace(target, build._read(target))
    assert build._read(target) is None
    dc = device.DeviceContext(device.select(0))    # a new context: the program comes from the disk cache
    prog = build.build(dc, srcs[0], "a test kernel")
    x = np.arange(8, dtype=np.float32)
    buf = dc.buffer(x.nbytes, host=x)
    prog.k(dc.queue, (8,), None, buf)
    dc.cl.enqueue_copy(dc.queue, x, buf)
    assert x.tolist() == [2.0 * i for i in range(8)]
    assert build._read(target) is not None          # rewritten
    _no_partial_files(tmp_path)


# --- Triton's generated modules ---------------------------------------------------------------------------

def test_a_damaged_triton_module_is_rewritten(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    from graphc.targets.triton import loader
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    source = f"# {os.urandom(8).hex()}\nVALUE = 42\n"
    import hashlib
    path = tmp_path / "triton" / f"gen_{hashlib.sha256(source.encode()).hexdigest()[:32]}.py"
    path.parent.mkdir(parents=True)
    path.write_text(source.replace("42", "666"))   # damaged before this process first imports it
    mod = loader.generated("interpret", source)
    assert mod.VALUE == 42 and path.read_text() == source
    assert not (path.parent / "__pycache__").exists()            # compiled from the checked source
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# --- artifacts ---------------------------------------------------------------------------------------------

def _artifact(tmp_path: Path, name: str = "art", scale: float = 2.0, **opts) -> tuple[Path, np.ndarray]:
    g = graphc.GraphBuilder("art")
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    w = g.set_param(g.new_tensor_1d("f32", 8, name="w"))
    graph = g.build(g.set_name(g.scale(g.mul(x, w), scale), "y"))
    w_val = np.arange(8, dtype=np.float32)
    m = graphc.compile(graph, target="c", weights={"w": w_val}, n_threads=1, extra_cflags=FAST, **opts)
    m.save(tmp_path / name)
    return tmp_path / name, w_val * scale


@pytest.mark.parametrize("damage", ["truncate graph", "truncate weights", "swap graphs", "flip weights"])
def test_damaged_artifacts(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    art, want = _artifact(tmp_path)
    other, _ = _artifact(tmp_path, "other", scale=3.0)
    if damage == "truncate graph":
        _replace(art / "graph.graph", (art / "graph.graph").read_bytes()[:-10])
    elif damage == "truncate weights":
        _replace(art / "weights.npz", (art / "weights.npz").read_bytes()[:-1])
    elif damage == "swap graphs":
        _swap(art / "graph.graph", other / "graph.graph")
    else:
        _flip(art / "weights.npz", at=-20)
    with pytest.raises(ParseError, match="content hash does not match"):
        graphc.load(art)


def test_an_artifact_records_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    art, want = _artifact(tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    req = manifest["requires"]
    assert req["graphc"] == graphc.__version__ and req["target"] == "c" and req["march"] == "native"
    assert isinstance(req["cpu_features"], list)
    x = np.ones(8, np.float32)
    np.testing.assert_allclose(graphc.load(art).run({"x": x})["y"], want)
    # an artifact built for a CPU with features this one lacks: refused, unless rebuilt for this CPU
    manifest["requires"] = {**req, "march": "future-cpu", "cpu_features": ["avx2", "no_such_feature_graphc"]}
    manifest["target_options"] = {**manifest["target_options"], "march": "future-cpu"}
    (art / "manifest.json").write_text(json.dumps(manifest))
    if cbuild.host_features() is not None:
        with pytest.raises(CompileError, match=r"compiled for -march=future-cpu.*lacks: .*no_such_feature_graphc"):
            graphc.load(art)
    np.testing.assert_allclose(graphc.load(art, march="native").run({"x": x})["y"], want)
    manifest["requires"] = "nonsense"
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ParseError, match="'requires' is not an object"):
        graphc.load(art)


def test_an_artifact_whose_external_weight_file_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    g = graphc.GraphBuilder("ext")
    x = g.set_input(g.new_tensor_1d("f32", 8, name="x"))
    w = g.set_param(g.new_tensor_1d("f32", 8, name="w"))
    graph = g.build(g.set_name(g.mul(x, w), "y"))
    np.save(tmp_path / "w.npy", np.arange(8, dtype=np.float32))
    graph.get("w").weight = graphc.ir.WeightRef(str(tmp_path / "w.npy"), "w")
    m = graphc.compile(graph, target="ref")
    m.save(tmp_path / "art")
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["external_weights"][0]["bytes"] == \
        (tmp_path / "w.npy").stat().st_size
    np.save(tmp_path / "w.npy", np.arange(16, dtype=np.float32))
    with pytest.raises(ParseError, match=r"w.npy is \d+ bytes, it was \d+ when the artifact was saved"):
        graphc.load(tmp_path / "art")
    (tmp_path / "w.npy").unlink()
    with pytest.raises(ParseError, match="w.npy .*is missing"):
        graphc.load(tmp_path / "art")
