"""The Python API: compile a graph for a target, run it with numpy arrays, save and load artifacts.

    m = graphc.compile("mlp.graph", target="ref", weights="mlp.npz")
    y = m.run({"x": x})["y"]          # numpy in, numpy out, keyed by tensor name
    m.save("mlp.out"); m2 = graphc.load("mlp.out")

Data rules (numpy side; the IR stays in ggml order, converted only through graphc.ir):
- Shapes: a tensor's numpy shape is `Tensor.shape` (reversed ne, ggml's trailing 1s dropped). Any shape
  that equals it up to leading 1-sized dims is accepted, so the full 4-D (ne3, ne2, ne1, ne0) works too.
- Dtypes: float tensors (f32, f16, bf16, quantized) take any floating-point array and cast it (float64
  rounds to f32; quantized inputs are quantized like ggml does). Integer tensors take any integer array
  whose values fit. Ints for float tensors and floats for int tensors are rejected: that is almost always
  the wrong array. uint8 arrays (or bytes) for quantized/bf16 tensors are raw ggml bytes.
- Outputs come back with the tensor's numpy dtype (float32 for quantized and bf16 tensors).

Weights (leafs that are not inputs): the `weights` argument first, then the leaf's own `data`, then its
WeightRef binding (a file relative to the graph file). State leafs without data start as zeros.
Weight files (GGUF, safetensors, .npy, .npz; graphc.frontends.weights) are memory-mapped: a tensor stored
in the leaf's own type is used in place, read-only, never copied; other stored types are converted
(f16/bf16 -> f32 exactly, quantized -> f32 by dequantizing, f32 -> f16/bf16/quantized as ggml rounds).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import weakref
import zipfile
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

import numpy as np

from .custom import get_custom_op
from .errors import CompileError, ParseError, RunError
from .ir import Flag, Graph, Tensor, WeightRef, role_of
from .runtime import encode_leaf, to_tensor_values, value_dtype
from .util import sha256_file
from .verify import verify
from .version import __version__
from graphc.targets import DEFAULT_TARGET

PathLike = Union[str, "os.PathLike[str]"]
WeightValue = Union[np.ndarray, bytes, bytearray, memoryview]
Weights = Union[Mapping[str, WeightValue], PathLike, None]

ARTIFACT_FORMAT = "graphc-artifact"
ARTIFACT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH_FILE = "graph.graph"
WEIGHTS_FILE = "weights.npz"


# --- tensor descriptions (numpy conversions: graphc.runtime) ----------------------------------

@dataclass(frozen=True)
class TensorInfo:
    """What a user needs to feed or read a tensor: numpy shape and dtype, plus ggml facts."""
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    type: str
    ne: tuple[int, int, int, int]

    @classmethod
    def of(cls, t: Tensor) -> "TensorInfo":
        return cls(t.name, t.shape, value_dtype(t), t.type.name, t.ne)

    def __str__(self) -> str:
        return f"{self.name!r} {self.shape} {self.dtype} ({self.type})"


# --- graphs, copies and weights ------------------------------------------------------------

def _as_graph(graph_or_path: "Graph | PathLike",
              graph_options: Mapping[str, Any] | None = None) -> tuple[Graph, str | None]:
    """The graph and the file it came from (None when given in memory)."""
    if isinstance(graph_or_path, Graph):
        if graph_options:
            raise CompileError("graph_options are for reading a graph file; this graph is in memory already")
        return graph_or_path, None
    if isinstance(graph_or_path, (str, os.PathLike)):
        from graphc.frontends.registry import load_graph
        path = os.fspath(graph_or_path)
        if graph_options is not None and not isinstance(graph_options, Mapping):
            raise CompileError(f"graph_options must be a dict (inputs, outputs, era, strict), "
                               f"got {type(graph_options).__name__}")
        return load_graph(path, **dict(graph_options or {})), path
    raise CompileError(f"compile() takes a Graph or a path to a graph file, got {type(graph_or_path).__name__}")


# --- weight files (graphc.frontends.weights: GGUF, safetensors, .npy, .npz; mapped, not copied) ----

def open_weights_file(path: PathLike) -> Any:
    """A WeightFile (see graphc.frontends.weights); CompileError for a missing file or unknown format."""
    from graphc.frontends.weights import open_weights
    return open_weights(path)


def _weight_ref_data(t: Tensor, ref: WeightRef, base_dir: str, cache: dict[str, Any]) -> np.ndarray:
    """The raw bytes of leaf t from its WeightRef binding: a read-only view of the mapped file when the
    stored type is t's type, else converted (graphc.frontends.weights.tensor_data has the rules)."""
    from graphc.frontends.weights import tensor_data
    path = ref.file if os.path.isabs(ref.file) else os.path.join(base_dir, ref.file)
    if path not in cache:
        cache[path] = open_weights_file(path)
    wf = cache[path]
    if ref.rows is None and ref.cols is None:
        return tensor_data(wf, wf.resolve(ref.tensor), t)
    return _weight_slice(wf, wf.resolve(ref.tensor), ref, t)


