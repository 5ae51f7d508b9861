"""Small helpers with no graph knowledge, shared by the API and the targets."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_dir", "sha256_file"]


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
