"""Streamed outputs read back as partial sums: no partial sum is read before the output beat that writes it.

The array streams a tile's partial sums out one beat per step and reads them back in a later visit of the
same output block (dataflow/control.py ``psum_raw_hw``, model half ``psum_raw_ready_at``). This test takes
the cycle model's own timing of every step (tile k's step j issues at its first step + j, its output beat
leaves ``out_latency`` cycles later) and the host program's data dependences (which output beat wrote each
partial sum read), on random operations, arrays, dataflows, clock targets and problem sizes, and checks
every read against its write. ``tests/verif/test_psum_raw_rtl.py`` checks the same on Verilator.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.control import streams_psums_back
from archgen.dataflow.host import host_program, random_operands
from archgen.mappings.tiling import TileMapping, map_problem
from archgen.sim.array_model import simulate_array

OPERATIONS = (
    ("C[i,j] += A[i,k] * B[k,j]", {"A": "int8", "B": "int8", "C": "int32"}),
    ("C[i,j] += A[i,k] * B[k]", {"A": "int8", "B": "int8", "C": "int32"}),
    ("O[k,p] += I[c,p+r] * W[k,c,r]", {"I": "int8", "W": "int8", "O": "int32"}),
)
DIMS = {0: "ijk", 1: "ijk", 2: "kpcr"}


def random_design(rng: random.Random):
    n = rng.randrange(len(OPERATIONS))
    op, types = OPERATIONS[n]
    dims = list(DIMS[n])
    spatial = rng.sample(dims, 2)
    temporal = [d for d in dims if d not in spatial]
    order = rng.sample(dims, len(dims))
    if order[-1] in spatial:                                  # a tile needs a temporal loop inside it
        order.remove(temporal[0])
        order.append(temporal[0])
    data = {"version": 1, "kind": "array", "name": "raw_probe", "description": "random psum read-after-write probe",
            "clock_mhz": rng.choice([300, 800, 1200, 1500]), "operation": op, "types": types,
            "array": {"shape": [rng.randint(1, 3), rng.randint(2, 5)]},
            "dataflows": {"d": {"spatial": {spatial[0]: 0, spatial[1]: 1}, "order": order,
                                "control": [rng.randint(0, 1), rng.randint(0, 1)]}}}
    bounds = {d: rng.randint(1, 7) for d in dims}
    return load_spec_data(data), bounds


def step_cycles(res, mapping):
    """Issue cycle of every step, tile by tile, from the model's first-step cycles (tiles issue their steps back
    to back in the model: that is its claim, which the Verilator test holds it to)."""
    total = res.total_cycles
    firsts = list(itertools.accumulate(res.tile_cycles[:-1], initial=total - sum(res.tile_cycles)))
    return np.array([f + j for f in firsts for j in range(mapping.steps)])


def reads_before_write(compiled, mapping, seed: int) -> tuple[int, int]:
    """(partial sums read before their write, partial sums read) under the model's timing."""
    fg, sch = compiled.fu_graph, compiled.schedule
    prog = host_program(fg, mapping, random_operands(fg, mapping, np.random.default_rng(seed)))
    if prog.psum_source is None:
        return 0, 0
    issue = step_cycles(simulate_array(compiled, mapping), mapping)
    out_cycle = issue + sch.out_latency                       # output beat s = step s, one beat per step
    reading = [s for s, t in enumerate(mapping.tiles()) for s in range(s * mapping.steps, (s + 1) * mapping.steps)
               if not t.first]
    psum_cycle = issue[reading]                               # partial-sum beat b is read at its step's issue
    src = prog.psum_source
    ok = src >= 0
    bad = int(np.sum(ok & (out_cycle[np.where(ok, src, 0)] >= psum_cycle[:, None])))
    return bad, int(ok.sum())


def test_random_designs_never_read_a_partial_sum_before_its_write():
    rng = random.Random(61)
    checked = binding = 0
    for case in range(400):
        design, bounds = random_design(rng)
        try:
            compiled = compile_array(design, "d")
            mapping = map_problem(design, bounds, compiled.dataflow)      # the tile as the array runs it
        except SpecError:
            continue                                          # refused dataflow: nothing to run
        sch = compiled.schedule
        if not streams_psums_back(sch) or mapping.psum_tile_distance() is None:
            continue
        bad, reads = reads_before_write(compiled, mapping, case)
        assert bad == 0, (case, design.operation, design.dataflow("d"), design.shape, design.clock_mhz, bounds)
        if reads:
            checked += 1
            binding += mapping.steps * mapping.psum_tile_distance() <= sch.out_latency
    # the search must reach the case that needs the wait (reuse distance within the output latency) often
    print(f"{checked} designs read partial sums back, {binding} within the output latency")
    assert checked >= 40 and binding >= 15, (checked, binding)


def test_repro_needs_the_wait(monkeypatch):
    """The case that found the bug (2x5, {i: 0, k: 1}, 1500 MHz): the wait adds cycles and removes every
    early read; without it (the tile distance unknown to the model) the model's own timing reads 12 early."""
    design, _ = repro_design()
    bounds = {"i": 4, "j": 3, "k": 10}
    compiled = compile_array(design, "d")
    mapping = map_problem(design, bounds, "d")
    assert streams_psums_back(compiled.schedule)
    assert mapping.steps * mapping.psum_tile_distance() <= compiled.schedule.out_latency
    assert reads_before_write(compiled, mapping, 1) == (0, 12)
    with_wait = simulate_array(compiled, mapping).total_cycles
    monkeypatch.setattr(TileMapping, "psum_tile_distance", lambda self: None)
    # without the wait: every partial sum is read early, the count Verilator reported before the fix
    assert reads_before_write(compiled, mapping, 1) == (12, 12)
    assert simulate_array(compiled, mapping).total_cycles < with_wait


def repro_design():
    """The spec that found the bug (as the data of its YAML file), and that data."""
    data = {"version": 1, "kind": "array", "name": "vec_ik", "description": "C[i,j] += A[i,k] * B[k] with B a vector",
            "clock_mhz": 1500, "operation": "C[i,j] += A[i,k] * B[k]",
            "types": {"A": "int8", "B": "int8", "C": "int32"},
            "array": {"shape": [2, 5]},
            "dataflows": {"d": {"spatial": {"i": 0, "k": 1}, "order": ["i", "k", "j"], "control": [1, 1]}}}
    return load_spec_data(data), data
