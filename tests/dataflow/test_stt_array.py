"""Skewed stt maps (dataflow/stt_array.py, stt_host.py): hops from the reuse analysis, chains, boxes, period.

The functional reference here (``lockstep``) plays the chains slot by slot exactly as rtlgen/stt_array.py
wires them (dt registers per hop, c_out = c_in + product, one enable); the host program's expected output
beats must come out of it, and the result assembled from its beats must equal a numpy evaluation of the
loop nest, for random injective maps, arrays and problem sizes.
"""
from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.explain import explain
from archgen.dataflow.reuse import stt_hops
from archgen.dataflow.stt_array import (_evaluate, _fits, choose_box, derive_stt_network,
                                        stt_tiling)
from archgen.dataflow.stt_host import stt_host_program
from archgen.sim.array_model import simulate_array
from archgen.verif.golden import reference_einsum

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]


def _design(shape, stt, order=("i", "j", "k"), clock_mhz=500):
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "clock_mhz": clock_mhz,
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"d": {"stt": stt, "order": list(order)}}})


def lockstep(net, prog) -> np.ndarray:
    """Output beats of the chains of ``net`` fed the host program's streams, slot by slot: dt registers per hop,
    rings that add their lane, direct lanes, and the carrier's validity tags riding its chain (FU p's product
    counts when lo <= p < hi)."""
    coords = list(itertools.product(*[range(e) for e in net.shape]))
    regs = {(h.name, s): [0] * h.dt for h in net.hops for s in coords}   # the dt hop registers after FU s
    tregs = {s: [0] * (net.hop(net.carrier).dt if net.carrier else 0) for s in coords}   # tag hop registers
    prods = {s: [0] * net.product_stages for s in coords}                 # the registers behind the product
    bits = net.acc_width
    tb = net.tag_field_bits
    wrap = lambda v: ((int(v) + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
    outs = np.zeros_like(prog.expected)
    for n in range(prog.expected.shape[0]):
        val, tagv = {}, {}
        wrap_in = lambda v, x: ((int(v) + (1 << (x - 1))) % (1 << x)) - (1 << (x - 1))   # noqa: E731
        if net.carrier:
            for lane, chain in enumerate(net.chains_of(net.carrier)):
                for p, s in enumerate(chain):
                    tagv[s] = (int(prog.streams[f"tag_{net.carrier}"][n, lane]) if p == 0 else
                               tregs[chain[p - 1]][-1] if net.hop(net.carrier).dt else tagv[chain[p - 1]])
        valid = {s: (not net.carrier) or ((tagv[s] & ((1 << tb) - 1)) <= p < (tagv[s] >> tb))
                 for s, p in ((s, int(net.position(net.carrier)[1][s]) if net.carrier else 0) for s in coords)}
        for h in net.inputs:
            bits_in = net.design.type_of[h.name].bits
            for lane, chain in enumerate(net.chains_of(h.name)):
                for p, s in enumerate(chain):
                    lane_v = prog.streams[f"in_{h.name}"][n, lane]
                    if not any(h.dx):           # direct: the lane is the FU's element
                        val[(h.name, s)] = int(lane_v)
                        continue
                    if h.stationary:        # a ring at the FU: the lane adds to what it holds
                        val[(h.name, s)] = wrap_in(regs[(h.name, s)][-1] + lane_v, bits_in)
                        continue
                    val[(h.name, s)] = (lane_v if p == 0 else
                                        regs[(h.name, chain[p - 1])][-1] if h.dt else val[(h.name, chain[p - 1])])
        h, cout = net.output, {}
        for lane, chain in enumerate(net.chains_of(h.name)):
            for p, s in enumerate(chain):
                c_in = (prog.streams[f"psum_{h.name}"][n, lane] if not any(h.dx) else
                        prog.streams[f"psum_{h.name}"][n, lane] + regs[(h.name, s)][-1] if h.stationary else
                        prog.streams[f"psum_{h.name}"][n, lane] if p == 0 else
                        regs[(h.name, chain[p - 1])][-1] if h.dt else cout[chain[p - 1]])
                product = math.prod(int(val[(x.name, s)]) for x in net.inputs)
                if net.carrier != h.name and not valid[s]:
                    product = 0
                if net.product_stages:
                    product, prods[s] = prods[s][-1], [product] + prods[s][:-1]
                if net.carrier == h.name and not valid[s]:
                    product = 0
                cout[s] = wrap(c_in + product)
            outs[n, lane] = cout[chain[-1]]
        for x in net.hops:
            for s in coords:
                if x.dt:
                    regs[(x.name, s)] = [cout[s] if x.is_output else val[(x.name, s)]] + regs[(x.name, s)][:-1]
        if net.carrier and net.hop(net.carrier).dt:
            for s in coords:
                tregs[s] = [tagv[s]] + tregs[s][:-1]
    return outs


def _run(design, bound, seed=0, box=None):
    compiled = compile_array(design)
    tiling = stt_tiling(compiled.network, bound, box)
    rng = np.random.default_rng(seed)
    tensors = {x.name: rng.integers(-128, 128, size=design.operation.tensor_shape(x.name, tiling.bound))
               for x in design.operation.inputs}
    prog = stt_host_program(tiling, tensors)
    return compiled, tiling, tensors, prog


def test_hex_hops_are_the_diagonal_partial_sum_chain():
    design = load_spec("gemm_hex")
    hops = {h.name: h for h in stt_hops(design, design.dataflow())}
    assert (hops["A"].ds, hops["A"].dt, hops["A"].dx) == ((0, 1), 1, (0, 1, 0))
    assert (hops["B"].ds, hops["B"].dt, hops["B"].dx) == ((1, 0), 1, (1, 0, 0))
    assert (hops["C"].ds, hops["C"].dt, hops["C"].dx, hops["C"].is_output) == ((-1, -1), 1, (0, 0, 1), True)


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (1, 4)])
def test_chains_partition_the_array_from_boundary_to_boundary(shape):
    net = derive_stt_network(_design(shape, HEX), _design(shape, HEX).dataflow())
    for h, chains in zip(net.hops, net.chains):
        fus = [s for c in chains for s in c]
        assert sorted(fus) == sorted(itertools.product(*[range(e) for e in shape]))
        for c in chains:
            before = tuple(a - d for a, d in zip(c[0], h.ds))
            after = tuple(a + d for a, d in zip(c[-1], h.ds))
            assert not all(0 <= v < e for v, e in zip(before, shape))      # the root is on the boundary
            assert not all(0 <= v < e for v, e in zip(after, shape))       # so is the end
    assert net.lanes("C") == shape[0] + shape[1] - 1                      # one diagonal per output lane


