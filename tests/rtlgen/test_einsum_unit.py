# amaranth: UnusedElaboratable=no
"""EinsumUnit (rtlgen/einsum_unit.py) on Amaranth's simulator: SpAtten's QxK and PxV arrays, bit-exact
against numpy and cycle-exact against ``unit.latency``, with a new step every cycle.

The port order is part of what is tested: a streamed lane i carries the element of the FU
``unit.lane_fus(X)[i]`` = (l, d), a stationary slot j the element ``unit.footprint(X)[j]``, an output
lane i the reduction whose first FU is ``unit.lane_fus(Y)[i]``. What element an FU (l, d) needs comes
from the einsums, here: QxK S[l] = sum_d Q[d] K[l, d]; PxV U[d] = sum_l P[l] V[l, d].
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from amaranth.sim import Simulator
from archgen.arch.errors import SpecError
from archgen.arch.spatten_spec import (
    builtin_spec_path,
    load_spatten_spec,
    spatten_formats,
)
from archgen.dataflow.spatten_arrays import spatten_arrays
from archgen.rtlgen.einsum_unit import EinsumUnit

SMALL = load_spatten_spec(builtin_spec_path("spatten_small"))
STEPS = 20


def spec_with_control(unit: str, control) -> object:
    d = copy.deepcopy(yaml.safe_load(builtin_spec_path("spatten_small").read_text()))
    d["units"][unit]["control"] = list(control)
    return load_spatten_spec(d)


def int_range(bits: int, signed: bool):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def run(unit: EinsumUnit, stationary: dict, steps: list[dict], read_lanes: int) -> list[list[int]]:
    """Present steps[c] (operand -> port values) in cycle c, hold the stationary ports; return the output
    port's lanes as seen in every cycle (after the step of that cycle was applied)."""
    out_port = getattr(unit, f"out_{unit.array.fg.output.name}")
    seen = []

    async def bench(ctx):
        for name, vals in stationary.items():
            ctx.set(getattr(unit, f"in_{name}"), vals)
        for step in steps:
            for name, vals in step.items():
                ctx.set(getattr(unit, f"in_{name}"), vals)
            o = ctx.get(out_port)
            seen.append([int(o[i]) for i in range(read_lanes)])
            await ctx.tick()

    sim = Simulator(unit)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return seen


# -------------------------------------------------------------------------------------------- QxK

def check_qk(spec, seed: int, q_fill: str | None = None):
    a = spatten_arrays(spec)["qk"]
    unit = EinsumUnit(a)
    L, D, b = spec.lanes, spec.head_dim, spec.bits
    lo, hi = int_range(b, True)
    qn, kn, sn = a.roles["query"], a.roles["key"], a.roles["score"]
    rng = np.random.default_rng(seed)

    # the port mapping the unit promises
    assert unit.footprint(qn) == tuple((d,) for d in range(D))
    k_fus = unit.lane_fus(kn)
    assert sorted(k_fus) == [(l, d) for l in range(L) for d in range(D)]
    s_fus = unit.lane_fus(sn)
    assert len(s_fus) == L and sorted(fu[0] for fu in s_fus) == list(range(L))

    Q = {"min": np.full(D, lo), "max": np.full(D, hi), None: rng.integers(lo, hi + 1, D)}[q_fill]
    n = STEPS + unit.latency
    Ks = [rng.integers(lo, hi + 1, (L, D)) for _ in range(n)]
    Ks[1] = np.full((L, D), lo)
    Ks[2] = np.full((L, D), hi)
    Ks[3] = np.where(rng.random((L, D)) < 0.5, lo, hi)
    Ks[4] = np.zeros((L, D), dtype=np.int64)
    steps = [{kn: [int(K[l, d]) for (l, d) in k_fus]} for K in Ks]
    seen = run(unit, {qn: [int(Q[d]) for (d,) in unit.footprint(qn)]}, steps, L)

    score_bits = spatten_formats(spec).score_bits
    for t in range(STEPS):
        S = Ks[t].astype(np.int64) @ Q.astype(np.int64)          # S[l] = sum_d Q[d] K[l, d]
        assert all(int_range(score_bits, True)[0] <= s <= int_range(score_bits, True)[1] for s in S)
        want = [int(S[fu[0]]) for fu in s_fus]
        assert seen[t + unit.latency] == want, (seed, q_fill, t, unit.latency)
    return unit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qk_random_bit_and_cycle_exact(seed):
    check_qk(SMALL, seed)


@pytest.mark.parametrize("q_fill", ["min", "max"])
def test_qk_extremes(q_fill):
    check_qk(SMALL, 7, q_fill)


# -------------------------------------------------------------------------------------------- PxV

