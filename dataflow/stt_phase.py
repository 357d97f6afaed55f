"""Phase tables: the streams of a skewed stt array (dataflow/stt_array.py) as per-lane address tables, the
model half of the stream sequencers that drive gemm_hex-style arrays from buffers (docs/memory.md, "Skewed stt
maps through the memory system"; hardware: rtlgen/stt_stream.py, built from the lane programs below).

Box m starts ``m * period`` slots in and every box has the same geometry: a lane takes the element entering
at box point x (box-relative) in slot ``m * period + tau(x)``. The period is collision-free (``_period``: no
lane takes real elements of two boxes in one slot, shifts of every multiple of the period included), so for
each lane and phase ``n mod period`` at most one box-relative slot tau = phase + delta * period has an entry.
A lane is then driven, slot by slot, from a table of lanes x period entries: (delta: the box that started
delta periods before the current one, x: the box point) -> element ``A_X (origin(m) + x)`` with
``m = n div period - delta``, zero when m is not a box or the element lies outside the tensor. The box
origins come from the tile walk (the dataflow's order, innermost fastest), so the hardware keeps the
origins of the last ceil(span / period) boxes in a shift register and adds table offsets: no division.

Partial sums (``psum_<Y>``) and outputs (``out_<Y>``) use the same tables; an operand the map keeps on one
FU (a ring) gets load, clear (and for the output psum and out) tables per line (``_ring_kinds``), which a
memory system turns into differences against a mirror of the ring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .stt_array import SttTiling, _box_points, is_direct

__all__ = ["PhaseTable", "stt_phase_tables", "stt_streams_from_tables", "LaneProgram", "stt_lane_programs", "lane_walk"]


@dataclass(frozen=True)
class PhaseTable:
    port: str                     # in_X, psum_Y or out_Y
    operand: str
    lanes: int
    period: int
    entries: tuple                # ((lane, phase), (delta, box point)) sorted

    def lookup(self) -> dict:
        return dict(self.entries)


def stt_phase_tables(tiling: SttTiling) -> tuple[PhaseTable, ...]:
    """The phase table of every stream port of ``tiling`` (inputs, partial sums in, outputs out)."""
    net = tiling.network
    dims = net.design.operation.dims
    pts = _box_points(dims, tiling.box)
    ext = np.array([tiling.box[d] for d in dims])
    fus = tuple((pts @ net.space.T + np.array(tiling.offset)).T)
    t_local = pts @ net.time - tiling.start
    P = tiling.period
    late = net.product_stages
    tables = []
    for h in net.hops:
        lane, pos, length = (a[fus] for a in net.position(h.name))
        dx = np.array(h.dx)
        if is_direct(h):        # no reuse: every element is its own line, entering (and leaving) at its use
            first = last = np.ones(len(pts), dtype=bool)
        else:
            first = ~np.all((pts - dx >= 0) & (pts - dx < ext), axis=1)
            last = ~np.all((pts + dx >= 0) & (pts + dx < ext), axis=1)
        if h.stationary and not is_direct(h):
            kinds = _ring_kinds(h, pts, ext, first, t_local, late)
        else:
            kinds = [("psum", first, t_local - pos * h.dt + late),
                     ("out", last, t_local + (length - 1 - pos) * h.dt + late)] if h.is_output else \
                [("in", first, t_local - pos * h.dt)]
        for kind, sel, tau in kinds:
            entries: dict = {}
            for k in np.nonzero(sel)[0]:
                key = (int(lane[k]), int(tau[k]) % P)
                val = (int(tau[k]) // P, tuple(int(v) for v in pts[k]))
                if entries.setdefault(key, val) != val:
                    raise AssertionError(f"{kind}_{h.name}: lane {key[0]} takes two elements at phase {key[1]}: "
                                         "the period is not collision-free")
            tables.append(PhaseTable(f"{kind}_{h.name}", h.name, net.lanes(h.name), P, tuple(sorted(entries.items()))))
    return tuple(tables)


def _ring_kinds(h, pts, ext, first, t_local, late):
    """An operand kept on one FU (a ring of dt registers, dataflow/stt_host.py): per line (all its points on one
    FU), a load when its first use comes (an input: the element; the output: ``load`` and the partial sum
    ``psum`` it starts from) and a ``clear`` dt slots after its last use; the output's value leaves at the last
    use (``out``). Every entry names the line's first point, whose element decides whether the line is real."""
    dx = np.array(h.dx)
    steps = np.zeros(len(pts), dtype=np.int64)
    y = pts + dx
    while True:                 # how far each line runs on from its first point
        inside = np.all((y >= 0) & (y < ext), axis=1)
        if not inside.any():
            break
        steps += inside
        y = y + dx
    t_last = t_local + steps * h.dt
    if h.is_output:
        return [("load", first, t_local + late), ("psum", first, t_local + late),
                ("clear", first, t_last + late + h.dt), ("out", first, t_last + late)]
    return [("in", first, t_local), ("clear", first, t_last + h.dt)]


