"""cocotb testbench of the SpAtten attention core (runs inside the simulator; host side: spatten_check.py).

Parameters (ARCHGEN_TB_PARAMS, all integers or lists of integers): field widths of the core's stream
payloads (``index_bits``, ``count_bits``, ``dim``, ``bits``, ``acc_bits``, ``shift_bits``) and
``commands``: a list of {``keys``, ``values`` (n x D), ``queries`` (q x D), ``shift``, ``keep_k``,
``pq_enable``, ``threshold``, ``bank``, ``seed``}, at most one per K/V bank. The testbench plays the DRAM
side: it writes every command's K and V into its bank, then offers the commands back to back (each as
soon as the core accepts it) and all their queries in order, and takes every output at once.

With ``dram_row_cycles`` = r > 0 the testbench plays a DRAM of one K or V row per r cycles instead
(any number of commands, banks alternating): the first command's rows are written before it; command
ci's load starts when the previous load has ended and the cycle after command ci - 2 (the same bank) is
done, takes 2 x n_keys x r cycles, and the command is offered from the cycle its load ends
(sim.spatten_model.dram_ready, the same rule).

Results: ``outputs`` (D signed integers per query, in command order), ``need_lsb`` per query,
``token_importance`` (per token, summed over the commands), ``head_score``, ``done_cycles`` (per
command: rising edges from the first command's handshake to the cycle ``done`` is high), ``cycles``
(the last of them), ``cmd_cycles`` (each command's handshake), ``out_cycles`` (each output, same origin).
"""
import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from archgen.verif.streams import StreamDriver, StreamMonitor, pack_lanes, signed, start_clock_and_reset
from archgen.verif.tbutil import load_params, write_result


def _pack(fields):
    """Pack (value, bits) pairs, first pair in the least significant bits (Amaranth StructLayout order)."""
    word, pos = 0, 0
    for value, bits in fields:
        word |= (int(value) & ((1 << bits) - 1)) << pos
        pos += bits
    return word


async def _watch_done(dut, counter, seen: list):
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        if int(dut.done.value):
            seen.append(counter())


async def _send_after_loads(dut, counter, kv, words, commands, kv_beats, row_cycles, done_seen):
    """Commands offered once their K/V loads are over; the loads run beside (see the module docstring)."""
    ready: dict[int, int] = {0: 0}
    cycles: list[int] = []

    async def loader(cmd0):
        for ci in range(1, len(commands)):
            start = ready[ci - 1]
            if ci >= 2:
                while len(done_seen) < ci - 1:
                    await FallingEdge(dut.clk)
                start = max(start, done_seen[ci - 2] - cmd0 + 1)
            while counter() - cmd0 < start:
                await FallingEdge(dut.clk)
            beats = kv_beats(commands[ci])
            ready[ci] = start + len(beats) * row_cycles    # the beats below take len(beats) cycles
            await kv.send(beats)

    for ci, word in enumerate(words):
        while True:
            await FallingEdge(dut.clk)
            if ci and (ci not in ready or counter() - cycles[0] < ready[ci]):
                dut.cmd__valid.value = 0
                continue
            dut.cmd__valid.value = 1
            dut.cmd__payload.value = word
            await ReadOnly()
            if int(dut.cmd__ready.value):
                cycles.append(counter())
                if ci == 0:
                    cocotb.start_soon(loader(cycles[0]))
                break
    await FallingEdge(dut.clk)
    dut.cmd__valid.value = 0
    return cycles


@cocotb.test()
async def spatten_core_command(dut):
    p = load_params()
    b, dim, acc_bits = p["bits"], p["dim"], p["acc_bits"]
    ib, cb, sb = p["index_bits"], p["count_bits"], p["shift_bits"]
    commands = p["commands"]

    counter = await start_clock_and_reset(dut, 2)

    kv = StreamDriver(dut, "kv", dut.clk, cycle=counter)
    row_cycles = p.get("dram_row_cycles", 0)

    def kv_beats(c):
        return [_pack([(i, ib), (c["bank"], 1), (is_value, 1), (pack_lanes(row, b), dim * b)])
                for is_value, rows in ((0, c["keys"]), (1, c["values"])) for i, row in enumerate(rows)]

    await kv.send([w for c in (commands[:1] if row_cycles else commands) for w in kv_beats(c)])

    done_seen: list[int] = []
    cocotb.start_soon(_watch_done(dut, counter, done_seen))
    out_mon = StreamMonitor(dut, "out", dut.clk, drive_ready=True, cycle=counter).start()
    qdrv = StreamDriver(dut, "query", dut.clk, cycle=counter)
    cmd = StreamDriver(dut, "cmd", dut.clk, cycle=counter)
    words = [_pack([(len(c["keys"]), cb), (len(c["queries"]), 16), (c["keep_k"], cb), (c["shift"], sb),
                    (c["pq_enable"], 1), (c["threshold"], 16), (c["bank"], 1), (c["seed"], 16)]) for c in commands]
    queries = [q for c in commands for q in c["queries"]]
    cocotb.start_soon(qdrv.send([pack_lanes(q, b) for q in queries]))
    if not row_cycles:
        cmd_cycles = await cmd.send(words)
    else:
        cmd_cycles = await _send_after_loads(dut, counter, kv, words, commands, kv_beats, row_cycles, done_seen)
    cmd_cycle = cmd_cycles[0]
    await out_mon.wait_for(len(queries), max_cycles=p.get("max_cycles", 200000))
    for _ in range(4):
        if len(done_seen) >= len(commands):
            break
        await RisingEdge(dut.clk)

    # Importance accumulators: read every row (one cycle read latency), then the head score.
    tok_imp = []
    for grp in range(p["groups"]):
        await FallingEdge(dut.clk)
        dut.imp_addr.value = grp
        await RisingEdge(dut.clk)
        await ReadOnly()
        word = int(dut.tok_imp.value)
        tok_imp += [(word >> (32 * i)) & 0xFFFFFFFF for i in range(p["lanes"])]
    head_score = int(dut.head_score.value)

    outputs, need = [], []
    for w in out_mon.payloads:
        outputs.append([signed((w >> (d * acc_bits)) & ((1 << acc_bits) - 1), acc_bits) for d in range(dim)])
        need.append((w >> (dim * acc_bits)) & 1)
    write_result({"outputs": outputs, "need_lsb": need, "token_importance": tok_imp, "head_score": head_score,
                  "done_cycles": [c - cmd_cycle for c in done_seen],
                  "cycles": (done_seen[-1] - cmd_cycle) if done_seen else None,
                  "cmd_cycles": [c - cmd_cycle for c in cmd_cycles],
                  "out_cycles": [c - cmd_cycle for c in out_mon.cycles]})
    assert len(done_seen) == len(commands), f"done rose {len(done_seen)} times for {len(commands)} commands"
