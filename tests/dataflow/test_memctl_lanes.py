"""The lane map (dataflow/memctl.py ``lane_map``, ``PortWalk.lane_groups``): inputs streamed from lanes on several
array axes read one run of consecutive buffer positions per group of lanes, at a per-block offset from lane 0's
position. Checked by hand on small cases and by replaying the port's walk over the buffer image against the host
program's streams (dataflow/host.py, which computes each lane's element from the FU graph independently)."""
import itertools
import math

import numpy as np
import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.memctl import lane_map, layer_program, walk_rows
from archgen.mappings.memory_tiling import make_command
from archgen.mappings.tiling import map_problem


def test_lane_map_of_a_convolution_on_two_axes():
    # I[c, p+r] on 2x2 {c: 0, p: 1}: lanes (c, p) = (0,0), (0,1), (1,0), (1,1); the lane dimension is p's
    idx = [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert lane_map(idx, 1) == ((0, 0, 1, 1), (0, 1, 0, 1), 2)


def test_lane_map_of_coinciding_lanes_reads_each_element_once():
    # I[p+r] with p and r on two axes: lanes 1 and 2 read the same element; one run of 3 positions
    assert lane_map([(5,), (6,), (6,), (7,)], 0) == ((0, 0, 0, 0), (0, 1, 1, 2), 3)


def test_lane_map_with_a_step_of_two_on_two_axes():
    # I[c, 2p+r] on 2x3 {c: 0, p: 1}: each group a run of 5 positions, every other one taken
    idx = [(c, 2 * p) for c in range(2) for p in range(3)]
    assert lane_map(idx, 1) == ((0, 0, 0, 1, 1, 1), (0, 2, 4, 0, 2, 4), 5)


def test_lane_map_of_lanes_before_lane_0():
    # lanes that step the index by -1 (a true convolution's I[p - r + 2] with r on the lane axis): one run from
    # the last lane's element, lane 0 at its end (the walk's base moves to the run's start; it was refused
    # before 2026-12-05); a second group's run may start before lane 0's too
    assert lane_map([(3,), (2,)], 0) == ((0, 0), (1, 0), 2)
    assert lane_map([(0, 5), (0, 4), (1, 4), (1, 3)], 1) == ((0, 0, 1, 1), (1, 0, 1, 0), 2)


DRAM8 = {"dram": {"width_bytes": 8, "latency": 5, "burst_bytes": 16, "outstanding": 2}}


def _spec(op, shape, spatial, order, control, bounds, types=("I", "W", "O")):
    t = {types[0]: "int8", types[1]: "int8", types[2]: "int32"}
    return load_spec_data({"version": 1, "kind": "array", "name": "lanes", "operation": op, "types": t,
                           "array": {"shape": shape}, "memory": DRAM8, "bounds": bounds,
                           "dataflows": {"d": {"spatial": spatial, "order": order, "control": control}}})


CONV = "O[k,p] += I[c,p+r] * W[k,c,r]"


def test_conv_on_2x2_group_offset_is_the_box_pitch():
    """I's second group (c + 1) starts one row of the block's box past lane 0: the box's p extent (p + r - 1
    positions: the block's p lanes plus the filter's halo), per block; the lane masks bound c and p separately."""
    bounds = {"k": 3, "p": 5, "c": 3, "r": 3}
    d = _spec(CONV, [2, 2], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0], bounds)
    c = compile_array(d)
    p = layer_program(c, make_command(d, bounds, d.dataflow(), {"k": 1, "p": 1, "c": 1}, ("k", "p", "c")),
                      spec_size=False)
    w = next(w for w in p.walks if w.port == "in_I")
    assert (w.lane_groups, w.lane_offsets, w.run, w.groups) == ((0, 0, 1, 1), (0, 1, 0, 1), 2, 2)
    assert {(a, n, cs) for _tl, a, n, cs in w.lane_masks} == {(0, 2, (0, 0, 1, 1)), (1, 2, (0, 1, 0, 1))}
    for blk, row in zip(p.cmd.blocks(), p.rows):
        ext = {dd: e - s for dd, s, e in blk.ranges}
        assert row["in_I_group1"] == ext["p"] + bounds["r"] - 1        # the pitch of c in I's box
        assert row["in_I_lane_last@0"] == min(2, ext["c"]) and row["in_I_lane_last@1"] == min(2, ext["p"])
    assert walk_rows(p.command, p.layouts, p.walks) == list(p.rows)
    assert p.layouts["I"].banks >= 2


