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
from typing import Any, Callable

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
    hint: str | None = None           # for a format without a loader: what to do with such a file instead
    options: tuple[str, ...] = ()     # keyword options the loader takes besides the path (load_graph passes them)


FORMATS: list[Format] = [
    Format("graph text", (".graph",), magic=b"graphc ", loader="graphc.frontends.graph_text:load",
           writer="graphc.frontends.graph_text:dump", text=True),
    Format("ggml graph export", (".ggml",), magic=b"lmgg",           # 0x67676d6c little-endian
           loader="graphc.frontends.ggml_binary:load", options=("inputs", "outputs", "era", "strict")),
    Format("GGUF model", (".gguf",), magic=b"GGUF",
           hint="a GGUF model, not a graph file: 'graphc inspect FILE --graph' shows the decode graph graphc "
                "builds for it, 'graphc convert FILE -o decode.graph' writes that graph (weights bound to FILE), "
                "'graphc generate' and 'graphc bench' run the model"),
    Format("GraphViz dot dump", (".dot", ".gv"), magic=b"digraph", loader="graphc.frontends.dot:load",
           writer="graphc.frontends.dot_write:dump", text=True, options=("inputs", "outputs", "hints")),
]


def register_format(fmt: Format) -> None:
    """Add a format or replace the row with the same name."""
    FORMATS[:] = [f for f in FORMATS if f.name != fmt.name] + [fmt]


def _resolve(ref: str) -> Callable:
    mod, fn = ref.split(":")
    return getattr(importlib.import_module(mod), fn)


def detect(path: str) -> Format | None:
    """The format of `path`: magic bytes win over the extension (a misnamed .graph that is really a
    ggml export is read as a ggml export). A binary format is known by its magic alone (a text file
    named .gguf is no GGUF model); text formats also by their extension (a header may follow comments)."""
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
        if ext in fmt.extensions and (fmt.text or fmt.magic is None):
            return fmt
    return None


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise ParseError("is a directory, not a graph file (a compiled artifact is opened with graphc.load)", path)
    if not os.path.exists(path):
        raise ParseError("no such file", path)


def known_extensions(readable: bool = True) -> list[str]:
    return [e for f in FORMATS if (f.loader if readable else f.writer) for e in f.extensions]


# what each loader option is for (messages); graphc.load_graph documents them
OPTION_USE = {"inputs": "names the input leafs", "outputs": "names the output nodes",
              "era": "picks the ggml era", "strict": "refuses a file that fits several ggml eras",
              "hints": "gives a ggml dot dump's hints"}


def load_graph(path: "str | os.PathLike[str]", **options: Any) -> Graph:
    """Read a graph file in any supported format. options: the loader's keyword options (Format.options:
    inputs, outputs, era, strict for ggml exports; inputs, outputs, hints for dot dumps); None means not
    given. One the file's format does not take is a ParseError that says which formats take it."""
    path = os.fspath(path)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(OPTION_USE))
    if unknown:
        raise ParseError(f"unknown graph reading option {unknown[0]!r} (known: {', '.join(OPTION_USE)})", path)
    _check_file(path)
    try:
        fmt = detect(path)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    if fmt is None:
        _not_what_it_says(path)
        raise ParseError(f"unknown graph format (extension {os.path.splitext(path)[1] or 'none'!r}, no known "
                         f"magic bytes); readable formats: {', '.join(known_extensions())}", path)
    if fmt.loader is None:
        if fmt.hint:
            raise ParseError(fmt.hint, path)
        raise ParseError(f"detected a {fmt.name}, which graphc cannot read yet; readable formats: "
                         f"{', '.join(known_extensions())}", path)
    _check_options(path, fmt, options)
    return _resolve(fmt.loader)(path, **options)


def _check_options(path: str, fmt: Format, options: dict[str, Any]) -> None:
    """A loader option the format does not take: one error saying which formats take it."""
    for key in options:
        if key in fmt.options:
            continue
        takers = [f for f in FORMATS if f.loader and key in f.options]
        where = " and ".join(f"{f.name}s ({', '.join(f.extensions)})" for f in takers) or "no format"
        why = (" (this file records its inputs and outputs itself)" if key in ("inputs", "outputs") and fmt.writer
               else "")
        raise ParseError(f"{key}= {OPTION_USE[key]} of {where} only; this file's format is '{fmt.name}'{why}",
                         path)


def _not_what_it_says(path: str) -> None:
    """A file that no magic matched: one error saying what it is when its extension names a binary
    format (a renamed text file) or when it is a checkpoint rather than a graph."""
    from graphc.filekind import KINDS, describe_head, head, sniff
    ext = os.path.splitext(path)[1].lower()
    try:
        kind, data = sniff(path), head(path)
    except OSError:
        return
    if kind in ("safetensors", "pth"):
        raise ParseError(f"{KINDS[kind]}, not a graph file ('graphc generate' and 'graphc bench' run RWKV-4 "
                         f"checkpoints)", path)
    for fmt in FORMATS:
        if ext in fmt.extensions and fmt.magic is not None and not fmt.text:
            raise ParseError(f"not a {fmt.name} (no {fmt.magic.decode('latin-1')!r} magic at its start): "
                             f"{describe_head(data)}", path)


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
