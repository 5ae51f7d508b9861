"""Program -> one C translation unit (kernels/c/program.c.j2) and the memory layout it expects.

Each kernel becomes one or more steps, run by every thread with a barrier between them:
  ew    a run of fused elementwise nodes of one iteration shape: one loop over the rows of that shape
        (split by ith), an inner loop over ne0 computing the whole expression DAG per element in
        registers; only values leaving the step are stored. Shapes and strides are compile-time
        constants, so the inner loop of contiguous f32 operands vectorises.
  copy  same-type / float-to-float copies (cpy, and dup/cont/repeat of integer or block types).
  lib   a library op gc_op_<op> (kernels/c/*.h, graphc.h has the contract) for the main node.
Values that stay inside a kernel but cross a step (a reduction's prologue, a matmul's result read by
its epilogue) live in a per-kernel temporary buffer; kernel outputs live where the memory plan says.
Tensor names appear only in escaped comments.
"""
from __future__ import annotations

import functools
import hashlib
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from graphc.errors import CompileError
from graphc.ir import Tensor
from graphc.ops import GLU_OPS, OPS
from graphc.passes.fusion_rules import ELEMENTWISE
from graphc.program import ALIAS_ONLY, Program, region_of, root_of

from . import params as cparams

KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "c"
_FLOAT_TYPES = ("f32", "f16", "bf16")
_OWN_HEADERS = ("graphc.h", "elementwise.h")
_ALIGN = 64


class Unsupported(CompileError):
    pass


def _unsupported(op: str, t: Tensor, why: str = "") -> Unsupported:
    return Unsupported(f"op {op} is not supported on target c yet (tensor {t.name!r}{': ' + why if why else ''})")


# --- the kernel library --------------------------------------------------------------------------

@dataclass
class Library:
    """What the headers in kernels/c define: op -> header file, plus optional support/scratch hooks."""
    ops: dict[str, str] = field(default_factory=dict)
    supports: set[str] = field(default_factory=set)
    scratch: set[str] = field(default_factory=set)
    texts: dict[str, str] = field(default_factory=dict)      # every header's text (for the cache key)

    @classmethod
    def scan(cls, folder: Path = KERNELS) -> "Library":
        """Find what each header defines after preprocessing (macros may define functions); a header the
        preprocessor rejects is scanned as plain text."""
        lib = cls()
        for p in sorted(folder.glob("*.h")):
            text = p.read_text(encoding="utf-8", errors="replace")
            lib.texts[p.name] = text
            if p.name in _OWN_HEADERS:
                continue
            code = _preprocessed(str(p), text) or _strip_comments(text)
            for m in re.finditer(r"\bvoid\s+gc_op_([a-z0-9_]+)\s*\(", code):
                lib.ops.setdefault(m.group(1), p.name)
            lib.supports |= set(re.findall(r"\bint\s+gc_supports_([a-z0-9_]+)\s*\(", code))
            lib.scratch |= set(re.findall(r"\bsize_t\s+gc_scratch_([a-z0-9_]+)\s*\(", code))
        return lib


