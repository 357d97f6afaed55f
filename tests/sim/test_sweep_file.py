"""Sweep files: schema and semantic checks with field-named problems, axis expansion, the shipped
examples, and the outputs of a whole sweep (table, CSV, JSON, plots; deterministic)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli as _run

from archgen.arch.errors import SpecError
from archgen.sim.sweep_file import is_sweep_file, read_sweep_file, sweep_points

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

HEAD = "version: 1\nkind: sweep\nbase: gemm_os.yaml\n"


def _file(tmp_path, text, name="s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _problems(tmp_path, text) -> str:
    with pytest.raises(SpecError) as err:
        read_sweep_file(_file(tmp_path, text))
    return str(err.value)


def test_examples_read_and_expand():
    shared = read_sweep_file(EXAMPLES / "shared_shape_sweep.yaml")
    assert shared.n_points == 500 and len(sweep_points(shared)) == 500
    bw = dict(shared.axes)["dram.bandwidth_gbps"]
    assert bw[:3] == ("2", "4", "6") and bw[-1] == "50" and len(bw) == 25
    df = read_sweep_file(EXAMPLES / "dataflow_sweep.yaml")
    points = sweep_points(df)
    assert len(points) == 4 * 3 * 2 * 3 * 2
    assert Path(points[0].spec) == EXAMPLES / "gemm_dataflows.yaml"
    assert points[0].overrides == ("array.shape=2x2", "types.A=int8", "types.B=int8", "types.C=int32",
                                   "dram.bandwidth_gbps=8")
    assert {p.dataflow for p in points} == {"os", "ws", "is"}
    assert "array.shape=16x16" in points[-1].overrides
    cnn = read_sweep_file(EXAMPLES / "cnn_sweep.yaml")
    assert cnn.workloads[0] == (f"scalesim:{(EXAMPLES / 'tiny_cnn_topology.csv').resolve()}", None)
    assert cnn.objectives == ("latency", "energy", "edp")
    buf = sweep_points(read_sweep_file(EXAMPLES / "buffer_sweep.yaml"))
    assert len(buf) == 240 and {p.mapper for p in buf} == {"heuristic", "search"}
    assert buf[0].overrides == ("array.shape=8x8", "memory.A.bytes=4096", "memory.C.bytes=8192",
                                "memory.dram.width_bytes=8")


def test_ranges_lists_and_values(tmp_path):
    sf = read_sweep_file(_file(tmp_path, HEAD + "axes:\n  clock_mhz: {from: 400, to: 500, step: 50}\n"
                               "  dram.bandwidth_gbps: {from: 0.5, to: 1.5, step: 0.25}\n"
                               "  array.shape: {values: [[2, 2], 4x4]}\nworkloads: ['gemm:4,4,4']\n"))
    axes = dict(sf.axes)
    assert axes["clock_mhz"] == ("400", "450", "500")
    assert axes["dram.bandwidth_gbps"] == ("0.5", "0.75", "1", "1.25", "1.5")
    assert axes["array.shape"] == ("2x2", "4x4")
    assert sf.objectives == ("latency", "energy", "area") and sf.n_points == 30


def test_unknown_axis_is_refused_with_the_axes_that_exist(tmp_path):
    msg = _problems(tmp_path, HEAD + "axes:\n  buffers.A.bytes: [1024]\n  clock: [500]\nworkloads: ['gemm:4,4,4']\n")
    assert "axes.buffers.A.bytes: not an axis a sweep can vary (buffer sizes are memory.<operand>.bytes)" in msg
    assert "axes.clock: not an axis a sweep can vary; did you mean 'clock_mhz'?" in msg


@pytest.mark.parametrize("text, expected", [
    (HEAD + "axes:\n  clock_mhz: {from: 5, to: 1, step: 1}\nworkloads: ['gemm:4,4,4']\n",
     "axes.clock_mhz: 'to' (1) is below 'from' (5)"),
    (HEAD + "axes:\n  clock_mhz: {from: 1, to: 5}\nworkloads: ['gemm:4,4,4']\n",
     "axes.clock_mhz: an axis is a list of values, {values: [...]}, or a range"),
    (HEAD + "axes:\n  clock_mhz: {from: 1, to: 1000000, step: 1}\nworkloads: ['gemm:4,4,4']\n",
     "axes.clock_mhz: the range has 1,000,000 values; an axis has at most 10,000"),
    (HEAD + "axes:\n  clock_mhz: [500, 500]\nworkloads: ['gemm:4,4,4']\n", "axes.clock_mhz.1: this value appears twice"),
    (HEAD + "axes:\n  clock_mhz: [[1, 2]]\nworkloads: ['gemm:4,4,4']\n", "axes.clock_mhz.0: must be the clock target"),
    (HEAD + "axes:\n  types: [int8]\nworkloads: ['gemm:4,4,4']\n", "axes.types.0: a mapping of operand data types"),
    (HEAD + "workloads: [{scalesim: nope.csv}]\n", "workloads.0: no such SCALE-Sim topology file"),
    (HEAD + "workloads: [{bogus: 1}]\n", "workloads.0: a workload is a name"),
    (HEAD + "workloads: []\n", "workloads: must have at least 1 entries"),
    (HEAD + "workloads: ['gemm:4,4,4', 'gemm:4,4,4']\n", "workloads.1: this workload appears twice"),
    (HEAD + "workloads: ['gemm:4,4,4']\nobjectives: [latency, speed]\n", "objectives.1: must be one of"),
    (HEAD + "workloads: ['gemm:4,4,4']\naxis: {}\n", "axis: unknown key; did you mean 'axes'?"),
    (HEAD.replace("version: 1", "version: 2") + "workloads: ['gemm:4,4,4']\n", "version: only sweep file version 1"),
    (HEAD + "workloads: ['gemm:4,4,4']\nset: {array.shape: [1, [2]]}\n", "set.array.shape: must be a number or text"),
    ("- 1\n- 2\n", "a sweep file is a YAML mapping"),
    (HEAD + "workloads: [gemm:4,4,4]\n", "workloads.0: YAML splits gemm:4,4,4 at its commas inside [...]; quote it"),
])
def test_bad_sweep_files_name_the_field(tmp_path, text, expected):
    assert expected in _problems(tmp_path, text)


def test_too_many_points(tmp_path):
    msg = _problems(tmp_path, HEAD + "axes:\n  clock_mhz: {from: 1, to: 1000, step: 1}\n"
                    "  dram.bandwidth_gbps: {from: 1, to: 1001, step: 1}\nworkloads: ['gemm:4,4,4']\n")
    assert "axes: 1,001,000 design points; a sweep has at most 1,000,000" in msg


def test_is_sweep_file(tmp_path):
    assert is_sweep_file(EXAMPLES / "shared_shape_sweep.yaml")
    assert not is_sweep_file(EXAMPLES / "gemm_dataflows.yaml") and not is_sweep_file("gemm_os.yaml")
    assert not is_sweep_file(_file(tmp_path, "a: [", "broken.yaml"))


SMALL = HEAD + """axes:
  array.shape: [2x2, 4x4]
  dram.bandwidth_gbps: [4, 16]
