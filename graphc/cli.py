"""The graphc command line: compile, run, inspect and convert graphs; generate text with a model.

Errors print one line, `graphc: error: ...`, and exit 1 (2 for bad usage); --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import sys
import textwrap
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import ContextOverflow, GraphcError, GraphcWarning, RunError
from .ir import Flag, Graph, Tensor, role_of
from graphc.targets import DEFAULT_TARGET

if TYPE_CHECKING:
    from .api import Module

PROG = "graphc"


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _examples(text: str) -> str:
    return "examples:\n" + textwrap.indent(textwrap.dedent(text).strip("\n"), "  ")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    p = _Parser(prog=PROG, formatter_class=_formatter, parents=[common],
                description="graphc compiles exported ggml-style computation graphs into runnable kernels.",
                epilog=_examples("""
                    graphc inspect model.graph
                    graphc compile model.graph -o model.out --weights model.npz
                    graphc run model.out --random-inputs --seed 1 -o result.npz
                    graphc run model.graph --weights model.npz --inputs x=x.npy
                    graphc convert model.graph -o copy.graph
                """))
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("compile", parents=[common], formatter_class=_formatter,
                       help="compile a graph into an artifact directory",
                       description="Compile GRAPH for a target and write a self-describing artifact directory "
                                   "(manifest.json, the graph, in-memory weights), and/or, for target c, a "
                                   "standalone C library (docs/c-library.md).",
                       epilog=_examples("""
                           graphc compile mlp.graph -o mlp.out
                           graphc compile mlp.graph -o mlp.out --weights mlp.npz --target ref
                           graphc compile mlp.graph --target c --emit-lib mlp-lib --weights mlp.npz
                       """))
    c.add_argument("graph", metavar="GRAPH", help=GRAPH_FILE_HELP)
    c.add_argument("-o", "--output", metavar="DIR", help="artifact directory to write")
    c.add_argument("--emit-lib", metavar="DIR",
                   help="target c: write a C library there (libgraphc_model.so, graphc_model.h, weights.bin, "
                        "manifest.json, example.c, Makefile)")
    c.add_argument("--march", metavar="M", help="target c: the CPU to compile for (-march=M; default native)")
    c.add_argument("--cuda-arch", metavar="LIST",
                   help="target triton: also build every kernel's PTX and cubin for these GPUs into DIR/kernels "
                        "(e.g. sm_80,sm_90; no GPU needed)")
    c.add_argument("--threads", metavar="N", type=int, help="target c: threads per run (default: all cores)")
    _target_args(c)
    _graph_args(c)
    _pass_args(c)
    _quantize_args(c)
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", parents=[common], formatter_class=_formatter,
                       help="run a graph or a compiled artifact once",
                       description="Run a graph file (compiled on the fly) or an artifact directory once and "
                                   "print a short summary of each output.",
                       epilog=_examples("""
                           graphc run mlp.out --random-inputs --seed 7
                           graphc run mlp.graph --weights mlp.npz --inputs in.npz -o out.npz
                           graphc run mlp.graph --weights mlp.npz --inputs x=x.npy ids=ids.npy
                       """))
    r.add_argument("graph", metavar="GRAPH_OR_ARTIFACT", help=GRAPH_FILE_HELP + ", or an artifact directory "
                                                              "('graphc compile -o')")
    r.add_argument("--inputs", metavar="SRC", nargs="+", default=[],
                   help="input values: an .npz file with one array per input name, NAME=FILE.npy pairs, or "
                        "for a graph with one input a lone FILE.npy")
    r.add_argument("--random-inputs", action="store_true",
                   help="fill inputs not given with --inputs with random values")
    r.add_argument("--seed", type=_nonneg_int, help="seed for --random-inputs (default: a fresh one, printed)")
    r.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs to an .npz file")
    _target_args(r, default_target=None)
    _graph_args(r)
    _pass_args(r)
    _quantize_args(r)
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", parents=[common], formatter_class=_formatter,
                       help="show a graph's tensors, ops and memory by role, or a GGUF model's metadata and tensors",
                       description="Print the tensors table, the op histogram and the bytes by role "
                                   "(inputs, outputs, params, state, intermediates) of a graph. For a GGUF model: "
                                   "its metadata summary, every metadata key (long arrays counted, not printed), "
                                   "the tensor table and the totals per type, from the header alone (no tensor "
                                   "data is read); with --graph the decode graph graphc builds for it and its "
                                   "kernel and arena plan. The file's kind comes from its first bytes.",
                       epilog=_examples("""
                           graphc inspect attn.graph
                           graphc inspect mlp.out          (an artifact directory)
                           graphc inspect model.graph --plan --svg arena.svg
                           graphc inspect model.gguf
                           graphc inspect model.gguf --graph --tokens 8 --ctx 512
                       """))
    i.add_argument("graph", metavar="GRAPH", help="graph file (.graph, .ggml, .dot/.gv), artifact directory or "
                                                  "GGUF model")
    i.add_argument("--plan", action="store_true",
                   help="run the pass pipeline; print the fused kernels and the arena memory plan")
    i.add_argument("--svg", metavar="FILE", help="with or without --plan: draw the arena over time into FILE")
    _model_graph_args(i, graph_flag=True)
    _graph_args(i)
    _quantize_args(i, save=False)
    i.set_defaults(func=cmd_inspect)

    v = sub.add_parser("convert", parents=[common], formatter_class=_formatter,
                       help="convert a graph between file formats, or write a GGUF model's decode graph",
                       description="Read a graph in any readable format and write it in the format named by "
                                   "OUT's extension (writable now: .graph, .dot). IN may be a GGUF model: "
                                   "then OUT is the graph graphc runs for it (--tokens tokens over a --ctx-row "
                                   "KV cache), its weights bound by reference to the GGUF file (a path "
                                   "relative to OUT's folder), so 'graphc run OUT' and 'graphc compile OUT' "
                                   "read them from there. The file's kind comes from its first bytes.",
                       epilog=_examples("""
                           graphc convert model.graph -o model2.graph
                           graphc convert model.gguf -o decode.graph
                           graphc convert model.gguf -o prefill.graph --tokens 32 --ctx 512
                       """))
    v.add_argument("input", metavar="IN", help="graph file (.graph, .ggml, .dot/.gv) or GGUF model to read")
    v.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="graph file to write, in the format its extension names (.graph, .dot/.gv)")
    v.add_argument("--hints", metavar="FILE", help="hints for a ggml .dot dump (default: IN.hints if it exists; "
                                                   "docs/dot-hints.md)")
    _model_graph_args(v, graph_flag=False)
    _graph_args(v)
    v.set_defaults(func=cmd_convert)

    gn = sub.add_parser("generate", parents=[common], formatter_class=_formatter,
                        help="generate text (or token ids) with a GGUF model or an RWKV-4 checkpoint",
                        description="Load MODEL (GGUF: llama, qwen2, gemma3; or an RWKV-4 .pth/.safetensors "
                                    "checkpoint), feed the prompt and stream the generated tokens to stdout; "
                                    "prompt and decode tokens/s go to stderr at the end.",
                        epilog=_examples("""
                            graphc generate model.gguf --prompt "Once upon a time" --max-tokens 64
                            graphc generate model.gguf -p "Hi" --temperature 0.8 --top-k 40 --top-p 0.9 --seed 1
                            graphc generate model.gguf -p "Hi" --target ref --quantize q8_0 --ctx 512
                            graphc generate rwkv.pth --prompt-ids 1 2 3 --max-tokens 8
                            graphc generate model.gguf --chat -p "What is a graph compiler?" -n 256
                            graphc generate model.gguf -i --system "You are terse."   # a conversation on stdin
                            graphc generate model.gguf -i --chat-template chatml
                        """))
    gn.add_argument("model", metavar="MODEL", help="a .gguf model file or an RWKV-4 checkpoint")
    src = gn.add_mutually_exclusive_group()     # one of them is required, except with -i (checked later)
    src.add_argument("-p", "--prompt", help="the prompt text (tokenized with the model's vocabulary)")
    src.add_argument("--prompt-ids", metavar="ID", type=_nonneg_int, nargs="+", help="the prompt as token ids")
    gn.add_argument("-n", "--max-tokens", type=_nonneg_int, default=64, metavar="N", help="tokens to generate (64)")
    gn.add_argument("--temperature", type=_temperature, default=0.0, metavar="T", help="0 = greedy (default)")
    gn.add_argument("--top-k", type=_nonneg_int, default=40, metavar="K", help="sample among the K likeliest (40)")
    gn.add_argument("--top-p", type=_top_p, default=0.95, metavar="P", help="nucleus mass (0.95)")
    gn.add_argument("--seed", type=_nonneg_int, help="sampling seed (default: a fresh one)")
    gn.add_argument("--ctx", type=_pos_int, metavar="N",
                    help="context length: the KV cache's tokens (default: 4096 or the model's context length "
                         "when smaller; at most the model's)")
    gn.add_argument("--ctx-shift", action="store_true",
                    help="when generation fills the context, drop the oldest half of it and go on (llama.cpp's "
                         "context shift); without it generation stops there")
    gn.add_argument("--keep", type=_nonneg_int, default=0, metavar="N",
                    help="with --ctx-shift: prompt tokens never dropped, after the BOS token (0)")
    gn.add_argument("--threads", type=_pos_int, metavar="N", help="threads per run (default: all cores)")
    gn.add_argument("--quantize", metavar="TYPE", help="quantize float weights at load time (q4_0, q5_1, q8_0, ...)")
    gn.add_argument("--ids", action="store_true", help="print token ids instead of text")
    gn.add_argument("--target", default="c", metavar="NAME", help="ref | c | opencl | triton (default c)")
    gn.add_argument("--device", metavar="DEV", help="target opencl or triton: the device (see 'graphc devices')")
    gn.add_argument("--no-parse-special", dest="parse_special", action="store_false",
                    help="read special-token texts in the prompt (</s>, <|im_end|>, ...) as plain text (default: "
                         "they become those tokens, as in llama.cpp)")
    tp = gn.add_argument_group("tensor parallelism (under torchrun: torchrun --nproc-per-node N -m graphc "
                               "generate ...)")
    tp.add_argument("--all-ranks", action="store_true",
                    help="under torchrun, every rank prints what rank 0 prints (default: the others print only "
                         "their errors)")
    ch = gn.add_argument_group("chat (the prompt and each input line are user turns in the model's chat template)")
    ch.add_argument("--chat", action="store_true",
                    help="render --prompt as one user turn through the chat template and print the reply")
    ch.add_argument("-i", "--interactive", action="store_true",
                    help="a conversation: each line of stdin is a user turn (after --prompt, if given), each "
                         "reply is printed; the KV cache is kept between turns; ends at end of input")
    ch.add_argument("--system", metavar="TEXT", help="a system message before the first user turn")
    ch.add_argument("--chat-template", metavar="NAME|FILE",
                    help="the chat template: a built-in (llama-2, llama-3, chatml, gemma) or a Jinja file "
                         "(default: the model file's tokenizer.chat_template, else a built-in chosen by its "
                         "vocabulary and architecture)")
    gn.set_defaults(func=cmd_generate)

    d = sub.add_parser("devices", parents=[common], formatter_class=_formatter,
                       help="list the devices graphc can compile for (this CPU; every OpenCL platform and device; "
                            "CUDA GPUs for Triton)",
                       description="List this machine's CPU (target c) and every OpenCL platform and device with "
                                   "the features graphc's OpenCL kernels are chosen by. Name an OpenCL device with "
                                   "--device (or GRAPHC_OPENCL_DEVICE) as its index, as PLATFORM:DEVICE, or by part "
                                   "of its name.")
    d.set_defaults(func=cmd_devices)

    b = sub.add_parser("bench", parents=[common], formatter_class=_formatter,
                       help="measure prompt processing and token generation speed (like llama-bench)",
                       description="Load MODEL (GGUF, or an RWKV-4 checkpoint) and measure, as llama-bench does, "
                                   "prompt processing (ppN: N random tokens fed at once from an empty state) and "
                                   "token generation (tgN: N single-token decodes from an empty state) in tokens/s: "
                                   "one untimed warm-up run (graphs compile there), then -r timed runs; t/s is "
                                   "their mean ± sample standard deviation.",
                       epilog=_examples("""
                           graphc bench model.gguf
                           graphc bench model.gguf -p 128 -n 32 -r 3 -t 8
                           graphc bench model.gguf --target ref -p 8 -n 4 -o json
                       """))
    b.add_argument("model", metavar="MODEL", nargs="+", help="GGUF model(s) or RWKV-4 checkpoint(s)")
    b.add_argument("-p", "--n-prompt", type=int, default=512, metavar="N",
                   help="prompt tokens fed at once (default 512; 0 skips the pp test)")
    b.add_argument("-n", "--n-gen", type=int, default=128, metavar="N",
                   help="tokens generated one at a time (default 128; 0 skips the tg test)")
    b.add_argument("-r", "--repetitions", type=int, default=5, metavar="N", help="timed runs per test (default 5)")
    b.add_argument("-t", "--threads", type=int, metavar="N", help="target c: threads (default: all cores)")
    b.add_argument("--target", default="c", metavar="NAME", help="ref | c | opencl | triton (default c)")
    b.add_argument("--device", metavar="DEV", help="target opencl or triton: the device (see 'graphc devices')")
    b.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run (compiling still "
                                                            "happens before timing)")
    b.add_argument("-o", "--output", choices=("md", "json"), default="md",
                   help="md: a markdown table, rows as they finish (default); json: one array at the end")
    b.add_argument("-v", "--verbose", action="store_true", help="say on stderr what runs now")
    b.set_defaults(func=cmd_bench)
    return p


def _model_graph_args(p: argparse.ArgumentParser, graph_flag: bool) -> None:
    """inspect / convert of a GGUF model: which graph of it."""
    g = p.add_argument_group("GGUF models (the graph graphc builds for one)")
    if graph_flag:
        g.add_argument("--graph", dest="model_graph", action="store_true",
                       help="show the decode graph graphc builds for the model and its kernel/arena plan "
                            "(--plan and --svg on a GGUF model imply it)")
    g.add_argument("--tokens", type=int, metavar="N", help="tokens the graph feeds at once (default 1: decode)")
    g.add_argument("--ctx", type=int, metavar="N",
                   help="KV cache rows, all attended (default min(4096, the model's context length))")


GRAPH_FILE_HELP = ("graph file, its format known by its first bytes: .graph (graphc text), .ggml (ggml graph "
                   "export, file version 1 or 2) or .dot/.gv (ggml_graph_dump_dot dump, or graphc's own)")


# argparse type= functions: a bad value is a usage error naming the option ("argument --top-p: ...")

def _int_at_least(lo: int, text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    return _int_at_least(0, text)


def _pos_int(text: str) -> int:
    return _int_at_least(1, text)


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def _temperature(text: str) -> float:
    v = _float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: greedy), got {v:g}")
    return v


def _top_p(text: str) -> float:
    v = _float(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1: no nucleus cut), got {v:g}")
    return v


def sampling_seed(seed: "int | None", temperature: float) -> "int | None":
    """The seed generate samples with: `seed` when given; when sampling (temperature > 0) without one, a
    fresh seed, printed to stderr in one line so that the run can be repeated; None when greedy."""
    if seed is not None or temperature <= 0:
        return seed
    seed = secrets.randbelow(2**31)
    print(f"{PROG}: sampling with seed {seed} (--seed {seed} repeats this run)", file=sys.stderr, flush=True)
    return seed


def _warn(message: str) -> None:
    """One `graphc: warning: ...` line on stderr."""
    print(f"{PROG}: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None, _default: Any = None) -> None:
    """warnings.showwarning in the CLI: graphc's warnings as one line in command-line words."""
    if isinstance(message, GraphcWarning):
        _warn(message.cli)
    elif _default is not None:
        _default(message, category, filename, lineno, file, line)


