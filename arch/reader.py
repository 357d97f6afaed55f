"""Reading YAML from users safely: specs, ``--set`` values, sweep files.

PyYAML's ``safe_load`` is safe against code execution, not against input that is merely hostile. This
reader adds what a tool that runs on anyone's files needs, and turns every failure into a SpecError
line (``yaml: ...`` or ``path.to.field: ...``) instead of an exception from deep inside a library:

- bytes are decoded as UTF-8 (a UTF-8 byte-order mark is accepted); anything else is refused with the
  offset of the first bad byte and the fix;
- size limits: at most ``MAX_BYTES`` of text, nesting at most ``MAX_DEPTH`` deep (checked while
  composing, so 5,000 nested brackets never reach Python's recursion limit), and at most ``MAX_NODES``
  values once aliases are expanded (an alias bomb is refused before anything copies it);
- duplicate keys are refused (YAML would silently keep the last);
- keys are strings; a key YAML reads as a number, date or boolean is refused with the quoting fix;
- values are JSON-compatible: dates and times stay text (``2024-01-01`` is read as the string),
  ``!!binary``, ``!!set`` and other non-JSON tags are refused; NaN and infinities are refused wherever
  they appear;
- numbers follow YAML 1.2: ``1e12`` and ``1.0e12`` are floats (YAML 1.1 reads them as text);
- the result is a plain tree of dicts, lists and scalars with no shared or recursive parts.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, SpecError, problem, short_repr

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "read_yaml_file", "parse_yaml_text", "parse_override_value"]

MAX_BYTES = 1 << 20          # 1 MiB: the largest built-in spec is under 4 KB
MAX_DEPTH = 64
MAX_NODES = 100_000

_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                          |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                          |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                          |[-+]?\.(?:inf|Inf|INF)
                          |\.(?:nan|NaN|NAN))$""", re.X)