def test_box_tiles_cover_every_iteration_once_and_fit_the_array():
    design = _design((3, 5), HEX)
    net = compile_array(design).network
    bound = {"i": 7, "j": 4, "k": 9}
    t = stt_tiling(net, bound)
    assert _fits(net, t.box)
    seen = np.zeros([bound[d] for d in "ijk"], dtype=int)
    for origin in t.tiles():
        sl = tuple(slice(origin[d], min(origin[d] + t.box[d], bound[d])) for d in "ijk")
        seen[sl] += 1
    assert np.all(seen == 1)
    # the image of the box, offset, starts at FU 0 and stays inside the array
    pts = np.array(list(itertools.product(*[range(t.box[d]) for d in "ijk"])))
    fus = pts @ net.space.T + np.array(t.offset)
    assert fus.min(axis=0).tolist() == [0, 0] and np.all(fus.max(axis=0) < np.array(net.shape))


def test_choose_box_is_the_fastest_fitting_box():
    net = compile_array(_design((4, 4), HEX, ("k", "i", "j"))).network
    bound = {"i": 5, "j": 7, "k": 6}
    best = stt_tiling(net, bound).slots
    for combo in itertools.product(range(1, 5), repeat=3):
        box = dict(zip("ijk", combo))
        if _fits(net, box):
            assert _evaluate(net, box, bound)[0] >= best


