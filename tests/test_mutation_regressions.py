"""Replays the hostile files of tests/regressions/hostile/: mutants from tools/mutate.py that once made a
graphc entry point fail with something other than a graphc error (a crash, a stray exception, a hang).
Each goes through the same public path that found it, in a forked child with a timeout and a memory limit
(tools/mutate.py's run_isolated), and must now load, or be one graphc error that names the file (or the file
of the same stem beside it that is at fault: a dump's hints, a graph's weights).

  *.ggml, *.dot (with a `NAME.dot.hints` sidecar if there is one), *.graph: graphc.load_graph, then
      graphc.compile(target="ref", max_memory=...) and a run with random inputs;
  *.gguf: graphc.models.load(target="ref", lazy=True), logits, tokenize / detokenize;
and, for every file, `graphc inspect FILE` on the command line. tests/regressions/README.md says how a
file gets here.
"""
from __future__ import annotations

import glob
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

import mutate  # noqa: E402

HOSTILE = os.path.join(HERE, "regressions", "hostile")
PROBE = {".ggml": mutate.probe_graph, ".dot": mutate.probe_graph, ".graph": mutate.probe_graph,
         ".gguf": mutate.probe_gguf_model}
FILES = sorted(p for p in glob.glob(os.path.join(HOSTILE, "*")) if os.path.splitext(p)[1] in PROBE)


def test_hostile_files_exist():
    assert FILES, f"no hostile files under {HOSTILE}"


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_hostile_file(path):
    o = mutate.run_isolated(PROBE[os.path.splitext(path)[1]], path)
    assert o.status in ("ok", "error"), f"{o.status} in {o.step!r}: {o.detail}"
    if o.status == "error":     # the message names the file, or the file of the case at fault (its hints, weights)
        assert os.path.splitext(os.path.basename(path))[0] in o.detail, o.detail
    cli = mutate.run_cli(["inspect", os.path.basename(path)], HOSTILE)
    assert cli.status in ("ok", "error"), cli.detail
