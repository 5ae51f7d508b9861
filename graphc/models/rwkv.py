"""RWKV-4 checkpoints (ChatRWKV / BlinkDL .pth, or .safetensors with the same names) as graphc models.

    model = load_rwkv("RWKV-4-Pile-169M.pth", target="c", quantize="q8_0")
    logits = model.logits([510, 3158, 8516])      # (3, n_vocab): sequence mode, one graph run
    logits = model.logits([13])                   # (1, n_vocab): RNN mode
    model.generate([510, 3158], max_tokens=8)     # token ids in and out (no tokenizer)

Graphs come from graphc.models.rwkv_graph.build_graph: the 1-token RNN graph is compiled at load and owns
the state (per layer att x-prev, aa|bb|pp, ffn x-prev); sequence graphs are compiled lazily per token
count, over the same state buffers (compile(share_state=...)) and the same weight bytes. n tokens run as
chunks of n_batch, then the binary decomposition of the rest (graphc.models.llm.chunk_sizes): at most
log2(n_batch) + 2 graphs are ever compiled. Every position's logits come back.
Both modes use the one rwkv_wkv4 op (T = 1 in RNN mode): one kernel, one numerical path, so sequence and
RNN results agree up to matmul summation order.
quantize (a type name or graphc.quantize spec dict) re-encodes the matrices that feed mul_mat once at
load (graphc.quantize.plan / apply, the machinery of compile(quantize=...)); every graph then uses those
same read-only bytes in place. The embedding table stays as stored unless the spec sets get_rows=True.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from graphc.errors import CompileError

from .base import Model
from .llm import chunk_sizes

DEFAULT_N_BATCH = 64


class RWKVModel(Model):
    """A compiled RWKV-4 model. `config` holds its sizes, `modules` the compiled graphs by token count."""

    def __init__(self, path: str, target: str, n_batch: int, quantize: Any, target_opts: dict[str, Any]):
        from graphc.frontends.rwkv4 import read_checkpoint
        self.path, self.target, self.n_batch = path, target, n_batch
        self.target_opts = dict(target_opts)
        ckpt = read_checkpoint(path)
        self.config = ckpt.config
        self.n_vocab = ckpt.config.n_vocab
        self.tokenizer = None
        self.eos_ids = ()
        self._types = ckpt.weight_types()
        self._weights = ckpt.graph_weights()          # read-only bytes: every graph uses them in place
        del ckpt
        self.modules: dict[int, Any] = {}
        self._n_past = 0
        self.quantize_plan = None
        if quantize is not None:
            self._quantize(quantize)
        self._compile(1)                              # the RNN graph: owns the state

    def graph(self, n_tokens: int):
        from .rwkv_graph import build_graph
        # only the RNN graph (compiled first, at load) carries the initial state: a later compile onto
        # the shared buffers would otherwise overwrite the live state
        return build_graph(self.config, n_tokens, self._types, initial=n_tokens == 1)

    def _quantize(self, quantize: Any) -> None:
        """Re-encode the matrices once (on the RNN graph: every graph has the same weights)."""
        from graphc import quantize as q
        spec = q.parse_spec(quantize)
        g = self.graph(1)
        self.quantize_plan = plan = q.plan_spec(g, spec)
        _, new = q.apply(g, plan, self._weights, progress=spec.progress)
        for name, raw in new.items():
            ro = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
            ro.flags.writeable = False
            self._weights[name] = memoryview(ro)
            self._types[name] = plan[name]

    def _compile(self, n_tokens: int):
        import graphc
        m = self.modules.get(n_tokens)
        if m is None:
            owner = self.modules.get(1)
            m = graphc.compile(self.graph(n_tokens), target=self.target, weights=self._weights,
                               share_state=owner, **self.target_opts)
            self.modules[n_tokens] = m
        return m

    # --- the Model interface --------------------------------------------------------------------
    @property
    def n_past(self) -> int:
        return self._n_past

    def _reset(self) -> None:
        self.modules[1].reset_state()       # one set of buffers: every graph sees the reset (pp = -1e30)
        self._n_past = 0

    def _forward(self, ids: np.ndarray, all_positions: bool = True) -> np.ndarray:
        # RWKV's head is one small matrix: every position's logits are computed either way
        n = int(ids.size)
        out = np.empty((n, self.n_vocab), dtype=np.float32)
        done = 0
        for size in chunk_sizes(n, self.n_batch):
            m = self._compile(size)
            out[done:done + size] = m.run({"tokens": ids[done:done + size]})["logits"].reshape(size, self.n_vocab)
            done += size
            self._n_past += size
        return out if all_positions else out[-1:]

    # --- state ----------------------------------------------------------------------------------
    def state(self) -> list[np.ndarray]:
        """The state as the rwkv package keeps it: per layer att x-prev, aa, bb, pp, ffn x-prev (float32)."""
        m = self.modules[1]
        out: list[np.ndarray] = []
        for i in range(self.config.n_layer):
            abp = m.read(f"blocks.{i}.att.state").reshape(3, self.config.n_att)
            out += [m.read(f"blocks.{i}.att.x_prev").copy(), *abp.copy(), m.read(f"blocks.{i}.ffn.x_prev").copy()]
        return out

    def __repr__(self) -> str:
        c = self.config
        return (f"RWKVModel({os.path.basename(self.path)!r}, {c.n_layer} layers, n_embd {c.n_embd}, "
                f"n_vocab {c.n_vocab}, target={self.target!r}, n_past={self._n_past})")


def load_rwkv(path: "str | os.PathLike[str]", target: str = "c", quantize: Any = None,
              n_threads: int | None = None, n_batch: int = DEFAULT_N_BATCH, **target_opts: Any) -> RWKVModel:
    """Load an RWKV-4 checkpoint (.pth read with torch.load(weights_only=True), or .safetensors) and
    compile it for `target`. quantize: "q8_0", "q4_0", "q5_1", ... or a graphc.quantize spec dict;
    n_threads: the C target's threads; n_batch: most tokens one sequence graph feeds. Other options go
    to the target."""
    path = os.fspath(path)
    if isinstance(n_batch, bool) or not isinstance(n_batch, (int, np.integer)) or n_batch < 1:
        raise CompileError(f"n_batch must be a positive integer, got {n_batch!r}")
    if n_threads is not None and target == "c":        # the C target's threads (ref and opencl have none)
        target_opts["n_threads"] = n_threads
    return RWKVModel(path, target, int(n_batch), quantize, target_opts)
