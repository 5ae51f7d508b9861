"""graphc's own lossless text format, `.graph` (docs/graph-format.md).

    graphc 1
    graph "mlp"
    %0 "x" = leaf : f32[64, 4] input
    %1 "w" = leaf : f32[64, 10] param weight("mlp.gguf", "fc.weight")

    %2 "y" = mul_mat(%1, %0) : f32[10, 4] output

`dumps`/`dump` print a graph, `loads`/`load` read one. The grammar (graph_text.lark) describes one
line; a file is parsed line by line so memory stays bounded by the longest line and every error
knows its line. Nodes are rebuilt through GraphBuilder.op, so their type, shape, strides and view
relation come from the op's rule and the text only has to agree with it.
"""
from __future__ import annotations

import base64
import binascii
import functools
import math
import os
import re
from pathlib import Path
from typing import Any

import lark
import numpy as np

from graphc import ops
from graphc.verify import check_tensor, verify
from graphc.builder import GraphBuilder
from graphc.compare import same_value
from graphc.errors import GraphError, ParseError
from graphc.ir import FLAG_NAMES, MAX_DIMS, MAX_NAME, Flag, Graph, Tensor, WeightRef, contiguous_strides, new_tensor
from graphc.types import get_type
from graphc.util import read_at_most

VERSION = 1
HEADER = f"graphc {VERSION}"

# Limits, checked before anything is allocated (documented in docs/graph-format.md).
MAX_TENSORS = 1 << 18                 # tensors per file
MAX_INLINE_BYTES = 1 << 20            # raw bytes of one tensor's inline data; bigger data goes in a weights file
MAX_TOTAL_INLINE_BYTES = 64 << 20     # raw inline bytes per file
MAX_LINE_CHARS = 4096                 # a line's length, not counting the base64 text of its data(...)
MAX_FILE_BYTES = 256 << 20            # what load() will read
MAX_DIM = 1 << 62                     # one ne or nb entry, or a view offset
MAX_INT_DIGITS = 20

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED_WORDS = {"true", "false", "inf", "nan"}   # never printed bare as a choice value
_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLAG_BY_NAME = {name: flag for flag, name in FLAG_NAMES.items()}
_KNOWN_FLAGS = functools.reduce(lambda a, b: a | b, FLAG_NAMES)


# ======================================================================================
# printing
# ======================================================================================

def quote(s: str) -> str:
    """A string literal: printable characters as they are, the rest escaped."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif 0xD800 <= o <= 0xDFFF:
            raise GraphError(f"string {s!r} holds a lone surrogate, which is not text", None, "name")
        elif c.isprintable():
            out.append(c)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _f32_bits(v: float) -> int:
    return int(np.array(v, dtype=np.float32).view(np.uint32))


def format_f32(v: float) -> str:
    """The shortest text that reads back to exactly the same float32 bits."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.float32(v)
    bits = _f32_bits(f)
    if math.isnan(f):
        return "nan" if bits == 0x7FC00000 else f"nan:0x{bits:08x}"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    s = str(f)                               # numpy's shortest round-trip repr for float32
    if _f32_bits(_parse_float_text(s)) != bits:
        s = repr(float(f))                   # exact double of the float32; reads back exactly
    return s


def _format_param(p: ops.Param, v: Any) -> str:
    k = p.kind
    if k in ("i32", "i64"):
        return str(int(v))
    if k == "f32":
        return format_f32(v)
    if k == "bool":
        return "true" if v else "false"
    if k == "i32x4":
        return "[" + ", ".join(str(int(x)) for x in v) + "]"
    if k == "type":
        return get_type(v).name
    if k == "choice" and isinstance(v, str) and _IDENT.match(v) and v not in _RESERVED_WORDS:
        return v
    if isinstance(v, str):
        return quote(v)
    raise GraphError(f"parameter {p.name!r} holds {v!r}, not a {k}", None, "param")


