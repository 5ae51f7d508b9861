"""What `graphc inspect model.gguf` shows, and the decode graph `inspect --graph` / `convert` build.

    info = GGUFInfo.read("model.gguf")      # metadata and the tensor index only: tensor data is never read
    print("\\n".join(info.summary() + info.metadata_lines() + info.tensor_table() + info.type_totals()))
    g = decode_graph("model.gguf", n_tokens=1, n_ctx=512)   # the graph graphc runs for one decode step

Huge metadata arrays (the vocabulary, merges, scores) are summarized as `[262144 strings]`, long strings
(the chat template) cut short; nothing is printed whole that could run to megabytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# llama_ftype (llama.h) -> llama_model_ftype_name (llama-model-loader.cpp)
FILE_TYPES = {0: "all F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K - Medium",
              11: "Q3_K - Small", 12: "Q3_K - Medium", 13: "Q3_K - Large", 14: "Q4_K - Small", 15: "Q4_K - Medium",
              16: "Q5_K - Small", 17: "Q5_K - Medium", 18: "Q6_K", 19: "IQ2_XXS - 2.0625 bpw",
              20: "IQ2_XS - 2.3125 bpw", 21: "Q2_K - Small", 22: "IQ3_XS - 3.3 bpw", 23: "IQ3_XXS - 3.0625 bpw",
              24: "IQ1_S - 1.5625 bpw", 25: "IQ4_NL - 4.5 bpw", 26: "IQ3_S - 3.4375 bpw", 27: "IQ3_S mix - 3.66 bpw",
              28: "IQ2_S - 2.5 bpw", 29: "IQ2_M - 2.7 bpw", 30: "IQ4_XS - 4.25 bpw", 31: "IQ1_M - 1.75 bpw",
              32: "BF16", 36: "TQ1_0 - 1.69 bpw ternary", 37: "TQ2_0 - 2.06 bpw ternary", 38: "MXFP4 MoE"}
TOKENIZERS = {"llama": "SentencePiece", "gpt2": "byte-level BPE", "bert": "WordPiece", "t5": "Unigram",
              "rwkv": "RWKV", "plamo2": "PLaMo-2", "none": "no vocabulary"}
INLINE_ITEMS = 8          # arrays up to this many numbers are printed; longer ones and string arrays are counted
MAX_STRING = 60           # longer strings are cut to this many characters


def fmt_bytes(n: float) -> str:
    """1536 -> '1.50 KiB' (GiB, MiB, KiB; B below 1 KiB)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def fmt_count(n: float) -> str:
    """6738415616 -> '6.74 B' (B, M, K as llama-bench prints parameter counts)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))


def size_label(n: float) -> str:
    """A model size as a name says it: 6738415616 -> '6.7B', 1638400 -> '1.6M'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def _elements(ne: Sequence[int]) -> int:
    n = 1
    for d in ne:
        n *= int(d)
    return n


@dataclass
class TensorRow:
    name: str
    type: str
    ne: tuple[int, ...]
    nbytes: int


