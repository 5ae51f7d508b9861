"""What every model offers: logits over a persistent state, optional tokenizer, and generation.

A model subclass implements `_forward(ids, all_positions) -> (n or 1, n_vocab) float32 logits` (feeding ids
after what the state already holds), `_reset()`, `n_vocab`, `n_past` (positions held) and optionally `tokenizer`.
Sampling follows llama.cpp's common order: top-k, then top-p, then temperature; temperature 0 is greedy.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from graphc.errors import RunError


@dataclass
class Stats:
    """Timings of the last generate(): prompt tokens fed at once (prefill) and single-token decode runs,
    each with the seconds spent in those forward passes (sampling excluded), as llama.cpp counts them."""
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


def sample(logits: np.ndarray, rng: np.random.Generator, temperature: float = 0.0, top_k: int = 0,
           top_p: float = 1.0) -> int:
    """One token id from a (n_vocab,) logit row. temperature <= 0: argmax (greedy)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if temperature <= 0:
        return int(np.argmax(logits))
    ids = np.argsort(-logits, kind="stable")
    if top_k and 0 < top_k < ids.size:
        ids = ids[:top_k]
    z = logits[ids]
    p = np.exp(z - z[0])
    p /= p.sum()
    if 0 < top_p < 1:
        keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)   # smallest prefix whose mass reaches top_p
        ids, z = ids[:keep], z[:keep]
    p = np.exp((z - z[0]) / temperature)
    p /= p.sum()
    return int(ids[rng.choice(ids.size, p=p)])


class Model:
    """A compiled model with state. Subclasses: graphc.models.llm.GGUFModel, graphc.models.rwkv.RWKVModel."""

    n_vocab: int
    tokenizer: Any = None          # has encode(text, add_special=True) -> list[int], decode(ids) -> str
    eos_ids: Sequence[int] = ()    # generation stops at these
    stats: "Stats | None" = None   # timings of the last generate()

    # --- what a subclass provides -----------------------------------------------------------
    def _forward(self, ids: np.ndarray, all_positions: bool = True) -> np.ndarray:
        """(n, n_vocab) logits, or (1, n_vocab) for the last id alone when not all_positions (a model may
        then skip work that only the other rows need)."""
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    @property
    def n_past(self) -> int:
        raise NotImplementedError

    def prepare(self, n_tokens: int, n_more: int = 0, all_positions: bool = False) -> None:
        """Do ahead any one-time work (compiling graphs) that feeding n_tokens, then n_more single tokens,
        will need; a model without such work does nothing."""

    # --- the public interface ---------------------------------------------------------------
    def logits(self, tokens: Iterable[int], all_positions: bool = True) -> np.ndarray:
        """Feed token ids after what the state holds; float32 logits for every fed position, (n, n_vocab),
        or with all_positions=False for the last fed token alone, (1, n_vocab), which is what sampling the
        next token needs and skips the output matrix (and more) for the other positions."""
        ids = np.asarray(list(tokens), dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return np.zeros((0, self.n_vocab), dtype=np.float32)
        if ids.min() < 0 or ids.max() >= self.n_vocab:
            bad = int(ids[(ids < 0) | (ids >= self.n_vocab)][0])
            raise RunError(f"token id {bad} is outside the vocabulary [0, {self.n_vocab})")
        out = np.asarray(self._forward(ids.astype(np.int32), all_positions), dtype=np.float32)
        return out.reshape(ids.size if all_positions else 1, self.n_vocab)

    def reset_state(self) -> None:
        """Forget every fed token (KV cache or RNN state back to empty)."""
        self._reset()

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        if self.tokenizer is None:
            raise RunError("this model has no tokenizer: pass token ids")
        return list(self.tokenizer.encode(text, add_special=add_special))

    def detokenize(self, ids: Iterable[int]) -> str:
        if self.tokenizer is None:
            raise RunError("this model has no tokenizer: token ids cannot become text")
        return self.tokenizer.decode(list(ids))

    def generate(self, prompt: "str | Sequence[int]", max_tokens: int = 32, temperature: float = 0.0,
                 top_k: int = 40, top_p: float = 0.95, seed: int | None = None,
                 on_token: Callable[[int], None] | None = None, stop_at_eos: bool = True) -> list[int]:
        """Feed the prompt (text or ids) after the current state and sample up to max_tokens ids;
        returns the generated ids (the prompt not included). on_token(id) is called as each one is made."""
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise RunError("generate needs a non-empty prompt")
        if max_tokens < 0:
            raise RunError(f"max_tokens must be >= 0, got {max_tokens}")
        rng = np.random.default_rng(seed)
        self.prepare(len(ids), max_tokens)        # compile first: the stats time runs only
        self.stats = Stats(prompt_tokens=len(ids))
        t0 = time.perf_counter()
        last = self.logits(ids, all_positions=False)[-1]
        self.stats.prompt_seconds = time.perf_counter() - t0
        out: list[int] = []
        for _ in range(max_tokens):
            tok = sample(last, rng, temperature, top_k, top_p)
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            if (stop_at_eos and tok in self.eos_ids) or len(out) == max_tokens:
                break
            t0 = time.perf_counter()
            last = self.logits([tok], all_positions=False)[-1]
            self.stats.decode_seconds += time.perf_counter() - t0
            self.stats.decode_tokens += 1
        return out


class stream_text:
    """An on_token callback that prints text as it becomes complete (multi-byte pieces wait for their rest);
    finish() prints what is still held back when generation stops (an incomplete piece as U+FFFD)."""

    def __init__(self, model: Model, out=None):
        self.model, self.out = model, out if out is not None else sys.stdout
        self.ids: list[int] = []
        self.shown = ""

    def __call__(self, tok: int) -> None:
        self.ids.append(tok)
        text = self.model.detokenize(self.ids)
        if not text.endswith("\ufffd"):      # else an incomplete UTF-8 sequence: wait for the next token
            self._show(text)

    def finish(self) -> None:
        self._show(self.model.detokenize(self.ids))

    def _show(self, text: str) -> None:
        # decoding more ids normally extends the text; a clean-up rule (" ." -> ".") may rewrite its end,
        # and what was printed stays printed: print from where the two first differ
        same = next((i for i, (a, b) in enumerate(zip(text, self.shown)) if a != b), min(len(text), len(self.shown)))
        self.out.write(text[same:] if same < len(self.shown) else text[len(self.shown):])
        self.out.flush()
        self.shown = text
