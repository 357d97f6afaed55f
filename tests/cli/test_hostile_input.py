"""Every class of hostile input is refused in-process with exit 2, a short field-named message, no
traceback, and no file written (the corpus is tests/cli/hostile_cases.py)."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as _run


from hostile_cases import GEMM, cases, more_cases

CASES = cases() + more_cases()


def _lay_out(root: Path, files: dict) -> set[Path]:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return set(root.rglob("*"))


@pytest.mark.parametrize("name,argv,files", CASES, ids=[c[0] for c in CASES])
def test_hostile_case_is_refused_cleanly(name, argv, files, tmp_path, monkeypatch):
    before = _lay_out(tmp_path, files)
    rc, _out, err = _run(argv, tmp_path, monkeypatch)
    assert rc == 2, err
    lines = err.splitlines()
    assert lines and lines[0].startswith("archgen: ")
    assert len(err) < 2000 and "Traceback" not in err
    # every problem line names a field: 'field: what is wrong'
    problem_lines = lines[1:] if re.search(r"\d+ problems$", lines[0]) else lines
    for line in problem_lines:
        assert re.match(r"^(archgen: )?(\S+: )?\s*[^\s:][^:]*: \S", line), line
    assert set(tmp_path.rglob("*")) == before, "a refused command wrote files"


def test_corpus_covers_every_class_of_the_issue():
    names = {c[0] for c in CASES}
    for expected in ("latin1", "nested brackets", "date key", "int dataflow name", "bomb junk + set", "bomb in dataflow",
                     "nan clock", "stt 1e20", "tiny clock", "1.0e12 clock", "verify huge gemm", "sim huge seq",
                     "topk huge n", "sim huge batch", "spatten huge seq", "seed -1", "queries 0", "pq n 0",
                     "softmax n -1", "core n too big", "gemm empty", "gemm 4 sizes", "unit on gemm", "workers 0",
                     "one operand einsum", "duplicate key", "trace empty", "trace truncated", "trace text",
                     "sim out file", "sim out proc", "sim out devnull", "sweep fails", "store truncated",
                     "store garbled", "store foreign", "store is dir"):
        assert expected in names


# ---------------------------------------------------------------------------------------------
# messages pinned for the classes whose wording matters most

def _message(argv, files, tmp_path, monkeypatch) -> str:
    _lay_out(tmp_path, files)
    rc, _out, err = _run(argv, tmp_path, monkeypatch)
    assert rc == 2
    return err.strip()


def test_not_utf8(tmp_path, monkeypatch):
    msg = _message(["check", "s.yaml"], {"s.yaml": GEMM.encode() + "# caf\xe9\n".encode("latin-1")}, tmp_path, monkeypatch)
    offset = len(GEMM.encode()) + len("# caf")
    assert msg.endswith(f"spec: not UTF-8 text: byte 0xe9 at offset {offset} cannot be decoded; save the file as UTF-8")


def test_nan_anywhere_a_number_is_expected(tmp_path, monkeypatch):
    msg = _message(["check", "s.yaml", "--set", "dram.bandwidth_gbps=.nan"], {"s.yaml": GEMM}, tmp_path, monkeypatch)
    assert msg == "archgen: --set dram.bandwidth_gbps: must be a finite number (got nan)"
    msg = _message(["check", "spatten_small.yaml", "--set", "progressive_quantization.threshold=.inf"], {},
                   tmp_path, monkeypatch)
    assert msg == "archgen: --set progressive_quantization.threshold: must be a finite number (got inf)"


def test_yaml12_floats_get_the_range_message(tmp_path, monkeypatch):
    msg = _message(["check", "s.yaml", "--set", "clock_mhz=1.0e12"], {"s.yaml": GEMM}, tmp_path, monkeypatch)
    assert msg.endswith("clock_mhz: must be at most 10000 (got 1000000000000.0)")


def test_alias_bomb_is_refused_before_it_expands(tmp_path, monkeypatch):
    bomb = GEMM + "junk:\n  a0: &a0 [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
        f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 12))
    msg = _message(["check", "s.yaml", "--set", "clock_mhz=400"], {"s.yaml": bomb}, tmp_path, monkeypatch)
    assert "more than 100,000 values once aliases (*name) are expanded" in msg and len(msg) < 300


def test_duplicate_key_names_both_lines(tmp_path, monkeypatch):
    msg = _message(["check", "s.yaml"], {"s.yaml": GEMM + "clock_mhz: 700\n"}, tmp_path, monkeypatch)
    assert "duplicate key 'clock_mhz' (first at line 4)" in msg and "(line 14, column 1)" in msg


def test_got_is_shortened(tmp_path, monkeypatch):
    msg = _message(["check", "s.yaml", "--set", "name=" + "x" * 5000], {"s.yaml": GEMM}, tmp_path, monkeypatch)
    assert msg.startswith("archgen: s.yaml: name:") and len(msg) < 400


def test_force_lifts_a_size_guard(tmp_path, monkeypatch):
    """The guard refuses before work; --force lets the same (here small enough) work through."""
    from archgen import limits
    monkeypatch.setitem(limits.LIMITS, "sim_tiles", limits.Limit("sim_tiles", 1, "tiles", "test"))
    (tmp_path / "s.yaml").write_text(GEMM)
    rc, _out, err = _run(["sim", "s.yaml", "--workload", "gemm:8,4,8"], tmp_path, monkeypatch)
    assert rc == 2 and "--workload: its largest layer is 4 tiles" in err and "--force" in err
    rc, out, _err = _run(["sim", "s.yaml", "--workload", "gemm:8,4,8", "--force"], tmp_path, monkeypatch)
    assert rc == 0 and "gemm" in out


# ---------------------------------------------------------------------------------------------
# result stores: nothing tampered reaches a report; --repair recomputes exactly the bad rows

def _sweep(tmp_path, monkeypatch, *extra):
    (tmp_path / "s.yaml").write_text(GEMM)
    return _run(["sweep", "s.yaml", "--workload", "gemm:8,8,8", "--vary", "array.shape=2x2,4x4", "--out", "sw", *extra],
                tmp_path, monkeypatch)


def _rows(store: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(store)
    try:
        return {k: (i, json.loads(r), c) for i, k, r, c in conn.execute("SELECT id, key, record, checksum FROM points")}
    finally:
        conn.close()


def _sql(store: Path, statement: str, *params) -> None:
    conn = sqlite3.connect(store)
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def test_tampered_record_is_refused_and_repaired(tmp_path, monkeypatch):
    rc, _out, _err = _sweep(tmp_path, monkeypatch)
    assert rc == 0
    store = tmp_path / "sw" / "results.sqlite"
    rows = _rows(store)
    assert [v[0] for v in rows.values()] == [1, 2]
    key = next(k for k, v in rows.items() if v[0] == 2)
    honest = rows[key][1]
    forged = dict(honest, cycles=1, time_ns=1)
    _sql(store, "UPDATE points SET record = ? WHERE id = 2", json.dumps(forged, sort_keys=True))
    before = store.read_bytes()
    rc, out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and f"results.sqlite row 2 (key '{key[:20]}'): checksum mismatch" in err, err
    assert "cycles" not in out and "Pareto" not in out and "latency" not in out
    assert store.read_bytes() == before                     # nothing changed without --repair
    rc, out, err = _sweep(tmp_path, monkeypatch, "--repair")
    assert rc == 0 and "row 2: deleted (checksum mismatch" in out, out + err
    again = _rows(store)
    assert again[key][1]["cycles"] == honest["cycles"] and again[key][0] == 3       # recomputed, nothing else
    assert "0.001 " not in out and "| 1 " not in out
    points = json.loads((tmp_path / "sw" / "points.json").read_text())
    assert {p["key"]: p["cycles"] for p in points}[key] == honest["cycles"]


def test_row_with_a_recomputed_checksum_but_bad_values_is_refused(tmp_path, monkeypatch):
    from archgen.sim.store import record_checksum
    rc, _out, _err = _sweep(tmp_path, monkeypatch)
    store = tmp_path / "sw" / "results.sqlite"
    key, (_i, rec, _c) = next(iter(_rows(store).items()))
    text = json.dumps(dict(rec, cycles=-5), sort_keys=True, separators=(",", ":"))
    _sql(store, "UPDATE points SET record = ?, checksum = ? WHERE key = ?", text,
         record_checksum(key, rec["model"], text), key)
    rc, out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and "row 1" in err and "'cycles' is not a finite non-negative number" in err


def test_foreign_and_truncated_stores(tmp_path, monkeypatch):
    from hostile_cases import _foreign_sqlite
    (tmp_path / "sw").mkdir()
    store = tmp_path / "sw" / "results.sqlite"
    foreign = _foreign_sqlite()
    store.write_bytes(foreign)
    rc, _out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and "results.sqlite: an SQLite database of another program, not an archgen sweep store" in err
    rc, _out, err = _sweep(tmp_path, monkeypatch, "--repair")
    assert rc == 2 and "--repair never overwrites it" in err
    assert store.read_bytes() == foreign and sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["results.sqlite"]
    store.write_text('{"archgen_sweep_store": 1}\n')                   # the JSONL store of older archgen
    rc, _out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and "not an SQLite database, so not an archgen sweep store" in err

    store.unlink()
    rc, _out, _err = _sweep(tmp_path, monkeypatch)
    good = store.read_bytes()
    store.write_bytes(good[: len(good) - 1000])
    rc, _out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and "results.sqlite: truncated or garbled" in err and "nothing from it was used" in err
    # garbled inside a row's bytes: the row's checksum refuses it
    garbled = bytearray(good)
    at = good.index(b'"cycles"')
    garbled[at: at + 12] = b"\xff" * 12
    store.write_bytes(bytes(garbled))
    rc, out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and re.search(r"results.sqlite row \d \(key '\w+'\): a column is not UTF-8 text", err), err
    assert "Pareto" not in out
    # garbled page structure, file header intact: SQLite's own check refuses it
    garbled = bytearray(good)
    page = int.from_bytes(good[16:18], "big")
    garbled[page: page + 12] = b"\xff" * 12
    store.write_bytes(bytes(garbled))
    rc, out, err = _sweep(tmp_path, monkeypatch)
    assert rc == 2 and "results.sqlite: corrupt: SQLite cannot read it" in err, err
    assert "Pareto" not in out
    # --repair rebuilds from what can be read and keeps the damaged file beside it
    rc, out, err = _sweep(tmp_path, monkeypatch, "--repair")
    assert rc == 0, err
    assert "kept as results.sqlite.damaged" in out or "deleted" in out
    assert len(_rows(store)) == 2


def test_failed_sweep_leaves_no_directory(tmp_path, monkeypatch):
    from archgen.sim import sweep
    (tmp_path / "s.yaml").write_text(GEMM)

    def boom(point):
        raise RuntimeError("model failure")
    monkeypatch.setattr(sweep, "evaluate_point", boom)
    with pytest.raises(RuntimeError):
        _run(["sweep", "s.yaml", "--workload", "gemm:8,8,8", "--out", "sw"], tmp_path, monkeypatch)
    assert not (tmp_path / "sw").exists()


# ---------------------------------------------------------------------------------------------
# traces

def test_trace_with_nan_or_negative_head_importance(tmp_path, monkeypatch):
    from archgen.workloads.trace import save_trace, synthetic_trace
    t = synthetic_trace(1, 2, 8, seed=1)
    save_trace(t, tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as d:
        arrays = {k: d[k] for k in d.files}
    for bad, value in (("nan.npz", np.nan), ("neg.npz", -1.0)):
        hi = arrays["head_importance"].copy()
        hi[0, 1] = value
        np.savez(tmp_path / bad, **dict(arrays, head_importance=hi))
        from archgen.arch.errors import SpecError
        from archgen.workloads.trace import load_trace
        with pytest.raises(SpecError, match=r"head_importance: must be finite and >= 0"):
            load_trace(tmp_path / bad)
