"""GGUF decoder LLMs (llama, qwen2, gemma3) as graphc models: llama.cpp's graph, a persistent KV cache.

    model = load_gguf("model.gguf", target="c", n_ctx=2048)
    logits = model.logits([1, 15043, 3186])       # (3, n_vocab), after what the cache holds
    model.generate("Hello", max_tokens=32)

Graphs (graphc.models.llm_graph.build_graph) are compiled per (tokens fed at once, cache rows attended,
whether only the last position's logits are computed), all over one KV cache (compile(share_state=...))
and the same mapped weights: the 1-token decode graph at load, the others lazily when first needed.
- Tokens: a batch of n tokens runs as chunks of n_batch tokens, and a remainder r < n_batch as its binary
  decomposition (r = 32 + 4 + 1 -> graphs for 32, 4 and 1 tokens). So at most log2(n_batch) + 2 token
  counts are ever compiled, no chunk computes padding tokens or writes padding rows into the cache, and
  every graph has exact shapes (results do not depend on how a prompt is split, beyond float summation order).
- Cache rows: like llama.cpp, which attends to the used cells rounded up to 256 (not the whole cache),
  a chunk attends to the first n_kv rows, n_kv = kv_pad * 2^k (the smallest that holds n_past + chunk),
  capped at n_ctx; masked rows would only add exact zeros. kv_pad=0 attends to all n_ctx rows always.
The host keeps n_past and makes each chunk's positions, masks and V-cache indices.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from graphc.errors import CompileError, ContextOverflow, ParseError

from .base import Model

DEFAULT_N_CTX = 4096
DEFAULT_N_BATCH = 256
DEFAULT_KV_PAD = 256          # llama.cpp pads the attended cache cells to a multiple of 256


def chunk_sizes(n: int, n_batch: int) -> list[int]:
    """How n tokens are fed: whole n_batch chunks, then the binary decomposition of the rest."""
    sizes = [n_batch] * (n // n_batch)
    r = n % n_batch
    bit = 1 << max(r.bit_length() - 1, 0)
    while r:
        if r >= bit:
            sizes.append(bit)
            r -= bit
        bit >>= 1
    return sizes


def kv_rows(n_used: int, n_ctx: int, kv_pad: int) -> int:
    """Cache rows a chunk attends to: kv_pad * 2^k >= n_used, at most n_ctx (kv_pad 0: n_ctx)."""
    if kv_pad <= 0:
        return n_ctx
    n = kv_pad
    while n < n_used:
        n *= 2
    return min(n, n_ctx)


class GGUFModel(Model):
    """A compiled GGUF LLM. `cfg` holds the hyperparameters, `modules` the compiled graphs by token count."""

    def __init__(self, f: Any, cfg: Any, target: str, n_ctx: int, n_batch: int, kv_type: str, quantize: Any,
                 flash_attn: bool, kv_pad: int, target_opts: dict[str, Any], lazy: bool = False,
                 progress: Any = None, shard: Any = None):
        """f: the open GGUFFile (metadata and tensor table are read here; weights are bound by reference)."""
        self.path, self.target, self.cfg = f.path, target, cfg
        self._tensors = {n: (e.type, e.ne) for n, e in f.tensors.items()}
        self.shard = shard                # this rank's part of a tensor-parallel split, or None (tensor_parallel.py)
        self._local = shard.local(cfg) if shard is not None else cfg
        self.tokenizer, self.eos_ids = self._load_tokenizer(f)
        self.n_vocab = cfg.n_vocab
        self.n_ctx, self.n_batch, self.kv_type, self.flash_attn = n_ctx, n_batch, kv_type, flash_attn
        self.n_ctx_max = cfg.context_length
        self.progress = progress          # a text stream for "compiling ..." lines (the CLI's stderr), or None
        self.kv_pad = kv_pad
        self.target_opts = dict(target_opts)
        self.gelu_table = target in ("ref", "c")      # llama.cpp's CPU GELU reads an f16 table
        self._quantize = quantize
        self._qtypes: dict[str, str] = {}
        self._qdata: dict[str, np.ndarray] = {}
        self.quantize_plan = None
        self.modules: dict[tuple[int, int, bool], Any] = {}     # (n_tokens, n_kv, last_only) -> compiled module
        self._owner: Any = None                           # the first module: its state buffers are the cache
        self._n_past = 0
        if not lazy:
            self.prepare(0, 1)                            # the decode graph

    # --- compiling ------------------------------------------------------------------------------
    def graph(self, n_tokens: int, n_kv: int | None = None, last_only: bool = False):
        from .llm_graph import build_graph
        return build_graph(self.cfg, self._tensors, self.path, n_tokens, self.n_ctx, self.kv_type,
                           self.flash_attn, n_kv, weight_types=self._qtypes, gelu_table=self.gelu_table,
                           last_only=last_only, shard=self.shard)

    def _compile(self, n_tokens: int, n_kv: int, last_only: bool = False):
        import graphc
        key = (n_tokens, n_kv, last_only and n_tokens > 1)     # one token: both graphs are the same
        m = self.modules.get(key)
        if m is not None:
            return m
        g = self.graph(n_tokens, n_kv, key[2])
        owner = self._owner
        if owner is None and self._quantize is not None:
            # quantize once, on the first graph; later graphs declare the new types and reuse its bytes
            m = graphc.compile(g, target=self.target, quantize=self._quantize, **self.target_opts)
            self.quantize_plan = m.quantize_plan
            changed = set(m.quantize_plan.changed)
            self._qtypes = {n: m.quantize_plan[n] for n in changed}
            self._qdata = {t.name: _read_only(t.data) for t in m.graph.leafs if t.name in changed}
        else:
            m = graphc.compile(g, target=self.target, weights=self._qdata or None, share_state=owner,
                               **self.target_opts)
        self.modules[key] = m
        if self._owner is None:
            self._owner = m
        return m

    # --- the Model interface --------------------------------------------------------------------
    @property
    def n_past(self) -> int:
        return self._n_past

    def prepare(self, n_tokens: int, n_more: int = 0, all_positions: bool = False) -> None:
        """Compile now every graph that feeding n_tokens after the state (logits of every position, or of
        the last alone as generate() asks), then n_more single tokens, will use (so generate()'s timings
        measure runs, not gcc)."""
        from graphc.util import slow_step
        past, todo = self._n_past, {}
        for size in chunk_sizes(max(n_tokens, 0), self.n_batch) + [1] * max(n_more, 0):
            if past + size > self.n_ctx:
                break
            key = (size, kv_rows(past + size, self.n_ctx, self.kv_pad), not all_positions and size > 1)
            if key not in self.modules:
                todo[key] = None
            past += size
        if not todo:
            return
        shapes = ", ".join(f"{n} token{'s' if n > 1 else ''} x {kv} cache rows" for n, kv, _ in todo)
        with slow_step(self.progress, f"compiling {len(todo)} graph{'s' if len(todo) > 1 else ''} for target "
                                      f"{self.target} ({shapes})"):
            for key in todo:
                self._compile(*key)

    def _reset(self) -> None:
        if self._owner is not None:         # else nothing compiled yet (a lazy load): nothing fed either
            self._owner.reset_state()       # one set of buffers: every module sees the reset
        self._n_past = 0

    def _forward(self, ids: np.ndarray, all_positions: bool = True) -> np.ndarray:
        from .llm_graph import kq_mask, positions, shard_inputs, v_indices
        n = int(ids.size)
        if self._n_past + n > self.n_ctx:
            raise ContextOverflow(self._n_past, n, self.n_ctx, self.n_ctx_max)
        c = self.cfg
        out = np.empty((n if all_positions else 1, self.n_vocab), dtype=np.float32)
        done = 0
        mtype = np.float16 if self.flash_attn else np.float32
        for size in chunk_sizes(n, self.n_batch):
            n_kv = kv_rows(self._n_past + size, self.n_ctx, self.kv_pad)
            m = self._compile(size, n_kv, not all_positions)
            pos = positions(self._n_past, size)
            feed = {"tokens": ids[done:done + size], "pos": pos, "kq_mask": kq_mask(pos, n_kv, 0, mtype)}
            if self.shard is not None:
                feed["tokens"], feed["tok_mask"] = shard_inputs(self.shard, feed["tokens"])
            if c.has_swa:
                feed["kq_mask_swa"] = kq_mask(pos, n_kv, c.n_swa, mtype)
            if not self.flash_attn:
                feed["v_idxs"] = v_indices(pos, self._local.n_embd_v_gqa, self.n_ctx)   # this rank's V rows
            logits = m.run(feed)["logits"]
            if all_positions:
                out[done:done + size] = logits.reshape(size, self.n_vocab)
            else:                        # earlier chunks' last rows are overwritten: only the prompt's end counts
                out[0] = logits.reshape(-1, self.n_vocab)[-1]
            self._n_past += size
            done += size
        return out

    # --- tokenizer ------------------------------------------------------------------------------
    tokenizer_error: str | None = None    # why the file's vocabulary gave no tokenizer, if it did not

    def _load_tokenizer(self, f: Any) -> tuple[Any, tuple[int, ...]]:
        """The file's tokenizer (graphc.models.tokenizer) and end-of-generation ids; without a usable
        vocabulary the model still runs on token ids (tokenizer None, tokenizer_error says why)."""
        md = f.metadata
        tmpl = md.get("tokenizer.chat_template")
        self.chat_template = tmpl if isinstance(tmpl, str) else None     # rendered by graphc.models.chat
        eos = tuple(int(md[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                         "tokenizer.ggml.eom_token_id") if isinstance(md.get(k), int))
        if "tokenizer.ggml.model" not in md:
            self.tokenizer_error = "the file has no tokenizer.ggml.model metadata"
            return None, eos
        try:
            from .tokenizer import Tokenizer
            tok = Tokenizer.from_gguf(f)
        except (ImportError, NotImplementedError, ParseError) as e:
            self.tokenizer_error = f"{type(e).__name__}: {e}"
            return None, eos
        return tok, tuple(tok.eos_ids) or eos

    def __repr__(self) -> str:
        c = self.cfg
        return (f"GGUFModel({os.path.basename(self.path)!r}, {c.arch}, {c.n_layer} layers, n_embd {c.n_embd}, "
                f"n_vocab {c.n_vocab}, target={self.target!r}, n_ctx={self.n_ctx}, n_past={self._n_past})")


def _read_only(data: Any) -> np.ndarray:
    """The quantized bytes, frozen: later graphs then use them in place (and a device uploads them once)."""
    arr = np.asarray(data)
    arr.flags.writeable = False
    return arr


def load_gguf(path: "str | os.PathLike[str]", target: str = "c", n_ctx: int | None = None,
              n_batch: int = DEFAULT_N_BATCH, kv_type: str = "f16", quantize: Any = None,
              n_threads: int | None = None, flash_attn: bool = False, kv_pad: int = DEFAULT_KV_PAD,
              lazy: bool = False, progress: Any = None, tensor_parallel: Any = False,
              **target_opts: Any) -> GGUFModel:
    """Load a llama / qwen2 / gemma3 GGUF file and compile it for `target`.

    n_ctx: KV cache rows (default min(4096, the model's context_length); more than context_length is an
    error). n_batch: most tokens one graph feeds (prompts run in chunks, see the module doc).
    kv_type: "f16" (llama.cpp's default) or "f32". quantize: re-encode float weights at load (as
    graphc.compile(quantize=...)). n_threads: the C target's threads. flash_attn: use flash_attn_ext
    (llama.cpp's flash-attention graph: V cache not transposed, f16 mask) instead of mul_mat + soft_max
    (llama-cpp-python's default). kv_pad: attend to the used cache rows rounded up to kv_pad * 2^k
    (0: always all n_ctx rows; see the module doc). lazy: compile the decode graph when first needed, not
    here (a caller can then check that a prompt fits, model.check_fits, before any compile). progress: a
    text stream (e.g. sys.stderr) told about compiles that take over a second. tensor_parallel: True to
    hold only this process's share of the model in a torch.distributed process group (the current one,
    or the one torchrun describes, joined here; graphc.models.tensor_parallel has the split): every rank
    loads the same file with the same options and feeds the same tokens; each computes its heads, FFN
    rows and vocabulary rows and all of them get every logit. A group of one runs unsplit. Other options
    go to the target."""
    from graphc.frontends.gguf import open_gguf
    from .llm_config import LLMConfig
    for what, v, lo in (("n_ctx", n_ctx, 1), ("n_batch", n_batch, 1), ("kv_pad", kv_pad, 0)):
        if v is None and what == "n_ctx":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise CompileError(f"{what} must be an integer >= {lo}, got {v!r}")
    if n_threads is not None and target == "c":        # the C target's threads (ref and opencl have none)
        target_opts["n_threads"] = n_threads
    with open_gguf(path) as f:
        cfg = LLMConfig.from_file(f)
        if n_ctx is None:
            n_ctx = min(DEFAULT_N_CTX, cfg.context_length)
        if n_ctx > cfg.context_length:
            raise CompileError(f"n_ctx {n_ctx} is larger than the model's context_length {cfg.context_length} "
                               f"({cfg.arch}.context_length in {f.path})")
        shard = None
        if tensor_parallel:
            from graphc import parallel
            from .tensor_parallel import plan
            rank, world = parallel.init_from_env()
            if world > 1:
                shard = plan(cfg, {n: (e.type, e.ne) for n, e in f.tensors.items()}, f.path, world, rank)
                if target == "c" and "n_threads" not in target_opts:     # the host's cores, shared by its ranks
                    target_opts["n_threads"] = max(1, (os.cpu_count() or 1) // parallel.local_world_size())
        return GGUFModel(f, cfg, target, int(n_ctx), int(min(n_batch, n_ctx)), kv_type, quantize,
                         bool(flash_attn), int(kv_pad), target_opts, lazy=bool(lazy), progress=progress,
                         shard=shard)
