"""H159: an output streamed per step over padded loops (``schedule: map``) and de-skewed in the layer core
(memctl.output_pads) is read back as partial sums within the de-skew: the psum walk reads position q when the step
at q issues, the write walk writes it S beats later (S = sum_d span_d x the beats of a row position of d,
memctl.psum_read_skew). The array's read-after-write wait counts it (dataflow/control.py ``psum_raw_hw``: a distance
of steps x tiles - S steps), so the commands the memory system refused (``read back as partial sums N steps later,
within the de-skewed write's S beats``: 421 single specs and 124 fused designs of ``dataflow_refusal_search.py
schedule 0 500 125`` at the probe's smallest layer) run, each in Amaranth through the memory system: outputs ==
numpy, RTL cycles == model cycles, DRAM bytes == the model's. Specs drawn by the refusal search's generator
(``schedule_form``); the fast cases are a few of seed 0's and 7's draws, the slow ones draw afresh."""
import math
import random
import sys
from pathlib import Path

import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import layer_jobs, probe_command, psum_read_skew
from archgen.verif.schedule_verify import run_fused_memory, run_layer, run_memory, run_memory_blocks

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import dataflow_refusal_search as rs  # noqa: E402

# drawn by ``schedule_form`` (seed 0, 20 per operation and shape; seed 7 on 1xN / Nx1 / 2x3): the wait binds at
# the probe's smallest layer (steps x tiles - S <= the output latency), the old code refused each
DRAWN = {
    "gemm-3": ("gemm", [3], {"i": "t_i + s0 - 2", "j": "3*t_j + s0", "k": "t_k - s0"}, ["j", "k", "i"]),
    "conv2-2x2": ("conv2", [2, 2], {"k": "t_k + s1 - 1", "p": "2*t_p + s0", "q": "t_q", "c": "t_c - s0",
                                    "r": "2*t_r + s1"}, ["q", "c", "p", "r", "k"]),
    "conv2-2x2x2": ("conv2", [2, 2, 2], {"k": "2*t_k + s0", "p": "t_p - s0 - s1 + s2 - 1", "q": "2*t_q + s2",
                                         "c": "t_c + s0 + s1 + s2 - 3", "r": "2*t_r + s1"}, ["k", "r", "c", "q", "p"]),
    "conv2s-2x3": ("conv2s", [2, 3], {"k": "t_k + s1 - 2", "p": "2*t_p + s0", "c": "t_c + s0 + s1 - 3",
                                      "r": "3*t_r + s1"}, ["c", "p", "r", "k"]),
    "conv2s-1x3": ("conv2s", [1, 3], {"k": "1*t_k + s0", "p": "t_p - s0 - s1", "c": "t_c - s0 - s1",
                                      "r": "3*t_r + s1"}, ["r", "c", "k", "p"]),
    "conv2-3x1": ("conv2", [3, 1], {"k": "t_k - s0 + s1", "p": "3*t_p + s0", "q": "1*t_q + s1", "c": "t_c - s0 - s1",
                                    "r": "t_r"}, ["r", "p", "q", "c", "k"]),
    "shift-3": ("shift", [3], {"i": "t_i - s0", "j": "3*t_j + s0", "k": "t_k - s0"}, ["j", "k", "i"]),
    "conv2-3-two-skews": ("conv2", [2, 2], {"k": "2*t_k + s0", "p": "2*t_p + s1", "q": "t_q + s0 + s1 - 2", "c": "t_c",
                                            "r": "t_r - s0 - s1"}, ["r", "c", "p", "k", "q"]),
}


def _data(name, spill=False):
    op, shape, mp, order = DRAWN[name]
    data = rs.base(op, shape, {"map": mp, "order": order, "schedule": "map"})
    return dict(data, memory={"partial_sums_through_dram": True}) if spill else data


def binding(c, cmd):
    """(steps, tiles per turn P, S, output latency) of the first block of ``cmd`` in which the de-skewed wait binds
    (a later visit exists and steps x P - S <= the latency: the old refusal's condition); None if none does."""
    lat = c.schedule.out_latency
    for j in layer_jobs(cmd):
        bm = cmd.block_mapping(j.block)
        turn, skew, trips = bm.psum_tile_distance(), psum_read_skew(c, dict(bm.bounds)), bm.trips()
        if turn and skew and math.prod(trips[d] for d in bm.reduction_outer_dims) > 1 and bm.steps * turn - skew <= lat:
            return bm.steps, turn, skew, lat
    return None


def _probe_run(name, seed):
    d = load_spec_data(_data(name))
    c = compile_array(d)
    cmd = probe_command(d, c.dataflow)
    return c, cmd, run_layer(c, cmd, seed)


