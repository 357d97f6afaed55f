"""The host's side of a skewed stt array (dataflow/stt_array.py): the beats of every stream, slot by slot.

Box m's slots start at ``m * period``. Every element enters its chain's root lane in the slot that brings it
to its first use on time (``t(x_first) - position * dt``, counted from the box's first slot); partial sums
of an output block visited before enter with the value its previous visit produced; each output element
leaves on its chain's lane ``(length - 1 - position) * dt`` slots after its last product. Operands kept on
one FU are ring events (load at the first use, clear dt slots after the last) turned into additive lane
beats in slot order. Every other lane of every slot carries zero, which is what makes the lock-step array
exact (the zero-fill argument in dataflow/stt_array.py); the expected output beats are zero there too.
"""
from __future__ import annotations

import numpy as np

from .host import HostProgram
from .stt_array import SttTiling, _box_points, is_direct, line_ends, line_ids, tag_port

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
    rings: list = []                                   # stationary operands: (slot, load?, operand, lane, dt, value, source)
    # per hop: the box points where an element enters (first use) and, for the output, leaves
    geometry = {}
    lines = {}
    for h in net.hops:
        lane, pos, length = net.position(h.name)
        first, last = line_ends(pts, h.dx, ext)
        geometry[h.name] = (first, last, lane[fus], pos[fus], length[fus])
        lines[h.name] = line_ids(pts, h.dx, ext)
    carrier = net.hop(net.carrier) if net.carrier else None
    if carrier is not None:
        streams[tag_port(carrier.name)] = np.zeros((S, net.lanes(carrier.name)), dtype=np.int64)
    for m, origin in enumerate(tiling.tiles()):
        base = m * period
        x = pts + np.array([origin[d] for d in dims])
        inside = np.all(x < bound, axis=1)
        prod = np.ones(len(x), dtype=np.int64)
        if carrier is not None:
            _tags(net, carrier, base, t_local, geometry[carrier.name], lines[carrier.name], inside,
                  streams[tag_port(carrier.name)])
        for h in net.inputs:
            operand = op.operand(h.name)
            first, _last, lane, pos, _length = geometry[h.name]
            idx = x @ operand.access_matrix(dims).T + operand.access_offset()
            held = np.all((idx >= 0) & (idx < np.array(tensors[h.name].shape)), axis=1)   # it exists (else 0: padding)
            vals = np.zeros(len(x), dtype=np.int64)
            vals[held] = tensors[h.name][tuple(idx[held].T)]
            prod *= np.where(inside, vals, 0)
            # it enters at its line's first box point when the line meets the problem (ragged boxes: a line
            # with no iteration inside the problem stays zero, so zero fill pins products to box and problem)
            meets = np.zeros(len(x), dtype=bool)
            meets[lines[h.name][inside]] = True
            sel = first & meets[lines[h.name]] & held
            if is_direct(h):            # no reuse: the element comes in on its FU's lane in the slot of its use
                streams[f"in_{h.name}"][base + t_local[sel], lane[sel]] = vals[sel]
                continue
            if h.stationary:            # load at the first use, clear dt slots after the last (ring events)
                lasts = _last_of_line(geometry[h.name][1], lines[h.name], sel)
                for k, kl in zip(np.nonzero(sel)[0], lasts):
                    rings.append((base + t_local[k], 1, h.name, lane[k], h.dt, int(vals[k]), None))
                    rings.append((base + t_local[kl] + h.dt, 0, h.name, lane[k], h.dt, 0, None))
                continue
            slots = base + t_local[sel] - pos[sel] * h.dt
            streams[f"in_{h.name}"][slots, lane[sel]] = vals[sel]
        first, last, lane, pos, length = geometry[out.name]
        oidx = x @ out.access_matrix(dims).T + out.access_offset()
        held = np.all(oidx < np.array(result.shape), axis=1)
        sums: dict[tuple, int] = {}
        for key, p in zip(map(tuple, oidx[inside].tolist()), prod[inside].tolist()):
            sums[key] = sums.get(key, 0) + p
        if is_direct(net.output):       # each element is one iteration: its partial sum in, the result out
            for k in np.nonzero(held)[0]:
                key = tuple(oidx[k].tolist())
                slot = base + t_local[k] + net.product_stages
                prev_beat, prev = written.get(key, (-1, 0))
                if prev_beat >= 0:
                    psum[slot, lane[k]] = prev
                    psum_source[slot, lane[k]] = prev_beat
                value = int(_wrap(np.array(prev + int(prod[k]) * bool(inside[k])), acc_bits))
                expected[slot, lane[k]] = value
                out_index[slot, lane[k]] = key
                written[key] = (int(slot), value)
                result[key] = value
            continue
        if net.output.stationary:
            _stationary_output(net, base, t_local, lane, first & held, last, oidx, prod * inside, written, rings,
                               expected, out_index, result, acc_bits)
            continue
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
    streams[f"psum_{out.name}"] = psum
    bits = {h.name: (acc_bits if h.is_output else design.type_of[h.name].bits) for h in net.hops}
    port = {h.name: f"psum_{h.name}" if h.is_output else f"in_{h.name}" for h in net.hops}
    held_now: dict = {}                                # (operand, lane, phase) -> value its ring holds
    for slot, load, name, lane_, dt, value, source in sorted(rings, key=lambda e: e[:4]):
        key = (name, lane_, slot % dt)
        # a lane adds to its FU's ring: loading writes new - held, clearing writes - held (both wrap)
        delta = (value[0] if load and isinstance(value, tuple) else value) - held_now.get(key, 0)
        streams[port[name]][slot, lane_] = int(_wrap(np.array(streams[port[name]][slot, lane_] + delta), bits[name]))
        held_now[key] = (value[1] if isinstance(value, tuple) else value) if load else 0
        if load and source is not None:
            psum_source[slot, lane_] = source
    return HostProgram(streams=streams, expected=expected, out_index=out_index, result=result,
                       psum_source=psum_source)


