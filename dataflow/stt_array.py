"""Skewed space-time maps (hexagonal / diagonal systolic arrays): interconnect, tiling and schedule.

An ``stt`` dataflow ``[s; t] = T x`` whose spatial rows mix loops (``s0 = i - k, s1 = j - k, t = i + j + k``,
the Kung-Leiserson hexagonal array that TensorLib and AutoSA generate) has no tiled TS->I form: T need not
be unimodular and FU coordinates start below zero. Each operand travels along its hop (dataflow/reuse.py
``stt_hops``): GEMM's A along axis 1, B along axis 0 and the partial sums of C along the diagonal (-1, -1).

How it becomes hardware (rtlgen/stt_array.py builds exactly this):

* **Chains.** For each operand with hop (ds, dt), the array is cut into maximal chains s, s + ds, s + 2 ds, ...
  that run from boundary to boundary of the rectangle. A chain's root is fed by one memory lane; each hop
  is dt registers (dt = 0: a wire). The output's chains are partial-sum chains: FU s computes
  ``c_out = c_in + prod(inputs)`` with c_in the psum lane (root) or its predecessor's c_out delayed by dt;
  the chain's last FU drives one output lane. An operand the map keeps on one FU (ds = 0) gets a ring of
  dt registers at every FU and one lane per FU that adds to it (the host sends new - held to load, - held
  to clear).
* **Lock step.** The whole datapath advances one *slot* when every input stream has a beat and the output
  can take one (one enable; a bubble or a stall freezes everything). In every slot every lane carries a
  value: the element that enters the chain then, or zero. Because T is injective, zero fills the gaps and
  each input is reused along one loop, a product is nonzero only at a real iteration, where the chains
  deliver exactly its inputs and partial sum: idle FUs and FUs on the chains' extensions add zero.
* **Tiling.** A problem larger than the array runs in boxes of iterations (``b_l`` per loop) whose image
  ``S x`` spans at most the array: ``sum_l |S[a, l]| (b_l - 1) + 1 <= P_a`` on every axis a; coordinates
  are offset so the box's image starts at FU 0. Boxes are the tile loops in the dataflow's ``order``
  (innermost fastest); the last box of a loop is ragged (zero-filled). Box m starts ``m * period`` slots
  in; a box spans ``span`` slots from its first entering element to its last leaving output (or ring
  clear). The period is the smallest at which boxes never meet (``_period``); a partial sum of an output
  block visited again enters with the later visit's psum beats, after it left. The box is chosen per
  problem: the one with the fewest total slots (``choose_box``).
* **Clock target.** Registers behind every multiplier when the delay table's FU path exceeds the period;
  the partial sums then run that many slots later (``product_stages``).

Cycle contract (rtlgen/stt_array.py, sim/array_model.py): cycle 0 is the command handshake; slot n
(0-based) fires at cycle n + 1 when the streams never wait; its output beat leaves in the same cycle; done
is high in the cycle after the last slot. Total: ``(boxes - 1) * period + span + 1`` cycles.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

from .ir import CommandLayout, Direction, Port, PortRole, command_layout, port_name
from .reuse import SttHop

__all__ = ["SttNetwork", "SttTiling", "CompiledSttArray", "derive_stt_network", "choose_box", "stt_tiling",
           "compile_stt_array"]

Coord = tuple[int, ...]


@dataclass(frozen=True)
class SttNetwork:
    """The chains of every operand on the full array (independent of the problem and of the box)."""

    design: Design
    dataflow: Dataflow
    hops: tuple[SttHop, ...]                         # inputs in operation order, then the output
    chains: tuple[tuple[tuple[Coord, ...], ...], ...]  # per hop: chains (root first), ordered by root
    product_stages: int = 0           # registers behind each multiplier (clock target): partial sums run this late
    carrier: str | None = None        # the operand whose chain carries each line's validity tag (None: zero fill suffices)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.design.shape

    @property
    def space(self) -> np.ndarray:
        return np.array(self.dataflow.stt, dtype=np.int64)[:-1]

    @property
    def time(self) -> np.ndarray:
        return np.array(self.dataflow.stt, dtype=np.int64)[-1]

    @property
    def inputs(self) -> tuple[SttHop, ...]:
        return self.hops[:-1]

    @property
    def output(self) -> SttHop:
        return self.hops[-1]

    @property
    def acc_width(self) -> int:
        return self.design.acc_type.bits

    @property
    def tag_field_bits(self) -> int:
        """Bits of one field (lo or hi) of a validity tag: chain positions 0 .. longest chain."""
        return max(len(c) for c in self.chains_of(self.carrier)).bit_length() if self.carrier else 0

    def hop(self, operand: str) -> SttHop:
        return self.hops[[h.name for h in self.hops].index(operand)]

    def lanes(self, operand: str) -> int:
        return len(self.chains_of(operand))

    def chains_of(self, operand: str) -> tuple[tuple[Coord, ...], ...]:
        return self.chains[[h.name for h in self.hops].index(operand)]

    @cached_property
    def _positions(self) -> dict:
        """operand -> (lane, position, chain length) arrays indexed by FU coordinate."""
        out = {}
        for h, chains in zip(self.hops, self.chains):
            lane = np.zeros(self.shape, dtype=np.int64)
            pos = np.zeros(self.shape, dtype=np.int64)
            length = np.zeros(self.shape, dtype=np.int64)
            for li, chain in enumerate(chains):
                for p, s in enumerate(chain):
                    lane[s], pos[s], length[s] = li, p, len(chain)
            out[h.name] = (lane, pos, length)
        return out

    def position(self, operand: str):
        return self._positions[operand]

    def describe(self) -> list[str]:
        dims = self.design.operation.dims
        lines = []
        for h in self.hops:
            chains = self.chains_of(h.name)
            longest = max(len(c) for c in chains)
            if is_direct(h):
                lines.append(f"{h.name}: no reuse (each element used by one iteration): fed to its FU in the slot of its "
                             f"use, {len(chains)} lane(s), one per FU" + ("; every FU drives an output lane" if h.is_output
                                                                         else ""))
                continue
            if h.stationary:
                lines.append(f"{h.describe(dims)}; {len(chains)} lane(s), one per FU, each adding to its ring "
                             "(load: new - held, clear: - held)" + ("; every FU drives an output lane" if h.is_output else ""))
                continue
            end = "; leaves at the chain's last FU (one output lane per chain)" if h.is_output else ""
            extra = len(_null_dims(self.design, self.design.operation.operand(h.name))) - 1
            if extra > 0:
                end += (f"; also reused along {extra} other direction(s), " +
                        ("one line per element in a box (other visits come back as partial sums)" if h.is_output
                         else "not exploited: the element is streamed again for every line"))
            lines.append(f"{h.describe(dims)}; {len(chains)} chain(s) of up to {longest} FU(s), "
                         f"{len(chains)} memory lane(s) at their roots{end}")
        if self.carrier:
            lines.append(f"validity: zero fill does not pin products to the box here, so each {self.carrier} line "
                         f"enters with a tag (lo, hi) of {2 * self.tag_field_bits} bits on lane {tag_port(self.carrier)}: "
                         f"the chain positions of its real iterations; FU p adds its product only when lo <= p < hi")
        return lines


def derive_stt_network(design: Design, df: Dataflow, product_stages: int = 0) -> SttNetwork:
    """Cut the array into each operand's chains along its hop (reuse analysis: dataflow/reuse.py).

    ``product_stages`` registers behind every multiplier delay each product by as many slots; the partial
    sums then run that many slots behind the inputs (their psum beats enter and their outputs leave later),
    which keeps every product meeting the partial sum of its own iteration."""
    hops = _stt_hops(design, df)
    shape = design.shape
    inside = lambda s: all(0 <= v < e for v, e in zip(s, shape))
    chains = []
    for h in hops:
        mine = []
        if h.stationary:          # a ring at every FU: the FU is its own chain, loaded through its own lane
            chains.append(tuple((s,) for s in itertools.product(*[range(e) for e in shape])))
            continue
        for s in itertools.product(*[range(e) for e in shape]):
            if inside(tuple(a - d for a, d in zip(s, h.ds))):
                continue                                  # not a root
            chain, cur = [], s
            while inside(cur):
                chain.append(cur)
                cur = tuple(a + d for a, d in zip(cur, h.ds))
            mine.append(tuple(chain))
        chains.append(tuple(mine))
    return SttNetwork(design, df, hops, tuple(chains), int(product_stages), _carrier(df, hops))


def is_direct(h: SttHop) -> bool:
    """An operand element used by one iteration only (A_X has full column rank): no reuse, so it is fed
    straight to its FU through a lane per FU in the slot of its use (an output: leaves the same slot)."""
    return not any(h.dx)


def _reuse_direction(amat: np.ndarray, space: np.ndarray, time: np.ndarray) -> np.ndarray:
    """The direction dx (A_X dx = 0) along which an operand's element travels. One reuse line: its primitive
    vector. Several: the element is re-fed once per line along one of them (the host streams it again for
    every line; an output is kept to one line per element per box, ``_single_line``): a chain is preferred
    to a ring (a ring needs a lane per FU), then the shortest hop, then the fewest registers. None: zero."""
    from archgen.arch.mapping_check import integer_null_space
    n = amat.shape[1]
    rank = int(np.linalg.matrix_rank(amat)) if amat.size else 0
    if rank == n:
        return np.zeros(n, dtype=np.int64)
    if rank == n - 1:
        return np.array(integer_null_space(amat)[0], dtype=np.int64)
    for reach in (2, 4, 8, 16):         # small integer directions first (the null space is a lattice of rank >= 2)
        cands = []
        for v in itertools.product(range(-reach, reach + 1), repeat=n):
            v = np.array(v, dtype=np.int64)
            if not v.any() or np.any(amat @ v) or math.gcd(*map(int, v)) != 1 or v[np.flatnonzero(v)[0]] < 0:
                continue
            ds, dt = space @ v, abs(int(time @ v))
            cands.append(((not ds.any(), int(np.abs(ds).sum()), dt, int(np.abs(v).sum())), tuple(v.tolist())))
        if cands:
            return np.array(min(cands)[1], dtype=np.int64)
    raise SpecError([problem("operation", "no reuse direction with entries up to 16 was found for an operand "
                             "reused along several directions", amat.tolist())])


def _stt_hops(design: Design, df: Dataflow) -> tuple[SttHop, ...]:
    """dataflow/reuse.py ``stt_hops`` for any access: one line of reuse (the reuse analysis' hop), several
    (``_reuse_direction`` picks the line each element rides) or none (a direct operand, dx = 0)."""
    op = design.operation
    mat = np.array(df.stt, dtype=np.int64)
    space, time = mat[:-1], mat[-1]
    hops = []
    for x in op.inputs + (op.output,):
        dx = _reuse_direction(x.access_matrix(op.dims), space, time)
        ds, dt = space @ dx, int(time @ dx)
        if dt < 0 or (dt == 0 and ds.any() and next(v for v in ds if v) < 0):
            dx, ds, dt = -dx, -ds, -dt
        hops.append(SttHop(x.name, tuple(int(v) for v in dx), tuple(int(v) for v in ds), dt, x is op.output))
    return tuple(hops)


def zero_fill_exact(hops) -> bool:
    """Whether zero-filled lanes alone make every product outside a real iteration zero: an input element is on
    its chain at (s, t) exactly when T^-1 [s; t] lies on the extension of one of its lines through the box, so
    the product is pinned to the box when some input is direct (present at its iteration only), or when every
    input moves along one loop and not all along the same one (the cylinders box + Z e_l then meet in the box)."""
    ins = [h for h in hops if not h.is_output]
    if any(is_direct(h) for h in ins):
        return True
    loops = set()
    for h in ins:
        if sum(map(abs, h.dx)) != 1:
            return False
        loops.add(int(np.argmax(np.abs(h.dx))))
    return len(loops) >= 2


def _carrier(df: Dataflow, hops) -> str | None:
    """The operand whose lines carry a validity tag (lo, hi): the chain positions of a line's real iterations,
    entering with the line at its root and riding its registers; FU p of the chain adds its product only when
    lo <= p < hi (two comparisons with a constant). Needed when zero fill does not pin products to the box
    (``zero_fill_exact``). The output's partial-sum chain carries it when it moves, else a moving input."""
    if zero_fill_exact(hops):
        return None
    for h in (hops[-1],) + tuple(hops[:-1]):
        if not h.stationary:
            return h.name
    # a guard: the spec check (arch/mapping_check.py stt_move_problems) refuses such a map first
    raise SpecError([problem(f"dataflows.{df.name}.stt", "every operand stays on one FU under this map; the "
                             "validity tag needs one operand that moves across the array", [list(r) for r in df.stt])])


# ------------------------------------------------------------------------------------------------
# tiling

@dataclass(frozen=True)
class SttTiling:
    """A problem on the array: the box, the period between boxes, the tiles in order.

    Box m's slots are its iterations' times ``t = T_t x_local`` shifted so that its first entering element
    enters in slot ``m * period``; its last output leaves in slot ``m * period + span - 1``."""

    network: SttNetwork = field(repr=False, compare=False)
    bound: dict                       # loop -> problem size
    box: dict                         # loop -> box extent
    offset: tuple[int, ...]           # FU = S x_local + offset
    start: int                        # t of the box's first entering element (t = T_t x_local)
    span: int                         # slots from a box's first entering element to its last leaving output
    period: int                       # slots between consecutive boxes' first slots

    @property
    def tile_trips(self) -> dict:
        return {d: -(-self.bound[d] // self.box[d]) for d in self.bound}

    @property
    def n_tiles(self) -> int:
        return math.prod(self.tile_trips.values())

    @property
    def slots(self) -> int:
        return (self.n_tiles - 1) * self.period + self.span

    @property
    def total_cycles(self) -> int:
        """Cycles from the command handshake to done with streams that never wait (the contract above)."""
        return self.slots + 1

    def tiles(self):
        """Tile origins (loop -> first index) in the dataflow's order, innermost fastest."""
        order = self.network.dataflow.order
        trips = self.tile_trips
        for combo in itertools.product(*[range(trips[d]) for d in order]):
            yield {d: c * self.box[d] for d, c in zip(order, combo)}

    def macs(self) -> int:
        return math.prod(self.bound.values())


def _box_points(dims, box) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(box[d]) for d in dims], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=-1).astype(np.int64)


def _offset(space: np.ndarray, dims, box) -> tuple[int, ...]:
    return tuple(int(-sum(min(0, c) * (box[d] - 1) for c, d in zip(row, dims))) for row in space)


@dataclass(frozen=True)
class _BoxGeometry:
    """Where one full box's elements travel, in slots relative to its first entering element."""

    start: int                        # t (= T_t x_local) of the first entering element
    span: int                         # slots until its last output has left
    entries: tuple                    # per hop: bool [lanes, slots]: a real element enters that lane then
                                      # (stationary hops: bool [FUs, slots], the slots its ring is used)
    presence: tuple                   # per input hop: bool [FUs, slots]: a real element is at that FU then
    psum_gap: int                     # max over output elements of (leave - enter) slots

    @cached_property
    def bad_shifts(self) -> frozenset[int]:
        """Box distances (slots) at which two boxes would meet (``_period``)."""
        bad: set[int] = set()
        for e in self.entries:
            bad |= _shifts(e)
        for i, a in enumerate(self.presence):
            for b in self.presence[i + 1:]:
                bad |= _shifts(a, b)
        return frozenset(bad)


def _geometry(net: SttNetwork, box: dict) -> _BoxGeometry:
    dims = net.design.operation.dims
    pts = _box_points(dims, box)
    ext = np.array([box[d] for d in dims])
    off = np.array(_offset(net.space, dims, box))
    t = pts @ net.time
    flat_fu = np.ravel_multi_index(tuple((pts @ net.space.T + off).T), net.shape)
    per_hop = []
    for h in net.hops:
        lane, pos, length = (a.ravel()[flat_fu] for a in net.position(h.name))
        first, last = line_ends(pts, h.dx, ext)
        late = net.product_stages if h.is_output else 0
        enter = t[first] - pos[first] * h.dt + late
        if h.stationary:        # held from the first use; its ring is cleared dt slots after the last use
            leave = t[last] + late + h.dt
        elif h.is_output:
            leave = t[last] + (length[last] - 1 - pos[last]) * h.dt + late
        else:
            leave = t[first] + (length[first] - 1 - pos[first]) * h.dt
        exit_ = t[last] + late + (0 if h.stationary else (length[last] - 1 - pos[last]) * h.dt)
        if h.is_output:         # pair each output line's entry with its exit through the element it carries
            out = net.design.operation.output
            key = lambda sel: np.lexsort((pts[sel] @ out.access_matrix(dims).T).T[::-1])
            enter, exit_ = enter[key(first)], exit_[key(last)]
            lane = lane.copy()
            lane[np.nonzero(first)[0]] = lane[first][key(first)]
        per_hop.append((h, lane[first], enter, leave, exit_))
    start = min(int(e.min()) for _, _, e, _, _ in per_hop)
    span = max(int(lv.max()) for h, _, _, lv, _ in per_hop if h.is_output or h.stationary) - start + 1
    horizon = max(int(lv.max()) for _, _, _, lv, _ in per_hop) - start + 1
    entries, presence = [], []
    for h, lanes, enter, _leave, _exit in per_hop:
        if h.stationary:        # a ring holds one element at a time: its uses may not meet another box's
            pres = np.zeros((math.prod(net.shape), horizon), dtype=bool)
            late = net.product_stages if h.is_output else 0
            pres[flat_fu, t - start + late] = True
            entries.append(pres)
            if not h.is_output:
                presence.append(pres)
            continue
        grid = np.zeros((net.lanes(h.name), horizon), dtype=bool)
        grid[lanes, enter - start] = True
        entries.append(grid)
        if h.is_output:
            continue
        pres = np.zeros((math.prod(net.shape), horizon), dtype=bool)
        chains = net.chains_of(h.name)
        for l, e in zip(lanes.tolist(), (enter - start).tolist()):
            for g, s in enumerate(chains[l]):
                pres[np.ravel_multi_index(s, net.shape), e + g * h.dt] = True
        presence.append(pres)
    _h, _lanes, enter, _leave, exit_ = per_hop[-1]
    gap = int((exit_ - enter).max())
    return _BoxGeometry(start, span, tuple(entries), tuple(presence), gap)


def line_ends(pts: np.ndarray, dx, ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last): the box points where a line along dx enters and leaves the box (dx = 0: every point)."""
    dx = np.asarray(dx, dtype=np.int64)
    if not dx.any():
        every = np.ones(len(pts), dtype=bool)
        return every, every
    first = ~np.all((pts - dx >= 0) & (pts - dx < ext), axis=1)
    last = ~np.all((pts + dx >= 0) & (pts + dx < ext), axis=1)
    return first, last


def line_ids(pts: np.ndarray, dx, ext: np.ndarray) -> np.ndarray:
    """For each box point, the index (into ``pts``, C order over ``ext``) of its line's first point."""
    dx = np.asarray(dx, dtype=np.int64)
    if not dx.any():
        return np.arange(len(pts))
    back = np.full(len(pts), np.iinfo(np.int64).max // 4, dtype=np.int64)
    for li, c in enumerate(dx.tolist()):
        if c > 0:
            back = np.minimum(back, pts[:, li] // c)
        elif c < 0:
            back = np.minimum(back, (ext[li] - 1 - pts[:, li]) // -c)
    start = pts - back[:, None] * dx
    return np.ravel_multi_index(tuple(start.T), tuple(int(e) for e in ext))


def _single_line(net: SttNetwork, box: dict) -> bool:
    """Each output element of the box lies on one line along the output's dx (an output reused along several
    directions: its partial sum rides one chain per box; other visits come back as partial sums)."""
    out = net.output
    oper = net.design.operation.output
    if len(_null_dims(net.design, oper)) <= 1:
        return True
    dims = net.design.operation.dims
    pts = _box_points(dims, box)
    ext = np.array([box[d] for d in dims])
    keys = pts @ oper.access_matrix(dims).T
    lid = line_ids(pts, out.dx, ext)
    pairs = np.unique(np.column_stack([keys, lid]), axis=0)
    return len(pairs) == len(np.unique(keys, axis=0))


def _null_dims(design: Design, operand) -> list:
    amat = operand.access_matrix(design.operation.dims)
    n = amat.shape[1]
    return [0] * (n - int(np.linalg.matrix_rank(amat)))


def _shifts(a: np.ndarray, b: np.ndarray | None = None) -> set[int]:
    """The shifts D >= 1 at which two boxes D slots apart meet: ``a`` true in row r, column c of one box and
    ``b`` (default ``a``) true in row r, column c' of the other, with c - c' = +-D (both boxes' order)."""
    b = a if b is None else b
    rows_a, cols_a = np.nonzero(a)
    rows_b, cols_b = np.nonzero(b)
    out: set[int] = set()
    split_a = np.split(cols_a, np.flatnonzero(np.diff(rows_a)) + 1) if len(rows_a) else []
    keys_a = rows_a[np.r_[0, np.flatnonzero(np.diff(rows_a)) + 1]] if len(rows_a) else []
    by_b = {}
    if len(rows_b):
        for r, cols in zip(rows_b[np.r_[0, np.flatnonzero(np.diff(rows_b)) + 1]],
                           np.split(cols_b, np.flatnonzero(np.diff(rows_b)) + 1)):
            by_b[int(r)] = cols
    for r, cols in zip(keys_a, split_a):
        other = by_b.get(int(r))
        if other is not None:
            d = np.abs(np.subtract.outer(cols, other)).ravel()
            out.update(int(v) for v in np.unique(d[d > 0]))
    return out


def _period(geo: _BoxGeometry, revisit: int | None) -> int:
    """The smallest period P such that boxes P apart never meet: no lane takes real elements of two boxes in
    one slot (a chain is a shift register, so no register then holds two boxes' elements), no FU sees real
    elements of two inputs from different boxes in one slot (their product would land on some partial
    sum), and an output block visited again ``revisit`` boxes later reads its partial sum after it left."""
    horizon = max(e.shape[1] for e in geo.entries)
    lo = 1 if revisit is None else -(-(geo.psum_gap + 1) // revisit)
    bad = geo.bad_shifts
    for period in range(max(1, lo), horizon + 1):
        if not any(k * period in bad for k in range(1, horizon // period + 1)):
            return period
    return max(horizon, lo)


def _revisit_distance(net: SttNetwork, box: dict, bound: dict) -> int | None:
    """Boxes between consecutive visits of one output block (None: every block is visited once)."""
    order = net.dataflow.order
    out = net.design.operation.output
    trips = {d: -(-bound[d] // box[d]) for d in order}
    dists = [math.prod(trips[e] for e in order[i + 1:]) for i, d in enumerate(order)
             if not out.uses(d) and trips[d] > 1]
    return min(dists) if dists else None


def _box_limits(net: SttNetwork, bound: dict) -> dict:
    """Largest box extent per loop that one axis allows on its own (the span rule with the others at 1)."""
    dims = net.design.operation.dims
    lim = {}
    for li, d in enumerate(dims):
        cap = bound[d]
        for a, row in enumerate(net.space):
            if row[li]:
                cap = min(cap, (net.shape[a] - 1) // abs(int(row[li])) + 1)
        lim[d] = max(1, cap)
    return lim


def _fits(net: SttNetwork, box: dict) -> bool:
    dims = net.design.operation.dims
    return all(sum(abs(int(c)) * (box[d] - 1) for c, d in zip(row, dims)) + 1 <= e
               for row, e in zip(net.space, net.shape))


@lru_cache(maxsize=4096)
def _geometry_of(net: SttNetwork, box: tuple) -> _BoxGeometry:
    return _geometry(net, dict(box))


def _fu_load(net: SttNetwork, box: dict) -> int:
    """Most iterations of one box on one FU: they lie on a line along the null vector v of the spatial rows,
    which meets the box in at most min over loops with v_l != 0 of ceil(b_l / |v_l|) points."""
    from archgen.arch.mapping_check import integer_null_space
    (v,) = integer_null_space(net.space)
    return min(-(-box[d] // abs(c)) for c, d in zip(v, net.design.operation.dims) if c)


def _evaluate(net: SttNetwork, box: dict, bound: dict) -> tuple[int, int, _BoxGeometry]:
    """(total slots, period, geometry) of a box."""
    geo = _geometry_of(net, tuple(sorted(box.items())))
    period = _period(geo, _revisit_distance(net, box, bound))
    tiles = math.prod(-(-bound[d] // box[d]) for d in box)
    return (tiles - 1) * period + geo.span, period, geo


def choose_box(net: SttNetwork, bound: dict) -> dict:
    """The box with the fewest total slots among the boxes that fit the array; candidate extents per loop
    are the smallest ones for each tile count (ceil(N / q)). A lower bound prunes the exact evaluations:
    an FU does one iteration per slot, so the tiles need at least tiles x (the most iterations one FU runs
    in a box) slots, and one box at least its own time span. Ties go to the larger box, then to the first
    in loop order."""
    return dict(_choose_box(net, tuple((d, int(bound[d])) for d in net.design.operation.dims)))


@lru_cache(maxsize=1024)
def _choose_box(net: SttNetwork, bound_items: tuple) -> tuple:
    """choose_box, cached per network and problem size."""
    bound = dict(bound_items)
    dims = net.design.operation.dims
    lim = _box_limits(net, bound)
    # a loop no spatial row reads runs whole inside the box: splitting it only repeats the fill and drain
    free = {d for li, d in enumerate(dims) if not net.space[:, li].any()}
    if len(_null_dims(net.design, net.design.operation.output)) > 1:
        free = set()            # one line per output element may need a loop split to 1
    cands = [[bound[d]] if d in free else
             [b for b in range(1, lim[d] + 1) if b == -(-bound[d] // -(-bound[d] // b))]   # b = ceil(N / q)
             for d in dims]
    n_fus = math.prod(net.shape)
    scored = []
    for combo in itertools.product(*cands):
        box = dict(zip(dims, combo))
        if not _fits(net, box) or not _single_line(net, box):
            continue
        tiles = math.prod(-(-bound[d] // box[d]) for d in dims)
        span = sum(abs(int(c)) * (box[d] - 1) for c, d in zip(net.time, dims)) + 1
        lower = max(tiles * _fu_load(net, box), -(-tiles * math.prod(combo) // n_fus), span)
        scored.append((lower, tuple(-v for v in combo), box))
    scored.sort(key=lambda r: (r[0], r[1]))
    best = None
    for lower, neg, box in scored:
        if best is not None and lower > best[0]:
            break
        total = _evaluate(net, box, bound)[0]
        if best is None or (total, neg) < (best[0], best[1]):
            best = (total, neg, box)
    return tuple(best[2].items())


def stt_tiling(net: SttNetwork, bound: dict, box: dict | None = None, period: int | None = None) -> SttTiling:
    """The tiling of problem ``bound`` (loop -> size): the given box (checked) or ``choose_box``'s; the given
    period (a run-time programmable build's, dataflow/stt_command.py: the caller checks it is collision-free
    for this problem) or the smallest one for this problem."""
    dims = net.design.operation.dims
    bound = {d: int(bound[d]) for d in dims}
    if box is None:
        box = choose_box(net, bound)
    else:
        box = {d: int(box[d]) for d in dims}
        if not _fits(net, box) or any(box[d] < 1 for d in dims) or not _single_line(net, box):
            spans = [sum(abs(int(c)) * (box[d] - 1) for c, d in zip(row, dims)) + 1 for row in net.space]
            raise SpecError([problem("box", f"the image of this box spans {spans} FUs, the array is "
                                     f"{list(net.shape)}; every box extent must be >= 1 and fit", box)])
    _total, best, geo = _evaluate(net, box, bound)
    return SttTiling(net, bound, box, _offset(net.space, dims, box), geo.start, geo.span,
                     best if period is None else int(period))


# ------------------------------------------------------------------------------------------------
# compile

@dataclass(frozen=True)
class CompiledSttArray:
    """What the RTL generator (rtlgen/stt_array.py), the model and the host program need about a skewed
    stt array. The hardware does not depend on the problem: the command carries the number of slots."""

    design: Design
    dataflow: Dataflow
    network: SttNetwork = field(repr=False, compare=False)
    ports: tuple[Port, ...]
    command: CommandLayout
    target: str = "asic"
    key: str = ""
    clock_period_ns: float | None = None
    critical_path_ns: float = 0.0     # estimated register-to-register path with the product stages (delay table)

    @property
    def pipeline(self) -> bool:
        return self.clock_period_ns is not None

    @property
    def fu_graph(self) -> SttNetwork:
        return self.network

    def port(self, name: str) -> Port:
        return next(p for p in self.ports if p.name == name)

    @property
    def stream_ports(self) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.role in (PortRole.INPUT, PortRole.PSUM, PortRole.OUTPUT))

    @property
    def output_port(self) -> Port:
        return next(p for p in self.ports if p.role is PortRole.OUTPUT)

    @property
    def psum_port(self) -> Port:
        return next(p for p in self.ports if p.role is PortRole.PSUM)


def tag_port(operand: str) -> str:
    """The stream of validity tags that rides the chains of ``operand`` (``SttNetwork.carrier``)."""
    return f"tag_{operand}"


def compile_stt_array(design: Design, df: Dataflow, target: str = "asic", pipeline: bool = True) -> CompiledSttArray:
    """The skewed array of ``df``; pipelined for the spec's clock (registers behind the multipliers, from the
    delay table ``target``) unless ``pipeline=False``."""
    return _compile(design, df, str(target), 1e3 / design.clock_mhz if pipeline else None)


def _path_ns(table, in_bits: int, acc_bits: int, adders: int, stages: int, mux_ns: float = 0.0) -> float:
    """Longest register-to-register path of an FU: the last of ``stages + 1`` equal parts of the product (with
    ``mux_ns`` of operand muxes in front of it, a fused design's), then the ``adders`` partial-sum adders that
    run without a register between them (a chain with dt = 0)."""
    mul = (table.multiplier_ns(in_bits) + mux_ns) / (stages + 1)
    return table.clk_to_q_ns + mul + adders * table.adder_ns(acc_bits) + table.setup_ns


def _product_stages(net: SttNetwork, target: str, period: float | None, mux_ns: float = 0.0) -> tuple[int, float]:
    """Registers behind each multiplier for the clock (0 without a target), and the estimated path. When the
    adders and register overheads alone exceed the period no number of stages helps: none are added and the
    path is reported as it is."""
    from .delays import DelayTable
    table = DelayTable.load(target)
    design = net.design
    in_bits = max(design.type_of[h.name].bits for h in net.inputs)
    adders = 1 if net.output.dt else max(len(c) for c in net.chains_of(net.output.name))
    path = lambda k: _path_ns(table, in_bits, design.acc_type.bits, adders, k, mux_ns)   # noqa: E731
    product = table.multiplier_ns(in_bits) + mux_ns
    stages, rest = 0, path(0) - product      # the path without the product
    if period is not None and path(0) > period and rest < period:
        stages = math.ceil(product / (period - rest) - 1e-9) - 1
    return stages, path(stages)


@lru_cache(maxsize=64)
def _compile(design: Design, df: Dataflow, target: str, period: float | None) -> CompiledSttArray:
    stages, path = _product_stages(derive_stt_network(design, df), target, period)
    net = derive_stt_network(design, df, stages)
    types = design.type_of
    command = command_layout(())
    ports = [Port("cmd", Direction.IN, PortRole.COMMAND, command.size)]
    for h in net.inputs:
        t = types[h.name]
        ports.append(Port(port_name(PortRole.INPUT, h.name), Direction.IN, PortRole.INPUT, t.bits, net.lanes(h.name),
                          h.name, t.signed))
    if net.carrier:             # validity tags (lo, hi) ride the carrier's chains: one lane per chain root
        # operand = the port's own name: its beats are not a tensor's elements (the host or a controller makes them)
        ports.append(Port(tag_port(net.carrier), Direction.IN, PortRole.INPUT, 2 * net.tag_field_bits,
                          net.lanes(net.carrier), tag_port(net.carrier), False))
    out, acc = net.output, design.acc_type
    ports.append(Port(port_name(PortRole.PSUM, out.name), Direction.IN, PortRole.PSUM, acc.bits, net.lanes(out.name),
                      out.name, acc.signed))
    ports.append(Port(port_name(PortRole.OUTPUT, out.name), Direction.OUT, PortRole.OUTPUT, acc.bits,
                      net.lanes(out.name), out.name, acc.signed))
    ports += [Port("done", Direction.OUT, PortRole.STATUS, 1, stream=False),
              Port("busy", Direction.OUT, PortRole.STATUS, 1, stream=False)]
    key = hashlib.sha256(repr((design, df, target, period, "stt")).encode()).hexdigest()
    return CompiledSttArray(design, df, net, tuple(ports), command, target, key, period, path)


def fused_product_stages(compiled: CompiledSttArray, mux_ns: float) -> int:
    """Registers behind every multiplier the map needs for the clock with ``mux_ns`` of operand muxes in front
    of the multiplier (a fused design, dataflow/fusion.py)."""
    return _product_stages(derive_stt_network(compiled.design, compiled.dataflow), compiled.target,
                           compiled.clock_period_ns, mux_ns)[0]


def with_product_stages(compiled: CompiledSttArray, stages: int, mux_ns: float = 0.0) -> CompiledSttArray:
    """``compiled`` with ``stages`` registers behind every multiplier (a fused design's shared multipliers,
    dataflow/fusion.py, with ``mux_ns`` of operand muxes in front): the partial sums run that many slots
    later; box period and span follow."""
    import dataclasses
    if stages == compiled.network.product_stages and not mux_ns:
        return compiled
    from .delays import DelayTable
    net = derive_stt_network(compiled.design, compiled.dataflow, stages)
    table = DelayTable.load(compiled.target)
    in_bits = max(compiled.design.type_of[h.name].bits for h in net.inputs)
    adders = 1 if net.output.dt else max(len(c) for c in net.chains_of(net.output.name))
    path = _path_ns(table, in_bits, compiled.design.acc_type.bits, adders, stages, mux_ns)
    key = hashlib.sha256(repr((compiled.key, "stages", stages, mux_ns)).encode()).hexdigest()
    return dataclasses.replace(compiled, network=net, key=key, critical_path_ns=path)


def explain_stt(design: Design, df: Dataflow) -> list[str]:
    """``archgen build --explain`` for a skewed stt map: the map, each operand's hop and chains, the tiling."""
    net = derive_stt_network(design, df)
    dims = design.operation.dims
    def fmt(row) -> str:
        text = " ".join(f"{'+' if c > 0 else '-'} {'' if abs(c) == 1 else abs(c)}{d}" for c, d in zip(row, dims) if c)
        return (text[2:] if text.startswith("+ ") else "-" + text[2:]) if text else "0"
    lines = [f"design {design.name}: {design.operation}  array {'x'.join(map(str, design.shape))}  "
             f"dataflow {df.name} (stt form, skewed spatial rows)",
             "  map: " + ", ".join(f"s{a} = {fmt(r)} + offset{a}" for a, r in enumerate(net.space))
             + f", t = {fmt(net.time)}",
             f"  boxes of iterations whose image fits the array, in order (outer->inner) {', '.join(df.order)}; "
             "one lock-step slot per cycle",
             "  reuse (A_X dx = 0; (ds, dt) = T dx):"]
    lines += ["    " + line for line in net.describe()]
    compiled = compile_stt_array(design, df)
    net = compiled.network
    lines.append(f"  clock {design.clock_mhz:g} MHz ({compiled.clock_period_ns:.3f} ns): {net.product_stages} register(s) "
                 f"behind each multiplier, estimated FU path {compiled.critical_path_ns:.3f} ns"
                 + ("" if compiled.critical_path_ns <= compiled.clock_period_ns + 1e-9 else
                    " (does not meet the clock: the partial-sum adders alone are longer)"))
    ref = design.reference_bounds
    t = stt_tiling(net, ref)
    lines.append(f"  reference problem {ref}: box {t.box}, FU offset {list(t.offset)}, {t.span} slots per box, a box "
                 f"every {t.period} slots, "
                 f"{t.n_tiles} box(es), {t.total_cycles} cycles, utilisation "
                 f"{t.macs() / (t.total_cycles * design.n_fus):.3f}")
    return lines
