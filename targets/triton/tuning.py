"""The Triton target's autotuner and its on-disk cache: block sizes measured once per GPU, kept across starts.

A launcher with more than one good way to run a node returns a Tunable: a key (kernel, weight type and
shape) and its options, each a list of launches (a split-K GEMV is two: zero dst, then add into it).
On a CUDA GPU, a key this GPU has no entry for is measured when the module is built, every option on the
module's own buffers (triton.testing.do_bench), and the fastest is written to the cache; a key with an
entry takes that option at once, so a second start measures nothing. Elsewhere (the interpreter, builds
ahead of time) the first option, the default, is used.

The cache is one JSON file, cache_dir()/triton/tuning-v<VERSION>.json:
  {"<gpu name>|triton <version>": {"<key>": {"option": "<the option's name>", "ms": {...}}}}
written atomically (a temporary file renamed over it). GRAPHC_TRITON_AUTOTUNE=0 turns measuring off.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphc.util import cache_dir

VERSION = 1
_lock = threading.Lock()


@dataclass
class Tunable:
    key: str                                        # what was measured: kernel, weight type, shape
    options: dict[str, list[Any]] = field(default_factory=dict)   # option name -> its launches; first: default

    @property
    def default(self) -> str:
        return next(iter(self.options))


def enabled() -> bool:
    return os.environ.get("GRAPHC_TRITON_AUTOTUNE", "1") not in ("0", "")


def _path() -> Path:
    root = cache_dir()
    folder = (root / "triton") if root is not None else Path(tempfile.gettempdir()) / "graphc-triton"
    return folder / f"tuning-v{VERSION}.json"


def _device_key(device: Any) -> str:
    import triton
    return f"{device.name}|triton {triton.__version__}"


def _read() -> dict:
    try:
        with open(_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}                                   # no cache yet, or a damaged one: measure again


def choices(device: Any) -> dict[str, str]:
    """Every key's option measured fastest on this device ({} for the interpreter): one read per module."""
    if device.mode != "cuda":
        return {}
    table = _read().get(_device_key(device), {})
    return {k: e["option"] for k, e in table.items() if isinstance(e, dict) and isinstance(e.get("option"), str)}


def store(device: Any, key: str, option: str, ms: dict[str, float]) -> None:
    path = _path()
    with _lock:
        data = _read()
        data.setdefault(_device_key(device), {})[key] = {"option": option, "ms": ms}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)


def measure(options: dict[str, Any], warmup: int = 3, rep: int = 20) -> dict[str, float]:
    """Median milliseconds of each option's callable (options that fail to run are left out)."""
    from triton.testing import do_bench
    out = {}
    for name, fn in options.items():
        try:
            out[name] = float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
        except Exception:                           # an option this GPU cannot run (resources): not chosen
            continue
    return out
