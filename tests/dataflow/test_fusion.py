"""Dataflow fusion (dataflow/fusion.py, compile_fused): the merge, the mux plan, the epigraph LP and the
per-dataflow views; bad fuse lists from the spec and the command line."""
from __future__ import annotations

import itertools

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.fusion import SELECT_FIELD, mux_plan
from archgen.dataflow.ir import NodeKind
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array

SHAPES = ["4x4", "3x2", "1x4", "2x5"]


@pytest.mark.parametrize("shape", SHAPES)
def test_views_are_the_dataflows_with_the_fused_timing(shape):
    design = load_spec("gemm_fused", [f"array.shape={shape}"])
    fused = compile_fused(design, design.fuse)
    assert fused.names == ("os", "ws", "is")
    for name, view in zip(fused.names, fused.views):
        single = compile_array(design, name)
        assert view.dataflow == single.dataflow
        assert view.ports == single.ports and view.command == single.command
        # the fused timing never makes a dataflow faster than its single design
        assert view.schedule.commit_skew >= single.schedule.commit_skew
        assert view.schedule.out_latency >= single.schedule.out_latency
        assert view.timing.prim.graph.number_of_nodes() == single.prim.graph.number_of_nodes()
    # every stream of the fused top is as wide as the widest dataflow's
    for port in fused.ports:
        lanes = [v.port(port.name).lanes for v in fused.views if port.name in [p.name for p in v.ports]]
        if port.stream and port.name != "cmd":
            assert port.lanes == max(lanes)
    assert fused.command.fields[-1].name == SELECT_FIELD
    assert fused.port("cmd").width == fused.command.size


def test_muxes_sit_exactly_where_sources_differ():
    design = load_spec("gemm_fused", ["array.shape=3x4"])
    fused = compile_fused(design, design.fuse)
    prims = [v.timing.prim for v in fused.views]
    stages = [v.retimed.stages for v in fused.views]
    muxed = {(mp.node, mp.slot) for mp in fused.plan.muxes}
    assert fused.plan.muxes == mux_plan(prims, stages)
    for mp in fused.plan.muxes:
        distinct = {s for s in mp.sources if s is not None}
        assert len(distinct) == mp.inputs > 1
    # the A and B forwarding chains are shared: OS and WS forward A along axis 1, OS and IS forward B along
    # axis 0, so no port of a streamed operand in the middle of the array needs a mux
    ports = [(n, slot) for n, slot in muxed if n.kind is NodeKind.PORT]
    assert ports == []
    # the multiplier input switches between a streamed port and a stationary register where one dataflow
    # holds the operand: B (WS) and A (IS) at every FU
    mul_slots = sorted((n.coord, slot) for n, slot in muxed if n.kind is NodeKind.MUL)
    coords = list(itertools.product(range(3), range(4)))
    assert mul_slots == sorted([(c, "A") for c in coords] + [(c, "B") for c in coords])


def test_epigraph_pays_the_maximum_register_count_per_shared_edge():
    design = load_spec("gemm_fused", ["array.shape=2x3", "clock_mhz=1500"])
    fused = compile_fused(design, design.fuse)
    rt = fused.plan.retiming
    assert rt.register_bits <= rt.separate_register_bits
    for key, built in rt.shared_stages.items():
        for view in fused.views:
            st = view.retimed
            if key[0] == "edge" and (key[1], key[2]) in st.stages:
                assert st.stages[(key[1], key[2])] <= built
            elif key[0] == "net" and key[1] in st.chain_depth:
                assert st.chain_depth[key[1]] <= built


@pytest.mark.parametrize("shape,clock", [("4x4", 500), ("2x3", 1500), ("1x4", 1200)])
def test_fused_cycles_follow_the_fused_schedule(shape, clock):
    """A dataflow's cycles in the fused design differ from its single design only through the schedule
    constants (the mux stages), and never downwards."""
    design = load_spec("gemm_fused", [f"array.shape={shape}", f"clock_mhz={clock}"])
    fused = compile_fused(design, design.fuse)
    for name, view in zip(fused.names, fused.views):
        single = compile_array(design, name)
        mapping = map_problem(design, {"i": 7, "k": 9, "j": 5}, view.dataflow)
        f, s = simulate_array(view, mapping).total_cycles, simulate_array(single, mapping).total_cycles
        assert f >= s
        if view.schedule == single.schedule:
            assert f == s


