"""Tiny random-weight GGUF models (llama, qwen2, gemma3) that llama.cpp and graphc both load.

    path = make_tiny_gguf("tiny-llama.gguf", arch="llama", wtype="q4_K_M", seed=1)

For tests, examples and benchmarks. Written with gguf-py's GGUFWriter (the converter's own writer);
quantized bytes come from graphc.quants (ggml's reference quantizers). Weight types per tensor follow
llama.cpp's llama-quant.cpp for the matching file type:
  f32 / f16   every matrix in that type
  q8_0        every matrix q8_0
  q4_0        matrices q4_0, the output matrix (or tied token_embd) q6_K
  q4_K_M      q4_K; attn_v and ffn_down q6_K on "more bits" layers; output q6_K; a K-quant whose rows
              are not a multiple of 256 falls back as llama.cpp does (q4_K -> q5_0, q6_K -> q8_0)
Norm weights and biases stay f32. Each file carries a small SentencePiece ("llama") vocabulary: <unk>,
<s>, </s>, the 256 byte tokens and some word pieces, so llama.cpp's vocab loader accepts it.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from graphc import quants

WTYPES = ("f32", "f16", "q8_0", "q4_0", "q4_K_M")
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_K_M": 15}     # llama_ftype
QK_K = 256


@dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny model; defaults per arch come from `tiny_spec`."""
    arch: str
    n_layer: int = 2
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_ff: int = 320                 # not a multiple of 256: ffn_down exercises the K-quant fallbacks
    n_vocab: int = 320
    context_length: int = 256
    rope_base: float = 10000.0
    rope_linear: float = 0.0        # rope.scaling.factor (0: none), of type rope_scaling
    rope_scaling: str = "linear"    # linear | yarn
    rope_orig_ctx: int = 0          # rope.scaling.original_context_length (0: not written)
    rope_freqs: bool = False        # llama-3 style rope_freqs.weight
    biases: bool = False            # q/k/v biases (qwen2)
    tied: bool = False              # no output.weight: the output reuses token_embd
    n_swa: int = 0                  # gemma3 sliding window
    swa_pattern: int = 2
    rope_base_swa: float = 10000.0
    final_softcap: float = 0.0      # gemma3 final_logit_softcapping (0: not written)
    eps: float = 1e-6


def tiny_spec(arch: str, **overrides) -> TinySpec:
    base = {
        "llama": dict(rope_linear=2.0, rope_freqs=True, eps=1e-5),
        "qwen2": dict(biases=True, rope_base=1000000.0),
        "gemma3": dict(n_head_kv=1, head_dim=128, tied=True, n_swa=8, swa_pattern=2, rope_base=1000000.0),
    }
    if arch not in base:
        raise ValueError(f"arch must be one of {', '.join(base)}, got {arch!r}")
    return TinySpec(arch=arch, **{**base[arch], **overrides})


# --- vocabulary ---------------------------------------------------------------------------------------

def tiny_vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of a SentencePiece vocab with byte fallback, n_vocab >= 259 + 27
    (past the natural pieces, filler words make up LLaMA-sized vocabularies for benchmarks)."""
    pieces = ["\u2581"] + [f"\u2581{c}" for c in string.ascii_lowercase] + list(string.ascii_lowercase)
    words = ["the", "and", "of", "to", "in", "is", "it", "that", "hello", "world", "he", "er", "an", "th", "on", "re"]
    pieces += [f"\u2581{w}" for w in words] + [w for w in words if len(w) == 2]
    pieces += [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]
    seen: set[str] = set()
    pieces = [p for p in pieces if not (p in seen or seen.add(p))]
    n_pieces = n_vocab - 3 - 256
    if n_pieces < 27:
        raise ValueError(f"n_vocab must be at least {3 + 256 + 27}, got {n_vocab}")
    pieces += [f"\u2581w{i}" for i in range(max(0, n_pieces - len(pieces)))]   # filler words for big vocabs
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + pieces[:n_pieces]
    scores = [0.0] * 259 + [-float(i) for i in range(n_pieces)]
    types = [2, 3, 3] + [6] * 256 + [1] * n_pieces        # UNKNOWN, CONTROL, BYTE, NORMAL
    return tokens, scores, types


# --- weight types -------------------------------------------------------------------------------------

def _more_bits(i_layer: int, n_layer: int) -> bool:
    return i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2


def _fallback(t: str, ne0: int) -> str:
    if t in ("q4_K", "q6_K") and ne0 % QK_K:
        return {"q4_K": "q5_0", "q6_K": "q8_0"}[t]
    return t


def tensor_type(name: str, ne0: int, wtype: str, n_layer: int, tied: bool) -> str:
    """The type llama.cpp's quantizer gives a 2-D tensor for the file type `wtype`."""
    if wtype in ("f32", "f16", "q8_0"):
        return wtype
    output = name == "output.weight" or (tied and name == "token_embd.weight")
    if output:
        return "q8_0" if ne0 % QK_K else "q6_K"
    if wtype == "q4_0":
        return "q4_0"
    t = "q4_K"
    il = int(name.split(".")[1]) if name.startswith("blk.") else -1
    if name.endswith(("attn_v.weight", "ffn_down.weight")) and _more_bits(il, n_layer):
        t = "q6_K"
    return _fallback(t, ne0)


