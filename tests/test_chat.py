"""Chat: graphc.models.chat (templates in jinja2's sandbox, built-ins, bounds), Model.chat over a kept KV
cache, special-token parsing, and `graphc generate --chat / -i / --no-parse-special`.

Oracles: llama.cpp's own built-in formats (llama_chat_apply_template) and the expected strings of
llama.cpp's tests/test-chat-template.cpp, llama-cpp-python's Jinja2ChatFormatter for the templates the
fetched vocabularies carry, llama.cpp's tokenizer for tokenizing the renderings, and a fresh model fed the
whole rendering for the cached multi-turn state. The vocabularies come from $GRAPHC_VOCAB_DIR, else
<repo>/.venv/share/graphc-vocab (`python tools/fetch_vocab.py .venv/share/graphc-vocab`).
"""
from __future__ import annotations

import ctypes
import io
import os
import string
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import graphc.models
from graphc.cli import main
from graphc.errors import GraphcError, RunError
from graphc.frontends.gguf import GGUFFile, write_gguf
from graphc.models.chat import (BUILTIN_TEMPLATES, ChatTemplate, ChatTemplateError, builtin_template,
                                choose_builtin, prompt_ids, template_for_model)
from graphc.models.testing import make_tiny_gguf
from graphc.models.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
FETCH = "python tools/fetch_vocab.py .venv/share/graphc-vocab"
WITH_TEMPLATE = ["qwen2", "phi-3", "command-r", "gemma-4"]     # the fetched vocabularies that carry one

# llama.cpp's test conversation (tests/test-chat-template.cpp)
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question"},
]
# the built-ins' renderings of CONVERSATION (with a generation prompt), from the published formats: ChatML,
# Llama 3 and Gemma as llama.cpp's test-chat-template.cpp expects them (its outputs carry no BOS: the Jinja
# templates put bos_token first), Llama 2 as Meta's Llama-2-chat template writes it (BOS before each [INST],
# content stripped, " {reply} </s>")
EXPECTED = {
    "chatml": ("", "", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
               "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
               "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question"
               "<|im_end|>\n<|im_start|>assistant\n"),
    "llama-3": ("<|begin_of_text|>", "<|eot_id|>",
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
                "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you"
                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant"
                "<|end_header_id|>\n\n"),
    "gemma": ("<bos>", "<eos>",
              "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
              "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"
              "I am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"
              "<start_of_turn>model\n"),
    "llama-2": ("<s>", "</s>",
                "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"),
}
LLAMA_CPP_NAME = {"chatml": "chatml", "llama-3": "llama3", "gemma": "gemma"}   # same output, BOS aside


def vocab_path(name: str) -> Path:
    d = Path(os.environ.get("GRAPHC_VOCAB_DIR") or REPO / ".venv" / "share" / "graphc-vocab")
    p = d / f"ggml-vocab-{name}.gguf"
    if not p.is_file():
        pytest.fail(f"{p} is missing: fetch llama.cpp's vocabularies with `{FETCH}`", pytrace=False)
    return p


def llama_cpp():
    try:
        import llama_cpp as lib
    except ImportError:
        pytest.fail("llama-cpp-python (the reference) is not installed: pip install llama-cpp-python", pytrace=False)
    return lib


def words(rng: np.random.Generator, n: int) -> str:
    pool = ["hello", "world", "the", "and", "of", "it", "is", "that", "graph", "cache", "token"]
    return " ".join(pool[i] if rng.random() < 0.7 else "".join(rng.choice(list(string.ascii_lowercase), 5))
                    for i in rng.integers(0, len(pool), n))


# --- templates ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(BUILTIN_TEMPLATES))
def test_builtin_templates_render_the_published_formats(name):
    bos, eos, want = EXPECTED[name]
    t = builtin_template(name, origin="m.gguf", bos_token=bos, eos_token=eos)
    assert t.render(CONVERSATION) == want
    # 2 turns without a system message, and the end of a finished conversation (no generation prompt)
    two = CONVERSATION[1:4]
    got = t.render(two, add_generation_prompt=False)
    if name == "chatml":
        assert got == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n" \
                      "<|im_start|>user\nWho are you<|im_end|>\n"
    elif name == "llama-3":
        assert got == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>" \
                      "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>" \
                      "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
    elif name == "gemma":
        assert got == "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n" \
                      "<start_of_turn>user\nWho are you<end_of_turn>\n"
    else:
        assert got == "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]"


