"""Pick a frontend for a file by its magic bytes, then by its extension.

Each format is one row in FORMATS. A row without a loader is a format graphc recognises but cannot
read yet: loading it is a ParseError that says what was detected. A frontend added later registers
itself by filling in `loader` (and `writer` if it can write), as "module:function" strings so that
formats a run does not use are never imported.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable

from graphc.errors import ParseError
from graphc.ir import Graph


@dataclass
class Format:
    name: str                         # a word for messages: "graph text", "ggml graph export"
    extensions: tuple[str, ...]       # lower-case, with the dot
    magic: bytes | None = None        # the file starts with these bytes (after leading whitespace for text)
    loader: str | None = None         # "module:function" taking a path, returning a Graph
    writer: str | None = None         # "module:function" taking (graph, path)
    text: bool = False                # magic is matched after leading whitespace


FORMATS: list[Format] = [
    Format("graph text", (".graph",), magic=b"graphc ", loader="graphc.frontends.graph_text:load",
           writer="graphc.frontends.graph_text:dump", text=True),
    Format("ggml graph export", (".ggml",), magic=b"lmgg",           # 0x67676d6c little-endian
           loader="graphc.frontends.ggml_binary:load"),
    Format("GGUF model", (".gguf",), magic=b"GGUF"),
    Format("GraphViz dot dump", (".dot", ".gv"), magic=b"digraph", loader="graphc.frontends.dot:load",
           writer="graphc.frontends.dot_write:dump", text=True),
]


def register_format(fmt: Format) -> None:
    """Add a format or replace the row with the same name."""
    FORMATS[:] = [f for f in FORMATS if f.name != fmt.name] + [fmt]


def _resolve(ref: str) -> Callable:
    mod, fn = ref.split(":")
    return getattr(importlib.import_module(mod), fn)


def detect(path: str) -> Format | None:
    """The format of `path`: magic bytes win over the extension (a misnamed .graph that is really a
    ggml export is read as a ggml export)."""
    with open(path, "rb") as f:
        head = f.read(64)
    for fmt in FORMATS:
        if fmt.magic is None:
            continue
        data = head.lstrip() if fmt.text else head
        if data.startswith(fmt.magic):
            return fmt
    ext = os.path.splitext(path)[1].lower()
    for fmt in FORMATS:
        if ext in fmt.extensions:
            return fmt
    return None


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise ParseError("is a directory, not a graph file (a compiled artifact is opened with graphc.load)", path)
    if not os.path.exists(path):
        raise ParseError("no such file", path)


def known_extensions(readable: bool = True) -> list[str]:
    return [e for f in FORMATS if (f.loader if readable else f.writer) for e in f.extensions]


def load_graph(path: "str | os.PathLike[str]") -> Graph:
    """Read a graph file in any supported format."""
    path = os.fspath(path)
    _check_file(path)
    try:
        fmt = detect(path)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    if fmt is None:
        raise ParseError(f"unknown graph format (extension {os.path.splitext(path)[1] or 'none'!r}, no known "
                         f"magic bytes); readable formats: {', '.join(known_extensions())}", path)
    if fmt.loader is None:
        raise ParseError(f"detected a {fmt.name}, which graphc cannot read yet; readable formats: "
                         f"{', '.join(known_extensions())}", path)
    return _resolve(fmt.loader)(path)


def save_graph(graph: Graph, path: "str | os.PathLike[str]") -> None:
    """Write a graph; the format comes from the extension (only formats with a writer)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    for fmt in FORMATS:
        if ext in fmt.extensions:
            if fmt.writer is None:
                break
            _resolve(fmt.writer)(graph, path)
            return
    raise ParseError(f"cannot write graphs with extension {ext or 'none'!r}; writable formats: "
                     f"{', '.join(known_extensions(readable=False))}", path)