# --- the file -----------------------------------------------------------------------------------------

def _tensors(s: TinySpec, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, f32 values in numpy order (ne1, ne0)) for every tensor of the model."""
    E, D = s.n_embd, s.head_dim
    nq, nkv = s.n_head * D, s.n_head_kv * D

    def mat(ne0: int, ne1: int, gain: float = 1.0) -> np.ndarray:
        return (gain * rng.standard_normal((ne1, ne0)) / np.sqrt(ne0)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    out = [("token_embd.weight", (rng.standard_normal((s.n_vocab, E)) * (0.1 if s.arch == "gemma3" else 1.0))
            .astype(np.float32))]
    if s.rope_freqs:
        out.append(("rope_freqs.weight", np.linspace(1.0, 4.0, D // 2).astype(np.float32)))
    for il in range(s.n_layer):
        p = f"blk.{il}."
        out += [(p + "attn_norm.weight", norm(E)),
                (p + "attn_q.weight", mat(E, nq)), (p + "attn_k.weight", mat(E, nkv)),
                (p + "attn_v.weight", mat(E, nkv))]
        if s.biases:
            out += [(p + "attn_q.bias", (0.1 * rng.standard_normal(nq)).astype(np.float32)),
                    (p + "attn_k.bias", (0.1 * rng.standard_normal(nkv)).astype(np.float32)),
                    (p + "attn_v.bias", (0.1 * rng.standard_normal(nkv)).astype(np.float32))]
        if s.arch == "gemma3":
            out += [(p + "attn_q_norm.weight", norm(D)), (p + "attn_k_norm.weight", norm(D))]
        out.append((p + "attn_output.weight", mat(nq, E)))
        if s.arch == "gemma3":
            out.append((p + "post_attention_norm.weight", norm(E)))
        out += [(p + "ffn_norm.weight", norm(E)), (p + "ffn_gate.weight", mat(E, s.n_ff)),
                (p + "ffn_up.weight", mat(E, s.n_ff)), (p + "ffn_down.weight", mat(s.n_ff, E))]
        if s.arch == "gemma3":
            out.append((p + "post_ffw_norm.weight", norm(E)))
    out.append(("output_norm.weight", norm(E)))
    if not s.tied:
        out.append(("output.weight", mat(E, s.n_vocab, gain=4.0)))
    return out


def make_tiny_gguf(path: "str | os.PathLike[str]", arch: str = "llama", wtype: str = "f32", seed: int = 0,
                   types: "dict[str, str] | None" = None, **spec_overrides) -> str:
    """Write a tiny random model (see TinySpec for its shape, `tiny_spec` for per-arch defaults); returns path.
    The same seed gives the same values whatever the types. types: {tensor name: type} overriding the mix."""
    import gguf
    if wtype not in WTYPES:
        raise ValueError(f"wtype must be one of {', '.join(WTYPES)}, got {wtype!r}")
    s = tiny_spec(arch, **spec_overrides)
    rng = np.random.default_rng(seed)
    path = os.fspath(path)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}-{wtype}")
    w.add_file_type(FILE_TYPES[wtype])
    w.add_context_length(s.context_length)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    if s.head_dim * s.n_head != s.n_embd:
        w.add_key_length(s.head_dim)
        w.add_value_length(s.head_dim)
    w.add_layer_norm_rms_eps(s.eps)
    w.add_rope_freq_base(s.rope_base)
    if s.rope_linear:
        w.add_rope_scaling_type(gguf.RopeScalingType(s.rope_scaling))
        w.add_rope_scaling_factor(s.rope_linear)
    if s.rope_orig_ctx:
        w.add_rope_scaling_orig_ctx_len(s.rope_orig_ctx)
    if s.n_swa:
        w.add_sliding_window(s.n_swa)
        w.add_sliding_window_pattern(s.swa_pattern)
        w.add_rope_freq_base_swa(s.rope_base_swa)
    if s.final_softcap:
        w.add_final_logit_softcapping(s.final_softcap)
    tokens, scores, token_types = tiny_vocab(s.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(token_types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    for name, values in _tensors(s, rng):
        t = "f32" if values.ndim == 1 else tensor_type(name, values.shape[-1], wtype, s.n_layer, s.tied)
        t = (types or {}).get(name, t)
        if t == "f32":
            w.add_tensor(name, values)
            continue
        if t == "f16":
            w.add_tensor(name, values.astype(np.float16))
            continue
        raw = quants.quantize(values, t)
        w.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType[t.upper()])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tensor_types(path: "str | os.PathLike[str]") -> dict[str, str]:
    """{tensor name: ggml type name} of a GGUF file (for tests that check the mix)."""
    from graphc.frontends.gguf import GGUFFile
    with GGUFFile(path) as f:
        return {n: e.type.name for n, e in f.tensors.items()}


def prompt_ids(n: int, n_vocab: int, rng: np.random.Generator, bos: int = 1) -> list[int]:
    """A random prompt of n token ids: BOS, then ids outside the special tokens."""
    return [bos] + [int(t) for t in rng.integers(3, n_vocab, n - 1)]


__all__: Sequence[str] = ("WTYPES", "TinySpec", "make_tiny_gguf", "prompt_ids", "tensor_type", "tensor_types",
                          "tiny_spec", "tiny_vocab")


# --- full-size shapes without a file ---------------------------------------------------------------------

LLAMA3_8B = TinySpec(arch="llama", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim=128, n_ff=14336,
                     n_vocab=128256, context_length=8192, rope_base=500000.0, eps=1e-5)


def shaped_graph(s: TinySpec = LLAMA3_8B, wtype: str = "q4_K_M", n_tokens: int = 1, n_ctx: int = 4096,
                 n_layer: "int | None" = None, flash_attn: bool = False):
    """The llama graph llama.cpp would build for a model of shape s with weights of file type wtype, with
    no file behind it (weights are param leafs bound to a file name that need not exist): for compiling
    and measuring kernels at real model sizes (LLaMA-3-8B's by default) without gigabytes of weights."""
    from .llm_config import LLMConfig
    from .llm_graph import build_graph
    from graphc.types import get_type
    n_layer = s.n_layer if n_layer is None else n_layer
    cfg = LLMConfig(arch="llama", n_vocab=s.n_vocab, n_embd=s.n_embd, n_layer=n_layer, n_head=s.n_head,
                    n_head_kv=s.n_head_kv, head_dim_k=s.head_dim, head_dim_v=s.head_dim, n_rot=s.head_dim,
                    n_ff=s.n_ff, rms_eps=s.eps, context_length=s.context_length, rope_mode=0,
                    rope_base=s.rope_base, rope_scale=1.0, rope_scaling="none", n_ctx_orig=s.context_length,
                    ext_factor=0.0, attn_factor=1.0, kq_scale=float(1.0 / np.sqrt(s.head_dim)))
    table = {}
    for name, shape in _shapes(s, n_layer):
        t = tensor_type(name, shape[0], wtype, n_layer, s.tied) if len(shape) == 2 else "f32"
        table[name] = (get_type(t), shape)
    return build_graph(cfg, table, f"{s.arch}-shaped.gguf", n_tokens=n_tokens, n_ctx=n_ctx, flash_attn=flash_attn)


def _shapes(s: TinySpec, n_layer: int) -> list[tuple[str, tuple[int, ...]]]:
    """(GGUF name, ne) of a llama model's tensors (no rope_freqs, biases or gemma3 norms)."""
    E, nq, nkv = s.n_embd, s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    out = [("token_embd.weight", (E, s.n_vocab)), ("output_norm.weight", (E,)), ("output.weight", (E, s.n_vocab))]
    for il in range(n_layer):
        p = f"blk.{il}."
        out += [(p + "attn_norm.weight", (E,)), (p + "attn_q.weight", (E, nq)), (p + "attn_k.weight", (E, nkv)),
                (p + "attn_v.weight", (E, nkv)), (p + "attn_output.weight", (nq, E)), (p + "ffn_norm.weight", (E,)),
                (p + "ffn_gate.weight", (E, s.n_ff)), (p + "ffn_up.weight", (E, s.n_ff)),
                (p + "ffn_down.weight", (s.n_ff, E))]
    return out


# --- llama.cpp, the peer these models are checked against -------------------------------------------

def llama_cpp_has_amx() -> bool:
    """Whether llama-cpp-python's CPU backend was compiled with AMX kernels (a wheel built with -march=native
    on a CPU that has AMX). It then puts q4_0 / q4_1 / q8_0 / q4_K / q5_K / q6_K / iq4_xs weights in its AMX
    buffer, ahead of its REPACK one; graphc emulates the REPACK and vec_dot paths, not AMX's kernels, and
    where a hypervisor does not enable AMX tile state, AMX's first ldtilecfg faults (a segfault)."""
    import ctypes
    try:
        import llama_cpp
    except ImportError:
        return False
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so")
    try:
        return bool(ctypes.CDLL(lib).ggml_cpu_has_amx_int8())
    except (OSError, AttributeError):
        return False


def llama_cpp_model(path: "str | os.PathLike[str]", **kw):
    """llama_cpp.Llama(path, **kw); where llama.cpp has AMX kernels, with use_extra_bufts off (no AMX, no
    REPACK: its vec_dot kernels, which differ from REPACK's in the last bits only; tests/test_c_matmul_ggml.py)."""
    import llama_cpp.llama_cpp as llama_lib
    from llama_cpp import Llama
    if not llama_cpp_has_amx():
        return Llama(os.fspath(path), **kw)
    default = llama_lib.llama_model_default_params

    def params():                   # Llama() takes no option for it: its default model params, changed
        p = default()
        p.use_extra_bufts = False
        return p
    llama_lib.llama_model_default_params = params
    try:
        return Llama(os.fspath(path), **kw)
    finally:
        llama_lib.llama_model_default_params = default
