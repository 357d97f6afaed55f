"""A ``schedule: map`` dataflow in a fused design (dataflow/fusion.py, rtlgen/fused_array.py): the selected
dataflow's own schedule runs on the shared array (its pad flags mask products only while it is selected, its
FIFOs take their run-time depth from its command, its commands count its padded trips)."""
from __future__ import annotations

import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.mappings.tiling import map_problem, row_pads
from archgen.sim.array_model import simulate_array

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV_ORDER = ["n", "k", "p", "q", "c", "r", "s"]
CONV_BOUNDS = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}


def _row(loop, sigma, shape):
    """``t_loop - sigma.s`` (a negative sigma_a starts at the constant that lets iteration 0 run everywhere)."""
    terms = [f"{'-' if v > 0 else '+'} {abs(v)}*s{a}" for a, v in enumerate(sigma) if v and shape[a] > 1]
    early = sum(-v * (shape[a] - 1) for a, v in enumerate(sigma) if v < 0)
    return " ".join([f"t_{loop}"] + terms + ([f"- {early}"] if early else []))


def _own(shape, sigma=(1, 1), schedule="map", skew_s=None):
    """The convolution with k on axis 0, p on axis 1 and r (and optionally s) skewed by the FU coordinates."""
    mp = {"n": "t_n", "k": f"{shape[0]}*t_k + s0", "p": f"{shape[1]}*t_p + s1", "q": "t_q", "c": "t_c",
          "r": _row("r", sigma, shape), "s": "t_s" if skew_s is None else _row("s", skew_s, shape)}
    return {"map": mp, "order": CONV_ORDER, "inner": ["c", "r", "s"], "schedule": schedule}


def _design(flows: dict, shape=(3, 2), clock=None, op=CONV_OP):
    data = {"version": 1, "name": "fm", "operation": op, "array": {"shape": list(shape)},
            "types": {"I": "int8", "W": "int8", "O": "int32"}, "dataflows": flows, "fuse": list(flows)}
    return load_spec_data(data | ({"clock_mhz": clock} if clock else {}))


WS = {"spatial": {"k": 0, "p": 1}, "order": CONV_ORDER}
CASES = {
    "ws+own": {"ws": WS, "own": _own((3, 2))},
    "own+compressed": {"own": _own((3, 2)), "comp": _own((3, 2), schedule="compressed")},
    "two-own": {"own": _own((3, 2)), "own2": _own((3, 2), sigma=(1, 0))},
    "own-lead+ws": {"lead": _own((3, 2), sigma=(-1, 1)), "ws": WS},
    "several-skews+ws": {"ws": WS, "two": _own((3, 2), sigma=(1, 0), skew_s=(0, 1))},
    # the same lanes, another tile order: the memory system's one fused layer core reads each port alike for both
    "own+own-order": {"own": _own((3, 2)), "owno": _own((3, 2)) | {"order": ["n", "p", "k", "q", "c", "r", "s"]}},
}


SKEWS = ("commit_skew", "swap_skew", "out_latency")


def _single(design, name, bounds):
    single = compile_array(design, name)
    return single, simulate_array(single, map_problem(design, bounds, single.dataflow)).total_cycles


def _check_against_single(fused, design, r, bounds):
    """The fused dataflow takes its single design's cycles, or more by at most the pipeline slots the fused LP
    added in front of its commit or output (the muxes' delay made it register a path: the only way fusion can
    change a dataflow's cycle count, dataflow/fusion.py)."""
    single, cycles = _single(design, r.dataflow, bounds)
    view = fused.view(r.dataflow)
    added = max(getattr(view.schedule, f) - getattr(single.schedule, f) for f in SKEWS)
    assert 0 <= r.model_cycles - cycles <= max(added, 0), (r.model_cycles, cycles, view.schedule, single.schedule)
    return r.model_cycles - cycles


