"""A small, safe parser for matrix expressions typed on the command line.

No ``eval`` and no ``sympify`` of the input: the text is tokenized by a regular
expression and parsed by recursive descent into the expression layer
(:mod:`detequiv.derivations.expressions`). Matrices must be declared (their kind and
shape); every other name is a positive scalar symbol.

Grammar (``*`` between two matrices is the matrix product, like ``@``)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/" | "@") unary)*
    unary   := "-" unary | power
    power   := postfix (("^" | "**") exponent)?
    exponent:= NUMBER | "T" | "(" NUMBER "/" NUMBER ")" | "(" "-"? NUMBER ")" | NAME
    postfix := atom (".T" | "'")*
    atom    := NUMBER | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"

Functions: ``resolvent(M, lam)`` for :math:`(M+\\lambda I)^{-1}`, ``tr(M)`` (also
``trace``) and ``sqrt(M)``. A syntax error points at its column:

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian
>>> from detequiv.derivations.parser import parse_expression
>>> D, P = sp.symbols("D P", positive=True)
>>> mats = {"Sigma": Deterministic("Sigma", D), "X": Gaussian("X", (P, D))}
>>> e = parse_expression("lam * resolvent(Sigma^(1/2) X' X Sigma^(1/2) / P, lam)", mats)
Traceback (most recent call last):
...
detequiv.derivations.parser.ParseError: column 29: expected ')' closing resolvent(, found 'X'; write * or @ between factors
  lam * resolvent(Sigma^(1/2) X' X Sigma^(1/2) / P, lam)
                              ^
>>> e = parse_expression("lam * resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)", mats)
>>> print(e)
lam*(lam*I + 1/P*Sigma**(1/2)*X.T*X*Sigma**(1/2))**(-1)
"""  # noqa: E501

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import sympy as sp

from ..errors import DetEquivError, InvalidArgument
from .expressions import Deterministic, MatrixExpr, Trace, resolvent, trace

__all__ = ["ParseError", "parse_expression", "tokenize", "Token"]


class ParseError(DetEquivError, ValueError):
    """The expression text is not well formed; the message shows the column with a caret."""

    def __init__(self, text: str, pos: int, message: str) -> None:
        self.text, self.pos = text, pos
        super().__init__(f"column {pos + 1}: {message}\n  {text}\n  {' ' * pos}^")


@dataclass(frozen=True, slots=True)
class Token:
    """A token: kind (``num``, ``name``, ``op``, ``end``), its text and start column."""

    kind: str
    text: str
    pos: int


