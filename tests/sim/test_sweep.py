"""Sweeps: grid expansion, resume without recomputation, Pareto front, deterministic records."""
import sqlite3

import pytest

from archgen.arch.errors import SpecError
from archgen.sim import sweep as sw
from archgen.sim.store import STORE_NAME, ResultStore, model_version


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
    assert first[0]["area_mm2"] * 4 == pytest.approx(first[1]["area_mm2"])      # FU area scales with FUs
    calls = []
    monkeypatch.setattr(sw, "evaluate_point", lambda p: calls.append(p) or {})
    again = sw.run_sweep(points, tmp_path)
    assert calls == [] and again == first           # nothing recomputed after a restart
    conn = sqlite3.connect(tmp_path / STORE_NAME)
    keys = [k for (k,) in conn.execute("SELECT key FROM points ORDER BY id")]
    conn.close()
    assert keys == [p.key() for p in points]


def test_key_covers_design_workload_and_dataflow():
    base = sw.SweepPoint("gemm_os.yaml", (), "gemm:8,8,8")
    assert base.key() == sw.SweepPoint("gemm_os", (), "gemm:8,8,8").key()              # same file, same design
    assert base.key() == sw.SweepPoint("gemm_os.yaml", ("clock_mhz=500",), "gemm:8,8,8").key()   # the default
    others = [sw.SweepPoint("gemm_os.yaml", ("clock_mhz=400",), "gemm:8,8,8"),
              sw.SweepPoint("gemm_os.yaml", (), "gemm:8,8,9"), sw.SweepPoint("gemm_os.yaml", (), "gemm:8,8,8", None, "os"),
              sw.SweepPoint("gemm_ws.yaml", (), "gemm:8,8,8")]
    assert len({base.key(), *(p.key() for p in others)}) == 5


def test_model_version_is_derived_from_the_code(tmp_path, monkeypatch):
    from archgen.sim import store
    v = model_version()
    assert v.startswith("m-") and len(v) == 18
    # a copy of one model source with one byte changed gives another version
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(store, "MODEL_SOURCES", (("fakepkg", "*.py"),))
    store.model_version.cache_clear()
    try:
        one = store.model_version()
        (pkg / "model.py").write_text("X = 2\n")
        store.model_version.cache_clear()
        assert store.model_version() != one
    finally:
        store.model_version.cache_clear()


def test_a_model_change_recomputes_only_what_it_invalidated(tmp_path, monkeypatch):
    from archgen.sim import store, sweep_eval
    points = [sw.SweepPoint("gemm_os.yaml", g, "gemm:8,8,8") for g in sw.expand_grid(["clock_mhz=400,500"])]
    sw.run_sweep(points, tmp_path)
    monkeypatch.setattr(store, "model_version", lambda: "m-newer-model-00")
    notes, calls = [], []
    real = sweep_eval.evaluate_point
    monkeypatch.setattr(sw, "evaluate_point", lambda p: calls.append(p) or real(p))
    recs = sw.run_sweep(points, tmp_path, notes=notes)
    assert len(calls) == 2 and {r["model"] for r in recs} == {"m-newer-model-00"}
    assert any("2 row(s) computed by another model version are ignored" in n for n in notes)
    calls.clear()
    sw.run_sweep(points, tmp_path)
    assert calls == []


def test_store_refuses_rows_before_reading_any(tmp_path):
    path = tmp_path / STORE_NAME
    with ResultStore.open(path) as s:
        rec = {"key": "a" * 24, "spec": "x", "overrides": [], "workload": "w", "seq": None, "dataflow": "os", "fus": 1,
               "clock_mhz": 1, "cycles": 1, "time_ns": 1, "dram_bytes": 1, "energy_pj": 1, "edp_pj_ns": 1,
               "area_mm2": 1, "model": model_version()}
        s.put(rec)
        s.put(dict(rec, key="b" * 24))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE points SET checksum = 'x' WHERE id = 2")
    conn.commit()
    conn.close()
    with pytest.raises(SpecError, match=r"results.sqlite row 2 \(key 'bbbbbbbbbbbbbbbbbbbb'\): checksum mismatch"):
        ResultStore.open(path)
    with ResultStore.open(path, repair=True) as s:
        assert list(s.rows) == ["a" * 24] and "row 2: deleted" in s.notes[0]


def test_pareto_front_drops_dominated():
    recs = [{"time_ns": 1, "energy_pj": 5, "area_mm2": 4}, {"time_ns": 2, "energy_pj": 6, "area_mm2": 4},
            {"time_ns": 3, "energy_pj": 1, "area_mm2": 4}]
    assert sw.pareto_front(recs) == [recs[0], recs[2]]
    assert sw.pareto_front(recs, ("latency", "energy")) == [recs[0], recs[2]]
    assert sw.pareto_front([recs[0], dict(recs[0])]) == [recs[0], recs[0]]        # ties both stay


def test_dask_address_forms():
    assert sw.parse_dask("local:2") == ("local", 2)
    assert sw.parse_dask("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:x", "myhost"):
        with pytest.raises(SpecError, match="--dask"):
            sw.parse_dask(bad)


def test_a_record_from_other_code_is_not_stored(tmp_path, monkeypatch):
    from archgen.arch.errors import ArchgenError
    from archgen.sim import sweep_eval
    real = sweep_eval.evaluate_point
    monkeypatch.setattr(sw, "evaluate_point", lambda p: dict(real(p), key="f" * 24, model="m-remote"))
    with pytest.raises(ArchgenError, match="the worker runs model 'm-remote'"):
        sw.run_sweep([sw.SweepPoint("gemm_os.yaml", (), "gemm:4,4,4")], tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_design_totals_sum_over_workloads_and_count_a_point_once():
    a = {"key": "a", "spec": "s", "overrides": ["x=1"], "dataflow": "os", "time_ns": 2, "energy_pj": 3, "cycles": 1,
         "dram_bytes": 4}
    b = dict(a, key="b", time_ns=5, energy_pj=7)
    (d,) = sw.design_totals([a, b, dict(a)])
    assert (d["time_ns"], d["energy_pj"], d["edp_pj_ns"], d["points"]) == (7, 10, 70, ["a", "b"])
    assert sw.design_totals([a, dict(b, overrides=["x=2"])]) == [a, dict(b, overrides=["x=2"])]


def test_a_store_locked_by_another_process_is_not_called_corrupt(tmp_path, monkeypatch):
    from archgen.sim import store as store_mod
    path = tmp_path / STORE_NAME
    rec = {"key": "a" * 24, "spec": "x", "overrides": [], "workload": "w", "seq": None, "dataflow": "os", "fus": 1,
           "clock_mhz": 1, "cycles": 1, "time_ns": 1, "dram_bytes": 1, "energy_pj": 1, "edp_pj_ns": 1,
           "area_mm2": 1, "model": model_version()}
    with ResultStore.open(path) as s:
        s.put(rec)
    real = store_mod.ResultStore._connect

    def impatient(p):
        conn = real(p)
        conn.execute("PRAGMA busy_timeout=50")
        return conn
    monkeypatch.setattr(store_mod.ResultStore, "_connect", staticmethod(impatient))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")                   # another sweep in the middle of a write
    try:
        with ResultStore.open(path) as s:               # reading is not blocked (write-ahead log)
            assert list(s.rows) == ["a" * 24]
            with pytest.raises(SpecError, match="results.sqlite: in use by another process"):
                s.put(dict(rec, key="b" * 24))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
