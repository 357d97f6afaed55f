"""A layer top (rtlgen/layer_top.py ``LayerTop``, rtlgen/fused_layer.py ``FusedLayerTop`` / ``FusedLayerProgramTop``:
ports ``go``, ``finished``, ``cycles``, ``rb_addr`` / ``rb_data``) in Amaranth's simulator: no Verilator build, for
small layers in the default test suite. Its result reads like ``run_layer_binary``'s (verif/layer_binary.py)."""
from __future__ import annotations

from amaranth.sim import Simulator

__all__ = ["run_layer_top"]


def run_layer_top(top, dram_words: int, max_cycles: int, counters: dict) -> dict:
    """Raise ``go``, tick until ``finished`` (at most ``max_cycles``; ``error`` says when it did not finish), then
    read the top's ``cycles``, the ``counters`` (name -> signal: byte counters, per-layer cycle counts) and DRAM
    words 0 .. dram_words - 1 through the read-back port."""
    sim = Simulator(top)
    sim.add_clock(1e-8)
    res: dict = {}

    async def bench(ctx):
        ctx.set(top.go, 1)
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(top.finished):
                break
        else:
            res["error"] = f"not finished after {max_cycles} cycles"
        res["cycles"] = ctx.get(top.cycles)
        res["moved"] = {k: ctx.get(v) for k, v in counters.items()}
        words = []
        for a in range(dram_words):
            ctx.set(top.rb_addr, a)
            words.append(ctx.get(top.rb_data))
        res["words"] = words
    sim.add_testbench(bench)
    sim.run()
    return res
