"""Verilator: the two interconnect plans issue 14's refusal search found refused outside the issue's categories
(docs/limits.md, the audit; docs/dataflows.md "Lanes that mix wires with registers or FIFOs" and "Reductions
with chained and tree axes").

1. A streamed input whose lane reaches some FUs over same-cycle wires and others through systolic registers or a
   delay connection: the wires are FU-to-FU edges, lowered from the sender's input port to the receiver's (848
   specs of the search were refused by the primitive lowering).
2. An output reduced across two kinds of array axes at once: partial-sum chains along the axes the control
   vector skews, one adder tree over the chain ends along the axes it does not (1,186 specs were refused with
   `spatial reductions must be all chains ... or all trees`).

Each case: outputs exact, no partial sum read before it was written, RTL cycles == model cycles.
"""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_check import verify_array
from archgen.verif.layer_check import verify_layer

pytestmark = pytest.mark.verilator

_TYPES = {"W": "int8", "I": "int8", "O": "int32"}
CONV1 = {"version": 1, "kind": "array", "name": "conv1_mixed_lane", "operation": "O[k,p] += W[k,r] * I[p+r]",
         "types": _TYPES, "bounds": {"k": 3, "p": 5, "r": 3}}
CONV2 = {"version": 1, "kind": "array", "name": "conv2_mixed", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
         "types": _TYPES, "bounds": {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}}
ACC3 = {"version": 1, "kind": "array", "name": "acc3_mixed", "operation": "O[k] += I[c,r,s] * W[k,c,r,s]",
        "types": _TYPES, "bounds": {"k": 3, "c": 3, "r": 3, "s": 4}}


def _design(base, shape, df):
    return load_spec_data({**base, "array": {"shape": shape}, "dataflows": {"d": df}})


def _check_array(res):
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles, (res.rtl_cycles, res.model_cycles)


def test_a_lane_of_wires_behind_a_delay_connection_through_the_memory_system():
    """The search's example, O[k,p] += W[k,r] * I[p+r] on 2x2, {k: 0, r: 1}, order [k, r, p], control [0, 0]: I's
    lane enters FU (0, 1), reaches FU (0, 0) through a one-step FIFO along r and row 1 over wires along k. Whole
    layer through the generated memory system: exact, RTL cycles == model cycles, DMA bytes == closed form."""
    design = _design(CONV1, [2, 2], {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p"], "control": [0, 0]})
    r = verify_layer(design, {"k": 3, "p": 7, "r": 3}, seed=2)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


def test_chains_along_one_axis_and_a_tree_along_the_other():
    """O[k,p,q] += I[c,p+r,q] * W[k,c,r] on 2x2, {c: 0, r: 1}, control [0, 1]: partial sums chain along r (one
    register per hop), the two chain ends meet in an adder tree along c, partial sums of earlier tiles enter the
    tree. The array with ideal streams (the memory system refuses I's lanes, which span two array axes)."""
    design = _design(CONV2, [2, 2], {"spatial": {"c": 0, "r": 1}, "order": ["k", "c", "r", "p", "q"], "control": [0, 1]})
    _check_array(verify_array(design, {"k": 3, "p": 4, "q": 2, "c": 3, "r": 3}, seed=5))


@pytest.mark.slow
@pytest.mark.parametrize("base, shape, df, bounds", [
    (CONV2, [2, 2, 2], {"spatial": {"k": 0, "p": 1, "q": 2}, "order": ["q", "c", "p", "k", "r"], "control": [0, 0, 1]},
     {"k": 3, "p": 5, "q": 3, "c": 2, "r": 3}),
    (CONV2, [2, 2, 2], {"spatial": {"k": 0, "q": 1, "r": 2}, "order": ["k", "c", "r", "q", "p"], "control": [0, 0, 0]},
     {"k": 3, "p": 5, "q": 3, "c": 2, "r": 3}),
    (CONV2, [2, 2, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["c", "r", "p", "k", "q"], "control": [0, 0, 1]},
     {"k": 3, "p": 4, "q": 3, "c": 3, "r": 3}),
    (CONV2, [2, 3], {"spatial": {"c": 0, "r": 1}, "order": ["k", "c", "r", "p", "q"], "control": [1, 0]},
     {"k": 2, "p": 5, "q": 2, "c": 3, "r": 4}),
    (ACC3, [2, 2, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["k", "c", "r", "s"], "control": [1, 0, 1]},
     {"k": 3, "c": 3, "r": 3, "s": 4}),
], ids=["W-wires-and-hops-2x2x2", "I-wires-and-fifo-2x2x2", "tree-k-chain-r-2x2x2", "chain-c-tree-r-2x3",
        "accumulated-chain-r-tree-c-2x2x2"])
def test_mixed_lanes_and_reductions_on_other_shapes(base, shape, df, bounds):
    _check_array(verify_array(_design(base, shape, df), bounds, seed=7))
