"""The pass pipeline: ordered, named passes from a verified Graph to a planned Program.

    program = run_pipeline(graph)                     # every pass
    program = run_pipeline(graph, disable=("cse",), dump_dir="dump", verify_each=True)

Graph passes are pure: each returns a new Graph (fresh tensors) and never changes its input. "fuse"
turns the graph into a Program (graphc.passes.fuse; one kernel per node when it is absent or disabled)
and "plan" places its intermediates in one arena (graphc.memplan; skipped when absent or disabled).
Every pass keeps the names and flags of inputs, outputs, params and state: callers find them by name.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import CompileError
from ..ir import Flag, Graph
from .. import memplan
from ..program import Program, unfused
from ..verify import verify
from .canonicalize import canonicalize
from .cse import cse
from .dce import dce
from .fuse import fuse as _fuse
from .rewrite import clone
from .schedule import peak_bytes, schedule

__all__ = ["PASSES", "PASS_NAMES", "Pass", "run_pipeline", "clone", "canonicalize", "dce", "cse", "schedule",
           "peak_bytes"]


@dataclass(frozen=True)
class Pass:
    name: str
    kind: str                 # graph: Graph -> Graph | fuse: Graph -> Program | plan: Program -> Program
    fn: Callable[..., Any]
    doc: str


def _verify(graph: Graph, stats: dict[str, int] | None = None) -> Graph:
    return verify(clone(graph))


def _plan(program: Program) -> Program:
    """Place every intermediate in one arena, then prove the placement (the checker is cheap: run it always)."""
    program = memplan.plan(program)
    memplan.check_plan(program)
    return program


PASSES: list[Pass] = [
    Pass("verify", "graph", _verify, "check every IR rule (graphc.verify)"),
    Pass("canonicalize", "graph", canonicalize, "merge view chains, drop redundant copies and no-ops, fold constants"),
    Pass("dce", "graph", dce, "drop nodes no output or side effect needs"),
    Pass("cse", "graph", cse, "merge identical nodes (outputs and state writes respected)"),
    Pass("schedule", "graph", schedule, "reorder to lower the peak of live intermediates"),
    Pass("fuse", "fuse", _fuse, "group nodes into kernels"),
    Pass("plan", "plan", _plan, "place intermediates in one arena"),
]
PASS_NAMES: tuple[str, ...] = tuple(p.name for p in PASSES)


def check_names(names: Iterable[str], what: str) -> set[str]:
    names = set(names)
    unknown = sorted(n for n in names if n not in PASS_NAMES)
    if unknown:
        raise CompileError(f"{what}: unknown pass {', '.join(map(repr, unknown))}; "
                           f"the passes are: {', '.join(PASS_NAMES)}")
    return names


def run_pipeline(graph: Graph, *, disable: Iterable[str] = (), dump_dir: "str | os.PathLike[str] | None" = None,
                 dump_after: Iterable[str] = (), verify_each: bool = False) -> Program:
    """Run PASSES in order (except `disable`d ones) and return the Program.

    dump_dir: write NN-before-NAME / NN-after-NAME as .graph text and .dot for each pass (only the passes
    in `dump_after` when given; Program stages add a .txt of the kernels and the plan). verify_each: run
    graphc.verify after every pass (and the memory-plan checker after "plan")."""
    disabled = check_names(disable, "disable")
    dumped = check_names(dump_after, "dump after") or set(PASS_NAMES)
    if dump_dir is not None:
        os.makedirs(dump_dir, exist_ok=True)
    # the verify pass copies the graph; without it, copy here: never hand out the caller's tensors
    g: Graph = graph if "verify" not in disabled else clone(graph)
    program: Program | None = None
    log: list[str] = []
    t_all = time.perf_counter()
    for i, p in enumerate(PASSES, 1):
        if p.name in disabled:
            log.append(f"{p.name}: disabled")
            if p.kind == "fuse":
                program, log = _adopt(unfused(g), log)
            continue
        dump = dump_dir is not None and p.name in dumped
        if dump:
            _dump(dump_dir, f"{i:02d}-before-{p.name}", g if program is None else program)
        t0 = time.perf_counter()
        if p.kind == "graph":
            stats: dict[str, int] = {}
            n_before = len(g.nodes)
            g = p.fn(g, stats)
            if verify_each:
                verify(g)
            shown = [f"{k} {v:,}" for k, v in stats.items() if v or k.startswith("peak")]
            line = f"{p.name}: {n_before} -> {len(g.nodes)} nodes" + (f" ({', '.join(shown)})" if shown else "")
        elif p.kind == "fuse":
            fused = p.fn(g)
            own = len(fused.log)               # lines fuse wrote itself
            program, log = _adopt(fused, log)
            if verify_each:
                verify(program.graph)
            line = "" if own else f"{p.name}: {len(program.graph.nodes)} nodes -> {len(program.kernels)} kernels"
        else:
            if program is None:
                program, log = _adopt(unfused(g), log)
            n_log = len(log)
            program = p.fn(program)
            log = program.log
            line = "" if len(log) > n_log else f"{p.name}: " + ("placed" if program.plan else "skipped (no planner)")
        if line:
            log.append(f"{line} [{(time.perf_counter() - t0) * 1e3:.1f} ms]")
        if dump:
            _dump(dump_dir, f"{i:02d}-after-{p.name}", g if program is None else program)
    if program is None:
        program, log = _adopt(unfused(g), log)
    log.append(f"pipeline: {(time.perf_counter() - t_all) * 1e3:.1f} ms")
    return program


def _adopt(program: Program, log: list[str]) -> tuple[Program, list[str]]:
    """Put the lines logged so far in front of the program's own log; later lines go straight there."""
    program.log[:0] = log
    return program, program.log


def _strip_data(graph: Graph) -> Graph:
    """A copy for dumps: weights and large constants lose their inline data (they stay bound by name)."""
    g = clone(graph)
    for t in g.leafs:
        if t.data is not None and (t.flags & (Flag.PARAM | Flag.STATE) or t.nbytes > 4096):
            t.data = None
    return g


def _dump(folder: "str | os.PathLike[str]", stem: str, what: "Graph | Program") -> None:
    from graphc.frontends import dot_write, graph_text
    graph = what if isinstance(what, Graph) else what.graph
    g = _strip_data(graph)
    for ext, fn in ((".graph", graph_text.dumps), (".dot", dot_write.dumps)):
        try:
            text = fn(g)
        except Exception as e:  # noqa: BLE001 - a dump must never stop a compile
            text = f"# cannot write this stage: {type(e).__name__}: {e}\n"
        with open(os.path.join(folder, stem + ext), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    if isinstance(what, Program):
        lines = [f"{k.name}: {k.kind} [{', '.join(k.ops)}] -> {', '.join(o.name for o in k.outputs)}"
                 for k in what.kernels]
        if what.plan is not None:
            lines += ["", memplan.report(what)]
        with open(os.path.join(folder, stem + ".txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
