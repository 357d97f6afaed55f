"""``schedule: map`` with a skewed reduction loop outside the tile (issue 14; docs/dataflows.md "Skewed reduction
loops outside the tile"): a reduction loop before an output-dependent one, which runs as partial-sum rounds, or a
skewed reduction tile loop. The loop runs K + span tiles, FU s runs tile t as iteration t - offset(s), its products
are masked outside its own K tiles by per-offset flags from the issuer's tile counter, and memory lanes feed every
FU its own elements. Checked in Amaranth's simulator (outputs exact against a tiling-independent loop nest, RTL
cycles == model cycles); the memory system refuses it naming ``dataflows.X.schedule``."""
import itertools

import numpy as np
import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.memctl import check_memory_system
from archgen.mappings.tiling import map_problem, outer_pads, row_pads
from archgen.verif.array_amaranth import verify_array_amaranth

from test_memctl_stream_outputs import run_design

GEMM = "C[i,j] += A[i,k] * B[k,j]"
GEMM_MAP = {"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}
CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
# both inputs read real elements at a masked tile (I[p+r, c], W[r+c] stay inside their tensors for r = -1)
MASKED = "O[p] += I[p+r,c] * W[r+c]"


def _spec(op, shape, mp, order, inner=None, schedule="map", control=None, clock=None, fuse=None):
    df = {"map": mp, "order": order, "schedule": schedule} | ({"inner": inner} if inner else {}) | (
        {"control": control} if control else {})
    names = {x for x in op.replace("[", " ").replace("+=", " ").replace("*", " ").split() if x[:1].isupper()}
    flows = {"m": df} | (fuse or {})
    data = {"version": 1, "name": "outer", "operation": op, "array": {"shape": list(shape)},
            "types": {n: ("int32" if n in "CO" else "int8") for n in names}, "dataflows": flows}
    return load_spec_data(data | ({"clock_mhz": clock} if clock else {}) | ({"fuse": list(flows)} if fuse else {}))


def _exact(design, bounds, seed):
    res = verify_array_amaranth(design, bounds, seed=seed)
    assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (bounds, seed, res.detail)
    return res


@pytest.mark.parametrize("order,inner", [(["i", "k", "j"], ["k", "j"]), (["k", "i", "j"], None)])
def test_the_briefs_gemm_runs_its_skewed_reduction_loop_outside_the_tile(order, inner):
    """The brief's example (k before j in the tile: partial-sum rounds) and the skew on the tile loop t_k: k runs
    K + 2 tiles, FU s on tile t - s, the B lanes carry B[t - s, j] (the skew is real), exact and RTL == model."""
    design = _spec(GEMM, (3,), GEMM_MAP, order, inner)
    compiled = compile_array(design)
    assert [p.loop for p in outer_pads(design, compiled.dataflow)] == ["k"] and not row_pads(design, compiled.dataflow)
    bounds = {"i": 3, "j": 2, "k": 3}
    mapping = map_problem(design, bounds, compiled.dataflow)
    assert mapping.trips()["k"] == 3 + 2 and mapping.n_tiles == 5
    tensors = random_operands(compiled.fu_graph, mapping, np.random.default_rng(1))
    b = host_program(compiled.fu_graph, mapping, tensors).streams["in_B"]
    for t, j, s in itertools.product(range(5), range(2), range(3)):
        want = tensors["B"][t - s, j] if 0 <= t - s < 3 else 0
        assert b[2 * t + j, s] == want
    for bounds, seed in (({"i": 4, "j": 3, "k": 4}, 1), ({"i": 5, "j": 1, "k": 1}, 2)):
        _exact(design, bounds, seed)


def test_the_per_tile_flags_are_what_zero_the_masked_tiles(monkeypatch):
    """Where both inputs read real elements outside an FU's own tiles, the per-offset flags are what keep the result
    exact: without them the RTL is wrong (the check can fail)."""
    import archgen.rtlgen.array as array
    design = _spec(MASKED, (1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["c"])
    _exact(design, {"p": 5, "r": 3, "c": 2}, 3)
    monkeypatch.setattr(array, "outer_pads", lambda d, df: ())
    assert not verify_array_amaranth(design, {"p": 5, "r": 3, "c": 2}, seed=3).outputs_exact


def _issue_cycles(mp, order, bounds) -> dict[str, int]:
    """The model's issue cycles of the GEMM on [3] under ``mp`` per schedule (map, compressed)."""
    from archgen.sim.array_model import simulate_array
    issued = {}
    for schedule in ("map", "compressed"):
        compiled = compile_array(_spec(GEMM, (3,), mp, order, schedule=schedule))
        issued[schedule] = simulate_array(compiled, map_problem(compiled.design, bounds, compiled.dataflow)).issue_cycles
    return issued


def test_the_model_counts_k_plus_span_tiles():
    """The price: (K + span) / K as many tiles of k as the compressed build (the issue cycles follow)."""
    issued = _issue_cycles(GEMM_MAP, ["k", "i", "j"], {"i": 3, "j": 4, "k": 5})
    assert issued["map"] * 5 == issued["compressed"] * (5 + 2)


def test_the_memory_system_builds_both_forms():
    """The memory system builds it since H138 (tests/dataflow/test_memctl_outer_pads.py) and a fused design since
    H139 (tests/dataflow/test_fused_outer_pads.py); a skewed loop the output depends on, skewed along an axis the output
    is reduced along, is built at the array level (held over the tile, H148: test_map_schedule_outer_reduce.py;
    streamed per step, H150: test_map_schedule_outer_stream.py) and, since H156, through the memory system too (this
    streamed GEMM was refused there; test_memctl_stream_waits.py runs the form's sweeps)."""
    design = _spec(GEMM, (3,), GEMM_MAP, ["i", "k", "j"], ["k", "j"])
    check_memory_system(compile_array(design).fu_graph)
    design = _spec(GEMM, (3,), {"k": "3*t_k + s0", "i": "t_i", "j": "t_j - s0"}, ["j", "k", "i"])
    check_memory_system(compile_array(design).fu_graph)
    ok, rtl, model, dma, modelled = run_design(design, {"i": 3, "j": 4, "k": 7}, 1, fits=True)
    assert ok and rtl == model == 254 and dma == modelled


def test_explain_states_the_cost():
    from archgen.dataflow.explain import explain
    text = "\n".join(explain(_spec(GEMM, (3,), GEMM_MAP, ["i", "k", "j"], ["k", "j"])))
    assert "t_k runs K + 2 tiles, FU s on tile t - sigma.s" in text
    assert "15 steps at the reference bounds against 9 for the compressed build" in text


def _row(loop, sigma, shape):
    terms = [f"{'-' if v > 0 else '+'} {abs(v)}*s{a}" for a, v in enumerate(sigma) if v and shape[a] > 1]
    early = sum(-v * (shape[a] - 1) for a, v in enumerate(sigma) if v < 0)
    return " ".join([f"t_{loop}"] + terms + ([f"- {early}"] if early else []))


def _skewed_map(rng, shape) -> dict:
    """A convolution's map on ``shape`` with 1-2 of c, r, s skewed (lags, leads, mixed)."""
    mp = {"n": "t_n", "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k", "p": f"{shape[1]}*t_p + s1",
          "q": "t_q", "c": "t_c", "r": "t_r", "s": "t_s"}
    for loop in rng.choice(["c", "r", "s"], size=int(rng.integers(1, 3)), replace=False):
        sigma = (0, 0)
        while not any(sigma):
            sigma = tuple(int(rng.integers(-2, 3)) if e > 1 else 0 for e in shape)
        mp[str(loop)] = _row(str(loop), sigma, shape)
    return mp


def _order_and_tile(rng, spatial) -> tuple[list, list]:
    """A random loop order and a tile of its last 1-3 loops not in ``spatial``."""
    order = [str(x) for x in rng.permutation(["n", "k", "p", "q", "c", "r", "s"])]
    inner = [d for d in order if d not in spatial][-int(rng.integers(1, 4)):]
    return [d for d in order if d not in inner] + inner, inner


def random_flow(rng, shape) -> dict:
    """A random convolution dataflow on ``shape`` (:func:`_skewed_map`), a random loop order and tile (1-3 inner
    loops), control -1..1: some skewed loops land outside the tile, some inside."""
    mp = _skewed_map(rng, shape)
    order, inner = _order_and_tile(rng, ("k", "p"))
    return {"map": mp, "order": order, "inner": inner, "schedule": "map",
            "control": [int(rng.integers(-1, 2)) for _ in range(2)]}


def _random_conv(rng):
    """A random convolution (:func:`_skewed_map`) on 1xN or 2-D: some skewed loops land outside the tile, some
    inside."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    return _random_conv_rest(rng, shape, _skewed_map(rng, shape), ("k", "p"), q=2)


def _random_conv_rest(rng, shape, mp, spatial, q):
    """The rest of a random convolution under ``mp``: a random order and tile of 1-3 loops not in ``spatial``, control
    -1..1, 500/1500 MHz, bounds (q up to ``q``) and a seed."""
    order, inner = _order_and_tile(rng, spatial)
    design = _spec(CONV_OP, shape, mp, order, inner, control=[int(rng.integers(-1, 2)) for _ in range(2)],
                   clock=int(rng.choice([500, 1500])))
    b = {"n": int(rng.integers(1, 3)), "k": int(rng.integers(1, 5)), "p": int(rng.integers(1, 6)),
         "q": int(rng.integers(1, q + 1)), "c": int(rng.integers(1, 3)), "r": int(rng.integers(1, 4)),
         "s": int(rng.integers(1, 3))}
    return design, b, int(rng.integers(1000))


def _random_outer_cases(seed, count, draw=_random_conv, loops=lambda design, pads: pads):
    """``count`` random (design, bounds, seed) of ``draw`` whose compiled dataflow runs a skewed loop outside the tile
    (``loops`` picks which of its ``outer_pads`` count)."""
    rng = np.random.default_rng(seed)
    found = 0
    while found < count:
        design, b, s = draw(rng)
        if loops(design, outer_pads(design, compile_array(design).dataflow)):
            found += 1
            yield design, b, s


def test_a_random_convolution_is_exact():
    for design, b, seed in _random_outer_cases(7, 2):
        _exact(design, b, seed)


@pytest.mark.slow
def test_random_convolutions_in_amaranth():
    """60 random convolutions with a skewed loop outside the tile (some with skews inside it too), 1xN and 2-D:
    every one exact, RTL == model cycles."""
    for design, b, seed in _random_outer_cases(2026, 60):
        _exact(design, b, seed)


@pytest.mark.slow
@pytest.mark.parametrize("op,shape,mp,order,inner,bounds,seed", [
    (CONV_OP, (3, 2), {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c - s0 + s1 - 1",
                       "r": "t_r", "s": "t_s"}, ["n", "k", "p", "c", "q", "r", "s"], ["q", "r", "s"],
     {"n": 1, "k": 4, "p": 3, "q": 2, "c": 3, "r": 2, "s": 2}, 4),
    (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j", "k": "t_k + 2*s0 - 4"}, ["i", "k", "j"], ["k", "j"],
     {"i": 4, "j": 3, "k": 2}, 5),
    (MASKED, (1, 4), {"p": "4*t_p + s1", "r": "t_r + s1 - 3", "c": "t_c"}, ["p", "r", "c"], ["c"],
     {"p": 6, "r": 2, "c": 3}, 6),
])
def test_leads_and_mixed_skews_in_amaranth(op, shape, mp, order, inner, bounds, seed):
    _exact(_spec(op, shape, mp, order, inner), bounds, seed)
