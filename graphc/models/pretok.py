"""BPE pre-tokenization: text -> words, the way llama.cpp's unicode_regex_split does it.

llama.cpp picks a list of regexes by `tokenizer.ggml.pre` and applies them one after the other, each
one splitting every piece the previous ones left (text between matches stays a piece of its own).
Four regexes (GPT-2's, LLaMA-3's, Qwen2's, Qwen3.5's) and the newline split run as hand-written
scanners; the rest run through std::regex on a "collapsed" copy of the text in which every code point
>= 128 is replaced by one byte standing for its class (letter, number, punctuation, mark, symbol,
whitespace, other), with \\p{..} in the regex rewritten to match those bytes; regexes without \\p{..}
run on the code points with non-ASCII whitespace turned into \\v. Both are reproduced here: the
scanners as ports, the rest with Python's `re` on the same collapsed/whitespace-mapped text (ASCII
\\s, `$` = end of piece), so the words — quirks included — are llama.cpp's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from graphc.models.unicode import (LETTER, MARK, MAX_CODEPOINT, NUMBER, PUNCTUATION, SYMBOL, UNDEFINED,
                                   WHITESPACE, flags_table)

# --- the regex lists (llama.cpp's llm_tokenizer_bpe), by group --------------------------------------
# (a long regex continues on indented lines by implicit string concatenation: one regex per element)
REGEXES: dict[str, tuple[str, ...]] = {
    "default": (
        '[\\p{P}\\$\\+<=>\\^~\\|]+',
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        '\\p{N}+',
        '[0-9][0-9][0-9]',
    ),
    "gpt2": (
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    ),
    "llama3": (
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
    "qwen2": (
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
    "qwen35": (
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}|"
            " ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
    "gemma4": (
        '[^\\n]+|[\\n]+',
    ),
    "deepseek_llm": (
        '[\r\n]',
        '\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377'
            '\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f'
            '\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77'
            '\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d'
            '\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb'
            '\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128'
            '\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4'
            '\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf'
            '\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3'
            '\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943'
            ']+',
        '\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+',
        '\\s+$',
        '[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+',
        '\\p{N}+',
    ),
    "deepseek_coder": (
        '[\r\n]',
        '\\s?\\p{L}+',
        '\\s?\\p{P}+',
        '[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+',
        '\\p{N}',
    ),
    "deepseek3_llm": (
        '\\p{N}{1,3}',
        '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+',
        '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|'
            ' ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+',
    ),
    "falcon": (
        '[\\p{P}\\$\\+<=>\\^~\\|`]+',
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        '[0-9][0-9][0-9]',
    ),
    "starcoder": (
        '\\p{N}',
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    ),
    "jais2": (
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|"
            "\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
    ),
    "spark2_5": (
        '\\p{N}{1,3}',
        '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+',
        '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|'
            ' ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+',
        '\\p{N}',
    ),
    "youtu": (
        '[\uac00-\ud7a3\u3131-\u318e]+|'
            '[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a\uff1b\uff0c\u3001-\u303f\ufe30-\ufe4f]+|'
            '[\u3105-\u312f]+|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+',
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|"
            "'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|"
            "'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
            "\\s+(?!\\S)|\\s+",
    ),
    "poro": (
        ' ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+',
    ),
    "viking": (
        ' ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+',
        '\\p{N}',
    ),
    "tekken": (
        '[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|'
            '[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}|'
            ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
    ),
    "chameleon": (
        '<sentinel:[0-9]+>',
        '(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z',
        '([\\t\\n]|    |  )',
        '\\p{N}',
        '[\\p{P}!-/:-@\\[-`{-~]',
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    ),
    "gpt4o": (
        "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|"
            "'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|"
            "'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
            "\\s+(?!\\S)|\\s+",
    ),
    "granite_emb_multi": (
        "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|"
            "'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|"
            "'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|"
            "\\s+",
    ),
    "bailingmoe": (
        "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    ),
    "seed_coder": (
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}|"
            " ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
    "ufakzeka": (
        '[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
    ),
    "laguna": (
        '[^\\n]+|[\\n]+',
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
    "exaone_moe": (
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
            "[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|"
            "\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    ),
    "minicpm5": (
        '\\p{N}{1,3}',
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+|"
            " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
}

# groups whose text is not byte-encoded (SPM-style BPE: U+2581 for spaces, <0xXX> byte tokens)
RAW_UTF8_GROUPS = frozenset({"gemma4"})


@dataclass(frozen=True)
class PreSpec:
    """What a `tokenizer.ggml.pre` name selects in llama.cpp (llama_vocab::impl::load)."""
    group: str
    clean_spaces: bool = True          # detokenize's clean-up of " ." " 's" ...
    ignore_merges: bool = False        # a word that is a token is taken whole
    add_bos: bool | None = None        # default before tokenizer.ggml.add_bos_token is read
    escape_whitespace: bool = False    # spaces -> U+2581 before BPE
    no_default_bos: bool = False       # the default BOS id is none
    gemma4: bool = False               # llama.cpp's Gemma-4 fixes: BOS always added, newline runs whole


def _names(group: str, names: str, **kw) -> dict[str, PreSpec]:
    return {n: PreSpec(group, **kw) for n in names.split()}


PRE_NAMES: dict[str, PreSpec] = {
    **_names("default", "default"),
    **_names("minicpm5", "minicpm5", ignore_merges=True),
    **_names("llama3", "llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
             ignore_merges=True, add_bos=True),
    **_names("deepseek_llm", "deepseek-llm", clean_spaces=False),
    **_names("deepseek_coder", "deepseek-coder", clean_spaces=False),
    **_names("deepseek3_llm", "deepseek-v3", clean_spaces=False),
    **_names("spark2_5", "spark2_5", clean_spaces=False),
    **_names("youtu", "youtu", clean_spaces=False, ignore_merges=True),
    **_names("falcon", "falcon"),
    **_names("gpt2", "mpt"),
    **_names("starcoder", "starcoder"),
    **_names("gpt2", "gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert"),
    **_names("jais2", "jais-2"),
    **_names("gemma4", "gemma4 granite-embed-multi-311m", escape_whitespace=True, gemma4=True),
    **_names("gemma4", "sarvam-moe", escape_whitespace=True, clean_spaces=False),
    **_names("gpt2", "jina-v1-en jina-v2-code roberta-bpe"),
    **_names("starcoder", "refact"),
    **_names("starcoder", "command-r", clean_spaces=False),
    **_names("qwen2", "qwen2 deepseek-r1-qwen kormo f2llmv2", clean_spaces=False),
    **_names("qwen35", "qwen35", clean_spaces=False),
    **_names("qwen2", "stablelm2"),
    **_names("gpt2", "olmo"),
    **_names("llama3", "dbrx smaug-bpe"),
    **_names("poro", "poro-chat", clean_spaces=False),
    **_names("llama3", "chatglm-bpe", no_default_bos=True),
    **_names("llama3", "glm4 glm5", no_default_bos=True, ignore_merges=True),
    **_names("viking", "viking", clean_spaces=False),
    **_names("gpt2", "jais"),
    **_names("tekken", "tekken", clean_spaces=False, ignore_merges=True, add_bos=True),
    **_names("starcoder", "smollm", clean_spaces=False),
    **_names("starcoder", "codeshell"),
    **_names("poro", "bloom gpt3-finnish"),
    **_names("starcoder", "exaone"),
    **_names("gpt2", "exaone4"),
    **_names("exaone_moe", "exaone-moe"),
    **_names("chameleon", "chameleon", add_bos=True, clean_spaces=False),
    **_names("starcoder", "minerva-7b"),
    **_names("qwen2", "megrez"),
    **_names("gpt4o", "gpt-4o llama4 kanana2 talkie minimax-m2", clean_spaces=False),
    **_names("granite_emb_multi", "granite-embed-multi-97m", clean_spaces=False, ignore_merges=True),
    **_names("gpt2", "trillion granite-docling", clean_spaces=False),
    **_names("bailingmoe", "bailingmoe bailingmoe2 llada-moe", clean_spaces=False),
    **_names("seed_coder", "seed-coder", clean_spaces=False),
    **_names("qwen2", "hunyuan solar-open grok-2", clean_spaces=False),
    **_names("deepseek3_llm", "hunyuan-dense hy_v4 joyai-llm", clean_spaces=False),
    **_names("ufakzeka", "ufakzeka", clean_spaces=False),
    **_names("laguna", "laguna", clean_spaces=False),
    **_names("starcoder", "mellum2"),
}
# names llama.cpp knows that graphc does not reproduce (hand-written digit/Han scanners, empty matches)
UNSUPPORTED_PRE = frozenset({"tiny_aya", "cohere2moe", "superbpe", "kimi-k2", "afmoe", "whitespace"})


# --- hand-written scanners ---------------------------------------------------------------------------
# Each works on one piece: cp and fl are the piece's code points and flags with two sentinels appended
# (-1 and 0: "outside the piece"), n its length; it appends word lengths to out.
_CR, _LF, _SP, _APOS = 0x0D, 0x0A, 0x20, 0x27
_WLN = WHITESPACE | LETTER | NUMBER
_WLMN = WHITESPACE | LETTER | MARK | NUMBER


def _lower(c: int) -> int:
    return c | 0x20 if 0x41 <= c <= 0x5A else c   # llama.cpp's tolower; no other code point maps into a-z here


def _contraction(cp: list[int], pos: int, n: int, fold: bool) -> int:
    """Length of 's 't 're 've 'm 'll 'd at pos (0 if none); fold: either case."""
    if cp[pos] != _APOS or pos + 1 >= n:
        return 0
    c1 = _lower(cp[pos + 1]) if fold else cp[pos + 1]
    if c1 in (0x73, 0x74, 0x6D, 0x64):            # s t m d
        return 2
    if pos + 2 < n:
        c2 = _lower(cp[pos + 2]) if fold else cp[pos + 2]
        if (c1, c2) in ((0x72, 0x65), (0x76, 0x65), (0x6C, 0x6C)):   # re ve ll
            return 3
    return 0


