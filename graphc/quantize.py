"""Quantization on the fly: decide which weights change type (plan), then re-encode them (apply).

    p = plan(graph, "q4_0", overrides={"output.weight": "q8_0", "*.attn_v.*": "keep"})
    print(p.summary())                       # what changes, what stays and why
    new_graph, new_weights = apply(graph, p, weights)

Rules (each decision carries a reason string; `QuantPlan.table()` lists them):
- Only float weights (f32, f16, bf16 leafs that are not inputs or state) can change type.
- A weight changes type when every use of it (through reshape / view / permute that keeps dim 0) is
  mul_mat's src0, or get_rows' table when `get_rows=True` (token embeddings are kept by default).
  A weight that also feeds any other op keeps its type: that op may not take quantized data.
- Kept by default rules: 1-D tensors (norm weights, biases); tensors with fewer than `min_elements`
  elements (MIN_ELEMENTS = 1024, a 32x32 matrix: nothing to gain); tensors whose ne0 is not a multiple
  of the type's block (32; 256 for K-quants); views of the weight that do not start on a block.
- Overrides ({name, glob or "re:regex": type or "keep"}) win over the default rules; an exact name
  beats patterns, then the first matching pattern in order. An override that asks for something
  impossible (odd ne0, non-float weight, a weight feeding other ops) or matches nothing is an error.
Values are converted as ggml's quantize tools do: f16/bf16 -> f32 first, then graphc.quants.quantize
(byte-identical with gguf.quants.quantize / ggml's reference quantizers).
"""
from __future__ import annotations

import fnmatch
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import numpy as np

from . import ops, quants
from .errors import CompileError
from .ir import Flag, Graph, Tensor, WeightRef, contiguous_strides, full_numpy_shape, n_dims, nbytes
from .runtime import encode_leaf, to_tensor_values
from .types import GGMLType, get_type
from .verify import verify

# Types weights can be quantized to by default (each has a quantizer in graphc.quants and a mul_mat).
QUANT_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_K", "q6_K", "f16", "bf16")
OVERRIDE_TYPES = QUANT_TYPES + ("f32",)     # an override may also widen a weight back to f32
SOURCE_TYPES = ("f32", "f16", "bf16")       # what can be re-encoded
KEEP = "keep"
MIN_ELEMENTS = 1024                          # smaller weights stay as they are
PROGRESS_AUTO_BYTES = 256 << 20              # progress lines on stderr above this much source data
CHUNK_ELEMENTS = 1 << 22                     # quantize at most this many values at once (bounded memory)

ProgressFn = Callable[[int, int, int, int, str], None]   # (i, n, bytes done, bytes total, tensor name)
Progress = Union[bool, ProgressFn, None]


@dataclass(frozen=True)
class Decision:
    """One weight's fate: its type before and after, and why (rule: a short key, reason: for people)."""
    name: str
    old: str
    new: str
    rule: str
    reason: str
    ne: tuple[int, int, int, int]

    @property
    def changed(self) -> bool:
        return self.new != self.old

    @property
    def old_bytes(self) -> int:
        t = get_type(self.old)
        return nbytes(t, self.ne, contiguous_strides(t, self.ne))

    @property
    def new_bytes(self) -> int:
        t = get_type(self.new)
        return nbytes(t, self.ne, contiguous_strides(t, self.ne))