@dataclass
class GGUFInfo:
    """A GGUF file's header: metadata (values as graphc.frontends.gguf reads them), value types, and the
    tensor index. Built by `read`, which never touches the tensor data."""
    path: str
    file_size: int
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, Any]
    value_types: dict[str, Any]
    tensors: list[TensorRow]

    @classmethod
    def read(cls, path: "str | os.PathLike[str]") -> "GGUFInfo":
        from graphc.frontends.gguf import GGUFFile
        path = os.fspath(path)
        with GGUFFile(path) as f:
            rows = [TensorRow(e.name, e.type.name, tuple(int(d) for d in e.ne), int(e.nbytes))
                    for e in f.tensors.values()]
            return cls(path, os.path.getsize(path), int(f.version), int(f.alignment), int(f.data_offset),
                       dict(f.metadata), dict(f.value_types), rows)

    # --- what the metadata says -----------------------------------------------------------------
    @property
    def arch(self) -> str | None:
        a = self.metadata.get("general.architecture")
        return a if isinstance(a, str) else None

    def arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.arch}.{key}") if self.arch else None

    @property
    def n_params(self) -> int:
        return sum(_elements(t.ne) for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def n_vocab(self) -> int | None:
        toks = self.metadata.get("tokenizer.ggml.tokens")
        if toks is not None and hasattr(toks, "__len__"):
            return len(toks)
        v = self.arch_value("vocab_size")
        if isinstance(v, int):
            return v
        emb = next((t for t in self.tensors if t.name == "token_embd.weight"), None)
        return emb.ne[1] if emb is not None and len(emb.ne) > 1 else None

    @property
    def file_type(self) -> str | None:
        ft = self.metadata.get("general.file_type")
        if not isinstance(ft, int):
            return None
        return FILE_TYPES.get(ft, f"file type {ft}")

    def model_desc(self) -> str:
        """'llama 6.7B Q4_K - Medium', as llama-bench's model column (arch, size, file type)."""
        label = self.metadata.get("general.size_label")
        label = label if isinstance(label, str) and label else size_label(self.n_params)
        return " ".join(p for p in (self.arch or "?", label, self.file_type) if p)

    # --- printing -------------------------------------------------------------------------------
    def summary(self) -> list[str]:
        md = self.metadata
        name = md.get("general.name")
        heads, kv = self.arch_value("attention.head_count"), self.arch_value("attention.head_count_kv")
        vocab = self.n_vocab
        tok = md.get("tokenizer.ggml.model")
        tokenizer = (f", tokenizer {tok!s}" + (f" ({TOKENIZERS[tok]})" if tok in TOKENIZERS else "")
                     if isinstance(tok, str) else ", no tokenizer")
        tmpl = md.get("tokenizer.chat_template")
        rows = [
            ("architecture", self.arch or "(none: no general.architecture)"),
            ("name", _short(name) if isinstance(name, str) else "-"),
            ("file type", self.file_type or "-"),
            ("parameters", f"{fmt_count(self.n_params)} ({self.n_params:,})"),
            ("context length", _num(self.arch_value("context_length"))),
            ("layers", _num(self.arch_value("block_count"))),
            ("heads", _num(heads)),
            ("kv heads", _num(kv) if kv is not None else (f"{_num(heads)} (= heads: no head_count_kv)"
                                                          if heads is not None else "-")),
            ("embedding size", _num(self.arch_value("embedding_length"))),
            ("vocabulary", (f"{vocab:,} tokens" if vocab is not None else "-") + tokenizer),
            ("chat template", f"yes ({len(tmpl):,} characters)" if isinstance(tmpl, str) else "no"),
            ("file size", f"{fmt_bytes(self.file_size)} ({self.file_size:,} bytes; tensor data "
                          f"{fmt_bytes(self.tensor_bytes)} from byte {self.data_offset:,})"),
        ]
        head = (f"GGUF model {os.path.basename(self.path)}: GGUF v{self.version}, {len(self.metadata)} metadata "
                f"keys, {len(self.tensors)} tensors")
        return [head] + [f"  {k:16s} {v}" for k, v in rows]

    def metadata_lines(self) -> list[str]:
        out = [f"metadata ({len(self.metadata)} keys):"]
        width = min(max((len(k) for k in self.metadata), default=0), 48)
        for k, v in self.metadata.items():
            out.append(f"  {_short(k, 48):{width}s} = {self.show_value(k, v)}")
        return out

    def show_value(self, key: str, v: Any) -> str:
        vt, elem = self.value_types.get(key, (None, None))
        if isinstance(v, str):
            return _short(v, MAX_STRING, quote=True)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return str(np.float32(v)) if getattr(vt, "name", "") == "FLOAT32" else repr(v)
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if hasattr(v, "__len__"):
            n = len(v)
            ename = getattr(elem, "name", None)
            word = {"STRING": "strings", "ARRAY": "arrays", None: "items"}.get(ename, (ename or "").lower())
            if ename not in ("STRING", "ARRAY", None) and n <= INLINE_ITEMS:
                return "[" + ", ".join(_scalar(x, ename) for x in np.asarray(v).reshape(-1)) + "]"
            return f"[{n} {word}]"
        return _short(repr(v), MAX_STRING)

    def tensor_table(self) -> list[str]:
        rows = [("name", "type", "shape", "bytes")]
        rows += [(_short(t.name, 64), t.type, "[" + ", ".join(map(str, t.ne)) + "]", f"{t.nbytes:,}")
                 for t in self.tensors]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        out = [f"tensors ({len(self.tensors)}; shapes are ggml ne, innermost first):"]
        for r in rows:
            out.append(f"  {r[0]:{w[0]}s}  {r[1]:{w[1]}s}  {r[2]:{w[2]}s}  {r[3]:>{w[3]}s}")
        return out

    def type_totals(self) -> list[str]:
        by: dict[str, list[int]] = {}
        for t in self.tensors:
            acc = by.setdefault(t.type, [0, 0, 0])
            acc[0] += 1
            acc[1] += _elements(t.ne)
            acc[2] += t.nbytes
        total = self.tensor_bytes or 1
        out = ["totals by type:"]
        for ty, (n, elems, nbytes) in sorted(by.items(), key=lambda kv: -kv[1][2]):
            out.append(f"  {ty:8s} {n:5d} tensors  {elems:>16,} elements  {nbytes:>16,} bytes  "
                       f"{fmt_bytes(nbytes):>11s}  {100 * nbytes / total:5.1f}%")
        out.append(f"  {'total':8s} {len(self.tensors):5d} tensors  {self.n_params:>16,} elements  "
                   f"{self.tensor_bytes:>16,} bytes  {fmt_bytes(self.tensor_bytes):>11s}")
        return out


def _num(v: Any) -> str:
    """An integer hyperparameter, or a per-layer array of them as its distinct values."""
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (list, np.ndarray)) and np.asarray(v).dtype.kind in "iu":
        vals = sorted({int(x) for x in np.asarray(v).reshape(-1)})
        return f"per layer: {', '.join(map(str, vals[:INLINE_ITEMS]))}" + (" ..." if len(vals) > INLINE_ITEMS else "")
    return str(v)


