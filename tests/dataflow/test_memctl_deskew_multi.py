"""The memory system of an output streamed per step over several padded loops, or over loops after the padded one
(``schedule: map``, docs/memory.md): lane s streams, at row positions pos, the element of its FUs' iteration
pos - offset(s) on each padded loop, so its delay is a number of beats set per block (a row position of a padded loop
is the trips of the inner loops after it): sum_d c_d(s) x prod(trips after d), c_d = offset_d(s) for the partial sum
and span_d - offset_d(s) for the result (memctl.deskew_terms). The layer core computes it from the compute row's trips
and delays the lane through a buffer (layer_top._delayed_by); the write walk holds every padded level. In Amaranth:
outputs exact, cycles == simulate_layer's, bytes moved == the model's; the checks that guard it can fail."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import deskew_terms, layer_program, output_deskew, output_pads
from archgen.mappings.memory_tiling import plan_layer
from test_map_schedule_outputs import _random_streamed_case
from test_memctl_stream_outputs import run_design

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV_MAP = {"n": "t_n", "k": "t_k", "p": "4*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r", "s": "t_s"}
CONV_ORDER = ["k", "p", "c", "r", "s", "n", "q"]


def _design(op, shape, mp, order, inner, control=None, max_fifo_depth=None):
    """A ``schedule: map`` design, its output 32 bits wide and its inputs 8 (``max_fifo_depth``: the spec field)."""
    out, a, b = (n for n in op.replace("[", " ").split() if n[:1].isupper())
    df = {"map": mp, "order": order, "inner": inner, "schedule": "map"} | ({"control": control} if control else {})
    arr = {"shape": list(shape)} | ({"max_fifo_depth": max_fifo_depth} if max_fifo_depth else {})
    return load_spec_data({"version": 1, "name": "deskew_multi", "operation": op, "array": arr,
                           "types": {out: "int32", a: "int8", b: "int8"}, "dataflows": {"m": df}})


def _two(**kw):
    """H132's 1x4 convolution streamed over [n, q]: n lags (t_n - s1), q leads (t_q + s1 - 3)."""
    return _design(CONV_OP, (1, 4), {**CONV_MAP, "q": "t_q + s1 - 3", "n": "t_n - s1"}, CONV_ORDER, ["n", "q"],
                   control=[0, 1], **kw)


CASES = {
    "conv-1x4-two-loops": (_two, {"n": 2, "k": 2, "p": 5, "q": 3, "c": 2, "r": 2, "s": 1}),
    # n padded, q after it unpadded
    "conv-1x4-loop-after": (lambda: _design(CONV_OP, (1, 4), {**CONV_MAP, "n": "t_n - s1"}, CONV_ORDER, ["n", "q"]),
                            {"n": 2, "k": 2, "p": 5, "q": 3, "c": 2, "r": 2, "s": 1}),
    # a batched GEMM: b padded, j after it; k outside (partial sums)
    "bgemm-3-loop-after": (lambda: _design("C[b,i,j] += A[b,i,k] * B[b,k,j]", (3,),
                                           {"b": "t_b - s0", "i": "3*t_i + s0", "j": "t_j", "k": "t_k"},
                                           ["i", "k", "b", "j"], ["b", "j"]), {"b": 3, "i": 4, "j": 3, "k": 3}),
    # 2-D, q lags along axis 0, n leads along axis 1
    "conv-2x2-two-loops": (lambda: _design(CONV_OP, (2, 2), {**CONV_MAP, "k": "2*t_k + s0", "p": "2*t_p + s1",
                                                            "q": "t_q - s0", "n": "t_n + s1 - 1"},
                                           CONV_ORDER, ["n", "q"]),
                           {"n": 2, "k": 3, "p": 3, "q": 3, "c": 2, "r": 2, "s": 1}),
}


