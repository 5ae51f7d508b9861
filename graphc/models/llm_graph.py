"""The graph llama.cpp builds for a llama / qwen2 / gemma3 GGUF model, built with graphc's builder.

    g = build_graph(cfg, tensors, "model.gguf", n_tokens=1, n_ctx=4096)

One graph feeds `n_tokens` tokens after what the KV cache holds. Inputs:
  tokens  i32 [T]                 token ids
  pos     i32 [T]                 their positions (also the K cache rows written)
  kq_mask f32 [n_kv, T]           0 where token t may see cache row j, -inf elsewhere (f16 with flash_attn)
  kq_mask_swa                     the sliding-window mask (gemma3 only)
  v_idxs  i32 [n_embd_v_gqa * T]  V cache element indices (without flash_attn: the V cache is transposed)
State: cache_k_l{il} [n_embd_k_gqa, n_ctx] and cache_v_l{il} ([n_ctx, n_embd_v_gqa] transposed, or
[n_embd_v_gqa, n_ctx] with flash_attn), kv_type (f16 as llama.cpp's default). Output: logits f32 [n_vocab, T].
Weights are leafs named as in the GGUF file and bound to it (WeightRef: mapped, never copied).

Node for node this follows llama.cpp's src/models/{llama,qwen2,gemma3}.cpp and llama-graph.cpp
(build_norm, build_qkv, build_ffn, build_attn -> build_attn_mha) and llama-kv-cache.cpp (cpy_k / cpy_v
with set_rows, get_k / get_v views). Differences, none of which changes a result: attention spans the
first n_kv cache rows (the caller picks n_kv; llama.cpp uses the used cells rounded up to 256), masked
rows adding exact zeros; cache rows are positions (one sequence); set_rows indices are i32 (llama.cpp:
i64); gemma3's sliding-window layers keep a full-size cache (llama.cpp's swa_full) instead of a ring of
n_swa + n_ubatch cells; output rows are every position, or with last_only the last one alone (llama.cpp's
inp_out_ids: the last layer's attention output and residual are cut to that row, so the last layer's FFN,
the output norm and the output matrix see one row; a view here, get_rows there). Node names follow
llama.cpp's callback names ("Qcur-0", "kq-0", "l_out-1", ...), so intermediate tensors can be compared.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from graphc.builder import GraphBuilder
from graphc.errors import CompileError
from graphc.ir import Graph, Tensor
from graphc.types import GGMLType, get_type

from .llm_config import LLMConfig
from .tensor_parallel import Shard

KV_TYPES = ("f16", "f32")
TensorTable = Mapping[str, "tuple[GGMLType, Sequence[int]]"]    # GGUF name -> (stored type, ne)


class _Weights:
    """Param leafs for GGUF tensors: stored type kept for matrices (zero-copy), 1-D ones as f32."""

    def __init__(self, g: GraphBuilder, table: TensorTable, path: str, types: Mapping[str, str]):
        self.g, self.table, self.path, self.types = g, table, path, types
        self.made: dict[str, Tensor] = {}

    def has(self, name: str) -> bool:
        return name in self.table

    def __call__(self, name: str, *ne: int, optional: bool = False, rows: "tuple[int, int] | None" = None,
                 cols: "tuple[int, int] | None" = None) -> Tensor | None:
        """The leaf for file tensor `name` of ne `ne` (checked against the file), or for its slice: rows
        [r0, r1) of ne[1], cols [c0, c1) of ne[0] (a tensor-parallel shard; WeightRef)."""
        key = (name, rows, cols)
        if key in self.made:
            return self.made[key]
        if name not in self.table:
            if optional:
                return None
            raise CompileError(f"{self.path}: the model needs tensor {name!r}, which the file does not have")
        stored, file_ne = self.table[name]
        got = tuple(int(d) for d in file_ne)
        while len(got) > 1 and got[-1] == 1:
            got = got[:-1]
        if got != tuple(ne):
            raise CompileError(f"{self.path}: tensor {name!r} has ne {list(got)}, the model's hyperparameters "
                               f"say {list(ne)}")
        t = get_type(self.types.get(name, "f32" if len(ne) == 1 else stored))
        local = list(ne)
        if cols is not None:
            local[0] = cols[1] - cols[0]
        if rows is not None:
            local[1] = rows[1] - rows[0]
        leaf = self.g.set_param(self.g.new_tensor(t, tuple(local), name), file=self.path, tensor=name,
                                rows=rows, cols=cols)
        self.made[key] = leaf
        return leaf


def build_graph(cfg: LLMConfig, tensors: TensorTable, path: str, n_tokens: int, n_ctx: int,
                kv_type: str = "f16", flash_attn: bool = False, n_kv: int | None = None,
                weight_types: Mapping[str, str] | None = None, gelu_table: bool = False,
                last_only: bool = False, shard: "Shard | None" = None) -> Graph:
    """The forward graph for n_tokens tokens over an n_ctx-row KV cache (attending to rows [0, n_kv)).
    Output logits [n_vocab, n_tokens], or [n_vocab, 1] for the last token alone with last_only.
    weight_types: {GGUF name: type} for weights declared in another type than stored (converted on load,
    or given as data: compile(weights=...)). gelu_table: GELU as llama.cpp's CPU backend computes it
    (through an f16 table; the op's `table` parameter). shard: this rank's part of a tensor-parallel
    split (graphc.models.tensor_parallel: its heads, FFN rows and vocabulary rows, with the collectives;
    the inputs are then `tokens` as this rank's local ids and `tok_mask`, see shard_inputs)."""
    n_kv = n_ctx if n_kv is None else n_kv
    if not 1 <= n_tokens <= n_ctx or not 1 <= n_kv <= n_ctx:
        raise CompileError(f"need 1 <= n_tokens ({n_tokens}) <= n_ctx ({n_ctx}) and 1 <= n_kv ({n_kv}) <= n_ctx")
    if kv_type not in KV_TYPES:
        raise CompileError(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
    if flash_attn and kv_type != "f16":
        raise CompileError("flash_attn needs an f16 KV cache (llama.cpp casts K and V to f16 for it)")
    return _Builder(cfg, tensors, path, n_tokens, n_ctx, n_kv, kv_type, flash_attn, weight_types or {},
                    gelu_table, last_only, shard).build()


class _Builder:
    def __init__(self, cfg: LLMConfig, tensors: TensorTable, path: str, T: int, n_ctx: int, n_kv: int,
                 kv_type: str, flash_attn: bool, weight_types: Mapping[str, str], gelu_table: bool,
                 last_only: bool, shard: "Shard | None" = None):
        self.shard = shard
        self.local = shard.local(cfg) if shard is not None else cfg     # this rank's heads and FFN width
        self.cfg, self.T, self.n_ctx, self.n_kv, self.kv_type, self.fa = cfg, T, n_ctx, n_kv, kv_type, flash_attn
        self.gelu_table = gelu_table
        self.last_only = last_only and T > 1
        self.g = GraphBuilder(f"{cfg.arch}-{T}")
        self.w = _Weights(self.g, tensors, path, weight_types)

    # --- helpers named as llama-graph.cpp's ------------------------------------------------
    def name(self, t: Tensor, base: str, il: int = -1) -> Tensor:
        return self.g.set_name(t, f"{base}-{il}" if il >= 0 else base)

    def norm(self, x: Tensor, weight: Tensor) -> Tensor:
        return self.g.mul(self.g.rms_norm(x, self.cfg.rms_eps), weight)

    def linear(self, w: Tensor, x: Tensor, b: Tensor | None = None) -> Tensor:
        y = self.g.mul_mat(w, x)
        return self.g.add(y, b) if b is not None else y

    def build(self) -> Graph:
        c, g, w, T = self.cfg, self.g, self.w, self.T
        E = c.n_embd
        tokens = g.set_input(g.new_tensor_1d("i32", T, "tokens"))
        self.pos = g.set_input(g.new_tensor_1d("i32", T, "pos"))
        mtype = "f16" if self.fa else "f32"          # flash attention takes an f16 mask (llama-graph.cpp)
        self.mask = g.set_input(g.new_tensor_2d(mtype, self.n_kv, T, "kq_mask"))
        self.mask_swa = g.set_input(g.new_tensor_2d(mtype, self.n_kv, T, "kq_mask_swa")) if c.has_swa else None
        self.v_idxs = None if self.fa else g.set_input(g.new_tensor_1d("i32", self.local.n_embd_v_gqa * T, "v_idxs"))
        self.rope_freqs = w("rope_freqs.weight", c.n_rot // 2, optional=True) if c.arch == "llama" else None

        sh = self.shard
        vocab = sh.vocab if sh is not None else None
        tok_embd = w("token_embd.weight", E, c.n_vocab, rows=vocab)
        x = g.get_rows(tok_embd, tokens)
        if sh is not None:     # this rank's rows of the table: other ranks' tokens give zero rows, summed over ranks
            tok_mask = g.set_input(g.new_tensor_2d("f32", 1, T, "tok_mask"))
            x = g.all_reduce(g.mul(x, tok_mask), sh.world)
        x = self.name(x, "inp_embd")
        if c.embd_scale:
            x = self.name(g.scale(x, c.embd_scale), "inp_scaled")
        for il in range(c.n_layer):
            x = self.layer(x, il)
        x = self.name(self.norm(x, w("output_norm.weight", E)), "result_norm")
        out = w("output.weight", E, c.n_vocab, optional=True, rows=vocab)
        out = tok_embd if out is None else out                                  # tied embeddings
        bias = w("output.bias", c.n_vocab, optional=True, cols=vocab) if c.arch == "qwen2" else None
        logits = self.linear(out, x, bias)
        if sh is not None:                                                      # every rank sees every logit
            logits = g.all_gather(logits, sh.world, c.n_vocab)
        if c.final_softcap:
            inv = float(np.float32(1.0) / np.float32(c.final_softcap))        # 1.0f / cap, as C computes it
            logits = g.scale(g.tanh(g.scale(logits, inv)), c.final_softcap)
        return g.build(self.name(logits, "logits"))

    def layer(self, x: Tensor, il: int) -> Tensor:
        c, g, w = self.cfg, self.g, self.w
        E, T, p = c.n_embd, self.T, f"blk.{il}."
        gemma = c.arch == "gemma3"
        cur = self.name(self.norm(x, w(p + "attn_norm.weight", E)), "attn_norm", il)

        # build_qkv: separate projections with optional biases (qwen2 has them), reshaped to heads
        if w.has(p + "attn_qkv.weight"):
            raise CompileError(f"{w.path}: fused attn_qkv weights are not supported yet")
        L, sh = self.local, self.shard             # this rank's heads (all of them without a shard)
        nq, nk, nv = c.head_dim_k * c.n_head, c.n_embd_k_gqa, c.n_embd_v_gqa     # the file's shapes
        qr, kr, vr = (sh.q_rows(c), sh.k_rows(c), sh.v_rows(c)) if sh is not None else (None, None, None)
        q = self.linear(w(p + "attn_q.weight", E, nq, rows=qr), cur, w(p + "attn_q.bias", nq, optional=True, cols=qr))
        k = self.linear(w(p + "attn_k.weight", E, nk, rows=kr), cur, w(p + "attn_k.bias", nk, optional=True, cols=kr))
        v = self.linear(w(p + "attn_v.weight", E, nv, rows=vr), cur, w(p + "attn_v.bias", nv, optional=True, cols=vr))
        q = g.reshape_3d(q, c.head_dim_k, L.n_head, T)
        k = g.reshape_3d(k, c.head_dim_k, L.n_head_kv, T)
        v = self.name(g.reshape_3d(v, c.head_dim_v, L.n_head_kv, T), "Vcur", il)
        if gemma:
            q = self.name(self.norm(q, w(p + "attn_q_norm.weight", c.head_dim_k)), "Qcur_normed", il)
        q = self.name(self.rope(q, il), "Qcur", il)
        if gemma:
            k = self.name(self.norm(k, w(p + "attn_k_norm.weight", c.head_dim_k)), "Kcur_normed", il)
        k = self.name(self.rope(k, il), "Kcur", il)
        if gemma:
            q = g.scale(q, c.attn_scale)
        cur = self.attention(q, k, v, il)
        wo_b = w(p + "attn_output.bias", E, optional=True) if c.arch == "llama" else None   # only llama reads it
        no = c.head_dim_v * c.n_head
        if sh is not None and sh.gather_attn:     # every rank: all heads' outputs times the whole attn_output
            cur = self.linear(w(p + "attn_output.weight", no, E), g.all_gather(cur, sh.world, no), wo_b)
        else:
            oc = (sh.heads[0] * c.head_dim_v, sh.heads[1] * c.head_dim_v) if sh is not None else None
            cur = self.reduced(g.mul_mat(w(p + "attn_output.weight", no, E, cols=oc), cur), wo_b)
        cur = self.name(cur, "attn_out", il)

        if self.last_only and il == c.n_layer - 1:
            # only the last position's logits are wanted: the rest of the graph is row-wise, so it sees one row
            cur, x = self.last_row(cur), self.last_row(x)
        if gemma:
            cur = self.name(self.norm(cur, w(p + "post_attention_norm.weight", E)), "attn_post_norm", il)
        ffn_inp = self.name(g.add(cur, x), "ffn_inp", il)
        cur = self.name(self.norm(ffn_inp, w(p + "ffn_norm.weight", E)), "ffn_norm", il)
        cur = self.ffn(cur, p, gemma)
        if gemma:
            cur = self.name(self.norm(cur, w(p + "post_ffw_norm.weight", E)), "ffn_post_norm", il)
        return self.name(g.add(cur, ffn_inp), "l_out", il)

    def reduced(self, partial: Tensor, bias: "Tensor | None") -> Tensor:
        """A row-parallel product's sum over the ranks (each holds a K range), then its bias, added once."""
        y = self.g.all_reduce(partial, self.shard.world) if self.shard is not None else partial
        return self.g.add(y, bias) if bias is not None else y

    def last_row(self, t: Tensor) -> Tensor:
        """Column T-1 of a contiguous [E, T] tensor, as [E, 1]."""
        nb1 = t.nb[1]
        return self.g.view_2d(t, t.ne[0], 1, nb1, (self.T - 1) * nb1)

    def rope(self, t: Tensor, il: int) -> Tensor:
        c = self.cfg
        base, scale = c.rope_for(il)
        return self.g.rope_ext(t, self.pos, self.rope_freqs, c.n_rot, c.rope_mode, c.n_ctx_orig, base, scale,
                               c.ext_factor, c.attn_factor, c.beta_fast, c.beta_slow)

    def ffn(self, cur: Tensor, p: str, gemma: bool) -> Tensor:
        """build_ffn with a parallel gate: down(act(gate(x)) * up(x)); act = SiLU, or GELU (tanh) for gemma3."""
        c, g, w, E = self.cfg, self.g, self.w, self.cfg.n_embd
        fr = self.shard.ff if self.shard is not None else None      # this rank's FFN rows (gate/up), K of down

        def bias(n, d, cols=None):
            return w(n, d, optional=True, cols=cols) if c.arch == "llama" else None
        up = self.linear(w(p + "ffn_up.weight", E, c.n_ff, rows=fr), cur, bias(p + "ffn_up.bias", c.n_ff, fr))
        gate = self.linear(w(p + "ffn_gate.weight", E, c.n_ff, rows=fr), cur, bias(p + "ffn_gate.bias", c.n_ff, fr))
        act = g.glu_split(gate, up, "geglu", table=self.gelu_table) if gemma else g.swiglu_split(gate, up)
        return self.reduced(g.mul_mat(w(p + "ffn_down.weight", c.n_ff, E, cols=fr), act),
                            bias(p + "ffn_down.bias", E))

    def attention(self, q: Tensor, k: Tensor, v: Tensor, il: int) -> Tensor:
        """Store this batch's K and V in the cache, then attend over cache rows [0, n_kv) with the mask."""
        c, g, T, C, n_kv = self.local, self.g, self.T, self.n_ctx, self.n_kv        # this rank's heads
        Dk, Dv, Hkv, H = c.head_dim_k, c.head_dim_v, c.n_head_kv, c.n_head
        Ek, Ev = c.n_embd_k_gqa, c.n_embd_v_gqa
        es = get_type(self.kv_type).size
        mask = self.mask_swa if c.is_swa(il) else self.mask

        k_cache = g.set_state(g.new_tensor_2d(self.kv_type, Ek, C, f"cache_k_l{il}"))
        k_all = g.set_rows(k_cache, g.reshape_2d(k, Ek, T), self.pos)
        K = g.permute(g.view_3d(k_all, Dk, Hkv, n_kv, Dk * es, Ek * es, 0), 0, 2, 1, 3)     # [Dk, n_kv, Hkv]
        Q = g.permute(q, 0, 2, 1, 3)                                                           # [Dk, T, H]

        if self.fa:
            v_cache = g.set_state(g.new_tensor_2d(self.kv_type, Ev, C, f"cache_v_l{il}"))
            v_all = g.set_rows(v_cache, g.reshape_2d(v, Ev, T), self.pos)
            V = g.permute(g.view_3d(v_all, Dv, Hkv, n_kv, Dv * es, Ev * es, 0), 0, 2, 1, 3)  # [Dv, n_kv, Hkv]
            out = g.flash_attn_ext(Q, K, V, mask, c.kq_scale, 0.0, 0.0)                       # [Dv, H, T]
            return g.reshape_2d(out, Dv * H, T)

        # without flash attention llama.cpp keeps V transposed: row d of head h holds that channel for
        # every position, written one element at a time (v_idxs = channel * n_ctx + position)
        v_cache = g.set_state(g.new_tensor_2d(self.kv_type, C, Ev, f"cache_v_l{il}"))
        v_all = g.set_rows(g.reshape_2d(v_cache, 1, C * Ev), g.reshape_2d(v, 1, Ev * T), self.v_idxs)
        V = g.view_3d(v_all, n_kv, Dv, Hkv, C * es, C * Dv * es, 0)                           # [n_kv, Dv, Hkv]
        kq = self.name(g.mul_mat(K, Q), "kq", il)                                              # [n_kv, T, H]
        kq = self.name(g.soft_max_ext(kq, mask, c.kq_scale, 0.0), "kq_soft_max", il)
        kqv = self.name(g.mul_mat(V, kq), "kqv", il)                                           # [Dv, T, H]
        return g.cont_2d(g.permute(kqv, 0, 2, 1, 3), Dv * H, T)


# --- host-side inputs ---------------------------------------------------------------------------------

def positions(n_past: int, n_tokens: int) -> np.ndarray:
    return np.arange(n_past, n_past + n_tokens, dtype=np.int32)


def kq_mask(pos: np.ndarray, n_kv: int, n_swa: int = 0, dtype: "type | np.dtype" = np.float32) -> np.ndarray:
    """(T, n_kv): 0 where query pos[t] sees cache row j (j <= pos[t], and pos[t] - j < n_swa with a window),
    -inf elsewhere (llama_kv_cache::set_input_kq_mask, causal, one sequence, row j holds position j)."""
    j = np.arange(n_kv)[None, :]
    p = np.asarray(pos, dtype=np.int64)[:, None]
    visible = j <= p
    if n_swa > 0:
        visible &= (p - j) < n_swa
    return np.where(visible, 0.0, -np.inf).astype(dtype)


def v_indices(pos: np.ndarray, n_embd_v_gqa: int, n_ctx: int) -> np.ndarray:
    """Element t * n_embd_v_gqa + d of this batch's V goes to row d * n_ctx + pos[t] of the transposed cache."""
    d = np.arange(n_embd_v_gqa, dtype=np.int64)[None, :]
    return (d * n_ctx + np.asarray(pos, dtype=np.int64)[:, None]).reshape(-1).astype(np.int32)


def shard_inputs(shard: Shard, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A tensor-parallel rank's `tokens` (ids local to its vocabulary rows, 0 for the others' tokens) and
    `tok_mask` ((T, 1) float32: 1 where the token is this rank's, 0 elsewhere)."""
    v0, v1 = shard.vocab
    ids = np.asarray(ids, dtype=np.int64)
    mine = (ids >= v0) & (ids < v1)
    return np.where(mine, ids - v0, 0).astype(np.int32), mine.astype(np.float32).reshape(-1, 1)
