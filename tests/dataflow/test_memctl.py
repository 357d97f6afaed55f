"""The memory system's rules (dataflow/memctl.py): burst timing against a burst-by-burst recurrence,
the SimPy model halves against a plain-Python recurrence of the gates, DRAM bytes against the closed form."""
import random

import pytest
import simpy

from archgen.arch.spec import DramPort, load_spec
from archgen.dataflow.memctl import compute_process, dma_order, dma_process, layer_jobs, transfer_cycles
from archgen.mappings.memory_tiling import dram_bytes, make_command


# the spec grants partial sums through DRAM (the generated top's psum-load copy and revisit logic)
SPILL = ["memory.partial_sums_through_dram=true"]


def spills(cmd) -> bool:
    """The command's output blocks come back after other ones (its partial sums go to DRAM and back)."""
    return f"{cmd.design.operation.output.name}.read" in dram_bytes(cmd)


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


def _recurrence(depth, loads, writes, computes, after=None):
    """The gates of docs/memory.md in plain Python: returns the cycle the layer ends."""
    n = len(computes)
    L, W, C = [None] * n, [None] * n, [None] * n
    dma = 0
    order = dma_order(n, depth, after)
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
        after = [rng.random() < 0.3 for _ in range(n)]      # loads of partial sums: after W(b - depth)
        env = simpy.Environment()
        loaded, computed, written = ([env.event() for _ in range(n)] for _ in range(3))
        env.process(dma_process(env, dma_order(n, depth, after), depth, loads, writes, loaded, computed, written))
        env.process(compute_process(env, depth, computes, loaded, computed, written, [0] * n))
        env.run()
        assert env.now == _recurrence(depth, loads, writes, computes, after)


def test_dma_order_puts_a_partial_sum_load_after_the_write_back_it_needs():
    assert dma_order(5, 2) == [("L", 0), ("L", 1), ("L", 2), ("W", 0), ("L", 3), ("W", 1), ("L", 4), ("W", 2),
                               ("W", 3), ("W", 4)]
    # L(2) loads the partial sums that W(0) writes (k outer, two j blocks): W(0) first
    assert dma_order(5, 2, [False, False, True, False, True]) == [
        ("L", 0), ("L", 1), ("W", 0), ("L", 2), ("L", 3), ("W", 1), ("W", 2), ("L", 4), ("W", 3), ("W", 4)]


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


# ------------------------------------------------------------------------------------------------
# the layer command and its block walker (docs/memory.md "The layer command")

from dataclasses import replace  # noqa: E402

from archgen.arch.errors import SpecError  # noqa: E402
from archgen.dataflow.compile import compile_array  # noqa: E402
from archgen.dataflow.memctl import block_steps, descriptor_format, layer_program, walk_rows  # noqa: E402

WALK_DRAM = ["memory.dram.width_bytes=8", "memory.dram.burst_bytes=16"]


@pytest.mark.parametrize("spec, shape, bounds, tile, order", [
    ("gemm_os", "2x2", {"i": 7, "k": 5, "j": 6}, {"i": 1, "j": 1}, ("j", "i")),
    ("gemm_os", "3x2", {"i": 7, "k": 9, "j": 6}, {"i": 1, "j": 2, "k": 2}, ("i", "j", "k")),   # split reduction
    ("gemm_ws", "2x3", {"i": 11, "k": 7, "j": 8}, {"j": 1, "k": 1, "i": 4}, ("j", "i", "k")),
    ("gemm_is", "3x2", {"i": 7, "k": 5, "j": 10}, {"i": 1, "k": 3, "j": 4}, ("i", "k", "j")),
    ("conv_ws", "3x2", {"n": 2, "k": 5, "p": 5, "q": 4, "c": 5, "r": 3, "s": 2},
     {"k": 1, "c": 2, "r": 3, "s": 2, "p": 2}, ("k", "p", "c", "r", "s")),
    # output blocks that come back (partial sums through DRAM): the revisit flags of the command
    ("gemm_ws", "2x3", {"i": 5, "k": 7, "j": 8}, {"k": 2, "j": 2}, ("k", "j")),
    ("gemm_os", "2x2", {"i": 5, "k": 7, "j": 4}, {"k": 3, "i": 1, "j": 1}, ("k", "i", "j")),
    ("gemm_os", "3x2", {"i": 7, "k": 9, "j": 5}, {"k": 4, "i": 1, "j": 2}, ("i", "k", "j")),
    ("conv_ws", "3x2", {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2},
     {"k": 1, "c": 2, "r": 3, "s": 2}, ("c", "k", "r", "s")),
    # a 3-D array: stationary rows over two leading axes (row@0, row@1 levels)
    ("gemm_os3d", "2x3x2", {"i": 5, "k": 7, "j": 4}, {"i": 1, "j": 1, "k": 2}, ("i", "j", "k")),
    ("gemm_os3d", "3x2x2", {"i": 7, "k": 5, "j": 5}, {"i": 1, "j": 2, "k": 1}, ("k", "j", "i")),
])
def test_block_walker_expands_the_command_to_the_rows(spec, shape, bounds, tile, order):
    """The controller's walk of the command (counters, residency flags, halves, address strides, shape
    table by edge mask) gives every block's row as expanded block by block from the job list."""
    d = load_spec(spec, [f"array.shape={shape}"] + WALK_DRAM)
    if spills(make_command(d, bounds, d.dataflow(), tile, order)):
        d = load_spec(spec, [f"array.shape={shape}"] + WALK_DRAM + SPILL)
    p = layer_program(compile_array(d), make_command(d, bounds, d.dataflow(), tile, order), spec_size=False)
    assert len(p.rows) > 1
    assert walk_rows(p.command, p.layouts, p.walks) == list(p.rows)
    assert bool(p.command.revisit) == d.memory_system.partial_sums_through_dram


