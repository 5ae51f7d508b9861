"""RWKV-4 checkpoints (BlinkDL / ChatRWKV state dicts, the layout the `rwkv` package loads): reading and checking.

    ckpt = read_checkpoint("RWKV-4-Pile-169M.pth")     # or a .safetensors file with the same names
    ckpt.config                                          # RWKV4Config: sizes from the tensor shapes
    weights = ckpt.graph_weights()                       # {leaf name: read-only raw bytes}
The graph that runs them is graphc.models.rwkv_graph.build_graph (the architecture lives with the models).

Tensors (numpy order; n_att is n_embd in released models but read from the file):
  emb.weight (n_vocab, n_embd); blocks.0.ln0.{weight,bias}; blocks.N.ln1 / ln2 .{weight,bias} (n_embd,);
  blocks.N.att.time_mix_{k,v,r} (1, 1, n_embd); blocks.N.att.time_{first,decay} (n_att,);
  blocks.N.att.{key,value,receptance}.weight (n_att, n_embd); blocks.N.att.output.weight (n_embd, n_att);
  blocks.N.ffn.time_mix_{k,r} (1, 1, n_embd); blocks.N.ffn.key.weight (n_ffn, n_embd);
  blocks.N.ffn.receptance.weight (n_embd, n_embd); blocks.N.ffn.value.weight (n_embd, n_ffn);
  ln_out.{weight,bias} (n_embd,); head.weight (n_vocab, n_embd).
A .pth file is read with torch.load(weights_only=True) (never plain pickle). Matrices keep their stored
type (f32, f16; bf16 widens to f32 exactly, as the C GEMMs take f32/f16); vectors become f32, and
time_decay becomes w = -exp(time_decay) in f32, as the rwkv package prepares it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from graphc.errors import ParseError

MAX_LAYERS = 4096

LAYER_TENSORS = ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias",
                 "att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "att.time_first", "att.time_decay",
                 "att.key.weight", "att.value.weight", "att.receptance.weight", "att.output.weight",
                 "ffn.time_mix_k", "ffn.time_mix_r", "ffn.key.weight", "ffn.receptance.weight", "ffn.value.weight")
GLOBAL_TENSORS = ("emb.weight", "blocks.0.ln0.weight", "blocks.0.ln0.bias", "ln_out.weight", "ln_out.bias",
                  "head.weight")
# names that mean another RWKV version (or a file the rwkv package converted for one strategy)
_OTHER_VERSION = (("ln_x", "RWKV-5/6"), ("time_maa", "RWKV-6"), ("time_faaaa", "RWKV-5/6"), ("gate.weight", "RWKV-5/6"),
                  (".x_r", "RWKV-7"), (".r_k", "RWKV-7"), ("_strategy", "a file converted by rwkv's convert_model"))
_STORED = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_ST_DTYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


@dataclass(frozen=True)
class RWKV4Config:
    n_layer: int
    n_embd: int
    n_att: int
    n_ffn: int
    n_vocab: int


@dataclass
class RawTensor:
    """One checkpoint tensor: its stored type (f32, f16, bf16), numpy shape and read-only raw bytes."""
    type: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class Checkpoint:
    path: str
    config: RWKV4Config
    tensors: dict[str, RawTensor] = field(repr=False)

    def values(self, name: str) -> np.ndarray:
        """A tensor's values as float32 in its numpy shape (f16 / bf16 widened exactly)."""
        return _as_f32(self.tensors[name])

    def is_matrix(self, name: str) -> bool:
        return len(_expected_shape(name, self.config)) == 2

    def graph_weights(self) -> dict[str, memoryview]:
        """{leaf name of graphc.models.rwkv_graph.build_graph's graphs: read-only raw bytes in the leaf's
        type}: matrices as stored (no copy for f32/f16 files; bf16 widened to f32), vectors as f32, and
        time_decay as "blocks.N.att.time_w" = -exp(time_decay) in f32."""
        out: dict[str, memoryview] = {}
        for name, t in self.tensors.items():
            if name.endswith(".time_decay"):
                out[name[:-len("time_decay")] + "time_w"] = _ro(-np.exp(self.values(name).reshape(-1)))
            elif self.is_matrix(name):
                out[name] = memoryview(t.data) if t.type != "bf16" else _ro(self.values(name))
            else:
                out[name] = _ro(self.values(name).reshape(-1))
        return out

    def weight_types(self) -> dict[str, str]:
        """{matrix name: its type in the graph} (vectors are always f32)."""
        return {n: ("f32" if t.type == "bf16" else t.type) for n, t in self.tensors.items() if self.is_matrix(n)}


