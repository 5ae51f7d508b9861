"""ggml's tensor element types: id, name, block size and bytes per block (ggml-reference §2.4)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QK_K = 256  # super-block size of the K-quants


@dataclass(frozen=True)
class GGMLType:
    id: int            # ggml's enum value (GC numbering; stable for every type listed here)
    name: str          # ggml_type_name()
    blck: int          # elements per block (1 for plain types)
    size: int          # bytes per block
    np_dtype: str | None = None  # numpy dtype for plain types; None for block types and bf16

    @property
    def is_quantized(self) -> bool:
        return self.blck > 1

    @property
    def is_float(self) -> bool:
        return self.name in ("f32", "f16", "bf16", "f64")

    @property
    def is_int(self) -> bool:
        return self.name in ("i8", "i16", "i32", "i64")

    def row_bytes(self, ne0: int) -> int:
        if ne0 % self.blck:
            raise ValueError(f"{self.name} rows need ne0 divisible by {self.blck}, got {ne0}")
        return ne0 // self.blck * self.size

    def __repr__(self) -> str:
        return self.name


_TABLE = [
    (0, "f32", 1, 4, "float32"), (1, "f16", 1, 2, "float16"),
    (2, "q4_0", 32, 18, None), (3, "q4_1", 32, 20, None),
    (6, "q5_0", 32, 22, None), (7, "q5_1", 32, 24, None),
    (8, "q8_0", 32, 34, None), (9, "q8_1", 32, 36, None),
    (10, "q2_K", 256, 84, None), (11, "q3_K", 256, 110, None), (12, "q4_K", 256, 144, None),
    (13, "q5_K", 256, 176, None), (14, "q6_K", 256, 210, None), (15, "q8_K", 256, 292, None),
    (16, "iq2_xxs", 256, 66, None), (17, "iq2_xs", 256, 74, None), (18, "iq3_xxs", 256, 98, None),
    (19, "iq1_s", 256, 50, None), (20, "iq4_nl", 32, 18, None), (21, "iq3_s", 256, 110, None),
    (22, "iq2_s", 256, 82, None), (23, "iq4_xs", 256, 136, None),
    (24, "i8", 1, 1, "int8"), (25, "i16", 1, 2, "int16"), (26, "i32", 1, 4, "int32"),
    (27, "i64", 1, 8, "int64"), (28, "f64", 1, 8, "float64"), (29, "iq1_m", 256, 56, None),
    (30, "bf16", 1, 2, None), (34, "tq1_0", 256, 54, None), (35, "tq2_0", 256, 66, None),
    (39, "mxfp4", 32, 17, None),
]

TYPES: dict[str, GGMLType] = {n: GGMLType(i, n, b, s, d) for i, n, b, s, d in _TABLE}
TYPES_BY_ID: dict[int, GGMLType] = {t.id: t for t in TYPES.values()}

F32, F16, BF16, I32 = TYPES["f32"], TYPES["f16"], TYPES["bf16"], TYPES["i32"]


def get_type(t: "str | int | GGMLType") -> GGMLType:
    """Look a type up by name, ggml id or pass it through; unknown types are a ValueError."""
    if isinstance(t, GGMLType):
        return t
    if isinstance(t, str):
        key = t if t in TYPES else t.lower()
        if key in TYPES:
            return TYPES[key]
        # ggml spells K-quants with a capital K; accept "Q4_K" / "q4_k" too
        for name in TYPES:
            if name.lower() == t.lower():
                return TYPES[name]
        raise ValueError(f"unknown tensor type {t!r}")
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if int(t) in TYPES_BY_ID:
            return TYPES_BY_ID[int(t)]
        raise ValueError(f"unknown ggml type id {t}")
    raise ValueError(f"not a tensor type: {t!r}")
