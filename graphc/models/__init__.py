"""Models end to end: a model file in, a runnable model out.

    model = graphc.models.load("model.gguf", target="c")      # llama / qwen2 / gemma3 GGUF files
    model = graphc.models.load("RWKV-4-169M.pth")               # RWKV-4 checkpoints (.pth or .safetensors)
    logits = model.logits([1, 15043])                           # (n_tokens, n_vocab) float32, after the state
    ids = model.generate("Hello", max_tokens=16, temperature=0) # greedy

Every model is a graphc.models.base.Model; the file's kind decides which loader runs.
"""
from __future__ import annotations

import os
from typing import Any

from graphc.errors import ParseError

from .base import Model

__all__ = ["Model", "load"]


def load(path: "str | os.PathLike[str]", target: str = "c", **opts: Any) -> Model:
    """Load a GGUF model or an RWKV-4 checkpoint and compile it for `target` (see each loader's options)."""
    from graphc.filekind import require
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ParseError("a directory, not a model file (give the .gguf file or the RWKV-4 checkpoint)", path)
    if not os.path.isfile(path):
        raise ParseError("no such model file", path)
    # the bytes decide, never the name: a text file renamed .gguf is one clear error
    kind = require(path, "gguf", "pth", "safetensors",
                   what="a model graphc knows: a GGUF file (magic 'GGUF') or an RWKV-4 checkpoint (a torch .pth "
                        "or a .safetensors file)")
    if kind == "gguf":
        from .llm import load_gguf
        return load_gguf(path, target=target, **opts)
    from .rwkv import load_rwkv
    if opts.pop("tensor_parallel", False):
        from graphc.errors import CompileError
        raise CompileError(f"{path}: tensor parallelism splits GGUF decoder models (llama, qwen2, gemma3); "
                           "an RWKV-4 checkpoint runs in one process")
    opts.pop("n_ctx", None)           # an RNN has no context window: its state is fixed-size
    opts.pop("lazy", None)            # its graphs compile at load (one graph per token count, small)
    opts.pop("progress", None)
    return load_rwkv(path, target=target, **opts)
