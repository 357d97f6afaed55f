"""cocotb testbench for the runner's self-test: a 2-stage pipelined adder of two signed lanes.

Parameters (ARCHGEN_TB_PARAMS): ``width`` (lane bits), ``count`` (beats), ``seed``, ``idle_prob``,
``stall_prob``. Results: ``sums`` (what the design produced), ``in_cycles``/``out_cycles`` (beat cycles),
``mismatches``.
"""
import random

import cocotb

from archgen.verif.streams import (StreamDriver, StreamMonitor, check_equal, start_clock_and_reset,
                                   pack_lanes, signed)
from archgen.verif.tbutil import load_params, write_result


@cocotb.test()
async def pipelined_adder(dut):
    p = load_params()
    width, count = int(p.get("width", 8)), int(p.get("count", 50))
    rng = random.Random(int(p.get("seed", 0)))
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    pairs = [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(count)]

    counter = await start_clock_and_reset(dut, 2)
    drv = StreamDriver(dut, "i", dut.clk, idle_prob=float(p.get("idle_prob", 0.0)),
                       seed=int(p.get("seed", 0)), cycle=counter)
    mon = StreamMonitor(dut, "o", dut.clk, drive_ready=True, stall_prob=float(p.get("stall_prob", 0.0)),
                        seed=int(p.get("seed", 0)) + 1, cycle=counter).start()
    in_cycles = await drv.send(pack_lanes(pair, width) for pair in pairs)
    await mon.wait_for(count, max_cycles=10 * count + 20)
    got = [signed(w, width + 1) for w in mon.payloads]
    expected = [a + b for a, b in pairs]
    write_result({"sums": got, "in_cycles": in_cycles, "out_cycles": mon.cycles,
                  "mismatches": sum(e != g for e, g in zip(expected, got)) + abs(len(expected) - len(got))})
    check_equal(expected, got, what="sum")
