"""The memory system's rules (dataflow/memctl.py): burst timing against a burst-by-burst recurrence,
the SimPy model halves against a plain-Python recurrence of the gates, DRAM bytes against the closed form."""
import random

import pytest
import simpy

from archgen.arch.spec import DramPort, load_spec
from archgen.dataflow.memctl import compute_process, dma_order, dma_process, layer_jobs, transfer_cycles
from archgen.mappings.memory_tiling import dram_bytes, make_command


def _bursts(nbytes, port):
    """Burst by burst: issue one burst per c cycles, at most O in flight, each done latency + its data later."""
    w, burst, o, lat = port.width_bytes, port.burst_bytes, port.outstanding, port.latency
    sizes = []
    left = nbytes
    while left > 0:
        sizes.append(min(burst, left))
        left -= burst
    c = -(-burst // w)
    issue, done = [], []
    for i, s in enumerate(sizes):
        t = 0 if i == 0 else issue[-1] + c
        if i >= o:
            t = max(t, done[i - o])
        issue.append(t)
        done.append(t + lat + -(-s // w))
    return max(done, default=0)


def test_transfer_cycles_by_hand():
    port = DramPort(32, 64, 64, 64)
    assert transfer_cycles(0, port) == 0
    assert transfer_cycles(1, port) == 64 + 1
    assert transfer_cycles(64, port) == 64 + 2
    assert transfer_cycles(64 * 100, port) == 99 * 2 + 64 + 2          # pipelined: 33 in flight cover the latency
    assert transfer_cycles(64 * 3, DramPort(32, 10, 64, 1)) == 2 * 12 + 12   # one in flight: latency every burst


def test_transfer_cycles_equal_burst_by_burst():
    rng = random.Random(3)
    for _ in range(400):
        port = DramPort(rng.randint(1, 64), rng.randint(0, 200), rng.choice([16, 32, 64, 100, 256]), rng.randint(1, 40))
        n = rng.randint(0, 5000)
        assert transfer_cycles(n, port) == _bursts(n, port), (n, port)


def _recurrence(depth, loads, writes, computes):
    """The gates of docs/memory.md in plain Python: returns the cycle the layer ends."""
    n = len(computes)
    L, W, C = [None] * n, [None] * n, [None] * n
    dma = 0
    order = dma_order(n, depth)
    # the DMA runs in order; compute ends are known once their gates are: interleave by resolving in order
    cstart = 0
    pending = list(order)
    b_next = 0
    while pending or b_next < n:
        progressed = False
        if pending:
            kind, b = pending[0]
            gate = (C[b - depth] if b >= depth else 0) if kind == "L" else C[b]
            if gate is not None:
                start = max(dma, gate)
                dma = start + max(1, loads[b] if kind == "L" else writes[b])      # an empty job: one cycle
                (L if kind == "L" else W)[b] = dma
                pending.pop(0)
                progressed = True
        if b_next < n and L[b_next] is not None and (b_next < depth or W[b_next - depth] is not None):
            start = max(cstart, L[b_next], W[b_next - depth] if b_next >= depth else 0)
            C[b_next] = start + computes[b_next] + 1
            cstart = C[b_next]
            b_next += 1
            progressed = True
        assert progressed
    return max(C[-1], W[-1])


def test_model_halves_equal_the_recurrence():
    rng = random.Random(7)
    for _ in range(200):
        n, depth = rng.randint(1, 12), rng.choice([1, 2])
        loads = [rng.randint(0, 50) for _ in range(n)]
        writes = [rng.choice([0, rng.randint(0, 50)]) for _ in range(n)]
        computes = [rng.randint(1, 60) for _ in range(n)]
        env = simpy.Environment()
        loaded, computed, written = ([env.event() for _ in range(n)] for _ in range(3))
        env.process(dma_process(env, dma_order(n, depth), depth, loads, writes, loaded, computed, written))
        env.process(compute_process(env, depth, computes, loaded, computed, written, [0] * n))
        env.run()
        assert env.now == _recurrence(depth, loads, writes, computes)


@pytest.mark.parametrize("spec, bounds, tile, order", [
    ("gemm_os", {"i": 13, "k": 5, "j": 9}, {"i": 2, "j": 1}, ("j", "i")),
    ("gemm_ws", {"i": 7, "k": 11, "j": 10}, {"j": 2, "k": 1}, ("k", "j")),
    ("conv_ws", {"n": 1, "k": 6, "p": 3, "q": 3, "c": 5, "r": 3, "s": 3}, {"k": 2, "c": 1, "r": 1, "s": 3},
     ("c", "r", "k", "s")),
])
def test_job_list_moves_the_closed_form_bytes(spec, bounds, tile, order):
    design = load_spec(spec)
    names = [x.name for x in design.operation.operands]
    design = load_spec(spec, [f"memory.{x}.bytes=1048576" for x in names])
    cmd = make_command(design, bounds, design.dataflow(), tile, order)
    moved = {}
    y = design.operation.output.name
    for j in layer_jobs(cmd):
        for x, b in j.load:
            moved[f"{x}.read"] = moved.get(f"{x}.read", 0) + b
        if j.write:
            moved[f"{y}.write"] = moved.get(f"{y}.write", 0) + j.write
    assert moved == dram_bytes(cmd)
