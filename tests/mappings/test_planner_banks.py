"""The planner gives a block what the memory system gives it (issue 14): ``memory.<X>.bytes / halves`` rounded down to
whole bank rows (dataflow/memctl.py ``layer_program``: banks a power of two, at least one beat's lanes and one DRAM
word's elements). Before, ``plan_layer`` checked the block against ``bytes / halves`` alone, so gemm_os 2x2 with
``memory.A.bytes: 96`` (48 B per half; 32 banks of int8 leave 32 B) planned ``k:24`` chunks, a 48 B block of A, and
``archgen verify`` refused it (`memory.A.bytes: a block of 48 B does not fit one half (got 96)`, exit 2) although
``k:12`` runs. The caller passes the rooms (``memctl.buffer_rooms``); a lane-interleaved output's padding to whole
array tiles goes through ``memctl.buffer_fit`` (memctl's own check)."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import layer_program
from archgen.mappings.memory_tiling import make_command, plan_layer
from archgen.workloads.library import get_workload

GEMM = "C[i,j] += A[i,k] * B[k,j]"
LAYER = {"i": 8, "j": 8, "k": 48}


def _gemm_os(memory, shape=(2, 2)):
    return load_spec_data({"version": 1, "kind": "array", "name": "g", "operation": GEMM,
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "memory": memory, "dataflows": {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"],
                                                                  "control": [1, 1]}}})


def _rooms(c):
    from archgen.dataflow.memctl import buffer_rooms
    return buffer_rooms(c)


def test_archgen_sim_plans_a_block_the_memory_system_builds(monkeypatch):
    """The reproducer through ``archgen sim``'s planning (sim/array_sim.py): the command it plans passes
    ``layer_program`` at the spec's buffer sizes. On c7b9554 it planned k:24 and layer_program refused it."""
    import archgen.sim.array_sim as array_sim
    planned = []

    def spy(*args, **kwargs):
        planned.append(plan_layer(*args, **kwargs))
        return planned[-1]
    monkeypatch.setattr(array_sim, "plan_layer", spy)
    design = _gemm_os({"A": {"bytes": 96}})
    results, _ = array_sim.simulate_workload_on_array(design, get_workload("gemm:8,48,8"))
    assert len(planned) == 1 and results[0].extra["mapping"] == planned[0].describe()
    layer_program(compile_array(design), planned[0], spec_size=True)


