"""targets/c/library.py (the table the lowering queries) agrees with what kernels/c/*.h define.

The compiler never scans headers; this test does, once, on the headers' text after comments are removed
(macro-made hooks such as GC_ROW_SCRATCH(op) are expanded by name), so the table and the headers cannot
drift apart."""
from __future__ import annotations

import re

from graphc.ops import OPS
from graphc.targets.c.codegen import KERNELS
from graphc.targets.c.library import C_LIBRARY


def _defined(kind: str) -> dict[str, str]:
    """op -> header for every `<ret> gc_<kind>_<op>(` definition (and GC_ROW_SCRATCH(op) for scratch)."""
    found: dict[str, str] = {}
    for p in sorted(KERNELS.glob("*.h")):
        code = re.sub(r"/\*.*?\*/|//[^\n]*", " ", p.read_text(), flags=re.S)
        code = re.sub(r"#define[^\n]*(\\\n[^\n]*)*", " ", code)          # macro bodies are not definitions
        for m in re.finditer(rf"\b(?:void|int|size_t)\s+gc_{kind}_([a-z0-9_]+)\s*\(", code):
            found.setdefault(m.group(1), p.name)
        if kind == "scratch":
            for m in re.finditer(r"\bGC_ROW_SCRATCH\(\s*([a-z0-9_]+)\s*\)", code):
                found.setdefault(m.group(1), p.name)
    return found


def test_every_listed_op_is_defined_in_its_header():
    ops = _defined("op")
    assert {op: lop.source for op, lop in C_LIBRARY.ops.items()} == ops


def test_hooks_match():
    supports, scratch = _defined("supports"), _defined("scratch")
    assert {op for op, lop in C_LIBRARY.ops.items() if lop.supports} == set(supports)
    assert {op for op, lop in C_LIBRARY.ops.items() if lop.scratch} == set(scratch)
    for op, lop in C_LIBRARY.ops.items():
        assert op in OPS, f"{op} is not an op of graphc.ops"
        for hooks in (supports, scratch):
            if op in hooks:
                assert hooks[op] == lop.source, f"gc_*_{op} is in {hooks[op]}, the table says {lop.source}"
