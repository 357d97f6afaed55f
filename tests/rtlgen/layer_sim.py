"""Amaranth-sim bench shared by the layer tops' tests (tests/rtlgen/test_layer_top.py, test_stt_layer.py)."""
from amaranth.sim import Simulator


def run_top(top, dram_words: int, max_cycles: int) -> dict:
    """Raise `go`, tick until `finished` (at most max_cycles), then read the top's cycle counter, its moved
    byte counters and every DRAM word through the read-back port."""
    sim = Simulator(top)
    sim.add_clock(1e-8)
    res = {}

    async def bench(ctx):
        ctx.set(top.go, 1)
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(top.finished):
                break
        res["cycles"] = ctx.get(top.cycles)
        res["moved"] = {k: ctx.get(v) for k, v in top.moved.items()}
        words = []
        for a in range(dram_words):
            ctx.set(top.rb_addr, a)
            words.append(ctx.get(top.rb_data))
        res["words"] = words
    sim.add_testbench(bench)
    sim.run()
    return res
