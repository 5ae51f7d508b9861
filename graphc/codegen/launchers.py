"""A device target's launcher table: which Python function turns a library step into kernel launches.

A target keeps its op library as kernels/<target>/<file>.* with launchers in targets/<target>/lib_<file>.py,
each registering itself for its ops:

    LAUNCHERS = Launchers()
    launcher = LAUNCHERS.register          # @launcher("rms_norm", "norm") def norm(st, cx): ...
    LAUNCHERS.load(__package__, Path(__file__).parent, FILES)
    LIBRARY = LAUNCHERS.library("opencl", ".cl")     # the table the lowering queries
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from .lower import LibOp, Library


class Launchers:
    def __init__(self) -> None:
        self.by_op: dict[str, tuple[str, Callable[..., Any]]] = {}    # op -> (file, launcher)

    def register(self, *ops: str):
        """Register fn as the launcher of `ops` (at import of lib_<file>.py: <file> is its kernel file)."""
        def deco(fn):
            module = fn.__module__.rsplit(".", 1)[-1]
            for op in ops:
                self.by_op[op] = (module[len("lib_"):], fn)
            return fn
        return deco

    def load(self, package: str, folder: Path, files: "tuple[str, ...]") -> None:
        """Import every lib_<file>.py of the package that exists (each registers its launchers)."""
        for f in files:
            if (folder / f"lib_{f}.py").exists():
                importlib.import_module(f"{package}.lib_{f}")

    def library(self, target: str, ext: str) -> Library:
        return Library(target, {op: LibOp(op, f"{file}{ext}") for op, (file, _) in self.by_op.items()})

    def __getitem__(self, op: str) -> tuple[str, Callable[..., Any]]:
        return self.by_op[op]