workloads: ["gemm:8,8,8", {name: bert-base, seq: 8}]
objectives: [latency, energy, edp]
"""


def test_sweep_file_end_to_end_outputs_are_deterministic(tmp_path, monkeypatch):
    _file(tmp_path, SMALL)
    rc, out, err = _run(["sweep", "s.yaml", "--out", "a"], tmp_path, monkeypatch)
    assert rc == 0 and err == "", err                   # no progress bar when stderr is not a terminal
    assert "sweep: 8 design point(s)" in out and "Pareto front on latency, energy, edp" in out
    assert "latency (us)" in out and "energy (uJ)" in out and "EDP (uJ*ms)" in out
    rc, _out, err = _run(["sweep", "s.yaml", "--out", "b"], tmp_path, monkeypatch)
    assert rc == 0, err
    names = ["points.csv", "points.json", "pareto.csv", "pareto.json", "pareto.png", "sensitivity.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = json.loads((tmp_path / "a" / "points.json").read_text())
    assert len(points) == 8 and {p["workload"] for p in points} == {"gemm:8,8,8", "bert-base"}
    csv_lines = (tmp_path / "a" / "points.csv").read_text().splitlines()
    assert csv_lines[0].startswith("key,spec,overrides,dataflow,mapper,workload,seq,fus,clock_mhz,cycles,time_ns")
    assert len(csv_lines) == 9
    front = json.loads((tmp_path / "a" / "pareto.json").read_text())       # designs, totals over 2 workloads
    assert 1 <= len(front) <= 4 and all(len(d["points"]) == 2 for d in front)
    assert sum(line.endswith(",True") for line in csv_lines) == 2 * len(front)
    by_key = {p["key"]: p for p in points}
    for d in front:
        assert d["time_ns"] == pytest.approx(sum(by_key[k]["time_ns"] for k in d["points"]))
    # a rerun computes nothing
    rc, out, _err = _run(["sweep", "s.yaml", "--out", "a"], tmp_path, monkeypatch)
    assert rc == 0 and "0 point(s) computed" in out and "8 taken from the store" in out


@pytest.mark.parametrize("text, argv, expected", [
    (SMALL, ["--vary", "clock_mhz=1,2"], "--vary: the sweep file names its axes"),
    (SMALL, ["--workload", "gemm:1,1,1"], "--workload: the sweep file names its axes"),
    (HEAD + "axes:\n  array.shape: [[0, 4]]\nworkloads: ['gemm:4,4,4']\n", [],
     "array.shape=0x4: array.shape: every array dimension must be at least 1"),
    (HEAD + "axes:\n  dataflow: [os, nope]\nworkloads: ['gemm:4,4,4']\n", [], "dataflow: no dataflow named 'nope'"),
    (HEAD + "workloads: [nosuchmodel]\n", [], "workload: unknown workload"),
    (HEAD + "axes:\n  types.A: [int99]\nworkloads: ['gemm:4,4,4']\n", [], "types.A: data types are intN"),
])
def test_bad_sweeps_are_refused_before_any_point_runs(tmp_path, monkeypatch, text, argv, expected):
    _file(tmp_path, text)
    rc, out, err = _run(["sweep", "s.yaml", "--out", "o", *argv], tmp_path, monkeypatch)
    assert rc == 2 and expected in err, err
    assert not (tmp_path / "o").exists() and "Traceback" not in err


def test_vary_form_takes_objectives(tmp_path, monkeypatch):
    rc, out, err = _run(["sweep", "gemm_os.yaml", "--workload", "gemm:8,8,8", "--vary", "clock_mhz=400,800",
                         "--objectives", "latency,edp", "--out", "o", "--no-plots"], tmp_path, monkeypatch)
    assert rc == 0 and "Pareto front on latency, edp: 1 of 2 designs" in out, err
    assert not (tmp_path / "o" / "pareto.png").exists()
    rc, _out, err = _run(["sweep", "gemm_os.yaml", "--workload", "gemm:8,8,8", "--objectives", "speed",
                          "--out", "o"], tmp_path, monkeypatch)
    assert rc == 2 and "--objectives: two or more distinct names" in err
    rc, _out, err = _run(["sweep", "gemm_os.yaml", "--out", "o2"], tmp_path, monkeypatch)
    assert rc == 2 and "--workload: a sweep over a spec needs --workload" in err


def test_onnx_and_scalesim_workloads_in_a_sweep(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])
    w = numpy_helper.from_array(np.zeros((16, 8), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g", [x], [y], [w])
    onnx.save(helper.make_model(graph), str(tmp_path / "fc.onnx"))
    (tmp_path / "t.csv").write_text("Layer, M, N, K,\nfc, 4, 8, 16,\n")
    _file(tmp_path, HEAD + "axes:\n  clock_mhz: [400, 800]\nworkloads: [fc.onnx, {scalesim: t.csv}]\n")
    rc, out, err = _run(["sweep", "s.yaml", "--out", "o", "--no-plots"], tmp_path, monkeypatch)
    assert rc == 0, err
    points = json.loads((tmp_path / "o" / "points.json").read_text())
    by_wl = {}
    for p in points:
        by_wl.setdefault(p["workload"].split(":")[0], []).append(p["cycles"])
    assert by_wl["onnx"] == by_wl["scalesim"]           # the same 4x16x8 GEMM through both formats
    # the key follows the file's content: editing the topology recomputes its points only
    (tmp_path / "t.csv").write_text("Layer, M, N, K,\nfc, 4, 8, 32,\n")
    rc, out, err = _run(["sweep", "s.yaml", "--out", "o", "--no-plots"], tmp_path, monkeypatch)
    assert rc == 0 and "2 point(s) computed" in out and "2 taken from the store" in out, out + err


def test_progress_bar_counts_points_and_rate(capsys):
    from archgen.sim.sweep_cli import _Progress
    bar = _Progress(True)
    bar.start(10, 4)
    assert bar.bar.tasks[0].completed == 4 and bar.bar.tasks[0].total == 10
    bar.advance({})
    assert bar.bar.tasks[0].completed == 5 and bar.bar.tasks[0].fields["rate"].endswith("points/s")
    bar.stop()
    quiet = _Progress(False)
    quiet.start(10, 0)
    quiet.advance({})
    assert quiet.bar is None


@pytest.mark.parametrize("out, expected", [
    ("f", "--out: exists and is not a directory"),
    ("f/sub", "is a file, so no directory can be made below it"),
    ("/proc/archgen-sweep", "is inside /proc, a system directory"),
])
def test_out_must_be_a_writable_directory(tmp_path, monkeypatch, out, expected):
    _file(tmp_path, SMALL)
    (tmp_path / "f").write_text("x")
    before = set(tmp_path.rglob("*"))
    rc, _out, err = _run(["sweep", "s.yaml", "--out", out], tmp_path, monkeypatch)
    assert rc == 2 and expected in err and "Traceback" not in err, err
    assert set(tmp_path.rglob("*")) == before


def test_buffer_dram_and_mapper_axes(tmp_path):
    sf = read_sweep_file(_file(tmp_path, HEAD + "axes:\n  memory.A.bytes: {from: 4096, to: 12288, step: 4096}\n"
                               "  memory.dram.width_bytes: [8, 32]\n  mapper: [heuristic, search]\n"
                               "workloads: ['gemm:16,16,16']\n"))
    assert dict(sf.axes)["memory.A.bytes"] == ("4096", "8192", "12288") and sf.n_points == 12
    points = sweep_points(sf)
    assert {p.mapper for p in points} == {"heuristic", "search"}
    assert len({p.key() for p in points}) == 12          # the mapper is part of a point's key
    assert "memory.A.bytes=8192" in points[4].overrides and "memory.dram.width_bytes=32" in points[2].overrides
    msg = _problems(tmp_path, HEAD + "axes:\n  mapper: [greedy]\n  memory.A.byte: [1]\nworkloads: ['gemm:4,4,4']\n")
    assert "axes.mapper.0: must be the layer mapper" in msg and "axes.memory.A.byte: not an axis" in msg


def test_sweep_with_buffer_and_mapper_axes_runs(tmp_path):
    from archgen.sim.sweep import run_sweep
    sf = read_sweep_file(_file(tmp_path, HEAD + "axes:\n  memory.A.bytes: [1024, 8192]\n"
                               "  mapper: [heuristic, search]\nworkloads: ['gemm:24,40,24']\n"))
    recs = run_sweep(sweep_points(sf), tmp_path / "out")
    assert len(recs) == 4 and {r["mapper"] for r in recs} == {"heuristic", "search"}
    by = {(r["overrides"][-1], r["mapper"]): r for r in recs}
    for size in ("memory.A.bytes=1024", "memory.A.bytes=8192"):   # search is judged on EDP: never worse
        assert by[(size, "search")]["edp_pj_ns"] <= by[(size, "heuristic")]["edp_pj_ns"] * (1 + 1e-12)
