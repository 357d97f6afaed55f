"""Walks that step an operand's buffer downwards: an index with a negative coefficient (a true convolution's
``I[p - r]``). The walk's strides are signed command fields one bit wider (dataflow/memctl.py
``descriptor_format``; rtlgen/layer_top.py sign-extends them into the walk's adders, whose positions wrap); they
were refused as `dataflows.X: port in_I: a negative address stride is not supported`. Lanes that step the index
by -1 read one run from the last lane's element (``lane_map``; refused before as `... its lanes do not step one
tensor dimension of I by 1`). Checked by the pack/unpack
of the command, and as a whole layer through the memory system in Amaranth (exact, RTL cycles == model)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import descriptor_format, layer_program
from archgen.mappings.memory_tiling import make_command, plan_layer

TRUE_CONV = "O[k,p] += W[k,r] * I[p-r+2]"


def _spec(shape, spatial, order, control, op=TRUE_CONV):
    return load_spec_data({"version": 1, "kind": "array", "name": "tconv", "operation": op,
                           "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": shape},
                           "bounds": {"k": 3, "p": 5, "r": 3},
                           "memory": {"dram": {"width_bytes": 8, "latency": 5, "burst_bytes": 16, "outstanding": 2}},
                           "dataflows": {"d": {"spatial": spatial, "order": order, "control": control}}})


def test_negative_strides_are_signed_fields_that_round_trip():
    d = _spec([2, 2], {"k": 0, "p": 1}, ["k", "p", "r"], [0, 0])
    c = compile_array(d)
    bounds = {"k": 5, "p": 5, "r": 3}
    prog = layer_program(c, make_command(d, bounds, d.dataflow(), {"k": 1, "p": 1}, ("k", "p")), spec_size=False)
    fmt = descriptor_format(prog)
    w = next(w for w in prog.walks if w.operand == "I")
    strides = {f"{w.port}_stride{j}": prog.rows[0][f"{w.port}_stride{j}"] for j in range(len(w.levels))}
    assert min(strides.values()) < 0                         # r walks I's buffer downwards
    assert set(strides) <= fmt.signed
    assert not {f for f in fmt.signed if not f.startswith(w.port)}     # W and O walk upwards: unsigned fields
    words = fmt.encode(prog.command, "layer", prog.cmd.dataflow.name)
    decoded = []
    for mask, row in prog.command.shapes.items():       # every shape-table row: the signed fields decode back
        word, off = words["S"][mask], 0
        for name, width in fmt.tables["S"]:
            v = (word >> off) & ((1 << width) - 1)
            if name in fmt.signed:
                v -= (1 << width) * (v >> (width - 1))
                assert v == row.get(name, 0), (mask, name)
                decoded.append(v)
            off += width
    assert min(decoded) < 0


def test_a_positive_stride_keeps_the_unsigned_field():
    d = _spec([2, 2], {"k": 0, "p": 1}, ["k", "p", "r"], [0, 0], op="O[k,p] += W[k,r] * I[p+r]")
    c = compile_array(d)
    bounds = {"k": 5, "p": 5, "r": 3}
    prog = layer_program(c, make_command(d, bounds, d.dataflow(), {"k": 1, "p": 1}, ("k", "p")), spec_size=False)
    assert descriptor_format(prog).signed == frozenset()


@pytest.mark.parametrize("shape, spatial, order, control", [
    ([2, 2], {"k": 0, "p": 1}, ["k", "p", "r"], [0, 0]),
    ([2, 3], {"r": 0, "k": 1}, ["p", "r", "k"], [1, 0]),      # r on the array: the lanes are rows of the walk
    # r on the lane axis: lane 0 -> lane 1 steps I's index by -1 (a reversed run, the walk's base at its start;
    # r = 3 on 2 lanes: the last tile's second lane is padding)
    ([2, 2], {"p": 0, "r": 1}, ["k", "r", "p"], [0, 0]),
])
def test_true_convolution_through_the_memory_system_in_amaranth(shape, spatial, order, control):
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "rtlgen"))
    from layer_sim import run_top
    d = _spec(shape, spatial, order, control)
    c = compile_array(d)
    bounds = {"k": 5, "p": 7, "r": 3}
    cmd = plan_layer(d, bounds, c.dataflow)
    prog = layer_program(c, cmd, spec_size=False)
    assert descriptor_format(prog).signed
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(4))
    res = run_top(LayerTop(prog, prog.dram_image(tensors)), prog.dram_words, 100_000)
    got = prog.read_output(res["words"], d.operation.tensor_shape("O", cmd.mapping.bound), signed=True)
    assert np.array_equal(got, reference_einsum(d.operation, tensors, cmd.mapping.bound, c.fu_graph.acc_width))
    assert res["cycles"] == simulate_layer(c, cmd).cycles


# ------------------------------------------------------------------------------------------------
# zero padding (issue 14): an input index that reaches below 0 over the layer (``I[p - r]``) is the zero padding a
# convolution defines there. The block's box keeps its lower corner below 0 (``bounding_box`` no longer clips), the
# host packs zeros at the positions outside the tensor (``_box_values``), and the DMA moves the padded box: the
# padding's zeros are DRAM bytes, counted by the model and the closed form as the RTL's DMA moves them.

PAD_CONV = "O[k,p] += W[k,r] * I[p-r]"
PAD_CONV2 = "O[k,p,q] += I[c,p-r,q-s] * W[k,c,r,s]"


def test_box_values_pack_zeros_outside_the_tensor():
    from archgen.dataflow.memctl import _box_values
    t = np.arange(1, 13).reshape(3, 4)
    # a box from (-1, 2) with extents (2 rows, 4 cols) in tensor order, stored columns-first (perm (1, 0))
    got = _box_values(t, (-1, 2), (4, 2), (1, 0))
    want = np.zeros((2, 4), dtype=np.int64)
    want[1, :2] = t[0, 2:4]                     # row -1 is padding; columns 4 and 5 lie past the tensor's end
    assert got == [int(v) for v in want.T.reshape(-1)]
    assert _box_values(t, (5, 0), (1, 1), (0, 1)) == [0]          # wholly outside: zeros only


def test_reference_reads_zero_below_the_tensor():
    from archgen.arch.einsum import parse_operation
    from archgen.verif.golden import reference_einsum
    op = parse_operation(PAD_CONV)
    w, i = np.array([[1, 10, 100]]), np.array([1, 2, 3, 4])
    got = reference_einsum(op, {"W": w, "I": i}, {"k": 1, "p": 4, "r": 3})
    assert got.tolist() == [[1, 12, 123, 234]]        # O[p] = sum_r W[r] I[p - r], I[-1] = I[-2] = 0 (not wrapped)


def test_padded_boxes_are_the_footprint_and_the_closed_form():
    from archgen.mappings.memory_tiling import bounding_box, dram_bytes
    d = _spec([2, 2], {"k": 0, "p": 1}, ["k", "p", "r"], [0, 0], op=PAD_CONV)
    cmd = make_command(d, {"k": 5, "p": 7, "r": 3}, d.dataflow(), {"k": 1, "p": 1}, ("k", "p"))
    blocks = list(cmd.blocks())
    first = {dd: (s, e) for dd, s, e in blocks[0].ranges}
    assert bounding_box(d, "I", first, cmd.bound) == [(-2, 1)]      # p in [0, 2), r in [0, 3): p - r in [-2, 1]
    assert cmd.footprint_bytes("I", blocks[0]) == 4                 # 2 zeros of padding + I[0], I[1]
    # the closed form: I is reloaded for every (k, p) block (order k > p): per k the boxes of p in [0, 2), [2, 4),
    # [4, 6) and [6, 7), i.e. [-2, 1], [0, 3], [2, 5], [4, 6]: 4 + 4 + 4 + 3 int8 elements, 3 blocks along k
    assert dram_bytes(cmd)["I.read"] == 3 * (4 + 4 + 4 + 3) == sum(cmd.footprint_bytes("I", b) for b in blocks)


@pytest.mark.parametrize("op, bounds, shape, spatial, order, control, tile, cmd_order", [
    # I[p-r] with a block per array tile: every block of p = 0 reaches I[-2], I[-1] (padding in its box)
    (PAD_CONV, {"k": 5, "p": 7, "r": 3}, [2, 2], {"k": 0, "p": 1}, ["k", "p", "r"], [0, 0], {"k": 1, "p": 1},
     ("p", "k")),
    # r on the lanes (lane 0 -> lane 1 steps I's index by -1), the planner's command
    (PAD_CONV, {"k": 5, "p": 7, "r": 3}, [2, 2], {"p": 0, "r": 1}, ["k", "r", "p"], [0, 0], None, None),
    # a 2-D padded convolution: boxes below 0 along two tensor dimensions, blocks along p and q
    (PAD_CONV2, {"k": 3, "p": 5, "q": 4, "c": 2, "r": 3, "s": 3}, [2, 2], {"k": 0, "p": 1},
     ["k", "p", "q", "c", "r", "s"], [0, 0], {"k": 1, "p": 1, "q": 2}, ("p", "q", "k")),
])
def test_zero_padding_through_the_memory_system_in_amaranth(op, bounds, shape, spatial, order, control, tile,
                                                            cmd_order):
    from archgen.dataflow.memctl import layer_dram_bytes
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "rtlgen"))
    from layer_sim import run_top
    d = _spec(shape, spatial, order, control, op=op)
    c = compile_array(d)
    cmd = make_command(d, bounds, c.dataflow, tile, cmd_order) if tile else plan_layer(d, bounds, c.dataflow)
    prog = layer_program(c, cmd, spec_size=False)
    assert min(lo[a] for (x, _k), (_ad, lo, _e, _p) in prog.regions.items() if x == "I" for a in range(len(lo))) < 0
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(4))
    res = run_top(LayerTop(prog, prog.dram_image(tensors)), prog.dram_words, 100_000)
    got = prog.read_output(res["words"], d.operation.tensor_shape("O", cmd.mapping.bound), signed=True)
    assert np.array_equal(got, reference_einsum(d.operation, tensors, cmd.mapping.bound, c.fu_graph.acc_width))
    model = simulate_layer(c, cmd)
    assert res["cycles"] == model.cycles
    moved = {k: v for k, v in res["moved"].items() if v or k in model.dram_bytes}
    assert moved == model.dram_bytes == layer_dram_bytes(c, cmd)       # the padding's zeros included
