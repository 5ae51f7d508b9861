"""Copies, views, row gathers/scatters and shape ops: dup, cont, cpy, reshape, view, permute, transpose,
repeat, concat, set, get_rows, set_rows, pad, arange, custom."""
from __future__ import annotations

import numpy as np

from graphc.custom import get_custom_op
from graphc.errors import RunError
from graphc.ir import full_numpy_shape
from graphc.runtime import cast_to

from .libm import f32
from .registry import impl


@impl("reshape", "view", "permute", "transpose")
def alias(ctx, node):
    """Views compute nothing: they read and write their root's bytes through their own strides."""
    return None


@impl("dup", "cont")
def copy(ctx, node):
    """A contiguous copy; a same-type copy of a block type moves the raw rows, never re-quantizing."""
    src = node.src[0]
    if src.type.is_quantized:
        ctx.mem.rows_raw(node)[...] = ctx.mem.rows_raw(src)
        return None
    return ctx.load(src).reshape(full_numpy_shape(node.ne))


@impl("cpy")
def cpy(ctx, node):
    """a's values, in ggml's element order, written into b's memory as b's type (quantized via quants)."""
    a = node.src[0]
    if a.type.is_quantized:                   # ops.py allows quantized -> same type only: raw copy
        rows = np.ascontiguousarray(ctx.mem.rows_raw(a)).reshape(-1)
        ctx.mem.rows_raw(node)[...] = rows.reshape(ctx.mem.rows_raw(node).shape)
        return None
    return ctx.load(a).reshape(full_numpy_shape(node.ne))


@impl("repeat")
def repeat(ctx, node):
    a = ctx.load(node.src[0])
    shape = full_numpy_shape(node.ne)
    return np.tile(a, tuple(s // x for s, x in zip(shape, a.shape)))


@impl("concat")
def concat(ctx, node):
    a, b = node.src[0], node.src[1]
    axis = 3 - node.params["dim"]
    if a.type.is_quantized:                   # join whole blocks, as ggml copies them (no re-quantizing)
        ctx.mem.rows_raw(node)[...] = np.concatenate([ctx.mem.rows_raw(a), ctx.mem.rows_raw(b)], axis=axis)
        return None
    return np.concatenate([ctx.load(a), ctx.load(b)], axis=axis)


@impl("set")
def set_(ctx, node):
    """A copy of a with b written at byte `offset` through strides (a.nb0, nb1, nb2, nb3) of a's layout."""
    a, b = node.src[0], node.src[1]
    if not a.is_contiguous or node.type.np_dtype is None:
        raise RunError(f"tensor {node.name!r}: set needs a contiguous destination of a plain type (as ggml)")
    ctx.mem.store(node, ctx.load(a))
    p = node.params
    shape = full_numpy_shape(b.ne)
    if 0 not in shape:
        view = np.ndarray(shape, dtype=node.type.np_dtype, buffer=ctx.mem.buffer(node), offset=p["offset"],
                          strides=(p["nb3"], p["nb2"], p["nb1"], node.type.size))
        view[...] = cast_to(ctx.load(b), node.type)
    return None


@impl("get_rows")
def get_rows(ctx, node):
    """res[:, i10, i11, i12] = a[:, b[i10, i11, i12], i11, i12] (a dequantized to f32)."""
    a, b = node.src[0], node.src[1]
    idx = ctx.load(b)[0].astype(np.int64)                  # (b2, b1, b0) = (A3, A2, n_rows)
    _check_index(node, idx, a.ne[1])
    i3 = np.arange(a.ne[3])[:, None, None]
    i2 = np.arange(a.ne[2])[None, :, None]
    return ctx.mem.load_rows(a, (i3, i2, idx))             # (A3, A2, n_rows, ne0), only those rows decoded


@impl("set_rows")
def set_rows(ctx, node):
    """dst[:, c[i, i2 % c.ne1, i3 % c.ne2], i2, i3] = b[:, i, i2, i3]; untouched rows keep their bytes."""
    b, c = node.src[1], node.src[2]
    rows = f32(ctx.load(b))                                # (B3, B2, n, ne0)
    idx = ctx.load(c)[0].astype(np.int64)                  # (c2, c1, n)
    _check_index(node, idx, node.ne[1])
    b3, b2, n, ne0 = rows.shape
    i3 = np.broadcast_to(np.arange(b3)[:, None, None], (b3, b2, n))
    i2 = np.broadcast_to(np.arange(b2)[None, :, None], (b3, b2, n))
    i1 = idx[i3 % idx.shape[0], i2 % idx.shape[1], np.arange(n)[None, None, :]]
    ctx.mem.store_rows(node, (i3.reshape(-1), i2.reshape(-1), i1.reshape(-1)), rows.reshape(-1, ne0))
    return None


def _check_index(node, idx: np.ndarray, n: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].reshape(-1)[0]
        raise RunError(f"tensor {node.name!r}: row index {int(bad)} is out of range 0..{n - 1}")


@impl("pad")
def pad(ctx, node):
    x = ctx.load(node.src[0])
    lp, rp = node.params["lp"], node.params["rp"]
    width = [(lp[3 - d], rp[3 - d]) for d in range(4)]    # numpy axis d is ggml dim 3 - d
    return np.pad(x, width)


@impl("arange")
def arange(ctx, node):
    p = node.params
    start, step = np.float32(p["start"]), np.float32(p["step"])
    i = np.arange(node.ne[0], dtype=np.float32)           # value = start + step*i, in f32
    return (start + step * i).reshape(1, 1, 1, -1)


@impl("custom")
def custom(ctx, node):
    """Call the registered reference function on the sources' values (numpy shapes, trailing 1s dropped)."""
    op = get_custom_op(node.params["fn"])
    args = [ctx.load(s).reshape(s.shape) for s in node.src if s is not None]
    out = np.asarray(op.ref(*args))
    if out.size != node.nelements:
        raise RunError(f"custom op {node.params['fn']!r} returned {out.size} values for tensor {node.name!r}, "
                       f"which has {node.nelements} (ne {list(node.ne)})")
    return out.reshape(full_numpy_shape(node.ne))
