"""The host-side runtime every target shares: ggml's memory model in numpy, value conversions, state.

Memory: one zeroed byte buffer per root tensor, views read and write it in place.

A root (a leaf, or a node that is not a view) owns `root.nbytes` bytes. Every tensor, root or view, is
seen through numpy strides over its root's buffer at `view_offs`, with its own ne/nb, exactly as ggml
addresses memory. So a cpy into a view of a state leaf changes that leaf, and later views see it.

Values move in two representations:
- compute values: numpy order (ne3, ne2, ne1, ne0); float32 for f32/f16/bf16/quantized types, the
  natural dtype for i8..i64 and f64 (ggml computes every float op in f32);
- stored values: what the bytes hold (f16 as float16 ...; bf16 and quantized are decoded to float32).
Plain types are converted here (numpy's f32->f16 cast rounds to nearest even, like ggml's
GGML_FP32_TO_FP16); block formats go through graphc.quants.
User values are what the API takes and gives back: to_tensor_values checks a user's array against a
tensor, value_dtype is the numpy dtype of a tensor's values, encode_leaf makes a leaf's bytes.

MemoryIO is the host side of an executable (ref, c): values in and out, leaf data, shared state.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import quants
from .errors import CompileError, GraphcError, RunError
from .ir import Flag, Graph, Tensor, full_numpy_shape
from .program import materialised, region_of, root_of, written_roots
from .types import GGMLType

__all__ = ["Memory", "MemoryIO", "bf16_bits_to_f32", "cast_to", "compute_dtype", "encode_leaf", "f32_to_bf16_bits",
           "shape_matches", "shareable", "to_tensor_values", "value_dtype"]


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """ggml_compute_fp32_to_bf16: round to nearest even; NaN stays a (quiet) NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = ((u >> 16) | 64).astype(np.uint16)
    return np.where(np.isnan(x), nan, rounded)


def compute_dtype(t: GGMLType) -> np.dtype:
    if t.np_dtype is None or t.name in ("f32", "f16"):
        return np.dtype(np.float32)
    return np.dtype(t.np_dtype)


def elements_at(buf: np.ndarray, offset: int, t: Tensor, dtype=np.float32) -> np.ndarray:
    """A numpy view (numpy order, ggml's strides) of blck==1 tensor t's elements at byte `offset` of buf:
    how host code (a target's collectives) reads and writes a tensor in a target's own buffer."""
    return np.ndarray(full_numpy_shape(t.ne), dtype, buffer=buf, offset=offset, strides=tuple(reversed(t.nb)))


