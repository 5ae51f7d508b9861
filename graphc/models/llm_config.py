"""A decoder LLM's hyperparameters from GGUF metadata alone, read as llama.cpp reads them.

    cfg = LLMConfig.from_gguf("model.gguf")       # or from_file(GGUFFile)
    cfg.arch, cfg.n_layer, cfg.n_head, cfg.head_dim_k, cfg.rope_mode, cfg.swa_layers, ...

Supported architectures: llama (GQA, optional llama-3 rope_freqs), qwen2 (q/k/v biases, normal
llama layout otherwise), gemma3 (q/k norms, post norms, GELU-gated FFN, scaled embeddings, sliding
window layers). Defaults, key names and derived values follow llama.cpp's llama-model.cpp
(load_hparams + the per-arch loaders) and llama-context.cpp (rope scaling / YaRN factors), so the
graph graphc builds from this config computes what llama.cpp computes. A missing required key, a
value out of range or an unsupported feature is one ParseError naming the file and the key.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.errors import ParseError
from graphc.frontends.gguf import GGUFFile, open_gguf

ARCHS = ("llama", "qwen2", "gemma3")
ROPE_NORMAL, ROPE_NEOX = 0, 2
ROPE_MODE = {"llama": ROPE_NORMAL, "qwen2": ROPE_NEOX, "gemma3": ROPE_NEOX}   # llama_model_rope_type
ROPE_SCALINGS = ("none", "linear", "yarn")
MAX_LAYERS = 512                 # LLAMA_MAX_LAYERS
MAX_DIM = 1 << 20                # no real model has a dimension near this: damage, not a model


@dataclass(frozen=True)
class LLMConfig:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim_k: int               # attention.key_length (default n_embd / n_head)
    head_dim_v: int               # attention.value_length
    n_rot: int                    # rope.dimension_count (default head_dim_k)
    n_ff: int
    rms_eps: float
    context_length: int           # n_ctx_train
    rope_mode: int                # 0 normal (llama), 2 neox (qwen2, gemma3)
    rope_base: float
    rope_scale: float             # freq_scale = 1 / rope.scaling.factor (1 without scaling)
    rope_scaling: str             # none | linear | yarn
    n_ctx_orig: int               # rope.scaling.original_context_length (default context_length)
    ext_factor: float             # YaRN: 1.0 when rope scaling is yarn, else 0
    attn_factor: float            # YaRN magnitude correction (llama-context.cpp), times rope.scaling.attn_factor
    beta_fast: float = 32.0       # YaRN ramp (llama.cpp's defaults; not read from these architectures' files)
    beta_slow: float = 1.0
    attn_scale: float = 0.0       # gemma3: query scaling applied with ggml_scale before attention; 0: none
    kq_scale: float = 1.0         # soft_max scale (1/sqrt(head_dim) for llama/qwen2; 1 for gemma3)
    embd_scale: float = 0.0       # gemma3: token embeddings times sqrt(n_embd); 0: none
    final_softcap: float = 0.0    # gemma3: final_logit_softcapping (0: off)
    n_swa: int = 0                # sliding window (gemma3), 0: none
    swa_layers: tuple[bool, ...] = field(default=())     # per layer: uses the sliding-window mask
    rope_base_swa: float = 10000.0
    rope_scale_swa: float = 1.0

    @property
    def n_embd_k_gqa(self) -> int:
        return self.head_dim_k * self.n_head_kv

    @property
    def n_embd_v_gqa(self) -> int:
        return self.head_dim_v * self.n_head_kv

    @property
    def has_swa(self) -> bool:
        return any(self.swa_layers)

    def is_swa(self, il: int) -> bool:
        return bool(self.swa_layers[il]) if self.swa_layers else False

    def rope_for(self, il: int) -> tuple[float, float]:
        """(freq_base, freq_scale) of layer il: SWA layers of gemma3 have their own (llama_model::get_rope_freq_*)."""
        if self.is_swa(il):
            return self.rope_base_swa, self.rope_scale_swa
        return self.rope_base, self.rope_scale

    @classmethod
    def from_gguf(cls, path: "str | os.PathLike[str]") -> "LLMConfig":
        with open_gguf(path) as f:
            return cls.from_file(f)

    @classmethod
    def from_file(cls, f: GGUFFile) -> "LLMConfig":
        return _Reader(f).config()


def f32(x: float) -> float:
    """A value rounded to float32 (llama.cpp keeps hyperparameters as C floats)."""
    return float(np.float32(x))


class _Reader:
    """Typed access to one file's metadata under the architecture prefix, with errors naming the key."""

    def __init__(self, f: GGUFFile):
        self.f, self.md = f, f.metadata
        arch = self.md.get("general.architecture")
        if not isinstance(arch, str):
            raise self.fail("general.architecture", "is missing: not a model file (a vocab-only or other GGUF?)")
        if arch not in ARCHS:
            raise self.fail("general.architecture", f"is {arch!r}; graphc's GGUF models are {', '.join(ARCHS)}")
        self.arch = arch

    def fail(self, key: str, why: str) -> ParseError:
        return ParseError(f"metadata {key!r} {why}", self.f.path)

    def key(self, name: str) -> str:
        return f"{self.arch}.{name}"

    def get(self, name: str, default: Any = None, prefixed: bool = True) -> Any:
        return self.md.get(self.key(name) if prefixed else name, default)

    def uint(self, name: str, default: int | None = None, lo: int = 1, hi: int = MAX_DIM) -> int:
        key = self.key(name)
        v = self.md.get(key)
        if v is None:
            if default is None:
                raise self.fail(key, "is missing (required by llama.cpp for this architecture)")
            return default
        if isinstance(v, np.ndarray) or isinstance(v, list):
            arr = np.asarray(v).reshape(-1)
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise self.fail(key, f"must be an integer or one per layer, got an array of {arr.dtype.name}")
            vals = {int(x) for x in arr} if len(v) else set()
            if len(vals) != 1:
                raise self.fail(key, f"differs between layers ({sorted(vals)[:8]}); "
                                     "graphc needs one value for all layers")
            v = vals.pop()
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise self.fail(key, f"must be an integer, got {v!r}")
        if not lo <= int(v) <= hi:
            raise self.fail(key, f"is {v}, outside [{lo}, {hi}]")
        return int(v)

    def num(self, name: str, default: float | None = None, positive: bool = True) -> float:
        key = self.key(name)
        v = self.md.get(key)
        if v is None:
            if default is None:
                raise self.fail(key, "is missing (required by llama.cpp for this architecture)")
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise self.fail(key, f"must be a number, got {v!r}")
        if not math.isfinite(float(v)) or (positive and float(v) <= 0) or (not positive and float(v) < 0):
            raise self.fail(key, f"is {v}, which is not {'positive' if positive else 'non-negative'} and finite")
        return f32(v)

    def n_vocab(self) -> int:
        v = self.md.get(self.key("vocab_size"))
        if v is not None:
            return self.uint("vocab_size", hi=1 << 24)
        toks = self.md.get("tokenizer.ggml.tokens")
        if isinstance(toks, list) and toks:
            return len(toks)
        emb = self.f.tensors.get("token_embd.weight")
        if emb is not None and len(emb.ne) == 2:
            return int(emb.ne[1])
        raise self.fail(self.key("vocab_size"),
                        "is missing, and there is no tokenizer.ggml.tokens or token_embd.weight "
                        "to take the vocabulary size from")

    def config(self) -> LLMConfig:
        n_embd = self.uint("embedding_length")
        n_layer = self.uint("block_count", hi=MAX_LAYERS)
        n_head = self.uint("attention.head_count", hi=1 << 12)
        n_head_kv = self.uint("attention.head_count_kv", default=n_head, hi=n_head)
        if n_head % n_head_kv:
            raise self.fail(self.key("attention.head_count_kv"), f"({n_head_kv}) does not divide head_count ({n_head})")
        head_k = self.uint("attention.key_length", default=n_embd // n_head)
        head_v = self.uint("attention.value_length", default=n_embd // n_head)
        n_rot = self.uint("rope.dimension_count", default=head_k, hi=head_k)
        if n_rot % 2:
            raise self.fail(self.key("rope.dimension_count"), f"is {n_rot}; rope needs an even count")
        if self.arch == "llama" and n_rot != head_k:
            raise self.fail(self.key("rope.dimension_count"),
                            f"is {n_rot}, llama needs it equal to the head size {head_k}")
        if self.arch in ("llama", "qwen2") and head_k != head_v:
            raise self.fail(self.key("attention.value_length"),
                            f"({head_v}) must equal key_length ({head_k}) for {self.arch}")
        n_ctx_train = self.uint("context_length", hi=1 << 24)

        # rope scaling: llama-model.cpp load_hparams, then llama-context.cpp's YaRN factors
        scaling = self.get("rope.scaling.type", "linear")
        if not isinstance(scaling, str) or scaling not in ROPE_SCALINGS:
            raise self.fail(self.key("rope.scaling.type"), f"is {scaling!r}; supported: {', '.join(ROPE_SCALINGS)}")
        factor = self.num("rope.scaling.factor", default=0.0, positive=False)
        if factor == 0.0:
            factor = self.num("rope.scale_linear", default=0.0, positive=False)
        freq_scale = 1.0 if factor == 0.0 else f32(np.float32(1.0) / np.float32(factor))
        if scaling == "none":
            freq_scale = 1.0
        ext_factor = 1.0 if scaling == "yarn" else 0.0
        attn_factor = 1.0
        if ext_factor != 0.0:   # llama.cpp reads no YaRN log multiplier or betas for these architectures
            fac = np.float32(1.0) / np.float32(freq_scale)
            mscale = np.float32(1.0) if fac <= 1 else np.float32(0.1) * np.log(fac, dtype=np.float32) + np.float32(1.0)
            attn_factor = f32(mscale * (np.float32(1.0)
                                        / (np.float32(1.0) + np.float32(0.1) * np.log(fac, dtype=np.float32))))
        attn_factor = f32(attn_factor * self.num("rope.scaling.attn_factor", default=1.0))

        common = dict(
            arch=self.arch, n_vocab=self.n_vocab(), n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            n_head_kv=n_head_kv, head_dim_k=head_k, head_dim_v=head_v, n_rot=n_rot,
            n_ff=self.uint("feed_forward_length"), rms_eps=self.num("attention.layer_norm_rms_epsilon"),
            context_length=n_ctx_train, rope_mode=ROPE_MODE[self.arch],
            rope_base=self.num("rope.freq_base", default=10000.0), rope_scale=freq_scale, rope_scaling=scaling,
            n_ctx_orig=self.uint("rope.scaling.original_context_length", default=n_ctx_train, hi=1 << 24),
            ext_factor=ext_factor, attn_factor=attn_factor,
        )
        head_scale = f32(np.float32(1.0) / np.sqrt(np.float32(head_k)))
        if self.arch != "gemma3":
            return LLMConfig(**common, kq_scale=head_scale)
        return self._gemma3(common, n_layer, n_embd, n_head, head_k)

    def _gemma3(self, common: dict, n_layer: int, n_embd: int, n_head: int, head_k: int) -> LLMConfig:
        # llama_model_gemma3::load_arch_hparams: the 27B model (62 layers) scales queries by
        # 1/sqrt(n_embd / n_head), every other size by 1/sqrt(head_dim)
        q_dim = n_embd // n_head if n_layer == 62 else head_k
        n_swa = self.uint("attention.sliding_window", default=0, lo=0, hi=1 << 24)
        swa: tuple[bool, ...] = ()
        if n_swa > 0:
            swa = self._swa_pattern(n_layer)
        return LLMConfig(
            **common, kq_scale=1.0, attn_scale=f32(np.float32(1.0) / np.sqrt(np.float32(q_dim))),
            embd_scale=f32(np.sqrt(np.float32(n_embd))),
            final_softcap=self.num("final_logit_softcapping", default=0.0, positive=False),
            n_swa=n_swa, swa_layers=swa,
            rope_base_swa=self.num("rope.freq_base_swa", default=10000.0), rope_scale_swa=1.0)

    def _swa_pattern(self, n_layer: int) -> tuple[bool, ...]:
        """Which layers slide: a per-layer bool array, or a period n (layer il slides when il % n < n - 1;
        0: every layer), default 6 (llama_hparams::set_swa_pattern, dense_first = false)."""
        key = self.key("attention.sliding_window_pattern")
        v = self.md.get(key)
        if isinstance(v, (list, np.ndarray)):
            arr = [bool(x) for x in np.asarray(v).reshape(-1)]
            if len(arr) < n_layer:
                raise self.fail(key, f"has {len(arr)} entries for {n_layer} layers")
            return tuple(arr[:n_layer])
        n = self.uint("attention.sliding_window_pattern", default=6, lo=0, hi=MAX_LAYERS)
        return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))
