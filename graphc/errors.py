"""The errors graphc raises. Every one says where (file, line/offset, tensor) and what was wrong."""
from __future__ import annotations


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose. `cli`, when set: the same message in
    command-line words (flags instead of Python arguments); the CLI prints it instead."""

    cli: str | None = None


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


class ContextOverflow(RunError):
    """Tokens that do not fit in a model's context window (n_ctx cache rows). The numbers travel with it so
    that each interface can say it in its own words (n_ctx in the API, --ctx on the CLI)."""

    def __init__(self, n_past: int, n_new: int, n_ctx: int, n_ctx_max: "int | None" = None):
        self.n_past, self.n_new, self.n_ctx, self.n_ctx_max = n_past, n_new, n_ctx, n_ctx_max
        held = f" after the {n_past} the cache holds" if n_past else ""
        most = f", at most the model's {n_ctx_max}" if n_ctx_max and n_ctx_max > n_ctx else ""
        super().__init__(f"context overflow: {n_new} token{'s' if n_new != 1 else ''}{held} "
                         f"do{'es' if n_new == 1 else ''} not fit in n_ctx = {n_ctx} "
                         f"(reset_state() to start over, or load with a larger n_ctx{most})")


class CompileError(GraphcError):
    """A graph cannot be compiled for a target (unsupported op, unregistered custom op, ...)."""


class GraphcWarning(UserWarning):
    """Base class of the warnings graphc gives (warnings.warn). `cli`: the same advice in command-line
    words; the CLI prints it as one `graphc: warning: ...` line on stderr."""

    def __init__(self, message: str, cli: str | None = None):
        super().__init__(message)
        self.cli = message if cli is None else cli


class EraWarning(GraphcWarning):
    """A ggml graph export fits several ggml eras that read it differently: the newest reading was taken
    (pass era=<commit> to pick one, strict=True to refuse)."""