def test_block_steps_is_an_odometer():
    steps = list(block_steps((2, 1, 3)))
    assert [c for c, _, _ in steps] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 0, 0), (1, 0, 1), (1, 0, 2)]
    assert [p for _, p, _ in steps] == [None, 2, 2, 0, 2, 2]
    assert [n for _, _, n in steps] == [2, 2, 0, 2, 2, None]


def test_command_size_does_not_grow_with_the_block_count():
    """The same build's command for 4 blocks and for 2,400 blocks: the same tables, depths and bits."""
    d = load_spec("gemm_os", ["array.shape=2x2"] + WALK_DRAM)
    c = compile_array(d)
    sizes = []
    for bounds, tile in (({"i": 8, "k": 4, "j": 8}, {"i": 2, "j": 2}),
                         ({"i": 80, "k": 12, "j": 80}, {"i": 1, "j": 1, "k": 4})):
        p = layer_program(c, make_command(d, bounds, d.dataflow(), tile, ("i", "j", "k")[:len(tile)]))
        fmt = descriptor_format(p)
        words = fmt.encode(p.command)
        sizes.append((len(p.rows), fmt.bits(), {t: len(w) for t, w in words.items()}))
    assert sizes[0][0] == 4 and sizes[1][0] == 40 * 40 * 3
    assert sizes[0][1:] == sizes[1][1:]


def test_a_trip_count_beyond_the_block_counter_is_refused_by_name():
    d = load_spec("gemm_os", ["array.shape=2x2"] + WALK_DRAM)
    p = layer_program(compile_array(d), make_command(d, {"i": 8, "k": 4, "j": 8}, d.dataflow(), {"i": 1, "j": 1},
                                                     ("i", "j")), "fc")
    wc = p.command
    big = replace(wc, trips=wc.trips[:-1] + (1 << 20,))
    with pytest.raises(SpecError, match=r"layers.fc.tile.j: 1048576 blocks along j do not fit the controller's "
                                        r"20-bit block counter \(at most 1048575\); larger tiles along j give fewer "
                                        r"blocks \(got 1048576\)"):
        descriptor_format(p).encode(big, "fc")


@pytest.mark.parametrize("grant", [[], SPILL])
@pytest.mark.parametrize("spec", ["gemm_os", "gemm_ws", "gemm_is"])
def test_block_walker_equals_the_rows_on_random_commands(spec, grant):
    """Random bounds, block sizes (split inner loops included) and orders on a 2x3 array: the walk of the
    command equals the rows expanded from the job list whenever the generated top accepts the command
    (without ``memory.partial_sums_through_dram`` it refuses the orders that bring output blocks back)."""
    rng = random.Random(41)
    d = load_spec(spec, ["array.shape=2x3"] + WALK_DRAM + grant)
    c = compile_array(d)
    df = d.dataflow()
    checked = 0
    for _ in range(12):
        bounds = {x: rng.randint(1, 13) for x in ("i", "k", "j")}
        loops = list(df.outer_dims()) + [x for x in df.inner_dims() if rng.random() < 0.5]
        tile = {x: rng.randint(1, 4) for x in loops}
        order = tuple(rng.sample(loops, len(loops)))
        cmd = make_command(d, bounds, df, tile, order)
        if spills(cmd) and not grant:
            with pytest.raises(SpecError, match="memory.partial_sums_through_dram: the order of layer 'layer'"):
                layer_program(c, cmd, spec_size=False)
            continue
        try:
            p = layer_program(c, cmd, spec_size=False)
        except SpecError:
            continue
        assert walk_rows(p.command, p.layouts, p.walks) == list(p.rows), (bounds, tile, order)
        checked += 1
    assert checked >= 6


