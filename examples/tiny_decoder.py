"""A tiny LLaMA-style decoder built with graphc's builder (ggml's function names).

It is a real transformer: token embedding (get_rows), per layer rms_norm, q/k/v projections with
4-bit weights, rope, a KV cache held in f16 state tensors written with set_rows at the token
positions, masked softmax attention, a SwiGLU feed-forward, and an output head. The same graph
serves prefill (n_tokens > 1) and decode (n_tokens = 1): positions and the mask are inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.builder import GraphBuilder
from graphc.ir import Graph


@dataclass(frozen=True)
class Config:
    n_vocab: int = 256
    n_embd: int = 64
    n_head: int = 4
    n_ff: int = 128
    n_layer: int = 2
    n_ctx: int = 32
    eps: float = 1e-5
    rope_base: float = 10000.0
    weight_type: str = "q4_0"

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def build(cfg: Config, n_tokens: int) -> Graph:
    g = GraphBuilder(f"tiny-decoder-{n_tokens}")
    E, H, D, C, T = cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.n_ctx, n_tokens
    weight = lambda name, *ne, type=cfg.weight_type: g.set_param(g.new_tensor(type, ne, name))  # noqa: E731

    tokens = g.set_input(g.new_tensor_1d("i32", T, "tokens"))
    pos = g.set_input(g.new_tensor_1d("i32", T, "pos"))
    mask = g.set_input(g.new_tensor_2d("f32", C, T, "kq_mask"))      # 0 where visible, -inf elsewhere

    x = g.get_rows(weight("token_embd", E, cfg.n_vocab, type="f32"), tokens)
    for il in range(cfg.n_layer):
        p = f"blk.{il}."
        h = g.mul(g.rms_norm(x, cfg.eps), weight(p + "attn_norm", E, type="f32"))
        q = g.reshape_3d(g.mul_mat(weight(p + "attn_q", E, E), h), D, H, T)
        k = g.reshape_3d(g.mul_mat(weight(p + "attn_k", E, E), h), D, H, T)
        v = g.mul_mat(weight(p + "attn_v", E, E), h)
        q = g.rope_ext(q, pos, None, D, 0, C, cfg.rope_base, 1.0, 0.0, 1.0, 32.0, 1.0)
        k = g.rope_ext(k, pos, None, D, 0, C, cfg.rope_base, 1.0, 0.0, 1.0, 32.0, 1.0)

        # KV cache rows are positions; set_rows writes this batch's rows in place
        k_cache = g.set_state(g.new_tensor_2d("f16", E, C, p + "k_cache"))
        v_cache = g.set_state(g.new_tensor_2d("f16", E, C, p + "v_cache"))
        k_all = g.set_rows(k_cache, g.reshape_2d(k, E, T), pos)
        v_all = g.set_rows(v_cache, v, pos)

        K = g.permute(g.view_3d(k_all, D, H, C, D * 2, E * 2, 0), 0, 2, 1, 3)          # [D, C, H]
        V = g.cont(g.permute(g.view_3d(v_all, D, H, C, D * 2, E * 2, 0), 1, 2, 0, 3))  # [C, D, H]
        Q = g.permute(q, 0, 2, 1, 3)                                                     # [D, T, H]
        kq = g.soft_max_ext(g.mul_mat(K, Q), mask, 1.0 / np.sqrt(D), 0.0)                # [C, T, H]
        kqv = g.permute(g.mul_mat(V, kq), 0, 2, 1, 3)                                    # [D, H, T]
        attn = g.mul_mat(weight(p + "attn_output", E, E), g.cont_2d(kqv, E, T))
        x = g.add(x, attn)

        h = g.mul(g.rms_norm(x, cfg.eps), weight(p + "ffn_norm", E, type="f32"))
        gate = g.mul_mat(weight(p + "ffn_gate", E, cfg.n_ff), h)
        up = g.mul_mat(weight(p + "ffn_up", E, cfg.n_ff), h)
        x = g.add(x, g.mul_mat(weight(p + "ffn_down", cfg.n_ff, E), g.swiglu_split(gate, up)))

    x = g.mul(g.rms_norm(x, cfg.eps), weight("output_norm", E, type="f32"))
    logits = g.set_name(g.mul_mat(weight("output", E, cfg.n_vocab, type="q8_0"), x), "logits")
    return g.build(logits)


def random_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """f32 weights in numpy order; graphc quantizes them to each tensor's type when it loads them."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in graph.params:
        if t.name.endswith("norm"):
            out[t.name] = (1.0 + 0.1 * rng.standard_normal(t.shape)).astype(np.float32)
        else:
            out[t.name] = (rng.standard_normal(t.shape) / np.sqrt(t.ne[0])).astype(np.float32)
    return out


def step_inputs(cfg: Config, tokens: list[int], n_past: int) -> dict[str, np.ndarray]:
    """Inputs for feeding `tokens` after `n_past` cached positions: ids, positions and a causal mask."""
    T = len(tokens)
    pos = np.arange(n_past, n_past + T, dtype=np.int32)
    mask = np.full((T, cfg.n_ctx), -np.inf, dtype=np.float32)
    for i, p in enumerate(pos):
        mask[i, : p + 1] = 0.0
    return {"tokens": np.asarray(tokens, dtype=np.int32), "pos": pos, "kq_mask": mask}