class _TooDeep(Exception):
    def __init__(self, mark):
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting limit, duplicate-key refusal, YAML 1.2 floats and dates as text."""

    int_keys = False

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# implicit resolvers are class-level lists keyed by first character; copy before changing them
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:float")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    out: dict = {}
    first_line: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str) and not (loader.int_keys and isinstance(key, int) and not isinstance(key, bool)):
            kind = {bool: "true/false", int: "an integer", float: "a number"}.get(type(key), type(key).__name__)
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {short_repr(key)} is {kind}, not text; keys are names: quote it if you "
                f"mean the text, e.g. '{short_repr(key)}'", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {first_line[key]}); YAML would keep only the last, "
                "so remove one", key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


def _refuse_tag(loader: _Loader, node):
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag!r} makes a value that is not plain data (text, number, true/false, list, "
        "mapping); remove the tag", node.start_mark)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


class _IntKeyLoader(_Loader):
    """For tables keyed by bit width (delay tables: ``delay_ns: {8: 0.6, 16: 0.95}``)."""

    int_keys = True


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown position"


def _plain_tree(value: Any, path: str, problems: list[Problem]) -> Any:
    """A fresh copy with no shared or recursive parts, counting nodes; NaN/inf reported by path."""
    budget = [MAX_NODES]
    on_path: set[int] = set()

    def walk(v, p):
        budget[0] -= 1
        if budget[0] < 0:
            raise _Expansion()
        if isinstance(v, dict):
            if id(v) in on_path:
                raise _Recursive(p)
            on_path.add(id(v))
            out = {k: walk(x, f"{p}.{k}" if p else k) for k, x in v.items()}
            on_path.discard(id(v))
            return out
        if isinstance(v, list):
            if id(v) in on_path:
                raise _Recursive(p)
            on_path.add(id(v))
            out = [walk(x, f"{p}.{i}" if p else str(i)) for i, x in enumerate(v)]
            on_path.discard(id(v))
            return out
        if isinstance(v, float) and not math.isfinite(v):
            problems.append(problem(p or "(top)", "must be a finite number", v))
        return v

    return walk(value, path)


class _Expansion(Exception):
    pass


class _Recursive(Exception):
    def __init__(self, path):
        self.path = path


def parse_yaml_text(data: bytes | str, source: str | None = None, *, what: str = "spec", int_keys: bool = False) -> Any:
    """Decode, parse and check one YAML document; raise SpecError (``yaml: ...``) on any failure."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise SpecError([problem(what, f"the file is {len(data):,} bytes; a {what} is at most {MAX_BYTES:,} bytes")],
                            source=source)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise SpecError([problem(what, f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} cannot "
                                     "be decoded; save the file as UTF-8")], source=source) from None
    else:
        text = data
        if len(text) > MAX_BYTES:
            raise SpecError([problem(what, f"the text is {len(text):,} characters; a {what} is at most "
                                     f"{MAX_BYTES:,}")], source=source)
    try:
        value = yaml.load(text, Loader=_IntKeyLoader if int_keys else _Loader)
    except _TooDeep as err:
        raise SpecError([problem("yaml", f"nested more than {MAX_DEPTH} levels deep at {_where(err.mark)}")],
                        source=source) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        what_wrong = getattr(err, "problem", None) or str(err).splitlines()[0]
        if isinstance(err, yaml.constructor.ConstructorError):
            raise SpecError([problem("yaml", f"{what_wrong} (line {mark.line + 1}, column {mark.column + 1})")],
                            source=source) from None
        raise SpecError([problem("yaml", f"syntax error at {_where(mark)}: {what_wrong}")], source=source) from None
    except RecursionError:
        raise SpecError([problem("yaml", f"nested too deeply (at most {MAX_DEPTH} levels)")], source=source) from None
    problems: list[Problem] = []
    try:
        tree = _plain_tree(value, "", problems)
    except _Expansion:
        raise SpecError([problem("yaml", f"more than {MAX_NODES:,} values once aliases (*name) are expanded; "
                                 "write the data out or use fewer aliases")], source=source) from None
    except _Recursive as err:
        raise SpecError([problem(err.path or "yaml", "an alias refers to the mapping or list that contains it "
                                 "(a recursive structure); remove the alias")], source=source) from None
    if problems:
        raise SpecError(problems, source=source)
    return tree


def read_yaml_file(path: str | Path, *, what: str = "spec", int_keys: bool = False) -> Any:
    """Read and parse a YAML file with the checks above; unreadable files become a SpecError."""
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError([problem(what, f"{path} is a directory; give a YAML file")])
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise SpecError([problem(what, f"cannot read the file: {err.strerror}", str(path))]) from None
    if len(data) > MAX_BYTES:
        raise SpecError([problem(what, f"the file is larger than {MAX_BYTES:,} bytes; a {what} is a short YAML file")],
                        source=str(path))
    return parse_yaml_text(data, source=str(path), what=what, int_keys=int_keys)


def parse_override_value(raw: str, field: str) -> Any:
    """The value of one ``--set FIELD=VALUE``: YAML, without anchors or aliases, finite numbers only."""
    if not raw.strip():
        return ""
    if re.search(r"(^|[\s\[{,])[&*][A-Za-z0-9_]", raw):
        # '&' and '*' start anchors and aliases in YAML; a value that needs them is not an override
        try:
            events = list(yaml.parse(raw, Loader=_Loader))
        except yaml.YAMLError:
            events = []
        if any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events):
            raise SpecError([problem(f"--set {field}", "anchors and aliases (&name, *name) are not allowed in "
                                     "overrides; write the value out", raw)])
    try:
        return parse_yaml_text(raw, what=f"--set {field}")
    except SpecError as err:
        if any(p.path == "yaml" for p in err.problems):
            return raw           # not YAML: take the text as a string, the schema then judges it
        raise SpecError([Problem(f"--set {field}", p.message, p.got, p.has_got) for p in err.problems]) from None
