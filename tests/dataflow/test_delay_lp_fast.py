"""The array fast path of the delay-matching LP (numpy rows, min-cost-flow solver) against the general path
(dict rows keyed by node, the same solver): identical latch times, registers per edge, chains and statistics,
in the same order, on random DAGs and on array designs with and without timing cuts."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archgen.arch.spec import load_spec
from archgen.dataflow import delay_lp
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.interconnect import derive_interconnect
from archgen.dataflow.primitives import lower_to_primitives

from test_delay_lp import small_dags

_FIELDS = ("register_bits", "unshared_register_bits", "naive_register_bits", "latency_cycles", "lp_variables",
           "lp_constraints", "timing_constraints", "clock_period_ns", "share_fanout", "integral_lp")


def _same(prim, period, share):
    try:
        fast = delay_lp._retime_fast(prim, period, share)
    except delay_lp.ClockTargetError as e:
        with pytest.raises(delay_lp.ClockTargetError) as info:
            delay_lp._retime_general(prim, period, share)
        assert str(info.value) == str(e)
        return None
    slow = delay_lp._retime_general(prim, period, share)
    if fast is None:              # declined (a loop, or the solver declined): the general path answers
        return slow
    for name in ("tau", "stages", "extra", "chain_depth"):
        assert list(getattr(fast, name).items()) == list(getattr(slow, name).items()), name
    for name in _FIELDS:
        assert getattr(fast, name) == getattr(slow, name), name
    return fast


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_dags(max_nodes=7), st.sampled_from([0.5, 0.8, 1.0, 2.0, 100.0]), st.booleans())
def test_fast_path_equals_general_path_on_random_dags(prim, period, share):
    _same(prim, period, share)


@pytest.mark.parametrize("spec,overrides,target,period", [
    ("gemm_os", ["array.shape=[8,8]"], "asic", 0.6667),
    ("gemm_os_bcast", ["array.shape=[8,8]"], "asic", 0.6667),
    ("gemm_os_bcast", ["array.shape=[6,5]"], "ecp5", 10.0),
    ("gemm_ws", ["array.shape=[5,7]"], "ecp5", 10.0),
    ("gemm_os3d", [], "ecp5", 10.0),
    ("conv_ws", [], "asic", None),
])
def test_fast_path_equals_general_path_on_arrays(spec, overrides, target, period):
    design = load_spec(spec, overrides)
    fg = derive_interconnect(design, design.dataflows[0])
    prim = lower_to_primitives(fg, DelayTable.load(target), clock_period_ns=period)
    found = 0
    for share in (True, False):
        r = _same(prim, float("inf") if period is None else period, share)
        found += r is not None and r.timing_constraints
    if period is not None and spec != "gemm_ws":
        assert found, "the case was meant to exercise timing cuts"
