"""The sidecar hints file of a ggml .dot dump (docs/dot-hints.md): what a dump does not print.

TOML (or JSON when the text starts with '{'):

    graph = "attn"                      # graph name (default: the file's stem)
    [defaults]
    leaf_type = "f32"                   # for old dumps that print no types
    [op.rms_norm]                       # params for every node of that graphc op
    eps = 1e-5
    [tensor.kq_soft]                    # one tensor by name ...
    scale = 0.25
    [node.12]                           # ... or by the index printed in its label
    [leaf.3]
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from graphc import ops
from graphc.errors import ParseError

# keys of a tensor table that are not op parameters
TENSOR_KEYS = {"op", "unary", "glu", "fn", "role", "output", "type", "ne", "ne3", "nb", "weight", "params"}
ROLES = ("input", "output", "param", "state", "none")
DEFAULT_KEYS = {"leaf_type"}
MAX_HINTS_BYTES = 16 << 20


@dataclass
class Hints:
    file: str | None = None
    graph: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_node: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_leaf: dict[int, dict[str, Any]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)        # "tensor.x", "node.3": checked for typos at the end

    def error(self, msg: str) -> ParseError:
        return ParseError(f"hints: {msg}", self.file)

    def tensor(self, kind: str, index: int, name: str | None) -> dict[str, Any]:
        """The merged hint table of one tensor (by-index wins over by-name)."""
        out: dict[str, Any] = {}
        if name is not None and name in self.by_name:
            out.update(self.by_name[name])
            self.used.add(f"tensor.{name}")
        table = self.by_node if kind == "node" else self.by_leaf
        if index in table:
            out.update(table[index])
            self.used.add(f"{kind}.{index}")
        return out

    def unused(self) -> list[str]:
        names = [f"tensor.{n}" for n in self.by_name] + [f"node.{i}" for i in self.by_node] + \
                [f"leaf.{i}" for i in self.by_leaf]
        return [n for n in names if n not in self.used]


def load_hints(spec: "str | os.PathLike[str] | dict | Hints | None", dot_path: str | None) -> Hints:
    """`spec`: a hints file, an already-parsed dict, or None for the sidecar `<dot file>.hints` if it exists."""
    if isinstance(spec, Hints):
        return spec
    if spec is None:
        if dot_path is None or not os.path.isfile(dot_path + ".hints"):
            return Hints()
        spec = dot_path + ".hints"
    if isinstance(spec, dict):
        return _from_dict(spec, None)
    path = os.fspath(spec)
    if not os.path.isfile(path):
        raise ParseError("hints file not found", path)
    if os.path.getsize(path) > MAX_HINTS_BYTES:
        raise ParseError(f"hints file larger than {MAX_HINTS_BYTES} bytes", path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"hints file is not UTF-8 (byte {e.start})", path, offset=e.start) from None
    return _from_dict(parse_hints_text(text, path), path)


def parse_hints_text(text: str, path: str | None = None) -> dict:
    # besides their decode errors, json and tomllib raise a plain ValueError for an integer of more than
    # sys.get_int_max_str_digits() digits and RecursionError for arrays or tables nested too deeply
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParseError(f"hints: bad JSON: {e.msg}", path, e.lineno, e.colno) from None
        except (ValueError, RecursionError) as e:
            raise ParseError(f"hints: bad JSON: {_why(e)}", path) from None
    else:
        import tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
            line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
            raise ParseError(f"hints: bad TOML: {str(e).split(' (at line')[0]}", path, line, col) from None
        except (ValueError, RecursionError) as e:
            raise ParseError(f"hints: bad TOML: {_why(e)}", path) from None
    if not isinstance(data, dict):
        raise ParseError("hints: the top level must be a table", path)
    return data


def _why(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "arrays or tables nested too deeply"
    return str(e).split(";")[0]          # "Exceeds the limit (4300 digits) for integer string conversion..."


def _from_dict(data: dict, path: str | None) -> Hints:
    h = Hints(file=path)
    for key, val in data.items():
        if key == "graph":
            if not isinstance(val, str):
                raise h.error("graph must be a string")
            h.graph = val
        elif key == "defaults":
            h.defaults = _table(h, val, "defaults")
            extra = set(h.defaults) - DEFAULT_KEYS
            if extra:
                raise h.error(f"[defaults] has unknown key(s) {sorted(extra)}; known: {sorted(DEFAULT_KEYS)}")
        elif key == "op":
            for op, params in _table(h, val, "op").items():
                if op not in ops.OPS or op == "none":
                    raise h.error(f"[op.{op}]: unknown graphc op; ops are lower-case ggml names like rms_norm")
                params = _table(h, params, f"op.{op}")
                known = {p.name for p in ops.OPS[op].params}
                if op == "unary" and "unary" in params:
                    params = {**{k: v for k, v in params.items() if k != "unary"}, "op": params["unary"]}
                extra = set(params) - known
                if extra:
                    raise h.error(f"[op.{op}] has no parameter(s) {sorted(extra)}; "
                                  f"{op} takes {sorted(known) or 'none'}")
                h.ops[op] = params
        elif key in ("tensor", "node", "leaf"):
            for k, t in _table(h, val, key).items():
                t = _table(h, t, f"{key}.{k}")
                _check_tensor_table(h, t, f"{key}.{k}")
                if key == "tensor":
                    h.by_name[k] = t
                else:
                    if not re.fullmatch(r"[0-9]{1,9}", k):
                        raise h.error(f"[{key}.{k}]: a {key} is named by the index printed in its label")
                    (h.by_node if key == "node" else h.by_leaf)[int(k)] = t
        else:
            raise h.error(f"unknown top-level key {key!r}; known: graph, defaults, op, tensor, node, leaf")
    return h


def _table(h: Hints, v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise h.error(f"[{where}] must be a table")
    return v


def _check_tensor_table(h: Hints, t: dict, where: str) -> None:
    role = t.get("role")
    if role is not None:
        roles = [role] if isinstance(role, str) else role
        if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles):
            raise h.error(f"[{where}] role must be one of {', '.join(ROLES)} or a list of them")
    for key, kind in (("op", str), ("unary", str), ("glu", str), ("fn", str), ("type", str), ("output", bool),
                      ("ne3", int), ("params", dict)):
        if key in t and not isinstance(t[key], kind) or (kind is int and isinstance(t.get(key), bool)):
            raise h.error(f"[{where}] {key} must be a {kind.__name__}")
    if "ne" in t:
        ne = t["ne"]
        if not (isinstance(ne, list) and 1 <= len(ne) <= 4 and all(isinstance(n, int) and not isinstance(n, bool)
                                                                   and 0 <= n < 1 << 40 for n in ne)):
            raise h.error(f"[{where}] ne must be a list of 1 to 4 sizes")
    if "nb" in t:
        nb = t["nb"]
        ok = nb in ("source", "contiguous") or (isinstance(nb, list) and 1 <= len(nb) <= 4 and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 62 for n in nb))
        if not ok:
            raise h.error(f'[{where}] nb must be "source", "contiguous", [nb1, ...] or [nb0, nb1, nb2, nb3]')
    if "weight" in t:
        w = t["weight"]
        if not (isinstance(w, str) or (isinstance(w, dict) and set(w) <= {"file", "tensor"} and
                                        isinstance(w.get("file"), str) and isinstance(w.get("tensor", ""), str))):
            raise h.error(f'[{where}] weight must be "file" or {{file = "...", tensor = "..."}}')
