"""Small helpers with no graph knowledge, shared by the API and the targets."""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["cache_dir", "cache_lock", "digest_line", "digest_ok", "install_checked", "read_at_most", "sha256_file",
           "slow_step", "verified_file"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's contents, hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- content-hash sidecars of cached files --------------------------------------------------------
# A cached file F (a compiled library, a re-laid-out weight) has a sidecar holding one line in sha256sum's
# format, "<sha256 of F's bytes>  <F's name>": the name binds the digest to the file it was made for, so
# swapping two cached files together with their sidecars is caught as surely as a flipped byte.

def digest_line(hexdigest: str, name: str) -> str:
    """A sidecar's text: sha256sum's format, `sha256sum -c` checks it in the file's directory."""
    return f"{hexdigest}  {name}\n"


def digest_ok(sidecar: "str | os.PathLike[str]", hexdigest: str, name: str) -> bool:
    """Whether the sidecar exists and records exactly this digest for this file name."""
    try:
        with open(sidecar, encoding="utf-8", errors="replace") as f:
            return f.read(4096) == digest_line(hexdigest, name)
    except OSError:
        return False


def verified_file(path: "str | os.PathLike[str]", sidecar: "str | os.PathLike[str] | None" = None) -> bool:
    """Whether `path` is a regular file whose bytes hash to what its sidecar (path + ".sha256" unless
    given) records for its name. Any doubt (no sidecar, unreadable, another file's digest) is False."""
    p = Path(path)
    side = Path(sidecar) if sidecar is not None else p.with_name(p.name + ".sha256")
    try:
        if not p.is_file():
            return False
        return digest_ok(side, sha256_file(p), p.name)
    except OSError:
        return False


def install_checked(src: "str | os.PathLike[str]", final: "str | os.PathLike[str]",
                    sidecar: "str | os.PathLike[str] | None" = None) -> Path:
    """Copy file src to `final` with its digest sidecar, each written to a temporary file in final's
    directory and renamed into place (a reader never sees half a file; a crash between the two renames
    leaves a pair that does not verify, i.e. a cache miss)."""
    import shutil
    import tempfile
    final = Path(final)
    side = Path(sidecar) if sidecar is not None else final.with_name(final.name + ".sha256")
    fd, part = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    side_part = None
    try:
        shutil.copyfile(src, part)
        fd, side_part = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".part", dir=final.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(digest_line(sha256_file(part), final.name))
        os.replace(side_part, side)
        os.replace(part, final)
    except BaseException:
        for q in (part, side_part):
            if q is not None and os.path.exists(q):
                os.unlink(q)
        raise
    return final


@contextlib.contextmanager
def cache_lock(directory: "str | os.PathLike[str]", name: str) -> Iterator[None]:
    """An exclusive lock between processes (and threads) that build the same cached file: flock on
    directory/.locks/<name>.lock (lock files stay, empty; never deleted, which would let two builders
    hold locks on different files). Without fcntl, or where the lock file cannot be made (a read-only
    cache), no lock: builders then race, which costs time, not correctness (installs are atomic)."""
    try:
        import fcntl
    except ImportError:                                    # not POSIX
        yield
        return
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault((os.fspath(directory), name), threading.Lock())
    with tlock:                        # flock is per open file description: threads of one process queue here
        try:
            locks = Path(directory) / ".locks"
            locks.mkdir(parents=True, exist_ok=True)
            fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)                                   # releases the flock


_thread_locks: "dict[tuple[str, str], threading.Lock]" = {}
_thread_locks_guard = threading.Lock()


def read_at_most(f: "IO[bytes]", limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to limit + 1 bytes of an open binary file, read in chunks: f.read(limit + 1) would allocate the
    whole limit up front even for an empty file (CPython sizes the result first)."""
    parts, n = [], 0
    while n <= limit:
        b = f.read(min(chunk, limit + 1 - n))
        if not b:
            break
        parts.append(b)
        n += len(b)
    return b"".join(parts)


def cache_dir() -> Path | None:
    """The compile cache every target keeps its builds in: GRAPHC_CACHE_DIR (default ~/.cache/graphc);
    None when GRAPHC_NO_CACHE is set (to anything but 0)."""
    if os.environ.get("GRAPHC_NO_CACHE", "") not in ("", "0"):
        return None
    return Path(os.environ.get("GRAPHC_CACHE_DIR") or Path.home() / ".cache" / "graphc")


@contextlib.contextmanager
def slow_step(stream: "IO[str] | None", what: str, after: float = 1.0) -> Iterator[None]:
    """Say on `stream` what is going on when it takes longer than `after` seconds: "graphc: WHAT ..." once
    that time has passed, then its duration when it ends (nothing at all for a quick step or stream None)."""
    if stream is None:
        yield
        return
    t0 = time.perf_counter()
    shown = threading.Event()
    lock = threading.Lock()

    def show() -> None:
        with lock:
            if not done:
                stream.write(f"graphc: {what} ...")
                stream.flush()
                shown.set()

    done = False
    timer = threading.Timer(after, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            done = True
        timer.cancel()
        if shown.is_set():
            stream.write(f" {time.perf_counter() - t0:.1f} s\n")
            stream.flush()


def release_file_pages(view: "Any") -> int:
    """Drop this process's resident pages of a read-only file mapping that `view` (a numpy array) lies in
    (madvise MADV_DONTNEED, whole pages inside the view only): a tensor-parallel rank that copied the slice
    it needs keeps the rest of the tensor out of its memory. Read again, the pages fault back in from the
    file. Returns the bytes released (0 where the view is not a file mapping or on other systems)."""
    import mmap
    import sys
    import numpy as np
    base = view
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if sys.platform != "linux" or not isinstance(base, mmap.mmap) or view.nbytes == 0:
        return 0
    import ctypes
    page = mmap.PAGESIZE
    start = int(view.ctypes.data)
    lo, hi = -(-start // page) * page, (start + view.nbytes) // page * page
    if hi <= lo:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return hi - lo if libc.madvise(lo, hi - lo, 4) == 0 else 0      # 4: MADV_DONTNEED
