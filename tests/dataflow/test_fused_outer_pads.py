"""A ``schedule: map`` dataflow whose skewed reduction loop runs outside its tile (mappings/tiling.py ``outer_pads``)
in a fused design (issue 14; docs/dataflows.md "The map's own schedule in a fused design"): the fused top builds that
dataflow's per-offset flags from its own issuer's tile counter (dataflow/control.py ``outer_pad_hw``), set only
while it runs, and its commands and model count K + span tiles of the loop, that dataflow's only. Checked in
Amaranth's simulator: every dataflow exact, RTL cycles == model cycles, and each runs its single design's tiles
and steps, at its single design's cycles under the schedule the fused LP chose; through the one fused layer core
(the memory system, H138's tile leads) as well."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.mappings.tiling import map_problem, outer_pads, row_pads
from archgen.sim.array_model import simulate_array
from archgen.verif.fused_amaranth import verify_fused_amaranth
from test_map_schedule_outer import random_flow

GEMM = "C[i,j] += A[i,k] * B[k,j]"
CONV = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
# both inputs read real elements at a masked tile (I[p+r, c], W[r+c] stay inside their tensors for r = -1)
MASKED = "O[p] += I[p+r,c] * W[r+c]"
W_RS = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r+s]"     # likewise for r or s skewed (CONV reads zeros there)

# the GEMM on 2x2 with the skew on its reduction tile loop t_k, beside gemm_fused's three dataflows
GEMM_2D = {"map": {"i": "2*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}, "order": ["k", "i", "j"],
           "schedule": "map"}
OS_WS_IS = {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [1, 1]},
            "ws": {"spatial": {"k": 0, "j": 1}, "order": ["j", "k", "i"], "control": [1, 1]},
            "is": {"spatial": {"i": 0, "k": 1}, "order": ["i", "k", "j"], "control": [1, 1]}}
# r135's GEMM on [3]: partial-sum rounds move k out of the tile; the same map with k inside its tile (a row pad)
GEMM_1D = {"map": {"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}, "order": ["i", "k", "j"], "inner": ["k", "j"],
           "schedule": "map"}
GEMM_1D_INNER = GEMM_1D | {"order": ["i", "j", "k"], "inner": ["k"]}
MASKED_MAP = {"map": {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, "order": ["p", "r", "c"], "inner": ["c"],
              "schedule": "map"}


def _design(op, shape, flows: dict, clock=None):
    names = {x for x in op.replace("[", " ").replace("+=", " ").replace("*", " ").split() if x[:1].isupper()}
    data = {"version": 1, "name": "fo", "operation": op, "array": {"shape": list(shape)},
            "types": {n: ("int32" if n in "CO" else "int8") for n in names}, "dataflows": flows, "fuse": list(flows)}
    return load_spec_data(data | ({"clock_mhz": clock} if clock else {}))


CASES = {
    "gemm-2x2+os+ws+is": (GEMM, (2, 2), {"m": GEMM_2D} | OS_WS_IS, {"i": 3, "j": 4, "k": 3}),
    "gemm-3+inner-pad": (GEMM, (3,), {"m": GEMM_1D, "in": GEMM_1D_INNER}, {"i": 4, "j": 3, "k": 4}),
    "gemm-3+compressed": (GEMM, (3,), {"m": GEMM_1D, "comp": GEMM_1D | {"schedule": "compressed"}},
                          {"i": 5, "j": 2, "k": 2}),
    "masked-1x4+ws": (MASKED, (1, 4), {"m": MASKED_MAP, "ws": {"spatial": {"p": 1}, "order": ["p", "r", "c"]}},
                      {"p": 5, "r": 3, "c": 2}),
    "masked-1x4+lead": (MASKED, (1, 4), {"m": MASKED_MAP, "lead": MASKED_MAP | {
        "map": {"p": "4*t_p + s1", "r": "t_r + s1 - 3", "c": "t_c"}}}, {"p": 6, "r": 2, "c": 3}),
}


def _check_against_single(fused, design, r, bounds):
    """The fused dataflow runs its single design's tiles and steps (the padded loop's K + span tiles, its own), and
    its cycles are the single design's with the schedule the fused LP chose: equal when the LP added no pipeline
    slot, more otherwise (with partial sums streamed back, an added output slot delays every tile's read-after-write
    wait, so it can cost a cycle per tile, not one in all)."""
    single = compile_array(design, r.dataflow)
    mapping = map_problem(design, bounds, single.dataflow)
    view = fused.view(r.dataflow)
    fmap = map_problem(view.design, bounds, view.dataflow)
    assert (fmap.trips(), fmap.steps) == (mapping.trips(), mapping.steps), r.dataflow
    cycles = simulate_array(single, mapping).total_cycles
    assert r.model_cycles == simulate_array(dataclasses.replace(single, schedule=view.schedule), mapping).total_cycles
    assert r.model_cycles == cycles if view.schedule == single.schedule else r.model_cycles >= cycles, r


def _exact(design, bounds, seed):
    fused = compile_fused(design, design.fuse)
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    assert [r.dataflow for r in runs] == list(design.fuse)
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (design.dataflows, bounds, r)
        _check_against_single(fused, design, r, bounds)
    return runs


def test_a_fused_gemm_with_a_skewed_tile_loop_beside_os_ws_is():
    """The default case: the 2x2 GEMM with t_k skewed (K + 2 tiles of k, its own) fused with os, ws and is; all four
    exact, RTL == model, each at its single design's cycles under the fused schedule."""
    op, shape, flows, bounds = CASES["gemm-2x2+os+ws+is"]
    design = _design(op, shape, flows)
    fused = compile_fused(design, design.fuse)
    assert [p.loop for p in outer_pads(fused.view("m").design, fused.view("m").dataflow)] == ["k"]
    trips = map_problem(design, bounds, fused.view("m").dataflow).trips()
    assert trips["k"] == 3 + 2 and map_problem(design, bounds, fused.view("os").dataflow).trips().get("k", 1) != 5
    _exact(design, bounds, 1)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c != "gemm-2x2+os+ws+is"])
