"""Chat templates: a conversation rendered in a model's prompt format, and chat turns over a model's state.

    tmpl = template_for_model(model)              # the GGUF's tokenizer.chat_template, else a built-in
    text = tmpl.render([{"role": "user", "content": "Hi"}])
    reply = model.chat(messages, max_tokens=128)  # graphc.models.base.Model.chat -> chat_turn below

A template read from a model file (or any file) is untrusted code. It is rendered only by jinja2's
ImmutableSandboxedEnvironment (no access to internals such as `__class__`, no mutation of the inputs), set
up as Hugging Face transformers does (trim_blocks, lstrip_blocks, loop controls, the `{% generation %}`
tag, tojson without HTML escaping) with the variables templates expect: messages, add_generation_prompt,
bos_token, eos_token, tools (None), raise_exception(msg), strftime_now(fmt), plus any the caller passes.
Rendering is bounded as well: at most MAX_STEPS loop iterations, calls and lookups and MAX_SECONDS per
render, no string or list past MAX_VALUE items made by one operation (repetition, concatenation,
formatting widths, filters), no integer past MAX_INT_BITS bits, rendered text at most MAX_CHARS. Every
failure (a syntax error, raise_exception, an unsafe access, an exception inside, a limit) is one
ChatTemplateError (a graphc RunError) naming the model file, the template and the template line.

Built-in templates, for files without one (each the published format, written as Jinja; \\n: newline):
  llama-2  Meta's Llama-2-chat:
           <s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {reply} </s><s>[INST] {user} [/INST]
  llama-3  Meta's Llama-3-Instruct:
           <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>...
  chatml   ChatML (OpenHermes, Qwen): <|im_start|>{role}\\n{content}<|im_end|>\\n ... <|im_start|>assistant\\n
  gemma    Gemma 3's, text only (a system message goes before the first user turn):
           <bos><start_of_turn>user\\n{system}\\n\\n{user}<end_of_turn>\\n<start_of_turn>model\\n...
Which one a file without a template gets (choose_builtin): the vocabulary's turn tokens decide first
(<|start_header_id|> -> llama-3, <|im_start|> -> chatml, <start_of_turn> -> gemma); else the architecture
(gemma* -> gemma; llama with a SentencePiece vocabulary -> llama-2; qwen2 -> chatml); else chatml, which
is what llama.cpp falls back to for a model without a template.

Chat turns (chat_turn): the rendering is tokenized with special tokens parsed and BOS added only when the
vocabulary asks for it and the text does not already start with it (llama.cpp's rule). When the tokens
the model's state holds from the previous turn are a prefix of the new rendering, only the new suffix is
fed (the KV cache is kept); otherwise the state is reset and the whole rendering is fed.
"""
from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from graphc.errors import RunError

MAX_SOURCE = 1 << 20          # characters of template text
MAX_CHARS = 1 << 22           # characters of rendered text
MAX_VALUE = 1 << 22           # items (characters, elements) one operation may make; largest int argument
MAX_INT_BITS = 1 << 14        # bits of an integer an operation may make
MAX_STEPS = 1_000_000         # loop iterations + calls + attribute/item lookups per render
MAX_SECONDS = 5.0             # per render

BUILTIN_TEMPLATES: dict[str, str] = {
    # meta-llama/Llama-2-7b-chat-hf
    "llama-2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}"
        "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
        "{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
        "{% endfor %}"),
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama-3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        "+ message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
    # teknium/OpenHermes-2.5-Mistral-7B (ChatML)
    "chatml": (
        "{% for message in messages %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    # google/gemma-3-*-it, text-only part: a system message is prefixed to the first user turn
    "gemma": (
        "{{ bos_token }}"
        "{%- if messages[0]['role'] == 'system' -%}"
        "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
        "{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}"
        "{%- for message in loop_messages -%}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
        "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}"
        "{%- endif -%}"
        "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
        "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
        "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
        "{{ message['content'] | trim }}"
        "{{ '<end_of_turn>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"),
}


class ChatTemplateError(RunError):
    """A chat template that cannot be used: bad syntax, an error it raised, unsafe access, a limit."""


class _Limit(Exception):
    """A rendering bound was reached (raised inside the template, reported as a ChatTemplateError)."""


# --- bounds ---------------------------------------------------------------------------------------------

