"""``archgen build FUSED_SPEC --memory``: the fused array with its memory system (issue 14). Tiled dataflows share
ONE layer core (rtlgen/fused_layer.py), the dataflow selected per layer command; a skewed map beside them gets its
own stt core around the same fused array (two builds, said so). Before, --memory was silently ignored and only the
array was written."""
import hashlib
import json

import pytest

from tests.conftest import run_cli

SMALL = ["array.shape=2x2", "memory.dram.width_bytes=8", "memory.dram.latency=5", "memory.dram.burst_bytes=16",
         "memory.dram.outstanding=2", "memory.A.bytes=256", "memory.B.bytes=256", "memory.C.bytes=1024"]
SETS = [a for s in SMALL for a in ("--set", s)]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fused_build_memory_writes_one_layer_core_with_the_select(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "-o", "a"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "ONE layer core, the dataflow selected per layer command" in out
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["gemm_fused_layer.v", "layer_manifest.json"]
    text = (tmp_path / "a" / "gemm_fused_layer.v").read_text()
    head = text[text.index("module gemm_fused_layer(") + len("module gemm_fused_layer("):].split(");", 1)[0]
    ports = {p.strip() for p in head.split(",")}
    for port in ("go", "finished", "desc_we", "desc_addr", "desc_b", "desc_s", "rd_req_valid", "rd_req_addr",
                 "rd_rsp_data", "wr_valid", "wr_data"):
        assert port in ports, port
    man = json.loads((tmp_path / "a" / "layer_manifest.json").read_text())
    assert man["one_core"] is True and man["memory_system_builds"] == 1
    core = man["builds"]["os+ws+is"]
    assert core["select"]["encoding"] == {"os": 0, "ws": 1, "is": 2}
    b_fields = [f["name"] for f in core["descriptor_tables"]["B"]["fields"]]
    assert b_fields[-1] == "dataflow"
    # spec-size buffers: 256 B of A in 8 banks x 2 halves = 16 words per half per bank, 32 in all
    assert core["buffers"]["A"] == {"banks": 8, "words_per_bank": 32, "bits": 8, "halves": 2, "copies": 1}
    assert core["buffers"]["C"]["copies"] == 3           # ws/is psum port, write-back, add-on
    assert core["array_ports_walked"]["os"] == ["in_A", "in_B", "out_C"]
    assert "psum_C" in core["array_ports_walked"]["ws"]
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "-o", "b"], tmp_path, monkeypatch)
    assert rc == 0, err
    for f in ("gemm_fused_layer.v", "layer_manifest.json"):
        assert _sha(tmp_path / "a" / f) == _sha(tmp_path / "b" / f)      # deterministic bytes


def test_fused_build_memory_with_other_options(tmp_path, monkeypatch):
    """--no-pipeline is applied (the fused array's LP pipelining off: a different core), --dataflow builds the
    single design's layer core, --explain prints and builds, --fuse with --dataflow is refused."""
    fast = ["--set", "clock_mhz=1500"]           # a clock the LP pipelines for (at 500 MHz 2x2 needs no register)
    rc, _o, err = run_cli(["build", "gemm_fused", *SETS, *fast, "--memory", "-o", "p"], tmp_path, monkeypatch)
    assert rc == 0, err
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, *fast, "--memory", "--no-pipeline", "-o", "n"], tmp_path,
                           monkeypatch)
    assert rc == 0, err
    assert _sha(tmp_path / "p" / "gemm_fused_layer.v") != _sha(tmp_path / "n" / "gemm_fused_layer.v")
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "--dataflow", "ws", "-o", "w"], tmp_path,
                           monkeypatch)
    assert rc == 0, err
    assert "dataflow ws" in out and (tmp_path / "w" / "gemm_fused_layer.v").exists()
    assert "one_core" not in json.loads((tmp_path / "w" / "layer_manifest.json").read_text())
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "--explain", "-o", "e"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "ONE layer core" in out and "dataflow os" in out.lower()
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "--fuse", "os,ws", "--dataflow", "ws"],
                           tmp_path, monkeypatch)
    assert rc == 2 and "--fuse: give --fuse (one fused design) or --dataflow" in err


