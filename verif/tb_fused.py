"""cocotb testbench for fused arrays: several problems, each with its own dataflow, back to back in one
simulation (runs inside the simulator).

The host (fused_check.verify_fused_sequence) writes one .npz program per problem; this bench plays them in
order on the same design: the input streams of problem n, its command (with the ``dataflow`` field set),
then waits for ``done`` and a few idle cycles before the next. One monitor takes every output beat; each
problem's beats are the ones recorded between its command and its ``done``. Cycles are counted from each
command's handshake to its ``done``, as in tb_array.
"""
from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from archgen.verif.streams import CycleCounter, StreamDriver, StreamMonitor, pack_lanes, unpack_lanes
from archgen.verif.tbutil import clock_and_reset, load_params, write_result

GAP_CYCLES = 4          # idle cycles between one problem's done and the next command


@cocotb.test()
async def run_programs(dut):
    params = load_params()
    await clock_and_reset(dut, "cmd__valid")
    counter = CycleCounter(dut.clk).start()
    seed = int(params.get("seed", 0))
    out_name = params["out_name"]
    mon = StreamMonitor(dut, out_name, dut.clk, drive_ready=True, cycle=counter).start()
    drivers = {}
    results = []
    for n, run in enumerate(params["runs"]):
        prog = np.load(run["program"])
        start_beat = len(mon.payloads)
        senders = []
        for k, port in enumerate(run["in_ports"]):
            words = [pack_lanes(row, port["lane_bits"]) for row in prog[port["name"]].tolist()]
            if port["name"] not in drivers:
                drivers[port["name"]] = StreamDriver(dut, port["name"], dut.clk, seed=seed + 10 + k, cycle=counter)
            senders.append(cocotb.start_soon(drivers[port["name"]].send(words)))
        word = 0
        for field in params["cmd_fields"]:
            word |= int(run["cmd"][field["name"]]) << field["offset"]
        cmd = drivers.setdefault("cmd", StreamDriver(dut, "cmd", dut.clk, cycle=counter))
        accepted = await cmd.send([word])
        done_at = None
        for _ in range(int(run["max_cycles"])):
            await FallingEdge(dut.clk)
            await ReadOnly()
            if int(dut.done.value):
                done_at = counter()
                break
        await RisingEdge(dut.clk)
        for task in senders:
            await task
        out = run["out_port"]
        got = [unpack_lanes(w, out["lane_bits"], out["lanes"], is_signed=out["signed"])
               for w in mon.payloads[start_beat:]]
        expected = prog["expected"].tolist()
        results.append({"rtl_cycles": None if done_at is None else done_at - accepted[0], "got": got,
                        "beats_expected": len(expected), "beats_got": len(got),
                        "mismatches": sum(1 for e, g in zip(expected, got) if e != g) + abs(len(got) - len(expected))})
        await ClockCycles(dut.clk, GAP_CYCLES)
    write_result({"runs": results})
    assert all(r["mismatches"] == 0 and r["rtl_cycles"] is not None for r in results), \
        [(r["mismatches"], r["rtl_cycles"]) for r in results]