def _whitespace_run(cp: list[int], fl: list[int], pos: int, n: int, crlf: bool) -> int:
    """End of the word a whitespace run at pos makes: \\s*[\\r\\n]+ (when crlf), \\s+(?!\\S), \\s+."""
    nws, last = 0, -1
    while fl[pos + nws] & WHITESPACE:
        if crlf and cp[pos + nws] in (_CR, _LF):
            last = pos + nws + 1
        nws += 1
    if last >= 0:
        return last
    if nws > 1 and pos + nws < n:
        return pos + nws - 1
    return pos + nws if nws else pos + 1


def _scan_gpt2(cp: list[int], fl: list[int], n: int, out: list[int]) -> None:
    # 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    pos = 0
    while pos < n:
        start, c, f = pos, cp[pos], fl[pos]
        k = _contraction(cp, pos, n, fold=False)
        if k:
            pos += k
        else:
            f2 = fl[pos + 1] if c == _SP else f
            if f2 & LETTER or f2 & NUMBER:
                cls = LETTER if f2 & LETTER else NUMBER
                pos += c == _SP
                while fl[pos] & cls:
                    pos += 1
            elif not f2 & _WLN and f2:
                pos += c == _SP
                while not fl[pos] & _WLN and fl[pos]:
                    pos += 1
            else:
                pos = _whitespace_run(cp, fl, pos, n, crlf=False)
        out.append(pos - start)


