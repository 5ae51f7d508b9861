"""graphc end to end, in two parts.

1. A graph: build a model graph, write it as a .graph file, compile it with the CLI into an artifact,
   load the artifact from Python and generate tokens; check that feeding the prompt token by token
   (decode graph, KV cache in state) gives the same logits as one prefill graph.
2. A model file: write a tiny random LLaMA GGUF (llama.cpp's layout, q4_0 mix, a small vocabulary),
   generate text from it with `graphc generate`, and compare graphc's greedy tokens with llama.cpp's on
   the same file (examples/gguf_generate.py).

Run with `make demo` (it creates the environment first).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graphc  # noqa: E402
from tiny_decoder import Config, build, random_weights, step_inputs  # noqa: E402


def graphc_cli(*args: str) -> None:
    print(f"\n$ graphc {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "graphc", *args], check=True)


def nmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2) / max(np.mean(b.astype(np.float64) ** 2), 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="demo-out", help="directory for the graph, weights and artifact")
    ap.add_argument("--target", default=graphc.DEFAULT_TARGET, help="compile target (default: %(default)s)")
    ap.add_argument("--tokens", type=int, default=16, help="tokens to generate")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cfg = Config()
    decoder = build(cfg, n_tokens=1)
    weights = random_weights(decoder, seed=1234)
    graph_path, weights_path, artifact = out / "decoder.graph", out / "weights.npz", out / "decoder.artifact"
    graphc.save_graph(decoder, graph_path)
    np.savez(weights_path, **weights)
    print(f"wrote {graph_path} ({len(decoder.nodes)} nodes) and {weights_path} ({len(weights)} f32 weights; "
          f"graphc quantizes them to the graph's {cfg.weight_type} at load time)")

    graphc_cli("inspect", str(graph_path))
    graphc_cli("compile", str(graph_path), "--weights", str(weights_path), "--target", args.target, "-o", str(artifact))

    module = graphc.load(artifact)
    prompt = [1, 17, 42, 7, 99, 3, 5, 8]
    t0 = time.perf_counter()
    for i, tok in enumerate(prompt):                       # the KV cache (state) carries the context
        step_logits = module.run(step_inputs(cfg, [tok], i))["logits"]
    t_prompt = time.perf_counter() - t0

    prefill = graphc.compile(build(cfg, n_tokens=len(prompt)), target=args.target, weights=weights)
    all_logits = prefill.run(step_inputs(cfg, prompt, 0))["logits"]
    err = nmse(step_logits.reshape(-1), all_logits[-1])
    print(f"\nprompt of {len(prompt)} tokens, token by token: {t_prompt * 1e3:.1f} ms; "
          f"last logits vs one prefill run: normalised MSE {err:.2e}")
    if not err < 1e-6:
        sys.exit(f"demo: decode and prefill disagree (normalised MSE {err:.2e})")

    generated, tok = [], int(np.argmax(step_logits))
    t0 = time.perf_counter()
    for i in range(args.tokens):
        generated.append(tok)
        tok = int(np.argmax(module.run(step_inputs(cfg, [tok], len(prompt) + i))["logits"]))
    dt = time.perf_counter() - t0
    print(f"greedy continuation: {generated}")
    print(f"{args.tokens} decode steps on target {args.target!r}: {args.tokens / dt:.1f} tokens/s")

    module.reset_state()
    again = module.run(step_inputs(cfg, [prompt[0]], 0))["logits"]
    first = graphc.compile(decoder, target=args.target, weights=weights).run(step_inputs(cfg, [prompt[0]], 0))["logits"]
    assert np.array_equal(again, first), "reset_state() did not clear the KV cache"
    print("reset_state() clears the KV cache: OK")

    from graphc.models.testing import make_tiny_gguf
    print("\n== a GGUF model file end to end ==")
    gguf_path = make_tiny_gguf(out / "tiny-llama-q4_0.gguf", arch="llama", wtype="q4_0", seed=7)
    print(f"wrote {gguf_path}")
    graphc_cli("generate", str(gguf_path), "--prompt", "hello world", "--max-tokens", "16", "--target", args.target)
    example = Path(__file__).resolve().parent / "gguf_generate.py"
    subprocess.run([sys.executable, str(example), str(gguf_path), "--target", args.target], check=True)


if __name__ == "__main__":
    main()
