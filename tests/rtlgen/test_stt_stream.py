"""The stream sequencer (rtlgen/stt_stream.py) drives, slot by slot, the addresses and valid bits of its lane
program's model (dataflow/stt_phase.py ``lane_walk``), on every port of skewed maps on several arrays, with
slots that stall at random (the array's lock-step enable), in Amaranth's simulator."""
import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_phase import lane_walk, stt_lane_programs
from archgen.rtlgen.stt_stream import SttLaneSequencer

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]


def _gemm(shape, stt, clock_mhz=500, order=("k", "i", "j")):
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "clock_mhz": clock_mhz, "types": {"A": "int8", "B": "int8", "C": "int32"},
                           "array": {"shape": list(shape)}, "dataflows": {"d": {"stt": stt, "order": list(order)}}})


def _run(program, slots, seed, layout=None):
    """Step the lane sequencer of ``program`` through ``slots`` fired slots under random stalls (a slot holds
    until it fires) and record, per slot and lane, valid and the lane's value: the address (or tag value), and
    with a banked ``layout`` also the bank."""
    seq = SttLaneSequencer(program, layout) if layout is not None else SttLaneSequencer(program)
    return _run_seq(seq, program, slots, seed, banked=layout is not None)


def _command_fields(prog, vals, **extra):
    """The programmable build's command fields of lane program ``prog`` as signals holding ``vals``
    (``sequencer_values``): stretch, trips, in-bank advances, offsets, edge masks, extents and origin advances,
    plus ``extra`` ones."""
    from amaranth import Signal, signed

    from archgen.dataflow.stt_command import COORD_BITS, LIN_BITS, TRIP_BITS
    fields = {"stretch": Signal(TRIP_BITS, init=vals["stretch"], name="cmd_stretch"), **extra}
    for name, widths, key in [("trips", TRIP_BITS, "trips"), ("advlin", signed(LIN_BITS), "advlin"),
                              ("off", signed(LIN_BITS), "off"), ("masks", 1 << len(prog.trips), "masks"),
                              ("ext", TRIP_BITS, "ext")]:
        for i, v in enumerate(vals[key]):
            fields[f"{name}{i}"] = Signal(widths, init=v, name=f"cmd_{name}{i}")
    for lv, adv in enumerate(vals["adv"]):
        for j, v in enumerate(adv):
            fields[f"adv{lv}_{j}"] = Signal(signed(COORD_BITS), init=v, name=f"cmd_adv{lv}_{j}")
    return fields


def _programmable_sequencer(skel, fields):
    """The lane sequencer of the build's skeleton program ``skel``, its command values the signals ``fields``."""
    from archgen.dataflow.stt_command import COORD_BITS, LIN_BITS, TRIP_BITS
    return SttLaneSequencer(skel, None, fields, {"coord": COORD_BITS, "lin": LIN_BITS, "trip": TRIP_BITS,
                                                 "addr": 16, "value": 8})


@pytest.mark.parametrize("design, bound", [
    (_gemm((4, 4), HEX), {"i": 7, "j": 6, "k": 5}),
    (_gemm((1, 4), HEX, order=("i", "j", "k")), {"i": 5, "j": 7, "k": 3}),
    (_gemm((2, 4), HEX, 1500), {"i": 5, "j": 6, "k": 4}),
    (_gemm((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]]), {"i": 6, "j": 7, "k": 5}),
    (load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 4}),
    (load_spec_data({"version": 1, "name": "dw", "operation": "O[c,p] += I[c,p+r] * W[c,r]",     # validity tags
                     "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [3, 4]},
                     "dataflows": {"d": {"stt": HEX, "order": ["c", "p", "r"]}}}), {"c": 3, "p": 6, "r": 3}),
])
def test_sequencer_drives_the_lane_walk(design, bound):
    tiling = stt_tiling(compile_array(design).network, bound)
    for k, program in enumerate(stt_lane_programs(tiling)):
        want_v, want_a = lane_walk(program, tiling.slots)
        got_v, got_a, _ = _run(program, tiling.slots, seed=k)
        assert want_v.any() or program.is_psum, program.port
        assert np.array_equal(got_v, want_v), program.port
        assert np.array_equal(np.where(want_v, got_a, 0), np.where(want_v, want_a, 0)), program.port


