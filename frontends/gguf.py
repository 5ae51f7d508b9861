"""GGUF files (v2, v3): a checked, memory-mapped reader and a small writer.

Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv x (string key, u32
value type, value); n_tensors x (string name, u32 n_dims, n_dims x u64 ne (ggml order), u32 ggml type,
u64 offset); padding to `general.alignment` (default 32); the data section. A string is u64 length +
bytes; an array is u32 element type + u64 count + elements. Tensor offsets count from the data section.

The reader maps the file once (np.memmap, read-only) and hands out tensor bytes as uint8 views of that
mapping: nothing is copied. Every count, length, dim, type, offset and the alignment is checked against
the file size and fixed caps before anything is allocated (gguf.cpp's checks, see anchors §5.2), so a
damaged file is one ParseError naming the file and the byte offset.
"""
from __future__ import annotations

import collections
import enum
import os
import struct
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from graphc.errors import ParseError
from graphc.types import TYPES_BY_ID, GGMLType, get_type

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4                 # GGML_MAX_DIMS
MAX_NAME = 64                # GGML_MAX_NAME: tensor names are shorter than this (bytes)
MAX_STRING = 1 << 30         # gguf.cpp caps strings and arrays at 1 GiB
MAX_ARRAY = 1 << 30
MAX_NESTING = 4              # arrays of arrays: bounded so a crafted file cannot recurse deeply
MAX_ALIGNMENT = 1 << 20
MAX_ELEMENTS = (1 << 63) - 1  # ggml counts elements in int64
_MIN_KV_BYTES = 8 + 4 + 1    # empty key, type, one-byte value
_MIN_TI_BYTES = 8 + 4 + 4 + 8  # empty name, n_dims = 0, type, offset


class ValueType(enum.IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALAR = {ValueType.UINT8: "<u1", ValueType.INT8: "<i1", ValueType.UINT16: "<u2", ValueType.INT16: "<i2",
           ValueType.UINT32: "<u4", ValueType.INT32: "<i4", ValueType.FLOAT32: "<f4", ValueType.BOOL: "<u1",
           ValueType.UINT64: "<u8", ValueType.INT64: "<i8", ValueType.FLOAT64: "<f8"}


@dataclass(frozen=True)
class Value:
    """A metadata value with its GGUF type (elem = element type of an ARRAY). The writer takes these
    where inference from the Python value would pick the wrong type (e.g. UINT32 general.alignment)."""
    type: ValueType
    value: Any
    elem: ValueType | None = None


@dataclass(frozen=True)
class TensorEntry:
    name: str
    type: GGMLType
    ne: tuple[int, ...]   # ggml order, n_dims entries
    offset: int           # absolute byte offset in the file
    nbytes: int


def _pad(x: int, n: int) -> int:
    return (x + n - 1) // n * n


def _nbytes(ty: GGMLType, ne: Sequence[int]) -> int:
    rows = 1
    for d in ne[1:]:
        rows *= d
    return ty.row_bytes(ne[0] if ne else 1) * rows


class _Cursor:
    """Bounds-checked little-endian reads from the mapped bytes."""

    def __init__(self, mv: memoryview, path: str):
        self.mv, self.path, self.pos, self.size = mv, path, 0, len(mv)

    def fail(self, msg: str, at: int | None = None) -> ParseError:
        return ParseError(msg, self.path, offset=self.pos if at is None else at)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} needs {n} bytes, only {self.size - self.pos} left in the {self.size}-byte file")

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.mv, self.pos)[0]
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)

    def string(self, what: str, cap: int = MAX_STRING) -> str:
        at = self.pos
        n = self.u64(f"length of {what}")
        if n > cap:
            raise self.fail(f"{what} is {n} bytes long, over the limit of {cap}", at)
        self.need(n, what)
        s = bytes(self.mv[self.pos:self.pos + n]).decode("utf-8", "surrogateescape")
        self.pos += n
        return s

    def array_of(self, dtype: str, count: int, what: str) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        self.need(count * itemsize, what)
        a = np.frombuffer(self.mv, dtype=dtype, count=count, offset=self.pos)   # a view, no copy
        self.pos += count * itemsize
        return a


