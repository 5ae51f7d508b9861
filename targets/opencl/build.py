"""Build OpenCL programs, cached: the device's binary is kept under the compile cache by a key over the
source, the build options and the device (platform, name, OpenCL version, driver version), so a second
start loads the binary instead of compiling (GRAPHC_CACHE_DIR, GRAPHC_NO_CACHE as the C target).
A failed build raises CompileError with the driver's build log. Writes are atomic (temporary + rename).
A cached file is "GRAPHCCL" + sha256(key + binary) + the binary: the digest binds the bytes to the key
they were built for, so a flipped byte, a truncation or another key's file swapped in is a cache miss
(built from source again and rewritten), never a binary handed to the driver."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

from graphc.errors import CompileError

from graphc.util import cache_dir

from .device import DeviceContext

VERSION = "2"          # bump when what a cached binary means changes (2: the digest header)
MAGIC = b"GRAPHCCL"


def options(dc: DeviceContext) -> list[str]:
    # -w: warnings are not errors, and some drivers print them to the user's stderr (PoCL: unroll hints)
    opts = ["-cl-std=CL1.2", "-w"]
    if dc.features.correct_div_sqrt:
        opts.append("-cl-fp32-correctly-rounded-divide-sqrt")
    return opts


def _key(source: str, opts: list[str], dc: DeviceContext) -> str:
    h = hashlib.sha256()
    for part in (VERSION, dc.key(), " ".join(opts), source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def build(dc: DeviceContext, source: str, what: str) -> Any:
    """A built cl.Program for `source` on dc's device (from memory, the disk cache, or compiled now)."""
    opts = options(dc)
    key = _key(source, opts, dc)
    prog = dc.programs.get(key)
    if prog is not None:
        return prog
    cdir = cache_dir()
    path = cdir / "opencl" / f"{key}.bin" if cdir is not None else None
    with warnings.catch_warnings():     # pyopencl turns any build log into a warning; failures are errors
        warnings.simplefilter("ignore")
        prog = _build(dc, source, opts, path, what)
    dc.programs[key] = prog
    return prog


def _build(dc: DeviceContext, source: str, opts: list[str], path: "Path | None", what: str) -> Any:
    cl = dc.cl
    prog = None
    binary = _read(path) if path is not None else None
    if binary is not None:
        try:
            prog = cl.Program(dc.context, [dc.device], [binary]).build(options=opts)
        except Exception:       # a binary the driver no longer takes: build from source instead
            prog = None
    if prog is None:
        prog = cl.Program(dc.context, source)
        try:
            prog.build(options=opts)
        except cl.RuntimeError as e:
            log = _build_log(prog, dc, source, e)
            raise CompileError(f"target opencl: building {what} failed on {dc.features.name}:\n{log}") from None
        if path is not None:
            _save(path, prog.binaries[0])
    return prog


def _digest(key: str, data: bytes) -> bytes:
    return hashlib.sha256(key.encode() + b"\0" + data).digest()


def _read(path: Path) -> "bytes | None":
    """The binary cached at path (named <key>.bin) when its digest header matches; None otherwise."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 32
    if len(raw) <= head or raw[:len(MAGIC)] != MAGIC or raw[len(MAGIC):head] != _digest(path.stem, raw[head:]):
        return None
    return raw[head:]


def _build_log(prog: Any, dc: DeviceContext, source: str, e: Exception) -> str:
    """The driver's log, each `file:line:col:` followed by that line of the source."""
    try:
        text = prog.get_build_info(dc.device, dc.cl.program_build_info.LOG)
    except Exception:
        text = str(e)
    lines = source.splitlines()
    out = []
    for ln in text.splitlines()[:200]:
        out.append(ln)
        m = re.search(r"\.cl:(\d+):(\d+):", ln)
        if m and 0 < int(m.group(1)) <= len(lines):
            out.append(f"    source line {m.group(1)}: {lines[int(m.group(1)) - 1].strip()[:200]}")
    return "\n".join(out)


def _save(path: Path, data: bytes) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + _digest(path.stem, data) + data)
        os.replace(tmp, path)
    except OSError:             # a read-only or full cache only costs time
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
