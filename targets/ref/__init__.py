"""The reference target: a numpy interpreter of graphc graphs with ggml's semantics. The oracle.

Memory is ggml's: every root tensor owns a zeroed byte buffer and views alias it (see graphc/runtime.py).
Nodes run in graph order; each computes from its sources' current values and stores its result into
its own memory, converted to its type. Op families: elementwise.py, reduce.py, matmul.py,
attention.py, rwkv.py, shape.py.

A graphc.program.Program runs kernel by kernel. With a memory plan, every arena tensor's buffer is a
view of ONE arena at its planned offset (so a wrong plan corrupts results), and the nodes of a kernel
that no kernel output roots compute into temporaries dropped after their kernel (so reading a fused
intermediate elsewhere fails). Without a plan, nodes run in kernel order with a buffer per root.

Options: quant_matmul = "ggml" (default) | "dequant" (see matmul.py); state_buffers = {state name: uint8 buffer}
shares state with another executable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphc.custom import get_custom_op
from graphc.errors import CompileError, RunError
from graphc.ir import Graph, Tensor
from graphc.program import Program, materialised, region_of
from graphc.quants import MUL_MAT_TYPES
from graphc.runtime import Memory, MemoryIO

from . import attention, collective, elementwise, matmul, reduce, rwkv, shape  # noqa: F401  (fill IMPLS)
from .registry import IMPLS

__all__ = ["RefExecutable", "compile", "evaluate"]

_OPTIONS = {"quant_matmul": matmul.MODES}


class Context:
    """What an op implementation sees: the memory and the options."""

    def __init__(self, mem: Memory, opts: dict[str, Any]):
        self.mem, self.opts = mem, opts

    def load(self, t: Tensor) -> np.ndarray:
        return self.mem.load(t)


class RefExecutable(MemoryIO):
    def __init__(self, graph: "Graph | Program", *, quant_matmul: str = "ggml",
                 state_buffers: "dict[str, np.ndarray] | None" = None):
        self.program = graph if isinstance(graph, Program) else None
        graph = graph.graph if isinstance(graph, Program) else graph
        self.graph = graph
        opts = {"quant_matmul": quant_matmul}
        for k, v in opts.items():
            if v not in _OPTIONS[k]:
                raise CompileError(f"ref target: option {k}={v!r} is not one of {_OPTIONS[k]}")
        for n in graph.nodes:
            if n.op not in IMPLS:
                raise CompileError(f"ref target: op {n.op!r} (tensor {n.name!r}) is not implemented")
            if n.op == "custom":
                get_custom_op(n.params["fn"])          # CompileError when not registered
            w = n.src[0] if n.op == "mul_mat" else None
            if quant_matmul == "ggml" and w is not None and w.type.name not in MUL_MAT_TYPES:
                raise CompileError(f"ref target: mul_mat {n.name!r} has {w.type.name} weights, whose ggml integer "
                                   "dot product is not implemented; compile with quant_matmul='dequant'")
        self.arena: np.ndarray | None = None
        self._in_arena: set[int] = set()          # roots backed by the arena: their bytes are reused
        self._temps: list[list[Tensor]] = []     # per kernel: roots that live only inside it
        self.mem = self._program_memory() if self.program is not None else Memory(graph)
        self._share_state(state_buffers)
        self._ctx = Context(self.mem, opts)
        self._bind_leaf_data()

    def _program_memory(self) -> Memory:
        """Memory for a Program: arena roots backed by one planned buffer, unmaterialised roots per kernel."""
        prog = self.program
        assert prog is not None
        mat = materialised(prog)
        self._temps = [[n for n in k.nodes if not n.is_view and id(n) not in mat] for k in prog.kernels]
        if prog.plan is None:
            return Memory(self.graph)
        arena_roots = {id(n): n for n in self.graph.nodes if not n.is_view and id(n) in mat and region_of(n) == "arena"}
        missing = [n.name for i, n in arena_roots.items() if i not in prog.plan.offsets]
        if missing:
            raise CompileError(f"ref target: the memory plan places no offset for {missing[0]!r}"
                               f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}")
        unbacked = set(arena_roots) | {id(n) for ts in self._temps for n in ts}
        mem = Memory(self.graph, unbacked)
        self.arena = np.zeros(prog.plan.size, dtype=np.uint8)
        self._in_arena = set(arena_roots)
        for i, n in arena_roots.items():
            off = prog.plan.offsets[i]
            if off < 0 or off + n.nbytes > prog.plan.size:
                raise CompileError(f"ref target: tensor {n.name!r} at arena offset {off} does not fit the "
                                   f"{prog.plan.size}-byte arena")
            mem.bind_external(n, self.arena[off:off + n.nbytes])
        return mem

    # --- running -----------------------------------------------------------------------------
    def run(self) -> None:
        if self.program is None:
            for n in self.graph.nodes:
                self._run_node(n)
            return
        planned = self.program.plan is not None
        for k, temps in zip(self.program.kernels, self._temps):
            if planned:      # values that never leave the kernel: scratch memory for its duration only
                for t in temps:
                    self.mem.bufs[id(t)] = np.zeros(t.nbytes, dtype=np.uint8)
            try:
                for n in k.nodes:
                    self._run_node(n)
            finally:
                if planned:
                    for t in temps:
                        self.mem.release(t)

    def _run_node(self, n: Tensor) -> None:
        try:
            out = IMPLS[n.op](self._ctx, n)
        except (RunError, CompileError):
            raise
        except Exception as e:  # a numpy failure inside an op: name the tensor
            raise RunError(f"ref target: op {n.op!r} of tensor {n.name!r} failed: {type(e).__name__}: {e}") from e
        if out is not None:
            self.mem.store(n, out)



def compile(graph: "Graph | Program", **opts: Any) -> RefExecutable:
    return RefExecutable(graph, **opts)


def evaluate(graph: Graph, leaf_values: dict[str, np.ndarray], **opts: Any) -> dict[str, np.ndarray]:
    """Test convenience: write leafs by name, run once, return every node's value (4-D) by name."""
    ex = RefExecutable(graph, **opts)
    for name, v in leaf_values.items():
        t = graph.get(name)
        if not t.is_leaf:
            raise RunError(f"{name!r} is a node, not a leaf")
        ex.write(t, v)
    ex.run()
    return {n.name: ex.read(n) for n in graph.nodes}
