"""Ahead-of-time builds of a Triton module's kernels for CUDA GPUs, with no GPU present, and loading them back.

build(gen, archs, directory) compiles every distinct kernel a module launches (the @triton.jit function
with its argument types and constexpr values, as the launch passes them) with triton.compile for each
arch (GPUTarget("cuda", 90, 32) for sm_90) and writes, per kernel and arch,

    kernels/<kernel>.<arch>.ptx     the PTX Triton generated
    kernels/<kernel>.<arch>.cubin   ptxas's binary for that arch
    kernels/<kernel>.<arch>.json    Triton's metadata (function name, warps, shared memory, ...)

and kernels/aot.json: the archs, triton's version, each kernel's source (library file or the module's
generated source, by hash), signature and constexprs, and which kernel each launch uses. <kernel> is a
synthesised name (the function's name plus a hash of its specialisation), never text from the graph.

load(directory, gen, device, modules) gives one compiled kernel per launch when the artifact holds this
GPU's arch, this triton version and the same launches (the graph and passes decide those); None otherwise
(the module then compiles through Triton's JIT as usual). The kernels are then loaded from the cubins
(triton's CompiledKernel), not compiled again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from graphc.errors import CompileError

from . import loader
from .codegen import HOST
from .library import Buf, Launch

AOT_FILE = "kernels/aot.json"
OPTION_KEYS = ("num_warps", "num_stages", "num_ctas")      # triton.compile options, not constexprs
_ARCH = re.compile(r"^sm_(\d{2,3})$")


def parse_archs(spec: "str | list | tuple") -> list[int]:
    """'sm_80,sm_90' (or a list of such names) -> [80, 90]; CompileError for anything else."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for it in items:
        m = _ARCH.match(str(it).strip().lower())
        if not m or int(m.group(1)) < 70:
            raise CompileError(f"cuda arch {it!r}: expected names like sm_80 or sm_90 (Triton needs sm_70 or "
                               "newer), comma-separated")
        out.append(int(m.group(1)))
    if not out:
        raise CompileError("cuda arch: no arch given (expected e.g. sm_80,sm_90)")
    return sorted(set(out))


def _arg_type(v: Any) -> Any:
    """Triton's signature type of one runtime argument, as the launch passes it."""
    if isinstance(v, Buf):
        return "*u8"
    if isinstance(v, bool):
        return "i1"
    if isinstance(v, int):
        return "i32" if -2 ** 31 <= v < 2 ** 31 else "i64"
    if isinstance(v, float):
        return "fp32"
    if isinstance(v, tuple):
        return tuple(_arg_type(x) for x in v)
    raise CompileError(f"target triton: no signature type for a kernel argument of type {type(v).__name__}")


@dataclass
class Spec:
    """One distinct kernel: where its function lives, its signature and constexprs, its options."""
    module: str                            # "lib:<file>" or "gen"
    kernel: str                            # the function's name there
    signature: dict[str, Any]              # parameter name -> type ("*u8", "i32", "fp32", tuples, "constexpr")
    constexprs: dict[str, Any]             # parameter name -> value
    options: dict[str, int]

    @property
    def key(self) -> str:
        return json.dumps([self.module, self.kernel, self.signature, self.constexprs, self.options],
                          sort_keys=True)

    def file_stem(self, source_hash: str) -> str:
        h = hashlib.sha256((self.key + source_hash).encode()).hexdigest()[:12]
        return f"{self.kernel}_{h}"


def spec_of(la: Launch, fn: Any) -> Spec:
    """The kernel specialisation a launch needs (fn: the @triton.jit function, any mode)."""
    names = list(fn.arg_names)
    if len(la.args) > len(names):
        raise CompileError(f"target triton: launch of {la.kernel} passes {len(la.args)} arguments, it takes "
                           f"{len(names)}")
    consts = {k: v for k, v in la.consts.items() if k not in OPTION_KEYS}
    sig: dict[str, Any] = {}
    for i, name in enumerate(names):
        if i < len(la.args):
            sig[name] = _arg_type(la.args[i])
        elif name in consts:
            sig[name] = "constexpr"
        else:
            raise CompileError(f"target triton: launch of {la.kernel} gives no value for {name}")
    return Spec(la.module, la.kernel, sig, consts, {k: int(v) for k, v in la.consts.items() if k in OPTION_KEYS})


def _source_hash(module: str, gen_source: str) -> str:
    """The SHA-256 of a kernel module's source."""
    if module == "gen":
        return hashlib.sha256(gen_source.encode()).hexdigest()
    return _library_hash(module.split(":", 1)[1])


@functools.lru_cache(maxsize=None)
def _library_hash(file: str) -> str:
    """kernels/triton/<file>.py's SHA-256, read once per process (a launch list names each file many times)."""
    return hashlib.sha256((loader.KERNELS / f"{file}.py").read_bytes()).hexdigest()


def _ast_source(spec: Spec, fn: Any) -> Any:
    from triton.compiler import ASTSource
    return ASTSource(fn, dict(spec.signature), constexprs={(fn.arg_names.index(k),): v
                                                           for k, v in spec.constexprs.items()})