@pytest.mark.parametrize("design, bound", [
    (_gemm((4, 4), HEX), {"i": 7, "j": 6, "k": 5}),
    (_gemm((5, 2), HEX, order=("j", "k", "i")), {"i": 9, "j": 5, "k": 4}),
    (load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 4}),
])
def test_banked_sequencer_drives_the_layout_walk(design, bound):
    """With a banked layout the sequencer drives each lane's bank and in-bank index (dataflow/stt_bank.py
    ``layout_walk``): adds of the walker's in-bank base and a constant per phase entry."""
    from archgen.dataflow.stt_bank import layout_walk
    from archgen.dataflow.stt_layer import plan_stt_layer
    tiling = stt_tiling(compile_array(design).network, bound)
    plan = plan_stt_layer(tiling)
    checked = 0
    for k, program in enumerate(plan.programs):
        layout = plan.layouts.get(program.operand)
        if program.is_tag or layout is None or layout.copies or not program.port.startswith(("in_", "psum_", "out_")):
            continue
        want_v, want_b, want_i = layout_walk(program, layout, tiling.slots)
        got_v, got_i, got_b = _run(program, tiling.slots, seed=k, layout=layout)
        assert np.array_equal(got_v, want_v), program.port
        assert np.array_equal(np.where(want_v, got_b, 0), np.where(want_v, want_b, 0)), program.port
        assert np.array_equal(np.where(want_v, got_i, 0), np.where(want_v, want_i, 0)), program.port
        checked += 1
    assert checked >= 3


def test_one_sequencer_build_drives_every_layer_from_its_command():
    """ONE elaboration per port (the build's skeleton program, dataflow/stt_command.py), its problem-dependent
    values (trip counts, origin changes, extents, the phase table's offsets and edge-mask bits) as run-time
    signals holding each layer's command values: the sequencer drives each layer's lane walk, for layers of
    different shapes (ragged, one smaller than the box along i, one whose output block comes back one box
    later: its boxes two box groups apart, ``stretch``)."""
    from amaranth import Signal

    from archgen.dataflow.stt_command import build_stt, command_values, plan_for_build, sequencer_values
    build = build_stt(compile_array(load_spec("gemm_hex", ["array.shape=3x5"])))
    for li, layer in enumerate([{"i": 7, "k": 5, "j": 6}, {"i": 1, "k": 3, "j": 9}, {"i": 2, "k": 9, "j": 3}]):
        plan = plan_for_build(build, layer)
        assert plan.grid == () and command_values(build, plan)     # one block: the walk is the layer's
        assert plan.programs[0].stretch == (2 if li == 2 else 1)
        for k, skel in enumerate(build.programs):
            prog = plan.program(skel.port)
            want_v, want_a = lane_walk(prog, plan.tiling.slots)
            vals = sequencer_values(prog, None)
            fields = _command_fields(prog, vals)
            for e, vs in enumerate(vals["vals"]):
                for mk, v in enumerate(vs):
                    fields[f"val{e}_{mk}"] = Signal(8, init=v)
            seq = _programmable_sequencer(skel, fields)
            got_v, got_a, _ = _run_seq(seq, skel, plan.tiling.slots, seed=10 * li + k)
            assert np.array_equal(got_v, want_v), (layer, skel.port)
            assert np.array_equal(np.where(want_v, got_a, 0), np.where(want_v, want_a, 0)), (layer, skel.port)


def _conv_pad(shape, stt, word, mem):
    m = {"dram": {"width_bytes": word, "latency": 5, "burst_bytes": 2 * word, "outstanding": 2}}
    m.update({t: {"bytes": b} for t, b in mem.items()})
    return load_spec_data({"version": 1, "name": "conv_pad", "operation": "O[k,p] += W[k,r] * I[p-r]",
                           "clock_mhz": 500, "types": {"W": "int8", "I": "int8", "O": "int32"},
                           "array": {"shape": list(shape)}, "dataflows": {"d": {"stt": stt, "order": ["r", "k", "p"]}},
                           "memory": m})


