"""The Triton target: generated Triton kernels over one arena allocation, library kernels, run on a CUDA GPU
(compiled by Triton) or, where there is none, through Triton's interpreter on the CPU.

compile(program_or_graph, device=None, cuda_graph=True) -> TritonExecutable, with ref's protocol (write /
read / run / reset_state). Device memory (torch uint8 tensors): ONE arena for every planned intermediate
(a tensor is a byte offset in it, passed to kernels with its shape and strides), one temporary buffer,
and one buffer per persistent root: weights uploaded once per device (shared by every module on it),
inputs, outputs and state. The host keeps a mirror of each persistent root (graphc.runtime.Memory); a
mirror is copied to the device only when the host changed it and back only when the host reads it, so
state stays on the device between runs. On the interpreter the device buffers ARE the host mirrors
(torch.from_numpy, no copies).

On a GPU the first run launches every kernel (Triton compiles them then) and the second captures the
whole run as a CUDA graph, which later runs replay: one launch per run instead of one per kernel (state,
inputs and outputs are at fixed addresses, so the graph stays valid). cuda_graph=False turns that off.

cuda_arch="sm_80,sm_90": Module.save also writes every kernel's PTX and cubin for those GPUs, built with
no GPU present (aot.py); graphc.load of that artifact on a GPU of one of those archs loads the cubins
instead of compiling (`prebuilt` says whether it did).
"""
from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc import parallel
from graphc.errors import CompileError, RunError
from graphc.ir import Flag, Graph, Tensor
from graphc.memplan import planned
from graphc.program import Program, root_of
from graphc.runtime import MemoryIO, shape_matches

from . import aot, loader, tuning
from .codegen import HOST, Generated, Unsupported, generate
from .device import Device, aot_device, list_devices, resolve, torch_module
from .library import Buf

__all__ = ["ACCEPTS_PROGRAM", "TritonExecutable", "compile", "generate_source", "list_devices", "supported"]

ACCEPTS_PROGRAM = True
LOADS_ARTIFACT_FILES = True          # graphc.load passes artifact_dir: the kernels built ahead of time


def _as_program(what: "Graph | Program") -> Program:
    return planned(what, "triton")


def generate_source(what: "Graph | Program", device: "int | str | None" = None) -> Generated:
    """The generated kernels and launches for a graph (through the pass pipeline) or a Program."""
    if isinstance(what, Graph):
        from graphc.passes import run_pipeline
        what = run_pipeline(what)
    return generate(_as_program(what), resolve(device))


def supported(what: "Graph | Program", device: "int | str | None" = None) -> bool:
    try:
        generate_source(what, device)
    except Unsupported:
        return False
    return True


@dataclass
class Mirror:
    """A persistent root's host bytes and device buffer, and which side is newer."""
    host: np.ndarray
    dev: Any                         # torch uint8 tensor
    host_dirty: bool = True          # the host changed it: copy to the device before the next run
    dev_newer: bool = False          # a run wrote it: copy to the host before the host reads it
    constant: bool = False           # a weight: never written by a run
    shared: bool = False             # dev is host's memory (the interpreter): nothing to copy


_weights: dict[tuple, tuple[np.ndarray, Any]] = {}
_weights_lock = threading.Lock()


def _weight_on_device(host: np.ndarray, dev: Device) -> Any:
    """A weight's device copy, made once per (bytes, device) and shared by every module (the host array
    is kept alive with it, so its address cannot be reused by other data)."""
    torch = torch_module()
    key = (host.ctypes.data, host.nbytes, dev.torch_device)
    with _weights_lock:
        hit = _weights.get(key)
        if hit is None:
            hit = _weights[key] = (host, torch.from_numpy(np.ascontiguousarray(host)).to(dev.torch_device))
        return hit[1]


def _host_view(host: np.ndarray) -> Any:
    """The host bytes as a torch tensor sharing their memory (read-only weights too: kernels never write
    them, so torch's warning about non-writable arrays does not apply)."""
    torch = torch_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(host.reshape(-1).view(np.uint8))


