"""The C target: one generated, compiled and cached translation unit per Program, run with one C call.

compile(program_or_graph, **opts) -> CExecutable, with ref's protocol (write / read / run / reset_state).
Memory (graphc/runtime.py, as ref): one 64-aligned arena of plan.size bytes holds every
planned intermediate; weights are the leafs' own buffers (read-only file mappings stay mapped, never
copied); inputs, outputs and state are persistent numpy buffers; values that cross steps inside a
kernel use one temporary buffer. C gets the base pointers once (gc_create) and keeps them.

Options: n_threads (default os.cpu_count()), march ("native"), openmp (True), extra_cflags (()),
sanitize (False: ASan+UBSan; loading needs libasan preloaded),
state_buffers (None: {state name: uint8 buffer} shares state with another executable), serial_work
(codegen.SERIAL_WORK: steps with less work run on thread 0 alone, no barrier between them; 0 splits all),
repack (True: q4_0 / q4_K matmul weights re-laid out in 8-row groups at load, targets/c/repack.py),
split_kernels (True: link to the shared, cached kernel library instead of compiling the kernels into the
program; targets/c/build.py), memory_check (None: graphc.compile(max_memory=) passes a function called with
the bytes beyond the memory plan, the temporaries and re-laid-out weight copies, before any build or buffer).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from graphc.errors import CompileError
from graphc.ir import Graph
from graphc.program import Program, materialised, region_of, root_of, unfused

from graphc.runtime import Memory, MemoryIO, elements_at

from . import build as cbuild
from . import repack as crepack
from .codegen import SERIAL_WORK, Generated, Unsupported, generate
from .emit_lib import emit_lib   # the function (the submodule stays importable via importlib)

__all__ = ["ACCEPTS_PROGRAM", "CExecutable", "check_requirements", "compile", "emit_lib", "generate_source",
           "supported"]

ACCEPTS_PROGRAM = True
ACCEPTS_MEMORY_CHECK = True     # compile(memory_check=fn): fn(bytes beyond the plan) before anything is allocated


def _as_program(what: "Graph | Program") -> Program:
    """A memory-planned Program: a Program is planned if it is not yet; a Graph runs as given, one kernel
    per node (graphc.compile(..., passes=False); graphc.compile runs the pass pipeline otherwise)."""
    from graphc.memplan import plan
    if isinstance(what, Graph):
        what = unfused(what)
    if not isinstance(what, Program):
        raise CompileError(f"target c compiles a Graph or a Program, got {type(what).__name__}")
    return what if what.plan is not None else plan(what)


def generate_source(what: "Graph | Program") -> Generated:
    """The generated C (and its memory layout) for a graph (through the pass pipeline, as graphc.compile
    does) or a Program; Unsupported if an op has no kernel."""
    if isinstance(what, Graph):
        from graphc.passes import run_pipeline
        what = run_pipeline(what)
    return generate(_as_program(what))


def supported(what: "Graph | Program") -> bool:
    try:
        generate_source(what)
    except Unsupported:
        return False
    return True


def _aligned_zeros(n: int, align: int = 64) -> np.ndarray:
    raw = np.zeros(n + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + n]


class CExecutable(MemoryIO):
    def __init__(self, what: "Graph | Program", *, n_threads: int | None = None, march: str = "native",
                 openmp: bool = True, extra_cflags: Sequence[str] = (), sanitize: bool = False,
                 state_buffers: "dict[str, np.ndarray] | None" = None,
                 serial_work: int = SERIAL_WORK, repack: bool = True, split_kernels: bool = True,
                 memory_check: Any = None):
        if n_threads is None:
            n_threads = os.cpu_count() or 1
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise CompileError(f"target c: n_threads must be a positive integer, got {n_threads!r}")
        if not isinstance(march, str) or any(c.isspace() for c in march):
            raise CompileError(f"target c: bad march {march!r}")
        if isinstance(extra_cflags, str):
            extra_cflags = extra_cflags.split()
        self.program = _as_program(what)
        self.graph = graph = self.program.graph
        self.n_threads = n_threads
        if isinstance(serial_work, bool) or not isinstance(serial_work, int) or serial_work < 0:
            raise CompileError(f"target c: serial_work must be an integer >= 0, got {serial_work!r}")
        relaid = crepack.eligible(graph) if repack else []
        self.relaid, self.serial_work = relaid, serial_work
        self.gen = generate(self.program, serial_work,           # Unsupported before any build
                            {id(t): crepack.C_TYPE[t.type.name] for t in relaid})
        if memory_check is not None:          # graphc.compile(max_memory=): before the build and any buffer
            memory_check({"temporaries": self.gen.temp_size, "re-laid-out weights": sum(t.nbytes for t in relaid)})
        self.built = cbuild.build(self.gen.source, march=march, openmp=openmp, sanitize=sanitize,
                                  extra_cflags=tuple(extra_cflags), split=bool(split_kernels))
        self._lib = cbuild.load(self.built)
        ffi = cbuild.ffi()

        # memory: ref's Memory for persistent roots; arena and temps are single buffers
        plan = self.program.plan
        mat = materialised(self.program)
        in_arena = {id(n) for n in graph.nodes if not n.is_view and region_of(n) == "arena"}
        arena_all = in_arena & mat          # the rest never leave their kernel (registers or temps)
        unbacked = in_arena
        self.mem = Memory(graph, unbacked)
        self._share_state(state_buffers)
        self.arena = _aligned_zeros(max(plan.size, 1))
        self.temp = _aligned_zeros(max(self.gen.temp_size, 1))
        self._in_arena = arena_all
        for n in graph.nodes:
            if id(n) in arena_all:
                off = plan.offsets.get(id(n))
                if off is None or off < 0 or off + n.nbytes > plan.size:
                    raise CompileError(f"target c: tensor {n.name!r} has no valid place in the {plan.size}-byte arena")
                self.mem.bind_external(n, self.arena[off:off + n.nbytes])
        self._bind_leaf_data()                                # weights: C reads file mappings in place
        # re-laid-out weights: only the C code sees them; reads (and emit_lib's weights pack) keep the file's bytes
        relaid_bufs = dict(zip((id(t) for t in relaid), crepack.relaid_all(relaid)))
        roots = {id(root_of(t)): root_of(t) for t in graph.tensors()}
        self._keep: list[Any] = list(relaid_bufs.values())
        self._buf_arrays: list[np.ndarray] = []
        ptrs = []
        for b in self.gen.buffers:
            if b == "arena":
                arr = self.arena
            elif b == "temp":
                arr = self.temp
            else:
                rid = int(b.split(":", 1)[1])
                arr = relaid_bufs[rid] if rid in relaid_bufs else self.mem.buffer(roots[rid])
            if arr.size == 0:
                arr = np.zeros(64, dtype=np.uint8)     # an empty tensor: any valid pointer
            self._buf_arrays.append(arr)
            cbuf = ffi.from_buffer("char[]", arr, require_writable=False)
            self._keep.append(cbuf)
            ptrs.append(ffi.cast("char *", cbuf))
        self._bufs = ffi.new("char *[]", ptrs)
        inst = self._lib.gc_create(self._bufs, n_threads)
        if inst == ffi.NULL:
            raise CompileError("target c: out of memory creating the instance")
        self._inst = ffi.gc(inst, self._lib.gc_destroy)
        self._host_error: "BaseException | None" = None
        if self.gen.host_steps:              # collectives: C calls back into _host_step between barriers
            self._host_cb = ffi.callback("int(int)", self._host_step)
            self._lib.gc_set_host(self._inst, self._host_cb)
        bad = self._lib.gc_check(self._inst)
        if bad:
            n = self.gen.checked[bad - 1]
            raise Unsupported(f"op {n.op} is not supported on target c yet (tensor {n.name!r}: the library "
                              f"declines its types/shapes: {n.type.name} {list(n.ne)} from "
                              f"{[s.type.name for s in n.src if s is not None]})")

    def run(self) -> None:
        self._lib.gc_run(self._inst)          # one call: every kernel, every thread
        if self._host_error is not None:      # a collective failed: what ran after it read garbage
            e, self._host_error = self._host_error, None
            raise e

    def _arg_array(self, row: int) -> np.ndarray:
        """Argument-table row `row` as a float32 numpy view (numpy order) of the memory C uses."""
        a = self.gen.entries[row]
        return elements_at(self._buf_arrays[self.gen.buffers.index(a.buf)], a.offset, a.t)

    def _host_step(self, index: int) -> int:
        """Host step `index` (a collective, graphc/parallel.py), called from C on thread 0 mid-run."""
        from graphc import parallel
        if self._host_error is not None:
            return 1                          # an earlier collective of this run failed: skip the rest
        try:
            st = self.gen.host_steps[index]
            x = np.array(self._arg_array(st.src), dtype=np.float32, order="C")
            self._arg_array(st.dst)[...] = parallel.collective(st.nodes[0], x)
        except BaseException as e:            # noqa: BLE001 -- nothing may unwind through C; run() raises it
            self._host_error = e
            return 1
        return 0

    def requirements(self) -> dict[str, Any]:
        """What an artifact of this module needs where it is loaded (graphc.api records it): the -march its
        code was built for and the CPU features that code may use (check_requirements)."""
        fl = self.built.flags
        march = next((f.split("=", 1)[1] for f in fl if f.startswith("-march=")), "")
        return {"march": march, "cpu_features": cbuild.required_features(cbuild.find_compiler().path, fl)}


def check_requirements(req: dict[str, Any], opts: dict[str, Any]) -> "str | None":
    """Why an artifact whose code needs `req` (CExecutable.requirements) cannot be loaded here with these
    options, or None. The C target rebuilds a loaded artifact: march "native" (or a march given at load)
    is built for this CPU; another march needs its CPU features here."""
    march = req.get("march", "native")
    features = req.get("cpu_features") or []
    if "march" in opts or march in ("native", "") or not isinstance(features, list):
        return None
    have = cbuild.host_features()
    missing = [f for f in features if isinstance(f, str) and have is not None and f not in have]
    if missing:
        return (f"compiled for -march={march}, whose code needs CPU features this CPU lacks: {', '.join(missing)}; "
                "load it with graphc.load(dir, march='native') to build it for this CPU")
    return None


def compile(what: "Graph | Program", **opts: Any) -> CExecutable:
    return CExecutable(what, **opts)
