"""H148's waited drains (an output held per FU over a skewed loop outside the tile, reduced along the array axis the
skew moves: dataflow/reduce_skew.py ``drain_groups``) in a fused design: the fused top (rtlgen/fused_array.py
``_waited_drains``) builds each such dataflow's drain buffers (rtlgen/array.py ``waited_drain``) behind the shared
result registers, read only by that dataflow's rows (the select); dataflows that wait alike share one set. Checked in
Amaranth's simulator: every dataflow of the design exact, RTL cycles == model cycles, each at its single design's
cycles under the fused schedule."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.reduce_skew import drain_groups
from archgen.verif.fused_amaranth import verify_fused_amaranth
from test_fused_outer_pads import _check_against_single
from test_map_schedule_outer import CONV_OP, GEMM, _spec
from test_map_schedule_outer_reduce import (BRIEF, FIXED, ORDER, TWO, TWO_FIXED, _random_case, _random_gemm,
                                            _random_two, _random_two_gemm, exact_unless_too_deep)

WS = {"ws": {"spatial": {"k": 0, "p": 1}, "order": ORDER}}
OTHER_ORDER = {"m2": {"map": BRIEF, "order": ["n", "p", "k", "c", "q", "r", "s"], "inner": ["r", "s"],
                      "schedule": "map"}}
COMPRESSED = {"comp": {"map": BRIEF, "order": ORDER, "inner": ["r", "s"]}}
LEAD = {"lead": {"map": BRIEF | {"n": "t_n + s0 - 1"}, "order": ORDER, "inner": ["r", "s"], "schedule": "map"}}
GEMM_OS = {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"]}}

TWO_CASE = (CONV_OP, (2, 2), TWO, TWO_FIXED[0][1], ["r", "s"], TWO_FIXED[0][2], TWO_FIXED[0][3])
BRIEF_MAP = {"brief": {"map": BRIEF, "order": ORDER, "inner": ["r", "s"], "schedule": "map"}}

# name: (H148's case (FIXED) or two loops, the other dataflows)
CASES = {
    "conv-2x2-brief+ws": (FIXED[0], WS),
    "conv-2x2-brief+other-order": (FIXED[0], OTHER_ORDER),
    "conv-2x2-brief+compressed+lead": (FIXED[0], COMPRESSED | LEAD),
    "conv-2x2-q-lead+ws": (FIXED[1], WS),
    "conv-3x2-mixed+compressed": (FIXED[2], {"comp": {"map": FIXED[2][2], "order": FIXED[2][3], "inner": ["r", "s"]}}),
    "gemm-2x2-j-lag+os": (FIXED[3], GEMM_OS),
    # two loops: every FU waits, the representative's partial sum at the drain; beside one loop and ws
    "conv-2x2-two-loops+brief+ws": (TWO_CASE, BRIEF_MAP | WS),
}


def _case(name):
    (op, shape, mp, order, inner, bounds, seed), others = CASES[name]
    return _spec(op, shape, mp, order, inner, fuse=others), bounds, seed


def _exact(design, bounds, seed):
    fused = compile_fused(design, design.fuse)
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    assert [r.dataflow for r in runs] == list(design.fuse)
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, ([d.ts_map for d in design.dataflows], bounds, r)
        _check_against_single(fused, design, r, bounds)
    return runs


def test_the_briefs_conv_fused_with_ws():
    """The default case: H148's brief conv (n lags along axis 0, D = 16 tiles) fused with ws: both exact, RTL == model,
    at the single designs' cycles (387 alone, H148)."""
    design, bounds, seed = _case("conv-2x2-brief+ws")
    assert drain_groups(compile_fused(design, design.fuse).view("m").fu_graph)
    runs = _exact(design, bounds, seed)
    assert {r.dataflow: r.model_cycles for r in runs}["m"] == 387


@pytest.mark.slow
@pytest.mark.parametrize("name", [c for c in CASES if c != "conv-2x2-brief+ws"])
def test_fused_cases(name):
    design, bounds, seed = _case(name)
    _exact(design, bounds, seed)


