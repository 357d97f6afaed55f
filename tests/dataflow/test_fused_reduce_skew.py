"""A ``schedule: map`` dataflow whose output is reduced along an array axis that a padded loop it uses is skewed along
(dataflow/reduce_skew.py; docs/dataflows.md "Outputs reduced along a skewed axis"), in a fused design: the fused top
(rtlgen/fused_array.py) builds each dataflow's product waits before the shared adder trees and partial-sum chains,
picked by the dataflow select (a product that waits in one dataflow goes straight in another; dataflows that wait
alike share one register chain). Checked in Amaranth's simulator: every dataflow exact, RTL cycles == model cycles,
beside os/ws/is, another such map, its compressed build, and with loops after the padded loop (run-time waits)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from archgen.dataflow.compile import compile_fused
from archgen.dataflow.reduce_skew import product_waits
from archgen.rtlgen.datapath import tag
from archgen.verif.fused_amaranth import verify_fused_amaranth
from test_fused_outer_pads import OS_WS_IS, _check_against_single, _design
from test_map_schedule_reduce_skew import _random_batched_case, _random_conv_case

GEMM = "C[i,j] += A[i,k] * B[k,j]"
GEMM_M = "C[i,j,m] += A[i,k,m] * B[k,j]"
BATCHED = "C[i,j] += A[i,k,m] * B[k,m,j]"
CONV = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"


def _map(mp, order, inner, control=None):
    return {"map": mp, "order": order, "inner": inner, "schedule": "map"} | ({"control": control} if control else {})


# H142's maps (tests/dataflow/test_map_schedule_reduce_skew.py): the output reduced along the padded loop's skew
TREE = _map({"i": "2*t_i + s0", "k": "2*t_k + s1", "j": "t_j - s1"}, ["i", "k", "j"], ["j"])
LEAD = _map({"i": "2*t_i + s0", "k": "3*t_k + s1", "j": "t_j + 2*s1 - 4"}, ["i", "k", "j"], ["j"])
CHAIN = _map({"k": "2*t_k + s0", "i": "3*t_i + s1", "j": "t_j - s0"}, ["k", "i", "j"], ["j"], [1, 1])
MIXED = _map({"i": "2*t_i + s0", "k": "3*t_k + s1", "j": "t_j - s0 + s1 - 2"}, ["i", "k", "j"], ["j"], [0, 1])
BATCH = _map({"i": "2*t_i + s0", "k": "2*t_k + s1", "m": "2*t_m + s2", "j": "t_j - s1 - 2*s2"}, ["i", "k", "m", "j"],
             ["j"])
CONV_C = _map({"n": "t_n", "c": "2*t_c + s0", "p": "3*t_p + s1", "k": "t_k", "q": "t_q - s0 - s1", "r": "t_r",
               "s": "t_s"}, ["n", "k", "p", "c", "r", "s", "q"], ["q"])
AFTER = _map({"i": "2*t_i + s0", "k": "2*t_k + s1", "j": "t_j - s1", "m": "t_m"}, ["i", "k", "j", "m"], ["j", "m"])
AFTER_LEAD = _map({"i": "2*t_i + s0", "k": "2*t_k + s1", "j": "t_j + s1 - 1", "m": "t_m - s0"}, ["i", "k", "j", "m"],
                  ["j", "m"])

# name: (operation, shape, {dataflow: spec}, bounds); the first dataflow's products wait
CASES = {
    "gemm-2x2-tree+os+ws+is": (GEMM, (2, 2), {"own": TREE} | OS_WS_IS, {"i": 3, "j": 5, "k": 4}),
    "gemm-2x3-lead+chain+mixed": (GEMM, (2, 3), {"lead": LEAD, "chain": CHAIN, "mixed": MIXED},
                                  {"i": 3, "j": 5, "k": 5}),
    "gemm-2x2-tree+other-order": (GEMM, (2, 2), {"own": TREE, "own2": TREE | {"order": ["k", "i", "j"]}},
                                  {"i": 3, "j": 4, "k": 3}),
    "gemm-2x3-lead+compressed": (GEMM, (2, 3), {"lead": LEAD, "comp": LEAD | {"schedule": "compressed"}},
                                 {"i": 3, "j": 5, "k": 4}),
    "batched-2x2x2+spatial": (BATCHED, (2, 2, 2), {"own": BATCH, "sp": {"spatial": {"i": 0, "k": 1, "m": 2},
                                                                         "order": ["i", "k", "m", "j"]}},
                              {"i": 3, "j": 4, "k": 3, "m": 2}),
    "conv-2x3-c-on-rows+ws": (CONV, (2, 3), {"own": CONV_C, "ws": {"spatial": {"c": 0, "p": 1},
                                                                    "order": ["n", "k", "p", "c", "r", "s", "q"]}},
                              {"n": 1, "k": 2, "p": 4, "q": 3, "c": 3, "r": 2, "s": 2}),
    "gemm-2x2-loop-after+lead+compressed": (GEMM_M, (2, 2), {"after": AFTER, "lead": AFTER_LEAD,
                                                             "comp": AFTER | {"schedule": "compressed"}},
                                            {"i": 3, "j": 3, "k": 4, "m": 3}),
}


def _exact(case, seed=3):
    op, shape, flows, bounds = CASES[case]
    design = _design(op, shape, flows)
    fused = compile_fused(design, design.fuse)
    assert product_waits(fused.view(design.fuse[0]).fu_graph)
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    assert [r.dataflow for r in runs] == list(design.fuse)
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (case, r)
        _check_against_single(fused, design, r, bounds)
    return runs


def test_a_fused_gemm_whose_map_waits_beside_os_ws_is():
    """The default case: H142's 2x2 GEMM whose products wait before the adder tree, fused with os, ws and is; all four
    exact, RTL == model, each at its single design's cycles under the fused schedule."""
    runs = _exact("gemm-2x2-tree+os+ws+is")
    assert {r.dataflow: r.model_cycles for r in runs}["own"] == 28


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c != "gemm-2x2-tree+os+ws+is"])
def test_fused_cases_in_amaranth(case):
    _exact(case)


