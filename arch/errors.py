"""Errors raised by archgen's library code. Only the CLI turns them into messages and exit codes."""
from __future__ import annotations

import reprlib
from dataclasses import dataclass

__all__ = ["Problem", "SpecError", "ArchgenError", "ToolMissingError", "problem", "short_repr"]


class ArchgenError(Exception):
    """Base class of every error archgen raises on purpose (user input, missing tools, infeasible designs)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by a dotted path such as ``dataflows.os.control``."""

    path: str
    message: str
    got: object = None
    has_got: bool = False

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.has_got:
            text += f" (got {short_repr(self.got)})"
        return text


_REPR = reprlib.Repr()      # Python 3.10 has no keyword arguments here
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 200, 80, 40


def short_repr(value: object, limit: int = 240) -> str:
    """``repr`` cut to a readable length without expanding large or deep values first."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem(path: str, message: str, *got) -> Problem:
    """Build a Problem; pass the offending value as a third argument to have it shown as ``(got X)``."""
    if got:
        return Problem(path, message, got[0], True)
    return Problem(path, message)


class SpecError(ArchgenError):
    """Every problem found in one input, one per line: ``path.to.field: what is wrong (got X)``."""

    def __init__(self, problems, source: str | None = None):
        self.problems = tuple(problems)
        self.source = source
        head = f"{source}: " if source else ""
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:
            super().__init__(head + lines[0])
        else:
            super().__init__(head + f"{len(lines)} problems\n" + "\n".join("  " + line for line in lines))


class ToolMissingError(ArchgenError):
    """An external tool (Verilator, Yosys, nextpnr) is missing or broken; the message names the fix."""
