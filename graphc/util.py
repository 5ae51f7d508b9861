"""Small helpers with no graph knowledge, shared by the API and the targets."""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import IO, Iterator

__all__ = ["cache_dir", "sha256_file", "slow_step"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's contents, hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