@pytest.mark.verilator
@pytest.mark.parametrize("dataflow, tile, order", [
    ("ws", {"j": 1, "k": 1}, ("j", "k")),          # the default case: not the core's first dataflow, split k
    pytest.param("os", {"i": 1, "j": 1}, ("j", "i"), marks=pytest.mark.slow),
    pytest.param("is", {"i": 1, "k": 1}, ("i", "k"), marks=pytest.mark.slow),
])
def test_the_built_fused_core_runs_a_layer_of_each_dataflow(dataflow, tile, order, tmp_path, monkeypatch):
    """The core ``build --memory`` writes (byte for byte) inside a testbench DRAM and host: a layer of the
    dataflow, its command written with the select, exact outputs and RTL cycles == the fused view's model."""
    from archgen.arch.spec import load_spec
    from archgen.dataflow.compile import compile_fused
    from archgen.rtlgen.build import fused_layer_core_verilog
    from archgen.verif.layer_check import verify_layer
    rc, _o, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "-o", "a"], tmp_path, monkeypatch)
    assert rc == 0, err
    d = load_spec("gemm_fused", SMALL)
    text, _top, _m = fused_layer_core_verilog(compile_fused(d, d.fuse))       # what verify_layer(one_core) runs
    assert text == (tmp_path / "a" / "gemm_fused_layer.v").read_text()
    res = verify_layer(d, {"i": 5, "k": 4, "j": 6}, dataflow=dataflow, fuse=d.fuse, one_core=True, seed=3,
                       tile=tile, order=order)
    assert res.detail["blocks"] == (6 if dataflow != "os" else 9)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    assert res.ok


@pytest.mark.slow
def test_fused_build_memory_with_a_skewed_map_writes_two_builds(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_fused_hex", "--set", "array.shape=3x5", "--memory", "-o", "h"], tmp_path,
                           monkeypatch)
    assert rc == 0, err
    assert "2 memory-system builds around one fused array, NOT one core" in out
    man = json.loads((tmp_path / "h" / "layer_manifest.json").read_text())
    assert man["one_core"] is False and set(man["builds"]) == {"os", "hex"}
    assert man["builds"]["hex"]["file"] == "gemm_fused_hex_hex_stt_layer.v"
    assert man["builds"]["os"]["file"] == "gemm_fused_hex_os_layer.v"
    assert man["builds"]["hex"]["array_command_tied"]["dataflow"] == 1
    assert man["builds"]["os"]["array_command_tied"]["dataflow"] == 0
    for b in man["builds"].values():
        assert (tmp_path / "h" / b["file"]).exists()


