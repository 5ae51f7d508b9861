"""The expression IR of a fused elementwise body: what every compiled target's printer renders.

An expression is a small DAG of immutable nodes over f32 scalars (and the integer loop indices):
  Var(name)           a value computed earlier in the body or loaded from a tensor (synthesised names)
  Const(v, "f32")     an f32 constant (rounded to f32 when made); Const(n, "i64") an integer constant
  Index(d)            the iteration index along dim d (0 = innermost), an integer
  Call(fn, args)      a math function from MATH (each printer maps the names to its language)
  Bin(op, a, b)       + - * / and comparisons < <= > >= == != and logical && || (C's meaning)
  Neg(a)              -a
  Select(c, a, b)     c ? a : b
Python operators build nodes (x * 2.0, -x, x > y); plain numbers become f32 constants. Operation order
is exactly as written: printers parenthesise every node and never reassociate, so a formula written in
ggml's order computes ggml's bits on a target built with -ffp-contract=off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

# math functions of the expression IR: name -> arity. Semantics are fixed here, once:
#   exp log sqrt tanh erf expm1 fabs : the f32 libm functions (expf, logf, ...)
#   sin cos                          : computed in double and rounded to f32, as ggml does
#   fmin fmax                        : C99 fminf/fmaxf (a NaN operand yields the other)
#   f16_round                        : round to f16 (nearest even) and back, ggml's GGML_FP32_TO_FP16
MATH = {"exp": 1, "log": 1, "sqrt": 1, "tanh": 1, "erf": 1, "expm1": 1, "fabs": 1, "sin": 1, "cos": 1,
        "fmin": 2, "fmax": 2, "f16_round": 1}
BINARY = ("+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "&&", "||")


class Expr:
    """Base of every node; operators build new nodes."""
    __slots__ = ()

    def __add__(self, o): return Bin("+", self, lift(o))
    def __radd__(self, o): return Bin("+", lift(o), self)
    def __sub__(self, o): return Bin("-", self, lift(o))
    def __rsub__(self, o): return Bin("-", lift(o), self)
    def __mul__(self, o): return Bin("*", self, lift(o))
    def __rmul__(self, o): return Bin("*", lift(o), self)
    def __truediv__(self, o): return Bin("/", self, lift(o))
    def __rtruediv__(self, o): return Bin("/", lift(o), self)
    def __neg__(self): return Neg(self)
    def __lt__(self, o): return Bin("<", self, lift(o))
    def __le__(self, o): return Bin("<=", self, lift(o))
    def __gt__(self, o): return Bin(">", self, lift(o))
    def __ge__(self, o): return Bin(">=", self, lift(o))
    def __or__(self, o): return Bin("||", self, lift(o))          # logical, on conditions
    def __and__(self, o): return Bin("&&", self, lift(o))

    def eq(self, o) -> "Bin": return Bin("==", self, lift(o))      # == stays identity (nodes are dict keys)
    def ne(self, o) -> "Bin": return Bin("!=", self, lift(o))

    __hash__ = object.__hash__
    __eq__ = object.__eq__


@dataclass(frozen=True, eq=False)
class Var(Expr):
    name: str


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: Union[float, int]
    dtype: str = "f32"          # f32 | i64

    def __post_init__(self):
        if self.dtype == "f32":
            object.__setattr__(self, "value", float(np.float32(self.value)))
        elif self.dtype == "i64":
            object.__setattr__(self, "value", int(self.value))
        else:
            raise ValueError(f"Const dtype {self.dtype!r}")


@dataclass(frozen=True, eq=False)
class Index(Expr):
    dim: int


@dataclass(frozen=True, eq=False)
class Call(Expr):
    fn: str
    args: tuple

    def __post_init__(self):
        if MATH.get(self.fn) != len(self.args):
            raise ValueError(f"{self.fn} is not a math function of {len(self.args)} arguments")


@dataclass(frozen=True, eq=False)
class Bin(Expr):
    op: str
    a: Expr
    b: Expr

    def __post_init__(self):
        if self.op not in BINARY:
            raise ValueError(f"unknown binary op {self.op!r}")


@dataclass(frozen=True, eq=False)
class Neg(Expr):
    a: Expr


@dataclass(frozen=True, eq=False)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr


def lift(v) -> Expr:
    if isinstance(v, Expr):
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("booleans are not expression constants")
    if isinstance(v, (int, float, np.floating, np.integer)):
        return Const(float(v))
    raise TypeError(f"cannot make an expression of {type(v).__name__}")


def i64(n: int) -> Const:
    return Const(n, "i64")


def call(fn: str, *args) -> Call:
    return Call(fn, tuple(lift(a) for a in args))


def select(cond: Expr, a, b) -> Select:
    return Select(cond, lift(a), lift(b))


def children(e: Expr) -> tuple:
    if isinstance(e, Call):
        return e.args
    if isinstance(e, Bin):
        return (e.a, e.b)
    if isinstance(e, Neg):
        return (e.a,)
    if isinstance(e, Select):
        return (e.cond, e.a, e.b)
    return ()


def shared(roots: "list[Expr]") -> set[int]:
    """ids of the compound nodes reached more than once from `roots` (a printer binds them to a local
    once instead of printing, and computing, them twice)."""
    seen: dict[int, int] = {}
    stack = list(roots)
    while stack:
        e = stack.pop()
        if isinstance(e, (Var, Const, Index)):
            continue
        seen[id(e)] = seen.get(id(e), 0) + 1
        if seen[id(e)] == 1:
            stack.extend(children(e))
    return {k for k, v in seen.items() if v > 1}


def postorder(e: Expr, out: list, done: set) -> None:
    """Compound nodes of e, children before parents, each once."""
    if id(e) in done or isinstance(e, (Var, Const, Index)):
        return
    done.add(id(e))
    for c in children(e):
        postorder(c, out, done)
    out.append(e)
