"""The OpenCL target: generated OpenCL C over one arena buffer, library kernels, run through pyopencl.

compile(program_or_graph, device=None) -> OpenCLExecutable, with ref's protocol (write / read / run /
reset_state). Device memory: ONE arena buffer for every planned intermediate (tensors are byte offsets in
it, passed as kernel arguments), one temporary and one scratch buffer, and a buffer per persistent root:
weights uploaded once per device (a read-only file mapping is shared by every module on the device),
inputs, outputs and state. The host keeps a mirror of each persistent root (graphc.runtime.Memory);
a mirror is copied to the device only when the host changed it (an input written, state reset) and back
only when the host reads it (an output, state), so state stays on the device between runs.

Options: device (None: GRAPHC_OPENCL_DEVICE, else the first GPU, else the first device; see device.py),
profile (False: True times every kernel of each run with OpenCL events; `profile()` sums them by label),
state_buffers (share_state: another OpenCL executable's state mirrors, by name; same device).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.errors import CompileError, RunError
from graphc.ir import Flag, Graph, Tensor
from graphc.memplan import planned
from graphc.program import Program, root_of
from graphc.runtime import MemoryIO, elements_at

from . import build as clbuild
from .codegen import HOST, Generated, Unsupported, generate
from .device import DeviceContext, context_for, list_devices
from .library import Buf, library_source

__all__ = ["ACCEPTS_PROGRAM", "OpenCLExecutable", "compile", "generate_source", "list_devices", "supported"]

ACCEPTS_PROGRAM = True


def _as_program(what: "Graph | Program") -> Program:
    return planned(what, "opencl")


def generate_source(what: "Graph | Program", device: "int | str | None" = None) -> Generated:
    """The generated kernels and launches for a graph (through the pass pipeline) or a Program."""
    if isinstance(what, Graph):
        from graphc.passes import run_pipeline
        what = run_pipeline(what)
    return generate(_as_program(what), context_for(device).features)


def supported(what: "Graph | Program", device: "int | str | None" = None) -> bool:
    try:
        generate_source(what, device)
    except Unsupported:
        return False
    return True


@dataclass
class Mirror:
    """A persistent root's host bytes and device buffer, and which side is newer."""
    host: np.ndarray
    dev: Any
    host_dirty: bool = True          # the host changed it: copy to the device before the next run
    dev_newer: bool = False          # a run wrote it: copy to the host before the host reads it
    constant: bool = False           # a weight: never written by a run