def test_one_core_refuses_programs_planned_apart():
    """The shared buffers need one position space, which ``fused_layer_programs`` plans every dataflow on (the core's
    banks; tests/dataflow/test_fused_shared_layout.py): programs whose buffer halves differ anyway were planned
    apart, a caller's error (no spec reaches it), not built (banks may differ: tests/verif/test_fused_layer_writes.py)."""
    import dataclasses

    from archgen.arch.spec import load_spec
    from archgen.dataflow.compile import compile_fused
    from archgen.rtlgen.fused_layer import FusedLayerCore, fused_layer_programs
    d = load_spec("gemm_fused", SMALL)
    fused = compile_fused(d, d.fuse)
    progs = fused_layer_programs(fused)
    assert progs["os"].layouts == progs["ws"].layouts == progs["is"].layouts
    lay = progs["ws"].layouts["B"]
    half = dataclasses.replace(lay, half_elems=lay.half_elems // 2)
    progs["ws"] = dataclasses.replace(progs["ws"], layouts={**progs["ws"].layouts, "B": half})
    with pytest.raises(ValueError, match=r"the programs of os and ws have different buffer positions"):
        FusedLayerCore(fused, progs)


@pytest.mark.slow
def test_fused_build_memory_report_synthesizes_the_one_core(tmp_path, monkeypatch):
    """--report runs layer_core_report on the core (here Yosys only: nextpnr takes 15-30 min)."""
    import archgen.rtlgen.build as build
    real = build.layer_core_report
    monkeypatch.setattr(build, "layer_core_report", lambda text, top, mhz: real(text, top, mhz, pnr=False))
    rc, out, err = run_cli(["build", "gemm_fused", *SETS, "--memory", "--report", "-o", "r"], tmp_path, monkeypatch)
    assert rc == 0, err
    rep = json.loads((tmp_path / "r" / "layer_report.json").read_text())
    assert set(rep) == {"os+ws+is"}
    assert rep["os+ws+is"]["yosys_cells"] > 0 and "yosys (synth_ecp5):" in out


@pytest.mark.parametrize("spec, shape, dataflow, expect", [
    ("gemm_fused", "2x2", None, ("program", ["os", "ws", "is"])),   # three tiled dataflows: ONE core, one run
    ("gemm_fused", "2x2", "ws", ("program", ["ws"])),
    ("gemm_fused_hex", "3x5", "os", ("layer", ["os"])),             # a lone tiled dataflow beside a map
])
def test_verify_runs_fused_layers_on_the_core_build_memory_writes(spec, shape, dataflow, expect, monkeypatch):
    """`verify FUSED` through the memory system runs the tiled dataflows on the one layer core that
    `build --memory` writes, one after another in one simulation (before: each on a core of its own)."""
    import argparse

    import archgen.verif.fused_program_check as fp
    import archgen.verif.layer_check as lc
    from archgen.arch.spec import load_spec
    from archgen.fusion_cli import verify_fused_cli
    seen = []

    class Stop(Exception):
        pass

    def program(design, layers, **kw):
        seen.append(("program", [n for n, _b in layers]))
        raise Stop

    def layer(design, bounds, **kw):
        seen.append(("layer", [kw["dataflow"]]))
        raise Stop

    monkeypatch.setattr(fp, "verify_fused_program", program)
    monkeypatch.setattr(lc, "verify_layer", layer)
    d = load_spec(spec, [f"array.shape={shape}"])
    lines = []
    con = argparse.Namespace(print=lambda text, markup=False: lines.append(text))
    with pytest.raises(Stop):
        verify_fused_cli(argparse.Namespace(dataflow=dataflow, ideal_dram=False, seed=1), d, tuple(d.fuse),
                         {"i": 4, "k": 4, "j": 4}, con)
    assert seen == [expect]
    assert ("the one layer core of `build --memory`" in lines[0]) == (expect[0] == "program")
    # several dataflows run one after another in one simulation; one dataflow alone is not said to
    assert ("one after another in ONE simulation" in lines[0]) == (expect[0] == "program" and len(expect[1]) > 1)


@pytest.mark.verilator
def test_one_core_runs_layers_of_alternating_dataflows_in_one_simulation():
    """Issue 14: the command selects the dataflow at run time, with no rebuild. Layers of os, ws, is and ws
    again, several blocks each, back to back on the one core `build --memory` writes: exact outputs, RTL
    cycles == model cycles and DMA bytes == model bytes for each layer."""
    from archgen.arch.spec import load_spec
    from archgen.verif.fused_program_check import verify_fused_program
    d = load_spec("gemm_fused", SMALL)
    layers = [("os", {"i": 9, "k": 20, "j": 7}), ("ws", {"i": 7, "k": 19, "j": 23}), ("is", {"i": 10, "k": 26, "j": 5}),
              ("ws", {"i": 2, "k": 5, "j": 3})]
    res = verify_fused_program(d, layers, seed=11)
    assert [r.dataflow for r in res] == ["os", "ws", "is", "ws"]
    assert [r.detail["blocks"] for r in res] == [6, 6, 4, 1]          # blocks per layer (the model's)
    assert len({r.detail["dram_base_word"] for r in res}) == 4        # each layer's tensors in its own DRAM region
    for r in res:
        assert r.outputs_exact, (r.dataflow, r.detail)
        assert r.rtl_cycles == r.model_cycles, (r.dataflow, r.rtl_cycles, r.model_cycles)
        assert r.ok, (r.dataflow, r.detail)
