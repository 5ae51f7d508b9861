"""The graphc command line: compile, run, inspect and convert graphs; generate text with a model.

Errors print one line, `graphc: error: ...`, and exit 1 (2 for bad usage); --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import textwrap
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import GraphcError
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
    c.add_argument("graph", metavar="GRAPH", help="graph file (.graph text)")
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
    r.add_argument("graph", metavar="GRAPH_OR_ARTIFACT", help="graph file or artifact directory")
    r.add_argument("--inputs", metavar="SRC", nargs="+", default=[],
                   help="inputs: an .npz file with one array per input name, and/or NAME=FILE.npy pairs")
    r.add_argument("--random-inputs", action="store_true",
                   help="fill inputs not given with --inputs with random values")
    r.add_argument("--seed", type=int, help="seed for --random-inputs (default: a fresh one, printed)")
    r.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs to an .npz file")
    _target_args(r, default_target=None)
    _pass_args(r)
    _quantize_args(r)
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", parents=[common], formatter_class=_formatter,
                       help="show a graph's tensors, ops and memory by role",
                       description="Print the tensors table, the op histogram and the bytes by role "
                                   "(inputs, outputs, params, state, intermediates) of a graph.",
                       epilog=_examples("""
                           graphc inspect attn.graph
                           graphc inspect mlp.out          (an artifact directory)
                           graphc inspect model.graph --plan --svg arena.svg
                       """))
    i.add_argument("graph", metavar="GRAPH", help="graph file or artifact directory")
    i.add_argument("--plan", action="store_true",
                   help="run the pass pipeline; print the fused kernels and the arena memory plan")
    i.add_argument("--svg", metavar="FILE", help="with or without --plan: draw the arena over time into FILE")
    _quantize_args(i, save=False)
    i.set_defaults(func=cmd_inspect)

    v = sub.add_parser("convert", parents=[common], formatter_class=_formatter,
                       help="convert a graph between file formats",
                       description="Read a graph in any readable format and write it in the format named by "
                                   "OUT's extension (writable now: .graph, .dot).",
                       epilog=_examples("""
                           graphc convert model.graph -o model2.graph
                       """))
    v.add_argument("input", metavar="IN", help="graph file to read")
    v.add_argument("-o", "--output", metavar="OUT", required=True, help="graph file to write")
    v.add_argument("--hints", metavar="FILE", help="hints for a ggml .dot dump (default: IN.hints if it exists; "
                                                   "docs/dot-hints.md)")
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
                        """))
    gn.add_argument("model", metavar="MODEL", help="a .gguf model file or an RWKV-4 checkpoint")
    src = gn.add_mutually_exclusive_group(required=True)
    src.add_argument("-p", "--prompt", help="the prompt text (tokenized with the model's vocabulary)")
    src.add_argument("--prompt-ids", metavar="ID", type=int, nargs="+", help="the prompt as token ids")
    gn.add_argument("-n", "--max-tokens", type=int, default=64, metavar="N", help="tokens to generate (64)")
    gn.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    gn.add_argument("--top-k", type=int, default=40, metavar="K", help="sample among the K likeliest (40)")
    gn.add_argument("--top-p", type=float, default=0.95, metavar="P", help="nucleus mass (0.95)")
    gn.add_argument("--seed", type=int, help="sampling seed (default: a fresh one)")
    gn.add_argument("--ctx", type=int, metavar="N",
                    help="context length (default: the loader's; bounded by the model's)")
    gn.add_argument("--threads", type=int, metavar="N", help="threads per run (default: all cores)")
    gn.add_argument("--quantize", metavar="TYPE", help="quantize float weights at load time (q4_0, q5_1, q8_0, ...)")
    gn.add_argument("--ids", action="store_true", help="print token ids instead of text")
    gn.add_argument("--target", default="c", metavar="NAME", help="ref | c | opencl | triton (default c)")
    gn.add_argument("--device", metavar="DEV", help="target opencl or triton: the device (see 'graphc devices')")
    gn.set_defaults(func=cmd_generate)

    d = sub.add_parser("devices", parents=[common], formatter_class=_formatter,
                       help="list the devices graphc can compile for (this CPU; every OpenCL platform and device; "
                            "CUDA GPUs for Triton)",
                       description="List this machine's CPU (target c) and every OpenCL platform and device with "
                                   "the features graphc's OpenCL kernels are chosen by. Name an OpenCL device with "
                                   "--device (or GRAPHC_OPENCL_DEVICE) as its index, as PLATFORM:DEVICE, or by part "
                                   "of its name.")
    d.set_defaults(func=cmd_devices)
    return p


def _target_args(p: argparse.ArgumentParser, default_target: str | None = DEFAULT_TARGET) -> None:
    p.add_argument("--target", default=default_target, metavar="NAME",
                   help="target to compile for (default: ref"
                        + (", or the artifact's own" if default_target is None else "")
                        + f"; known: {', '.join(_targets()) or 'none'})")
    p.add_argument("--weights", metavar="FILE", help="weights file (.npz with one array per weight name, or .npy)")
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
                       **_pass_opts(args), **opts)
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
        m = graphc.load(args.graph, target=args.target, **_pass_opts(args), **opts)
    else:
        opts.update(_device_opts(args, args.target or DEFAULT_TARGET))
        m = graphc.compile(args.graph, target=args.target or DEFAULT_TARGET, weights=args.weights,
                           quantize=_quantize_spec(args), **_pass_opts(args), **opts)
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


