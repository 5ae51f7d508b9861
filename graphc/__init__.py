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
from .errors import (CompileError, ContextOverflow, EraWarning, GraphcError, GraphcWarning, GraphError, ParseError,
                     RunError)
from .ir import Flag, Graph, Tensor, WeightRef
from .types import GGMLType, get_type
from .verify import verify
from .version import __version__


def load_graph(path, inputs=None, outputs=None, era=None, strict=None) -> Graph:
    """Read a graph file; the format is detected from its magic bytes or extension.

    The options (None: not given) go to the formats whose files may not record them:
    inputs / outputs: tensor names (ggml graph exports .ggml, ggml dot dumps .dot): the input leafs
    and the output nodes. A version-1 ggml export records no roles, so every leaf is a weight unless
    named here; in a dot dump every leaf whose data is not printed is an input unless inputs= names the
    real ones (then the others are weights).
    era: a ggml commit prefix (frontends/ggml_enums.py) for a .ggml file that fits several ggml eras
    (graphc.errors.EraWarning says so and names them); strict=True refuses such a file instead.
    A format that does not take an option given is a ParseError naming the formats that do."""
    from graphc.frontends.registry import load_graph as _load
    return _load(path, inputs=inputs, outputs=outputs, era=era, strict=strict)


def save_graph(graph: Graph, path) -> None:
    """Write a graph file (format from the extension; .graph text)."""
    from graphc.frontends.registry import save_graph as _save
    _save(graph, path)


__all__ = [
    "__version__", "errors", "types", "get_type", "GGMLType",
    "GraphBuilder", "Builder", "Graph", "Tensor", "Flag", "WeightRef", "verify",
    "register_custom_op", "unregister_custom_op",
    "GraphcError", "GraphError", "ParseError", "RunError", "ContextOverflow", "CompileError", "GraphcWarning",
    "EraWarning",
    "load_graph", "save_graph", "compile", "DEFAULT_TARGET", "load", "Module", "TensorInfo",
]
