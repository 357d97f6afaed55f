"""cocotb testbench for generated arrays (runs inside the simulator).

The host (array_check.verify_array) writes the DRAM side's beats to an .npz file; this bench plays
them: one driver per input stream, a monitor that takes every output beat, the command, and a count
of cycles from the command handshake to ``done``. The checker compares the beats in order.
"""
from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from archgen.verif.streams import CycleCounter, StreamDriver, StreamMonitor, pack_lanes, unpack_lanes
from archgen.verif.tbutil import clock_and_reset, load_params, write_result


async def _wait_done(dut, counter: CycleCounter, limit: int) -> int:
    for _ in range(limit):
        await FallingEdge(dut.clk)
        await ReadOnly()
        if int(dut.done.value):
            return counter()
    raise AssertionError(f"done never rose within {limit} cycles")


@cocotb.test()
async def run_program(dut):
    params = load_params()
    prog = np.load(params["program"])
    await clock_and_reset(dut, "cmd__valid")
    counter = CycleCounter(dut.clk).start()
    seed = int(params.get("seed", 0))
    idle, stall = float(params.get("idle_prob", 0.0)), float(params.get("stall_prob", 0.0))
    out_port = params["out_port"]
    mon = StreamMonitor(dut, out_port["name"], dut.clk, drive_ready=True, stall_prob=stall, seed=seed + 1,
                        cycle=counter).start()
    senders = {}
    for k, port in enumerate(params["in_ports"]):
        beats = prog[port["name"]]
        words = [pack_lanes(row, port["lane_bits"]) for row in beats.tolist()]
        drv = StreamDriver(dut, port["name"], dut.clk, idle_prob=idle, seed=seed + 10 + k, cycle=counter)
        senders[port["name"]] = cocotb.start_soon(drv.send(words))
    cmd_word = 0
    for field in params["cmd_fields"]:
        cmd_word |= int(params["cmd"][field["name"]]) << field["offset"]
    cmd = StreamDriver(dut, "cmd", dut.clk, cycle=counter)
    accepted = await cmd.send([cmd_word])
    done_at = await _wait_done(dut, counter, int(params.get("max_cycles", 10_000_000)))
    await RisingEdge(dut.clk)
    got = [unpack_lanes(w, out_port["lane_bits"], out_port["lanes"], is_signed=out_port["signed"])
           for w in mon.payloads]
    expected = prog["expected"].tolist()
    mismatches = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    in_cycles = {name: (task.result() if task.done() else None) for name, task in senders.items()}
    write_result({
        "rtl_cycles": done_at - accepted[0],
        "in_cycles": in_cycles,
        "out_cycles": list(mon.cycles),
        "beats_expected": len(expected),
        "beats_got": len(got),
        "mismatches": len(mismatches),
        "first_mismatch": (None if not mismatches else
                           {"beat": mismatches[0], "expected": expected[mismatches[0]], "got": got[mismatches[0]]}),
        "got": got,
    })
    assert len(got) == len(expected), f"expected {len(expected)} output beats, got {len(got)}"
    assert not mismatches, f"{len(mismatches)} output beats differ; first at beat {mismatches[0]}"
