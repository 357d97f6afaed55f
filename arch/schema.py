"""JSON Schema errors as archgen problems: one translator for every spec kind.

``schema_problems(schema, data)`` validates ``data`` and returns one Problem per error, in the style of
every other archgen message: ``path.to.field: what is wrong (got X)``. Unknown keys suggest the closest
known key; missing keys, bounds, patterns and types read as rules, not as jsonschema's sentences.
``hints`` maps a field path (or its last part) to a sentence that replaces the generic message for
pattern and oneOf errors, where the schema alone cannot say what a valid value looks like.
"""
from __future__ import annotations

import difflib
from typing import Mapping

import jsonschema

from .errors import Problem, problem

__all__ = ["schema_problems"]

_BOUND_WORDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
                "exclusiveMaximum": "less than"}


def _type_name(expected) -> str:
    names = {"integer": "an integer", "number": "a number", "string": "text", "object": "a mapping",
             "array": "a list", "boolean": "true or false", "null": "null"}
    if isinstance(expected, list):
        return " or ".join(names.get(t, t) for t in expected)
    return names.get(expected, str(expected))


def schema_problems(schema: dict, data, hints: Mapping[str, str] | None = None) -> list[Problem]:
    hints = hints or {}
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[Problem] = []
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for err in errors:
        path = ".".join(str(p) for p in err.absolute_path)
        where = path or "(top)"
        hint = hints.get(path) or hints.get(path.rsplit(".", 1)[-1]) or hints.get(path.split(".", 1)[0] + ".*")
        kind = err.validator
        if kind == "additionalProperties":
            allowed = list((err.schema.get("properties") or {}).keys())
            extra = [k for k in err.instance if k not in allowed] if isinstance(err.instance, dict) else []
            for key in extra:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                fix = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
                problems.append(problem(f"{path}.{key}" if path else str(key), f"unknown key; {fix}"))
        elif kind == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            problems.append(problem(f"{path}.{missing}" if path else missing, "required key is missing"))
        elif kind in _BOUND_WORDS:
            problems.append(problem(where, f"must be {_BOUND_WORDS[kind]} {err.validator_value}", err.instance))
        elif kind == "type":
            problems.append(problem(where, f"must be {_type_name(err.validator_value)}", err.instance))
        elif kind == "const":
            problems.append(problem(where, hint or f"must be {err.validator_value!r}", err.instance))
        elif kind == "enum":
            choices = ", ".join(repr(v) for v in err.validator_value)
            problems.append(problem(where, f"must be one of {choices}", err.instance))
        elif kind in ("pattern", "oneOf", "anyOf") and hint:
            problems.append(problem(where, hint, err.instance))
        elif kind == "pattern":
            problems.append(problem(where, f"must match the pattern {err.validator_value}", err.instance))
        elif kind in ("minItems", "maxItems", "minProperties", "maxProperties", "maxLength", "minLength"):
            word = "at least" if kind.startswith("min") else "at most"
            unit = {"Items": "entries", "Properties": "keys", "Length": "characters"}[kind[3:]]
            problems.append(problem(where, f"must have {word} {err.validator_value} {unit}", err.instance))
        elif kind == "uniqueItems":
            problems.append(problem(where, "must not repeat an entry", err.instance))
        elif kind == "propertyNames":
            problems.append(problem(where, hint or "a key here is not a valid name", err.instance))
        else:
            problems.append(problem(where, err.message.replace(repr(err.instance), "").strip() or err.message,
                                    err.instance))
    return problems