_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<num>\d+(?:\.\d+)?|\.\d+)|(?P<name>[A-Za-z][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|\.T\b|[-+*/@^(),'])"
)
_FUNCTIONS = ("resolvent", "tr", "trace", "sqrt")
_MAX_LENGTH = 2000


def tokenize(text: str) -> list[Token]:
    """Split the text into tokens; an unexpected character raises :class:`ParseError`."""
    if not isinstance(text, str):
        raise InvalidArgument(f"expression must be a string, got {type(text).__name__}")
    if len(text) > _MAX_LENGTH:
        raise ParseError(text[:80], 80, f"expression longer than {_MAX_LENGTH} characters")
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


Value = Any  # a MatrixExpr, a Trace or a sympy scalar (sympy is untyped for mypy)


class _Parser:
    def __init__(self, text: str, matrices: Mapping[str, MatrixExpr], scalar: Callable[[str], sp.Expr]):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.matrices = dict(matrices)
        self.scalar = scalar

    # -- helpers -------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        return ParseError(self.text, (tok or self.tok).pos, message)

    def accept(self, *ops: str) -> Token | None:
        if self.tok.kind == "op" and self.tok.text in ops:
            self.i += 1
            return self.tokens[self.i - 1]
        return None

    def expect(self, op: str, what: str) -> Token:
        tok = self.accept(op)
        if tok is None:
            found = repr(self.tok.text) if self.tok.kind != "end" else "the end"
            hint = "; write * or @ between factors" if self.tok.kind in ("name", "num") else ""
            raise self.error(f"expected {what}, found {found}{hint}")
        return tok

    def apply(self, tok: Token, fn: Callable[[], Value]) -> Value:
        """Run a semantic step; its errors are reported at the operator's column."""
        try:
            return fn()
        except ParseError:
            raise
        except DetEquivError as exc:
            raise self.error(str(exc), tok) from None

    # -- grammar ---------------------------------------------------------------
    def parse(self) -> Value:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        value = self.expr()
        if self.tok.kind != "end":
            hint = "; write * or @ between factors" if self.tok.kind in ("name", "num") else ""
            raise self.error(f"expected an operator (+ - * / @) or the end, found {self.tok.text!r}{hint}")
        return value

    def expr(self) -> Value:
        value = self.term()
        while (tok := self.accept("+", "-")) is not None:
            rhs = self.term()
            value = self.apply(tok, partial(_add, value, rhs, tok.text == "-"))
        return value

    def term(self) -> Value:
        value = self.unary()
        while (tok := self.accept("*", "/", "@")) is not None:
            rhs = self.unary()
            value = self.apply(tok, partial(_mul, value, rhs, tok.text))
        return value

    def unary(self) -> Value:
        tok = self.accept("-")
        if tok is not None:
            inner = self.unary()
            return self.apply(tok, lambda: _mul(sp.S.NegativeOne, inner, "*"))
        return self.power()

    def power(self) -> Value:
        base = self.postfix()
        tok = self.accept("^", "**")
        if tok is None:
            return base
        exponent = self.exponent()
        return self.apply(tok, lambda: _power(base, exponent))

    def exponent(self) -> sp.Expr | str:
        if self.tok.kind == "name" and self.tok.text == "T":
            self.i += 1
            return "T"
        if self.tok.kind == "num":
            return self.number()
        if self.tok.kind == "name":
            name = self.tok.text
            self.i += 1
            return self.scalar(name)
        self.expect("(", "an exponent (a number, T, (1/2) or a name)")
        sign = -1 if self.accept("-") else 1
        num = self.number()
        if self.accept("/"):
            num = num / self.number()
        self.expect(")", "')' closing the exponent")
        return sign * num

    def number(self) -> sp.Expr:
        tok = self.tok
        if tok.kind != "num":
            raise self.error("expected a number")
        self.i += 1
        return sp.Rational(Fraction(tok.text))

    def postfix(self) -> Value:
        value = self.atom()
        while (tok := self.accept(".T", "'")) is not None:
            value = self.apply(tok, partial(_transpose, value))
        return value

    def atom(self) -> Value:
        tok = self.tok
        if tok.kind == "num":
            return self.number()
        if self.accept("("):
            value = self.expr()
            self.expect(")", "')'")
            return value
        if tok.kind != "name":
            found = repr(tok.text) if tok.kind != "end" else "the end"
            raise self.error(f"expected a number, a name or '(', found {found}")
        self.i += 1
        if self.tok.kind == "op" and self.tok.text == "(":
            if tok.text not in _FUNCTIONS:
                raise self.error(f"unknown function {tok.text!r}; known: {', '.join(_FUNCTIONS)}", tok)
            self.i += 1
            args = [self.expr()]
            while self.accept(","):
                args.append(self.expr())
            self.expect(")", f"')' closing {tok.text}(")
            return self.apply(tok, lambda: _call(tok.text, args))
        if tok.text in self.matrices:
            return self.matrices[tok.text]
        if tok.text in _FUNCTIONS:
            raise self.error(f"{tok.text} is a function; call it as {tok.text}(...)", tok)
        return self.scalar(tok.text)


def _is_scalar(v: Value) -> bool:
    return isinstance(v, sp.Expr) and not isinstance(v, MatrixExpr)


def _add(a: Value, b: Value, minus: bool) -> Value:
    if _is_scalar(a) and _is_scalar(b):
        return a - b if minus else a + b  # type: ignore[operator]
    if isinstance(a, MatrixExpr) and isinstance(b, MatrixExpr):
        return a - b if minus else a + b
    raise InvalidArgument(
        "cannot add a matrix and a scalar (or a trace); for lam + A write resolvent(A, lam), "
        "and add traces only to scalars"
    )


def _mul(a: Value, b: Value, op: str) -> Value:
    if isinstance(a, Trace) or isinstance(b, Trace):
        raise InvalidArgument("a trace can only stand alone here; take tr(...) of the whole product")
    if op == "/":
        if not _is_scalar(b):
            raise InvalidArgument(f"cannot divide by the matrix {b}; divide by scalars only")
        if _is_scalar(a):
            if b == 0:
                raise InvalidArgument("division by zero")
            return a / b  # type: ignore[operator]
        return a / b  # type: ignore[operator]
    # "@" with a scalar operand scales, so that T @ lam*R reads as T (lam R) does in print
    if isinstance(a, MatrixExpr) and isinstance(b, MatrixExpr):
        return a @ b
    return a * b  # type: ignore[operator]


def _power(base: Value, exponent: sp.Expr | str) -> Value:
    if exponent == "T":
        return _transpose(base)
    if _is_scalar(base):
        return base**exponent  # type: ignore[operator]
    if not isinstance(base, MatrixExpr):
        raise InvalidArgument(f"cannot raise {base} to a power")
    e = sp.sympify(exponent)
    if e == sp.Rational(1, 2):
        if not isinstance(base, Deterministic):
            raise InvalidArgument(f"^(1/2) is defined for declared deterministic matrices, not {base}")
        return base.sqrt()
    if e.is_Integer and e >= 1:
        out = base
        for _ in range(int(e) - 1):
            out = out @ base
        return out
    raise InvalidArgument(
        f"matrix power {e} is not supported: use positive integers, ^(1/2) of a deterministic "
        "matrix, ^T, or resolvent(M, lam) for inverses"
    )


def _transpose(v: Value) -> Value:
    if not isinstance(v, MatrixExpr):
        raise InvalidArgument(f"transpose of the scalar {v}: only matrices have a transpose")
    return v.T


def _call(name: str, args: list[Value]) -> Value:
    if name == "resolvent":
        if len(args) != 2:
            raise InvalidArgument(f"resolvent takes (matrix, lam), got {len(args)} arguments")
        m, lam = args
        if not isinstance(m, MatrixExpr) or not _is_scalar(lam):
            raise InvalidArgument("resolvent takes a matrix first and a scalar second: resolvent(A, lam)")
        return resolvent(m, lam)
    if len(args) != 1:
        raise InvalidArgument(f"{name} takes one argument, got {len(args)}")
    (m,) = args
    if not isinstance(m, MatrixExpr):
        raise InvalidArgument(f"{name} needs a matrix argument, got {m}")
    if name in ("tr", "trace"):
        return trace(m)
    if not isinstance(m, Deterministic):
        raise InvalidArgument(f"sqrt is defined for declared deterministic matrices, not {m}")
    return m.sqrt()


def parse_expression(
    text: str,
    matrices: Mapping[str, MatrixExpr],
    *,
    scalars: Mapping[str, sp.Expr] | None = None,
) -> Any:
    """Parse ``text`` into a matrix expression, a trace or a scalar.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"lam * resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)"``.
    matrices : mapping
        Declared matrices by name (``Deterministic``, ``Gaussian``, ``FreeMatrix``).
    scalars : mapping, optional
        Symbols to use for scalar names; any other name becomes
        ``sp.Symbol(name, positive=True)``.

    Raises
    ------
    ParseError
        On a syntax error or an ill-formed operation, with the column marked.
    """
    known = dict(scalars or {})

    def scalar(name: str) -> sp.Expr:
        if name not in known:
            known[name] = sp.Symbol(name, positive=True)
        return known[name]

    for name in matrices:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name in _FUNCTIONS:
            raise InvalidArgument(f"matrix name {name!r} must be an identifier that is not a function name")
    return _Parser(text, matrices, scalar).parse()