@pytest.mark.parametrize("name", list(LLAMA_CPP_NAME))
def test_builtin_templates_match_llama_cpp(name, rng):
    """llama.cpp's own implementation of the format (llama_chat_apply_template), on random content."""
    lib = llama_cpp()
    conv = [{"role": "system", "content": words(rng, 4)}]
    for _ in range(int(rng.integers(1, 4))):
        conv += [{"role": "user", "content": words(rng, 5)}, {"role": "assistant", "content": words(rng, 3)}]
    conv.append({"role": "user", "content": words(rng, 6)})
    arr = (lib.llama_chat_message * len(conv))(*[lib.llama_chat_message(role=m["role"].encode(),
                                                                       content=m["content"].encode()) for m in conv])
    buf = ctypes.create_string_buffer(1 << 16)
    n = lib.llama_chat_apply_template(LLAMA_CPP_NAME[name].encode(), arr, len(conv), True, buf, len(buf))
    assert 0 < n < len(buf)
    want = buf.raw[:n].decode()
    assert builtin_template(name).render(conv) == want            # bos_token "" as llama.cpp's built-ins
    bos = EXPECTED[name][0]
    assert builtin_template(name, bos_token=bos).render(conv) == bos + want


def test_builtin_choice():
    assert choose_builtin(["<|start_header_id|>", "<|eot_id|>"], "llama") == "llama-3"
    assert choose_builtin(["<|im_start|>", "<|im_end|>"], "llama") == "chatml"
    assert choose_builtin(["<start_of_turn>", "<end_of_turn>"], "llama") == "gemma"
    assert choose_builtin([], "gemma3") == "gemma"
    assert choose_builtin([], "llama", spm=True) == "llama-2"
    assert choose_builtin([], "llama", spm=False) == choose_builtin([], "qwen2") == choose_builtin() == "chatml"


@pytest.mark.parametrize("name", WITH_TEMPLATE)
def test_templates_from_vocabulary_files(name, rng):
    """The file's tokenizer.chat_template renders as llama-cpp-python's Jinja2ChatFormatter (transformers'
    settings) renders it, with and without tools, and its tokens are llama.cpp's for that text."""
    llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    path = vocab_path(name)
    f = GGUFFile(path)
    source = f.metadata["tokenizer.chat_template"]
    tok = Tokenizer.from_gguf(f)
    model = SimpleNamespace(tokenizer=tok, chat_template=source, path=str(path))
    t = template_for_model(model)
    assert t.name == "tokenizer.chat_template" and template_for_model(model) is t      # compiled once
    conv = [{"role": "system", "content": words(rng, 4)}, {"role": "user", "content": words(rng, 5)},
            {"role": "assistant", "content": words(rng, 4)}, {"role": "user", "content": words(rng, 3) + " <|im_end|>"}]
    tools = [{"type": "function", "function": {"name": "weather", "description": words(rng, 3), "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "description": "the city"}},
        "required": ["city"]}}}]
    for extra in ({}, {"tools": tools}):
        text = t.render(conv, **extra)
        ref = Jinja2ChatFormatter(source, t.eos_token, t.bos_token)(messages=conv, **extra).prompt
        assert text == ref and conv[1]["content"] in text
    if name == "qwen2":      # the template's own format, spelled out
        c = [{"role": "user", "content": "Hi"}]
        assert t.render(c) == "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n" \
                              "Hi<|im_end|>\n<|im_start|>assistant\n"
    # tokens: llama.cpp's for the text, special tokens parsed; llama.cpp's common chat code drops a leading
    # BOS text when the vocabulary adds BOS itself, so BOS is there once
    lib = llama_cpp()
    llm = lib.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        ids = prompt_ids(tok, text)
        assert not tok.add_eos
        body = text[len(t.bos_token):] if tok.add_bos and t.bos_token and text.startswith(t.bos_token) else text
        assert ids == llm.tokenize(body.encode(), add_bos=tok.add_bos, special=True)
        if tok.add_bos:
            assert ids[0] == tok.bos_id and ids[1] != tok.bos_id
        assert ids != tok.encode(text, add_special=False, parse_special=False)   # the turn markers are tokens
    finally:
        llm.close()


