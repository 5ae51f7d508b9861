"""Weights re-laid out once at load for the C target's matmul kernels (ggml's REPACK idea).

q4_0, q4_K and q6_K matrices whose only use is as mul_mat's weights are stored 8 rows at a time
(kernels/c/matmul_x8.h has the layouts and why): the kernels then keep one vector lane per weight row,
so a block's integer dot, its int->float conversion and its scaling are done once per 8 rows instead of
once per row. q4_0 and q6_K keep their bytes per row, q4_K grows 2.8% (unpacked sub-block scales); the
tensor's type in the generated code becomes GC_Q4_0X8 / GC_Q4_KX8 / GC_Q6_KX8.

The re-laid-out copy of a weight is made once per process in anonymous memory with transparent huge
pages (_anonymous says why), shared by every module that uses the same bytes (a model's decode and
prefill graphs), and kept in the compile cache as a file that later processes read instead of
re-laying out: its name is the sha256 of the layout version, the source file's
path, size and modification time and the tensor's offset in it (cheap to know), or, for weights that are
not file mappings, of the bytes themselves. The cached file is checked against its size and a sha256 of
its bytes written next to it (with the file's name, sha256sum's format: two cached weights swapped with
their digests do not pass); a mismatch rebuilds it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from graphc.ir import Flag, Graph, Tensor
from graphc.util import cache_dir, digest_line, digest_ok

LAYOUT_VERSION = 2
GC_Q4_0X8 = 200                 # kernels/c/graphc.h
GC_Q4_KX8 = 201
GC_Q6_KX8 = 202
Q4_0_BLOCK = 18                 # bytes per 32 elements
Q4_K_BLOCK = 144                # bytes per 256 elements
Q4_KX8_BLOCK = 1184             # bytes per 8 rows x 256 elements (matmul_x8.h: scales unpacked to bytes)
Q6_K_BLOCK = 210
Q6_KX8_BLOCK = 8 * Q6_K_BLOCK
C_TYPE = {"q4_0": GC_Q4_0X8, "q4_K": GC_Q4_KX8, "q6_K": GC_Q6_KX8}   # type -> the C type of its 8-row layout


def eligible(graph: Graph) -> list[Tensor]:
    """Weight leafs to store in 8-row groups: q4_0 or q4_K, 2-D with rows in groups of 8, packed rows,
    data bound, and read by nothing but mul_mat as its weights (src0) without a view in between."""
    uses: dict[int, list[tuple[Tensor, int]]] = {}
    for n in graph.nodes:
        for i, s in enumerate(n.src):
            if s is not None:
                uses.setdefault(id(s), []).append((n, i))
    outputs = {id(t) for t in graph.outputs}
    out = []
    for t in graph.leafs:
        if t.type.name not in C_TYPE or t.data is None or t.is_view or t.flags & (Flag.INPUT | Flag.STATE):
            continue
        if t.ne[1] % 8 or t.ne[2] != 1 or t.ne[3] != 1 or t.ne[0] % t.type.blck:
            continue
        if t.nb[1] != t.type.size * (t.ne[0] // t.type.blck) or id(t) in outputs:
            continue
        u = uses.get(id(t), [])
        if u and all(n.op == "mul_mat" and i == 0 for n, i in u):
            out.append(t)
    return out


def relayout_q4_0_x8(raw: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """q4_0 rows (n_rows x k elements, packed bytes) -> the 8-row-group layout of matmul_x8.h."""
    nb = k // 32
    blocks = np.asarray(raw, dtype=np.uint8).reshape(n_rows // 8, 8, nb, Q4_0_BLOCK)
    out = np.empty((n_rows // 8, nb, 8 * Q4_0_BLOCK), dtype=np.uint8)
    out[:, :, :16] = blocks[:, :, :, :2].transpose(0, 2, 1, 3).reshape(n_rows // 8, nb, 16)
    qs = blocks[:, :, :, 2:].reshape(n_rows // 8, 8, nb, 4, 4)           # [g, r, b, chunk i, byte]
    out[:, :, 16:] = qs.transpose(0, 2, 3, 1, 4).reshape(n_rows // 8, nb, 128)
    return out.reshape(-1)


def relayout_q4_K_x8(raw: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """q4_K rows (n_rows x k elements, packed bytes) -> the 8-row-group layout of matmul_x8.h."""
    from graphc.quants import _k4_scales
    ns, g = k // 256, n_rows // 8
    blocks = np.asarray(raw, dtype=np.uint8).reshape(g, 8, ns, Q4_K_BLOCK)
    out = np.empty((g, ns, Q4_KX8_BLOCK), dtype=np.uint8)
    by_block = blocks.transpose(0, 2, 1, 3)                                   # [g, s, r, 144]
    out[:, :, 0:16] = by_block[:, :, :, 0:2].reshape(g, ns, 16)               # d
    out[:, :, 16:32] = by_block[:, :, :, 2:4].reshape(g, ns, 16)              # dmin
    sc, mn = _k4_scales(np.ascontiguousarray(by_block[:, :, :, 4:16]).reshape(-1, 12))
    sc = sc.reshape(g, ns, 8, 8).astype(np.uint8)                             # [g, s, r, sb]
    mn = mn.reshape(g, ns, 8, 4, 2).astype(np.uint8)                          # [g, s, r, p, 2]
    out[:, :, 32:96] = sc.transpose(0, 1, 3, 2).reshape(g, ns, 64)            # sc[sb][r]
    out[:, :, 96:160] = mn.transpose(0, 1, 3, 2, 4).reshape(g, ns, 64)        # mn[p][r][2]
    qs = by_block[:, :, :, 16:].reshape(g, ns, 8, 4, 8, 4)                    # [g, s, r, ch, i, byte]
    out[:, :, 160:] = qs.transpose(0, 1, 3, 4, 2, 5).reshape(g, ns, 1024)
    return out.reshape(-1)


def relayout_q6_K_x8(raw: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """q6_K rows (n_rows x k elements, packed bytes) -> the 8-row-group layout of matmul_x8.h."""
    from graphc.quants import _UNPACKERS
    ns, g = k // 256, n_rows // 8
    blocks = np.asarray(raw, dtype=np.uint8).reshape(g, 8, ns, Q6_K_BLOCK).transpose(0, 2, 1, 3)  # [g, s, r, 210]
    out = np.empty((g, ns, Q6_KX8_BLOCK), dtype=np.uint8)
    out[:, :, 0:16] = blocks[:, :, :, 208:210].reshape(g, ns, 16)                         # d
    out[:, :, 16:144] = blocks[:, :, :, 192:208].transpose(0, 1, 3, 2).reshape(g, ns, 128)  # sc[sb][r]
    u = (_UNPACKERS["q6_K"](np.ascontiguousarray(blocks).reshape(-1, Q6_K_BLOCK))["q"].astype(np.int16) + 32)
    u = u.astype(np.uint8).reshape(g, ns, 8, 4, 2, 2, 4, 4)       # [g, s, r, chunk c, half 32, 16, i, b]
    lo, hi = u & 15, u >> 4
    # per chunk c and i: A (j = 0) and B (j = 1): nibble 0 = element 64c + 16j + 4i + b, nibble 1 = +32
    low = lo[:, :, :, :, 0] | (lo[:, :, :, :, 1] << 4)                            # [g, s, r, c, j, i, b]
    # H: bits 0-1 element 64c+4i+b, 2-3 64c+32+.., 4-5 64c+16+.., 6-7 64c+48+..
    h = hi[:, :, :, :]                                                            # [g, s, r, c, half, j, i, b]
    high = h[:, :, :, :, 0, 0] | (h[:, :, :, :, 1, 0] << 2) | (h[:, :, :, :, 0, 1] << 4) | (h[:, :, :, :, 1, 1] << 6)
    parts = np.empty((g, ns, 4, 4, 3, 8, 4), dtype=np.uint8)                      # [g, s, c, i, A/B/H, r, b]
    parts[:, :, :, :, 0:2] = low.transpose(0, 1, 3, 5, 4, 2, 6)
    parts[:, :, :, :, 2] = high.transpose(0, 1, 3, 4, 2, 5)
    out[:, :, 144:] = parts.reshape(g, ns, 1536)
    return out.reshape(-1)


RELAYOUT = {"q4_0": relayout_q4_0_x8, "q4_K": relayout_q4_K_x8, "q6_K": relayout_q6_K_x8}   # by type name


def relaid_nbytes(t: Tensor) -> int:
    """Bytes of t in its 8-row layout."""
    if t.type.name == "q4_K":
        return (t.ne[1] // 8) * (t.ne[0] // 256) * Q4_KX8_BLOCK
    return t.ne[1] * t.nb[1]


_lock = threading.Lock()
_made: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()


class _Relaid(np.ndarray):
    """An ndarray subclass only so that the process-wide table can hold it weakly."""


_making: dict[str, threading.Lock] = {}      # key -> the lock of the thread making it (others wait on it)


def relaid(t: Tensor) -> np.ndarray:
    """The re-laid-out bytes of weight t (read-only), made or found once per process and cache. Threads may
    ask at once (relaid_all): one makes each key, the others wait for that one key only."""
    key = _key(t)
    with _lock:
        arr = _made.get(key)
        if arr is not None:
            return arr
        mine = _making.setdefault(key, threading.Lock())
    with mine:
        with _lock:
            arr = _made.get(key)
        if arr is None:
            arr = _load_or_make(t, key).view(_Relaid)
            arr.flags.writeable = False
            with _lock:
                _made[key] = arr
                _making.pop(key, None)
    return arr


def relaid_all(tensors: "list[Tensor]") -> list[np.ndarray]:
    """relaid() of each, on a thread per core: reading (or making) and checking the bytes release the GIL,
    and a model's start-up reads hundreds of MB of them."""
    if len(tensors) < 2:
        return [relaid(t) for t in tensors]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(len(tensors), os.cpu_count() or 1)) as pool:
        return list(pool.map(relaid, tensors))