class Memory:
    """The byte buffers of every root tensor of a graph, and strided access to any tensor."""

    def __init__(self, graph: Graph, unbacked: "set[int] | frozenset[int]" = frozenset()):
        """`unbacked`: ids of roots given no buffer here (an arena view or a per-kernel temporary is bound later)."""
        self.bufs: dict[int, np.ndarray] = {}
        for t in graph.tensors():
            r = root_of(t)
            if id(r) not in self.bufs and id(r) not in unbacked:
                self.bufs[id(r)] = np.zeros(r.nbytes, dtype=np.uint8)
            if t.is_view:
                self._check_bounds(t)

    def _check_bounds(self, t: Tensor) -> None:
        r = root_of(t)
        if t.nelements and (t.view_offs < 0 or t.view_offs + t.nbytes > r.nbytes):
            raise CompileError(f"tensor {t.name!r}: view of {r.name!r} at byte {t.view_offs} spans {t.nbytes} bytes, "
                           f"past the {r.nbytes} bytes of its root")

    def bind_external(self, t: Tensor, raw: np.ndarray) -> None:
        """Make a root leaf's buffer `raw` itself (e.g. a read-only view of a mapped weights file): no copy.
        A read-only buffer stays read-only, so any write into it fails instead of changing the file."""
        if root_of(t) is not t:
            raise CompileError(f"tensor {t.name!r}: only a root tensor can take an external buffer")
        if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size != t.nbytes:
            raise CompileError(f"tensor {t.name!r}: an external buffer must be flat uint8 of {t.nbytes} bytes")
        self.bufs[id(t)] = raw

    def is_external(self, t: Tensor) -> bool:
        return not self.buffer(t).flags.writeable

    def release(self, t: Tensor) -> None:
        """Drop a root's buffer (a fused kernel's temporary): any later access fails loudly."""
        self.bufs.pop(id(t), None)

    # --- raw access ------------------------------------------------------------------------
    def buffer(self, t: Tensor) -> np.ndarray:
        buf = self.bufs.get(id(root_of(t)))
        if buf is None:
            raise RunError(f"tensor {t.name!r} has no memory now: {root_of(t).name!r} is not materialised (a value "
                           "fused inside another kernel, read outside it)")
        return buf

    def _strided(self, t: Tensor, dtype, shape, strides) -> np.ndarray:
        buf = self.buffer(t)
        offs = t.view_offs if t.is_view else 0
        if 0 in shape:
            return np.zeros(shape, dtype=dtype)
        return np.ndarray(shape, dtype=dtype, buffer=buf, offset=offs, strides=strides)

    def elements(self, t: Tensor, dtype) -> np.ndarray:
        """A writable numpy view of a blck==1 tensor's elements, numpy order, ggml's strides."""
        return self._strided(t, dtype, full_numpy_shape(t.ne), tuple(reversed(t.nb)))

    def rows_raw(self, t: Tensor) -> np.ndarray:
        """A writable uint8 view (ne3, ne2, ne1, row_bytes) of a block-typed tensor's rows."""
        row_bytes = t.type.row_bytes(t.ne[0])
        if t.nb[0] != t.type.size:
            raise RunError(f"tensor {t.name!r}: {t.type.name} blocks of a row must be adjacent (nb0 = {t.nb[0]})")
        shape = (t.ne[3], t.ne[2], t.ne[1], row_bytes)
        return self._strided(t, np.uint8, shape, (t.nb[3], t.nb[2], t.nb[1], 1))

    def byte_span(self, t: Tensor) -> np.ndarray:
        """The t.nbytes bytes from t's first byte (what ggml_backend_tensor_set/get move)."""
        offs = t.view_offs if t.is_view else 0
        return self.buffer(t)[offs:offs + t.nbytes]

    # --- values --------------------------------------------------------------------------
    def load(self, t: Tensor) -> np.ndarray:
        """Compute values of t (a fresh array, numpy order, 4-D)."""
        ty = t.type
        if ty.name == "bf16":
            return bf16_bits_to_f32(self.elements(t, np.uint16))
        if ty.np_dtype is not None:
            return self.elements(t, ty.np_dtype).astype(compute_dtype(ty), copy=True)
        raw = self.rows_raw(t)
        vals = quants.decode(np.ascontiguousarray(raw).reshape(-1), ty, t.ne[0])
        return np.asarray(vals, dtype=np.float32).reshape(full_numpy_shape(t.ne))

    def load_rows(self, t: Tensor, idx: tuple) -> np.ndarray:
        """Compute values of the rows t[i3, i2, i1] for index arrays idx = (i3, i2, i1), decoding only those."""
        ty = t.type
        if ty.name == "bf16":
            return bf16_bits_to_f32(self.elements(t, np.uint16)[idx])
        if ty.np_dtype is not None:
            return self.elements(t, ty.np_dtype)[idx].astype(compute_dtype(ty))
        raw = np.ascontiguousarray(self.rows_raw(t)[idx])
        vals = quants.decode(raw.reshape(-1), ty, t.ne[0])
        return np.asarray(vals, dtype=np.float32).reshape(raw.shape[:-1] + (t.ne[0],))

    def read(self, t: Tensor) -> np.ndarray:
        """Stored values of t (numpy order, 4-D): f16 as float16, bf16 and block types as float32."""
        if t.type.np_dtype is not None:
            return self.elements(t, t.type.np_dtype).copy()
        return self.load(t)

    def store(self, t: Tensor, values: np.ndarray) -> None:
        """Write values (broadcast to t's 4-D numpy shape) into t's memory, converting to t's type."""
        shape = full_numpy_shape(t.ne)
        values = np.broadcast_to(np.asarray(values), shape)
        ty = t.type
        if 0 in shape:
            return
        if ty.name == "bf16":
            self.elements(t, np.uint16)[...] = f32_to_bf16_bits(values.astype(np.float32))
        elif ty.np_dtype is not None:
            self.elements(t, ty.np_dtype)[...] = cast_to(values, ty)
        else:
            raw = quants.encode(np.ascontiguousarray(values, dtype=np.float32), ty)
            self.rows_raw(t)[...] = np.asarray(raw, dtype=np.uint8).reshape(shape[:3] + (-1,))

    def store_rows(self, t: Tensor, idx: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray) -> None:
        """Write whole rows: t[i3, i2, i1, :] = rows[k] for (i3, i2, i1) = idx[.][k]; other rows untouched
        (re-encoding untouched quantized rows could change them)."""
        ty = t.type
        rows = np.asarray(rows)
        if rows.shape[0] == 0:
            return
        if ty.name == "bf16":
            self.elements(t, np.uint16)[idx] = f32_to_bf16_bits(rows.astype(np.float32))
        elif ty.np_dtype is not None:
            self.elements(t, ty.np_dtype)[idx] = cast_to(rows, ty)
        else:
            raw = quants.encode(np.ascontiguousarray(rows, dtype=np.float32), ty)
            self.rows_raw(t)[idx] = np.asarray(raw, dtype=np.uint8).reshape(rows.shape[0], -1)