def _weight(v: Any, budget: int = MAX_VALUE) -> int:
    """Characters and elements in v (nested containers counted as often as they are referenced), stopping
    once past budget: what turning v into text can make."""
    if isinstance(v, (str, bytes)):
        return len(v)
    if isinstance(v, Mapping):
        items: Iterable[Any] = (x for kv in v.items() for x in kv)
        total = len(v)
    elif isinstance(v, (list, tuple, set, frozenset)):
        items, total = v, len(v)
    else:
        return 1
    for x in items:
        if total > budget:
            break
        if isinstance(x, (str, bytes, Mapping, list, tuple, set, frozenset)):
            total += _weight(x, budget - total)
    return total


def _check_value(v: Any, what: str) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        if v.bit_length() > MAX_INT_BITS:
            raise _Limit(f"{what} makes an integer of more than {MAX_INT_BITS} bits")
    elif _weight(v) > MAX_VALUE:
        raise _Limit(f"{what} makes a value of more than {MAX_VALUE} characters or elements")
    return v


def _check_ints(args: Iterable[Any], what: str) -> None:
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_VALUE:
            raise _Limit(f"{what} is given {a}, more than the limit of {MAX_VALUE}")


_NUMBER = re.compile(r"\d+")


def _check_format(fmt: Any, what: str) -> None:
    """A %- or {}-format string must not ask for widths or precisions past MAX_VALUE."""
    if isinstance(fmt, str):
        for m in _NUMBER.finditer(fmt):
            s = m.group().lstrip("0")
            if len(s) > len(str(MAX_VALUE)) or (s and int(s) > MAX_VALUE):
                raise _Limit(f"{what}: format width {m.group()[:20]} is more than the limit of {MAX_VALUE}")


# filters that do not make text out of their input (no size check of the arguments before the call)
_PLAIN_FILTERS = frozenset({"length", "count", "first", "last", "default", "d", "attr", "select", "reject",
                            "selectattr", "rejectattr", "map", "list", "sort", "dictsort", "unique", "reverse",
                            "groupby", "sum", "min", "max", "items", "abs", "int", "float", "round", "batch",
                            "slice", "random"})
# filters whose number arguments (after the value) size what they make: those are bounded by MAX_VALUE
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice", "tojson", "pprint",
                            "format", "replace", "urlize", "round", "filesizeformat"})
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")         # str.format with a width taken from an argument: {:{w}}