def _replay(p, w, tensors):
    """The port's beats as the generated walk reads them on a one-block command: positions from the walk's
    strides and trip counts, each group's run at its offset, lanes masked per axis; the buffer holds the block's
    box (positions outside it read a sentinel that must never reach an unmasked lane)."""
    row = p.rows[0]
    _addr, lo, ext, perm = next(v for (x, _k), v in p.regions.items() if x == w.operand)
    box = np.array(tensors[w.operand])[tuple(slice(lo[k], lo[k] + ext[perm.index(k)]) for k in range(len(lo)))]
    image = list(box.transpose(perm).reshape(-1)) + [10 ** 6] * (4 * math.prod(ext) + 64)
    n = len(w.levels)
    trips = [row[f"{w.port}_trips{j}"] for j in range(n)]
    strides = [row[f"{w.port}_stride{j}"] for j in range(n)]
    starts = [0] + [row[f"{w.port}_group{g}"] for g in range(1, w.groups)]
    beats = []
    for cnt in itertools.product(*[range(t) for t in trips]):
        pos = row[f"{w.port}_base"] + sum(c * s for c, s in zip(cnt, strides))
        ok = [all(cs[ln] < (row[f"{w.port}_lane_last@{a}"] if cnt[tl] == trips[tl] - 1 else nn)
                  for tl, a, nn, cs in w.lane_masks) for ln in range(w.lanes)]
        beats.append([image[pos + starts[g] + o] if k else 0 for g, o, k in zip(w.lane_groups, w.lane_offsets, ok)])
    return np.array(beats, dtype=np.int64)


@pytest.mark.parametrize("op, shape, spatial, order, control, bounds", [
    (CONV, [2, 2], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0], {"k": 3, "p": 5, "c": 3, "r": 3}),
    # coinciding lanes: a depthwise I[c, p+r] with p and r on two axes, one run of 3 positions for 4 lanes
    ("O[c,p] += I[c,p+r] * W[c,r]", [2, 2], {"p": 0, "r": 1}, ["p", "r", "c"], [0, 1], {"c": 3, "p": 5, "r": 3}),
    # stride 2 on two axes, a non-square array
    ("O[k,p] += I[c,p*2+r] * W[k,c,r]", [2, 3], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0],
     {"k": 2, "p": 7, "c": 3, "r": 3}),
    # a 3-D array: I from 8 lanes over (c, p, q)
    ("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", [2, 2, 2], {"c": 0, "p": 1, "q": 2}, ["k", "p", "q", "c", "r"],
     [0, 0, 0], {"k": 2, "p": 3, "q": 3, "c": 3, "r": 2}),
])
def test_lane_map_walk_replays_the_host_streams(op, shape, spatial, order, control, bounds):
    d = _spec(op, shape, spatial, order, control, bounds)
    c = compile_array(d)
    mp = map_problem(d, bounds, d.dataflow())
    outer = tuple(d.dataflow().outer_dims())
    trips = mp.issued_trips()
    cmd = make_command(d, bounds, d.dataflow(), {dd: trips[dd] for dd in outer}, outer)
    assert cmd.n_blocks() == {dd: 1 for dd in outer}
    p = layer_program(c, cmd, spec_size=False)
    tensors = random_operands(c.fu_graph, mp, np.random.default_rng(3))
    host = host_program(c.fu_graph, mp, tensors)
    mapped = [w for w in p.walks if w.lane_groups]
    assert mapped
    if "W[c,r]" in op:
        assert [(w.lane_offsets, w.run) for w in mapped] == [((0, 1, 1, 2), 3)]
    for w in mapped:
        assert np.array_equal(_replay(p, w, tensors), host.streams[w.port])


