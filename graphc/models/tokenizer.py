"""Tokenizers built from a GGUF file's vocabulary, giving llama.cpp's token ids for the same file.

`Tokenizer.from_gguf(path)` reads the `tokenizer.ggml.*` metadata the way llama.cpp's llama_vocab::load
does (defaults, token types, special-token detection by text, end-of-generation set) and then
- encode(text, add_special=True, parse_special=False) = llama_tokenize(text, add_special, parse_special):
  special tokens are cut out of the text first (control tokens only when parse_special; user-defined
  ones always), the pieces between them go through the model's tokenizer, BOS/EOS are added per the
  vocabulary's add_bos/add_eos when add_special;
- decode(ids, special=False, remove_special=False) = llama_detokenize: token pieces joined (byte tokens
  as bytes, U+2581 as space, GPT-2 byte characters as bytes), the SentencePiece leading space dropped,
  the BPE clean-up of " ." " 's" ... where the vocabulary asks for it; invalid UTF-8 becomes U+FFFD
  (a caller streaming text re-decodes the whole list; decode_bytes gives the exact bytes).
Models: "llama" (SentencePiece, spm.py), "gpt2" (byte-level BPE with the pre-tokenizer that
`tokenizer.ggml.pre` names, bpe.py + pretok.py) and "gemma4" (BPE over raw UTF-8).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from graphc.errors import ParseError, RunError
from graphc.models.bpe import BPE
from graphc.models.pretok import PRE_NAMES, UNSUPPORTED_PRE, PreSpec, PreTokenizer
from graphc.models.spm import SPM
from graphc.models.unicode import BYTE_TRANSLATE, CHAR_TO_BYTE, decode_codepoints, encode_codepoints, text_to_bytes

# llama_token_attr bits
ATTR_UNDEFINED, ATTR_UNKNOWN, ATTR_UNUSED, ATTR_NORMAL = 0, 1 << 0, 1 << 1, 1 << 2
ATTR_CONTROL, ATTR_USER_DEFINED, ATTR_BYTE = 1 << 3, 1 << 4, 1 << 5
ATTR_LSTRIP, ATTR_RSTRIP = 1 << 7, 1 << 8
# tokenizer.ggml.token_type values (llama_token_type) -> attributes
_TYPE_ATTR = {0: ATTR_UNDEFINED, 1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL, 4: ATTR_USER_DEFINED,
              5: ATTR_UNUSED, 6: ATTR_BYTE}
_SPECIAL = ATTR_CONTROL | ATTR_UNKNOWN

MODELS = ("llama", "gpt2", "gemma4")
_K = "tokenizer.ggml."
# special-token roles read from metadata; later keys of a role override earlier ones (deprecated names)
_ID_KEYS = (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"), ("eom", "eom_token_id"),
            ("unk", "unknown_token_id"), ("sep", "seperator_token_id"), ("pad", "padding_token_id"),
            ("mask", "mask_token_id"), ("fim_pre", "fim_pre_token_id"), ("fim_suf", "fim_suf_token_id"),
            ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"), ("fim_rep", "fim_rep_token_id"),
            ("fim_sep", "fim_sep_token_id"), ("fim_pre", "prefix_token_id"), ("fim_suf", "suffix_token_id"),
            ("fim_mid", "middle_token_id"))
# llama.cpp finds these roles by token text when the metadata does not name them (and marks them control)
_BY_TEXT = {
    "eot": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
            "_<EOT>", "[EOT]", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<end_of_utterance>"),
    "eom": ("<|eom_id|>",),
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>", "<PRE>",
                "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>", "<SUF>",
                "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>", "<MID>",
                "\u2581<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
# texts llama.cpp treats as end of generation
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
              "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
              "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
              "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[")
_SPACE = b" "
_ESCAPED_SPACE = "\u2581".encode()
_ASCII_SPACES = b" \t\n\v\f\r"


class Tokenizer:
    """A GGUF vocabulary with llama.cpp's encode/decode. Build with from_gguf or from_metadata."""

    def __init__(self, metadata: Mapping[str, Any], source: str = "<metadata>",
                 value_types: Mapping[str, tuple[Any, Any]] | None = None):
        self.source = source
        self._md, self._vt = metadata, value_types
        self._load()

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, path_or_reader: Any) -> "Tokenizer":
        """From a GGUF path or an open graphc.frontends.gguf.GGUFFile (only metadata is read)."""
        from graphc.frontends.gguf import GGUFFile, open_gguf
        g = path_or_reader if isinstance(path_or_reader, GGUFFile) else open_gguf(path_or_reader)
        return cls(g.metadata, g.path, g.value_types)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], source: str = "<metadata>") -> "Tokenizer":
        return cls(metadata, source)

    def _fail(self, msg: str) -> ParseError:
        return ParseError(msg, self.source)

    def _get(self, key: str, kind: type, default: Any = None) -> Any:
        full = _K + key
        if full not in self._md:
            return default
        v = self._md[full]
        if kind is bool:
            ok = isinstance(v, bool)
        elif kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, kind)
        if not ok:
            want = {bool: "a BOOL", int: "an integer", str: "a STRING"}.get(kind, kind.__name__)
            raise self._fail(f"{full} must be {want}, got {type(v).__name__} {v!r:.60}")
        return v

    def _array(self, key: str, elem: str) -> Any:
        """A metadata array; elem: 'string' or 'number'."""
        full = _K + key
        if full not in self._md:
            return None
        v = self._md[full]
        types = self._vt.get(full) if self._vt else None
        if types is not None:
            vt, et = types
            et_name = getattr(et, "name", "")
            if getattr(vt, "name", "") != "ARRAY" or (elem == "string") != (et_name == "STRING") or \
                    (elem == "number" and et_name not in ("FLOAT32", "INT32")):
                want = "STRING" if elem == "string" else "FLOAT32 or INT32"
                raise self._fail(f"{full} must be an array of {want}, got {getattr(vt, 'name', vt)} of "
                                 f"{et_name or 'nothing'}")
        if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
            raise self._fail(f"{full} must be an array, got {type(v).__name__}")
        if elem == "string" and not all(isinstance(s, str) for s in v):
            raise self._fail(f"{full} must hold strings only")
        return v

    def _load(self) -> None:
        model = self._get("model", str)
        if model is None:
            raise self._fail(f"no tokenizer: metadata key {_K}model is missing")
        if model in ("no_vocab", "none"):
            raise self._fail(f"the file holds no vocabulary ({_K}model = {model!r})")
        if model not in MODELS:
            raise self._fail(f"tokenizer model {model!r} ({_K}model) is not supported; supported: "
                             f"{', '.join(MODELS)}")
        self.model = model
        pre = self._get("pre", str, "")
        self.is_spm = model == "llama"
        if self.is_spm:
            spec = PreSpec("default", clean_spaces=False)
            self.add_space_prefix, self.add_bos, self.add_eos = True, True, False
            ids = {"bos": 1, "eos": 2, "unk": 0}
        else:
            if model == "gemma4":
                pre = "gemma4"
            if pre in UNSUPPORTED_PRE:
                raise self._fail(f"pre-tokenizer {pre!r} ({_K}pre) is not reproduced by graphc; supported: "
                                 f"{', '.join(sorted(PRE_NAMES))}")
            spec = PRE_NAMES.get(pre or "default")
            if spec is None:
                raise self._fail(f"unknown pre-tokenizer {pre!r} ({_K}pre); supported: {', '.join(sorted(PRE_NAMES))}")
            self.add_space_prefix, self.add_eos = False, False
            self.add_bos = bool(spec.add_bos)
            ids = {} if model == "gemma4" else {"bos": 11, "eos": 11}
            if spec.no_default_bos:
                ids.pop("bos", None)
        self.pre, self.spec = pre, spec
        self.clean_spaces = spec.clean_spaces
        self.escape_whitespace = spec.escape_whitespace
        self.add_space_prefix = self._get("add_space_prefix", bool, self.add_space_prefix)

        tokens = self._array("tokens", "string")
        if tokens is None:
            raise self._fail(f"no vocabulary: metadata key {_K}tokens is missing")
        n = len(tokens)
        if n == 0:
            raise self._fail(f"{_K}tokens is empty")
        scores = self._array("scores", "number")
        if scores is not None and len(scores) != n:
            raise self._fail(f"{_K}scores has {len(scores)} entries for {n} tokens")
        types = self._array("token_type", "number")
        if types is not None and len(types) != n:
            raise self._fail(f"{_K}token_type has {len(types)} entries for {n} tokens")
        self.tokens: list[str] = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.token_to_id) != n:
            seen: set[str] = set()
            dup = next(t for t in self.tokens if t in seen or seen.add(t))   # type: ignore[func-returns-value]
            raise self._fail(f"{_K}tokens holds {dup!r} more than once")
        try:
            self.scores: list[float] = [float(s) for s in scores] if scores is not None else [0.0] * n
        except (TypeError, ValueError):
            raise self._fail(f"{_K}scores must hold numbers") from None
        try:
            self.attrs = [_TYPE_ATTR.get(int(t), ATTR_UNDEFINED) for t in types] if types is not None \
                else [ATTR_NORMAL] * n
        except (TypeError, ValueError):
            raise self._fail(f"{_K}token_type must hold integers") from None

        if not self.is_spm:
            self.ranks = self._merges()
        self._special_ids(ids, n)
        self._detect_specials()
        self._strip_attrs()
        self.special_tokens = sorted((i for i, a in enumerate(self.attrs)
                                      if a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)),
                                     key=lambda i: -len(self._token_bytes(i)))
        self._piece_cache: dict[int, bytes] = {}
        if self.is_spm:
            self._spm = SPM({t.encode("utf-8", "surrogateescape"): i for i, t in enumerate(self.tokens)},
                            self.scores, self._byte_token)
        else:
            self._pre = PreTokenizer(spec.group)
            self._bpe = BPE(self.token_to_id, self.ranks, byte_encode=self._pre.byte_encode,
                            ignore_merges=spec.ignore_merges, whole_newlines=spec.gemma4)

    def _merges(self) -> dict[str, int]:
        merges = self._array("merges", "string")
        if merges is None:
            raise self._fail(f"BPE vocabulary without merges ({_K}merges is missing)")
        ranks: dict[str, int] = {}
        have = self.token_to_id
        for i, m in enumerate(merges):
            cut = m.find(" ", 1)   # llama.cpp splits at the first space after the first character
            a, b = m[:cut], m[cut + 1:]
            if cut < 0 or a not in have or b not in have or a + b not in have:
                if cut < 0:
                    raise self._fail(f"{_K}merges[{i}] = {m!r:.80} is not two tokens separated by a space")
                missing = next(t for t in (a, b, a + b) if t not in have)
                raise self._fail(f"{_K}merges[{i}] = {m!r:.80} refers to {missing!r:.80}, which is not a token")
            if m not in ranks:     # the key is "a b", i.e. m itself; a repeated merge keeps its first rank
                ranks[m] = i
        return ranks

    def _special_ids(self, ids: dict[str, int], n: int) -> None:
        for role in ("bos", "eos", "unk"):
            if role in ids and not 0 <= ids[role] < n:
                del ids[role]                          # a default out of range is no token
        for role, key in _ID_KEYS:
            v = self._get(key, int)
            if v is not None and 0 <= v < n:          # llama.cpp keeps the default for an id out of range
                ids[role] = v
        self._ids = ids
        self.add_bos = self._get("add_bos_token", bool, self.add_bos)
        self.add_eos = self._get("add_eos_token", bool, self.add_eos)
        if self.spec.gemma4:
            self.add_bos = True                        # llama.cpp's override for Gemma 4

    def _detect_specials(self) -> None:
        """llama.cpp's text-based detection of EOT/EOM/FIM and end-of-generation tokens (and the
        attribute fixes that come with it), in its order."""
        ids, attrs, tid = self._ids, self.attrs, self.token_to_id
        for role, texts in _BY_TEXT.items():
            if role in ids:
                continue
            # llama.cpp takes the first candidate in its hash map's order; graphc the first in list order
            found = next((tid[t] for t in texts if t in tid), None)
            if found is not None:
                ids[role] = found
                attrs[found] |= ATTR_CONTROL
        for i, t in enumerate(self.tokens):
            if attrs[i] & ATTR_CONTROL and "unused" in t:
                attrs[i] |= ATTR_UNUSED
        eog = {ids[r] for r in ("fim_pad", "fim_rep", "fim_sep") if r in ids}
        for t in _EOG_TEXTS:
            if t in tid:
                eog.add(tid[t])
                attrs[tid[t]] |= ATTR_CONTROL
        for t in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):
            if t in tid:
                attrs[tid[t]] = ATTR_USER_DEFINED
        eog.update(ids[r] for r in ("eos", "eot", "eom") if r in ids)
        texts = {self.tokens[i]: i for i in eog}
        if "<|end|>" in texts and ("<|call|>" in texts or "<|calls|>" in texts) and \
                ("<|return|>" in texts or "<|flush|>" in texts):
            eog.discard(texts["<|end|>"])
            attrs[texts["<|end|>"]] = ATTR_USER_DEFINED
        if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
            eog.discard(texts["</s>"])
            attrs[texts["</s>"]] = ATTR_NORMAL
        self._eog = eog

    def _strip_attrs(self) -> None:
        """Per-model LSTRIP/RSTRIP attributes llama.cpp sets by name (whitespace next to special tokens)."""
        name = self._md.get("general.name", "")
        name = name.lower() if isinstance(name, str) else ""
        arch = self._md.get("general.architecture", "")
        arch = arch if isinstance(arch, str) else ""
        tid, attrs = self.token_to_id, self.attrs
        if any(s in self.pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or \
                any(s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
            if "<mask>" in tid:
                attrs[tid["<mask>"]] |= ATTR_LSTRIP
        elif "phi-3" in name or "phi3" in name:
            for i, a in enumerate(attrs):
                if a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN):
                    attrs[i] |= ATTR_RSTRIP
            if "</s>" in tid:
                attrs[tid["</s>"]] |= ATTR_RSTRIP
            for t in ("<unk>", "<s>", "<|endoftext|>"):
                if t in tid:
                    attrs[tid[t]] &= ~ATTR_RSTRIP
        elif "modern-bert" in name and "[MASK]" in tid:
            attrs[tid["[MASK]"]] |= ATTR_LSTRIP

    # --- properties -----------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    def _role(self, role: str) -> int | None:
        return self._ids.get(role)

    bos_id = property(lambda self: self._role("bos"))
    eos_id = property(lambda self: self._role("eos"))
    eot_id = property(lambda self: self._role("eot"))
    eom_id = property(lambda self: self._role("eom"))
    unk_id = property(lambda self: self._role("unk"))
    pad_id = property(lambda self: self._role("pad"))

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Every end-of-generation token (EOS, EOT, EOM and the ones llama.cpp recognises by text)."""
        return tuple(sorted(self._eog))

    def is_eog(self, token: int) -> bool:
        return token in self._eog

    def token_text(self, token: int) -> str:
        return self.tokens[self._check(token)]

    def token_attr(self, token: int) -> int:
        return self.attrs[self._check(token)]

    def _check(self, token: int) -> int:
        if not 0 <= token < len(self.tokens):
            raise RunError(f"token id {token} is outside the vocabulary [0, {len(self.tokens)}) of {self.source}")
        return token

    def _token_bytes(self, token: int) -> bytes:
        return self.tokens[token].encode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"Tokenizer({self.model!r}, pre={self.pre!r}, n_vocab={self.n_vocab}, source={self.source!r})"

    # --- encode ---------------------------------------------------------------------------------
    def encode(self, text: "str | bytes", add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of text (llama_tokenize). add_special: BOS/EOS as the vocabulary asks;
        parse_special: control-token texts in the input become those tokens (user-defined tokens
        always do)."""
        raw = text_to_bytes(text)
        fragments = self._partition(raw, parse_special) if raw else []
        out: list[int] = []
        if add_special and self.add_bos:
            out.append(self._need("bos"))
        if self.is_spm:
            prev_special = True
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                    continue
                piece = raw[frag[0]:frag[1]]
                if self.add_space_prefix and prev_special:
                    piece = _SPACE + piece
                self._spm.encode(piece.replace(_SPACE, _ESCAPED_SPACE), out)
                prev_special = False
        else:
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._encode_bpe(raw[frag[0]:frag[1]], out)
        if add_special and self.add_eos:
            out.append(self._need("eos"))
        return out

    def _need(self, role: str) -> int:
        tid = self._ids.get(role)
        if tid is None:
            raise RunError(f"{self.source}: the vocabulary asks for a {role.upper()} token but defines none")
        return tid

    def _partition(self, raw: bytes, parse_special: bool) -> list["int | tuple[int, int]"]:
        """Cut special tokens out of raw: token ids and (start, end) text spans, in order (longest
        special tokens first, as llama.cpp's tokenizer_st_partition)."""
        frags: list[int | tuple[int, int]] = [(0, len(raw))]
        for tid in self.special_tokens:
            attr = self.attrs[tid]
            if not parse_special and attr & _SPECIAL:
                continue
            needle = self._token_bytes(tid)
            if needle not in raw:
                continue
            out: list[int | tuple[int, int]] = []
            for frag in frags:
                if isinstance(frag, int):
                    out.append(frag)
                    continue
                s, e = frag
                while True:
                    m = raw.find(needle, s, e)
                    if m < 0:
                        if e > s:
                            out.append((s, e))
                        break
                    le = m
                    if attr & ATTR_LSTRIP:
                        while le > s and raw[le - 1] in _ASCII_SPACES:
                            le -= 1
                    if le > s:
                        out.append((s, le))
                    out.append(tid)
                    s = m + len(needle)
                    if s >= e:
                        break
                    if attr & ATTR_RSTRIP:
                        while s < e and raw[s] in _ASCII_SPACES:
                            s += 1
            frags = out
        return frags

    def _encode_bpe(self, data: bytes, out: list[int]) -> None:
        if self.escape_whitespace:
            data = data.replace(_SPACE, _ESCAPED_SPACE)
        cps = decode_codepoints(data)
        text = "".join(map(chr, cps))
        bpe = self._bpe
        pos = 0
        for n in self._pre.split(cps):
            word = text[pos:pos + n]
            pos += n
            if self._pre.byte_encode:
                word = encode_codepoints(word).decode("latin-1").translate(BYTE_TRANSLATE)
            out.extend(bpe.word_ids(word))

    def _byte_token(self, b: int) -> int:
        """SentencePiece byte fallback: <0xXX>, else the byte itself, else UNK."""
        for key in (f"<0x{b:02X}>", chr(b) if 0 < b < 0x80 else chr(0xDC00 + b) if b else ""):
            tid = self.token_to_id.get(key) if key else None
            if tid is not None:
                return tid
        if "unk" in self._ids:
            return self._ids["unk"]   # llama.cpp aborts here; graphc falls back to the unknown token
        raise RunError(f"{self.source}: no token for byte 0x{b:02X} and no unknown token")

    # --- decode ---------------------------------------------------------------------------------
    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes one token stands for (llama_token_to_piece with lstrip 0)."""
        attr = self.attrs[self._check(token)]
        if not special and attr & _SPECIAL:
            return b""
        piece = self._piece_cache.get(token)
        if piece is None:
            piece = self._piece_cache[token] = self._piece(token, attr)
        return piece

    def _piece(self, token: int, attr: int) -> bytes:
        raw = self._token_bytes(token)
        if attr & (_SPECIAL | ATTR_USER_DEFINED):
            return raw
        if attr & ATTR_NORMAL:
            if self.is_spm or self.escape_whitespace:
                return raw.replace(_ESCAPED_SPACE, _SPACE)
            return _gpt2_bytes(raw)
        if attr & ATTR_BYTE:
            return bytes([_hex_prefix(raw[3:5])])
        return b""

    def decode_bytes(self, ids: Iterable[int], special: bool = False, remove_special: bool = False) -> bytes:
        """llama_detokenize(ids, remove_special, unparse_special=special) as bytes."""
        ids = [int(t) for t in ids]
        remove_space = self.add_space_prefix
        if remove_special and self.add_bos and ids and ids[0] == self._ids.get("bos"):
            remove_space = False
            ids = ids[1:]
        if remove_special and self.add_eos and ids and ids[-1] == self._ids.get("eos"):
            ids = ids[:-1]
        parts = []
        for t in ids:
            piece = self.token_to_piece(t, special)
            if remove_space and piece[:1] == _SPACE:
                piece = piece[1:]
            remove_space = False
            parts.append(piece)
        text = b"".join(parts)
        return _clean_spaces(text) if self.clean_spaces else text

    def decode(self, ids: Iterable[int], special: bool = False, remove_special: bool = False) -> str:
        """Text of token ids (llama_detokenize); invalid UTF-8 (a character cut between tokens) -> U+FFFD."""
        return self.decode_bytes(ids, special, remove_special).decode("utf-8", "replace")


def _hex_prefix(b: bytes) -> int:
    """strtol(.., 16) of a byte token's two hex digits: the longest hex prefix, 0 if none."""
    v = 0
    for c in b:
        d = int(chr(c), 16) if chr(c) in "0123456789abcdefABCDEF" else -1
        if d < 0:
            break
        v = v * 16 + d
    return v & 0xFF


def _gpt2_bytes(raw: bytes) -> bytes:
    """llama.cpp's llama_decode_text: GPT-2 byte characters -> bytes; other characters are marked."""
    out = bytearray()
    for cp in decode_codepoints(raw):
        b = CHAR_TO_BYTE.get(chr(cp))
        if b is not None:
            out.append(b)
        else:
            out += b"[UNK_BYTE_0x" + encode_codepoints([cp]).hex().encode() + raw + b"]"
    return bytes(out)


def _clean_spaces(text: bytes) -> bytes:
    """llama_detokenize's clean_up_tokenization_spaces passes, done in place as llama.cpp does."""
    if not any(p in text for p in (b" ?", b" !", b" .", b" ,", b" '")):
        return text
    buf = bytearray(text)
    # 1: " ?", " !", " .", " ," lose the space
    total, n = (1 if buf else 0), len(buf)
    for i in range(1, n):
        x = buf[i]
        if buf[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        buf[total] = x
        total += 1
    # 2: " ' " -> "'"
    n, total = total, (1 if total else 0)
    i = 1
    while i < n:
        x = buf[i]
        if x == 0x27 and i + 1 < n and buf[i - 1] == 0x20 and buf[i + 1] == 0x20:
            total -= 1
            i += 1
            buf[i] = 0
        buf[total] = x
        total += 1
        i += 1
    # 3: " 's", " 'm", " 're", " 've" lose the space
    n, total = total, (1 if total else 0)
    for i in range(1, n):
        x = buf[i]
        if buf[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = buf[i + 1]
            if x1 in b"sm":
                total -= 1
            elif x1 not in b"td" and i + 2 < n and (x1, buf[i + 2]) in ((0x72, 0x65), (0x76, 0x65)):
                total -= 1
        buf[total] = x
        total += 1
    return bytes(buf[:total])


def load_tokenizer(path: "str | os.PathLike[str]") -> Tokenizer:
    return Tokenizer.from_gguf(path)


__all__ = ["Tokenizer", "load_tokenizer", "MODELS"]