@pytest.mark.parametrize("shape,stt,order,bound", [
    ((4, 4), HEX, "kij", (5, 7, 6)), ((4, 4), HEX, "ijk", (8, 8, 8)), ((3, 5), HEX, "ijk", (4, 3, 7)),
    ((1, 4), HEX, "ijk", (3, 5, 4)), ((3, 3), [[1, 0, -1], [0, 1, 0], [1, 1, 1]], "jki", (4, 5, 3)),
    ((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]], "ijk", (4, 5, 3)),         # 2 registers per A hop
    ((2, 3), [[2, 0, -1], [0, 1, -1], [1, 1, 1]], "ijk", (3, 4, 5)),        # B hops two FUs
    ((3, 3), [[1, 0, -1], [0, 1, -1], [1, 1, 0]], "ijk", (3, 4, 5)),        # combinational partial-sum chain
])
@pytest.mark.parametrize("clock_mhz", [500, 1500])
def test_host_program_matches_lockstep_chains_and_numpy(shape, stt, order, bound, clock_mhz):
    # lock-step chains == the host's expected beats == numpy; a partial sum read in slot b was written earlier
    _exact(_design(shape, stt, tuple(order), clock_mhz), dict(zip("ikj", bound)), sum(bound))


def _accepted(rows) -> bool:
    """Injective, spatial rows not all unit rows (those take the tiled path)."""
    mat = np.array(rows)
    if round(abs(np.linalg.det(mat))) == 0:
        return False
    return not all(sorted(abs(r)) == [0, 0, 1] and r.sum() == 1 for r in mat[:2])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(clock_mhz=st.sampled_from([500, 1500, 3000]), stt=st.lists(st.lists(st.integers(-2, 2), min_size=3, max_size=3), min_size=3, max_size=3).filter(_accepted), shape=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       bound=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
       order=st.permutations("ijk"), seed=st.integers(0, 1000))
def test_random_skewed_maps_are_exact(clock_mhz, stt, shape, bound, order, seed):
    design = _design(shape, stt, tuple(order), clock_mhz)
    compiled, tiling, tensors, prog = _run(design, dict(zip("ijk", bound)), seed)
    assert np.array_equal(lockstep(compiled.network, prog), prog.expected)
    final = np.zeros_like(prog.result)
    ok = prog.out_index[..., 0] >= 0
    final[tuple(prog.out_index[ok].T)] = prog.expected[ok]
    assert np.array_equal(final, reference_einsum(design.operation, tensors, tiling.bound, 32))


def test_model_follows_the_cycle_contract():
    design = load_spec("gemm_hex")
    compiled = compile_array(design)
    tiling = stt_tiling(compiled.network, {"i": 9, "j": 5, "k": 7})
    res = simulate_array(compiled, tiling)
    assert res.total_cycles == (tiling.n_tiles - 1) * tiling.period + tiling.span + 1
    assert res.issue_cycles == tiling.slots
    assert res.macs == 9 * 5 * 7
    # every lane carries a beat in every slot
    assert res.elements["in_A"] == tiling.slots * compiled.port("in_A").lanes
    assert res.elements["out_C"] == tiling.slots * compiled.port("out_C").lanes
    # a finite DRAM side only adds cycles
    assert simulate_array(compiled, tiling, bytes_per_cycle=2.0).total_cycles > res.total_cycles


def test_explain_shows_the_diagonal_chain_and_the_boxes():
    text = "\n".join(explain(load_spec("gemm_hex")))
    assert "s0 = i - k + offset0, s1 = j - k + offset1, t = i + j + k" in text
    assert "C: reused along +k: partial-sum chain moving (-1, -1) FUs in 1 cycle(s)" in text
    assert "7 chain(s)" in text and "box {" in text