def _graph_args(p: argparse.ArgumentParser) -> None:
    """How to read a graph file whose format may not record roles or its ggml era (ggml exports, dot
    dumps); _graph_opts turns them into graphc.load_graph's options. Shared by every command that reads
    graph files."""
    g = p.add_argument_group("reading .ggml exports and ggml .dot dumps (they may not record inputs and outputs)")
    g.add_argument("--input", dest="graph_inputs", metavar="NAME", action="append", default=[],
                   help="this leaf is an input (a version-1 .ggml file records none: every leaf is a weight "
                        "unless named; in a .dot dump, naming the inputs makes the other leafs weights); "
                        "repeatable")
    g.add_argument("--output-node", dest="graph_outputs", metavar="NAME", action="append", default=[],
                   help="this node is an output (default: the file's output flags, else the nodes nothing "
                        "uses and the last node); repeatable")
    g.add_argument("--era", metavar="COMMIT", type=_era,
                   help=".ggml files: read with the layout and op tables of this ggml commit (an id prefix; "
                        "a file that fits several ggml eras is read as the newest, with a warning naming the "
                        "others)")


def _era(text: str) -> str:
    if not text or len(text) > 40 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"not a ggml commit (hex digits, a prefix of a commit id): {text!r}")
    return text.lower()


