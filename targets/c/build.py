"""Compile a generated translation unit into a shared library, cached, and load it with cffi.

Compiler: $CC, else the first of cc / gcc / clang on PATH (CompileError when there is none).
Flags: -O3 (-O1 when sanitized) -march=<march> (native by default) -ffp-contract=off (elementwise results match the
reference's f32 operation order; SIMD intrinsics are not affected) -fPIC -shared, -fopenmp when the
compiler has it (else single-threaded), extra_cflags, and -fsanitize=address,undefined with sanitize.
Cache: GRAPHC_CACHE_DIR (default ~/.cache/graphc), one <sha256>.so per key = sha256(source, every
kernels/c header, graphc_params.h, compiler path + `--version`, flags, the macros the compiler predefines
for those flags (so -march=native names this CPU's ISA: a cache shared by different machines never hands
one another's code), graphc version); written to a temporary file and renamed, so a reader never sees
half a library. Each library has a sidecar <name>.sha256 (sha256sum's format: digest and file name) and
is used only when its bytes match it, checked before every dlopen; anything else (a flipped byte, a
truncated or swapped file, no sidecar) is a cache miss: the library is built again and replaced.
Builders of one library take a lock (graphc.util.cache_lock), so processes that compile the same graph
into an empty cache at once build it once and the others wait for it. GRAPHC_NO_CACHE=1 disables the cache.
A -march other than native is checked against this CPU's features first (required_features): a library
that would die of an illegal instruction is a CompileError instead.
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
from dataclasses import dataclass, field
from pathlib import Path

from graphc.errors import CompileError
from graphc.util import cache_dir, cache_lock, install_checked, verified_file

from .codegen import KERNELS
from .params import header as params_header

CDEF = """
void *gc_create(char **bufs, int n_threads);
int gc_check(void *p);
void gc_run(void *p);
void gc_destroy(void *p);
void gc_set_host(void *p, int (*host)(int index));
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


@functools.lru_cache(maxsize=None)
def predefined_macros(cc: str, fl: tuple[str, ...]) -> str:
    """The macros the compiler predefines under these flags (`cc FLAGS -dM -E`), sorted: with
    -march=native they spell out this CPU's instruction sets. "" when the compiler cannot say."""
    opts = [f for f in fl if f.startswith("-") and not f.startswith(("-Wl,", "-l", "-L")) and f != "-shared"]
    try:
        r = subprocess.run([cc, *opts, "-dM", "-E", "-x", "c", os.devnull], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.SubprocessError):
        return ""
    return "\n".join(sorted(r.stdout.splitlines())) if r.returncode == 0 else ""


# the instruction sets compiled code may use, by the macro the compiler predefines for each and the name
# Linux's /proc/cpuinfo gives it (x86 "flags", arm64 "Features")
ISA_MACROS = {
    "__SSE3__": "pni", "__SSSE3__": "ssse3", "__SSE4_1__": "sse4_1", "__SSE4_2__": "sse4_2", "__POPCNT__": "popcnt",
    "__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__F16C__": "f16c", "__BMI__": "bmi1",
    "__BMI2__": "bmi2", "__LZCNT__": "abm", "__MOVBE__": "movbe", "__AVX512F__": "avx512f",
    "__AVX512BW__": "avx512bw", "__AVX512CD__": "avx512cd", "__AVX512DQ__": "avx512dq", "__AVX512VL__": "avx512vl",
    "__AVX512VNNI__": "avx512_vnni", "__AVX512BF16__": "avx512_bf16", "__AVX512FP16__": "avx512_fp16",
    "__AVX512VBMI__": "avx512vbmi", "__AVX512VBMI2__": "avx512_vbmi2", "__AVX512IFMA__": "avx512ifma",
    "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq", "__AVX512BITALG__": "avx512_bitalg", "__AVXVNNI__": "avx_vnni",
    "__GFNI__": "gfni", "__VAES__": "vaes", "__VPCLMULQDQ__": "vpclmulqdq", "__AMX_TILE__": "amx_tile",
    "__AMX_INT8__": "amx_int8", "__AMX_BF16__": "amx_bf16",
    "__ARM_FEATURE_SVE": "sve", "__ARM_FEATURE_SVE2": "sve2", "__ARM_FEATURE_DOTPROD": "asimddp",
    "__ARM_FEATURE_MATMUL_INT8": "i8mm", "__ARM_FEATURE_FP16_VECTOR_ARITHMETIC": "asimdhp",
    "__ARM_FEATURE_BF16_VECTOR_ARITHMETIC": "bf16",
}


def required_features(cc: str, fl: "list[str] | tuple[str, ...]") -> list[str]:
    """The CPU features (cpuinfo names) that code compiled with these flags may use."""
    defined = {ln.split()[1] for ln in predefined_macros(cc, tuple(fl)).splitlines() if ln.startswith("#define ")}
    return sorted({feat for macro, feat in ISA_MACROS.items() if macro in defined})


