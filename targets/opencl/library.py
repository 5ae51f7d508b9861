"""The OpenCL op library: which ops run as library kernels (kernels/opencl/*.cl) and how each is launched.

The lowering queries OPENCL_LIBRARY (graphc.codegen.lower.Library) like the C target's table. A library
op has kernel text in kernels/opencl/<file>.cl and a launcher in targets/opencl/lib_<file>.py. Each file
is one program per device (graphc.cl, the parameter structs and dequant.cl first), built once, cached
on disk and shared by every module on the device; a program is built only when a module uses it.

    @launcher("rms_norm")
    def rms_norm(st: LibStep, cx: LaunchCtx) -> list[Launch]

which picks kernels and work sizes for one node (types, shapes, device features) and returns the kernel
launches, in order. cx.slots(st) gives the standard leading arguments (see kernels/opencl/graphc.cl):
dst buffer + gc_t, every source slot's buffer + gc_t, the gc_p_<op> struct. A launcher raises
cx.unsupported(...) for types or shapes it has no kernel for: that happens at compile time, before any
run, and reads "op X is not supported on target opencl yet (...)".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphc.codegen.launchers import Launchers
from graphc.codegen.lower import LibStep, LoweredProgram, Unsupported, unsupported
from graphc.ir import Tensor

from .device import Features
from .params import header as params_header
from .params import pack

KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "opencl"
# kernels/opencl/<file>.cl -> the launcher module targets/opencl/lib_<file>.py, in program order
FILES = ("dequant", "data", "norm", "rope", "matmul", "attn", "rwkv")

GC_T = np.dtype([("off", "<i8"), ("ne", "<i8", (4,)), ("nb", "<i8", (4,)), ("type", "<i8")])


@dataclass(frozen=True)
class Buf:
    """A buffer argument, resolved by the executable: "arena", "temp", "scratch", "root:<id>" or "dummy"."""
    name: str


@dataclass
class Launch:
    kernel: str                      # the kernel's name in its program
    args: list[Any]                  # Buf, numpy scalars / records (passed by value)
    global_size: tuple[int, ...]
    local_size: "tuple[int, ...] | None" = None
    program: str = "lib"             # "lib" (the op's kernels/opencl file), "lib:<file>" or "gen" (the module's own)
    label: str = ""                  # what it computes, for profiles (set by the printer: step kind and ops)


def gc_t(t: "Tensor | None", offset: int = 0) -> np.ndarray:
    rec = np.zeros((), GC_T)
    if t is None:
        rec["type"] = -1
        return rec
    rec["off"], rec["ne"], rec["nb"], rec["type"] = offset, t.ne, t.nb, t.type.id
    return rec


@dataclass
class LaunchCtx:
    """What a launcher may use: the argument table, the device's features and scratch memory."""
    low: LoweredProgram
    features: Features
    scratch_need: int = 0            # bytes of the scratch buffer this step uses (the executable takes the max)
    _scratch_used: int = field(default=0, repr=False)

    def tensor(self, row: "int | None") -> list[Any]:
        """[buffer, gc_t] of one argument-table row (None: an empty slot)."""
        if row is None:
            return [Buf("dummy"), gc_t(None)]
        a = self.low.args[row]
        return [Buf(a.buf), gc_t(a.t, a.offset)]

    def slots(self, st: LibStep) -> list[Any]:
        """The standard leading arguments: dst, every source slot, the parameter struct."""
        out = self.tensor(st.dst)
        for s in st.srcs:
            out += self.tensor(s)
        return out + [pack(st.op, st.params)]

    def scratch(self, nbytes: int) -> list[Any]:
        """[buffer, byte offset] of nbytes of scratch memory for this step (64-aligned; reused by later steps)."""
        off = self._scratch_used
        self._scratch_used += (int(nbytes) + 63) // 64 * 64
        self.scratch_need = max(self.scratch_need, self._scratch_used)
        return [Buf("scratch"), np.uint64(off)]

    def unsupported(self, st: LibStep, why: str) -> Unsupported:
        return unsupported("opencl", st.op, st.nodes[0], why)

    def work_group(self, want: int) -> int:
        """A work-group size <= want that the device allows (a power of two)."""
        n = 1
        while n * 2 <= min(want, self.features.max_work_group):
            n *= 2
        return n


LAUNCHERS = Launchers()
launcher = LAUNCHERS.register           # @launcher("op", ...) in targets/opencl/lib_<file>.py
LAUNCHERS.load(__package__, Path(__file__).parent, FILES)
OPENCL_LIBRARY = LAUNCHERS.library("opencl", ".cl")


def library_source(file: str) -> str:
    """The program of kernels/opencl/<file>.cl: the contract header, the parameter structs, dequant.cl
    (block decoders every file may use), then the file."""
    from graphc.codegen.opencl import helpers
    parts = [helpers(), params_header()]
    for f in dict.fromkeys(("dequant", file)):
        if (KERNELS / f"{f}.cl").exists():
            parts.append(f"/* ---- kernels/opencl/{f}.cl ---- */\n" + (KERNELS / f"{f}.cl").read_text())
    return "\n".join(parts)


def launches(st: LibStep, cx: LaunchCtx) -> list[Launch]:
    file, fn = LAUNCHERS[st.op]
    out = fn(st, cx)
    for la in out:
        if la.program == "lib":
            la.program = f"lib:{file}"
    return out
