"""safetensors files: a checked, memory-mapped reader (and a tiny writer for tests and tools).

Layout: u64 little-endian header length N; N bytes of UTF-8 JSON {name: {"dtype", "shape" (numpy order),
"data_offsets": [begin, end]}, optional "__metadata__": {str: str}}; then the data section, offsets
relative to its start. Tensor bytes come back as uint8 views of one read-only mapping (no copy).
Every field is type- and range-checked (header length <= 100 MB and the file, offsets inside the data
section, end - begin == elements x itemsize) before use; damage is one ParseError with a byte offset.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from graphc.errors import ParseError

MAX_HEADER = 100 * 1000 * 1000     # the safetensors library's own cap
MAX_DIMS = 64

# dtype -> (itemsize, ggml type name or None when ggml has no such type)
DTYPES: dict[str, tuple[int, str | None]] = {
    "F64": (8, "f64"), "F32": (4, "f32"), "F16": (2, "f16"), "BF16": (2, "bf16"),
    "I64": (8, "i64"), "I32": (4, "i32"), "I16": (2, "i16"), "I8": (1, "i8"),
    "U64": (8, None), "U32": (4, None), "U16": (2, None), "U8": (1, None), "BOOL": (1, None),
    "F8_E4M3": (1, None), "F8_E5M2": (1, None),
}
NUMPY_OF = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
            "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


@dataclass(frozen=True)
class STensor:
    name: str
    dtype: str                 # safetensors dtype string, e.g. "BF16"
    shape: tuple[int, ...]     # numpy order
    offset: int                # absolute byte offset in the file
    nbytes: int


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class SafetensorsFile:
    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
            if size < 8:
                raise ParseError(f"file of {size} bytes is too short for a safetensors header", self.path, offset=0)
            self._map: np.ndarray | None = np.memmap(self.path, dtype=np.uint8, mode="r")
        except OSError as e:
            raise ParseError(f"cannot read: {e.strerror or e}", self.path) from None
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, STensor] = {}
        self._parse(size)

    def _fail(self, msg: str, offset: int) -> ParseError:
        return ParseError(msg, self.path, offset=offset)

    def _parse(self, size: int) -> None:
        n = struct.unpack_from("<Q", memoryview(self._map), 0)[0]
        if n > MAX_HEADER or n > size - 8:
            raise self._fail(f"header length {n} exceeds the {size}-byte file or the {MAX_HEADER}-byte limit", 0)
        text = bytes(self._map[8:8 + n])
        try:
            header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_dupes)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            pos = getattr(e, "pos", None) or getattr(e, "start", None) or 0
            raise self._fail(f"bad JSON header: {str(e)[:200]}", 8 + pos) from None
        if not isinstance(header, dict):
            raise self._fail(f"header is a JSON {type(header).__name__}, not an object", 8)
        data_start, data_size = 8 + n, size - 8 - n
        self.data_offset = data_start
        meta = header.pop("__metadata__", {})
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise self._fail("__metadata__ must map strings to strings", 8)
        self.metadata = meta
        for name, info in header.items():
            self.tensors[name] = self._entry(name, info, data_start, data_size)

    def _entry(self, name: str, info: Any, data_start: int, data_size: int) -> STensor:
        def bad(msg: str) -> ParseError:
            return self._fail(f"tensor {name[:200]!r}: {msg}", 8)
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"} or len(info) != 3:
            raise bad("entry must be an object with exactly dtype, shape and data_offsets")
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise bad(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"shape must be a list of at most {MAX_DIMS} non-negative ints, got {str(shape)[:100]}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)
                and 0 <= offs[0] <= offs[1] <= data_size):
            raise bad(f"data_offsets {str(offs)[:100]} must be [begin, end] inside the {data_size}-byte data section")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * DTYPES[dtype][0]
        if nbytes != offs[1] - offs[0]:
            raise bad(f"{dtype} shape {shape} takes {nbytes} bytes, data_offsets span {offs[1] - offs[0]}")
        return STensor(name, dtype, tuple(shape), data_start + offs[0], nbytes)

    @property
    def mapping(self) -> np.ndarray:
        if self._map is None:
            raise ValueError(f"{self.path}: closed")
        return self._map

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes: a read-only uint8 view of the file mapping (no copy)."""
        e = self.tensors[name]
        return self.mapping[e.offset:e.offset + e.nbytes]

    def close(self) -> None:
        self._map = None     # views handed out keep the mapping alive

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_safetensors(path: "str | os.PathLike[str]") -> SafetensorsFile:
    return SafetensorsFile(path)


def write_safetensors(path: "str | os.PathLike[str]", tensors: Mapping[str, tuple[str, tuple[int, ...], Any]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """tensors: {name: (dtype string, numpy shape, raw bytes)}; written in the given order, 8-byte aligned."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    bufs, pos = [], 0
    for name, (dtype, shape, raw) in tensors.items():
        buf = np.frombuffer(raw, np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else \
            np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if dtype not in DTYPES or buf.size != count * DTYPES[dtype][0]:
            raise ValueError(f"tensor {name!r}: {dtype} {tuple(shape)} does not fit {buf.size} bytes")
        header[name] = {"dtype": dtype, "shape": [int(d) for d in shape], "data_offsets": [pos, pos + buf.size]}
        bufs.append(buf)
        pos += buf.size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in bufs:
            f.write(memoryview(b))