def test_unit_rows_still_run_the_tiled_path():
    design = _design((3, 2), [[1, 0, 0], [0, 1, 0], [1, 1, 1]])
    assert not design.dataflow().skewed
    assert design.dataflow().spatial == ((0, "i"), (1, "j"))


@pytest.mark.parametrize("stt,message", [
    ([[1, 0, -1], [0, 1, -1], [1, 1, -2]], "dataflows.d.stt: not injective on the array in time: iterations"),
])
def test_refusals_are_one_field_named_line(stt, message):
    with pytest.raises(SpecError) as err:
        _design((4, 4), stt)
    assert len(err.value.problems) == 1
    assert str(err.value.problems[0]).startswith(message)


def test_cli_refuses_a_singular_map_with_exit_2(tmp_path, capsys):
    import yaml

    from archgen.cli import main
    from archgen.arch.spec import find_spec
    data = yaml.safe_load(find_spec("gemm_hex").read_text())
    data["dataflows"]["hex"]["stt"] = [[1, 0, -1], [0, 1, -1], [2, 2, -4]]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["build", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"archgen: {path}: dataflows.hex.stt: not injective"), err


def test_clock_target_puts_registers_behind_the_multipliers():
    slow, fast = (compile_array(_design((3, 3), HEX, clock_mhz=mhz)) for mhz in (500, 1500))
    assert slow.network.product_stages == 0
    assert fast.network.product_stages >= 1
    assert fast.critical_path_ns <= fast.clock_period_ns < slow.critical_path_ns
    bound = {"i": 4, "j": 5, "k": 6}
    # the partial sums run product_stages slots later: one box spans that much longer
    assert (stt_tiling(fast.network, bound, {"i": 2, "j": 2, "k": 2}).span
            == stt_tiling(slow.network, bound, {"i": 2, "j": 2, "k": 2}).span + fast.network.product_stages)
    assert compile_array(_design((3, 3), HEX, clock_mhz=1500), pipeline=False).network.product_stages == 0
    # adders alone longer than the clock: no stage helps, none is added, the path is reported as it is
    hopeless = compile_array(_design((3, 3), HEX, clock_mhz=3000))
    assert hopeless.network.product_stages == 0 and hopeless.critical_path_ns > hopeless.clock_period_ns


def test_a_skewed_map_fuses_with_a_tiled_one_and_with_skewed_ones():
    """Fusion of skewed maps with tiled dataflows is built (tests/dataflow/test_fusion.py, tests/verif/
    test_fused_stt.py), and since 2026-12-05 a fuse list of skewed maps only (unpipelined shared multipliers,
    each map's own product stages on its path; tests/dataflow/test_fusion.py)."""
    from archgen.dataflow.fusion import check_fusable
    design = load_spec_data({"version": 1, "name": "mix", "operation": "C[i,j] += A[i,k] * B[k,j]",
                             "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [4, 4]},
                             "dataflows": {"hex": {"stt": HEX}, "hex2": {"stt": [[1, 0, 1], [0, 1, -1], [1, 2, 1]]},
                                           "os": {"spatial": {"i": 0, "j": 1}, "control": [1, 1]}}})
    assert [df.name for df in check_fusable(design, ["hex", "os"])] == ["hex", "os"]
    assert [df.name for df in check_fusable(design, ["hex", "hex2"])] == ["hex", "hex2"]


def test_manifest_is_valid_and_names_the_chains():
    from archgen.rtlgen.build import build_array
    from archgen.rtlgen.manifest import validate_manifest
    text, manifest = build_array(load_spec("gemm_hex"))
    validate_manifest(manifest)
    ops = {o["operand"]: o for o in manifest["operands"]}
    assert ops["C"] == {"operand": "C", "role": "psum_chain", "lanes": 7, "hop": [-1, -1], "registers_per_hop": 1,
                        "reuse_direction": [0, 0, 1]}
    ports = {p["name"]: p for p in manifest["interfaces"]}
    assert ports["psum_C"]["lanes"] == ports["out_C"]["lanes"] == 7 and ports["in_A"]["lanes"] == 4
    assert "C_hop_0_0_" in text                       # the diagonal hop register into FU (0, 0)


