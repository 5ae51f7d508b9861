"""graphc.targets: one code generator / runner per target (ref, c, opencl, triton).

A target is a subpackage `graphc.targets.<name>` with `compile(graph, **opts) -> executable`, where the
executable has `write(tensor, values)`, `read(tensor)`, `run()` and `reset_state()`. Targets are found
by name: adding a folder here registers it, nothing in the core changes.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

from graphc.errors import CompileError

# The target the CLI and graphc.compile use when none is named.
DEFAULT_TARGET = "c"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_loaded: dict[str, ModuleType] = {}


def available_targets() -> list[str]:
    """Names of the target subpackages present (whether or not their toolchain is installed)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and _NAME.match(m.name))


def get_target(name: str) -> ModuleType:
    """The target module `name`; CompileError naming the known targets if there is none."""
    if name in _loaded:
        return _loaded[name]
    known = available_targets()
    if not isinstance(name, str) or not _NAME.match(name) or name not in known:
        raise CompileError(f"unknown target {name!r} (known targets: {', '.join(known) or 'none'})")
    try:
        mod = importlib.import_module(f"{__name__}.{name}")
    except ImportError as e:   # a target whose toolchain (pyopencl, triton, ...) is missing
        raise CompileError(f"target {name!r} is not usable here: {e}") from None
    if not callable(getattr(mod, "compile", None)):
        raise CompileError(f"target {name!r} has no compile() function")
    _loaded[name] = mod
    return mod
