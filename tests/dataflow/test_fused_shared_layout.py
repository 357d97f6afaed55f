"""Issue 14's last two guards (H161). (a) One layer core for the fused dataflows (rtlgen/fused_layer.py) shares each
operand's buffer, with the most banks any dataflow needs; each dataflow rounded its halves to its OWN banks, so a
``memory.<X>.bytes`` that is not a multiple of every dataflow's bank row gave the dataflows different halves and the
core refused the spec (``one layer core for the fused dataflows needs the same buffer positions in each``; 48 of 138
gemm_fused shapes x buffer sizes in the search of docs/dataflows.md "Fusion"). Every dataflow is now planned on the
core's banks (``fused_banks``, memctl ``layer_program(core_banks=)``), so the halves agree by construction; the
refused specs run exact on the one core. (b) reduce_skew ``_lanes_share_a_group`` is unreachable (output lanes are
grid lines, its docstring): exercised on a hand-made FU graph, and the grid-line form checked on real drain designs."""
from types import SimpleNamespace

import pytest

import archgen.verif.fused_program_check as fp
from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.memctl import layer_program, probe_command
from archgen.dataflow.reduce_skew import _lanes_share_a_group, drain_groups, memory_drain_waits
from archgen.mappings.memory_tiling import make_command
from archgen.rtlgen.fused_layer import FusedLayerCore, FusedLayerTop, fused_banks, fused_layer_programs

DRAM = ["memory.dram.latency=5", "memory.dram.burst_bytes=16", "memory.dram.outstanding=2"]


def _design(shape: str, width: int, nbytes: int, b_bytes: int | None = None):
    """gemm_fused on ``shape`` with A and B buffers of ``nbytes`` (B: ``b_bytes``) and C of 4x that."""
    return load_spec("gemm_fused", [f"array.shape={shape}", f"memory.dram.width_bytes={width}", *DRAM,
                                    f"memory.A.bytes={nbytes}", f"memory.B.bytes={b_bytes or nbytes}",
                                    f"memory.C.bytes={4 * nbytes}"])


def _own_layouts(fused):
    """Each dataflow's buffer layouts planned on its own banks (what main's core compared)."""
    return {n: layer_program(fused.view(n), probe_command(fused.view(n).design, fused.view(n).dataflow), "probe",
                             fit_only=True) for n in fused.names}


# (shape, DRAM width, A/B bytes, the operand whose halves the dataflows' own banks rounded apart)
REACHED = [("3x5", 8, 200, "C"), ("1x6", 4, 200, "A"), ("5x3", 16, 1000, "C")]


@pytest.mark.parametrize("shape,width,nbytes,operand", REACHED)
def test_one_core_plans_every_dataflow_on_the_most_banks(shape, width, nbytes, operand):
    """The spec reaches what main refused (the dataflows' own halves of ``operand`` differ); planned on the core's
    banks every dataflow has one half, ``bytes / halves`` rounded down to the most banks, and the core builds."""
    fused = compile_fused(_design(shape, width, nbytes), ("os", "ws", "is"))
    own = _own_layouts(fused)
    assert len({own[n][operand].half_elems for n in own}) > 1, own
    banks = fused_banks(fused)
    assert banks == {x: max(own[n][x].banks for n in own) for x in banks}
    progs = fused_layer_programs(fused)
    for x, b in banks.items():
        lay = progs["os"].layouts[x]
        assert lay.half_elems == fused.design.memory_system.buffer(x).bytes // (lay.elem_bytes * lay.halves) // b * b
        assert {(p.layouts[x].banks, p.layouts[x].half_elems) for p in progs.values()} == {(b, lay.half_elems)}
    assert FusedLayerCore(fused, progs).banks == banks


LAYERS = [("os", {"i": 7, "k": 9, "j": 11}), ("is", {"i": 8, "k": 12, "j": 7}), ("ws", {"i": 5, "k": 14, "j": 9})]


@pytest.mark.parametrize("shape,width,nbytes,operand", [
    REACHED[0], pytest.param(*REACHED[1], marks=pytest.mark.slow), pytest.param(*REACHED[2], marks=pytest.mark.slow)])
def test_the_specs_main_refused_run_exact_on_the_one_core(shape, width, nbytes, operand):
    """Layers of os, is and ws back to back on the one core (Amaranth, verif/fused_program_check.py): outputs exact,
    RTL cycles == model cycles, DMA bytes == model bytes; main refused the core."""
    runs = fp.verify_fused_program(_design(shape, width, nbytes), LAYERS, seed=3, simulator="amaranth")
    assert [r.dataflow for r in runs] == ["os", "is", "ws"]
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles and r.ok, (r.dataflow, r.detail)
        assert r.detail["rtl_dram_bytes"] == r.dram_bytes


# is on 3x5: C halves of 100 elements on its own 4 banks, 96 on the core's 8; a block of 3 x 33 = 99 elements of C
BIG_C = {"i": 6, "k": 5, "j": 33}


def _big_c_block(view, bounds, layer, **_kw):
    return make_command(view.design, bounds, view.dataflow, {"i": 1, "k": 1, "j": 33}, ("i", "k", "j"), layer)


