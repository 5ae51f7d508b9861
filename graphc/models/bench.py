"""`graphc bench`: prompt processing and token generation speed, measured as llama-bench measures them.

    for r in bench("model.gguf", n_prompt=512, n_gen=128, repetitions=5, target="c"):
        print(r.test, r.avg_ts, r.stddev_ts)          # pp512 / tg128, tokens per second

- pp N: N prompt tokens fed at once (one logits() call, the last position's logits, as llama-bench's
  llama_batch_get_one asks) from an empty state.
- tg N: N single-token decodes from an empty state (llama-bench: tg starts from an empty cache).
Tokens are random ids (llama-bench's std::rand() % n_vocab), from a fixed seed. Each test runs once
untimed first (the warm-up: graphs compile there, buffers are touched), then `repetitions` timed runs;
t/s is reported as the mean and sample standard deviation of the runs' tokens/s (llama-bench's
avg_ts / stddev_ts). Only the forward passes are timed; reset_state() between runs is not.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .gguf_info import fmt_bytes, fmt_count, size_label

SEED = 1234


@dataclass
class ModelFacts:
    """What the table says about a model: its description, tensor bytes and parameter count."""
    desc: str
    size: int
    params: int


@dataclass
class BenchResult:
    model_filename: str
    model: ModelFacts
    target: str
    threads: int | None              # the C target's threads; None where the target has none
    test: str                        # "pp512" / "tg128"
    n_prompt: int
    n_gen: int
    samples_ns: list[int] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return self.n_prompt + self.n_gen

    @property
    def samples_ts(self) -> list[float]:
        return [self.n_tokens * 1e9 / max(ns, 1) for ns in self.samples_ns]

    @property
    def avg_ts(self) -> float:
        return _mean(self.samples_ts)

    @property
    def stddev_ts(self) -> float:
        return _stdev(self.samples_ts)

    def to_json(self) -> dict[str, Any]:
        from graphc.version import __version__
        return {"graphc_version": __version__, "model_filename": self.model_filename, "model_type": self.model.desc,
                "model_size": self.model.size, "model_n_params": self.model.params, "target": self.target,
                "n_threads": self.threads, "test": self.test, "n_prompt": self.n_prompt, "n_gen": self.n_gen,
                "avg_ns": _mean(self.samples_ns), "stddev_ns": _stdev(self.samples_ns),
                "avg_ts": self.avg_ts, "stddev_ts": self.stddev_ts,
                "samples_ns": list(self.samples_ns), "samples_ts": self.samples_ts}


def _mean(xs: list) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


def _stdev(xs: list) -> float:
    """The sample standard deviation (n - 1), 0 for fewer than two samples (llama-bench's stdev)."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def model_facts(path: str, model: Any) -> ModelFacts:
    """GGUF: from its header (arch, size label, file type; tensor bytes; parameters). Others (RWKV-4):
    from the param leafs of the model's first compiled graph."""
    from graphc.filekind import sniff
    if sniff(path) == "gguf":
        from .gguf_info import GGUFInfo
        info = GGUFInfo.read(path)
        return ModelFacts(info.model_desc(), info.tensor_bytes, info.n_params)
    from graphc.ir import Flag
    modules = getattr(model, "modules", {})
    first = next(iter(modules.values()), None)
    params = [t for t in first.graph.leafs if t.has(Flag.PARAM)] if first is not None else []
    n = sum(int(np.prod(t.ne)) for t in params)
    nbytes = sum(t.nbytes for t in params) if params else os.path.getsize(path)
    types = sorted({t.type.name for t in params if len(t.shape) > 1}) or ["?"]
    kind = "rwkv4" if type(model).__name__ == "RWKVModel" else type(model).__name__
    return ModelFacts(f"{kind} {size_label(n)} {'/'.join(types).upper()}", nbytes, n)


def bench(path: str, n_prompt: int = 512, n_gen: int = 128, repetitions: int = 5, target: str = "c",
          threads: int | None = None, warmup: bool = True, seed: int = SEED,
          progress: Callable[[str], None] | None = None, **load_opts: Any) -> Iterator[BenchResult]:
    """Load the model at path (graphc.models.load) and yield one result per test: pp{n_prompt} (when
    n_prompt > 0), then tg{n_gen} (when n_gen > 0)."""
    from graphc.errors import RunError

    from . import load
    if n_prompt < 0 or n_gen < 0:
        raise RunError(f"token counts must be >= 0, got -p {n_prompt} -n {n_gen}")
    if repetitions < 1:
        raise RunError(f"repetitions must be >= 1, got {repetitions}")
    say = progress or (lambda _msg: None)
    opts = dict(load_opts)
    opts.setdefault("n_ctx", max(n_prompt, n_gen, 1))     # llama-bench: n_ctx = n_prompt + n_gen of one test
    if threads is not None:
        opts["n_threads"] = threads
    say(f"loading {path} for target {target}")
    model = load(path, target=target, **opts)
    facts = model_facts(path, model)
    used_threads = (threads or os.cpu_count() or 1) if target == "c" else None
    rng = np.random.default_rng(seed)
    name = os.path.basename(path)
    if n_prompt > 0:
        tokens = [int(t) for t in rng.integers(0, model.n_vocab, n_prompt)]

        def pp() -> int:
            model.reset_state()
            t0 = time.perf_counter_ns()
            model.logits(tokens, all_positions=False)
            return time.perf_counter_ns() - t0
        yield _measure(BenchResult(name, facts, target, used_threads, f"pp{n_prompt}", n_prompt, 0), pp,
                       lambda: model.prepare(n_prompt), repetitions, warmup, say)
    if n_gen > 0:
        gen = [int(t) for t in rng.integers(0, model.n_vocab, n_gen)]

        def tg() -> int:
            model.reset_state()
            elapsed = 0
            for tok in gen:
                t0 = time.perf_counter_ns()
                model.logits([tok], all_positions=False)
                elapsed += time.perf_counter_ns() - t0
            return elapsed
        yield _measure(BenchResult(name, facts, target, used_threads, f"tg{n_gen}", 0, n_gen), tg,
                       lambda: model.prepare(0, n_gen), repetitions, warmup, say)


def _measure(r: BenchResult, run: Callable[[], int], prepare: Callable[[], None], repetitions: int,
             warmup: bool, say: Callable[[str], None]) -> BenchResult:
    say(f"{r.test}: compiling")
    prepare()                                  # every graph the test uses, compiled before any timing
    if warmup:
        say(f"{r.test}: warm-up run")
        run()
    for i in range(repetitions):
        say(f"{r.test}: run {i + 1}/{repetitions}")
        r.samples_ns.append(run())
    return r


# --- output ------------------------------------------------------------------------------------------

COLUMNS = (("model", 30, "<"), ("size", 10, ">"), ("params", 10, ">"), ("target", 10, "<"), ("threads", 7, ">"),
           ("test", 15, ">"), ("t/s", 20, ">"))


def _cells(r: BenchResult) -> tuple[str, ...]:
    return (r.model.desc, fmt_bytes(r.model.size), fmt_count(r.model.params), r.target,
            str(r.threads) if r.threads is not None else "-", r.test, f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}")


def md_header() -> list[str]:
    head = "| " + " | ".join(f"{name:{align}{w}s}" for name, w, align in COLUMNS) + " |"
    rule = "| " + " | ".join("-" * (w - 1) + (":" if align == ">" else "-") for _name, w, align in COLUMNS) + " |"
    return [head, rule]


def md_row(r: BenchResult) -> str:
    return "| " + " | ".join(f"{c:{align}{w}s}" for c, (_n, w, align) in zip(_cells(r), COLUMNS)) + " |"


def to_json(results: list[BenchResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2)
