"""Planned Program -> LoweredProgram: the target-neutral form every compiled target prints.

Each kernel of the Program becomes one or more steps, run one after another (a target puts a barrier or
a launch boundary between them):
  EwStep    a run of fused elementwise nodes of one iteration shape: per element, the loads (with
            broadcast and strided indices), the body as expressions (graphc.codegen.expr, formulas from
            graphc.codegen.formulas) and the stores of the values that leave the step.
  CopyStep  same-type / float-to-float copies (cpy, and dup/cont/repeat of integer or block types).
  LibStep   a library kernel of the target (kernels/<target>/) for the main node, by op name.
  CustomStep a registered custom op's own kernel for this target.
  HostStep  a collective (all_reduce, all_gather: graphc/parallel.py) the host performs between steps.
Values that stay inside a kernel but cross a step (a reduction's prologue, a matmul's result read by its
epilogue) live in a per-program temporary buffer; kernel outputs live where the memory plan says.

The argument table (`args`) lists every tensor a step touches with its buffer ("arena", "temp" or
"root:<id(root)>" for weights, inputs, outputs and state) and byte offset; steps refer to rows of it.
Which ops a target implements as library kernels is the target's table (a Library), queried here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from graphc.custom import get_custom_op
from graphc.errors import CompileError
from graphc.ir import Tensor
from graphc.ops import ALIAS_ONLY, COLLECTIVES, OPS, can_repeat, kind_ops
from graphc.program import Kernel, Program, materialised, region_of, root_of

from .expr import Expr, Var
from .formulas import formula, has_formula

FLOAT_TYPES = ("f32", "f16", "bf16")
ALIGN = 64
ELEMENTWISE = kind_ops("elementwise")


class Unsupported(CompileError):
    """An op the target has no kernel for (raised before anything is built)."""


def unsupported(target: str, op: str, t: Tensor, why: str = "") -> Unsupported:
    return Unsupported(f"op {op} is not supported on target {target} yet (tensor {t.name!r}"
                       f"{': ' + why if why else ''})")


@dataclass(frozen=True)
class LibOp:
    """One library kernel of a target: where its text lives and which hooks it has."""
    op: str
    source: str                # the template/header file under kernels/<target>/
    supports: bool = False     # declines some types/shapes at load (a check the runtime calls)
    scratch: bool = False      # needs per-thread scratch memory


@dataclass
class Library:
    """Which ops a target runs as library kernels: the one table the lowering queries."""
    target: str
    ops: Mapping[str, LibOp]

    def has(self, op: str) -> bool:
        return op in self.ops


# --- lowered forms ------------------------------------------------------------------------------------

@dataclass
class Arg:
    """One row of the argument table: a tensor, the buffer it lives in and its byte offset there."""
    t: Tensor
    buf: str          # "arena" | "temp" | "root:<id(root)>"
    offset: int


@dataclass
class Load:
    var: str                   # the local the value is loaded into (x<j>)
    arg: int                   # row of the argument table
    type: str                  # f32 | f16 | bf16
    ne: tuple                  # the source's shape (broadcast where smaller than the step's)
    nb: tuple                  # its byte strides
    i0_add: int = 0            # read this many elements further along dim 0
    per_row: bool = False      # constant along dim 0 (ne0 == 1 broadcast): loaded once per row

    def index(self, d: int, space: tuple) -> str:
        """How dim d's index is formed: "i" (the step's), "mod" (broadcast by repetition) or "zero"."""
        if self.ne[d] == 1 and (d > 0 or space[0] != 1):
            return "zero"
        return "i" if self.ne[d] == space[d] else "mod"

    @property
    def contiguous_f32(self) -> bool:
        return self.type == "f32" and self.nb[0] == 4


@dataclass
class Store:
    arg: int
    type: str
    nb: tuple
    value: str                 # the body variable stored

    @property
    def contiguous_f32(self) -> bool:
        return self.type == "f32" and self.nb[0] == 4


@dataclass
class Step:
    nodes: list[Tensor]
    name: str = ""             # synthesised: k<kernel>_<step>
    kernel: int = 0
    work: int = 0              # rough element-operations (values read and written; products count K)

    kind = "?"


@dataclass
class EwStep(Step):
    space: tuple = ()                                   # the iteration shape ne
    loads: list[Load] = field(default_factory=list)
    body: list[tuple[str, Expr]] = field(default_factory=list)   # (v<k>, value), in order
    stores: list[Store] = field(default_factory=list)
    kind = "ew"


@dataclass
class CopyStep(Step):
    dst: int = 0
    src: int = 0
    mode: str = "same"         # rows (block types, equal shapes) | repeat | same (equal shapes) | flat
    convert: bool = False      # types differ (float to float)
    kind = "copy"


@dataclass
class LibStep(Step):
    op: str = ""
    dst: int = 0
    srcs: list = field(default_factory=list)            # arg rows, None for an empty slot (every slot)
    params: dict = field(default_factory=dict)
    lib: LibOp | None = None
    kind = "lib"


@dataclass
class CustomStep(Step):
    fn: str = ""               # the registered name (data, never an identifier)
    kernel_text: str = ""      # the registered kernel for this target
    dst: int = 0
    srcs: list = field(default_factory=list)
    kind = "custom"


@dataclass
class HostStep(Step):
    """A collective: the host reads arg `src`, runs graphc.parallel's op over the group and writes arg `dst`.
    `index` numbers the program's host steps in order (the id a target's host call passes back)."""
    op: str = ""
    dst: int = 0
    src: int = 0
    index: int = 0
    kind = "host"


@dataclass
class LoweredProgram:
    program: Program
    args: list[Arg]
    buffers: list[str]         # buffer i: "arena", "temp", "root:<id>", in first-use order
    temp_size: int
    steps: list[Step]
    checked: list[Tensor]      # nodes whose library kernel checks types/shapes at load (LibOp.supports)


# --- classification ------------------------------------------------------------------------------------

def is_copy(n: Tensor) -> bool:
    """Nodes a copy step handles: cpy between equal or float types; dup/cont/repeat of non-float types."""
    if n.op == "cpy":
        a, b = n.src[0], n
        same = a.type == b.type
        floats = a.type.name in FLOAT_TYPES and b.type.name in FLOAT_TYPES
        if same and a.type.blck > 1:
            return a.ne == b.ne
        return same or floats
    return n.op in ("dup", "cont", "repeat") and n.type.name not in FLOAT_TYPES


def is_ew(n: Tensor) -> bool:
    if n.op == "custom":
        op = get_custom_op(str(n.params.get("fn")))
        if not (op.elementwise and "expr" in op.kernels and all(s is None or can_repeat(s, n) for s in n.src)):
            return False
    elif not (n.op in ELEMENTWISE and has_formula(n.op)) or is_copy(n):
        return False
    return n.type.name in FLOAT_TYPES and all(s is None or s.type.name in FLOAT_TYPES for s in n.src)


def _custom_kernel(n: Tensor, target: str):
    op = get_custom_op(str(n.params.get("fn")))
    return op.kernels.get(target)


def work_of(nodes: list[Tensor]) -> int:
    """Rough element-operations: values read and written; products count their inner dimension; row
    gathers and scatters count only the rows they move."""
    total = 0
    for n in nodes:
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


def group_steps(nodes: list[Tensor], lib: Library) -> list[tuple[str, list[Tensor]]]:
    """A kernel's nodes as (kind, nodes) steps: consecutive elementwise nodes of one shape share a step."""
    steps: list[tuple[str, list[Tensor]]] = []
    for n in nodes:
        if n.op in ALIAS_ONLY:
            continue
        if is_ew(n):
            if steps and steps[-1][0] == "ew" and steps[-1][1][0].ne == n.ne:
                steps[-1][1].append(n)
            else:
                steps.append(("ew", [n]))
        elif is_copy(n):
            steps.append(("copy", [n]))
        elif n.op == "custom":
            if _custom_kernel(n, lib.target) is None:
                raise unsupported(lib.target, "custom", n, f"custom function {n.params.get('fn')!r} has no "
                                  f"{lib.target} kernel (register_custom_op(..., kernels={{{lib.target!r}: ...}}))")
            steps.append(("custom", [n]))
        elif n.op in COLLECTIVES:
            steps.append(("host", [n]))
        elif lib.has(n.op):
            steps.append(("lib", [n]))
        else:
            raise unsupported(lib.target, n.op, n)
    return steps


