"""Loading Triton kernel modules in one of two modes: "cuda" (compiled by Triton for the GPU) or
"interpret" (Triton's interpreter on the CPU, TRITON_INTERPRET's mode, for machines without a GPU).

@triton.jit decides at decoration time which of the two a function becomes, so every kernel file is
imported once per mode into a package of its own (_graphc_triton_<mode>): kernels/triton/<file>.py as
_graphc_triton_<mode>.<file>, and a module's generated kernels, written to the compile cache (or a
temporary directory) as gen_<sha256>.py, as _graphc_triton_<mode>.gen_<sha256>. Triton reads a kernel's
source from its file, so generated kernels are real files; the file is compared with the source before
each import (rewritten when it differs) and the module is compiled from that source, never from a
__pycache__ file.

Two shims let both modes live in one process (tests run kernels interpreted and compile them for sm_90):
triton.language's own @jit helpers, called from an interpreted kernel, are interpreted, and the
interpreter cannot run libdevice calls (tanh, erf, expm1, pow, rint, ...): triton.language.extra's
libdevice is a stub there. An interpreted module's `libdevice` is replaced by CUDA's libdevice functions
bound to the interpreter, whose extern calls numpy answers (`_libdevice_on_numpy`), so one kernel text
serves both modes.
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile
import threading
import types
from pathlib import Path

import numpy as np

from graphc.util import cache_dir

KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "triton"
MODES = ("cuda", "interpret")
_lock = threading.Lock()


def _package(mode: str) -> str:
    name = f"_graphc_triton_{mode}"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(KERNELS)]
        pkg.__package__ = name
        sys.modules[name] = pkg
    return name


def _import(mode: str, modname: str, path: "Path | None" = None, source: str = "") -> types.ModuleType:
    import triton
    full = f"{_package(mode)}.{modname}"
    with _lock:
        if full in sys.modules:
            return sys.modules[full]
        if mode == "interpret":
            _libdevice_on_numpy()
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = mode == "interpret"
            if path is None:
                mod = importlib.import_module(full)
                if mode == "interpret":
                    _use_numpy_libdevice(mod)
                return mod
            spec = importlib.util.spec_from_file_location(full, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[full] = mod
            try:
                # the source generated() checked, compiled here: never a __pycache__ file, which Python
                # would trust by the source's mtime and size alone
                exec(builtins.compile(source, str(path), "exec"), mod.__dict__)
            except BaseException:
                del sys.modules[full]
                raise
            if mode == "interpret":
                _use_numpy_libdevice(mod)
            return mod


def library(mode: str, file: str) -> types.ModuleType:
    """kernels/triton/<file>.py, its @triton.jit functions built for mode."""
    return _import(mode, file)


@functools.lru_cache(maxsize=None)
def _process_dir() -> Path:
    """Where generated modules go without a cache (GRAPHC_NO_CACHE=1): a directory of this process's own
    (Triton reads kernel source from the file: never a shared, guessable /tmp path another user could own)."""
    return Path(tempfile.mkdtemp(prefix="graphc-triton-"))


def generated(mode: str, source: str) -> types.ModuleType:
    """A module of generated kernels: written once under its content hash, then imported for mode."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:32]
    root = cache_dir()
    folder = (root / "triton") if root is not None else _process_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"gen_{digest}.py"
    try:
        same = path.read_text(encoding="utf-8") == source     # a damaged or swapped file is written again
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        fd, tmp = tempfile.mkstemp(prefix=f".gen_{digest}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)                      # atomic: another process never sees half a file
    return _import(mode, f"gen_{digest}", path, source)


# --- the interpreter's libdevice -------------------------------------------------------------------------

def _roundf(x):
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


_NUMPY = {"tanh": np.tanh, "expm1": np.expm1, "pow": np.power, "rint": np.rint, "round": _roundf,
          "trunc": np.trunc, "exp": np.exp, "log": np.log, "log1p": np.log1p, "sin": np.sin, "cos": np.cos,
          "floor": np.floor, "ceil": np.ceil, "fabs": np.abs}
_installed = False


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


def _use_numpy_libdevice(mod: types.ModuleType) -> None:
    if "libdevice" not in vars(mod):
        return
    from triton.language.extra.cuda import libdevice as cuda_libdevice
    from triton.language.semantic import TritonSemantic
    from triton.runtime.interpreter import interpreter_builder
    semantic = TritonSemantic(interpreter_builder)
    shim = types.ModuleType("graphc_interpreter_libdevice")
    for name in dir(cuda_libdevice):
        fn = getattr(cuda_libdevice, name)
        if callable(fn) and not name.startswith("_"):
            setattr(shim, name, lambda *a, _fn=fn, **k: _fn(*a, **{**k, "_semantic": semantic}))
    mod.libdevice = shim


def _libdevice_on_numpy() -> None:
    """Teach the interpreter the libdevice calls the kernels make (by their __nv_* symbol)."""
    global _installed
    if _installed:
        return
    from triton.runtime import interpreter as it

    def create_extern_elementwise(self, libName, libPath, symbol, argList, retType, isPure):
        base = symbol[len("__nv_"):] if symbol.startswith("__nv_") else symbol
        single = base.endswith("f") and base[:-1] in _NUMPY | {"erf": None}
        name = base[:-1] if single else base
        if name == "erf":
            fn = _erf
        elif name in _NUMPY:
            fn = _NUMPY[name]
        else:
            raise NotImplementedError(f"libdevice {symbol} has no numpy version in graphc's interpreter shim")
        dtype = np.float32 if single else np.float64
        with np.errstate(all="ignore"):
            out = fn(*[a.data.astype(dtype) for a in argList]).astype(dtype)
        return it.TensorHandle(out, retType.scalar)

    it.InterpreterBuilder.create_extern_elementwise = create_extern_elementwise

    # triton.language's own helpers (tl.zeros, tl.sum, tl.max, ...) are @jit functions made when triton
    # was imported, in the compiled mode; called from an interpreted kernel, they run interpreted too
    # (a JITFunction called from Python is otherwise only an error).
    from triton.runtime.jit import JITFunction
    interpreted: dict = {}

    def call_interpreted(self, *args, **kwargs):
        fn = interpreted.get(self.fn)
        if fn is None:
            fn = interpreted[self.fn] = it.InterpretedFunction(self.fn)
        return fn(*args, **kwargs)

    JITFunction.__call__ = call_interpreted

    # An interpreted device-function call patches triton.language for the interpreter and never undoes it
    # (triton 3.6); in a process that also compiles kernels, the compiler then meets interpreter objects.
    # Undo each call's patches when it returns (nested calls restore the caller's patches).
    def device_call(self, *args, **kwargs):
        scope = it._patch_lang(self.fn)
        try:
            fn = self.rewrite()
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                raise it.InterpreterError(repr(e)) from e
        finally:
            scope.restore()

    it.InterpretedFunction.__call__ = device_call

    # A scalar is a 1-element array in the interpreter; numpy >= 2.4 refuses int() of those, which
    # breaks `range(0, n)` over a runtime n: .item() is what was meant.
    patch_tensor = it._patch_lang_tensor

    def patch_lang_tensor(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).item()))

    it._patch_lang_tensor = patch_lang_tensor
    _installed = True
