"""What benchmarks/dataflow_refusal_search.py ``schedule-verify`` found wrong among the ``schedule: map`` specs that
build (2026-12-06, H152), each shrunk to a small reproducer, marked ``xfail(strict=True)`` until the code that owns it
is fixed: then the test passes, strict xfail fails, and the marker comes off.

A skewed loop outside the tile that the output uses, skewed along an array axis the output is reduced along, with a
second reduced axis the skew does not move (dataflow/reduce_skew.py ``drain_groups``): ``compile_array`` builds it,
the array top's elaboration raises KeyError (rtlgen/array.py ``_waited_drain``, ``outs[s]``), so ``archgen build``
ends in a traceback. ``drain_groups`` groups every FU of the array by the axes the output uses, but across the
unskewed reduced axis the FU graph derives an adder tree or chain, and only its root FU holds an accumulator (the
output lanes' FUs): the groups name FUs with no accumulator. Grouping only the lanes' FUs (a trial monkeypatch, not
committed) made all four cases below exact with RTL cycles == model cycles."""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_amaranth import verify_array_amaranth

REASON = ("dataflow/reduce_skew.py drain_groups groups FUs that hold no accumulator (a second reduced axis, its "
          "adder tree unskewed): rtlgen/array.py _waited_drain KeyError at elaboration")
CONV = {"I": "int8", "W": "int8", "O": "int32"}

# (operation, array shape, map, order, bounds, operand seed): the smallest (found by shrinking), then the three
# specs of ``schedule-verify 1 10 5`` that crashed, at the bounds it drew
CASES = [
    ("O[p] += I[c,p+r] * W[c,r]", [2, 2], {"c": "2*t_c + s0", "r": "2*t_r + s1", "p": "t_p - s0"}, ["p", "c", "r"],
     {"p": 3, "c": 2, "r": 2}, 1),
    ("O[k,p] += I[c,p*2+r] * W[k,c,r]", [2, 2, 2], {"k": "2*t_k + s1", "p": "t_p + s0 - 1", "c": "2*t_c + s2",
                                                    "r": "2*t_r + s0"}, ["p", "k", "c", "r"],
     {"k": 2, "p": 3, "c": 1, "r": 3}, 227),
    ("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", [2, 2, 2], {"k": "2*t_k + s0", "p": "t_p - s0 - s2", "q": "t_q",
                                                      "c": "2*t_c + s1", "r": "2*t_r + s2"},
     ["p", "k", "q", "c", "r"], {"k": 3, "p": 1, "q": 2, "c": 1, "r": 2}, 427),
    ("O[k,p] += I[c,p*2+r] * W[k,c,r]", [2, 2, 2], {"k": "t_k + s0 - s2 - 1", "p": "2*t_p + s2", "c": "2*t_c + s1",
                                                    "r": "2*t_r + s0"}, ["p", "r", "k", "c"],
     {"k": 2, "p": 1, "c": 1, "r": 1}, 90),
]


@pytest.mark.xfail(strict=True, reason=REASON)
@pytest.mark.parametrize("op,shape,mp,order,bounds,seed", CASES)
def test_a_second_reduced_axis_beside_a_waited_drain(op, shape, mp, order, bounds, seed):
    design = load_spec_data({"version": 1, "kind": "array", "name": "s", "operation": op, "types": CONV,
                             "array": {"shape": shape}, "dataflows": {"d": {"map": mp, "order": order,
                                                                            "schedule": "map"}}})
    res = verify_array_amaranth(design, bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