@pytest.mark.parametrize("a_bytes, k_chunk", [(64, 12), (80, 12), (96, 12), (126, 12), (128, 24), (160, 24)])
def test_the_block_fits_the_half_in_whole_bank_rows(a_bytes, k_chunk):
    """At and around the boundary: 32 banks of int8 per half, so A's block may take 32 B up to 127 B of buffer and
    64 B from 128 B; the half without rounding (``rooms=None``, the old check) lets a 48 B block through at 96..126 B,
    which layer_program refuses."""
    c = compile_array(_gemm_os({"A": {"bytes": a_bytes}}))
    rooms = _rooms(c)
    assert (rooms["A"].half_bytes, rooms["A"].row_bytes) == (a_bytes // 64 * 32, 32)
    cmd = plan_layer(c.design, LAYER, c.dataflow, rooms=rooms)
    assert dict(cmd.tile)["k"] == k_chunk
    prog = layer_program(c, cmd, spec_size=True)
    assert prog.layouts["A"].half_elems == rooms["A"].half_bytes      # the rooms are the layouts' halves
    old = plan_layer(c.design, LAYER, c.dataflow)
    if a_bytes // 2 >= 48 and a_bytes < 128:
        with pytest.raises(SpecError, match=r"memory\.A\.bytes: a block of 48 B does not fit one half"):
            layer_program(c, old, spec_size=True)
    else:
        assert old == cmd


@pytest.mark.parametrize("shape, width", [((2, 2), 8), ((2, 4), 16), ((3, 3), 32), ((4, 2), 64), ((3, 2), 8)])
def test_the_rooms_do_not_depend_on_the_command(shape, width):
    """Banks follow the lanes and the DRAM width, not the command: the rooms of a one-element layer are the halves
    of every planned layer's layouts (B's and C's buffers a bank row and a bit per half)."""
    probe = compile_array(_gemm_os({"dram": {"width_bytes": width}}, shape))
    rooms = _rooms(probe)
    memory = {"dram": {"width_bytes": width}, "A": {"bytes": 2 * (2 * rooms["A"].row_bytes + 1)},
              "B": {"bytes": 2 * (rooms["B"].row_bytes + 3)}, "C": {"bytes": 2 * (3 * rooms["C"].row_bytes + 4)}}
    c = compile_array(_gemm_os(memory, shape))
    rooms = _rooms(c)
    for bounds in ({"i": 5, "j": 7, "k": 30}, {"i": 9, "j": 3, "k": 64}, {"i": 1, "j": 1, "k": 1}):
        prog = layer_program(c, plan_layer(c.design, bounds, c.dataflow, rooms=rooms), spec_size=True)
        assert {x: (lay.half_elems * lay.elem_bytes, lay.banks * lay.elem_bytes) for x, lay in prog.layouts.items()} \
            == {x: (r.half_bytes, r.row_bytes) for x, r in rooms.items()}


def test_a_lane_interleaved_output_is_checked_padded_to_whole_tiles():
    """O's lanes on two array axes (k, p): memctl pads its block to whole array tiles along k (block_bytes), which
    the footprint does not count; found by benchmarks/planner_bank_rows.py. ``buffer_fit`` checks such a design."""
    from archgen.dataflow.memctl import buffer_fit
    c = compile_array(load_spec_data({
        "version": 1, "kind": "array", "name": "split", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
        "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 2]}, "memory": {"O": {"bytes": 64}},
        "dataflows": {"d": {"spatial": {"k": 0, "p": 1}, "order": ["r", "k", "c", "p", "q"], "control": [0, 0]}}}))
    bounds = {"k": 1, "p": 4, "q": 7, "c": 4, "r": 1}       # k = 1 of 2: O's block padded to 2 k rows
    rooms = _rooms(c)
    without = plan_layer(c.design, bounds, c.dataflow, rooms=rooms)
    with pytest.raises(SpecError, match=r"memory\.O\.bytes: a block of 64 B does not fit one half"):
        layer_program(c, without, spec_size=True)
    fits = buffer_fit(c)
    assert fits is not None
    layer_program(c, plan_layer(c.design, bounds, c.dataflow, fits=fits, rooms=rooms), spec_size=True)


def test_a_block_over_the_rounded_half_is_refused_with_the_bytes_that_fit():
    c = compile_array(_gemm_os({"A": {"bytes": 96}}))
    with pytest.raises(SpecError, match=r"layers\.fc: operand A needs 2 x 48 B for a block of .*; buffer "
                                        r"memory\.A\.bytes is 96 B, which leaves 32 B per half in whole bank rows of 32 B \(--set "
                                        r"memory\.A\.bytes=128 or more\)"):
        make_command(c.design, LAYER, c.dataflow, {"i": 1, "j": 4, "k": 24}, ("i", "j", "k"), "fc", _rooms(c))
    make_command(c.design, LAYER, c.dataflow, {"i": 1, "j": 4, "k": 24}, ("i", "j", "k"), "fc")   # without: the half


def test_no_rooms_when_the_memory_system_refuses_every_command():
    """A half below one bank row (32 B per half at 32 banks): the refusal comes where the command is built, by name."""
    c = compile_array(_gemm_os({"A": {"bytes": 32}}))
    assert _rooms(c) is None
    cmd = plan_layer(c.design, LAYER, c.dataflow, rooms=None)
    with pytest.raises(SpecError, match=r"memory\.A\.bytes: the generated buffer of A needs at least one 1-byte word "
                                        r"in each of its 32 banks per half"):
        layer_program(c, cmd, spec_size=True)


@pytest.mark.slow
def test_random_designs_near_the_bank_rows_plan_only_blocks_the_memory_system_builds():
    """benchmarks/planner_bank_rows.py on a seed of its own: the old check's commands are refused somewhere (the sweep
    finds the bug), the new ones never, and only refused plans change."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "planner_bank_rows.py"
    spec = importlib.util.spec_from_file_location("planner_bank_rows", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    n = bench.run(60, seed=5)
    assert n["refused before"] > 0 and n["refused after"] == 0
    assert n["plans changed"] == n["changed and refused before"]