# column slices copied from weight files, while something holds them: every graph of a model (one per
# token count) shares one copy, as its row slices share the file mapping
_SLICES: "weakref.WeakValueDictionary[tuple, np.ndarray]" = weakref.WeakValueDictionary()


def _weight_slice(wf: Any, name: str, ref: WeightRef, t: Tensor) -> np.ndarray:
    """Leaf t's bytes from a slice of file tensor `name` (a shard): rows [r0, r1) of its ne[1] as a view
    of the file, columns [c0, c1) of its ne[0] (whole blocks) copied once (read-only, shared); t's ne is
    the slice's."""
    try:
        st = os.stat(wf.path)
        key: "tuple | None" = (os.path.realpath(wf.path), st.st_mtime_ns, st.st_size, name, ref.rows, ref.cols,
                               t.type.name, tuple(t.ne))
    except (OSError, AttributeError, TypeError):
        key = None
    hit = _SLICES.get(key) if key is not None else None
    if hit is not None:
        return hit
    out, copied = _read_weight_slice(wf, name, ref, t)
    if key is not None and copied:                    # (a view of the file is shared already)
        out.flags.writeable = False
        _SLICES[key] = out
    return out


def _read_weight_slice(wf: Any, name: str, ref: WeightRef, t: Tensor) -> "tuple[np.ndarray, bool]":
    """The slice's bytes and whether they are a copy (else a view of the file)."""
    from graphc.frontends.weights import tensor_data
    from .ir import new_tensor
    from .util import release_file_pages
    if name not in wf:
        return tensor_data(wf, name, t), False        # the missing-tensor message
    _, ne = wf.info(name)
    full = new_tensor(t.name, t.type, tuple(int(d) for d in ne))
    raw = tensor_data(wf, name, full)                 # a view when the file's type is t's type
    n_rows = int(np.prod(full.ne[1:]))
    row_bytes = raw.size // max(n_rows, 1)
    r0, r1 = ref.rows if ref.rows is not None else (0, full.ne[1])
    c0, c1 = ref.cols if ref.cols is not None else (0, full.ne[0])
    blck = t.type.blck
    want = (c1 - c0, r1 - r0) + tuple(full.ne[2:])
    if (not 0 <= r0 < r1 <= full.ne[1] or not 0 <= c0 < c1 <= full.ne[0] or c0 % blck or c1 % blck
            or tuple(t.ne) != want):
        raise CompileError(f"weight {t.name!r}: slice rows {ref.rows} cols {ref.cols} of {wf.path} {name!r} "
                           f"(ne {list(full.ne)}) does not give the leaf's ne {list(t.ne)} in whole "
                           f"{t.type.name} blocks of {blck}")
    rows = raw.reshape(int(np.prod(full.ne[2:])), full.ne[1], row_bytes)[:, r0:r1]
    if (c0, c1) != (0, full.ne[0]):
        bs = t.type.size
        out = np.ascontiguousarray(rows[:, :, c0 // blck * bs:c1 // blck * bs]).reshape(-1)
        release_file_pages(raw)       # the copy is all this leaf needs: the other columns' pages leave memory
        return out, True
    if rows.flags.c_contiguous:
        return rows.reshape(-1), False
    return np.ascontiguousarray(rows).reshape(-1), True


def _bind_from_file(graph: Graph, path: PathLike, cache: dict[str, Any]) -> set[int]:
    """compile(weights=path): every non-input leaf whose name the file holds takes that tensor; other
    leafs keep their own data or binding (a file may hold other tensors too)."""
    from graphc.frontends.weights import tensor_data
    wf = cache[os.fspath(path)] = open_weights_file(path)
    names = set(wf.names())          # a lone .npy array is named after its file
    bound: set[int] = set()
    for t in graph.leafs:
        if t.name in names and not t.has(Flag.INPUT):
            t.data = tensor_data(wf, t.name, t)
            bound.add(id(t))
    inputs = [t.name for t in graph.leafs if t.has(Flag.INPUT) and t.name in names]
    if not bound and inputs:
        raise _weights_are_inputs(os.fspath(path), inputs)
    return bound


def _weights_are_inputs(path: str, names: list[str]) -> CompileError:
    """A weights file that binds nothing but names inputs: the graph took weights for inputs (a ggml .dot
    dump takes every leaf whose data it does not print as an input)."""
    listed = ", ".join(map(repr, names[:8])) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    head = f"{path}: it holds no weight of this graph, only tensors that are its inputs ({listed})"
    e = CompileError(f"weights {head}; inputs get their values at run(). If they are weights, read the graph with its "
                     "real inputs named (graphc.load_graph(path, inputs=[...]) or compile(path, graph_options="
                     "{'inputs': [...]}) for a .ggml export or a ggml .dot dump: the other leafs then take "
                     "weights), or mark them 'param' in a .graph file")
    e.cli = (f"--weights {head}; give inputs with --inputs, or, if they are weights, name the real inputs with "
             "--input NAME (.ggml exports and ggml .dot dumps: the other leafs then take weights; for a .graph "
             "converted from a dump, convert it again with --input NAME) or mark them 'param' in the .graph file")
    return e


def _needs_data(t: Tensor) -> bool:
    return not t.has(Flag.INPUT) and not t.has(Flag.STATE)


def bind_weights(graph: Graph, weights: Weights, base_dir: str) -> set[int]:
    """Give every non-input leaf its data (see the module doc for the order). Changes `graph`'s
    leafs in place; returns the ids of the leafs whose data lives in memory (weights arg or own data)."""
    cache: dict[str, Any] = {}           # open weight files by path, closed at the end (views survive)
    try:
        return _bind_weights(graph, weights, base_dir, cache)
    finally:
        for wf in cache.values():
            wf.close()


def _bind_weights(graph: Graph, weights: Weights, base_dir: str, cache: dict[str, Any]) -> set[int]:
    given: Mapping[str, Any] = {}
    strict = True
    from_file: set[int] = set()
    if isinstance(weights, (str, os.PathLike)):
        from_file = _bind_from_file(graph, weights, cache)
    elif weights is not None:
        if not isinstance(weights, Mapping):
            raise CompileError(f"weights must be a dict of name -> array or a path, got {type(weights).__name__}")
        given = weights
    leafs = {t.name: t for t in graph.leafs}
    if strict:
        for name in given:
            t = leafs.get(name)
            if t is None:
                weighty = [n for n, lt in leafs.items() if not lt.has(Flag.INPUT)]
                raise CompileError(f"weights: the graph has no leaf named {name!r} (weights it takes: "
                                   f"{', '.join(map(repr, weighty)) or 'none'})")
    in_memory: set[int] = set(from_file)
    missing: list[Tensor] = []
    for t in graph.leafs:
        if id(t) in from_file:
            continue
        if t.name in given:
            if t.has(Flag.INPUT):
                if strict:
                    raise CompileError(f"weights: {t.name!r} is an input; give it to run() instead")
                continue
            t.data = encode_leaf(to_tensor_values(given[t.name], t, "weight", CompileError), t)
            in_memory.add(id(t))
        elif t.data is not None:
            in_memory.add(id(t))
        elif t.weight is not None and _needs_data(t):
            t.data = _weight_ref_data(t, t.weight, base_dir, cache)
        elif _needs_data(t):
            missing.append(t)
    if missing:
        listed = ", ".join(f"{t.name!r} {t.shape} {t.type.name}" for t in missing)
        raise CompileError(f"missing weights for {len(missing)} leaf(s): {listed}; pass weights= "
                           "(a dict or a .gguf/.safetensors/.npz/.npy file) or bind them in the graph")
    return in_memory


def _apply_quantize(g: Graph, quantize: Any, in_memory: set[int]) -> tuple[Any, set[int]]:
    """compile(quantize=...): re-encode the bound weights in place (graphc.quantize). Returns the plan
    (None without quantize) and the leafs whose data now lives in memory (the re-encoded ones join)."""
    from . import quantize as q
    if quantize is None:
        return None, in_memory
    if isinstance(quantize, q.QuantPlan):
        plan, progress = quantize, None
    else:
        spec = q.parse_spec(quantize)
        plan, progress = q.plan_spec(g, spec), spec.progress
    changed = q.apply_inplace(g, plan, progress=progress)
    return plan, in_memory | {id(t) for t in changed}


# --- the compiled module ---------------------------------------------------------------------

class Module:
    """A graph compiled for one target: run it with numpy arrays; state persists between runs.

    Threads: a module has one arena, one set of input/output buffers and one state, so its runs cannot
    overlap. run(), read(), read_torch() and reset_state() take the module's lock (a threading.RLock, shared
    by modules compiled with share_state=, which share state buffers): calls from several threads at once
    are safe and run one after another, each seeing its own inputs and outputs. For parallel runs, compile
    one module per thread (compiling is thread-safe; they share the compile cache and weight mappings)."""

    quantize_plan: Any = None    # the graphc.quantize.QuantPlan compile(quantize=...) applied
    program: Any = None          # the graphc.program.Program the pass pipeline made (None with passes=False)

    def __init__(self, graph: Graph, executable: Any, target: str, target_opts: dict[str, Any],
                 in_memory: set[int], source: str | None = None):
        self.graph = graph
        self.target = target
        self.target_opts = dict(target_opts)
        self.source = source                     # the graph file it was compiled from, if any
        self._exe = executable
        self._in_memory = in_memory
        self._inputs = {t.name: t for t in graph.inputs}
        self._outputs = [t for t in graph.nodes + graph.leafs if t.has(Flag.OUTPUT)]
        self._lock = threading.RLock()             # serialises runs (see the class doc)

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo.of(t) for t in self._inputs.values()]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo.of(t) for t in self._outputs]

    @property
    def state(self) -> list[TensorInfo]:
        return [TensorInfo.of(t) for t in self.graph.state]

    def __repr__(self) -> str:
        return (f"Module({self.graph.name!r}, target={self.target!r}, inputs=[{', '.join(map(str, self.inputs))}], "
                f"outputs=[{', '.join(map(str, self.outputs))}])")

    def _check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[Tensor, np.ndarray]]:
        if not isinstance(inputs, Mapping):
            raise RunError(f"run() takes a dict of input name -> array, got {type(inputs).__name__}")
        expected = ", ".join(map(str, self.inputs)) or "none"
        unknown = [n for n in inputs if n not in self._inputs]
        if unknown:
            n = unknown[0]
            try:
                other = self.graph.get(n) if isinstance(n, str) else None
            except KeyError:
                other = None
            why = " (it is a tensor of the graph but not an input)" if other is not None else ""
            how, fmt = "", _roles_by_name(self.source)
            if other is not None and other.is_leaf and fmt is not None:
                how = (f"; a {fmt} may not record which leafs are inputs: name them when reading it, "
                       f"graphc.compile(path, graph_options={{'inputs': [{n!r}, ...]}}) or "
                       f"graphc.load_graph(path, inputs=[...])")
            raise RunError(f"unknown input {n!r}{why}; the inputs are: {expected}{how}")
        missing = [n for n in self._inputs if n not in inputs]
        if missing:
            raise RunError(f"missing input(s) {', '.join(map(repr, missing))}; every run needs all inputs: {expected}")
        out = []
        for n, t in self._inputs.items():
            v = inputs[n]
            if _is_torch(v):
                if hasattr(self._exe, "write_torch"):
                    out.append((t, v))        # a device target copies it device to device (no host round trip)
                    continue
                v = v.detach().cpu().numpy()
            out.append((t, to_tensor_values(v, t, "input", RunError)))
        return out

    def run(self, inputs: Mapping[str, Any] | None = None, outputs: str = "numpy") -> dict[str, Any]:
        """Run once. inputs: {input name: array}: numpy arrays, or torch tensors (on the Triton target a CUDA
        tensor is copied on the GPU, never through the host). Returns {output name: values in the output's
        numpy shape}: numpy arrays, or with outputs="torch" torch tensors (on the Triton target on its
        device, copied there; elsewhere made from the numpy arrays)."""
        if outputs not in ("numpy", "torch"):
            raise RunError(f"outputs must be 'numpy' or 'torch', got {outputs!r}")
        checked = self._check_inputs(inputs if inputs is not None else {})
        with self._lock:                # write inputs, run, read outputs: one run at a time
            for t, values in checked:
                if _is_torch(values):
                    self._exe.write_torch(t, values)
                else:
                    self._exe.write(t, values)
            self._exe.run()
            if outputs == "torch":
                return {t.name: self.read_torch(t) for t in self._outputs}
            return {t.name: self.read(t) for t in self._outputs}

    def read_torch(self, t: "Tensor | str") -> Any:
        """read(), as a torch tensor: on the Triton target a copy on its device, elsewhere from the numpy array."""
        t = self._tensor(t)
        if hasattr(self._exe, "read_torch"):
            with self._lock:
                return self._exe.read_torch(t)
        import torch
        return torch.from_numpy(self.read(t))

    def _tensor(self, t: "Tensor | str") -> Tensor:
        if isinstance(t, str):
            try:
                return self.graph.get(t)
            except KeyError as e:
                raise RunError(str(e.args[0])) from None
        return t

    def read(self, t: "Tensor | str") -> np.ndarray:
        """The current contents of an output or state tensor, in numpy shape and value dtype."""
        t = self._tensor(t)
        with self._lock:            # a copy made under the lock: no other thread's run shows through
            arr = np.asarray(self._exe.read(t))
            return np.array(arr, dtype=value_dtype(t)).reshape(t.shape)

    def reset_state(self) -> None:
        """Put every state tensor back to its initial contents (its leaf data, else zeros)."""
        with self._lock:
            self._exe.reset_state()
            for t in self.graph.state:
                if t.data is not None:
                    self._exe.write(t, np.asarray(t.data, dtype=np.uint8).reshape(-1))

    def save(self, directory: PathLike) -> str:
        """Write a self-describing artifact directory; graphc.load(directory) restores the module."""
        return save_artifact(self, os.fspath(directory))

    def emit_lib(self, directory: PathLike, **opts: Any) -> str:
        """Write a standalone C library (shared library, header, weights pack, manifest, example program and
        Makefile) into `directory`; target c only. Options: graphc.targets.c.emit_lib (docs/c-library.md)."""
        if self.target != "c":
            raise CompileError(f"emit_lib needs a module compiled for target 'c' (this one is for {self.target!r})")
        from graphc.targets.c import emit_lib
        return os.fspath(emit_lib(self, directory, **opts))