def _source_bytes(t: Tensor) -> np.ndarray:
    return np.asarray(t.data).reshape(-1).view(np.uint8)


def _key(t: Tensor) -> str:
    h = hashlib.sha256(f"graphc-relayout-{t.type.name}x8-v{LAYOUT_VERSION}:{t.ne[0]}x{t.ne[1]}\0".encode())
    src = _file_of(t)
    if src is not None:
        path, offset = src
        st = os.stat(path)
        h.update(f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{offset}".encode())
    else:
        h.update(memoryview(np.ascontiguousarray(_source_bytes(t))))
    return h.hexdigest()


def _file_of(t: Tensor) -> "tuple[str, int] | None":
    """(path, byte offset) when t's data is a read-only mapping of a file (np.memmap), else None."""
    data = t.data
    if not isinstance(data, np.ndarray):
        return None
    base = data
    while isinstance(base.base, np.ndarray):      # slices of a memmap are memmaps too: go to the root
        base = base.base
    if isinstance(base, np.memmap) and getattr(base, "filename", None) and not data.flags.writeable:
        start = np.asarray(data).__array_interface__["data"][0]
        origin = base.__array_interface__["data"][0] - base.offset
        return str(base.filename), int(start - origin)
    return None


def _anonymous(nbytes: int) -> np.ndarray:
    """A zeroed, writable uint8 buffer in anonymous memory that the kernel may back with transparent huge
    pages (madvise MADV_HUGEPAGE): a weight stream read once per token runs faster over 2 MiB pages than
    over 4 KiB ones (fewer TLB misses; hardware prefetchers stop at page boundaries). Measured on the
    LLaMA-shaped q4_0 decode: the same re-laid-out bytes mapped from a file gave 86-89 tok/s, in
    anonymous memory 104."""
    import mmap
    m = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return np.frombuffer(m, dtype=np.uint8, count=nbytes)


def _read_checked(path: Path, arr: np.ndarray, chunk: int = 4 << 20) -> str:
    """Read the file into arr, hashing each chunk while it is still in cache; the SHA-256 hex digest (of
    what was read: a short file gives another digest)."""
    h, mv, pos = hashlib.sha256(), memoryview(arr), 0
    with open(path, "rb", buffering=0) as f:
        while pos < len(mv):
            n = f.readinto(mv[pos:pos + chunk])
            if not n:
                break
            h.update(mv[pos:pos + n])
            pos += n
    return h.hexdigest()


def _load_or_make(t: Tensor, key: str) -> np.ndarray:
    nbytes = t.ne[1] * t.nb[1]
    d = cache_dir()
    path = None if d is None else Path(d) / "weights" / f"{key}.{t.type.name}x8"
    size = relaid_nbytes(t)
    arr = _anonymous(size)
    if path is not None and path.is_file() and path.stat().st_size == size:
        digest = path.with_suffix(".sha256")
        try:
            if digest.is_file() and digest_ok(digest, _read_checked(path, arr), path.name):
                return arr
        except OSError:
            pass                     # unreadable: made again below
    arr[:] = RELAYOUT[t.type.name](_source_bytes(t)[:nbytes], t.ne[1], t.ne[0])
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, part = tempfile.mkstemp(prefix=f".{key}.", suffix=".part", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(memoryview(arr))
            digest_part = part + ".sha256"
            Path(digest_part).write_text(digest_line(hashlib.sha256(memoryview(arr)).hexdigest(), path.name))
            os.replace(digest_part, path.with_suffix(".sha256"))
            os.replace(part, path)
        except OSError:
            pass                     # a read-only or full cache: the copy in memory still works
    return arr
