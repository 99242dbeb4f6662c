"""The shape-string grammar: it accepts what torch.export writes and refuses everything else.

The accepted side is taken from real ``torch.export.export(..., dynamic_shapes=...)`` +
``torch.export.save`` archives (``expr_str``, ``range_constraints`` keys, ``guards_code``),
plus the ``str()`` forms older torch wrote; the refused side is code, attribute access,
calls outside the allow-list, floats, huge literals, non-ASCII digits, deep nesting and
long strings.
"""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any, cast

import pytest
import sympy
import torch
from torch import nn
from torch.export import Dim
from torch.utils._sympy import functions as torch_sympy

from engine.errors import UnsafeArchiveError
from engine.io.importers._sym_expr import (
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_LENGTH,
    check_guard,
    check_sym_expr,
)

AUTO = Dim.AUTO


class _Cat(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, y], 0)


class _Heads(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        return x.view(b, s, 4, d // 4).transpose(1, 2).reshape(b * 4, s, d // 4)


class _Half(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[: x.shape[0] // 2] + 1


class _Shapes(nn.Module):
    """Max, Pow, Mod, PythonMod and a negated FloorDiv (ceil division) of one dim."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = x.shape[0]
        return (
            torch.zeros(max(n, y.shape[0])),
            torch.zeros(n**2),
            torch.zeros(n % 3 + 1),
            nn.functional.pad(x, (0, (-n) % 8)),
            torch.zeros(-(-n // 3)),
        )


class _Unbacked(nn.Module):
    """Data-dependent size: unbacked ``u0`` with Equality/Unequality/comparisons/Or."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = cast(int, x.sum().to(torch.int64).item())
        torch._check(n != 3)  # type: ignore[no-untyped-call]
        torch._check((n > 1) | (n < -1))  # type: ignore[no-untyped-call]
        return torch.zeros(n)


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(self.conv(x), 2, ceil_mode=True)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.attn(x, x, x)[0])


_EXPORTS: dict[str, tuple[nn.Module, tuple[torch.Tensor, ...], Any]] = {
    "cat_batch": (
        _Cat(),
        (torch.randn(4, 3), torch.randn(5, 3)),
        ({0: Dim("batch", min=2, max=64)}, {0: Dim("other")}),
    ),
    "view_heads": (_Heads(), (torch.randn(2, 5, 16),), ({0: AUTO, 1: AUTO, 2: AUTO},)),
    "half": (_Half(), (torch.randn(8, 3),), ({0: AUTO},)),
    "shapes": (_Shapes(), (torch.randn(5, 10), torch.randn(4)), ({0: AUTO}, {0: AUTO})),
    "unbacked": (_Unbacked(), (torch.ones(4),), None),
    "conv": (_Conv().eval(), (torch.randn(2, 3, 19, 19),), ({0: AUTO, 2: AUTO, 3: AUTO},)),
    "attention": (_Attention().eval(), (torch.randn(2, 7, 16),), ({0: AUTO, 1: AUTO},)),
}


@functools.cache
def _exported(name: str) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """The program and its ``models/model.json`` as ``torch.export.save`` writes it."""
    model, args, dynamic_shapes = _EXPORTS[name]
    program = torch.export.export(model, args, dynamic_shapes=dynamic_shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    with zipfile.ZipFile(buffer) as archive:
        member = next(n for n in archive.namelist() if n.endswith("models/model.json"))
        return program, json.loads(archive.read(member))


def _expr_strs(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from [value] if key == "expr_str" else _expr_strs(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _expr_strs(value)


def _str_forms(program: torch.export.ExportedProgram) -> set[str]:
    """``str()`` of every symbolic size and scalar: the form torch < 2.8 wrote to expr_str."""
    forms = set()
    for node in program.graph.nodes:
        val = node.meta.get("val")
        for v in val if isinstance(val, (list, tuple)) else [val]:
            sizes = [*v.shape, *v.stride()] if isinstance(v, torch.Tensor) else [v]
            forms |= {
                str(s.node.expr) for s in sizes if isinstance(s, torch.SymInt | torch.SymBool)
            }
    return forms


@pytest.mark.parametrize("name", _EXPORTS)
def test_every_string_of_a_real_dynamic_export_is_accepted(name: str) -> None:
    program, doc = _exported(name)
    exprs = set(_expr_strs(doc))
    assert exprs, "the export has no symbolic shapes"
    for expr in exprs | set(doc["range_constraints"]) | _str_forms(program):
        check_sym_expr(expr)
    for guard in doc["guards_code"]:
        check_guard(guard)


def test_the_real_exports_cover_the_sympy_names_torch_writes() -> None:
    written = set()
    for name in _EXPORTS:
        for expr in _expr_strs(_exported(name)[1]):
            written |= set(re.findall(r"([A-Za-z]+)\(", expr))
    assert written >= {
        "Symbol",
        "Integer",
        "Add",
        "Mul",
        "Pow",
        "FloorDiv",
        "Max",
        "Min",
        "Mod",
        "PythonMod",
        "Equality",
        "Unequality",
        "GreaterThan",
        "StrictGreaterThan",
        "StrictLessThan",
        "Or",
    }
    guards = [g for name in _EXPORTS for g in _exported(name)[1]["guards_code"]]
    assert any("max(" in g for g in guards) and any("//" in g for g in guards)


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Symbol('u0', integer=True)",
        "Symbol('s0', integer=True, nonnegative=True, real=True)",
        "Mul(Integer(2), Symbol('s77', positive=True, integer=True))",
        "Add(Symbol('s0', positive=True, integer=True), Integer(-1))",
        "Pow(Symbol('s27', positive=True, integer=True), Integer(2))",
        "CleanDiv(Symbol('s0', integer=True), Integer(2))",
        "CeilDiv(Symbol('s0', integer=True), 2)",
        "And(LessThan(Symbol('u0', integer=True), Integer(3)), Not(Eq(u0, 1)))",
        "s0*2",
        "((s0 + 1)//2)",
        "Mod(s0, 2)",
        "Max(1, s0)",
        "-(((-s77)//3))",
        "s77**2",
        "(u0 > 1) | (u0 + 1 < 0)",
        "Ne(u0, 3)",
        "u0 >= 0",
        "4*s83",
        "0",
        "9" * MAX_DIGITS,
        "(" * MAX_DEPTH + "s0" + ")" * MAX_DEPTH,
        "s0" + " " * (MAX_LENGTH - 2),
    ],
)
def test_accepted_strings_are_what_sympy_reads_with_torchs_names(expr: str) -> None:
    check_sym_expr(expr)
    names = ("FloorDiv", "Mod", "PythonMod", "CleanDiv", "CeilDiv")
    sympy.sympify(expr, locals={n: getattr(torch_sympy, n) for n in names})


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("__import__('os')", "'_'"),
        ("__import__('os').system('id')", "'_'"),
        ("s0.func", "'.'"),
        ("Symbol('s0').__class__", "'.'"),
        ("Integer(2).__class__.__mro__", "'.'"),
        ("s0[0]", "'\\['"),
        ("lambda: 0", "':'"),
        ("exec('1')", "call not allowed: 'exec'"),
        ("open('/etc/passwd')", "call not allowed: 'open'"),
        ("eval(s0)", "call not allowed"),
        ("getattr(s0, s1)", "call not allowed"),
        ("Function(s0)", "call not allowed"),
        ("TruncToInt(s0)", "call not allowed"),
        ("ToFloat(Symbol('s0', integer=True))", "call not allowed"),
        ("IntTrueDiv(Symbol('s0', integer=True), Integer(2))", "call not allowed"),
        ("Float('1.5', precision=53)", "call not allowed: 'Float'"),
        ("1.5", "'.'"),
        ("1e5", "unexpected token 'e5'"),
        ("s0/2", "'/'"),
        ("s0 if s1 else s2", "unexpected token 'if'"),
        ("s0; s1", "';'"),
        ("s0\n+ 1", "'\\\\n'"),
        ("Symbol('s0', evaluate=True)", "keyword not allowed"),
        ("Symbol('s0', positive=s1)", "True or False"),
        ("Symbol('s0', positive=True, positive=True)", "keyword not allowed"),
        ("Symbol('os')", "quoted name"),
        ("Symbol('s0\\')", "character .'. at offset 7"),
        ('Symbol("s0")', "'\"'"),
        ("Symbol(s0)", "quoted name"),
        ("Integer(s0)", "expected an integer"),
        ("Add(s0)", "at least 2"),
        ("Not(s0, s1)", "takes 1"),
        ("s0 < s1 < s2", "chained"),
        ("Pow(s0, Integer(65))", "larger than 64"),
        ("s0**s1", "expected an integer"),
        ("Pow(Pow(s0, 2), 2)", "power of a power"),
        ("(s0**2)**2", "power of a power"),
        ("True", "name not allowed"),
        ("x", "name not allowed"),
        ("S0", "name not allowed"),
        ("'s0'", "unexpected token"),
        ("", "empty"),
        ("s0 +", "ends too early"),
        ("(s0", r"expected '\)'"),
        ("1" * (MAX_DIGITS + 1), "digits"),
        ("007", "leading zeros"),
        ("\u0661", "non-ASCII"),  # ARABIC-INDIC DIGIT ONE: a \d match
        ("s\u0667", "non-ASCII"),
        ("\uff11", "non-ASCII"),  # FULLWIDTH DIGIT ONE
        ("(" * (MAX_DEPTH + 1) + "s0" + ")" * (MAX_DEPTH + 1), "deeper than"),
        ("-" * (MAX_DEPTH + 1) + "s0", "deeper than"),
        ("s0" + " " * (MAX_LENGTH - 1), "characters long"),
        ("L['x'].size()[0]", "unexpected token"),
    ],
)
def test_refused_strings_say_why(expr: str, reason: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=reason):
        check_sym_expr(expr)


@pytest.mark.parametrize("value", [["__import__('os')"], 7, None, {"expr": "s0"}])
def test_non_strings_are_refused(value: Any) -> None:
    with pytest.raises(UnsafeArchiveError, match="expected a string"):
        check_sym_expr(value)


@pytest.mark.parametrize(
    "guard",
    [
        "L['x'].size()[2] != max(1, L['x'].size()[2] // 4)",
        "L['d']['a'][0].size()[0] == L['d']['b'].size()[0]",
        "(-8) + L['x'].size()[0] < 2",
        "L['x'].stride()[0] == 1",
        "L['n'] >= 2",
    ],
)
def test_guards_accept_the_python_torch_writes(guard: str) -> None:
    check_guard(guard)


@pytest.mark.parametrize(
    "guard",
    [
        "L['x'].size()[0] == __import__('os').system('id')",
        "L['x'].__class__",
        "L['x'].size()[0] == L['x'].numpy()",
        "L['__builtins__']",
        "L[0]",
        "s0 > 1",
        "Max(1, L['x'].size()[0])",
        "max(L['x'])",
        "exec('1')",
    ],
)
def test_guards_refuse_anything_else(guard: str) -> None:
    with pytest.raises(UnsafeArchiveError):
        check_guard(guard)
