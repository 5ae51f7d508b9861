"""graphc.models.tokenizer against llama.cpp: its own test vocabularies (ggml-vocab-*.gguf with the
.inp strings and the .out ids llama.cpp produced), fresh random text compared with live llama.cpp
(llama-cpp-python, vocab only), every supported pre-tokenizer on a relabelled vocabulary, round trips,
damaged metadata, and tools/fetch_vocab.py.

The vocabularies come from $GRAPHC_VOCAB_DIR, else <repo>/.venv/share/graphc-vocab (filled by
`python tools/fetch_vocab.py .venv/share/graphc-vocab`); without them these tests fail.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import io
import os
import tarfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from graphc.errors import ParseError, RunError
from graphc.frontends.gguf import GGUFFile, Value, ValueType, write_gguf
from graphc.models import unicode as uni
from graphc.models.pretok import PRE_NAMES, UNSUPPORTED_PRE
from graphc.models.tokenizer import ATTR_CONTROL, MODELS, Tokenizer

REPO = Path(__file__).resolve().parents[1]
FETCH = "python tools/fetch_vocab.py .venv/share/graphc-vocab"
SUPPORTED = ["aquila", "baichuan", "command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2",
             "gpt-neox", "llama-bpe", "llama-spm", "mpt", "phi-3", "qwen2", "qwen35", "refact", "starcoder"]
UNSUPPORTED = {"bert-bge": "bert", "nomic-bert-moe": "t5"}
N_RANDOM = 50


def vocab_dir() -> Path:
    d = Path(os.environ.get("GRAPHC_VOCAB_DIR") or REPO / ".venv" / "share" / "graphc-vocab")
    if not d.is_dir() or not any(d.glob("ggml-vocab-*.gguf")):
        pytest.fail(f"llama.cpp's tokenizer test vocabularies are missing from {d}: fetch them with `{FETCH}` "
                    f"(or point GRAPHC_VOCAB_DIR at a folder holding ggml-vocab-*.gguf)", pytrace=False)
    return d


def vocab_path(name: str) -> Path:
    p = vocab_dir() / f"ggml-vocab-{name}.gguf"
    if not p.is_file():
        pytest.fail(f"{p} is missing: refetch with `{FETCH}`", pytrace=False)
    return p


_TOKENIZERS: dict[str, Tokenizer] = {}
_LIVE: dict[str, "Live"] = {}


def tokenizer(name: str) -> Tokenizer:
    if name not in _TOKENIZERS:
        _TOKENIZERS[name] = Tokenizer.from_gguf(vocab_path(name))
    return _TOKENIZERS[name]


class Live:
    """llama.cpp's own llama_tokenize / llama_detokenize on a vocab-only model."""

    def __init__(self, path: "str | Path"):
        try:
            import llama_cpp
        except ImportError:
            pytest.fail("llama-cpp-python (the reference tokenizer) is not installed: pip install llama-cpp-python",
                        pytrace=False)
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab

    def close(self) -> None:
        self.llm.close()   # now, not in a destructor at interpreter exit

    def tokenize(self, data: bytes, add_special: bool, parse_special: bool) -> list[int]:
        lib, n = self.lib, len(data) + 8
        buf = (lib.llama_token * n)()
        k = lib.llama_tokenize(self.vocab, data, len(data), buf, n, add_special, parse_special)
        if k < 0:
            buf = (lib.llama_token * -k)()
            k = lib.llama_tokenize(self.vocab, data, len(data), buf, -k, add_special, parse_special)
        return list(buf[:k])

    def detokenize(self, ids: list[int], remove_special: bool, special: bool) -> bytes:
        lib = self.lib
        arr = (lib.llama_token * max(1, len(ids)))(*ids)
        n = lib.llama_detokenize(self.vocab, arr, len(ids), None, 0, remove_special, special)
        buf = ctypes.create_string_buffer(max(1, -n))
        n = lib.llama_detokenize(self.vocab, arr, len(ids), buf, len(buf), remove_special, special)
        return buf.raw[:n]


@pytest.fixture(scope="module", autouse=True)
def _close_llama_cpp():
    yield
    while _LIVE:
        _LIVE.popitem()[1].close()


def live(name: str) -> Live:
    if name not in _LIVE:
        _LIVE[name] = Live(vocab_path(name))
    return _LIVE[name]


# --- random text ---------------------------------------------------------------------------------
_WS = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\v", "\f", "\u00a0", "\u3000", "\u2028", "\u2009",
       "\u0085", " \n ", "\x1c"]