def compile(graph_or_path: "Graph | PathLike", target: str = DEFAULT_TARGET, weights: Weights = None,
            quantize: Any = None, passes: Any = True, disable_passes: Iterable[str] = (),
            dump_dir: PathLike | None = None, dump_after: Iterable[str] = (), verify_passes: bool = False,
            share_state: "Module | None" = None, graph_options: Mapping[str, Any] | None = None,
            max_memory: "int | None" = None, **target_opts: Any) -> Module:
    """Compile a graph (a Graph or a graph file) for `target`; returns a runnable Module.

    graph_options: how to read a graph file, as graphc.load_graph takes them: {"inputs": [names],
    "outputs": [names], "era": commit, "strict": bool} (a version-1 ggml export records no roles: every
    leaf is a weight unless named in inputs).

    passes: run the pass pipeline (graphc.passes.PASSES) before the target: True (all), False (none: the
    target gets the verified graph as given), or the names of the passes to run. disable_passes: names to
    skip. dump_dir / dump_after: write the IR before/after each (or the named) pass there. verify_passes:
    verify the IR after every pass. The Program is `module.program`, what each pass did `module.program.log`.

    quantize: re-encode float weights that feed mul_mat on the way in (graphc.quantize has the rules):
    a type name ("q4_0", "q8_0", "q4_K", "f16", ...), or {"default": "q4_0", "overrides": {name, glob or
    "re:regex": type or "keep"}, "get_rows": bool, "min_elements": int, "progress": bool | callable},
    or a QuantPlan from graphc.quantize.plan(). The plan used is `module.quantize_plan`.

    share_state: another Module (same target) whose state tensors this one uses, matched by name: every
    state tensor of this graph must exist there with the same type and shape. A prefill graph and a decode
    graph share one KV cache this way; reset_state() on either resets both."""
    from graphc.targets import get_target
    from .quantize import parse_spec, QuantPlan
    _check_max_memory_arg(max_memory)
    graph, path = _as_graph(graph_or_path, graph_options)
    target_mod = get_target(target)
    if not isinstance(quantize, QuantPlan):
        parse_spec(quantize)        # a bad type or override fails before any weight is read
    g = verify(graph.copy())
    from .passes.rewrite import materialise_output_views, snapshot_aliased_writes
    materialise_output_views(g)         # outputs that view computed tensors get their own memory
    snapshot_aliased_writes(g)          # a cpy/set_rows reading the memory it writes reads a copy
    base_dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    in_memory = bind_weights(g, weights, base_dir)
    qplan, in_memory = _apply_quantize(g, quantize, in_memory)
    pipeline = dict(passes=passes, disable_passes=disable_passes, dump_dir=dump_dir, dump_after=dump_after,
                    verify_passes=verify_passes)
    shared = _shared_state(g, share_state, target) if share_state is not None else None
    m = _finish(g, target, target_mod, target_opts, in_memory, path, pipeline, shared, max_memory)
    m.quantize_plan = qplan
    if share_state is not None:
        m._lock = share_state._lock       # one state, one lock: runs of either module never overlap
    return m