@pytest.mark.slow
def test_the_names_path_builds_the_waits_too():
    """``compile_fused`` with names (``--fuse``) rather than the spec's ``fuse:``: the same top, exact."""
    op, shape, flows, bounds = CASES["gemm-2x3-lead+compressed"]
    design = dataclasses.replace(_design(op, shape, flows), fuse=())
    runs = verify_fused_amaranth(design, list(flows), bounds, seed=5)
    assert all(r.outputs_exact and r.rtl_cycles == r.model_cycles for r in runs), runs


@pytest.mark.slow
def test_without_the_waits_the_waiting_dataflows_are_wrong(monkeypatch):
    """The fused waits are what makes it exact (the check can fail): without them every dataflow whose products wait
    is wrong, the others stay exact."""
    import archgen.rtlgen.fused_array as fa
    op, shape, flows, bounds = CASES["gemm-2x2-loop-after+lead+compressed"]
    design = _design(op, shape, flows)
    monkeypatch.setattr(fa, "fused_wait_groups", lambda fused: {})
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=3)
    assert {r.dataflow: r.outputs_exact for r in runs} == {"after": False, "lead": False, "comp": True}
    op, shape, flows, bounds = CASES["gemm-2x2-tree+os+ws+is"]
    design = _design(op, shape, flows)
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=3)
    assert {r.dataflow: r.outputs_exact for r in runs} == {"own": False, "os": True, "ws": True, "is": True}


