"""Delay connections (issue 14 item 2): reuse with dt != 0 built as FIFOs chosen by the arborescence.

The FIFO depths are checked against an independent solve of A_X M [dt; ds] = 0: for each FIFO edge
u -> v the test evaluates the operand's access on concrete iterations of the loop nest (no reuse.py, no
tiling.py) and finds the one-step move of the innermost loop under which FU v uses FU u's element, then
counts the cycles between the two uses from the schedule (a step per cycle, FU s c.s cycles late).
"""
import itertools

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.interconnect import derive_interconnect
from archgen.dataflow.ir import EdgeKind, Role
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array

OUTER = ("dataflows.rs.order=[k,c,r,s,n,p,q]", "dataflows.rs.inner=[n,p,q]")     # FIFOs of trips-of-q steps
OUTER2 = ("dataflows.rs.order=[k,c,r,s,p,n,q]", "dataflows.rs.inner=[p,n,q]")    # trips of n x q steps
CONFIGS = [
    (),
    ("array.shape=3x2",),
    ("array.shape=5x3", "dataflows.rs.control=[0, 2]"),
    ("array.shape=1x4", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]"),
    ("array.shape=2x3", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[2, 0]"),
    ("array.shape=3x3", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]"),
    OUTER,
    ("array.shape=3x2",) + OUTER2,
    ("array.shape=1x4", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]") + OUTER,
    ("array.shape=2x3", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[2, 0]") + OUTER2,
]


def _element(design, operand, coord, inner_vals, outer_vals):
    """The element index operand uses at FU ``coord`` on the iteration given by loop values (tiled map read
    straight off the spec: spatial loop = extent * tile + coordinate)."""
    df = design.dataflow(None)
    op = design.operation
    x = {}
    for d in op.dims:
        if d in df.axis_of:
            a = df.axis_of[d]
            x[d] = design.shape[a] * outer_vals.get(d, 0) + coord[a]
        elif d in inner_vals:
            x[d] = inner_vals[d]
        else:
            x[d] = outer_vals.get(d, 0)
    vec = np.array([x[d] for d in op.dims])
    o = op.operand(operand)
    return tuple(o.access_matrix(op.dims) @ vec + o.access_offset())


@pytest.mark.parametrize("overrides", CONFIGS)
def test_fifo_depths_match_an_independent_solve(overrides):
    design = load_spec("conv_rs", list(overrides))
    fg = derive_interconnect(design)
    df = fg.dataflow
    inner = df.inner_dims()
    fifos = fg.fifos()
    assert fifos
    c = df.control
    for u, v, e in fifos:
        ds = tuple(b - a for a, b in zip(u.coord, v.coord))
        assert sum(map(abs, ds)) == 1
        # which one-step move dt of one inner loop makes FU v at t + dt use what FU u used at t, on every
        # sampled iteration (interior points, so the move stays inside the loop ranges)
        solutions = []
        for d, sign in itertools.product(inner, (1, -1)):
            ok = True
            for t in itertools.product(*[range(1, 4)] * len(inner)):
                tv = dict(zip(inner, t))
                later = dict(tv, **{d: tv[d] + sign})
                if _element(design, e.operand, u.coord, tv, {}) != _element(design, e.operand, v.coord, later, {}):
                    ok = False
                    break
            if ok:
                solutions.append((d, sign))
        # the innermost loop with a solution carries the FIFOs (one register); else the next one out
        assert len(solutions) == 1 and solutions[0][1] == 1, (u, v, solutions)
        loop = solutions[0][0]
        assert fg.halo[0][0] == loop
        assert loop == "p" and (loop != inner[-1]) == (OUTER[0] in overrides or OUTER2[0] in overrides)
        # the physical delay between the two uses: one step of that loop (the trip counts of the inner loops
        # after it, at the reference bounds: these loops are not spatial) plus c.ds of FU skew
        after = inner[inner.index(loop) + 1:]
        stride = int(np.prod([design.reference_bounds[d] for d in after]))
        cycles = stride + sum(ci * di for ci, di in zip(c, ds))
        mapping = map_problem(design, design.reference_bounds, df)
        assert e.fifo == 1 and e.delay >= 0
        assert e.fifo * mapping.fifo_depth + e.delay == cycles
        assert mapping.fifo_depth == (stride if after else 1)
        assert list(fg.fifo_depth_loops) == list(after)


def test_conv_rs_needs_fewer_memory_fed_input_lanes_than_conv_ws():
    for shape in ("4x4", "3x2", "2x5"):
        rs = derive_interconnect(load_spec("conv_rs", [f"array.shape={shape}"]))
        ws = derive_interconnect(load_spec("conv_ws", [f"array.shape={shape}"]))
        assert rs.fifos()
        lanes = lambda fg: {p.name: p.n_lanes for p in fg.inputs}
        assert sum(lanes(rs).values()) < sum(lanes(ws).values()), (shape, lanes(rs), lanes(ws))
        assert lanes(rs)["I"] < lanes(ws)["I"]


def test_every_fu_of_a_chained_operand_is_fed_once_and_halo_covers_the_chains():
    for overrides in CONFIGS:
        fg = derive_interconnect(load_spec("conv_rs", list(overrides)))
        if not fg.fifos():
            continue
        (loop, halo), = fg.halo
        sources = {}
        for u, v, e in fg.links("I"):
            if v.kind.value == "fu":
                sources.setdefault(v, []).append(e.kind)
        assert all(len(s) == 1 for s in sources.values())
        # steps of the innermost loop between an FU and the memory-fed root of its chain
        depth = {}
        for lane in fg.plan("I").lanes:
            root = lane.fus[0]
            depth[root] = 0
        changed = True
        while changed:
            changed = False
            for u, v, e in fg.links("I"):
                if u.kind.value == "fu" and u.coord in depth and v.coord not in depth:
                    depth[v.coord] = depth[u.coord] + e.fifo
                    changed = True
        assert max(depth.values()) <= halo


def test_host_program_halo_steps_and_model_agree_on_steps():
    design = load_spec("conv_rs", ["array.shape=3x2"])
    compiled = compile_array(design)
    fg = compiled.fu_graph
    bounds = {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 4, "s": 2}
    mapping = map_problem(design, bounds, fg.dataflow)
    assert mapping.halo == {"p": 2}
    assert mapping.steps == (4 + 2) * 2
    rng = np.random.default_rng(0)
    prog = host_program(fg, mapping, random_operands(fg, mapping, rng))
    assert prog.streams["in_I"].shape == (mapping.n_tiles * mapping.steps, 1)
    # halo steps produce no result: their output beats are padding (zero)
    out = prog.out_index.reshape(mapping.n_tiles, 2, 6, -1, prog.out_index.shape[-1])
    assert np.all(out[:, :, :2, :, 0] == -1)
    res = simulate_array(compiled, mapping)
    assert res.issue_cycles == mapping.n_tiles * mapping.steps


def test_existing_designs_have_no_delay_connections():
    for name in ("gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast", "gemm_os3d", "conv_ws"):
        design = load_spec(name)
        for df in design.dataflows:
            fg = derive_interconnect(design, df)
            assert not fg.fifos() and fg.halo == ()
            assert all(e.kind is not EdgeKind.DELAY for _, _, e in fg.links())


@pytest.mark.parametrize("control", ["[1, 1]", "[-1, 1]"])
def test_axes_without_a_fifo_stay_memory_fed(control):
    # [1, 1]: c.ds < 0 on the chain axis, the receiving FU would run before the sender;
    # [-1, 1]: the output's partial-sum chain runs between the same FUs along axis 0
    design = load_spec("conv_rs", [f"dataflows.rs.control={control}"])
    fg = derive_interconnect(design)
    assert not fg.fifos() and fg.halo == ()
    assert map_problem(design, design.reference_bounds, fg.dataflow).halo == {}
    assert fg.plan("I").role is Role.STREAM and fg.plan("I").n_lanes == 4


@pytest.mark.parametrize("overrides", [OUTER, ("array.shape=3x2",) + OUTER2,
                                       ("array.shape=1x4", "dataflows.rs.spatial={k: 0, r: 1}",
                                        "dataflows.rs.control=[1, 0]") + OUTER])
def test_outer_loop_fifos_save_lanes_below_the_threshold_only(overrides):
    """On an outer inner loop the FIFO is a buffer of array.max_fifo_depth entries; its bits (width x depth)
    are its arborescence cost, so past a memory lane's cost the input stays memory-fed (and has no halo)."""
    fg = derive_interconnect(load_spec("conv_rs", list(overrides)))
    deep = load_spec("conv_rs", list(overrides) + ["array.max_fifo_depth=125"])     # 8 x 125 = 1000 bits
    fg_deep = derive_interconnect(deep)
    assert fg.fifos() and fg.fifo_depth_loops and not fg_deep.fifos() and fg_deep.halo == ()
    assert map_problem(deep, deep.reference_bounds).halo == {}
    assert fg.plan("I").n_lanes < fg_deep.plan("I").n_lanes
    assert fg.plan("I").n_lanes == 1


def test_outer_loop_halo_steps_and_fifo_depth_in_the_host_program_and_model():
    design = load_spec("conv_rs", ["array.shape=3x2"] + list(OUTER2))
    compiled = compile_array(design)
    fg = compiled.fu_graph
    bounds = {"n": 2, "k": 3, "p": 4, "q": 3, "c": 2, "r": 4, "s": 2}
    mapping = map_problem(design, bounds, fg.dataflow)
    assert mapping.halo == {"p": 2} and mapping.fifo_depth == 2 * 3
    assert mapping.steps == (4 + 2) * 2 * 3
    assert [f.loop for f in compiled.command.fields if f.loop in ("p", "n", "q")] == ["p", "n", "q"]
    prog = host_program(fg, mapping, random_operands(fg, mapping, np.random.default_rng(1)))
    # the first 2 iterations of p (2 x 6 steps) of every tile are halo: padding outputs only
    out = prog.out_index.reshape(mapping.n_tiles, mapping.steps, -1, prog.out_index.shape[-1])
    assert np.all(out[:, :2 * 6, :, 0] == -1) and np.any(out[:, 2 * 6:, :, 0] >= 0)
    assert simulate_array(compiled, mapping).issue_cycles == mapping.n_tiles * mapping.steps


def test_a_problem_deeper_than_the_fifo_buffers_is_refused():
    design = load_spec("conv_rs", list(OUTER) + ["array.max_fifo_depth=4"])
    assert map_problem(design, dict(design.reference_bounds, q=4)).fifo_depth == 4
    with pytest.raises(SpecError) as err:
        map_problem(design, dict(design.reference_bounds, q=5))
    assert str(err.value).startswith("array.max_fifo_depth: dataflow rs's delay connections hold one step of t_p = "
                                     "5 array steps (trips of q (5) in these bounds)")


WS = "dataflows.ws={spatial: {c: 0, k: 1}, order: [k, c, r, s, n, p, q], inner: [n, p, q], control: [1, 1]}"


@pytest.mark.parametrize("overrides", [("array.shape=3x2",), ("array.shape=3x2",) + OUTER2])
def test_a_fused_design_builds_the_fifos_and_halo_of_its_delay_dataflow(overrides):
    """rs (delay connections) fused with a ws dataflow: the rs view keeps its FIFOs and halo, the fused command
    carries the halo loop and the FIFO-depth loops, and the fused top builds one FIFO (register chain, or a
    buffer of run-time depth on an outer inner loop) per FIFO node plus the halo mask on the multipliers.
    Verilator (exact outputs, RTL == model cycles): tests/verif/test_fused_delay.py."""
    from archgen.dataflow.compile import compile_fused
    from archgen.rtlgen.fused_array import fused_verilog
    design = load_spec("conv_rs", list(overrides) + [WS])
    fused = compile_fused(design, ["rs", "ws"])
    single = compile_array(design, "rs")
    view = fused.view("rs")
    assert len(view.fu_graph.fifos()) == len(single.fu_graph.fifos()) > 0
    assert view.fu_graph.halo == single.fu_graph.halo
    loops = {f.loop for f in fused.command.fields if f.loop is not None}
    assert {d for d, _ in view.fu_graph.halo} | set(view.fu_graph.fifo_depth_loops) <= loops
    mapping = map_problem(design, {"n": 2, "k": 3, "p": 4, "q": 3, "c": 2, "r": 5, "s": 2}, view.dataflow)
    word = fused.command_word("rs", mapping.steps, mapping.trips())
    assert word["trips_p"] == mapping.trips()["p"] and word["dataflow"] == 0
    text, _ = fused_verilog(fused)
    fifo_nodes = [n for n in view.timing.prim.graph.nodes if n.kind.name == "FIFO"]
    assert fifo_nodes
    for n in fifo_nodes:
        stem = f"{n.operand}_fifo_{'_'.join(map(str, n.coord))}_rs"
        assert (stem + "_buf" in text or f"{stem}_wp" in text) if view.fu_graph.fifo_depth_loops else f"{stem}_0" in text
    assert "halo_sel" in text and "halo_pos_p" in text