def _read_value(c: _Cursor, vt_raw: int, key: str, depth: int = 0) -> tuple[Any, ValueType | None]:
    """One value of type vt_raw; returns (value, element type for arrays)."""
    try:
        vt = ValueType(vt_raw)
    except ValueError:
        raise c.fail(f"metadata {key!r}: unknown value type {vt_raw}", c.pos - 4) from None
    if vt == ValueType.STRING:
        return c.string(f"metadata {key!r} string"), None
    if vt != ValueType.ARRAY:
        v = c.array_of(_SCALAR[vt], 1, f"metadata {key!r} value")[0]
        return (bool(v) if vt == ValueType.BOOL else v.item()), None
    at = c.pos
    et_raw = c.u32(f"metadata {key!r} array element type")
    count = c.u64(f"metadata {key!r} array length")
    if count > MAX_ARRAY:
        raise c.fail(f"metadata {key!r}: array of {count} elements, over the limit of {MAX_ARRAY}", at)
    try:
        et = ValueType(et_raw)
    except ValueError:
        raise c.fail(f"metadata {key!r}: unknown array element type {et_raw}", at) from None
    if et in _SCALAR:
        a = c.array_of(_SCALAR[et], count, f"metadata {key!r} array of {count} {et.name}")
        return (a.astype(bool) if et == ValueType.BOOL else a), et
    if et == ValueType.ARRAY and depth >= MAX_NESTING:
        raise c.fail(f"metadata {key!r}: arrays nested deeper than {MAX_NESTING}", at)
    # strings and arrays take at least 8 (12) bytes each: check the count fits before looping
    c.need(count * (8 if et == ValueType.STRING else 12), f"metadata {key!r} array of {count} {et.name}")
    if et == ValueType.STRING:
        return _strings(c, count, key), et
    out = []
    for _ in range(count):
        v, _sub = _read_value(c, et, key, depth + 1)
        out.append(v)
    return out, et


_U64 = struct.Struct("<Q").unpack_from


def _strings(c: _Cursor, count: int, key: str) -> list[str]:
    """An array of `count` strings: c.string's checks in one tight loop (a vocabulary holds 10^5 of them)."""
    mv, pos, size, out = c.mv, c.pos, c.size, [""] * count
    for i in range(count):
        if pos + 8 > size:
            c.pos = pos
            raise c.fail(f"length of metadata {key!r} string {i} needs 8 bytes, only {size - pos} left in the "
                         f"{size}-byte file")
        n = _U64(mv, pos)[0]
        if n > MAX_STRING or pos + 8 + n > size:
            raise c.fail(f"metadata {key!r} string {i} is {n} bytes long, past the end of the {size}-byte file"
                         if n <= MAX_STRING else
                         f"metadata {key!r} string {i} is {n} bytes long, over the limit of {MAX_STRING}", pos)
        pos += 8
        out[i] = str(mv[pos:pos + n], "utf-8", "surrogateescape")
        pos += n
    c.pos = pos
    return out


