"""A time-boxed random-graph campaign over every target (`make fuzz`, MINUTES=10 by default).

    .venv/bin/python tools/fuzz.py --minutes 10 [--targets ref,c,opencl,triton] [--max-ops 8]

Round after round, each target checks a batch of random graphs (tests/random_graphs.py) against ref without
passes (tests/differential.py: same fresh inputs and weights, 2-3 runs each, state carried over, every
output and state tensor compared at its class's bound). A failure is shrunk by Hypothesis to a minimal graph
and saved under tests/regressions/ (GRAPHC_REGRESSIONS_DIR, or --out) as <target>-<hash>.graph, which the test
suite then replays on every target (tests/regressions/README.md says how to keep it). At the end it prints,
per target, the graphs tried, passed, declined (the target's clear "not supported yet") and failed, and the
files saved. Exit status 1 when anything failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from hypothesis import HealthCheck, Phase, given, reject, settings  # noqa: E402
from hypothesis.control import current_build_context  # noqa: E402

import differential as d  # noqa: E402
import random_graphs as rg  # noqa: E402

# graphs per round and target: about equal time per target (ref is ~50x cheaper than a C build, PoCL and
# Triton's interpreter are slower again)
BATCH = {"ref": 100, "c": 25, "opencl": 10, "triton": 10}
SHRINK_GRACE_S = 120          # past the end, a running shrink gets this long before examples are rejected


@dataclass
class Tally:
    tried: int = 0
    passed: int = 0
    declined: int = 0
    failed: int = 0
    shrink_runs: int = 0
    seconds: float = 0.0
    saved: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_batch(target: str, n: int, tally: Tally, end: float, max_ops: int, out: str) -> None:
    state = {"failing": False, "graph": None, "error": None, "saved": False}

    # no explain phase: it traces every line while shrinking, which slows Triton's interpreter 10x and more
    @settings(max_examples=n, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck), phases=[p for p in Phase if p is not Phase.explain])
    @given(graph=rg.graphs(max_ops=max_ops))
    def check(graph):
        if state["failing"]:                   # Hypothesis is shrinking a failure
            tally.shrink_runs += 1
            if time.time() > end + SHRINK_GRACE_S:
                reject()
        else:
            tally.tried += 1
        try:
            r = d.check_graph(graph, target, runs=d.runs_for(graph))
        except Exception as e:
            if not state["failing"]:
                state.update(failing=True, graph=graph, error=e)
            if current_build_context().is_final:
                tally.saved.append(d.save_regression(graph, target, e, out))
                state["saved"] = True
            raise
        if not state["failing"]:
            if r.startswith("declined"):
                tally.declined += 1
            else:
                tally.passed += 1

    t0 = time.time()
    try:
        check()
    except Exception as e:  # noqa: BLE001 - any failure is reported and the campaign goes on
        tally.failed += 1
        tally.errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        if state["graph"] is not None and not state["saved"]:
            # the shrunk example did not fail again (flaky): keep the first failing graph
            tally.saved.append(d.save_regression(state["graph"], target, state["error"], out))
        traceback.print_exception(type(e), e, e.__traceback__, limit=3, file=sys.stderr)
    tally.seconds += time.time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="campaign length (default 10)")
    ap.add_argument("--targets", default=",".join(d.TARGETS), help="comma-separated (default: all)")
    ap.add_argument("--max-ops", type=int, default=rg.MAX_OPS, help="op families per graph at most")
    ap.add_argument("--out", default=d.REGRESSIONS, help="where failing graphs go (default tests/regressions)")
    args = ap.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in d.TARGETS]
    if bad:
        ap.error(f"unknown target(s) {', '.join(bad)}; the targets are {', '.join(d.TARGETS)}")
    end = time.time() + args.minutes * 60
    tallies = {t: Tally() for t in targets}
    rounds = 0
    while time.time() < end:
        for t in targets:
            if time.time() >= end:
                break
            run_batch(t, BATCH[t], tallies[t], end, args.max_ops, args.out)
        rounds += 1
        line = "  ".join(f"{t} {x.tried}/{x.failed}" for t, x in tallies.items())
        print(f"round {rounds}: tried/failed {line}", flush=True)
    print(f"\n{'target':8} {'tried':>7} {'passed':>7} {'declined':>9} {'failed':>7} {'shrink runs':>12} {'seconds':>8}")
    for t, x in tallies.items():
        print(f"{t:8} {x.tried:7d} {x.passed:7d} {x.declined:9d} {x.failed:7d} {x.shrink_runs:12d} {x.seconds:8.0f}")
    saved = sorted({p for x in tallies.values() for p in x.saved})
    for t, x in tallies.items():
        for e in x.errors:
            print(f"  {t}: {e}")
    if saved:
        print("\nsaved regression graphs (see tests/regressions/README.md):")
        for p in saved:
            print(f"  {p}")
    return 1 if any(x.failed for x in tallies.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
