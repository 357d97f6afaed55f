"""Phase tables (dataflow/stt_phase.py): the streams of skewed stt arrays rebuilt from lanes x period address
tables over the box walk equal the host program's (dataflow/stt_host.py) beat for beat, for gemm_hex and other
chain maps on several arrays, problem sizes, clocks and boxes; the tables never grow with the problem."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_host import stt_host_program
from archgen.dataflow.stt_phase import stt_phase_tables, stt_streams_from_tables

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]
MAPS = [HEX, [[1, 0, 1], [0, 1, -1], [1, 2, 1]], [[1, 0, 0], [0, 1, -1], [1, 1, 1]], [[0, 1, 1], [1, 0, -1], [1, 1, 2]]]


def _design(shape, stt, clock_mhz=500, order=("k", "i", "j")):
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "clock_mhz": clock_mhz, "types": {"A": "int8", "B": "int8", "C": "int32"},
                           "array": {"shape": list(shape)}, "dataflows": {"d": {"stt": stt, "order": list(order)}}})


def _check_lane_walks(design, tiling, seed, result=True):
    """Random operands; the lane walks rebuild every host stream beat for beat (and the result)."""
    rng = np.random.default_rng(seed)
    tensors = {x.name: rng.integers(-128, 128, size=design.operation.tensor_shape(x.name, tiling.bound))
               for x in design.operation.inputs}
    host = stt_host_program(tiling, tensors)
    got = replay_lane_walks(tiling, tensors, host.expected)
    for port, beats in host.streams.items():
        assert np.array_equal(got[port], beats), port
    if result:
        assert np.array_equal(got["result"].reshape(host.result.shape), host.result)
    return host, got


CHAIN_CASES = [
    ((4, 4), HEX, {"i": 7, "j": 6, "k": 5}, 500),
    ((3, 5), HEX, {"i": 9, "j": 4, "k": 7}, 500),
    ((1, 4), HEX, {"i": 5, "j": 7, "k": 3}, 500),
    ((2, 4), HEX, {"i": 5, "j": 6, "k": 4}, 1500),
    ((3, 4), MAPS[1], {"i": 6, "j": 7, "k": 5}, 500),
    ((3, 3), MAPS[2], {"i": 4, "j": 5, "k": 6}, 500),
    ((4, 3), MAPS[3], {"i": 5, "j": 4, "k": 7}, 500),
]


@pytest.mark.parametrize("shape, stt, bound, clock", CHAIN_CASES)
def test_tables_rebuild_the_host_streams(shape, stt, bound, clock):
    design = _design(shape, stt, clock)
    compiled = compile_array(design)
    tiling = stt_tiling(compiled.network, bound)
    rng = np.random.default_rng(sum(shape) + bound["i"])
    tensors = {x.name: rng.integers(-128, 128, size=design.operation.tensor_shape(x.name, tiling.bound))
               for x in design.operation.inputs}
    host = stt_host_program(tiling, tensors)
    tables = stt_phase_tables(tiling)
    got = stt_streams_from_tables(tiling, tables, tensors, host.expected)
    for port, beats in host.streams.items():
        assert np.array_equal(got[port], beats), port
    real = host.out_index[..., 0] >= 0
    assert np.array_equal(got["out_C"][real], host.out_index[real])
    assert np.array_equal(got["result"], host.result)
    # the tables hold at most lanes x period entries each, whatever the problem size
    for t in tables:
        assert len(t.entries) <= t.lanes * t.period
    assert stt_phase_tables(stt_tiling(compiled.network, {d: 3 * n for d, n in bound.items()},
                                       tiling.box)) == tables


def _wrap(v, bits):
    v = np.asarray(v, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


def replay_lane_walks(tiling, tensors, out_beats):
    """Every stream of the array rebuilt from the lane programs' walks (adds and compares only): inputs read
    the tensors at the walked addresses, outputs write a result buffer, partial sums read it back. An operand
    kept on one FU (a ring) is driven by differences against a mirror of its ring: an input's mirror holds
    what the lane loaded, the output's mirror the output beats."""
    from archgen.dataflow.stt_phase import lane_walk, stt_lane_programs
    net = tiling.network
    op = net.design.operation
    S = tiling.slots
    progs = {p.port: p for p in stt_lane_programs(tiling)}
    got, walks = {}, {port: lane_walk(p, S) for port, p in progs.items()}
    for port, p in progs.items():
        if port.startswith("in_"):
            valid, addr = walks[port]
            got[port] = np.where(valid, tensors[p.operand].reshape(-1)[np.where(valid, addr, 0)], 0)
        elif p.is_tag:                                   # validity tags: the walk's value itself
            valid, value = walks[port]
            got[port] = np.where(valid, value, 0)
    for h in net.inputs:
        if f"clear_{h.name}" in walks:                  # an input ring: new - held to load, - held to clear
            bits = net.design.type_of[h.name].bits
            mirror = np.zeros((h.dt, net.lanes(h.name)), dtype=np.int64)
            load, clear = walks[f"in_{h.name}"][0], walks[f"clear_{h.name}"][0]
            for n in range(S):
                held = mirror[n % h.dt].copy()
                new = np.where(load[n], got[f"in_{h.name}"][n], np.where(clear[n], 0, held))
                got[f"in_{h.name}"][n] = _wrap(new - held, bits)
                mirror[n % h.dt] = new
    y = op.output.name
    ring = f"load_{y}" in walks
    acc_bits = net.design.acc_type.bits
    result = np.zeros(op.tensor_shape(y, tiling.bound), dtype=np.int64).reshape(-1)
    written = np.zeros(result.shape, dtype=bool)
    (pv, pa), (ov, oa) = walks[f"psum_{y}"], walks[f"out_{y}"]
    psum = np.zeros(pv.shape, dtype=np.int64)
    dt = net.output.dt
    mirror = np.zeros((max(dt, 1), pv.shape[1]), dtype=np.int64)
    for n in range(S):
        # the walk's own rule (no partial sum on a block's first visit) reads only what an output wrote before
        assert np.all(written[pa[n, pv[n]]]), n
        psum[n, pv[n]] = result[pa[n, pv[n]]]
        if ring:                                         # the output ring: start - held to load, - held to clear
            held = mirror[n % dt]
            load, clear = walks[f"load_{y}"][0][n], walks[f"clear_{y}"][0][n]
            psum[n] = _wrap(np.where(load, psum[n] - held, np.where(clear, -held, 0)), acc_bits)
            mirror[n % dt] = out_beats[n]
        result[oa[n, ov[n]]] = out_beats[n, ov[n]]
        written[oa[n, ov[n]]] = True
    got[f"psum_{y}"] = psum
    got["out_valid"], got["out_addr"], got["result"] = ov, oa, result
    return got


