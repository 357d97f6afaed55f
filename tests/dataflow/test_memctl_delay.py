"""Delay connections (conv_rs, issue 14) in the layer program (dataflow/memctl.py): the halo steps enter the
array command and the port walks; the walk of the command equals the rows expanded from the job list; a FIFO
chain root's walk never starts below its buffer half; a planned block that fills its half is accepted."""
import itertools
import random
import zlib

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import chained_inputs, layer_program, walk_rows
from archgen.mappings.memory_tiling import make_command, plan_layer

DRAM = ["memory.dram.width_bytes=8", "memory.dram.burst_bytes=16"]
AXIS1 = ["dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1,0]"]
OUTER = ["dataflows.rs.order=[k,c,r,s,n,p,q]", "dataflows.rs.inner=[n,p,q]"]     # FIFOs of run-time depth (trips of q)
OUTER2 = ["dataflows.rs.order=[k,c,r,s,p,n,q]", "dataflows.rs.inner=[p,n,q]"]    # depth trips of n x q
SHAPES = [["array.shape=3x2"], ["array.shape=4x4"], ["array.shape=4x1"], ["array.shape=1x4"] + AXIS1,
          ["array.shape=2x3"] + AXIS1, ["array.shape=3x2"] + OUTER, ["array.shape=1x4"] + AXIS1 + OUTER2]
_IDS = ["3x2", "4x4", "4x1", "1x4-axis1", "2x3-axis1", "3x2-outer-p", "1x4-axis1-outer-p-nq"]


def _positions(row, w):
    """Every buffer position the port walk visits, beat by beat (the hold of a halo level included)."""
    n = len(w.levels)
    trips = [row[f"{w.port}_trips{j}"] for j in range(n)]
    strides = [row[f"{w.port}_stride{j}"] for j in range(n)]
    out = []
    for cnt in itertools.product(*[range(t) for t in trips]):
        p = row[f"{w.port}_base"]
        for j, (c, s) in enumerate(zip(cnt, strides)):
            p += s * (max(0, c - w.halo) if j == w.halo_level else c)
        out.append(p)
    return out


def random_programs(d, c, rng, n: int, p_inner: float):
    """(command, layer program) of up to ``n`` random commands (bounds 1..5, tiles of 1..3 over the outer loops and
    each inner loop with probability ``p_inner``, any order), whose walk of the command equals the rows expanded
    from the job list; commands the generated top refuses (e.g. partial sums through DRAM) are skipped."""
    df = c.dataflow
    for _ in range(n):
        bounds = {x: rng.randint(1, 5) for x in d.operation.dims}
        loops = list(df.outer_dims()) + [x for x in df.inner_dims() if rng.random() < p_inner]
        tile = {x: rng.randint(1, 3) for x in loops}
        order = tuple(rng.sample(loops, len(loops)))
        try:
            cmd = make_command(d, bounds, df, tile, order)
            p = layer_program(c, cmd, spec_size=False)
        except SpecError:
            continue
        assert walk_rows(p.command, p.layouts, p.walks) == list(p.rows), (bounds, tile, order)
        yield cmd, p


@pytest.mark.parametrize("sets", SHAPES, ids=_IDS)
def test_conv_rs_programs_on_random_commands(sets):
    rng = random.Random(zlib.crc32(" ".join(sets).encode()))
    d = load_spec("conv_rs", sets + DRAM)
    c = compile_array(d)
    df = d.dataflow()
    (loop, halo), = c.fu_graph.halo if c.fu_graph.halo else ((None, 0),)
    checked = 0
    for cmd, p in random_programs(d, c, rng, 20, 0.4):
        bounds = cmd.bound
        tile, order = dict(cmd.tile), cmd.order
        for row, blk in zip(p.rows, (j.block for j in p.jobs)):
            # the array command's steps are the model's (halo steps included)
            assert row["steps"] == cmd.block_mapping(blk).steps
            for w in p.walks:
                if w.operand not in chained_inputs(c):
                    continue               # other walks mask their padded lanes and rows (reads beyond give 0)
                lay = p.layouts[w.operand]
                ps = _positions(row, w)
                assert len(ps) == row[f"{w.port}_beats"]
                # never below its half (the box sits past the walk's lowest position); past the box's end
                # it reads elements no real product uses, wherever they lie in the buffer
                lo = (row[f"{w.port}_base"] // lay.half_elems) * lay.half_elems
                assert min(ps) >= lo, (w.port, bounds, tile, order)
        checked += 1
    assert checked >= 4
    if halo:
        assert chained_inputs(c) == {"I"}
        held = [w for w in p.walks if w.halo_level is not None]
        assert {w.port for w in held} >= {"out_O"} and all(w.halo == halo for w in held)


def test_a_planned_block_that_fills_its_half_is_accepted():
    """ResNet-50's layer3.1.conv2 on the 4x4 conv_rs: the planner fills the I half exactly (65,536 B) and the
    padded chain root (r = 3 on 4 rows) streams one input row past the box; those reads are of elements no
    real product uses, so the block is accepted and the box is loaded at the half's start."""
    d = load_spec("conv_rs")
    bounds = {"n": 1, "k": 256, "p": 14, "q": 14, "c": 256, "r": 3, "s": 3}
    cmd = plan_layer(d, bounds, d.dataflow(), "layer3.1.conv2")
    p = layer_program(compile_array(d), cmd, "layer3.1.conv2")
    assert max(cmd.footprint_bytes("I", j.block) for j in p.jobs) == p.layouts["I"].half_elems
    assert {row["ld_pos_I"] % p.layouts["I"].half_elems for row in p.rows if row["ld_I"]} == {0}


def test_cli_sim_runs_conv_rs_through_the_memory_system(capsys):
    """`archgen sim conv_rs` without --ideal-dram: the layer model's cycles (what verify holds the RTL to), and
    the planned command is one the generated top accepts."""
    from archgen.cli import main
    from archgen.sim.array_sim import lower_layer, simulate_workload_on_array
    from archgen.sim.layer_model import simulate_layer
    from archgen.workloads import get_workload
    assert main(["sim", "conv_rs", "--workload", "gemm:12,20,9", "--dram-bw", "4"]) == 0
    out = capsys.readouterr().out
    assert "memory system: I" in out and "DRAM 4 B/cycle" in out
    d = load_spec("conv_rs", ["memory.dram.width_bytes=4"])
    wl = get_workload("gemm:12,20,9")
    (res,), _ = simulate_workload_on_array(d, wl)
    bounds, _repeat, _how = lower_layer(wl.layers[0], d)
    c = compile_array(d)
    cmd = plan_layer(d, bounds, d.dataflow(), wl.layers[0].name)
    assert res.cycles == simulate_layer(c, cmd).cycles
    layer_program(c, cmd, wl.layers[0].name)          # the generated top takes the same command
