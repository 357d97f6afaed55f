"""The DRAM-side program against an independent numpy einsum, and the documented cycle contract of
dataflow/schedule.py (replayed here as recurrences) against the SimPy cycle model, on random problem
sizes (padded tiles included) and the conv spec."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archgen.arch.spec import find_spec, load_spec, load_spec_data, read_spec_file
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.interconnect import derive_interconnect
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array, tile_traffic
from archgen.verif.golden import reference_einsum

GEMMS = ["gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast"]


@functools.lru_cache(maxsize=None)
def graph(name: str, shape: str | None = None):
    design = load_spec(name, [f"array.shape={shape}"] if shape else [])
    return compile_array(design, pipeline=False).fu_graph


def compiled_of(fg):
    return compile_array(fg.design, fg.dataflow, pipeline=False)


def replay_contract(sch, mapping) -> int:
    """The cycle contract of dataflow/schedule.py replayed as plain recurrences, tile by tile (no SimPy):
    cycle 0 is the handshake; the loader fills the shadow registers (rows cycles, or skips a tile in
    one cycle) once the previous contents were swapped in (swap skew + 1 after that tile's first step);
    the issuer sends one step per cycle, waiting for the tile's load and, for outputs accumulated in
    place, holding the last step of a tile until the previous tile has drained; a partial-sum preload
    into accumulators starts only after the previous tile has drained; the drain starts commit skew + 1
    after the last step and takes drain_rows cycles; done follows the last output."""
    tiles = list(mapping.tiles())
    steps, rows = mapping.steps, sch.rows
    swap_skew, commit_skew = sch.swap_skew, sch.commit_skew
    t_load = t_issue = shadow_free = 1
    loaded = drained = None
    for k, tile in enumerate(tiles):
        needs = sch.has_loader and sch.needs_load(tile.first)
        if sch.has_loader:
            if needs:
                start = max(t_load, shadow_free)
                if sch.accumulate and sch.psum_in and not tile.first and k > 0:
                    start = max(start, drained)        # a partial-sum preload reads what tile k - 1 wrote
                loaded = start + rows
                t_load = loaded
            else:
                t_load += 1
        t = max(t_issue, loaded) if needs else t_issue
        if sch.accumulate and steps == 1 and k > 0:
            t = max(t, drained)
        if needs:
            shadow_free = t + swap_skew + 1
        t += steps - 1
        if sch.accumulate and steps > 1 and k > 0:
            t = max(t, drained)
        last_issue, t_issue = t, t + 1
        if sch.accumulate:
            drained = max(last_issue + commit_skew + 1, drained or 0) + sch.drain_rows
    return drained if sch.accumulate else last_issue + sch.out_latency + 1


def check_program(fg, bounds, seed):
    design = fg.design
    mapping = map_problem(design, bounds)
    tensors = random_operands(fg, mapping, np.random.default_rng(seed))
    hp = host_program(fg, mapping, tensors)
    ref = reference_einsum(design.operation, tensors, bounds, fg.acc_width)
    assert hp.result.shape == ref.shape
    assert np.array_equal(hp.result, ref)

    # every output element is produced, padding lanes carry zeros, and the last beat of each element
    # holds its final value (earlier beats are partial sums that come back in)
    idx, exp = hp.out_index, hp.expected
    pad = idx[..., 0] < 0
    assert np.all(exp[pad] == 0)
    last = {}
    for pos in zip(*np.nonzero(~pad)):
        last[tuple(int(v) for v in idx[pos])] = int(exp[pos])
    assert len(last) == ref.size
    assert all(ref[k] == v for k, v in last.items())

    # the streams carry exactly what the cycle model counts
    compiled = compiled_of(fg)
    sch = compiled.schedule
    traffic = {p.name: 0 for p in compiled.stream_ports}
    for tile in mapping.tiles():
        for p, n in tile_traffic(compiled, mapping.steps, tile.first).items():
            traffic[p] += n
    for port, beats in hp.streams.items():
        assert beats.size == traffic[port], port
        assert beats.shape[1] == compiled.port(port).lanes
    assert exp.size == traffic[f"out_{design.operation.output.name}"]

    # the closed form the RTL controller obeys == the SimPy model on an ideal DRAM side
    model = simulate_array(compiled, mapping)
    assert model.total_cycles == replay_contract(sch, mapping)
    assert model.total_cycles >= mapping.n_tiles * mapping.steps
    assert model.total_cycles >= math.ceil(mapping.macs / design.n_fus)
    # a finite DRAM can only slow it down
    slow = simulate_array(compiled, mapping, bytes_per_cycle=4.0)
    assert slow.total_cycles >= model.total_cycles
    return mapping, model


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(GEMMS), shape=st.sampled_from([None, "3x5", "2x2", "1x8"]),
       m=st.integers(1, 9), k=st.integers(1, 9), n=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_gemm_host_program_and_cycles(name, shape, m, k, n, seed):
    check_program(graph(name, shape), {"i": m, "k": k, "j": n}, seed)


@pytest.mark.parametrize("name", GEMMS)
def test_gemm_reference_problem(name):
    fg = graph(name)
    mapping, model = check_program(fg, fg.design.reference_bounds, 1)
    assert mapping.n_tiles == 3 * 3 and model.total_cycles == replay_contract(compiled_of(fg).schedule, mapping)


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from(["4x4x2", "2x3x3", "1x4x2", "3x1x2", "2x2x1"]), control=st.sampled_from(["1,1,0", "1,1,1", "0,0,0"]),
       m=st.integers(1, 7), k=st.integers(1, 7), n=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_gemm_reduced_across_the_third_axis(shape, control, m, k, n, seed):
    """gemm_os3d: k across axis 2, reduced by adder trees (control 0 there) or chains into one accumulator
    per C element; exact results, traffic and the contract with partial-sum preloads after drains."""
    design = load_spec("gemm_os3d", [f"array.shape={shape}", f"dataflows.os3d.control=[{control}]"])
    check_program(compile_array(design, pipeline=False).fu_graph, {"i": m, "k": k, "j": n}, seed)


def test_conv_reference_bounds():
    fg = graph("conv_ws")
    mapping, _ = check_program(fg, fg.design.reference_bounds, 2)
    assert mapping.bound == {"n": 1, "k": 6, "p": 3, "q": 3, "c": 5, "r": 3, "s": 3}


@settings(max_examples=15, deadline=None)
@given(bounds=st.fixed_dictionaries({"n": st.integers(1, 2), "k": st.integers(1, 6), "p": st.integers(1, 3),
                                     "q": st.integers(1, 3), "c": st.integers(1, 6), "r": st.integers(1, 3),
                                     "s": st.integers(1, 3)}), seed=st.integers(0, 2**16))
def test_conv_random_bounds(bounds, seed):
    check_program(graph("conv_ws"), bounds, seed)


def test_accumulator_wraps_like_the_reference():
    # int4 accumulators overflow on a 9-deep int8 dot product: both sides wrap to 4 bits
    data = read_spec_file(find_spec("gemm_os"))
    data["types"] = {"A": "int8", "B": "int8", "C": "int4"}
    fg = derive_interconnect(load_spec_data(data))
    check_program(fg, {"i": 5, "k": 9, "j": 6}, 3)


@settings(max_examples=10, deadline=None)
@given(b=st.integers(1, 3), i=st.integers(1, 5), j=st.integers(1, 5), k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_batched_gemm_on_a_three_dimensional_array(b, i, j, k, seed):
    fg = _bmm_graph()
    check_program(fg, {"b": b, "i": i, "j": j, "k": k}, seed)


@functools.lru_cache(maxsize=None)
def _bmm_graph():
    return derive_interconnect(load_spec_data({
        "version": 1, "name": "bmm3d", "operation": "C[b,i,j] += A[b,i,k] * B[b,k,j]",
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2, 2]},
        "dataflows": {"os": {"spatial": {"i": 0, "j": 1, "b": 2}, "order": ["b", "i", "j", "k"], "control": [1, 1, 1]}}}))


PAD_CONV = {"version": 1, "name": "padconv", "operation": "O[k,p] += W[k,r] * I[p-r]",
            "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
            "dataflows": {"d": {"spatial": {"k": 0, "p": 1}, "order": ["k", "p", "r"], "control": [0, 0]}}}


def test_an_index_below_the_tensor_reads_zero_not_a_wrapped_element():
    """A true convolution's I[p - r] reaches I[-2], I[-1] at p = 0, 1: the zero padding. numpy's negative
    indexing would read I[P - 2], I[P - 1] (a circular convolution, O = [341, 412, 123, 234] here)."""
    fg = derive_interconnect(load_spec_data(PAD_CONV))
    bounds = {"k": 1, "p": 4, "r": 3}
    mapping = map_problem(fg.design, bounds)
    hp = host_program(fg, mapping, {"W": np.array([[1, 10, 100]]), "I": np.array([1, 2, 3, 4])})
    assert hp.result.tolist() == [[1, 12, 123, 234]]          # by hand: O[p] = I[p] + 10 I[p-1] + 100 I[p-2]
    check_program(fg, {"k": 3, "p": 5, "r": 3}, 4)             # streams, traffic and cycles of a padded layer
