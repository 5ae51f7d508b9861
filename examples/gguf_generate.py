"""Generate text with a GGUF model (llama, qwen2 or gemma3) on graphc, and check it against llama.cpp.

    python examples/gguf_generate.py                          # makes a tiny random llama model first
    python examples/gguf_generate.py --arch gemma3 --wtype q4_K_M
    python examples/gguf_generate.py model.gguf --prompt "Once upon a time" --tokens 32 --target c

Without a model file a tiny random one (graphc.models.testing.make_tiny_gguf: llama.cpp's tensor names,
its quantization mix, a small SentencePiece vocabulary) is written to --out. Random weights make random
text; the point is the machinery: the same file, tokens and logits as llama.cpp (compared when
llama-cpp-python is installed).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):            # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphc.models                                   # noqa: E402
from graphc.models.base import stream_text              # noqa: E402
from graphc.models.testing import WTYPES, make_tiny_gguf  # noqa: E402


def llama_cpp_greedy(path: str, prompt: list[int], n: int) -> "list[int] | None":
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    from graphc.models.testing import llama_cpp_model    # (without AMX where its kernels fault: see there)
    llm = llama_cpp_model(path, n_ctx=256, n_threads=os.cpu_count() or 1, logits_all=True, verbose=False)
    llm.eval(prompt)
    out = []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    llm.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a .gguf file (default: make a tiny random one)")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2", "gemma3"], help="for the tiny model")
    ap.add_argument("--wtype", default="q4_0", choices=WTYPES, help="for the tiny model (default q4_0)")
    ap.add_argument("--out", default=tempfile.gettempdir(), help="where the tiny model is written")
    ap.add_argument("--prompt", default="hello world, the", help="prompt text")
    ap.add_argument("--tokens", type=int, default=24, help="tokens to generate (greedy)")
    ap.add_argument("--target", default="c", help="ref | c")
    args = ap.parse_args()

    path = args.model or make_tiny_gguf(os.path.join(args.out, f"tiny-{args.arch}-{args.wtype}.gguf"),
                                        arch=args.arch, wtype=args.wtype, seed=7)
    model = graphc.models.load(path, target=args.target, n_ctx=256)
    prompt = model.tokenize(args.prompt)
    print(f"{os.path.basename(path)}: {model.cfg.arch}, {model.cfg.n_layer} layers, vocabulary {model.n_vocab}; "
          f"prompt {args.prompt!r} -> {prompt}")
    model.logits(prompt)            # compile the prompt's graphs once, so the timings below are runs only
    model.reset_state()
    print(args.prompt, end="", flush=True)
    stream = stream_text(model)
    ids = model.generate(prompt, max_tokens=args.tokens, temperature=0.0, on_token=stream,
                         stop_at_eos=False)
    stream.finish()
    st = model.stats
    print(f"\n\ngraphc ({args.target}): prompt {st.prompt_tps:.0f} tokens/s, decode {st.decode_tps:.0f} tokens/s")
    theirs = llama_cpp_greedy(path, prompt, len(ids))
    if theirs is None:
        print("llama-cpp-python is not installed: no comparison")
        return
    same = sum(a == b for a, b in zip(ids, theirs))
    print(f"llama.cpp's greedy tokens on the same file: {same}/{len(ids)} identical")
    if ids[:4] != theirs[:4]:
        sys.exit("gguf_generate: graphc and llama.cpp disagree on the first greedy tokens")


if __name__ == "__main__":
    main()