def test_partial_sums_of_chains_merging_over_two_axes_run_through_the_memory_system():
    """c and r (both reductions) on two axes of 2x2x2, chains along both: the in-tree has two roots per output.
    The lowering read O's partial sums at every root (4 memory lanes for a psum_O of 2; rtlgen/array.py could not
    elaborate it, and memctl refused it by name); now one partial sum per output enters at its lane's root and
    the other root starts from zero. The layer runs exactly in Amaranth, RTL cycles == model cycles."""
    import sys
    from pathlib import Path

    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "rtlgen"))
    from layer_sim import run_top
    bounds = {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}
    d = _spec("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", [2, 2, 2], {"c": 0, "r": 1, "q": 2}, ["q", "c", "r", "k", "p"],
              [1, 1, 0], bounds)
    c = compile_array(d)
    cmd = make_command(d, bounds, d.dataflow(), {"q": 1, "c": 1, "r": 1}, ("q", "c", "r"))
    prog = layer_program(c, cmd, spec_size=False)
    assert c.psum_port.lanes == 2
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(5))
    res = run_top(LayerTop(prog, prog.dram_image(tensors)), prog.dram_words, 100_000)
    out = d.operation.output.name
    got = prog.read_output(res["words"], d.operation.tensor_shape(out, cmd.mapping.bound), signed=True)
    assert np.array_equal(got, reference_einsum(d.operation, tensors, cmd.mapping.bound, c.fu_graph.acc_width))
    assert res["cycles"] == simulate_layer(c, cmd).cycles


# ------------------------------------------------------------------------------------------------
# outputs whose lanes span several array axes: the lane-interleaved layout (memctl.output_lane_split)

CONV2 = "O[k,p,q] += I[c,p+r,q] * W[k,c,r]"


@pytest.mark.parametrize("shape, spatial, order, control, expect", [
    # k on axis 0, p on axis 1: p (O's dimension 1) stays whole, k is stored as (k div 2, k mod 2), innermost
    ([2, 2], {"k": 0, "p": 1}, ["r", "k", "c", "p", "q"], [0, 0], (1, ((0, 2),), (0, 2, 1, 3))),
    # the reduction c on the middle axis of 2x2x2 does not move O's lanes
    ([2, 2, 2], {"k": 0, "c": 1, "p": 2}, ["r", "k", "c", "p", "q"], [0, 0, 1], (1, ((0, 2),), (0, 2, 1, 3))),
    # q split, k whole (lane 0 -> lane 1 steps k)
    ([2, 2, 2], {"q": 0, "r": 1, "k": 2}, ["k", "c", "r", "q", "p"], [1, 1, 0], (0, ((2, 2),), (0, 2, 1, 3))),
    ([2, 3], {"k": 0, "p": 1}, ["r", "c", "k", "p", "q"], [1, 1], (1, ((0, 2),), (0, 2, 4, 1, 3, 5))),
])
def test_output_lane_split_by_hand(shape, spatial, order, control, expect):
    from archgen.dataflow.memctl import output_lane_split
    d = _spec(CONV2, shape, spatial, order, control, {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3})
    assert output_lane_split(compile_array(d)) == expect


