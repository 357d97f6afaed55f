import json
from dataclasses import asdict

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.workloads.library import get_workload
from archgen.workloads.trace import AttentionTrace, TraceHeader, load_trace, save_trace, synthetic_trace


def test_round_trip(tmp_path):
    tr = synthetic_trace(2, 3, 16, seed=1)
    p = save_trace(tr, tmp_path / "t.npz")
    back = load_trace(p)
    assert back.header == tr.header
    np.testing.assert_array_equal(back.probs, tr.probs)
    np.testing.assert_array_equal(back.head_importance, tr.head_importance)


def test_synthetic_is_seeded_and_normalised():
    a = synthetic_trace(2, 2, 32, seed=5)
    b = synthetic_trace(2, 2, 32, seed=5)
    c = synthetic_trace(2, 2, 32, seed=6)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, c.probs)
    np.testing.assert_allclose(a.probs.astype(np.float32).sum(-1), 1.0, atol=1e-2)


def test_concentration_controls_peakiness():
    def top_mass(c):
        p = synthetic_trace(1, 4, 128, concentration=c, seed=0, dtype="float32").probs
        top = np.sort(p, axis=-1)[..., -8:].sum(-1)   # mass on the 8 largest of 128 keys
        return float(top.mean())
    flat, mid, sharp = top_mass(0.0), top_mass(2.0), top_mass(6.0)
    assert flat == pytest.approx(8 / 128, rel=1e-3)
    assert flat < mid < sharp
    assert sharp > 0.9


def test_decode_trace_is_causal():
    tr = synthetic_trace(1, 2, 20, queries=4, seed=0)
    assert tr.header.phase == "decode" and tr.header.query_offset == 16
    p = tr.probs.astype(np.float32)
    for q, pos in enumerate(tr.query_positions()):
        assert np.all(p[:, :, q, pos + 1:] == 0)
        assert np.all(p[:, :, q, : pos + 1] > 0)


def test_header_shape_mismatch_names_the_field(tmp_path):
    tr = synthetic_trace(2, 3, 16, seed=1)
    header = asdict(tr.header)
    header["heads"] = 4
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", header=blob, probs=tr.probs, head_importance=tr.head_importance)
    with pytest.raises(SpecError) as e:
        load_trace(tmp_path / "bad.npz")
    assert "probs.shape" in str(e.value) and "heads (header 4, array 3)" in str(e.value)


def test_rows_must_sum_to_one():
    p = np.full((1, 1, 4, 4), 0.3, dtype=np.float32)
    with pytest.raises(SpecError, match=r"probs\[0\]: rows must sum to 1"):
        AttentionTrace(TraceHeader("m", 1, 1, 4, 4, dtype="float32"), p, np.ones((1, 1), np.float32))


def test_load_checks_against_workload(tmp_path):
    wl = get_workload("bert-base", seq=32)
    good = synthetic_trace(12, 12, 32, seed=0, head_dim=8)
    save_trace(good, tmp_path / "g.npz")
    assert load_trace(tmp_path / "g.npz", workload=wl).header.seq_len == 32
    bad = synthetic_trace(6, 12, 16, seed=0, head_dim=8)
    save_trace(bad, tmp_path / "b.npz")
    with pytest.raises(SpecError) as e:
        load_trace(tmp_path / "b.npz", workload=wl)
    msg = str(e.value)
    assert "header.layers: bert-base has 12 layers (got 6)" in msg
    assert "header.seq_len: the workload has seq=32 (got 16)" in msg


def test_decode_trace_against_decode_workload(tmp_path):
    wl = get_workload("gpt2-small", phase="decode", kv_len=24)
    save_trace(synthetic_trace(12, 12, 28, queries=4, seed=0, head_dim=8), tmp_path / "d.npz")
    assert load_trace(tmp_path / "d.npz", workload=wl).header.query_offset == 24
    save_trace(synthetic_trace(12, 12, 30, queries=4, seed=0, head_dim=8), tmp_path / "e.npz")
    with pytest.raises(SpecError, match="header.query_offset"):
        load_trace(tmp_path / "e.npz", workload=wl)


def test_not_a_trace(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(SpecError, match=r"trace: .*x\.npz is not an \.npz trace"):
        load_trace(tmp_path / "x.npz")


def test_generator_rejects_bad_arguments():
    with pytest.raises(SpecError) as e:
        synthetic_trace(0, 2, 8, queries=9, concentration=-1)
    msg = str(e.value)
    assert "layers:" in msg and "queries:" in msg and "concentration:" in msg
