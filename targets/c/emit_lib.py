"""The standalone C library artifact of a module compiled for target c (graphc compile --emit-lib DIR).

DIR gets: libgraphc_model.so (the module's generated program plus kernels/c/lib/runtime.c, built with the
module's flags and -fvisibility=hidden: only the gcm_* API is exported), graphc_model.h (the API, from
kernels/c/lib), weights.bin (a weights pack: every weight/constant leaf's bytes exactly as the C target
binds them), manifest.json, example.c and a Makefile (`make run` builds and runs it without Python), and
src/ (every source of the library, to rebuild it with `make lib`).

The library knows its tensors from model_data.h (kernels/c/lib/model_data.h.j2), rendered here: buffers,
public tensors (names only as escaped C string literals), and the pack's exact header and table.
Pack layout (little-endian): 64-byte header {magic "GRAPHCW\\0", u32 version, u32 count, u64 file size,
u64 data offset, u64 checksum, u8 model id[16], 8 zero bytes}, count x {u64 offset, u64 nbytes}, then
the data, each entry at a 64-byte aligned offset, zero padded to a multiple of 64. checksum: see
`checksum`; model id: the first 16 bytes of sha256(table + data). When every pack entry is an unchanged
tensor of one GGUF file, the library also records that file's size, the entries' offsets in it and their
checksum, and gcm_create maps the GGUF file itself when given it (docs/c-library.md).
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import shlex
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from graphc.errors import CompileError
from graphc.ir import Flag, Tensor, contiguous_strides
from graphc.program import region_of, root_of, written_roots
from graphc.runtime import value_dtype
from graphc.util import sha256_file
from graphc.version import __version__

from . import build as cbuild
from .codegen import KERNELS, generate
from .params import header as params_header

LIB_TEMPLATES = KERNELS / "lib"
FORMAT = "graphc-c-library"
FORMAT_VERSION = 1
API_VERSION = 1
LIB_NAME = "libgraphc_model.so"
HEADER_NAME = "graphc_model.h"
WEIGHTS_NAME = "weights.bin"
MANIFEST_NAME = "manifest.json"
PACK_MAGIC = b"GRAPHCW\0"
PACK_VERSION = 1
PACK_HEADER = 64
ALIGN = 64

# buffer kinds: the enum in kernels/c/lib/runtime.c
ARENA, TEMP, WEIGHT, COPY, STATE, IO = range(6)
_KIND_NAMES = ("arena", "temp", "weight", "copy", "state", "io")
ROLE_BITS = {"input": 1, "output": 2, "state": 4, "weight": 8}

_MASK = (1 << 64) - 1
_PHI = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def c_string(s: str) -> str:
    """A C string literal holding s's UTF-8 bytes: printable ASCII as is (but \" \\ ?), the rest as octal
    escapes (three digits, so a following digit can never join the escape)."""
    out = []
    for b in s.encode("utf-8"):
        out.append(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def checksum(data: "np.ndarray | memoryview | bytes", first: int = 0) -> int:
    """The content checksum (runtime.c gcm_checksum): sum over the 64-bit little-endian words w[i] of data
    (a last partial word zero-padded) of splitmix64's finaliser applied to w[i] + (first + i + 1) * phi,
    mod 2^64. The pack sums its data region with first = 0; a GGUF file sums each tensor's bytes with
    first = its file offset / 8."""
    b = np.frombuffer(data, dtype=np.uint8)
    tail = b.size % 8
    if tail:
        last = np.zeros(8, np.uint8)
        last[:tail] = b[b.size - tail:]
        return (checksum(b[:b.size - tail], first) + checksum(last, first + b.size // 8)) & _MASK
    w = b.view("<u8")
    h = 0
    step = 1 << 20
    for s in range(0, w.size, step):
        x = w[s:s + step].astype(np.uint64) + \
            np.arange(first + s + 1, first + s + 1 + min(step, w.size - s), dtype=np.uint64) * _PHI
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
        h = (h + int(x.sum(dtype=np.uint64))) & _MASK
    return h


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# --- the layout: buffers, public tensors, pack entries ------------------------------------------------

@dataclass
class PackEntry:
    leaf: Tensor
    data: np.ndarray           # flat uint8, leaf.nbytes
    offset: int = 0


@dataclass
class Buffer:
    kind: int
    size: int
    pack: int = -1             # index into the pack, -1 for none
    root: Tensor | None = None


@dataclass
class Public:
    t: Tensor
    roles: set[str]
    buf: int
    offset: int


@dataclass
class Layout:
    buffers: list[Buffer]
    n_program: int             # the first n_program buffers are gc_create's bufs
    tensors: list[Public]
    pack: list[PackEntry]
    index: dict[str, int] = field(default_factory=dict)   # "arena" / "temp" / "root:<id>" -> buffer index


def layout_of(exe: Any) -> Layout:
    """Where every buffer of the C executable's program comes from in the library, and the public table."""
    graph, gen, plan = exe.graph, exe.gen, exe.program.plan
    roots = {id(root_of(t)): root_of(t) for t in graph.tensors()}
    written = written_roots(graph.nodes)
    lay = Layout([], 0, [], [])
    pack_of: dict[int, int] = {}

    def pack_index(leaf: Tensor) -> int:
        if leaf.data is None:
            return -1
        if id(leaf) not in pack_of:
            data = np.ascontiguousarray(np.asarray(leaf.data).reshape(-1).view(np.uint8))
            if data.size != leaf.nbytes:
                raise CompileError(f"leaf {leaf.name!r} holds {data.size} bytes of data, it needs {leaf.nbytes}")
            pack_of[id(leaf)] = len(lay.pack)
            lay.pack.append(PackEntry(leaf, data))
        return pack_of[id(leaf)]

    def root_buffer(r: Tensor) -> Buffer:
        if not r.is_leaf:
            return Buffer(IO, r.nbytes, -1, r)                       # an output node's own region
        if r.flags & Flag.STATE:
            return Buffer(STATE, r.nbytes, pack_index(r), r)         # zeros, then its initial value
        p = pack_index(r)
        if r.flags & Flag.INPUT:
            return Buffer(COPY if p >= 0 else IO, r.nbytes, p, r)
        if p < 0:
            raise CompileError(f"emit_lib: weight {r.name!r} has no data to write into the weights pack")
        return Buffer(COPY if id(r) in written else WEIGHT, r.nbytes, p, r)

    def add(key: str, b: Buffer) -> int:
        lay.index[key] = len(lay.buffers)
        lay.buffers.append(b)
        return lay.index[key]

    for key in gen.buffers:
        if key == "arena":
            add(key, Buffer(ARENA, max(plan.size, 0)))
        elif key == "temp":
            add(key, Buffer(TEMP, gen.temp_size))
        else:
            add(key, root_buffer(roots[int(key.split(":", 1)[1])]))
    lay.n_program = len(lay.buffers)

    roles: dict[int, set[str]] = {}
    order: list[Tensor] = []
    outputs = [t for t in graph.nodes + graph.leafs if t.has(Flag.OUTPUT)]
    weights = [t for t in graph.leafs if not t.flags & (Flag.INPUT | Flag.STATE) and t.data is not None]
    for role, ts in (("input", graph.inputs), ("output", outputs), ("state", graph.state), ("weight", weights)):
        for t in ts:
            if id(t) not in roles:
                roles[id(t)] = set()
                order.append(t)
            roles[id(t)].add(role)
    for t in order:
        r = root_of(t)
        if region_of(r) == "arena":
            raise CompileError(f"emit_lib: {t.name!r} is a view of an arena intermediate {r.name!r}; it has no "
                               "value outside its kernels")
        if t.type.blck > 1 and t.nb[0] != t.type.size:
            raise CompileError(f"emit_lib: {t.name!r}: the {t.type.name} blocks of a row are not adjacent")
        key = f"root:{id(r)}"
        buf = lay.index[key] if key in lay.index else add(key, root_buffer(r))
        lay.tensors.append(Public(t, roles[id(t)], buf, t.view_offs if t.is_view else 0))
    return lay