def shareable(t: Tensor, data: np.ndarray, written: set[int]) -> bool:
    """Leaf data used in place, without a copy: read-only data (a file mapping) of a weight or constant
    leaf that no node writes into. Inputs and state are written by design, so they get their own copy."""
    return (not data.flags.writeable and id(t) not in written and not t.flags & (Flag.INPUT | Flag.STATE)
            and t.view_src is None)


def cast_to(values: np.ndarray, ty: GGMLType) -> np.ndarray:
    dt = np.dtype(ty.np_dtype)
    if dt.kind in "iu" and values.dtype.kind == "f":
        # ggml converts float to int by C truncation; NaN/inf have no defined result, use 0
        values = np.where(np.isfinite(values), values, 0)
        return np.trunc(values).astype(dt)
    if dt == np.float16 and values.dtype != np.float32:
        values = values.astype(np.float32)   # round once from f32, as ggml does (never f64 -> f16 directly)
    return values.astype(dt)


class MemoryIO:
    """The host side of an executable (ref, c): numpy values in and out of a Memory (`self.mem`), refusing
    arena intermediates (`self._in_arena`: roots whose bytes later tensors reuse) and read-only weights."""
    mem: Memory
    _in_arena: set

    def _check_persistent(self, t: Tensor) -> None:
        if id(root_of(t)) in self._in_arena:
            raise RunError(f"tensor {t.name!r} is an intermediate placed in the memory arena, whose bytes later "
                           "tensors reuse: it has no value outside its kernels (make it an output, or compile "
                           "without the memory plan, to read it)")

    def write(self, t: Tensor, values: np.ndarray) -> None:
        """Set t's contents: numpy-order values (full 4-D or t.shape), or raw ggml bytes (uint8, t.nbytes)."""
        self._check_persistent(t)
        if self.mem.is_external(t):
            raise RunError(f"tensor {t.name!r} is a weight mapped read-only from its file; it cannot be written")
        values = np.asarray(values)
        if values.dtype == np.uint8:
            if values.size != t.nbytes:
                raise RunError(f"tensor {t.name!r}: raw data must be {t.nbytes} bytes, got {values.size}")
            self.mem.byte_span(t)[...] = values.reshape(-1)
            return
        full = full_numpy_shape(t.ne)
        if values.shape not in (full, t.shape) or values.size != t.nelements:   # (t.shape drops 0-sized dims)
            raise RunError(f"tensor {t.name!r}: values of shape {values.shape} do not fit numpy shape {t.shape}")
        if t.type.is_int and values.dtype.kind not in "iub":
            raise RunError(f"tensor {t.name!r} is {t.type.name}; got {values.dtype} values")
        if values.dtype.kind not in "iubf":
            raise RunError(f"tensor {t.name!r}: cannot store {values.dtype} values")
        if values.dtype.kind == "f" and values.dtype != np.float32 and t.type.name != "f64":
            values = values.astype(np.float32)          # as ggml: floats are f32 before conversion
        self.mem.store(t, values.reshape(full))

    def read(self, t: Tensor) -> np.ndarray:
        """t's contents, numpy order 4-D: the stored dtype (f16 as float16); bf16 and block types as float32."""
        self._check_persistent(t)
        return self.mem.read(t)

    def _bind_device_roots(self, program: Any, buffers: Iterable[str], shared: "dict[str, Any]",
                           make_mirror: Any, mirror_type: type, target: str) -> None:
        """For device targets (opencl, triton): host memory for the persistent roots, and one host/device
        mirror per "root:<id>" buffer the kernels name: another module's state mirror where share_state
        gives one, else make_mirror(root, constant) (constant: a weight no run writes). Sets mem,
        _in_arena, mirrors and _written (the mirrors a run changes: outputs and state written in place)."""
        graph = program.graph
        in_arena = {id(n) for n in graph.nodes if not n.is_view and region_of(n) == "arena"}
        self._in_arena = in_arena & materialised(program)
        self.mem = Memory(graph, in_arena)
        self._bind_leaf_data()
        written = written_roots(graph.nodes)
        roots = {id(root_of(t)): root_of(t) for t in graph.tensors()}
        self.mirrors: dict[int, Any] = {}
        for b in buffers:
            if not b.startswith("root:"):
                continue
            r = roots[int(b.split(":", 1)[1])]
            if r.flags & Flag.STATE and r.name in shared:
                m = shared[r.name]
                if not isinstance(m, mirror_type) or m.host.size != r.nbytes:
                    raise CompileError(f"state {r.name!r}: share_state needs another {target} module's state of "
                                       f"{r.nbytes} bytes")
                self.mem.bind_external(r, m.host)
            else:
                m = make_mirror(r, r.op == "none" and id(r) not in written and
                                not r.flags & (Flag.INPUT | Flag.STATE))
            self.mirrors[id(r)] = m
        self._written = [m for i, m in self.mirrors.items() if i in written or roots[i].op != "none"]

    def _bind_leaf_data(self) -> None:
        """Give every leaf with data its bytes: read-only file mappings in place (zero-copy: the weight
        buffer IS the mapping), everything else copied into the leaf's own buffer."""
        written = written_roots(self.graph.nodes)
        for t in self.graph.leafs:
            if t.data is None:
                continue
            data = np.asarray(t.data).reshape(-1).view(np.uint8)
            if data.size != t.nbytes:
                raise CompileError(f"leaf {t.name!r} holds {data.size} bytes of data, it needs {t.nbytes}")
            if shareable(t, data, written):
                self.mem.bind_external(t, data)
            else:
                self.mem.byte_span(t)[...] = data

    def state_buffers(self) -> dict[str, np.ndarray]:
        """The byte buffers of the state leafs by name (what share_state hands to another executable)."""
        return {t.name: self.mem.buffer(t) for t in self.graph.leafs if t.flags & Flag.STATE}

    def _share_state(self, buffers: "dict[str, np.ndarray] | None") -> None:
        """Back state leafs with buffers another executable owns, so graphs for different token counts
        (prefill, decode) read and write one KV cache. Call before the target takes pointers."""
        for t in self.graph.leafs:
            if not t.flags & Flag.STATE or not buffers or t.name not in buffers:
                continue
            buf = buffers[t.name]
            if buf.dtype != np.uint8 or buf.ndim != 1 or buf.size != t.nbytes or not buf.flags.writeable:
                raise CompileError(f"state {t.name!r}: a shared buffer must be writable flat uint8 of {t.nbytes} bytes")
            self.mem.bind_external(t, buf)

    def reset_state(self) -> None:
        for t in self.graph.leafs:
            if t.flags & Flag.STATE:
                self.mem.buffer(t)[...] = 0