def _last_of_line(last: np.ndarray, lid: np.ndarray, sel: np.ndarray) -> list[int]:
    """For each selected first point, the box point where its line (same line id) ends."""
    ends = {int(lid[k]): k for k in np.nonzero(last)[0]}
    return [ends[int(lid[k])] for k in np.nonzero(sel)[0]]


def _tags(net, h, base, t_local, geometry, lid, inside, stream):
    """The validity tag of every line of the carrier ``h`` in one box: (lo, hi) = the chain positions of its
    iterations inside the problem (contiguous: a line meets the box and the problem bounds in one segment),
    packed lo | hi << bits, on the carrier's lane in the slot its element (or partial sum) enters."""
    first, _last, lane, pos, _length = geometry
    bits = net.tag_field_bits
    big = 1 << 30
    lo = np.full(len(lid), big, dtype=np.int64)
    hi = np.full(len(lid), -1, dtype=np.int64)
    np.minimum.at(lo, lid[inside], pos[inside])
    np.maximum.at(hi, lid[inside], pos[inside] + 1)
    late = net.product_stages if h.is_output else 0
    for k in np.nonzero(first)[0]:
        if hi[k] > lo[k]:
            stream[base + t_local[k] - pos[k] * h.dt + late, lane[k]] = int(lo[k]) | (int(hi[k]) << bits)


def _stationary_output(net, base, t_local, lane, first, last, oidx, prod, written, rings, expected, out_index,
                       result, acc_bits):
    """An output that stays on one FU: its ring starts from the partial sum of an earlier visit (or 0), every
    use adds a product, every slot's value is on the FU's output lane; the last use's value is the result."""
    late = net.product_stages
    dt = net.output.dt
    for k in np.nonzero(first)[0]:
        key = tuple(oidx[k].tolist())
        line = np.nonzero(np.all(oidx == oidx[k], axis=1))[0]
        line = line[np.argsort(t_local[line])]
        prev_beat, running = written.get(key, (None, 0))
        start = running
        for j in line:
            running = int(_wrap(np.array(running + prod[j]), acc_bits))
            expected[base + t_local[j] + late, lane[k]] = running
        end = base + t_local[line[-1]] + late
        out_index[end, lane[k]] = key
        written[key] = (int(end), running)
        result[key] = running
        rings.append((base + t_local[k] + late, 1, net.output.name, lane[k], dt, (start, running), prev_beat))
        rings.append((end + dt, 0, net.output.name, lane[k], dt, 0, None))
