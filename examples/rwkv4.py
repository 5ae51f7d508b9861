"""Run an RWKV-4 checkpoint with graphc: logits statistics and greedy token ids, with tokens/s.

    python examples/rwkv4.py                              # makes a small random checkpoint first
    python examples/rwkv4.py RWKV-4-Pile-169M.pth --quantize q8_0 --prompt 510,3158,8516 --generate 16

Without a checkpoint a random one (graphc.frontends.rwkv4.random_state_dict) is written to --out
(.safetensors needs no PyTorch; .pth does). Token ids in, token ids out: RWKV-4 files carry no tokenizer.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):            # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphc.models
from graphc.frontends import rwkv4


def make_checkpoint(path: str, n_layer: int, n_embd: int, n_vocab: int, seed: int) -> str:
    cfg = rwkv4.RWKV4Config(n_layer=n_layer, n_embd=n_embd, n_att=n_embd, n_ffn=4 * n_embd, n_vocab=n_vocab)
    return rwkv4.save_checkpoint(path, rwkv4.random_state_dict(cfg, np.random.default_rng(seed)))


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?", help="an RWKV-4 .pth or .safetensors file (default: a random one)")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "graphc-rwkv4-random.safetensors"),
                    help="where the random checkpoint goes")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="c")
    ap.add_argument("--quantize", default=None, help="q8_0, q5_1, q4_0, ... (re-encode matrices at load)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prompt", default=None, help="comma-separated token ids (default: random ids)")
    ap.add_argument("--tokens", type=int, default=32, help="random prompt length when --prompt is not given")
    ap.add_argument("--generate", type=int, default=16, help="greedy tokens to generate")
    a = ap.parse_args(argv)

    path = a.checkpoint or make_checkpoint(a.out, a.layers, a.embd, a.vocab, a.seed)
    t0 = time.perf_counter()
    model = graphc.models.load(path, target=a.target, quantize=a.quantize, n_threads=a.threads)
    print(f"loaded {model} in {time.perf_counter() - t0:.2f} s")
    if model.quantize_plan is not None:
        print(model.quantize_plan.summary())
    if a.prompt:
        prompt = [int(t) for t in a.prompt.split(",")]
    else:
        prompt = [int(t) for t in np.random.default_rng(a.seed).integers(0, model.n_vocab, a.tokens)]

    t0 = time.perf_counter()
    model.logits(prompt)                 # the first call compiles the sequence graphs it needs
    print(f"first call (compiles the sequence graph): {time.perf_counter() - t0:.2f} s")
    model.reset_state()
    t0 = time.perf_counter()
    logits = model.logits(prompt)
    dt = time.perf_counter() - t0
    print(f"prompt: {len(prompt)} tokens in {dt:.3f} s ({len(prompt) / dt:.1f} tokens/s, sequence mode)")
    last = logits[-1]
    print(f"logits {logits.shape}: mean {logits.mean():.4f} std {logits.std():.4f} "
          f"min {logits.min():.3f} max {logits.max():.3f}; last position top-5 ids "
          f"{np.argsort(-last)[:5].tolist()}")

    model.reset_state()
    out = model.generate(prompt, max_tokens=a.generate, temperature=0.0)
    s = model.stats
    print(f"greedy: {out}")
    print(f"prefill {s.prompt_tps:.1f} tokens/s, decode {s.decode_tps:.1f} tokens/s (RNN mode)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
