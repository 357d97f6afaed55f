"""Property test: mutated built-in specs (type swaps, deletions, insertions, extreme numbers, dates,
encodings, truncation) through the CLI entry point in-process. Every outcome is either a valid design
(exit 0) or exit 2 with a short message and no traceback; no exception escapes.

The default suite runs 300 examples with a derandomised (fixed) search, so CI sees the same inputs on
every run; ``--runslow`` runs 3,000 with a random seed.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archgen.arch.spec import builtin_specs
from archgen.cli import main

SPECS = {name: yaml.safe_load(path.read_text()) for name, path in builtin_specs().items()}

_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, -(2**63) - 1, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-300, 1e300, float("nan"), float("inf"), -0.0, 0.5]),
    st.text(max_size=20),
    st.sampled_from(["4x4", "0x4", "int8", "uint64", "int0", "C[i,j] += A[i,k]", "t_i + s0", "&a", "*a", ""]),
    st.booleans(),
    st.none(),
    st.dates(min_value=datetime.date(1990, 1, 1), max_value=datetime.date(2100, 1, 1)),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_spec(draw):
    data = yaml.safe_load(yaml.safe_dump(SPECS[draw(st.sampled_from(sorted(SPECS)))]))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "insert", "swap_type", "extreme"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(_values)
        elif op == "insert" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=10), st.sampled_from(["clok_mhz", "kind", "bounds"])))] = draw(_values)
        elif op == "swap_type":
            old = parent[key]
            parent[key] = draw(st.sampled_from([str(old), [old], {"x": old}, None]))
        elif isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = draw(st.sampled_from([0, -1, 2**62, 1e308, float("nan"), float("-inf"), 1e-300]))
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1", "utf-8-sig"]))
    raw = text.encode(encoding, errors="replace")
    tail = draw(st.sampled_from(["none", "none", "truncate", "junk"]))
    if tail == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif tail == "junk":
        raw += draw(st.binary(max_size=16))
    return raw


def _check(tmp_path, raw: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["check", str(path)])
    text = err.getvalue()
    assert rc in (0, 2), (rc, text)
    assert "Traceback" not in text
    if rc == 2:
        lines = text.splitlines()
        assert lines and lines[0].startswith("archgen: ")
        assert len(lines) <= 40 and all(len(line) < 600 for line in lines), text[:2000]
    else:
        assert "valid" in out.getvalue() and text == ""




@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=mutated_spec())
def test_mutated_specs_are_valid_or_refused(tmp_path, raw):
    _check(tmp_path, raw)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=mutated_spec())
def test_mutated_specs_many(tmp_path, raw):
    _check(tmp_path, raw)


def test_unmutated_specs_are_valid(tmp_path):
    for name, data in SPECS.items():
        _check(tmp_path, yaml.safe_dump(data).encode())
    assert len(SPECS) >= 7


ARRAY_SPECS = sorted(n for n, d in SPECS.items() if d.get("kind", "array") == "array")


@st.composite
def near_valid_array_spec(draw):
    """Well-typed edits that reach the semantic phase and the interconnect analysis: small integers in
    shapes, axes, controls, bounds and stt rows; loops renamed, reordered or dropped; forms swapped."""
    data = yaml.safe_load(yaml.safe_dump(SPECS[draw(st.sampled_from(ARRAY_SPECS))]))
    small = st.integers(-2, 5)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p and isinstance(_get(data, p), int) and not isinstance(_get(data, p), bool)]
        op = draw(st.sampled_from(["int", "int", "shape", "order", "drop", "map"]))
        if op == "int" and paths:
            path = draw(st.sampled_from(paths))
            _get(data, path[:-1])[path[-1]] = draw(small)
        elif op == "shape":
            data["array"]["shape"] = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
        elif op in ("order", "drop", "map"):
            name = draw(st.sampled_from(sorted(data["dataflows"])))
            df = data["dataflows"][name]
            loops = list(df.get("order") or [])
            if op == "order" and loops:
                df["order"] = draw(st.permutations(loops))
            elif op == "drop" and df:
                del df[draw(st.sampled_from(sorted(df)))]
            elif op == "map":
                for key in ("spatial", "stt", "order", "control", "inner"):
                    df.pop(key, None)
                terms = ["t_{}", "2*t_{} + s0", "t_{} + s1", "t_{} - s0", "4*t_{} + s0", "4*t_{} + s1"]
                dims = {"gemm": "ijk"}.get(data["name"][:4], None) or "nkcpqrs"
                df["map"] = {d: draw(st.sampled_from(terms)).format(d) for d in dims}
    return yaml.safe_dump(data, sort_keys=False).encode()


@settings(max_examples=int(os.environ.get("ARCHGEN_FUZZ_EXAMPLES", 60)), derandomize=os.environ.get("ARCHGEN_FUZZ_EXAMPLES") is None, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=near_valid_array_spec())
def test_near_valid_specs_build_or_refuse(tmp_path, raw):
    """``build --explain`` runs the reuse analysis and banking on what the loader accepted."""
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["build", str(path), "--explain"])
    assert rc in (0, 2), err.getvalue()
    if rc == 2:
        assert err.getvalue().startswith("archgen: ") and "Traceback" not in err.getvalue()