def test_spec_fuse_errors_name_the_field():
    with pytest.raises(SpecError) as err:
        load_spec("gemm_fused", ["fuse=[os,xs,os]"])
    text = str(err.value)
    assert "fuse.1: no dataflow of that name" in text and "fuse.2: dataflow listed twice" in text
    with pytest.raises(SpecError) as err:
        load_spec("gemm_fused", ["fuse=[os]"])
    assert "fuse" in str(err.value)


def test_check_fusable_refuses_unknown_and_single():
    design = load_spec("gemm_fused")
    with pytest.raises(SpecError, match=r"--fuse: no dataflow named 'xs'"):
        from archgen.dataflow.fusion import check_fusable
        check_fusable(design, ["os", "xs"], path="--fuse")
    with pytest.raises(SpecError, match="at least two"):
        compile_fused(design, ["os"])


def test_fused_verilog_is_deterministic_and_has_the_select():
    from archgen.rtlgen.fused_array import fused_verilog
    design = load_spec("gemm_fused", ["array.shape=2x2"])
    fused = compile_fused(design, ["os", "ws"])
    a, top = fused_verilog(fused)
    b, _ = fused_verilog(fused)
    assert a == b
    assert "dataflow_sel" in a and top.mux_count > 0


# ---- skewed stt maps in a fused design (gemm_fused_hex: OS + the hexagonal map) --------------------------

@pytest.mark.parametrize("overrides", [(), ("array.shape=3x5", "clock_mhz=1500"), ("array.shape=2x3", "clock_mhz=1400"),
                                       ("clock_mhz=1000",)])
def test_a_skewed_view_runs_behind_the_shared_multiplier_stages(overrides):
    """The skewed view has at least the stages of its single design and of the tiled multipliers (the LP's),
    enough for the clock with the operand mux in its path, and its cycles are the stt model's with those stages."""
    from archgen.dataflow.fusion import is_stt_view
    from archgen.dataflow.stt_array import stt_tiling
    design = load_spec("gemm_fused_hex", list(overrides))
    fused = compile_fused(design, design.fuse)
    os_view, hex_view = fused.view("os"), fused.view("hex")
    assert not is_stt_view(os_view) and is_stt_view(hex_view)
    shared = {os_view.timing.node_latency(n) for n in os_view.timing.prim.graph.nodes if n.kind is NodeKind.MUL}
    single = compile_array(design, "hex")
    assert hex_view.network.product_stages >= max(single.network.product_stages, max(shared))
    assert hex_view.critical_path_ns <= hex_view.clock_period_ns
    bounds = {"i": 7, "j": 5, "k": 6}
    got = simulate_array(hex_view, stt_tiling(hex_view.network, bounds)).total_cycles
    ref = simulate_array(single, stt_tiling(single.network, bounds)).total_cycles
    assert got >= ref       # a later partial sum never shortens a box's span
    if hex_view.network.product_stages == single.network.product_stages:
        assert got == ref
    # the command: steps, OS's trip counts, the select; the skewed map's steps are its slots
    assert [f.name for f in fused.command.fields] == ["steps", "trips_i", "trips_j", SELECT_FIELD]
    assert fused.command_word("hex", 54, {}) == {"steps": 54, "trips_i": 1, "trips_j": 1, SELECT_FIELD: 1}
    # streams: the union of both designs' lanes
    for p in hex_view.stream_ports:
        assert fused.port(p.name).lanes >= p.lanes


def test_fused_skewed_verilog_is_deterministic_and_muxes_the_multipliers():
    from archgen.rtlgen.fused_array import fused_verilog
    design = load_spec("gemm_fused_hex", ["array.shape=2x3"])
    fused = compile_fused(design, design.fuse)
    a, top = fused_verilog(fused)
    b, _ = fused_verilog(fused)
    assert a == b
    # every FU's two multiplier operands read through a select mux (OS nets or the hexagonal chains)
    assert sum(1 for n in range(2) for m in range(3) for x in "AB" if f"mul_{n}_{m}_{x}_sel" in a) == 12
    assert "multiplier_enable_sel" in a


# ---- maps in a fused design: each runs as the tiled form it runs as alone ---------------------------------