def stt_streams_from_tables(tiling: SttTiling, tables, tensors: dict, out_beats: np.ndarray) -> dict:
    """Every stream beat from the tables, slot by slot, as a memory system would drive them: input lanes read
    the element of their entry's box (zero outside the tensor or when no box is there); the output's lanes
    write the array's beat (``out_beats`` [slots, lanes]) into a result buffer at their element, and the
    partial-sum lanes read the buffer (zero before the element's first write; a read sees writes of earlier
    slots only). Returns port -> int64 [slots, lanes] for inputs and partial sums, ``out_<Y>`` -> the output
    element index [slots, lanes, rank] (-1: no element), and ``result``: the buffer after the last slot."""
    net = tiling.network
    op = net.design.operation
    dims = op.dims
    origins = [np.array([o[d] for d in dims]) for o in tiling.tiles()]
    S = tiling.slots
    out_y = op.output
    result = np.zeros(op.tensor_shape(out_y.name, tiling.bound), dtype=np.int64)
    written: dict = {}                  # output element -> the value its last out beat wrote
    streams: dict = {}
    by_port = {t.port: t for t in tables}

    def element(t: PhaseTable, n: int, lane: int):
        hit = t.lookup().get((lane, n % t.period))
        if hit is None:
            return None
        delta, x = hit
        m = n // t.period - delta
        if not 0 <= m < len(origins):
            return None
        operand = op.operand(t.operand)
        idx = tuple(int(v) for v in operand.access_matrix(dims) @ (origins[m] + np.array(x)) + operand.access_offset())
        shape = tensors[t.operand].shape if t.operand in tensors else result.shape
        return idx if all(0 <= i < e for i, e in zip(idx, shape)) else None

    lookups = {p: t.lookup() for p, t in by_port.items()}
    for t in tables:
        if t.port.startswith("in_"):
            beats = np.zeros((S, t.lanes), dtype=np.int64)
            for n in range(S):
                for lane in range(t.lanes):
                    idx = element(t, n, lane) if (lane, n % t.period) in lookups[t.port] else None
                    if idx is not None:
                        beats[n, lane] = tensors[t.operand][idx]
            streams[t.port] = beats
    psum_t, out_t = by_port[f"psum_{out_y.name}"], by_port[f"out_{out_y.name}"]
    psum = np.zeros((S, psum_t.lanes), dtype=np.int64)
    out_index = np.full((S, out_t.lanes, len(result.shape)), -1, dtype=np.int64)
    for n in range(S):
        for lane in range(psum_t.lanes):
            idx = element(psum_t, n, lane)
            if idx is not None and idx in written:
                psum[n, lane] = written[idx]
        for lane in range(out_t.lanes):
            idx = element(out_t, n, lane)
            if idx is not None:
                out_index[n, lane] = idx
                written[idx] = int(out_beats[n, lane])
                result[idx] = written[idx]
    streams[psum_t.port] = psum
    streams[out_t.port] = out_index
    streams["result"] = result
    return streams


# ------------------------------------------------------------------------------------------------
# lane programs: the phase tables as the adds-and-compares a stream sequencer runs (rtlgen/stt_stream.py)

