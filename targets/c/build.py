"""Compile a generated translation unit into a shared library, cached, and load it with cffi.

Compiler: $CC, else the first of cc / gcc / clang on PATH (CompileError when there is none).
Flags: -O3 (-O1 when sanitized) -march=<march> (native by default) -ffp-contract=off (elementwise results match the
reference's f32 operation order; SIMD intrinsics are not affected) -fPIC -shared, -fopenmp when the
compiler has it (else single-threaded), extra_cflags, and -fsanitize=address,undefined with sanitize.
Cache: GRAPHC_CACHE_DIR (default ~/.cache/graphc), one <sha256>.so per key = sha256(source, every
kernels/c header, graphc_params.h, compiler path + `--version`, flags, graphc version); written to a
temporary file and renamed, so a reader never sees half a library. GRAPHC_NO_CACHE=1 disables it.
Split build (the default): the op headers are compiled once per compiler + flags + headers into a kernel
library (libgck-<key>.so beside the programs, kernels/c/kernels.c.j2) that each program links to through
its rpath ($ORIGIN); a program then compiles its tables and schedule alone. emit_lib builds the same source
whole (no GC_SPLIT_KERNELS): the headers inline into one library that needs nothing else.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from graphc.errors import CompileError
from graphc.util import cache_dir

from .codegen import KERNELS
from .params import header as params_header

CDEF = """
void *gc_create(char **bufs, int n_threads);
int gc_check(void *p);
void gc_run(void *p);
void gc_destroy(void *p);
"""


@dataclass(frozen=True)
class Compiler:
    path: str
    version: str


def find_compiler() -> Compiler:
    cc = os.environ.get("CC")
    names = [cc] if cc else ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name)
        if path:
            return _compiler(path)
    tried = '$CC=' + repr(cc) if cc else 'tried cc, gcc, clang'
    raise CompileError(f"target c needs a C compiler and found none ({tried} on PATH); install gcc or clang, or set CC")


@functools.lru_cache(maxsize=None)
def _compiler(path: str) -> Compiler:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"C compiler {path} does not run: {e}") from None
    return Compiler(path, out.stdout.strip() or out.stderr.strip())


@functools.lru_cache(maxsize=None)
def has_openmp(cc: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="graphc-omp-") as d:
        src = Path(d) / "t.c"
        src.write_text("#include <omp.h>\nint f(void) { return omp_get_max_threads(); }\n")
        r = subprocess.run([cc, "-fopenmp", "-fPIC", "-shared", str(src), "-o", str(Path(d) / "t.so")],
                           capture_output=True, timeout=120)
        return r.returncode == 0


def flags(cc: str, march: str = "native", openmp: bool = True, sanitize: bool = False,
          extra_cflags: tuple[str, ...] = ()) -> list[str]:
    # sanitized builds check memory and UB, not speed: -O1 (ASan's advice) compiles several times faster
    f = ["-O1" if sanitize else "-O3", "-std=gnu11", "-ffp-contract=off", "-fPIC", "-shared",
         "-Wall", "-Wextra"]
    if march:
        f.append(f"-march={march}")
    if openmp and has_openmp(cc):
        f.append("-fopenmp")
    if sanitize:
        f += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    return f + list(extra_cflags)


def cache_key(source: str, cc: Compiler, fl: list[str]) -> str:
    from graphc.version import __version__
    h = hashlib.sha256()
    for part in [source, params_header(), cc.path, cc.version, "\0".join(fl), __version__]:
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\0\1")
    for p in sorted(KERNELS.glob("*.h")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass
class Built:
    path: str
    cached: bool        # True when the library came from the cache
    key: str
    flags: list[str]


def run_compiler(cmd: list[str], what: str, flags: list[str]) -> str:
    """Run one compiler command; its warnings (stderr) back, or CompileError naming what failed and why."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"C compiler {cmd[0]} failed to run: {e}") from None
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip()
        raise CompileError(f"{what} failed ({' '.join(cmd[:1] + flags)}):\n{msg[-4000:]}")
    return (r.stderr or "").strip()


@functools.lru_cache(maxsize=None)
def _process_dir() -> Path:
    """Where libraries go without a cache (GRAPHC_NO_CACHE=1): one directory for this process."""
    return Path(tempfile.mkdtemp(prefix="graphc-c-"))


# The kernel library compiles as units of these headers in parallel (then links as one): the matmul kernels
# take about half of gcc's time (5.5 of 12 s at -O3 on the developer's machine), every other op the rest.
UNITS = (("matmul.h",), None)           # None: the headers no earlier unit names