# operations whose operands the zero-fill argument alone does not cover: an input reused along a direction that
# is not one loop (A[i,j+k], a depthwise 1-D convolution's I[c,p+r]: validity tags), inputs reused along two
# directions (a 1-D convolution's I[p+r], a vector B[k]: re-fed once per line), an output reused along two
# directions (C[i]: one line per element per box) and operands with no reuse (direct lanes)
OTHER_OPS = [
    ("C[i,j] += A[i,j+k] * B[k,j]", ("i", "j", "k")),
    ("O[c,p] += I[c,p+r] * W[c,r]", ("c", "p", "r")),
    ("O[k,p] += W[k,r] * I[p+r]", ("k", "p", "r")),
    ("O[k,p] += W[k,r] * I[p-r]", ("k", "p", "r")),                     # zero padding below I[0]
    ("O[k,p] += W[k,r] * I[2*p+r]", ("k", "p", "r")),                   # strided
    ("O[c,p] += I[c,p+2*r] * W[c,r]", ("c", "p", "r")),                 # dilated, depthwise
    ("C[i,j] += A[i,k] * B[k]", ("i", "j", "k")),
    ("C[i] += A[i,k] * B[k,j]", ("i", "j", "k")),
    ("C[i,j,k] += A[i,k] * B[k,j]", ("i", "j", "k")),
    ("C[i,j] += A[i,j,k] * B[k,j]", ("i", "j", "k")),
    ("C[i,j,k] += A[i,j+k] * B[k,j]", ("i", "j", "k")),                # direct output, tags on an input
    ("C[i,j] += A[i,k] * A2[i,k]", ("i", "j", "k")),                    # every input along the same loop
]


def _op_design(operation, shape, stt, order=None, clock_mhz=500):
    names = sorted(set(re.findall(r"([A-Za-z_]\w*)\[", operation)))
    df = {"stt": stt} if order is None else {"stt": stt, "order": list(order)}
    out = operation.split("[")[0].strip()
    return load_spec_data({"version": 1, "name": "op_stt", "operation": operation, "clock_mhz": clock_mhz,
                           "types": {n: "int32" if n == out else "int8" for n in names},
                           "array": {"shape": list(shape)}, "dataflows": {"d": df}})


def _exact(design, bound, seed):
    compiled, tiling, tensors, prog = _run(design, bound, seed)
    assert np.array_equal(lockstep(compiled.network, prog), prog.expected)
    final = np.zeros_like(prog.result)
    ok = prog.out_index[..., 0] >= 0
    final[tuple(prog.out_index[ok].T)] = prog.expected[ok]
    assert np.array_equal(final, reference_einsum(design.operation, tensors, tiling.bound, 32))
    reads = np.argwhere(prog.psum_source >= 0)
    assert all(prog.psum_source[b, lane] < b for b, lane in reads)
    return compiled


@pytest.mark.parametrize("operation,dims", OTHER_OPS)
def test_formerly_refused_operands_are_built_and_exact(operation, dims):
    compiled = _exact(_op_design(operation, (3, 3), HEX), dict(zip(dims, (4, 5, 3))), seed=7)
    net = compiled.network
    hops = {h.name: h for h in net.hops}
    if operation.startswith("C[i,j] += A[i,j+k]") or operation.startswith("O[c,p]"):
        assert net.carrier is not None and compiled.port(f"tag_{net.carrier}").lanes == net.lanes(net.carrier)
    if "C[i,j,k]" in operation:
        assert not any(hops["C"].dx) and net.lanes("C") == 9          # direct: a lane per FU
    text = "\n".join(explain(_op_design(operation, (3, 3), HEX)))
    assert ("validity" in text) == (net.carrier is not None)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(op=st.sampled_from(OTHER_OPS), clock_mhz=st.sampled_from([500, 1500]),
       stt=st.lists(st.lists(st.integers(-2, 2), min_size=3, max_size=3), min_size=3, max_size=3).filter(_accepted),
       shape=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       bound=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)), seed=st.integers(0, 1000))
