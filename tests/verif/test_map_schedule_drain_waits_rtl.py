"""Verilator: H148's waited drains (an output that depends on a skewed loop outside the tile, reduced along the array
axis the skew moves: dataflow/reduce_skew.py ``drain_groups``) in the three forms H150 built (docs/dataflows.md
"H148's form with two loops, streamed, and fused"): two such loops (one run-time buffer per loop, in series, and the
representative's partial sum added at the drain), an output streamed per step (per-FU product waits of D x S issued
steps) and fused designs (the waited drains behind the shared result registers, picked by the select); and H152's
found case, a partial-sum chain across a second, unskewed reduced axis beside the waited drain
(tests/dataflow/test_schedule_verify_found.py). The Amaranth tests of each form are in tests/dataflow; here the same
cases run at the array level on Verilator (``archgen verify SPEC --ideal-dram [--dataflow X]``): outputs exact and
RTL cycles == model cycles, ``cycles`` pinning the figures docs/dataflows.md reports (None where it reports none)."""
import sys
from pathlib import Path

import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_fused
from archgen.verif.array_check import verify_array
from archgen.verif.fused_check import verify_fused

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
from test_fused_drain_waits import _case as _fused  # noqa: E402
from test_fused_outer_pads import _check_against_single  # noqa: E402
from test_map_schedule_outer import CONV_OP, _spec  # noqa: E402
from test_map_schedule_outer_reduce import ORDER, TWO, TWO_FIXED  # noqa: E402
from test_map_schedule_outer_stream import FIXED as STREAMED  # noqa: E402
from test_schedule_verify_found import CASES as FOUND, CONV  # noqa: E402

pytestmark = pytest.mark.verilator


def _streamed(case, fuse=None):
    """A streamed case of tests/dataflow/test_map_schedule_outer_stream.py, alone or fused with ``fuse``."""
    op, shape, mp, order, inner, _, _ = STREAMED[case]
    return _spec(op, shape, mp, order, inner, fuse=fuse)


def _streamed_fused():
    """The streamed GEMM fused with ws and a lead of j (test_map_schedule_outer_stream.py's fused case)."""
    _, _, mp, order, _, _, _ = STREAMED[0]
    return _streamed(0, {"ws": {"spatial": {"k": 0}, "order": order},
                         "lead": {"map": mp | {"j": "t_j + s0 - 2"}, "order": order, "schedule": "map"}})


def _found(case):
    """A case of tests/dataflow/test_schedule_verify_found.py as its spec."""
    op, shape, mp, order, _, _ = FOUND[case]
    return load_spec_data({"version": 1, "kind": "array", "name": "s", "operation": op, "types": CONV,
                           "array": {"shape": shape}, "dataflows": {"d": {"map": mp, "order": order,
                                                                          "schedule": "map"}}})


def _fused_case(name, dataflow, cycles, seed=None):
    """Dataflow ``dataflow`` of tests/dataflow/test_fused_drain_waits.py's fused design ``name`` at its bounds and seed
    (or ``seed``)."""
    _, bounds, own_seed = _fused(name)
    return pytest.param(lambda: _fused(name)[0], dataflow, bounds, seed or own_seed, cycles, id=f"{name}-{dataflow}",
                        marks=pytest.mark.slow)


# (make the design, dataflow (fused designs), bounds, seed, cycles): docs/dataflows.md's H150 Verilator table, in order
CASES = [
    # two loops, n lags and q leads along axis 0: every FU waits, the representative's partial sum at the drain
    pytest.param(lambda: _spec(CONV_OP, (2, 2), TWO, ORDER, ["r", "s"]), None, TWO_FIXED[0][2], TWO_FIXED[0][3], 579,
                 id="conv-2x2-two-loops", marks=pytest.mark.slow),
    _fused_case("conv-2x2-two-loops+brief+ws", "m", 579),
    _fused_case("conv-2x2-two-loops+brief+ws", "brief", 387, seed=2),
    # one loop, fused: H148's brief conv beside ws (the waited drains read only by m's rows), beside a lead of n
    _fused_case("conv-2x2-brief+ws", "m", 387),
    _fused_case("conv-2x2-brief+ws", "ws", None),
    _fused_case("conv-2x2-brief+compressed+lead", "lead", 387),
    _fused_case("conv-3x2-mixed+compressed", "m", 676),
    # streamed per step: the GEMM on 3 (j lags along k's axis, streamed over i), alone and fused
    pytest.param(lambda: _streamed(0), None, STREAMED[0][5], STREAMED[0][6], 33, id="streamed-gemm"),
    pytest.param(_streamed_fused, "m", STREAMED[0][5], 1, 33, id="streamed-gemm-fused-m", marks=pytest.mark.slow),
    pytest.param(_streamed_fused, "lead", STREAMED[0][5], 2, 33, id="streamed-gemm-fused-lead",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _streamed(2), None, STREAMED[2][5], STREAMED[2][6], 100, id="streamed-batched-gemm-3x2",
                 marks=pytest.mark.slow),
    # H152's found case: p's waited drain across axis 0 (c's), beside r's adder tree across axis 1
    pytest.param(lambda: _found(0), None, FOUND[0][4], FOUND[0][5], None, id="found-tree-beside-the-drain",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,dataflow,bounds,seed,cycles", CASES)
def test_waited_drains_on_verilator(make, dataflow, bounds, seed, cycles):
    """Outputs exact, RTL cycles == model cycles (== ``cycles`` where pinned); a fused dataflow also runs its single
    design's tiles and steps, at its cycles under the fused schedule."""
    design = make()
    if dataflow is None:
        res = verify_array(design, bounds, seed=seed)
    else:
        res = verify_fused(design, design.fuse, bounds, dataflow, seed=seed)
        _check_against_single(compile_fused(design, design.fuse), design, res, bounds)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    print(f"RTL {res.rtl_cycles} = model {res.model_cycles} cycles")
    assert cycles is None or res.rtl_cycles == cycles