def _shared_state(g: Graph, other: "Module", target: str) -> dict[str, np.ndarray]:
    """The other module's state buffers for g's state tensors; CompileError on any mismatch."""
    if not isinstance(other, Module):
        raise CompileError(f"share_state must be a compiled Module, got {type(other).__name__}")
    if other.target != target or not hasattr(other._exe, "state_buffers"):
        raise CompileError(f"share_state: a {target!r} module cannot share state with a {other.target!r} module")
    theirs = {t.name: t for t in other.graph.state}
    for t in g.state:
        o = theirs.get(t.name)
        if o is None:
            raise CompileError(f"share_state: state {t.name!r} does not exist in {other.graph.name!r} "
                               f"(its state: {', '.join(theirs) or 'none'})")
        if o.type is not t.type or tuple(o.ne) != tuple(t.ne):
            raise CompileError(f"share_state: state {t.name!r} is {t.type.name} {list(t.ne)} here but "
                               f"{o.type.name} {list(o.ne)} in {other.graph.name!r}")
    return other._exe.state_buffers()


def _run_passes(g: Graph, passes: Any = True, disable_passes: Iterable[str] = (), dump_dir: PathLike | None = None,
                dump_after: Iterable[str] = (), verify_passes: bool = False) -> Any:
    """The pass pipeline's Program for g (None with passes=False)."""
    from .passes import PASS_NAMES, check_names, run_pipeline
    if passes is False:
        return None
    if isinstance(disable_passes, str):
        disable_passes = [disable_passes]
    if isinstance(dump_after, str):
        dump_after = [dump_after]
    disable = check_names(disable_passes, "disable_passes")
    if passes is not True:
        if isinstance(passes, str):
            passes = [passes]
        if not isinstance(passes, Iterable) or isinstance(passes, (bytes, Mapping)):
            raise CompileError(f"passes must be True, False or a list of pass names, got {passes!r}")
        disable |= set(PASS_NAMES) - check_names(passes, "passes")
    return run_pipeline(g, disable=disable, dump_dir=dump_dir, dump_after=dump_after, verify_each=verify_passes)


