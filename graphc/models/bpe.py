"""Byte-pair merges by rank over one pre-tokenized word (llama.cpp's llm_tokenizer_bpe_session).

A word starts as one symbol per character; the adjacent pair with the lowest merge rank (ties: the
leftmost) is merged until no pair has a rank. Each final symbol is looked up as a token; one that is
not a token falls back to its bytes (GPT-2 byte characters, or <0xXX> tokens for raw-UTF-8 vocabs),
and bytes without a token are dropped, as llama.cpp does. Results are cached per word.
"""
from __future__ import annotations

import heapq
from typing import Mapping

from graphc.models.unicode import encode_codepoints

_CACHE_LIMIT = 1 << 16


class BPE:
    def __init__(self, token_to_id: Mapping[str, int], ranks: Mapping[str, int], *, byte_encode: bool,
                 ignore_merges: bool = False, whole_newlines: bool = False):
        self.token_to_id = token_to_id
        self.ranks = ranks                  # "left right" -> rank
        self.byte_encode = byte_encode
        self.ignore_merges = ignore_merges  # a word that is a token stays whole (LLaMA-3 and others)
        self.whole_newlines = whole_newlines  # Gemma-4: a run of newlines that is a token stays whole
        self._cache: dict[str, tuple[int, ...]] = {}

    def word_ids(self, word: str) -> tuple[int, ...]:
        ids = self._cache.get(word)
        if ids is None:
            ids = tuple(self._encode_word(word))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def _encode_word(self, word: str) -> list[int]:
        lookup = self.token_to_id.get
        if (self.ignore_merges or (self.whole_newlines and not word.strip("\n"))) and lookup(word) is not None:
            return [lookup(word)]   # type: ignore[list-item]
        syms = list(word)
        n = len(syms)
        nxt = list(range(1, n)) + [-1]
        prv = list(range(-1, n - 1))
        rank = self.ranks.get
        heap: list[tuple[int, int, int, str]] = []

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            r = rank(syms[left] + " " + syms[right])
            if r is not None:
                heapq.heappush(heap, (r, left, right, syms[left] + syms[right]))

        for i in range(1, n):
            push(i - 1, i)
        while heap:
            _r, left, right, text = heapq.heappop(heap)
            if not syms[left] or not syms[right] or syms[left] + syms[right] != text:
                continue   # outdated: a side was merged since this pair was queued
            syms[left] = text
            syms[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            push(prv[left], left)
            push(left, nxt[left])
        out: list[int] = []
        for s in syms:
            if not s:
                continue
            tid = lookup(s)
            if tid is not None:
                out.append(tid)
                continue
            for b in encode_codepoints(s) if not self.byte_encode else s.encode("utf-8", "surrogateescape"):
                key = (chr(b) if b < 0x80 else chr(0xDC00 + b)) if self.byte_encode else f"<0x{b:02X}>"
                tid = lookup(key)
                if tid is not None:
                    out.append(tid)
        return out