def _cuda_fn(module: str, kernel: str, gen_source: str) -> Any:
    mod = loader.generated("cuda", gen_source) if module == "gen" else loader.library("cuda", module.split(":", 1)[1])
    return getattr(mod, kernel)


def _triton_version() -> str:
    import triton
    return triton.__version__


def build(gen: Any, archs: list[int], directory: str) -> list[str]:
    """Compile every kernel of `gen` (targets.triton.codegen.Generated) for each arch into directory/kernels;
    returns the files written, relative to directory (aot.json last)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import compile as triton_compile
    os.makedirs(os.path.join(directory, "kernels"), exist_ok=True)
    specs: dict[str, tuple[Spec, str]] = {}
    per_launch: list[str] = []
    for la in gen.launches:
        if la.module == HOST:                 # a collective the host runs: nothing to build
            per_launch.append("")
            continue
        fn = _cuda_fn(la.module, la.kernel, gen.source)
        spec = spec_of(la, fn)
        if spec.key not in specs:
            specs[spec.key] = (spec, spec.file_stem(_source_hash(la.module, gen.source)))
        per_launch.append(specs[spec.key][1])
    written: list[str] = []
    kernels = []
    for spec, stem in specs.values():
        fn = _cuda_fn(spec.module, spec.kernel, gen.source)
        for arch in archs:
            try:
                ck = triton_compile(_ast_source(spec, fn), target=GPUTarget("cuda", arch, 32),
                                    options=dict(spec.options))
            except Exception as e:                       # triton's compile errors are of many kinds
                raise CompileError(f"target triton: compiling kernel {spec.kernel} for sm_{arch} failed: "
                                   f"{type(e).__name__}: {str(e)[:2000]}") from None
            meta = next(p for name, p in ck.metadata_group.items() if name.endswith(".json"))
            with open(meta) as f:
                meta_text = f.read()                     # Triton's own metadata file, as CompiledKernel reads it
            for ext, data in (("ptx", ck.asm["ptx"]), ("cubin", ck.asm["cubin"]), ("json", meta_text)):
                rel = f"kernels/{stem}.sm_{arch}.{ext}"
                with open(os.path.join(directory, rel), "wb" if ext == "cubin" else "w") as f:
                    f.write(data)
                written.append(rel)
        kernels.append({"name": stem, "module": spec.module, "kernel": spec.kernel, "signature": spec.signature,
                        "constexprs": spec.constexprs, "options": spec.options,
                        "source_sha256": _source_hash(spec.module, gen.source)})
    table = {"archs": [f"sm_{a}" for a in archs], "triton": _triton_version(), "kernels": kernels,
             "launches": per_launch, "generated_sha256": hashlib.sha256(gen.source.encode()).hexdigest()}
    with open(os.path.join(directory, AOT_FILE), "w") as f:
        json.dump(table, f, indent=1)
    return written + [AOT_FILE]


def _tuples(v: Any) -> Any:
    """JSON lists back to the tuples Triton's signatures use."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def load(directory: str, gen: Any, arch: int) -> "list[Any] | None":
    """One triton CompiledKernel per launch of gen from the artifact's cubins for this arch, or None where
    the artifact has none that fit (another arch or triton version, or different launches)."""
    path = os.path.join(directory, AOT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        table = json.load(f)
    if f"sm_{arch}" not in table.get("archs", []) or table.get("triton") != _triton_version() or \
            table.get("generated_sha256") != hashlib.sha256(gen.source.encode()).hexdigest() or \
            len(table.get("launches", [])) != len(gen.launches):
        return None
    from triton.compiler.compiler import CompiledKernel
    by_name = {k["name"]: k for k in table["kernels"]}
    compiled: dict[str, Any] = {}
    out = []
    for la, stem in zip(gen.launches, table["launches"]):
        if la.module == HOST:
            out.append(None)
            continue
        k = by_name.get(stem)
        fn = _cuda_fn(la.module, la.kernel, gen.source)
        spec = spec_of(la, fn)
        if k is None or k["module"] != la.module or k["kernel"] != la.kernel or \
                k["source_sha256"] != _source_hash(la.module, gen.source) or \
                _tuples(k["signature"]) != _tuples(json.loads(json.dumps(spec.signature))) or \
                k["constexprs"] != json.loads(json.dumps(spec.constexprs)):
            return None
        if stem not in compiled:
            base = os.path.join(directory, "kernels", f"{stem}.sm_{arch}")
            group = {f"{stem}.json": base + ".json", f"{stem}.cubin": base + ".cubin"}
            spec.signature = {n: _tuples(t) for n, t in spec.signature.items()}
            compiled[stem] = CompiledKernel(_ast_source(spec, fn), group, stem)
        out.append(compiled[stem])
    return out


def call_args(la: Launch, fn: Any, resolved: list[Any]) -> list[Any]:
    """Every parameter's value in order (constexprs too: Triton's launcher skips them), for a CompiledKernel."""
    names = list(fn.arg_names)
    return list(resolved) + [la.consts[n] for n in names[len(resolved):]]
