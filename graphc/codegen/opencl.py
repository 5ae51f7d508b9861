"""OpenCL C 1.2 printing of lowered elementwise steps: a few overrides of the C printer.

What differs from C: buffer pointers are `__global`, f16 is read and written with vload_half /
vstore_half (no cl_khr_fp16 needed), bf16 by shifting its bits, math functions keep their generic
names (OpenCL's are overloaded), sin/cos are computed in float (OpenCL 1.2 devices need not have
double), and each work-item handles one row: the row index comes from get_global_id(0) instead of a
thread's chunk. The arena is one buffer; tensors are byte offsets into it passed as kernel arguments.
"""
from __future__ import annotations

from .cstyle import CStyle
from .lower import EwStep

HELPERS = """\
inline float gc_ld_f32(const __global char *p) { return *(const __global float *)p; }
inline float gc_ld_f16(const __global char *p) { return vload_half(0, (const __global half *)p); }
inline float gc_ld_bf16(const __global char *p) { return as_float((uint)(*(const __global ushort *)p) << 16); }
inline void gc_st_f32(__global char *p, float v) { *(__global float *)p = v; }
inline void gc_st_f16(__global char *p, float v) { vstore_half_rte(v, 0, (__global half *)p); }
inline void gc_st_bf16(__global char *p, float v) {
    uint u = as_uint(v);
    *(__global ushort *)p = isnan(v) ? (ushort)((u >> 16) | 64) : (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float gc_f16_round(float x) {
    ushort h; vstore_half_rte(x, 0, (half *)&h); return vload_half(0, (const half *)&h);
}
"""


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
        return ["const long ir = get_global_id(0);", f"if (ir < {nrows}) {{"]

    def kernel(self, name: str, st: EwStep) -> str:
        """One __kernel over the arena buffer; arg row i is at byte offset off<i>."""
        def T(i: int) -> str:
            return f"(arena + off{i})"
        rows = sorted({ld.arg for ld in st.loads} | {s.arg for s in st.stores})
        offs = "".join(f", const ulong off{i}" for i in rows)
        body = self.ew_loop(st, T)
        return (f"__kernel void {name}(__global char *arena{offs}) {{\n"
                + "".join(f"    {s}\n" for s in body) + "}\n")


def kernel_source(steps: "list[tuple[str, EwStep]]") -> str:
    """A program source of the given elementwise steps (helpers first)."""
    pr = OpenCLStyle()
    return HELPERS + "\n" + "\n".join(pr.kernel(name, st) for name, st in steps)
