"""A mutation campaign over real files: ggml exports, ggml .dot dumps (and their hints), .graph files and
GGUF models, each mutated and fed to graphc's public API and CLI the way an outside checker would.

    .venv/bin/python tools/mutate.py --seconds 600 --seed 1 [--save DIR] [--cli-rate 0.05] [--kinds ggml,gguf]
    .venv/bin/python tools/mutate.py --replay DIR/CASE [DIR/CASE ...]      # run saved cases again

Seed files (file kinds): the ggml fixtures under shared/fixtures/ggml (GRAPHC_FIXTURES): every .ggml export
(ggml), every .dot dump (dot) with the hints file of tests/data/dot_hints beside it as its `.hints` sidecar
(hints, mutated in turn), compiled with the fixture's inputs and its .npz as weights (npz, mutated in turn for
the quantized ffn graphs); .graph files (graph: tests/regressions/, the fixtures converted, the decode graphs of
the tiny models) and tiny GGUF models (gguf) written by graphc.models.testing.make_tiny_gguf (llama q8_0, qwen2
f16, gemma3 q4_0, llama q4_K_M), each next to the decode graph `graphc convert` writes for it (its weights
bound to the model by a relative path).

Mutations: for every file, byte level (bit flips, bytes set to 0 / 0xff / 0x7f / 0x80, 4- and 8-byte
integer fields set to 0, 1, -1, 2^31, 2^40, 2^63, truncation, chunk duplication and deletion, splicing two
files); for the binary formats the integer fields and names are found by walking the seed's records
(counts, types, dims, strides, offsets, string lengths, op ids, source slots); for text (.dot, .graph,
hints) also line deletion / duplication / swaps, numbers replaced by huge, negative, NaN and inf values,
names with quotes, NUL, newlines, `*/`, deep nesting and very long tokens; structure-aware changes that keep
a file well formed so that the change reaches the reader's later checks: ggml records with another op id,
source slot, op param or flag; GGUF files rewritten with a metadata key deleted or retyped, a value out of
range, another tokenizer, a shortened vocabulary, a tensor retyped, reshaped, renamed or dropped.

Each mutant goes through probes, each in a forked child with a wall-clock timeout and an address-space
limit (RLIMIT_AS):
  graph files (ggml, dot, graph): graphc.load_graph(path); graphc.compile(path, target="ref",
      max_memory=...) and one run with random inputs (graphc.cli.random_inputs);
  GGUF: graphc.models.load(path, target="ref", lazy=True), a short logits() call, tokenize/detokenize;
      and the decode graph bound to the mutant compiled and run (GGUF weight binding);
  sampled (--cli-rate): `python -m graphc inspect FILE` (GGUF: also `inspect FILE --graph`), and
      `python -m graphc run FILE --random-inputs --target ref` where the API run was ok.
Outcomes: ok; error (a graphc.errors.GraphcError with a message; the CLI: exit 1 with one
`graphc: error:` line); FAILURE (any other exception, a graphc error without a message, a crash or
signal, the timeout, the memory limit, a CLI `internal error` or traceback); a FAILURE of a bug on the
KNOWN list (found outside the frontends, reported, not fixed yet) counts as known. The end prints counts per
file kind and outcome (and per probe), and the distinct failures. --save DIR writes each failing mutant as
DIR/<kind>-<hash>/ (the files and case.json: seed, mutations, probe, failure); --replay runs them again.
Exit status 1 when anything failed (known bugs aside).
"""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")     # one core, and a fork-safe parent (no BLAS threads)

import argparse  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import graphc  # noqa: E402
from graphc.errors import GraphcError  # noqa: E402

# the ggml fixtures (shared/fixtures/ggml beside the checkout), as tests/fixture_graph.py finds them
FIXTURES = os.environ.get("GRAPHC_FIXTURES", os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "ggml"))
HINTS_DIR = os.path.join(ROOT, "tests", "data", "dot_hints")
REGRESSIONS_DIR = os.path.join(ROOT, "tests", "regressions")

TIMEOUT_S = 20.0
MEMORY_LIMIT = 4 << 30            # RLIMIT_AS of each probe: this much beyond what the forking process maps
MAX_MEMORY = 512 << 20            # graphc.compile(max_memory=): what a checker lets one module take
KINDS = ("ggml", "dot", "hints", "npz", "graph", "gguf")
KIND_WEIGHT = {"ggml": 1.0, "dot": 1.0, "hints": 0.3, "npz": 0.3, "graph": 1.0, "gguf": 1.0}
OUTCOMES = ("ok", "error", "FAILURE", "known")

# FAILUREs this campaign found in code outside the frontends (graphc/models, graphc/cli.py: other owners),
# reported and not fixed yet: (probe regex, regex over the signature and first line of the detail, what is
# wrong). A mutant whose failures are all known counts as "known", not FAILURE, and --replay and the CI test
# (tests/test_mutation_campaign.py) fail only on the others. The CI test replays a reproducer of each entry as a
# strict xfail: when the fix lands it passes, and the entry goes.
KNOWN: "list[tuple[str, str, str]]" = [
    # (probe regex, failure-signature regex, what is wrong): failures found outside the frontends and not fixed
    # yet, counted apart. The three the campaign found (llm_config's uint and rope.scaling.type, gguf_info's
    # _num) are fixed; tests/test_mutation_campaign.py keeps their reproducers.
]


def known_failure(probe: str, o: "Outcome") -> str:
    """What is wrong, when a FAILURE is a known bug of KNOWN; else ''."""
    text = f"{o.signature}\n{o.detail.splitlines()[0] if o.detail else ''}"
    for p_rx, rx, what in KNOWN:
        if re.search(p_rx, probe) and re.search(rx, text):
            return what
    return ""


# ======================================================================================================
# running one probe in a forked child: timeout, memory limit, classification
# ======================================================================================================

@dataclass
class Outcome:
    status: str                   # ok | error | FAILURE
    detail: str = ""              # the error's message, or what failed and where
    step: str = ""                # the probe's step it ended in
    signature: str = ""           # FAILUREs: the same bug found twice has the same signature
    seconds: float = 0.0
    known: str = ""               # a FAILURE of a known bug outside the frontends (KNOWN): what is wrong


_STEP: list[str] = [""]


def step(name: str) -> None:
    """Probes name the step they are in; a failure reports it."""
    _STEP[0] = name


def _where(tb: Any) -> str:
    """The innermost frame of the traceback in graphc's own code (else the innermost), as file:line fn."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if f.filename.startswith(ROOT) and "/tools/" not in f.filename
            and "/.venv/" not in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    return f"{os.path.relpath(f.filename, ROOT) if f.filename.startswith(ROOT) else f.filename}:{f.lineno} {f.name}"


def classify_call(fn: Callable[..., Any], *args: Any) -> dict[str, str]:
    """Call fn; what happened, as an Outcome's fields (run in the child)."""
    step("")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)
    except GraphcError as e:
        if not str(e).strip():
            return {"status": "FAILURE", "detail": f"{type(e).__name__} without a message",
                    "signature": f"empty {type(e).__name__} at {_where(e.__traceback__)}", "step": _STEP[0]}
        return {"status": "error", "detail": f"{type(e).__name__}: {e}", "step": _STEP[0]}
    except MemoryError as e:
        return {"status": "FAILURE", "detail": f"memory limit: MemoryError {e}", "step": _STEP[0],
                "signature": f"MemoryError at {_where(e.__traceback__)}",
                "traceback": "".join(traceback.format_exception(e)[-6:])}
    except BaseException as e:       # noqa: B036 - SystemExit and KeyboardInterrupt from graphc are bugs too
        where = _where(e.__traceback__)
        return {"status": "FAILURE", "detail": f"{type(e).__name__}: {str(e)[:500]}", "step": _STEP[0],
                "signature": f"{type(e).__name__} at {where}",
                "traceback": "".join(traceback.format_exception(e)[-8:])}
    return {"status": "ok", "step": _STEP[0]}


