"""cocotb testbench for a whole layer (runs inside the simulator).

The layer runs without Python in the loop: the top holds the DRAM (preloaded at elaboration), the DMA,
the buffers and the controller. The bench starts the clock, raises ``go``, waits for ``finished`` (one
trigger, not a poll per cycle), then reads the DRAM back word by word through ``rb_addr``/``rb_data``.
"""
from __future__ import annotations

import time

import cocotb
from cocotb.triggers import First, RisingEdge, Timer

from archgen.verif.tbutil import clock_and_reset, load_params, write_result


@cocotb.test()
async def run_layer(dut):
    params = load_params()
    await clock_and_reset(dut, "go")
    dut.go.value = 1
    limit = int(params.get("max_cycles", 10_000_000))
    t0 = time.perf_counter()
    if not int(dut.finished.value):
        fired = await First(RisingEdge(dut.finished), Timer(10 * limit, unit="ns"))
        if not int(dut.finished.value):
            write_result({"error": f"finished never rose within {limit} cycles", "rtl_cycles": int(dut.cycles.value)})
            raise AssertionError(f"finished never rose within {limit} cycles ({fired})")
    wall = time.perf_counter() - t0
    cycles = int(dut.cycles.value)
    words = []
    lo, hi = params.get("read_words", [0, 0])
    for a in range(lo, hi):
        dut.rb_addr.value = a
        await Timer(1, unit="ns")
        words.append(int(dut.rb_data.value))
    moved = {n: int(getattr(dut, n).value) for n in params.get("moved", {}).values()}
    write_result({"rtl_cycles": cycles, "wall_s": wall, "words": words, "read_from": lo, "moved": moved})
