"""compile_array: the one path from a design to the RTL and the model, computed once per content key."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import archgen.dataflow.compile as compile_mod
from archgen.arch.errors import ToolMissingError
from archgen.arch.spec import load_spec
from archgen.cli import main
from archgen.dataflow.compile import CompiledArray, clear_compile_cache, compile_array
from archgen.dataflow.ir import Direction, Node, PortRole

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = [p for d in ("arch", "workloads", "mappings", "dataflow", "sim", "rtlgen", "verif", "archgen", "benchmarks")
           for p in sorted((ROOT / d).rglob("*.py"))]


@pytest.fixture
def count_solves(monkeypatch):
    clear_compile_cache()
    calls = []
    real = compile_mod.insert_pipeline_registers

    def counting(*args, **kw):
        calls.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(compile_mod, "insert_pipeline_registers", counting)
    yield calls
    clear_compile_cache()


def test_build_report_solves_the_lp_once(count_solves, monkeypatch, tmp_path):
    def no_yosys(*_a, **_k):
        raise ToolMissingError("Yosys is not needed to count LP solves")

    monkeypatch.setattr("archgen.rtlgen.synth.yosys_stats", no_yosys)
    assert main(["build", "gemm_ws", "--set", "array.shape=3x3", "--report", "-o", str(tmp_path / "out")]) == 0
    assert count_solves == [pytest.approx(2.0)]            # once, at the spec's 500 MHz
    assert "lp_solve_s" in (tmp_path / "out" / "report.json").read_text()


def test_verify_style_reuse_compiles_once(count_solves):
    design = load_spec("gemm_os.yaml", ["array.shape=2x3"])
    a = compile_array(design)
    b = compile_array(load_spec("gemm_os.yaml", ["array.shape=2x3"]), "os")
    assert a is b and len(count_solves) == 1


def test_cache_key_is_the_whole_content(count_solves):
    design = load_spec("gemm_os.yaml", ["array.shape=2x3"])
    base = compile_array(design)
    # the spec hash alone would miss a replaced field: the key is the design's value
    other = compile_array(dataclasses.replace(design, shape=(3, 2)))
    assert other.design.source_hash == base.design.source_hash and other.key != base.key
    assert compile_array(design, pipeline=False).key != base.key
    slow = dataclasses.replace(design, clock_mhz=100.0)
    assert compile_array(slow, target="ecp5").key != compile_array(slow).key != base.key
    assert len(count_solves) == 5


def test_dram_and_description_do_not_recompile(count_solves):
    """A sweep over DRAM bandwidth shares one compile; each result still carries its own design."""
    design = load_spec("gemm_os.yaml", ["array.shape=3x2"])
    a = compile_array(design)
    fast = dataclasses.replace(design, dram_gbps=512.0, dram_kind="hbm2", description="other")
    b = compile_array(fast)
    assert len(count_solves) == 1
    assert b.design is fast and a.design is design and b.schedule == a.schedule and b.key == a.key


def test_compiled_array_is_frozen_and_typed():
    c = compile_array(load_spec("gemm_ws.yaml"))
    assert isinstance(c, CompiledArray)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.schedule = None
    assert [(p.name, p.role, p.direction) for p in c.ports] == [
        ("cmd", PortRole.COMMAND, Direction.IN), ("in_A", PortRole.INPUT, Direction.IN),
        ("in_B", PortRole.INPUT, Direction.IN), ("psum_C", PortRole.PSUM, Direction.IN),
        ("out_C", PortRole.OUTPUT, Direction.OUT), ("done", PortRole.STATUS, Direction.OUT),
        ("busy", PortRole.STATUS, Direction.OUT)]
    assert [f.name for f in c.command.fields] == ["steps", "trips_j", "trips_k"]
    assert c.port("cmd").width == c.command.size == 64
    assert c.retimed.solve_time_s >= 0 and c.retimed.lp_variables > 0
    assert "CompiledArray(" in repr(c) and len(repr(c)) < 400


@pytest.mark.parametrize("name", ["derive_interconnect", "lower_to_primitives", "insert_pipeline_registers",
                                  "timing_from_retimed", "array_schedule"])
def test_each_pass_has_one_call_site_inside_compile_array(name):
    call = re.compile(rf"(?<![\w.]){name}\(|\.{name}\(")
    sites = [(p.relative_to(ROOT).as_posix(), i + 1) for p in LIBRARY
             for i, line in enumerate(p.read_text().splitlines())
             if call.search(line) and not line.lstrip().startswith(("def ", "#", '"', "`"))]
    assert [s for s, _ in sites] == ["dataflow/compile.py"], sites


def test_a_lane_that_mixes_a_wire_and_a_delay_connection_is_lowered_port_to_port():
    """O[k,p] += W[k,r] * I[p+r] on 2x2 with k and r on the array, control [0, 0]: I's lane reaches FU (0, 1) from
    memory, FU (0, 0) through a one-step delay connection along r and the FUs of row 1 over same-cycle wires along
    k from those. The wires are FU-to-FU edges of kind broadcast: each is lowered as a wire from the sender's input
    port to the receiver's (it was refused as an edge with no matching port; 848 specs of the refusal search,
    docs/limits.md)."""
    from archgen.arch.spec import load_spec_data
    from archgen.dataflow.ir import EdgeKind, NodeKind
    design = load_spec_data({"version": 1, "kind": "array", "name": "c1", "operation": "O[k,p] += W[k,r] * I[p+r]",
                             "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
                             "bounds": {"k": 3, "p": 5, "r": 3},
                             "dataflows": {"d": {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p"], "control": [0, 0]}}})
    c = compile_array(design)
    fu_wires = [(u, v) for u, v, e in c.fu_graph.links("I") if e.kind is EdgeKind.BROADCAST and u.kind is NodeKind.FU]
    assert sorted((u.coord, v.coord) for u, v in fu_wires) == [((0, 0), (1, 0)), ((0, 1), (1, 1))]
    for u, v in fu_wires:
        (src,) = c.prim.graph.predecessors(Node(NodeKind.PORT, v.coord, "I"))
        assert src == Node(NodeKind.PORT, u.coord, "I")
        assert c.prim.wire(src, Node(NodeKind.PORT, v.coord, "I")).delay == 0
