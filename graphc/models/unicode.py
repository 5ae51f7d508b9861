"""Code point classes and UTF-8 handling as llama.cpp's tokenizers see them.

llama.cpp classifies code points with its own table (Unicode 15.1, one category per code point: the
first letter of the general category, unassigned ones "undefined") plus a fixed whitespace set, and
decodes UTF-8 leniently (a bad byte becomes U+FFFD and decoding goes on at the next byte). Matching its
token ids means matching these exactly, so graphc carries the table (unicode_data.py) instead of
asking Python's unicodedata, whose version follows the interpreter.
"""
from __future__ import annotations

from array import array

from graphc.models.unicode_data import CATEGORY_RUNS, UNICODE_VERSION

MAX_CODEPOINT = 0x110000

# flag bits, llama.cpp's unicode_cpt_flags values
UNDEFINED = 0x0001
NUMBER = 0x0002        # \p{N}
LETTER = 0x0004        # \p{L}
SEPARATOR = 0x0008     # \p{Z}
MARK = 0x0010          # \p{M}
PUNCTUATION = 0x0020   # \p{P}
SYMBOL = 0x0040        # \p{S}
CONTROL = 0x0080       # \p{C}
WHITESPACE = 0x0100    # \s (Unicode White_Space)

_CATEGORY_BITS = {"U": UNDEFINED, "N": NUMBER, "L": LETTER, "Z": SEPARATOR, "M": MARK, "P": PUNCTUATION,
                  "S": SYMBOL, "C": CONTROL}

# Unicode's White_Space property (llama.cpp's unicode_set_whitespace)
WHITESPACE_CODEPOINTS = frozenset([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                                   0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

_table: "array[int] | None" = None


def _build() -> "array[int]":
    """flags for every code point: one category bit, plus WHITESPACE (2 bytes each, 2.2 MB)."""
    runs = [(int(item[:-1], 16), _CATEGORY_BITS[item[-1]]) for item in "".join(CATEGORY_RUNS).split()]
    cats = bytearray(MAX_CODEPOINT)
    for (start, bit), (end, _) in zip(runs, runs[1:] + [(MAX_CODEPOINT, 0)]):
        cats[start:end] = bytes([bit]) * (end - start)
    table = array("H", iter(cats))   # one 16-bit entry per byte (not the raw buffer)
    for cp in WHITESPACE_CODEPOINTS:
        table[cp] |= WHITESPACE
    return table


def flags_table() -> "array[int]":
    """Flags indexed by code point (0 .. 0x10FFFF); built once, on first use (a fraction of a second)."""
    global _table
    if _table is None:
        _table = _build()
    return _table


def cpt_flags(cp: int) -> int:
    """Flags of one code point; beyond U+10FFFF: UNDEFINED (as llama.cpp)."""
    return flags_table()[cp] if 0 <= cp < MAX_CODEPOINT else UNDEFINED


# --- UTF-8, llama.cpp's way ----------------------------------------------------------------------

_SEQ_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)


def utf8_len(lead: int) -> int:
    """Bytes in the sequence a lead byte starts (llama.cpp's unicode_len_utf8: by the top 4 bits)."""
    return _SEQ_LEN[lead >> 4]


def decode_codepoints(data: bytes) -> list[int]:
    """Code points of UTF-8 bytes as llama.cpp's unicode_cpts_from_utf8 reads them: overlong forms and
    surrogates are accepted as written, anything else malformed becomes U+FFFD for one byte. (Lead bytes
    F5..F7 would give code points past U+10FFFF, which llama.cpp cannot re-encode; here they are
    malformed too.)"""
    try:
        return [ord(c) for c in data.decode("utf-8")]   # valid UTF-8: the same code points
    except UnicodeDecodeError:
        pass
    out: list[int] = []
    n, i = len(data), 0
    while i < n:
        b = data[i]
        if b < 0x80:
            out.append(b)
            i += 1
            continue
        k = 0 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4 if b < 0xF8 else 0
        if k and i + k <= n and all(0x80 <= data[j] < 0xC0 for j in range(i + 1, i + k)):
            cp = b & (0x7F >> k)
            for j in range(i + 1, i + k):
                cp = (cp << 6) | (data[j] & 0x3F)
            if cp < MAX_CODEPOINT:
                out.append(cp)
                i += k
                continue
        out.append(0xFFFD)
        i += 1
    return out


def encode_codepoints(cps: "list[int] | str") -> bytes:
    """UTF-8 of code points, surrogates written as 3-byte forms (llama.cpp's unicode_cpt_to_utf8)."""
    s = cps if isinstance(cps, str) else "".join(map(chr, cps))
    return s.encode("utf-8", "surrogatepass")


def text_to_bytes(text: "str | bytes") -> bytes:
    """The UTF-8 bytes a tokenizer works on. Lone surrogates U+DC80..U+DCFF in a str stand for the raw
    bytes 0x80..0xFF (Python's surrogateescape, as graphc's GGUF reader decodes); other lone surrogates
    are written in their 3-byte form."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return b"".join(c.encode("utf-8", "surrogateescape") if "\udc80" <= c <= "\udcff"
                        else c.encode("utf-8", "surrogatepass") for c in text)


# --- GPT-2's byte <-> printable character mapping --------------------------------------------------

def _byte_chars() -> list[str]:
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


BYTE_TO_CHAR: list[str] = _byte_chars()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_CHAR)}
# str.translate table: text whose code points are all < 256 ("latin-1" bytes) -> byte-level characters
BYTE_TRANSLATE = {b: c for b, c in enumerate(BYTE_TO_CHAR)}

__all__ = ["UNICODE_VERSION", "flags_table", "cpt_flags", "decode_codepoints", "encode_codepoints",
           "text_to_bytes", "utf8_len", "BYTE_TO_CHAR", "CHAR_TO_BYTE", "BYTE_TRANSLATE"]