def _format_params(t: Tensor) -> str:
    d = ops.get_op(t.op)
    kinds = {p.name: p for p in d.params}
    extra = set(t.params) - set(kinds)
    if extra:
        raise GraphError(f"{t.op} has no parameter(s) {sorted(extra)}", t.name, "param")
    parts = []
    for p in d.params:
        if p.name not in t.params:
            continue
        v = t.params[p.name]
        if p.default is not ops.REQUIRED and same_value(v, p.default if p.kind != "f32" else float(p.default)):
            continue                               # defaults are filled back in on reading
        parts.append(f"{p.name}={_format_param(p, v)}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def _format_dims(ne: tuple[int, ...]) -> str:
    n = MAX_DIMS
    while n > 1 and ne[n - 1] == 1:                # trailing 1s are implied; zeros are kept
        n -= 1
    return ", ".join(str(int(x)) for x in ne[:n])


def _format_tensor(t: Tensor, ids: dict[int, int], total_inline: list[int]) -> str:
    me = ids[id(t)]
    if t.is_leaf:
        rhs = "leaf"
        if t.src or t.params:
            raise GraphError("a leaf has no sources and no params", t.name, "leaf")
    else:
        srcs = []
        for j, s in enumerate(t.src):
            if s is None:
                srcs.append("_")
            elif id(s) in ids and ids[id(s)] < me:
                srcs.append(f"%{ids[id(s)]}")
            else:
                raise GraphError(f"source {j} ({s.name!r}) is not an earlier tensor of the graph", t.name,
                                 "topological order")
        rhs = f"{t.op}({', '.join(srcs)}){_format_params(t)}"
    parts = [f"%{me} {quote(t.name)} = {rhs} : {t.type.name}[{_format_dims(t.ne)}]"]
    if tuple(t.nb) != contiguous_strides(t.type, t.ne):
        parts.append(f"nb[{', '.join(str(int(b)) for b in t.nb)}]")
    flags = int(t.flags)
    if flags & ~int(_KNOWN_FLAGS):
        raise GraphError(f"unknown flag bits 0x{flags & ~int(_KNOWN_FLAGS):x}", t.name, "flags")
    parts += [name for flag, name in FLAG_NAMES.items() if flags & flag]
    if t.view_src is not None:
        if id(t.view_src) not in ids:
            raise GraphError(f"views {t.view_src.name!r}, which is not in the graph", t.name, "view source")
        parts.append(f"view_of(%{ids[id(t.view_src)]}, {int(t.view_offs)})")
    if t.weight is not None:
        w = t.weight
        sl = "" if w.rows is None and w.cols is None else \
            ", " + ", ".join(str(int(v)) for v in (*(w.rows or (0, 0)), *(w.cols or (0, 0))))  # (0, 0): whole
        parts.append(f"weight({quote(str(w.file))}, {quote(str(w.tensor))}{sl})")
    if t.data is not None:
        raw = np.ascontiguousarray(t.data).tobytes()
        if len(raw) > MAX_INLINE_BYTES:
            raise GraphError(f"{len(raw)} bytes of inline data, at most {MAX_INLINE_BYTES}; "
                             "bind big data to a weights file instead", t.name, "data size")
        total_inline[0] += len(raw)
        if total_inline[0] > MAX_TOTAL_INLINE_BYTES:
            raise GraphError(f"more than {MAX_TOTAL_INLINE_BYTES} bytes of inline data in one graph", t.name,
                             "data size")
        parts.append(f'data("{base64.b64encode(raw).decode("ascii")}")')
    return " ".join(parts)


def dumps(graph: Graph) -> str:
    """The canonical text of `graph`: leafs first, then nodes, ids %0, %1, ... in that order."""
    tensors = list(graph.tensors())
    if len(tensors) > MAX_TENSORS:
        raise GraphError(f"{len(tensors)} tensors, a .graph file holds at most {MAX_TENSORS}", None, "size limit")
    ids: dict[int, int] = {}
    for i, t in enumerate(tensors):
        if id(t) in ids:
            raise GraphError("appears twice in the graph", t.name, "unique")
        ids[id(t)] = i
    lines = [HEADER, f"graph {quote(graph.name)}"]
    total_inline = [0]
    for i, t in enumerate(tensors):
        if i == len(graph.leafs) and graph.leafs:
            lines.append("")                     # a blank line between leafs and nodes
        lines.append(_format_tensor(t, ids, total_inline))
    return "\n".join(lines) + "\n"


def dump(graph: Graph, path: "str | os.PathLike[str]") -> None:
    text = dumps(graph)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ======================================================================================
# reading
# ======================================================================================

@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = (Path(__file__).with_name("graph_text.lark")).read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=True,
                     propagate_positions=False)