def _accepts_program(target_mod: Any) -> bool:
    """Targets that run a graphc.program.Program (kernels and memory plan) say so; ref does."""
    return bool(getattr(target_mod, "ACCEPTS_PROGRAM", target_mod.__name__ == "graphc.targets.ref"))


def _check_max_memory_arg(max_memory: Any) -> None:
    if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, int)
                                   or max_memory <= 0):
        raise CompileError(f"max_memory must be a positive number of bytes (an int) or None, got {max_memory!r}")


def memory_needs(g: Graph, program: Any = None, shared_state: bool = False) -> dict[str, int]:
    """The bytes a module of graph g holds, by kind: arena (the planned intermediates: program's plan, else
    the plan of g run one kernel per node), weights (non-input, non-state leafs), state (0 when shared with
    another module) and io (input and output buffers). Views alias other tensors and count nothing."""
    from .memplan import plan
    from .program import unfused
    if program is None or program.plan is None:
        program = plan(program if program is not None else unfused(g))
    roots = [t for t in g.leafs if not t.is_view]
    outputs = {id(t): t for t in g.nodes + g.leafs if t.has(Flag.OUTPUT) and not t.is_view}
    return {"arena": int(program.plan.size),
            "weights": sum(t.nbytes for t in roots if not t.flags & (Flag.INPUT | Flag.STATE)),
            "state": 0 if shared_state else sum(t.nbytes for t in roots if t.has(Flag.STATE)),
            "io": sum(t.nbytes for t in roots if t.has(Flag.INPUT)) +
            sum(t.nbytes for t in outputs.values() if not t.flags & (Flag.STATE | Flag.PARAM))}