@pytest.mark.parametrize("shape, stt, bound, clock", CHAIN_CASES)
def test_lane_walks_rebuild_the_host_streams(shape, stt, bound, clock):
    """The lane programs (counters, a shift register of box origins, per-lane phase entries, bound compares)
    drive every beat of the host program; outputs land at their elements and partial sums read them back."""
    design = _design(shape, stt, clock)
    tiling = stt_tiling(compile_array(design).network, bound)
    host, got = _check_lane_walks(design, tiling, 7 * sum(shape) + bound["j"], result=False)
    real = host.out_index[..., 0] >= 0
    assert np.all(got["out_valid"][real])
    flat = np.ravel_multi_index(tuple(np.moveaxis(host.out_index[real], -1, 0)), host.result.shape)
    assert np.array_equal(got["out_addr"][real], flat)
    assert np.array_equal(got["result"].reshape(host.result.shape), host.result)


@pytest.mark.parametrize("shape, bound", [((4, 4), {"k": 5, "p": 7, "r": 3}), ((1, 4), {"k": 3, "p": 6, "r": 2}),
                                          ((3, 5), {"k": 7, "p": 9, "r": 4})])
def test_lane_walks_rebuild_conv1d_hex(shape, bound):
    """An input reused along two directions (I[p+r], streamed again per line) through the lane programs."""
    from archgen.arch.spec import load_spec
    design = load_spec("conv1d_hex", [f"array.shape={shape[0]}x{shape[1]}"])
    tiling = stt_tiling(compile_array(design).network, bound)
    _check_lane_walks(design, tiling, shape[1] + bound["p"])


OPS = [
    ("O[c,p] += I[c,p+r] * W[c,r]", (3, 4), HEX, 500, {"c": 3, "p": 6, "r": 3}),          # tag on the partial sums
    ("O[c,p] += I[c,p+r] * W[c,r]", (2, 5), HEX, 1500, {"c": 4, "p": 5, "r": 4}),
    ("C[i] += A[i,k] * B[k,j]", (3, 3), HEX, 500, {"i": 4, "j": 3, "k": 5}),               # output along two directions
    ("C[i,j,k] += A[i,k] * B[k,j]", (2, 3), HEX, 500, {"i": 3, "j": 4, "k": 3}),           # direct output
    ("O[k,p] += W[k,r] * I[p+r]", (4, 3), [[1, 0, 1], [0, 1, -1], [1, 2, 1]], 500, {"k": 5, "p": 4, "r": 3}),
    ("C[i,j] += A[i,k] * B[k]", (2, 5), [[1, 1, 0], [0, 1, 0], [1, 1, 1]], 1500, {"i": 3, "j": 4, "k": 5}),  # C ring
    ("C[i,j] += A[i,k] * B[k]", (3, 3), [[1, 1, 0], [0, 1, 0], [1, 1, 1]], 500, {"i": 4, "j": 5, "k": 6}),
]


@pytest.mark.parametrize("operation, shape, stt, clock, bound", OPS)
def test_lane_walks_rebuild_other_operations(operation, shape, stt, clock, bound):
    """Validity tags (a constant per phase entry and edge mask), outputs along two directions, direct outputs."""
    from test_stt_array import _op_design
    design = _op_design(operation, shape, stt, clock_mhz=clock)
    tiling = stt_tiling(compile_array(design).network, bound)
    _check_lane_walks(design, tiling, len(operation) + shape[1])


@pytest.mark.parametrize("shape, stt, order", [
    ((3, 3), [[0, 1, 1], [0, 0, 1], [1, 1, 1]], ("k", "i", "j")),        # B kept on each FU (an input ring)
    ((4, 2), [[0, 1, 1], [0, 0, 1], [1, 1, 1]], ("i", "j", "k")),
    ((3, 4), [[1, 0, 1], [0, 0, 1], [1, 1, 1]], ("k", "i", "j")),        # A kept on each FU
])
def test_lane_walks_drive_input_rings(shape, stt, order):
    design = _design(shape, stt, 500, order)
    tiling = stt_tiling(compile_array(design).network, {"i": 5, "j": 6, "k": 4})
    assert any(h.stationary for h in tiling.network.inputs)
    _check_lane_walks(design, tiling, shape[0] * 7 + shape[1])