def test_random_maps_on_other_operations_are_exact(op, clock_mhz, stt, shape, bound, seed):
    operation, dims = op
    _exact(_op_design(operation, shape, stt, clock_mhz=clock_mhz), dict(zip(dims, bound)), seed)


def test_an_index_below_the_tensor_streams_zero_not_a_wrapped_element():
    """A true convolution's I[p - r] reaches I[-2], I[-1] at p = 0, 1: zero padding, which the stt host
    program streams as 0 (numpy's negative indexing read I[P - 2], I[P - 1]: O = [341, 412, 123, 234])."""
    design = _op_design("O[k,p] += W[k,r] * I[p-r]", (2, 3), HEX, ("k", "p", "r"))
    compiled = compile_array(design)
    prog = stt_host_program(stt_tiling(compiled.network, {"k": 1, "p": 4, "r": 3}),
                            {"W": np.array([[1, 10, 100]]), "I": np.array([1, 2, 3, 4])})
    final = np.zeros_like(prog.result)
    ok = prog.out_index[..., 0] >= 0
    final[tuple(prog.out_index[ok].T)] = prog.expected[ok]
    assert final.tolist() == prog.result.tolist() == [[1, 12, 123, 234]]    # by hand: I[p] + 10 I[p-1] + 100 I[p-2]
    assert np.array_equal(lockstep(compiled.network, prog), prog.expected)


def test_no_moving_operand_is_the_one_refusal_left():
    """Unreachable from a spec (an output indexes plain loops, so some operand crosses FUs), kept as a guard."""
    from types import SimpleNamespace

    from archgen.arch.mapping_check import stt_move_problems
    amat = np.array([[1, 0, -1], [0, 1, 0]])
    x = SimpleNamespace(name="X", access_matrix=lambda dims: amat)
    op = SimpleNamespace(dims=("i", "j", "k"), inputs=(x,), operands=(x,))
    (p,) = stt_move_problems(np.array([[1, 0, -1], [0, 1, 0], [0, 0, 1]]), op, "dataflows.d.stt")
    assert str(p).startswith("dataflows.d.stt: no operand moves across the array")


@pytest.mark.parametrize("stt,stationary", [([[1, 1, 0], [0, 1, 0], [1, 1, 1]], "C"),
                                            ([[1, 0, 1], [1, 0, 0], [0, 1, 1]], "A")])
def test_operand_kept_on_one_fu_gets_a_ring_and_a_lane_per_fu(stt, stationary):
    compiled = compile_array(_design((3, 3), stt))
    hop = next(h for h in compiled.network.hops if h.name == stationary)
    assert hop.stationary and hop.dt == 1
    assert compiled.network.lanes(stationary) == 9
    assert any("stationary" in line for line in explain(_design((3, 3), stt)))


def test_no_moving_carrier_guard_names_the_dataflow_field():
    """The validity tag's carrier guard (unreachable from a spec: stt_move_problems refuses such a map first)
    names the dataflow's stt field and the rows, like every other refusal."""
    from types import SimpleNamespace

    from archgen.dataflow.reuse import SttHop
    from archgen.dataflow.stt_array import _carrier
    df = SimpleNamespace(name="hex", stt=((1, 0, -1), (0, 1, -1), (1, 1, 1)))
    hops = (SttHop("A", (1, -1, 0), (0, 0), 1), SttHop("B", (0, 1, 1), (0, 0), 2),
            SttHop("C", (0, 0, 1), (0, 0), 1, True))
    with pytest.raises(SpecError) as err:
        _carrier(df, hops)
    assert str(err.value) == ("dataflows.hex.stt: every operand stays on one FU under this map; the validity tag "
                              "needs one operand that moves across the array (got [[1, 0, -1], [0, 1, -1], [1, 1, 1]])")
