"""cocotb testbench of the SpAtten attention core (runs inside the simulator; host side: spatten_check.py).

Parameters (ARCHGEN_TB_PARAMS, all integers or lists of integers): field widths of the core's stream
payloads (``index_bits``, ``count_bits``, ``dim``, ``bits``, ``acc_bits``, ``shift_bits``), the data
(``keys``, ``values``: n x D; ``queries``: q x D), and the command (``shift``, ``keep_k``, ``pq_enable``,
``threshold``, ``bank``, ``seed``). The testbench plays the DRAM side: it writes K and V into the buffer,
issues one command, offers the queries back to back and takes every output at once.

Results: ``outputs`` (q x D signed integers), ``need_lsb`` per query, ``token_importance`` (per token),
``head_score``, ``cycles`` (rising edges from the
command handshake to the cycle ``done`` is high), ``out_cycles`` (cycle of each output, same origin).
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


@cocotb.test()
async def spatten_core_command(dut):
    p = load_params()
    b, dim, acc_bits = p["bits"], p["dim"], p["acc_bits"]
    ib, cb, sb = p["index_bits"], p["count_bits"], p["shift_bits"]
    keys, values, queries = p["keys"], p["values"], p["queries"]

    counter = await start_clock_and_reset(dut, 2)

    kv = StreamDriver(dut, "kv", dut.clk, cycle=counter)
    beats = []
    for is_value, rows in ((0, keys), (1, values)):
        for i, row in enumerate(rows):
            beats.append(_pack([(i, ib), (p["bank"], 1), (is_value, 1), (pack_lanes(row, b), dim * b)]))
    await kv.send(beats)

    done_seen: list[int] = []
    cocotb.start_soon(_watch_done(dut, counter, done_seen))
    out_mon = StreamMonitor(dut, "out", dut.clk, drive_ready=True, cycle=counter).start()
    qdrv = StreamDriver(dut, "query", dut.clk, cycle=counter)
    cmd = StreamDriver(dut, "cmd", dut.clk, cycle=counter)
    word = _pack([(len(keys), cb), (len(queries), 16), (p["keep_k"], cb), (p["shift"], sb),
                  (p["pq_enable"], 1), (p["threshold"], 16), (p["bank"], 1), (p["seed"], 16)])
    cocotb.start_soon(qdrv.send([pack_lanes(q, b) for q in queries]))
    cmd_cycle = (await cmd.send([word]))[0]
    await out_mon.wait_for(len(queries), max_cycles=p.get("max_cycles", 200000))
    for _ in range(4):
        if done_seen:
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
                  "cycles": (done_seen[0] - cmd_cycle) if done_seen else None,
                  "out_cycles": [c - cmd_cycle for c in out_mon.cycles]})
    assert done_seen, "done never rose after the last output"
