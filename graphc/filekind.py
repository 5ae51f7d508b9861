"""What kind of file a path holds, from its first bytes (never from its name).

    sniff("model.gguf")       # "gguf", or None when no known magic is there
    require("model.gguf", "gguf")   # a ParseError saying what the file is instead, when it is not

Kinds: gguf (b"GGUF"), ggml (a ggml graph export, b"lmgg": 0x67676d6c little-endian), graph (graphc's
.graph text, starting "graphc "), dot (a GraphViz dump, "digraph"), safetensors (a little-endian u64
header length, then a JSON object), pth (torch.save: a zip archive, or the legacy pickle format).
The CLI decides what to do with a file by this, so a text file renamed .gguf is one clear error, not
a wrong guess. Imports nothing of graphc but its errors (the frontends and the CLI both use it).
"""
from __future__ import annotations

import os
import struct

from graphc.errors import ParseError

HEAD_BYTES = 64

KINDS = {
    "gguf": "a GGUF model",
    "ggml": "a ggml graph export",
    "graph": "a graphc .graph text file",
    "dot": "a GraphViz dot dump",
    "safetensors": "a safetensors checkpoint",
    "pth": "a PyTorch checkpoint",
}

# what a file's extension claims (only for messages: the bytes decide)
EXTENSIONS = {".gguf": "gguf", ".ggml": "ggml", ".graph": "graph", ".dot": "dot", ".gv": "dot",
              ".safetensors": "safetensors", ".pth": "pth", ".pt": "pth"}

MAGIC = {"gguf": b"GGUF", "ggml": b"lmgg"}


def head(path: "str | os.PathLike[str]", n: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def sniff_bytes(data: bytes) -> str | None:
    """The kind of a file that starts with `data`."""
    if data.startswith(MAGIC["gguf"]):
        return "gguf"
    if data.startswith(MAGIC["ggml"]):
        return "ggml"
    if data.startswith(b"PK\x03\x04") or (len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5):
        return "pth"                # torch.save's zip archive, or its legacy pickle (protocol 2+)
    if len(data) >= 9 and data[8:9] == b"{" and 2 <= struct.unpack_from("<Q", data)[0] < 1 << 31:
        return "safetensors"        # a (damaged, truncated) one too: its reader then says what is wrong
    text = data.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"graphc "):
        return "graph"
    if text.startswith((b"digraph", b"strict digraph")):
        return "dot"
    return None


def sniff(path: "str | os.PathLike[str]") -> str | None:
    """The kind of the file at path (None: no known magic); OSError if it cannot be read."""
    return sniff_bytes(head(path))


def describe_head(data: bytes) -> str:
    """A few words on what bytes a file starts with, for messages."""
    if not data:
        return "the file is empty"
    kind = sniff_bytes(data)
    if kind is not None:
        return f"it is {KINDS[kind]}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        first = " ".join(text.split())[:24]
        return f"it is text starting {first!r}"
    return f"it starts with the bytes {data[:8].hex(' ')}"


def require(path: "str | os.PathLike[str]", *kinds: str, what: str | None = None) -> str:
    """The file's kind when it is one of `kinds`; else one ParseError naming what was expected and what
    the file is. what: the words for the expected kinds (default: from KINDS)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParseError("no such file" if not os.path.exists(path) else "not a file", path)
    try:
        data = head(path)
        kind = sniff_bytes(data)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    if kind in kinds:
        return kind
    want = what or " or ".join(KINDS[k] for k in kinds)
    magic = "" if what else " or ".join(repr(MAGIC[k].decode()) for k in kinds if k in MAGIC)
    raise ParseError(f"not {want}{' (no ' + magic + ' magic at its start)' if magic else ''}: "
                     f"{describe_head(data)}", path)