def _fused_maps_design():
    from archgen.arch.spec import load_spec_data
    return load_spec_data({
        "version": 1, "kind": "array", "name": "fm", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2]},
        "dataflows": {
            "os": {"spatial": {"i": 0, "j": 1}, "order": ["k", "i", "j"], "control": [0, 0]},
            # skews the FU assignment: FU (s0, s1) runs i = 2 t_i + s1 and k = 2 t_k + s0 - s1 (placed)
            "placed": {"map": {"i": "2*t_i + s1", "j": "t_j", "k": "2*t_k + s0 - s1"}, "order": ["j", "i", "k"]},
            # a temporal loop skewed by the FU coordinates (compressed)
            "skew": {"map": {"i": "2*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}, "order": ["i", "j", "k"]}},
        "fuse": ["placed", "os", "skew"]})


def test_fused_maps_run_as_their_tiled_form_through_the_memory_system():
    """A map fused with other dataflows: its view's dataflow is the tiled form compile_array gives it alone (the
    memory system checks a command against that form; before, the view kept the map and every layer was refused
    with `layers.layer.dataflow: the command was planned for dataflow 'placed'; this design runs 'placed'`)."""
    from archgen.dataflow.memctl import layer_program, probe_command
    design = _fused_maps_design()
    fused = compile_fused(design, design.fuse)
    for name, view in zip(fused.names, fused.views):
        single = compile_array(design, name)
        assert view.dataflow == single.dataflow and view.dataflow.spatial is not None
        assert view.command == single.command
        layer_program(view, probe_command(design, view.dataflow), spec_size=False)


def test_fused_maps_exact_in_amaranth():
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    design = _fused_maps_design()
    runs = verify_fused_amaranth(design, design.fuse, {"i": 5, "j": 3, "k": 5}, seed=3)
    assert [r.dataflow for r in runs] == ["placed", "os", "skew"]
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, r


# ---- a folded map beside dataflows that fold otherwise ------------------------------------------------------

FOLDED = {"i": "4*t_i + s0 + 2*s1", "j": "t_j", "k": "t_k"}       # 2x2 runs it as a 1x4 array


def _folded_fused(other: str, order):
    from archgen.arch.spec import load_spec_data
    flows = {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [1, 1]},
             "ws": {"spatial": {"k": 0, "j": 1}, "order": ["j", "k", "i"], "inner": ["i"]}}
    return load_spec_data({
        "version": 1, "kind": "array", "name": "ff", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2]},
        "dataflows": {other: flows[other], "m": {"map": FOLDED, "order": list(order)}}, "fuse": [other, "m"]})


@pytest.mark.parametrize("other,order", [("os", "jik"), ("ws", "kij"), ("ws", "jik")])
def test_a_folded_map_fuses_on_its_own_logical_array(other, order):
    """A folded map beside a dataflow on the spec's 2x2 array (refused until 2026-12-05): its view keeps its own
    logical 1x4 array (host program, model, memory system and load rows read it), and its graphs are renamed to
    the physical FUs of its placement for the merge and the LP, so both dataflows share the 4 multipliers. The
    view is the folded map's single design with the fused timing: same dataflow, command and schedule here."""
    from archgen.dataflow.fusion import relabel_prim
    from archgen.dataflow.memctl import layer_program, probe_command
    design = _folded_fused(other, order)
    fused = compile_fused(design, design.fuse)
    view, alone = fused.view("m"), design.alone("m")
    assert view.design.shape == (1, 4) and fused.view(other).design.shape == (2, 2)
    single = compile_array(alone, "m")
    assert (view.dataflow, view.command, view.schedule) == (single.dataflow, single.command, single.schedule)
    place = dict(alone.placement)
    hw = fused.hardware_views[1]
    assert set(hw.timing.prim.graph.nodes) == set(relabel_prim(view.timing.prim, place).graph.nodes)
    muls = {v.coord for h in fused.hardware_views for v in h.timing.prim.graph.nodes if v.kind is NodeKind.MUL}
    assert muls == set(itertools.product(range(2), range(2)))
    assert fused.plan.fu_merge.shared_edges > 0 or fused.plan.muxes
    for v in fused.views:           # each view through its memory system on its own array
        layer_program(v, probe_command(v.design, v.dataflow), spec_size=False)


