"""One interface over weight files: GGUF, safetensors, .npy and .npz.

    wf = open_weights("model.gguf")
    wf.names()            # tensor names in file order
    wf.info(name)         # (GGMLType, ne): ne in ggml order, padded to 4 (numpy files: reversed shape)
    wf.raw(name)          # the stored bytes, a read-only uint8 view of the file mapping (no copy)
    wf.close()

Zero copy: GGUF and safetensors tensors, .npy arrays (np.load mmap) and uncompressed .npz members (mapped
at their zip offset) are views of one read-only mapping of the file. Only Fortran-order or big-endian
numpy arrays are copied (into C order, little-endian), and deflated .npz members are read into memory
after checking their declared size against the zip entry (a crafted header cannot force a big allocation).

tensor_data(wf, name, t) gives the bytes for a graph tensor: the file's own bytes when the stored type is
t's type; otherwise a conversion through f32 (f16/bf16 -> f32 exact; f32 -> f16/bf16 rounds to nearest
even like ggml; quantized -> f32/f16/bf16 by ggml's dequantization; float -> quantized by ggml's reference
quantizer; f64 -> f32 rounds) or between integer types when every value fits. Integer <-> float and
quantized -> another quantized type are refused. Shapes must match exactly
(ggml ne, trailing 1s ignored). uint8 data (numpy uint8, safetensors U8) is taken as raw ggml bytes for
quantized and bf16 tensors, as everywhere in graphc.
"""
from __future__ import annotations

import difflib
import io
import lzma
import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from graphc.errors import CompileError, ParseError
from graphc.ir import Tensor, pad_ne
from graphc.types import TYPES, GGMLType

from .gguf import open_gguf
from .safetensors import DTYPES as ST_DTYPES, SafetensorsFile

_NP_TYPES = {np.dtype(t.np_dtype).str.lstrip("<|>"): t for t in TYPES.values() if t.np_dtype}  # "f4" -> f32
MAX_NPY_HEADER = 10000          # numpy's own default cap on .npy header length
INFLATE_RATIO = 1100            # deflate cannot expand more than ~1032:1


class WeightFile:
    """Base class; subclasses fill `_entries` lazily or at open."""
    kind = "weights"
    word = "tensor"           # what messages call an entry ("array" for numpy files)

    def __init__(self, path: str):
        self.path = path

    def names(self) -> list[str]:
        raise NotImplementedError

    def info(self, name: str) -> tuple[GGMLType, tuple[int, int, int, int]]:
        raise NotImplementedError

    def raw(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def stored(self, name: str) -> str:
        """The stored dtype as the file spells it (for messages and the uint8 rule)."""
        return self.info(name)[0].name

    def is_bytes(self, name: str) -> bool:
        return False

    def shape_text(self, name: str) -> str:
        t, ne = self.info(name)
        return f"{t.name} ne {list(ne)}"

    def resolve(self, name: str) -> str:
        """The entry a binding to `name` means (a .npy file has one, whatever it is called)."""
        return name

    def close(self) -> None:
        pass

    def __enter__(self) -> "WeightFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def _ne(self, name: str, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        s = list(shape)
        while len(s) > 4 and s[0] == 1:
            s.pop(0)
        if len(s) > 4:
            raise CompileError(f"{self.path}: {self.word} {name!r} has shape {tuple(shape)}; ggml tensors have at "
                               "most 4 dims")
        return pad_ne(tuple(reversed(s)))


class _MappedFile(WeightFile):
    """A weights file parsed by its own reader (`self.file`: tensors, mapping, raw(), close())."""

    @property
    def mapping(self) -> np.ndarray:
        return self.file.mapping

    def names(self) -> list[str]:
        return list(self.file.tensors)

    def __contains__(self, name: str) -> bool:
        return name in self.file.tensors

    def raw(self, name: str) -> np.ndarray:
        return self.file.raw(name)

    def close(self) -> None:
        self.file.close()


class GGUFWeights(_MappedFile):
    kind = "GGUF"

    def __init__(self, path: str):
        super().__init__(path)
        self.file = open_gguf(path)     # shared: a model compiling several graphs parses it once

    def info(self, name: str) -> tuple[GGMLType, tuple[int, int, int, int]]:
        e = self.file.tensors[name]
        return e.type, pad_ne(e.ne)


class SafetensorsWeights(_MappedFile):
    kind = "safetensors"

    def __init__(self, path: str):
        super().__init__(path)
        self.file = SafetensorsFile(path)

    def info(self, name: str) -> tuple[GGMLType, tuple[int, int, int, int]]:
        e = self.file.tensors[name]
        ggml = ST_DTYPES[e.dtype][1]
        if ggml is None:
            raise CompileError(f"{self.path}: tensor {name!r} is {e.dtype}, which has no ggml type")
        return TYPES[ggml], self._ne(name, e.shape)

    def stored(self, name: str) -> str:
        return self.file.tensors[name].dtype

    def is_bytes(self, name: str) -> bool:
        return self.file.tensors[name].dtype == "U8"

    def shape_text(self, name: str) -> str:
        e = self.file.tensors[name]
        return f"{e.dtype} shape {e.shape}"


class _NumpyWeights(WeightFile):
    word = "array"

    def _array(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def info(self, name: str) -> tuple[GGMLType, tuple[int, int, int, int]]:
        a = self._array(name)
        t = _NP_TYPES.get(a.dtype.str.lstrip("<|>"))
        if t is None:
            raise CompileError(f"{self.path}: array {name!r} is {a.dtype}, which has no ggml type")
        return t, self._ne(name, a.shape)

    def stored(self, name: str) -> str:
        return str(self._array(name).dtype)

    def is_bytes(self, name: str) -> bool:
        return self._array(name).dtype == np.uint8

    def shape_text(self, name: str) -> str:
        a = self._array(name)
        return f"{a.dtype} shape {a.shape}"

    def raw(self, name: str) -> np.ndarray:
        a = self._array(name)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))      # ggml data is little-endian
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)                  # Fortran order: a copy in C order
        return a.reshape(-1).view(np.uint8)