@dataclass(frozen=True)
class LaneProgram:
    """One stream port's sequencer program over a whole problem, in tensor coordinates.

    Box q (the tile walk, innermost fastest) has tensor origin ``A_X origin(q)``, kept by a walker of ``trips``
    counters that adds ``step[level]`` when its level advances and subtracts ``(trips - 1) step[level]`` when it
    wraps (adds of constants only); its *edge mask* has bit i set when level i (bit 0 the innermost) is at its
    last box and has more than one (the layer controller's convention, docs/memory.md), and its *first* bit
    says that no level whose loop the operand does not use has advanced yet (a partial sum's first visit).
    Slot n is phase ``n mod period`` of box group ``n div period``; a shift register holds the last ``depth``
    boxes. Lane l at phase f reads entry (delta, offset, masks): the element at box ``n div period - delta``'s
    origin plus ``offset`` when that box exists, bit ``mask`` of ``masks`` is set (the element's line meets the
    problem in a box with those ragged edges: a constant per entry and mask) and the element lies inside the
    tensor (``0 <= coordinate < extent``, compares only); a partial-sum port reads nothing on a first visit.
    Its row-major address (``strides``) is the box's linear origin plus the offset's: adds only. With ``stretch``
    k > 1 (a run-time programmable build's fixed period, dataflow/stt_command.py) only every k-th box group holds a
    box (the walker steps then), the others are empty: boxes start ``k x period`` slots apart with the same
    tables. ``start``: box 0's origin when a block's region starts below the block's first index (a halo: an input
index with a negative coefficient in a block that cuts one of its loops, ``SttLayerPlan``); the walk, extents
and compares are then in the region's coordinates."""

    port: str
    operand: str
    lanes: int
    period: int
    depth: int                    # boxes in flight on this port: 1 + the largest delta
    extent: tuple                 # tensor shape
    strides: tuple                # row-major element strides
    trips: tuple                  # tile-walk trip counts, outer to inner
    step: tuple                   # per level: tensor-coordinate step when the level advances
    revisit: tuple                # per level: the operand does not use the level's loop (it revisits its block)
    entries: tuple                # ((lane, phase), (delta, coordinate offset, edge masks where it is real)) sorted
    values: tuple = ()            # a validity-tag port (``tag_<X>``): per entry, its value under each edge mask
    stretch: int = 1              # a box every ``stretch`` box groups (the others empty): boxes stretch x period apart
    start: tuple = ()             # box 0's origin in the region's coordinates (a halo below it); () = all 0

    @property
    def boxes(self) -> int:
        return math.prod(self.trips)

    @property
    def is_psum(self) -> bool:
        return self.port.startswith("psum_")

    @property
    def is_tag(self) -> bool:
        return bool(self.values)

    def linear(self, coords) -> int:
        return int(sum(int(c) * s for c, s in zip(coords, self.strides)))

    @property
    def origin0(self) -> tuple:
        """Box 0's origin: 0, or ``start`` when the region holds a halo below the block's first index (its
        coordinates count from the region's first element, ``SttLayerPlan.halo``)."""
        return tuple(self.start) if self.start else (0,) * len(self.extent)


def _meets(x, dx, box_ext, rag) -> bool:
    """Whether the line from box point ``x`` along ``dx`` (inside the box) has a point below ``rag`` (the
    box's extents inside the problem) on every loop."""
    y = np.array(x)
    while np.all(y >= 0) and np.all(y < box_ext):
        if np.all(y < rag):
            return True
        if not np.any(dx):
            break
        y = y + dx
    return False


def stt_lane_programs(tiling: SttTiling, tables=None) -> tuple[LaneProgram, ...]:
    """The lane program of every stream port of ``tiling`` (from its phase tables)."""
    net = tiling.network
    op = net.design.operation
    dims = op.dims
    order = net.dataflow.order
    tables = tables if tables is not None else stt_phase_tables(tiling)
    trips = tuple(tiling.tile_trips[d] for d in order)
    box_ext = np.array([tiling.box[d] for d in dims])
    rags = []                                            # per edge mask: the box's extents inside the problem
    for mask in range(1 << len(order)):
        rag = box_ext.copy()
        for level, d in enumerate(order):
            # a level at its last box (the mask bit), or with one box only (no bit: every box is its last; the
            # problem may be smaller than the box in a run-time programmable build, dataflow/stt_command.py)
            if mask >> (len(order) - 1 - level) & 1 or trips[level] == 1:
                rag[dims.index(d)] = min(tiling.box[d], tiling.bound[d] - (trips[level] - 1) * tiling.box[d])
        rags.append(rag)
    out = []
    for t in tables:
        operand = op.operand(t.operand)
        hop = net.hop(t.operand)
        amat, const = operand.access_matrix(dims), operand.access_offset()
        extent = op.tensor_shape(t.operand, tiling.bound)
        strides = tuple(int(math.prod(extent[j + 1:])) for j in range(len(extent)))
        step = tuple(tuple(int(v) for v in amat[:, dims.index(d)] * tiling.box[d]) for d in order)
        entries = []
        for (lane, phase), (delta, x) in t.entries:
            # an input enters only on a line that meets the problem (dataflow/stt_host.py); outputs always
            masks = sum(1 << m for m, rag in enumerate(rags)
                        if hop.is_output or _meets(x, np.array(hop.dx), box_ext, rag))
            entries.append(((lane, phase), (delta, tuple(int(v) for v in amat @ np.array(x) + const), masks)))
        depth = 1 + max((delta for _k, (delta, _x) in t.entries), default=0)
        out.append(LaneProgram(t.port, t.operand, t.lanes, t.period, depth, tuple(int(e) for e in extent), strides,
                               trips, step, tuple(not operand.uses(d) for d in order), tuple(entries)))
        if t.operand == net.carrier and not t.port.startswith("out_"):
            out.append(_tag_program(net, out[-1], t, box_ext, rags, np.array(tiling.offset)))
    return tuple(out)


