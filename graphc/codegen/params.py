"""Op parameters as the fields of a struct, shared by every C-like target (C: graphc_params.h; OpenCL: the
gc_p_<op> structs passed to library kernels by value).

Fields follow the op's parameter order: i32/bool/choice/type are 32-bit ints (a choice is its index in
the op's choices, a type its ggml id), i64 a 64-bit int, f32 a float, i32x4 four 32-bit ints. String
params (custom's fn) have no struct form. Ops without parameters get one unused int field.
"""
from __future__ import annotations

from typing import Any

from graphc.ops import OPS, OpDef, Param

STRUCT_KINDS = ("i32", "bool", "choice", "type", "i64", "f32", "i32x4")


def fields(d: OpDef) -> list[Param]:
    return [p for p in d.params if p.kind in STRUCT_KINDS]


def field_values(op: str, params: dict[str, Any]) -> list[tuple[Param, Any]]:
    """(param, value) in struct order; value: int, float, or a list of 4 ints (i32x4)."""
    out = []
    for p in fields(OPS[op]):
        v = params.get(p.name, p.default)
        if p.kind == "f32":
            v = float(v)
        elif p.kind == "choice":
            v = p.choices.index(v)
        elif p.kind == "bool":
            v = 1 if v else 0
        elif p.kind == "type":
            v = int(getattr(v, "id", v))
        elif p.kind == "i32x4":
            v = [int(x) for x in v]
        else:
            v = int(v)
        out.append((p, v))
    return out