def _check_magic(path: str, magic: bytes, what: str) -> None:
    """A file named like a numpy file that does not start like one: say what it is instead."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    if not head.startswith(magic):
        from graphc.filekind import describe_head
        raise ParseError(f"not a {what} file: {describe_head(head)}", path)


def _check_npy_header_length(path: str) -> None:
    """Refuse a header longer than numpy's cap before numpy reads it: numpy reads the whole claimed length
    (up to 4 GiB for format 2/3) into memory first and checks the cap after."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    if len(head) < 10:
        raise ParseError(f"not a readable .npy file: {len(head)} bytes, shorter than a header", path)
    n = struct.unpack_from("<H", head, 8)[0] if head[6] == 1 else \
        struct.unpack_from("<I", head, 8)[0] if len(head) >= 12 else 0
    if n > MAX_NPY_HEADER:
        raise ParseError(f"not a readable .npy file: its header claims {n} bytes, more than {MAX_NPY_HEADER}",
                         path, offset=8)


class NpyWeights(_NumpyWeights):
    kind = "npy"

    def __init__(self, path: str):
        super().__init__(path)
        _check_magic(path, b"\x93NUMPY", ".npy")
        _check_npy_header_length(path)
        try:
            self._arr = np.load(path, mmap_mode="r", allow_pickle=False, max_header_size=MAX_NPY_HEADER)
        except (ValueError, OSError, EOFError) as e:    # bad header, object dtype, short file
            raise ParseError(f"not a readable .npy file: {e}", path) from None
        if not isinstance(self._arr, np.ndarray):
            raise ParseError("not a .npy file", path)
        # a lone array is named after the file: w1.npy holds the tensor "w1"
        self.name = os.path.splitext(os.path.basename(path))[0]

    @property
    def mapping(self) -> np.ndarray:
        return self._arr

    def names(self) -> list[str]:
        return [self.name]

    def resolve(self, name: str) -> str:
        return self.name

    def _array(self, name: str) -> np.ndarray:
        if name != self.name:
            raise KeyError(name)
        return self._arr

    def close(self) -> None:
        pass


# what zipfile (and the decompressors it picks by a member's compression method) raise on damaged data
# besides BadZipFile, OSError and EOFError: an unknown or unavailable method is NotImplementedError, a bad
# LZMA stream LZMAError, and a central directory with impossible fields can give IndexError, struct.error or
# OverflowError
_ZIP_DAMAGE: tuple[type[BaseException], ...] = (NotImplementedError, IndexError, struct.error, OverflowError,
                                                lzma.LZMAError)


