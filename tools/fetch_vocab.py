#!/usr/bin/env python3
"""Fetch llama.cpp's tokenizer test vocabularies (ggml-vocab-*.gguf with their .inp/.out cases).

They ship in llama.cpp's repository under models/ and so in the llama-cpp-python source
distribution (vendor/llama.cpp/models/). This takes that sdist — the version of llama-cpp-python
installed here, downloaded with pip, or a tarball given with --sdist — and copies only those files into
DEST. Member names are checked (regular files, plain base names, bounded sizes): nothing outside DEST
is written. Idempotent: a DEST that already holds the set (marker file .complete) is left alone.

    python tools/fetch_vocab.py .venv/share/graphc-vocab
    python tools/fetch_vocab.py DEST --sdist llama_cpp_python-0.3.36.tar.gz
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

DIST = "llama-cpp-python"
MARKER = ".complete"
MAX_FILE = 64 << 20      # the largest vocab (gemma-4) is about 15 MiB
# <sdist root>/vendor/llama.cpp/models/ggml-vocab-NAME.gguf[.inp|.out]
_MEMBER = re.compile(r"^[A-Za-z0-9._-]+/vendor/llama\.cpp/models/(ggml-vocab-[A-Za-z0-9._-]+\.gguf(?:\.inp|\.out)?)$")


class FetchError(Exception):
    pass


def installed_version() -> str:
    from importlib import metadata
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        raise FetchError(f"{DIST} is not installed here: pass --version or --sdist") from None


def download_sdist(version: str, into: str) -> str:
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
           f"{DIST}=={version}", "-d", into]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = [f for f in os.listdir(into) if f.endswith((".tar.gz", ".tgz"))]
    if r.returncode != 0 or not found:
        raise FetchError(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-2000:]}")
    return os.path.join(into, found[0])


def vocab_members(tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, str]]:
    """(member, file name) for every vocabulary file, after checking each one is safe to write."""
    out = []
    for m in tar.getmembers():
        hit = _MEMBER.match(m.name)
        if not hit:
            continue
        name = hit.group(1)
        if not m.isfile():
            raise FetchError(f"{m.name}: not a regular file (link or device) in the archive")
        if m.size > MAX_FILE:
            raise FetchError(f"{m.name}: {m.size} bytes, over the {MAX_FILE}-byte limit")
        if name != os.path.basename(name) or name.startswith("."):
            raise FetchError(f"{m.name}: unsafe file name")
        out.append((m, name))
    if not any(name.endswith(".gguf") for _, name in out):
        raise FetchError("the archive holds no vendor/llama.cpp/models/ggml-vocab-*.gguf")
    return out


def extract(sdist: str, dest: str) -> list[str]:
    os.makedirs(dest, exist_ok=True)
    try:
        tar = tarfile.open(sdist, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise FetchError(f"{sdist}: cannot read the archive: {e}") from None
    names = []
    with tar:
        for member, name in vocab_members(tar):
            src = tar.extractfile(member)
            if src is None:
                raise FetchError(f"{member.name}: cannot be read")
            target = os.path.join(dest, name)
            fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest)
            try:
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(src, f)
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)     # atomic: a reader never sees half a file
            except BaseException:
                os.unlink(tmp)
                raise
            names.append(name)
    return sorted(names)


def fetch(dest: str, sdist: str | None = None, version: str | None = None, quiet: bool = False) -> bool:
    """Fill dest; returns False when it was already complete."""
    if os.path.isfile(os.path.join(dest, MARKER)):
        if not quiet:
            print(f"{dest}: vocabularies already present")
        return False
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            version = version or installed_version()
            if not quiet:
                print(f"downloading the {DIST} {version} source distribution ...")
            sdist = download_sdist(version, tmp)
        names = extract(sdist, dest)
    with open(os.path.join(dest, MARKER), "w") as f:
        f.write(os.path.basename(sdist) + "\n" + "\n".join(names) + "\n")
    if not quiet:
        print(f"{dest}: {sum(n.endswith('.gguf') for n in names)} vocabularies, {len(names)} files")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", help="folder to fill")
    ap.add_argument("--sdist", help="an existing llama-cpp-python source tarball (no download)")
    ap.add_argument("--version", help=f"{DIST} version to download (default: the installed one)")
    args = ap.parse_args(argv)
    try:
        fetch(args.dest, args.sdist, args.version)
    except FetchError as e:
        print(f"fetch_vocab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
