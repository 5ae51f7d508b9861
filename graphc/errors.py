"""The errors graphc raises. Every one says where (file, line/offset, tensor) and what was wrong."""
from __future__ import annotations


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class GraphError(GraphcError):
    """A graph breaks a rule: names the tensor and the rule."""

    def __init__(self, message: str, tensor: str | None = None, rule: str | None = None):
        self.tensor, self.rule = tensor, rule
        where = f"tensor {tensor!r}: " if tensor is not None else ""
        super().__init__(f"{where}{message}")


class ParseError(GraphcError):
    """A file could not be read: names the file and the line:column or byte offset."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 column: int | None = None, offset: int | None = None):
        self.file, self.line, self.column, self.offset = file, line, column, offset
        where = file or "<input>"
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        elif offset is not None:
            where += f" at byte {offset}"
        self.message = message
        super().__init__(f"{where}: {message}")


class RunError(GraphcError):
    """Bad inputs to a compiled module (wrong name, dtype or size), or a run that cannot proceed."""


class CompileError(GraphcError):
    """A graph cannot be compiled for a target (unsupported op, unregistered custom op, ...)."""