_RANGES = [(0x41, 0x7B), (0x20, 0x7F), (0xC0, 0x250), (0x300, 0x370), (0x370, 0x530), (0x590, 0x700),
           (0x900, 0x980), (0xE00, 0xE80), (0x3040, 0x3100), (0x4E00, 0x9FFF), (0xAC00, 0xD7A4),
           (0x1F300, 0x1FA00), (0xFF00, 0xFFF0), (0x1D400, 0x1D800), (0x20000, 0x2A6DF)]
_WORDS = ["Hello", "world", "the", "don't", "I'm", "we'll", "they're", "I've", "he'd", "'s", "'S", "'LL", "it's",
          "1234567", "3.14159", "x=1;", "print('hi')", "    return", "https://example.com/a?b=c", "naïve", "café",
          "日本語", "中文", "한국어", "привет", "مرحبا", "नमस्ते", "🦙", "👍🏽", "👨‍👩‍👧", "🇺🇸", "e\u0301",
          "\u200b", "\ufeff", "ﬁ", "½", "²", "٣", "...", "?!", " ,", " .", "$100", "<=>", "^~|", "`x`", "[]{}",
          "\\", "—", "…", "¿¡"]


def random_text(rng: np.random.Generator, specials: list[str]) -> str:
    parts = []
    for _ in range(int(rng.integers(1, 12))):
        k = int(rng.integers(0, 10))
        if k < 3:
            parts.append(_WORDS[rng.integers(len(_WORDS))])
        elif k < 5:
            parts.append(_WS[rng.integers(len(_WS))])
        elif k < 7:
            lo, hi = _RANGES[rng.integers(len(_RANGES))]
            parts.append("".join(map(chr, rng.integers(lo, hi, int(rng.integers(1, 8))).tolist())))
        elif k == 7:   # any code point, unassigned ones included
            parts.append("".join(chr(c) for c in rng.integers(0, 0x110000, 3).tolist() if not 0xD800 <= c < 0xE000))
        elif k == 8 and specials:
            s = specials[rng.integers(len(specials))]
            parts.append(s if rng.random() < 0.8 else s[:max(1, len(s) // 2)])
        else:   # random bytes decoded with errors
            parts.append(rng.integers(0, 256, int(rng.integers(1, 6))).astype(np.uint8).tobytes()
                         .decode("utf-8", "replace"))
    return "".join(parts)


def compare_live(tok: Tokenizer, ref: Live, rng: np.random.Generator, count: int) -> int:
    """Encode/decode count random strings both ways with every flag; returns the number of comparisons."""
    specials = [tok.tokens[i] for i in tok.special_tokens[:200]]
    n = 0
    for _ in range(count):
        text: "str | bytes" = random_text(rng, specials)
        data = text.encode("utf-8")
        if rng.random() < 0.1:   # invalid UTF-8 (no F4..F7 leads: llama.cpp aborts on code points past U+10FFFF)
            junk = bytes(b for b in rng.integers(0, 256, 6).tolist() if not 0xF4 <= b <= 0xF7)
            cut = int(rng.integers(0, len(data) + 1))
            text = data = data[:cut] + junk + data[cut:]
        for add_special in (False, True):
            for parse_special in (False, True):
                want = ref.tokenize(data, add_special, parse_special)
                got = tok.encode(text, add_special=add_special, parse_special=parse_special)
                assert got == want, (text, add_special, parse_special)
                n += 1
        noise = [int(t) for t in rng.integers(0, tok.n_vocab, int(rng.integers(0, 10)))]
        for ids in (want, noise, ([tok.bos_id] if tok.bos_id is not None else []) + noise):
            for remove_special in (False, True):
                for special in (False, True):
                    assert tok.decode_bytes(ids, special, remove_special) == \
                        ref.detokenize(ids, remove_special, special), (ids, remove_special, special)
                    n += 1
    return n


def read_cases(path: Path) -> tuple[list[bytes], list[list[int]]]:
    """llama.cpp's .inp (strings separated by a __ggml_vocab_test__ line) and .out (ids, one line each)."""
    raw = path.with_suffix(".gguf.inp").read_bytes()
    sep = b"\n__ggml_vocab_test__\n"
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(sep, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(sep)
    lines = path.with_suffix(".gguf.out").read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return texts, [[int(x) for x in line.split()] for line in lines]


# --- the vocabulary files ------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in SUPPORTED if n not in ("aquila", "baichuan", "gpt-neox")])
def test_llama_cpp_cases(name):
    """Every .inp string gives exactly llama.cpp's .out ids (add_special and parse_special off, as there)."""
    texts, want = read_cases(vocab_path(name))
    assert len(texts) == len(want) > 30
    tok = tokenizer(name)
    for text, ids in zip(texts, want):
        assert tok.encode(text, add_special=False) == ids, text


@pytest.mark.parametrize("name", SUPPORTED)
def test_random_text_matches_live_llama_cpp(name, rng):
    tok, ref = tokenizer(name), live(name)
    assert compare_live(tok, ref, rng, N_RANDOM) >= N_RANDOM * 16


@pytest.mark.parametrize("name", SUPPORTED)
def test_vocabulary_properties_match_llama_cpp(name):
    tok, ref = tokenizer(name), live(name)
    lib, v = ref.lib, ref.vocab
    n = lib.llama_vocab_n_tokens(v)
    assert tok.n_vocab == n == len(tok.tokens)
    opt = lambda t: None if t < 0 else t   # noqa: E731
    assert (tok.bos_id, tok.eos_id, tok.eot_id) == (opt(lib.llama_vocab_bos(v)), opt(lib.llama_vocab_eos(v)),
                                                    opt(lib.llama_vocab_eot(v)))
    assert (tok.add_bos, tok.add_eos) == (lib.llama_vocab_get_add_bos(v), lib.llama_vocab_get_add_eos(v))
    assert set(tok.eos_ids) == {i for i in range(n) if lib.llama_vocab_is_eog(v, i)}
    assert tok.eos_id in tok.eos_ids
    assert tok.attrs == [lib.llama_vocab_get_attr(v, i) for i in range(n)]


@pytest.mark.parametrize("name", SUPPORTED)
def test_decode_inverts_encode_on_ordinary_text(name, rng):
    """decode(encode(text)) == text for text the BPE space clean-up leaves alone (no " ." " 's" ...)."""
    tok = tokenizer(name)
    words = ["Hello", "world", "naïve", "café", "日本語", "привет", "🦙", "x=1;", "3.14", "don't", "tab\there",
             "new\nline", "(a)", "[b]", "e\u0301", "½", "‐", "  indented", "UPPER", "end."]
    for _ in range(20):
        text = " ".join(words[i] for i in rng.integers(0, len(words), int(rng.integers(1, 10))))
        ids = tok.encode(text, add_special=False)
        assert tok.decode(ids) == text
        assert tok.decode(tok.encode(text)) in (text, " " + text)   # SPM keeps the space after a BOS


def test_partial_characters_decode_to_replacement():
    tok = tokenizer("llama-spm")
    ids = tok.encode("🦙", add_special=False)           # the space prefix, then four byte tokens (no piece)
    assert len(ids) == 5 and all(tok.token_text(i).startswith("<0x") for i in ids[1:])
    assert tok.decode(ids[:3]) == "\ufffd" and tok.decode(ids) == tok.decode(ids[1:]) == "🦙"  # leading space dropped
    assert tok.decode_bytes(ids[1:3]) == "🦙".encode()[:2]


def test_unsupported_vocabularies_are_clear_errors():
    for name, model in UNSUPPORTED.items():
        with pytest.raises(ParseError, match=f"tokenizer model '{model}' .* is not supported; supported: llama") as e:
            Tokenizer.from_gguf(vocab_path(name))
        assert str(vocab_path(name)) in str(e.value)


def test_encode_is_fast_and_accepts_bytes():
    for name in ("llama-spm", "llama-bpe"):
        tok = tokenizer(name)
        text = ("Tokenizers split text into words, then merge bytes by rank; 12345 naïve 日本語 🦙.\n" * 60)[:4096]
        t0 = time.perf_counter()
        ids = tok.encode(text)
        assert time.perf_counter() - t0 < 1.0
        assert tok.encode(text.encode()) == ids and len(ids) > 500


def test_missing_vocabulary_folder_fails_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_VOCAB_DIR", str(tmp_path / "absent"))
    with pytest.raises(pytest.fail.Exception, match="tools/fetch_vocab.py"):
        vocab_dir()


# --- every pre-tokenizer, on a small vocabulary relabelled for it ----------------------------------
_PRE_REPS = sorted({spec: name for name, spec in reversed(list(PRE_NAMES.items()))}.values())


@functools.lru_cache(maxsize=1)
def _gpt2_merges() -> tuple[str, ...]:
    return tuple(GGUFFile(vocab_path("gpt-2")).metadata["tokenizer.ggml.merges"][:2000])


def small_vocab(pre: str, n_merges: int = 2000, model: str = "gpt2") -> dict:
    """GPT-2's first merges with their tokens, the 256 byte characters and a few special tokens."""
    merges = list(_gpt2_merges()[:n_merges])
    tokens = list(uni.BYTE_TO_CHAR)
    seen = set(tokens)
    for m in merges:
        a, b = m.split(" ", 1)
        for t in (a, b, a + b):
            if t not in seen:
                seen.add(t)
                tokens.append(t)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>", "[INST]"]
    types = [1] * len(tokens) + [3, 3, 3, 4, 4]
    tokens += specials
    return {"general.architecture": "llama", "general.name": "relabelled",
            "tokenizer.ggml.model": model, "tokenizer.ggml.pre": pre,
            "tokenizer.ggml.tokens": Value(ValueType.ARRAY, tokens, ValueType.STRING),
            "tokenizer.ggml.token_type": np.array(types, np.int32),
            "tokenizer.ggml.merges": Value(ValueType.ARRAY, merges, ValueType.STRING),
            "tokenizer.ggml.bos_token_id": Value(ValueType.UINT32, len(tokens) - 5),
            "tokenizer.ggml.eos_token_id": Value(ValueType.UINT32, len(tokens) - 5)}


@pytest.mark.parametrize("pre", _PRE_REPS)
def test_every_pre_tokenizer_matches_live_llama_cpp(pre, tmp_path, rng):
    path = tmp_path / "v.gguf"
    write_gguf(path, small_vocab(pre), [])
    tok = Tokenizer.from_gguf(path)
    assert tok.spec == PRE_NAMES[pre]
    ref = Live(path)
    try:
        compare_live(tok, ref, rng, 12)
    finally:
        ref.close()


# --- damaged or unsupported metadata --------------------------------------------------------------
def _spm_metadata() -> dict:
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "a", "b", "\u2581a", "ab"]
    return {"tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": Value(ValueType.ARRAY, toks, ValueType.STRING),
            "tokenizer.ggml.scores": np.arange(len(toks), dtype=np.float32) * -0.5,
            "tokenizer.ggml.token_type": np.array([2, 3, 3] + [6] * 256 + [1] * 5, np.int32)}


def _damaged(path: Path, md: dict, **changes) -> Path:
    md = dict(md)
    for k, v in changes.items():
        key = "tokenizer.ggml." + k
        if v is None:
            md.pop(key, None)
        else:
            md[key] = v
    write_gguf(path, md, [])
    return path


def _strings(xs: list[str]) -> Value:
    return Value(ValueType.ARRAY, xs, ValueType.STRING)


@pytest.mark.parametrize("change, message", [
    (dict(model=None), "tokenizer.ggml.model is missing"),
    (dict(model="bert"), r"'bert' \(tokenizer.ggml.model\) is not supported; supported: llama, gpt2, gemma4"),
    (dict(model="none"), "holds no vocabulary"),
    (dict(model=Value(ValueType.UINT32, 3)), "tokenizer.ggml.model must be a STRING"),
    (dict(tokens=None), "tokenizer.ggml.tokens is missing"),
    (dict(tokens=Value(ValueType.ARRAY, [], ValueType.STRING)), "tokenizer.ggml.tokens is empty"),
    (dict(tokens=np.arange(264, dtype=np.int32)), "tokenizer.ggml.tokens must be an array of STRING"),
    (dict(scores=np.zeros(7, np.float32)), "scores has 7 entries for 264 tokens"),
    (dict(scores=_strings(["x"] * 264)), "scores must be an array of FLOAT32 or INT32"),
    (dict(token_type=np.ones(300, np.int32)), "token_type has 300 entries for 264 tokens"),
    (dict(add_bos_token=Value(ValueType.UINT32, 1)), "add_bos_token must be a BOOL"),
    (dict(bos_token_id="1"), "bos_token_id must be an integer"),
])
def test_damaged_spm_metadata_is_a_parse_error(tmp_path, change, message):
    path = _damaged(tmp_path / "bad.gguf", _spm_metadata(), **change)
    with pytest.raises(ParseError, match=message) as e:
        Tokenizer.from_gguf(path)
    assert e.value.file == str(path)


def test_wrongly_typed_metadata_never_crashes(rng):
    """Any tokenizer key replaced by a value of another shape: the tokenizer loads or raises ParseError."""
    base = dict(GGUFFile(vocab_path("llama-spm")).metadata)
    bpe = small_vocab("qwen2", 300)
    bpe = {k: (v.value if isinstance(v, Value) else v) for k, v in bpe.items()}
    junk = [None, 7, -1, 2**40, 1.5, True, "x", "", [], [1, 2], ["a", "b"], [None], np.zeros(3, np.float32),
            np.array(["<s>", "<s>"]), {"k": 1}]
    for md in (base, bpe):
        keys = [k for k in md if k.startswith("tokenizer.ggml.")] + ["tokenizer.ggml.add_eos_token", "general.name"]
        for _ in range(25):
            bad = dict(md)
            for key in rng.choice(keys, int(rng.integers(1, 3)), replace=False):
                v = junk[rng.integers(len(junk))]
                if v is None:
                    bad.pop(key, None)
                else:
                    bad[key] = v
            try:
                tok = Tokenizer.from_metadata(bad, "junk.gguf")
            except ParseError as e:
                assert e.file == "junk.gguf" and "tokenizer.ggml." in str(e)
            else:
                tok.decode(tok.encode("Hello <s> wörld 🦙", parse_special=True))


def test_duplicate_tokens_are_a_parse_error(tmp_path):
    md = _spm_metadata()
    toks = list(md["tokenizer.ggml.tokens"].value)
    toks[-1] = "a"
    with pytest.raises(ParseError, match="holds 'a' more than once"):
        Tokenizer.from_gguf(_damaged(tmp_path / "dup.gguf", md, tokens=_strings(toks)))


@pytest.mark.parametrize("change, message", [
    (dict(merges=None), "without merges"),
    (dict(merges=_strings(["Ġ t", "nospace"])), r"merges\[1\] = 'nospace' is not two tokens"),
    (dict(merges=_strings(["Ġ t", "q \u2603"])), r"merges\[1\] = 'q \u2603' refers to '\u2603', which is not a token"),
    (dict(pre="no-such-pre"), "unknown pre-tokenizer 'no-such-pre'.*supported: .*llama-bpe"),
    (dict(pre="kimi-k2"), "'kimi-k2' .* is not reproduced by graphc; supported: .*qwen2"),
])
def test_damaged_bpe_metadata_is_a_parse_error(tmp_path, change, message):
    path = _damaged(tmp_path / "bad.gguf", small_vocab("gpt-2", 100), **change)
    with pytest.raises(ParseError, match=message) as e:
        Tokenizer.from_gguf(path)
    assert e.value.file == str(path)


def test_small_spm_vocabulary_and_errors_at_run_time(tmp_path):
    tok = Tokenizer.from_gguf(_damaged(tmp_path / "spm.gguf", _spm_metadata()))
    assert (tok.bos_id, tok.eos_id, tok.unk_id, tok.n_vocab) == (1, 2, 0, 264)
    ids = tok.encode("ab a!")
    assert ids[0] == 1 and tok.decode(ids) == " ab a!" and tok.decode(ids[1:]) == "ab a!"
    assert tok.token_text(ids[-1]) == "<0x21>"   # '!' has no piece: byte fallback
    with pytest.raises(RunError, match="token id 264 is outside the vocabulary"):
        tok.decode([5, 264])
    # a raw-UTF-8 BPE vocabulary that asks for BOS but has none
    md = small_vocab("gemma4", 50, model="gemma4")
    del md["tokenizer.ggml.bos_token_id"]
    tok = Tokenizer.from_gguf(_damaged(tmp_path / "g4.gguf", md))
    assert tok.encode("hi", add_special=False) and tok.bos_id is None
    with pytest.raises(RunError, match="asks for a BOS token but defines none"):
        tok.encode("hi")


def test_from_metadata_and_from_an_open_reader():
    g = GGUFFile(vocab_path("llama-spm"))
    a, b = Tokenizer.from_gguf(g), Tokenizer.from_metadata(g.metadata, "x")
    text = "Hello <s> world</s>"
    assert a.encode(text, parse_special=True) == b.encode(text, parse_special=True) == \
        tokenizer("llama-spm").encode(text, parse_special=True)
    assert a.encode(text, parse_special=True).count(a.bos_id) == 2
    assert a.token_attr(a.bos_id) & ATTR_CONTROL
    assert set(MODELS) == {"llama", "gpt2", "gemma4"} and not UNSUPPORTED_PRE & set(PRE_NAMES)


# --- the code point table and UTF-8 ---------------------------------------------------------------
def test_category_table_agrees_with_unicodedata():
    """Every code point Python's unicodedata assigns has the same category in graphc's table (Unicode
    15.1, llama.cpp's); the table may know later assignments Python's older database lacks."""
    table = uni.flags_table()
    bits = {"L": uni.LETTER, "N": uni.NUMBER, "P": uni.PUNCTUATION, "S": uni.SYMBOL, "M": uni.MARK,
            "Z": uni.SEPARATOR, "C": uni.CONTROL}
    newer = 0
    for cp in range(uni.MAX_CODEPOINT):
        cat = unicodedata.category(chr(cp))
        got = table[cp] & 0xFF
        if cat == "Cn":
            newer += got != uni.UNDEFINED
        else:
            assert got == bits[cat[0]], (hex(cp), cat)
        assert bool(table[cp] & uni.WHITESPACE) == (cp in uni.WHITESPACE_CODEPOINTS)
    if unicodedata.unidata_version == uni.UNICODE_VERSION:
        assert newer == 0
    assert newer < 10000
    assert uni.cpt_flags(0x2FFC) == uni.SYMBOL and uni.cpt_flags(0x1C89) == uni.UNDEFINED   # 15.1 yes, 16.0 no


def test_utf8_is_read_like_llama_cpp():
    assert uni.decode_codepoints("aé🦙".encode()) == [0x61, 0xE9, 0x1F999]
    assert uni.decode_codepoints(b"\xc0\x80") == [0]              # overlong: accepted as written
    assert uni.decode_codepoints(b"\xed\xa0\x80") == [0xD800]      # surrogate: accepted
    assert uni.decode_codepoints(b"\xe2\x82") == [0xFFFD, 0xFFFD]  # truncated: one U+FFFD per byte
    assert uni.decode_codepoints(b"\x80a\xff") == [0xFFFD, 0x61, 0xFFFD]
    assert uni.text_to_bytes("a\udcff") == b"a\xff"
    assert uni.encode_codepoints([0xD800, 0x41]) == b"\xed\xa0\x80A"
    assert "".join(uni.BYTE_TO_CHAR[b] for b in b" \n!") == "\u0120\u010a!"


# --- tools/fetch_vocab.py ---------------------------------------------------------------------------
def _fetch_tool():
    spec = importlib.util.spec_from_file_location("fetch_vocab", REPO / "tools" / "fetch_vocab.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tarball(path: Path, members: dict[str, "bytes | None"]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_fetch_vocab_extracts_only_the_vocabularies(tmp_path):
    tool = _fetch_tool()
    root = "llama_cpp_python-9.9/vendor/llama.cpp/models/"
    sdist = _tarball(tmp_path / "s.tar.gz", {
        root + "ggml-vocab-x.gguf": b"GGUF1", root + "ggml-vocab-x.gguf.inp": b"in",
        root + "ggml-vocab-x.gguf.out": b"1",
        root + "other.gguf": b"no", "llama_cpp_python-9.9/setup.py": b"no",
        root + "../../../evil-ggml-vocab-y.gguf": b"no", "a/b/vendor/llama.cpp/models/ggml-vocab-z.gguf": b"no"})
    dest = tmp_path / "dest"
    assert tool.fetch(str(dest), sdist=str(sdist), quiet=True)
    assert sorted(p.name for p in dest.iterdir()) == [".complete", "ggml-vocab-x.gguf", "ggml-vocab-x.gguf.inp",
                                                      "ggml-vocab-x.gguf.out"]
    assert (dest / "ggml-vocab-x.gguf").read_bytes() == b"GGUF1"
    assert not tool.fetch(str(dest), sdist=str(sdist), quiet=True)        # already complete: untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "s.tar.gz"]


def test_fetch_vocab_refuses_links_and_empty_archives(tmp_path):
    tool = _fetch_tool()
    root = "p-1/vendor/llama.cpp/models/"
    bad = _tarball(tmp_path / "bad.tar.gz", {root + "ggml-vocab-a.gguf": b"x", root + "ggml-vocab-b.gguf": None})
    with pytest.raises(tool.FetchError, match="not a regular file"):
        tool.fetch(str(tmp_path / "d1"), sdist=str(bad), quiet=True)
    assert not (tmp_path / "d1" / ".complete").exists()
    empty = _tarball(tmp_path / "empty.tar.gz", {"p-1/README": b"x"})
    assert tool.main([str(tmp_path / "d2"), "--sdist", str(empty)]) == 1
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(tool.FetchError, match="cannot read the archive"):
        tool.fetch(str(tmp_path / "d3"), sdist=str(tmp_path / "junk.tar.gz"), quiet=True)