class OpenCLExecutable(MemoryIO):
    def __init__(self, what: "Graph | Program", *, device: "int | str | None" = None, profile: bool = False,
                 state_buffers: "dict[str, Mirror] | None" = None):
        self.program = _as_program(what)
        self.graph = graph = self.program.graph
        self.dc: DeviceContext = context_for(device)
        dc, cl = self.dc, self.dc.cl
        self.gen = gen = generate(self.program, dc.features)      # Unsupported before any build
        progs = {}
        for name in dict.fromkeys(la.program for la in gen.launches if la.program != HOST):
            if name == "gen":
                progs[name] = clbuild.build(dc, gen.source, f"the generated kernels of graph {graph.name!r}")
            else:
                f = name.split(":", 1)[1]
                progs[name] = clbuild.build(dc, library_source(f), f"kernels/opencl/{f}.cl")

        # host side: mirrors of persistent roots (no host copy of the arena)
        plan = self.program.plan

        def mirror(r: Tensor, constant: bool) -> Mirror:
            host = self.mem.buffer(r)
            if constant:                 # a weight: mapped read-only where the host data is, uploaded once
                dev = dc.weight_buffer(host) if not host.flags.writeable else \
                    dc.buffer(r.nbytes, read_only=True, host=host)
                return Mirror(host, dev, host_dirty=False, constant=True)
            return Mirror(host, dc.buffer(r.nbytes))
        self._bind_device_roots(self.program, gen.buffers, state_buffers or {}, mirror, Mirror, "OpenCL")

        bufs = {"arena": dc.buffer(plan.size), "temp": dc.buffer(gen.temp_size),
                "scratch": dc.buffer(gen.scratch_size), "dummy": dc.buffer(64)}
        bufs.update({f"root:{i}": m.dev for i, m in self.mirrors.items()})
        self._bufs = bufs
        self._queue = dc.queue
        self._times: dict[str, list[float]] = {}
        if profile:                      # a queue of its own that records when each kernel ran
            self._queue = cl.CommandQueue(dc.context, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self._profile = bool(profile)
        self._calls = []
        self._limits: dict[tuple[str, str], tuple[int, int]] = {}
        for la in gen.launches:
            if la.program == HOST:
                self._calls.append((la.args[0], None, None, la.label))
                continue
            if 0 in la.global_size:
                continue
            k = cl.Kernel(progs[la.program], la.kernel)
            self._check_limits(k, la)
            k.set_args(*[bufs[a.name] if isinstance(a, Buf) else a for a in la.args])
            self._calls.append((k, la.global_size, la.local_size, la.label))

    def _host_step(self, st: Any) -> None:
        """A collective (graphc/parallel.py) between launches: read its source (the in-order queue has run
        what came before), run it over the process group, write its result back."""
        from graphc import parallel
        cl, q, args = self.dc.cl, self._queue, self.gen.low.args
        src, dst = args[st.src], args[st.dst]
        t = src.t
        span = np.empty(t.nbytes, np.uint8)
        cl.enqueue_copy(q, span, self._bufs[src.buf], src_offset=src.offset, is_blocking=True)
        x = elements_at(span, 0, t)
        y = np.ascontiguousarray(parallel.collective(st.nodes[0], np.array(x, np.float32, order="C")))
        # a collective's result is a fresh contiguous tensor (ops.all_reduce / all_gather): one span
        cl.enqueue_copy(q, self._bufs[dst.buf], y.view(np.uint8).reshape(-1), dst_offset=dst.offset, is_blocking=True)

    def _check_limits(self, k: Any, la: Any) -> None:
        """The device's limits for this compiled kernel (work-group size, local memory), checked at load
        so that a device too small for a kernel is a clear error, not a failed launch."""
        cl, dev, f = self.dc.cl, self.dc.device, self.dc.features
        key = (la.program, la.kernel)
        if key not in self._limits:
            self._limits[key] = (int(k.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, dev)),
                                 int(k.get_work_group_info(cl.kernel_work_group_info.LOCAL_MEM_SIZE, dev)))
        wg, lm = self._limits[key]
        want = int(np.prod(la.local_size)) if la.local_size else 1
        if want > wg or lm > f.local_mem:
            raise CompileError(f"target opencl: kernel {la.kernel} ({la.label}) needs work-groups of {want} and "
                               f"{lm} bytes of local memory; {f.name} allows {wg} and {f.local_mem} for it. "
                               f"Choose another device (graphc devices)")

    # --- host <-> device --------------------------------------------------------------------------
    def profile(self) -> list[tuple[str, int, float]]:
        """(label, launches, seconds) summed over the runs since compile (profile=True), slowest first."""
        rows = [(label, len(ts), sum(ts)) for label, ts in self._times.items()]
        return sorted(rows, key=lambda r: -r[2])

    def _to_host(self, t: Tensor) -> None:
        m = self.mirrors.get(id(root_of(t)))
        if m is not None and m.dev_newer:
            self.dc.cl.enqueue_copy(self._queue, m.host, m.dev, is_blocking=True)
            m.dev_newer = False

    def write(self, t: Tensor, values: np.ndarray) -> None:
        self._to_host(t)
        super().write(t, values)
        m = self.mirrors.get(id(root_of(t)))
        if m is not None:
            m.host_dirty = True

    def read(self, t: Tensor) -> np.ndarray:
        self._check_persistent(t)
        self._to_host(t)
        return super().read(t)

    def run(self) -> None:
        cl, q = self.dc.cl, self._queue
        for m in self.mirrors.values():
            if m.host_dirty:
                if m.dev_newer:
                    raise RunError("internal: a buffer changed on both the host and the device")
                if m.host.nbytes:
                    cl.enqueue_copy(q, m.dev, m.host, is_blocking=True)
                m.host_dirty = False
        try:
            events = []
            for k, g, lsz, label in self._calls:
                if g is None:
                    self._host_step(k)
                else:
                    events.append((label, cl.enqueue_nd_range_kernel(q, k, g, lsz)))
            q.finish()
            if self._profile:
                for label, ev in events:
                    self._times.setdefault(label, []).append((ev.profile.end - ev.profile.start) * 1e-9)
        except cl.Error as e:
            raise RunError(f"target opencl: running graph {self.graph.name!r} failed on "
                           f"{self.dc.features.name}: {e}") from None
        for m in self._written:
            m.dev_newer = True

    def reset_state(self) -> None:
        for t in self.graph.leafs:
            if t.flags & Flag.STATE:
                self.mem.buffer(t)[...] = 0
                m = self.mirrors.get(id(t))
                if m is not None:
                    m.dev_newer = False
                    m.host_dirty = True

    def state_buffers(self) -> dict[str, Any]:
        """The state mirrors by name (what share_state hands to another OpenCL executable)."""
        out = {}
        for t in self.graph.leafs:
            if t.flags & Flag.STATE:
                m = self.mirrors.get(id(t))
                if m is None:            # state no kernel touches: give it a device buffer to share
                    m = self.mirrors[id(t)] = Mirror(self.mem.buffer(t), self.dc.buffer(t.nbytes))
                out[t.name] = m
        return out


def compile(what: "Graph | Program", **opts: Any) -> OpenCLExecutable:
    return OpenCLExecutable(what, **opts)
