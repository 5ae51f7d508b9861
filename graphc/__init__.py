"""graphc: a compiler for exported ggml-style computation graphs.

    import graphc
    g = graphc.GraphBuilder("mlp")
    ...
    m = graphc.compile(g.build(y), target="ref", weights={"w": w})
    out = m.run({"x": x})
"""
from __future__ import annotations

from . import errors, types
from .api import DEFAULT_TARGET, Module, TensorInfo, compile, load
from .builder import Builder, GraphBuilder
from .custom import register_custom_op, unregister_custom_op
from .errors import CompileError, GraphcError, GraphError, ParseError, RunError
from .ir import Flag, Graph, Tensor, WeightRef
from .types import GGMLType, get_type
from .verify import verify
from .version import __version__


def load_graph(path) -> Graph:
    """Read a graph file; the format is detected from its magic bytes or extension."""
    from graphc.frontends.registry import load_graph as _load
    return _load(path)


def save_graph(graph: Graph, path) -> None:
    """Write a graph file (format from the extension; .graph text)."""
    from graphc.frontends.registry import save_graph as _save
    _save(graph, path)


__all__ = [
    "__version__", "errors", "types", "get_type", "GGMLType",
    "GraphBuilder", "Builder", "Graph", "Tensor", "Flag", "WeightRef", "verify",
    "register_custom_op", "unregister_custom_op",
    "GraphcError", "GraphError", "ParseError", "RunError", "CompileError",
    "load_graph", "save_graph", "compile", "DEFAULT_TARGET", "load", "Module", "TensorInfo",
]