class NpzWeights(_NumpyWeights):
    kind = "npz"

    def __init__(self, path: str):
        super().__init__(path)
        _check_magic(path, b"PK", ".npz (zip)")
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
            size = os.path.getsize(path)
            self._map: np.ndarray | None = np.memmap(path, dtype=np.uint8, mode="r") if size else None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, *_ZIP_DAMAGE) as e:
            raise ParseError(f"not a readable .npz (zip) file: {e}", path) from None
        for i in infos:     # ZipInfo.is_dir() indexes filename[-1]: an empty name (damage) is an IndexError
            if not i.filename:
                self._zip.close()
                raise ParseError("not a readable .npz (zip) file: a member has an empty name", path,
                                 offset=i.header_offset)
        self._members = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i
                         for i in infos if not i.filename.endswith("/")}
        self._cache: dict[str, np.ndarray] = {}

    @property
    def mapping(self) -> np.ndarray:
        if self._map is None:
            raise ValueError(f"{self.path}: closed")
        return self._map

    def names(self) -> list[str]:
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def _array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._load(self._members[name])
        return self._cache[name]

    def _load(self, zi: zipfile.ZipInfo) -> np.ndarray:
        try:
            with self._zip.open(zi) as f:
                head = f.read(MAX_NPY_HEADER + 16)
            hf = io.BytesIO(head)
            version = np.lib.format.read_magic(hf)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(hf, max_header_size=MAX_NPY_HEADER)
            hlen = hf.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, zlib.error, *_ZIP_DAMAGE) as e:
            raise ParseError(f"member {zi.filename!r} is not a readable .npy array: {e}", self.path) from None
        if dtype.hasobject:
            raise ParseError(f"member {zi.filename!r} holds Python objects; graphc never unpickles", self.path)
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if hlen + nbytes != zi.file_size:
            raise ParseError(f"member {zi.filename!r}: header says {nbytes} data bytes, the zip entry holds "
                             f"{zi.file_size - hlen}", self.path, offset=zi.header_offset)
        order = "F" if fortran else "C"
        if zi.compress_type == zipfile.ZIP_STORED:
            start = self._data_start(zi) + hlen
            if start + nbytes > self.mapping.size:
                raise ParseError(f"member {zi.filename!r} runs past the end of the file", self.path, offset=start)
            return np.ndarray(shape, dtype=dtype, buffer=self.mapping, offset=start, order=order)
        if zi.file_size > zi.compress_size * INFLATE_RATIO + (1 << 20):
            raise ParseError(f"member {zi.filename!r} claims {zi.file_size} bytes from {zi.compress_size} compressed",
                             self.path, offset=zi.header_offset)
        try:
            with self._zip.open(zi) as f:
                f.read(hlen)
                data = f.read(nbytes)
        except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, zlib.error, ValueError,
                *_ZIP_DAMAGE) as e:   # bad CRC / stream
            raise ParseError(f"member {zi.filename!r}: {e}", self.path) from None
        if len(data) != nbytes:
            raise ParseError(f"member {zi.filename!r} is truncated", self.path, offset=zi.header_offset)
        return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)

    def _data_start(self, zi: zipfile.ZipInfo) -> int:
        """Where a stored member's bytes begin: after its local header (whose extra field may differ
        from the central directory's)."""
        at = zi.header_offset
        if at + 30 > self.mapping.size or bytes(self.mapping[at:at + 4]) != b"PK\x03\x04":
            raise ParseError(f"member {zi.filename!r}: bad local header", self.path, offset=at)
        n_name, n_extra = struct.unpack_from("<HH", memoryview(self.mapping), at + 26)
        return at + 30 + n_name + n_extra

    def close(self) -> None:
        self._zip.close()
        self._cache.clear()
        self._map = None


_BY_EXT = {".gguf": GGUFWeights, ".safetensors": SafetensorsWeights, ".npy": NpyWeights, ".npz": NpzWeights}
_BY_MAGIC = ((b"GGUF", GGUFWeights), (b"\x93NUMPY", NpyWeights), (b"PK\x03\x04", NpzWeights))
EXTENSIONS = tuple(sorted(_BY_EXT))