def address_space() -> int:
    """The bytes this process maps now (VmSize)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_isolated(fn: Callable[..., Any], *args: Any, timeout: float = TIMEOUT_S,
                 memory: int = MEMORY_LIMIT) -> Outcome:
    """fn(*args) in a forked child with a wall-clock timeout and RLIMIT_AS = what this process maps now +
    memory (a fork inherits the parent's mappings: numpy, graphc, and torch where a test session loaded it);
    the Outcome."""
    t0 = time.monotonic()
    limit = address_space() + memory
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                   # the child: never returns
        code = 0
        try:
            os.close(r)
            import faulthandler
            faulthandler.disable()           # a crash is reported by its signal, not dumped on the parent's stderr
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            res = classify_call(fn, *args)
            data = json.dumps(res).encode()
            while data:
                n = os.write(w, data)
                data = data[n:]
        except BaseException:                       # noqa: B036
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = t0 + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                data = os.read(r, 1 << 16)
                if not data:
                    break
                chunks.append(data)
    finally:
        os.close(r)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - t0
    if timed_out:
        return Outcome("FAILURE", f"timeout: still running after {timeout:g} s", "", "timeout", seconds)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return Outcome("FAILURE", f"killed by {sig}", "", f"signal {sig}", seconds)
    try:
        res = json.loads(b"".join(chunks))
    except ValueError:
        return Outcome("FAILURE", f"the child exited with status {os.WEXITSTATUS(status)} and no result", "",
                       "no result", seconds)
    detail = res.get("detail", "")
    if res.get("traceback"):
        detail += "\n" + res["traceback"]
    return Outcome(res["status"], detail, res.get("step", ""), res.get("signature", ""), seconds)


def run_cli(argv: list[str], cwd: str, timeout: float = TIMEOUT_S * 2, memory: int = MEMORY_LIMIT) -> Outcome:
    """`python -m graphc ARGV` in cwd with RLIMIT_AS and a timeout: exit 0 is ok; exit 1 with one
    `graphc: error:` line is an error; anything else (internal error, traceback, signal, other codes) FAILURE."""
    t0 = time.monotonic()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run([sys.executable, "-m", "graphc", *argv], cwd=cwd, capture_output=True, timeout=timeout,
                           preexec_fn=limit, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Outcome("FAILURE", f"CLI timeout after {timeout:g} s", "cli", "cli timeout", time.monotonic() - t0)
    seconds = time.monotonic() - t0
    err = p.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.startswith("graphc: ")]
    if p.returncode < 0:
        sig = signal.Signals(-p.returncode).name
        return Outcome("FAILURE", f"CLI killed by {sig}: {err[-500:]}", "cli", f"cli signal {sig}", seconds)
    if "Traceback (most recent call last)" in err or "internal error" in err:
        m = re.search(r"internal error: (\w+)", err)
        return Outcome("FAILURE", f"CLI: {err[-800:]}", "cli", f"cli internal error {m.group(1) if m else ''}",
                       seconds)
    if p.returncode == 0:
        return Outcome("ok", "", "cli", "", seconds)
    if p.returncode == 1 and any(ln.startswith("graphc: error: ") for ln in lines):
        return Outcome("error", lines[-1], "cli", "", seconds)
    return Outcome("FAILURE", f"CLI exit {p.returncode}: {err[-800:]}", "cli", f"cli exit {p.returncode}", seconds)


# ======================================================================================================
# probes: what an independent checker does with a file
# ======================================================================================================

def probe_graph(path: str, options: dict[str, Any] | None = None, seed: int = 0) -> None:
    """load_graph, compile for ref with a memory limit, one run with random inputs. options: "inputs" (the
    input leafs, for formats that may not record them) and "weights" (a weights file beside path)."""
    from graphc.cli import random_inputs
    options = options or {}
    inputs = options.get("inputs")
    weights = options.get("weights")
    if weights is not None:
        weights = os.path.join(os.path.dirname(path), weights)
    step("load_graph")
    graphc.load_graph(path, inputs=inputs)
    step("compile")
    m = graphc.compile(path, target="ref", max_memory=MAX_MEMORY, weights=weights,
                       graph_options={"inputs": inputs} if inputs is not None else None)
    step("run")
    outs = m.run(random_inputs(m, seed))
    for name, a in outs.items():
        if not isinstance(a, np.ndarray):
            raise AssertionError(f"output {name!r} is a {type(a).__name__}, not an array")


def probe_gguf_model(path: str, options: dict[str, Any] | None = None) -> None:
    """graphc.models.load(lazy) for ref, a few logits, tokenize and detokenize."""
    import graphc.models
    step("models.load")
    model = graphc.models.load(path, target="ref", lazy=True)
    step("logits")
    n = int(model.n_vocab)
    ids = [1 % n, 5 % n, 7 % n]
    out = model.logits(ids)
    if out.shape != (3, n):
        raise AssertionError(f"logits of 3 tokens have shape {out.shape}, not (3, {n})")
    if model.tokenizer is not None:
        step("tokenize")
        model.tokenize("Hello world, the end.")
        step("detokenize")
        model.detokenize(ids)


def probe_gguf_binding(graph_path: str, options: dict[str, Any] | None = None) -> None:
    """The decode graph whose weights are bound to the (mutated) GGUF: compile for ref and run."""
    probe_graph(graph_path)


@dataclass
class Probe:
    name: str
    fn: Callable[..., None]
    target: str                   # "main" (the mutated file) or a file name of the case


PROBES: dict[str, list[Probe]] = {
    "ggml": [Probe("api", probe_graph, "main")],
    "dot": [Probe("api", probe_graph, "main")],
    "hints": [Probe("api", probe_graph, "dot")],
    "npz": [Probe("api", probe_graph, "dot")],
    "graph": [Probe("api", probe_graph, "main")],
    "gguf": [Probe("model", probe_gguf_model, "main"), Probe("binding", probe_gguf_binding, "graph")],
}


def cli_commands(kind: str, main: str, api_ok: bool, options: dict[str, Any] | None = None
                 ) -> list[tuple[str, list[str]]]:
    if kind == "gguf":
        return [("cli-inspect", ["inspect", main]),
                ("cli-inspect-graph", ["inspect", main, "--graph", "--tokens", "2", "--ctx", "16"])]
    options = options or {}
    flags = [a for n in options.get("inputs") or () for a in ("--input", n)]
    out = [("cli-inspect", ["inspect", main, *flags])]
    if api_ok:        # a run allocates: only graphs that the API ran within max_memory
        if options.get("weights"):
            flags += ["--weights", options["weights"]]
        out.append(("cli-run", ["run", main, "--random-inputs", "--seed", "1", "--target", "ref", *flags]))
    return out


# ======================================================================================================
# seed files
# ======================================================================================================

@dataclass
class Seed:
    kind: str                     # ggml | dot | hints | graph | gguf
    name: str                     # e.g. "2024-10-09-2327bda7/attn.ggml"
    files: dict[str, bytes]       # the case's files by name; `main` is the one mutated
    main: str
    graph: str | None = None      # gguf: the decode graph bound to it; hints: the dot file
    options: dict[str, Any] = field(default_factory=dict)               # probe_graph's options
    fields: list[tuple[int, int, str]] = field(default_factory=list)     # (offset, width, category)
    names: list[tuple[int, int]] = field(default_factory=list)           # (offset, length) of name bytes
    hot: list[tuple[int, int]] = field(default_factory=list)             # byte ranges of headers/records

    @property
    def data(self) -> bytes:
        return self.files[self.main]


_GGML_TYPES = {0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),
               9: (36, 32), 24: (1, 1), 25: (2, 1), 26: (4, 1), 27: (8, 1), 28: (8, 1), 30: (2, 1)}


def ggml_structure(data: bytes) -> tuple[list, list, list]:
    """Fields, names and record ranges of a ggml export (versions 1 and 2 of the fixtures' layout),
    walked independently of graphc's reader."""
    fields = [(0, 4, "header"), (4, 4, "header"), (8, 4, "count"), (12, 4, "count"), (16, 8, "header")]
    names: list[tuple[int, int]] = []
    hot = [(0, 24)]
    version, n_leafs, n_nodes = struct.unpack_from("<III", data, 4)
    flags = version == 2
    pos = 24
    for i in range(n_leafs + n_nodes):
        node = i >= n_leafs
        start = pos
        type_id = struct.unpack_from("<I", data, pos)[0]
        fields += [(pos, 4, "type"), (pos + 4, 4, "op")]
        p = pos + 8
        rec_flags = 0
        if flags:
            rec_flags = struct.unpack_from("<i", data, p)[0]
            fields.append((p, 4, "flags"))
            p += 4
        dims = struct.unpack_from("<8Q", data, p)
        fields += [(p + 8 * k, 8, "ne" if k % 2 == 0 else "nb") for k in range(8)]
        p += 64
        names.append((p, 64))
        p += 64
        fields += [(p + 4 * k, 4, "op_params") for k in range(16)]
        p += 64
        if node:
            fields += [(p + 4 * k, 4, "src") for k in range(10)]
            p += 40
        hot.append((start, p))
        pos = p
        if not node or rec_flags & 4:
            ts, bs = _GGML_TYPES[type_id]
            ne, nb = dims[0::2], dims[1::2]
            n = ne[0] * nb[0] // bs + sum((ne[k] - 1) * nb[k] for k in range(1, 4))
            if bs == 1:
                n = ts + sum((ne[k] - 1) * nb[k] for k in range(4))
            pos += n
    assert pos == len(data), (pos, len(data))
    return fields, names, hot


_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_structure(data: bytes) -> tuple[list, list, list]:
    """Fields, names (keys, tensor names, short strings) and the header range of a GGUF file."""
    fields = [(4, 4, "header"), (8, 8, "count"), (16, 8, "count")]
    names: list[tuple[int, int]] = []
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string(cat: str) -> int:
        nonlocal pos
        n = struct.unpack_from("<Q", data, pos)[0]
        fields.append((pos, 8, cat))
        names.append((pos + 8, n))
        pos += 8 + n
        return n

    def value(vt: int, cat: str, depth: int = 0) -> None:
        nonlocal pos
        if vt == 8:
            string(cat + " string length")
        elif vt == 9:
            et, count = struct.unpack_from("<IQ", data, pos)
            fields.extend([(pos, 4, "kv array type"), (pos + 4, 8, "kv array count")])
            pos += 12
            for i in range(count):
                if et in _GGUF_SCALAR and i >= 4:
                    pos += _GGUF_SCALAR[et] * (count - i)
                    break
                value(et, "kv array element" if et in _GGUF_SCALAR or i < 8 else "kv array string", depth + 1)
        else:
            w = _GGUF_SCALAR[vt]
            if w in (4, 8):
                fields.append((pos, w, cat))
            pos += w

    for _ in range(n_kv):
        string("kv key length")
        vt = struct.unpack_from("<I", data, pos)[0]
        fields.append((pos, 4, "kv type"))
        pos += 4
        value(vt, "kv value")
    for _ in range(n_tensors):
        string("tensor name length")
        nd = struct.unpack_from("<I", data, pos)[0]
        fields.append((pos, 4, "tensor n_dims"))
        pos += 4
        fields += [(pos + 8 * k, 8, "tensor ne") for k in range(nd)]
        pos += 8 * nd
        fields += [(pos, 4, "tensor type"), (pos + 4, 8, "tensor offset")]
        pos += 12
    names = [(o, n) for o, n in names if n <= 64]          # keys, tensor names, short strings
    return fields, names, [(0, pos)]


def npz_structure(data: bytes) -> tuple[list, list, list]:
    """Fields (sizes, offsets, counts), names (member names, .npy header dicts) and header ranges of a zip."""
    fields: list[tuple[int, int, str]] = []
    names: list[tuple[int, int]] = []
    hot: list[tuple[int, int]] = []
    for m in re.finditer(rb"PK\x03\x04", data):            # local headers: sizes at 18, 22; name length at 26
        o = m.start()
        if o + 30 > len(data):
            continue
        n, x = struct.unpack_from("<HH", data, o + 26)
        fields += [(o + 14, 4, "zip crc"), (o + 18, 4, "zip size"), (o + 22, 4, "zip size"), (o + 26, 2, "zip name")]
        names.append((o + 30, n))
        hot.append((o, o + 30 + n + x))
        h = o + 30 + n + x
        if data[h:h + 6] == b"\x93NUMPY":                 # the .npy header: version, length, the dict
            hl = struct.unpack_from("<H", data, h + 8)[0]
            fields.append((h + 8, 2, "npy header length"))
            names.append((h + 10, hl))
            hot.append((h, h + 10 + hl))
    for m in re.finditer(rb"PK\x01\x02", data):            # central directory entries
        o = m.start()
        if o + 46 <= len(data):
            fields += [(o + 20, 4, "zip size"), (o + 24, 4, "zip size"), (o + 42, 4, "zip offset")]
            hot.append((o, o + 46))
    for m in re.finditer(rb"PK\x05\x06", data):            # end of central directory
        o = m.start()
        fields += [(o + 8, 2, "zip count"), (o + 10, 2, "zip count"), (o + 12, 4, "zip size"),
                   (o + 16, 4, "zip offset")]
        hot.append((o, o + 22))
    return fields, names, hot


TINY_MODELS = [   # (file name, make_tiny_gguf arguments): small enough that a mutant loads in milliseconds
    ("tiny-llama-q8_0.gguf", dict(arch="llama", wtype="q8_0", seed=1, n_layer=1, n_embd=64, n_head=2, n_head_kv=1,
                                  head_dim=32, n_ff=96, n_vocab=288, context_length=64)),
    ("tiny-qwen2-f16.gguf", dict(arch="qwen2", wtype="f16", seed=2, n_layer=1, n_embd=32, n_head=2, n_head_kv=1,
                                 head_dim=16, n_ff=64, n_vocab=288, context_length=32)),
    ("tiny-gemma3-q4_0.gguf", dict(arch="gemma3", wtype="q4_0", seed=3, n_layer=2, n_embd=64, n_head=2,
                                   n_head_kv=1, head_dim=32, n_ff=96, n_vocab=288, context_length=32, n_swa=4)),
    ("tiny-llama-q4_K_M.gguf", dict(arch="llama", wtype="q4_K_M", seed=4, n_layer=1, n_embd=256, n_head=2,
                                    n_head_kv=1, head_dim=128, n_ff=256, n_vocab=288, context_length=32)),
]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _decode_graph_text(gguf_path: str, n_tokens: int = 1, n_ctx: int = 16) -> bytes:
    """The graph `graphc convert MODEL -o decode.graph` writes (the CLI's own entry point, in this process),
    weights bound to the model by its file name."""
    import contextlib
    import io
    from graphc.cli import main as cli_main
    d = os.path.dirname(os.path.abspath(gguf_path))
    out = os.path.join(d, "decode.graph")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = cli_main(["convert", gguf_path, "-o", out, "--tokens", str(n_tokens), "--ctx", str(n_ctx)])
    if rc != 0:
        raise RuntimeError(f"graphc convert {gguf_path} failed: {err.getvalue()}")
    data = _read(out)
    os.remove(out)
    return data


def build_corpus(work: str, kinds: tuple[str, ...] = KINDS, log: Callable[[str], None] = print) -> list[Seed]:
    """The seed files (GGUF models and graph conversions are written under work)."""
    os.makedirs(work, exist_ok=True)
    seeds: list[Seed] = []
    fixtures = FIXTURES
    builds = sorted(d for d in os.listdir(fixtures) if os.path.isdir(os.path.join(fixtures, d))) \
        if os.path.isdir(fixtures) else []
    if not builds:
        log(f"mutate: no ggml fixtures under {fixtures}")
    for b in builds:
        for fn in sorted(os.listdir(os.path.join(fixtures, b))):
            path = os.path.join(fixtures, b, fn)
            stem, ext = os.path.splitext(fn)
            if ext == ".ggml":
                data = _read(path)
                f, n, h = ggml_structure(data)
                seeds.append(Seed("ggml", f"{b}/{fn}", {f"{stem}.ggml": data}, f"{stem}.ggml", fields=f, names=n,
                                  hot=h))
            elif ext == ".dot":
                # a dump records no roles and no data: the fixture's .json names the inputs, its .npz holds
                # the weights (as a checker with the fixture would compile it)
                files = {f"{stem}.dot": _read(path)}
                opts: dict[str, Any] = {}
                desc, npz = os.path.join(fixtures, b, f"{stem}.json"), os.path.join(fixtures, b, f"{stem}.npz")
                if os.path.isfile(desc) and os.path.isfile(npz):
                    with open(desc) as f:
                        opts = {"inputs": list(json.load(f)["inputs"]), "weights": f"{stem}.npz"}
                    files[f"{stem}.npz"] = _read(npz)
                hints = os.path.join(HINTS_DIR, f"{stem}.hints")
                if os.path.isfile(hints):
                    files[f"{stem}.dot.hints"] = _read(hints)
                seeds.append(Seed("dot", f"{b}/{fn}", files, f"{stem}.dot", options=opts))
                if f"{stem}.dot.hints" in files:
                    seeds.append(Seed("hints", f"{b}/{stem}.dot.hints", dict(files), f"{stem}.dot.hints",
                                      graph=f"{stem}.dot", options=opts))
                if stem.startswith("ffn") and f"{stem}.npz" in files:    # the weights (the others are inputs)
                    f_, n_, h_ = npz_structure(files[f"{stem}.npz"])
                    seeds.append(Seed("npz", f"{b}/{stem}.npz", dict(files), f"{stem}.npz", graph=f"{stem}.dot",
                                      options=opts, fields=f_, names=n_, hot=h_))
    # .graph: the regression graphs, fixtures converted (inline data, no data), models' decode graphs
    for fn in sorted(os.listdir(REGRESSIONS_DIR)) if os.path.isdir(REGRESSIONS_DIR) else []:
        if fn.endswith(".graph"):
            seeds.append(Seed("graph", f"regressions/{fn}", {fn: _read(os.path.join(REGRESSIONS_DIR, fn))}, fn))
    from graphc.frontends.graph_text import dumps
    for b, stem, ext in (("2024-10-09-2327bda7", "mlp", ".ggml"), ("2024-05-17-7cf94a2b", "views", ".ggml"),
                         ("2024-10-09-2327bda7", "ffn_q4", ".ggml"), ("0.15.3", "attn", ".dot"),
                         ("0.15.3", "views", ".dot")):
        src = next((s for s in seeds if s.name == f"{b}/{stem}{ext}"), None)
        if src is None:
            continue
        d = os.path.join(work, "seed-" + b)
        os.makedirs(d, exist_ok=True)
        for name, data in src.files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        try:
            g = graphc.load_graph(os.path.join(d, src.main))
        except GraphcError as e:
            log(f"mutate: cannot convert {src.name}: {e}")
            continue
        text = dumps(g)
        seeds.append(Seed("graph", f"{b}/{stem}{ext} as .graph", {f"{stem}.graph": text.encode()}, f"{stem}.graph"))
    if "gguf" in kinds or "graph" in kinds:
        try:
            from graphc.models.testing import make_tiny_gguf
        except ImportError as e:        # gguf-py missing: no GGUF seeds
            log(f"mutate: no GGUF seeds ({e})")
            make_tiny_gguf = None
        if make_tiny_gguf is not None:
            for fn, spec in TINY_MODELS:
                path = os.path.join(work, fn)
                make_tiny_gguf(path, **spec)
                data = _read(path)
                graph_text = _decode_graph_text(path, n_tokens=2 if "qwen2" in fn else 1)
                files = {fn: data, "decode.graph": graph_text}
                f, n, h = gguf_structure(data)
                seeds.append(Seed("gguf", fn, files, fn, graph="decode.graph", fields=f, names=n, hot=h))
                seeds.append(Seed("graph", f"{fn} decode graph", dict(files), "decode.graph"))
    return [s for s in seeds if s.kind in kinds]


# ======================================================================================================
# mutations
# ======================================================================================================

INT_VALUES_8 = [0, 1, -1, 1 << 31, 1 << 32, 1 << 40, 1 << 63, (1 << 63) - 1, (1 << 62), 2, 63, 64, 1 << 20]
INT_VALUES_4 = [0, 1, -1, 1 << 31, (1 << 31) - 1, 2, 3, 4, 5, 8, 9, 12, 13, 16, 255, 1 << 16, 0x7FC00000]
BYTE_VALUES = [0, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x22, 0x5C, 0x0A]
NAME_PAYLOADS = [b'"', b"'", b"\\", b"\x00", b"\n", b"\r\n", b"*/", b"/*", b"\\x41", b"%s%n", b"{{", b"}}",
                 b"\xff\xfe", b"\xed\xa0\x80", b"\xc3", "é中\U0001F999".encode(), b"\t", b"#", b"]", b"[", b"|",
                 b"<x>", b";", b"->", b"=", b"%0", b"\x7f", b"x" * 70]
SMALL_NUMBERS = ["0", "1", "2", "3", "4", "5", "7", "8", "15", "16", "31", "32", "33", "63", "64", "65", "100", "128",
                 "255", "256", "1000", "4096", "65536", "-2", "0.5", "1e-05"]
NUMBERS = ["0", "-1", "1", "-0", "2147483648", "4294967296", "1099511627776", "9223372036854775807",
           "9223372036854775808", "18446744073709551616", "-9223372036854775809", "99999999999999999999999999",
           "1e308", "-1e308", "1e-320", "3.4e38", "nan", "NaN", "inf", "-inf", "1.5", "0x10", "1e999", "00000001",
           "4611686018427387904", "65536", "+5", "1_000"]
WORDS = ["f32", "f16", "q4_0", "q8_0", "i32", "q4_K", "bf16", "iq4_nl", "leaf", "input", "output", "param",
         "state", "mul_mat", "add", "view", "permute", "reshape", "cpy", "rope", "soft_max", "get_rows",
         "unary", "custom", "set_rows", "flash_attn_ext", "concat", "none", "true", "false", "_", "X*Y", "x+y",
         "CONST", "src", "unary(x)", "gelu", "silu", "tensor", "graph", "graphc"]


def _choose_pos(seed: Seed, data: bytes, rng: random.Random) -> int:
    if seed.hot and rng.random() < 0.8:
        a, b = rng.choice(seed.hot)
        b = min(b, len(data))
        if b > a:
            return rng.randrange(a, b)
    return rng.randrange(len(data)) if data else 0


def _set_int(data: bytearray, off: int, width: int, value: int) -> None:
    mask = (1 << (8 * width)) - 1
    data[off:off + width] = (value & mask).to_bytes(width, "little")


def byte_mutation(seed: Seed, data: bytes, rng: random.Random, others: list[Seed]) -> tuple[bytes, str]:
    """One byte-level mutation of data; (new bytes, what was done)."""
    buf = bytearray(data)
    n = len(buf)
    if n == 0:
        return b"\0", "empty file given one NUL"
    choice = rng.choices(["int", "flip", "byte", "truncate", "dup", "delete", "splice", "name"],
                         weights=[4 if seed.fields else 1.5, 2, 1.5, 1, 1, 1, 0.7, 1.2 if seed.names else 0])[0]
    if choice == "int":
        if seed.fields and rng.random() < 0.9:
            off, width, cat = rng.choice(seed.fields)
        else:
            width, cat = rng.choice((4, 8)), "random offset"
            off = _choose_pos(seed, data, rng)
        if off + width > n:
            off = max(0, n - width)
        v = rng.choice(INT_VALUES_8 if width == 8 else INT_VALUES_4)
        if rng.random() < 0.2:      # near the current value: off-by-one and doubled counts
            cur = int.from_bytes(buf[off:off + width], "little")
            v = rng.choice([cur + 1, cur - 1, cur * 2, cur + 4096, cur ^ (1 << rng.randrange(8 * width))])
        _set_int(buf, off, width, v)
        return bytes(buf), f"int{8 * width} at {off} ({cat}) = {v}"
    if choice == "flip":
        k = rng.choice((1, 1, 2, 4))
        offs = []
        for _ in range(k):
            off = _choose_pos(seed, data, rng)
            buf[off] ^= 1 << rng.randrange(8)
            offs.append(off)
        return bytes(buf), f"bit flips at {offs}"
    if choice == "byte":
        off = _choose_pos(seed, data, rng)
        v = rng.choice(BYTE_VALUES)
        k = rng.choice((1, 1, 2, 4, 8))
        buf[off:off + k] = bytes([v]) * k
        return bytes(buf), f"{k} byte(s) at {off} = {v:#04x}"
    if choice == "truncate":
        cut = _choose_pos(seed, data, rng) if rng.random() < 0.6 else rng.randrange(n)
        return bytes(buf[:cut]), f"truncated to {cut} bytes"
    if choice in ("dup", "delete"):
        if seed.hot and rng.random() < 0.5:        # a whole record
            a, b = rng.choice(seed.hot)
        else:
            a = rng.randrange(n)
            b = min(n, a + rng.choice((1, 4, 8, 16, 64, 256, 4096)))
        if choice == "dup":
            return bytes(buf[:b] + buf[a:b] + buf[b:]), f"bytes {a}..{b} duplicated"
        return bytes(buf[:a] + buf[b:]), f"bytes {a}..{b} deleted"
    if choice == "splice":
        same = [s for s in others if s.kind == seed.kind and s is not seed]
        other = rng.choice(same if same and rng.random() < 0.7 else others)
        o = other.data
        a, b = rng.randrange(n + 1), rng.randrange(len(o) + 1)
        return bytes(buf[:a]) + o[b:], f"first {a} bytes + {other.name} from byte {b}"
    off, length = rng.choice(seed.names)
    p = rng.choice(NAME_PAYLOADS)
    at = off + rng.randrange(max(1, length))
    buf[at:at + len(p)] = p[:max(0, n - at)]
    return bytes(buf[:n]), f"name bytes at {at} = {p!r}"


_NUM = re.compile(rb"(?<![A-Za-z_0-9.%])-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_QUOTED = re.compile(rb'"(?:[^"\\\n]|\\.)*"')
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(rb"%[0-9]+")
_DOT_NAME = re.compile(rb'label="(?:<x>)?([^"(|]*?) \(')
_DOT_TYPE = re.compile(rb"\((f32|f16|q4_0|q8_0|i32|bf16)\)")
_DOT_OP = re.compile(rb"\| <x>([^\"]*)\"")


def text_mutation(seed: Seed, data: bytes, rng: random.Random, others: list[Seed]) -> tuple[bytes, str]:
    """One text-level mutation: lines, numbers, names, words, nesting."""
    lines = data.split(b"\n")
    choice = rng.choices(["number", "name", "line-del", "line-dup", "line-swap", "line-splice", "word",
                          "punct", "nest", "long", "ref", "dot-name", "dot-type", "dot-op"],
                         weights=[4, 3, 2, 2, 1, 1, 2, 1.5, 0.4, 0.4, 2 if seed.kind == "graph" else 0,
                                  *([1.5, 1, 1.5] if seed.kind == "dot" else [0, 0, 0])])[0]
    if choice == "number":
        nums = list(_NUM.finditer(data))
        if nums:
            m = rng.choice(nums)
            v = rng.choice(SMALL_NUMBERS if rng.random() < 0.4 else NUMBERS).encode()
            return data[:m.start()] + v + data[m.end():], f"number {m.group().decode()!r} at {m.start()} -> {v!r}"
    if choice == "ref":
        refs = list(_REF.finditer(data))
        if refs:
            m = rng.choice(refs)
            v = rng.choice(refs).group() if rng.random() < 0.7 else b"%" + rng.choice(NUMBERS[:12]).lstrip("-").encode()
            return data[:m.start()] + v + data[m.end():], f"reference {m.group().decode()} at {m.start()} -> {v!r}"
    if choice in ("dot-name", "dot-type", "dot-op"):
        rx = {"dot-name": _DOT_NAME, "dot-type": _DOT_TYPE, "dot-op": _DOT_OP}[choice]
        ms = list(rx.finditer(data))
        if ms:
            m = rng.choice(ms)
            if choice == "dot-name":
                p = rng.choice(NAME_PAYLOADS)
                new = p if rng.random() < 0.5 else m.group(1) + p
            else:
                new = rng.choice(ms).group(1) if rng.random() < 0.6 else rng.choice(WORDS).encode()
            return data[:m.start(1)] + new + data[m.end(1):], f"{choice} {m.group(1)[:40]!r} at {m.start(1)} -> {new!r}"
    if choice == "name":
        qs = list(_QUOTED.finditer(data))
        if qs:
            m = rng.choice(qs)
            p = rng.choice(NAME_PAYLOADS)
            inner = data[m.start() + 1:m.end() - 1]
            if rng.random() < 0.3:
                new = p
            else:
                at = rng.randrange(len(inner) + 1)
                new = inner[:at] + p + inner[at:]
            return data[:m.start() + 1] + new + data[m.end() - 1:], f"string at {m.start()} -> {new[:80]!r}"
    if choice in ("line-del", "line-dup", "line-swap", "line-splice") and len(lines) > 1:
        i = rng.randrange(len(lines))
        if choice == "line-del":
            del lines[i]
            what = f"line {i + 1} deleted"
        elif choice == "line-dup":
            j = rng.randrange(len(lines) + 1)
            lines.insert(j, lines[i])
            what = f"line {i + 1} copied before line {j + 1}"
        elif choice == "line-swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            what = f"lines {i + 1} and {j + 1} swapped"
        else:
            same = [s for s in others if s.kind == seed.kind and s is not seed] or others
            other = rng.choice(same)
            ol = other.data.split(b"\n")
            k = rng.randrange(len(ol))
            lines.insert(i, ol[k])
            what = f"line {k + 1} of {other.name} inserted at line {i + 1}"
        return b"\n".join(lines), what
    if choice == "word":
        ws = list(_WORD.finditer(data))
        if ws:
            m = rng.choice(ws)
            w = rng.choice(WORDS).encode()
            return data[:m.start()] + w + data[m.end():], f"word {m.group()[:40]!r} at {m.start()} -> {w!r}"
    if choice == "punct" and data:
        at = rng.randrange(len(data))
        p = rng.choice([b"{", b"}", b"[", b"]", b"(", b")", b";", b",", b"=", b"%", b'"', b"|", b"\\", b"#", b"\x00",
                        b"->", b"<", b">", b":", b"\r"])
        if rng.random() < 0.5:
            return data[:at] + p + data[at:], f"{p!r} inserted at {at}"
        return data[:at] + p + data[at + 1:], f"byte at {at} -> {p!r}"
    if choice == "nest" and data:
        at = rng.randrange(len(data))
        o = rng.choice([b"[", b"{", b"(", b"subgraph {", b'"'])
        k = rng.choice((100, 1000, 20000))
        return data[:at] + o * k + data[at:], f"{o!r} x {k} inserted at {at}"
    if data:
        at = rng.randrange(len(data))
        k = rng.choice((5000, 100000, 2_000_000))
        c = rng.choice([b"x", b"9", b" ", b"\\"])
        return data[:at] + c * k + data[at:], f"{c!r} x {k} inserted at {at}"
    return byte_mutation(seed, data, rng, others)


F32_BITS = [0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F7FFFFF,
            0x00000001, 0x4B000000, 0x3727C5AC]          # 0, -0, 1, -1, inf, -inf, nan, max, denormal, 2^23, 1e-5


def ggml_semantic(seed: Seed, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A well-formed change of one ggml record: another op id, source slot, op param or flag, so that the
    file still walks and the change reaches the graph rebuild."""
    buf = bytearray(data)
    n_leafs = struct.unpack_from("<I", data, 8)[0]
    cat = rng.choice(["op", "src", "op_params", "op_params", "flags", "type"])
    fields = [f for f in seed.fields if f[2] == cat] or seed.fields
    off, width, cat = rng.choice(fields)
    if cat == "op":
        v = rng.randrange(1, 100) if rng.random() < 0.8 else rng.choice((0, 255, 1 << 31))
    elif cat == "src":
        i = seed.fields.index((off, width, cat))
        n_before = sum(1 for f in seed.fields[:i] if f[2] == "op") - n_leafs - 1     # this node's index
        v = rng.choice((-1, rng.randrange(max(1, n_leafs + max(n_before, 0))), n_leafs + max(n_before, 0),
                        -2, 1 << 31))
    elif cat == "op_params":
        v = rng.choice(F32_BITS) if rng.random() < 0.5 else rng.choice((0, 1, 2, 3, 4, 7, 8, 16, 63, -1, 1 << 30))
    elif cat == "flags":
        v = rng.choice((0, 1, 2, 3, 4, 8, 16, 31))
    else:
        v = rng.choice((0, 1, 2, 3, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 24, 26, 27, 28, 29, 30, 31, 34, 35, 39))
    _set_int(buf, off, width, v)
    return bytes(buf), f"semantic {cat} at {off} = {v}"


def rewrite_gguf(src: str, dst: str, changes: dict[str, Any]) -> str:
    """src with metadata changed ({key: a graphc.frontends.gguf.Value, or None to delete}), written to dst."""
    from graphc.frontends.gguf import GGUFFile, write_gguf
    gf = GGUFFile(src)
    md = gf.typed_metadata()
    tensors = [(n, e.type, e.ne, np.array(gf.raw(n))) for n, e in gf.tensors.items()]
    gf.close()
    for k, v in changes.items():
        if v is None:
            md.pop(k, None)
        else:
            md[k] = v
    write_gguf(dst, md, tensors)
    return dst


TOKENIZER_MODELS = ["llama", "gpt2", "gemma4", "bert", "t5", "rwkv", "none", "", "LLAMA", "plamo2"]
PRE_TOKENIZERS = ["default", "llama3", "llama-bpe", "qwen2", "gpt-2", "deepseek-llm", "unknown-pre", "", "smollm"]


def gguf_semantic(seed: Seed, data: bytes, rng: random.Random, work: str) -> tuple[bytes, str]:
    """A well-formed GGUF with one semantic change (metadata key deleted or retyped, a value out of range, a
    tokenizer swapped, a tensor retyped, reshaped, renamed or dropped), written with graphc's writer."""
    from graphc.frontends.gguf import GGUFFile, Value, ValueType, write_gguf
    path = os.path.join(work, "semantic-in.gguf")
    with open(path, "wb") as f:
        f.write(data)
    gf = GGUFFile(path)
    md = gf.typed_metadata()
    tensors = [[n, e.type.name, list(e.ne), np.array(gf.raw(n))] for n, e in gf.tensors.items()]
    gf.close()
    keys = list(md)
    what = rng.choice(["del-key", "retype", "int", "float", "string", "tok-model", "pre", "tokens", "types",
                       "arch", "t-type", "t-ne", "t-drop", "t-rename", "t-data", "ids"])
    k = rng.choice(keys)
    desc = what
    if what == "del-key":
        del md[k]
        desc = f"metadata {k!r} deleted"
    elif what == "retype":
        v = rng.choice([Value(ValueType.STRING, "x"), Value(ValueType.INT32, -1), Value(ValueType.UINT64, 1 << 40),
                        Value(ValueType.FLOAT32, float("nan")), Value(ValueType.BOOL, True),
                        Value(ValueType.ARRAY, [], ValueType.INT32),
                        Value(ValueType.ARRAY, ["a", "b"], ValueType.STRING),
                        Value(ValueType.ARRAY, [1, 2, 3], ValueType.UINT32), Value(ValueType.FLOAT64, 1e300),
                        Value(ValueType.ARRAY, [[1], [2]], ValueType.ARRAY)])
        md[k] = v
        desc = f"metadata {k!r} = {v.type.name} {str(v.value)[:30]}"
    elif what == "int":
        ints = [x for x in keys if md[x].type in (ValueType.UINT32, ValueType.INT32, ValueType.UINT64)]
        k = rng.choice(ints or keys)
        v = rng.choice((0, 1, 2, 3, 5, 7, 16, 17, 31, 33, 63, 65, 127, 255, 256, 1000, 4096, 1 << 20, 1 << 24,
                        (1 << 31) - 1, (1 << 32) - 1))
        md[k] = Value(ValueType.UINT32, v)
        desc = f"metadata {k!r} = {v}"
    elif what == "float":
        fl = [x for x in keys if md[x].type in (ValueType.FLOAT32, ValueType.FLOAT64)]
        k = rng.choice(fl or keys)
        v = rng.choice((0.0, -0.0, -1.0, 1e-30, 1e30, float("inf"), float("-inf"), float("nan"), 1e-45, 3.4e38))
        md[k] = Value(ValueType.FLOAT32, v)
        desc = f"metadata {k!r} = {v}"
    elif what == "string":
        st = [x for x in keys if md[x].type == ValueType.STRING]
        k = rng.choice(st or keys)
        v = rng.choice(["", "\x00", "\udcff", "x" * 10000, "{{ x }}", "{% for i in range(99999999) %}a{% endfor %}",
                        "llama", "yarn", "none", "linear", "gpt2"])
        md[k] = Value(ValueType.STRING, v)
        desc = f"metadata {k!r} = {v[:30]!r}"
    elif what == "tok-model":
        v = rng.choice(TOKENIZER_MODELS)
        md["tokenizer.ggml.model"] = Value(ValueType.STRING, v)
        if v == "gpt2" and rng.random() < 0.5:
            toks = list(md["tokenizer.ggml.tokens"].value)
            merges = [f"{a} {b}" for a, b in zip(toks[300:], toks[301:])][:rng.choice((0, 1, 20))]
            if rng.random() < 0.3:
                merges.append(rng.choice(["", "a", "a b c", " ", "\x00 \x00", "zz yy"]))
            md["tokenizer.ggml.merges"] = Value(ValueType.ARRAY, merges, ValueType.STRING)
        desc = f"tokenizer.ggml.model = {v!r}"
    elif what == "pre":
        v = rng.choice(PRE_TOKENIZERS)
        md["tokenizer.ggml.pre"] = Value(ValueType.STRING, v)
        if rng.random() < 0.5:
            md["tokenizer.ggml.model"] = Value(ValueType.STRING, "gpt2")
            md["tokenizer.ggml.merges"] = Value(ValueType.ARRAY, ["a b", "\u0120 t"], ValueType.STRING)
        desc = f"tokenizer.ggml.pre = {v!r}"
    elif what == "tokens":
        toks = list(md["tokenizer.ggml.tokens"].value)
        op = rng.choice(["truncate", "empty-token", "dup", "weird", "extend"])
        if op == "truncate":
            toks = toks[:rng.choice((0, 1, 2, 3, 10, 258, len(toks) - 1))]
        elif op == "empty-token":
            toks[rng.randrange(len(toks))] = ""
        elif op == "dup":
            toks[rng.randrange(len(toks))] = toks[rng.randrange(len(toks))]
        elif op == "weird":
            toks[rng.randrange(len(toks))] = rng.choice(["\x00", "\udcff\udcfe", "<0xZZ>", "<0x100>", "<0x>",
                                                         "\u2581" * 300, "<s>", "</s>", "<unk>", "<|im_end|>"])
        else:
            toks += [f"extra{i}" for i in range(rng.choice((1, 32, 1000)))]
        md["tokenizer.ggml.tokens"] = Value(ValueType.ARRAY, toks, ValueType.STRING)
        desc = f"tokens {op} ({len(toks)})"
    elif what == "types":
        key = rng.choice(["tokenizer.ggml.token_type", "tokenizer.ggml.scores"])
        arr = np.array(md[key].value).copy()
        op = rng.choice(["truncate", "value", "float"])
        if op == "truncate":
            arr = arr[:rng.choice((0, 1, 3, len(arr) - 1))]
        elif op == "value":
            arr[rng.randrange(len(arr))] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, -1, 100)) if arr.dtype.kind == "i" \
                else rng.choice((float("nan"), float("inf"), -1e30))
        else:
            arr[:] = rng.choice((0, 3, 6)) if arr.dtype.kind == "i" else float("nan")
        md[key] = Value(ValueType.ARRAY, arr, md[key].elem)
        desc = f"{key} {op}"
    elif what == "arch":
        old = md["general.architecture"].value
        v = rng.choice([a for a in ("llama", "qwen2", "gemma3", "gemma2", "rwkv6", "bert") if a != old])
        md["general.architecture"] = Value(ValueType.STRING, v)
        if rng.random() < 0.7:   # the keys follow the new name
            md = {(v + kk[len(old):] if kk.startswith(old + ".") else kk): vv for kk, vv in md.items()}
        desc = f"general.architecture {old} -> {v}"
    elif what == "ids":
        key = "tokenizer.ggml." + rng.choice(["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id",
                                              "eot_token_id"])
        v = rng.choice((0, 3, 287, 288, 289, 100000, (1 << 32) - 1))
        md[key] = Value(ValueType.UINT32, v)
        desc = f"{key} = {v}"
    else:
        i = rng.randrange(len(tensors))
        t = tensors[i]
        from graphc.types import get_type
        if what == "t-type":
            new = rng.choice(["f32", "f16", "bf16", "q8_0", "q4_0", "q4_K", "q6_K", "i32", "i8", "f64", "iq4_nl"])
            ty = get_type(new)
            if t[2] and t[2][0] % ty.blck == 0:
                rows = int(np.prod(t[2][1:])) if len(t[2]) > 1 else 1
                t[3] = np.frombuffer(rng.randbytes(ty.row_bytes(t[2][0]) * rows), dtype=np.uint8)
                t[1] = new
            desc = f"tensor {t[0]!r} type -> {t[1]}"
        elif what == "t-ne":
            ne = list(t[2])
            op = rng.choice(["swap", "drop", "add1", "addbig", "zero"])
            if op == "swap" and len(ne) > 1:
                ne[0], ne[1] = ne[1], ne[0]
            elif op == "drop" and len(ne) > 1:
                ne = [ne[0], int(np.prod(ne[1:]))] if len(ne) > 2 else [ne[0] * ne[1]]
            elif op == "add1":
                ne = ne + [1]
            elif op == "addbig" and len(ne) < 4:
                ne = ne[:1] + [1] * (len(ne) - 1) + [int(np.prod(ne[1:])) if len(ne) > 1 else 1]
                ne = ne[:4]
            elif op == "zero":
                ne[rng.randrange(len(ne))] = 0
            ty = get_type(t[1])
            if ne and ne[0] % ty.blck == 0:
                rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
                want = ty.row_bytes(ne[0]) * rows
                raw = t[3].reshape(-1)
                t[3] = raw[:want] if raw.size >= want else np.concatenate([raw, np.zeros(want - raw.size, np.uint8)])
                t[2] = ne
            desc = f"tensor {t[0]!r} ne -> {t[2]}"
        elif what == "t-drop":
            del tensors[i]
            desc = f"tensor {t[0]!r} dropped"
        elif what == "t-rename":
            other = rng.choice(tensors)[0]
            t[0] = rng.choice([other + ".x", "", "blk.99." + t[0].split(".", 2)[-1], t[0].replace("blk.0", "blk.1")])
            if sum(1 for x in tensors if x[0] == t[0]) > 1:
                t[0] += "_"
            desc = f"tensor renamed {t[0]!r}"
        else:
            raw = t[3].reshape(-1).copy()
            fill = rng.choice([b"\xff", b"\x7f", b"\x00", b"\x7c"])
            raw[:] = fill[0]
            t[3] = raw
            desc = f"tensor {t[0]!r} data all {fill!r}"
    out = os.path.join(work, "semantic-out.gguf")
    try:
        write_gguf(out, md, [(n, ty, ne, raw) for n, ty, ne, raw in tensors])
    except (ValueError, TypeError, OverflowError, struct.error) as e:     # the change cannot be written
        return data, f"semantic {desc} (not writable: {e}; unchanged)"
    return _read(out), f"semantic {desc}"


def mutate(seed: Seed, rng: random.Random, others: list[Seed], work: str | None = None
           ) -> tuple[dict[str, bytes], list[str]]:
    """The case's files with the main file mutated 1-3 times; (files, the mutations)."""
    data = seed.data
    done = []
    text = seed.kind in ("dot", "hints", "graph")
    if seed.kind == "gguf" and work is not None and rng.random() < 0.4:
        data, what = gguf_semantic(seed, data, rng, work)
        done.append(what)
        if rng.random() < 0.7:
            files = dict(seed.files)
            files[seed.main] = data
            return files, done
    for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0]):
        if text and rng.random() < 0.75:
            data, what = text_mutation(seed, data, rng, others)
        elif seed.kind == "ggml" and rng.random() < 0.4:
            data, what = ggml_semantic(seed, data, rng)
        else:
            data, what = byte_mutation(seed, data, rng, others)
        done.append(what)
    files = dict(seed.files)
    files[seed.main] = data
    return files, done


# ======================================================================================================
# the campaign
# ======================================================================================================

@dataclass
class Case:
    kind: str
    seed: str
    main: str
    mutations: list[str]
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """FAILURE if any probe failed with an unknown bug; known if every failing probe hit a KNOWN bug."""
        st = {o.status if not o.known else "known" for o in self.outcomes.values()}
        return next(s for s in ("FAILURE", "known", "error", "ok") if s in st or s == "ok")


def write_case(directory: str, files: dict[str, bytes]) -> None:
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def check_case(directory: str, kind: str, main: str, graph: str | None, rng: random.Random, cli_rate: float,
               timeout: float = TIMEOUT_S, memory: int = MEMORY_LIMIT,
               options: dict[str, Any] | None = None) -> dict[str, Outcome]:
    """Every probe of a case whose files are in directory."""
    out: dict[str, Outcome] = {}
    for p in PROBES[kind]:
        path = os.path.join(directory, main if p.target == "main" else graph or main)
        out[p.name] = run_isolated(p.fn, path, options, timeout=timeout, memory=memory)
    if cli_rate > 0 and rng.random() < cli_rate:
        target = graph if kind in ("hints", "npz") else main
        api_ok = all(o.status == "ok" for o in out.values())
        for name, argv in cli_commands(kind, target or main, api_ok, options):
            out[name] = run_cli(argv, directory, timeout=2 * timeout, memory=memory)
    for name, o in out.items():
        if o.status == "FAILURE":
            o.known = known_failure(name, o)
    return out


def save_case(save_dir: str, case: Case, files: dict[str, bytes], graph: str | None,
              options: dict[str, Any] | None = None) -> str:
    h = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:12]
    d = os.path.join(save_dir, f"{case.kind}-{h}")
    write_case(d, files)
    meta = {"kind": case.kind, "seed": case.seed, "main": case.main, "graph": graph, "options": options or {},
            "mutations": case.mutations,
            "outcomes": {k: vars(o) for k, o in case.outcomes.items()}}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return d


@dataclass
class Tally:
    cases: collections.Counter = field(default_factory=collections.Counter)      # (kind, status)
    probes: collections.Counter = field(default_factory=collections.Counter)     # (kind, probe, status)
    failures: dict[str, list[Case]] = field(default_factory=dict)                # signature -> cases
    saved: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_failures(self) -> int:
        """Mutants that failed other than by a KNOWN bug."""
        return sum(n for (k, s), n in self.cases.items() if s == "FAILURE")

    @property
    def n_known(self) -> int:
        return sum(n for (k, s), n in self.cases.items() if s == "known")

    def report(self) -> str:
        kinds = sorted({k for k, _ in self.cases}, key=lambda k: KINDS.index(k) if k in KINDS else 99)
        out = [f"mutants per file kind and outcome ({self.seconds:.0f} s; known: FAILUREs of the known bugs "
               f"outside the frontends, KNOWN):",
               f"  {'kind':8s} {'mutants':>8s} " + " ".join(f"{s:>8s}" for s in OUTCOMES)]
        for k in kinds:
            row = [self.cases[(k, s)] for s in OUTCOMES]
            out.append(f"  {k:8s} {sum(row):8d} " + " ".join(f"{n:8d}" for n in row))
        tot = [sum(self.cases[(k, s)] for k in kinds) for s in OUTCOMES]
        out.append(f"  {'all':8s} {sum(tot):8d} " + " ".join(f"{n:8d}" for n in tot))
        out.append("per probe:")
        for k, p in sorted({(k, p) for k, p, _ in self.probes}):
            row = [self.probes[(k, p, s)] for s in OUTCOMES]
            out.append(f"  {k:8s} {p:18s} {sum(row):7d} " + " ".join(f"{s} {n}" for s, n in zip(OUTCOMES, row)))
        if self.failures:
            out.append(f"{len(self.failures)} distinct failure(s):")
            for sig, cases in self.failures.items():
                c = cases[0]
                name, o = next((n, o) for n, o in c.outcomes.items()
                               if o.status == "FAILURE" and sig.startswith(n + ":"))
                first = o.detail.splitlines()[0] if o.detail else ""
                tag = f"known ({o.known})" if o.known else "NEW"
                out.append(f"  [{len(cases)}x] {tag}: {sig}\n      e.g. {c.kind} {c.seed}: {'; '.join(c.mutations)}"
                           f"\n      step {o.step!r}: {first[:300]}")
        if self.saved:
            out.append(f"saved {len(self.saved)} failing mutant(s):")
            out += [f"  {d}" for d in self.saved]
        return "\n".join(out)


def campaign(seconds: float | None, seed: int, count: int | None = None, kinds: tuple[str, ...] = KINDS,
             save: str | None = None, cli_rate: float = 0.05, timeout: float = TIMEOUT_S,
             memory: int = MEMORY_LIMIT, work: str | None = None, log: Callable[[str], None] = print,
             save_per_signature: int = 3, progress_every: float = 60.0, check_seeds: bool = True,
             verbose: bool = False) -> Tally:
    """Mutants until `seconds` pass or `count` were tried; the tally."""
    t0 = time.monotonic()
    own = work is None
    work = work or tempfile.mkdtemp(prefix="graphc-mutate-")
    tally = Tally()
    try:
        seeds = build_corpus(os.path.join(work, "seeds"), kinds, log)
        by_kind: dict[str, list[Seed]] = collections.defaultdict(list)
        for s in seeds:
            by_kind[s.kind].append(s)
        present = [k for k in kinds if by_kind[k]]
        log(f"mutate: {len(seeds)} seed files ({', '.join(f'{k} {len(by_kind[k])}' for k in present)}), seed {seed}")
        rng = random.Random(seed)
        case_dir = os.path.join(work, "case")
        if check_seeds:     # every seed as it is: ok on every probe, or the campaign wastes its mutants
            for s in seeds:
                write_case(case_dir, s.files)
                res = check_case(case_dir, s.kind, s.main, s.graph, rng, 0.0, timeout, memory, s.options)
                for pname, o in res.items():
                    if o.status != "ok":
                        log(f"mutate: seed {s.kind} {s.name} is not ok unmutated ({pname}: {o.status} "
                            f"[{o.step}] {o.detail.splitlines()[0][:300] if o.detail else ''})")
        i = 0
        last = time.monotonic()
        try:
            while True:
                if count is not None and i >= count:
                    break
                if seconds is not None and time.monotonic() - t0 >= seconds:
                    break
                kind = rng.choices(present, weights=[KIND_WEIGHT[k] for k in present])[0]
                s = rng.choice(by_kind[kind])
                crng = random.Random(f"{seed}:{i}")
                files, done = mutate(s, crng, seeds, work)
                write_case(case_dir, files)
                case = Case(kind, s.name, s.main, done)
                case.outcomes = check_case(case_dir, kind, s.main, s.graph, crng, cli_rate, timeout, memory, s.options)
                tally.cases[(kind, case.status)] += 1
                if verbose:
                    log(f"{i} {kind} {s.name}: {'; '.join(done)}")
                    for pname, o in case.outcomes.items():
                        log(f"    {pname}: {o.status} [{o.step}] {o.detail.splitlines()[0][:200] if o.detail else ''}")
                for pname, o in case.outcomes.items():
                    tally.probes[(kind, pname, o.status if not o.known else "known")] += 1
                    if o.status == "FAILURE":
                        sig = f"{pname}: {o.signature or o.detail.splitlines()[0][:120]}"
                        lst = tally.failures.setdefault(sig, [])
                        lst.append(case)
                        if save and len(lst) <= save_per_signature:
                            tally.saved.append(save_case(save, case, files, s.graph, s.options))
                        if len(lst) == 1:
                            log(f"mutate: FAILURE #{len(tally.failures)}{' (known)' if o.known else ''} "
                                f"({kind} {s.name}; {'; '.join(done)}): {sig}")
                i += 1
                if time.monotonic() - last > progress_every:
                    last = time.monotonic()
                    log(f"mutate: {i} mutants, {tally.n_failures} failing ({tally.n_known} known), "
                        f"{time.monotonic() - t0:.0f} s")
        except KeyboardInterrupt:          # Ctrl-C: the report of what ran
            log(f"mutate: interrupted after {i} mutants")
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    tally.seconds = time.monotonic() - t0
    return tally


def replay(case_dir: str, cli: bool = True, timeout: float = TIMEOUT_S, memory: int = MEMORY_LIMIT) -> Case:
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    case = Case(meta["kind"], meta["seed"], meta["main"], meta["mutations"])
    case.outcomes = check_case(case_dir, meta["kind"], meta["main"], meta.get("graph"), random.Random(0),
                               1.0 if cli else 0.0, timeout, memory, meta.get("options"))
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=None, help="run this long (default 60 without --count)")
    ap.add_argument("--count", type=int, default=None, help="stop after this many mutants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"file kinds to mutate (default {','.join(KINDS)})")
    ap.add_argument("--save", metavar="DIR", help="write each failing mutant to DIR/<kind>-<hash>/")
    ap.add_argument("--cli-rate", type=float, default=0.05, help="share of mutants also run through the CLI")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per probe")
    ap.add_argument("--memory-gib", type=float, default=MEMORY_LIMIT / (1 << 30),
                    help="address space a probe may map beyond what the campaign's process maps (RLIMIT_AS); "
                         "the CLI's processes get this much in all")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every mutant and its outcomes")
    ap.add_argument("--replay", nargs="+", metavar="CASE", help="run saved cases (directories from --save) again")
    a = ap.parse_args(argv)
    memory = int(a.memory_gib * (1 << 30))
    if a.replay:
        bad = 0
        for d in a.replay:
            c = replay(d, timeout=a.timeout, memory=memory)
            print(f"{d}: {c.status}")
            for k, o in c.outcomes.items():
                print(f"  {k}: {o.status}{' (known: ' + o.known + ')' if o.known else ''} [{o.step}] {o.detail[:2000]}")
            bad += c.status == "FAILURE"
        return 1 if bad else 0
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
    seconds = a.seconds if a.seconds is not None or a.count is not None else 60.0
    t = campaign(seconds, a.seed, a.count, kinds, a.save, a.cli_rate, a.timeout, memory, verbose=a.verbose)
    print(t.report())
    return 1 if t.n_failures else 0


if __name__ == "__main__":
    sys.exit(main())