class GGUFFile:
    """A parsed GGUF file. metadata: {key: value} (numbers as Python scalars, numeric arrays as read-only
    numpy views, strings decoded UTF-8 with surrogateescape); tensors: {name: TensorEntry} in file order."""

    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
            if size < 4:
                raise ParseError(f"file of {size} bytes is too short to be GGUF", self.path, offset=0)
            self._map: np.ndarray | None = np.memmap(self.path, dtype=np.uint8, mode="r")
        except OSError as e:
            raise ParseError(f"cannot read: {e.strerror or e}", self.path) from None
        self.metadata: dict[str, Any] = {}
        self.value_types: dict[str, tuple[ValueType, ValueType | None]] = {}
        self.tensors: dict[str, TensorEntry] = {}
        self._parse(memoryview(self._map))

    @property
    def mapping(self) -> np.ndarray:
        """The whole file as one read-only uint8 array; every tensor view lies inside it."""
        if self._map is None:
            raise ValueError(f"{self.path}: closed")
        return self._map

    def _parse(self, mv: memoryview) -> None:
        c = _Cursor(mv, self.path)
        if bytes(mv[:4]) != MAGIC:
            raise c.fail(f"not a GGUF file (magic {bytes(mv[:4])!r}, expected {MAGIC!r})")
        c.pos = 4
        version = c.u32("version")
        if version not in VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            why = (" (a big-endian GGUF; only little-endian files are read)" if swapped in VERSIONS else
                   " (GGUF v1 used 32-bit counts and is not read)" if version == 1 else "")
            raise c.fail(f"GGUF version {version} is not supported{why}; readable versions: 2, 3", 4)
        self.version = version
        n_tensors = c.u64("tensor count")
        n_kv = c.u64("metadata count")
        # each entry takes a minimum number of bytes: counts beyond what the file can hold are damage
        if n_kv > (c.size - c.pos) // _MIN_KV_BYTES:
            raise c.fail(f"{n_kv} metadata entries cannot fit in the {c.size}-byte file", 16)
        if n_tensors > (c.size - c.pos) // _MIN_TI_BYTES:
            raise c.fail(f"{n_tensors} tensors cannot fit in the {c.size}-byte file", 8)
        for _ in range(n_kv):
            at = c.pos
            key = c.string("metadata key")
            if key in self.metadata:
                raise c.fail(f"duplicate metadata key {key!r}", at)
            vt = c.u32(f"metadata {key!r} value type")
            value, elem = _read_value(c, vt, key)
            self.metadata[key] = value
            self.value_types[key] = (ValueType(vt), elem)
        self.alignment = self._alignment(c)
        entries: list[tuple] = []
        names: set[str] = set()
        for _ in range(n_tensors):
            entries.append(self._tensor_info(c, names))
        self.data_offset = _pad(c.pos, self.alignment)
        for at, name, ty, ne, offset, nbytes in entries:
            if offset % self.alignment:
                raise c.fail(f"tensor {name!r}: data offset {offset} is not a multiple of the alignment "
                             f"{self.alignment}", at)
            start = self.data_offset + offset
            if nbytes and start + nbytes > c.size:
                raise c.fail(f"tensor {name!r}: {nbytes} bytes at file offset {start} run past the end of the "
                             f"{c.size}-byte file", at)
            self.tensors[name] = TensorEntry(name, ty, ne, start, nbytes)

    def _alignment(self, c: _Cursor) -> int:
        if "general.alignment" not in self.metadata:
            return DEFAULT_ALIGNMENT
        a, vt = self.metadata["general.alignment"], self.value_types["general.alignment"][0]
        if vt != ValueType.UINT32 or not (0 < a <= MAX_ALIGNMENT) or a & (a - 1):
            raise c.fail(f"general.alignment must be a UINT32 power of two up to {MAX_ALIGNMENT}, got {vt.name} {a!r}")
        return a

    def _tensor_info(self, c: _Cursor, names: set[str]) -> tuple:
        at = c.pos
        name = c.string("tensor name")
        if len(name.encode("utf-8", "surrogateescape")) >= MAX_NAME:
            raise c.fail(f"tensor name {name[:80]!r} is {len(name)} bytes, ggml allows at most {MAX_NAME - 1}", at)
        if name in names:
            raise c.fail(f"duplicate tensor name {name!r}", at)
        n_dims = c.u32(f"tensor {name!r} n_dims")
        if n_dims > MAX_DIMS:
            raise c.fail(f"tensor {name!r} has {n_dims} dims, ggml allows at most {MAX_DIMS}", c.pos - 4)
        ne = tuple(int(d) for d in c.array_of("<i8", n_dims, f"tensor {name!r} dims"))
        if any(d < 0 for d in ne):
            raise c.fail(f"tensor {name!r}: negative (or >= 2^63) dim in ne {list(ne)}", c.pos - 8 * n_dims)
        count = 1
        for d in ne:
            count *= d
        if count > MAX_ELEMENTS:
            raise c.fail(f"tensor {name!r}: ne {list(ne)} has more than 2^63-1 elements", c.pos - 8 * n_dims)
        type_id = c.u32(f"tensor {name!r} type")
        ty = TYPES_BY_ID.get(type_id)
        if ty is None:
            raise c.fail(f"tensor {name!r}: unknown ggml type id {type_id}", c.pos - 4)
        if (ne[0] if ne else 1) % ty.blck:
            raise c.fail(f"tensor {name!r}: {ty.name} rows need ne0 divisible by {ty.blck}, got ne {list(ne)}", at)
        offset = c.u64(f"tensor {name!r} offset")
        nbytes = _nbytes(ty, ne)
        if offset > c.size or nbytes > c.size:
            raise c.fail(f"tensor {name!r}: offset {offset} / size {nbytes} bytes exceed the {c.size}-byte file",
                         c.pos - 8)
        names.add(name)
        return at, name, ty, ne, offset, nbytes

    # --- access ----------------------------------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes: a read-only uint8 view of the file mapping (no copy)."""
        e = self.tensors[name]
        return self.mapping[e.offset:e.offset + e.nbytes]

    def typed_metadata(self) -> dict[str, Value]:
        """The metadata with its GGUF types, ready for write_gguf (round-trips exactly)."""
        return {k: Value(self.value_types[k][0], v, self.value_types[k][1]) for k, v in self.metadata.items()}

    def close(self) -> None:
        """Drop this object's reference to the mapping; views handed out keep it alive (never dangling)."""
        self._map = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_gguf(path: "str | os.PathLike[str]") -> GGUFFile:
    return GGUFFile(path)


