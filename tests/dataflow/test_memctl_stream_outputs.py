"""The memory system of an output streamed per step over a padded loop (``schedule: map``, docs/dataflows.md "Outputs
that depend on loops of the tile"): lane s streams, at row position pos, the element of its FUs' iteration
pos - offset(s). The layer core delays each lane's partial sum by offset(s) beats and its result by span - offset(s)
(memctl.output_deskew), so the psum walk reads and the write walk writes every lane at one position; the write walk
holds (and masks) the first span positions of each row. In Amaranth: outputs exact, cycles == simulate_layer's,
bytes moved == the model's."""
import sys
from pathlib import Path

import numpy as np
import pytest

from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import buffer_fit, layer_dram_bytes, layer_program, output_deskew
from archgen.mappings.memory_tiling import plan_layer
from test_map_schedule_outputs import _held as _spec

GEMM = "C[i,j] += A[i,k] * B[k,j]"
OUTER = "C[i,j] += A[i] * B[j]"
CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV_MAP = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q - s0 - s1", "c": "t_c", "r": "t_r",
            "s": "t_s"}


# (design, bounds, (padded loop, span, offset per output lane))
CASES = {
    "gemm-lag": (lambda: _spec(GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}, ["i", "k", "j"], ["j"]),
                 {"i": 4, "j": 4, "k": 3}, ("j", 2, (0, 1, 2))),
    "gemm-lead": (lambda: _spec(GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j + s0 - 2", "k": "t_k"}, ["i", "k", "j"],
                                ["j"]), {"i": 5, "j": 3, "k": 2}, ("j", 2, (2, 1, 0))),
    "outer-4": (lambda: _spec(OUTER, (4,), {"i": "4*t_i + s0", "j": "t_j - s0"}, ["i", "j"], ["j"]),
                {"i": 6, "j": 5}, ("j", 3, (0, 1, 2, 3))),
    "conv-3x2": (lambda: _spec(CONV_OP, (3, 2), CONV_MAP, ["n", "k", "p", "c", "r", "s", "q"], ["q"]),
                 {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, ("q", 3, (0, 1, 1, 2, 2, 3))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_lanes_delays_are_the_offsets(name):
    """The psum walk delays lane s by offset(s) and the write walk by span - offset(s), the write held (masked) for
    the first span positions of each row of the padded loop; neither walk has a lead, a margin or more than one run."""
    make, bounds, want = CASES[name]
    c = compile_array(make())
    assert output_deskew(c.fu_graph) == want
    loop, span, offs = want
    prog = layer_program(c, plan_layer(c.design, bounds, c.dataflow), spec_size=False)
    walks = {w.kind: w for w in prog.walks if w.operand == c.fu_graph.output.name}
    assert walks["write"].deskew == tuple(span - o for o in offs)
    assert walks["write"].levels[walks["write"].halo_level] == f"inner:{loop}" and walks["write"].halo == span
    if "psum" in walks:
        assert walks["psum"].deskew == offs and walks["psum"].halo_level is None and walks["psum"].groups == 1
    assert all(r["ld_pos_" + w.operand] == 0 or w.operand != c.fu_graph.output.name
               for r in prog.rows for w in prog.walks if "ld_pos_" + w.operand in r)


def _run(name, seed, fits=False):
    """The planner's command for a case (``fits``: with memctl's ``buffer_fit``) through LayerTop in Amaranth:
    (outputs exact, RTL cycles, model cycles, bytes moved, the model's bytes)."""
    make, bounds, _ = CASES[name]
    return run_design(make(), bounds, seed, fits)


def run_design(d, bounds, seed, fits=False):
    """:func:`_run` of a design and bounds (tests/dataflow/test_memctl_deskew_multi.py runs its own)."""
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "rtlgen"))
    from layer_sim import run_top
    c = compile_array(d)
    cmd = plan_layer(d, bounds, c.dataflow, fits=buffer_fit(c) if fits else None)
    prog = layer_program(c, cmd, spec_size=False)
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(seed))
    res = run_top(LayerTop(prog, prog.dram_image(tensors)), prog.dram_words, 100_000)
    y = d.operation.output.name
    got = prog.read_output(res["words"], d.operation.tensor_shape(y, cmd.mapping.bound), signed=True)
    exact = np.array_equal(got, reference_einsum(d.operation, tensors, cmd.mapping.bound, c.fu_graph.acc_width))
    return exact, res["cycles"], simulate_layer(c, cmd).cycles, res["moved"], layer_dram_bytes(c, cmd)


@pytest.mark.parametrize("name", ["gemm-lag", "gemm-lead", "outer-4",
                                  pytest.param("conv-3x2", marks=pytest.mark.slow)])
def test_a_streamed_output_through_the_memory_system_in_amaranth(name):
    exact, rtl, model, moved, dram = _run(name, 3)
    assert exact
    assert rtl == model
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}


def test_without_the_delays_the_outputs_are_wrong(monkeypatch):
    """The check can fail: with the layer core's per-lane delays removed, the lanes write offset(s) positions off."""
    import archgen.rtlgen.layer_top as layer_top
    monkeypatch.setattr(layer_top, "_delayed", lambda m, name, values, delays, fire: values)
    assert not _run("gemm-lag", 3)[0]


# the output reduced along axis 0 (c on the rows), q skewed along axis 1: a row of q = 1 is 4 steps, read back as
# partial sums one tile later
REDUCED = lambda: _spec(CONV_OP, (2, 4), {"n": "t_n", "k": "t_k", "p": "4*t_p + s1", "q": "t_q - s1",
                                          "c": "2*t_c + s0", "r": "t_r", "s": "t_s"},
                        ["n", "k", "p", "c", "r", "s", "q"], ["q"])
CASES["reduced-q2"] = (REDUCED, {"n": 1, "k": 3, "p": 2, "q": 2, "c": 3, "r": 1, "s": 2}, ("q", 3, (0, 1, 2, 3)))
CASES["reduced-q1"] = (REDUCED, {**CASES["reduced-q2"][1], "q": 1}, ("q", 3, (0, 1, 2, 3)))


def test_partial_sums_read_back_within_the_delayed_write_wait_for_it(monkeypatch):
    """A partial sum read back D steps after its step (the array's read-after-write rule) lands up to span beats
    later once de-skewed, so the array waits for step n - (D - span) to have left (dataflow/control.py
    ``psum_raw_hw``). q = 2 (D = 5, span 3, latency 1) and q = 1 (D = 4: refused before H159) run exact with RTL
    cycles == model cycles; with the old wait (D, the de-skew not counted) q = 1 runs wrong."""
    for name in ("reduced-q2", "reduced-q1"):
        exact, rtl, model, moved, dram = _run(name, 0)
        assert (exact, rtl) == (True, model), name
        assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    import archgen.rtlgen.layer_top as layer_top
    monkeypatch.setattr(layer_top.LayerCore, "_psum_skew", lambda self, m, arr, seq: None)
    assert not _run("reduced-q1", 0)[0]