_GRAPH_FLAGS = {"inputs": "--input", "outputs": "--output-node", "era": "--era"}
# the commands that pass _graph_opts(args) to their graph reading (main refuses the options elsewhere)
_READS_GRAPH_OPTS = {"compile", "run", "inspect", "convert"}


def _graph_opts(args: argparse.Namespace, path: str | None = None) -> dict[str, Any]:
    """graphc.load_graph's options from --input / --output-node / --era (empty when none is given). With
    `path`, a usage error when that file's format does not take one (an artifact directory takes none)."""
    opts = {k: v for k, v in (("inputs", getattr(args, "graph_inputs", None) or None),
                              ("outputs", getattr(args, "graph_outputs", None) or None),
                              ("era", getattr(args, "era", None))) if v is not None}
    if not opts or path is None:
        return opts
    flag = _GRAPH_FLAGS[next(iter(opts))]
    if os.path.isdir(path):
        raise UsageError(f"{flag} is for graph files; an artifact directory records its inputs, outputs and graph")
    from graphc.frontends.registry import FORMATS, detect
    try:
        fmt = detect(path) if os.path.isfile(path) else None
    except OSError:
        fmt = None
    if fmt is None or fmt.loader is None:
        return opts                   # reading the file says what is wrong with it
    for key in opts:
        if key not in fmt.options:
            takers = " and ".join(f"{f.name}s ({', '.join(f.extensions)})" for f in FORMATS
                                  if f.loader and key in f.options)
            why = "; it records its inputs and outputs itself" if key in ("inputs", "outputs") else ""
            raise UsageError(f"{_GRAPH_FLAGS[key]} is for {takers}; {path} is a file of format '{fmt.name}'{why}")
    return opts


def _target_args(p: argparse.ArgumentParser, default_target: str | None = DEFAULT_TARGET) -> None:
    p.add_argument("--target", default=default_target, metavar="NAME",
                   help=f"target to compile for (default: {DEFAULT_TARGET}"
                        + (", or the artifact's own" if default_target is None else "")
                        + f"; known: {', '.join(_targets()) or 'none'})")
    p.add_argument("--weights", metavar="FILE",
                   help="weights by leaf name: .gguf, .safetensors, .npz (one array per name) or .npy (one "
                        "array, named after the file); memory-mapped")
    p.add_argument("--device", metavar="DEV", help="target opencl: the device, as an index, PLATFORM:DEVICE or part "
                                                   "of its name (default GRAPHC_OPENCL_DEVICE, else the first GPU); "
                                                   "target triton: cuda:N or interpret (default GRAPHC_TRITON_DEVICE, "
                                                   "else the first CUDA GPU, else the interpreter); see "
                                                   "'graphc devices'")
    p.add_argument("--opt", metavar="KEY=VALUE", action="append", default=[],
                   help="target option (VALUE is read as JSON when it parses, else as text); repeatable")


def _pass_args(p: argparse.ArgumentParser) -> None:
    from .passes import PASS_NAMES
    g = p.add_argument_group(f"passes (graphc.passes, in order: {' '.join(PASS_NAMES)})")
    g.add_argument("--no-passes", action="store_true", help="run no pass: the target gets the graph as given")
    g.add_argument("--disable-pass", metavar="NAME", action="append", default=[], help="skip one pass; repeatable")
    g.add_argument("--dump-dir", metavar="DIR",
                   help="write the IR before and after each pass there (NN-before-NAME.graph/.dot, NN-after-...)")
    g.add_argument("--dump-after", metavar="PASS", action="append", default=[],
                   help="with --dump-dir: dump only around these passes; repeatable")


def _pass_opts(args: argparse.Namespace) -> dict[str, Any]:
    from .passes import check_names
    if args.dump_after and not args.dump_dir:
        raise UsageError("--dump-after goes with --dump-dir DIR")
    if args.no_passes and (args.disable_pass or args.dump_dir):
        raise UsageError("--no-passes runs no pass: --disable-pass and --dump-dir do not apply")
    if args.dump_dir and os.path.exists(args.dump_dir) and not os.path.isdir(args.dump_dir):
        raise UsageError(f"--dump-dir {args.dump_dir}: exists and is not a directory")
    try:
        check_names(args.disable_pass, "--disable-pass")
        check_names(args.dump_after, "--dump-after")
    except GraphcError as e:
        raise UsageError(str(e)) from None
    return {"passes": not args.no_passes, "disable_passes": args.disable_pass, "dump_dir": args.dump_dir,
            "dump_after": args.dump_after, "verify_passes": bool(getattr(args, "debug", False))}


