"""``schedule: map`` through the memory system (dataflow/memctl.py): the planner's command counts the padded rows
(L + span positions of the padded loop per block chunk), each memory-fed lane of an input that uses the padded loop
starts its walk h + sigma.s of its root before the row (``lane_lead``: the delay connections' chain-root lead, per
lane), no walk holds (the array masks per FU), and the walk of the command equals the rows from the job list.
Outputs, cycles and DRAM bytes on Verilator: tests/verif/test_skewed_maps_rtl.py."""
import itertools
import random
import zlib

import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.ir import Role
from archgen.dataflow.memctl import chained_inputs, descriptor_format, lane_lead, layer_program, signed_group_offsets
from archgen.mappings.memory_tiling import make_command, plan_layer
from archgen.mappings.tiling import row_pads
from test_memctl_delay import random_programs
from test_memctl_lanes import CONV as LANES_CONV, _spec as lanes_spec

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1", "s": "t_s"}
MAPS = {"3x2": ((3, 2), CONV, None), "2x3": ((2, 3), {**CONV, "k": "2*t_k + s0", "p": "3*t_p + s1"}, None),
        "1x4": ((1, 4), {**CONV, "k": "t_k", "p": "4*t_p + s1", "r": "t_r - s1"}, None),
        "3x2-halo": ((3, 2), {**CONV, "r": "t_r - s0"}, [1, 0])}


def _design(shape, mp, control):
    df = {"map": mp, "order": ["n", "k", "p", "q", "c", "r", "s"], "inner": ["c", "r", "s"], "schedule": "map"}
    return load_spec_data({"version": 1, "name": "own", "operation": CONV_OP, "array": {"shape": list(shape)},
                           "types": {"I": "int8", "W": "int8", "O": "int32"},
                           "memory": {"dram": {"width_bytes": 8, "burst_bytes": 16}},
                           "dataflows": {"m": df | ({"control": control} if control else {})}})


def _positions(row, w):
    """Every buffer position the port walk visits, beat by beat."""
    trips = [row[f"{w.port}_trips{j}"] for j in range(len(w.levels))]
    strides = [row[f"{w.port}_stride{j}"] for j in range(len(w.levels))]
    return [row[f"{w.port}_base"] + sum(c * s for c, s in zip(cnt, strides))
            for cnt in itertools.product(*[range(t) for t in trips])]


@pytest.mark.parametrize("name", list(MAPS))
def test_map_schedule_programs_on_random_commands(name):
    d = _design(*MAPS[name])
    c = compile_array(d)
    (pad,) = row_pads(d, c.dataflow)
    span = pad.span(d.shape)
    rng = random.Random(zlib.crc32(name.encode()))
    checked = 0
    for cmd, p in random_programs(d, c, rng, 12, 0.5):
        for row, blk in zip(p.rows, (j.block for j in p.jobs)):
            ext = {x: e - s for x, s, e in blk.ranges}
            # each row of the padded loop is its chunk plus the span (h + the largest sigma.s)
            assert row["steps"] == cmd.block_mapping(blk).steps == \
                (ext["c"] * (ext["r"] + span) * ext["s"])
            assert row[f"trips_{pad.loop}"] == ext[pad.loop]
            for w in p.walks:
                assert w.halo_level is None              # nothing holds: the array masks per FU
                if w.operand in chained_inputs(c):       # never below the operand's half (its margin)
                    half = p.layouts[w.operand].half_elems
                    assert min(_positions(row, w)) >= row[f"{w.port}_base"] // half * half
        checked += 1
    assert checked >= 4
    assert chained_inputs(c) == {"I", "W"}
    for ln in c.fu_graph.inputs[0].lanes + c.fu_graph.inputs[1].lanes:
        root = ln.fus[0]
        assert lane_lead(c, "I", root) == {"inner:r": -(pad.halo + sum(v * x for v, x in zip(pad.sigma, root)))}