# --- user values: what the API takes and gives back ---------------------------------------------

def value_dtype(t: Tensor) -> np.dtype:
    """The numpy dtype a tensor's values are given and returned in."""
    return np.dtype(t.type.np_dtype or "float32")


def _strip_leading_ones(shape: Iterable[int]) -> tuple[int, ...]:
    s = list(shape)
    while s and s[0] == 1:
        s.pop(0)
    return tuple(s)


def shape_matches(shape: tuple[int, ...], t: Tensor) -> bool:
    """Equal to the tensor's numpy shape up to leading 1s (so t.shape and the full 4-D shape both fit)."""
    return _strip_leading_ones(shape) == _strip_leading_ones(full_numpy_shape(t.ne))


def _is_raw(arr: np.ndarray, t: Tensor) -> bool:
    return arr.dtype == np.uint8 and t.type.np_dtype is None


def to_tensor_values(value: Any, t: Tensor, what: str, err: type[GraphcError]) -> np.ndarray:
    """Check a user array against tensor t and return it as the values (or raw bytes) to store.

    Raw bytes come back as a flat uint8 array of t.nbytes; values come back in t's value dtype, 4-D."""
    raw = isinstance(value, (bytes, bytearray, memoryview))   # bytes are raw ggml data for any type
    if raw:
        value = np.frombuffer(value, dtype=np.uint8)
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise err(f"{what} {t.name!r}: cannot make an array of the given value ({e})") from None
    if raw or _is_raw(arr, t):
        if arr.size != t.nbytes:
            raise err(f"{what} {t.name!r}: raw {t.type.name} data must be {t.nbytes} bytes, got {arr.size}")
        return np.ascontiguousarray(arr).reshape(-1)
    want = value_dtype(t)
    kind = arr.dtype.kind
    if t.type.is_int:
        if kind not in "iu":
            raise err(f"{what} {t.name!r} is {t.type.name} and takes integer data, got {arr.dtype}")
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise err(f"{what} {t.name!r}: values outside the {t.type.name} range [{info.min}, {info.max}]")
    elif kind != "f":
        raise err(f"{what} {t.name!r} is {t.type.name} and takes floating-point data, got {arr.dtype} "
                  f"(convert it explicitly, e.g. .astype(np.float32))")
    if not shape_matches(arr.shape, t):
        raise err(f"{what} {t.name!r} has numpy shape {t.shape} (ggml ne {list(t.ne)}), got {arr.shape}")
    dtype = want if t.type.np_dtype is not None else np.dtype("float32")
    return np.ascontiguousarray(arr, dtype=dtype).reshape(full_numpy_shape(t.ne))


def encode_leaf(values: np.ndarray, t: Tensor) -> np.ndarray:
    """Values (from to_tensor_values) -> the raw bytes a leaf stores."""
    if values.dtype == np.uint8:     # raw bytes already (no ggml type stores values as uint8)
        return values
    try:
        raw = quants.encode(values, t.type)
    except NotImplementedError as e:
        raise CompileError(f"weight {t.name!r}: cannot encode values as {t.type.name} yet ({e})") from None
    return np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