@pytest.mark.parametrize("other,order", [("os", "jik"), ("ws", "kij")])
def test_a_folded_map_fused_exact_in_amaranth(other, order):
    """Both dataflows exact with RTL cycles == model cycles on the fused top; with ``kij`` the folded map holds A
    stationary in one row of four lanes while WS loads B in two rows of two (each dataflow's own rows and lanes
    into the shared stationary registers; loading by the physical coordinates gives wrong outputs)."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    design = _folded_fused(other, order)
    runs = verify_fused_amaranth(design, design.fuse, {"i": 7, "j": 3, "k": 4}, seed=2)
    assert [r.dataflow for r in runs] == [other, "m"]
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, r


def test_a_reduction_chained_along_two_axes_keeps_both_chains_when_fused():
    """conv2 with r and c on the 2x2 array's axes and control [1, 1]: the output's partial sums chain along both
    axes, so the adder of FU (1, 1) takes two chains (from (0, 1) and from (1, 0)). The fused array gave each adder
    input slot one source per dataflow and so kept one of the two chains: wrong outputs with RTL cycles == model
    cycles (found by the class check of the folded fused designs; on main c436f71 too, beside any dataflow). Now
    the second chain is its own input (fusion.py ``numbered_slots``)."""
    from archgen.arch.spec import load_spec_data
    from archgen.dataflow.fusion import _inputs
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    design = load_spec_data({
        "version": 1, "kind": "array", "name": "c2", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
        "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
        "bounds": {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3},
        "dataflows": {"rc": {"spatial": {"r": 0, "c": 1}, "order": ["q", "p", "c", "k", "r"], "control": [1, 1]},
                      "ck": {"spatial": {"c": 0, "k": 1}, "order": ["q", "r", "c", "p", "k"]}},
        "fuse": ["rc", "ck"]})
    view = compile_fused(design, design.fuse).view("rc")
    add = next(v for v in view.timing.prim.graph.nodes if v.kind is NodeKind.ADD and v.coord == (1, 1))
    assert sorted(s for s, _ in _inputs(view.timing.prim, add)) == ["chain", "chain#2", "product"]
    runs = verify_fused_amaranth(design, design.fuse, {"k": 5, "p": 5, "q": 3, "c": 3, "r": 3}, seed=3)
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, r


# ---- skewed stt maps only (no tiled dataflow) -------------------------------------------------------------

HEX2 = [[1, 0, 1], [0, 1, -1], [1, 2, 1]]


def _stt_only(shape=(2, 3), clock_mhz=500):
    from archgen.arch.spec import load_spec_data
    return load_spec_data({
        "version": 1, "kind": "array", "name": "hexes", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "clock_mhz": clock_mhz, "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
        "dataflows": {"hex": {"stt": [[1, 0, -1], [0, 1, -1], [1, 1, 1]]}, "hex2": {"stt": HEX2}},
        "fuse": ["hex", "hex2"]})


@pytest.mark.parametrize("clock", [500, 1500])
def test_skewed_maps_only_fuse_on_unpipelined_multipliers(clock):
    """No tiled dataflow: no LP and no shared multiplier stage; each map's product stages are its own (the
    operand mux of two maps in its path), never fewer than its single design's; the report runs."""
    from archgen.dataflow.fusion import is_stt_view
    from archgen.fusion_cli import fusion_report
    from archgen.rtlgen.fused_array import fused_verilog
    design = _stt_only(clock_mhz=clock)
    fused = compile_fused(design, design.fuse)
    assert all(is_stt_view(v) for v in fused.views) and fused.plan.muxes == () and fused.plan.rounds == 0
    assert [f.name for f in fused.command.fields] == ["steps", SELECT_FIELD]
    for name, view in zip(fused.names, fused.views):
        single = compile_array(design, name)
        assert view.network.product_stages >= single.network.product_stages
    if clock == 1500:
        assert min(v.network.product_stages for v in fused.views) >= 1
    text, top = fused_verilog(fused)
    assert text == fused_verilog(fused)[0] and top.mux_count > 0
    rep = fusion_report(fused, text, top, synth=False)
    assert rep["skewed_maps"] == ["hex", "hex2"] and rep["register_bits"]["fused"] == 0
    for name, c in rep["cycles"].items():
        assert c["fused"] >= c["single"]


@pytest.mark.parametrize("shape,clock", [((2, 3), 500), ((3, 2), 1500), ((1, 4), 500)])
def test_skewed_maps_only_exact_in_amaranth(shape, clock):
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    design = _stt_only(shape, clock)
    runs = verify_fused_amaranth(design, design.fuse, {"i": 5, "j": 4, "k": 6}, seed=7)
    assert [r.dataflow for r in runs] == ["hex", "hex2"]
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, r