@pytest.mark.parametrize("case", list(CASES))
def test_each_dataflow_of_a_fused_map_schedule_design_is_exact(case):
    """Every dataflow of the fused design exact with RTL cycles == model cycles, and each takes its single
    design's cycles or the fused LP's added pipeline slots more."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    design = _design(CASES[case])
    fused = compile_fused(design, design.fuse)
    assert any(row_pads(v.design, v.dataflow) for v in fused.views)
    runs = verify_fused_amaranth(design, design.fuse, CONV_BOUNDS, seed=5)
    assert [r.dataflow for r in runs] == list(design.fuse)
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, r
        _check_against_single(fused, design, r, CONV_BOUNDS)


def test_a_fused_view_is_the_map_schedule_as_built_alone():
    """The view of a ``schedule: map`` dataflow keeps its padded rows: the same pads, halo, FIFO loops, command
    fields (its padded loops' trips among them) and steps as its single design; the fused command carries them."""
    design = _design(CASES["ws+own"])
    fused = compile_fused(design, design.fuse)
    view, single = fused.view("own"), compile_array(design, "own")
    assert row_pads(view.design, view.dataflow) == row_pads(single.design, single.dataflow) != ()
    assert (view.fu_graph.halo, view.fu_graph.fifo_depth_loops) == (single.fu_graph.halo, single.fu_graph.fifo_depth_loops)
    assert view.command == single.command
    assert {f.loop for f in single.command.fields if f.loop} <= {f.loop for f in fused.command.fields if f.loop}
    mapping = map_problem(design, CONV_BOUNDS, view.dataflow)
    assert mapping.steps == map_problem(design, CONV_BOUNDS, single.dataflow).steps
    assert mapping.steps > map_problem(design, CONV_BOUNDS, compile_array(_design(CASES["own+compressed"]),
                                                                         "comp").dataflow).steps


def test_a_fused_key_names_the_schedule():
    """Dataflow.schedule is out of repr: the fused key must still tell the map's own schedule from the compressed
    build (the Verilator cache is keyed by it)."""
    own = _design({"ws": WS, "m": _own((3, 2))})
    comp = _design({"ws": WS, "m": _own((3, 2), schedule="compressed")})
    assert compile_fused(own, own.fuse).key != compile_fused(comp, comp.fuse).key


W_RS = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r+s]"     # no input indexed by r alone: padded products are real


@pytest.mark.parametrize("case", ["ws+own", "two-own", "own-lead+ws"])
def test_the_selected_dataflows_pad_flags_mask_its_products(case, monkeypatch):
    """With W indexed by r + s an FU outside its own positions multiplies real elements: exact with the selected
    dataflow's pad flags, wrong for every ``schedule: map`` dataflow when the fused multipliers ignore them (the
    check can fail), while a dataflow without pads stays exact either way."""
    from amaranth import Const

    import archgen.rtlgen.fused_array as fa
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    design = _design(CASES[case], op=W_RS)
    runs = verify_fused_amaranth(design, design.fuse, CONV_BOUNDS, seed=5)
    assert all(r.outputs_exact and r.rtl_cycles == r.model_cycles for r in runs), runs
    masks = fa.FusedArrayTop._masks
    monkeypatch.setattr(fa.FusedArrayTop, "_masks", lambda self, v, ks: [
        (k, "none", Const(0)) if self.pads.get(k) else o for k, o in enumerate(masks(self, v, ks))])
    fused = compile_fused(design, design.fuse)
    padded = {n for n, v in zip(fused.names, fused.views) if row_pads(v.design, v.dataflow)}
    for r in verify_fused_amaranth(design, design.fuse, CONV_BOUNDS, seed=5):
        assert r.outputs_exact == (r.dataflow not in padded), r


def _random_case(rng):
    """A random 2-D array, one or two skewed loops of c, r, s (sigma in -1..2 per axis), fused with WS or with a
    second random map; random bounds."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(2, 4)))

    def own():
        sig = {}
        while not sig:
            for loop in rng.choice(["c", "r", "s"], size=int(rng.integers(1, 3)), replace=False):
                sigma = tuple(int(x) for x in rng.integers(-1, 3, size=2))
                if any(sigma):
                    sig[str(loop)] = sigma
        mp = {"n": "t_n", "k": f"{shape[0]}*t_k + s0", "p": f"{shape[1]}*t_p + s1", "q": "t_q"}
        mp |= {d: _row(d, sig[d], shape) if d in sig else f"t_{d}" for d in "crs"}
        return {"map": mp, "order": CONV_ORDER, "inner": ["c", "r", "s"], "schedule": "map"}
    flows = {"own": own(), "other": WS if rng.random() < 0.5 else own()}
    bounds = {"n": 1, "k": int(rng.integers(1, 5)), "p": int(rng.integers(2, 5)), "q": int(rng.integers(1, 3)),
              "c": int(rng.integers(1, 3)), "r": int(rng.integers(2, 4)), "s": int(rng.integers(1, 3))}
    return _design(flows, shape, clock=int(rng.choice([500, 1000]))), bounds


@pytest.mark.parametrize("n", [pytest.param(4, id="4"), pytest.param(40, id="40", marks=pytest.mark.slow)])
def test_random_fused_map_schedules_in_amaranth(n):
    """Random fused designs with a ``schedule: map`` dataflow: every dataflow exact, RTL == model, and its
    single design's cycles or the fused LP's added slots more."""
    import numpy as np

    from archgen.arch.errors import SpecError
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    rng, done = np.random.default_rng(129), 0
    while done < n:
        design, bounds = _random_case(rng)
        try:
            fused = compile_fused(design, design.fuse)
        except SpecError:          # a random map that misses iterations or needs a refused form
            continue
        for r in verify_fused_amaranth(design, design.fuse, bounds, seed=done):
            assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (design.dataflows, r)
            _check_against_single(fused, design, r, bounds)
        done += 1