@pytest.mark.slow
def test_without_the_waited_drains_the_waiting_dataflow_is_wrong(monkeypatch):
    """The check can fail: with the fused top's waited drains left out, the map is wrong and its partner exact."""
    import archgen.rtlgen.fused_array as fa
    monkeypatch.setattr(fa.FusedArrayTop, "_waited_drains", lambda self, m, results: {})
    design, bounds, seed = _case("conv-2x2-brief+ws")
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    assert {r.dataflow: r.outputs_exact for r in runs} == {"m": False, "ws": True}


@pytest.mark.slow
def test_dataflows_that_wait_alike_share_one_set_of_buffers():
    """Two orders of one map (the same groups, the same loops after n): one buffer per member FU; beside a lead of n
    (other groups) each map has its own."""
    from archgen.rtlgen.fused_array import fused_verilog
    design, _, _ = _case("conv-2x2-brief+other-order")
    text, _ = fused_verilog(compile_fused(design, design.fuse))
    assert "w0_drain_0_0_wait" in text and "w1_" not in text
    design, _, _ = _case("conv-2x2-brief+compressed+lead")
    text, _ = fused_verilog(compile_fused(design, design.fuse))
    assert "w0_drain_" in text and "w1_drain_" in text and "w2_" not in text


def _partner(rng, draw, design):
    """Another dataflow for random map ``design``: its compressed build, or the map of another random draw of the same
    generator on the same array shape that has waited drains too (renamed ``p``)."""
    own = design.dataflows[0]
    if rng.random() < 0.4:
        return dataclasses.replace(own, name="p", schedule="compressed")
    while True:
        other, _, _ = draw(rng)
        if other.shape == design.shape and _drains(other):
            return dataclasses.replace(other.dataflows[0], name="p")


def _drains(design) -> bool:
    return bool(drain_groups(compile_array(design).fu_graph))


def _random_fused(seed: int, count: int, draw):
    rng = np.random.default_rng(seed)
    done = 0
    while done < count:
        design, bounds, case_seed = draw(rng)
        if not _drains(design):
            continue
        partner = _partner(rng, draw, design)
        design = dataclasses.replace(design, dataflows=(design.dataflows[0], partner), fuse=("m", "p"))
        done += exact_unless_too_deep(_exact, design, bounds, case_seed)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("draw,seed", [pytest.param(_random_case, 150, id="conv"),
                                       pytest.param(_random_gemm, 1150, id="batched-gemm"),
                                       pytest.param(_random_two, 2150, id="conv-two-loops"),
                                       pytest.param(_random_two_gemm, 3150, id="batched-gemm-two-loops")])
def test_random_fused_pairs(draw, seed):
    """H148's random convs and batched GEMMs (one such loop or two), each fused with its compressed build or another
    such map on the same array: every dataflow exact, RTL == model."""
    assert _random_fused(seed, 20, draw) == 20


def test_explain_states_the_drain_waits_and_what_is_shared():
    """``--explain``: per group the row that drains it and each FU's wait in drains (with two loops the row's own FU
    waits too, its partial sum added at the drain), the buffers' cost, and in a fused design what is shared."""
    from archgen.dataflow.explain import explain
    design, _, _ = _case("conv-2x2-two-loops+brief+ws")
    text = "\n".join(explain(design, "m"))
    assert ("row of FU (1, 0); it waits too, so its partial sum is added at the drain: FU (0, 0) waits 1 iteration(s) "
            "of t_n = 1 x (trips of t_k x trips of t_p x trips of t_c x trips of t_q) drains; FU (1, 0) waits 1 "
            "iteration(s) of t_q = 1 x (1) drains") in text
    assert "cost: 256 buffer entries x 32 bits" in text and "m shares them with no other dataflow" in text
    design, _, _ = _case("conv-2x2-brief+other-order")
    text = "\n".join(explain(design, "m"))
    assert "row of FU (1, 0): FU (0, 0) waits 1 iteration(s) of t_n" in text and "m shares them with m2" in text
    design, _, _ = _case("conv-2x2-brief+ws")
    assert "drain waits" not in "\n".join(explain(design, "ws"))
