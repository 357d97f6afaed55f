"""The DRAM side of a generated array: what each stream carries, beat by beat, and what comes out.

From the FU graph, the tile mapping and concrete tensors this builds every input stream's beats
(lanes of one array step), the partial-sum beats read back between tiles, and the exact output beats
the array must produce (partial sums after each tile, zeros on padded lanes). The testbench plays
these streams as the memory system; the cycle model counts their bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archgen.mappings.tiling import RowPad, Tile, TileMapping, check_drain_waits, outer_pads, row_pads

from .interconnect import FUGraph
from .ir import PortRole, Role, port_name
from .reduce_skew import accumulated_fus, drain_groups, drain_skews, lane_members, lane_offsets, reduced_skews, rep_waits, wait_steps
from .schedule import ArraySchedule

__all__ = ["HostProgram", "host_program", "wrap", "random_operands"]


def wrap(values: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    """Two's-complement wrap-around to ``bits``, the accumulators' documented overflow rule."""
    v = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


@dataclass(frozen=True)
class HostProgram:
    streams: dict            # input port name -> int64 array [beats, lanes]
    expected: np.ndarray     # int64 [beats, lanes] the output port must produce, in order
    out_index: np.ndarray    # int64 [beats, lanes, rank_C]: output element of each lane (-1 = padding)
    result: np.ndarray       # the final output tensor (numpy reference)
    psum_source: np.ndarray | None = None   # int64 [psum beats, lanes]: output beat that wrote the value read
                                            # (-1: padding); the DRAM side can only serve it after that beat


def random_operands(fg: FUGraph, mapping: TileMapping, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random tensors over each input type's whole range, negative values included."""
    op = fg.design.operation
    out = {}
    for x in op.inputs:
        t = fg.design.type_of[x.name]
        out[x.name] = rng.integers(t.lo, t.hi + 1, size=op.tensor_shape(x.name, mapping.bound), dtype=np.int64)
    return out


