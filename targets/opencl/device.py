"""OpenCL platforms and devices: discovery, the features kernels are chosen by, and selection.

A device is named by `device=` (graphc.compile(..., target="opencl", device=...)) or, when that is not
given, by the environment variable GRAPHC_OPENCL_DEVICE. Accepted forms:
  None / ""        the first GPU if there is one, else the first device of any kind
  3                the 4th device in `graphc devices` order (every platform's devices, in turn)
  "1:0"            platform 1, device 0
  "pthread"        the first device whose "platform / device" name contains the text (case-insensitive)
One cl.Context and in-order queue is made per device and shared by every module compiled for it, so
modules on one device share weights and state buffers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from graphc.errors import CompileError

ENV = "GRAPHC_OPENCL_DEVICE"
HOW_TO_GET_ONE = ("install an OpenCL driver: `pip install pocl-binary-distribution` gives a CPU device "
                  "(PoCL); GPU vendors ship their own (NVIDIA's driver, ROCm, Intel's compute runtime)")


def _cl():
    try:
        import pyopencl as cl
    except ImportError as e:      # the target is optional: say how to get it
        raise CompileError(f"target opencl needs pyopencl ({e}); `pip install pyopencl` and an OpenCL driver "
                           f"({HOW_TO_GET_ONE})") from None
    return cl


@dataclass(frozen=True)
class Features:
    """What the kernels are chosen by (all from clGetDeviceInfo)."""
    name: str
    platform: str
    kind: str                     # "gpu" | "cpu" | "accelerator" | "other"
    version: str                  # "OpenCL 3.0 ..."
    opencl_c: str                 # "OpenCL C 1.2 ..."
    driver: str
    fp16: bool                    # cl_khr_fp16 (half arithmetic; storage works everywhere)
    fp64: bool
    subgroups: bool               # cl_khr_subgroups / cl_intel_subgroups
    local_mem: int                # bytes of local memory per work-group
    max_work_group: int
    max_alloc: int                # the largest single buffer
    global_mem: int
    compute_units: int
    correct_div_sqrt: bool        # -cl-fp32-correctly-rounded-divide-sqrt is allowed

    def describe(self) -> str:
        feats = [f for f, on in (("fp16", self.fp16), ("fp64", self.fp64), ("subgroups", self.subgroups)) if on]
        return (f"{self.kind}, {self.opencl_c.strip()}, {self.compute_units} compute units, "
                f"{self.global_mem >> 20} MiB (largest buffer {self.max_alloc >> 20} MiB), local memory "
                f"{self.local_mem >> 10} KiB, work-groups up to {self.max_work_group}, "
                f"extensions: {', '.join(feats) or 'none of fp16/fp64/subgroups'}; driver {self.driver}")


def _features(dev: Any) -> Features:
    cl = _cl()
    ext = set(dev.extensions.split())
    t = dev.type
    kind = ("gpu" if t & cl.device_type.GPU else "cpu" if t & cl.device_type.CPU else
            "accelerator" if t & cl.device_type.ACCELERATOR else "other")
    try:
        correct = bool(dev.single_fp_config & cl.device_fp_config.CORRECTLY_ROUNDED_DIVIDE_SQRT)
    except Exception:  # not reported by every driver
        correct = False
    return Features(name=dev.name.strip(), platform=dev.platform.name.strip(), kind=kind, version=dev.version,
                    opencl_c=dev.opencl_c_version, driver=dev.driver_version, fp16="cl_khr_fp16" in ext,
                    fp64="cl_khr_fp64" in ext, subgroups=bool(ext & {"cl_khr_subgroups", "cl_intel_subgroups"}),
                    local_mem=int(dev.local_mem_size), max_work_group=int(dev.max_work_group_size),
                    max_alloc=int(dev.max_mem_alloc_size), global_mem=int(dev.global_mem_size),
                    compute_units=int(dev.max_compute_units), correct_div_sqrt=correct)


def all_devices() -> list[tuple[int, int, Any]]:
    """(platform index, device index, cl.Device) for every device of every platform."""
    cl = _cl()
    out = []
    try:
        platforms = cl.get_platforms()
    except cl.Error:            # the ICD loader found no platform at all
        platforms = []
    for pi, p in enumerate(platforms):
        try:
            devs = p.get_devices()
        except cl.Error:
            continue
        out += [(pi, di, d) for di, d in enumerate(devs)]
    return out


def list_devices() -> list[tuple[str, Features]]:
    """("P:D", features) of every device, in selection order (what `graphc devices` prints)."""
    return [(f"{pi}:{di}", _features(d)) for pi, di, d in all_devices()]


def select(device: "int | str | None" = None) -> Any:
    """The cl.Device that `device` (or GRAPHC_OPENCL_DEVICE) names; CompileError listing the devices if none."""
    if device is None or device == "":
        device = os.environ.get(ENV) or None
    devs = all_devices()
    if not devs:
        raise CompileError(f"target opencl: no OpenCL platform or device found; {HOW_TO_GET_ONE}")
    listing = "; ".join(f"{pi}:{di} {d.platform.name.strip()} / {d.name.strip()}" for pi, di, d in devs)
    if device is None:
        cl = _cl()
        gpus = [d for _, _, d in devs if d.type & cl.device_type.GPU]
        return (gpus or [devs[0][2]])[0]
    if isinstance(device, bool):
        raise CompileError(f"target opencl: bad device {device!r} (the devices: {listing})")
    text = str(device).strip()
    if isinstance(device, int) or text.isdigit():
        i = int(text)
        if 0 <= i < len(devs):
            return devs[i][2]
    elif ":" in text and all(part.isdigit() for part in text.split(":", 1)):
        pi, di = (int(x) for x in text.split(":", 1))
        for p, d, dev in devs:
            if (p, d) == (pi, di):
                return dev
    else:
        for _, _, dev in devs:
            if text.lower() in f"{dev.platform.name} / {dev.name}".lower():
                return dev
    src = "device" if device is not None and os.environ.get(ENV) != device else ENV
    raise CompileError(f"target opencl: no device matches {src}={device!r} (the devices: {listing}); give an "
                       "index, platform:device, or part of a name")


class DeviceContext:
    """One device's context, queue and shared buffers (weights uploaded once, by host buffer)."""

    def __init__(self, dev: Any):
        cl = _cl()
        self.cl = cl
        self.device = dev
        self.features = _features(dev)
        self.context = cl.Context([dev])
        self.queue = cl.CommandQueue(self.context)
        self._weights: dict[tuple[int, int], tuple[Any, Any]] = {}   # (host address, bytes) -> (host array, buffer)
        self.programs: dict[str, Any] = {}                            # cache key -> built cl.Program

    def key(self) -> str:
        f = self.features
        return f"{f.platform}|{f.name}|{f.version}|{f.driver}"

    def weight_buffer(self, host) -> Any:
        """A read-only device copy of a read-only host array (a weight's file mapping), made once per device."""
        k = (host.ctypes.data, host.nbytes)
        hit = self._weights.get(k)
        if hit is None:
            hit = (host, self.buffer(host.nbytes, read_only=True, host=host))
            self._weights[k] = hit
        return hit[1]

    def buffer(self, nbytes: int, read_only: bool = False, host=None) -> Any:
        cl = self.cl
        n = max(int(nbytes), 64)              # a zero-sized buffer is invalid: any small one serves
        if n > self.features.max_alloc:
            raise CompileError(f"target opencl: a buffer of {n} bytes exceeds the device's largest allocation "
                               f"({self.features.max_alloc} bytes, {self.features.name})")
        flags = cl.mem_flags.READ_ONLY if read_only else cl.mem_flags.READ_WRITE
        buf = cl.Buffer(self.context, flags, n)
        if host is not None and host.nbytes:
            cl.enqueue_copy(self.queue, buf, host, is_blocking=True)
        return buf


_CONTEXTS: dict[int, DeviceContext] = {}


def context_for(device: "int | str | None" = None) -> DeviceContext:
    dev = select(device)
    key = dev.int_ptr
    if key not in _CONTEXTS:
        _CONTEXTS[key] = DeviceContext(dev)
    return _CONTEXTS[key]