def _ok(runs):
    return all(r.ok for r in runs) and all(r.dram_equal for r in runs)


@pytest.mark.parametrize("name", ["gemm-3", "conv2s-1x3", pytest.param("conv2-2x2", marks=pytest.mark.slow),
                                  pytest.param("conv2-2x2x2", marks=pytest.mark.slow),
                                  pytest.param("conv2s-2x3", marks=pytest.mark.slow),
                                  pytest.param("conv2-3x1", marks=pytest.mark.slow),
                                  pytest.param("shift-3", marks=pytest.mark.slow),
                                  pytest.param("conv2-3-two-skews", marks=pytest.mark.slow)])
def test_the_probe_layer_the_memory_system_refused_runs_exact(name):
    """The probe's smallest layer (one array tile, every other loop 1), which the old code refused: the wait binds
    (its distance steps x P - S is within the output latency) and the layer runs exact, RTL cycles == model."""
    c, cmd, runs = _probe_run(name, 3)
    assert binding(c, cmd) is not None
    assert _ok(runs), [vars(r) for r in runs]


def test_with_the_old_wait_the_probe_layer_runs_wrong(monkeypatch):
    """The check can fail: the layer core keeping the array's old distance (steps x P, the de-skew not counted)."""
    import archgen.rtlgen.layer_top as layer_top
    assert _ok(_probe_run("gemm-3", 3)[2])
    monkeypatch.setattr(layer_top.LayerCore, "_psum_skew", lambda self, m, arr, seq: None)
    assert not any(r.exact for r in _probe_run("gemm-3", 3)[2])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DRAWN))
def test_tiny_bounds_and_random_blocks_run_exact(name):
    """Each drawn spec at random tiny bounds (1 .. 3 per loop, planned), and as a random multi-block command of
    bounds 2 .. 5 with partial sums through DRAM granted (``run_memory_blocks``): exact, RTL == model, bytes equal,
    or refused by a SpecError at those bounds (not wrong)."""
    rng = random.Random(name)
    op = DRAWN[name][0]
    for _ in range(2):
        bounds = {d: rng.randint(1, 3) for d in rs.dims_of(op)}
        assert _ok(run_memory(load_spec_data(_data(name)), bounds, rng.randrange(1000))), (name, bounds)
    big = {d: rng.randint(2, 5) for d in rs.dims_of(op)}
    assert _ok(run_memory_blocks(load_spec_data(_data(name, spill=True)), big, rng.randrange(1000))), (name, big)


def _fresh_draws(seed, count, shapes):
    """The first ``count`` specs of ``schedule_form`` (seed ``seed``) whose probe layer the wait binds on."""
    rng, out = random.Random(seed), []
    for op in rs.OPS:
        for shape in shapes:
            for _ in range(12):
                df = rs.schedule_form(rng, rs.dims_of(op), shape)
                if df is None:
                    break
                try:
                    d = load_spec_data(rs.base(op, shape, df))
                    c = compile_array(d)
                    cmd = probe_command(d, c.dataflow)
                except Exception:         # refused by the spec check or the array: not this test's concern
                    continue
                if binding(c, cmd):
                    out.append((op, shape, df, c, cmd))
                if len(out) == count:
                    return out
    return out


@pytest.mark.slow
def test_fresh_draws_of_the_refusal_search_run_exact():
    """Ten fresh draws of the refusal search's generator (seed 159, every shape of the search plus 1x4) that the
    old code refused at the probe layer: each runs exact through the memory system, RTL == model, bytes equal."""
    draws = _fresh_draws(159, 10, rs.SHAPES + [[1, 4]])
    assert len(draws) == 10
    for i, (op, shape, df, c, cmd) in enumerate(draws):
        assert _ok(run_layer(c, cmd, i)), (op, shape, df)


@pytest.mark.slow
def test_a_fused_design_the_memory_system_refused_runs_exact():
    """The gemm draw fused with a spatial form of the same operation (the refusal search's fused designs): each
    dataflow as a layer, back to back on the one fused layer core, exact with RTL == model and bytes equal."""
    op, shape, mp, order = DRAWN["gemm-3"]
    pair = {"m": {"map": mp, "order": order, "schedule": "map"}, "o": {"spatial": {"j": 0}, "order": ["i", "j", "k"]}}
    design = load_spec_data(dict(rs.base(op, shape, None), dataflows=pair, fuse=list(pair)))
    runs = run_fused_memory(design, {"i": 2, "j": 3, "k": 3}, 5)
    assert all(r.ok for r in runs), [vars(r) for r in runs]
