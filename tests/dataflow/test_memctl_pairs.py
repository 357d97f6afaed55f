"""Hardware halves of dataflow/memctl.py against their model halves, cycle for cycle (Amaranth simulator)."""
import random

from amaranth import Elaboratable, Module, Signal, hdl
from amaranth.sim import Simulator

from archgen.arch.spec import DramPort
from archgen.dataflow.memctl import transfer_timer_hw


class TimerHarness(Elaboratable):
    def __init__(self, port):
        self.port = port
        self.start = Signal()
        self.nbytes = Signal(32)
        self.done = Signal()
        self.issue = Signal()

    def elaborate(self, platform):
        m = Module()
        t = transfer_timer_hw(m, hdl, self.port, self.start, self.nbytes)
        m.d.comb += [self.done.eq(t.done), self.issue.eq(t.issue)]
        return m


def _run_timer(port, sizes, gaps):
    """Transfers back to back (after a gap each); returns (start, done) cycles and issue cycles."""
    dut = TimerHarness(port)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out, issues = [], []

    async def bench(ctx):
        cycle = 0
        for size, gap in zip(sizes, gaps):
            for _ in range(gap):
                await ctx.tick()
                cycle += 1
            ctx.set(dut.start, 1)
            ctx.set(dut.nbytes, size)
            start = cycle
            while True:
                if ctx.get(dut.issue):
                    issues.append(cycle)
                done = ctx.get(dut.done)
                await ctx.tick()
                ctx.set(dut.start, 0)
                cycle += 1
                if done:
                    break
            out.append((start, cycle))
    sim.add_testbench(bench)
    sim.run()
    return out, issues


def test_transfer_timer_hw_equals_the_closed_form():
    rng = random.Random(11)
    for _ in range(40):
        port = DramPort(rng.choice([1, 4, 8, 32]), rng.choice([0, 1, 3, 20]), rng.choice([16, 64, 100]),
                        rng.randint(1, 6))
        sizes = [rng.randint(1, 700) for _ in range(3)]
        gaps = [rng.randint(0, 3) for _ in sizes]
        spans, issues = _run_timer(port, sizes, gaps)
        for (s, e), n in zip(spans, sizes):
            assert e - s == port.transfer_cycles(n), (port, n, s, e)
        # the issue cycles follow the closed form's schedule too
        c = -(-port.burst_bytes // port.width_bytes)
        period = max(port.outstanding * c, port.latency + c)
        want = []
        for (s, _e), n in zip(spans, sizes):
            nb = -(-n // port.burst_bytes)
            want += [s + (i // port.outstanding) * period + (i % port.outstanding) * c for i in range(nb)]
        assert issues == want


class SequencerHarness(Elaboratable):
    """The sequencer plus stand-in L/W/C units that end ``dur`` cycles after their start (from the bench)."""

    def __init__(self, depth):
        self.depth = depth
        self.run = Signal()
        self.n = Signal(20)
        self.l_done, self.w_done, self.c_done = Signal(), Signal(), Signal()
        self.after = Signal()         # the next load job loads partial sums (set by the bench per l_block)

    def elaborate(self, platform):
        from archgen.dataflow.memctl import layer_sequencer_hw
        m = Module()
        self.seq = layer_sequencer_hw(m, hdl, self.depth, self.n, self.l_done, self.w_done, self.c_done, self.run,
                                      l_after_w=self.after)
        return m


def _run_sequencer(depth, loads, writes, computes, after=None):
    after = after or [False] * len(computes)
    dut = SequencerHarness(depth)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    trace = []

    async def bench(ctx):
        ctx.set(dut.n, len(computes))
        ctx.set(dut.run, 1)
        cycle = 0
        ends = {}                     # unit -> (block, cycle of its done pulse)
        while True:
            seq = dut.seq
            lb = ctx.get(seq.l_block)
            ctx.set(dut.after, int(lb < len(after) and after[lb]))
            for unit in "LWC":
                if unit in ends and ends[unit][1] == cycle:
                    ctx.set({"L": dut.l_done, "W": dut.w_done, "C": dut.c_done}[unit], 1)
            if ctx.get(seq.finished):
                break
            for unit, start, blk, durs in (("L", seq.start_l, seq.l_block, loads), ("W", seq.start_w, seq.w_block, writes),
                                           ("C", seq.start_c, seq.c_block, computes)):
                if ctx.get(start):
                    b = ctx.get(blk)
                    d = max(1, durs[b]) if unit != "C" else durs[b] + 1
                    trace.append((unit, b, cycle, cycle + d))
                    ends[unit] = (b, cycle + d - 1)
                    if d == 1:
                        ctx.set({"L": dut.l_done, "W": dut.w_done, "C": dut.c_done}[unit], 1)
            await ctx.tick()
            cycle += 1
            for s in (dut.l_done, dut.w_done, dut.c_done):
                ctx.set(s, 0)
            assert cycle < 100000
    sim.add_testbench(bench)
    sim.run()
    return sorted(trace)


def test_layer_sequencer_hw_equals_the_model_halves():
    import simpy

    from archgen.dataflow.memctl import compute_process, dma_order, dma_process
    rng = random.Random(5)
    for _ in range(30):
        n, depth = rng.randint(1, 7), rng.choice([1, 2])
        loads = [rng.choice([0, rng.randint(1, 12)]) for _ in range(n)]
        writes = [rng.choice([0, rng.randint(1, 12)]) for _ in range(n)]
        computes = [rng.randint(1, 15) for _ in range(n)]
        # loads of partial sums (a later visit of an output block) go after W(b - depth)
        after = [rng.random() < 0.4 for _ in range(n)]
        env = simpy.Environment()
        loaded, computed, written = ([env.event() for _ in range(n)] for _ in range(3))
        model = []
        env.process(dma_process(env, dma_order(n, depth, after), depth, loads, writes, loaded, computed, written,
                                model))
        env.process(compute_process(env, depth, computes, loaded, computed, written, [0] * n, model))
        env.run()
        assert _run_sequencer(depth, loads, writes, computes, after) == sorted(model), \
            (depth, loads, writes, computes, after)
        if any(after[depth:]):        # the order changed: W(b - depth) ends before L(b) starts
            b = next(b for b in range(depth, n) if after[b])
            ends = {(u, k): (s, e) for u, k, s, e in model}
            assert ends[("W", b - depth)][1] <= ends[("L", b)][0]