def _quantize_args(p: argparse.ArgumentParser, save: bool = True) -> None:
    q = p.add_argument_group("quantization (graphc.quantize: weights feeding mul_mat are re-encoded)")
    q.add_argument("--quantize", metavar="TYPE",
                   help="quantize float weights that feed mul_mat to TYPE "
                        "(q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q6_K f16 bf16)")
    q.add_argument("--quantize-override", metavar="NAME=TYPE", action="append", default=[],
                   help="per-tensor type (NAME: exact, glob, or re:REGEX; TYPE: a type or 'keep'); repeatable")
    q.add_argument("--quantize-get-rows", action="store_true", help="also quantize get_rows tables (embeddings)")
    q.add_argument("--quantize-min-elements", metavar="N", type=int,
                   help="keep weights smaller than N elements (default: 1024)")
    if save:
        q.add_argument("--save-gguf", metavar="PATH",
                       help="also write the (quantized) weights to PATH and a graph bound to it beside it "
                            "(PATH with .graph), to compile later without quantizing again")


def _quantize_spec(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.quantize is None:
        extra = [f for f, v in (("--quantize-override", args.quantize_override),
                                ("--quantize-get-rows", args.quantize_get_rows),
                                ("--quantize-min-elements", args.quantize_min_elements is not None)) if v]
        if extra:
            raise UsageError(f"{extra[0]} goes with --quantize TYPE")
        return None
    from .quantize import MIN_ELEMENTS, parse_override
    spec: dict[str, Any] = {"default": args.quantize, "get_rows": args.quantize_get_rows,
                            "overrides": dict(parse_override(o) for o in args.quantize_override),
                            "min_elements": MIN_ELEMENTS if args.quantize_min_elements is None
                            else args.quantize_min_elements}
    if args.command != "inspect":
        spec["progress"] = None if sys.stderr.isatty() else False   # no \r lines in logs and pipes
    return spec


def _after_quantize(m: "Module", args: argparse.Namespace) -> None:
    """Print the plan summary; write --save-gguf."""
    if m.quantize_plan is not None:
        print(m.quantize_plan.summary())
    if getattr(args, "save_gguf", None):
        from .quantize import save_gguf
        graph_path = os.path.splitext(args.save_gguf)[0] + ".graph"
        g = save_gguf(args.save_gguf, m.graph, graph_path=graph_path)
        n = sum(1 for t in g.leafs if t.weight is not None)
        print(f"saved {n} weights to {args.save_gguf} and the graph bound to them to {graph_path}")


def _targets() -> list[str]:
    from graphc.targets import available_targets
    return available_targets()


def _version() -> str:
    from .version import __version__
    return __version__


def _target_opts(items: Sequence[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key.isidentifier():
            raise UsageError(f"--opt needs KEY=VALUE, got {item!r}")
        try:
            opts[key] = json.loads(val)
        except ValueError:
            opts[key] = val
    return opts


def _show(name: str, width: int = 0) -> str:
    """A tensor name safe for a terminal (names are free text)."""
    s = name if name.isprintable() and name.strip() == name and name else repr(name)
    if width and len(s) > width:
        s = s[:width - 1] + "…"
    return s


# --- commands -------------------------------------------------------------------------------

def _c_opts(args: argparse.Namespace) -> dict[str, Any]:
    """--emit-lib / --march / --threads: target c only."""
    if not args.output and not args.emit_lib:
        raise UsageError("compile needs -o DIR (an artifact directory) and/or --emit-lib DIR (a C library)")
    opts: dict[str, Any] = {}
    for flag, value, key in (("--emit-lib", args.emit_lib, None), ("--march", args.march, "march"),
                             ("--threads", args.threads, "n_threads")):
        if value is not None and args.target != "c":
            raise UsageError(f"{flag} is for --target c")
        if key is not None and value is not None:
            opts[key] = value
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.cuda_arch is not None:
        if args.target != "triton":
            raise UsageError("--cuda-arch is for --target triton")
        if not args.output:
            raise UsageError("--cuda-arch needs -o DIR (the kernels go into DIR/kernels)")
        opts["cuda_arch"] = args.cuda_arch
    return opts


def _device_opts(args: argparse.Namespace, target: "str | None") -> dict[str, Any]:
    """--device: targets opencl and triton."""
    if getattr(args, "device", None) is None:
        return {}
    if target not in ("opencl", "triton"):
        raise UsageError("--device is for --target opencl or triton")
    return {"device": args.device}


def cmd_compile(args: argparse.Namespace) -> int:
    import graphc
    opts = {**_target_opts(args.opt), **_c_opts(args), **_device_opts(args, args.target)}
    m = graphc.compile(args.graph, target=args.target, weights=args.weights, quantize=_quantize_spec(args),
                       graph_options=_graph_opts(args, args.graph), **_pass_opts(args), **opts)
    _after_quantize(m, args)
    _after_passes(m, args)
    name = _show(m.graph.name or os.path.basename(args.graph))
    if args.output:
        m.save(args.output)
        print(f"compiled {name} for {m.target} -> {args.output} "
              f"({len(m.graph.nodes)} nodes, {len(m.inputs)} inputs, {len(m.outputs)} outputs)")
    if args.emit_lib:
        gguf = args.weights if args.weights and args.weights.lower().endswith(".gguf") else None
        m.emit_lib(args.emit_lib, gguf=gguf)     # the lib may map that GGUF too when its tensors are unchanged
        print(f"wrote the C library of {name} to {args.emit_lib} (libgraphc_model.so, graphc_model.h, weights.bin; "
              f"'make -C {args.emit_lib} run' builds and runs its example)")
    return 0


def _open_module(args: argparse.Namespace) -> "Module":
    import graphc
    opts = _target_opts(args.opt)
    if os.path.isdir(args.graph):
        if args.device is not None:
            opts["device"] = args.device      # the artifact's target decides whether it applies
        if args.weights:
            raise UsageError("--weights is for graph files; an artifact directory holds its own weights")
        if args.quantize:
            raise UsageError("--quantize is for graph files; an artifact directory is compiled already")
        _graph_opts(args, args.graph)         # --input and friends: a usage error here
        m = graphc.load(args.graph, target=args.target, **_pass_opts(args), **opts)
    else:
        opts.update(_device_opts(args, args.target or DEFAULT_TARGET))
        m = graphc.compile(args.graph, target=args.target or DEFAULT_TARGET, weights=args.weights,
                           quantize=_quantize_spec(args), graph_options=_graph_opts(args, args.graph),
                           **_pass_opts(args), **opts)
    _after_quantize(m, args)
    _after_passes(m, args)
    return m


def _after_passes(m: "Module", args: argparse.Namespace) -> None:
    """Where the dumps went; with --debug, what each pass did."""
    if m.program is not None and getattr(args, "debug", False):
        for line in m.program.log:
            print(f"pass: {line}")
    if args.dump_dir:
        print(f"wrote the IR around each pass to {args.dump_dir}")


def _read_inputs(items: Sequence[str]) -> tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray]]]:
    """--inputs: the named arrays (NAME=FILE.npy, and every array of an .npz), and the bare .npy files
    as (item, array) (_name_bare_inputs names them once the graph is known)."""
    import zipfile
    out: dict[str, np.ndarray] = {}
    bare: list[tuple[str, np.ndarray]] = []
    for item in items:
        name, eq, path = item.rpartition("=")
        path = path if eq else item
        if eq and not name:
            raise UsageError(f"--inputs {item}: NAME=FILE needs a name before '='")
        if not os.path.isfile(path):
            raise GraphcError(f"input file {path}: " + ("a directory, not a file" if os.path.isdir(path) else
                                                        "no such file" if eq else "no such file (--inputs takes "
                                                        "FILE.npz, NAME=FILE.npy, or a lone FILE.npy)"))
        with open(path, "rb") as f:
            head = f.read(64)
        if not head.startswith((b"\x93NUMPY", b"PK")):
            from .filekind import describe_head
            raise GraphcError(f"input file {path}: not an .npy or .npz file: {describe_head(head)}")
        try:
            z = np.load(path, allow_pickle=False)
            if isinstance(z, np.ndarray):
                if eq:
                    out[name] = z
                else:
                    bare.append((item, z))               # an .npy holds one array and no name
                continue
            with z:
                if eq:
                    raise UsageError(f"--inputs {item}: NAME= takes an .npy file (one array); {path} is an "
                                     f".npz, give it without NAME= (its arrays are named)")
                out.update({k: z[k] for k in z.files})
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise GraphcError(f"input file {path}: cannot read it as .npy or .npz ({' '.join(str(e).split())})"
                              ) from None
    return out, bare