class TritonExecutable(MemoryIO):
    def __init__(self, what: "Graph | Program", *, device: "int | str | None" = None, cuda_graph: bool = True,
                 cuda_arch: "str | list[str] | None" = None, artifact_dir: "str | None" = None,
                 autotune: bool = True, tiles: "dict | None" = None,
                 state_buffers: "dict[str, Mirror] | None" = None):
        self.program = _as_program(what)
        self.graph = self.program.graph
        self.device = dev = resolve(device)
        torch = torch_module()
        self._tiles = dict(tiles or {})
        self.gen = gen = generate(self.program, dev, self._tiles)     # Unsupported before anything is built
        self.cuda_archs = aot.parse_archs(cuda_arch) if cuda_arch else []
        mods: dict[str, Any] = {}
        for name in dict.fromkeys(la.module for la in gen.launches if la.module != HOST):
            mods[name] = loader.generated(dev.mode, gen.source) if name == "gen" else \
                loader.library(dev.mode, name.split(":", 1)[1])
        self._interp = dev.mode == "interpret"

        plan = self.program.plan
        self._bind_device_roots(self.program, gen.buffers, state_buffers or {}, self._mirror, Mirror, "Triton")

        def alloc(n: int) -> Any:
            return torch.zeros(max(int(n), 64), dtype=torch.uint8, device=dev.torch_device)
        bufs = {"arena": alloc(plan.size), "temp": alloc(gen.temp_size), "dummy": alloc(64)}
        bufs.update({f"root:{i}": m.dev for i, m in self.mirrors.items()})
        self._bufs = bufs
        self._calls = []
        # kernels built ahead of time (an artifact saved with cuda_arch) for this GPU: loaded, not compiled
        prebuilt = aot.load(artifact_dir, gen, dev.arch) if artifact_dir and dev.mode == "cuda" else None
        self.prebuilt = prebuilt is not None
        self._mods = mods
        if prebuilt is None and gen.to_tune and autotune and tuning.enabled():
            self._tune(bufs)
        for i, la in enumerate(gen.launches):
            if la.module == HOST:               # a collective: run by the host in stream order (_host_step)
                self._calls.append((functools.partial(self._host_step, la.args[0]), None, [], {}, la.label))
                continue
            fn = getattr(self._module(la.module), la.kernel)
            args = [bufs[a.name] if isinstance(a, Buf) else a for a in la.args]
            if prebuilt is not None:
                fn, args, consts = prebuilt[i], aot.call_args(la, fn, args), {}
            else:
                consts = la.consts
            self._calls.append((fn, la.grid, args, consts, la.label))
        # a CUDA graph captures collectives only through NCCL (torch.distributed's capturable backend)
        hosted = any(la.module == HOST for la in gen.launches)
        self._use_graph = bool(cuda_graph) and dev.mode == "cuda" and (not hosted or parallel.backend() == "nccl")
        self._graph = None
        self._runs = 0
        self.launches_per_run = len(self._calls)

    def _module(self, name: str) -> Any:
        if name not in self._mods:
            self._mods[name] = loader.generated(self.device.mode, self.gen.source) if name == "gen" else \
                loader.library(self.device.mode, name.split(":", 1)[1])
        return self._mods[name]

    def _tune(self, bufs: dict[str, Any]) -> None:
        """Measure every option of the nodes the tuning cache has no entry for on this GPU (on this module's
        own buffers, before any run), cache the fastest and use it (tuning.py)."""
        launches = list(self.gen.launches)
        for start, count, tun in sorted(self.gen.to_tune, key=lambda x: -x[0]):   # from the end: indices hold
            runs = {}
            for name, ls in tun.options.items():
                calls = [(getattr(self._module(la.module), la.kernel), la.grid,
                          [bufs[a.name] if isinstance(a, Buf) else a for a in la.args], la.consts) for la in ls]
                runs[name] = lambda calls=calls: [fn[grid](*args, **consts) for fn, grid, args, consts in calls]
            ms = tuning.measure(runs)
            best = min(ms, key=ms.get) if ms else tun.default
            tuning.store(self.device, tun.key, best, ms)
            label = launches[start].label
            for la in tun.options[best]:
                la.label = la.label or label
            launches[start:start + count] = tun.options[best]
        self.gen.launches = launches
        self.gen.to_tune = []

    def requirements(self) -> dict[str, Any]:
        """What an artifact of this module records about its code (graphc.api): the CUDA archs of the kernels
        built ahead of time. Without one of them the kernels are compiled at load through Triton's JIT (or
        interpreted without a GPU), from the same source: slower to start, never other code."""
        return {"cuda_archs": [f"sm_{a}" for a in self.cuda_archs]}

    def save_files(self, directory: str) -> list[str]:
        """Module.save's hook: with cuda_arch, every kernel's PTX and cubin for those archs (aot.py), built
        here without a GPU; the files written, relative to directory."""
        if not self.cuda_archs:
            return []
        gen = generate(self.program, aot_device(max(self.cuda_archs)), self._tiles)
        return aot.build(gen, self.cuda_archs, directory)

    def _mirror(self, r: Tensor, constant: bool) -> Mirror:
        host = self.mem.buffer(r)
        if self._interp:
            return Mirror(host, _host_view(host), host_dirty=False, constant=constant, shared=True)
        if constant:
            return Mirror(host, _weight_on_device(host, self.device), host_dirty=False, constant=True)
        torch = torch_module()
        return Mirror(host, torch.zeros(max(r.nbytes, 1), dtype=torch.uint8, device=self.device.torch_device))

    # --- host <-> device --------------------------------------------------------------------------
    def _to_host(self, t: Tensor) -> None:
        m = self.mirrors.get(id(root_of(t)))
        if m is not None and m.dev_newer and not m.shared:
            m.host.reshape(-1).view(np.uint8)[...] = m.dev[:m.host.nbytes].cpu().numpy()
            m.dev_newer = False

    def write(self, t: Tensor, values: np.ndarray) -> None:
        self._to_host(t)
        super().write(t, values)
        m = self.mirrors.get(id(root_of(t)))
        if m is not None and not m.shared:
            m.host_dirty = True

    def read(self, t: Tensor) -> np.ndarray:
        self._check_persistent(t)
        self._to_host(t)
        return super().read(t)

    def _root_mirror(self, t: Tensor, what: str) -> Mirror:
        if root_of(t) is not t or t.type.blck > 1 or t.type.np_dtype is None or \
                np.dtype(t.type.np_dtype).itemsize != t.type.size:
            raise RunError(f"{what} {t.name!r} ({t.type.name}): torch tensors are taken for tensors stored as their "
                           "own plain values; give a numpy array")
        m = self.mirrors.get(id(t))
        if m is None:
            raise RunError(f"{what} {t.name!r} has no device buffer (no kernel touches it)")
        return m

    def write_torch(self, t: Tensor, x: Any) -> None:
        """An input's values from a torch tensor, copied on the device it is on to this module's (a CUDA
        tensor never goes through the host)."""
        torch = torch_module()
        m = self._root_mirror(t, "input")
        want = getattr(torch, np.dtype(t.type.np_dtype).name)
        if x.dtype != want or not shape_matches(tuple(x.shape), t):
            raise RunError(f"input {t.name!r} takes a {want} tensor of shape {t.shape}, got {x.dtype} "
                           f"{tuple(x.shape)}")
        src = x.detach().to(m.dev.device).contiguous().reshape(-1).view(torch.uint8)
        m.dev[:t.nbytes].copy_(src)
        m.host_dirty = False                         # the whole root was overwritten on the device
        m.dev_newer = not m.shared

    def read_torch(self, t: Tensor) -> Any:
        """An output's or state's values as a torch tensor on this module's device (a copy: the next run
        writes the same buffer)."""
        torch = torch_module()
        self._check_persistent(t)
        m = self._root_mirror(t, "tensor")
        if m.host_dirty:
            self._upload()
        return m.dev[:t.nbytes].view(getattr(torch, np.dtype(t.type.np_dtype).name)).reshape(t.shape).clone()

    def device_tensor(self, t: Tensor) -> Any:
        """The device bytes (a torch uint8 tensor, no copy) of a persistent tensor's root, for callers that
        keep data on the GPU (DLPack / torch)."""
        self._check_persistent(t)
        m = self.mirrors.get(id(root_of(t)))
        if m is None:
            raise RunError(f"tensor {t.name!r} has no device buffer (no kernel touches it)")
        if m.host_dirty:
            self._upload()
        return m.dev

    def _upload(self) -> None:
        for m in self.mirrors.values():
            if m.host_dirty:
                if m.dev_newer:
                    raise RunError("internal: a buffer changed on both the host and the device")
                if m.host.nbytes:
                    m.dev[:m.host.nbytes].copy_(_host_view(m.host))
                m.host_dirty = False

    def _launch_all(self) -> None:
        for fn, grid, args, consts, _ in self._calls:
            if grid is None:
                fn()
            else:
                fn[grid](*args, **consts)

    def _host_step(self, st: Any) -> None:
        """A collective (graphc/parallel.py) on the device tensors: torch.distributed runs it on the current
        stream (NCCL on a GPU, gloo on the interpreter's CPU tensors)."""
        torch = torch_module()
        args = self.gen.low.args
        src, dst = args[st.src], args[st.dst]
        x = torch.as_strided(self._bufs[src.buf].view(torch.float32), tuple(reversed(src.t.ne)),
                             tuple(b // 4 for b in reversed(src.t.nb)), src.offset // 4).contiguous()
        y = parallel.collective(st.nodes[0], x)
        n = dst.t.nelements
        self._bufs[dst.buf].view(torch.float32)[dst.offset // 4:dst.offset // 4 + n].copy_(y.reshape(-1))

    def run(self) -> None:
        self._upload()
        try:
            if self._graph is not None:
                self._graph.replay()
            elif self._use_graph and self._runs >= 1:
                torch = torch_module()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    self._launch_all()
                self._graph = g
                g.replay()
            else:
                self._launch_all()
            if not self._interp:
                torch_module().cuda.synchronize(self.device.torch_device)
        except CompileError:
            raise
        except Exception as e:
            raise RunError(f"target triton: running graph {self.graph.name!r} on {self.device.name} failed: "
                           f"{type(e).__name__}: {e}") from None
        self._runs += 1
        for m in self._written:
            m.dev_newer = not m.shared

    def reset_state(self) -> None:
        for t in self.graph.leafs:
            if t.flags & Flag.STATE:
                self.mem.buffer(t)[...] = 0
                m = self.mirrors.get(id(t))
                if m is not None and not m.shared:
                    m.dev_newer = False
                    m.host_dirty = True

    def state_buffers(self) -> dict[str, Any]:
        """The state mirrors by name (what share_state hands to another Triton executable)."""
        out = {}
        for t in self.graph.leafs:
            if t.flags & Flag.STATE:
                m = self.mirrors.get(id(t))
                if m is None:
                    m = self.mirrors[id(t)] = self._mirror(t, constant=False)
                out[t.name] = m
        return out


def compile(what: "Graph | Program", **opts: Any) -> TritonExecutable:
    return TritonExecutable(what, **opts)
