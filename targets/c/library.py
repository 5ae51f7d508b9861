"""Which ops the C target runs as library kernels (kernels/c/*.h): the one table the lowering queries.

A row names the header that defines `gc_op_<op>` and whether the header also defines the optional hooks
`gc_supports_<op>` (declines some types/shapes at load) and `gc_scratch_<op>` (per-thread scratch bytes).
Adding a library op means adding its row here; tests/test_c_library.py checks this table against the
headers' text, so the two cannot drift apart (nothing is scanned when a graph compiles).
"""
from __future__ import annotations

from graphc.codegen.lower import LibOp, Library


def _rows(header: str, ops: str, scratch: str = "", supports: str = "") -> dict[str, LibOp]:
    sc, su = set(scratch.split()), set(supports.split())
    return {op: LibOp(op, header, supports=op in su, scratch=op in sc) for op in ops.split()}


C_LIBRARY = Library("c", {
    **_rows("matmul.h", "mul_mat", scratch="mul_mat", supports="mul_mat"),
    **_rows("ops_attn.h", "flash_attn_ext", scratch="flash_attn_ext"),
    **_rows("ops_data.h", "arange concat cont cpy diag_mask_inf diag_mask_zero dup get_rows out_prod pad repeat "
            "set set_rows", scratch="cont cpy diag_mask_inf diag_mask_zero dup get_rows out_prod set_rows"),
    **_rows("ops_norm.h", "argmax group_norm l2_norm mean norm rms_norm soft_max sum sum_rows",
            scratch="argmax l2_norm mean norm rms_norm soft_max sum sum_rows"),
    **_rows("ops_rope.h", "rope", scratch="rope"),
    **_rows("ops_rwkv.h", "rwkv_wkv4 rwkv_wkv6 rwkv_wkv7", scratch="rwkv_wkv4 rwkv_wkv6 rwkv_wkv7"),
})