def temporaries_bytes(exe: Any) -> int:
    """The bytes of a compiled executable's buffers beyond the memory plan: the generated code's temporary
    buffer (values that cross steps inside a kernel: `gen.temp_size` of the c, opencl and triton targets)
    and OpenCL's scratch buffer. Known only once the target generated its code; 0 for ref."""
    gen = getattr(exe, "gen", None)
    return sum(int(getattr(gen, k, 0) or 0) for k in ("temp_size", "scratch_size")) if gen is not None else 0


def _enforce_max_memory(g: Graph, program: Any, max_memory: int, shared_state: bool,
                        extra: "dict[str, int] | None" = None, allocated: bool = False) -> None:
    """CompileError when the module needs more than max_memory bytes. Checked before the target compiles
    (the plan's bytes), then with `extra`, what only code generation knows (the generated code's
    temporaries, re-laid-out weight copies): a target with ACCEPTS_MEMORY_CHECK calls back between its code
    generation and its allocations; for the others it is checked after (allocated)."""
    need = memory_needs(g, program, shared_state)
    need.update({k: v for k, v in (extra or {}).items() if v})
    total = sum(need.values())
    if total > max_memory:
        parts = " + ".join(f"{k if k != 'io' else 'inputs/outputs'} {v:,d}" for k, v in need.items())
        when = ("refused after code generation, which sizes the temporaries; the module is not returned"
                if allocated else "nothing was allocated")
        raise CompileError(f"max_memory: graph {g.name!r} needs {total:,d} bytes ({parts}), more than the "
                           f"limit of {max_memory:,d} bytes; {when}")


def _finish(g: Graph, target: str, target_mod: Any, target_opts: dict[str, Any], in_memory: set[int],
            source: str | None, pipeline: dict[str, Any] | None = None,
            state_buffers: "dict[str, np.ndarray] | None" = None, max_memory: "int | None" = None) -> Module:
    for n in g.nodes:
        if n.op == "custom":
            get_custom_op(n.params["fn"])   # CompileError if unregistered
    program = _run_passes(g, **(pipeline or {}))
    if max_memory is not None:
        _enforce_max_memory(program.graph if program is not None else g, program, max_memory,
                            state_buffers is not None)
    if program is not None:
        # passes make new tensors: leafs whose data lives in memory are found again by name (weight-file
        # bindings stay bindings; data without a binding, folded constants included, is in memory)
        names = {t.name for t in g.leafs if id(t) in in_memory}
        g = program.graph
        in_memory = {id(t) for t in g.leafs if t.data is not None and (t.weight is None or t.name in names)}
    try:
        extra = {"state_buffers": state_buffers} if state_buffers is not None else {}
        precheck = max_memory is not None and getattr(target_mod, "ACCEPTS_MEMORY_CHECK", False)
        if precheck:              # the target calls back after code generation, before it allocates
            planned_g = program.graph if program is not None else g
            extra["memory_check"] = lambda more: _enforce_max_memory(planned_g, program, max_memory,
                                                                     state_buffers is not None, more)
        exe = target_mod.compile(program if program is not None and _accepts_program(target_mod) else g,
                                 **target_opts, **extra)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise CompileError(f"target {target!r}: bad option ({e})") from None
        raise
    except NotImplementedError as e:
        raise CompileError(f"target {target!r} cannot compile this graph: {e}") from None
    if max_memory is not None and not precheck and temporaries_bytes(exe):
        _enforce_max_memory(g, program, max_memory, state_buffers is not None,
                            {"temporaries": temporaries_bytes(exe)}, allocated=True)
    m = Module(g, exe, target, target_opts, in_memory, source)
    m.program = program
    return m


def _roles_by_name(source: str | None) -> str | None:
    """The format name of a graph file whose reader takes inputs= (its files may not record roles)."""
    if source is None or not os.path.isfile(source):
        return None
    from graphc.frontends.registry import detect
    try:
        fmt = detect(source)
    except OSError:
        return None
    return fmt.name if fmt is not None and "inputs" in fmt.options else None


def _is_torch(v: Any) -> bool:
    """A torch tensor (checked without importing torch)."""
    return type(v).__module__.split(".", 1)[0] == "torch" and hasattr(v, "detach")


# --- artifacts ------------------------------------------------------------------------------