def _check_output_file(path: str, flag: str) -> None:
    """A file to write later: not a directory, and its folder exists."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GraphcError(f"{flag} {path}: no such directory {folder}")


def _name_bare_inputs(m: "Module", named: dict[str, np.ndarray], bare: list[tuple[str, np.ndarray]],
                      path: str) -> dict[str, np.ndarray]:
    """A lone FILE.npy in --inputs is the graph's input when it has exactly one; else one clear error."""
    if not bare:
        return named
    names = [t.name for t in m.graph.inputs]
    item = bare[0][0]
    if len(names) == 1 and len(bare) == 1 and names[0] not in named:
        return {**named, names[0]: bare[0][1]}
    if not names:
        raise UsageError(f"--inputs {item}: a bare .npy names no input, and the graph has none"
                         + _input_hint(path, "name the input leaf with --input NAME"))
    if len(names) == 1:
        raise UsageError(f"--inputs {item}: the graph has one input ({_show(names[0])}), given "
                         f"{'twice' if names[0] in named else f'{len(bare)} bare .npy files'}")
    raise UsageError(f"--inputs {item}: a bare file must be an .npz; use NAME={item} for an .npy (a lone .npy "
                     f"feeds a graph with one input; this one has {', '.join(map(_show, names))})")


def _input_hint(path: str, what: str) -> str:
    """'; <what>' when the graph file's format may not record its inputs (ggml exports, ggml .dot dumps)."""
    from .api import _roles_by_name
    fmt = _roles_by_name(path) if os.path.isfile(path) else None
    return f" (a {fmt} may not record which leafs are inputs): {what}" if fmt else ""


def _check_given(m: "Module", given: dict[str, np.ndarray], path: str) -> None:
    """A given input that is a leaf of the graph but not one of its inputs: say how to name inputs."""
    inputs = {t.name for t in m.graph.inputs}
    for n in given:
        if n in inputs or n not in m.graph:
            continue                 # an input, or no tensor at all: Module.run says which inputs there are
        try:
            t = m.graph.get(n)
        except KeyError:
            continue
        if not t.is_leaf:
            raise RunError(f"unknown input {n!r}: it is a node (computed by the graph), not an input; the inputs "
                           f"are: {', '.join(map(_show, sorted(inputs))) or 'none'}")
        hint = _input_hint(path, f"name it with --input {n}")
        raise RunError(f"unknown input {n!r}: the graph takes it as a {role_of(t)}, not an input{hint or ''}; "
                       f"the inputs are: {', '.join(map(_show, sorted(inputs))) or 'none'}")


def _int_bound(graph: Graph, t: Tensor) -> int:
    """Upper bound for random integer inputs: row indices must stay inside the tables they index."""
    bound = 16
    for n in graph.nodes:
        if n.op == "get_rows" and len(n.src) > 1 and n.src[1] is t:
            bound = min(bound, n.src[0].ne[1])
    return max(bound, 1)


def random_inputs(module: "Module", seed: int) -> dict[str, np.ndarray]:
    """Standard-normal floats; integers in [0, bound) so that row indices stay valid."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in module.graph.inputs:
        if t.type.is_int:
            out[t.name] = rng.integers(0, _int_bound(module.graph, t), size=t.shape).astype(t.type.np_dtype)
        else:
            out[t.name] = rng.standard_normal(t.shape).astype(np.float32)
    return out


def _summary(name: str, a: np.ndarray) -> str:
    head = f"  {_show(name, 40):40s} {str(a.shape):16s} {str(a.dtype):8s}"
    if a.size == 0:
        return head + " (empty)"
    finite = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
    if not finite.any():
        return head + " (no finite values)"
    v = a[finite].astype(np.float64)
    tail = f" min {v.min():.6g}  max {v.max():.6g}  mean {v.mean():.6g}"
    if not finite.all():
        tail += f"  ({int((~finite).sum())} non-finite)"
    return head + tail


def cmd_run(args: argparse.Namespace) -> int:
    if args.seed is not None and not args.random_inputs:
        raise UsageError("--seed goes with --random-inputs")
    if args.output:                                  # before compiling and running: say it now
        _check_output_file(args.output, "-o")
    named, bare = _read_inputs(args.inputs)          # a bad input file fails before compiling
    m = _open_module(args)
    given = _name_bare_inputs(m, named, bare, args.graph)
    _check_given(m, given, args.graph)
    inputs: dict[str, np.ndarray] = {}
    if args.random_inputs:
        if not m.graph.inputs:         # no seed to claim: nothing random goes in
            _warn("the graph has no inputs: --random-inputs has nothing to fill"
                  + _input_hint(args.graph, "name them with --input NAME"))
        elif all(t.name in given for t in m.graph.inputs):
            _warn("--inputs gives every input: --random-inputs has nothing to fill")
        else:
            seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
            inputs = random_inputs(m, seed)
            print(f"random inputs, seed {seed}")
    inputs.update(given)
    missing = [t.name for t in m.graph.inputs if t.name not in inputs]
    if missing and not given:
        raise UsageError(f"the graph needs inputs ({', '.join(map(_show, missing))}): "
                         "give --inputs or --random-inputs")
    outputs = m.run(inputs)
    print(f"{len(outputs)} output(s) of {_show(m.graph.name or args.graph)} on {m.target}:")
    for name, a in outputs.items():
        print(_summary(name, a))
    if args.output:
        np.savez(args.output, **outputs)
        saved = args.output if args.output.endswith(".npz") else args.output + ".npz"    # numpy adds it
        print(f"saved outputs to {saved}")
    return 0


# `inspect`'s groups of role_of's roles (constants count with the params: both are read-only leafs)
_ROLE_GROUP = {"input": "inputs", "state": "state", "param": "params", "constant": "params", "output": "outputs",
               "intermediate": "intermediates"}


def _flags(t: Tensor) -> str:
    names = [n for f, n in ((Flag.INPUT, "in"), (Flag.OUTPUT, "out"), (Flag.PARAM, "param"), (Flag.STATE, "state"))
             if t.has(f)]
    return ",".join(names) or "-"


def _load_for_inspect(path: str, **graph_opts: Any) -> Graph:
    """A graph file, or an artifact's graph; graph_opts: graphc.load_graph's (see _graph_opts)."""
    from graphc.frontends.registry import load_graph
    if os.path.isdir(path):
        from .api import GRAPH_FILE, MANIFEST
        if not os.path.isfile(os.path.join(path, MANIFEST)):
            raise GraphcError(f"{path}: a directory that is not a graphc artifact")
        path = os.path.join(path, GRAPH_FILE)
    return load_graph(path, **graph_opts)


def _inspect_plan(g: Graph, args: argparse.Namespace) -> int:
    """--plan / --svg: the pass pipeline's kernels and memory plan (fuse + plan when there is no pipeline)."""
    from . import memplan
    try:
        from .passes import run_pipeline
    except ImportError:
        run_pipeline = None
    if run_pipeline is not None:
        prog = run_pipeline(g)
    else:
        try:
            from .passes.fuse import fuse
        except ImportError:
            from .program import unfused as fuse
        prog = fuse(g)
    if prog.plan is None:
        prog = memplan.plan(prog)
    memplan.check_plan(prog)
    print(f"graph {_show(g.name) if g.name else '(unnamed)'}: {len(g.nodes)} nodes -> {len(prog.kernels)} kernels")
    try:
        from .passes.fuse import describe
        print(describe(prog))
    except ImportError:
        for i, k in enumerate(prog.kernels):
            print(f"  {i:4d} {k.name:32s} {k.kind:14s} {' '.join(k.ops)}  -> "
                  f"{', '.join(_show(o.name, 24) for o in k.outputs)}")
    for line in prog.log:
        print(f"pass: {line}")
    print("memory plan: " + memplan.report(prog))
    if args.svg:
        memplan.svg(prog, args.svg)
        print(f"wrote {args.svg}")
    return 0


