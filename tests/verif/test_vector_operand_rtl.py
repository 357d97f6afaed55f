"""Single tiled arrays for C[i,j] += A[i,k] * B[k] (B a vector, reused along two directions).

Regressions for two generator bugs:
- spatial {i: 0, k: 1}: both inputs stationary, only partial sums streamed in. The delay LP may start
  a multiplier before the partial-sum port's value is due; its node time was then negative and the
  RTL tapped the step line at index -1 (the oldest slot), so the stationary swap came at the wrong
  step (wrong outputs at 1500 MHz). Node times are now counted from the earliest node that taps.
- spatial {i: 0, j: 1}: A (reused along axis 1) and B (reused along both axes) both wanted the FU edge
  (0,0) -> (0,1); the interconnect raised an AssertionError. An operand now takes only FU edges that
  no earlier operand holds (B then runs along axis 0 from more memory lanes).
"""
import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.interconnect import derive_interconnect
from archgen.dataflow.ir import NodeKind
from archgen.verif.array_check import verify_array

_SPEC = """version: 1
kind: array
name: vec_{name}
description: C[i,j] += A[i,k] * B[k] with B a vector
clock_mhz: 500
operation: "C[i,j] += A[i,k] * B[k]"
types: {{A: int8, B: int8, C: int32}}
array:
  shape: [2, 5]
dataflows:
  d:
    spatial: {spatial}
    order: {order}
    control: [1, 1]
"""

# nodes that read their step's control from the step line at their node time (rtlgen/array.py)
_ON_LINE = (NodeKind.MUL, NodeKind.ADD, NodeKind.ACC, NodeKind.TREE_ADD, NodeKind.FIFO)


def _spec(tmp_path, name, spatial, order, shape, mhz):
    path = tmp_path / f"{name}.yaml"
    path.write_text(_SPEC.format(name=name, spatial=spatial, order=order))
    return load_spec(path, [f"array.shape={shape}", f"clock_mhz={mhz}"])


@pytest.mark.parametrize("shape", ["2x5", "3x4", "4x2"])
@pytest.mark.parametrize("mhz", [500, 1000, 1250, 1500])
def test_stationary_inputs_no_node_before_issue(tmp_path, shape, mhz):
    design = _spec(tmp_path, "ik", "{i: 0, k: 1}", "[i, k, j]", shape, mhz)
    tm = compile_array(design, "d").timing
    taps = {v: t for v, t in tm.time.items() if v.kind in _ON_LINE}
    assert min(taps.values()) >= 0, sorted((t, str(v)) for v, t in taps.items() if t < 0)
    assert all(off >= 0 for off in tm.lane_offset.values()), tm.lane_offset


@pytest.mark.parametrize("shape", ["2x5", "3x3", "1x4"])
def test_two_operands_never_share_an_fu_edge(tmp_path, shape):
    design = _spec(tmp_path, "ij", "{i: 0, j: 1}", "[i, j, k]", shape, 500)
    fg = derive_interconnect(design, "d")
    fu_edges = [(u, v, e.operand) for u, v, e in fg.links()
                if u.kind is NodeKind.FU and v.kind is NodeKind.FU]
    assert len({(u, v) for u, v, _ in fu_edges}) == len(fu_edges)
    # every FU still receives A and B exactly once (one wire in from a memory lane or a neighbour)
    for x in ("A", "B"):
        sinks = [v for _, v, e in fg.links(x) if v.kind is NodeKind.FU]
        assert sorted(sinks) == sorted(set(sinks)) and len(sinks) == len(list(fg.coords()))


@pytest.mark.verilator
def test_stationary_inputs_pipelined_exact(tmp_path):
    design = _spec(tmp_path, "ik", "{i: 0, k: 1}", "[i, k, j]", "2x5", 1500)
    res = verify_array(design, {"i": 4, "j": 10, "k": 10}, seed=1)
    assert res.detail["registers_added"] > 0
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


@pytest.mark.verilator
def test_vector_operand_on_both_axes_exact(tmp_path):
    design = _spec(tmp_path, "ij", "{i: 0, j: 1}", "[i, j, k]", "2x5", 1500)
    res = verify_array(design, {"i": 4, "j": 10, "k": 3}, seed=1)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
