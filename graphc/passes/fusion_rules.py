"""What fusion may do with each node: its class (the op's class from graphc.ops, refined by what the node
does: a node that aliases memory writes, a registered elementwise custom op is elementwise), and the facts
a matmul super-kernel records.

Classes:
  view         alias-only ops (no work; they ride along with their consumer kernel)
  write        cpy / set_rows: write into another tensor's memory (KV cache stores); always their own kernel
  elementwise  result[i] depends only on the sources at i (broadcast sources allowed)
  reduce       row-wise (or wider) reductions and normalisations; take an elementwise prologue/epilogue
  matmul       mul_mat / out_prod; take an elementwise epilogue, never a prologue
  other        everything else (rope, get_rows, concat, attention, rwkv, ...): one per kernel
"""
from __future__ import annotations

from graphc.custom import get_custom_op
from graphc.errors import CompileError
from graphc.ir import Tensor
from graphc.ops import ALIAS_ONLY, can_repeat, get_op
from graphc.types import F32

# weight types whose blocks the dequant+matmul super-kernel reads directly (issue 4 point 5)
DEQUANT_TYPES = frozenset({"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_K", "q6_K"})
GEMV_MAX_COLS = 8   # activation columns (b.ne1*b.ne2*b.ne3) up to which the matrix-vector form is used


def op_class(n: Tensor) -> str:
    kind = get_op(n.op).kind
    if kind == "view":
        return "view"
    if kind == "write" or n.view_src is not None:
        return "write"               # any node that aliases memory and is not alias-only writes into it
    if n.op == "custom":
        return "elementwise" if _custom_elementwise(n) else "other"
    return kind


def _custom_elementwise(n: Tensor) -> bool:
    """A custom op registered elementwise=True whose sources all broadcast into its result."""
    try:
        op = get_custom_op(str(n.params.get("fn")))
    except CompileError:          # not registered (yet): nothing is known about it, so it fuses with nothing
        return False
    srcs = [s for s in n.src if s is not None]
    return bool(op.elementwise and srcs and all(can_repeat(s, n) for s in srcs))


def fusable_value(t: Tensor) -> bool:
    """A value that may stay inside a kernel (registers): f32, so keeping it unstored changes nothing."""
    return t.type == F32


def base_of(t: Tensor) -> Tensor:
    """The tensor an alias-only view chain reads: the first source that is not a view/reshape/permute/transpose."""
    while t.op in ALIAS_ONLY:
        t = t.src[0]
    return t


def matmul_attrs(n: Tensor) -> tuple[str, dict]:
    """(kind, attrs) of a kernel whose head is the matmul n."""
    if n.op != "mul_mat":
        return "matmul", {}
    w, b = n.src[0], n.src[1]
    cols = b.ne[1] * b.ne[2] * b.ne[3]
    attrs = {"form": "gemv" if cols <= GEMV_MAX_COLS else "gemm", "wtype": w.type.name, "cols": cols}
    return ("dequant_matmul" if w.type.name in DEQUANT_TYPES else "matmul"), attrs
