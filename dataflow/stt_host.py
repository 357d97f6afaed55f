"""The host's side of a skewed stt array (dataflow/stt_array.py): the beats of every stream, slot by slot.

For each box in order, every element enters its chain's root lane in the slot that brings it to its
first use on time (``t(x_first) - position * dt``, counted from the box's window start); partial sums of an
output block visited before enter with the value its previous visit produced; each output element leaves
on its chain's lane ``(length - 1 - position) * dt`` slots after its last product. Every other lane of
every slot carries zero, which is what makes the lock-step array exact (the zero-fill argument in
dataflow/stt_array.py); the expected output beats are zero there too.
"""
from __future__ import annotations

import numpy as np

from .host import HostProgram
from .stt_array import SttTiling, _box_points

__all__ = ["stt_host_program"]


def _wrap(v: np.ndarray, bits: int) -> np.ndarray:
    v = v & ((1 << bits) - 1)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


def stt_host_program(tiling: SttTiling, tensors: dict[str, np.ndarray]) -> HostProgram:
    net = tiling.network
    design = net.design
    op = design.operation
    dims = op.dims
    bound = np.array([tiling.bound[d] for d in dims])
    pts = _box_points(dims, tiling.box)
    ext = np.array([tiling.box[d] for d in dims])
    off = np.array(tiling.offset)
    t_local = pts @ net.time - tiling.start
    fus = tuple((pts @ net.space.T + off).T)
    S, period = tiling.slots, tiling.period
    acc_bits = design.acc_type.bits
    out = op.output
    out_lanes = net.lanes(out.name)
    streams = {f"in_{h.name}": np.zeros((S, net.lanes(h.name)), dtype=np.int64) for h in net.inputs}
    psum = np.zeros((S, out_lanes), dtype=np.int64)
    psum_source = np.full((S, out_lanes), -1, dtype=np.int64)
    expected = np.zeros((S, out_lanes), dtype=np.int64)
    out_index = np.full((S, out_lanes, out.access_matrix(dims).shape[0]), -1, dtype=np.int64)
    result = np.zeros(op.tensor_shape(out.name, tiling.bound), dtype=np.int64)
    written: dict[tuple, tuple[int, int]] = {}        # output element -> (beat of its last exit, value)
    # per hop: the box points where an element enters (first use) and, for the output, leaves
    geometry = {}
    for h in net.hops:
        lane, pos, length = net.position(h.name)
        dx = np.array(h.dx)
        first = ~np.all((pts - dx >= 0) & (pts - dx < ext), axis=1)
        last = ~np.all((pts + dx >= 0) & (pts + dx < ext), axis=1)
        geometry[h.name] = (first, last, lane[fus], pos[fus], length[fus])
    for m, origin in enumerate(tiling.tiles()):
        base = m * period
        x = pts + np.array([origin[d] for d in dims])
        inside = np.all(x < bound, axis=1)
        prod = np.ones(len(x), dtype=np.int64)
        for h in net.inputs:
            operand = op.operand(h.name)
            first, _last, lane, pos, _length = geometry[h.name]
            idx = x @ operand.access_matrix(dims).T + operand.access_offset()
            held = np.all(idx < np.array(tensors[h.name].shape), axis=1)     # the element exists
            vals = np.zeros(len(x), dtype=np.int64)
            vals[held] = tensors[h.name][tuple(idx[held].T)]
            prod *= np.where(inside, vals, 0)
            sel = first & held          # it enters at its line's first box point, in the problem or not
            slots = base + t_local[sel] - pos[sel] * h.dt
            streams[f"in_{h.name}"][slots, lane[sel]] = vals[sel]
        first, last, lane, pos, length = geometry[out.name]
        oidx = x @ out.access_matrix(dims).T + out.access_offset()
        held = np.all(oidx < np.array(result.shape), axis=1)
        sums: dict[tuple, int] = {}
        for key, p in zip(map(tuple, oidx[inside].tolist()), prod[inside].tolist()):
            sums[key] = sums.get(key, 0) + p
        for k in np.nonzero(first & held)[0]:
            key = tuple(oidx[k].tolist())
            slot = base + t_local[k] - pos[k] * net.output.dt + net.product_stages
            if key in written:
                psum[slot, lane[k]] = written[key][1]
                psum_source[slot, lane[k]] = written[key][0]
        for k in np.nonzero(last & held)[0]:
            key = tuple(oidx[k].tolist())
            slot = base + t_local[k] + (length[k] - 1 - pos[k]) * net.output.dt + net.product_stages
            prev = written.get(key, (-1, 0))[1]
            value = int(_wrap(np.array(prev + sums[key]), acc_bits))
            expected[slot, lane[k]] = value
            out_index[slot, lane[k]] = key
            written[key] = (int(slot), value)
            result[key] = value
    return HostProgram(streams=streams | {f"psum_{out.name}": psum}, expected=expected, out_index=out_index,
                       result=result, psum_source=psum_source)