def _tag_program(net, carrier: LaneProgram, table, box_ext, rags, offset) -> LaneProgram:
    """The validity tags of the carrier's lines (dataflow/stt_host.py ``_tags``): each enters with its line, on
    the carrier's lane and phase (its element's or partial sum's entry), valued ``lo | hi << bits``: the chain
    positions of the line's iterations inside the problem, a constant per entry and edge mask (0: none)."""
    from .stt_array import tag_port
    hop = net.hop(table.operand)
    _lane, pos, _length = net.position(table.operand)
    bits = net.tag_field_bits
    dx = np.array(hop.dx)
    entries, values = [], []
    for (key, (delta, off, _masks)), (_k, (_d, x)) in zip(carrier.entries, table.entries):
        vals = []
        for rag in rags:
            y, inside = np.array(x), []
            while np.all(y >= 0) and np.all(y < box_ext):
                if np.all(y < rag):
                    inside.append(int(pos[tuple(net.space @ y + offset)]))
                y = y + dx
            vals.append(min(inside) | (max(inside) + 1) << bits if inside else 0)
        entries.append((key, (delta, off, sum(1 << m for m, v in enumerate(vals) if v))))
        values.append(tuple(vals))
    return LaneProgram(tag_port(table.operand), tag_port(table.operand), carrier.lanes, carrier.period, carrier.depth,
                       carrier.extent, carrier.strides, carrier.trips, carrier.step, carrier.revisit, tuple(entries),
                       tuple(values))


def lane_walk(program: LaneProgram, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """What the sequencer drives, slot by slot, computed as the hardware does (counters, adds, a shift register,
    table bits and compares): (valid bool [slots, lanes], row-major address int64 [slots, lanes]; on a tag port
    the tag value instead of the address)."""
    ndim = len(program.extent)
    levels = len(program.trips)
    table = {k: v for k, v in program.entries}
    valid = np.zeros((slots, program.lanes), dtype=bool)
    addr = np.zeros((slots, program.lanes), dtype=np.int64)
    counters = [0] * levels

    def state(exists, origin):
        mask = sum(1 << (levels - 1 - lv) for lv in range(levels)
                   if program.trips[lv] > 1 and counters[lv] == program.trips[lv] - 1)
        first = all(counters[lv] == 0 for lv in range(levels) if program.revisit[lv])
        return exists, tuple(origin), mask, first

    values = dict(zip((k for k, _v in program.entries), program.values))
    here = state(True, program.origin0)
    shift = [here] + [(False, (0,) * ndim, 0, True)] * (program.depth - 1)
    extent = np.array(program.extent)
    for n in range(slots):
        phase = n % program.period
        if n and phase == 0 and (n // program.period) % program.stretch:    # an empty box group: shift only
            shift = [(False,) + here[1:]] + shift[:-1]
        elif n and phase == 0:                          # the next box group: step the walker, shift
            exists, origin = here[0], list(here[1])
            for level in reversed(range(levels)):
                counters[level] += 1
                if counters[level] < program.trips[level]:
                    origin = [o + s for o, s in zip(origin, program.step[level])]
                    break
                counters[level] = 0
                origin = [o - s * (program.trips[level] - 1) for o, s in zip(origin, program.step[level])]
            else:
                exists = False                          # past the last box: nothing enters any more
            here = state(exists, origin)
            shift = [here] + shift[:-1]
        for lane in range(program.lanes):
            hit = table.get((lane, phase))
            if hit is None:
                continue
            delta, off, masks = hit
            exists, origin, mask, first = shift[delta]
            coords = np.array(origin) + np.array(off)
            if program.is_tag:                          # a tag: the entry's constant for the box's edges
                if exists and masks >> mask & 1:
                    valid[n, lane] = True
                    addr[n, lane] = values[(lane, phase)][mask]
            elif exists and masks >> mask & 1 and not (program.is_psum and first) \
                    and np.all(coords >= 0) and np.all(coords < extent):
                valid[n, lane] = True
                addr[n, lane] = program.linear(coords)
    return valid, addr