def _make_llama3_scanner(max_digits: int, marks: bool) -> Callable[[list[int], list[int], int, list[int]], None]:
    """LLaMA-3 (digits up to 3), Qwen2 (single digits), Qwen3.5 (single digits, marks join letters)."""
    word = LETTER | MARK if marks else LETTER
    other = _WLMN if marks else _WLN

    def scan(cp: list[int], fl: list[int], n: int, out: list[int]) -> None:
        pos = 0
        while pos < n:
            start, c, f = pos, cp[pos], fl[pos]
            k = _contraction(cp, pos, n, fold=True)
            if k:
                out.append(k)
                pos += k
                continue
            # [^\r\n\p{L}\p{N}]?\p{L}+
            if not (c == _CR or c == _LF or f & NUMBER) and (f & word or fl[pos + 1] & word):
                pos += 1
                while fl[pos] & word:
                    pos += 1
                out.append(pos - start)
                continue
            # \p{N}{1,max}
            if f & NUMBER:
                while fl[pos] & NUMBER:
                    pos += 1
                    if pos - start >= max_digits:
                        out.append(pos - start)
                        start = pos
                if pos > start:
                    out.append(pos - start)
                continue
            # ' ?[^\s\p{L}\p{N}]+[\r\n]*' (llama.cpp tests the first code point's flags for "in range")
            f2 = fl[pos + 1] if c == _SP else f
            if not f2 & other and f:
                pos += c == _SP
                while not fl[pos] & other and fl[pos]:
                    pos += 1
                while cp[pos] in (_CR, _LF):
                    pos += 1
            else:
                pos = _whitespace_run(cp, fl, pos, n, crlf=True)
            out.append(pos - start)
    return scan


def _scan_newlines(cp: list[int], fl: list[int], n: int, out: list[int]) -> None:
    # [^\n]+|[\n]+
    pos = 0
    while pos < n:
        start, nl = pos, cp[pos] == _LF
        while pos < n and (cp[pos] == _LF) == nl:
            pos += 1
        out.append(pos - start)


_SCANNERS = {
    REGEXES["gpt2"][0]: _scan_gpt2,
    REGEXES["llama3"][0]: _make_llama3_scanner(3, marks=False),
    REGEXES["qwen2"][0]: _make_llama3_scanner(1, marks=False),
    REGEXES["qwen35"][0]: _make_llama3_scanner(1, marks=True),
    REGEXES["gemma4"][0]: _scan_newlines,
}


# --- everything else: std::regex on collapsed text, with Python's re --------------------------------
_CLASS_CHARS = {NUMBER: "\xd1", LETTER: "\xd2", PUNCTUATION: "\xd3", MARK: "\xd4", SYMBOL: "\xd5"}
_OTHER_CHAR = "\xd0"
# ASCII members of each class: ASCII code points are not collapsed
_CLASS_ASCII = {NUMBER: "0-9", LETTER: "A-Za-z", PUNCTUATION: "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}", MARK: "",
                SYMBOL: "\\$\\+<->^`\\|\\~"}
