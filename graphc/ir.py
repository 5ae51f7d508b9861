"""The IR: tensors and graphs in ggml's conventions.

Shapes are ggml order: ne[0] is innermost, nb[] are byte strides. A view aliases its root
source (`view_src`, never itself a view) at byte offset `view_offs`. Op names and parameters
are defined in graphc.ops; this module only holds the data.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .errors import GraphError
from .types import GGMLType, get_type

MAX_DIMS = 4
MAX_NAME = 64   # bytes, as GGML_MAX_NAME (including the NUL in ggml; we allow 63 bytes of text)
MAX_SRC = 10


class Flag(enum.IntFlag):
    NONE = 0
    INPUT = 1     # set by the user before each run
    OUTPUT = 2    # read by the user after each run, never overwritten by the planner
    PARAM = 4     # a weight: read-only, bound to a weights file or given at compile time
    STATE = 64    # persists between runs (KV cache, RNN state); reset by reset_state()


FLAG_NAMES = {Flag.INPUT: "input", Flag.OUTPUT: "output", Flag.PARAM: "param", Flag.STATE: "state"}

# A tensor's one role, the first rule that holds: fed by the user (input), kept between runs (state), a
# weight (param), any other leaf (constant), read by the user (output), else computed and dropped.
ROLES = ("input", "state", "param", "constant", "output", "intermediate")


def role_of(t: "Tensor") -> str:
    """The role of a tensor, one of ROLES (what a report groups it by and where its memory lives)."""
    if t.flags & Flag.INPUT:
        return "input"
    if t.flags & Flag.STATE:
        return "state"
    if t.flags & Flag.PARAM:
        return "param"
    if t.is_leaf:
        return "constant"
    if t.flags & Flag.OUTPUT:
        return "output"
    return "intermediate"


@dataclass(frozen=True)
class WeightRef:
    """Where a param tensor's data lives: a file (GGUF, safetensors, .npy/.npz) and a tensor name in it;
    optionally a slice of that tensor (a tensor-parallel shard, graphc.parallel): rows [r0, r1) of its
    ne[1] (contiguous bytes, read in place) and columns [c0, c1) of its ne[0] (whole quant blocks; copied)."""
    file: str
    tensor: str
    rows: "tuple[int, int] | None" = None
    cols: "tuple[int, int] | None" = None


def contiguous_strides(type_: GGMLType, ne: tuple[int, ...]) -> tuple[int, int, int, int]:
    nb0 = type_.size
    nb1 = nb0 * (ne[0] // type_.blck)
    nb2 = nb1 * ne[1]
    nb3 = nb2 * ne[2]
    return (nb0, nb1, nb2, nb3)


def nbytes(type_: GGMLType, ne: tuple[int, ...], nb: tuple[int, ...]) -> int:
    """ggml_nbytes: bytes spanned from the first to past the last element."""
    if any(n <= 0 for n in ne):
        return 0
    if type_.blck == 1:
        return type_.size + sum((ne[i] - 1) * nb[i] for i in range(MAX_DIMS))
    return ne[0] * nb[0] // type_.blck + sum((ne[i] - 1) * nb[i] for i in range(1, MAX_DIMS))


def n_dims(ne: tuple[int, ...]) -> int:
    """ggml_n_dims: 1 + index of the last dim with ne != 1 (at least 1; an empty dim counts)."""
    for i in range(MAX_DIMS - 1, 0, -1):
        if ne[i] != 1:
            return i + 1
    return 1


# --- The one place where ggml order meets numpy order ------------------------------------

def numpy_shape(ne: tuple[int, ...]) -> tuple[int, ...]:
    """numpy shape of a tensor: reversed ne without ggml's trailing 1-sized dims."""
    return tuple(reversed(ne[:n_dims(ne)]))


def full_numpy_shape(ne: tuple[int, ...]) -> tuple[int, int, int, int]:
    return (ne[3], ne[2], ne[1], ne[0])


def ne_from_numpy(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) > MAX_DIMS:
        raise ValueError(f"numpy shape {shape} has more than {MAX_DIMS} dims")
    ne = list(reversed([int(s) for s in shape])) + [1] * (MAX_DIMS - len(shape))
    return (ne[0], ne[1], ne[2], ne[3])


def pad_ne(ne: "tuple[int, ...] | list[int]") -> tuple[int, int, int, int]:
    ne = [int(n) for n in ne]
    if not 1 <= len(ne) <= MAX_DIMS:
        raise ValueError(f"a shape has 1 to {MAX_DIMS} dims, got {len(ne)}")
    ne += [1] * (MAX_DIMS - len(ne))
    return (ne[0], ne[1], ne[2], ne[3])


