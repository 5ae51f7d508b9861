"""The RWKV-4 forward graph (the rwkv package's RWKV-4, built with graphc's builder).

    ckpt = graphc.frontends.rwkv4.read_checkpoint("RWKV-4-Pile-169M.pth")
    graph = build_graph(ckpt.config, n_tokens=1, types=ckpt.weight_types())   # RNN mode; n_tokens > 1: sequence mode
    weights = ckpt.graph_weights()                                             # {leaf name: read-only raw bytes}

The math is the rwkv package's RWKV-4 (model.py att_one/att_seq, ffn_one/ffn_seq): layer norms (eps 1e-5),
token shift mixing x with the previous token's normed x, WKV in the running-max form (op rwkv_wkv4:
finite for any k), squared-ReLU channel mix. The state per layer is the package's five vectors:
att x-prev (n_embd), aa, bb, pp (one [3*n_att] tensor: the op's state) and ffn x-prev (n_embd); pp starts
at -1e30 as in the package. RESCALE_LAYER (the package's fp16-mode halving every 6 layers) is not
applied: graphc runs activations in f32, which is the package's "fp32" strategy.
Weight leafs are named as the checkpoint's tensors, except "blocks.N.att.time_w" = -exp(time_decay)
(Checkpoint.graph_weights prepares it, as the rwkv package does).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from graphc.builder import GraphBuilder
from graphc.frontends.rwkv4 import RWKV4Config
from graphc.ir import Graph, Tensor

EPS = 1e-5                   # torch.nn.functional.layer_norm's default, what the package uses
PP_INIT = -1e30              # the package's initial running max exponent


def initial_state(cfg: RWKV4Config) -> dict[str, np.ndarray]:
    """The package's fresh state: zeros, pp = -1e30."""
    abp = np.zeros((3, cfg.n_att), np.float32)
    abp[2] = PP_INIT
    return {f"blocks.{i}.att.state": abp.reshape(-1) for i in range(cfg.n_layer)}


def build_graph(cfg: RWKV4Config, n_tokens: int, types: Mapping[str, str] | None = None,
                name: str | None = None, initial: bool = True) -> Graph:
    """The RWKV-4 forward graph for n_tokens tokens after the state: input "tokens" (i32 [n_tokens]),
    output "logits" ([n_vocab, n_tokens]); the state tensors are read, then overwritten at the end.
    types: {matrix name: type} (default f32), e.g. Checkpoint.weight_types() or a quantize plan.
    initial: give the att.state leafs their initial contents (pp = -1e30) as data, which compile() writes
    into the state and reset_state() restores. A graph compiled later with share_state= onto a running
    state must not carry it (compile would overwrite the live state)."""
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive integer, got {n_tokens!r}")
    types = dict(types or {})
    C, A, F, V, T = cfg.n_embd, cfg.n_att, cfg.n_ffn, cfg.n_vocab, n_tokens
    g = GraphBuilder(name or f"rwkv4-{cfg.n_layer}x{C}-t{T}")

    def weight(nm: str, *ne: int) -> Tensor:
        typ = types.get(nm, "f32") if len(ne) == 2 else "f32"
        return g.set_param(g.new_tensor(typ, ne, nm))

    def layer_norm(x: Tensor, prefix: str) -> Tensor:
        return g.add(g.mul(g.norm(x, EPS), weight(prefix + ".weight", C)), weight(prefix + ".bias", C))

    init = initial_state(cfg)
    writes: list[Tensor] = []

    def shifted(xx: Tensor, state_name: str) -> Tensor:
        """The previous token's normed x for every position: the state, then xx moved down one row;
        the last row becomes the new state (written after everything has read it)."""
        prev = g.set_state(g.new_tensor_1d("f32", C, state_name))
        writes.append(g.cpy(g.view_1d(xx, C, (T - 1) * xx.nb[1]), prev))
        if T == 1:
            return prev
        return g.concat(prev, g.view_2d(xx, C, T - 1, xx.nb[1], 0), 1)

    def mix(sx: Tensor, d: Tensor, nm: str) -> Tensor:
        """The package's xx * m + sx * (1 - m), as sx + (xx - sx) * m with d = xx - sx shared."""
        return g.add(sx, g.mul(d, weight(nm, C)))

    tokens = g.set_input(g.new_tensor_1d("i32", T, "tokens"))
    x = layer_norm(g.get_rows(weight("emb.weight", C, V), tokens), "blocks.0.ln0")
    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        xx = layer_norm(x, b + "ln1")
        sx = shifted(xx, b + "att.x_prev")
        d = g.sub(xx, sx)
        r = g.sigmoid(g.mul_mat(weight(b + "att.receptance.weight", C, A), mix(sx, d, b + "att.time_mix_r")))
        k = g.mul_mat(weight(b + "att.key.weight", C, A), mix(sx, d, b + "att.time_mix_k"))
        v = g.mul_mat(weight(b + "att.value.weight", C, A), mix(sx, d, b + "att.time_mix_v"))
        st = g.set_state(g.new_tensor_1d("f32", 3 * A, b + "att.state"))
        if initial:
            st.data = init[b + "att.state"].view(np.uint8)
        both = g.rwkv_wkv4(k, v, weight(b + "att.time_w", A), weight(b + "att.time_first", A), st)
        wkv = g.view_2d(both, A, T, both.nb[1], 0)
        writes.append(g.cpy(g.view_1d(both, 3 * A, T * both.nb[1]), st))
        x = g.add(x, g.mul_mat(weight(b + "att.output.weight", A, C), g.mul(r, wkv)))

        xx = layer_norm(x, b + "ln2")
        sx = shifted(xx, b + "ffn.x_prev")
        d = g.sub(xx, sx)
        r = g.sigmoid(g.mul_mat(weight(b + "ffn.receptance.weight", C, C), mix(sx, d, b + "ffn.time_mix_r")))
        kk = g.sqr(g.relu(g.mul_mat(weight(b + "ffn.key.weight", C, F), mix(sx, d, b + "ffn.time_mix_k"))))
        x = g.add(x, g.mul(r, g.mul_mat(weight(b + "ffn.value.weight", F, C), kk)))

    logits = g.set_name(g.mul_mat(weight("head.weight", C, V), layer_norm(x, "ln_out")), "logits")
    g.build_forward_expand(logits)            # every read of the state comes first ...
    for w in writes:                          # ... then the writes, in the order ggml would run them
        g.build_forward_expand(w)
    return g.build(logits)