def weights_format(path: str) -> type[WeightFile] | None:
    """The reader for a file: by extension, else by its first bytes (safetensors has no magic)."""
    cls = _BY_EXT.get(os.path.splitext(path)[1].lower())
    if cls is not None:
        return cls
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for magic, c in _BY_MAGIC:
        if head.startswith(magic):
            return c
    if len(head) >= 9 and head[8:9] == b"{":
        return SafetensorsWeights
    return None


def open_weights(path: "str | os.PathLike[str]") -> WeightFile:
    """Open a weight file; CompileError for a missing file or an unknown format, ParseError for damage."""
    path = os.fspath(path)
    known = os.path.splitext(path)[1].lower() in _BY_EXT
    if os.path.isdir(path):
        raise CompileError(f"weights file {path}: a directory, not a file")
    if known and not os.path.isfile(path):
        raise CompileError(f"weights file {path}: no such file")
    cls = weights_format(path) if os.path.isfile(path) else None
    if cls is None:
        ext = os.path.splitext(path)[1]
        raise CompileError(f"weights file {path}: format {ext or '(no extension)'!r} is not supported "
                           f"(supported: {', '.join(EXTENSIONS)})")
    return cls(path)


# --- binding a file tensor to a graph tensor ------------------------------------------------

def missing_message(wf: WeightFile, name: str, t: Tensor) -> str:
    names = wf.names()
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; nearest: {', '.join(map(repr, near))}" if near else ""
    return f"weight {t.name!r}: {wf.path} has no {wf.word} {name!r} (it has: {shown or 'none'}){hint}"


def tensor_data(wf: WeightFile, name: str, t: Tensor) -> np.ndarray:
    """The raw bytes (uint8, t.nbytes) of graph tensor t from file entry `name`: a view of the file when
    the stored type is t's type, else converted (see the module doc). CompileError names both sides."""
    from graphc import quants
    if name not in wf:
        raise CompileError(missing_message(wf, name, t))
    graph_side = f"graph tensor {t.name!r} is {t.type.name} ne {list(t.ne)} (numpy shape {t.shape})"

    def mismatch(why: str) -> CompileError:
        return CompileError(f"weight {t.name!r}: {why}: {graph_side}; {wf.path} {wf.word} {name!r} is "
                            f"{wf.shape_text(name)}")

    if wf.is_bytes(name):
        raw = wf.raw(name)
        if t.type.np_dtype is None and raw.size == t.nbytes:   # raw ggml bytes for a quantized / bf16 tensor
            return raw
        raise mismatch(f"uint8 data binds only as raw bytes of a quantized or bf16 tensor ({t.nbytes} bytes)")
    ftype, ne = wf.info(name)
    if ne != pad_ne(t.ne):
        raise mismatch("shapes differ")
    raw = wf.raw(name)
    if ftype == t.type:
        if raw.size != t.nbytes:      # a leaf with padded strides: ggml's nb does not fit the stored rows
            raise mismatch(f"the leaf needs {t.nbytes} bytes, the file holds {raw.size}")
        return raw
    if ftype.is_int != t.type.is_int:
        raise mismatch(f"cannot convert {ftype.name} to {t.type.name} (integer and float data do not mix)")
    if ftype.is_quantized and t.type.is_quantized:
        raise mismatch(f"will not re-quantize {ftype.name} data to {t.type.name} (the errors compound); "
                       "declare the tensor as the file's type or as f32")
    try:
        values = quants.decode(raw, ftype, ne[0]) if raw.size else np.zeros(0, np.float32)
        if t.type.is_int:
            info = np.iinfo(np.dtype(t.type.np_dtype))
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise mismatch(f"values outside the {t.type.name} range")
        elif values.dtype != np.float32:
            values = values.astype(np.float32)    # ggml converts from f32: f64 rounds once here
        out = np.ascontiguousarray(quants.encode(values.reshape(-1, ne[0]) if ne[0] else values, t.type))
    except (NotImplementedError, ValueError) as e:
        raise mismatch(f"cannot convert {ftype.name} to {t.type.name} ({e})") from None
    out = out.reshape(-1).view(np.uint8)
    if out.size != t.nbytes:
        raise mismatch(f"the leaf needs {t.nbytes} bytes, {t.type.name} conversion gives {out.size}")
    return out
