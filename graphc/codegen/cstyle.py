"""Printing lowered elementwise steps in C-like languages: C itself, and OpenCL C by a few overrides.

CStyle renders the expression IR and an EwStep's loop nest (rows split over threads or work-items, an
inner loop over dim 0 with the loads, the body and the stores); a language changes only the hooks:
pointer qualifiers, f16/bf16 loads and stores, math function names and how a row index is obtained.
Every node is parenthesised, so the printed order of operations is the formula's.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .expr import Const
from .lower import CopyStep, EwStep, Load, Store
from .printer import ExprPrinter


def c_float(v: float) -> str:
    """An exact C float literal for an f32 value: the shortest decimal that reads back as the same f32."""
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    text = str(np.float32(v))
    return f"({text}f)" if text.startswith("-") else f"{text}f"


class CStyle(ExprPrinter):
    """C (C11 + the kernels/c/graphc.h helpers). Subclasses override the hooks below."""

    MATH = {"exp": "expf", "log": "logf", "sqrt": "sqrtf", "tanh": "tanhf", "erf": "erff", "expm1": "expm1f",
            "fabs": "fabsf", "fmin": "fminf", "fmax": "fmaxf", "f16_round": "gc_f16_round"}
    GLOBAL = ""                                  # address-space qualifier of buffer pointers
    INDEX = "int64_t"                            # the integer type of loop indices
    COND_TYPE = "int"

    # --- hooks ---------------------------------------------------------------------------------------
    def call(self, fn: str, args: list[str]) -> str:
        if fn in ("sin", "cos"):                 # in double, rounded to f32 (ggml's sinf/cosf on x86)
            return f"(float){fn}((double){args[0]})"
        return f"{self.MATH[fn]}({', '.join(args)})"

    def load(self, type_: str, ptr: str) -> str:
        return f"gc_ld_{type_}({ptr})"

    def store(self, type_: str, ptr: str, value: str) -> str:
        return f"gc_st_{type_}({ptr}, {value});"

    def float_at(self, ptr: str, i0: str, const: bool = True) -> str:
        return f"(({'const ' if const else ''}{self.GLOBAL}float *){ptr})[{i0}]"

    def row_range(self, nrows: int) -> list[str]:
        """Lines that open the loop over rows `ir` this thread handles (closed by one `}`)."""
        return [f"{self.INDEX} r0, r1;", f"gc_chunk({nrows}, ith, nth, &r0, &r1);",
                f"for ({self.INDEX} ir = r0; ir < r1; ir++) {{"]

    def inner_loop(self, n: int) -> str:
        """The line that opens the loop over i0 (the elements of one row this thread handles)."""
        return f"for ({self.INDEX} i0 = 0; i0 < {n}; i0++) {{"

    def copy_row(self, dst: str, src: str, nbytes: int) -> list[str]:
        """Lines copying nbytes raw bytes of one row (block types)."""
        return [f"memcpy({dst}, {src}, {nbytes});"]

    def copy_element(self, dst: str, src: str, nbytes: int) -> str:
        return f"memcpy({dst}, {src}, {nbytes});"

    def literal(self, c: Const) -> str:
        return c_float(c.value) if c.dtype == "f32" else str(c.value)

    def select(self, cond: str, a: str, b: str) -> str:
        return f"({cond} ? {a} : {b})"

    def bind(self, name: str, value: str, condition: bool) -> str:
        return f"const {self.COND_TYPE if condition else 'float'} {name} = {value};"

    # --- an elementwise step ---------------------------------------------------------------------------
    def ew_loop(self, st: EwStep, T: Callable[[int], str]) -> list[str]:
        """The loop nest of one elementwise step; T(arg row) is the expression of that tensor's data pointer."""
        ne = st.space
        pre: list[str] = []
        inner: list[str] = []
        for j, ld in enumerate(st.loads):
            pre.append(f"const {self.GLOBAL}char *p{j} = {T(ld.arg)} + {self._row_offset(ld, ne)};")
            if ld.per_row:
                pre.append(f"const float {ld.var} = {self.load(ld.type, f'p{j}')};")
                continue
            i0 = {"i": "i0", "mod": f"(i0 % {ld.ne[0]})", "zero": "0"}[ld.index(0, ne)]
            if ld.i0_add:
                i0 = f"(i0 + {ld.i0_add})"
            if ld.contiguous_f32:
                inner.append(f"const float {ld.var} = {self.float_at(f'p{j}', i0)};")
            else:
                inner.append(f"const float {ld.var} = {self.load(ld.type, f'p{j} + {i0}*{ld.nb[0]}')};")
        inner += self.body(st.body)
        for j, s in enumerate(st.stores):
            pre.append(f"{self.GLOBAL}char *o{j} = {T(s.arg)} + i1*{s.nb[1]} + i2*{s.nb[2]} + i3*{s.nb[3]};")
            inner.append(self._store(s, f"o{j}"))
        lines = self.row_range(ne[1] * ne[2] * ne[3])
        lines.append(f"    const {self.INDEX} i1 = ir % {ne[1]}, i2 = (ir / {ne[1]}) % {ne[2]}, "
                     f"i3 = ir / {ne[1] * ne[2]};")
        lines.append("    (void)i1; (void)i2; (void)i3;")
        lines += [f"    {s}" for s in pre]
        lines.append(f"    {self.inner_loop(ne[0])}")
        lines += [f"        {s}" for s in inner]
        lines += ["    }", "}"]
        return lines

    # --- a copy step -----------------------------------------------------------------------------------
    def copy_loop(self, st: CopyStep, T: Callable[[int], str]) -> list[str]:
        """The loop nest of a copy: block rows as raw bytes; elements converted (float types) or copied."""
        n = st.nodes[0]
        a = n.src[0]
        G, X = self.GLOBAL, self.INDEX
        dst, src = T(st.dst), T(st.src)
        ne = n.ne
        lines = self.row_range(ne[1] * ne[2] * ne[3])
        lines += [f"    const {X} i1 = ir % {ne[1]}, i2 = (ir / {ne[1]}) % {ne[2]}, i3 = ir / {ne[1] * ne[2]};",
                  f"    {G}char *o = {dst} + i1*{n.nb[1]} + i2*{n.nb[2]} + i3*{n.nb[3]};"]
        if st.mode == "rows":            # same-type block rows, equal shapes
            s = f"{src} + i1*{a.nb[1]} + i2*{a.nb[2]} + i3*{a.nb[3]}"
            return lines + [f"    {x}" for x in self.copy_row("o", s, n.type.row_bytes(ne[0]))] + ["}"]
        if st.mode == "repeat":
            lines.append(f"    const {G}char *s = {src} + (i1 % {a.ne[1]})*{a.nb[1]} + (i2 % {a.ne[2]})*{a.nb[2]} + "
                         f"(i3 % {a.ne[3]})*{a.nb[3]};")
            at = f"s + (i0 % {a.ne[0]})*{a.nb[0]}"
        elif st.mode == "same":
            lines.append(f"    const {G}char *s = {src} + i1*{a.nb[1]} + i2*{a.nb[2]} + i3*{a.nb[3]};")
            at = f"s + i0*{a.nb[0]}"
        else:                            # flat: equal element counts, another shape
            lines.append(f"    const {X} kb = ir * {ne[0]};")
            at = None
        lines.append(f"    {self.inner_loop(ne[0])}")
        if at is None:
            an = a.ne
            lines.append(f"        const {X} kk = kb + i0, j0 = kk % {an[0]}, j1 = (kk / {an[0]}) % {an[1]}, "
                         f"j2 = (kk / {an[0] * an[1]}) % {an[2]}, j3 = kk / {an[0] * an[1] * an[2]};")
            lines.append(f"        const {G}char *p = {src} + j0*{a.nb[0]} + j1*{a.nb[1]} + j2*{a.nb[2]} + "
                         f"j3*{a.nb[3]};")
        else:
            lines.append(f"        const {G}char *p = {at};")
        if st.convert:
            lines.append(f"        {self.store(n.type.name, f'o + i0*{n.nb[0]}', self.load(a.type.name, 'p'))}")
        else:
            lines.append(f"        {self.copy_element(f'o + i0*{n.nb[0]}', 'p', n.type.size)}")
        return lines + ["    }", "}"]

    def _row_offset(self, ld: Load, ne: tuple) -> str:
        idx = []
        for d in (1, 2, 3):
            how = ld.index(d, ne)
            idx.append({"i": f"i{d}", "mod": f"(i{d} % {ld.ne[d]})", "zero": "0"}[how])
        return f"{idx[0]}*{ld.nb[1]} + {idx[1]}*{ld.nb[2]} + {idx[2]}*{ld.nb[3]}"

    def _store(self, s: Store, ptr: str) -> str:
        if s.contiguous_f32:
            return f"{self.float_at(ptr, 'i0', const=False)} = {s.value};"
        return self.store(s.type, f"{ptr} + i0*{s.nb[0]}", s.value)