# --- the lowering --------------------------------------------------------------------------------------

class _Lowering:
    def __init__(self, program: Program, lib: Library):
        if program.plan is None:
            raise CompileError(f"target {lib.target} needs a memory-planned Program")
        self.p, self.lib = program, lib
        self.args: list[Arg] = []
        self.row: dict[int, int] = {}
        self.temp: dict[int, int] = {}      # id(root) -> offset in the temp buffer (current kernel)
        self.temp_size = 0
        self.mat = materialised(program)
        self.checked: list[Tensor] = []
        self.n_host = 0

    def arg(self, t: Tensor) -> int:
        i = self.row.get(id(t))
        if i is None:
            r = root_of(t)
            offs = t.view_offs if t.is_view else 0
            if id(r) in self.temp:
                a = Arg(t, "temp", self.temp[id(r)] + offs)
            elif region_of(r) == "arena":
                if id(r) not in self.mat or id(r) not in self.p.plan.offsets:
                    raise CompileError(f"target {self.lib.target}: tensor {t.name!r} has no memory "
                                       "(not materialised, not planned)")
                a = Arg(t, "arena", self.p.plan.offsets[id(r)] + offs)
            else:
                a = Arg(t, f"root:{id(r)}", offs)
            i = self.row[id(t)] = len(self.args)
            self.args.append(a)
        return i

    def lower(self) -> LoweredProgram:
        steps: list[Step] = []
        for ki, k in enumerate(self.p.kernels):
            if k.kind == "view":
                continue
            groups = group_steps(k.nodes, self.lib)
            self._place_temps(k, groups)
            for si, (kind, nodes) in enumerate(groups):
                st = {"ew": self._ew, "copy": self._copy, "lib": self._lib, "custom": self._custom,
                      "host": self._host}[kind](nodes)
                st.name, st.kernel, st.work = f"k{ki}_{si}", ki, work_of(nodes)
                steps.append(st)
        buffers = ["arena", "temp"]
        for a in self.args:
            if a.buf not in buffers:
                buffers.append(a.buf)
        return LoweredProgram(self.p, self.args, buffers, self.temp_size, steps, self.checked)

    def _place_temps(self, k: Kernel, groups) -> None:
        """Roots computed in this kernel that must be in memory but are not kernel outputs."""
        self.temp = {}
        step_of = {id(n): i for i, (_, nodes) in enumerate(groups) for n in nodes}
        users = _users_in(k)
        need: list[Tensor] = []
        for i, (kind, nodes) in enumerate(groups):
            for n in nodes:
                if id(root_of(n)) in self.mat or root_of(n) is not n:
                    continue
                if kind != "ew" or any(step_of.get(id(u)) not in (None, i) for u in users.get(id(n), ())):
                    need.append(n)
        off = 0
        for n in need:
            self.temp[id(n)] = off
            off += (n.nbytes + ALIGN - 1) // ALIGN * ALIGN
        self.temp_size = max(self.temp_size, off)

    def _ew(self, nodes: list[Tensor]) -> EwStep:
        st = EwStep(nodes, space=nodes[0].ne)
        inside: dict[int, str] = {}
        loads: dict[tuple[int, int], Var] = {}

        def load(s: Tensor, i0_add: int = 0) -> Expr:
            key = (id(s), i0_add)
            if key not in loads:
                ld = Load(f"x{len(loads)}", self.arg(s), s.type.name, s.ne, s.nb, i0_add,
                          per_row=s.ne[0] == 1 and st.space[0] != 1 and not i0_add)
                st.loads.append(ld)
                loads[key] = Var(ld.var)
            return loads[key]

        for n in nodes:
            def arg(slot: int, i0_add: int = 0, n=n) -> Expr:
                s = n.src[slot]
                if id(s) in inside and not i0_add:
                    return Var(inside[id(s)])
                return load(s, i0_add)
            v = f"v{len(st.body)}"
            st.body.append((v, formula(n, arg)))
            inside[id(n)] = v
        for n in nodes:
            if id(root_of(n)) in self.mat or id(n) in self.temp:
                st.stores.append(Store(self.arg(n), n.type.name, n.nb, inside[id(n)]))
        return st

    def _copy(self, nodes: list[Tensor]) -> CopyStep:
        n = nodes[0]
        a = n.src[0]
        if a.type.blck > 1:
            mode = "rows"
        elif n.op == "repeat":
            mode = "repeat"
        elif a.ne == n.ne:
            mode = "same"
        else:
            mode = "flat"         # equal element counts, other shape: a flat row-major index into a
        return CopyStep(nodes, dst=self.arg(n), src=self.arg(a), mode=mode, convert=a.type != n.type)

    def _lib(self, nodes: list[Tensor]) -> LibStep:
        n = nodes[0]
        lop = self.lib.ops[n.op]
        slots = list(n.src) + [None] * (len(OPS[n.op].srcs) - len(n.src))     # every slot, None when empty
        srcs = [self.arg(s) if s is not None else None for s in slots]
        st = LibStep(nodes, op=n.op, dst=self.arg(n), srcs=srcs, params=dict(n.params), lib=lop)
        if lop.supports:
            self.checked.append(n)
        return st

    def _custom(self, nodes: list[Tensor]) -> CustomStep:
        n = nodes[0]
        srcs = [self.arg(s) for s in n.src if s is not None]
        return CustomStep(nodes, fn=str(n.params.get("fn")), kernel_text=_custom_kernel(n, self.lib.target),
                          dst=self.arg(n), srcs=srcs)


    def _host(self, nodes: list[Tensor]) -> HostStep:
        n = nodes[0]
        self.n_host += 1
        return HostStep(nodes, op=n.op, dst=self.arg(n), src=self.arg(n.src[0]), index=self.n_host - 1)


def _users_in(k: Kernel) -> dict[int, list[Tensor]]:
    """id(node) -> the nodes of kernel k that read it (directly or through an alias-only view)."""
    users: dict[int, list[Tensor]] = {}
    for u in k.nodes:
        for s in u.src:
            if s is None:
                continue
            users.setdefault(id(s), []).append(u)
            if s.op in ALIAS_ONLY and root_of(s) is not s:
                users.setdefault(id(root_of(s)), []).append(u)
    return users


def lower(program: Program, lib: Library) -> LoweredProgram:
    """The lowered form of a memory-planned Program for a target whose library is `lib`;
    Unsupported (before anything is built) when a node has no kernel there."""
    return _Lowering(program, lib).lower()


def op_label(n: Tensor) -> str:
    return str(n.params["op"]) if n.op in ("unary", "glu") else n.op


__all__ = ["Arg", "CopyStep", "CustomStep", "EwStep", "HostStep", "LibOp", "LibStep", "Library", "Load",
           "LoweredProgram",
           "Step", "Store", "Unsupported", "is_copy", "is_ew", "lower", "op_label", "work_of"]