@dataclass(eq=False)
class Tensor:
    """A ggml tensor. Identity is object identity; names are free text and need not be unique."""
    name: str
    type: GGMLType
    ne: tuple[int, int, int, int]
    nb: tuple[int, int, int, int]
    op: str = "none"
    src: tuple["Tensor | None", ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    flags: Flag = Flag.NONE
    view_src: "Tensor | None" = None   # root tensor owning the memory (flattened, never a view)
    view_offs: int = 0                 # byte offset into view_src
    weight: WeightRef | None = None    # for PARAM leafs bound to a file
    data: np.ndarray | None = None     # raw bytes (uint8, nbytes long) of a constant or weight leaf

    # -- derived facts -----------------------------------------------------------------
    @property
    def is_leaf(self) -> bool:
        return self.op == "none"

    @property
    def is_view(self) -> bool:
        return self.view_src is not None

    @property
    def nbytes(self) -> int:
        return nbytes(self.type, self.ne, self.nb)

    @property
    def nelements(self) -> int:
        return self.ne[0] * self.ne[1] * self.ne[2] * self.ne[3]

    @property
    def is_contiguous(self) -> bool:
        return self.nb == contiguous_strides(self.type, self.ne)

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy shape (reversed ne, trailing 1s dropped)."""
        return numpy_shape(self.ne)

    def has(self, flag: Flag) -> bool:
        return bool(self.flags & flag)

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.type.name}, ne={list(self.ne)}, op={self.op})"


def new_tensor(name: str, type_: "str | GGMLType", ne, flags: Flag = Flag.NONE, **kw: Any) -> Tensor:
    """A fresh contiguous leaf (ggml_new_tensor)."""
    t = get_type(type_)
    ne4 = pad_ne(ne)
    if any(n < 0 for n in ne4):
        raise GraphError(f"negative dimension in {list(ne4)}", name, "shape")
    if ne4[0] % t.blck:
        raise GraphError(f"{t.name} needs ne0 divisible by {t.blck}, got {ne4[0]}", name, "block size")
    return Tensor(name=name, type=t, ne=ne4, nb=contiguous_strides(t, ne4), flags=flags, **kw)


@dataclass(eq=False)
class Graph:
    """Leafs (op none: inputs, weights, constants, state) and nodes in execution order."""
    name: str = ""
    leafs: list[Tensor] = field(default_factory=list)
    nodes: list[Tensor] = field(default_factory=list)

    def tensors(self) -> Iterator[Tensor]:
        yield from self.leafs
        yield from self.nodes

    def copy(self) -> "Graph":
        """A structural copy whose tensors can be changed (params copied; data arrays shared, never copied)."""
        import dataclasses
        new = {id(t): dataclasses.replace(t, params=dict(t.params)) for t in self.tensors()}
        for t in new.values():
            t.src = tuple(None if s is None else new.get(id(s), s) for s in t.src)
            if t.view_src is not None:
                t.view_src = new.get(id(t.view_src), t.view_src)
        return Graph(self.name, [new[id(t)] for t in self.leafs], [new[id(t)] for t in self.nodes])

    def _with(self, flag: Flag) -> list[Tensor]:
        return [t for t in self.tensors() if t.flags & flag]

    @property
    def inputs(self) -> list[Tensor]:
        return self._with(Flag.INPUT)

    @property
    def outputs(self) -> list[Tensor]:
        return self._with(Flag.OUTPUT)

    @property
    def params(self) -> list[Tensor]:
        return self._with(Flag.PARAM)

    @property
    def state(self) -> list[Tensor]:
        return self._with(Flag.STATE)

    def get(self, name: str) -> Tensor:
        found = [t for t in self.tensors() if t.name == name]
        if not found:
            raise KeyError(f"graph {self.name!r} has no tensor named {name!r}")
        if len(found) > 1:
            raise KeyError(f"graph {self.name!r} has {len(found)} tensors named {name!r}")
        return found[0]

    def __contains__(self, name: str) -> bool:
        return any(t.name == name for t in self.tensors())

    def consumers(self, slots: bool = False) -> dict[Tensor, list]:
        """Every tensor -> the nodes that read it, in graph order, once per source slot that names it;
        with slots=True as (node, slot index) pairs."""
        users: dict[Tensor, list] = {t: [] for t in self.tensors()}
        for n in self.nodes:
            for j, s in enumerate(n.src):
                if s is not None and s in users:
                    users[s].append((n, j) if slots else n)
        return users

    def to_networkx(self):
        import networkx as nx
        g = nx.DiGraph()
        for t in self.tensors():
            g.add_node(id(t), tensor=t)
        for n in self.nodes:
            for j, s in enumerate(n.src):
                if s is not None:
                    g.add_edge(id(s), id(n), slot=j)
        return g

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for n in self.nodes:
            key = n.op if n.op not in ("unary", "glu") else f"{n.op}:{n.params.get('op')}"
            hist[key] = hist.get(key, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.leafs)} leafs, {len(self.nodes)} nodes)"