HOSTILE = {
    "mro": ("{{ messages.__class__.__mro__ }}", "unsafe"),
    "class": ("{{ ''.__class__ }}", "unsafe"),
    "subclasses": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    "globals": ("{{ raise_exception.__globals__ }}", "unsafe"),
    "self": ("{{ self.__init__.__globals__['os'] }}", "unsafe"),
    "mutate": ("{{ messages.append({'role': 'x'}) }}", "unsafe"),
    "nested loops": ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "steps"),
    "bound loops": ("{% set r = range(99999) %}{% for a in r %}{% for b in r %}{{ '' }}{% endfor %}{% endfor %}",
                    "steps"),
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recurses"),
    "fork bomb": ("{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
                  " s"),
    "repeat": ("{{ 'x' * 10 ** 9 }}", "more than"),
    "power": ("{{ 7 ** 100000 }}", "bits"),
    "doubling": ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 "more than"),
    "width": ("{{ '%999999999d' % 1 }}", "width"),
    "format": ("{{ '{:>999999999}'.format(1) }}", "width"),
    "center": ("{{ 'x' | center(999999999) }}", "999999999"),
    "nested width": ("{{ '{:{w}}'.format(1, w=10 ** 9) }}", "1000000000"),
    "star width": ("{{ '%*d' % (10 ** 9, 1) }}", "1000000000"),
    "ljust": ("{{ 'x'.ljust(10 ** 9) }}", "1000000000"),
    "slices": ("{{ [1, 2] | slice(10 ** 9) | list }}", "1000000000"),
    "replace": ("{% set s = 'a' * 4000000 %}{{ s | replace('a', 'aaaa') }}", "more than"),
    "nested json": ("{% set l = ['x' * 1000000] %}{% set l = [l, l, l, l] %}{% set l = [l, l, l, l] %}"
                    "{{ l | tojson }}", "more than"),
    "output": ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "longer than"),
    "raise": ("{{ raise_exception('roles must alternate') }}", "roles must alternate"),
    "zero": ("{{ 1 // 0 }}", "ZeroDivisionError"),
    "syntax": ("{% for m in messages %}\n{{ m.content ", "syntax error"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_templates_are_clear_errors(case):
    source, words_ = HOSTILE[case]
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as e:
        ChatTemplate(source, "tokenizer.chat_template", "evil.gguf").render(CONVERSATION)
    msg = str(e.value)
    assert msg.startswith("evil.gguf: chat template (tokenizer.chat_template)") and words_ in msg, msg
    assert (" line 1: " in msg or " line 2: " in msg) == (case != "output"), msg
    assert "\n" not in msg and isinstance(e.value, GraphcError)
    assert time.monotonic() - t0 < 10          # bounded: MAX_STEPS / MAX_SECONDS, not a hang


def test_limits_and_error_lines():
    t = ChatTemplate("{% for a in range(50000) %}{% for b in range(50000) %}{% endfor %}{% endfor %}",
                     max_steps=10 ** 9, max_seconds=0.3)
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError, match="more than 0.3 s"):
        t.render(CONVERSATION)
    assert time.monotonic() - t0 < 3
    src = "line one\n{% for m in messages %}\n{{ m.content }}\n{% endfor %}\n{{ m.nothing.deeper }}"
    with pytest.raises(ChatTemplateError, match="line 5: UndefinedError"):
        ChatTemplate(src, origin="x.gguf").render(CONVERSATION)
    # a template that behaves renders after one that did not (the budget is per render)
    ok = ChatTemplate("{% for m in messages %}{{ m.role[0] }}{% endfor %}", max_steps=40)
    assert ok.render(CONVERSATION) == "suauau"
    with pytest.raises(ChatTemplateError, match="steps"):
        ok.render(CONVERSATION * 10)
    assert ok.render(CONVERSATION[:2]) == "su"
    for bad in ([], "hi", [{"content": "x"}], [("user", "x")]):
        with pytest.raises(ChatTemplateError):
            ok.render(bad)
    with pytest.raises(ChatTemplateError, match="no built-in chat template 'nope'"):
        builtin_template("nope")