def test_partial_sum_loads_are_the_later_visits_and_move_the_closed_form():
    """k outer over two j blocks (WS): each C block is visited twice; the second visit's L job loads its
    partial sums (the rows' ld_C, from the walker's revisit flags) and adds onto them (acc); the bytes are
    the closed form's (v - 1) x bytes(C)."""
    d = load_spec("gemm_ws", ["array.shape=2x3"] + WALK_DRAM + SPILL)
    cmd = make_command(d, {"i": 5, "k": 7, "j": 8}, d.dataflow(), {"k": 2, "j": 2}, ("k", "j"))
    p = layer_program(compile_array(d), cmd, spec_size=False)
    assert p.command.revisit == (0, 1, 0)          # padding level, k (not C's, and C changes under it), j
    assert [r["ld_C"] for r in p.rows] == [0, 0, 1, 1]
    assert [r["acc"] for r in p.rows] == [0, 0, 1, 1]
    assert sum(r["ld_bytes_C"] for r in p.rows) == dram_bytes(cmd)["C.read"] == 5 * 8 * 4
    # the load lands where the write-back took the block from (same DRAM word, same half)
    assert [(r["ld_word_C"], r["ld_pos_C"]) for r in p.rows[2:]] == [(r["wr_word"], r["wr_pos"]) for r in p.rows[:2]]


@pytest.mark.parametrize("spec, order_set, tile, order, psum_levels", [
    # reduction tile loop k first in the dataflow's order: the psum walk's reduction level first
    ("gemm_ws", "dataflows.ws.order=[k, j, i]", {"k": 2, "j": 2}, ("k", "j"), ("red", "tile:j", "inner:i")),
    # c, r, s adjacent before k
    ("conv_ws", "dataflows.ws.order=[c, r, s, k, n, p, q]", {"k": 2, "c": 1, "r": 3, "s": 2}, ("c", "k", "r", "s"),
     ("red", "tile:k", "inner:n", "inner:p", "inner:q")),
    # c, r, s split by k: every tile level, the first visits' tiles skipped
    ("conv_ws", "dataflows.ws.order=[c, k, r, s, n, p, q]", {"k": 3, "c": 2, "r": 3, "s": 2}, ("k", "c", "r", "s"),
     ("tile:c", "tile:k", "tile:r", "tile:s", "inner:n", "inner:p", "inner:q")),
])
def test_reduction_tile_loops_anywhere_in_the_dataflow_order(spec, order_set, tile, order, psum_levels):
    """The partial-sum walk follows the dataflow's order; its beats are the tiles' but the first visits'."""
    bounds = {"i": 5, "k": 7, "j": 8} if spec == "gemm_ws" else {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}
    d = load_spec(spec, ["array.shape=3x2" if spec == "conv_ws" else "array.shape=2x3", order_set] + WALK_DRAM)
    if spills(make_command(d, bounds, d.dataflow(), tile, order)):
        d = load_spec(spec, ["array.shape=3x2" if spec == "conv_ws" else "array.shape=2x3", order_set] + WALK_DRAM
                      + SPILL)
    p = layer_program(compile_array(d), make_command(d, bounds, d.dataflow(), tile, order), spec_size=False)
    (w,) = [w for w in p.walks if w.kind == "psum"]
    assert w.levels == psum_levels
    assert walk_rows(p.command, p.layouts, p.walks) == list(p.rows)
    if w.skip_level is not None:          # 2 c x 3 k x 3 r x 2 s tiles, 3 of them first visits, 12 beats a tile
        assert w.red_levels == (0, 2, 3) and p.rows[0][f"{w.port}_beats"] == (36 - 3) * 12
