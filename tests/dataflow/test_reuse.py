"""Reuse vectors: the classification of DESIGN.md section 2 for the four GEMM dataflows, and the
defining equation A_X M [dt; ds] = 0 and the delay formula re-checked independently."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.reuse import reuse_vectors, temporal_strides

# unit moves per operand: (kind, moved variable, delay at the reference bounds)
# reference bounds: spatial loops 2*4+1 = 9, the others 3 (tiles: 3 per spatial loop)
EXPECTED = {
    "gemm_os": {"A": {("stationary", "t_j", 3), ("delay", "s1", 1)},     # A forward along j
                "B": {("stationary", "t_i", 9), ("delay", "s0", 1)},     # B forward along i
                "C": {("stationary", "t_k", 1)}},                        # accumulator
    "gemm_ws": {"A": {("stationary", "t_j", 9), ("delay", "s1", 1)},
                "B": {("stationary", "t_i", 1)},                        # weight held over i
                "C": {("stationary", "t_k", 3), ("delay", "s0", 1)}},   # partial sums down k
    "gemm_is": {"A": {("stationary", "t_j", 1)},
                "B": {("stationary", "t_i", 9), ("delay", "s0", 1)},
                "C": {("stationary", "t_k", 3), ("delay", "s1", 1)}},
    "gemm_os_bcast": {"A": {("stationary", "t_j", 3), ("direct", "s1", 0)},   # row broadcast
                      "B": {("stationary", "t_i", 9), ("direct", "s0", 0)},   # column broadcast
                      "C": {("stationary", "t_k", 1)}},
}


def unit_moves(design, df, operand):
    out = set()
    for r in reuse_vectors(design, df, operand):
        if sum(map(abs, r.dt + r.ds)) != 1:
            continue
        moved = [f"t_{d}" for d, v in zip(df.order, r.dt) if v] + [f"s{a}" for a, v in enumerate(r.ds) if v]
        out.add((r.kind, moved[0], r.delay))
    return out


@pytest.mark.parametrize("name", list(EXPECTED))
def test_reuse_kinds_match_design_table(name):
    design = load_spec(name)
    df = design.dataflows[0]
    for operand, moves in EXPECTED[name].items():
        assert unit_moves(design, df, operand) == moves, operand


@pytest.mark.parametrize("name", list(EXPECTED) + ["conv_ws"])
@pytest.mark.parametrize("shape", [None, "3x5", "1x8"])
def test_every_vector_solves_the_reuse_equation(name, shape):
    design = load_spec(name, [f"array.shape={shape}"] if shape else [])
    df = design.dataflows[0]
    op = design.operation
    bounds = design.reference_bounds
    strides = temporal_strides(df, design.shape, bounds)
    # independent strides: product of the trip counts of the loops inside each loop
    axis_of = df.axis_of
    trips = {d: math.ceil(bounds[d] / design.shape[axis_of[d]]) if d in axis_of else bounds[d] for d in op.dims}
    assert strides == {d: math.prod(trips[e] for e in df.order[k + 1:]) for k, d in enumerate(df.order)}
    mmat = df.ts_map.matrix
    for x in op.operands:
        vecs = reuse_vectors(design, df, x.name)
        assert len({(r.dt, r.ds) for r in vecs}) == len(vecs)
        found = set()
        for r in vecs:
            full = np.zeros(mmat.shape[1], dtype=np.int64)
            for v, d in zip(r.dt, df.order):
                full[op.dims.index(d)] = v
            full[len(op.dims):] = r.ds
            assert not np.any(x.access_matrix(op.dims) @ mmat @ full), (x.name, r)
            assert r.delay == sum(v * strides[d] for v, d in zip(r.dt, df.order)) + sum(
                c * v for c, v in zip(df.control, r.ds)) >= 0
            assert r.kind == ("stationary" if not any(r.ds) else "direct" if r.delay == 0 else "delay")
            assert all(design.shape[a] > 1 for a, v in enumerate(r.ds) if v)
            found.add((r.dt, r.ds))
        # nothing in the {-1, 0, 1} box is missed (up to orientation)
        box = np.array(list(itertools.product((-1, 0, 1), repeat=mmat.shape[1])), dtype=np.int64)
        flat_axes = [len(op.dims) + a for a in range(len(design.shape)) if design.shape[a] == 1]
        once = [op.dims.index(d) for d in op.dims if trips[d] == 1]     # a step there leaves the loop nest
        keep = box.any(axis=1) & ~box[:, flat_axes].any(axis=1) & ~box[:, once].any(axis=1)
        keep &= ~(box @ (x.access_matrix(op.dims) @ mmat).T).any(axis=1)
        for full in box[keep]:
            dt = tuple(int(full[op.dims.index(d)]) for d in df.order)
            ds = tuple(int(v) for v in full[len(op.dims):])
            neg = (tuple(-v for v in dt), tuple(-v for v in ds))
            assert (dt, ds) in found or neg in found, (x.name, dt, ds)


def test_no_temporal_move_along_a_loop_that_runs_once():
    """conv_ws has n = 1 at its reference bounds: a step in t_n leaves the loop nest, just as a step
    along an array axis of extent 1 leaves the array (those are dropped)."""
    design = load_spec("conv_ws")
    assert design.reference_bounds["n"] == 1
    df = design.dataflows[0]
    n_pos = df.order.index("n")
    for x in design.operation.operands:
        for r in reuse_vectors(design, df, x.name):
            assert r.dt[n_pos] == 0, (x.name, r)