def test_fused_cases_in_amaranth(case):
    op, shape, flows, bounds = CASES[case]
    _exact(_design(op, shape, flows), bounds, 3)


@pytest.mark.slow
def test_the_selected_dataflows_tile_flags_are_what_zero_its_masked_tiles(monkeypatch):
    """Where both inputs read real elements outside an FU's own tiles, the fused top's per-tile flags of the selected
    dataflow keep it exact: without them that dataflow is wrong and the other stays exact (the check can fail)."""
    import archgen.rtlgen.fused_array as fa
    op, shape, flows, bounds = CASES["masked-1x4+ws"]
    design = _design(op, shape, flows)
    _exact(design, bounds, 3)
    monkeypatch.setattr(fa, "outer_pads", lambda d, df: ())
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=3)
    assert {r.dataflow: r.outputs_exact for r in runs} == {"m": False, "ws": True}


@pytest.mark.parametrize("case", ["gemm-2x2+os+ws+is", pytest.param("masked-1x4+ws", marks=pytest.mark.slow),
                                  pytest.param("masked-1x4+lead", marks=pytest.mark.slow),
                                  pytest.param("gemm-3+inner-pad", marks=pytest.mark.slow),
                                  pytest.param("gemm-3+compressed", marks=pytest.mark.slow)])
def test_the_one_fused_layer_core_runs_it(case):
    """Through the memory system (H138's tile leads and chunk + span rounds, on each dataflow's own walks of the one
    fused layer core): every dataflow, then the map again, exact in Amaranth, RTL cycles == model cycles, DRAM bytes
    RTL == model."""
    op, shape, flows, bounds = CASES[case]
    assert_one_fused_core_exact(_design(op, shape, flows), bounds)


def assert_one_fused_core_exact(design, bounds, seed=3):
    """Every dataflow of ``design.fuse`` in turn, then the first again, on the one fused layer core in Amaranth:
    outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model."""
    from archgen.verif.fused_program_check import verify_fused_program
    layers = [(n, bounds) for n in design.fuse] + [(design.fuse[0], bounds)]
    runs = verify_fused_program(design, layers, seed=seed, simulator="amaranth")
    assert [r.dataflow for r in runs] == [n for n, _ in layers]
    for r in runs:
        assert r.outputs_exact, (r.dataflow, r.detail)
        assert r.rtl_cycles == r.model_cycles, (r.dataflow, r.rtl_cycles, r.model_cycles)
        assert r.detail["rtl_dram_bytes"] == r.dram_bytes, r.dataflow


def _partner(rng, shape, own):
    """The other dataflow: a plain spatial one (k, p on the axes, a random order), another random map, or the
    compressed build of the same map."""
    pick = rng.integers(3)
    if pick == 0:
        spatial = {"k": 0, "p": 1} if shape[0] > 1 else {"p": 1}
        return {"spatial": spatial, "order": [str(x) for x in rng.permutation(["n", "k", "p", "q", "c", "r", "s"])]}
    return random_flow(rng, shape) if pick == 1 else own | {"schedule": "compressed"}


def _random_cases(seed, count):
    """Random fused convolutions (1xN and 2-D; half of them with W[k,c,r+s], whose masked products are real) whose
    first dataflow runs a skewed loop outside its tile."""
    rng = np.random.default_rng(seed)
    found = 0
    while found < count:
        shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
        own = random_flow(rng, shape)
        op = CONV if rng.random() < 0.5 else W_RS
        design = _design(op, shape, {"m": own, "o": _partner(rng, shape, own)}, clock=int(rng.choice([500, 1500])))
        try:
            fused = compile_fused(design, design.fuse)
        except SpecError:           # a random map that misses iterations, or a pair that does not fuse
            continue
        if not outer_pads(fused.view("m").design, fused.view("m").dataflow):
            continue
        found += 1
        bounds = {d: int(rng.integers(1, top)) for d, top in zip("nkpqcrs", (3, 5, 6, 3, 3, 4, 3))}
        yield design, bounds, int(rng.integers(1000))


@pytest.mark.slow
def test_random_fused_convolutions_in_amaranth():
    """40 random fused convolutions with a skewed loop outside the first dataflow's tile: every dataflow exact,
    RTL == model, each at its single design's cycles under the fused schedule."""
    for design, bounds, seed in _random_cases(139, 40):
        _exact(design, bounds, seed)


def test_only_that_dataflow_runs_k_plus_span_tiles():
    """The fused command carries each dataflow's own trips: the padded map's K + span tiles of k, the compressed
    build's K (and its model issues (K + span) / K as many steps of k)."""
    op, shape, flows, bounds = CASES["gemm-3+compressed"]
    design = _design(op, shape, flows)
    fused = compile_fused(design, design.fuse)
    maps = {n: map_problem(design, bounds, fused.view(n).dataflow) for n in fused.names}
    assert maps["m"].trips()["k"] == bounds["k"] + 2 and maps["comp"].trips()["k"] == bounds["k"]
    assert not row_pads(fused.view("m").design, fused.view("m").dataflow)
    issued = {n: simulate_array(fused.view(n), maps[n]).issue_cycles for n in fused.names}
    assert issued["m"] * bounds["k"] == issued["comp"] * (bounds["k"] + 2)