def test_the_planner_plans_the_padded_rows():
    """plan_layer runs the map's own schedule (it used to refuse it) and prices its padded steps."""
    d = _design(*MAPS["3x2"])
    c = compile_array(d)
    cmd = plan_layer(d, {"n": 1, "k": 6, "p": 6, "q": 4, "c": 3, "r": 3, "s": 3}, c.dataflow)
    assert cmd.mapping.steps == 3 * (3 + 3) * 3      # rows of r: 3 + span 3 (sigma.s up to 2 + 1 on 3x2)
    assert all(p.role is Role.STREAM for p in c.fu_graph.inputs)


# several skewed loops (H125) through the memory system: each lane leads on every padded loop by its root's own
# h_l + sigma_l.s, so a lane-map group's run can start below lane 0's; its command offset is signed (main refused it)
SEVERAL = {"1x2": ((1, 2), {**CONV, "k": "t_k", "p": "2*t_p + s1", "r": "t_r - s1", "s": "t_s - 2*s1"}, None),
           "2x2": ((2, 2), {**CONV, "k": "2*t_k + s0", "r": "t_r - s0 - 2*s1", "s": "t_s - 2*s1"}, [1, 0]),
           "3x2": ((3, 2), {**CONV, "r": "t_r - 2*s1", "s": "t_s - 2*s1"}, None),
           "2x3": ((2, 3), {**CONV, "k": "2*t_k + s0", "p": "3*t_p + s1", "r": "t_r - s1", "s": "t_s - s0 - s1"},
                   [0, 1])}


def _lowest(row, w):
    """The lowest position a read walk visits: its base, each negative stride's excursion and the lowest group's run."""
    trips = [row[f"{w.port}_trips{j}"] for j in range(len(w.levels))]
    strides = [row[f"{w.port}_stride{j}"] for j in range(len(w.levels))]
    groups = [0] + [row[f"{w.port}_group{g}"] for g in range(1, w.groups)]
    return row[f"{w.port}_base"] + min(groups) + sum(min(0, s * (t - 1)) for s, t in zip(strides, trips))


def _check_groups(c, p):
    """Group offsets fit their signed fields (an encode round trip), and no read walk reaches below its half."""
    fmt = descriptor_format(p)
    widths = dict(fmt.tables["S"])
    words = fmt.encode(p.command)
    negative = 0
    for row in p.rows:
        for w in p.walks:
            half = p.layouts[w.operand].half_elems
            if w.kind != "write":
                assert _lowest(row, w) >= row[f"{w.port}_base"] // half * half, (w.port, row)
            for g in range(1, w.groups):
                name = f"{w.port}_group{g}"
                assert (name in fmt.signed) == signed_group_offsets(c, w.operand)
                assert widths[name] == widths[f"{w.port}_base"] + (name in fmt.signed)
                negative += row[name] < 0
    assert words["S"]
    return negative


@pytest.mark.parametrize("name", list(SEVERAL))
def test_several_skews_sign_their_lane_group_offsets(name):
    d = _design(*SEVERAL[name])
    c = compile_array(d)
    assert len(row_pads(d, c.dataflow)) == 2
    cmd = plan_layer(d, {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 3, "s": 2}, c.dataflow)
    p = layer_program(c, cmd, spec_size=False)        # main refused: "... a negative address offset ..."
    assert _check_groups(c, p) > 0                    # a group's run below lane 0's, in the planner's command
    rng = random.Random(zlib.crc32(name.encode()))
    checked = sum(1 for _cmd, p in random_programs(d, c, rng, 10, 0.5) if _check_groups(c, p) >= 0)
    assert checked >= 4


def test_group_offsets_stay_unsigned_without_leads():
    """A compressed build's lane map (I[c, p+r] on 2x2, no leads, no negative coefficient) keeps unsigned group
    fields of the base's width: its descriptor does not change."""
    bounds = {"k": 3, "p": 5, "c": 3, "r": 3}
    d = lanes_spec(LANES_CONV, [2, 2], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0], bounds)
    c = compile_array(d)
    p = layer_program(c, make_command(d, bounds, d.dataflow(), {"k": 1, "p": 1, "c": 1}, ("k", "p", "c")),
                      spec_size=False)
    assert [w.groups for w in p.walks if w.port == "in_I"] == [2]
    assert not signed_group_offsets(c, "I")
    assert _check_groups(c, p) == 0
