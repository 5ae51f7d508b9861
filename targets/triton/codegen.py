"""The Triton printer: a LoweredProgram (graphc.codegen) -> the module's generated kernels and its launches.

  ew        one @triton.jit kernel per step, printed by graphc.codegen.triton from the same lowered form
            the C and OpenCL printers print; identical kernel texts are printed once and shared
  copy      the library's copy kernels (kernels/triton/data.py: copy_convert, repeat), which take any
            shape and stride at run time
  lib       the library kernels of kernels/triton/, launched as the op's launcher (lib_*.py) says
  custom    registered custom ops with their own kernel text are not supported (expression custom ops are
            elementwise steps and print like any other)
Kernel names are synthesised (k<kernel>_<step>); tensor names appear only in sanitised comments.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphc.codegen.lower import (CopyStep, CustomStep, EwStep, HostStep, LibStep, LoweredProgram, Unsupported, lower,
                                  op_label)
from graphc.codegen.lower import unsupported
from graphc.codegen.triton import HEADER, TritonStyle, args_of
from graphc.program import Program

from . import tuning
from .library import TRITON_LIBRARY, Buf, Launch, LaunchCtx, launches, pow2
from .tuning import Tunable

EW_BLOCK = 1024


@dataclass
class Generated:
    source: str                      # the generated module ("" when every step is a library kernel)
    launches: list[Launch]
    buffers: list[str]               # the buffers the launches name (besides "dummy")
    temp_size: int
    low: LoweredProgram
    # nodes whose block sizes the GPU should measure (no cached choice): (first launch, launch count, options)
    to_tune: list[tuple[int, int, Tunable]] = field(default_factory=list)


def _comment(s: str) -> str:
    return "".join(c if c.isprintable() and c not in "\\" else "?" for c in s)[:63]


HOST = "host"         # the Launch.module of a host step (args: [the HostStep]); no kernel, no AOT build


def _label(st) -> str:
    return f"{st.kind} {' '.join(op_label(n) for n in st.nodes)}"


def _copy_launch(st: CopyStep, cx: LaunchCtx) -> Launch:
    n = st.nodes[0]
    a = n.src[0]
    args = cx.tensor(st.dst) + cx.tensor(st.src)
    rows = n.ne[1] * n.ne[2] * n.ne[3]
    if st.mode == "repeat":
        return Launch("lib:data", "repeat", (rows,), args,
                      dict(DT=n.type.id, AT=a.type.id, BLOCK=pow2(n.ne[0], 16, 1024)))
    width = n.type.row_bytes(n.ne[0]) if a.type.blck > 1 else n.ne[0]
    return Launch("lib:data", "copy_convert", (rows,), args,
                  dict(DT=n.type.id, AT=a.type.id, BLOCK=pow2(width, 16, 1024)))


def generate(program: Program, device, overrides: "dict | None" = None) -> Generated:
    """Lower a memory-planned Program for Triton; Unsupported (before anything runs) if an op has no kernel.
    A tunable node takes the option the tuning cache has for this GPU, else its default (and is listed in
    to_tune when the GPU can measure it). overrides: forced tile choices (lib_matmul.py)."""
    low = lower(program, TRITON_LIBRARY)
    pr = TritonStyle()
    cx = LaunchCtx(low, device, dict(overrides or {}))
    to_tune: list[tuple[int, int, Tunable]] = []
    tuned = tuning.choices(device)
    texts: dict[str, str] = {}           # kernel text -> its name (identical kernels printed once)
    kernels: list[str] = []
    out: list[Launch] = []
    for st in low.steps:
        if isinstance(st, EwStep):
            body = pr.kernel("KERNEL_NAME", st)
            name = texts.get(body)
            if name is None:
                name = texts[body] = st.name
                names = ", ".join(_comment(n.name) for n in st.nodes)
                kernels.append(f"# ew: {names!r}\n" + body.replace("KERNEL_NAME", name, 1))
            args = [x for r in args_of(st) for x in (Buf(low.args[r].buf), int(low.args[r].offset))]
            total = st.space[0] * st.space[1] * st.space[2] * st.space[3]
            if total:
                out.append(Launch("gen", name, ((total + EW_BLOCK - 1) // EW_BLOCK,), args,
                                  {"BLOCK": EW_BLOCK}, _label(st)))
        elif isinstance(st, CopyStep):
            if st.nodes[0].nelements:
                la = _copy_launch(st, cx)
                la.label = _label(st)
                out.append(la)
        elif isinstance(st, LibStep):
            res = launches(st, cx)
            if isinstance(res, Tunable):
                chosen = res.options.get(tuned.get(res.key, ""))
                if chosen is None:
                    chosen = res.options[res.default]
                    if device.mode == "cuda" and len(res.options) > 1:
                        to_tune.append((len(out), len(chosen), res))
                res = chosen
            for la in res:
                la.label = la.label or f"{_label(st)}: {la.kernel}"
                if all(la.grid):
                    out.append(la)
        elif isinstance(st, HostStep):        # a collective: the host runs it between launches, in stream order
            out.append(Launch(HOST, st.op, (1,), [st], {}, _label(st)))
        elif isinstance(st, CustomStep):
            raise unsupported("triton", "custom", st.nodes[0], f"custom function {st.fn!r}: Triton runs custom "
                              "ops given as expressions (register_custom_op(..., elementwise=True, "
                              "kernels={'expr': ...})) only")
        else:
            raise TypeError(st)
    source = HEADER + "\n\n".join(kernels) if kernels else ""
    return Generated(source, out, low.buffers, low.temp_size, low, to_tune)


__all__ = ["HOST", "Generated", "Unsupported", "generate"]
