"""A strict grammar for the symbolic shape strings of a ``.pt2`` archive, checked, never run.

Two kinds of strings in ``models/*.json`` reach Python's evaluator:

- every ``expr_str`` (a symbolic size, stride or shape condition) is passed by
  ``torch.export.load`` to ``sympy.sympify``, which runs it with ``eval``;
- every ``guards_code`` entry is run with ``exec`` by ``ExportedProgram.module()``
  (and so by ``run_decompositions()``) when the program has example inputs.

:func:`check_sym_expr` and :func:`check_guard` accept exactly the integer shape
arithmetic torch writes there and refuse everything else, by tokenizing (ASCII
only) and parsing (recursive descent); nothing is evaluated. The grammar, with
Python's precedence::

    expr   := disj [CMP disj]                  CMP: == != < <= > >=  (no chains)
    disj   := conj ("|" conj)*
    conj   := sum ("&" sum)*
    sum    := term (("+" | "-") term)*
    term   := unary (("*" | "//" | "%") unary)*
    unary  := ("-" | "~") unary | power
    power  := atom ["**" INT]                  INT <= 64, base without a power
    atom   := INT | "(" expr ")" | ...         (per kind, below)
    INT    := "0" | [1-9][0-9]{0,18}           (at most 19 digits)

In an ``expr_str`` (torch >= 2.8 writes ``sympy.srepr``, older torch ``str``)::

    atom   := INT | NAME | "(" expr ")"
            | FUNC "(" expr ("," expr)* ")"                     arity per FUNC
            | "Symbol" "(" "'" NAME "'" ("," ASSUME "=" ("True" | "False"))* ")"
            | "Integer" "(" ["-"] INT ")"
            | "Pow" "(" expr "," (INT | "Integer" "(" INT ")") ")"
    NAME   := [a-z][0-9]{1,9}                  s0, s77, u3 (no sympy or Python name)
    ASSUME := positive | integer | nonnegative | real          (each at most once)
    FUNC   := Add Mul Max Min And Or (2+ args) | Not (1)
            | Mod PythonMod FloorDiv CleanDiv CeilDiv (2)
            | Equality Unequality StrictLessThan LessThan StrictGreaterThan GreaterThan
              Eq Ne (2)

so ``Mul(Integer(2), Symbol('s77', positive=True, integer=True))`` and
``((s0 + 1)//2)`` pass. Floats (``Float('1.5', precision=53)``, ``ToFloat``,
``IntTrueDiv``, ``FloatPow``, which torch writes for float shape arithmetic such
as ``interpolate(scale_factor=1.5)``) are refused: MPQ takes integer shapes.

In a ``guards_code`` entry (Python source, e.g. ``L['x'].size()[2] != max(1,
L['x'].size()[2] // 4)``)::

    atom   := INT | SOURCE | ("max" | "min") "(" expr ("," expr)+ ")" | "(" expr ")"
    SOURCE := "L[" KEY "]" ("[" (KEY | [0-9]{1,4}) "]"){0,8}
              [".size()[" D "]" | ".stride()[" D "]" | ".storage_offset()"]
    KEY    := "'" [A-Za-z][A-Za-z0-9_]{0,63} "'"               D := [0-9]{1,2}

Bounds: at most :data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels of
nesting (parentheses, calls, unary operators); a power's base may not hold another
power, so no string makes sympy build an astronomically large integer.

Size: one file (over 300 lines) because it is one grammar: the tokenizer, the
recursive-descent parser and the bounds are read together when checking that no
string can reach sympy unscreened; split, the bounds would sit apart from the rules
they bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NoReturn

from engine.errors import UnsafeArchiveError

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "MAX_LENGTH", "check_guard", "check_sym_expr"]

MAX_LENGTH = 20_000
"""Longest accepted string; real exports stay under a few thousand characters."""
MAX_DEPTH = 64
"""Deepest accepted nesting; Python's own parser stops at 200 parentheses."""
MAX_DIGITS = 19
"""Longest integer literal (int64 values have at most 19 digits)."""
_MAX_EXPONENT = 64

