"""The OpenCL printer: a LoweredProgram (graphc.codegen) -> the module's kernel source and its launch list.

  ew, copy  one generated __kernel per step (graphc.codegen.opencl prints it: the same lowered form the
            C target prints), a 2-D range (across a row, rows)
  lib       the library kernels of kernels/opencl/ (one shared program), launched as the op's launcher
            (targets/opencl/lib_*.py) says
  custom    a registered custom op's "opencl" kernel text is not supported (expression custom ops are
            elementwise steps and print like any other)
Kernel names are synthesised (k<kernel>_<step>); tensor names appear only in sanitised comments.
Kernels whose text is identical (the same layer shape repeated) are printed once and shared.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.codegen.lower import (CopyStep, CustomStep, EwStep, HostStep, LibStep, LoweredProgram, Unsupported, lower,
                                  op_label, unsupported)
from graphc.codegen.opencl import OpenCLStyle, args_of, helpers, range_of
from graphc.program import Program

from .device import Features
from .library import OPENCL_LIBRARY, Buf, Launch, LaunchCtx, launches


@dataclass
class Generated:
    source: str                      # the generated program ("" when every step is a library kernel)
    launches: list[Launch]
    buffers: list[str]               # the buffers the launches name (besides "scratch", "dummy")
    temp_size: int
    scratch_size: int
    low: LoweredProgram


def _comment(s: str) -> str:
    return "".join(c if c.isprintable() and c not in "*/\\" else "?" for c in s)[:63]


HOST = "host"         # the Launch.program of a host step (args: [the HostStep])


def _label(st) -> str:
    return f"{st.kind} {' '.join(op_label(n) for n in st.nodes)}"


def generate(program: Program, features: Features) -> Generated:
    """Lower a memory-planned Program for OpenCL; Unsupported (before any build) if an op has no kernel."""
    low = lower(program, OPENCL_LIBRARY)
    pr = OpenCLStyle()
    cx = LaunchCtx(low, features)
    texts: dict[str, str] = {}           # kernel body text -> its name (identical kernels printed once)
    kernels: list[str] = []
    out: list[Launch] = []
    for st in low.steps:
        if isinstance(st, (EwStep, CopyStep)):
            body = pr.kernel("KERNEL_NAME", st)
            name = texts.get(body)
            if name is None:
                name = texts[body] = st.name
                names = ", ".join(_comment(n.name) for n in st.nodes)
                kernels.append(f"/* {st.kind}: {names} */\n" + body.replace("KERNEL_NAME", name, 1))
            args = [x for r in args_of(st) for x in (Buf(low.args[r].buf), np.uint64(low.args[r].offset))]
            out.append(Launch(name, args, range_of(st), None, "gen", _label(st)))
        elif isinstance(st, LibStep):
            cx._scratch_used = 0
            for la in launches(st, cx):
                la.label = la.label or f"{_label(st)}: {la.kernel}"
                out.append(la)
        elif isinstance(st, HostStep):        # a collective: the host runs it between launches (in order)
            out.append(Launch(st.op, [st], (1,), None, HOST, _label(st)))
        elif isinstance(st, CustomStep):
            raise unsupported("opencl", "custom", st.nodes[0], f"custom function {st.fn!r}: OpenCL runs custom "
                              "ops given as expressions (register_custom_op(..., elementwise=True, "
                              "kernels={'expr': ...})) only")
        else:
            raise TypeError(st)
    source = helpers() + "\n" + "\n".join(kernels) if kernels else ""
    return Generated(source, out, low.buffers, low.temp_size, cx.scratch_need, low)


__all__ = ["HOST", "Generated", "Unsupported", "generate"]
