"""The Triton op library: which ops run as library kernels (kernels/triton/*.py) and how each is launched.

The lowering queries TRITON_LIBRARY (graphc.codegen.lower.Library) like the other targets' tables. A
library op has its @triton.jit kernels in kernels/triton/<file>.py and a launcher in
targets/triton/lib_<file>.py:

    @launcher("rms_norm")
    def rms_norm(st: LibStep, cx: LaunchCtx) -> list[Launch]

which picks kernels, grids and block sizes for one node and returns the launches, in order. A tensor is
passed as two arguments (cx.tensor(row)): its buffer (Buf, resolved by the executable to a uint8 torch
tensor) and its descriptor tuple (byte offset, ne0..3, nb0..3); element types and block sizes are
constexpr keyword arguments. A launcher raises cx.unsupported(...) for types or shapes it has no
kernel for, at compile time: "op X is not supported on target triton yet (...)".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphc.codegen.launchers import Launchers
from graphc.codegen.lower import LibStep, LoweredProgram, Unsupported, unsupported
from graphc.ir import Tensor

from .tuning import Tunable

FILES = ("data", "norm", "rope", "matmul", "attn", "rwkv")


@dataclass(frozen=True)
class Buf:
    """A buffer argument, resolved by the executable: "arena", "temp", "root:<id>" or "dummy"."""
    name: str


@dataclass
class Launch:
    module: str                      # "lib:<file>" (kernels/triton/<file>.py) or "gen" (the module's own)
    kernel: str                      # the @triton.jit function's name there
    grid: tuple[int, ...]
    args: list[Any]                  # Buf, ints, floats, descriptor tuples
    consts: dict[str, Any] = field(default_factory=dict)      # constexpr keyword arguments
    label: str = ""                  # what it computes, for profiles


def desc(t: "Tensor | None", offset: int = 0) -> tuple[int, ...]:
    """(byte offset, ne0..3, nb0..3) of a tensor at offset in its buffer; zeros for an empty slot."""
    if t is None:
        return (0, 1, 1, 1, 1, 0, 0, 0, 0)
    return (int(offset), *map(int, t.ne), *map(int, t.nb))


def pow2(n: int, lo: int = 1, hi: int = 1 << 30) -> int:
    """The smallest power of two >= n, clamped to [lo, hi]."""
    p = lo
    while p < n and p < hi:
        p *= 2
    return p


@dataclass
class LaunchCtx:
    low: LoweredProgram
    device: Any                      # targets.triton.device.Device
    overrides: dict[str, Any] = field(default_factory=dict)   # forced tile choices (tests, experiments)

    def tensor(self, row: "int | None") -> list[Any]:
        """[buffer, descriptor] of one argument-table row (None: an empty slot)."""
        if row is None:
            return [Buf("dummy"), desc(None)]
        a = self.low.args[row]
        return [Buf(a.buf), desc(a.t, a.offset)]

    def tensors(self, st: LibStep) -> list[Any]:
        """dst, then every source slot."""
        out = self.tensor(st.dst)
        for s in st.srcs:
            out += self.tensor(s)
        return out

    @staticmethod
    def type_of(t: "Tensor | None") -> int:
        return -1 if t is None else t.type.id

    def unsupported(self, st: LibStep, why: str) -> Unsupported:
        return unsupported("triton", st.op, st.nodes[0], why)


LAUNCHERS = Launchers()
launcher = LAUNCHERS.register           # @launcher("op", ...) in targets/triton/lib_<file>.py
LAUNCHERS.load(__package__, Path(__file__).parent, FILES)
TRITON_LIBRARY = LAUNCHERS.library("triton", ".py")


def launches(st: LibStep, cx: LaunchCtx) -> "list[Launch] | Tunable":
    """The node's launches, or a Tunable (tuning.py) whose options are lists of launches."""
    file, fn = LAUNCHERS[st.op]
    out = fn(st, cx)
    for la in (x for opt in out.options.values() for x in opt) if isinstance(out, Tunable) else out:
        if la.module == "lib":
            la.module = f"lib:{file}"
    return out