_KEY = r"'[A-Za-z][A-Za-z0-9_]{0,63}'"
_TOKEN = re.compile(
    r"(?P<space> +)"
    rf"|(?P<source>L\[{_KEY}\](?:\[(?:{_KEY}|[0-9]{{1,4}})\]){{0,8}}"
    r"(?:\.size\(\)\[[0-9]{1,2}\]|\.stride\(\)\[[0-9]{1,2}\]|\.storage_offset\(\))?)"
    r"|(?P<int>[0-9]+)"
    r"|(?P<name>[A-Za-z][A-Za-z0-9]*)"
    r"|(?P<quoted>'[^'\\]{0,64}')"
    r"|(?P<op>//|\*\*|==|!=|<=|>=|[-+*%<>()|&~,=])",
    re.ASCII,
)
_SYMBOL_NAME = re.compile(r"[a-z][0-9]{1,9}", re.ASCII)
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_BINARY = {"|": 1, "&": 2, "+": 3, "-": 3, "*": 4, "//": 4, "%": 4}
"""Binary operators and their precedence (Python's; comparisons bind loosest)."""
_ASSUMPTIONS = frozenset({"positive", "integer", "nonnegative", "real"})
_MANY = 1_000_000
_SYMPY_CALLS: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("Add", "Mul", "Max", "Min", "And", "Or"), (2, _MANY)),
    "Not": (1, 1),
    **dict.fromkeys(("Mod", "PythonMod", "FloorDiv", "CleanDiv", "CeilDiv"), (2, 2)),
    **dict.fromkeys(
        (
            "Equality",
            "Unequality",
            "StrictLessThan",
            "LessThan",
            "StrictGreaterThan",
            "GreaterThan",
            "Eq",
            "Ne",
        ),
        (2, 2),
    ),
}
"""Allowed sympy / ``torch.utils._sympy.functions`` calls and their (min, max) arity."""
_GUARD_CALLS: dict[str, tuple[int, int]] = {"max": (2, _MANY), "min": (2, _MANY)}

_Kind = Literal["expr", "guard"]


def check_sym_expr(text: str) -> None:
    """Raise unless ``text`` is a symbolic shape expression torch writes (module grammar).

    Raises:
        UnsafeArchiveError: ``text`` is outside the grammar; the message says where.
    """
    _Parser(text, "expr").parse()