def _guard_filter(env: "_Env", name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if hasattr(f, "jinja_pass_arg") else 0      # context / eval context / environment first

    @functools.wraps(f)                                   # keeps jinja_pass_arg
    def guarded(*args: Any, **kwargs: Any) -> Any:
        env.tick()
        what = f"filter {name}"
        vals = args[skip:]
        if name in _SIZED_FILTERS:
            _check_ints(vals[1:], what)
            _check_ints(kwargs.values(), what)
        if name not in _PLAIN_FILTERS:
            for a in (*vals, *kwargs.values()):
                _check_value(a, what)
            if name == "format" and vals:
                _check_format(vals[0], what)
            elif name == "replace" and len(vals) >= 3 and all(isinstance(x, str) for x in vals[:3]):
                s, old, new = vals[:3]
                n = s.count(old) if old else len(s) + 1
                if len(s) + n * (len(new) - len(old)) > MAX_VALUE:
                    raise _Limit(f"{what} would make more than {MAX_VALUE} characters")
            elif name == "indent" and vals and isinstance(vals[0], str):
                width = vals[1] if len(vals) > 1 else kwargs.get("width", 4)
                w = len(width) if isinstance(width, str) else int(width) if isinstance(width, int) else 0
                if len(vals[0]) + (vals[0].count("\n") + 1) * w > MAX_VALUE:
                    raise _Limit(f"{what} would make more than {MAX_VALUE} characters")
        return _check_value(f(*args, **kwargs), what)
    return guarded


class _Budget(threading.local):
    steps = 0
    deadline = 0.0


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox with transformers' options and graphc's bounds: every loop iteration, call, attribute or
    item lookup, operator, filter and concatenation goes through a check (see the module doc)."""

    intercepted_binops = frozenset({"+", "*", "**", "%", "//"})

    def __init__(self, max_steps: int = MAX_STEPS, max_seconds: float = MAX_SECONDS):
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, loopcontrols],
                         finalize=self._finalize)
        self.max_steps, self.max_seconds = max_steps, max_seconds
        self.budget = _Budget()
        self.filters["tojson"] = _tojson
        self.filters = {n: _guard_filter(self, n, f) for n, f in self.filters.items()}
        for name in ("lipsum", "cycler", "joiner"):          # nothing a chat template needs
            self.globals.pop(name, None)
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now

    # --- the budget
    def begin(self) -> None:
        self.budget.steps = 0
        self.budget.deadline = time.monotonic() + self.max_seconds

    def tick(self) -> None:
        b = self.budget
        b.steps += 1
        if b.steps > self.max_steps:
            raise _Limit(f"rendering takes more than {self.max_steps} steps (loop iterations, calls, lookups)")
        if not b.steps & 1023 and time.monotonic() > b.deadline:
            raise _Limit(f"rendering takes more than {self.max_seconds:g} s")

    def graphc_iter(self, iterable: Any) -> Any:
        """Every for loop iterates through this (the parser wraps each loop's iterable)."""
        for x in iterable:
            self.tick()
            yield x

    def graphc_concat(self, parts: Sequence[Any]) -> str:
        """The ~ operator (the parser turns each into a call of this)."""
        self.tick()
        total = 0
        for p in parts:
            total += _weight(p, MAX_VALUE - total)
            if total > MAX_VALUE:
                raise _Limit(f"~ makes a string of more than {MAX_VALUE} characters")
        return "".join(map(str, parts))

    def _finalize(self, value: Any) -> Any:
        """Every {{ expression }} before it becomes text."""
        return _check_value(value, "{{ }}") if not isinstance(value, str) else value

    # --- the sandbox's hooks
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Hooks().visit(super()._parse(source, name, filename))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.tick()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(obj, f"str.{attribute}")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.tick()
        if isinstance(obj, str) and argument in ("format", "format_map"):
            _check_format(obj, f"str.{argument}")
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.tick()
        what = f"calling {getattr(__obj, '__name__', type(__obj).__name__)}"
        if isinstance(__obj, LoopContext) and args:         # a recursive loop's next level
            args = (__self.graphc_iter(args[0]),) + args[1:]
        elif not isinstance(__obj, Macro) and getattr(__obj, "__func__", None) not in _OWN_HOOKS:
            target = getattr(__obj, "__wrapped__", __obj)    # str.format comes wrapped by the sandbox
            owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
            if __obj is __self.globals.get("range") or (isinstance(owner, (str, bytes)) and (
                    name not in ("format", "format_map") or _NESTED_FIELD.search(str(owner)))):
                _check_ints(args, what)                     # widths, counts, lengths
                _check_ints(kwargs.values(), what)
            for a in (*args, *kwargs.values()):
                _check_value(a, what)
            if name == "replace" and isinstance(owner, str) and len(args) >= 2 and isinstance(args[0], str) \
                    and isinstance(args[1], str):
                old, new = args[0], args[1]
                n = owner.count(old) if old else len(owner) + 1
                if len(owner) + n * (len(new) - len(old)) > MAX_VALUE:
                    raise _Limit(f"{what} would make more than {MAX_VALUE} characters")
        return _check_value(super().call(__context, __obj, *args, **kwargs), what)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        what = f"operator {operator}"
        ints = [isinstance(x, int) and not isinstance(x, bool) for x in (left, right)]
        if operator == "*":
            if all(ints):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise _Limit(f"{what} makes an integer of more than {MAX_INT_BITS} bits")
            elif any(ints):
                n, seq = (left, right) if ints[0] else (right, left)
                if n > 0 and _weight(seq) * n > MAX_VALUE:
                    raise _Limit(f"{what} makes a value of more than {MAX_VALUE} characters or elements")
        elif operator == "**" and all(ints):
            if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
                raise _Limit(f"{what} makes an integer of more than {MAX_INT_BITS} bits")
        elif operator == "+" and not any(ints):
            if _weight(left) + _weight(right) > MAX_VALUE:
                raise _Limit(f"{what} makes a value of more than {MAX_VALUE} characters or elements")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, what)
            if "*" in left:                                  # a width taken from the arguments
                _check_ints(right if isinstance(right, tuple) else (right,), what)
            _check_value(right, what)
        return _check_value(super().call_binop(context, operator, left, right), what)


_OWN_HOOKS = (_Env.graphc_iter, _Env.graphc_concat)


class _Hooks(NodeTransformer):
    """Rewrites a parsed template so that loops and ~ go through the environment's checks
    (environment attributes: a template cannot rebind them)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("graphc_iter"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("graphc_concat"), [nodes.List(node.nodes, lineno=node.lineno)],
                          [], None, None, lineno=node.lineno)


class _GenerationTag(Extension):
    """transformers' {% generation %} ... {% endgeneration %} (marks assistant text): rendered as its body."""
    tags = {"generation"}

    def parse(self, parser: Any) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: Any) -> None:
    raise jinja2.TemplateError(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt)[:256])


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """transformers' tojson: plain json.dumps (no HTML escaping), non-ASCII kept."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# --- templates ------------------------------------------------------------------------------------------

class ChatTemplate:
    """A compiled chat template. source: Jinja text; name: what it is (a built-in's name, the metadata key
    or a file); origin: where it came from (the model file), named in every error."""

    def __init__(self, source: str, name: str = "custom", origin: str = "<template>", bos_token: str = "",
                 eos_token: str = "", max_steps: int = MAX_STEPS, max_seconds: float = MAX_SECONDS,
                 max_chars: int = MAX_CHARS):
        self.source, self.name, self.origin = source, name, origin
        self.bos_token, self.eos_token = bos_token, eos_token
        self.max_chars = max_chars
        if not isinstance(source, str):
            raise self._error(f"the template must be text, not {type(source).__name__}")
        if len(source) > MAX_SOURCE:
            raise self._error(f"the template is {len(source)} characters long, more than the limit of {MAX_SOURCE}")
        self.env = _Env(max_steps, max_seconds)
        try:
            self._template = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise self._error(f"syntax error: {e.message}", e.lineno) from None
        except (jinja2.TemplateError, _Limit, RecursionError, MemoryError, ValueError, TypeError) as e:
            raise self._error(f"{type(e).__name__}: {e}") from None

    def _error(self, what: str, line: int | None = None) -> ChatTemplateError:
        where = f" line {line}" if line else ""
        return ChatTemplateError(f"{self.origin}: chat template ({self.name}){where}: {' '.join(what.split())}")

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
               **variables: Any) -> str:
        """The conversation as prompt text. messages: [{"role": ..., "content": ...}, ...]; variables
        override or add to the standard ones (bos_token, eos_token, tools, ...)."""
        ctx = {"messages": _messages(messages), "add_generation_prompt": bool(add_generation_prompt),
               "bos_token": self.bos_token, "eos_token": self.eos_token, "tools": None, "documents": None,
               **variables}
        self.env.begin()
        out: list[str] = []
        n = 0
        try:
            for piece in self._template.generate(**ctx):
                n += len(piece)
                if n > self.max_chars:
                    raise _Limit(f"the rendered text is longer than {self.max_chars} characters")
                out.append(piece)
        except Exception as e:       # noqa: BLE001 - whatever the template did, one clear error
            raise self._error(_describe(e), _template_line(e)) from None
        return "".join(out)

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r}, origin={self.origin!r})"


def _describe(e: BaseException) -> str:
    if isinstance(e, _Limit):
        return f"stopped: {e}"
    if isinstance(e, SecurityError):
        return f"unsafe template: {e}"
    if isinstance(e, jinja2.TemplateError) and type(e) is jinja2.TemplateError:
        return f"the template raised an error: {e}"
    if isinstance(e, RecursionError):
        return "the template recurses too deeply"
    return f"{type(e).__name__}: {e}"


def _template_line(e: BaseException) -> int | None:
    """The template line an exception came from (jinja2 rewrites tracebacks to point at template lines)."""
    line = getattr(e, "lineno", None)
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ChatTemplateError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                                f"not {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or "content" not in m:
            raise ChatTemplateError(f"messages[{i}] must be a dict with a 'role' (text) and a 'content', "
                                    f"got {m!r:.80}")
        out.append(dict(m))
    if not out:
        raise ChatTemplateError("messages is empty: a chat needs at least one message")
    return out


def choose_builtin(token_texts: "Iterable[str] | None" = None, arch: str | None = None,
                   spm: bool = False) -> str:
    """The built-in template for a model whose file has none (see the module doc for the rule)."""
    have = set(token_texts or ())
    if "<|start_header_id|>" in have and "<|eot_id|>" in have:
        return "llama-3"
    if "<|im_start|>" in have and "<|im_end|>" in have:
        return "chatml"
    if "<start_of_turn>" in have and "<end_of_turn>" in have:
        return "gemma"
    arch = (arch or "").lower()
    if arch.startswith("gemma"):
        return "gemma"
    if arch == "llama" and spm:
        return "llama-2"
    return "chatml"


def builtin_template(name: str, origin: str = "<built-in>", bos_token: str = "", eos_token: str = "",
                     **limits: Any) -> ChatTemplate:
    if name not in BUILTIN_TEMPLATES:
        raise ChatTemplateError(f"no built-in chat template {name!r}; built-in: {', '.join(BUILTIN_TEMPLATES)}")
    return ChatTemplate(BUILTIN_TEMPLATES[name], name, origin, bos_token, eos_token, **limits)


def template_for_model(model: Any, override: str | None = None) -> ChatTemplate:
    """The chat template of a model (graphc.models.base.Model with a tokenizer): override (a built-in's
    name, a template file, or template text), else the file's tokenizer.chat_template, else a built-in."""
    tok = getattr(model, "tokenizer", None)
    origin = os.path.basename(str(getattr(model, "path", None) or "<model>"))
    if tok is None:
        raise RunError(f"{origin}: the model has no tokenizer, so it cannot chat")
    cache = model.__dict__.setdefault("_chat_templates", {})
    key = override or ""
    if key in cache:
        return cache[key]
    bos, eos = _token_text(tok, "bos_id"), _token_text(tok, "eos_id")
    if override is None:
        source = getattr(model, "chat_template", None)
        if isinstance(source, str) and source.strip():
            t = ChatTemplate(source, "tokenizer.chat_template", origin, bos, eos)
        else:
            cfg = getattr(model, "cfg", None)
            name = choose_builtin(getattr(tok, "tokens", ()), getattr(cfg, "arch", None),
                                  getattr(tok, "is_spm", False))
            t = builtin_template(name, origin, bos, eos)
    elif override in BUILTIN_TEMPLATES:
        t = builtin_template(override, origin, bos, eos)
    elif os.path.isfile(override):
        t = ChatTemplate(read_template_file(override), os.path.basename(override), origin, bos, eos)
    elif "{{" in override or "{%" in override:
        t = ChatTemplate(override, "custom", origin, bos, eos)
    else:
        raise ChatTemplateError(f"chat template {override!r} is neither a built-in ({', '.join(BUILTIN_TEMPLATES)}) "
                                f"nor a file nor template text")
    cache[key] = t
    return t