@functools.lru_cache(maxsize=None)
def kernel_sources() -> tuple[tuple[str, ...], str]:
    """(the kernel library's translation units, graphc_ops.h declaring their entry points), from C_LIBRARY."""
    from .codegen import template
    from .library import C_LIBRARY
    ops = sorted(C_LIBRARY.ops.values(), key=lambda o: o.op)
    units, named = [], set()
    for unit in UNITS:
        mine = [o for o in ops if (o.source in unit if unit is not None else o.source not in named)]
        named.update(unit or ())
        units.append(template("kernels.c.j2").render(ops=mine, headers=sorted({o.source for o in mine})))
    return tuple(units), template("graphc_ops.h.j2").render(ops=ops)


def _install(tmp: Path, out_dir: Path, name: str) -> Path:
    """Copy a built file into out_dir under `name` atomically (concurrent builders of one key write the same
    bytes; a reader never sees half a library)."""
    fd, part = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=out_dir)
    os.close(fd)
    shutil.copyfile(tmp, part)
    final = out_dir / name
    os.replace(part, final)
    return final


def kernel_library(cc: Compiler, fl: list[str], out_dir: Path) -> str:
    """The file name, in out_dir, of the kernel library for this compiler and flags, built there if absent.
    Programs link to it (so each program compiles only its own tables and schedule: well under a second,
    where the kernels take gcc tens of seconds at -O3)."""
    units, ops_h = kernel_sources()
    name = f"libgck-{cache_key(''.join(units) + ops_h, cc, fl)[:40]}.so"
    if (out_dir / name).is_file():
        return name
    from concurrent.futures import ThreadPoolExecutor
    with tempfile.TemporaryDirectory(prefix="graphc-build-") as d:
        (Path(d) / "graphc_params.h").write_text(params_header(), encoding="utf-8")
        cmds, objs = [], []
        for i, unit in enumerate(units):
            src, obj = Path(d) / f"kernels{i}.c", Path(d) / f"kernels{i}.o"
            src.write_text(unit, encoding="utf-8")
            cmds.append([cc.path, *fl, "-c", "-I", d, "-I", str(KERNELS), str(src), "-o", str(obj)])
            objs.append(str(obj))
        with ThreadPoolExecutor(max_workers=max(1, min(len(cmds), os.cpu_count() or 1))) as pool:
            for _ in pool.map(lambda cmd: run_compiler(cmd, "C compilation of the kernel library", fl), cmds):
                pass
        tmp = Path(d) / name
        run_compiler([cc.path, *fl, f"-Wl,-soname,{name}", *objs, "-o", str(tmp), "-lm"],
                     "linking the kernel library", fl)
        _install(tmp, out_dir, name)
    return name


def build(source: str, *, march: str = "native", openmp: bool = True, sanitize: bool = False,
          extra_cflags: tuple[str, ...] = (), split: bool = True) -> Built:
    """Compile a generated program. split: link it to the shared kernel library (kernel_library) instead of
    compiling the op headers into it; the same source either way (program.c.j2's GC_SPLIT_KERNELS)."""
    cc = find_compiler()
    fl = flags(cc.path, march, openmp, sanitize, tuple(extra_cflags))
    cdir = cache_dir()
    out_dir = cdir if cdir is not None else _process_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    if split:
        extra = ["-DGC_SPLIT_KERNELS", str(out_dir / kernel_library(cc, fl, out_dir)), "-Wl,-rpath,$ORIGIN"]
    key = cache_key(source, cc, fl + extra[:2])
    if cdir is not None:
        lib = cdir / f"{key}.so"
        if lib.is_file():
            return Built(str(lib), True, key, fl)
    with tempfile.TemporaryDirectory(prefix="graphc-build-") as d:
        (Path(d) / "program.c").write_text(source, encoding="utf-8")
        (Path(d) / "graphc_params.h").write_text(params_header(), encoding="utf-8")
        if split:
            (Path(d) / "graphc_ops.h").write_text(kernel_sources()[1], encoding="utf-8")
        tmp = Path(d) / "lib.so"
        cmd = [cc.path, *fl, "-I", d, "-I", str(KERNELS), str(Path(d) / "program.c"), "-o", str(tmp), *extra, "-lm"]
        run_compiler(cmd, "C compilation", fl)
        final = _install(tmp, out_dir, f"{key}.so")
    return Built(str(final), False, key, fl)


@functools.lru_cache(maxsize=None)
def ffi():
    import cffi
    f = cffi.FFI()
    f.cdef(CDEF)
    return f


def load(path: str):
    """dlopen the library (one handle per path; the library has no mutable globals, instances hold state)."""
    return ffi().dlopen(path)
