"""The planner counts the margin the memory system keeps in front of a block (dataflow/memctl.py ``margins``: lane
leads under ``schedule: map``, FIFO chain halos). Before, ``plan_layer`` fitted the block's footprint alone, so at
tight ``memory.<X>.bytes`` it chose a block that ``layer_program``'s fit check refused (`memory.I.bytes: a block of 38 B
does not fit one half (its FIFO chain root's walk starts 6 B before the block's box)`) although a smaller block runs.
With ``fits=memctl.buffer_fit(compiled)`` the planner applies that same check to its candidates."""
import pytest

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import buffer_fit, chained_inputs, layer_program
from archgen.mappings.memory_tiling import make_command, plan_layer

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
# r126's 3x2-two-leads map: r and s lead by 2*s1 under the map's own schedule
TWO_LEADS = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - 2*s1",
             "s": "t_s - 2*s1"}
BOUNDS = {"n": 1, "k": 3, "p": 8, "q": 4, "c": 2, "r": 3, "s": 3}


def _compiled(i_bytes):
    df = {"map": TWO_LEADS, "order": ["n", "k", "p", "q", "r", "c", "s"], "inner": ["r", "c", "s"],
          "schedule": "map", "control": [0, 1]}
    return compile_array(load_spec_data({"version": 1, "name": "own_schedule", "operation": CONV_OP,
                                         "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [3, 2]},
                                         "memory": {"I": {"bytes": i_bytes}}, "dataflows": {"skew": df}}))


def _plan(c, fits):
    return plan_layer(c.design, BOUNDS, c.fu_graph.dataflow, fits=buffer_fit(c) if fits else None)


def test_the_footprint_alone_picks_a_block_the_memory_system_refuses():
    c = _compiled(64)                    # 32 B per half: I's 2x2-tile block is 32 B, plus a 6 B margin
    assert "I" in chained_inputs(c)
    with pytest.raises(SpecError, match=r"memory\.I\.bytes: a block of 38 B does not fit one half"):
        layer_program(c, _plan(c, fits=False), spec_size=True)
    smaller = make_command(c.design, BOUNDS, c.fu_graph.dataflow, {"n": 1, "k": 1, "p": 1, "q": 1}, ("n", "k", "p", "q"))
    layer_program(c, smaller, spec_size=True)                  # a smaller block runs at the same size


@pytest.mark.parametrize("i_bytes", [64, 96, 128, 192, 256, 512])
def test_the_planned_block_fits_with_its_margin(i_bytes):
    c = _compiled(i_bytes)
    cmd = _plan(c, fits=True)
    prog = layer_program(c, cmd, spec_size=True)           # refused before at 64 B (the test above)
    lay = prog.layouts["I"]
    assert lay.half_elems * lay.elem_bytes <= i_bytes // 2
    # still the largest block the heuristic reaches: with the margin-free fit it picks the same or a larger block
    plain = _plan(c, fits=False)
    assert all(dict(cmd.tile)[d] <= dict(plain.tile)[d] for d in dict(cmd.tile) if d in dict(plain.tile))


# H125's 3x2 conv map (r lags by s0 + s1) and the several-skews map (r by s0, s by s1): at these sizes the footprint
# planner's command was refused by layer_program (a block over its half rounded down to whole bank rows, plus the
# margin); seen with /tmp/h128/scripts/probe_maps.py, 3 of 16 sizes
CONV = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1", "s": "t_s"}
SEVERAL = {"n": "t_n", "k": "t_k", "p": "3*t_p + s0", "q": "2*t_q + s1", "c": "t_c", "r": "t_r - s0", "s": "t_s - s1"}


@pytest.mark.parametrize("mp,i_bytes", [(CONV, 96), (CONV, 160), (SEVERAL, 96)], ids=["3x2-96", "3x2-160", "several-96"])
def test_other_maps_at_tight_sizes(mp, i_bytes):
    df = {"map": mp, "order": ["n", "k", "p", "q", "c", "r", "s"], "inner": ["c", "r", "s"], "schedule": "map"}
    c = compile_array(load_spec_data({"version": 1, "name": "own", "operation": CONV_OP,
                                      "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [3, 2]},
                                      "memory": {"I": {"bytes": i_bytes}}, "dataflows": {"skew": df}}))
    bounds = {"n": 1, "k": 4, "p": 9, "q": 6, "c": 3, "r": 3, "s": 3}
    with pytest.raises(SpecError, match=r"memory\.I\.bytes: a block of \d+ B does not fit one half"):
        layer_program(c, plan_layer(c.design, bounds, c.fu_graph.dataflow), spec_size=True)
    layer_program(c, plan_layer(c.design, bounds, c.fu_graph.dataflow, fits=buffer_fit(c)), spec_size=True)


def test_a_design_without_margins_keeps_the_planners_own_fit():
    c = compile_array(load_spec_data({"version": 1, "name": "g", "operation": "C[m,n] += A[m,k] * B[k,n]",
                                      "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2]},
                                      "dataflows": {"os": {"spatial": {"m": 0, "n": 1}, "order": ["m", "n", "k"],
                                                           "control": [1, 1]}}}))
    assert not chained_inputs(c) and buffer_fit(c) is None


def test_a_refusal_of_every_block_reaches_the_caller():
    """When the memory system refuses even the smallest block, the planner raises that refusal (not an assertion)."""
    c = _compiled(512)
    calls = []

    def refuse(cmd):
        calls.append(cmd)
        raise SpecError([problem("memory.I.bytes", "a block does not fit one half (test)", 512)])
    with pytest.raises(SpecError, match=r"memory\.I\.bytes: a block does not fit one half \(test\)"):
        plan_layer(c.design, BOUNDS, c.fu_graph.dataflow, fits=refuse)
    assert calls
