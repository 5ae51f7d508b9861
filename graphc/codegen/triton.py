"""Triton printing of lowered elementwise steps: the same expression body, rendered with tl.*.

A step becomes one @triton.jit function over the flattened iteration space: each program takes BLOCK
consecutive elements, recovers (i0, i1, i2, i3) from the flat index (int64), loads every operand at its
byte address in its buffer (buffer + the tensor's offset + indices times byte strides) through a pointer
cast to f32/f16/bf16, computes the body and stores with a mask. Selects become tl.where, conditions
combine with & and |, f16_round is a cast to float16 and back, sin/cos run in float64 as ggml computes them.
"""
from __future__ import annotations

import math


from .expr import Const
from .lower import EwStep
from .printer import ExprPrinter

TL_TYPE = {"f32": "tl.float32", "f16": "tl.float16", "bf16": "tl.bfloat16"}


class TritonStyle(ExprPrinter):
    MATH = {"exp": "tl.exp", "log": "tl.log", "sqrt": "tl.sqrt_rn", "fabs": "tl.abs", "fmin": "tl.minimum",
            "fmax": "tl.maximum", "tanh": "libdevice.tanh", "erf": "libdevice.erf", "expm1": "libdevice.expm1"}
    LOGICAL = {"&&": "&", "||": "|"}

    def call(self, fn: str, args: list[str]) -> str:
        if fn == "f16_round":
            return f"{args[0]}.to(tl.float16).to(tl.float32)"
        if fn in ("sin", "cos"):
            return f"tl.{fn}({args[0]}.to(tl.float64)).to(tl.float32)"
        return f"{self.MATH[fn]}({', '.join(args)})"

    def literal(self, c: Const) -> str:
        if c.dtype != "f32":
            return str(c.value)
        v = float(c.value)
        return repr(v) if math.isfinite(v) else f'float("{v}")'     # inf, -inf, nan

    def binary(self, op: str, a: str, b: str) -> str:
        return f"({a} {self.LOGICAL.get(op, op)} {b})"

    def select(self, cond: str, a: str, b: str) -> str:
        return f"tl.where({cond}, {a}, {b})"

    def bind(self, name: str, value: str, condition: bool) -> str:
        return f"{name} = {value}"

    def kernel(self, name: str, st: EwStep) -> str:
        """The @triton.jit source of one step. Each argument-table row r it touches comes as B<r> (its
        buffer, a uint8 pointer) and O<r> (the tensor's byte offset there), in increasing row order."""
        ne = st.space
        lines = ["offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)",
                 f"mask = offs < {ne[0] * ne[1] * ne[2] * ne[3]}",
                 f"i0 = offs % {ne[0]}", f"ir = offs // {ne[0]}",
                 f"i1 = ir % {ne[1]}", f"i2 = (ir // {ne[1]}) % {ne[2]}", f"i3 = ir // {ne[1] * ne[2]}"]
        for ld in st.loads:
            idx = []
            for d in range(4):
                i = {"i": f"i{d}", "mod": f"(i{d} % {ld.ne[d]})", "zero": None}[ld.index(d, ne)]
                if d == 0 and ld.i0_add:
                    i = f"(i0 + {ld.i0_add})"
                if i is not None:
                    idx.append(f"{i} * {ld.nb[d]}")
            ptr = f"(B{ld.arg} + O{ld.arg} + {' + '.join(idx) or 'offs * 0'}).to(tl.pointer_type({TL_TYPE[ld.type]}))"
            lines.append(f"{ld.var} = tl.load({ptr}, mask=mask, other=0.0).to(tl.float32)")
        lines += self.body(st.body)
        for s in st.stores:
            idx = " + ".join(f"i{d} * {s.nb[d]}" for d in range(4))
            ptr = f"(B{s.arg} + O{s.arg} + {idx}).to(tl.pointer_type({TL_TYPE[s.type]}))"
            lines.append(f"tl.store({ptr}, {s.value}.to({TL_TYPE[s.type]}), mask=mask)")
        args = ", ".join(f"B{r}, O{r}" for r in args_of(st))
        return (f"@triton.jit\ndef {name}({args}, BLOCK: tl.constexpr):\n"
                + "".join(f"    {s}\n" for s in lines))


def args_of(st: EwStep) -> list[int]:
    """The argument-table rows an elementwise kernel takes, in its argument order."""
    return sorted({ld.arg for ld in st.loads} | {s.arg for s in st.stores})


HEADER = ("import triton\nimport triton.language as tl\n"
          "from triton.language.extra import libdevice\n\n\n")


def kernel_source(steps: "list[tuple[str, EwStep]]") -> str:
    pr = TritonStyle()
    return HEADER + "\n\n".join(pr.kernel(name, st) for name, st in steps)