_UCAT = {"\\p{N}": NUMBER, "\\p{L}": LETTER, "\\p{P}": PUNCTUATION, "\\p{M}": MARK, "\\p{S}": SYMBOL,
         "\\p{Lu}": LETTER, "\\p{Ll}": LETTER, "\\p{Lt}": LETTER, "\\p{Lm}": LETTER, "\\p{Lo}": LETTER}


def _uses_categories(expr: str) -> bool:
    return any(k in expr for k in _UCAT)


def _collapse_regex(expr: str) -> str:
    """llama.cpp's rewrite of \\p{..} into the class byte plus the class's ASCII members."""
    if any(ord(ch) >= 128 for ch in expr):
        raise ValueError(f"regex {expr!r} mixes unicode categories and non-ASCII characters")
    out: list[str] = []
    inside, i = False, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "[" and (i == 0 or expr[i - 1] != "\\"):
            out.append("[")
            inside = True
        elif inside and ch == "]" and expr[i - 1] != "\\":
            out.append("]")
            inside = False
        else:
            close = expr.find("}", i + 3) if expr.startswith("\\p{", i) else -1
            pat = expr[i:close + 1] if 0 <= close <= i + 10 else ""
            if pat in _UCAT:
                body = _CLASS_CHARS[_UCAT[pat]] + _CLASS_ASCII[_UCAT[pat]]
                out.append(body if inside else f"[{body}]")
                i = close + 1
                continue
            out.append(ch)
        i += 1
    return "".join(out)


def _to_python(expr: str) -> "re.Pattern[str]":
    """An ECMAScript regex (as std::regex reads it) for Python's re: ASCII \\s \\d, `$` = end of piece."""
    out: list[str] = []
    inside, i = False, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "\\" and i + 1 < len(expr):
            out.append(expr[i:i + 2])
            i += 2
            continue
        if ch == "[" and not inside:
            inside = True
        elif ch == "]" and inside:
            inside = False
        elif ch == "$" and not inside:
            ch = "\\Z"
        out.append(ch)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _regex_split(text: str, rx: "re.Pattern[str]", pieces: list[int]) -> list[int]:
    out: list[int] = []
    start = 0
    for n in pieces:
        pos = 0
        for m in rx.finditer(text, start, start + n):
            a, b = m.start() - start, m.end() - start
            if a > pos:
                out.append(a - pos)
            out.append(b - a)
            pos = b
        if pos < n:
            out.append(n - pos)
        start += n
    return out


class PreTokenizer:
    """Splits code points into words for one regex group (see REGEXES)."""

    def __init__(self, group: str):
        if group not in REGEXES:
            raise KeyError(group)
        self.group = group
        self.byte_encode = group not in RAW_UTF8_GROUPS
        self._steps: list[tuple[str, object]] = []
        for expr in REGEXES[group]:
            if expr in _SCANNERS:
                self._steps.append(("scan", _SCANNERS[expr]))
            elif _uses_categories(expr):
                self._steps.append(("collapsed", _to_python(_collapse_regex(expr))))
            else:
                self._steps.append(("wide", _to_python(expr)))
        self._needs_collapsed = any(kind == "collapsed" for kind, _ in self._steps)

    def split(self, cps: list[int]) -> list[int]:
        """Word lengths (in code points) covering cps, in order; a length may be 0 as in llama.cpp."""
        table = flags_table()
        fl = [table[c] if c < MAX_CODEPOINT else UNDEFINED for c in cps]
        collapsed = wide = None
        pieces = [len(cps)]
        for kind, step in self._steps:
            if kind == "scan":
                out: list[int] = []
                start = 0
                for n in pieces:
                    step(cps[start:start + n] + [-1, -1], fl[start:start + n] + [0, 0], n, out)  # type: ignore[operator]
                    start += n
                pieces = out
            elif kind == "collapsed":
                if collapsed is None:
                    collapsed = "".join(chr(c) if c < 128 else "\x0b" if f & WHITESPACE
                                        else _CLASS_CHARS.get(f & 0xFF, _OTHER_CHAR) for c, f in zip(cps, fl))
                pieces = _regex_split(collapsed, step, pieces)  # type: ignore[arg-type]
            else:
                if wide is None:
                    wide = "".join("\x0b" if c > 0x7F and f & WHITESPACE else chr(c) if c < MAX_CODEPOINT
                                   else "\ufffd" for c, f in zip(cps, fl))
                pieces = _regex_split(wide, step, pieces)  # type: ignore[arg-type]
        return pieces