def test_a_block_region_with_a_halo_starts_the_walk_there():
    """Blocks that cut p of I[p-r] hold a halo below their first index (dataflow/stt_layer.py ``block_halo``): box 0's
    origin is the program's ``start`` (coordinates and in-bank base). A banked I (a cell of 2: the halo of 1
    rounded up to 2) on a per-layer top, and the one programmable build's command fields (``start0``,
    ``startlin``: I in lane copies) drive the layout walk and the lane walk."""
    from amaranth import Signal, signed

    from archgen.dataflow.stt_bank import layout_walk
    from archgen.dataflow.stt_command import (COORD_BITS, LIN_BITS, build_stt, command_values, plan_for_build,
                                              sequencer_values)
    from archgen.dataflow.stt_layer import plan_stt_layer
    design = _conv_pad((2, 3), [[-1, 1, 0], [1, 1, 0], [1, 0, -1]], 4, {"I": 8, "W": 32})
    plan = plan_stt_layer(stt_tiling(compile_array(design).network, {"k": 4, "p": 14, "r": 2}))
    prog, lay = plan.program("in_I"), plan.layouts["I"]
    assert plan.halo == {"I": (2,)} and prog.start == (2,) and lay.mod == (2,) and not lay.copies
    want_v, want_b, want_i = layout_walk(prog, lay, plan.tiling.slots)
    got_v, got_i, got_b = _run(prog, plan.tiling.slots, seed=3, layout=lay)
    assert want_v.any() and np.array_equal(got_v, want_v)
    assert np.array_equal(np.where(want_v, got_b, 0), want_b) and np.array_equal(np.where(want_v, got_i, 0), want_i)

    design = _conv_pad((3, 5), HEX, 8, {"W": 400, "I": 40, "O": 2000})
    build = build_stt(compile_array(design))
    plan = plan_for_build(build, {"k": 7, "p": 9, "r": 4})
    v = command_values(build, plan)
    assert plan.halo == {"I": (3,)} and v["in_I.start0"] == 3 and v["in_I.startlin"] == 3      # blocks of p 4
    skel, prog = build.program("in_I"), plan.program("in_I")
    vals = sequencer_values(prog, None)
    fields = _command_fields(prog, vals, start0=Signal(signed(COORD_BITS), init=3),
                             startlin=Signal(signed(LIN_BITS), init=vals["startlin"]))
    seq = _programmable_sequencer(skel, fields)
    want_v, want_a = lane_walk(prog, plan.tiling.slots)
    got_v, got_a, _ = _run_seq(seq, skel, plan.tiling.slots, seed=4)
    assert want_v.any() and np.array_equal(got_v, want_v)
    assert np.array_equal(np.where(want_v, got_a, 0), np.where(want_v, want_a, 0))
    # box 0's lanes read from the region's element 3 on (I[p0 - 3] is element 0): without start they read 0 there
    assert not np.array_equal(lane_walk(dataclasses.replace(prog, start=()), plan.tiling.slots)[1] * want_v,
                              np.where(want_v, want_a, 0))


def _run_seq(seq, program, slots, seed, banked=False):
    sim = Simulator(seq)
    sim.add_clock(1e-8)
    rng = np.random.default_rng(seed)
    valid = np.zeros((slots, program.lanes), dtype=bool)
    addr = np.zeros((slots, program.lanes), dtype=np.int64)
    bank = np.zeros((slots, program.lanes), dtype=np.int64)

    async def bench(ctx):
        ctx.set(seq.start, 1)
        await ctx.tick()
        ctx.set(seq.start, 0)
        n = 0
        while n < slots:
            fire = bool(rng.random() < 0.7)
            ctx.set(seq.fire, fire)
            for lane in range(program.lanes):
                if fire and ctx.get(seq.valid[lane]):
                    valid[n, lane] = True
                    addr[n, lane] = ctx.get(seq.value[lane] if program.is_tag else seq.addr[lane])
                    if banked:
                        bank[n, lane] = ctx.get(seq.bank[lane])
            await ctx.tick()
            n += fire
    sim.add_testbench(bench)
    sim.run()
    return valid, addr, bank
