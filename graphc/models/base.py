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

from graphc.errors import ContextOverflow, RunError


@dataclass
class Stats:
    """Timings of the last generate(): prompt tokens fed at once (prefill) and single-token decode runs,
    each with the seconds spent in those forward passes (sampling excluded), as llama.cpp counts them."""
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    stop: str = ""                 # why generation ended: "eos", "max_tokens" or "context" (the window is full)
    shifts: int = 0                # context shifts made (generate(ctx_shift=True))

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
    chat_template: "str | None" = None   # the file's Jinja chat template (GGUF tokenizer.chat_template), if any
    _chat_ids: "list[int] | None" = None  # the tokens the state holds from the last chat() turn
    n_ctx: "int | None" = None     # tokens the state can hold (None: no limit, as an RNN's state)
    n_ctx_max: "int | None" = None  # the most n_ctx the model allows (its training context), if known
    _fed: "list[int] | None" = None  # every token the state holds, in order (for context shifts)

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
        self.check_fits(int(ids.size))
        out = np.asarray(self._forward(ids.astype(np.int32), all_positions), dtype=np.float32)
        if self.n_ctx is not None:
            self._fed = (self._fed or []) + ids.tolist()
        return out.reshape(ids.size if all_positions else 1, self.n_vocab)

    def check_fits(self, n_tokens: int) -> None:
        """ContextOverflow unless n_tokens more fit after what the state holds (before anything compiles)."""
        if self.n_ctx is not None and self.n_past + n_tokens > self.n_ctx:
            raise ContextOverflow(self.n_past, n_tokens, self.n_ctx, self.n_ctx_max)

    def shift_context(self, n_keep: int = 0) -> np.ndarray:
        """Make room as llama.cpp's context shift does: keep the first n_keep tokens the state holds, drop
        half of the rest (the oldest), and go on with the newer half; returns the last position's logits.
        The kept tokens are fed again (llama.cpp re-rotates the cached keys instead: the same attention up
        to rounding); the positions of the kept tail move down by the dropped count, as in llama.cpp."""
        fed = list(self._fed or [])
        if self.n_ctx is None or not fed:
            raise RunError("shift_context: the state holds no tokens of a context window")
        n_keep = max(0, min(int(n_keep), len(fed) - 1))
        n_discard = max((len(fed) - n_keep) // 2, 1)
        kept = fed[:n_keep] + fed[n_keep + n_discard:]
        self.reset_state()
        return self.logits(kept, all_positions=False)[-1]

    def reset_state(self) -> None:
        """Forget every fed token (KV cache or RNN state back to empty)."""
        self._chat_ids = None
        self._fed = None
        self._reset()

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of text (llama_tokenize). add_special: BOS/EOS as the vocabulary asks; parse_special:
        special-token texts in text (e.g. "<|im_end|>") become those tokens, else they are plain text."""
        if self.tokenizer is None:
            raise RunError("this model has no tokenizer: pass token ids")
        if parse_special:
            return list(self.tokenizer.encode(text, add_special=add_special, parse_special=True))
        return list(self.tokenizer.encode(text, add_special=add_special))

    def detokenize(self, ids: Iterable[int]) -> str:
        if self.tokenizer is None:
            raise RunError("this model has no tokenizer: token ids cannot become text")
        return self.tokenizer.decode(list(ids))

    def generate(self, prompt: "str | Sequence[int]", max_tokens: int = 32, temperature: float = 0.0,
                 top_k: int = 40, top_p: float = 0.95, seed: int | None = None,
                 on_token: Callable[[int], None] | None = None, stop_at_eos: bool = True,
                 parse_special: bool = True, ctx_shift: bool = False, n_keep: int = 0) -> list[int]:
        """Feed the prompt (text or ids) after the current state and sample up to max_tokens ids;
        returns the generated ids (the prompt not included). on_token(id) is called as each one is made.
        parse_special: special-token texts in a text prompt become those tokens (llama.cpp's habit).
        Context: a prompt that does not fit after the state raises ContextOverflow before anything compiles;
        generation that fills the window stops there (stats.stop == "context"), or with ctx_shift drops the
        oldest half of the tokens after the first n_keep (shift_context; the BOS token is always kept) and
        goes on."""
        ids = self.tokenize(prompt, parse_special=parse_special) if isinstance(prompt, str) \
            else [int(t) for t in prompt]
        if not ids:
            raise RunError("generate needs a non-empty prompt")
        if max_tokens < 0:
            raise RunError(f"max_tokens must be >= 0, got {max_tokens}")
        if not temperature >= 0 or temperature == float("inf"):        # NaN fails the first test
            raise RunError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature}")
        if not 0 < top_p <= 1:
            raise RunError(f"top_p must be in (0, 1] (1: no nucleus cut), got {top_p}")
        if top_k < 0:
            raise RunError(f"top_k must be >= 0 (0: no cut), got {top_k}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise RunError(f"seed must be None or an integer >= 0, got {seed!r}")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise RunError(f"token id {bad[0]} is outside the vocabulary [0, {self.n_vocab})")
        self.check_fits(len(ids))
        rng = np.random.default_rng(seed)
        room = max_tokens if self.n_ctx is None or ctx_shift else min(max_tokens, self.n_ctx - self.n_past - len(ids))
        self.prepare(len(ids), room)              # compile first: the stats time runs only
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
            if stop_at_eos and tok in self.eos_ids:
                self.stats.stop = "eos"
                break
            if len(out) == max_tokens:
                self.stats.stop = "max_tokens"
                break
            if self.n_ctx is not None and self.n_past >= self.n_ctx:
                if not ctx_shift:
                    self.stats.stop = "context"
                    break
                bos = getattr(self.tokenizer, "bos_id", None)
                self.shift_context(n_keep + (1 if bos is not None and self._fed and self._fed[0] == bos else 0))
                self.stats.shifts += 1
            t0 = time.perf_counter()
            last = self.logits([tok], all_positions=False)[-1]
            self.stats.decode_seconds += time.perf_counter() - t0
            self.stats.decode_tokens += 1
        return out

    def chat(self, messages: Sequence[Any], max_tokens: int = 256, temperature: float = 0.0, top_k: int = 40,
             top_p: float = 0.95, seed: int | None = None, on_token: Callable[[int], None] | None = None,
             template: str | None = None, add_generation_prompt: bool = True, **template_vars: Any) -> str:
        """The assistant's reply to a conversation, messages = [{"role": "system" | "user" | "assistant",
        "content": text}, ...], rendered with the model's chat template (the file's, else a built-in;
        template: a built-in's name, a template file or template text; graphc.models.chat). Generation
        stops at an end-of-generation token (not part of the reply) or after max_tokens.
        Multi-turn: append the reply and the next user message and call again; when the state still holds
        the previous turn's tokens and they begin the new rendering, only the new tokens are fed (the KV
        cache is kept), else the state is reset first. chat_reused then says how many tokens were kept."""
        from .chat import chat_turn
        return chat_turn(self, messages, template=template, add_generation_prompt=add_generation_prompt,
                         template_vars=template_vars, max_tokens=max_tokens, temperature=temperature,
                         top_k=top_k, top_p=top_p, seed=seed, on_token=on_token)


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