@functools.lru_cache(maxsize=None)
def host_features() -> "frozenset[str] | None":
    """This CPU's features as Linux lists them in /proc/cpuinfo; None where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def check_cpu(cc: str, fl: "list[str] | tuple[str, ...]", what: str = "target c") -> None:
    """CompileError when code built with these flags needs CPU features this CPU lacks (-march=native, or a
    CPU whose features cannot be read, passes)."""
    if any(f in ("-march=native", "-mcpu=native") for f in fl):
        return
    have = host_features()
    if have is None:
        return
    missing = [f for f in required_features(cc, fl) if f not in have]
    if missing:
        march = next((f for f in fl if f.startswith(("-march=", "-mcpu="))), "these flags")
        raise CompileError(f"{what}: code built with {march} needs CPU features this CPU lacks: "
                           f"{', '.join(missing)} (it would stop with an illegal instruction); use march='native' "
                           "or a -march this CPU supports")


def cache_key(source: str, cc: Compiler, fl: list[str]) -> str:
    from graphc.version import __version__
    h = hashlib.sha256()
    for part in [source, params_header(), cc.path, cc.version, "\0".join(fl), __version__,
                 predefined_macros(cc.path, tuple(fl))]:
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
    needs: list[str] = field(default_factory=list)     # the kernel library it links to (split builds)


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
    """Copy a built file into out_dir under `name` with its digest sidecar, atomically (a reader never sees
    half a library; graphc.util.install_checked)."""
    return install_checked(tmp, out_dir / name)


def kernel_library(cc: Compiler, fl: list[str], out_dir: Path) -> str:
    """The file name, in out_dir, of the kernel library for this compiler and flags, built there if absent.
    Programs link to it (so each program compiles only its own tables and schedule: well under a second,
    where the kernels take gcc tens of seconds at -O3)."""
    units, ops_h = kernel_sources()
    name = f"libgck-{cache_key(''.join(units) + ops_h, cc, fl)[:40]}.so"
    if verified_file(out_dir / name):
        return name
    with cache_lock(out_dir, name):
        if not verified_file(out_dir / name):          # another process may have built it while we waited
            _build_kernel_library(cc, fl, out_dir, name, units)
    return name


def _build_kernel_library(cc: Compiler, fl: list[str], out_dir: Path, name: str, units: tuple[str, ...]) -> None:
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


def build(source: str, *, march: str = "native", openmp: bool = True, sanitize: bool = False,
          extra_cflags: tuple[str, ...] = (), split: bool = True) -> Built:
    """Compile a generated program. split: link it to the shared kernel library (kernel_library) instead of
    compiling the op headers into it; the same source either way (program.c.j2's GC_SPLIT_KERNELS)."""
    cc = find_compiler()
    fl = flags(cc.path, march, openmp, sanitize, tuple(extra_cflags))
    check_cpu(cc.path, fl)
    cdir = cache_dir()
    out_dir = cdir if cdir is not None else _process_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    needs: list[str] = []
    if split:
        needs = [str(out_dir / kernel_library(cc, fl, out_dir))]
        extra = ["-DGC_SPLIT_KERNELS", needs[0], "-Wl,-rpath,$ORIGIN"]
    key = cache_key(source, cc, fl + extra[:2])
    if cdir is not None and verified_file(cdir / f"{key}.so"):
        return Built(str(cdir / f"{key}.so"), True, key, fl, needs)
    with cache_lock(out_dir, f"programs-{key[:2]}"):          # 256 lock files at most, not one per program
        if cdir is not None and verified_file(cdir / f"{key}.so"):      # built by another process meanwhile
            return Built(str(cdir / f"{key}.so"), True, key, fl, needs)
        final = _build_program(source, cc, fl, extra, out_dir, key, split)
    return Built(str(final), False, key, fl, needs)


def _build_program(source: str, cc: Compiler, fl: list[str], extra: list[str], out_dir: Path, key: str,
                   split: bool) -> Path:
    with tempfile.TemporaryDirectory(prefix="graphc-build-") as d:
        (Path(d) / "program.c").write_text(source, encoding="utf-8")
        (Path(d) / "graphc_params.h").write_text(params_header(), encoding="utf-8")
        if split:
            (Path(d) / "graphc_ops.h").write_text(kernel_sources()[1], encoding="utf-8")
        tmp = Path(d) / "lib.so"
        cmd = [cc.path, *fl, "-I", d, "-I", str(KERNELS), str(Path(d) / "program.c"), "-o", str(tmp), *extra, "-lm"]
        run_compiler(cmd, "C compilation", fl)
        return _install(tmp, out_dir, f"{key}.so")


@functools.lru_cache(maxsize=None)
def ffi():
    import cffi
    f = cffi.FFI()
    f.cdef(CDEF)
    return f


def load(built: "Built | str"):
    """dlopen a built library (one handle per path; the library has no mutable globals, instances hold
    state) after checking its bytes, and its kernel library's, against their sidecars once more (the cache
    may have changed since build() looked): a mismatch is a CompileError, never a load."""
    path, needs = (built.path, built.needs) if isinstance(built, Built) else (built, [])
    for p in [Path(path), *map(Path, needs)]:
        if not verified_file(p):
            raise CompileError(f"target c: {p} does not match its content hash ({p.name}.sha256): the compile "
                               "cache changed under this process; compile again (it will be rebuilt)")
    return ffi().dlopen(path)
