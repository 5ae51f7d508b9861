"""GraphViz DOT syntax: a small parser for the subset graph dumps use, and graphc's attribute codec.

Parses `[strict] (di)graph [ID] { ... }` with node, edge (chains), attribute, `a = b` and subgraph
statements; quoted strings scanned as graphviz does (`\\"` is a quote, `\\\\` a kept pair,
backslash-newline continues, `+` concatenates), bare
IDs, numerals and HTML strings; `//`, `/* */` and `#` comments. It keeps the line of every statement
so the frontends can point at it. It does not interpret anything: dot.py gives the statements meaning.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from graphc.errors import ParseError
from graphc.util import read_at_most

MAX_FILE_BYTES = 256 << 20
MAX_TOKEN_CHARS = 1 << 20       # one ID or string (graphc's base64 leaf data is one attribute)
MAX_DEPTH = 64                  # nested subgraphs
MAX_STATEMENTS = 1 << 22


@dataclass
class DotNode:
    id: str
    line: int
    attrs: dict[str, str] = field(default_factory=dict)
    declared: bool = False        # has its own node statement (not only named by an edge)


@dataclass
class DotEdge:
    src: str
    src_port: str | None
    dst: str
    dst_port: str | None
    attrs: dict[str, str]
    line: int


@dataclass
class DotGraph:
    directed: bool
    name: str | None
    attrs: dict[str, str]                                   # graph attributes (top level)
    nodes: dict[str, DotNode]                               # in order of first mention
    edges: list[DotEdge]
    clusters: list[tuple[str, list[str], dict[str, str]]]   # subgraph name, node ids, attrs


_PUNCT = {"{", "}", "[", "]", ";", ",", "=", ":", "+"}
_ID_RE = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*")
_NUM_RE = re.compile(r"-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)")
_KEYWORDS = {"strict", "graph", "digraph", "node", "edge", "subgraph"}


@dataclass
class _Tok:
    kind: str       # id | str | html | punct | arrow | eof
    value: str
    line: int
    col: int


def _lex(text: str, file: str | None) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n, line, bol = 0, len(text), 1, 0

    def err(msg: str) -> ParseError:
        return ParseError(msg, file, line, i - bol + 1)

    while i < n:
        c = text[i]
        if c == "\n":
            line, i = line + 1, i + 1
            bol = i
            continue
        if c in " \t\r\f\v\ufeff":
            i += 1
            continue
        if c == "#" and text[bol:i].strip() == "":      # preprocessor-style line: ignored
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise err("unterminated /* comment")
            line += text.count("\n", i, j)
            if "\n" in text[i:j]:
                bol = text.rfind("\n", i, j) + 1
            i = j + 2
            continue
        start_line, col = line, i - bol + 1
        if c == '"':
            buf: list[str] = []
            j = i + 1
            size = 0
            while True:
                k = j
                while k < n and text[k] not in '"\\\n':
                    k += 1
                buf.append(text[j:k])
                size += k - j
                if size > MAX_TOKEN_CHARS:
                    i = k
                    raise err(f"a quoted string longer than {MAX_TOKEN_CHARS} characters")
                if k >= n:
                    raise ParseError("unterminated quoted string", file, start_line, col)
                ch = text[k]
                if ch == '"':
                    j = k + 1
                    break
                if ch == "\n":
                    buf.append("\n")
                    line, bol, j = line + 1, k + 1, k + 1
                    continue
                # a backslash (as graphviz scans it): \" is a quote, \\ stays as a pair, backslash-newline
                # continues the line, anything else stays
                nxt = text[k + 1] if k + 1 < n else ""
                if nxt == "\\":
                    buf.append("\\\\")
                    j = k + 2
                elif nxt == '"':
                    buf.append('"')
                    j = k + 2
                elif nxt == "\n":
                    line, bol, j = line + 1, k + 2, k + 2
                elif text.startswith("\r\n", k + 1):
                    line, bol, j = line + 1, k + 3, k + 3
                else:
                    buf.append("\\")
                    j = k + 1
            toks.append(_Tok("str", "".join(buf), start_line, col))
            i = j
            continue
        if c == "<":
            depth, j = 0, i
            while j < n:
                if text[j] == "<":
                    depth += 1
                elif text[j] == ">":
                    depth -= 1
                    if depth == 0:
                        break
                elif text[j] == "\n":
                    line, bol = line + 1, j + 1
                j += 1
            if j >= n:
                raise ParseError("unterminated <...> string", file, start_line, col)
            if j - i > MAX_TOKEN_CHARS:
                raise ParseError(f"a <...> string longer than {MAX_TOKEN_CHARS} characters", file, start_line, col)
            toks.append(_Tok("html", text[i + 1:j], start_line, col))
            i = j + 1
            continue
        if text.startswith("->", i) or text.startswith("--", i):
            toks.append(_Tok("arrow", text[i:i + 2], line, col))
            i += 2
            continue
        if c in _PUNCT:
            toks.append(_Tok("punct", c, line, col))
            i += 1
            continue
        m = _ID_RE.match(text, i) or _NUM_RE.match(text, i)
        if m is None:
            raise err(f"unexpected character {c!r}")
        if m.end() - i > MAX_TOKEN_CHARS:
            raise err(f"an ID longer than {MAX_TOKEN_CHARS} characters")
        toks.append(_Tok("id", m.group(0), line, col))
        i = m.end()
    toks.append(_Tok("eof", "", line, i - bol + 1))
    return toks


class _Parser:
    def __init__(self, toks: list[_Tok], file: str | None):
        self.toks, self.pos, self.file = toks, 0, file
        self.nodes: dict[str, DotNode] = {}
        self.edges: list[DotEdge] = []
        self.graph_attrs: dict[str, str] = {}
        self.clusters: list[tuple[str, list[str], dict[str, str]]] = []
        self.n_stmts = 0
        self.directed = True

    # -- tokens --------------------------------------------------------------------------
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def take(self) -> _Tok:
        t = self.peek()
        self.pos += 1
        return t

    def error(self, msg: str, tok: _Tok | None = None) -> ParseError:
        tok = tok or self.peek()
        return ParseError(msg, self.file, tok.line, tok.col)

    def expect(self, value: str) -> _Tok:
        t = self.take()
        if t.kind not in ("punct", "arrow") or t.value != value:
            raise self.error(f"expected {value!r}, got {_describe(t)}", t)
        return t

    def is_punct(self, value: str) -> bool:
        t = self.peek()
        return t.kind == "punct" and t.value == value

    def is_kw(self, word: str) -> bool:
        t = self.peek()
        return t.kind == "id" and t.value.lower() == word

    def ident(self, what: str) -> str:
        t = self.take()
        if t.kind == "id" and t.value.lower() not in _KEYWORDS:
            return t.value
        if t.kind == "html":
            return t.value
        if t.kind == "str":
            parts = [t.value]
            while self.is_punct("+") and self.peek(1).kind == "str":   # "a" + "b"
                self.take()
                parts.append(self.take().value)
            return "".join(parts)
        raise self.error(f"expected {what}, got {_describe(t)}", t)

    # -- grammar -------------------------------------------------------------------------
    def graph(self) -> DotGraph:
        if self.is_kw("strict"):
            self.take()
        t = self.take()
        if t.kind != "id" or t.value.lower() not in ("graph", "digraph"):
            raise self.error(f"a DOT file starts with 'digraph' or 'graph', got {_describe(t)}", t)
        self.directed = t.value.lower() == "digraph"
        name = None if self.is_punct("{") else self.ident("a graph name")
        self.expect("{")
        self.stmt_list(self.graph_attrs, [], 0)
        self.expect("}")
        if self.peek().kind != "eof":
            raise self.error(f"text after the end of the graph: {_describe(self.peek())}")
        return DotGraph(self.directed, name, self.graph_attrs, self.nodes, self.edges, self.clusters)

    def stmt_list(self, attrs: dict[str, str], members: list[str], depth: int) -> None:
        while not self.is_punct("}"):
            if self.peek().kind == "eof":
                raise self.error("missing '}' at the end of the file")
            self.n_stmts += 1
            if self.n_stmts > MAX_STATEMENTS:
                raise self.error(f"more than {MAX_STATEMENTS} statements")
            self.stmt(attrs, members, depth)
            if self.is_punct(";") or self.is_punct(","):
                self.take()

    def stmt(self, attrs: dict[str, str], members: list[str], depth: int) -> None:
        t = self.peek()
        if t.kind == "id" and t.value.lower() in ("graph", "node", "edge"):
            self.take()
            a = self.attr_list()
            if t.value.lower() == "graph":
                attrs.update(a)
            return                                   # node/edge defaults: not used by dumps
        if self.is_kw("subgraph") or self.is_punct("{"):
            start = self.peek()
            self.subgraph(depth)                     # clusters group nodes; dumps draw no edges to them
            if self.peek().kind == "arrow":
                raise self.error("edges from or to a subgraph are not supported", start)
            return
        first = self.take()
        if first.kind not in ("id", "str", "html") or (first.kind == "id" and first.value.lower() in _KEYWORDS):
            raise self.error(f"expected a statement, got {_describe(first)}", first)
        self.pos -= 1
        name = self.ident("an ID")
        if self.is_punct("="):                      # ID = ID
            self.take()
            attrs[name] = self.ident("a value")
            return
        port = self.port()
        if self.peek().kind == "arrow":
            ends = [(name, port, first.line)]
            while self.peek().kind == "arrow":
                arrow = self.take()
                if (arrow.value == "->") != self.directed:
                    raise self.error(f"'{arrow.value}' in a {'digraph' if self.directed else 'graph'}", arrow)
                if self.is_kw("subgraph") or self.is_punct("{"):
                    raise self.error("edges from or to a subgraph are not supported")
                tok = self.peek()
                ends.append((self.ident("a node ID"), self.port(), tok.line))
            a = self.attr_list() if self.is_punct("[") else {}
            for (s, sp, _), (d, dp, _) in zip(ends, ends[1:]):
                for nid in (s, d):
                    self.mention(nid, first.line, members)
                self.edges.append(DotEdge(s, sp, d, dp, dict(a), first.line))
            return
        a = self.attr_list() if self.is_punct("[") else {}
        node = self.mention(name, first.line, members)
        if not node.declared:
            node.declared, node.line = True, first.line
        node.attrs.update(a)

    def mention(self, nid: str, line: int, members: list[str]) -> DotNode:
        node = self.nodes.get(nid)
        if node is None:
            node = self.nodes[nid] = DotNode(nid, line)
        members.append(nid)
        return node

    def port(self) -> str | None:
        if not self.is_punct(":"):
            return None
        self.take()
        p = self.ident("a port name")
        if self.is_punct(":"):
            self.take()
            p += ":" + self.ident("a compass point")
        return p

    def attr_list(self) -> dict[str, str]:
        out: dict[str, str] = {}
        while self.is_punct("["):
            self.take()
            while not self.is_punct("]"):
                key = self.ident("an attribute name")
                self.expect("=")
                out[key] = self.ident("an attribute value")
                if self.is_punct(";") or self.is_punct(","):
                    self.take()
            self.take()
        return out

    def subgraph(self, depth: int) -> list[str]:
        if depth >= MAX_DEPTH:
            raise self.error(f"subgraphs nested deeper than {MAX_DEPTH}")
        name = ""
        if self.is_kw("subgraph"):
            self.take()
            if not self.is_punct("{"):
                name = self.ident("a subgraph name")
        self.expect("{")
        members: list[str] = []
        attrs: dict[str, str] = {}
        self.stmt_list(attrs, members, depth + 1)
        self.expect("}")
        self.clusters.append((name, members, attrs))
        return members


def _describe(t: _Tok) -> str:
    if t.kind == "eof":
        return "the end of the file"
    v = t.value if len(t.value) <= 30 else t.value[:27] + "..."
    return {"str": f'the string "{v}"', "html": f"<{v}>"}.get(t.kind, repr(v))


def parse(text: str, file: str | None = None) -> DotGraph:
    """Parse DOT text; ParseError (file, line, column) on bad syntax."""
    if len(text) > MAX_FILE_BYTES:
        raise ParseError(f"file larger than {MAX_FILE_BYTES} bytes", file)
    return _Parser(_lex(text, file), file).graph()


def read_text(path: str) -> str:
    """A .dot file as text (UTF-8, else Latin-1 so odd bytes in names never stop the read)."""
    import os
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ParseError(f"file of {size} bytes is larger than the {MAX_FILE_BYTES} bytes limit", path)
    with open(path, "rb") as f:
        raw = read_at_most(f, MAX_FILE_BYTES)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --- graphc's attribute values: JSON whose text survives a DOT quoted string -----------------
# DOT keeps every backslash except the one in \" (and a string cannot end in a backslash), so strings
# inside the JSON escape '"' and '\' as \u0022 / \u005c: every backslash is then followed by 'u'.
# Floats that are not finite are {"f64": "<16 hex digits>"} so nan payloads survive.

def _jstr(s: str) -> str:
    out = []
    for c in s:
        o = ord(c)
        out.append(f"\\u{o:04x}" if (o < 0x20 or c in '"\\' or o == 0x7F or 0xD800 <= o <= 0xDFFF) else c)
    return '"' + "".join(out) + '"'


def to_json(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if math.isfinite(v):
            return repr(v)
        return '{"f64": "%016x"}' % struct.unpack("<Q", struct.pack("<d", v))[0]
    if isinstance(v, str):
        return _jstr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(to_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_jstr(str(k))}: {to_json(x)}" for k, x in v.items()) + "}"
    if hasattr(v, "item"):            # numpy scalars
        return to_json(v.item())
    raise TypeError(f"cannot write {type(v).__name__} into a .dot attribute")


def from_json(text: str) -> Any:
    """Inverse of to_json; ValueError on anything else."""
    import json

    def hook(d: dict) -> Any:
        if set(d) == {"f64"} and isinstance(d["f64"], str) and re.fullmatch(r"[0-9a-f]{16}", d["f64"]):
            return struct.unpack("<d", struct.pack("<Q", int(d["f64"], 16)))[0]
        return d

    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is written as {{\"f64\": ...}}")

    return json.loads(text, object_hook=hook, parse_constant=bad_constant)


CHUNK = 8192    # graphviz's scanner takes quoted strings up to 16384 bytes: longer ones are "a" + "b"


def quote_dot(s: str) -> str:
    """A DOT quoted string whose content reads back as `s` (no piece may end in a backslash: callers
    pass JSON, base64 or escaped label text, whose backslashes are always followed by another character)."""
    parts, i = [], 0
    while True:
        j = i + CHUNK
        while j < len(s) and s[j - 1] == "\\":     # never split right after a backslash
            j += 1
        parts.append('"' + s[i:j].replace('"', '\\"') + '"')
        i = j
        if i >= len(s):
            return " + ".join(parts)