def _ro(a: np.ndarray) -> memoryview:
    """Raw bytes, read-only: compile() takes bytes as raw data of any type and, as they cannot be
    written, uses them in place: every graph of a model shares one copy."""
    raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    raw.flags.writeable = False
    return memoryview(raw)


def _as_f32(t: RawTensor) -> np.ndarray:
    raw = np.asarray(t.data).reshape(-1)
    if t.type == "f32":
        v = raw.view("<f4")
    elif t.type == "f16":
        v = raw.view("<f2").astype(np.float32)
    else:
        v = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    return v.reshape(t.shape)


# --- reading ----------------------------------------------------------------------------------------

def read_checkpoint(path: "str | os.PathLike[str]") -> Checkpoint:
    """Read and check an RWKV-4 checkpoint (.pth via torch.load(weights_only=True), or .safetensors)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParseError("no such file" if not os.path.exists(path) else "not a file", path)
    from graphc.filekind import sniff
    try:
        safetensors = sniff(path) == "safetensors"        # by the bytes, not the name
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path) from None
    tensors = _read_safetensors(path) if safetensors else _read_torch(path)
    return Checkpoint(path, check(tensors, path), tensors)


def _read_safetensors(path: str) -> dict[str, RawTensor]:
    from graphc.frontends.safetensors import read_safetensors
    out: dict[str, RawTensor] = {}
    with read_safetensors(path) as st:
        for name, e in st.tensors.items():
            if e.dtype not in _ST_DTYPES:
                raise ParseError(f"tensor {name!r} is {e.dtype}; RWKV-4 weights must be F32, F16 or BF16", path,
                                 offset=e.offset)
            out[name] = RawTensor(_ST_DTYPES[e.dtype], e.shape, st.raw(name))
    return out


def _read_torch(path: str) -> dict[str, RawTensor]:
    try:
        import torch
    except ImportError:
        raise ParseError("reading a .pth checkpoint needs PyTorch (pip install torch), or convert it to "
                         ".safetensors", path) from None
    sd = None
    errors = []
    for mmap in (True, False):            # mmap needs torch.save's zip format; the legacy format does not map
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception as e:            # torch raises many types for damaged files; report its words
            errors.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}")
    if sd is None:
        raise ParseError(f"torch.load(weights_only=True) cannot read it ({errors[-1]})", path)
    if not isinstance(sd, Mapping):
        raise ParseError(f"the checkpoint holds a {type(sd).__name__}, not a state dict of tensors", path)
    out: dict[str, RawTensor] = {}
    for name, t in sd.items():
        if not isinstance(name, str):
            raise ParseError(f"state dict key {name!r} is not a string", path)
        if not isinstance(t, torch.Tensor):
            raise ParseError(f"entry {name!r} is a {type(t).__name__}, not a tensor"
                             + (" (a file converted by rwkv's convert_model: use the original checkpoint)"
                                if name.startswith("_") else ""), path)
        dt = _STORED.get(str(t.dtype).replace("torch.", ""))
        if t.layout != torch.strided:
            raise ParseError(f"tensor {name!r} has layout {t.layout}; RWKV-4 weights are dense tensors", path)
        if dt is None:
            raise ParseError(f"tensor {name!r} is {t.dtype}; RWKV-4 weights must be float32, float16 or bfloat16", path)
        t = t.detach().contiguous()
        arr = (t.view(torch.int16) if dt == "bf16" else t).numpy()
        raw = arr.reshape(-1).view(np.uint8)
        raw.flags.writeable = False
        out[name] = RawTensor(dt, tuple(int(d) for d in t.shape), raw)
    return out


# --- checking ---------------------------------------------------------------------------------------

def _vector_len(shape: tuple[int, ...]) -> int | None:
    """n for shapes (n,), (1, n), (1, 1, n) ...; None for anything that is not one row of values."""
    if not shape or any(d != 1 for d in shape[:-1]):
        return None
    return shape[-1]


def check(tensors: Mapping[str, RawTensor], path: str) -> RWKV4Config:
    """Every name and shape of an RWKV-4 state dict; ParseError naming the tensor otherwise."""
    def fail(msg: str) -> ParseError:
        return ParseError(msg, path)

    for key, what in _OTHER_VERSION:
        hit = next((n for n in tensors if key in n), None)
        if hit is not None:
            raise fail(f"tensor {hit!r} belongs to {what}; graphc reads RWKV-4 checkpoints only")
    layers: set[int] = set()
    for n in tensors:
        m = re.fullmatch(r"blocks\.(\d{1,6})\.(.+)", n)
        if m:
            layers.add(int(m.group(1)))
    n_layer = max(layers) + 1 if layers else 0
    if n_layer == 0:
        raise fail("no blocks.N.* tensors: not an RWKV-4 checkpoint")
    if n_layer > MAX_LAYERS:
        raise fail(f"blocks.{n_layer - 1}.*: more than {MAX_LAYERS} layers")
    want = list(GLOBAL_TENSORS) + [f"blocks.{i}.{s}" for i in range(n_layer) for s in LAYER_TENSORS]
    missing = [n for n in want if n not in tensors]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise fail(f"missing tensor(s) {', '.join(map(repr, missing[:5]))}{more}")
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise fail(f"unexpected tensor(s) {', '.join(map(repr, extra[:5]))} for an RWKV-4 checkpoint")

    emb = tensors["emb.weight"].shape
    if len(emb) != 2 or min(emb) < 1:
        raise fail(f"tensor 'emb.weight' has shape {list(emb)}, expected [n_vocab, n_embd]")
    n_vocab, n_embd = emb
    key0, ffn0 = tensors["blocks.0.att.key.weight"].shape, tensors["blocks.0.ffn.key.weight"].shape
    if len(key0) != 2 or key0[0] < 1:
        raise fail(f"tensor 'blocks.0.att.key.weight' has shape {list(key0)}, expected [n_att, {n_embd}]")
    if len(ffn0) != 2 or ffn0[0] < 1:
        raise fail(f"tensor 'blocks.0.ffn.key.weight' has shape {list(ffn0)}, expected [n_ffn, {n_embd}]")
    cfg = RWKV4Config(n_layer, n_embd, key0[0], ffn0[0], n_vocab)
    for name, t in tensors.items():
        expect = _expected_shape(name, cfg)
        shape = t.shape
        ok = (_vector_len(shape) == expect[0]) if len(expect) == 1 else (tuple(shape) == expect)
        if not ok:
            dims = "[" + ", ".join(map(str, expect)) + "]"
            raise fail(f"tensor {name!r} has shape {list(shape)}, expected {dims} (n_embd {cfg.n_embd}, "
                       f"n_att {cfg.n_att}, n_ffn {cfg.n_ffn}, n_vocab {cfg.n_vocab} from emb.weight and block 0)")
        if t.data.size != int(np.prod(shape, dtype=np.int64)) * (4 if t.type == "f32" else 2):
            raise fail(f"tensor {name!r}: {t.data.size} bytes do not hold {t.type} {list(shape)}")
        if len(expect) == 1 and not np.all(np.isfinite(_as_f32(t))):
            raise fail(f"tensor {name!r} holds non-finite values")
    return cfg


def _expected_shape(name: str, c: RWKV4Config) -> tuple[int, ...]:
    """numpy shape of a tensor (vectors as (n,): any leading 1s are accepted)."""
    if name == "emb.weight" or name == "head.weight":
        return (c.n_vocab, c.n_embd)
    short = name.split(".", 2)[2] if name.startswith("blocks.") else name
    if short in ("att.key.weight", "att.value.weight", "att.receptance.weight"):
        return (c.n_att, c.n_embd)
    if short == "att.output.weight":
        return (c.n_embd, c.n_att)
    if short in ("att.time_first", "att.time_decay"):
        return (c.n_att,)
    if short == "ffn.key.weight":
        return (c.n_ffn, c.n_embd)
    if short == "ffn.value.weight":
        return (c.n_embd, c.n_ffn)
    if short == "ffn.receptance.weight":
        return (c.n_embd, c.n_embd)
    return (c.n_embd,)       # norms and time_mix vectors


# --- random checkpoints (tests, examples) -------------------------------------------------------------

def random_state_dict(cfg: RWKV4Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A float32 RWKV-4 state dict with trained-model-like ranges: time_mix in [0, 1], time_decay spread
    over [-6, 3] within each layer (so decay matters: w = -exp(.) from -0.0025 to -20), time_first in
    [-3, 3], norms near 1, matrices ~ N(0, 1/fan_in) with larger keys (|k| reaching ~10)."""
    C, A, F, V = cfg.n_embd, cfg.n_att, cfg.n_ffn, cfg.n_vocab

    def mat(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    def vec(n: int, lo: float, hi: float, shape=None) -> np.ndarray:
        return rng.uniform(lo, hi, n).astype(np.float32).reshape(shape or (n,))

    sd: dict[str, np.ndarray] = {"emb.weight": (rng.standard_normal((V, C)) * 0.5).astype(np.float32)}
    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        if i == 0:
            sd[b + "ln0.weight"], sd[b + "ln0.bias"] = vec(C, 0.5, 1.5), vec(C, -0.2, 0.2)
        for ln in ("ln1", "ln2"):
            sd[f"{b}{ln}.weight"], sd[f"{b}{ln}.bias"] = vec(C, 0.5, 1.5), vec(C, -0.2, 0.2)
        for m in ("k", "v", "r"):
            sd[f"{b}att.time_mix_{m}"] = vec(C, 0.0, 1.0, (1, 1, C))
        sd[b + "att.time_decay"] = (np.linspace(-6.0, 3.0, A) + rng.uniform(-0.5, 0.5, A)).astype(np.float32)
        sd[b + "att.time_first"] = vec(A, -3.0, 3.0)
        sd[b + "att.key.weight"] = mat(A, C, 3.0)
        sd[b + "att.value.weight"] = mat(A, C)
        sd[b + "att.receptance.weight"] = mat(A, C)
        sd[b + "att.output.weight"] = mat(C, A)
        for m in ("k", "r"):
            sd[f"{b}ffn.time_mix_{m}"] = vec(C, 0.0, 1.0, (1, 1, C))
        sd[b + "ffn.key.weight"] = mat(F, C)
        sd[b + "ffn.receptance.weight"] = mat(C, C)
        sd[b + "ffn.value.weight"] = mat(C, F)
    sd["ln_out.weight"], sd["ln_out.bias"] = vec(C, 0.5, 1.5), vec(C, -0.2, 0.2)
    sd["head.weight"] = mat(V, C, 2.0)
    return sd


def save_checkpoint(path: "str | os.PathLike[str]", sd: Mapping[str, np.ndarray], dtype: str = "f32") -> str:
    """Write a state dict as .pth (torch.save, needs torch) or .safetensors (by the extension), with
    every tensor stored as dtype (f32, f16 or bf16). Returns the path."""
    path = os.fspath(path)
    if dtype not in ("f32", "f16", "bf16"):
        raise ValueError(f"dtype must be f32, f16 or bf16, got {dtype!r}")
    if path.endswith(".safetensors"):
        from graphc.frontends.safetensors import write_safetensors
        from graphc.quants import encode
        st = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[dtype]
        write_safetensors(path, {n: (st, tuple(a.shape), encode(np.asarray(a, np.float32), dtype))
                                 for n, a in sd.items()})
        return path
    import torch
    tdt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    torch.save({n: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(tdt) for n, a in sd.items()}, path)
    return path
