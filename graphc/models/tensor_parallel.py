"""Megatron-style tensor parallelism for the decoder graphs (llama, qwen2, gemma3): what one rank holds.

    shard = plan(cfg, tensors, path, world=2, rank=0)      # a Shard, or a CompileError saying why not
    build_graph(cfg, tensors, path, ..., shard=shard)         # llm_graph: this rank's graph

The split, per layer (llm_graph builds it; graphc/parallel.py runs the collectives):
- attention heads: rank r holds q heads [h0, h1) (n_head divides by the world size) and the KV heads they
  read: [g0, g1) when n_head_kv divides by the world size too, else (n_head_kv dividing the world size, as
  gemma3's single KV head) the one KV head its q heads share, held by every rank it serves (vLLM's rule).
  q/k/v are column-parallel (their weights' rows for those heads: whole rows, so quant blocks stay intact,
  read in place from the mapped file), the KV cache holds only those heads, and attn_output is row-parallel
  (its columns for those heads, K split at quant-block boundaries) followed by an all_reduce (sum) and then
  its bias, once. Where those columns are not whole quant blocks (e.g. 7 heads of 64 against k-quants' 256),
  the ranks all_gather the heads' outputs and each multiplies by the whole attn_output (replicated).
- FFN: gate/up column-parallel over the ffn rows [f0, f1), down row-parallel over the same K range, then an
  all_reduce. The ffn split is in whole blocks of ffn_down's types (256 for k-quants): ranks may differ
  by one block.
- vocabulary: token_embd and output are split by rows, [v0, v1) in torch.chunk's split (ceil(n_vocab /
  world) rows per rank); the embedding is looked up for the tokens this rank holds (the others give zero
  rows) and all_reduced; the logits are all_gathered, so every rank sees all of them (and samples the
  same token).
What is replicated: the norms (1-D), rope_freqs, the biases added after a reduction. Anything that does not
split evenly as above is a CompileError naming the numbers and the world sizes that would work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from graphc.errors import CompileError
from graphc.types import get_type

from .llm_config import LLMConfig

__all__ = ["Shard", "chunk", "plan", "valid_world_sizes"]


def chunk(n: int, world: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's share of n items in torch.chunk's split (ceil(n / world) each; the last less)."""
    c = -(-n // world)
    return min(rank * c, n), min((rank + 1) * c, n)


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int
    heads: tuple[int, int]          # q heads [h0, h1)
    kv_heads: tuple[int, int]       # KV heads [g0, g1)
    ff: tuple[int, int]             # ffn rows [f0, f1) of gate/up, K range of down
    vocab: tuple[int, int]          # token_embd / output rows [v0, v1)
    gather_attn: bool = False       # attn_output whole on every rank after an all_gather of the heads' outputs

    def local(self, cfg: LLMConfig) -> LLMConfig:
        """The config of this rank's slice (heads, ffn width); n_vocab stays the model's (the logits are whole)."""
        return replace(cfg, n_head=self.heads[1] - self.heads[0], n_head_kv=self.kv_heads[1] - self.kv_heads[0],
                       n_ff=self.ff[1] - self.ff[0])

    def q_rows(self, cfg: LLMConfig) -> tuple[int, int]:
        return self.heads[0] * cfg.head_dim_k, self.heads[1] * cfg.head_dim_k

    def k_rows(self, cfg: LLMConfig) -> tuple[int, int]:
        return self.kv_heads[0] * cfg.head_dim_k, self.kv_heads[1] * cfg.head_dim_k

    def v_rows(self, cfg: LLMConfig) -> tuple[int, int]:
        return self.kv_heads[0] * cfg.head_dim_v, self.kv_heads[1] * cfg.head_dim_v


def _block(tensors: Mapping[str, "tuple[object, Sequence[int]]"], names: "list[str]") -> int:
    """The least common multiple of the block sizes of these tensors' stored types (1 when none is there)."""
    out = 1
    for n in names:
        if n in tensors:
            out = math.lcm(out, get_type(tensors[n][0]).blck)
    return out


def valid_world_sizes(cfg: LLMConfig, tensors: Mapping[str, "tuple[object, Sequence[int]]"],
                      upto: int = 64) -> list[int]:
    """The world sizes up to `upto` this model splits over (plan's rules)."""
    out = []
    for w in range(1, upto + 1):
        try:
            plan(cfg, tensors, "", w, 0)
        except CompileError:
            continue
        out.append(w)
    return out


def plan(cfg: LLMConfig, tensors: Mapping[str, "tuple[object, Sequence[int]]"], path: str, world: int,
         rank: int) -> Shard:
    """Rank `rank`'s share of the model over `world` ranks; CompileError where the model does not split so."""
    if not isinstance(world, int) or not isinstance(rank, int) or world < 1 or not 0 <= rank < world:
        raise CompileError(f"tensor parallel: rank {rank!r} of world size {world!r} is not a rank of the group")

    def fail(why: str) -> CompileError:
        ok = [w for w in valid_world_sizes(cfg, tensors, 16) if w > 1] if path else []
        hint = f"; this model splits over {', '.join(map(str, ok))} ranks" if ok else \
            ("; this model does not split over 2-16 ranks" if path else "")
        return CompileError(f"{path or 'model'}: cannot split over {world} ranks: {why}{hint}")

    if cfg.n_head % world:
        raise fail(f"its {cfg.n_head} query heads do not divide by {world} (each rank keeps whole heads)")
    hq = cfg.n_head // world
    heads = (rank * hq, (rank + 1) * hq)
    if cfg.n_head_kv % world == 0:              # each rank its own KV heads, in the model's query/KV ratio
        hk = cfg.n_head_kv // world
        kv_heads = (rank * hk, (rank + 1) * hk)
    elif world % cfg.n_head_kv == 0:            # fewer KV heads than ranks: the ranks a KV head serves all hold it
        k = heads[0] // (cfg.n_head // cfg.n_head_kv)
        kv_heads = (k, k + 1)
    else:
        raise fail(f"its {cfg.n_head_kv} KV heads neither divide by {world} nor divide {world} (each rank's query "
                   "heads must share whole KV heads)")
    L = range(cfg.n_layer)
    ob = _block(tensors, [f"blk.{i}.attn_output.weight" for i in L])
    # attn_output is row-parallel when its K split (this rank's heads) is whole quant blocks; else every rank
    # gathers all heads' outputs and multiplies by the whole attn_output (replicated, as the norms)
    gather_attn = (hq * cfg.head_dim_v) % ob != 0
    db = _block(tensors, [f"blk.{i}.ffn_down.weight" for i in L])
    if cfg.n_ff % db:
        raise fail(f"n_ff {cfg.n_ff} is not a whole number of ffn_down's {db}-value quant blocks")
    blocks = cfg.n_ff // db
    if blocks < world:
        raise fail(f"the FFN has {blocks} blocks of {db} columns in ffn_down, fewer than {world} ranks")
    b0, b1 = chunk(blocks, world, rank)
    if chunk(blocks, world, world - 1)[0] >= blocks:
        raise fail(f"the FFN's {blocks} blocks of {db} columns leave a rank none")
    if cfg.n_vocab - (world - 1) * -(-cfg.n_vocab // world) <= 0:
        raise fail(f"a vocabulary of {cfg.n_vocab} rows leaves a rank none")
    return Shard(rank, world, heads, kv_heads, (b0 * db, b1 * db), chunk(cfg.n_vocab, world, rank), gather_attn)
