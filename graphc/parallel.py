"""Collectives for tensor-parallel graphs: the all_reduce / all_gather ops, performed by torch.distributed.

A sharded graph (graphc/models/tensor_parallel.py) holds `all_reduce` (sum) and `all_gather` (rows, in rank
order) nodes. Every target runs them on the host, between its kernels (the C target: one step on thread 0
between barriers; ref: in graph order), over numpy views of the tensors' memory, through the process group
torch.distributed holds (gloo between CPU processes): nothing of the collective itself is graphc's.

    group()                 the current (rank, world size): (0, 1) without a process group
    init_from_env()         join the group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR, ...), once
    all_reduce(x, world)    x summed over the ranks, in place
    all_gather(x, world, total)  every rank's rows, concatenated

A graph made for `world` ranks runs only in a group of that size (a RunError otherwise); a graph for one
rank runs anywhere and its collectives copy. A failed collective (a rank died, the group timed out) is a
RunError naming the rank and the op, on every rank that sees it.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

import numpy as np

from .errors import RunError

__all__ = ["DEFAULT_TIMEOUT_S", "all_gather", "all_reduce", "backend", "broadcast_text", "collective", "finish",
           "group", "init_from_env", "launched_by_torchrun", "local_world_size"]

# how long a rank waits in a collective for the others (a dead peer usually fails at once: its socket closes)
DEFAULT_TIMEOUT_S = 120.0


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    return dist if dist.is_available() else None


def launched_by_torchrun() -> bool:
    """True inside a process torchrun (or another launcher) started as one rank of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def local_world_size() -> int:
    """Ranks on this host (torchrun's LOCAL_WORLD_SIZE; else the group's size)."""
    try:
        return max(1, int(os.environ["LOCAL_WORLD_SIZE"]))
    except (KeyError, ValueError):
        return group()[1]


def group() -> tuple[int, int]:
    """(rank, world size) of the default torch.distributed process group; (0, 1) without one."""
    dist = _dist()
    if dist is None or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def backend() -> str:
    """The default process group's backend ("gloo", "nccl"), or "" without one."""
    dist = _dist()
    return str(dist.get_backend()) if dist is not None and dist.is_initialized() else ""