# --- the weights pack ---------------------------------------------------------------------------------

@dataclass
class Pack:
    file_size: int
    data_offset: int
    checksum: int
    model_id: bytes


def write_pack(path: Path, entries: list[PackEntry]) -> Pack:
    """Write the pack atomically (temporary file + rename); sets each entry's offset."""
    data_offset = _align(PACK_HEADER + 16 * len(entries))
    off = data_offset
    for e in entries:
        e.offset = off
        off = _align(off + e.data.size)
    file_size = max(off, data_offset)
    table = b"".join(struct.pack("<QQ", e.offset, e.data.size) for e in entries)
    fd, tmp = tempfile.mkstemp(prefix=".weights.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PACK_HEADER + table)
            for e in entries:
                f.write(b"\0" * (e.offset - f.tell()))
                f.write(memoryview(e.data))
            f.write(b"\0" * (file_size - f.tell()))
        with open(tmp, "r+b") as f:
            with mmap.mmap(f.fileno(), 0) as mm:
                data = memoryview(mm)[data_offset:file_size]
                try:
                    ck = checksum(data)
                    sha = hashlib.sha256(table)
                    sha.update(data)
                finally:
                    data.release()
            model_id = sha.digest()[:16]
            f.seek(0)
            f.write(PACK_MAGIC + struct.pack("<IIQQQ", PACK_VERSION, len(entries), file_size, data_offset, ck)
                    + model_id + b"\0" * 8)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return Pack(file_size, data_offset, ck, model_id)


# --- mapping a GGUF file directly -----------------------------------------------------------------------

@dataclass
class GGUFTable:
    """Where every pack entry's bytes lie, unchanged, in one GGUF file (create() may map it instead)."""
    path: str
    file_size: int
    offsets: list[int]
    checksum: int             # sum of checksum(entry bytes, offset / 8) over the entries


def _gguf_candidate(entries: list[PackEntry]) -> str | None:
    """The GGUF file every pack entry is bound to (WeightRef), if there is exactly one."""
    files = {os.path.abspath(e.leaf.weight.file) if e.leaf.weight is not None else None for e in entries}
    if len(files) != 1 or None in files:
        return None
    f = files.pop()
    return f if f is not None and f.lower().endswith(".gguf") else None


def gguf_table(path: str, entries: list[PackEntry]) -> "tuple[GGUFTable | None, str]":
    """The GGUF table when every entry's bytes are a tensor of `path` unchanged (by the leaf's binding or
    its own name); else (None, why not)."""
    from graphc.errors import ParseError
    from graphc.frontends.gguf import GGUFFile
    if not entries:
        return None, "the model has no weights"
    try:
        f = GGUFFile(path)
    except (ParseError, OSError) as e:
        return None, f"cannot read {path}: {e}"
    try:
        size = int(f.mapping.size)
        offsets, total = [], 0
        for e in entries:
            names = [e.leaf.weight.tensor] if e.leaf.weight is not None else []
            names.append(e.leaf.name)
            hit = next((n for n in names if n in f.tensors and f.tensors[n].nbytes == e.data.size
                        and np.array_equal(f.raw(n), e.data)), None)
            if hit is None:
                return None, f"{e.leaf.name!r} is not an unchanged tensor of {os.path.basename(path)}"
            off = int(f.tensors[hit].offset)
            if off % 8:
                return None, f"tensor {hit!r} lies at an offset that is not a multiple of 8"
            offsets.append(off)
            total = (total + checksum(f.raw(hit), off // 8)) & _MASK
        return GGUFTable(os.path.abspath(path), size, offsets, total), ""
    finally:
        f.close()


# --- rendering and building ---------------------------------------------------------------------------

def _dense_nbytes(t: Tensor) -> int:
    return 0 if t.nelements == 0 else t.nelements // t.type.blck * t.type.size


def _contiguous(t: Tensor) -> bool:
    want = contiguous_strides(t.type, t.ne)
    return all(t.ne[d] == 1 or t.nb[d] == want[d] for d in range(4))


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(LIB_TEMPLATES)), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def render_model_data(exe: Any, lay: Layout, pack: Pack, default_threads: int, gguf: GGUFTable | None = None) -> str:
    tensors = []
    for p in lay.tensors:
        t = p.t
        tensors.append(dict(name=c_string(t.name), roles=sum(ROLE_BITS[r] for r in p.roles), type=t.type.id,
                            type_name=t.type.name, n_dims=len(t.shape), ne=list(t.ne), nb=list(t.nb),
                            nelements=t.nelements, nbytes=_dense_nbytes(t), blck=t.type.blck,
                            type_size=t.type.size, contiguous=int(_contiguous(t)), buf=p.buf, offset=p.offset))
    bufs = [dict(kind=("GCM_BUF_" + _KIND_NAMES[b.kind].upper()), size=b.size, pack=b.pack) for b in lay.buffers]
    checked = [c_string(f"{n.op} {n.name!r}") for n in exe.gen.checked]
    return _env().get_template("model_data.h.j2").render(
        graph_name=c_string(exe.graph.name or ""), model_id=pack.model_id.hex(), default_threads=default_threads,
        n_program_bufs=lay.n_program, bufs=bufs, tensors=tensors, pack=[dict(offset=e.offset, nbytes=e.data.size)
                                                                        for e in lay.pack],
        pack_version=PACK_VERSION, pack_file_size=pack.file_size, pack_data_offset=pack.data_offset,
        pack_checksum=pack.checksum, pack_id_bytes=", ".join(str(b) for b in pack.model_id), checked=checked,
        gguf=gguf)


def lib_flags(exe: Any, werror: bool = False) -> list[str]:
    """The module's own flags (same code, same numbers) plus hidden visibility and the soname."""
    fl = list(exe.built.flags) + ["-fvisibility=hidden", f"-Wl,-soname,{LIB_NAME}"]
    return fl + (["-Werror"] if werror else [])


def _build(src: Path, out: Path, flags: list[str]) -> tuple[cbuild.Compiler, str]:
    cc = cbuild.find_compiler()
    tmp = out.parent / f".{LIB_NAME}.part"
    cmd = [cc.path, *flags, "-I", str(src), str(src / "program.c"), str(src / "runtime.c"), "-o", str(tmp), "-lm"]
    warnings = cbuild.run_compiler(cmd, f"building {LIB_NAME}", flags)
    os.replace(tmp, out)
    return cc, warnings


def _prepare_dir(d: Path) -> None:
    if d.exists() and not d.is_dir():
        raise CompileError(f"emit_lib: {d} exists and is not a directory")
    if d.is_dir() and any(d.iterdir()):
        ok = False
        try:
            ok = json.loads((d / MANIFEST_NAME).read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            pass
        if not ok:
            raise CompileError(f"emit_lib: {d} is a non-empty directory that is not a graphc C library; "
                               "choose an empty or new one")
        (d / MANIFEST_NAME).unlink()       # a half-rewritten library never looks complete
    d.mkdir(parents=True, exist_ok=True)


def _executable(module: Any) -> Any:
    exe = getattr(module, "_exe", module)
    if not hasattr(exe, "gen") or not hasattr(exe, "built"):
        target = getattr(module, "target", type(exe).__name__)
        raise CompileError(f"emit_lib needs a module compiled for target 'c' (this one is for {target!r})")
    if exe.gen.host_steps:
        ops = ", ".join(sorted({st.op for st in exe.gen.host_steps}))
        raise CompileError(f"emit_lib: the graph has collectives ({ops}: a tensor-parallel shard); they run "
                           "through torch.distributed from Python, which a standalone C library does not have")
    return exe


def emit_lib(module: Any, directory: "str | os.PathLike[str]", *, werror: bool = False,
             default_threads: int | None = None, gguf: "str | os.PathLike[str] | bool | None" = None) -> Path:
    """Write the C library artifact of `module` (a Module compiled with target="c") into `directory`.

    default_threads: the thread count gcm_create uses when given n_threads <= 0 (default: the module's
    n_threads option if it was given, else 0 = OpenMP's default at run time). werror: build with -Werror.
    gguf: a GGUF file that gcm_create may map instead of weights.bin, usable when every weight is one
    of its tensors unchanged (checked here; otherwise the manifest says why not); None (default): the
    GGUF file every weight is bound to, if there is one; False: none. Returns the directory."""
    exe = _executable(module)
    d = Path(os.fspath(directory))
    _prepare_dir(d)
    if default_threads is None:
        default_threads = int(getattr(module, "target_opts", {}).get("n_threads") or 0)
    lay = layout_of(exe)
    pack = write_pack(d / WEIGHTS_NAME, lay.pack)
    if gguf is None:
        gguf = _gguf_candidate(lay.pack) or False
    table, why = gguf_table(os.fspath(gguf), lay.pack) if gguf else (None, "no GGUF file given or bound")

    src = d / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir()
    for h in sorted(KERNELS.glob("*.h")):              # the kernel library, whole (headers include each other)
        shutil.copyfile(h, src / h.name)
    (src / "graphc_params.h").write_text(params_header(), encoding="utf-8")
    # the artifact packs the weights as the file holds them: its code reads no re-laid-out weights
    source = generate(exe.program, exe.serial_work).source if getattr(exe, "relaid", None) else exe.gen.source
    (src / "program.c").write_text(source, encoding="utf-8")
    (src / "model_data.h").write_text(render_model_data(exe, lay, pack, default_threads, table), encoding="utf-8")
    for name in ("runtime.c", HEADER_NAME):
        shutil.copyfile(LIB_TEMPLATES / name, src / name)
    shutil.copyfile(LIB_TEMPLATES / HEADER_NAME, d / HEADER_NAME)
    shutil.copyfile(LIB_TEMPLATES / "example.c", d / "example.c")

    flags = lib_flags(exe, werror)
    cc, warnings = _build(src, d / LIB_NAME, flags)
    make_flags = " ".join(shlex.quote(f).replace("$", "$$") for f in flags)
    (d / "Makefile").write_text(_env().get_template("Makefile.j2").render(lib_cflags=make_flags), encoding="utf-8")

    _write_manifest(d, exe, lay, pack, cc, flags, warnings, default_threads, table, why)
    return d


def _write_manifest(d: Path, exe: Any, lay: Layout, pack: Pack, cc: cbuild.Compiler, flags: list[str],
                    warnings: str, default_threads: int, gguf: GGUFTable | None, why: str) -> None:
    files = [LIB_NAME, HEADER_NAME, WEIGHTS_NAME, "example.c", "Makefile"] + \
        [f"src/{p.name}" for p in sorted((d / "src").iterdir())]
    index_of = {id(e.leaf): i for i, e in enumerate(lay.pack)}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "api_version": API_VERSION,
        "graphc_version": __version__,
        "graph_name": exe.graph.name,
        "library": LIB_NAME,
        "header": HEADER_NAME,
        "weights_file": WEIGHTS_NAME,
        "model_id": pack.model_id.hex(),
        "default_threads": default_threads,
        "tensors": [{"index": i, "name": p.t.name, "roles": sorted(p.roles), "type": p.t.type.name,
                     "ne": list(p.t.ne), "nb": list(p.t.nb), "shape": list(p.t.shape),
                     "dtype": str(value_dtype(p.t)), "nbytes": _dense_nbytes(p.t), "contiguous": _contiguous(p.t),
                     "buffer": p.buf, "offset": p.offset,
                     "pack_entry": index_of.get(id(root_of(p.t)))} for i, p in enumerate(lay.tensors)],
        "buffers": [{"index": i, "kind": _KIND_NAMES[b.kind], "bytes": b.size, "pack_entry": b.pack,
                     "tensor": b.root.name if b.root is not None else None} for i, b in enumerate(lay.buffers)],
        "program_buffers": lay.n_program,
        "weights_pack": {"version": PACK_VERSION, "bytes": pack.file_size, "data_offset": pack.data_offset,
                         "checksum": f"{pack.checksum:016x}",
                         "entries": [{"index": i, "name": e.leaf.name, "type": e.leaf.type.name,
                                      "ne": list(e.leaf.ne), "offset": e.offset, "nbytes": int(e.data.size)}
                                     for i, e in enumerate(lay.pack)]},
        "gguf": ({"file": gguf.path, "bytes": gguf.file_size, "checksum": f"{gguf.checksum:016x}",
                  "offsets": gguf.offsets} if gguf is not None else {"unavailable": why}),
        "memory": {"arena_bytes": exe.program.plan.size, "temp_bytes": exe.gen.temp_size},
        "kernels": [{"name": k.name, "kind": k.kind, "ops": k.ops, "outputs": [o.name for o in k.outputs]}
                    for k in exe.program.kernels if k.kind != "view"],
        "compiler": {"path": cc.path, "version": cc.version, "flags": flags, "warnings": warnings},
        "requires": {"cpu_features": cbuild.required_features(cc.path, flags)},     # what the library's code may use
        "files": {f: {"sha256": sha256_file(d / f), "bytes": (d / f).stat().st_size} for f in files},
    }
    tmp = d / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST_NAME)
