"""One rank of a tensor-parallel test (tests/test_tensor_parallel.py starts WORLD_SIZE of these, torchrun-style).

    python tensor_parallel_worker.py MODEL TARGET OUT [die]

Loads MODEL with tensor_parallel=True (joining the group from RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
feeds PROMPT then two more tokens, decodes GREEDY tokens greedily, and writes OUT.<rank>.npz: the logits,
the greedy tokens, this rank's resident weight bytes and the shard. With `die`, rank 1 exits right after
loading (before any collective) and the others must fail with a RunError instead of hanging.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

PROMPT = [1, 5, 9, 77, 3, 200, 11, 4, 8, 90]
MORE = [7, 12]
GREEDY = 8


def weight_bytes(model) -> int:
    """Bytes of the weights this rank holds: the param leafs' data (file slices and copies) of every compiled
    graph, each distinct buffer once (graphs that share a buffer count it once; copies count each time)."""
    seen, total = set(), 0
    for m in model.modules.values():
        for t in m.graph.leafs:
            data = getattr(t, "data", None)
            if data is None or t.name.startswith("cache_"):
                continue
            a = np.asarray(data)
            key = (a.__array_interface__["data"][0], a.nbytes)
            if key not in seen:
                seen.add(key)
                total += a.nbytes
    return total


def main() -> int:
    import graphc.models as gm
    from graphc.errors import RunError
    path, target, out = sys.argv[1:4]
    die = len(sys.argv) > 4 and sys.argv[4] == "die"
    opts = {"n_threads": 1} if target == "c" else {}
    model = gm.load(path, target=target, n_ctx=64, tensor_parallel=True, **opts)
    import torch.distributed as dist
    rank = dist.get_rank()
    if die and rank == 1:
        os._exit(3)
    try:
        a = model.logits(PROMPT)
        b = model.logits(MORE)
        model.reset_state()
        tokens = model.generate(PROMPT, max_tokens=GREEDY, temperature=0.0)
    except RunError as e:
        print(f"RunError: {e}", flush=True)
        return 7
    np.savez(f"{out}.{rank}.npz", a=a, b=b, tokens=np.asarray(tokens), weight_bytes=weight_bytes(model),
             shard=json.dumps(model.shard.__dict__ if model.shard is not None else None))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
