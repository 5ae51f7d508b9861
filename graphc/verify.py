"""The IR verifier: every rule a graph must keep, each failure a GraphError naming tensor and rule."""
from __future__ import annotations

from . import ops
from .errors import GraphError
from .ir import MAX_DIMS, MAX_NAME, MAX_SRC, Flag, Graph, Tensor, contiguous_strides

MAX_ELEMENTS = 1 << 42        # sane bound on one tensor (4 Ti elements); rejects overflowing shapes
LEAF_ONLY = Flag.INPUT | Flag.PARAM | Flag.STATE


def verify(graph: Graph) -> Graph:
    """Check `graph`; return it unchanged or raise GraphError."""
    seen: set[int] = set()
    names: dict[str, Tensor] = {}
    for t in graph.leafs:
        check_tensor(t)
        if not t.is_leaf:
            raise GraphError(f"is in the leaf list but has op {t.op}", t.name, "leaf")
        if t.src or t.is_view:
            raise GraphError("a leaf has no sources and is not a view", t.name, "leaf")
        if t.data is not None and (t.data.dtype.itemsize != 1 or t.data.nbytes != t.nbytes):
            raise GraphError(f"leaf data holds {t.data.nbytes} bytes, the tensor needs {t.nbytes}", t.name, "data size")
        if id(t) in seen:
            raise GraphError("appears twice in the graph", t.name, "unique")
        seen.add(id(t))
    for t in graph.nodes:
        check_tensor(t)
        if t.is_leaf:
            raise GraphError("is in the node list but has no op", t.name, "node")
        if t.flags & LEAF_ONLY:
            raise GraphError("only leafs can be inputs, params or state", t.name, "flags")
        if id(t) in seen:
            raise GraphError("appears twice in the graph", t.name, "unique")
        for j, s in enumerate(t.src):
            if s is not None and id(s) not in seen:
                raise GraphError(f"source {j} ({s.name!r}) is not an earlier tensor of the graph "
                                 "(dangling source or cycle)", t.name, "topological order")
        _check_node(t)
        seen.add(id(t))
    for t in graph.tensors():
        if t.flags & (Flag.INPUT | Flag.OUTPUT | Flag.PARAM | Flag.STATE):
            other = names.setdefault(t.name, t)
            if other is not t:
                raise GraphError("inputs, outputs, params and state need unique names", t.name, "unique name")
    for t in graph.nodes:
        if t.is_view and id(t.view_src) not in seen:
            raise GraphError(f"views {t.view_src.name!r}, which is not in the graph", t.name, "view source")
    return graph


def check_tensor(t: Tensor) -> None:
    """The rules one tensor keeps on its own (name, shape, strides, sources count); GraphError if not."""
    if not isinstance(t.name, str) or "\0" in t.name or len(t.name.encode("utf-8", "surrogatepass")) >= MAX_NAME \
            or any(0xD800 <= ord(c) <= 0xDFFF for c in t.name):
        raise GraphError(f"name must be text (UTF-8, no lone surrogates) of at most {MAX_NAME - 1} bytes without NUL",
                         str(t.name)[:80], "name")
    if len(t.ne) != MAX_DIMS or len(t.nb) != MAX_DIMS:
        raise GraphError("ne and nb need 4 entries", t.name, "shape")
    if any((not isinstance(n, int)) or n < 0 for n in t.ne):
        raise GraphError(f"bad dims {list(t.ne)}", t.name, "shape")
    if t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3] > MAX_ELEMENTS:
        raise GraphError(f"{list(t.ne)} has more than {MAX_ELEMENTS} elements", t.name, "size limit")
    if t.ne[0] % t.type.blck:
        raise GraphError(f"{t.type.name} needs ne0 divisible by {t.type.blck}, got {t.ne[0]}", t.name, "block size")
    if any((not isinstance(b, int)) or b < 0 or (b == 0 and t.nelements) for b in t.nb):
        raise GraphError(f"bad strides {list(t.nb)}", t.name, "strides")
    if t.nb[0] != t.type.size and not t.is_view:   # permute/transpose views move nb0
        raise GraphError(f"nb0 must be the type size {t.type.size}, got {t.nb[0]}", t.name, "strides")
    if len(t.src) > MAX_SRC:
        raise GraphError(f"{len(t.src)} sources, at most {MAX_SRC}", t.name, "sources")
    if t.is_leaf and not t.is_contiguous:
        raise GraphError(f"a leaf must be contiguous, strides {list(t.nb)}", t.name, "strides")


def _same(a, b) -> bool:
    """== that also holds for nan (a nan f32 param is legal and equals itself)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def _check_node(t: Tensor) -> None:
    try:
        params = ops.normalize_params(t.op, t.params)
        if params.keys() != t.params.keys() or any(not _same(v, t.params[k]) for k, v in params.items()):
            raise GraphError(f"params {t.params} are not normalised (expected {params})", None, "param")
        d = ops.get_op(t.op)
        decl = ops.Decl(t.type, t.ne, t.nb) if d.declared else None
        spec = ops.infer(t.op, t.src, params, decl)
    except GraphError as e:
        raise GraphError(str(e), t.name, e.rule) from None
    nb = spec.nb if spec.nb is not None else contiguous_strides(spec.type, spec.ne)
    if (spec.type, spec.ne, nb) != (t.type, t.ne, t.nb):
        raise GraphError(f"{t.op} gives {spec.type.name} ne {list(spec.ne)} nb {list(nb)}, the tensor says "
                         f"{t.type.name} ne {list(t.ne)} nb {list(t.nb)}", t.name, "shape rule")
    if spec.view_of is None:
        if t.is_view:
            raise GraphError(f"{t.op} does not make a view", t.name, "view")
        return
    root = spec.view_of.view_src or spec.view_of
    offs = spec.view_of.view_offs + spec.offset
    if t.view_src is not root or t.view_offs != offs:
        raise GraphError(f"must view {root.name!r} at offset {offs}", t.name, "view")
    if offs < 0 or (t.nelements > 0 and offs + t.nbytes > root.nbytes):
        raise GraphError(f"view of bytes [{offs}, {offs + t.nbytes}) reaches outside {root.name!r} "
                         f"({root.nbytes} bytes)", t.name, "view bounds")