def test_template_features_transformers_templates_use():
    src = ("{% for m in messages %}{% generation %}{{ m | tojson }}{% endgeneration %}{% if loop.first %}"
           "{% continue %}{% endif %}|{% endfor %}{{ strftime_now('%Y') | length }}{{ tools is none }}"
           "{{ extra }}{{ '%s-%d' % ('a', 3) }}{{ 'b' ~ 1 }}{{ '{}!'.format('c') }}")
    out = ChatTemplate(src).render([{"role": "user", "content": "é<"}, {"role": "assistant", "content": "x"}],
                                   extra="E")
    assert out == '{"role": "user", "content": "é<"}{"role": "assistant", "content": "x"}|4TrueEa-3b1c!'
    # large numbers in the data are fine (only sizes and widths are bounded)
    big = "{% macro f(x) %}{{ x }}{% endmacro %}{{ f(n) }} {{ '%d' % n }} {{ '{}'.format(n) }} {{ n | tojson }}"
    assert ChatTemplate(big).render(CONVERSATION, n=12345678901) == " ".join(["12345678901"] * 4)


# --- the model ------------------------------------------------------------------------------------------

CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


def with_metadata(src: str, dst: Path, **extra) -> str:
    """A copy of a GGUF file with metadata added (tokenizer.chat_template, ...)."""
    f = GGUFFile(src)
    md = f.typed_metadata()
    md.update(extra)
    write_gguf(dst, md, [(n, e.type, e.ne, f.raw(n)) for n, e in f.tensors.items()])
    return str(dst)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(plain tiny llama, the same with CHAT_TEMPLATE in its metadata, a hostile one)"""
    d = tmp_path_factory.mktemp("chat")
    seed = int(np.random.default_rng().integers(1 << 30))
    plain = make_tiny_gguf(d / "tiny.gguf", arch="llama", wtype="f32", seed=seed)
    tmpl = with_metadata(plain, d / "tiny-chat.gguf", **{"tokenizer.chat_template": CHAT_TEMPLATE})
    evil = with_metadata(plain, d / "evil.gguf", **{"tokenizer.chat_template": "{{ ''.__class__.__mro__ }}"})
    return plain, tmpl, evil


def test_model_template_choice_and_bos(tiny):
    plain, tmpl, evil = tiny
    m = graphc.models.load(plain, target="ref", n_ctx=64)
    assert m.chat_template is None and template_for_model(m).name == "llama-2"     # llama + SentencePiece
    m2 = graphc.models.load(tmpl, target="ref", n_ctx=64)
    assert m2.chat_template == CHAT_TEMPLATE and template_for_model(m2).name == "tokenizer.chat_template"
    assert template_for_model(m2, "chatml").name == "chatml"
    tok = m.tokenizer
    for text in ("<s>[INST] hi [/INST]", "[INST] hi [/INST]"):
        ids = prompt_ids(tok, text)
        assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1                  # never two BOS
    assert prompt_ids(tok, "a</s><s>b").count(tok.bos_id) == 2                      # one added, one in the text
    with pytest.raises(ChatTemplateError) as e:
        graphc.models.load(evil, target="ref", n_ctx=64).chat([{"role": "user", "content": "hi"}])
    assert "evil.gguf: chat template (tokenizer.chat_template) line 1: unsafe template" in str(e.value)


def test_tokenize_and_generate_parse_special(tiny, rng):
    m = graphc.models.load(tiny[0], target="ref", n_ctx=128)
    text = f"{words(rng, 2)}</s>{words(rng, 2)}"
    plain, special = m.tokenize(text), m.tokenize(text, parse_special=True)
    assert m.tokenizer.eos_id in special and m.tokenizer.eos_id not in plain
    assert special == m.tokenizer.encode(text, parse_special=True) and plain == m.tokenizer.encode(text)
    m.generate(text, max_tokens=1)                         # the API parses special tokens by default
    assert m.stats.prompt_tokens == len(special)
    m.reset_state()
    m.generate(text, max_tokens=1, parse_special=False)
    assert m.stats.prompt_tokens == len(plain)


def test_chat_keeps_the_cache_between_turns(tiny, rng):
    path = tiny[1]
    m = graphc.models.load(path, target="ref", n_ctx=256)
    tok = m.tokenizer
    msgs = [{"role": "system", "content": words(rng, 3)}, {"role": "user", "content": words(rng, 4)}]
    r1 = m.chat(msgs, max_tokens=1)          # one sampled token, never fed: the state holds the rendering alone
    t1 = prompt_ids(tok, m.chat_prompt)
    assert m.chat_reused == 0 and m.n_past == len(t1) and m.stats.prompt_tokens == len(t1)
    assert t1[0] == tok.bos_id and t1[1] != tok.bos_id   # the template's <s> is the BOS: not added twice

    msgs += [{"role": "assistant", "content": r1}, {"role": "user", "content": words(rng, 3)}]
    out: list[int] = []
    r2 = m.chat(msgs, max_tokens=6, on_token=out.append)
    t2 = prompt_ids(tok, m.chat_prompt)
    assert t2[:len(t1)] == t1 and m.chat_reused == len(t1)               # only the suffix was fed
    assert m.stats.prompt_tokens == len(t2) - len(t1)
    assert m.n_past == len(t2) + len(out) - 1 and r2 == m.detokenize(out[:-1] if out[-1] in m.eos_ids else out)

    fresh = graphc.models.load(path, target="ref", n_ctx=256)          # the same logits from a fresh model
    x = int(rng.integers(3, m.n_vocab))
    held = t2 + out[:-1]
    want = fresh.logits(held + [x])[-1]
    got = m.logits([x])[-1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    fresh.reset_state()
    assert fresh.chat(msgs, max_tokens=6) == r2 and fresh.chat_reused == 0

    # the third turn reuses the cache exactly when what it holds begins the new rendering
    m.reset_state()
    m.chat(msgs, max_tokens=6)
    held = list(m._chat_ids)
    assert m.n_past == len(held) and held[:len(t2)] == t2
    msgs3 = msgs + [{"role": "assistant", "content": r2}, {"role": "user", "content": words(rng, 2)}]
    m.chat(msgs3, max_tokens=2)
    t3 = prompt_ids(tok, m.chat_prompt)
    assert m.chat_reused == (len(held) if t3[:len(held)] == held else 0)
    # a conversation that changed earlier on starts over; so does any use of the state in between
    m.chat([{"role": "system", "content": "other " + words(rng, 2)}] + msgs3[1:], max_tokens=2)
    assert m.chat_reused == 0 and m.n_past == len(prompt_ids(tok, m.chat_prompt)) + 1
    m.logits([5])
    m.chat(msgs3, max_tokens=1)
    assert m.chat_reused == 0


def test_chat_errors(tiny):
    m = graphc.models.load(tiny[0], target="ref", n_ctx=32)
    with pytest.raises(ChatTemplateError, match="empty"):
        m.chat([])
    with pytest.raises(RunError, match="context"):
        m.chat([{"role": "user", "content": "hello world " * 20}], max_tokens=4)
    m.tokenizer, m.__dict__["_chat_templates"] = None, {}
    with pytest.raises(RunError, match="no tokenizer"):
        m.chat([{"role": "user", "content": "hi"}])


# --- the command line -----------------------------------------------------------------------------------

class Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool = False):
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def api_replies(path: str, turns: list[str], n: int, system: str | None = None) -> list[str]:
    m = graphc.models.load(path, target="ref", n_ctx=256)
    msgs = [{"role": "system", "content": system}] if system is not None else []
    out = []
    for text in turns:
        msgs.append({"role": "user", "content": text})
        out.append(m.chat(msgs, max_tokens=n))
        msgs.append({"role": "assistant", "content": out[-1]})
    return out


def test_cli_chat_prints_the_reply(tiny, rng, capsys, tmp_path):
    prompt, system = words(rng, 4), words(rng, 3)
    assert main(["generate", tiny[1], "--chat", "-p", prompt, "--system", system, "-n", "5", "--target", "ref",
                 "--ctx", "256"]) == 0
    out, err = capsys.readouterr()
    assert out == api_replies(tiny[1], [prompt], 5, system)[0] + "\n"
    assert "chat: 1 turn(s)" in err and "tokens/s" in err
    # the override: a built-in's name or a template file
    tmp = tmp_path / "t.jinja"
    tmp.write_text(BUILTIN_TEMPLATES["chatml"])
    m = graphc.models.load(tiny[1], target="ref")
    want = m.chat([{"role": "user", "content": prompt}], max_tokens=3, template="chatml") + "\n"
    for override in ("chatml", str(tmp)):
        assert main(["generate", tiny[1], "--chat", "-p", prompt, "-n", "3", "--target", "ref",
                     "--chat-template", override]) == 0
        assert capsys.readouterr().out == want


def test_cli_interactive_keeps_the_conversation(tiny, rng, capsys, monkeypatch):
    turns = [words(rng, 3), words(rng, 2)]
    monkeypatch.setattr(sys, "stdin", Stdin(f"{turns[0]}\n\n   \n{turns[1]}\n"))
    assert main(["generate", tiny[1], "-i", "-n", "4", "--target", "ref", "--ctx", "256"]) == 0
    out, err = capsys.readouterr()
    replies = api_replies(tiny[1], turns, 4)
    assert out == "".join(r + "\n" for r in replies)             # no prompt marker: stdin is not a terminal
    assert "chat: 2 turn(s)" in err
    # a terminal gets llama.cpp's "> " before each turn; --prompt is the first turn; EOF ends cleanly
    monkeypatch.setattr(sys, "stdin", Stdin(f"{turns[1]}\n", tty=True))
    assert main(["generate", tiny[1], "-i", "-p", turns[0], "-n", "4", "--target", "ref", "--ctx", "256"]) == 0
    out = capsys.readouterr().out
    assert out == f"{replies[0]}\n> {replies[1]}\n> \n"
    monkeypatch.setattr(sys, "stdin", Stdin(""))
    assert main(["generate", tiny[1], "-i", "--target", "ref"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_parses_special_tokens_unless_told_not_to(tiny, rng, capsys):
    prompt = f"{words(rng, 2)}</s><s>{words(rng, 2)}"
    m = graphc.models.load(tiny[0], target="ref")
    for flags, special in (([], True), (["--no-parse-special"], False)):
        assert main(["generate", tiny[0], "-p", prompt, "-n", "3", "--target", "ref", *flags]) == 0
        out, err = capsys.readouterr()
        ids = m.tokenize(prompt, parse_special=special)
        assert f"prompt: {len(ids)} tokens" in err
        m.reset_state()
        assert out == m.detokenize(m.generate(ids, max_tokens=3)) + "\n"
        m.reset_state()


def test_cli_chat_errors(tiny, capsys):
    plain, _, evil = tiny
    assert main(["generate", plain, "--chat", "--prompt-ids", "1", "2"]) == 2
    assert "--prompt-ids" in capsys.readouterr().err
    assert main(["generate", plain, "-p", "x", "--system", "s"]) == 2
    assert "--chat and -i only" in capsys.readouterr().err
    assert main(["generate", plain, "--chat"]) == 2
    assert "-p/--prompt" in capsys.readouterr().err
    assert main(["generate", evil, "--chat", "-p", "hi", "--target", "ref"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evil.gguf: chat template (tokenizer.chat_template) line 1: unsafe" in err
    assert main(["generate", plain, "--chat", "-p", "hi", "--target", "ref", "--chat-template", "no-such"]) == 1
    assert "neither a built-in" in capsys.readouterr().err