def _iterations(fg: FUGraph, mapping: TileMapping, tile: Tile, coords: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Loop values x[step, fu, dim] for the given FU coordinates and step numbers of one tile."""
    design, df = fg.design, fg.dataflow
    dims = design.operation.dims
    trips = mapping.issued_trips()
    pads = {p.loop: p for p in row_pads(design, df)}
    shifted = {p.loop: p for p in outer_pads(design, df)}
    halo = {} if pads else mapping.halo       # the map's own schedule shifts each FU by sigma_l.s instead
    inner = df.inner_dims()
    outer = dict(tile.outer)
    axis_of = df.axis_of
    inner_vals = np.stack(np.unravel_index(steps, [trips[d] for d in inner]), axis=-1) if inner else np.zeros((len(steps), 0), dtype=np.int64)
    # halo steps (delay connections filling) come first in each row of their loop: negative loop values
    inner_vals = inner_vals - np.array([halo.get(d, 0) for d in inner], dtype=np.int64)
    x = np.zeros((len(steps), len(coords), len(dims)), dtype=np.int64)
    for k, d in enumerate(dims):
        if d in axis_of:
            a = axis_of[d]
            x[:, :, k] = design.shape[a] * outer[d] + coords[None, :, a]
        elif d in inner:
            x[:, :, k] = inner_vals[:, None, inner.index(d)]
            if d in pads:        # FU s runs row position pos of a padded loop as iteration pos - offset_l(s)
                x[:, :, k] -= np.array([pads[d].offset(s) for s in coords.tolist()], dtype=np.int64)
        else:
            x[:, :, k] = outer[d]
            if d in shifted:     # a skewed outer loop: FU s runs tile t of it as iteration t - offset(s)
                x[:, :, k] -= np.array([shifted[d].offset(s) for s in coords.tolist()], dtype=np.int64)
    return x


def _gather(tensor: np.ndarray, operand, dims, x: np.ndarray, bounds) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``operand`` at iterations x (zeros where its element is padding) and its indices.

    Only the loops the operand depends on decide: C[i,j] is a real element even on an iteration
    whose k lies in the padding of the last k tile. A real iteration whose index leaves the tensor (below 0:
    a true convolution's ``I[p - r]``) reads 0, the zero padding (numpy's negative indexing would wrap it)."""
    amat = operand.access_matrix(dims)
    idx = x @ amat.T + operand.access_offset()
    used = [k for k, d in enumerate(dims) if operand.uses(d)]
    inside = np.all((x[..., used] < np.array([bounds[dims[k]] for k in used])) & (x[..., used] >= 0), axis=-1)
    held = inside & np.all((idx >= 0) & (idx < np.array(tensor.shape)), axis=-1)
    safe = np.where(held[..., None], idx, 0)
    vals = tensor[tuple(np.moveaxis(safe, -1, 0))]
    return np.where(held, vals, 0), np.where(inside[..., None], idx, -1)


def host_program(fg: FUGraph, mapping: TileMapping, tensors: dict[str, np.ndarray],
                 schedule: ArraySchedule | None = None) -> HostProgram:
    design = fg.design
    op = design.operation
    dims = op.dims
    bounds = mapping.bound
    acc_bits = fg.acc_width
    shape = design.shape
    coords_all = np.array(list(np.ndindex(*shape)), dtype=np.int64)
    rows = math.prod(shape[:-1])
    steps = np.arange(mapping.steps)
    out = fg.output
    result = np.zeros(op.tensor_shape(out.name, bounds), dtype=np.int64)
    streams: dict[str, list] = {}
    expected, out_index = [], []

    def add(port, beats):
        streams.setdefault(port, []).append(beats)

    def row_coords():
        # beat r, lane l -> FU (unravel(r) over shape[:-1], l)
        prefix = np.array(list(np.ndindex(*shape[:-1])) or [()], dtype=np.int64).reshape(rows, len(shape) - 1)
        lanes = np.arange(shape[-1])
        return np.concatenate([np.repeat(prefix[:, None, :], shape[-1], axis=1),
                               np.broadcast_to(lanes[None, :, None], (rows, shape[-1], 1))], axis=-1)

    rc = row_coords()                                          # [rows, lanes, rank]
    # accumulated outputs drain (and are preloaded) lane by lane in each output lane's FU order
    drain_rc = np.array([[lane.fus[r] for lane in out.lanes] for r in range(len(out.lanes[0].fus))],
                        dtype=np.int64).reshape(len(out.lanes[0].fus), out.n_lanes, len(shape))
    last_writer: dict[tuple, int] = {}                         # output element -> last output beat writing it
    psum_source: list = []
    n_out = 0

    def record_psum(idx):
        src = np.full(idx.shape[:2], -1, dtype=np.int64)
        for b in range(idx.shape[0]):
            for l in range(idx.shape[1]):
                if idx[b, l, 0] >= 0:
                    src[b, l] = last_writer.get(tuple(idx[b, l]), -1)
        psum_source.append(src)

    def record_out(idx):
        nonlocal n_out
        for b in range(idx.shape[0]):
            for l in range(idx.shape[1]):
                if idx[b, l, 0] >= 0:
                    last_writer[tuple(idx[b, l])] = n_out + b
        n_out += idx.shape[0]

    chained_operands = {e.operand for _, _, e in fg.fifos()}
    pads = row_pads(design, fg.dataflow) + outer_pads(design, fg.dataflow)
    waited = (_WaitedDrain(fg, mapping, tensors, pads, drain_rc, result) if drain_groups(fg) else
              _WaitedStream(fg, mapping, tensors, pads, result) if _waits_across_tiles(fg) else None)
    for tile in mapping.tiles():
        # stationary inputs: one beat per array row, any step (they do not depend on inner loops)
        for p in fg.inputs:
            if p.role is not Role.STATIONARY or (schedule is not None and not schedule.loads(tile)):
                continue
            x = _iterations(fg, mapping, tile, rc.reshape(-1, len(shape)), np.zeros(1, dtype=np.int64))[0]
            vals, _ = _gather(tensors[p.name], op.operand(p.name), dims, x, bounds)
            add(port_name(PortRole.INPUT, p.name), vals.reshape(rows, shape[-1]))
        for p in fg.inputs:
            if p.role is not Role.STREAM:
                continue
            roots = np.array([l.fus[0] for l in p.lanes], dtype=np.int64)
            x = _iterations(fg, mapping, tile, roots, steps)
            if p.name in chained_operands or pads:
                # a FIFO chain's root also streams what the FUs behind it use later (halo steps, padded
                # root FUs): every element inside the tensor is sent, not only those of the root's own loops;
                # under the map's own schedule a lane's members run other iterations of the padded loop than its root
                vals = _gather_elements(tensors[p.name], op.operand(p.name), dims, x)
            else:
                vals, _ = _gather(tensors[p.name], op.operand(p.name), dims, x, bounds)
            add(port_name(PortRole.INPUT, p.name), vals)
        # the tile's products, accumulated into the running result
        x = _iterations(fg, mapping, tile, coords_all, steps)
        prod = np.ones(x.shape[:2], dtype=np.int64)
        for inp in op.inputs:
            v, _ = _gather(tensors[inp.name], inp, dims, x, bounds)
            prod = prod * v
        _, cidx = _gather(result, op.output, dims, x, bounds)
        before = result.copy()
        valid = cidx[..., 0] >= 0
        np.add.at(result, tuple(cidx[valid].T), prod[valid])
        result = wrap(result, acc_bits)
        if out.role is Role.ACCUMULATE:       # one beat per array row after the tile
            xr = _iterations(fg, mapping, tile, drain_rc.reshape(-1, len(shape)), np.zeros(1, dtype=np.int64))[0]
            xr = waited.shift(xr) if isinstance(waited, _WaitedDrain) else xr
            _, idx = _gather(result, op.output, dims, xr, bounds)
            idx = idx.reshape(drain_rc.shape[0], drain_rc.shape[1], -1)
        else:                              # one beat per step from the reduction terminals
            terms = np.array([l.fus[-1] for l in out.lanes], dtype=np.int64)
            _, idx = _gather(result, op.output, dims, _lane_iterations(fg, mapping, tile, terms, steps), bounds)
        if isinstance(waited, _WaitedDrain):
            idx = waited.index(idx)
        if out.psum_in and not tile.first:
            add(port_name(PortRole.PSUM, out.name), _lookup(before if waited is None else waited.drained, idx))
            record_psum(idx)
        beats = _lookup(result, idx)
        if waited is not None:
            beats = waited.beats(tile, idx, beats)
        elif pads:
            beats = _padded_lanes(fg, mapping, tile, tensors, pads, drain_rc, idx, beats)
        expected.append(beats)
        out_index.append(idx)
        record_out(idx)
    return HostProgram({k: np.concatenate(v, axis=0) for k, v in streams.items()},
                       np.concatenate(expected, axis=0), np.concatenate(out_index, axis=0), result,
                       np.concatenate(psum_source, axis=0) if psum_source else None)


def _lane_iterations(fg: FUGraph, mapping: TileMapping, tile: Tile, terms: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Loop values of each streamed output lane's beats (its terminal FU's), at its lane offset on a padded loop
    skewed along an axis the output is reduced along (its FUs' products wait to that offset, reduce_skew.py)."""
    x = _iterations(fg, mapping, tile, terms, steps)
    pads = {p.loop: p for p in reduced_skews(fg)}
    for loop, pad in pads.items():
        lag = [top[loop] - pad.offset(t) for top, t in zip(lane_offsets(fg), terms.tolist())]
        x[:, :, fg.design.operation.dims.index(loop)] -= np.array(lag, dtype=np.int64)
    return x


class _WaitedDrain:
    """The drains of an output held per FU over skewed loops l outside the tile that it is reduced across
    (reduce_skew.py ``drain_groups``): a group's representative row drains the element of iteration t - O (O_l the
    group's largest offset on each l), summing each member's tile sum of sum(n_l x D_l) tiles before (D_l tiles per
    iteration of l), the other rows 0 (padding). A beat is the partial sum the element's last drain carried plus those
    tile sums (the running result is no partial sum of a round here: a member runs later rounds of an element before
    the representative drains its first); padding beats likewise, from the masked products (0 before the problem's
    first tile). The assembled output is checked against the loop nest independently (verif/golden.py
    ``beats_exact``)."""

    def __init__(self, fg, mapping, tensors, pads, drain_rc, result):
        self.fg, self.mapping, self.tensors, self.pads, self.drain_rc = fg, mapping, tensors, pads, drain_rc
        outer, trips = list(mapping.outer_dims), mapping.trips()
        per = {p.loop: math.prod(trips[d] for d in outer[outer.index(p.loop) + 1:]) for p in drain_skews(fg)}
        check_drain_waits(fg.design, fg.dataflow, mapping)      # map_problem checks it too
        self.groups = tuple((rep, tuple((s, sum(n * per[loop] for loop, n in w)) for s, w in members))
                            for rep, members in drain_groups(fg))
        self.others = {s for rep, members in self.groups for s, _ in members if s != rep}
        self.lead = rep_waits(drain_groups(fg))        # representatives that wait (several loops)
        self.members = accumulated_fus(fg)             # a result register sums its chain's or tree's FUs
        self.drained = np.zeros_like(result)
        self.sums: list = []          # per tile: FU coordinate -> its masked tile sum

    def shift(self, x: np.ndarray) -> np.ndarray:
        """The drained rows' loop values ``x`` (one per drain_rc entry) with each waiting representative's moved to
        its group's element: iteration t - O_l of each l rather than its own t - offset_l(rep)."""
        x = x.copy()
        dims = self.fg.design.operation.dims
        for i, fu in enumerate(self.drain_rc.reshape(-1, self.drain_rc.shape[-1]).tolist()):
            for loop, n in self.lead.get(tuple(fu), {}).items():
                x[i, dims.index(loop)] -= n
        return x

    def index(self, idx: np.ndarray) -> np.ndarray:
        idx = idx.copy()
        for r, lane in np.ndindex(*idx.shape[:2]):
            if tuple(self.drain_rc[r, lane].tolist()) in self.others:
                idx[r, lane] = -1
        return idx

    def beats(self, tile: Tile, idx: np.ndarray, beats: np.ndarray) -> np.ndarray:
        coords, prod = _masked_products(self.fg, self.mapping, tile, self.tensors, self.pads)
        own = dict(zip(map(tuple, coords.tolist()), prod.sum(axis=0).tolist()))
        self.sums.append({a: sum(own[s] for s in fus) for a, fus in self.members.items()})
        t = len(self.sums) - 1
        total = {rep: (0 if rep in self.lead else self.sums[t][rep])
                 + sum(self.sums[t - n][s] for s, n in members if t >= n) for rep, members in self.groups}
        psum = _lookup(self.drained, idx) if self.fg.output.psum_in and not tile.first else np.zeros_like(beats)
        out = beats.copy()
        for r, lane in np.ndindex(*idx.shape[:2]):
            out[r, lane] = psum[r, lane] + total.get(tuple(self.drain_rc[r, lane].tolist()), 0)
        out = wrap(out, self.fg.acc_width)
        ok = idx[..., 0] >= 0
        self.drained[tuple(idx[ok].T)] = out[ok]
        return out


def _waits_across_tiles(fg: FUGraph) -> bool:
    """Whether a streamed output's products wait across tiles: a skewed loop outside the tile among
    reduce_skew.py ``reduced_skews`` (mappings/tiling.py ``reduced_pads``)."""
    outer = set(fg.dataflow.outer_dims())
    return any(p.loop in outer for p in reduced_skews(fg))


class _WaitedStream:
    """A streamed output whose lanes sum FUs at different tiles of a skewed loop l outside the tile (reduce_skew.py
    ``product_waits``): FU s's product waits (O - offset(s)) iterations of l, D tiles x steps each, so a lane's beat at
    issued step g sums its FUs' masked products of steps g - wait(s) (0 before the problem's first step), plus the
    partial sum its element's last beat carried (the running result is no partial sum of a round here: a member runs
    later rounds of an element before the lane streams its current one). The assembled output is checked against
    the loop nest independently (verif/golden.py ``beats_exact``)."""

    def __init__(self, fg, mapping, tensors, pads, result):
        self.fg, self.mapping, self.tensors, self.pads = fg, mapping, tensors, pads
        self.waits = wait_steps(fg, mapping.trips())
        self.members = lane_members(fg)
        self.drained = np.zeros_like(result)
        self.history: list = []           # per tile: masked products [step, FU], the last ones the waits reach
        self.dropped = 0                  # steps of the tiles dropped from the front of ``history``
        self.reach = max(self.waits.values(), default=0)

    def beats(self, tile: Tile, idx: np.ndarray, beats: np.ndarray) -> np.ndarray:
        coords, prod = _masked_products(self.fg, self.mapping, tile, self.tensors, self.pads)
        self.history.append(prod)
        while len(self.history) > 1 and sum(h.shape[0] for h in self.history[1:-1]) >= self.reach:
            self.dropped += self.history.pop(0).shape[0]     # no wait reaches that tile any more
        past = np.concatenate(self.history, axis=0)
        fu_index = {tuple(s): i for i, s in enumerate(coords.tolist())}
        start = past.shape[0] - prod.shape[0]
        psum = _lookup(self.drained, idx) if self.fg.output.psum_in and not tile.first else np.zeros_like(beats)
        out = psum.copy()
        for b, lane in np.ndindex(*idx.shape[:2]):
            g = start + b
            out[b, lane] += sum(int(past[g - self.waits.get(f, 0), fu_index[f]]) for f in self.members[lane]
                                if self.dropped + g >= self.waits.get(f, 0))
        out = wrap(out, self.fg.acc_width)
        ok = idx[..., 0] >= 0
        self.drained[tuple(idx[ok].T)] = out[ok]
        return out


def _masked_products(fg: FUGraph, mapping: TileMapping, tile: Tile, tensors: dict, pads: tuple[RowPad, ...]):
    """(FU coordinates, products [step, FU]) of a ``schedule: map`` tile: the elements each FU receives (by tensor
    index, stationary inputs as loaded), masked outside its own L positions of any padded loop."""
    op, shape = fg.design.operation, fg.design.shape
    dims = op.dims
    coords = np.array(list(np.ndindex(*shape)), dtype=np.int64)
    x = _iterations(fg, mapping, tile, coords, np.arange(mapping.steps))
    prod = np.ones(x.shape[:2], dtype=np.int64)
    for p in fg.inputs:
        operand = op.operand(p.name)
        prod = prod * (_gather(tensors[p.name], operand, dims, x, mapping.bound)[0] if p.role is Role.STATIONARY
                       else _gather_elements(tensors[p.name], operand, dims, x))
    for pad in pads:
        lvals = x[..., dims.index(pad.loop)]
        prod = np.where((lvals >= 0) & (lvals < mapping.bound[pad.loop]), prod, 0)
    return coords, prod


def _padded_lanes(fg: FUGraph, mapping: TileMapping, tile: Tile, tensors: dict, pads: tuple[RowPad, ...],
                  drain_rc: np.ndarray,
                  idx: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Drain beats of a ``schedule: map`` tile with the padded lanes (FUs past a ragged spatial loop's bound) set to
    what those FUs accumulate. The map's reuse feeds them real elements over wires and FIFOs (I's wire along p on 3x2,
    where W does not use p), so their sums are not zero as under the tiled builds; they are the products of the
    elements each FU receives (by tensor index, stationary inputs as loaded), masked outside its own L positions of
    any padded loop, summed over the tile and the FUs an output lane reduces (docs/dataflows.md "Skewed maps")."""
    coords, prod = _masked_products(fg, mapping, tile, tensors, pads)
    if fg.output.role is not Role.ACCUMULATE:
        return _padded_stream_beats(fg, coords, prod, idx, beats, wait_steps(fg, mapping.trips()))
    prod = prod.sum(axis=0)
    reduced = {a for a, _ in fg.output.reuse_axes} | set(fg.output.tree_axes)
    canon = [tuple(0 if a in reduced else v for a, v in enumerate(s)) for s in coords.tolist()]
    out = beats.copy()
    for b in range(idx.shape[0]):
        for lane in range(idx.shape[1]):
            if idx[b, lane, 0] < 0:
                c = tuple(drain_rc[b, lane].tolist())
                out[b, lane] = sum(int(v) for v, cs in zip(prod, canon) if cs == c)
    return wrap(out, fg.acc_width)


def _padded_stream_beats(fg: FUGraph, coords: np.ndarray, prod: np.ndarray, idx: np.ndarray,
                         beats: np.ndarray, waits: dict) -> np.ndarray:
    """A streamed output under the map's own schedule: a lane whose step is padding (a position outside its FUs' own
    L positions of the padded loop, or an FU past a ragged spatial bound) carries that step's masked products of the
    FUs it reduces (zero at masked positions; real elements over the map's wires on padded FUs), each from the step
    its wait (``waits``, steps per FU, reduce_skew.py) reaches back to (zero before the tile: masked positions)."""
    fu_index = {tuple(s): i for i, s in enumerate(coords.tolist())}
    out = beats.copy()
    members = lane_members(fg)
    for b, lane in zip(*np.nonzero(idx[..., 0] < 0)):
        out[b, lane] = sum(int(prod[b - waits.get(f, 0), fu_index[f]]) for f in members[lane] if b >= waits.get(f, 0))
    return wrap(out, fg.acc_width)


def _gather_elements(tensor: np.ndarray, operand, dims, x: np.ndarray) -> np.ndarray:
    """Values of ``operand`` at iterations x by tensor index: zero only where the index leaves the tensor."""
    idx = x @ operand.access_matrix(dims).T + operand.access_offset()
    inside = np.all((idx >= 0) & (idx < np.array(tensor.shape)), axis=-1)
    safe = np.where(inside[..., None], idx, 0)
    return np.where(inside, tensor[tuple(np.moveaxis(safe, -1, 0))], 0)


def _lookup(tensor: np.ndarray, idx: np.ndarray) -> np.ndarray:
    ok = idx[..., 0] >= 0
    safe = np.where(ok[..., None], idx, 0)
    return np.where(ok, tensor[tuple(np.moveaxis(safe, -1, 0))], 0)
