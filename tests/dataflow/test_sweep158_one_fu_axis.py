"""What benchmarks/dataflow_refusal_search.py ``schedule-verify --shapes=1x3,3x1`` found (2026-12-06, H158): a
``schedule: map`` skew by the coordinate of an array axis of one FU (``j: t_j - s0 - s1`` on a 1x3 array; s0 is
always 0) crashed the array level with KeyError in mappings/tiling.py ``outer_reduced_pads``: the tiled form drops
an axis of one FU from the spatial loops, but dataflow/interconnect.py kept its coefficient in the skew, so the
skew named an axis with no loop. Such a coefficient moves nothing; the tiled form now drops it."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.interconnect import map_skews
from archgen.verif.array_amaranth import verify_array_amaranth

GEMM = ("C[i,j] += A[i,k] * B[k,j]", {"A": "int8", "B": "int8", "C": "int32"})


def _design(shape, mp, order):
    return load_spec_data({"version": 1, "kind": "array", "name": "s", "operation": GEMM[0], "types": GEMM[1],
                           "array": {"shape": shape},
                           "dataflows": {"d": {"map": mp, "order": order, "schedule": "map"}}})


# (shape, map, order, bounds, operand seed): the sweep's draws (seed 5) that crashed
CASES = [
    ([1, 3], {"i": "1*t_i + s0", "j": "t_j - s0 - s1", "k": "3*t_k + s1"}, ["j", "i", "k"], {"i": 1, "j": 4, "k": 4},
     532),
    ([3, 1], {"i": "t_i - s0 - s1", "j": "3*t_j + s0", "k": "1*t_k + s1"}, ["j", "i", "k"], {"i": 3, "j": 4, "k": 4},
     434),
]


@pytest.mark.parametrize("shape,mp,order,bounds,seed", CASES)
def test_a_skew_along_an_axis_of_one_fu_is_dropped(shape, mp, order, bounds, seed):
    res = verify_array_amaranth(_design(shape, mp, order), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_the_skewed_row_keeps_only_the_axes_with_several_fus():
    design = _design(*CASES[0][:3])
    c = compile_array(design)
    j = c.dataflow.ts_map.exprs[c.design.operation.dims.index("j")]
    assert j.coeff("s0") == 0 and j.coeff("s1") == -1
    (skew,) = map_skews(design, design.dataflow("d"))      # --explain's skews of the map as written: the same
    assert (skew.loop, skew.sigma) == ("j", (0, 1))


def test_a_map_skewed_only_along_an_axis_of_one_fu_is_refused_by_name():
    design = _design([1, 3], {"i": "1*t_i + s0", "j": "3*t_j + s1", "k": "t_k - s0"}, ["i", "k", "j"])
    with pytest.raises(SpecError, match=r"dataflows\.d\.schedule: the map skews no loop \(a coordinate of an axis of "
                                        r"one FU is always 0\)"):
        compile_array(design)