def _is_gguf(path: str) -> bool:
    """By the file's first bytes, never its name."""
    from .filekind import sniff
    return os.path.isfile(path) and sniff(path) == "gguf"


def _model_graph(path: str, args: argparse.Namespace, weight_file: str | None = None) -> Graph:
    """The graph graphc builds for a GGUF model: --tokens tokens over a --ctx-row KV cache."""
    from .models.gguf_info import decode_graph
    for flag, v in (("--tokens", args.tokens), ("--ctx", args.ctx)):
        if v is not None and v < 1:
            raise UsageError(f"{flag} must be at least 1, got {v}")
    n_tokens = 1 if args.tokens is None else args.tokens
    if args.ctx is not None and n_tokens > args.ctx:
        raise UsageError(f"--tokens {n_tokens} does not fit in --ctx {args.ctx}")
    return decode_graph(path, n_tokens=n_tokens, n_ctx=args.ctx, weight_file=weight_file)


def _no_model_graph_args(args: argparse.Namespace, path: str) -> None:
    """--graph / --tokens / --ctx given for a file that is no GGUF model: say what the file is."""
    used = [f for f, v in (("--graph", getattr(args, "model_graph", False)), ("--tokens", args.tokens is not None),
                           ("--ctx", args.ctx is not None)) if v]
    if used:
        if os.path.isfile(path):
            from .filekind import require
            require(path, "gguf", what=f"a GGUF model, which {used[0]} is for")
        raise UsageError(f"{used[0]} is for GGUF models, and {path} is not one")


def _typed_shape(t: Tensor) -> str:
    """f32[320, 2]: the type and ne without trailing 1s, as the .graph text writes them."""
    ne = list(t.ne)
    while len(ne) > 1 and ne[-1] == 1:
        ne.pop()
    return f"{t.type.name}[{', '.join(map(str, ne))}]"


def _graph_brief(g: Graph) -> None:
    """Inputs, outputs and state of a (big) graph, one line each, then its ops and bytes by role."""
    print(f"graph {_show(g.name) if g.name else '(unnamed)'}: {len(g.leafs)} leafs, {len(g.nodes)} nodes")
    for what, ts in (("inputs", g.inputs), ("outputs", g.outputs)):
        print(f"  {what:8s} " + ", ".join(f"{_show(t.name, 24)} {_typed_shape(t)}" for t in ts))
    _op_and_role_totals(g)


def _op_and_role_totals(g: Graph) -> None:
    print("ops:")
    for op, n in g.op_histogram().items():
        print(f"  {op:24s} {n}")
    by_role: dict[str, int] = {k: 0 for k in ("inputs", "outputs", "params", "state", "intermediates")}
    for t in g.tensors():
        if not t.is_view:     # a view aliases its source's memory
            by_role[_ROLE_GROUP[role_of(t)]] += t.nbytes
    print("bytes by role (views alias other tensors and count nothing):")
    for role, n in by_role.items():
        print(f"  {role:14s} {n:12,d}")
    print(f"  {'total':14s} {sum(by_role.values()):12,d}")


def _inspect_gguf(args: argparse.Namespace) -> int:
    """A GGUF model: its header (metadata, tensor index; never the tensor data), or with --graph (--plan,
    --svg, --quantize) the graph graphc builds for it."""
    from .models.gguf_info import GGUFInfo
    info = GGUFInfo.read(args.graph)
    if not (args.model_graph or args.plan or args.svg or args.quantize is not None):
        if args.tokens is not None or args.ctx is not None:
            raise UsageError("--tokens and --ctx go with --graph")
        _quantize_spec(args)           # --quantize-override and friends without --quantize: a usage error
        print("\n".join(info.summary() + info.metadata_lines() + info.tensor_table() + info.type_totals()))
        return 0
    print("\n".join(info.summary()))
    g = _model_graph(args.graph, args)
    spec = _quantize_spec(args)
    if spec is not None:
        from .quantize import parse_spec, plan_spec
        p = plan_spec(g, parse_spec(spec))
        print(p.summary())
        print(p.table())
        return 0
    _graph_brief(g)
    return _inspect_plan(g, args)


def cmd_inspect(args: argparse.Namespace) -> int:
    if _is_gguf(args.graph):
        return _inspect_gguf(args)
    _no_model_graph_args(args, args.graph)
    g = _load_for_inspect(args.graph, **_graph_opts(args, args.graph))
    if args.plan or args.svg:
        return _inspect_plan(g, args)
    spec = _quantize_spec(args)
    if spec is not None:     # only the plan: it needs the graph, not the weights
        from .quantize import parse_spec, plan_spec
        p = plan_spec(g, parse_spec(spec))
        print(p.summary())
        print(p.table())
        return 0
    print(f"graph {_show(g.name) if g.name else '(unnamed)'}: {len(g.leafs)} leafs, {len(g.nodes)} nodes")
    rows = [("#", "name", "op", "type", "ne", "flags", "sources")]
    for i, t in enumerate(g.tensors()):
        op = t.op if t.op not in ("unary", "glu", "custom") else f"{t.op}:{t.params.get('op', t.params.get('fn'))}"
        srcs = ", ".join(_show(s.name, 20) for s in t.src if s is not None)
        kind = f"L{i}" if t.is_leaf else f"N{i - len(g.leafs)}"
        rows.append((kind, _show(t.name, 32), op, t.type.name, "[" + ", ".join(map(str, t.ne)) + "]", _flags(t), srcs))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    _op_and_role_totals(g)
    return 0