def read_template_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SOURCE * 4 + 1)
    except OSError as e:
        raise ChatTemplateError(f"{path}: cannot read the chat template: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ChatTemplateError(f"{path}: the chat template is not UTF-8 text (byte {e.start})") from None
    if len(text) > MAX_SOURCE:
        raise ChatTemplateError(f"{path}: the chat template is longer than {MAX_SOURCE} characters")
    return text


def _token_text(tok: Any, role: str) -> str:
    tid = getattr(tok, role, None)
    if tid is None:
        return ""
    return tok.token_to_piece(tid, special=True).decode("utf-8", "replace")


# --- chat turns -----------------------------------------------------------------------------------------

def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """A rendered conversation's token ids: special tokens parsed, BOS added when the vocabulary adds one
    and the text does not start with it (llama.cpp's rule: never two BOS), EOS never added."""
    ids = list(tokenizer.encode(text, add_special=False, parse_special=True))
    bos = tokenizer.bos_id
    if tokenizer.add_bos and bos is not None:
        bos_text = _token_text(tokenizer, "bos_id")
        if not (bos_text and text.startswith(bos_text)) and (not ids or ids[0] != bos):
            ids.insert(0, bos)
    return ids


def chat_turn(model: Any, messages: Sequence[Mapping[str, Any]], template: str | None = None,
              add_generation_prompt: bool = True, template_vars: Mapping[str, Any] | None = None,
              **generate_opts: Any) -> str:
    """The assistant's reply to messages (the body of Model.chat): render, tokenize, feed the new suffix
    (or everything, after a reset), generate until an end-of-generation token or max_tokens."""
    tmpl = template_for_model(model, template)
    text = tmpl.render(messages, add_generation_prompt=add_generation_prompt, **(template_vars or {}))
    ids = prompt_ids(model.tokenizer, text)
    held = getattr(model, "_chat_ids", None)
    if held is not None and model.n_past == len(held) and len(held) < len(ids) and ids[:len(held)] == held:
        feed = ids[len(held):]            # the state holds the previous turns: feed what is new
    else:
        held, feed = [], ids
        model.reset_state()
    model._chat_ids = None
    model.chat_reused, model.chat_prompt = len(held), text
    out = model.generate(feed, **generate_opts)
    fed = ids + out[:-1]                 # generate feeds every sampled token but the last
    if model.n_past == len(fed):         # else the state changed in ways this cannot follow: reset next turn
        model._chat_ids = fed
    eog = set(model.eos_ids)
    reply = out[:-1] if out and out[-1] in eog else out
    return model.detokenize(reply)


__all__ = ["BUILTIN_TEMPLATES", "ChatTemplate", "ChatTemplateError", "builtin_template", "chat_turn",
           "choose_builtin", "prompt_ids", "read_template_file", "template_for_model"]
