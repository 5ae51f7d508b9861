"""The C printer: a LoweredProgram (graphc.codegen) -> one C translation unit (kernels/c/program.c.j2).

Every step becomes a function `k<kernel>_<step>(ctx, T, ith, nth)` run by every thread with a barrier
between steps (steps too small to split run on thread 0 back to back: SERIAL_WORK):
  ew     graphc.codegen.cstyle prints the loop nest and the expression body (shapes and strides are
         compile-time constants, so the inner loop of contiguous f32 operands vectorises)
  copy   same-type / float-to-float copies, printed here
  lib    a call of the library kernel gc_op_<op> (kernels/c/*.h; graphc.h has the contract) with its
         parameter struct (graphc_params.h)
  custom a registered custom op's C function body, wrapped in a function with a synthesised name
  host   a collective: thread 0 calls the host back (ctx->host, set by gc_set_host) between barriers
Tensor names appear only in escaped comments; T[i] is row i of the argument table.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jinja2

from graphc.codegen.cstyle import CStyle
from graphc.codegen.lower import (Arg, CopyStep, CustomStep, EwStep, HostStep, LibStep, LoweredProgram, Step,
                                  Unsupported, lower, op_label)
from graphc.program import Program

from . import params as cparams
from .library import C_LIBRARY

KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "c"

__all__ = ["KERNELS", "SERIAL_WORK", "Generated", "Unsupported", "generate", "print_program"]

# Steps with less work than this (about element operations) run on thread 0 alone: a barrier costs more
# than splitting them saves, and a run of them needs no barrier at all.
SERIAL_WORK = 1 << 16


@dataclass
class Generated:
    source: str
    entries: list[Arg]               # the argument table (T[i])
    temp_size: int
    checked: list                    # nodes gc_check() tests, in order (index + 1 is what it returns)
    headers: list[str]
    buffers: list[str]               # buffer i of gc_create's bufs: "arena", "temp", "root:<id(root)>"
    host_steps: list[HostStep]       # the collectives, by HostStep.index (the host performs them)


def _c_comment(s: str) -> str:
    """A tensor name made safe inside /* */ (names are free text and never become code)."""
    return "".join(c if c.isprintable() and c not in "*/\\" else "?" for c in s)[:63]


def _serial_group(calls: list[str]) -> str:
    return "if (ith == 0) {\n" + "".join(f"            {c}\n" for c in calls) + "        }"


def _indent(lines: list[str]) -> str:
    return "".join(f"    {s}\n" for s in lines)


class CPrinter(CStyle):
    def __init__(self, low: LoweredProgram, serial_work: int = SERIAL_WORK, retype: "dict[int, int] | None" = None):
        self.low, self.serial_work = low, serial_work
        self.retype = retype or {}       # id(tensor) -> the C type id it is stored as (targets/c/repack.py)
        self.params: list[str] = []
        self.scratch: list[str] = []
        self.checks: list[str] = []
        self.headers: set[str] = set()

    @staticmethod
    def T(i: int) -> str:
        return f"T[{i}].data"

    # steps ----------------------------------------------------------------------------------------
    def step(self, st: Step) -> str:
        if isinstance(st, EwStep):
            return "    (void)ctx;\n" + _indent(self.ew_loop(st, self.T))
        if isinstance(st, CopyStep):
            return self.copy(st)
        if isinstance(st, LibStep):
            return self.lib(st)
        if isinstance(st, CustomStep):
            return self.custom(st)
        if isinstance(st, HostStep):       # the host reads and writes the tensors (T rows: comments only)
            return (f"    /* {st.op}: T[{st.src}] -> T[{st.dst}] */\n    (void)T; (void)nth;\n"
                    f"    if (ith == 0) ctx->host({st.index});\n")
        raise TypeError(st)

    def copy(self, st: CopyStep) -> str:
        return "    (void)ctx;\n" + _indent(self.copy_loop(st, self.T))

    def _src_array(self, srcs: list, prefix: str = "") -> str:
        items = ", ".join(f"&{prefix}T[{i}]" if i is not None else "NULL" for i in srcs) or "NULL"
        return f"const gc_tensor *const src[{max(1, len(srcs))}] = {{{items}}};"

    def lib(self, st: LibStep) -> str:
        op = st.op
        self.headers.add(st.lib.source)
        pi = len(self.params)
        self.params.append(f"static const gc_p_{op} gc_P{pi} = {cparams.initializer(op, st.params)};")
        if st.lib.supports:
            idx = next(i for i, c in enumerate(self.low.checked) if c is st.nodes[0]) + 1
            self.checks.append(f"{{ {self._src_array(st.srcs, 'I->')} "
                               f"if (!gc_supports_{op}(&I->T[{st.dst}], src, &gc_P{pi})) return {idx}; }}")
        if st.lib.scratch:
            self.scratch.append(f"{{ {self._src_array(st.srcs, 'I->')} size_t s = gc_scratch_{op}(&I->T[{st.dst}], "
                                f"src, &gc_P{pi}); if (s > need) need = s; }}")
        return f"    {self._src_array(st.srcs)}\n    gc_op_{op}(ctx, &T[{st.dst}], src, &gc_P{pi}, ith, nth);\n"

    def custom(self, st: CustomStep) -> str:
        """The registered body runs as gc_custom(ctx, dst, src, n_src, ith, nth) would: see docs/custom-ops.md."""
        return (f"    {self._src_array(st.srcs)}\n    const gc_tensor *dst = &T[{st.dst}];\n"
                f"    const int n_src = {len(st.srcs)};\n    (void)ctx; (void)dst; (void)src; (void)n_src; "
                f"(void)ith; (void)nth;\n    {{\n{st.kernel_text.rstrip()}\n    }}\n")

    # the translation unit --------------------------------------------------------------------------
    def program(self) -> Generated:
        low = self.low
        funcs, calls, serial = [], [], []
        parallel = False                 # any step split over the threads (else gc_run opens no thread team)
        for st in low.steps:
            names = ", ".join(_c_comment(n.name) for n in st.nodes)
            funcs.append(f"/* kernel {st.kernel} step {st.name.split('_')[-1]}: {st.kind} "
                         f"{' '.join(op_label(n) for n in st.nodes)} ({names}) */\n"
                         f"static void {st.name}(const gc_ctx *ctx, const gc_tensor *T, int ith, int nth) {{\n"
                         f"{self.step(st)}}}\n")
            if st.work < self.serial_work:
                serial.append(f"{st.name}(ctx, T, 0, 1);")
                continue
            if serial:
                calls.append(_serial_group(serial))
                serial = []
            calls.append(f"{st.name}(ctx, T, ith, nth);")
            parallel = True
        if serial:
            calls.append(_serial_group(serial))
        table = [f"    {{NULL, {{{', '.join(map(str, a.t.ne))}}}, {{{', '.join(map(str, a.t.nb))}}}, "
                 f"{self.retype.get(id(a.t), a.t.type.id)}}}, "
                 f"/* {_c_comment(a.t.name)} */" for a in low.args]
        bufs = ", ".join(str(low.buffers.index(a.buf)) for a in low.args) or "0"
        offs = ", ".join(str(a.offset) for a in low.args) or "0"
        headers = sorted(self.headers)
        src = _template().render(headers=headers, params=self.params, funcs=funcs, calls=calls, table=table,
                                 parallel=parallel, n_tensors=len(low.args), scratch=self.scratch,
                                 checks=self.checks, bufs=bufs, offs=offs)
        return Generated(src, low.args, low.temp_size, low.checked, headers, low.buffers,
                         [st for st in low.steps if isinstance(st, HostStep)])


@functools.lru_cache(maxsize=None)
def template(name: str) -> "jinja2.Template":
    """A template of kernels/c/ (our own files: a plain environment; no text from a graph reaches one)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(KERNELS)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    return env.get_template(name)


def _template():
    return template("program.c.j2")


def print_program(low: LoweredProgram, serial_work: int = SERIAL_WORK,
                  retype: "dict[int, int] | None" = None) -> Generated:
    return CPrinter(low, serial_work, retype).program()


def generate(program: Program, serial_work: int = SERIAL_WORK, retype: "dict[int, int] | None" = None) -> Generated:
    """Lower a memory-planned Program for the C target and print it; Unsupported before any build.
    retype: {id(tensor): C type id} for tensors stored in another layout than their type's."""
    return print_program(lower(program, C_LIBRARY), serial_work, retype)
