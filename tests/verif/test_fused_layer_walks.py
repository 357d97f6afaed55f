"""One fused layer core (rtlgen/fused_layer.py, what ``archgen build --memory`` writes) for dataflows that read an
array port differently: each keeps its own walk of the port (address generator, lane steering, lane-map groups and
their offsets) and the layer command's select picks the one that drives the buffer read and the port.

ws + own (``schedule: map``, its W lanes on a lane map over both array axes, ws's W lanes one run) back to back with
the select changing, through the core's DMA and buffers: outputs exact, RTL cycles == model cycles == the single
design's, DRAM bytes == the model's. Random fused pairs whose read shapes differ run the same way (slow)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.mappings.memory_tiling import plan_layer
from archgen.rtlgen.fused_layer import FusedLayerCore, fused_layer_programs
from archgen.rtlgen.layer_top import LayerCore, buffer_copies, read_shape
from archgen.sim.layer_model import simulate_layer
from archgen.verif.fused_program_check import verify_fused_program

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
from test_fused_map_schedule import CASES, CONV_ORDER, _design, _own  # noqa: E402

B1 = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}
B2 = {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 4, "s": 3}
WS_OWN = [("own", B1), ("ws", B2), ("own", B2), ("ws", B1)]


def _differing_ports(design) -> dict:
    """Port -> each dataflow's read shape, for the ports the fused dataflows read differently."""
    progs = fused_layer_programs(compile_fused(design, design.fuse))
    shapes: dict = {}
    for n, p in progs.items():
        for w in p.walks:
            shapes.setdefault(w.port, {})[n] = read_shape(w)
    return {port: s for port, s in shapes.items() if len(set(s.values())) > 1}


def _check(design, layers, results):
    assert [r.dataflow for r in results] == [n for n, _b in layers]
    for r in results:
        assert r.outputs_exact, (r.dataflow, r.detail)
        assert r.rtl_cycles == r.model_cycles, (r.dataflow, r.rtl_cycles, r.model_cycles, r.command)
        assert r.detail["rtl_dram_bytes"] == r.dram_bytes, (r.dataflow, r.detail["rtl_dram_bytes"], r.dram_bytes)


def test_ws_and_own_read_in_their_own_way_on_one_fused_layer_core():
    """Amaranth: ws / own / ws / own on the one core, no rebuild, no reset; own's W lanes follow its lane map
    (three runs through three read copies), ws's one run; each layer takes its single design's cycles."""
    design = _design(CASES["ws+own"])
    assert "in_W" in _differing_ports(design)
    results = verify_fused_program(design, WS_OWN, seed=5, simulator="amaranth")
    _check(design, WS_OWN, results)
    for (name, bounds), r in zip(WS_OWN, results):         # the selection adds no cycle: D's own cycles
        single = compile_array(design, name)
        assert r.model_cycles == simulate_layer(single, plan_layer(single.design, bounds, single.dataflow)).cycles


def test_the_read_copies_are_shared_by_the_dataflows():
    """A port's read copies are the most lane-map groups any dataflow needs there, not their sum (one dataflow
    runs at a time); the single cores' copies for comparison."""
    design = _design(CASES["ws+own"])
    fused = compile_fused(design, design.fuse)
    progs = fused_layer_programs(fused)
    core = FusedLayerCore(fused, progs)
    core._MustUse__silence = core.array._MustUse__silence = True     # built, not elaborated
    own_w = next(w for w in progs["own"].walks if w.port == "in_W")
    assert own_w.groups == 3
    assert buffer_copies(core.prog, core.alt_walks)["W"] == 3
    assert buffer_copies(progs["ws"])["W"] == 1 and buffer_copies(progs["own"])["W"] == 3


@pytest.mark.slow
def test_without_the_selection_a_dataflow_reads_wrong():
    """The check can fail: reading every dataflow's lanes the port's widest walk's way (what one read shape per
    port would do) makes one of ws, own wrong."""
    design = _design(CASES["ws+own"])
    original = LayerCore._selected_read

    def widest_only(m, w, alts, seq, row_c, buf, addr):
        return original(m, w, [next(a for a in alts if a[0] == w)], seq, row_c, buf, addr)
    try:
        LayerCore._selected_read = staticmethod(widest_only)
        results = verify_fused_program(design, WS_OWN[:2], seed=5, simulator="amaranth")
    finally:
        LayerCore._selected_read = staticmethod(original)
    assert not all(r.outputs_exact for r in results), [(r.dataflow, r.detail["mismatches"]) for r in results]


@pytest.mark.verilator
@pytest.mark.slow
def test_ws_and_own_on_the_verilated_fused_layer_core():
    """What ``archgen verify SPEC`` runs for a fused spec through the memory system: the Verilog of the one core,
    ws and own back to back."""
    design = _design(CASES["ws+own"])
    _check(design, WS_OWN, verify_fused_program(design, WS_OWN, seed=5))


def _random_pair(rng):
    """Two conv dataflows on one 2-D array: a spatial pair of loops each, or (30 %) a ``schedule: map`` skewing
    r by the FU coordinates; random loop bounds."""
    shape = rng.choice([(3, 2), (2, 2), (2, 3)])
    flows = {}
    for name in ("a", "b"):
        if rng.random() < 0.3:
            flows[name] = _own(shape, sigma=(rng.choice([0, 1]), rng.choice([0, 1])))
        else:
            x, y = rng.sample(["k", "p", "q", "c", "r", "s"], 2)
            flows[name] = {"spatial": {x: 0, y: 1}, "order": CONV_ORDER}
    bounds = {d: rng.randint(1, 4) for d in CONV_ORDER} | {"n": 1}
    return _design(flows, shape=shape), bounds


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_random_fused_pairs_that_read_a_port_differently(seed):
    """Amaranth: random fused pairs until four whose read shapes differ on a port ran a / b / a on the one core,
    each exact with RTL cycles == model cycles and DRAM bytes == the model's."""
    rng, ran = random.Random(seed), 0
    while ran < 4:
        try:
            design, bounds = _random_pair(rng)
            if not _differing_ports(design):
                continue
            layers = [("a", bounds), ("b", bounds), ("a", bounds)]
            results = verify_fused_program(design, layers, seed=seed, simulator="amaranth")
        except SpecError as e:        # a pair the one core does not take (its write shapes or layouts differ)
            assert "the same way in each" in str(e) or "same buffer layout" in str(e), e
            continue
        _check(design, layers, results)
        ran += 1
