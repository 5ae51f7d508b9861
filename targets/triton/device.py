"""Which device a Triton module runs on: a CUDA GPU (kernels compiled by Triton) or, where there is none,
Triton's interpreter on the CPU (TRITON_INTERPRET's mode: slow, for tests and machines without a GPU).

device= (or GRAPHC_TRITON_DEVICE): None -> the first CUDA GPU, else the interpreter; "cuda" / "cuda:N" /
N -> that GPU (an error where there is none); "interpret" (or "cpu") -> the interpreter.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from graphc.errors import CompileError

ENV = "GRAPHC_TRITON_DEVICE"
INSTALL = "pip install 'triton==3.6.0' torch (a CPU-only torch wheel is enough for the interpreter)"


@dataclass(frozen=True)
class Device:
    mode: str                  # "cuda" | "interpret" (targets/triton/loader.py)
    torch_device: str          # "cuda:N" | "cpu"
    name: str
    arch: "int | None"         # compute capability as 90 for sm_90 (None: the interpreter)


def torch_module() -> Any:
    try:
        import torch
        import triton  # noqa: F401
    except ImportError as e:
        raise CompileError(f"target triton needs triton and torch ({e.name} is missing): {INSTALL}") from None
    return torch


def resolve(device: "int | str | None" = None) -> Device:
    torch = torch_module()
    spec = device if device is not None else os.environ.get(ENV) or None
    if spec is not None and str(spec).lower() in ("interpret", "interpreter", "cpu"):
        return Device("interpret", "cpu", "Triton interpreter (CPU)", None)
    have = torch.cuda.is_available()
    if spec is None and not have:
        return Device("interpret", "cpu", "Triton interpreter (CPU)", None)
    if not have:
        raise CompileError(f"target triton: device {spec!r} asked for, but torch sees no CUDA GPU; use "
                           "device='interpret' for Triton's interpreter on the CPU")
    s = str(spec if spec is not None else 0).lower()
    index = s.split(":", 1)[1] if s.startswith("cuda:") else ("0" if s == "cuda" else s)
    if not index.isdigit() or int(index) >= torch.cuda.device_count():
        raise CompileError(f"target triton: no CUDA device {spec!r}; this machine has "
                           f"{torch.cuda.device_count()} (cuda:0 ...), or use device='interpret'")
    i = int(index)
    major, minor = torch.cuda.get_device_capability(i)
    return Device("cuda", f"cuda:{i}", torch.cuda.get_device_name(i), major * 10 + minor)


def aot_device(arch: int) -> Device:
    """A GPU of compute capability `arch` that need not be present: what ahead-of-time builds generate for."""
    return Device("cuda", "cuda:0", f"sm_{arch} (ahead of time)", arch)


def list_devices() -> list[str]:
    """One line per device the Triton target can use."""
    torch = torch_module()
    out = []
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        major, minor = torch.cuda.get_device_capability(i)
        out.append(f"cuda:{i}  {torch.cuda.get_device_name(i)} (sm_{major}{minor})")
    return out + ["interpret  Triton interpreter on the CPU"]
