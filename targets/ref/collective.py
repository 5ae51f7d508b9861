"""Collectives (graphc/parallel.py): all_reduce and all_gather through torch.distributed, in graph order."""
from __future__ import annotations

import numpy as np

from graphc import parallel

from .registry import impl


@impl("all_reduce", "all_gather")
def collective(ctx, node):
    x = np.array(ctx.load(node.src[0]), dtype=np.float32, order="C")     # a copy: the source stays as it was
    return parallel.collective(node, x)
