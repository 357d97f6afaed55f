"""Sweeps: grid expansion, resume without recomputation, Pareto front, deterministic records."""
import json

import pytest

from archgen.arch.errors import SpecError
from archgen.sim import sweep as sw


def test_expand_grid_cartesian():
    grid = sw.expand_grid(["array.shape=4x4,8x8", "clock_mhz=500,1000"])
    assert grid == [("array.shape=4x4", "clock_mhz=500"), ("array.shape=4x4", "clock_mhz=1000"),
                    ("array.shape=8x8", "clock_mhz=500"), ("array.shape=8x8", "clock_mhz=1000")]
    with pytest.raises(SpecError, match="--vary"):
        sw.expand_grid(["array.shape="])


def test_sweep_resumes_and_is_deterministic(tmp_path, monkeypatch):
    points = [sw.SweepPoint("gemm_os.yaml", g, "bert-base", 16) for g in sw.expand_grid(["array.shape=2x2,4x4"])]
    first = sw.run_sweep(points, tmp_path)
    assert len(first) == 2 and first[0]["cycles"] > first[1]["cycles"]
    calls = []
    monkeypatch.setattr(sw, "evaluate_point", lambda p: calls.append(p) or {})
    again = sw.run_sweep(points, tmp_path)
    assert calls == [] and again == first           # nothing recomputed after a restart
    header, *lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert json.loads(header) == {"archgen_sweep_store": 1}
    assert [json.loads(x)["key"] for x in lines] == [p.key() for p in points]


def test_pareto_front_drops_dominated():
    recs = [{"time_ns": 1, "energy_pj": 5, "fus": 4}, {"time_ns": 2, "energy_pj": 6, "fus": 4},
            {"time_ns": 3, "energy_pj": 1, "fus": 4}]
    assert sw.pareto_front(recs) == [recs[0], recs[2]]
