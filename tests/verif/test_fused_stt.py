"""Verilator: a skewed stt map fused with a tiled dataflow (gemm_fused_hex: OS + the hexagonal map; issue 14).

One design, one multiplier per FU whose operands are muxed between the tiled nets and the hexagonal chains
and whose stages move with the selected dataflow's enable; the command's ``dataflow`` field selects, with no
rebuild and no reset between problems. Each run: outputs exact (beats and assembled result), RTL cycles ==
model cycles from the fused view's timing."""
import pytest

from archgen.arch.spec import load_spec, load_spec_data
from archgen.verif.fused_check import verify_fused, verify_fused_sequence

pytestmark = pytest.mark.verilator

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]

SEQUENCES = [
    # non-square, 1500 MHz: the shared multiplier has one LP stage, the hexagonal map needs two (one more on its
    # path only); hex right after os sees OS products in the shared stage (zeroed for its first slots)
    pytest.param(("array.shape=3x5", "clock_mhz=1500"),
                 [("os", {"i": 7, "k": 5, "j": 6}, 1), ("hex", {"i": 5, "k": 6, "j": 7}, 2),
                  ("hex", {"i": 3, "k": 4, "j": 5}, 3), ("os", {"i": 4, "k": 6, "j": 5}, 4),
                  ("hex", {"i": 6, "k": 3, "j": 4}, 5)], id="3x5-1500MHz"),
    pytest.param(("array.shape=1x4",), [("hex", {"i": 3, "k": 4, "j": 5}, 6), ("os", {"i": 5, "k": 3, "j": 6}, 7),
                                        ("hex", {"i": 4, "k": 5, "j": 3}, 8)], id="1x4", marks=pytest.mark.slow),
    pytest.param(("array.shape=2x3", "clock_mhz=1400"), [("os", {"i": 6, "k": 7, "j": 5}, 9),
                                                         ("hex", {"i": 6, "k": 7, "j": 5}, 10)],
                 id="2x3-1400MHz-equal-stages", marks=pytest.mark.slow),
    # 1 GHz: no shared stage (the LP put OS's register elsewhere); the operand mux costs hex one stage of its own
    pytest.param(("array.shape=3x4", "clock_mhz=1000"), [("os", {"i": 7, "k": 5, "j": 6}, 11),
                                                         ("hex", {"i": 5, "k": 6, "j": 7}, 12),
                                                         ("hex", {"i": 6, "k": 3, "j": 4}, 13)],
                 id="3x4-1GHz-hex-own-stage", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("overrides,runs", SEQUENCES)
def test_os_and_hex_back_to_back_on_one_design(overrides, runs):
    design = load_spec("gemm_fused_hex", list(overrides))
    results = verify_fused_sequence(design, design.fuse, runs)
    assert [r.dataflow for r in results] == [r[0] for r in runs]
    for res in results:
        assert res.outputs_exact, (res.dataflow, res.detail)
        assert res.rtl_cycles == res.model_cycles, (res.dataflow, res.rtl_cycles, res.model_cycles)


def test_bubbles_and_stalls_keep_the_fused_hex_exact():
    design = load_spec("gemm_fused_hex", ["array.shape=2x4"])
    for name, seed in (("hex", 3), ("os", 4)):
        res = verify_fused(design, design.fuse, {"i": 5, "k": 6, "j": 4}, name, seed=seed, idle_prob=0.25,
                           stall_prob=0.25)
        assert res.outputs_exact, (name, res.detail)
        assert res.detail["psum_reads_before_write"] == 0
        assert res.rtl_cycles >= res.model_cycles           # the model's figure is the ideal-stream one


def _conv(shape, mhz):
    return load_spec_data({"version": 1, "name": "dw_fused", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                           "clock_mhz": mhz, "types": {"I": "int8", "W": "int8", "O": "int32"},
                           "array": {"shape": list(shape)},
                           "dataflows": {"hex": {"stt": HEX, "order": ["r", "c", "p"]},
                                         "os": {"spatial": {"c": 0, "p": 1}, "order": ["c", "p", "r"],
                                                "control": [1, 1]}},
                           "fuse": ["os", "hex"]})


@pytest.mark.slow
@pytest.mark.parametrize("shape,mhz", [((3, 4), 500), ((2, 5), 1500)])
def test_validity_tags_on_the_psum_chain_in_a_fused_design(shape, mhz):
    """A depthwise 1-D convolution: the hexagonal map's partial sums carry validity tags (their own stream)."""
    design = _conv(shape, mhz)
    b = {"c": 4, "p": 5, "r": 3}
    for res in verify_fused_sequence(design, design.fuse, [("os", b, 1), ("hex", b, 2), ("os", b, 3), ("hex", b, 4)]):
        assert res.outputs_exact, (res.dataflow, res.detail)
        assert res.rtl_cycles == res.model_cycles


def test_skewed_maps_only_back_to_back_on_one_design():
    """A fuse list of skewed maps only (no tiled dataflow): the multipliers are the fused design's own,
    unpipelined, each map's product stages on its own path (1500 MHz: 2 each); hex, hex2, hex in one
    simulation, the select changing."""
    design = load_spec_data({
        "version": 1, "name": "hexes", "operation": "C[i,j] += A[i,k] * B[k,j]", "clock_mhz": 1500,
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [3, 2]},
        "dataflows": {"hex": {"stt": HEX}, "hex2": {"stt": [[1, 0, 1], [0, 1, -1], [1, 2, 1]]}},
        "fuse": ["hex", "hex2"]})
    runs = [("hex", {"i": 5, "k": 6, "j": 4}, 1), ("hex2", {"i": 4, "k": 5, "j": 6}, 2),
            ("hex", {"i": 3, "k": 4, "j": 5}, 3)]
    results = verify_fused_sequence(design, design.fuse, runs)
    assert [r.dataflow for r in results] == ["hex", "hex2", "hex"]
    for res in results:
        assert res.outputs_exact, (res.dataflow, res.detail)
        assert res.rtl_cycles == res.model_cycles, (res.dataflow, res.rtl_cycles, res.model_cycles)
