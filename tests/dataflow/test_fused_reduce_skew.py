"""A ``schedule: map`` dataflow whose output is reduced along an array axis that a padded loop it uses is skewed along
(dataflow/reduce_skew.py; docs/dataflows.md "Outputs reduced along a skewed axis"), in a fused design: the fused top
(rtlgen/fused_array.py) builds each dataflow's product waits before the shared adder trees and partial-sum chains,
picked by the dataflow select (a product that waits in one dataflow goes straight in another; dataflows that wait
alike share one register chain). Checked in Amaranth's simulator: every dataflow exact, RTL cycles == model cycles,
beside os/ws/is, another such map, its compressed build, and with loops after the padded loop (run-time waits)."""
from __future__ import annotations

import pytest

from archgen.dataflow.compile import compile_fused
from archgen.dataflow.reduce_skew import product_waits
from archgen.verif.fused_amaranth import verify_fused_amaranth
from test_fused_outer_pads import OS_WS_IS, _check_against_single, _design

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