def check_guard(text: str) -> None:
    """Raise unless ``text`` is a shape guard torch writes in ``guards_code`` (module grammar).

    Raises:
        UnsafeArchiveError: ``text`` is outside the grammar; the message says where.
    """
    _Parser(text, "guard").parse()


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    if not isinstance(text, str):
        raise UnsafeArchiveError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise UnsafeArchiveError(f"it is {len(text)} characters long (limit {MAX_LENGTH})")
    if not text.isascii():
        raise UnsafeArchiveError("it contains non-ASCII characters")
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UnsafeArchiveError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens; each ``_rule`` returns whether it holds a power."""

    def __init__(self, text: str, kind: _Kind) -> None:
        self.tokens = _tokenize(text)
        self.kind = kind
        self.calls = _SYMPY_CALLS if kind == "expr" else _GUARD_CALLS
        self.i = 0
        self.depth = 0

    def parse(self) -> None:
        if not self.tokens:
            raise UnsafeArchiveError("it is empty")
        try:
            self._expr()
        except RecursionError:  # MAX_DEPTH keeps far from it; belt and braces
            raise UnsafeArchiveError("it is nested too deeply") from None
        if self.i != len(self.tokens):
            self._fail("unexpected token")

    # -- token helpers -------------------------------------------------------------------

    def _peek(self, offset: int = 0) -> _Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def _at(self, text: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind in ("op", "name") and tok.text == text

    def _take(self, text: str) -> None:
        if not self._at(text):
            self._fail(f"expected {text!r}")
        self.i += 1

    def _next(self) -> _Token:
        tok = self._peek()
        if tok is None:
            raise UnsafeArchiveError("it ends too early")
        self.i += 1
        return tok

    def _fail(self, what: str) -> NoReturn:
        tok = self._peek()
        where = "at the end" if tok is None else f"{tok.text[:40]!r} at offset {tok.pos}"
        raise UnsafeArchiveError(f"{what} {where}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self._fail(f"nested deeper than {MAX_DEPTH} levels:")

    def _int(self, tok: _Token) -> int:
        if tok.kind != "int":
            self.i -= 1
            self._fail("expected an integer:")
        digits = tok.text
        if len(digits) > MAX_DIGITS or (len(digits) > 1 and digits[0] == "0"):
            raise UnsafeArchiveError(
                f"integer literal {digits[:40]!r} at offset {tok.pos} has leading zeros or more "
                f"than {MAX_DIGITS} digits"
            )
        return int(digits)

    # -- grammar -------------------------------------------------------------------------

    def _expr(self) -> bool:
        has_pow = self._binary(1)
        if self._at_comparison():
            self.i += 1
            has_pow |= self._binary(1)
            if self._at_comparison():
                self._fail("chained comparison:")
        return has_pow

    def _at_comparison(self) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "op" and tok.text in _COMPARISONS

    def _binary(self, min_precedence: int) -> bool:
        """Precedence climbing over :data:`_BINARY` (one stack frame per level, not five)."""
        has_pow = self._unary()
        while True:
            tok = self._peek()
            precedence = _BINARY.get(tok.text, 0) if tok is not None and tok.kind == "op" else 0
            if precedence < min_precedence:
                return has_pow
            self.i += 1
            has_pow |= self._binary(precedence + 1)

    def _unary(self) -> bool:
        if self._at("-") or self._at("~"):
            self.i += 1
            self._enter()
            has_pow = self._unary()
            self.depth -= 1
            return has_pow
        return self._power()

    def _power(self) -> bool:
        has_pow = self._atom()
        if self._at("**"):
            self._pow_base(has_pow)
            self.i += 1
            self._exponent(self._next())
            return True
        return has_pow

    def _pow_base(self, has_pow: bool) -> None:
        if has_pow:
            self._fail("a power of a power (unbounded integer growth):")

    def _exponent(self, tok: _Token) -> None:
        if self._int(tok) > _MAX_EXPONENT:
            raise UnsafeArchiveError(
                f"exponent {tok.text!r} at offset {tok.pos} is larger than {_MAX_EXPONENT}"
            )

    def _atom(self) -> bool:
        tok = self._next()
        if tok.kind == "int":
            self._int(tok)
            return False
        if tok.kind == "op" and tok.text == "(":
            self._enter()
            has_pow = self._expr()
            self._take(")")
            self.depth -= 1
            return has_pow
        if tok.kind == "source" and self.kind == "guard":
            return False
        if tok.kind == "name":
            if self._at("("):
                return self._call(tok)
            if self.kind == "expr" and _SYMBOL_NAME.fullmatch(tok.text):
                return False
        self.i -= 1
        self._fail("unexpected token" if tok.kind != "name" else "name not allowed:")

    def _call(self, func: _Token) -> bool:
        name = func.text
        if self.kind == "expr" and name in ("Symbol", "Integer", "Pow"):
            self.i += 1
            self._enter()
            has_pow = {"Symbol": self._symbol, "Integer": self._integer, "Pow": self._pow}[name]()
            self._take(")")
            self.depth -= 1
            return has_pow
        if name not in self.calls:
            self.i -= 1
            self._fail("call not allowed:")
        low, high = self.calls[name]
        self.i += 1
        self._enter()
        has_pow, count = self._expr(), 1
        while self._at(","):
            self.i += 1
            has_pow |= self._expr()
            count += 1
        if not low <= count <= high:
            takes = f"at least {low}" if high == _MANY else str(low)
            self._fail(f"{name} takes {takes} arguments, not {count}:")
        self._take(")")
        self.depth -= 1
        return has_pow

    def _symbol(self) -> bool:
        tok = self._next()
        if tok.kind != "quoted" or not _SYMBOL_NAME.fullmatch(tok.text[1:-1]):
            self.i -= 1
            self._fail("Symbol needs a quoted name such as 's0':")
        seen: set[str] = set()
        while self._at(","):
            self.i += 1
            key = self._next()
            if key.kind != "name" or key.text not in _ASSUMPTIONS or key.text in seen:
                self.i -= 1
                self._fail("Symbol keyword not allowed:")
            seen.add(key.text)
            self._take("=")
            if not (self._at("True") or self._at("False")):
                self._fail("Symbol keywords take True or False:")
            self.i += 1
        return False

    def _integer(self) -> bool:
        if self._at("-"):
            self.i += 1
        self._int(self._next())
        return False

    def _pow(self) -> bool:
        self._pow_base(self._expr())
        self._take(",")
        if self._at("Integer"):
            self.i += 1
            self._take("(")
            self._exponent(self._next())
            self._take(")")
        else:
            self._exponent(self._next())
        return True