def _convert_gguf(args: argparse.Namespace) -> int:
    """A GGUF model's graph, its weights bound by reference to the GGUF file (relative to OUT's folder)."""
    from graphc.frontends.registry import save_graph
    if args.hints:
        raise UsageError("--hints applies to .dot dumps only")
    gguf = os.path.abspath(args.input)
    try:
        ref = os.path.relpath(gguf, os.path.dirname(os.path.abspath(args.output)))
    except ValueError:             # another drive (Windows): an absolute path
        ref = gguf
    g = _model_graph(args.input, args, weight_file=ref)
    save_graph(g, args.output)
    n_params = sum(1 for t in g.leafs if t.weight is not None)
    print(f"wrote {args.output}: graph {_show(g.name)} of {os.path.basename(args.input)} ({len(g.leafs)} leafs, "
          f"{len(g.nodes)} nodes; {n_params} weights bound to {ref}); inputs: "
          + ", ".join(f"{_show(t.name)} {_typed_shape(t)}" for t in g.inputs))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from graphc.frontends.registry import detect, load_graph, save_graph
    if _is_gguf(args.input):
        return _convert_gguf(args)
    _no_model_graph_args(args, args.input)
    fmt = detect(args.input) if os.path.isfile(args.input) else None
    if fmt is not None and fmt.name == "GraphViz dot dump":   # a dump is lossy: say what was inferred
        from graphc.frontends.dot import load_with_report
        g, report = load_with_report(args.input, args.hints, **_graph_opts(args, args.input))
        for line in report:
            print(f"inferred: {line}", file=sys.stderr)
    elif args.hints:
        raise UsageError("--hints applies to .dot dumps only")
    else:
        g = load_graph(args.input, **_graph_opts(args, args.input))
    save_graph(g, args.output)
    print(f"wrote {args.output} ({len(g.leafs)} leafs, {len(g.nodes)} nodes)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .models import load
    if args.max_tokens < 0:
        raise UsageError("--max-tokens must be >= 0")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    chat = args.chat or args.interactive
    if args.prompt is None and args.prompt_ids is None and not args.interactive:
        raise UsageError("one of the arguments -p/--prompt --prompt-ids is required (or -i for a conversation)")
    if chat and args.prompt_ids is not None:
        raise UsageError("--chat and -i take text: give the user turn with --prompt, not --prompt-ids")
    if not chat and (args.system is not None or args.chat_template is not None):
        raise UsageError("--system and --chat-template apply to --chat and -i only")
    opts: dict[str, Any] = {}
    if args.ctx is not None:
        opts["n_ctx"] = args.ctx
    if args.threads is not None and args.target == "c":
        opts["n_threads"] = args.threads
    if args.quantize:
        opts["quantize"] = args.quantize
    opts.update(_device_opts(args, args.target))
    from . import parallel
    if not parallel.launched_by_torchrun():
        return _generate(args, load(args.model, target=args.target, lazy=True, progress=sys.stderr, **opts))
    # one rank of several (torchrun): hold this rank's share of the model; rank 0 prints
    opts["tensor_parallel"] = True
    rank, _ = parallel.init_from_env()
    if rank > 0 and not args.all_ranks:
        _quiet_rank(rank)
    ok = False
    try:
        rc = _generate(args, load(args.model, target=args.target, lazy=True, progress=sys.stderr, **opts))
        ok = True
        return rc
    finally:
        parallel.finish(ok)


def _generate(args: argparse.Namespace, model: Any) -> int:
    """Generate with a model loaded lazily: its graphs compile once the prompt is known to fit."""
    chat = args.chat or args.interactive
    if args.prompt is not None and model.tokenizer is None:
        raise UsageError(f"{args.model} has no tokenizer: give the prompt as token ids with --prompt-ids")
    try:
        if chat:
            return _generate_chat(args, model)
        return _generate_text(args, model)
    except ContextOverflow as e:
        raise RunError(_context_words(e, args)) from None


class _ErrorsOnly:
    """stderr of a tensor-parallel rank other than 0: only graphc's error lines pass, marked with the rank."""

    def __init__(self, stream: Any, rank: int):
        self.stream, self.rank, self.line = stream, rank, ""

    def write(self, text: str) -> int:
        self.line += text
        while "\n" in self.line:
            line, self.line = self.line.split("\n", 1)
            if line.startswith(f"{PROG}: error") or line.startswith(f"{PROG}: internal error"):
                self.stream.write(f"{PROG}: rank {self.rank}:{line[len(PROG) + 1:]}\n")
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def _quiet_rank(rank: int) -> None:
    """Ranks other than 0 print nothing but their errors (rank 0 prints the text and the timings)."""
    sys.stdout = open(os.devnull, "w")
    sys.stderr = _ErrorsOnly(sys.stderr, rank)


def _context_words(e: ContextOverflow, args: argparse.Namespace) -> str:
    """A context overflow in the CLI's terms."""
    most = f"; this model allows up to --ctx {e.n_ctx_max}" if e.n_ctx_max and e.n_ctx_max > e.n_ctx else ""
    held = f" after the {e.n_past} tokens of the conversation so far" if e.n_past else ""
    what = "the input" if args.interactive or args.chat else "the prompt"
    return (f"{what} is {e.n_new} tokens{held}, more than the context of {e.n_ctx} tokens (--ctx "
            f"{e.n_ctx}{most}): give a larger --ctx or a shorter prompt")


def _generate_text(args: argparse.Namespace, model: Any) -> int:
    from .models.base import stream_text
    prompt = args.prompt if args.prompt is not None else args.prompt_ids
    ids = model.tokenize(prompt, parse_special=args.parse_special) if isinstance(prompt, str) else list(prompt)
    model.check_fits(len(ids))                      # before anything compiles
    if args.ids or model.tokenizer is None:
        def on_token(tok: int) -> None:
            print(tok, end=" ", flush=True)
    else:
        on_token = stream_text(model)
    ids = model.generate(ids, max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=sampling_seed(args.seed, args.temperature), on_token=on_token,
                         ctx_shift=args.ctx_shift, n_keep=args.keep)
    if isinstance(on_token, stream_text):
        on_token.finish()
    print(flush=True)
    st = model.stats
    if st.stop == "context":
        print(f"{PROG}: note: generation stopped at the end of the context ({model.n_ctx} tokens, --ctx "
              f"{model.n_ctx}); --ctx-shift keeps going by dropping the oldest tokens", file=sys.stderr)
    print(f"prompt: {st.prompt_tokens} tokens, {st.prompt_tps:.1f} tokens/s; decode: {len(ids)} tokens, "
          f"{st.decode_tps:.1f} tokens/s ({args.target} target)", file=sys.stderr)
    return 0


def _generate_chat(args: argparse.Namespace, model: Any) -> int:
    """`generate --chat` / `-i`: user turns through the model's chat template (graphc.models.chat), each
    reply streamed to stdout; with -i, stdin's lines are the turns (a `> ` prompt when stdin is a terminal)
    and the KV cache is kept between them."""
    from .models.base import stream_text
    from .models.chat import template_for_model
    template_for_model(model, args.chat_template)          # a bad template fails before any input is read
    messages: list[dict[str, str]] = []
    if args.system is not None:
        messages.append({"role": "system", "content": args.system})
    turns, made = 0, 0
    seed = sampling_seed(args.seed, args.temperature)       # one seed (printed once) for the conversation

    def turn(text: str) -> None:
        nonlocal turns, made
        messages.append({"role": "user", "content": text})
        show: Any = stream_text(model) if not args.ids else (lambda tok: print(tok, end=" ", flush=True))
        made = 0

        def on_token(tok: int) -> None:
            nonlocal made
            made += 1
            show(tok)
        try:
            reply = model.chat(messages, max_tokens=args.max_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=None if seed is None else seed + turns,
                               on_token=on_token, template=args.chat_template)
        except ContextOverflow as e:
            if not args.interactive:
                raise
            messages.pop()                                  # the conversation goes on without that turn
            print(f"{PROG}: error: {_context_words(e, args)}", file=sys.stderr, flush=True)
            return
        if isinstance(show, stream_text):
            show.finish()
        print(flush=True)
        if model.stats is not None and model.stats.stop == "context":
            print(f"{PROG}: note: the reply stopped at the end of the context ({model.n_ctx} tokens, --ctx "
                  f"{model.n_ctx})", file=sys.stderr, flush=True)
        messages.append({"role": "assistant", "content": reply})
        turns += 1

    if args.prompt is not None:
        turn(args.prompt)
    if args.interactive:
        from . import parallel
        rank = parallel.group()[0]          # under torchrun rank 0 reads the turns and every rank feeds them
        tty = sys.stdin.isatty() and rank == 0
        while True:
            if tty:
                print("> ", end="", flush=True)
            line = parallel.broadcast_text((sys.stdin.readline() or None) if rank == 0 else None)  # rank 0 reads
            if not line:                                    # end of input
                if tty:
                    print()
                break
            text = line.rstrip("\r\n")
            if text.strip():
                turn(text)
    st = model.stats
    if turns and st is not None:
        print(f"chat: {turns} turn(s); last turn: prompt {st.prompt_tokens} new tokens ({model.chat_reused} "
              f"kept in the cache), {st.prompt_tps:.1f} tokens/s; decode: {made} tokens, "
              f"{st.decode_tps:.1f} tokens/s ({args.target} target)", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """llama-bench's pp/tg tests (graphc.models.bench); the markdown rows print as each test finishes."""
    from .models import bench as B
    for flag, v, lo in (("-p", args.n_prompt, 0), ("-n", args.n_gen, 0), ("-r", args.repetitions, 1),
                        ("-t", args.threads, 1)):
        if v is not None and v < lo:
            raise UsageError(f"{flag} must be at least {lo}, got {v}")
    if args.n_prompt == 0 and args.n_gen == 0:
        raise UsageError("-p 0 and -n 0 leave nothing to measure")
    if args.threads is not None and args.target != "c":
        raise UsageError("-t/--threads is for --target c")
    opts = _device_opts(args, args.target)
    progress = (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)) if args.verbose else None
    results = []
    if args.output == "md":
        print("\n".join(B.md_header()), flush=True)
    for path in args.model:
        for r in B.bench(path, n_prompt=args.n_prompt, n_gen=args.n_gen, repetitions=args.repetitions,
                         target=args.target, threads=args.threads, warmup=not args.no_warmup,
                         progress=progress, **opts):
            results.append(r)
            if args.output == "md":
                print(B.md_row(r), flush=True)
    if args.output == "json":
        print(B.to_json(results))
    else:
        print(f"\ngraphc {_version()}")
    return 0


# the CPU features graphc's C kernels are chosen by (kernels/c: #if __AVX2__ ...), as /proc/cpuinfo names them
X86_ISA = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi",
           "avx512_bf16", "avx_vnni")
