"""Layering: no import cycles among graphc's modules (imports inside functions count: they hide a cycle,
they do not remove it), and the arrows of docs/architecture.md point down."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"graphc": "graphc", "frontends": "graphc.frontends", "targets": "graphc.targets",
           "kernels": "graphc.kernels"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in FOLDERS.items():
        for p in (ROOT / folder).rglob("*.py"):
            parts = p.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join((pkg,) + parts)] = p
    return mods


def import_graph() -> nx.DiGraph:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for n in names:
                r = resolve(n)
                # a module may import the packages it sits in (by path: targets/c/x.py sits in targets/
                # and targets/c/, not in graphc/ although it is named graphc.targets.c.x)
                if not r or r == name:
                    continue
                inside = mods[r].name == "__init__.py" and path.is_relative_to(mods[r].parent)
                if not inside:
                    g.add_edge(name, r)
    return g


def test_no_import_cycles():
    g = import_graph()
    assert len(g) > 50
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _reaches(g: nx.DiGraph, src_prefix: str, dst_prefix: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in g.edges if a.startswith(src_prefix) and b.startswith(dst_prefix)]


def test_arrows_point_down():
    g = import_graph()
    # frontends read file formats into the IR: no code generation, no targets, no model runtime
    for below in ("graphc.targets", "graphc.codegen", "graphc.models", "graphc.passes"):
        assert _reaches(g, "graphc.frontends", below) == []
    # the shared lowering knows no target, frontend or model
    for above in ("graphc.targets", "graphc.frontends", "graphc.models", "graphc.api", "graphc.cli"):
        assert _reaches(g, "graphc.codegen", above) == []
    # the IR core imports none of the layers above it
    for core in ("graphc.ir", "graphc.ops", "graphc.types", "graphc.verify", "graphc.program", "graphc.runtime"):
        for above in ("graphc.targets", "graphc.frontends", "graphc.models", "graphc.codegen", "graphc.passes",
                      "graphc.api"):
            assert _reaches(g, core, above) == [], (core, above)
