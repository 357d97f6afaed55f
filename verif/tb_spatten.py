"""cocotb testbench of the SpAtten attention core (runs inside the simulator; host side: spatten_check.py).

Parameters (ARCHGEN_TB_PARAMS, all integers or lists of integers): field widths of the core's stream
payloads (``index_bits``, ``count_bits``, ``dim``, ``bits``, ``acc_bits``, ``shift_bits``) and
``commands``: a list of {``keys``, ``values`` (n x D), ``queries`` (q x D), ``shift``, ``keep_k``,
``pq_enable``, ``threshold``, ``bank``, ``seed``, optional ``dense_ok`` (0)}, at most one per K/V bank. The testbench plays the DRAM
side: it writes every command's K and V into its bank, then offers the commands back to back (each as
soon as the core accepts it) and all their queries in order, and takes every output at once.

With ``dram_row_cycles`` = r > 0 the testbench plays the core's fetcher with a DRAM of one K or V row
per r cycles instead (any number of commands, banks alternating; sim.spatten_model.SplitLoads, the
same rule): the first command's keys are written before it; then its values and the next command's
keys, and so on in pairs (values of command ci and keys of command ci + 1, whichever may start first,
values on a tie), one load at a time, each n_keys x r cycles. Command ci's keys may start the cycle
after command ci - 2 released its keys (``keys_free`` on that bank), its values the cycle after command
ci - 2 is done; a command is offered from the cycle its keys are in, and ``v_loaded`` pulses for its
bank in the cycle its values are in. A command without queries gets no value load. A one-query command
pruned by local-V without ``dense_ok`` loads only its kept value rows, those the core's ``v_mask`` names
when ``v_fetch`` pulses for its bank, from the next cycle and after the next pair (the causal value
fetch; ``value_rows`` in the results). Without
``dram_row_cycles`` every command's K and V are written before the first command and ``v_loaded``
pulses for every bank.

Results: ``outputs`` (D signed integers per query, in command order), ``need_lsb`` per query,
``token_importance`` (per token, summed over the commands), ``head_score``, ``done_cycles`` (per
command: rising edges from the first command's handshake to the cycle ``done`` is high), ``cycles``
(the last of them), ``cmd_cycles`` (each command's handshake), ``out_cycles`` (each output, same origin).
"""
from collections import deque

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


async def _watch_done(dut, counter, seen: list, keys_free: dict, v_fetch: dict, n_tokens: int):
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        if int(dut.done.value):
            seen.append(counter())
        kf = int(dut.keys_free.value)
        for bank in keys_free:
            if kf >> bank & 1:
                keys_free[bank].append(counter())
        vf = int(dut.v_fetch.value)
        if vf:
            vm = int(dut.v_mask.value)
            for bank in v_fetch:
                if vf >> bank & 1:
                    mask = vm >> (bank * n_tokens) & ((1 << n_tokens) - 1)
                    v_fetch[bank].append((counter(), [t for t in range(n_tokens) if mask >> t & 1]))


def _after_mask(c) -> bool:
    """The causal value fetch: a one-query command pruned by local-V without dense_ok loads its kept value
    rows only, once the core's ``v_fetch`` gives its keep mask (sim.spatten_model.SplitLoads ``after_mask``)."""
    return len(c["queries"]) == 1 and c["keep_k"] < len(c["keys"]) and not c.get("dense_ok", 0)


async def _fetch(dut, counter, cmd0, commands, kv_beats, row_cycles, done_seen, keys_free, key_end, v_fetch,
                 value_rows):
    """The fetcher (sim.spatten_model.SplitLoads): after command 0's keys, loads in pairs (values of
    command i, keys of command i + 1), whichever may start first (values on a tie), one at a time; the
    kept value rows of a one-query pruned command i (``_after_mask``) are deferred to right after the next
    pair and start no earlier than the cycle after its ``v_fetch`` pulse: the rows its ``v_mask`` names
    (recorded in ``value_rows``)."""
    n, free = len(commands), 0
    causal_no = {}                  # command -> its index among the causal commands of its bank
    for i, c in enumerate(commands):
        if _after_mask(c):
            causal_no[i] = sum(1 for j in causal_no if commands[j]["bank"] == c["bank"])
    v_pulse: dict[int, int] = {}    # relative cycle -> the v_loaded bits driven in it

    beats: deque = deque()          # kv rows to write, one per cycle (the port is always ready)

    async def drive_v_loaded_and_kv():
        while True:
            await FallingEdge(dut.clk)
            dut.v_loaded.value = v_pulse.get(counter() - cmd0, 0)
            dut.kv__valid.value = 1 if beats else 0
            if beats:
                dut.kv__payload.value = beats.popleft()
    cocotb.start_soon(drive_v_loaded_and_kv())

    def allowed(kind, i):           # the load may start in (relative) cycle t, or None if not yet known
        if kind == "v":
            ok = (done_seen[i - 2] - cmd0 + 1 if len(done_seen) > i - 2 else None) if i >= 2 else 0
            if i in causal_no and ok is not None:
                vf = v_fetch[commands[i]["bank"]]
                ok = max(ok, vf[causal_no[i]][0] - cmd0 + 1) if len(vf) > causal_no[i] else None
            return ok
        if i < 2:
            return 0
        pulses = keys_free[commands[i - 2]["bank"]]
        nth = (i - 2) // 2          # the commands on a bank alternate with the other bank's
        return pulses[nth] - cmd0 + 1 if len(pulses) > nth else None

    phases = []                     # pair i, then the kept value rows of command i - 1 (deferred, causal)
    for i in range(n + 1):
        phases.append(([("v", i)] if i < n and commands[i]["queries"] and i not in causal_no else [])
                      + ([("k", i + 1)] if i + 1 < n else []))
        if i - 1 in causal_no:
            phases.append([("v", i - 1)])
    for pending in phases:
        while pending:
            now = counter() - cmd0
            go = [x for x in pending if now >= free and (a := allowed(*x)) is not None and a <= now]
            if not go:
                await FallingEdge(dut.clk)
                continue
            kind, ci = go[0]        # values first on a tie (they come first in ``pending``)
            pending.remove(go[0])
            rows = list(range(len(commands[ci]["values" if kind == "v" else "keys"])))
            if kind == "v" and ci in causal_no:
                rows = v_fetch[commands[ci]["bank"]][causal_no[ci]][1]
                value_rows[ci] = rows
            free = now + len(rows) * row_cycles
            if kind == "v":
                v_pulse[free] = 1 << commands[ci]["bank"]
            else:
                key_end[ci] = free  # the command may be offered from then (its beats are written by then)
            # written one row a cycle from the next cycle on: row j is in before the core can read it
            beats.extend(kv_beats(commands[ci], kind == "v", rows))
            while counter() - cmd0 < free:
                await FallingEdge(dut.clk)