def _scalar(x: Any, ename: str | None) -> str:
    if ename == "FLOAT32":
        return str(np.float32(x))
    if ename == "BOOL":
        return "true" if x else "false"
    return str(x.item() if hasattr(x, "item") else x)


def _short(s: str, width: int = MAX_STRING, quote: bool = False) -> str:
    """A string safe for a terminal (escaped like repr when it is not printable) and at most `width` long."""
    n = len(s)
    shown = repr(s)[1:-1] if quote or not s.isprintable() else s
    cut = len(shown) > width
    shown = shown[:width - 1] + "…" if cut else shown
    if quote:
        shown = f'"{shown}"'
    return shown + (f" ({n:,} characters)" if cut else "")


# --- the decode graph ---------------------------------------------------------------------------------

def decode_graph(path: "str | os.PathLike[str]", n_tokens: int = 1, n_ctx: int | None = None,
                 weight_file: str | None = None):
    """The graph graphc runs to feed n_tokens tokens over an n_ctx-row KV cache (default the loader's:
    min(4096, context_length)), attending to every cache row, with llama.cpp's CPU GELU (as the ref and c
    targets run it). Weights are bound to the GGUF file by reference, as weight_file (default: path)."""
    from graphc.errors import CompileError
    from graphc.frontends.gguf import GGUFFile
    from .llm import DEFAULT_N_CTX
    from .llm_config import LLMConfig
    from .llm_graph import build_graph
    path = os.fspath(path)
    with GGUFFile(path) as f:
        cfg = LLMConfig.from_file(f)
        table = {n: (e.type, e.ne) for n, e in f.tensors.items()}
    if n_ctx is None:
        n_ctx = min(DEFAULT_N_CTX, cfg.context_length)
    if n_ctx > cfg.context_length:
        raise CompileError(f"--ctx {n_ctx} is larger than the model's context_length {cfg.context_length} "
                           f"({cfg.arch}.context_length in {path})")
    return build_graph(cfg, table, weight_file if weight_file is not None else path, n_tokens, n_ctx,
                       n_kv=n_ctx, gelu_table=True)
