"""Immutable affine expressions and maps over named integer variables.

An expression is ``sum(coeff * var) + const`` with integer coefficients. A map sends a vector of input
variables to a vector of output expressions; maps compose, apply to numpy arrays, and invert when the
linear part is square with an integer inverse (unimodular). Expressions are parsed from text such as
``"p*2 + r"`` or ``"4*t_i + s0 - 1"`` by a small tokenizer, never by ``eval``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["AffineExpr", "AffineMap", "AffineParseError", "parse_affine", "int_inverse"]


class AffineParseError(ValueError):
    """Raised with the character position of the problem; loaders turn it into a SpecError line."""

    def __init__(self, message: str, text: str, pos: int):
        self.text, self.pos, self.reason = text, pos, message
        super().__init__(f"{message} at position {pos} of {text!r}")


@dataclass(frozen=True)
class AffineExpr:
    """``sum(c * v for v, c in terms) + const``; terms sorted by name, zero coefficients dropped."""

    terms: tuple[tuple[str, int], ...] = ()
    const: int = 0

    @staticmethod
    def of(coeffs: Mapping[str, int] | None = None, const: int = 0) -> "AffineExpr":
        items = tuple(sorted((v, int(c)) for v, c in (coeffs or {}).items() if c != 0))
        return AffineExpr(items, int(const))

    @staticmethod
    def var(name: str) -> "AffineExpr":
        return AffineExpr(((name, 1),), 0)

    @property
    def coeffs(self) -> dict[str, int]:
        return dict(self.terms)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.terms)

    def coeff(self, name: str) -> int:
        return self.coeffs.get(name, 0)

    def __add__(self, other: "AffineExpr | int") -> "AffineExpr":
        if isinstance(other, int):
            return AffineExpr(self.terms, self.const + other)
        merged = self.coeffs
        for v, c in other.terms:
            merged[v] = merged.get(v, 0) + c
        return AffineExpr.of(merged, self.const + other.const)

    def scale(self, k: int) -> "AffineExpr":
        return AffineExpr.of({v: c * k for v, c in self.terms}, self.const * k)

    def __sub__(self, other: "AffineExpr | int") -> "AffineExpr":
        return self + (-other if isinstance(other, int) else other.scale(-1))

    def substitute(self, env: Mapping[str, "AffineExpr"]) -> "AffineExpr":
        """Replace variables by expressions; variables missing from ``env`` stay as they are."""
        out = AffineExpr.of({}, self.const)
        for v, c in self.terms:
            out = out + (env[v].scale(c) if v in env else AffineExpr(((v, c),), 0))
        return out

    def evaluate(self, env: Mapping[str, "int | np.ndarray"]):
        total = self.const
        for v, c in self.terms:
            total = total + c * env[v]
        return total

    def __str__(self) -> str:
        parts = []
        for v, c in self.terms:
            term = v if abs(c) == 1 else f"{abs(c)}*{v}"
            parts.append(("- " if c < 0 else "+ ") + term)
        if self.const or not parts:
            parts.append(("- " if self.const < 0 else "+ ") + str(abs(self.const)))
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]


@dataclass(frozen=True)
class AffineMap:
    """Output expressions over named input variables: ``out[r] = exprs[r](inputs)``."""

    inputs: tuple[str, ...]
    exprs: tuple[AffineExpr, ...]
    names: tuple[str, ...] = ()      # optional names of the outputs (e.g. loop dimensions)

    def __post_init__(self):
        extra = {v for e in self.exprs for v in e.variables} - set(self.inputs)
        if extra:
            raise ValueError(f"AffineMap expressions use variables {sorted(extra)!r} that are not inputs {self.inputs!r}")
        if self.names and len(self.names) != len(self.exprs):
            raise ValueError("AffineMap names must match the number of expressions")

    @staticmethod
    def from_matrix(matrix, offset=None, inputs: Sequence[str] = (), names: Sequence[str] = ()) -> "AffineMap":
        mat = np.asarray(matrix, dtype=np.int64)
        if mat.ndim != 2:
            raise ValueError("matrix must be 2-D")
        ins = tuple(inputs) or tuple(f"x{c}" for c in range(mat.shape[1]))
        off = np.zeros(mat.shape[0], dtype=np.int64) if offset is None else np.asarray(offset, dtype=np.int64)
        exprs = tuple(AffineExpr.of({ins[c]: int(mat[r, c]) for c in range(mat.shape[1])}, int(off[r]))
                      for r in range(mat.shape[0]))
        return AffineMap(ins, exprs, tuple(names))

    @property
    def matrix(self) -> np.ndarray:
        mat = np.zeros((len(self.exprs), len(self.inputs)), dtype=np.int64)
        for r, e in enumerate(self.exprs):
            for v, c in e.terms:
                mat[r, self.inputs.index(v)] = c
        return mat

    @property
    def offset(self) -> np.ndarray:
        return np.array([e.const for e in self.exprs], dtype=np.int64)

    def apply(self, points) -> np.ndarray:
        """Apply to one point (shape [n_in]) or many (shape [..., n_in]); integer numpy result."""
        pts = np.asarray(points, dtype=np.int64)
        return pts @ self.matrix.T + self.offset

    def compose(self, inner: "AffineMap") -> "AffineMap":
        """``self ∘ inner``: inner's outputs are bound to self's inputs, in order."""
        if len(inner.exprs) != len(self.inputs):
            raise ValueError(f"cannot compose: inner map has {len(inner.exprs)} outputs, outer expects {len(self.inputs)} inputs")
        env = dict(zip(self.inputs, inner.exprs))
        return AffineMap(inner.inputs, tuple(e.substitute(env) for e in self.exprs), self.names)

    def inverse(self, names: Sequence[str] = ()) -> "AffineMap":
        """The inverse map when the linear part is square and unimodular; raises ValueError otherwise."""
        inv = int_inverse(self.matrix)
        if inv is None:
            raise ValueError(f"map is not invertible over the integers (matrix {self.matrix.tolist()})")
        out_vars = tuple(self.names) if self.names else tuple(f"y{r}" for r in range(len(self.exprs)))
        off = -inv @ self.offset
        return AffineMap.from_matrix(inv, off, inputs=out_vars, names=tuple(names) or self.inputs)


def int_inverse(matrix) -> np.ndarray | None:
    """Exact inverse of a square integer matrix when it is integral (|det| = 1), else None."""
    mat = [[Fraction(int(x)) for x in row] for row in np.asarray(matrix)]
    n = len(mat)
    if n == 0 or any(len(row) != n for row in mat):
        return None
    aug = [row + [Fraction(int(r == c)) for c in range(n)] for r, row in enumerate(mat)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if aug[r][col] != 0), None)
        if pivot is None:
            return None
        aug[col], aug[pivot] = aug[pivot], aug[col]
        p = aug[col][col]
        aug[col] = [x / p for x in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[col])]
    inv = [row[n:] for row in aug]
    if any(x.denominator != 1 for row in inv for x in row):
        return None
    return np.array([[int(x) for x in row] for row in inv], dtype=np.int64)


_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z_0-9]*)|(.))")


MAX_COEFF = 1 << 30       # far beyond any loop extent or stride; keeps access matrices inside int64


def parse_affine(text: str, allowed: Iterable[str] | None = None) -> AffineExpr:
    """Parse ``"2*p + r - 1"``-style text. Products must have a constant factor; anything else
    (``i*j``, ``i/2``, ``i%4``, parentheses around non-constants) is rejected as non-affine."""
    allowed_set = set(allowed) if allowed is not None else None
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    text = str(text)
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        start = m.start(m.lastindex) if m.lastindex else pos
        if m.group(1):
            tokens.append(("num", m.group(1), start))
        elif m.group(2):
            tokens.append(("name", m.group(2), start))
        elif m.group(3) and m.group(3) in "+-*":
            tokens.append(("op", m.group(3), start))
        elif m.group(3):
            raise AffineParseError(f"unexpected {m.group(3)!r}: index expressions are affine (only +, - and "
                                   f"multiplication by an integer constant)", text, start)
        pos = m.end()
    if not tokens:
        raise AffineParseError("empty index expression", text, 0)
    coeffs: dict[str, int] = {}
    const = 0
    i = 0
    expect_term = True
    sign = 1
    while i < len(tokens):
        kind, val, at = tokens[i]
        if expect_term:
            if kind == "op" and val in "+-":
                sign = sign * (-1 if val == "-" else 1)
                i += 1
                continue
            # a term: factor (* factor)*
            factor_const = 1
            var: str | None = None
            while True:
                if i >= len(tokens):
                    raise AffineParseError("expression ends after an operator", text, len(text))
                kind, val, at = tokens[i]
                if kind == "num":
                    factor_const *= int(val)
                elif kind == "name":
                    if var is not None:
                        raise AffineParseError(f"product of two indices ({var}*{val}) is not affine", text, at)
                    if allowed_set is not None and val not in allowed_set:
                        raise AffineParseError(f"unknown index {val!r} (known: {', '.join(sorted(allowed_set))})", text, at)
                    var = val
                else:
                    raise AffineParseError(f"unexpected {val!r}", text, at)
                i += 1
                if i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] == "*":
                    i += 1
                    continue
                break
            if abs(factor_const) > MAX_COEFF:
                raise AffineParseError(f"the factor {factor_const} is too large (at most {MAX_COEFF} in magnitude)",
                                       text, at)
            if var is None:
                const += sign * factor_const
            else:
                coeffs[var] = coeffs.get(var, 0) + sign * factor_const
            sign = 1
            expect_term = False
        else:
            if kind == "op" and val in "+-":
                expect_term = True
                continue
            raise AffineParseError(f"expected + or - but found {val!r}", text, at)
    if expect_term:
        raise AffineParseError("expression ends after an operator", text, len(text))
    return AffineExpr.of(coeffs, const)
