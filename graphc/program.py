"""What the pass pipeline hands to a target: the graph, its kernels in schedule order, and the memory plan.

A Kernel is one launch: one or more graph nodes fused together ("super-kernels"). Only a kernel's
`outputs` are materialised in memory; the nodes inside it that no other kernel reads stay in registers /
locals, which is what fusion saves. The ArenaPlan places every materialised intermediate root tensor at
an aligned offset of one arena; weights, inputs, outputs and state live in their own regions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph, Tensor, role_of
from .ops import ALIAS_ONLY, get_op

__all__ = ["ALIAS_ONLY", "ALIGN", "ArenaPlan", "Kernel", "Program", "is_writer", "materialised", "region_of",
           "root_of", "unfused", "written_roots"]
ALIGN = 64   # bytes; every arena offset is a multiple (cache line, AVX-512 vector)


def root_of(t: Tensor) -> Tensor:
    return t.view_src if t.view_src is not None else t


def is_writer(t: Tensor) -> bool:
    """A node that stores into memory it does not own (cpy, set_rows): a view that is not alias-only."""
    return t.view_src is not None and t.op not in ALIAS_ONLY


def written_roots(nodes: "list[Tensor]") -> set[int]:
    """ids of the roots some node writes into (cpy/set/set_rows results are views of their destination)."""
    return {id(n.view_src) for n in nodes if is_writer(n)}


@dataclass(eq=False)
class Kernel:
    name: str                     # synthesised identifier, e.g. k3_rms_norm_mul (never a tensor name)
    nodes: list[Tensor]           # graph nodes fused here, in execution order
    kind: str                     # elementwise | reduce | matmul | dequant_matmul | view | other
    outputs: list[Tensor] = field(default_factory=list)   # nodes whose values leave the kernel
    inputs: list[Tensor] = field(default_factory=list)    # tensors read from outside the kernel
    # kind-specific facts, e.g. dequant_matmul {"form": "gemv", "wtype": "q4_0"}
    attrs: dict = field(default_factory=dict)

    @property
    def ops(self) -> list[str]:
        return [n.op if n.op not in ("unary", "glu") else str(n.params.get("op")) for n in self.nodes]


@dataclass
class ArenaPlan:
    offsets: dict[int, int]       # id(root tensor) -> byte offset in the arena (intermediates only)
    size: int                     # arena bytes
    lower_bound: int              # max bytes live at any step (liveness lower bound, before alignment)
    naive: int                    # sum of all intermediates' sizes (no reuse)
    inplace: dict[int, int] = field(default_factory=dict)   # id(tensor) -> id(source) whose memory it reuses
    align: int = ALIGN            # the alignment every offset was placed at (check_plan verifies it)


@dataclass
class Program:
    graph: Graph
    kernels: list[Kernel]
    plan: ArenaPlan | None = None
    log: list[str] = field(default_factory=list)   # what each pass did, for --dump and inspect

    def kernel_of(self) -> dict[int, Kernel]:
        return {id(n): k for k in self.kernels for n in k.nodes}


def materialised(program: Program) -> set[int]:
    """ids of the root tensors that exist in memory: the roots of every kernel output (the rest stay
    inside their kernel: registers or a kernel's temporaries)."""
    return {id(root_of(o)) for k in program.kernels for o in k.outputs}


def region_of(t: Tensor) -> str:
    """Where a root tensor lives: weights / inputs / outputs / state regions persist; the rest is arena."""
    regions = {"input": "inputs", "state": "state", "param": "weights", "constant": "weights",
               "output": "outputs", "intermediate": "arena"}   # weights: read-only, mapped from files where possible
    return regions[role_of(root_of(t))]


def unfused(graph: Graph) -> Program:
    """One kernel per node (views included): the program before fusion."""
    kernels = []
    for i, n in enumerate(graph.nodes):
        kind = get_op(n.op).kind
        kind = "other" if kind == "write" else kind
        kernels.append(Kernel(f"k{i}_{n.op}", [n], kind, [n], [s for s in n.src if s is not None]))
    return Program(graph, kernels)
