"""The language-independent half of printing an expression body: walking the DAG, binding shared
subexpressions to locals once, in order. A language supplies how each node kind is written (hooks)."""
from __future__ import annotations

from .expr import Bin, Call, Const, Expr, Index, Neg, Select, Var, postorder, shared

CONDITION_OPS = ("<", "<=", ">", ">=", "==", "!=", "&&", "||")


def is_condition(e: Expr) -> bool:
    return isinstance(e, Bin) and e.op in CONDITION_OPS


class ExprPrinter:
    # --- hooks ---------------------------------------------------------------------------------------
    def literal(self, c: Const) -> str:
        raise NotImplementedError

    def call(self, fn: str, args: list[str]) -> str:
        raise NotImplementedError

    def binary(self, op: str, a: str, b: str) -> str:
        return f"({a} {op} {b})"

    def select(self, cond: str, a: str, b: str) -> str:
        raise NotImplementedError

    def bind(self, name: str, value: str, condition: bool) -> str:
        """The statement that gives a local its value (a body value or a shared subexpression)."""
        raise NotImplementedError

    # --- walking -------------------------------------------------------------------------------------
    def expr(self, e: Expr, names: dict[int, str]) -> str:
        if id(e) in names:
            return names[id(e)]
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Const):
            return self.literal(e)
        if isinstance(e, Index):
            return f"i{e.dim}"
        if isinstance(e, Call):
            return self.call(e.fn, [self.expr(a, names) for a in e.args])
        if isinstance(e, Bin):
            return self.binary(e.op, self.expr(e.a, names), self.expr(e.b, names))
        if isinstance(e, Neg):
            return f"(-{self.expr(e.a, names)})"
        if isinstance(e, Select):
            return self.select(self.expr(e.cond, names), self.expr(e.a, names), self.expr(e.b, names))
        raise TypeError(f"not an expression: {e!r}")

    def body(self, body: list[tuple[str, Expr]]) -> list[str]:
        """One statement per body value; a subexpression used twice is computed once into t<k>."""
        many = shared([e for _, e in body])
        names: dict[int, str] = {}
        lines = []
        for v, e in body:
            order: list[Expr] = []
            postorder(e, order, set(names))
            for sub in order:
                if id(sub) in many and id(sub) not in names and sub is not e:
                    t = f"t{len(names)}"
                    lines.append(self.bind(t, self.expr(sub, names), is_condition(sub)))
                    names[id(sub)] = t
            lines.append(self.bind(v, self.expr(e, names), False))
        return lines
