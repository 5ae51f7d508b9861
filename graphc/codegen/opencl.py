"""OpenCL C 1.2 printing of lowered elementwise and copy steps: a few overrides of the C printer.

What differs from C: buffer pointers are `__global`, f16 is read and written with vload_half /
vstore_half (no cl_khr_fp16 needed), bf16 by shifting its bits, math functions keep their generic
names (OpenCL's are overloaded), sin/cos are computed in float (OpenCL 1.2 devices need not have
double), and the work is a 2-D range: dimension 1 is the row (i1, i2, i3 flattened), dimension 0 strides
over the elements of a row. Every tensor a kernel touches comes as its buffer and a byte offset (kernel
arguments b<i>, off<i> for row i of the argument table): the arena is one buffer, weights and state
have their own. The helpers (gc_ld_f16, ...) are kernels/opencl/graphc.cl.
"""
from __future__ import annotations

from pathlib import Path

from .cstyle import CStyle
from .lower import CopyStep, EwStep

KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "opencl"
ROW_WIDTH = 256          # work-items across a row at most (dimension 0 of the range)


def helpers() -> str:
    """The contract header every OpenCL program starts with (types, f16/bf16 loads and stores)."""
    return (KERNELS / "graphc.cl").read_text()


class OpenCLStyle(CStyle):
    MATH = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "erf": "erf", "expm1": "expm1",
            "fabs": "fabs", "fmin": "fmin", "fmax": "fmax", "f16_round": "gc_f16_round"}
    GLOBAL = "__global "
    INDEX = "long"

    def call(self, fn: str, args: list[str]) -> str:
        if fn in ("sin", "cos"):
            return f"{fn}({args[0]})"
        return super().call(fn, args)

    def row_range(self, nrows: int) -> list[str]:
        return ["const long ir = get_global_id(1);", f"if (ir < {nrows}) {{"]

    def inner_loop(self, n: int) -> str:
        return f"for (long i0 = get_global_id(0); i0 < {n}; i0 += get_global_size(0)) {{"

    def copy_row(self, dst: str, src: str, nbytes: int) -> list[str]:
        return [f"const __global char *s = {src};",
                f"for (long i0 = get_global_id(0); i0 < {nbytes}; i0 += get_global_size(0)) {dst}[i0] = s[i0];"]

    def copy_element(self, dst: str, src: str, nbytes: int) -> str:
        return f"for (int b = 0; b < {nbytes}; b++) ({dst})[b] = ({src})[b];"

    @staticmethod
    def T(i: int) -> str:
        return f"(b{i} + off{i})"

    def signature(self, name: str, rows: list[int]) -> str:
        args = ", ".join(f"__global char *b{i}, const ulong off{i}" for i in rows)
        return f"__kernel void {name}({args})"

    def kernel(self, name: str, st: "EwStep | CopyStep") -> str:
        """One __kernel for an elementwise or copy step; its arguments are (b<i>, off<i>) for each row i of
        the argument table it touches, in increasing order (args_of)."""
        body = self.ew_loop(st, self.T) if isinstance(st, EwStep) else self.copy_loop(st, self.T)
        return (self.signature(name, args_of(st)) + " {\n" + "".join(f"    {s}\n" for s in body) + "}\n")


def args_of(st: "EwStep | CopyStep") -> list[int]:
    """The argument-table rows an elementwise or copy kernel takes, in its argument order."""
    if isinstance(st, EwStep):
        return sorted({ld.arg for ld in st.loads} | {s.arg for s in st.stores})
    return sorted({st.dst, st.src})


def range_of(st: "EwStep | CopyStep") -> tuple[int, int]:
    """The global work size (across a row, rows) of an elementwise or copy kernel."""
    n = st.nodes[0]
    ne = st.space if isinstance(st, EwStep) else n.ne
    across = n.type.row_bytes(ne[0]) if isinstance(st, CopyStep) and st.mode == "rows" else ne[0]
    width = 1
    while width < min(across, ROW_WIDTH):
        width *= 2
    return width, max(1, ne[1] * ne[2] * ne[3])


def kernel_source(steps: "list[tuple[str, EwStep | CopyStep]]") -> str:
    """A program source of the given steps (the contract header first)."""
    pr = OpenCLStyle()
    return helpers() + "\n" + "\n".join(pr.kernel(name, st) for name, st in steps)
