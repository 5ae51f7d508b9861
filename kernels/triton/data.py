"""Copies, gathers, scatters and shape ops (kernels/opencl/data.cl, targets/ref/shape.py): one program per
destination row (per source row for set_rows), BLOCK elements of the row at a time. Conversions go
through f32 (f16 one RNE rounding, bf16 ggml's rounding, block types ggml's reference quantizer);
same-type copies move bits; integers convert exactly."""
import triton
import triton.language as tl

from .common import at, blck, convert, flat_at, get, get_index, put, quantize_blocks, row_at, row_get, tsize, zero


@triton.jit
def get_rows(DB, D, AB, A, IB, X, DT: tl.constexpr, AT: tl.constexpr, IT: tl.constexpr, BLOCK: tl.constexpr):
    """dst[:, i10, i11, i12] = a[:, idx[i10, i11, i12], i11, i12]; an index out of range gives zeros."""
    r = tl.program_id(0).to(tl.int64)
    i10 = r % D[2]
    i11 = (r // D[2]) % D[3]
    i12 = r // (D[2] * D[3])
    row = get_index(at(IB, X, i10, i11, i12, 0), IT, True)
    dp = at(DB, D, 0, i10, i11, i12)
    ok = (row >= 0) & (row < A[2])
    sp = at(AB, A, 0, tl.where(ok, row, 0), i11, i12)
    for k0 in range(0, D[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < D[1]
        if AT == DT and blck(AT) == 1:
            convert(sp + k * A[5], AT, dp + k * D[5], DT, m & ok)
        else:
            put(dp + k * D[5], row_get(sp, A[5], k, AT, m & ok), DT, m & ok)
        zero(dp + k * D[5], DT, m & ~ok)


@triton.jit
def set_rows(DB, D, BB, B, CB, C, DT: tl.constexpr, BT: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr,
             ROWS: tl.constexpr):
    """dst (a view of a)[:, c[i, i2 % c.ne1, i3 % c.ne2], i2, i3] = b[:, i, i2, i3], converted (quantized for
    block types); rows out of range are left as they are. Plain types: ROWS rows per program (a transposed
    V cache writes rows of one element); block types: one row per program (ROWS = 1)."""
    if blck(DT) > 1:
        r = tl.program_id(0).to(tl.int64)
        i = r % B[2]
        i2 = (r // B[2]) % B[3]
        i3 = r // (B[2] * B[3])
        row = get_index(at(CB, C, i, i2 % C[2], i3 % C[3], 0), CT, True)
        ok = (row >= 0) & (row < D[2])
        sp = at(BB, B, 0, i, i2, i3)
        dp = at(DB, D, 0, tl.where(ok, row, 0), i2, i3)
        nblk = B[1] // 32
        for b0 in range(0, nblk, BLOCK):
            kb = b0 + tl.arange(0, BLOCK).to(tl.int64)
            m = (kb < nblk) & ok
            jj = tl.arange(0, 16)
            xlo = get(sp + (kb[:, None] * 32 + jj[None, :]) * B[5], BT, m[:, None])
            xhi = get(sp + (kb[:, None] * 32 + 16 + jj[None, :]) * B[5], BT, m[:, None])
            quantize_blocks(xlo, xhi, dp + kb * tsize(DT), m, DT)
    else:
        r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
        mr = r < B[2] * B[3] * B[4]
        i = r % B[2]
        i2 = (r // B[2]) % B[3]
        i3 = r // (B[2] * B[3])
        row = get_index(at(CB, C, i, i2 % C[2], i3 % C[3], 0), CT, mr)
        ok = mr & (row >= 0) & (row < D[2])
        sp = at(BB, B, 0, i, i2, i3)
        dp = at(DB, D, 0, tl.where(ok, row, 0), i2, i3)
        for k0 in range(0, B[1], BLOCK):
            k = k0 + tl.arange(0, BLOCK).to(tl.int64)
            m = (k[None, :] < B[1]) & ok[:, None]
            convert(sp[:, None] + k[None, :] * B[5], BT, dp[:, None] + k[None, :] * D[5], DT, m)


@triton.jit
def copy_convert(DB, D, AB, A, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """cpy / dup / cont: a's elements in ggml order into dst's, converted; same block type: raw bytes."""
    r = tl.program_id(0).to(tl.int64)
    dp = row_at(DB, D, r)
    if blck(AT) > 1:
        rba = A[1] // blck(AT) * tsize(AT)
        rbd = D[1] // blck(DT) * tsize(DT)
        for k0 in range(0, rbd, BLOCK):
            k = k0 + tl.arange(0, BLOCK).to(tl.int64)
            m = k < rbd
            off = r * rbd + k
            src = row_at(AB, A, off // rba) + off % rba
            tl.store(dp + k, tl.load(src, mask=m), mask=m)
    elif blck(DT) > 1:
        nblk = D[1] // 32
        for b0 in range(0, nblk, BLOCK):
            kb = b0 + tl.arange(0, BLOCK).to(tl.int64)
            m = kb < nblk
            jj = tl.arange(0, 16).to(tl.int64)
            f = r * D[1] + kb[:, None] * 32 + jj[None, :]
            xlo = get(flat_at(AB, A, f), AT, m[:, None])
            xhi = get(flat_at(AB, A, f + 16), AT, m[:, None])
            quantize_blocks(xlo, xhi, dp + kb * tsize(DT), m, DT)
    else:
        for k0 in range(0, D[1], BLOCK):
            k = k0 + tl.arange(0, BLOCK).to(tl.int64)
            m = k < D[1]
            convert(flat_at(AB, A, r * D[1] + k), AT, dp + k * D[5], DT, m)


@triton.jit
def set_values(DB, D, BB, B, offset, nb1, nb2, nb3, DT: tl.constexpr, BT: tl.constexpr, BLOCK: tl.constexpr):
    """set: b's elements at byte `offset` of dst through strides (element size, nb1, nb2, nb3)."""
    f = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    total = B[1] * B[2] * B[3] * B[4]
    i0 = f % B[1]
    q = f // B[1]
    i1 = q % B[2]
    i2 = (q // B[2]) % B[3]
    i3 = q // (B[2] * B[3])
    es = tsize(DT)
    off = offset + i0 * es + i1 * nb1 + i2 * nb2 + i3 * nb3
    m = (f < total) & (off >= 0) & (off + es <= D[1] * D[2] * D[3] * D[4] * es)
    convert(at(BB, B, i0, i1, i2, i3), BT, DB + D[0] + tl.where(m, off, 0), DT, m)


@triton.jit
def concat(DB, D, AB, A, BB, B, dim: tl.constexpr, DT: tl.constexpr, BLOCK: tl.constexpr):
    """Elements (whole blocks along ne0 for block types) of a, then of b along dim."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % D[2]
    i2 = (r // D[2]) % D[3]
    i3 = r // (D[2] * D[3])
    dp = at(DB, D, 0, i1, i2, i3)
    n0 = D[1] // blck(DT)
    es = tsize(DT)
    ebd = es if blck(DT) > 1 else D[5]
    eba = es if blck(DT) > 1 else A[5]
    ebb = es if blck(DT) > 1 else B[5]
    for k0 in range(0, n0, BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < n0
        if dim == 0:
            split = A[1] // blck(DT)
            first = k < split
            sa = AB + A[0] + k * eba + i1 * A[6] + i2 * A[7] + i3 * A[8]
            sb = BB + B[0] + (k - split) * ebb + i1 * B[6] + i2 * B[7] + i3 * B[8]
        else:
            if dim == 1:
                first = i1 < A[2]
                sa = AB + A[0] + k * eba + i1 * A[6] + i2 * A[7] + i3 * A[8]
                sb = BB + B[0] + k * ebb + (i1 - A[2]) * B[6] + i2 * B[7] + i3 * B[8]
            elif dim == 2:
                first = i2 < A[3]
                sa = AB + A[0] + k * eba + i1 * A[6] + i2 * A[7] + i3 * A[8]
                sb = BB + B[0] + k * ebb + i1 * B[6] + (i2 - A[3]) * B[7] + i3 * B[8]
            else:
                first = i3 < A[4]
                sa = AB + A[0] + k * eba + i1 * A[6] + i2 * A[7] + i3 * A[8]
                sb = BB + B[0] + k * ebb + i1 * B[6] + i2 * B[7] + (i3 - A[4]) * B[8]
            first = first & m
        for e in tl.static_range(tsize(DT)):
            va = tl.load(sa + e, mask=m & first, other=0)
            vb = tl.load(sb + e, mask=m & ~first, other=0)
            tl.store(dp + k * ebd + e, tl.where(first, va, vb), mask=m)


@triton.jit
def pad(DB, D, AB, A, lp0, lp1, lp2, lp3, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """a at offsets lp, zeros elsewhere."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % D[2]
    i2 = (r // D[2]) % D[3]
    i3 = r // (D[2] * D[3])
    dp = at(DB, D, 0, i1, i2, i3)
    j1 = i1 - lp1
    j2 = i2 - lp2
    j3 = i3 - lp3
    inside = (j1 >= 0) & (j1 < A[2]) & (j2 >= 0) & (j2 < A[3]) & (j3 >= 0) & (j3 < A[4])
    for k0 in range(0, D[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < D[1]
        j0 = k - lp0
        ins = m & inside & (j0 >= 0) & (j0 < A[1])
        sp = at(AB, A, tl.where(ins, j0, 0), tl.where(inside, j1, 0), tl.where(inside, j2, 0),
                tl.where(inside, j3, 0))
        convert(sp, AT, dp + k * D[5], DT, ins)
        zero(dp + k * D[5], DT, m & ~ins)


@triton.jit
def repeat(DB, D, AB, A, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """a tiled over dst."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % D[2]
    i2 = (r // D[2]) % D[3]
    i3 = r // (D[2] * D[3])
    dp = at(DB, D, 0, i1, i2, i3)
    sp = at(AB, A, 0, i1 % A[2], i2 % A[3], i3 % A[4])
    for k0 in range(0, D[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < D[1]
        convert(sp + (k % A[1]) * A[5], AT, dp + k * D[5], DT, m)


@triton.jit
def arange(DB, D, start, step, DT: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m = i < D[1]
    v = step * i.to(tl.float32)
    put(DB + D[0] + i * D[5], start + v, DT, m)


@triton.jit
def diag_mask(DB, D, AB, A, n_past, value, DT: tl.constexpr, AT: tl.constexpr, BLOCK: tl.constexpr):
    """Elements i > n_past + i1 set to value (diag_mask_inf / diag_mask_zero)."""
    r = tl.program_id(0).to(tl.int64)
    i1 = r % A[2]
    sp = row_at(AB, A, r)
    dp = row_at(DB, D, r)
    for k0 in range(0, A[1], BLOCK):
        k = k0 + tl.arange(0, BLOCK).to(tl.int64)
        m = k < A[1]
        v = tl.where(k > n_past + i1, value, get(sp + k * A[5], AT, m))
        put(dp + k * D[5], v, DT, m)