def save_artifact(module: Module, directory: str) -> str:
    from graphc.frontends.graph_text import dump
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CompileError(f"cannot save to {directory}: it exists and is not a directory")
    if os.path.isdir(directory) and os.listdir(directory) and not os.path.exists(os.path.join(directory, MANIFEST)):
        raise CompileError(f"cannot save to {directory}: it is a non-empty directory that is not a graphc artifact")
    try:
        json.dumps(module.target_opts)
    except TypeError:
        raise CompileError(f"cannot save: target options {module.target_opts} are not JSON data") from None
    os.makedirs(directory, exist_ok=True)
    manifest_path = os.path.join(directory, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)      # a half-written artifact never looks complete

    # The saved graph carries no data: in-memory leaf data goes to weights.npz by leaf index (names are
    # free text and need not be unique); file bindings stay bindings, made absolute.
    g = module.graph.copy()
    arrays: dict[str, np.ndarray] = {}
    weights_table = []
    for i, t in enumerate(g.leafs):
        if t.data is not None and id(module.graph.leafs[i]) in module._in_memory:
            key = f"leaf_{i}"
            arrays[key] = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
            weights_table.append({"key": key, "leaf": i, "name": t.name, "type": t.type.name, "ne": list(t.ne),
                                  "nbytes": int(t.nbytes)})
        if t.weight is not None:
            src_dir = os.path.dirname(os.path.abspath(module.source)) if module.source else os.getcwd()
            f = t.weight.file if os.path.isabs(t.weight.file) else os.path.join(src_dir, t.weight.file)
            t.weight = dataclasses.replace(t.weight, file=os.path.abspath(f))
        t.data = None
    files = [GRAPH_FILE]
    dump(g, os.path.join(directory, GRAPH_FILE))
    if arrays:
        np.savez(os.path.join(directory, WEIGHTS_FILE), **arrays)
        files.append(WEIGHTS_FILE)
    elif os.path.exists(os.path.join(directory, WEIGHTS_FILE)):
        os.remove(os.path.join(directory, WEIGHTS_FILE))
    save_files = getattr(module._exe, "save_files", None)
    if save_files is not None:                # the target's own files (Triton: kernels built ahead of time)
        files += save_files(directory)
    manifest = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "graphc_version": __version__,
        "target": module.target,
        "target_options": module.target_opts,
        "graph_name": module.graph.name,
        "graph_file": GRAPH_FILE,
        "weights_file": WEIGHTS_FILE if arrays else None,
        "source": os.path.basename(module.source) if module.source else None,
        "requires": _requirements(module),
        "files": {f: {"sha256": sha256_file(os.path.join(directory, f)),
                      "bytes": os.path.getsize(os.path.join(directory, f))} for f in files},
        "tensors": [{"name": t.name, "role": role_of(t), "type": t.type.name, "ne": list(t.ne),
                     "shape": list(t.shape), "dtype": str(value_dtype(t))}
                    for t in module.graph.tensors() if t.flags & (Flag.INPUT | Flag.OUTPUT | Flag.PARAM | Flag.STATE)],
        "weights": weights_table,
        "external_weights": [{"leaf": i, "name": t.name, "file": t.weight.file, "tensor": t.weight.tensor,
                              "bytes": _size_or_none(t.weight.file)}
                             for i, t in enumerate(g.leafs) if t.weight is not None and f"leaf_{i}" not in arrays],
    }
    tmp = manifest_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, manifest_path)
    return directory


def _size_or_none(path: str) -> "int | None":
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _requirements(module: Module) -> dict[str, Any]:
    """What the machine that loads the artifact must have: the target, and what its code was built for
    (C: the -march and the CPU features that code may use; Triton: the CUDA archs of the kernels built
    ahead of time). graphc.load refuses with a clear error where a need is missing."""
    req: dict[str, Any] = {"graphc": __version__, "target": module.target}
    reqs = getattr(module._exe, "requirements", None)
    if reqs is not None:
        req.update(reqs())
    return req


def _check_requirements(m: dict, manifest_path: str, target_mod: Any, tname: str, saved_target: str,
                        target_opts: Mapping[str, Any]) -> None:
    """CompileError when this machine lacks what the artifact's code was built for (see _requirements),
    as the target judges it (its check_requirements); a load for another target needs nothing."""
    req = m.get("requires")
    if req is None:
        return                                  # written before artifacts recorded their needs
    if not isinstance(req, dict):
        raise _damaged(manifest_path, "'requires' is not an object")
    check = getattr(target_mod, "check_requirements", None)
    if tname != saved_target or check is None:
        return
    why = check(req, dict(target_opts))
    if why:
        raise CompileError(f"artifact {os.path.dirname(manifest_path)}: {why}")


def _check_external_weights(m: dict, manifest_path: str) -> None:
    """Weight files the artifact refers to by path must still be there, at the size they had when it was
    saved (a cheap guard against another file at that path; their contents are not hashed)."""
    for e in m.get("external_weights") or []:
        want, f = e.get("bytes"), e.get("file")
        if want is None or not isinstance(f, str):
            continue
        have = _size_or_none(f)
        if have is None:
            raise _damaged(manifest_path, f"weight file {f} (tensor {e.get('tensor')!r}) is missing")
        if have != want:
            raise _damaged(manifest_path, f"weight file {f} is {have} bytes, it was {want} when the artifact was "
                                          "saved: it changed (compile and save the artifact again)")


