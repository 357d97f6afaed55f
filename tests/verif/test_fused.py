"""Verilator: every dataflow of a fused design (gemm_fused: OS + WS + IS on one array) computes exact
results and takes exactly the cycles the model predicts from the fused design's timing. The dataflow is a
field of the command: one build serves every dataflow, and tb_fused runs several problems with different
dataflows back to back in one simulation (no rebuild, no reset)."""
import pytest

from archgen.arch.spec import load_spec
from archgen.verif.fused_check import verify_fused, verify_fused_sequence

pytestmark = pytest.mark.verilator

SEQUENCES = [
    # non-square, every dataflow, the select changing back and forth
    pytest.param(("array.shape=3x2",), [("ws", {"i": 7, "k": 5, "j": 4}, 11), ("os", {"i": 4, "k": 6, "j": 5}, 12),
                                        ("is", {"i": 5, "k": 7, "j": 3}, 13), ("ws", {"i": 2, "k": 3, "j": 6}, 14)],
                 id="3x2"),
    # a 1xN array (one row: the loader's row counter has one value, OS drains one row per tile)
    pytest.param(("array.shape=1x4",), [("is", {"i": 3, "k": 9, "j": 5}, 5), ("os", {"i": 2, "k": 4, "j": 7}, 6),
                                        ("ws", {"i": 6, "k": 5, "j": 9}, 7)], id="1x4"),
    # the mux stages cost a pipeline register at 1 GHz (commit/swap skew +1 against the single designs)
    pytest.param(("array.shape=4x4", "clock_mhz=1000"), [("os", {"i": 9, "k": 5, "j": 6}, 21),
                                                         ("ws", {"i": 5, "k": 9, "j": 7}, 22),
                                                         ("is", {"i": 6, "k": 7, "j": 9}, 23)],
                 id="4x4-1GHz", marks=pytest.mark.slow),
    pytest.param(("array.shape=5x3",), [("os", {"i": 11, "k": 4, "j": 7}, 31), ("is", {"i": 6, "k": 8, "j": 4}, 32),
                                        ("ws", {"i": 4, "k": 7, "j": 8}, 33)], id="5x3", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("overrides,runs", SEQUENCES)
def test_fused_dataflows_back_to_back(overrides, runs):
    design = load_spec("gemm_fused", list(overrides))
    results = verify_fused_sequence(design, design.fuse, runs)
    assert len(results) == len(runs)
    for res in results:
        assert res.outputs_exact, (res.dataflow, res.detail)
        assert res.rtl_cycles == res.model_cycles, (res.dataflow, res.rtl_cycles, res.model_cycles)


def test_two_dataflows_fused_with_backpressure():
    """OS + IS only (a 2-way select), random idle input beats and output stalls, partial-sum causality."""
    design = load_spec("gemm_fused", ["array.shape=2x3"])
    for name, seed in (("is", 3), ("os", 4)):
        res = verify_fused(design, ["os", "is"], {"i": 5, "k": 4, "j": 7}, name, seed=seed, idle_prob=0.2,
                           stall_prob=0.2)
        assert res.outputs_exact, (name, res.detail)
        assert res.detail["psum_reads_before_write"] == 0
        assert res.rtl_cycles >= res.model_cycles          # stalls only add cycles to the ideal-stream count


@pytest.mark.slow
@pytest.mark.parametrize("dataflow,seed", [("ws", 4), ("os", 5), ("is", 6)])
def test_fused_array_runs_a_whole_layer_through_the_memory_system(dataflow, seed):
    """The fused array inside the layer top (DMA, buffers, address generators, testbench DRAM), its
    dataflow selected by the layer: exact result, RTL cycles == model cycles, DRAM bytes == model bytes."""
    from archgen.verif.layer_check import verify_layer
    design = load_spec("gemm_fused", ["array.shape=3x2"])
    res = verify_layer(design, {"i": 7, "k": 5, "j": 6}, seed=seed, dataflow=dataflow, fuse=design.fuse)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    assert res.ok, res.detail


@pytest.mark.slow
def test_maps_fused_with_a_tiled_dataflow_back_to_back():
    """A map that skews the FU assignment (placed) and one whose temporal loop is skewed by the FU coordinates,
    fused with OS on 2x2: each runs as the tiled form it runs as alone (dataflow/compile.py compile_fused), the
    select changing placed, os, skew, placed in one simulation."""
    from tests.dataflow.test_fusion import _fused_maps_design
    design = _fused_maps_design()
    runs = [("placed", {"i": 5, "k": 5, "j": 3}, 1), ("os", {"i": 4, "k": 6, "j": 5}, 2),
            ("skew", {"i": 5, "k": 4, "j": 3}, 3), ("placed", {"i": 3, "k": 2, "j": 6}, 4)]
    _check_sequence(design, runs)


def _check_sequence(design, runs) -> None:
    """Run the fused design's dataflows in the order of ``runs`` in one simulation: each exact, RTL == model."""
    results = verify_fused_sequence(design, design.fuse, runs)
    assert [r.dataflow for r in results] == [r[0] for r in runs]
    for res in results:
        assert res.outputs_exact, (res.dataflow, res.detail)
        assert res.rtl_cycles == res.model_cycles, (res.dataflow, res.rtl_cycles, res.model_cycles)


FOLDED_FUSED = {"version": 1, "name": "gemm_fold_fused", "operation": "C[i,j] += A[i,k] * B[k,j]",
                "types": {"A": "int8", "B": "int8", "C": "int32"}, "bounds": {"i": 5, "j": 4, "k": 6},
                "array": {"shape": [2, 3]},
                "dataflows": {"ws": {"spatial": {"k": 0, "j": 1}, "order": ["j", "k", "i"], "inner": ["i"]},
                              # a 1x6 array folded onto 2x3 (logical FU 2*s1 + s0 at physical FU (s0, s1))
                              "m": {"map": {"i": "6*t_i + s0 + 2*s1", "j": "t_j", "k": "t_k"},
                                    "order": ["k", "i", "j"]},
                              "os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [1, 1]}},
                "fuse": ["ws", "m", "os"]}


def test_a_folded_map_fused_with_tiled_dataflows_on_a_non_square_array():
    """A folded map (run on its own logical 1x6 array, A stationary in one row of six lanes) fused with WS and
    OS on the physical 2x3 array (docs/dataflows.md "Fusing dataflows that fold differently"): its FUs are the
    physical ones its placement names, so the multipliers are shared (6, not 6 + 6), and each dataflow keeps
    its own geometry (load rows and lanes, tile counts). The select changes m, ws, m, os in one simulation;
    every run exact with RTL cycles == model cycles."""
    from archgen.arch.spec import load_spec_data
    from archgen.dataflow.compile import compile_fused
    from archgen.dataflow.ir import NodeKind
    design = load_spec_data(FOLDED_FUSED)
    fused = compile_fused(design, design.fuse)
    assert fused.view("m").design.shape == (1, 6) and fused.view("ws").design.shape == (2, 3)
    muls = {v for hv in fused.hardware_views for v in hv.timing.prim.graph.nodes if v.kind is NodeKind.MUL}
    assert sorted(v.coord for v in muls) == [(a, b) for a in range(2) for b in range(3)]
    runs = [("m", {"i": 7, "k": 4, "j": 5}, 1), ("ws", {"i": 5, "k": 7, "j": 4}, 2),
            ("m", {"i": 13, "k": 3, "j": 2}, 3), ("os", {"i": 4, "k": 5, "j": 7}, 4)]
    _check_sequence(design, runs)
