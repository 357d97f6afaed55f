"""NAAS-style search: seeded determinism, the budget respected, resume skips stored points."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.sim import search as S
from archgen.sim import sweep_eval

WORKLOADS = [("gemm:48,64,40", None), ("gemm:24,128,32", None)]
BUDGET = S.Budget(24, 12 * 1024, 16)


def test_decode_always_respects_the_budget():
    rng = np.random.default_rng(0)
    for budget in (BUDGET, S.BUDGETS["eyeriss"], S.BUDGETS["edgetpu"]):
        for mode in ("naas", "sizing"):
            for z in list(rng.uniform(-0.5, 1.5, size=(200, S.DIM))) + [np.zeros(S.DIM), np.ones(S.DIM)]:
                c = S.decode(z, budget, mode)
                assert 1 <= c.pes <= budget.pes and min(c.shape) >= 1 and max(c.shape) <= S.MAX_SIDE
                assert sum(c.buffers) <= budget.onchip_bytes and min(c.buffers) >= 1024
                assert (mode == "sizing") == (c.spec == "gemm_os.yaml" and c.mapper == "heuristic") or mode == "naas"
    specs = {S.decode(z, BUDGET).spec for z in rng.uniform(0, 1, size=(100, S.DIM))}
    assert specs == {"gemm_os.yaml", "gemm_ws.yaml", "gemm_is.yaml"}    # importances pick the dataflow


def test_search_is_seeded_and_resumes_without_recomputing(tmp_path, monkeypatch):
    calls = []
    real = sweep_eval.evaluate_point
    monkeypatch.setattr(sweep_eval, "evaluate_point", lambda p: calls.append(p.key()) or real(p))
    a = S.run_search(WORKLOADS, BUDGET, tmp_path / "a", evaluations=5, seed=4)
    first = len(calls)
    assert first == a["computed"] > 0 and len(set(calls)) == first
    # nothing is simulated beyond the evaluation budget: every computed point belongs to a counted candidate
    counted = {pt.key() for h in a["history"] if h["feasible"]
               for pt in S._points(h["candidate"], BUDGET, WORKLOADS)}
    assert set(calls) <= counted
    b = S.run_search(WORKLOADS, BUDGET, tmp_path / "b", evaluations=5, seed=4)
    assert [h["candidate"] for h in a["history"]] == [h["candidate"] for h in b["history"]]
    assert [h["edp_pj_ns"] for h in a["history"]] == [h["edp_pj_ns"] for h in b["history"]]
    calls.clear()
    again = S.run_search(WORKLOADS, BUDGET, tmp_path / "a", evaluations=5, seed=4)     # resume: all stored
    assert calls == [] and again["computed"] == 0 and again["stored"] > 0
    assert again["best"] == a["best"]
    for h in a["history"]:
        c = h["candidate"]
        assert c.pes <= BUDGET.pes and sum(c.buffers) <= BUDGET.onchip_bytes
    assert a["best"] is not None and a["best"]["edp_pj_ns"] == min(h["edp_pj_ns"] for h in a["history"])


def test_sizing_mode_keeps_the_dataflow_and_bad_budgets_are_refused(tmp_path):
    r = S.run_search(WORKLOADS, BUDGET, tmp_path, evaluations=3, seed=1, mode="sizing")
    assert {h["candidate"].spec for h in r["history"]} == {"gemm_os.yaml"}
    with pytest.raises(SpecError, match="budget.pes"):
        S.run_search(WORKLOADS, S.Budget(2, 12 * 1024, 16), tmp_path, evaluations=3)
    with pytest.raises(SpecError, match="mode"):
        S.run_search(WORKLOADS, BUDGET, tmp_path, evaluations=3, mode="other")


def test_cli_search(tmp_path, monkeypatch):
    from conftest import run_cli
    code, out, err = run_cli(["search", "--workload", "gemm:48,64,40", "--budget", "24,12288,16", "--evaluations", "3",
                              "--out", str(tmp_path / "s")], tmp_path, monkeypatch)
    assert code == 0, err
    assert "best: gemm_" in out and "uJ*ms" in out
    code, out, err = run_cli(["search", "--workload", "gemm:48,64,40", "--budget", "lots", "--out",
                              str(tmp_path / "t")], tmp_path, monkeypatch)
    assert code == 2 and "--budget" in err
