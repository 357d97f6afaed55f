"""Issue 15's list of bad SpAtten input, each through the command line: one field-named line on stderr,
exit 2, nothing written. (The general hostile-input corpus is tests/cli/hostile_cases.py; this file pins
the SpAtten messages.)"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from archgen.workloads.trace import save_trace, synthetic_trace


def _refused(argv, tmp_path, monkeypatch, field):
    before = set(tmp_path.rglob("*"))
    rc, _out, err = run_cli(argv, tmp_path, monkeypatch)
    assert rc == 2, err
    assert err.startswith(f"archgen: {field}"), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert set(tmp_path.rglob("*")) == before, "a refused command wrote files"
    return err


@pytest.fixture
def trace_arrays(tmp_path):
    save_trace(synthetic_trace(2, 2, 16, seed=1), tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + b"\0" * 40, "half"])
def test_empty_or_truncated_trace(content, tmp_path, monkeypatch, trace_arrays):
    if content == "half":
        content = (tmp_path / "ok.npz").read_bytes()
        content = content[:len(content) // 2]
    (tmp_path / "t.npz").write_bytes(content)
    err = _refused(["sim", "spatten_small.yaml", "--trace", "t.npz"], tmp_path, monkeypatch, "trace:")
    assert "t.npz is not a readable .npz trace (empty, truncated or damaged" in err


@pytest.mark.parametrize("value", [np.nan, -1.0, np.inf])
def test_nan_or_negative_head_importance(value, tmp_path, monkeypatch, trace_arrays):
    hi = trace_arrays["head_importance"].copy()
    hi[1, 0] = value
    np.savez(tmp_path / "bad.npz", **dict(trace_arrays, head_importance=hi))
    err = _refused(["sim", "spatten_small.yaml", "--trace", "bad.npz"], tmp_path, monkeypatch, "head_importance:")
    assert "must be finite and >= 0" in err


def test_nan_probabilities(tmp_path, monkeypatch, trace_arrays):
    p = trace_arrays["probs"].copy()
    p[0, 1, 2, 3] = np.nan
    np.savez(tmp_path / "bad.npz", **dict(trace_arrays, probs=p))
    _refused(["sim", "spatten_small.yaml", "--trace", "bad.npz"], tmp_path, monkeypatch, "probs[0]:")


@pytest.mark.parametrize("setting,field", [
    ("pruning.token.end=1", "pruning.token.end:"),
    ("pruning.token.start=-0.1", "pruning.token.start:"),
    ("pruning.head.end=1.5", "pruning.head.end:"),
    ("pruning.local_v=1.0", "pruning.local_v:"),
    ("pruning.token.per_layer=[0, 1.0]", "pruning.token.per_layer.1:"),
    ("pruning.token.start=nan", "pruning.token.start:"),
])
def test_pruning_ratio_outside_0_1(setting, field, tmp_path, monkeypatch, trace_arrays):
    _refused(["sim", "spatten_small.yaml", "--trace", "ok.npz", "--set", setting], tmp_path, monkeypatch, field)


def test_topk_k_above_n(tmp_path, monkeypatch):
    err = _refused(["verify", "spatten_small.yaml", "--unit", "topk", "--n", "10", "--k", "11"], tmp_path,
                   monkeypatch, "--k:")
    assert "at most --n" in err


@pytest.mark.parametrize("unit", ["topk", "core", "softmax", "pq"])
def test_n_above_the_specs_max_n(unit, tmp_path, monkeypatch):
    # spatten_small buffers 64 tokens: verify checks the spec's engine, it does not build a bigger one
    argv = ["verify", "spatten_small.yaml", "--unit", unit, "--n", "65"] + (["--k", "3"] if unit == "topk" else [])
    err = _refused(argv, tmp_path, monkeypatch, "--n:")
    assert "spatten_small holds max_tokens = 64" in err and "(got 65)" in err