async def _send_after_loads(dut, counter, words, commands, kv_beats, row_cycles, done_seen, keys_free, v_fetch,
                            value_rows):
    """Commands offered once their keys are loaded; the loads run beside (see the module docstring)."""
    key_end: dict[int, int] = {0: 0}
    cycles: list[int] = []
    for ci, word in enumerate(words):
        while True:
            await FallingEdge(dut.clk)
            if ci and (ci not in key_end or counter() - cycles[0] < key_end[ci]):
                dut.cmd__valid.value = 0
                continue
            dut.cmd__valid.value = 1
            dut.cmd__payload.value = word
            await ReadOnly()
            if int(dut.cmd__ready.value):
                cycles.append(counter())
                if ci == 0:
                    cocotb.start_soon(_fetch(dut, counter, cycles[0], commands, kv_beats, row_cycles,
                                             done_seen, keys_free, key_end, v_fetch, value_rows))
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

    def kv_beats(c, is_value, rows=None):
        data = c["values"] if is_value else c["keys"]
        return [_pack([(i, ib), (c["bank"], 1), (is_value, 1), (pack_lanes(data[i], b), dim * b)])
                for i in (range(len(data)) if rows is None else rows)]

    dut.v_loaded.value = 0
    if row_cycles:
        await kv.send(kv_beats(commands[0], 0))
    else:
        await kv.send([w for c in commands for v in (0, 1) for w in kv_beats(c, v)])
        await FallingEdge(dut.clk)
        dut.v_loaded.value = (1 << p["banks"]) - 1
        await FallingEdge(dut.clk)
        dut.v_loaded.value = 0

    done_seen: list[int] = []
    keys_free: dict[int, list[int]] = {bank: [] for bank in range(p["banks"])}
    v_fetch: dict[int, list] = {bank: [] for bank in range(p["banks"])}   # (cycle, kept rows) per pulse
    value_rows: dict[int, list[int]] = {}      # per causal command: the value rows loaded (its v_mask)
    cocotb.start_soon(_watch_done(dut, counter, done_seen, keys_free, v_fetch, p["max_tokens"]))
    out_mon = StreamMonitor(dut, "out", dut.clk, drive_ready=True, cycle=counter).start()
    qdrv = StreamDriver(dut, "query", dut.clk, cycle=counter)
    cmd = StreamDriver(dut, "cmd", dut.clk, cycle=counter)
    words = [_pack([(len(c["keys"]), cb), (len(c["queries"]), 16), (c["keep_k"], cb), (c["shift"], sb),
                    (c["pq_enable"], 1), (c["threshold"], 16), (c["bank"], 1), (c["seed"], 16),
                    (c.get("dense_ok", 0), 1)]) for c in commands]
    queries = [q for c in commands for q in c["queries"]]
    cocotb.start_soon(qdrv.send([pack_lanes(q, b) for q in queries]))
    if not row_cycles:
        cmd_cycles = await cmd.send(words)
    else:
        cmd_cycles = await _send_after_loads(dut, counter, words, commands, kv_beats, row_cycles, done_seen,
                                             keys_free, v_fetch, value_rows)
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
                  "out_cycles": [c - cmd_cycle for c in out_mon.cycles],
                  "value_rows": {str(k): v for k, v in value_rows.items()},
                  "v_fetch_cycles": sorted(c - cmd_cycle for pulses in v_fetch.values() for c, _ in pulses)})
    assert len(done_seen) == len(commands), f"done rose {len(done_seen)} times for {len(commands)} commands"