def check_pv(spec, seed: int):
    a = spatten_arrays(spec)["pv"]
    unit = EinsumUnit(a)
    L, D, b = spec.lanes, spec.head_dim, spec.bits
    f = spatten_formats(spec)
    vlo, vhi = int_range(b, True)
    plo, phi = int_range(f.prob_bits, False)
    pn, vn, un = a.roles["prob"], a.roles["value"], a.roles["partial"]
    rng = np.random.default_rng(seed)

    p_fus = unit.lane_fus(pn)
    assert len(p_fus) == L and sorted(fu[0] for fu in p_fus) == list(range(L))
    v_fus = unit.lane_fus(vn)
    assert sorted(v_fus) == [(l, d) for l in range(L) for d in range(D)]
    u_fus = unit.lane_fus(un)
    assert len(u_fus) == D and sorted(fu[1] for fu in u_fus) == list(range(D))

    n = STEPS + unit.latency
    Ps = [rng.integers(plo, phi + 1, L) for _ in range(n)]
    Vs = [rng.integers(vlo, vhi + 1, (L, D)) for _ in range(n)]
    # extremes: largest unsigned probability against the most negative and the largest value, mixed
    Ps[1], Vs[1] = np.full(L, phi), np.full((L, D), vlo)
    Ps[2], Vs[2] = np.full(L, phi), np.full((L, D), vhi)
    Ps[3], Vs[3] = np.full(L, plo), np.full((L, D), vlo)
    Ps[4], Vs[4] = np.where(rng.random(L) < 0.5, plo, phi), np.where(rng.random((L, D)) < 0.5, vlo, vhi)
    Ps[5] = np.full(L, 1 << f.prob_frac)                                  # probability 1.0 everywhere
    steps = [{pn: [int(P[l]) for (l, _) in p_fus], vn: [int(V[l, d]) for (l, d) in v_fus]}
             for P, V in zip(Ps, Vs)]
    seen = run(unit, {}, steps, D)

    out_bits = a.fg.output.width
    for t in range(STEPS):
        U = Ps[t].astype(np.int64) @ Vs[t].astype(np.int64)      # U[d] = sum_l P[l] V[l, d]
        assert all(int_range(out_bits, True)[0] <= u <= int_range(out_bits, True)[1] for u in U)
        want = [int(U[fu[1]]) for fu in u_fus]
        assert seen[t + unit.latency] == want, (seed, t, unit.latency)
    return unit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pv_random_bit_and_cycle_exact(seed):
    check_pv(SMALL, seed)


# -------------------------------------------------------------------------------- other control vectors

def test_latency_is_the_array_latency():
    for unit in ("qk", "pv"):
        a = spatten_arrays(SMALL)[unit]
        assert EinsumUnit(a).latency == a.latency >= 1


@pytest.mark.parametrize("control", [(0, 1), (0, -1)])
def test_qk_reduction_chain_along_d(control):
    """control [0, +-1]: FU (l, d) runs |d - d0| cycles behind, and S is reduced by a register chain along
    d instead of an adder tree; the unit skews K itself, so the same per-cycle contract holds, later."""
    spec = spec_with_control("qk", control)
    a = spatten_arrays(spec)["qk"]
    assert a.plan("score").tree_axes == ()                      # a chain, not a tree
    unit = check_qk(spec, 3)
    check_qk(spec, 4, "min")
    tree = spatten_arrays(SMALL)["qk"].latency
    assert unit.latency > tree
    # the last FU of a chain runs head_dim - 1 cycles behind its first, then the drain register
    assert unit.latency >= (spec.head_dim - 1) + 1


def test_pv_reduction_chain_along_l():
    spec = spec_with_control("pv", (1, 0))
    a = spatten_arrays(spec)["pv"]
    assert a.plan("partial").tree_axes == ()
    unit = check_pv(spec, 5)
    assert unit.latency > spatten_arrays(SMALL)["pv"].latency
    assert unit.latency >= (spec.lanes - 1) + 1


def test_unit_rejects_an_accumulated_output():
    """A unit without a controller cannot drain in-place accumulators: the constructor says which unit."""
    from dataclasses import replace

    from archgen.dataflow.interconnect import OperandPlan
    a = spatten_arrays(SMALL)["qk"]
    out = a.fg.output
    acc = OperandPlan(out.name, "accumulate", out.width, out.lanes, signed=out.signed)
    fg = replace(a.fg, plans=tuple(acc if p.name == out.name else p for p in a.fg.plans))
    with pytest.raises(SpecError, match="units.qk.operation"):
        EinsumUnit(replace(a, compiled=replace(a.compiled, fu_graph=fg)))