def _read_inputs(items: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for item in items:
        name, eq, path = item.rpartition("=")
        path = path if eq else item
        if not os.path.isfile(path):
            raise GraphcError(f"input file {path}: no such file")
        try:
            if eq:
                out[name] = np.load(path, allow_pickle=False)
            else:
                z = np.load(path, allow_pickle=False)
                if not isinstance(z, np.lib.npyio.NpzFile):        # an .npy holds one array and no name
                    raise UsageError(f"--inputs {item}: a bare file must be an .npz; use NAME={item} for .npy")
                with z:
                    out.update({k: z[k] for k in z.files})
        except (OSError, ValueError) as e:
            raise GraphcError(f"input file {path}: cannot read it ({e})") from None
    return out


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
    m = _open_module(args)
    given = _read_inputs(args.inputs)
    inputs: dict[str, np.ndarray] = {}
    if args.random_inputs:
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
        print(f"saved outputs to {args.output}")
    return 0


# `inspect`'s groups of role_of's roles (constants count with the params: both are read-only leafs)
_ROLE_GROUP = {"input": "inputs", "state": "state", "param": "params", "constant": "params", "output": "outputs",
               "intermediate": "intermediates"}


def _flags(t: Tensor) -> str:
    names = [n for f, n in ((Flag.INPUT, "in"), (Flag.OUTPUT, "out"), (Flag.PARAM, "param"), (Flag.STATE, "state"))
             if t.has(f)]
    return ",".join(names) or "-"


def _load_for_inspect(path: str) -> Graph:
    from graphc.frontends.registry import load_graph
    if os.path.isdir(path):
        from .api import GRAPH_FILE, MANIFEST
        if not os.path.isfile(os.path.join(path, MANIFEST)):
            raise GraphcError(f"{path}: a directory that is not a graphc artifact")
        path = os.path.join(path, GRAPH_FILE)
    return load_graph(path)


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


def cmd_inspect(args: argparse.Namespace) -> int:
    g = _load_for_inspect(args.graph)
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
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from graphc.frontends.registry import detect, load_graph, save_graph
    fmt = detect(args.input) if os.path.isfile(args.input) else None
    if fmt is not None and fmt.name == "GraphViz dot dump":   # a dump is lossy: say what was inferred
        from graphc.frontends.dot import load_with_report
        g, report = load_with_report(args.input, args.hints)
        for line in report:
            print(f"inferred: {line}", file=sys.stderr)
    elif args.hints:
        raise UsageError("--hints applies to .dot dumps only")
    else:
        g = load_graph(args.input)
    save_graph(g, args.output)
    print(f"wrote {args.output} ({len(g.leafs)} leafs, {len(g.nodes)} nodes)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .models import load
    from .models.base import stream_text
    if args.max_tokens < 0:
        raise UsageError("--max-tokens must be >= 0")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    opts: dict[str, Any] = {}
    if args.ctx is not None:
        opts["n_ctx"] = args.ctx
    if args.threads is not None and args.target == "c":
        opts["n_threads"] = args.threads
    if args.quantize:
        opts["quantize"] = args.quantize
    opts.update(_device_opts(args, args.target))
    model = load(args.model, target=args.target, **opts)
    if args.prompt is not None and model.tokenizer is None:
        raise UsageError(f"{args.model} has no tokenizer: give the prompt as token ids with --prompt-ids")
    prompt = args.prompt if args.prompt is not None else args.prompt_ids
    if args.ids or model.tokenizer is None:
        def on_token(tok: int) -> None:
            print(tok, end=" ", flush=True)
    else:
        on_token = stream_text(model)
    ids = model.generate(prompt, max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, on_token=on_token)
    if isinstance(on_token, stream_text):
        on_token.finish()
    print()
    st = model.stats
    print(f"prompt: {st.prompt_tokens} tokens, {st.prompt_tps:.1f} tokens/s; decode: {len(ids)} tokens, "
          f"{st.decode_tps:.1f} tokens/s ({args.target} target)", file=sys.stderr)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read()
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    except OSError:
        model, flags = cpu, []
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                        "neon", "asimd") if f in flags]
    print(f"target c: {model} ({os.cpu_count()} threads{', ' + ' '.join(simd) if simd else ''})")
    _opencl_devices()
    _triton_devices()
    return 0


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
    print(f"target triton ({len(devs)} device(s); choose with --device or {ENV}):")
    for line in devs:
        print(f"    {line}")


# --- entry point -----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "command", None) is None:
            raise UsageError(f"no command given (one of compile, run, inspect, convert, generate, devices; "
                             f"see '{PROG} --help')")
        return int(args.func(args) or 0)
    except UsageError as e:
        if debug:
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (GraphcError, OSError) as e:
        if debug:
            raise
        msg = str(e) if not isinstance(e, OSError) else f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
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