def test_output_lanes_on_two_axes_write_one_run_of_the_interleaved_box():
    """conv2 on 2x2 with k and p on the array and q streamed: O's 4 lanes (k, p) write one run of 4 consecutive
    positions of the box stored as [k div 2, q, p, k mod 2] (pos = ((k//2 * Q + q) * P + p) * 2 + k % 2, written
    out here by hand); replaying the write walk (strides, trips, lane offsets, per-axis masks) over a one-block
    command gives, for every beat and lane, the element the host program says the array writes there (padded
    lanes masked). k = 5 is ragged: the box is padded to 3 x 2 k rows, in the buffer and in DRAM."""
    from archgen.dataflow.memctl import block_bytes, layer_dram_bytes, layer_jobs
    from archgen.mappings.memory_tiling import dram_bytes
    bounds = {"k": 5, "p": 5, "q": 3, "c": 3, "r": 3}
    d = _spec(CONV2, [2, 2], {"k": 0, "p": 1}, ["r", "k", "c", "p", "q"], [0, 0], bounds)
    c = compile_array(d)
    mp = map_problem(d, bounds, d.dataflow())
    outer = tuple(d.dataflow().outer_dims())
    trips = mp.issued_trips()
    cmd = make_command(d, bounds, d.dataflow(), {dd: trips[dd] for dd in outer}, outer)
    p = layer_program(c, cmd, spec_size=False)
    w = next(w for w in p.walks if w.port == "out_O")
    assert (w.lane_groups, w.lane_offsets, w.run, w.groups) == ((0, 0, 0, 0), (0, 2, 1, 3), 4, 1)
    assert p.layouts["O"].split == ((0, 2),) and p.layouts["O"].banks >= 4
    _addr, lo, ext, perm = next(v for (x, _k), v in p.regions.items() if x == "O")
    assert (lo, ext, perm) == ((0, 0, 0), (3, 3, 5, 2), (0, 2, 1))
    host = host_program(c.fu_graph, mp, random_operands(c.fu_graph, mp, np.random.default_rng(3)))
    row = p.rows[0]
    n = len(w.levels)
    wt = [row[f"out_O_trips{j}"] for j in range(n)]
    ws = [row[f"out_O_stride{j}"] for j in range(n)]
    beats = list(itertools.product(*[range(t) for t in wt]))
    assert len(beats) == len(host.out_index)
    P, Q = bounds["p"], bounds["q"]
    for cnt, want in zip(beats, host.out_index):
        pos = row["out_O_base"] + sum(a * s for a, s in zip(cnt, ws))
        for ln in range(w.lanes):
            ok = all(cs[ln] < (row[f"out_O_lane_last@{a}"] if cnt[tl] == wt[tl] - 1 else nn)
                     for tl, a, nn, cs in w.lane_masks)
            k, pp, q = want[ln]
            assert ok == (k >= 0)
            if ok:
                assert pos + w.lane_offsets[ln] == ((k // 2 * Q + q) * P + pp) * 2 + k % 2
    # DRAM: the padded box (6 x 5 x 3 int32), in the job list, the closed form and the shape table
    assert block_bytes(cmd, "O", next(cmd.blocks()), ((0, 2),)) == 6 * 5 * 3 * 4
    assert layer_dram_bytes(c, cmd)["O.write"] == 6 * 5 * 3 * 4 == sum(j.write for j in layer_jobs(cmd, ((0, 2),)))
    assert dram_bytes(cmd)["O.write"] == 5 * 5 * 3 * 4
    assert row["wr_bytes"] == 6 * 5 * 3 * 4
    assert walk_rows(p.command, p.layouts, p.walks) == list(p.rows)


def test_layer_dram_bytes_of_an_interleaved_output_over_ragged_blocks():
    """Blocks of 1 k tile: the last k block (k = 4) is half a tile, padded to 2; p ragged too but whole (the lane
    dimension). The closed form (distinct output blocks times padded bytes) equals the model's write-backs."""
    from archgen.dataflow.memctl import layer_dram_bytes
    from archgen.sim.layer_model import simulate_layer
    bounds = {"k": 5, "p": 5, "q": 3, "c": 3, "r": 3}
    d = _spec(CONV2, [2, 2], {"k": 0, "p": 1}, ["r", "k", "c", "p", "q"], [0, 0], bounds)
    c = compile_array(d)
    cmd = make_command(d, bounds, d.dataflow(), {"r": 1, "k": 1, "c": 3, "p": 2}, ("k", "p", "r", "c"))
    closed = layer_dram_bytes(c, cmd)
    assert closed["O.write"] == (2 + 2 + 2) * 5 * 3 * 4          # k blocks 0-1, 2-3, 4 (+ 1 padded row)
    assert simulate_layer(c, cmd).dram_bytes == closed