def _artifact_file(directory: str, name: str) -> str:
    """The path of a file the manifest lists: relative, inside the artifact (no .., no absolute paths)."""
    parts = str(name).split("/")
    if not name or "\\" in name or any(p in ("", ".", "..") for p in parts) or os.path.isabs(name):
        raise _damaged(directory, f"the manifest lists a file outside the artifact: {name!r}")
    return os.path.join(directory, *parts)


def _damaged(path: str, msg: str) -> ParseError:
    return ParseError(f"damaged or unreadable artifact: {msg}", path)


def load(directory: PathLike, target: str | None = None, passes: Any = True, disable_passes: Iterable[str] = (),
         dump_dir: PathLike | None = None, dump_after: Iterable[str] = (), verify_passes: bool = False,
         max_memory: "int | None" = None, **target_opts: Any) -> Module:
    """Restore a module saved with Module.save (checking content hashes). `target` and options
    default to the ones it was compiled with; `passes` and `max_memory` as for compile (the saved graph is
    the one the pipeline made; running it again gives the Program the target needs)."""
    from graphc.frontends.graph_text import load as load_text
    from graphc.targets import get_target
    _check_max_memory_arg(max_memory)
    directory = os.fspath(directory)
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise ParseError("no such artifact directory" if not os.path.exists(directory) else
                         "not a directory (graph files are compiled with graphc.compile)", directory)
    if not os.path.isfile(manifest_path):
        raise _damaged(directory, f"no {MANIFEST} (not a graphc artifact, or saving did not finish)")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise _damaged(manifest_path, f"manifest is not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != ARTIFACT_FORMAT:
        raise _damaged(manifest_path, f"not a {ARTIFACT_FORMAT} manifest")
    ver = m.get("format_version")
    if not isinstance(ver, int) or ver > ARTIFACT_VERSION or ver < 1:
        raise ParseError(f"artifact format version {ver!r} is not supported (this graphc reads 1..{ARTIFACT_VERSION})",
                         manifest_path)
    try:
        files: dict = m["files"]
        graph_file, weights_file = m["graph_file"], m["weights_file"]
        for name, info in files.items():
            p = _artifact_file(directory, name)
            if not os.path.isfile(p):
                raise _damaged(directory, f"{name} is missing")
            if sha256_file(p) != info["sha256"]:
                raise _damaged(p, "content hash does not match the manifest (the file was changed or truncated)")
        if graph_file not in files or (weights_file is not None and weights_file not in files):
            raise _damaged(manifest_path, "the manifest does not list hashes for its graph/weights files")
        graph = load_text(os.path.join(directory, os.path.basename(graph_file)))
        data: dict[int, np.ndarray] = {}
        if weights_file is not None:
            with np.load(os.path.join(directory, os.path.basename(weights_file)), allow_pickle=False) as z:
                for w in m["weights"]:
                    i = int(w["leaf"])
                    if not 0 <= i < len(graph.leafs) or graph.leafs[i].name != w["name"]:
                        raise _damaged(manifest_path, f"weight table entry {w['name']!r} does not match the graph")
                    data[i] = np.array(z[w["key"]], dtype=np.uint8).reshape(-1)
        for t in m["tensors"]:
            if t["name"] not in graph:
                raise _damaged(manifest_path, f"tensor {t['name']!r} of the manifest is not in the graph")
        saved_target, saved_opts = m["target"], dict(m.get("target_options") or {})
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise _damaged(manifest_path, f"bad or missing entry ({type(e).__name__}: {e})") from None
    tname = target or saved_target
    opts = {**saved_opts, **target_opts} if target is None or target == saved_target else dict(target_opts)
    target_mod = get_target(tname)
    try:
        _check_requirements(m, manifest_path, target_mod, tname, saved_target, target_opts)
        _check_external_weights(m, manifest_path)
    except (AttributeError, TypeError, ValueError) as e:
        raise _damaged(manifest_path, f"bad entry ({type(e).__name__}: {e})") from None
    g = verify(graph)
    for i, raw in data.items():
        t = g.leafs[i]
        if raw.size != t.nbytes:
            raise _damaged(manifest_path, f"weight {t.name!r} holds {raw.size} bytes, the tensor needs {t.nbytes}")
        t.data = raw
    in_memory = bind_weights(g, None, directory)
    if getattr(target_mod, "LOADS_ARTIFACT_FILES", False) and tname == saved_target:
        opts["artifact_dir"] = directory      # the files save_files wrote (their hashes were checked above)
    module = _finish(g, tname, target_mod, opts, in_memory, os.path.join(directory, GRAPH_FILE),
                     dict(passes=passes, disable_passes=disable_passes, dump_dir=dump_dir, dump_after=dump_after,
                          verify_passes=verify_passes), max_memory=max_memory)
    module.target_opts.pop("artifact_dir", None)      # where it was loaded from is no option to save again
    return module