class QuantPlan(dict):
    """{weight name: type after quantization} (unchanged weights map to their own type), plus
    `decisions` with the reason for each; made by plan(), consumed by apply() and compile()."""

    def __init__(self, qtype: str, decisions: list[Decision]):
        super().__init__((d.name, d.new) for d in decisions)
        self.qtype = qtype
        self.decisions: dict[str, Decision] = {d.name: d for d in decisions}

    def reason(self, name: str) -> str:
        return self.decisions[name].reason

    @property
    def changed(self) -> list[str]:
        return [n for n, d in self.decisions.items() if d.changed]

    def summary(self) -> str:
        """A few lines: how many weights and bytes change, and why the others are kept."""
        ds = list(self.decisions.values())
        ch = [d for d in ds if d.changed]
        before = sum(d.old_bytes for d in ch)
        after = sum(d.new_bytes for d in ch)
        kept_bytes = sum(d.old_bytes for d in ds if not d.changed)
        by_type: dict[str, int] = {}
        for d in ch:
            by_type[d.new] = by_type.get(d.new, 0) + 1
        types = ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
        lines = [f"quantize {self.qtype}: {len(ch)} of {len(ds)} weights re-encoded ({types or 'none'}), "
                 f"{_mb(before)} -> {_mb(after)}; {len(ds) - len(ch)} kept ({_mb(kept_bytes)})"]
        why: dict[str, list[str]] = {}
        for d in ds:
            if not d.changed:
                why.setdefault(d.rule, []).append(d.name)
        for rule, names in sorted(why.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(_short(n) for n in names[:4]) + (", ..." if len(names) > 4 else "")
            lines.append(f"  kept {len(names):4d}  {_RULE_TEXT.get(rule, rule)}: {shown}")
        return "\n".join(lines)

    def table(self) -> str:
        """One line per weight: name, type change, shape, reason."""
        rows = [(_short(d.name, 40), f"{d.old} -> {d.new}" if d.changed else f"{d.old} (kept)",
                 "[" + ", ".join(map(str, d.ne)) + "]", d.reason) for d in self.decisions.values()]
        if not rows:
            return "  (no weights)"
        w = [max(len(r[k]) for r in rows) for k in range(3)]
        return "\n".join("  " + "  ".join(c.ljust(w[k]) for k, c in enumerate(r[:3])) + "  " + r[3] for r in rows)


_RULE_TEXT = {"1-D": "1-D (norm weights, biases)", "small": "small", "block": "ne0 not a multiple of the block",
              "other-use": "feeds ops other than mul_mat/get_rows", "unused": "feed no mul_mat",
              "get_rows": "get_rows tables (get_rows=True quantizes them)", "not-float": "not float weights",
              "already": "already the target type", "view": "viewed off block boundaries", "override": "override"}


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 10_000 else f"{n} B"


def _short(name: str, width: int = 32) -> str:
    s = name if name.isprintable() and name else repr(name)
    return s if len(s) <= width else s[:width - 1] + "…"


# --- the spec users give (compile's quantize= argument, the CLI flags) -----------------------------

@dataclass(frozen=True)
class QuantSpec:
    """compile(quantize=...) normalised: a default type, overrides, and the get_rows / size choices."""
    default: str
    overrides: tuple[tuple[str, str], ...] = ()
    get_rows: bool = False
    min_elements: int = MIN_ELEMENTS
    progress: Progress = None


_SPEC_KEYS = ("default", "overrides", "get_rows", "min_elements", "progress")


def check_type(qtype: Any, what: str = "quantize type", allowed: tuple[str, ...] = QUANT_TYPES) -> str:
    """A type name from `allowed` (case-insensitive: Q4_K works), else a clear CompileError."""
    try:
        t = get_type(qtype) if isinstance(qtype, str) else None
    except ValueError:
        t = None
    if t is None or t.name not in allowed:
        raise CompileError(f"{what} {qtype!r} is not a quantized type graphc makes (one of: {', '.join(allowed)})")
    return t.name


def parse_spec(quantize: Any) -> QuantSpec | None:
    """compile()'s quantize argument -> QuantSpec (None: no quantization). Accepted shapes:
    "q4_0"; {"default": "q4_0", "overrides": {pattern: type | "keep"}, "get_rows": bool,
    "min_elements": int, "progress": bool | callable}; a QuantSpec."""
    if quantize is None or isinstance(quantize, QuantSpec):
        return quantize
    if isinstance(quantize, str):
        return QuantSpec(check_type(quantize))
    if not isinstance(quantize, Mapping):
        raise CompileError(f"quantize= takes a type name or a dict, got {type(quantize).__name__}")
    unknown = [k for k in quantize if k not in _SPEC_KEYS]
    if unknown:
        raise CompileError(f"quantize: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(_SPEC_KEYS)})")
    if "default" not in quantize:
        raise CompileError('quantize: the dict needs "default": a type such as "q4_0"')
    ov = quantize.get("overrides") or {}
    if not isinstance(ov, Mapping):
        raise CompileError(f"quantize: overrides must be a dict of name/pattern -> type, got {type(ov).__name__}")
    overrides = tuple((_check_pattern(k), _check_override(k, v)) for k, v in ov.items())
    get_rows = quantize.get("get_rows", False)
    min_el = quantize.get("min_elements", MIN_ELEMENTS)
    if not isinstance(get_rows, bool):
        raise CompileError(f"quantize: get_rows must be true or false, got {get_rows!r}")
    if not isinstance(min_el, int) or isinstance(min_el, bool) or min_el < 0:
        raise CompileError(f"quantize: min_elements must be an integer >= 0, got {min_el!r}")
    prog = quantize.get("progress")
    if prog is not None and not isinstance(prog, bool) and not callable(prog):
        raise CompileError(f"quantize: progress must be true, false or a callable, got {prog!r}")
    return QuantSpec(check_type(quantize["default"]), overrides, get_rows, min_el, prog)


def _check_pattern(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise CompileError(f"quantize override: the tensor name or pattern must be non-empty text, got {key!r}")
    if key.startswith("re:"):
        try:
            re.compile(key[3:])
        except re.error as e:
            raise CompileError(f"quantize override {key!r}: bad regular expression ({e})") from None
    return key


def _check_override(key: str, value: Any) -> str:
    if isinstance(value, str) and value.lower() == KEEP:
        return KEEP
    return check_type(value, f"quantize override {key!r}: type", OVERRIDE_TYPES)


def parse_override(item: str) -> tuple[str, str]:
    """'NAME=TYPE' (the CLI's --quantize-override) -> (NAME, TYPE); NAME may be a glob or re:REGEX."""
    name, eq, typ = item.rpartition("=")
    if not eq or not name or not typ:
        raise CompileError(f"quantize override {item!r}: expected NAME=TYPE (TYPE a quant type or 'keep')")
    return _check_pattern(name), _check_override(name, typ)


# --- plan -----------------------------------------------------------------------------------------

def _passes_through(n: Tensor, slot: int) -> bool:
    """Nodes that hand a weight on to mul_mat unchanged: reshape, view, permute keeping dim 0 innermost."""
    if slot != 0:
        return False
    return n.op in ("reshape", "view") or (n.op == "permute" and tuple(n.params["axes"])[0] == 0)


def _uses(t: Tensor, users: dict[Tensor, list[tuple[Tensor, int]]]) -> tuple[int, int, list[str], list[Tensor]]:
    """(mul_mat uses, get_rows uses, other uses as 'op' strings, the view nodes on the way)."""
    mm = gr = 0
    other: list[str] = []
    chain: list[Tensor] = []
    todo = [t]
    while todo:
        cur = todo.pop()
        for n, slot in users.get(cur, []):
            if _passes_through(n, slot):
                chain.append(n)
                if n.has(Flag.OUTPUT):
                    other.append(f"{n.op} (an output)")
                todo.append(n)
            elif n.op == "mul_mat" and slot == 0:
                mm += 1
            elif n.op == "get_rows" and slot == 0:
                gr += 1
            else:
                other.append(n.op if slot == 0 else f"{n.op} (source {slot})")
    return mm, gr, other, chain


def _convert_bytes(b: int, old: GGMLType, new: GGMLType) -> int | None:
    """A byte offset/stride into a contiguous `old` tensor -> the same element position in `new`
    layout (whole blocks only; None when it does not land on a block boundary)."""
    if b % (old.size * new.blck):
        return None
    return b // old.size // new.blck * new.size


def _views_fit(chain: list[Tensor], old: GGMLType, new: GGMLType) -> str | None:
    """Why the views of a weight cannot be re-expressed for `new` (None: they can)."""
    for n in chain:
        if n.ne[0] % new.blck:
            return f"view {_short(n.name)!r} has ne0 {n.ne[0]}, not a multiple of {new.name}'s block {new.blck}"
        if n.op == "view":
            vals = [n.params.get("offset", 0), *n.nb[1:]]
            if any(_convert_bytes(v, old, new) is None for v in vals):
                return f"view {_short(n.name)!r} (offset/strides {vals}) does not start rows on {new.name} blocks"
    return None


def _match(name: str, overrides: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    for key, typ in overrides:
        if key == name:
            return key, typ
    for key, typ in overrides:
        if key.startswith("re:"):
            if re.search(key[3:], name):
                return key, typ
        elif fnmatch.fnmatchcase(name, key):
            return key, typ
    return None


def weight_leafs(graph: Graph) -> list[Tensor]:
    """Leafs holding weights: not inputs, not state."""
    return [t for t in graph.leafs if not t.has(Flag.INPUT) and not t.has(Flag.STATE)]


def plan(graph: Graph, qtype: str, overrides: "Mapping[str, str] | None" = None, get_rows: bool = False,
         min_elements: int = MIN_ELEMENTS) -> QuantPlan:
    """Decide each weight's type after quantizing to `qtype` (see the module doc for the rules)."""
    spec = parse_spec({"default": qtype, "overrides": dict(overrides or {}), "get_rows": get_rows,
                       "min_elements": min_elements})
    return plan_spec(graph, spec)


def plan_spec(graph: Graph, spec: QuantSpec) -> QuantPlan:
    """plan() for a parsed QuantSpec (what compile() uses)."""
    users = graph.consumers(slots=True)
    leafs = weight_leafs(graph)
    counts: dict[str, int] = {}
    for t in leafs:
        counts[t.name] = counts.get(t.name, 0) + 1
    used_keys: set[str] = set()
    decisions = []
    for t in leafs:
        m = _match(t.name, spec.overrides)
        if m is not None:
            used_keys.add(m[0])
        if counts[t.name] > 1:
            if m is not None and m[1] != KEEP:
                raise CompileError(f"quantize override {m[0]!r}: {counts[t.name]} weights are named {t.name!r}")
            decisions.append(_keep(t, "other-use", f"{counts[t.name]} weights share this name"))
            continue
        decisions.append(_decide(t, spec, m, users))
    unused = [k for k, _ in spec.overrides if k not in used_keys]
    if unused:
        names = ", ".join(_short(t.name) for t in leafs[:8]) + (", ..." if len(leafs) > 8 else "")
        raise CompileError(f"quantize override {unused[0]!r} matches no weight of the graph "
                           f"(weights: {names or 'none'})")
    return QuantPlan(spec.default, decisions)


def _keep(t: Tensor, rule: str, reason: str) -> Decision:
    return Decision(t.name, t.type.name, t.type.name, rule, reason, t.ne)


def _decide(t: Tensor, spec: QuantSpec, m: tuple[str, str] | None, users) -> Decision:
    key, forced = m if m is not None else (None, None)

    def refuse(rule: str, why: str) -> Decision:
        if forced is not None:
            raise CompileError(f"quantize override {key!r} -> {forced} for {_short(t.name)!r}: {why}")
        return _keep(t, rule, why)

    if forced == KEEP:
        return _keep(t, "override", f"override {key!r}: keep")
    if t.type.name not in SOURCE_TYPES:
        if forced == t.type.name:
            return _keep(t, "override", f"override {key!r}: already {t.type.name}")
        return refuse("not-float", f"{t.type.name} is not a float weight type ({', '.join(SOURCE_TYPES)})")
    if forced is None and n_dims(t.ne) == 1:
        return _keep(t, "1-D", "1-D (norm weight or bias)")
    mm, gr, other, chain = _uses(t, users)
    if other:
        return refuse("other-use",
                      f"also feeds {', '.join(sorted(set(other)))}; only mul_mat/get_rows weights change type")
    if forced is None:
        if not mm and not gr:
            return _keep(t, "unused", "feeds no mul_mat")
        if gr and not spec.get_rows:
            return _keep(t, "get_rows", "get_rows table" + (" (also mul_mat)" if mm else "")
                         + "; get_rows=True quantizes it")
        if t.nelements < spec.min_elements:
            return _keep(t, "small", f"small: {t.nelements} elements < {spec.min_elements}")
    new = get_type(forced or spec.default)
    if t.ne[0] % new.blck:
        return refuse("block", f"ne0 {t.ne[0]} is not a multiple of {new.name}'s block size {new.blck}")
    bad_view = _views_fit(chain, t.type, new)
    if bad_view:
        return refuse("view", bad_view)
    if new == t.type:
        return _keep(t, "override" if forced else "already", f"already {new.name}")
    why = f"override {key!r}" if forced else ("mul_mat weight" if mm else "get_rows table")
    return Decision(t.name, t.type.name, new.name, "override" if forced else ("mul_mat" if mm else "get_rows"),
                    why, t.ne)


# --- apply ----------------------------------------------------------------------------------------

def source_values(t: Tensor, value: Any = None) -> np.ndarray:
    """A weight's values as f32 rows (rows, ne0), from `value` (numpy values or raw bytes of t's type)
    or else from t.data; f16 and bf16 are widened to f32 exactly, as ggml's quantize tools do."""
    if value is None:
        value = t.data
    if value is None:
        raise CompileError(f"weight {t.name!r}: no data to quantize (give it in weights= or bind it to a file)")
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = np.frombuffer(value, dtype=np.uint8)
    arr = np.asarray(value)
    ne0 = t.ne[0]
    if arr.dtype == np.uint8 or (t.type.name == "bf16" and arr.dtype == np.uint16):
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        if raw.size != t.nbytes:
            raise CompileError(f"weight {t.name!r}: {raw.size} bytes of {t.type.name} data, "
                               f"the tensor needs {t.nbytes}")
        vals = quants.decode(raw, t.type, ne0) if t.nelements else np.zeros((0, ne0), np.float32)
        return np.asarray(vals, dtype=np.float32).reshape(-1, ne0)
    if arr.dtype.kind != "f":
        raise CompileError(f"weight {t.name!r}: cannot quantize {arr.dtype} values")
    if arr.size != t.nelements:
        raise CompileError(f"weight {t.name!r}: {arr.size} values, the tensor has {t.nelements} (ne {list(t.ne)})")
    rows = np.asarray(arr, dtype=np.float32).reshape(-1, ne0)
    if t.type.name != "f32":     # values given for an f16/bf16 weight are that weight's values: round first
        rows = quants.dequantize(quants.quantize(rows, t.type), t.type)
    return rows


def quantize_rows(rows: np.ndarray, t: "str | GGMLType") -> np.ndarray:
    """f32 (rows, ne0) -> flat raw bytes of type t, CHUNK_ELEMENTS values at a time (bounded temporaries)."""
    t = get_type(t)
    n, ne0 = rows.shape
    rb = t.row_bytes(ne0)
    out = np.empty(n * rb, dtype=np.uint8)
    step = max(1, CHUNK_ELEMENTS // max(ne0, 1))
    for i in range(0, n, step):
        j = min(n, i + step)
        out[i * rb:j * rb] = quants.quantize(rows[i:j], t).reshape(-1)
    return out


class _Reporter:
    """Progress for big jobs: a callback, or one updating stderr line (auto above PROGRESS_AUTO_BYTES)."""

    def __init__(self, progress: Progress, total: int, n: int):
        self.fn: ProgressFn | None = None
        if callable(progress):
            self.fn = progress
        elif progress is True or (progress is None and total > PROGRESS_AUTO_BYTES):
            self.fn = self._line
        self.total, self.n, self.t0 = total, n, time.monotonic()

    def _line(self, i: int, n: int, done: int, total: int, name: str) -> None:
        end = "\n" if i == n else ""
        sys.stderr.write(f"\rquantize: tensor {i}/{n}  {done / 1e6:,.1f}/{total / 1e6:,.1f} MB  "
                         f"{time.monotonic() - self.t0:5.1f}s  {_short(name, 40):40s}{end}")
        sys.stderr.flush()

    def __call__(self, i: int, done: int, name: str) -> None:
        if self.fn is not None:
            self.fn(i, self.n, done, self.total, name)


def apply_inplace(graph: Graph, qplan: Mapping[str, str], weights: "Mapping[str, Any] | None" = None,
                  progress: Progress = None) -> list[Tensor]:
    """Retype and re-encode the weights `qplan` changes, in `graph` itself (leafs get .data, lose
    their file binding); views on the way to mul_mat are re-inferred; the graph is verified.
    Returns the changed leafs."""
    leafs = {t.name: t for t in weight_leafs(graph)}
    for name in qplan:
        if name not in leafs:
            raise CompileError(f"quantize plan names {name!r}, which is not a weight of graph {graph.name!r}")
    todo = [(leafs[n], get_type(typ)) for n, typ in qplan.items() if get_type(typ) != leafs[n].type]
    users = graph.consumers(slots=True)
    for t, new in todo:   # a hand-made plan gets the same hard checks as plan()'s overrides
        _, _, other, chain = _uses(t, users)
        why = (f"it feeds {', '.join(sorted(set(other)))}" if other else
               f"{t.type.name} is not a float weight type" if t.type.name not in SOURCE_TYPES else
               f"{new.name} is not one of {', '.join(OVERRIDE_TYPES)}" if new.name not in OVERRIDE_TYPES else
               f"ne0 {t.ne[0]} is not a multiple of {new.blck}" if t.ne[0] % new.blck else
               _views_fit(chain, t.type, new))
        if why:
            raise CompileError(f"quantize plan: cannot turn {t.name!r} ({t.type.name}) into {new.name}: {why}")
    total = sum(t.nbytes for t, _ in todo)
    report = _Reporter(progress, total, len(todo))
    old_types: dict[int, GGMLType] = {}
    done = 0
    for i, (t, new) in enumerate(todo, 1):
        rows = source_values(t, None if weights is None else weights.get(t.name))
        data = quantize_rows(rows, new)
        del rows
        old_types[id(t)] = t.type
        t.type, t.nb, t.data, t.weight = new, contiguous_strides(new, t.ne), data, None
        done += nbytes(old_types[id(t)], t.ne, contiguous_strides(old_types[id(t)], t.ne))
        report(i, done, t.name)
    if todo:
        _reinfer_views(graph, old_types)
    try:
        verify(graph)
    except Exception as e:   # a rule we did not foresee: say so instead of a half-retyped graph
        raise CompileError(f"quantize: the retyped graph does not verify: {e}") from None
    return [t for t, _ in todo]


def _reinfer_views(graph: Graph, old_types: dict[int, GGMLType]) -> None:
    """Give the views of retyped weights their new type, strides and byte offsets."""
    for n in graph.nodes:
        if n.view_src is None or id(n.view_src) not in old_types or n.src[0] is None:
            continue
        old, new = old_types[id(n.view_src)], n.view_src.type
        params = dict(n.params)
        decl = None
        if n.op == "view":
            params["offset"] = _convert_bytes(params.get("offset", 0), old, new)
            nb = (new.size, *(_convert_bytes(b, old, new) for b in n.nb[1:]))
            decl = ops.Decl(new, n.ne, nb)   # type: ignore[arg-type]
        elif n.op == "reshape":
            decl = ops.Decl(new, n.ne)
        spec = ops.infer(n.op, n.src, params, decl)
        n.params = params
        n.type, n.ne = spec.type, spec.ne
        n.nb = spec.nb if spec.nb is not None else contiguous_strides(spec.type, spec.ne)
        src = n.src[0]
        n.view_offs = (src.view_offs if src.is_view else 0) + spec.offset


def weight_value(t: Tensor) -> np.ndarray:
    """A leaf's data in the form weights= takes back: raw uint8 for block types and bf16, else values."""
    raw = np.asarray(t.data).reshape(-1).view(np.uint8)
    if t.type.np_dtype is None:
        return raw
    return raw.view(np.dtype(t.type.np_dtype).newbyteorder("<")).reshape(full_numpy_shape(t.ne)).reshape(t.shape)


def apply(graph: Graph, qplan: Mapping[str, str], weights: "Mapping[str, Any] | None" = None,
          progress: Progress = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """A new graph with the plan's weights retyped, and {name: data} for the weights it re-encoded
    (raw uint8 for block types and bf16, values for f16/f32) — what compile(new_graph, weights=...) takes.
    Values come from `weights` (name -> numpy values or raw bytes) or else from the leafs' own data."""
    g = graph.copy()
    changed = apply_inplace(g, qplan, weights, progress)
    return g, {t.name: weight_value(t) for t in changed}


# --- saving the result once -----------------------------------------------------------------------

def save_gguf(path: "str | os.PathLike[str]", graph: Graph, weights: "Mapping[str, Any] | None" = None,
              graph_path: "str | os.PathLike[str] | None" = None, metadata: "Mapping[str, Any] | None" = None) -> Graph:
    """Write every weight of `graph` (leaf data, or `weights`) to a GGUF file so the quantization is done
    once. Returns a copy of the graph whose weights are bound to that file (no data in memory); with
    graph_path it is also written there (.graph text, binding relative to it), ready for graphc.compile."""
    from graphc.frontends.gguf import write_gguf
    path = os.fspath(path)
    g = graph.copy()
    tensors = []
    seen: set[str] = set()
    moved = [t for t in weight_leafs(g)      # constants with inline data stay inline
             if t.has(Flag.PARAM) or t.weight is not None or t.data is None or (weights and t.name in weights)]
    for t in moved:
        if t.name in seen:
            raise CompileError(f"save_gguf: two weights are named {t.name!r}; GGUF tensor names must be unique")
        seen.add(t.name)
        v = weights.get(t.name) if weights is not None else None
        raw = t.data if v is None else encode_leaf(to_tensor_values(v, t, "weight", CompileError), t)
        if raw is None:
            raise CompileError(f"save_gguf: weight {t.name!r} has no data")
        tensors.append((t.name, t.type, t.ne[:n_dims(t.ne)], np.asarray(raw).reshape(-1).view(np.uint8)))
    meta = {"general.architecture": "graphc", "general.name": graph.name or "graphc",
            "general.quantized_by": "graphc"}
    meta.update(metadata or {})
    try:
        write_gguf(path, meta, tensors)
    except ValueError as e:
        raise CompileError(f"save_gguf {path}: {e}") from None
    ref_file = os.path.abspath(path)
    if graph_path is not None:
        gdir = os.path.dirname(os.path.abspath(os.fspath(graph_path)))
        ref_file = os.path.relpath(os.path.abspath(path), gdir)
    for t in moved:
        t.data, t.weight = None, WeightRef(ref_file, t.name)
        t.flags |= Flag.PARAM
    if graph_path is not None:
        from graphc.frontends.registry import save_graph
        save_graph(g, os.fspath(graph_path))
    return g