def test_a_block_that_fits_only_the_own_half_is_refused_by_field(monkeypatch):
    """Planned on the core's banks, a block of 99 elements of C is refused by memory.C.bytes (its half holds 96)."""
    monkeypatch.setattr(fp, "plan_command", _big_c_block)
    with pytest.raises(SpecError, match=r"memory.C.bytes: a block of 396 B does not fit one half"):
        fp.verify_fused_program(_design("3x5", 8, 200, 400), [("is", BIG_C)], seed=2, simulator="amaranth")


def test_planned_on_its_own_banks_that_block_is_wrong(monkeypatch):
    """The check can fail: planned on is's own banks (what main's per-dataflow program did) the block "fits" its
    half of 100 and runs on the core's halves of 96, overlapping the other half: wrong outputs at equal cycles."""
    monkeypatch.setattr(fp, "plan_command", _big_c_block)
    monkeypatch.setattr(fp, "layer_program", lambda view, cmd, layer, spec_size, core_banks:
                        layer_program(view, cmd, layer, spec_size=spec_size))
    (r,) = fp.verify_fused_program(_design("3x5", 8, 200, 400), [("is", BIG_C)], seed=2, simulator="amaranth")
    assert not r.outputs_exact and r.detail["mismatches"] > 0 and r.rtl_cycles == r.model_cycles


def test_a_layer_top_replans_a_layer_planned_on_its_own_banks():
    """``FusedLayerTop`` (verify_layer's one_core path) takes a layer planned on its dataflow's own banks: it is planned
    again on the core's, its DRAM layout unchanged (the host image made from it stays valid)."""
    fused = compile_fused(_design("3x5", 8, 200), ("os", "ws", "is"))
    core = FusedLayerCore(fused, fused_layer_programs(fused))
    view = fused.view("is")
    prog = layer_program(view, make_command(view.design, {"i": 6, "k": 5, "j": 9}, view.dataflow,
                                            {"i": 1, "k": 1, "j": 9}, ("i", "k", "j"), "layer"), "layer")
    assert prog.layouts["C"].half_elems != core.prog.layouts["C"].half_elems
    top = FusedLayerTop(core, prog, prog.dram_image({}))
    assert top.prog.layouts["C"].half_elems == core.prog.layouts["C"].half_elems
    assert top.prog.regions == prog.regions


def _lanes(*fus):
    return SimpleNamespace(output=SimpleNamespace(lanes=[SimpleNamespace(fus=f) for f in fus]))


def test_lanes_sharing_a_group_in_some_rows_only_are_caught_on_a_hand_made_graph():
    """The guard itself (no interconnect FU graph reaches it): two lanes whose row-0 FUs are one group and whose
    row-1 FUs are not; and lanes in one group in every row, which alias (built)."""
    some_rows = (((0, 0), (((0, 1), ()),)),)             # one group: (0, 0) with (0, 1); (1, 0), (1, 1) alone
    assert _lanes_share_a_group(_lanes(((0, 0), (1, 0)), ((0, 1), (1, 1))), some_rows)
    every_row = (((0, 0), (((0, 1), ()),)), ((1, 0), (((1, 1), ()),)))
    assert not _lanes_share_a_group(_lanes(((0, 0), (1, 0)), ((0, 1), (1, 1))), every_row)
    assert not _lanes_share_a_group(_lanes(((0, 0), (1, 0)), ((0, 1), (1, 1))), ())


def _grid_lines(fg) -> bool:
    """Every drained row's FUs of the output lanes differ on one axis only, the lanes' (the unreachability argument
    of ``_lanes_share_a_group``)."""
    lanes = fg.output.lanes
    rows = {len(ln.fus) for ln in lanes}
    if len(rows) != 1:
        return False
    for r in range(rows.pop()):
        fus = [ln.fus[r] for ln in lanes]
        axes = {a for f in fus for a in range(len(f)) if f[a] != fus[0][a]}
        if len(axes) > 1 or len(set(fus)) != len(fus):
            return False
    return True


def test_held_output_lanes_are_grid_lines_in_the_drain_designs():
    """The waited-drain designs of tests/dataflow/test_memctl_drain_lanes.py (2-D, 1x3, 2x3, the 3-D 2x2x2 drained over
    both leading axes) and the built-in gemm specs: their output lanes are grid lines, so the guard never fires."""
    from test_memctl_drain_lanes import FIXED, THREE_D, _design as drain_design, _three_d
    graphs = [compile_array(drain_design(i)).fu_graph for i in range(len(FIXED))]
    graphs += [compile_array(_three_d(i)[0]).fu_graph for i in range(len(THREE_D))]
    assert all(drain_groups(fg) for fg in graphs)
    graphs += [compile_array(load_spec(s)).fu_graph for s in ("gemm_os", "gemm_os3d")]
    for fg in graphs:
        assert _grid_lines(fg), [ln.fus for ln in fg.output.lanes]
        groups = drain_groups(fg)
        assert not (groups and _lanes_share_a_group(fg, groups))
        assert not memory_drain_waits(fg)
