"""The layer top (rtlgen/layer_top.py) in Amaranth's simulator on tiny layers: output tensor == numpy,
cycles == sim/layer_model, for OS, WS and IS with several blocks and ragged edges (fast; the Verilator
regression is tests/verif/test_layer.py)."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import layer_program
from archgen.mappings.memory_tiling import dram_bytes, make_command
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.layer_top import LayerTop
from archgen.sim.layer_model import simulate_layer
from archgen.verif.golden import reference_einsum


def _run(spec, overrides, bounds, tile, order, seed=1):
    d = load_spec(spec, overrides)
    c = compile_array(d)
    cmd = make_command(d, bounds, d.dataflow(), tile, order)
    p = layer_program(c, cmd, spec_size=False)
    mp = map_problem(d, bounds, d.dataflow())
    tensors = random_operands(c.fu_graph, mp, np.random.default_rng(seed))
    top = LayerTop(p, p.dram_image(tensors))
    sim = Simulator(top)
    sim.add_clock(1e-8)
    res = {}

    async def bench(ctx):
        ctx.set(top.go, 1)
        for _ in range(100_000):
            await ctx.tick()
            if ctx.get(top.finished):
                break
        res["cycles"] = ctx.get(top.cycles)
        res["moved"] = {k: ctx.get(v) for k, v in top.moved.items()}
        words = []
        for a in range(p.dram_words):
            ctx.set(top.rb_addr, a)
            words.append(ctx.get(top.rb_data))
        res["words"] = words
    sim.add_testbench(bench)
    sim.run()
    got = p.read_output(res["words"], d.operation.tensor_shape(d.operation.output.name, mp.bound))
    ref = reference_einsum(d.operation, tensors, mp.bound, c.fu_graph.acc_width)
    return got, ref, res["cycles"], simulate_layer(c, cmd), cmd, res["moved"]


@pytest.mark.parametrize("spec, shape, tile, order", [
    ("gemm_os", "2x2", {"i": 1, "j": 1}, ("j", "i")),
    ("gemm_os", "3x2", {"i": 2, "j": 1}, ("j", "i")),
    ("gemm_ws", "2x3", {"j": 1, "k": 4}, ("j", "k")),
    ("gemm_is", "3x2", {"i": 1, "k": 3}, ("k", "i")),
])
def test_layer_top_matches_numpy_and_the_model(spec, shape, tile, order):
    bounds = {"i": 7, "k": 5, "j": 6}
    got, ref, cycles, model, cmd, moved = _run(spec, [f"array.shape={shape}", "memory.dram.width_bytes=8",
                                               "memory.dram.latency=5", "memory.dram.burst_bytes=16",
                                               "memory.dram.outstanding=2"], bounds, tile, order)
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved       # moved: counted on the RTL's data path
