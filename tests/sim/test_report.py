import csv
import json

import pytest
from rich.console import Console

from archgen.sim.report import render_table, roofline_cycles, write_sim_report
from archgen.sim.results import LayerResult, RooflineViolation, totals

PEAK, BPC = 256, 16.0


def _result(name, macs, dram, cycles=None, energy=None):
    bound = roofline_cycles(macs, sum(dram.values()), PEAK, BPC)
    cycles = bound * 1.25 if cycles is None else cycles
    return LayerResult(name, "gemm", macs, cycles, cycles * 1.0, macs / (PEAK * cycles), dram_bytes=dram,
                       sram_accesses={"gbuf": macs // 8}, energy_pj=energy or {"mac": macs * 0.3, "dram": 100.0},
                       roofline_cycles=bound, extra={"tokens_kept": 12})


@pytest.fixture
def results():
    return [_result("fc1", 1 << 20, {"A.read": 4096, "B.read": 32768, "C.write": 4096}),
            _result("fc2", 1 << 16, {"A.read": 65536, "C.write": 65536}),
            _result("softmax", 0, {"S.read": 1024, "S.write": 1024}, cycles=128.0, energy={"softmax": 3.0})]


def test_roofline_cycles():
    assert roofline_cycles(1000, 10, 10, 1) == 100
    assert roofline_cycles(1000, 1000, 10, 1) == 1000
    with pytest.raises(ValueError):
        roofline_cycles(1, 1, 0, 1)


def test_result_may_not_beat_roofline():
    with pytest.raises(RooflineViolation, match="beats its roofline"):
        LayerResult("x", "gemm", 1000, 5.0, 5.0, 1.0, roofline_cycles=10.0)
    with pytest.raises(ValueError, match="read or .write"):
        LayerResult("x", "gemm", 1, 1.0, 1.0, 1.0, dram_bytes={"A": 3})


def test_report_files(tmp_path, results):
    paths = write_sim_report(results, tmp_path, design="os16", clock_mhz=1000, peak_macs_per_cycle=PEAK,
                             dram_bytes_per_cycle=BPC)
    doc = json.loads(paths["json"].read_text())
    assert [l["layer"] for l in doc["layers"]] == ["fc1", "fc2", "softmax"]
    assert doc["layers"][0]["bound"] == "compute" and doc["layers"][1]["bound"] == "memory"
    assert doc["total"]["macs"] == (1 << 20) + (1 << 16)
    assert doc["total"]["dram_bytes"] == totals(results)["dram_bytes"]
    assert doc["units"]["energy_pj"] == "pJ"
    with paths["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert {"cycles", "time_ns", "dram_bytes", "energy_pj", "dram_bytes.A.read", "energy_pj.mac",
            "extra.tokens_kept"} <= set(rows[0])
    assert int(rows[1]["dram_bytes"]) == 65536 * 2
    assert float(rows[2]["energy_pj.softmax"]) == 3.0
    for key in ("roofline_png", "energy_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_is_deterministic(tmp_path, results):
    kw = dict(design="d", clock_mhz=500, peak_macs_per_cycle=PEAK, dram_bytes_per_cycle=BPC)
    a = write_sim_report(results, tmp_path / "a", **kw)
    b = write_sim_report(results, tmp_path / "b", **kw)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_render_table_has_total_row(results):
    console = Console(width=200, record=True)
    console.print(render_table(results))
    text = console.export_text()
    assert "fc1" in text and "softmax" in text
    total_line = [l for l in text.splitlines() if "total" in l][0]
    assert f"{(1 << 20) + (1 << 16):,}" in total_line
    assert "energy" in text and "(pJ)" in text and "(bytes)" in text


def test_tables_keep_every_number_on_one_line_at_the_cli_width(results):
    """Off a terminal the CLI prints 160 columns wide: no number of the per-layer or the memory-system
    table may fold onto a second line (a folded number reads as two)."""
    import re

    from archgen.sim.memory_report import render_memory_table

    for table in (render_table(results), render_memory_table(results)):
        console = Console(width=160, record=True)
        console.print(table)
        text = console.export_text()
        lines = text.splitlines()
        total = [l for l in lines if l.lstrip().startswith("total")][0]
        numbers = re.findall(r"[0-9][0-9,.]*", total)
        assert numbers and all(not n.endswith(",") for n in numbers), total
        # each row is one line: as many body lines as rows (layers + total) between header rule and end
        body = [l for l in lines if any(l.lstrip().startswith(r.name) for r in results) or "total" in l]
        assert len(body) == len(results) + 1, text