_TERMINAL_WORDS = {
    "REF": "a tensor id like %3", "STRING": "a quoted string", "NAME": "a name", "INT": "a non-negative integer",
    "NUMBER": "a number", "HOLE": "_ (an empty source slot)", "$END": "the end of the line",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
        if pattern.type == "str":
            return f"'{pattern.value}'"
    except (KeyError, AttributeError):
        pass
    return name


def _expected_text(names) -> str:
    words = sorted({_describe_terminal(n) for n in names})
    if not words:
        return ""
    return ", expected " + (words[0] if len(words) == 1 else "one of: " + ", ".join(words))


def _short(text: str, n: int = 30) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _syntax_error(e: lark.UnexpectedInput, line: str, lineno: int, file: str | None) -> ParseError:
    if isinstance(e, lark.UnexpectedCharacters):
        col = e.column
        found = _short(line[col - 1:col])
        expected = _expected_text(e.allowed or ())
        return ParseError(f"unexpected character {found}{expected}", file, lineno, col)
    if isinstance(e, lark.UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            return ParseError(f"unexpected end of line{_expected_text(e.expected)}", file, lineno,
                              len(line.rstrip()) + 1)
        return ParseError(f"unexpected {_short(str(tok))}{_expected_text(e.expected)}", file, lineno, tok.column)
    if isinstance(e, lark.UnexpectedEOF):
        return ParseError(f"unexpected end of line{_expected_text(e.expected)}", file, lineno, len(line.rstrip()) + 1)
    return ParseError(f"syntax error: {e}", file, lineno, getattr(e, "column", None))


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_HEX_LEN = {"x": 2, "u": 4, "U": 8}


class _Reader:
    """Turns parsed lines into tensors; owns the id table and the error locations."""

    def __init__(self, file: str | None):
        self.file = file
        self.lineno = 0
        self.graph_name: str | None = None
        self.seen_header = False
        self.by_id: dict[int, Tensor] = {}
        self.def_line: dict[int, int] = {}          # local id -> line it was defined on
        self.line_of: dict[int, int] = {}           # id(tensor) -> line
        self.leafs: list[Tensor] = []
        self.nodes: list[Tensor] = []
        self.inline_bytes = 0

    # -- errors ----------------------------------------------------------------------------
    def error(self, msg: str, tok: Any = None, column: int | None = None) -> ParseError:
        col = column if column is not None else (getattr(tok, "column", None) if tok is not None else None)
        return ParseError(msg, self.file, self.lineno, col)

    # -- tokens ----------------------------------------------------------------------------
    def string(self, tok: lark.Token) -> str:
        body, out, i = str(tok)[1:-1], [], 0
        while i < len(body):
            c = body[i]
            if c != "\\":
                if 0xD800 <= ord(c) <= 0xDFFF:
                    raise self.error("a string holds a lone surrogate, which is not text", tok)
                out.append(c)
                i += 1
                continue
            e = body[i + 1]                          # the grammar guarantees a character after '\'
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
            elif e in _HEX_LEN:
                n = _HEX_LEN[e]
                digits = body[i + 2:i + 2 + n]
                if len(digits) != n or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
                    raise self.error(f"\\{e} needs {n} hex digits in a string", tok, tok.column + 1 + i)
                o = int(digits, 16)
                if o > 0x10FFFF or 0xD800 <= o <= 0xDFFF:
                    raise self.error(f"\\{e}{digits} is not a unicode character", tok, tok.column + 1 + i)
                out.append(chr(o))
                i += 2 + n
            else:
                raise self.error(f"unknown escape \\{e} in a string (known: \\\" \\\\ \\n \\t \\r \\0 "
                                 "\\xHH \\uHHHH \\UHHHHHHHH)", tok, tok.column + 1 + i)
        return "".join(out)

    def int_(self, tok: Any, what: str, limit: int = MAX_DIM, column: int | None = None) -> int:
        """An integer token, bounded before Python converts it (huge digit strings are refused)."""
        text = str(tok)
        col = column if column is not None else getattr(tok, "column", None)
        if len(text.lstrip("+-0")) > MAX_INT_DIGITS or abs(int(text)) > limit:
            raise self.error(f"{what} {_short(text)} is too large (at most {limit})", None, col)
        return int(text)

    def ref(self, tok: lark.Token) -> Tensor:
        key = self.int_(tok[1:], "tensor id", column=tok.column)
        if key not in self.by_id:
            raise self.error(f"{tok} is not defined on an earlier line", tok)
        return self.by_id[key]

    # -- lines -----------------------------------------------------------------------------
    def line(self, tree: lark.Tree) -> None:
        (item,) = tree.children
        kind = item.data
        if kind == "header":
            if self.seen_header:
                raise self.error("a second header line")
            version = self.int_(item.children[0], "version")
            if version != VERSION:
                raise self.error(f"unsupported format version {version}; this graphc reads version {VERSION}",
                                 item.children[0])
            self.seen_header = True
            return
        if not self.seen_header:
            raise self.error(f"a .graph file starts with the line '{HEADER}'", None, 1)
        if kind == "graph_decl":
            if self.graph_name is not None or self.by_id:
                raise self.error("the graph line comes once, before the first tensor", None, 1)
            self.graph_name = self.string(item.children[0])
            return
        self.stmt(item)

    def stmt(self, tree: lark.Tree) -> None:
        ref_tok, name_tok, expr, shape, *attrs = tree.children
        key = self.int_(ref_tok[1:], "tensor id", column=ref_tok.column)
        if key in self.by_id:
            raise self.error(f"{ref_tok} is already defined on line {self.def_line[key]}", ref_tok)
        if len(self.by_id) >= MAX_TENSORS:
            raise self.error(f"more than {MAX_TENSORS} tensors in one file", ref_tok)
        name = self.string(name_tok)
        if "\0" in name or len(name.encode("utf-8")) >= MAX_NAME:
            raise self.error(f"a tensor name is text of at most {MAX_NAME - 1} UTF-8 bytes without NUL "
                             f"(this one has {len(name.encode('utf-8'))})", name_tok)
        type_tok = shape.children[0]
        try:
            type_ = get_type(str(type_tok))
        except ValueError:
            raise self.error(f"unknown tensor type {_short(str(type_tok))}", type_tok) from None
        if len(shape.children) - 1 > MAX_DIMS:
            raise self.error(f"a shape has at most {MAX_DIMS} dims", shape.children[MAX_DIMS + 1])
        ne = tuple(self.int_(tk, "dim") for tk in shape.children[1:])
        ne = ne + (1,) * (MAX_DIMS - len(ne))
        a = self.attrs(attrs)
        try:
            if expr.data == "leaf_expr":
                t = self.leaf(expr, name, type_, ne, a)
            else:
                t = self.node(expr, name, type_, ne, a)
            t.flags = a["flags"]
            t.weight = a.get("weight")
            if "data" in a:
                t.data = self.data(a["data"], t)
            check_tensor(t)
        except GraphError as e:
            raise self.error(str(e), expr.children[0]) from None
        self.by_id[key] = t
        self.def_line[key] = self.lineno
        self.line_of[id(t)] = self.lineno
        (self.leafs if t.is_leaf else self.nodes).append(t)

    def attrs(self, attrs: list[lark.Tree]) -> dict[str, Any]:
        out: dict[str, Any] = {"flags": Flag.NONE}
        for at in attrs:
            name_tok, *args = at.children
            name = str(name_tok)
            if at.data == "flag_attr":
                if name not in _FLAG_BY_NAME:
                    raise self.error(f"unknown flag {_short(name)} (flags: {', '.join(_FLAG_BY_NAME)}; attributes: "
                                     "nb[...], view_of(...), weight(...), data(...))", name_tok)
                if out["flags"] & _FLAG_BY_NAME[name]:
                    raise self.error(f"flag {name} given twice", name_tok)
                out["flags"] |= _FLAG_BY_NAME[name]
                continue
            if name in out:
                raise self.error(f"attribute {name} given twice", name_tok)
            if at.data == "list_attr":
                if name != "nb":
                    raise self.error(f"unknown attribute {_short(name)}[...] (only nb[...] takes a list)", name_tok)
                if len(args) != MAX_DIMS:
                    raise self.error(f"nb needs {MAX_DIMS} strides, got {len(args)}", name_tok)
                out["nb"] = tuple(self.int_(tk, "stride") for tk in args)
                continue
            args = [x for x in args if x is not None]
            kinds = [x.type for x in args]
            if name == "view_of":
                if kinds != ["REF", "INT"]:
                    raise self.error("view_of takes a tensor id and a byte offset: view_of(%1, 0)", name_tok)
                out["view_of"] = (self.ref(args[0]), self.int_(args[1], "view offset"), name_tok)
            elif name == "weight":
                if kinds not in (["STRING", "STRING"], ["STRING", "STRING"] + ["INT"] * 4):
                    raise self.error('weight takes a file and a tensor name, and optionally a slice of its rows '
                                     'and columns: weight("model.gguf", "w") or weight("model.gguf", "w", r0, r1, '
                                     'c0, c1) ((0, 0): all of them)', name_tok)
                sl = [self.int_(a, "weight slice") for a in args[2:]]
                rows = (sl[0], sl[1]) if sl and (sl[0], sl[1]) != (0, 0) else None
                cols = (sl[2], sl[3]) if sl and (sl[2], sl[3]) != (0, 0) else None
                for r in (rows, cols):
                    if r is not None and not 0 <= r[0] < r[1]:
                        raise self.error(f"weight slice {list(r)}: want 0 <= start < end", name_tok)
                out["weight"] = WeightRef(self.string(args[0]), self.string(args[1]), rows, cols)
            elif name == "data":
                if kinds != ["STRING"]:
                    raise self.error('data takes one base64 string: data("AACAPw==")', name_tok)
                out["data"] = args[0]
            else:
                raise self.error(f"unknown attribute {_short(name)}(...) (known: view_of, weight, data)", name_tok)
        return out

    def leaf(self, expr: lark.Tree, name: str, type_, ne, a: dict) -> Tensor:
        op_tok = expr.children[0]
        if op_tok != "leaf":
            raise self.error(f"expected 'leaf' or an op call like {op_tok}(%0), got {_short(str(op_tok))}", op_tok)
        if "view_of" in a:
            raise self.error("a leaf is not a view", a["view_of"][2])
        t = new_tensor(name, type_, ne)
        if "nb" in a and a["nb"] != t.nb:
            raise GraphError(f"a leaf is contiguous: nb {list(t.nb)}, the text says {list(a['nb'])}", name, "strides")
        return t

    def node(self, expr: lark.Tree, name: str, type_, ne, a: dict) -> Tensor:
        op_tok, *src_trees, params_tree = expr.children     # no sources: src_trees == [None]
        op = str(op_tok)
        if op == "leaf" or op == "none":
            raise self.error("a leaf is written `leaf`, without sources or params", op_tok)
        if op not in ops.OPS:
            raise self.error(f"unknown op {_short(op)}", op_tok)
        d = ops.OPS[op]
        srcs = [None if s.children[0].type == "HOLE" else self.ref(s.children[0])
                for s in src_trees if s is not None]
        params = self.params(d, params_tree)
        decl = ops.Decl(type_, ne, a.get("nb")) if d.declared else None
        try:
            t = GraphBuilder().op(op, srcs, params, name, decl)
        except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as e:
            # a shape rule (a user's custom one above all) choking on odd input
            raise self.error(f"{op}: {e}", op_tok) from None
        t.name = name
        nb = a.get("nb", contiguous_strides(type_, ne))
        if (t.type, t.ne) != (type_, ne):
            raise self.error(f"{op} gives {t.type.name}[{_format_dims(t.ne)}], the text says "
                             f"{type_.name}[{_format_dims(ne)}]", op_tok)
        if t.nb != nb:
            raise self.error(f"{op} gives strides nb{list(t.nb)}, the text says nb{list(nb)}"
                             + ("" if "nb" in a else " (no nb[...]: contiguous)"), op_tok)
        if "view_of" in a:
            src, offs, tok = a["view_of"]
            if t.view_src is None:
                raise self.error(f"{op} does not make a view", tok)
            if t.view_src is not src or t.view_offs != offs:
                raise self.error(f"{op} views %{self._local_id(t.view_src)} at offset {t.view_offs}, the text "
                                 "says otherwise", tok)
        return t

    def _local_id(self, t: Tensor) -> int:
        return next(k for k, v in self.by_id.items() if v is t)

    def params(self, d: ops.OpDef, tree: lark.Tree | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kinds = {p.name: p for p in d.params}
        for ptree in (tree.children if tree is not None else ()):
            if ptree is None:
                continue
            name_tok, val = ptree.children
            name = str(name_tok)
            if name not in kinds:
                known = ", ".join(kinds) or "none"
                raise self.error(f"{d.name} has no parameter {_short(name)} (it takes: {known})", name_tok)
            if name in out:
                raise self.error(f"parameter {name} given twice", name_tok)
            out[name] = self.value(kinds[name], val, d.name)
        return out

    def value(self, p: ops.Param, val: Any, op: str) -> Any:
        """A parameter value read by the kind the op declares for it."""
        k = p.kind
        tok_type = val.type if isinstance(val, lark.Token) else "LIST"
        first = val if isinstance(val, lark.Token) else next((c for c in val.children if c is not None), None)
        bad = self.error(f"{op} parameter {p.name} is {_KIND_WORDS.get(k, k)}, got {_describe_value(val)}", first)
        if k in ("i32", "i64"):
            if tok_type != "NUMBER" or not _INT_TEXT.match(str(val)):
                raise bad
            return self.int_(val, f"{op} parameter {p.name}", 1 << 64)
        if k == "f32":
            if tok_type != "NUMBER":
                raise bad
            try:
                return _parse_float_text(str(val))
            except ValueError as e:
                raise self.error(f"{op} parameter {p.name}: {e}", val) from None
        if k == "bool":
            if tok_type != "NAME" or str(val) not in ("true", "false"):
                raise bad
            return str(val) == "true"
        if k == "str":
            if tok_type != "STRING":
                raise bad
            return self.string(val)
        if k == "choice":
            if tok_type == "STRING":
                return self.string(val)
            if tok_type != "NAME":
                raise bad
            return str(val)
        if k == "i32x4":
            items = [x for x in val.children if x is not None] if tok_type == "LIST" else None
            if items is None or not all(_INT_TEXT.match(str(x)) for x in items):
                raise bad
            return tuple(self.int_(x, f"{op} parameter {p.name}", 1 << 64) for x in items)
        if k == "type":
            if tok_type != "NAME":
                raise bad
            return str(val)
        raise bad

    def data(self, tok: lark.Token, t: Tensor) -> np.ndarray:
        n = t.nbytes
        if n > MAX_INLINE_BYTES:
            raise self.error(f"inline data is limited to {MAX_INLINE_BYTES} bytes, this tensor needs {n}; "
                             "bind it to a weights file with weight(...)", tok)
        if self.inline_bytes + n > MAX_TOTAL_INLINE_BYTES:
            raise self.error(f"more than {MAX_TOTAL_INLINE_BYTES} bytes of inline data in one file", tok)
        text = str(tok)[1:-1]
        if len(text) != 4 * ((n + 2) // 3):
            raise self.error(f"data holds {len(text)} base64 characters, a tensor of {n} bytes needs "
                             f"{4 * ((n + 2) // 3)}", tok)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self.error("data is not valid base64", tok) from None
        if len(raw) != n:
            raise self.error(f"data holds {len(raw)} bytes, the tensor needs {n}", tok)
        self.inline_bytes += n
        return np.frombuffer(raw, dtype=np.uint8).copy()

    # -- the whole graph -----------------------------------------------------------------------
    def finish(self) -> Graph:
        if not self.seen_header:
            raise ParseError(f"empty file: a .graph file starts with the line '{HEADER}'", self.file, 1, 1)
        g = Graph(self.graph_name or "", self.leafs, self.nodes)
        try:
            verify(g)
        except GraphError as e:
            self.lineno = self._blame(g, e)
            raise self.error(str(e)) from None
        return g

    def _blame(self, g: Graph, e: GraphError) -> int:
        """The line of the tensor a verify error names (names repeat, so prefer the last of a clash)."""
        named = [t for t in g.tensors() if t.name == e.tensor]
        if e.rule == "unique name":
            named = [t for t in named if t.flags & (Flag.INPUT | Flag.OUTPUT | Flag.PARAM | Flag.STATE)][1:] or named
        return self.line_of[id(named[0])] if named else 1


_KIND_WORDS = {"i32": "an i32 integer", "i64": "an i64 integer", "f32": "an f32 number", "bool": "true or false",
               "str": "a quoted string", "choice": "one of its choices", "i32x4": "a list of 4 integers",
               "type": "a type name"}


def _describe_value(val: Any) -> str:
    if isinstance(val, lark.Token):
        return _short(str(val))
    return "a list"


def _parse_float_text(s: str) -> float:
    """A number as a float32 value (returned as the exact Python float); ValueError if it is not one."""
    body = s.lstrip("+-")
    if body.startswith("nan:0x"):
        if len(body) > 6 + 8:
            raise ValueError(f"{s}: nan bits take at most 8 hex digits")
        bits = int(body[6:], 16)
        if (bits & 0x7F800000) != 0x7F800000 or not bits & 0x007FFFFF:
            raise ValueError(f"{s}: 0x{bits:08x} is not the bit pattern of a float32 nan")
        return float(np.array(bits, dtype=np.uint32).view(np.float32))
    v = float(s)                                  # reads 'inf', 'nan' and decimals; never raises on range
    with np.errstate(over="ignore"):
        f = np.float32(v)
    if math.isinf(f) and not math.isinf(v):
        raise ValueError(f"{s} is out of float32 range (write inf)")
    return float(f)


def loads(text: "str | bytes", file: str | None = None) -> Graph:
    """Read a graph from .graph text (bytes are decoded as UTF-8)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            raise ParseError(f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start}",
                             file, line, col) from None
    if not isinstance(text, str):
        raise TypeError(f"loads() takes str or bytes, not {type(text).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    r = _Reader(file)
    parser = _parser()
    pos = 0
    while pos <= len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        pos = end + 1
        r.lineno += 1
        stripped = line.strip(" \t\f\r")
        if not stripped or stripped.startswith("#"):
            continue
        _check_line_length(line, r)
        try:
            tree = parser.parse(line)
        except lark.UnexpectedInput as e:
            raise _syntax_error(e, line, r.lineno, file) from None
        r.line(tree)
    return r.finish()


def _check_line_length(line: str, r: _Reader) -> None:
    if len(line) <= MAX_LINE_CHARS:
        return
    i = line.find('data("')
    j = line.find('"', i + 6) if i >= 0 else -1
    payload = j - i if j >= 0 else 0
    if len(line) - payload > MAX_LINE_CHARS:
        raise r.error(f"line is {len(line)} characters long; at most {MAX_LINE_CHARS} outside data(...)", None, 1)
    if payload > 4 * ((MAX_INLINE_BYTES + 2) // 3) + 8:
        raise r.error(f"inline data is limited to {MAX_INLINE_BYTES} bytes; bind big data to a weights file",
                      None, i + 1)


def load(path: "str | os.PathLike[str]") -> Graph:
    """Read a .graph file."""
    path = os.fspath(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise ParseError(f"file is {size} bytes, a .graph file is at most {MAX_FILE_BYTES}", path)
        with open(path, "rb") as f:
            raw = read_at_most(f, MAX_FILE_BYTES)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ParseError(f"file is larger than {MAX_FILE_BYTES} bytes", path)
    return loads(raw, file=path)
