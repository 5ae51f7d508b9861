"""SentencePiece-style BPE by piece scores (llama.cpp's llm_tokenizer_spm), over UTF-8 bytes.

The text (spaces already escaped to U+2581) is cut into UTF-8 characters by their lead byte; then the
adjacent pair whose concatenation is the vocabulary piece with the highest score is merged, over and
over (ties: the leftmost pair). A final piece that is not a token is re-split along the merges that
built it, down to byte tokens <0xXX>.
"""
from __future__ import annotations

import heapq
from typing import Callable, Mapping, Sequence

from graphc.models.unicode import utf8_len

_MAX_DEPTH = 256   # resegmenting follows merge history; a guard against cyclic histories


class SPM:
    def __init__(self, piece_to_id: Mapping[bytes, int], scores: Sequence[float],
                 byte_token: Callable[[int], int]):
        self.piece_to_id = piece_to_id
        self.scores = scores
        self.byte_token = byte_token   # byte -> token id (<0xXX>, or a fallback)

    def encode(self, data: bytes, out: list[int]) -> None:
        """Append the token ids of data (already escaped) to out."""
        n = len(data)
        if not n:
            return
        start: list[int] = []
        size: list[int] = []
        offs = 0
        while offs < n:
            k = min(utf8_len(data[offs]), n - offs)
            start.append(offs)
            size.append(k)
            offs += k
        count = len(start)
        nxt = list(range(1, count)) + [-1]
        prv = list(range(-1, count - 1))
        lookup, scores = self.piece_to_id.get, self.scores
        heap: list[tuple[float, int, int, int]] = []
        rev_merge: dict[bytes, tuple[int, int]] = {}

        def try_pair(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            piece = data[start[left]:start[left] + size[left] + size[right]]
            tid = lookup(piece)
            if tid is None:
                return
            heapq.heappush(heap, (-float(scores[tid]), left, right, len(piece)))
            rev_merge[piece] = (left, right)

        for i in range(1, count):
            try_pair(i - 1, i)
        while heap:
            _neg, left, right, length = heapq.heappop(heap)
            if size[left] == 0 or size[right] == 0 or size[left] + size[right] != length:
                continue   # one side was merged since this pair was queued
            size[left] += size[right]
            size[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            try_pair(prv[left], left)
            try_pair(left, nxt[left])

        def resegment(i: int, depth: int) -> None:
            piece = data[start[i]:start[i] + size[i]]
            tid = lookup(piece)
            if tid is not None:
                out.append(tid)
                return
            pair = rev_merge.get(piece)
            if pair is None or depth > _MAX_DEPTH:
                out.extend(self.byte_token(b) for b in piece)
                return
            resegment(pair[0], depth + 1)
            resegment(pair[1], depth + 1)

        i = 0
        while i != -1:
            resegment(i, 0)
            i = nxt[i]