ARM_ISA = ("neon", "asimd", "asimdhp", "asimddp", "i8mm", "sve", "bf16")


def cmd_devices(args: argparse.Namespace) -> int:
    """Every target's devices; a part that fails says so on its line (this command never fails)."""
    for part in (_cpu_device, _opencl_devices, _triton_devices):
        try:
            part()
        except Exception as e:     # a broken driver or package: one line, and go on
            name = {_cpu_device: "c", _opencl_devices: "opencl", _triton_devices: "triton"}[part]
            print(f"target {name}: not usable here ({type(e).__name__}: {' '.join(str(e).split())[:300]})")
    return 0


def _cpu_info() -> tuple[str, list[str]]:
    """(CPU model, its feature flags) from /proc/cpuinfo (x86 'flags', ARM 'Features'), else platform's words."""
    import platform
    model, flags = platform.processor() or platform.machine() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return model, flags
    fields: dict[str, str] = {}
    for ln in lines:
        key, sep, val = ln.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = val.strip()
    model = fields.get("model name") or fields.get("Hardware") or fields.get("Model") or model
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    return model, flags


def _cpu_device() -> None:
    import platform
    model, flags = _cpu_info()
    arm = platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags
    isa = ARM_ISA if arm else X86_ISA
    have = [f for f in isa if f in flags]
    missing = [f for f in isa if f not in flags]
    print(f"target c: {model} ({os.cpu_count()} threads, {platform.machine()})")
    print(f"    ISA: {' '.join(have) or 'none of ' + ' '.join(isa)}" + (f"  (absent: {' '.join(missing)})"
                                                                       if flags and missing else "")
          + ("" if flags else "  (no /proc/cpuinfo flags: -march=native decides)"))
    try:
        from graphc.targets.c.build import find_compiler, has_openmp
        cc = find_compiler()
        version = cc.version.splitlines()[0] if cc.version else "version unknown"
        print(f"    compiler: {cc.path} ({version}; OpenMP {'yes' if has_openmp(cc.path) else 'no'})")
    except (ImportError, GraphcError, OSError) as e:
        print(f"    compiler: none usable ({' '.join(str(e).split())})")


def _opencl_devices() -> None:
    try:
        from graphc.targets.opencl.device import ENV, list_devices
    except ImportError as e:
        print(f"target opencl: not usable here ({e})")
        return
    try:
        devs = list_devices()
    except GraphcError as e:
        print(f"target opencl: {e}")
        return
    if not devs:
        from graphc.targets.opencl.device import HOW_TO_GET_ONE
        print(f"target opencl: no OpenCL platform or device found; {HOW_TO_GET_ONE}")
        return
    print(f"target opencl ({len(devs)} device(s); choose with --device or {ENV}):")
    platform_name = None
    for i, (idx, f) in enumerate(devs):
        if f.platform != platform_name:
            platform_name = f.platform
            print(f"  platform {idx.split(':')[0]}: {f.platform} ({f.version.strip()})")
        print(f"    [{i}] {idx}  {f.name}: {f.describe()}")


def _triton_devices() -> None:
    try:
        from graphc.targets.triton.device import ENV, list_devices
        devs = list_devices()
    except (ImportError, GraphcError) as e:
        print(f"target triton: not usable here ({e})")
        return
    gpus = [d for d in devs if d.startswith("cuda")]
    interp = any(d.startswith("interpret") for d in devs)
    print(f"target triton ({f'{len(gpus)} CUDA GPU(s)' if gpus else 'no CUDA GPU'}; the interpreter "
          f"{'is available' if interp else 'is not available'}; choose with --device or {ENV}):")
    for line in devs:
        print(f"    {line}")


# --- entry point -----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "command", None) is None:
            raise UsageError(f"no command given (one of compile, run, inspect, convert, generate, bench, devices; "
                             f"see '{PROG} --help')")
        if args.command not in _READS_GRAPH_OPTS and _graph_opts(args):
            raise UsageError(f"{_GRAPH_FLAGS[next(iter(_graph_opts(args)))]} is not read by "
                             f"'{args.command}' yet (compile and run read it)")
        with warnings.catch_warnings():
            default = warnings.showwarning
            warnings.showwarning = functools.partial(_show_warning, _default=default)
            warnings.simplefilter("always", GraphcWarning)      # each one is news to the user
            return int(args.func(args) or 0)
    except UsageError as e:
        if debug:
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (GraphcError, OSError) as e:
        if debug:
            raise
        msg = (e.cli or str(e)) if isinstance(e, GraphcError) else \
            f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}"
        print(f"{PROG}: error: {' '.join(msg.split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in graphc: still one line, the traceback with --debug
        if debug:
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
