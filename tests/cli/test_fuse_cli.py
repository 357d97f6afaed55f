"""``archgen build/verify --fuse`` and the spec's ``fuse:`` list through the CLI entry point: what a fused
build writes, and bad fuse lists refused by field with exit 2 before anything is written."""
import json

import pytest

from tests.conftest import run_cli


def test_build_fused_writes_verilog_and_a_manifest_with_the_select(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_fused", "--set", "array.shape=2x2", "-o", "o"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused dataflows os, ws, is" in out and "0 = os, 1 = ws, 2 = is" in out
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    cmd = next(i for i in man["interfaces"] if i["name"] == "cmd")
    assert [f["name"] for f in cmd["fields"]][-1] == "dataflow"
    assert man["parameters"]["fused"] == ["os", "ws", "is"]
    assert man["fusion"]["select_muxes"] > 0
    assert {p["name"] for p in man["ports"]} >= {"cmd__payload", "in_A__payload", "out_C__payload", "done"}


def test_dataflow_builds_one_single_design_of_a_fused_spec(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_fused", "--set", "array.shape=2x2", "--dataflow", "ws", "-o", "o"],
                           tmp_path, monkeypatch)
    assert rc == 0, err
    assert "dataflow ws" in out


def test_fuse_flag_borrows_a_dataflow_of_another_spec(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_os", "--set", "array.shape=2x2", "--fuse", "os,gemm_is:is", "-o", "o"],
                           tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused dataflows os, is" in out


@pytest.mark.parametrize("argv,line", [
    (["build", "gemm_fused", "--fuse", "os,xs"], "--fuse: no dataflow named 'xs' in spec 'gemm_fused'"),
    (["build", "gemm_fused", "--fuse", "os"], "--fuse: fusion needs at least two dataflows"),
    (["build", "gemm_fused", "--fuse", "os,os"], "--fuse: dataflow(s) os listed twice"),
    (["build", "gemm_fused", "--fuse", "os,ws", "--dataflow", "os"], "--fuse: give --fuse (one fused design) or"),
    (["build", "gemm_os", "--fuse", "os,conv_ws:ws"], "--fuse: dataflow 'ws' of spec 'conv_ws' computes"),
    (["build", "gemm_os", "--fuse", "os,gemm_os3d:os3d"], "--fuse: dataflow 'os3d' of spec 'gemm_os3d' on this array"),
    (["build", "gemm_os", "--fuse", "os,gemm_ws:zz"], "--fuse: spec 'gemm_ws' has no dataflow named 'zz'"),
    (["build", "gemm_fused", "--set", "fuse=[os,xs]"], "fuse.1: no dataflow of that name"),
    (["verify", "gemm_fused", "--fuse", "os,ws", "--dataflow", "is"],
     "--dataflow: dataflow 'is' is not fused in this design"),
    (["build", "spatten_small", "--fuse", "os,ws"], "--fuse"),
])
def test_bad_fuse_lists_are_refused_by_field(argv, line, tmp_path, monkeypatch):
    rc, out, err = run_cli(argv + ["-o", "o"] if argv[0] == "build" else argv, tmp_path, monkeypatch)
    assert rc == 2, (out, err)
    assert line in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_sim_of_a_fused_spec_picks_a_dataflow_per_layer(tmp_path, monkeypatch):
    rc, out, err = run_cli(["sim", "gemm_fused", "--workload", "resnet50", "--objective", "latency", "--out", "r"],
                           tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused design (os, ws, is)" in out and "--objective latency" in out
    rows = json.loads((tmp_path / "r" / "sim.json").read_text())["layers"]
    chosen = {r["extra"]["dataflow"] for r in rows}
    assert len(chosen) > 1 and chosen <= {"os", "ws", "is"}
    rc, single, err = run_cli(["sim", "gemm_fused", "--workload", "resnet50", "--dataflow", "os"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused design" not in single


def test_build_and_sim_of_a_skewed_map_fused_with_os(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_fused_hex", "--set", "array.shape=2x3", "-o", "o"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused dataflows os, hex" in out and "0 = os, 1 = hex" in out
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    hexm = man["parameters"]["dataflows"]["hex"]
    assert hexm["select"] == 1 and hexm["stt"] == [[1, 0, -1], [0, 1, -1], [1, 1, 1]]
    assert {o["operand"] for o in hexm["operands"]} == {"A", "B", "C"}
    rc, out, err = run_cli(["sim", "gemm_fused_hex", "--workload", "gemm:5,6,3", "--ideal-dram", "--objective",
                            "latency", "--out", "r"], tmp_path, monkeypatch)
    assert rc == 0, err
    rows = json.loads((tmp_path / "r" / "sim.json").read_text())["layers"]
    assert rows[0]["extra"]["dataflow"] in {"os", "hex"}


@pytest.mark.slow
@pytest.mark.verilator
def test_verify_runs_a_fused_designs_skewed_map_through_its_memory_system(tmp_path, monkeypatch):
    """Without --ideal-dram the hex map of gemm_fused_hex runs on its one programmable stt core around the fused
    array (select = hex), the os map through the tiled layer core: both exact, RTL cycles == model cycles."""
    rc, out, err = run_cli(["verify", "gemm_fused_hex", "--set", "array.shape=3x5", "--gemm", "7,5,6"], tmp_path,
                           monkeypatch)
    assert rc == 0, (out, err)
    assert out.count("outputs: exact") == 2 and out.count("(equal)") == 2
    assert "the one run-time programmable build" in out


def test_build_of_skewed_maps_only_fused(tmp_path, monkeypatch):
    """A fuse list of skewed stt maps only is built (it was refused until 2026-12-05: `--fuse: every listed
    dataflow is a skewed stt map; ...`): one fused array, the select choosing the map."""
    rc, out, err = run_cli(["build", "gemm_hex", "--set", "array.shape=2x3", "--fuse", "hex,gemm_hex:hex", "-o", "o"],
                           tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused dataflows hex, gemm_hex_hex" in out and "0 = hex, 1 = gemm_hex_hex" in out
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert set(man["parameters"]["dataflows"]) == {"hex", "gemm_hex_hex"}


def test_build_of_a_folded_map_fused_beside_tiled_dataflows(tmp_path, monkeypatch):
    """A folded map (2x3 run as 1x6) fused with WS and OS on the 2x3 array, refused until 2026-12-05 (`... it is a
    folded array; ... fused with them it is not`): built, the manifest gives the map its logical array and
    placement; the report's cycles (synthesis aside) are each dataflow's fused and single design's, the folded
    map's single design being the one on its logical array."""
    import yaml

    from archgen.arch.spec import load_spec
    from archgen.dataflow.compile import compile_fused
    from archgen.fusion_cli import fusion_report
    from archgen.rtlgen.fused_array import fused_verilog
    from tests.verif.test_fused import FOLDED_FUSED
    spec = dict(FOLDED_FUSED)
    spec.pop("fuse")
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(spec))
    rc, out, err = run_cli(["build", "f.yaml", "--fuse", "ws,m,os", "-o", "o"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "fused dataflows ws, m, os" in out and "1 = m" in out
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())["parameters"]["dataflows"]["m"]
    assert m["array_shape"] == [1, 6] and len(m["placement"]) == 6
    assert sorted(tuple(ph) for _, ph in m["placement"]) == [(a, b) for a in range(2) for b in range(3)]
    design = load_spec(tmp_path / "f.yaml")
    fused = compile_fused(design, ["ws", "m", "os"])
    text, top = fused_verilog(fused)
    report = fusion_report(fused, text, top, synth=False)
    assert set(report["cycles"]) == {"ws", "m", "os"}
    for c in report["cycles"].values():
        assert c["fused"] > 0 and c["single"] > 0