@functools.lru_cache(maxsize=256)
def _preprocessed_cached(path: str, digest: str, params_h: str) -> str | None:
    from .build import find_compiler
    try:
        cc = find_compiler().path
    except CompileError:
        return None
    with tempfile.TemporaryDirectory(prefix="graphc-scan-") as d:
        Path(d, "graphc_params.h").write_text(params_h)
        Path(d, "scan.c").write_text(f'#include "graphc.h"\n#include "graphc_params.h"\n#include "{Path(path).name}"\n')
        try:
            r = subprocess.run([cc, "-E", "-P", "-march=native", "-fopenmp", "-I", d, "-I", str(Path(path).parent),
                                str(Path(d, "scan.c"))], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
    return r.stdout if r.returncode == 0 else None


def _preprocessed(path: str, text: str) -> str | None:
    """The header as the compiler sees it, with every other kernels/c header it includes (a definition
    reached through an include counts for the including header too, which is harmless: it is included)."""
    digest = hashlib.sha256("".join(p.read_text(errors="replace") for p in sorted(KERNELS.glob("*.h"))).encode()).hexdigest()
    return _preprocessed_cached(path, digest, cparams.header())


def _strip_comments(code: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", code, flags=re.S)


# --- steps -----------------------------------------------------------------------------------------

@dataclass
class Step:
    kind: str                      # ew | copy | lib
    nodes: list[Tensor]


def _is_copy(n: Tensor) -> bool:
    """Nodes the copy step handles: cpy between equal or float types; dup/cont/repeat of non-float types."""
    if n.op == "cpy":
        a, b = n.src[0], n
        same = a.type == b.type
        floats = a.type.name in _FLOAT_TYPES and b.type.name in _FLOAT_TYPES
        if same and a.type.blck > 1:
            return a.ne == b.ne
        return same or floats
    return n.op in ("dup", "cont", "repeat") and n.type.name not in _FLOAT_TYPES


def _is_ew(n: Tensor) -> bool:
    return n.op in ELEMENTWISE and not _is_copy(n) and n.type.name in _FLOAT_TYPES and \
        all(s is None or s.type.name in _FLOAT_TYPES for s in n.src)


def steps_of(nodes: list[Tensor], lib: Library) -> list[Step]:
    steps: list[Step] = []
    for n in nodes:
        if n.op in ALIAS_ONLY:
            continue
        if _is_ew(n):
            last = steps[-1] if steps else None
            if last is not None and last.kind == "ew" and last.nodes[0].ne == n.ne:
                last.nodes.append(n)
            else:
                steps.append(Step("ew", [n]))
        elif _is_copy(n):
            steps.append(Step("copy", [n]))
        elif n.op == "custom":
            raise _unsupported("custom", n, f"custom function {n.params.get('fn')!r} has no C kernel")
        elif n.op in lib.ops:
            steps.append(Step("lib", [n]))
        else:
            raise _unsupported(n.op, n)
    return steps


# --- the generator -----------------------------------------------------------------------------------

@dataclass
class Entry:
    """One row of the tensor table: which buffer, what byte offset."""
    t: Tensor
    buf: str          # "arena" | "temp" | "root:<id>"
    offset: int


@dataclass
class Generated:
    source: str
    entries: list[Entry]
    temp_size: int
    checked: list[Tensor]            # nodes gc_check() tests, in order (index + 1 is what it returns)
    headers: list[str]
    buffers: list[str]               # buffer i of gc_create's bufs: "arena", "temp", "root:<id(root)>"


def _c_comment(s: str) -> str:
    """A tensor name made safe inside /* */ (names are free text and never become code)."""
    return "".join(c if c.isprintable() and c not in "*/\\" else "?" for c in s)[:63]


# Steps with less work than this (about element operations) run on thread 0 alone: a barrier costs more
# than splitting them saves, and a run of them needs no barrier at all.
SERIAL_WORK = 1 << 16


def _work(st: Step) -> int:
    """Rough element-operations of a step: values read and written; products count their inner dimension;
    row gathers and scatters count only the rows they move."""
    total = 0
    for n in st.nodes:
        srcs = [s for s in n.src if s is not None]
        if n.op in ("mul_mat", "out_prod") and srcs:
            w = n.nelements * srcs[0].ne[0]
        elif n.op == "flash_attn_ext" and len(srcs) > 1:
            w = n.nelements * srcs[1].ne[1]              # every query row meets every cached key
        elif n.op == "get_rows":
            w = n.nelements
        elif n.op == "set_rows" and len(srcs) > 1:
            w = srcs[1].nelements
        else:
            w = max([n.nelements] + [s.nelements for s in srcs])
        total += w
    return total


def _serial_group(calls: list[str]) -> str:
    return "if (ith == 0) {\n" + "".join(f"            {c}\n" for c in calls) + "        }"


class Codegen:
    def __init__(self, program: Program, lib: Library, gelu_table: bool = False, serial_work: int = SERIAL_WORK):
        if program.plan is None:
            raise CompileError("target c needs a memory-planned Program")
        self.p, self.lib, self.gelu_table, self.serial_work = program, lib, gelu_table, serial_work
        self.entries: list[Entry] = []
        self.tid: dict[int, int] = {}
        self.temp: dict[int, int] = {}     # id(root) -> offset in the temp buffer (current kernel)
        self.temp_size = 0
        self.mat = {id(root_of(o)) for k in program.kernels for o in k.outputs}
        self.checked: list[Tensor] = []
        self.params: list[str] = []
        self.scratch: list[str] = []
        self.used_headers: set[str] = set()

    # tensor table ------------------------------------------------------------------------------
    def T(self, t: Tensor) -> str:
        i = self.tid.get(id(t))
        if i is None:
            r = root_of(t)
            offs = t.view_offs if t.is_view else 0
            if id(r) in self.temp:
                e = Entry(t, "temp", self.temp[id(r)] + offs)
            elif region_of(r) == "arena":
                if id(r) not in self.mat or id(r) not in self.p.plan.offsets:
                    raise CompileError(f"target c: tensor {t.name!r} has no memory (not materialised, not planned)")
                e = Entry(t, "arena", self.p.plan.offsets[id(r)] + offs)
            else:
                e = Entry(t, f"root:{id(r)}", offs)
            i = self.tid[id(t)] = len(self.entries)
            self.entries.append(e)
        return f"T[{i}]"

    # kernels ---------------------------------------------------------------------------------------
    def generate(self) -> Generated:
        funcs, calls = [], []
        serial: list[str] = []          # consecutive small steps: thread 0 runs them with no barrier between
        parallel = False                # any step split over the threads (else gc_run opens no thread team)
        for ki, k in enumerate(self.p.kernels):
            if k.kind == "view":
                continue
            steps = steps_of(k.nodes, self.lib)
            self._place_temps(k, steps)
            for si, st in enumerate(steps):
                fname = f"k{ki}_{si}"
                body = {"ew": self._ew, "copy": self._copy, "lib": self._lib}[st.kind](st, k, steps)
                names = ", ".join(_c_comment(n.name) for n in st.nodes)
                funcs.append(f"/* kernel {ki} step {si}: {st.kind} {' '.join(self._opname(n) for n in st.nodes)}"
                             f" ({names}) */\nstatic void {fname}(const gc_ctx *ctx, const gc_tensor *T, int ith, "
                             f"int nth) {{\n{body}}}\n")
                if _work(st) < self.serial_work:
                    serial.append(f"{fname}(ctx, T, 0, 1);")
                    continue
                if serial:
                    calls.append(_serial_group(serial))
                    serial = []
                calls.append(f"{fname}(ctx, T, ith, nth);")
                parallel = True
        if serial:
            calls.append(_serial_group(serial))
        tmpl = jinja2.Environment(loader=jinja2.FileSystemLoader(str(KERNELS)), keep_trailing_newline=True,
                                  undefined=jinja2.StrictUndefined).get_template("program.c.j2")
        headers = sorted(self.used_headers)
        table = []
        for e in self.entries:
            t = e.t
            table.append(f"    {{NULL, {{{', '.join(map(str, t.ne))}}}, {{{', '.join(map(str, t.nb))}}}, {t.type.id}}}, "
                         f"/* {_c_comment(t.name)} */")
        buffers = ["arena", "temp"]
        for e in self.entries:
            if e.buf not in buffers:
                buffers.append(e.buf)
        bufs = ", ".join(str(buffers.index(e.buf)) for e in self.entries) or "0"
        offs = ", ".join(str(e.offset) for e in self.entries) or "0"
        src = tmpl.render(headers=headers, params=self.params, funcs=funcs, calls=calls, table=table, parallel=parallel,
                          n_tensors=len(self.entries), scratch=self.scratch, checks=self._checks(),
                          bufs=bufs, offs=offs)
        return Generated(src, self.entries, self.temp_size, self.checked, headers, buffers)

    def _opname(self, n: Tensor) -> str:
        return str(n.params["op"]) if n.op in ("unary", "glu") else n.op

    def _place_temps(self, k, steps: list[Step]) -> None:
        """Roots computed in this kernel that must be in memory but are not kernel outputs."""
        self.temp = {}
        step_of = {id(n): i for i, st in enumerate(steps) for n in st.nodes}
        need: list[Tensor] = []
        for i, st in enumerate(steps):
            for n in st.nodes:
                if id(root_of(n)) in self.mat or root_of(n) is not n:
                    continue
                if st.kind != "ew" or any(step_of.get(id(u)) not in (None, i) for u in self._users(k, n)):
                    need.append(n)
        off = 0
        for n in need:
            self.temp[id(n)] = off
            off += (n.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        self.temp_size = max(self.temp_size, off)

    @staticmethod
    def _users(k, n: Tensor) -> list[Tensor]:
        out = []
        for u in k.nodes:
            for s in u.src:
                if s is n:
                    out.append(u)
                elif s is not None and s.op in ALIAS_ONLY and root_of(s) is n:
                    out.append(u)
        return out

    # elementwise step ----------------------------------------------------------------------------
    def _ew(self, st: Step, k, steps: list[Step]) -> str:
        ne = st.nodes[0].ne
        inside = {id(n) for n in st.nodes}
        stored = [n for n in st.nodes if id(root_of(n)) in self.mat or id(n) in self.temp]
        nrows = ne[1] * ne[2] * ne[3]
        pre: list[str] = []       # per row: base pointers, hoisted broadcast loads
        inner: list[str] = []
        loads: dict[tuple[int, int], str] = {}
        var: dict[int, str] = {}

        def load(s: Tensor, i0_add: int = 0) -> str:
            key = (id(s), i0_add)
            if key in loads:
                return loads[key]
            ref = self.T(s)
            j = len(loads)
            name = f"x{j}"
            idx = [f"(i{d} % {s.ne[d]})" if s.ne[d] != ne[d] else f"i{d}" for d in (1, 2, 3)]
            idx = ["0" if s.ne[d] == 1 else idx[d - 1] for d in (1, 2, 3)]
            pre.append(f"const char *p{j} = {ref}.data + {idx[0]}*{s.nb[1]} + {idx[1]}*{s.nb[2]} + {idx[2]}*{s.nb[3]};")
            ld = f"gc_ld_{s.type.name}"
            if s.ne[0] == 1 and ne[0] != 1 and not i0_add:
                pre.append(f"const float {name} = {ld}(p{j});")
            else:
                i0 = "i0" if s.ne[0] == ne[0] or i0_add else f"(i0 % {s.ne[0]})"
                if i0_add:
                    i0 = f"(i0 + {i0_add})"
                if s.type.name == "f32" and s.nb[0] == 4:
                    inner.append(f"const float {name} = ((const float *)p{j})[{i0}];")
                else:
                    inner.append(f"const float {name} = {ld}(p{j} + {i0}*{s.nb[0]});")
            loads[key] = name
            return name

        def val(s: Tensor) -> str:
            if id(s) in inside:
                return var[id(s)]
            return load(s)

        for n in st.nodes:
            v = f"v{len(var)}"
            expr = self._expr(n, val, load)
            inner.append(f"const float {v} = {expr};")
            var[id(n)] = v
        for j, n in enumerate(stored):
            ref = self.T(n)
            pre.append(f"char *o{j} = {ref}.data + i1*{n.nb[1]} + i2*{n.nb[2]} + i3*{n.nb[3]};")
            if n.type.name == "f32" and n.nb[0] == 4:
                inner.append(f"((float *)o{j})[i0] = {var[id(n)]};")
            else:
                inner.append(f"gc_st_{n.type.name}(o{j} + i0*{n.nb[0]}, {var[id(n)]});")
        lines = ["    (void)ctx;", "    int64_t r0, r1;", f"    gc_chunk({nrows}, ith, nth, &r0, &r1);",
                 "    for (int64_t ir = r0; ir < r1; ir++) {",
                 f"        const int64_t i1 = ir % {ne[1]}, i2 = (ir / {ne[1]}) % {ne[2]}, i3 = ir / {ne[1] * ne[2]};",
                 "        (void)i1; (void)i2; (void)i3;"]
        lines += [f"        {s}" for s in pre]
        lines += [f"        for (int64_t i0 = 0; i0 < {ne[0]}; i0++) {{"]
        lines += [f"            {s}" for s in inner]
        lines += ["        }", "    }"]
        return "\n".join(lines) + "\n"

    def _expr(self, n: Tensor, val, load) -> str:
        op, p = n.op, n.params
        a = n.src[0]
        if op in ("add", "sub", "mul", "div", "maximum", "minimum"):
            return f"gc_ew_{op}({val(a)}, {val(n.src[1])})"
        if op == "add1":
            return f"gc_ew_add({val(a)}, {val(n.src[1])})"
        if op in ("sqr", "sqrt", "log", "sin", "cos"):
            return f"gc_ew_{op}({val(a)})"
        if op == "unary":
            u = str(p["op"])
            if u in ("gelu", "gelu_quick") and self.gelu_table:
                u += "_table"
            return f"gc_ew_{u}({val(a)})"
        if op == "scale":
            return f"gc_ew_scale({val(a)}, {cparams.c_float(p['s'])}, {cparams.c_float(p.get('b', 0.0))})"
        if op == "clamp":
            return f"gc_ew_clamp({val(a)}, {cparams.c_float(p['min'])}, {cparams.c_float(p['max'])})"
        if op == "leaky_relu":
            return f"gc_ew_leaky_relu({val(a)}, {cparams.c_float(p['negative_slope'])})"
        if op in ("diag_mask_inf", "diag_mask_zero"):
            value = "(-INFINITY)" if op == "diag_mask_inf" else "0.f"
            return f"(i0 > {int(p['n_past'])} + i1 ? {value} : {val(a)})"
        if op in ("dup", "cont", "repeat"):
            return val(a)
        if op == "glu":
            g = str(p["op"])
            assert g in GLU_OPS
            if g in ("geglu", "geglu_quick") and self.gelu_table:
                g += "_table"
            b = n.src[1] if len(n.src) > 1 else None
            if b is not None:
                x, gate = val(a), val(b)
            else:
                nc = n.ne[0]
                first, second = load(a, 0), load(a, nc)
                x, gate = (second, first) if p.get("swapped") else (first, second)
            return f"gc_glu_{g}({x}, {gate})"
        raise _unsupported(op, n)

    # copy step -------------------------------------------------------------------------------------
    def _copy(self, st: Step, k, steps: list[Step]) -> str:
        n = st.nodes[0]
        a = n.src[0]
        dst, src = self.T(n), self.T(a)
        ne = n.ne
        nrows = ne[1] * ne[2] * ne[3]
        head = ["    (void)ctx;", "    int64_t r0, r1;", f"    gc_chunk({nrows}, ith, nth, &r0, &r1);",
                "    for (int64_t ir = r0; ir < r1; ir++) {",
                f"        const int64_t i1 = ir % {ne[1]}, i2 = (ir / {ne[1]}) % {ne[2]}, i3 = ir / {ne[1] * ne[2]};",
                f"        char *o = {dst}.data + i1*{n.nb[1]} + i2*{n.nb[2]} + i3*{n.nb[3]};"]
        tail = ["    }"]
        if a.type.blck > 1:     # same-type block rows, equal shapes
            row = n.type.row_bytes(ne[0])
            body = [f"        memcpy(o, {src}.data + i1*{a.nb[1]} + i2*{a.nb[2]} + i3*{a.nb[3]}, {row});"]
            return "\n".join(head + body + tail) + "\n"
        if n.op == "repeat":
            idx = [f"(i{d} % {a.ne[d]})" for d in (1, 2, 3)]
            srow = f"{src}.data + {idx[0]}*{a.nb[1]} + {idx[1]}*{a.nb[2]} + {idx[2]}*{a.nb[3]}"
            at = f"(i0 % {a.ne[0]})*{a.nb[0]}"
        elif a.ne == ne:
            srow = f"{src}.data + i1*{a.nb[1]} + i2*{a.nb[2]} + i3*{a.nb[3]}"
            at = f"i0*{a.nb[0]}"
        else:                   # equal element counts, other shape: flat row-major index into a
            srow = None
        body = []
        if srow is None:
            body.append(f"        const int64_t kb = ir * {ne[0]};")
        else:
            body.append(f"        const char *s = {srow};")
        body.append(f"        for (int64_t i0 = 0; i0 < {ne[0]}; i0++) {{")
        if srow is None:
            an = a.ne
            body.append(f"            const int64_t kk = kb + i0, j0 = kk % {an[0]}, j1 = (kk / {an[0]}) % {an[1]}, "
                        f"j2 = (kk / {an[0] * an[1]}) % {an[2]}, j3 = kk / {an[0] * an[1] * an[2]};")
            body.append(f"            const char *p = {src}.data + j0*{a.nb[0]} + j1*{a.nb[1]} + j2*{a.nb[2]} + j3*{a.nb[3]};")
        else:
            body.append(f"            const char *p = s + {at};")
        if a.type == n.type:
            body.append(f"            memcpy(o + i0*{n.nb[0]}, p, {n.type.size});")
        else:
            body.append(f"            gc_st_{n.type.name}(o + i0*{n.nb[0]}, gc_ld_{a.type.name}(p));")
        body.append("        }")
        return "\n".join(head + body + tail) + "\n"

    # library step ----------------------------------------------------------------------------------
    def _lib(self, st: Step, k, steps: list[Step]) -> str:
        n = st.nodes[0]
        op = n.op
        self.used_headers.add(self.lib.ops[op])
        pi = len(self.params)
        self.params.append(f"static const gc_p_{op} gc_P{pi} = {cparams.initializer(op, n.params)};")
        slots = list(n.src) + [None] * (len(OPS[op].srcs) - len(n.src))     # every slot, NULL when empty
        srcs = ", ".join(f"&{self.T(s)}" if s is not None else "NULL" for s in slots) or "NULL"
        d = self.T(n)
        src_decl = f"const gc_tensor *const src[{max(1, len(slots))}] = {{{srcs}}};"
        if op in self.lib.supports:
            self.checked.append(n)
            self._check_items.append((len(self.checked), op, d, srcs, len(slots), pi))
        if op in self.lib.scratch:
            self.scratch.append(f"{{ {src_decl.replace('T[', 'I->T[')} size_t s = gc_scratch_{op}(&I->{d}, src, &gc_P{pi}); "
                                f"if (s > need) need = s; }}")
        return f"    {src_decl}\n    gc_op_{op}(ctx, &{d}, src, &gc_P{pi}, ith, nth);\n"

    _check_items: list

    def _checks(self) -> list[str]:
        out = []
        for idx, op, d, srcs, nsrc, pi in self._check_items:
            s = srcs.replace("T[", "I->T[")
            out.append(f"{{ const gc_tensor *const src[{max(1, nsrc)}] = {{{s}}}; "
                       f"if (!gc_supports_{op}(&I->{d}, src, &gc_P{pi})) return {idx}; }}")
        return out


def generate(program: Program, lib: Library | None = None, gelu_table: bool = False,
             serial_work: int = SERIAL_WORK) -> Generated:
    g = Codegen(program, lib or Library.scan(), gelu_table, serial_work)
    g._check_items = []
    return g.generate()
