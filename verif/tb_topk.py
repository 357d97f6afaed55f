"""cocotb testbench for rtlgen.topk.TopK (runs inside the simulator; stimulus and recording only).

Parameters (ARCHGEN_TB_PARAMS): ``requests_file`` (JSON list of {n, k, seed, scores, keep}),
``parallelism``, ``width``, ``count_bits``, ``index_bits``, ``idle_prob`` / ``stall_prob`` (input bubbles
and output back-pressure; 0 for cycle-exact runs), ``seed``, ``max_cycles``.
All commands and all input beats are offered back to back, so consecutive requests run back to back.
Result (ARCHGEN_TB_RESULT): per request the command and done cycles, cycles = done - command, the
rounds counter, the threshold outputs (``sel_kth``, ``sel_eq``) at ``done``, and the kept (index, value)
pairs in output order (none for an engine built without its replay); the host checks them.
"""
import json
import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from archgen.verif.streams import StreamDriver, StreamMonitor, pack_lanes, unpack_lanes, start_clock_and_reset
from archgen.verif.tbutil import load_params, write_result


def _input_beats(req, p, width, rng):
    """Beats of one request; lanes past n carry random values with keep=1 (the engine must mask them)."""
    n = req["n"]
    rows = -(-n // p)
    beats = []
    for r in range(rows):
        vals, keep = [], 0
        for lane in range(p):
            i = r * p + lane
            if i < n:
                vals.append(req["scores"][i])
                keep |= int(req["keep"][i]) << lane
            else:
                vals.append(rng.randint(-(1 << (width - 1)), (1 << (width - 1)) - 1))
                keep |= 1 << lane
        beats.append(pack_lanes(vals, width) | (keep << (p * width)))
    return beats


async def _record_done(dut, counter, sink):
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        if int(dut.done.value):
            sink.append((counter(), int(dut.rounds.value), dut.sel_kth.value.to_signed(), int(dut.sel_eq.value)))


@cocotb.test()
async def topk_requests(dut):
    prm = load_params()
    with open(prm["requests_file"]) as f:
        requests = json.load(f)
    p, width = int(prm["parallelism"]), int(prm["width"])
    cb, ib = int(prm["count_bits"]), int(prm["index_bits"])
    rng = random.Random(int(prm.get("seed", 0)))

    dut.cmd__valid.value = 0
    dut.inp__valid.value = 0
    dut.out__ready.value = 0
    counter = await start_clock_and_reset(dut, 3)

    cmd = StreamDriver(dut, "cmd", dut.clk, cycle=counter)
    inp = StreamDriver(dut, "inp", dut.clk, idle_prob=float(prm.get("idle_prob", 0.0)),
                       seed=rng.randrange(1 << 30), cycle=counter)
    out = StreamMonitor(dut, "out", dut.clk, drive_ready=True, stall_prob=float(prm.get("stall_prob", 0.0)),
                        seed=rng.randrange(1 << 30), cycle=counter).start()
    dones = []
    cocotb.start_soon(_record_done(dut, counter, dones))

    words = [r["n"] | (r["k"] << cb) | ((r["seed"] & 0xFFFF) << (2 * cb)) for r in requests]
    beats = [b for r in requests for b in _input_beats(r, p, width, rng)]
    cmd_task = cocotb.start_soon(cmd.send(words))
    cocotb.start_soon(inp.send(beats))

    limit = int(prm.get("max_cycles", 10_000_000))
    while len(dones) < len(requests):
        if counter() > limit:
            raise AssertionError(f"only {len(dones)} of {len(requests)} requests done after {limit} cycles")
        await RisingEdge(dut.clk)
    cmd_cycles = await cmd_task

    results, beat = [], 0
    for j, (done_cycle, rounds, kth, keep_equal) in enumerate(dones):
        kept = []
        while beat < len(out.cycles) and out.cycles[beat] < done_cycle:
            word = out.payloads[beat]
            vals = unpack_lanes(word, width, p)
            idx = unpack_lanes(word >> (p * width), ib, p, is_signed=False)
            keep = word >> (p * (width + ib))
            kept.append([[idx[i], vals[i]] for i in range(p) if keep >> i & 1])
            beat += 1
        results.append({"cmd_cycle": cmd_cycles[j], "done_cycle": done_cycle,
                        "cycles": done_cycle - cmd_cycles[j], "rounds": rounds, "beats": kept,
                        "kth": kth, "keep_equal": keep_equal})
    write_result({"requests": results, "stray_beats": len(out.cycles) - beat})
