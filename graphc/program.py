"""What the pass pipeline hands to a target: the graph, its kernels in schedule order, and the memory plan.

A Kernel is one launch: one or more graph nodes fused together ("super-kernels"). Only a kernel's
`outputs` are materialised in memory; the nodes inside it that no other kernel reads stay in registers /
locals, which is what fusion saves. The ArenaPlan places every materialised intermediate root tensor at
an aligned offset of one arena; weights, inputs, outputs and state live in their own regions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Flag, Graph, Tensor
from .ops import get_op

# ops whose result only re-describes memory: no kernel work at all (cpy and set_rows write, so they are not here)
ALIAS_ONLY = frozenset({"view", "reshape", "permute", "transpose"})
ALIGN = 64   # bytes; every arena offset is a multiple (cache line, AVX-512 vector)


def root_of(t: Tensor) -> Tensor:
    return t.view_src if t.view_src is not None else t


@dataclass(eq=False)
class Kernel:
    name: str                     # synthesised identifier, e.g. k3_rms_norm_mul (never a tensor name)
    nodes: list[Tensor]           # graph nodes fused here, in execution order
    kind: str                     # elementwise | reduce | matmul | dequant_matmul | view | other
    outputs: list[Tensor] = field(default_factory=list)   # nodes whose values leave the kernel
    inputs: list[Tensor] = field(default_factory=list)    # tensors read from outside the kernel
    attrs: dict = field(default_factory=dict)   # kind-specific facts, e.g. dequant_matmul {"form": "gemv", "wtype": "q4_0"}

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


def region_of(t: Tensor) -> str:
    """Where a root tensor lives: weights / inputs / outputs / state regions persist; the rest is arena."""
    r = root_of(t)
    if r.flags & Flag.STATE:
        return "state"
    if r.is_leaf and r.flags & Flag.INPUT:
        return "inputs"
    if r.is_leaf:
        return "weights"          # params and constants: read-only, mapped from files where possible
    if r.flags & Flag.OUTPUT:
        return "outputs"
    return "arena"


def unfused(graph: Graph) -> Program:
    """One kernel per node (views included): the program before fusion."""
    kernels = []
    for i, n in enumerate(graph.nodes):
        kind = "view" if n.op in ALIAS_ONLY else get_op(n.op).kind
        kernels.append(Kernel(f"k{i}_{n.op}", [n], kind, [n], [s for s in n.src if s is not None]))
    return Program(graph, kernels)