def init_from_env(timeout_s: "float | None" = None) -> tuple[int, int]:
    """Join the process group the environment describes (torchrun's WORLD_SIZE, RANK, MASTER_ADDR,
    MASTER_PORT) with the gloo backend, unless a group exists already; returns (rank, world size).
    timeout_s: how long a collective waits (default GRAPHC_TP_TIMEOUT or DEFAULT_TIMEOUT_S)."""
    dist = _dist()
    if dist is None:
        raise RunError("tensor parallelism needs torch.distributed: pip install torch")
    if dist.is_initialized():
        return group()
    missing = [k for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RunError(f"tensor parallelism needs a process group: run under torchrun (e.g. torchrun "
                       f"--nproc-per-node 2 -m graphc generate ...), or set {', '.join(missing)}, or call "
                       "torch.distributed.init_process_group before loading")
    if timeout_s is None:
        try:
            timeout_s = float(os.environ.get("GRAPHC_TP_TIMEOUT", DEFAULT_TIMEOUT_S))
        except ValueError:
            raise RunError(f"GRAPHC_TP_TIMEOUT must be seconds, got {os.environ['GRAPHC_TP_TIMEOUT']!r}") from None
    try:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise RunError(f"could not join the process group (rank {os.environ.get('RANK')} of "
                       f"{os.environ.get('WORLD_SIZE')} at {os.environ.get('MASTER_ADDR')}:"
                       f"{os.environ.get('MASTER_PORT')}): {e}") from None
    return group()


def finish(ok: bool = True) -> None:
    """Leave the process group this process joined (init_from_env): after a barrier when all went well, so
    that no rank tears its connections down while another still uses them (gloo aborts the process then)."""
    dist = _dist()
    if dist is None or not dist.is_initialized():
        return
    try:
        if ok:
            dist.barrier()
        dist.destroy_process_group()
    except (RuntimeError, ValueError):
        pass                                 # a peer is gone already: nothing left to leave cleanly


def broadcast_text(text: "str | None") -> "str | None":
    """Rank 0's text (None: none, e.g. the end of its input) on every rank of the group, as UTF-8 bytes in
    tensors (no pickling); outside a group, text itself. What rank 0 reads, every rank feeds."""
    dist = _dist()
    if dist is None or not dist.is_initialized() or dist.get_world_size() == 1:
        return text
    import torch
    rank = dist.get_rank()
    data = text.encode("utf-8") if rank == 0 and text is not None else b""
    n = torch.tensor([len(data) if rank == 0 and text is not None else -1], dtype=torch.int64)
    try:
        dist.broadcast(n, 0)
        if int(n[0]) <= 0:
            return None if int(n[0]) < 0 else ""
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if rank == 0 else \
            torch.empty(int(n[0]), dtype=torch.uint8)
        dist.broadcast(buf, 0)
    except (RuntimeError, ValueError) as e:
        raise _failed("broadcast", rank, e) from None
    return bytes(buf.numpy()).decode("utf-8")


def _check_world(op: str, world: int) -> "tuple[Any, int]":
    rank, size = group()
    if size != world:
        raise RunError(f"{op}: the graph was sharded for {world} rank(s), but this process group has {size} "
                       f"(launch it with torchrun --nproc-per-node {world})" if world > 1 else
                       f"{op}: the graph was made for one process, but this process group has {size} ranks")
    return _dist(), rank


def _failed(op: str, rank: int, e: Exception) -> RunError:
    return RunError(f"rank {rank}: collective {op} failed (another rank died, or did not get there within the "
                    f"group's timeout: GRAPHC_TP_TIMEOUT seconds, default {DEFAULT_TIMEOUT_S:.0f}): "
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")


def all_reduce(x: Any, world: int) -> Any:
    """x (float32, contiguous, writable: a numpy array or a torch tensor, on the CPU for gloo or the GPU for
    NCCL) replaced by its sum over the group's ranks; returned."""
    dist, rank = _check_world("all_reduce", world)
    if world == 1:
        return x
    import torch
    try:
        dist.all_reduce(torch.from_numpy(x) if isinstance(x, np.ndarray) else x)
    except (RuntimeError, ValueError) as e:         # gloo reports a closed peer or a timeout this way
        raise _failed("all_reduce", rank, e) from None
    return x


def all_gather(x: Any, world: int, total: int) -> Any:
    """x: this rank's rows (numpy array or torch tensor, shape (..., n), n its share of `total`: ops.all_gather's
    split); the (..., total) concatenation of every rank's rows in rank order, of x's kind."""
    dist, rank = _check_world("all_gather", world)
    if world == 1:
        return x
    import torch
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    chunk = -(-total // world)
    pad = t.new_zeros(tuple(t.shape[:-1]) + (chunk,))
    pad[..., :t.shape[-1]] = t
    parts = [torch.empty_like(pad) for _ in range(world)]
    try:
        dist.all_gather(parts, pad)
    except (RuntimeError, ValueError) as e:
        raise _failed("all_gather", rank, e) from None
    out = torch.cat(parts, dim=-1)[..., :total]
    return out.numpy() if isinstance(x, np.ndarray) else out


def collective(node: Any, x: Any) -> Any:
    """Node's collective (an all_reduce or all_gather node) over x, a contiguous copy of its source's values
    (numpy or torch); returns the node's values. What every target's host step calls."""
    if node.op == "all_reduce":
        return all_reduce(x, node.params["world"])
    if node.op == "all_gather":
        return all_gather(x, node.params["world"], node.params["total"])
    raise RunError(f"{node.op} is not a collective")