def test_the_delays_are_set_per_block_from_the_offsets():
    """Over n (offsets s1, span 3) and q (offsets 3 - s1, span 3): the result of lane s is delayed by (3 - s1) rows of
    q plus s1 beats, its partial sum by s1 rows plus 3 - s1 beats; the write walk holds (masks) the first 3
    positions of both levels; the fixed delays (``output_deskew``) do not apply."""
    c = compile_array(_two())
    assert output_pads(c.fu_graph) == (("n", 3, (0, 1, 2, 3)), ("q", 3, (3, 2, 1, 0)))
    assert output_deskew(c.fu_graph) is None
    assert deskew_terms(c.fu_graph, "write") == ((3, 0), (2, 1), (1, 2), (0, 3))
    assert deskew_terms(c.fu_graph, "psum") == ((0, 3), (1, 2), (2, 1), (3, 0))
    prog = layer_program(c, plan_layer(c.design, CASES["conv-1x4-two-loops"][1], c.dataflow), spec_size=False)
    walks = {w.kind: w for w in prog.walks if w.operand == "O"}
    write, psum = walks["write"], walks["psum"]
    assert [write.levels[j] for j, _ in write.holds] == ["inner:n"] and write.levels[write.halo_level] == "inner:q"
    assert {h for _, h in write.holds} == {write.halo} == {3}
    assert [t[-2:] for t in write.deskew_terms] == [(3, 0), (2, 1), (1, 2), (0, 3)] and not write.deskew
    assert [t[-2:] for t in psum.deskew_terms] == [(0, 3), (1, 2), (2, 1), (3, 0)] and not psum.deskew
    assert all(not any(t[:-2]) for t in (*write.deskew_terms, *psum.deskew_terms))     # no tile level
    assert psum.holds == () and psum.halo_level is None


@pytest.mark.parametrize("name", ["conv-1x4-two-loops", "conv-1x4-loop-after", "bgemm-3-loop-after",
                                  pytest.param("conv-2x2-two-loops", marks=pytest.mark.slow)])
def test_several_padded_loops_through_the_memory_system_in_amaranth(name):
    make, bounds = CASES[name]
    exact, rtl, model, moved, dram = run_design(make(), bounds, 1, fits=True)
    assert exact
    assert rtl == model
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}


SMALL = {"n": 2, "k": 1, "p": 4, "q": 3, "c": 1, "r": 1, "s": 1}


def test_without_the_per_block_delays_the_outputs_are_wrong(monkeypatch):
    """The check can fail: with the layer core's per-block delays removed, the lanes write their own positions."""
    import archgen.rtlgen.layer_top as layer_top
    assert run_design(_two(), SMALL, 2)[0]
    monkeypatch.setattr(layer_top, "_delayed_by", lambda m, name, values, *a: values)
    assert not run_design(_two(), SMALL, 2)[0]


def test_partial_sums_read_back_within_the_delayed_write_wait_for_it(monkeypatch):
    """n = q = 1: a reduction tile is 4 x 4 = 16 steps, the write lands 3 x 4 + 3 = 15 beats after the psum walk read
    the element, within the array's output latency. Refused before H159; now the array waits for the write (a
    distance of 16 - 15 = 1 step): exact, RTL cycles == model cycles, bytes == the model's; with the old wait (16
    steps, the de-skew not counted) it runs wrong."""
    bounds = {"n": 1, "k": 1, "p": 4, "q": 1, "c": 2, "r": 1, "s": 1}
    exact, rtl, model, moved, dram = run_design(_two(), bounds, 1)
    assert (exact, rtl) == (True, model)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    import archgen.rtlgen.layer_top as layer_top
    monkeypatch.setattr(layer_top.LayerCore, "_psum_skew", lambda self, m, arr, seq: None)
    assert not run_design(_two(), bounds, 1)[0]


def test_the_de_skew_buffers_are_bounded_by_max_fifo_depth():
    """A row position of n is q + 3 beats: at q = 3 (6 beats) array.max_fifo_depth = 5 refuses a hand-given command
    naming that field; the planner chunks q to fit and runs exact; at 6 the hand-given command runs exact."""
    with pytest.raises(SpecError) as err:
        run_design(_two(max_fifo_depth=5), SMALL, 1)
    assert err.value.problems[0].path == "array.max_fifo_depth" and "is 6 beats" in err.value.problems[0].message
    assert run_design(_two(max_fifo_depth=5), SMALL, 1, fits=True)[0]
    assert run_design(_two(max_fifo_depth=6), SMALL, 1)[0]


def _random_cases(seed, count):
    """H132's random streamed convolutions whose de-skew is set per block (several padded loops, or loops after the
    padded one: n and q in either order)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        design, bounds = _random_streamed_case(rng)
        fg = compile_array(design).fu_graph
        if output_pads(fg) and output_deskew(fg) is None:
            out.append((design, bounds))
    return out


@pytest.mark.parametrize("seed,count", [(140, 2), pytest.param(141, 12, marks=pytest.mark.slow)])
def test_random_streamed_outputs_through_the_memory_system(seed, count):
    for i, (design, bounds) in enumerate(_random_cases(seed, count)):
        exact, rtl, model, moved, dram = run_design(design, bounds, i, fits=True)
        assert exact and rtl == model, (design.dataflows[0].ts_map, bounds)
        assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