class _SharedGGUFFile(GGUFFile):
    """A GGUFFile that open_gguf hands to several readers: close() leaves it open for the others."""

    def close(self) -> None:
        pass


_SHARED: "collections.OrderedDict[tuple, GGUFFile]" = collections.OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_FILES = 4               # parsed files kept (a vocabulary's strings can take tens of MB)


def open_gguf(path: "str | os.PathLike[str]") -> GGUFFile:
    """The parsed file, shared in this process while it is unchanged (same path, inode, size and mtime):
    a model's loader, its tokenizer and every graph it compiles read the metadata once. Do not mutate it."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return GGUFFile(path)              # GGUFFile says what is wrong
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _SHARED_LOCK:
        f = _SHARED.get(key)
        if f is not None:
            _SHARED.move_to_end(key)
            return f
    f = _SharedGGUFFile(path)
    with _SHARED_LOCK:
        _SHARED[key] = f
        while len(_SHARED) > SHARED_FILES:
            _SHARED.popitem(last=False)
    return f


# --- writing ----------------------------------------------------------------------------------

def _infer(v: Any) -> Value:
    if isinstance(v, Value):
        return v
    if isinstance(v, (bool, np.bool_)):
        return Value(ValueType.BOOL, bool(v))
    if isinstance(v, str):
        return Value(ValueType.STRING, v)
    if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iufb":
        return Value(ValueType.ARRAY, v, _infer(v.dtype.type(0) if v.dtype.kind != "b" else False).type)
    if isinstance(v, np.generic):
        for vt, dt in _SCALAR.items():
            if vt != ValueType.BOOL and np.dtype(dt) == v.dtype.newbyteorder("<"):
                return Value(vt, v.item())
    if isinstance(v, int):
        return Value(ValueType.INT32 if -2**31 <= v < 2**31 else ValueType.INT64 if v < 2**63 else ValueType.UINT64, v)
    if isinstance(v, float):
        return Value(ValueType.FLOAT32, v)
    if isinstance(v, (list, tuple)):
        items = [_infer(x) for x in v]
        if not items:
            raise ValueError("empty metadata arrays need an explicit element type: Value(ARRAY, [], elem)")
        kinds = {x.type for x in items}
        elem = (ValueType.INT64 if kinds == {ValueType.INT32, ValueType.INT64}
                else kinds.pop() if len(kinds) == 1 else None)
        if elem is None:
            raise ValueError(f"metadata array mixes value types {sorted(k.name for k in kinds)}")
        return Value(ValueType.ARRAY, list(v), elem)
    raise ValueError(f"cannot store a {type(v).__name__} as GGUF metadata")


def _encode_string(s: str) -> bytes:
    b = s.encode("utf-8", "surrogateescape")
    return struct.pack("<Q", len(b)) + b


def _encode_payload(vt: ValueType, v: Any, elem: ValueType | None) -> bytes:
    if vt == ValueType.STRING:
        return _encode_string(v)
    if vt in _SCALAR:
        return np.array(v, dtype=_SCALAR[vt]).tobytes()
    if elem is None:
        raise ValueError("an ARRAY value needs its element type")
    out = [struct.pack("<IQ", int(elem), len(v))]
    if elem in _SCALAR:
        out.append(np.asarray(v, dtype=_SCALAR[elem]).tobytes())
    else:
        for x in v:
            sub = _infer(x) if elem == ValueType.ARRAY else Value(elem, x)
            if sub.type != elem:
                raise ValueError(f"array element {x!r} is not {elem.name}")
            out.append(_encode_payload(elem, sub.value, sub.elem))
    return b"".join(out)


TensorSpec = tuple  # (name, GGMLType | str | int, ne tuple (ggml order), raw uint8 bytes)


def write_gguf(path: "str | os.PathLike[str]", metadata: Mapping[str, Any],
               tensors: Iterable[TensorSpec], version: int = 3) -> None:
    """Write a GGUF file. metadata: {key: value or Value(type, value, elem)} (bool, int -> INT32/INT64,
    float -> FLOAT32, str, lists and 1-D numpy arrays -> ARRAY; numpy scalars keep their type).
    `general.alignment` (UINT32 power of two) sets the data alignment, default 32.
    tensors: (name, ggml type, ne in ggml order, raw bytes as uint8 array / bytes) in file order;
    the bytes are written as they are (no copy of large arrays)."""
    if version not in VERSIONS:
        raise ValueError(f"can write GGUF versions {VERSIONS}, not {version}")
    kv = {k: _infer(v) for k, v in metadata.items()}
    align = DEFAULT_ALIGNMENT
    if "general.alignment" in kv:
        a = kv["general.alignment"]
        if isinstance(metadata["general.alignment"], int) and not isinstance(metadata["general.alignment"], bool):
            a = kv["general.alignment"] = Value(ValueType.UINT32, a.value)
        if a.type != ValueType.UINT32 or not (0 < a.value <= MAX_ALIGNMENT) or a.value & (a.value - 1):
            raise ValueError(f"general.alignment must be a UINT32 power of two up to {MAX_ALIGNMENT}")
        align = int(a.value)
    specs = []
    seen: set[str] = set()
    for name, ty, ne, raw in tensors:
        ty = get_type(ty)
        ne = tuple(int(d) for d in ne)
        buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else \
            np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        if name in seen:
            raise ValueError(f"duplicate tensor name {name!r}")
        if len(name.encode("utf-8", "surrogateescape")) >= MAX_NAME:
            raise ValueError(f"tensor name {name!r} is longer than {MAX_NAME - 1} bytes")
        if len(ne) > MAX_DIMS or any(d < 0 for d in ne):
            raise ValueError(f"tensor {name!r}: bad ne {list(ne)} (at most {MAX_DIMS} dims, none negative)")
        want = _nbytes(ty, ne)
        if buf.size != want:
            raise ValueError(f"tensor {name!r}: {ty.name} ne {list(ne)} takes {want} bytes, got {buf.size}")
        seen.add(name)
        specs.append((name, ty, ne, buf))
    head = [MAGIC, struct.pack("<IQQ", version, len(specs), len(kv))]
    for k, v in kv.items():
        head += [_encode_string(k), struct.pack("<I", int(v.type)), _encode_payload(v.type, v.value, v.elem)]
    offset = 0
    for name, ty, ne, buf in specs:
        head += [_encode_string(name), struct.pack("<I", len(ne)), struct.pack(f"<{len(ne)}Q", *ne),
                 struct.pack("<IQ", ty.id, offset)]
        offset += _pad(buf.size, align)
    header = b"".join(head)
    with open(path, "wb") as f:
        f.write(header)
        f.write(b"\0" * (_pad(len(header), align) - len(header)))
        for _name, _ty, _ne, buf in specs:
            f.write(memoryview(buf))
            f.write(b"\0" * (_pad(buf.size, align) - buf.size))
