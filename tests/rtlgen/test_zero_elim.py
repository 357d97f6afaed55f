"""The zero eliminator, exhaustively over keep patterns for small lane counts (amaranth.sim)."""
import itertools

import pytest
from amaranth import unsigned
from amaranth.back import verilog
from amaranth.sim import Simulator

from archgen.rtlgen.zero_elim import ZeroEliminator, compact_reference, shifter_stages


def _run_all_patterns(lanes: int, width: int = 6):
    dut = ZeroEliminator(lanes, unsigned(width))
    failures = []

    async def bench(ctx):
        for pattern in itertools.product([0, 1], repeat=lanes):
            # distinct lane values so that a lane landing in the wrong place is always visible
            values = [(7 * i + 3) % (1 << width) for i in range(lanes)]
            for i, v in enumerate(values):
                ctx.set(dut.i_data[i], v)
            ctx.set(dut.i_keep, sum(b << i for i, b in enumerate(pattern)))
            count = ctx.get(dut.o_count)
            keep = ctx.get(dut.o_keep)
            got = [ctx.get(dut.o_data[i]) for i in range(count)]
            expected, n = compact_reference(values, pattern)
            if (got, count, keep) != (expected, n, (1 << n) - 1):
                failures.append((pattern, got, expected, count, keep))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return failures


@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 5, 7, 8, 10])
def test_exhaustive_keep_patterns(lanes):
    assert _run_all_patterns(lanes) == []


def test_stage_count_is_log2():
    assert [shifter_stages(n) for n in (1, 2, 4, 8, 16, 64)] == [0, 1, 2, 3, 4, 6]


def test_verilog_is_deterministic():
    a = verilog.convert(ZeroEliminator(8, unsigned(5)), name="ze", emit_src=False)
    b = verilog.convert(ZeroEliminator(8, unsigned(5)), name="ze", emit_src=False)
    assert a == b


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_bad_lane_count():
    with pytest.raises(ValueError, match="positive integer, not 0"):
        ZeroEliminator(0, unsigned(4))