@pytest.mark.slow
def test_dataflows_that_wait_alike_share_one_chain():
    """Two orders of one map wait alike at every FU (same waits, same product time): one register chain per FU, no
    select mux on the waited product; beside a dataflow that does not wait, the product is muxed."""
    from archgen.rtlgen.fused_array import fused_verilog
    op, shape, flows, _ = CASES["gemm-2x2-tree+other-order"]
    fused = compile_fused(_design(op, shape, flows), list(flows))
    assert fused.views[0].timing.time == fused.views[1].timing.time
    text, _ = fused_verilog(fused)
    waited = sorted(product_waits(fused.views[0].fu_graph))
    assert "_wait1" not in text and all(f"prod_{tag(s)}_wait0" in text for s in waited)
    assert "_wait_sel" not in text
    op, shape, flows, _ = CASES["gemm-2x2-tree+os+ws+is"]
    text, _ = fused_verilog(compile_fused(_design(op, shape, flows), list(flows)))
    assert all(f"mul_{tag(s)}_wait_sel" in text for s in waited)


def _partner(rng, make, design):
    """Another dataflow for random map ``design``: its compressed build, or the map of another random case of the same
    generator on the same array shape (renamed ``p``)."""
    own = design.dataflows[0]
    if rng.random() < 0.4:
        return dataclasses.replace(own, name="p", schedule="compressed")
    while True:
        other, _ = make(rng)
        if other.shape == design.shape:
            return dataclasses.replace(other.dataflows[0], name="p")


@pytest.mark.slow
@pytest.mark.parametrize("make,seed", [pytest.param(_random_conv_case, 146, id="conv-2d"),
                                       pytest.param(_random_batched_case, 1146, id="batched-3d")])
def test_random_fused_maps_that_wait_in_amaranth(make, seed):
    """H142's random maps (2-D convolutions, 3-D batched GEMMs; lags, leads, mixed signs, run-time waits) fused with
    their compressed build or another such map: every dataflow exact, RTL == model."""
    rng = np.random.default_rng(seed)
    for t in range(20):
        design, bounds = make(rng)
        partner = _partner(rng, make, design)
        design = dataclasses.replace(design, dataflows=(design.dataflows[0], partner), fuse=("m", "p"))
        for r in verify_fused_amaranth(design, design.fuse, bounds, seed=t):
            assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (t, [d.ts_map for d in design.dataflows], r)


def test_explain_states_the_waits_and_their_cost():
    """``--explain``: each waiting FU with its wait and what it builds (registers, or a run-time buffer's entries), the
    total, and in a fused design what is shared and muxed; a dataflow whose products do not wait says nothing of it."""
    from archgen.dataflow.explain import explain
    op, shape, flows, _ = CASES["gemm-2x2-tree+other-order"]
    text = "\n".join(explain(_design(op, shape, flows), "own"))
    assert "FU (0, 0): 1 iteration(s) of t_j = 1 step(s): 1 register(s) x 32 bits" in text
    assert "cost: 2 register(s) and 0 buffer entries, 32 bits each (64 bits) on 2 of 4 FUs" in text
    assert "own shares them with own2" in text and "0 of its 2 waiting FUs add a 32-bit select mux" in text
    op, shape, flows, _ = CASES["gemm-2x2-loop-after+lead+compressed"]
    design = _design(op, shape, flows)
    text = "\n".join(explain(design, "after"))
    assert "1 x (trips of t_m) steps, depth from the command: a buffer of 64 entries x 32 bits" in text
    assert "2 of its 2 waiting FUs add a 32-bit select mux" in text
    assert "output waits" not in "\n".join(explain(design, "comp"))


@pytest.mark.parametrize("case", ["gemm-2x2-loop-after+lead+compressed",
                                  pytest.param("gemm-2x2-tree+os+ws+is", marks=pytest.mark.slow),
                                  pytest.param("gemm-2x3-lead+chain+mixed", marks=pytest.mark.slow),
                                  pytest.param("conv-2x3-c-on-rows+ws", marks=pytest.mark.slow)])
def test_the_one_fused_layer_core_runs_the_waiting_maps(case):
    """Through the memory system: every dataflow in turn, then the first again, on the one fused layer core (the
    de-skew takes each lane's largest offset; per block when a loop follows the padded one): exact in Amaranth,
    RTL cycles == model cycles, DRAM bytes RTL == model."""
    from test_fused_outer_pads import assert_one_fused_core_exact
    op, shape, flows, bounds = CASES[case]
    assert_one_fused_core_exact(_design(op, shape, flows), bounds)
