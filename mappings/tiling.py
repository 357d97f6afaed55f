"""How a problem of any size is tiled onto the array under one dataflow.

A tile is one iteration of the outer loops (tile indices of the spatial loops, and whatever
non-spatial loops the dataflow runs outside the tile); inside it the array runs the inner loops as
``steps`` consecutive steps. Spatial loops whose size is not a multiple of the array extent get a
padded last tile (the DRAM side feeds zeros and drops the padded results).

Delay connections (an input reused by a neighbouring FU one step of an inner loop later,
``A_X M [dt; ds] = 0`` with dt = +1 on that loop and ds one hop along an array axis) add a *halo* to
that loop: every row of it starts with ``halo`` extra iterations in which the FIFO chains fill from their
memory-fed root and every product is masked to zero (:func:`delay_axes`, :attr:`TileMapping.halo`). A FIFO
holds one iteration of the loop: one step on the innermost loop, the product of the trip counts of the
inner loops after it otherwise (:attr:`TileMapping.fifo_depth`, at most ``array.max_fifo_depth``).
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Mapping

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

__all__ = ["TileMapping", "Tile", "map_problem", "DelayAxis", "delay_axes", "delay_halo", "fifo_depth_loops", "fifo_steps",
           "check_fifo_depth", "MEMORY_PORT_COST", "RowPad", "row_lead", "row_pads",
           "outer_pads"]


MEMORY_PORT_COST = 1000      # the arborescence's cost of one memory lane (a register hop or a wire costs ~10)


@dataclass(frozen=True)
class DelayAxis:
    """An input's delay connection along one array axis: FU s + ``step`` (one hop along ``axis``) uses, one
    step of the inner loop ``loop`` later, the element FU s used (``A_X M [dt; ds] = 0`` with dt = +1 on
    ``loop``, ds = ``step`` on ``axis``). ``skew`` = c.ds >= 0 cycles of FU skew between the two FUs.
    ``after``: the inner loops inside ``loop``; one step of ``loop`` is the product of their trip counts
    in array steps (1 when ``loop`` is the tile's innermost loop)."""

    operand: str
    axis: int
    step: int
    loop: str
    skew: int
    after: tuple[str, ...] = ()

    @property
    def buffered(self) -> bool:
        """A FIFO of run-time depth (a buffer of ``array.max_fifo_depth`` entries), not a fixed register."""
        return bool(self.after)


@dataclass(frozen=True)
class RowPad:
    """The map's own schedule of a skew on the inner loop ``loop`` (``dataflows.X.schedule: map``, the map row
    ``loop: "t_loop - sigma.s"``): each row of ``loop`` is issued as L + ``span`` positions and FU s runs iteration
    pos - offset(s) at position pos, offset(s) = halo + early + sigma.s, so its products are masked outside
    offset(s) <= pos < L + offset(s) (the controller's per-offset flags). A lag (sigma_a > 0, ``t_r - s0``) runs the
    FUs further along axis a later; a lead (sigma_a < 0, a positive FU coefficient: ``t_r + s0 - 2`` on 3 rows) runs
    them earlier: it is the lag of axis a read backwards, so FU 0 starts ``early`` (the largest -sigma.s) positions
    after the FUs that run earliest, which start at position ``halo``."""

    loop: str
    sigma: tuple[int, ...]       # per array axis
    halo: int = 0                # positions every FU waits at each row's start: FIFOs fill (``_map_schedule``)
    early: int = 0               # the largest -sigma.s: how far the earliest FU runs ahead of FU 0

    def offset(self, coord) -> int:
        """halo + early + sigma.s: the positions FU ``coord`` runs late in every row of ``loop``."""
        return self.halo + self.early + sum(v * c for v, c in zip(self.sigma, coord))

    def span(self, shape) -> int:
        """Positions a row of ``loop`` runs beyond its L iterations: the halo plus the largest offset difference
        between two FUs (the sum of abs(sigma_a) (extent - 1))."""
        return self.halo + sum(abs(v) * (e - 1) for v, e in zip(self.sigma, shape))

    def offsets(self, shape) -> tuple[int, ...]:
        """The distinct offsets over the array, ascending (one mask flag each)."""
        return tuple(sorted({self.offset(s) for s in itertools.product(*[range(e) for e in shape])}))


def row_lead(sigma, shape) -> int:
    """The largest -sigma.s over an array of ``shape``: how many positions of a row the FUs that a map's positive FU
    coefficients (sigma_a < 0) run early are ahead of FU 0 (0 for lags only); :class:`RowPad`'s ``early``."""
    return sum(max(0, -v) * (e - 1) for v, e in zip(sigma, shape))


def row_pads(design: Design, df: Dataflow) -> tuple[RowPad, ...]:
    """The :class:`RowPad` of each skewed row of a compiled ``schedule: map`` dataflow (its tiled rows and the map's
    skewed rows of inner loops, ``t_l - sigma_l.s - early_l - h_l``), in the tile's loop order; () for every other
    dataflow. The padded loops are independent: FU s runs iteration pos_l - offset_l(s) of each at row positions pos,
    and its product is masked when any of them is outside its L positions."""
    pads = _skewed_rows(design, df)
    return tuple(pads[d] for d in df.inner_dims() if d in pads)


def outer_pads(design: Design, df: Dataflow) -> tuple[RowPad, ...]:
    """The :class:`RowPad` of each skewed reduction loop a compiled ``schedule: map`` dataflow runs outside its tile
    (partial-sum rounds moved it out, or the map skews a tile loop), in outer-loop order; () for every other
    dataflow. Such a loop runs K + span tiles (:meth:`TileMapping.trips`); in tile t FU s runs iteration
    t - offset(s) and its products are masked outside its own K tiles (the issuer's tile counter drives the
    per-offset flags). halo is 0: no delay connection moves along an outer loop (memory lanes feed those FUs)."""
    pads = _skewed_rows(design, df)
    return tuple(pads[d] for d in df.outer_dims() if d in pads)


def _skewed_rows(design: Design, df: Dataflow) -> dict[str, RowPad]:
    """{loop: RowPad} of every non-spatial loop the compiled ``schedule: map`` dataflow skews by the FU coordinates."""
    if df.schedule != "map" or df.spatial is None or df.ts_map is None:
        return {}
    axis_of = df.axis_of
    pads = {}
    for d, e in zip(design.operation.dims, df.ts_map.exprs):
        sigma = tuple(-e.coeff(f"s{a}") for a in range(len(design.shape)))
        if d not in axis_of and any(sigma):
            early = row_lead(sigma, design.shape)
            pads[d] = RowPad(d, sigma, -e.const - early, early)
    return pads


@functools.lru_cache(maxsize=256)
def delay_axes(design: Design, df: Dataflow) -> tuple[DelayAxis, ...]:
    """The delay connections the generator builds for ``df``, in operand then axis order.

    Only tiled maps with a loop inside the tile qualify. A move qualifies when it is one hop along an
    axis with more than one FU, one step of one inner loop l, the receiving FU runs no earlier than the
    sending one (c.ds >= 0), and the axis's loop is also used by another input, whose padding zeros the
    products of padded FUs; an axis along which the output's partial sums run in a chain (the same FU
    pairs) is left to the chain. All moves of a dataflow use one loop (the innermost that has one): on
    the tile's innermost loop the FIFO is one register; on an outer inner loop its depth is the product
    of the trip counts of the inner loops after l (a buffer of at most ``array.max_fifo_depth`` steps,
    built only while its bits, width x max depth, cost less than a memory lane).

    Under a ``schedule: map`` dataflow (:func:`row_pads`) the moves are the map's: a skewed row makes one hop along
    axis a also move its padded loop by -sigma_a, so only padded loops qualify (a receiver that does not run one
    row position later than its sender needs the row's halo, which ``_map_schedule`` sizes); padded FUs need no
    zero-filling input (the host program models their lanes). With skews on loops outside the tile only
    (:func:`outer_pads`) none is built: the tile-loop moves would hold a whole tile, so memory lanes feed the FUs.
    """
    if df.spatial is None or not df.inner_dims():
        return ()
    pads = row_pads(design, df)
    inner = df.inner_dims()
    if pads:
        return _padded_moves(design, df, pads)
    if outer_pads(design, df):      # only skewed loops outside the tile: memory lanes feed every FU its own rows
        return ()
    for pos in reversed(range(len(inner))):
        found = _delay_moves(design, df, inner[pos], tuple(inner[pos + 1:]), None)
        if found:
            return tuple(found)
    return ()


def _padded_moves(design: Design, df: Dataflow, pads: tuple[RowPad, ...]) -> tuple[DelayAxis, ...]:
    """Under the map's own schedule each padded loop steps its own moves (a hop along axis a moves the loops whose
    sigma_a is not 0); one per operand and axis, the innermost loop's first (its FIFO is the shortest)."""
    inner = df.inner_dims()
    found: dict[tuple[str, int], DelayAxis] = {}
    for pad in reversed(pads):
        after = tuple(inner[inner.index(pad.loop) + 1:])
        for a in _delay_moves(design, df, pad.loop, after, pad):
            found.setdefault((a.operand, a.axis), a)
    names = [x.name for x in design.operation.inputs]
    return tuple(sorted(found.values(), key=lambda a: (names.index(a.operand), a.axis)))


def _delay_moves(design: Design, df: Dataflow, loop: str, after: tuple[str, ...], pad: RowPad | None) -> list:
    """The delay connections one step of ``loop`` later (:func:`delay_axes`), read from the columns of A_X M: the
    map's column of t_loop and of each axis's s (for a tiled map, A_X's columns of the loop and the axis's loop)."""
    op = design.operation
    dims = op.dims
    inner = df.inner_dims()
    out = op.output.access_matrix(dims)
    mmat = df.ts_map.matrix
    found = []
    for x in op.inputs:
        amat = x.access_matrix(dims)
        if all(not amat[:, dims.index(d)].any() for d in inner):
            continue                                   # stationary: no stream to chain
        if after and design.type_of[x.name].bits * design.max_fifo_depth >= MEMORY_PORT_COST:
            continue                                   # past the threshold a memory lane is cheaper
        am = amat @ mmat
        col_l = am[:, dims.index(loop)]
        for axis, d in df.spatial:
            if design.shape[axis] < 2 or (pad is None and not any(o.uses(d) for o in op.inputs if o.name != x.name)):
                continue
            if not out[:, dims.index(d)].any() and df.control[axis] != 0:
                continue                               # the output's partial-sum chain runs along this axis
            col_s = am[:, len(dims) + axis]
            for step in (1, -1):
                # A M (e_t_loop * 1 + e_s_axis * step) = 0: one step of the loop later, one hop along the axis
                if col_l.any() and not (col_l + step * col_s).any():
                    skew = df.control[axis] * step
                    if skew >= 0:
                        found.append(DelayAxis(x.name, axis, step, loop, int(skew), after))
    return found


def delay_halo(design: Design, df: Dataflow) -> tuple[tuple[str, int], ...]:
    """(halo loop, halo steps) when the dataflow has delay connections, else (): the longest chain of
    FIFO hops from a memory-fed FU is at most the sum of (extent - 1) over an operand's delay axes, each
    hop one iteration of the loop the connections step."""
    pads = row_pads(design, df)
    if pads:
        return tuple((pad.loop, pad.span(design.shape)) for pad in pads)
    per_operand: dict[str, int] = {}
    axes = delay_axes(design, df)
    for a in axes:
        per_operand[a.operand] = per_operand.get(a.operand, 0) + design.shape[a.axis] - 1
    if not per_operand:
        return ()
    return ((axes[0].loop, max(per_operand.values())),)


def fifo_depth_loops(design: Design, df: Dataflow) -> tuple[str, ...]:
    """The inner loops whose trip counts multiply into the run-time FIFO depth (steps per iteration of the
    halo loop); () when the delay connections step the innermost loop (one-register FIFOs) or there are none."""
    return max((a.after for a in delay_axes(design, df)), key=len, default=())


def fifo_steps(design: Design, df: Dataflow, trips: Mapping[str, int]) -> dict[str, int]:
    """Steps one FIFO of run-time depth holds, per loop its delay connections step: one iteration of that loop, the
    product of ``trips`` of the inner loops after it as issued (a padded loop of the map's own schedule with its
    span: :func:`delay_halo`). One loop for delay connections; one per padded loop under ``schedule: map``."""
    halo = dict(delay_halo(design, df))
    return {a.loop: math.prod(trips[d] + halo.get(d, 0) for d in a.after) for a in delay_axes(design, df) if a.after}


@dataclass(frozen=True)
class Tile:
    index: int
    outer: tuple[tuple[str, int], ...]     # outer loop -> its temporal index in this tile
    first: bool                            # first visit of this output block: no partial sums to read


@dataclass(frozen=True)
class TileMapping:
    """Problem bounds, trip counts and tile order of one workload on one dataflow."""

    design: Design
    dataflow: Dataflow
    bounds: tuple[tuple[str, int], ...]

    @property
    def bound(self) -> dict[str, int]:
        return dict(self.bounds)

    def trips(self) -> dict[str, int]:
        """Trip count of each loop's temporal variable (tiles for spatial loops)."""
        axis_of = self.dataflow.axis_of
        t = {d: (math.ceil(n / self.design.shape[axis_of[d]]) if d in axis_of else n) for d, n in self.bounds}
        for pad in outer_pads(self.design, self.dataflow):      # a skewed outer loop runs K + span tiles
            t[pad.loop] += pad.span(self.design.shape)
        return t

    @property
    def halo(self) -> dict[str, int]:
        """Inner loop -> extra steps at the start of each of its rows (delay connections filling up)."""
        return dict(delay_halo(self.design, self.dataflow))

    @property
    def fifo_depth(self) -> int:
        """Array steps one delay connection's FIFO holds (one iteration of the halo loop: the product of the
        trip counts of the inner loops after it); 1 on the innermost loop, 0 without delay connections."""
        if not self.halo:
            return 0
        return max(fifo_steps(self.design, self.dataflow, self.trips()).values(), default=1)

    def issued_trips(self) -> dict[str, int]:
        """Trip counts as the array issues them: the halo steps included."""
        t = self.trips()
        for d, h in self.halo.items():
            t[d] += h
        return t

    @property
    def outer_dims(self) -> tuple[str, ...]:
        return self.dataflow.outer_dims()

    @property
    def inner_dims(self) -> tuple[str, ...]:
        return self.dataflow.inner_dims()

    @property
    def steps(self) -> int:
        """Steps issued per tile (halo steps included)."""
        t = self.issued_trips()
        return math.prod(t[d] for d in self.inner_dims)

    @property
    def n_tiles(self) -> int:
        t = self.trips()
        return math.prod(t[d] for d in self.outer_dims)

    @property
    def reduction_outer_dims(self) -> tuple[str, ...]:
        out = self.design.operation.output
        return tuple(d for d in self.outer_dims if not out.uses(d))

    def psum_tile_distance(self) -> int | None:
        """Tiles between two consecutive visits of an output block: the product of the trip counts of the
        outer loops inside the innermost reduction tile loop (None without a reduction tile loop). A later
        visit reads the partial sums the previous one wrote, which lie this many tiles back or more."""
        red = self.reduction_outer_dims
        if not red:
            return None
        outer = self.outer_dims
        t = self.trips()
        return math.prod(t[d] for d in outer[outer.index(red[-1]) + 1:])

    def tiles(self) -> Iterator[Tile]:
        t = self.trips()
        red = set(self.reduction_outer_dims)
        for n, idx in enumerate(itertools.product(*[range(t[d]) for d in self.outer_dims])):
            outer = tuple(zip(self.outer_dims, idx))
            yield Tile(n, outer, all(v == 0 for d, v in outer if d in red))

    @property
    def macs(self) -> int:
        return math.prod(n for _, n in self.bounds)

    @property
    def padded_macs(self) -> int:
        """MAC slots the array spends, padded edges included."""
        return self.n_tiles * self.steps * self.design.n_fus


def map_problem(design: Design, bounds: Mapping[str, int], dataflow: str | Dataflow | None = None, *,
                fifo_check: bool = True) -> TileMapping:
    """Check the problem bounds against the operation and build the mapping. ``fifo_check=False``: the
    caller runs the problem in blocks and checks each block's FIFO depth (mappings/memory_tiling.py)."""
    df = dataflow if isinstance(dataflow, Dataflow) else design.dataflow(dataflow)
    problems = []
    for d in design.operation.dims:
        if d not in bounds:
            problems.append(problem(f"bounds.{d}", "every loop needs a size"))
        elif not isinstance(bounds[d], int) or bounds[d] < 1:
            problems.append(problem(f"bounds.{d}", "loop sizes are positive integers", bounds[d]))
    for d in bounds:
        if d not in design.operation.dims:
            problems.append(problem(f"bounds.{d}", f"no loop of that name; loops are {', '.join(design.operation.dims)}"))
    if problems:
        raise SpecError(problems)
    mapping = TileMapping(design, df, tuple((d, int(bounds[d])) for d in design.operation.dims))
    if fifo_check:
        check_fifo_depth(design, df, {d: mapping.trips()[d] for d in fifo_depth_loops(design, df)})
        check_output_waits(design, df, mapping.trips())
        check_drain_waits(design, df, mapping)
    return mapping


def outer_reduced_pads(design: Design, df: Dataflow) -> tuple[RowPad, ...]:
    """The skewed loops outside the tile (:func:`outer_pads`) that the output uses, skewed along an array axis whose
    loop the output does not use (an axis it is reduced along): an output held per FU then sums, at a drain, FUs at
    different tiles of the loop, so each FU's drained sum waits (dataflow/reduce_skew.py ``drain_groups``)."""
    out, axis_of = design.operation.output, df.spatial_dims
    return tuple(p for p in outer_pads(design, df)
                 if out.uses(p.loop) and any(v and not out.uses(axis_of[a]) for a, v in enumerate(p.sigma)))


def check_drain_waits(design: Design, df: Dataflow, mapping: TileMapping) -> None:
    """A SpecError when a drained sum (:func:`outer_reduced_pads`) waits whole iterations of its loop of more than
    ``array.max_fifo_depth`` tiles each (the tiles of the loops outside the tile after it): the drain buffers are
    sized like the delay connections' FIFOs. The same check as the host program's, here so that ``archgen sim``
    refuses the bounds the hardware refuses."""
    outer, trips = list(mapping.outer_dims), mapping.trips()
    for pad in () if output_streamed(design, df) else outer_reduced_pads(design, df):
        per = math.prod(trips[d] for d in outer[outer.index(pad.loop) + 1:])
        if per > design.max_fifo_depth:
            raise SpecError([problem("array.max_fifo_depth", f"dataflow {df.name}'s drained sums wait whole "
                                     f"iterations of the skewed loop {pad.loop} = {per} tiles in these bounds; the "
                                     "drain buffers hold at most array.max_fifo_depth tiles per iteration: raise it "
                                     "or give the loops after it outside the tile fewer trips", design.max_fifo_depth)])


def output_streamed(design: Design, df: Dataflow) -> bool:
    """Whether the output of a (formed) tiled ``df`` is streamed per step: it uses a loop of the tile (else it is
    held over the tile, per FU or per run of trailing reduction loops)."""
    return any(design.operation.output.uses(d) for d in df.inner_dims())


def reduced_pads(design: Design, df: Dataflow) -> tuple[RowPad, ...]:
    """The padded loops (:func:`row_pads`) the output uses whose skew moves an array axis the output is reduced
    along (an axis whose loop it does not use): an output lane sums FUs at different positions of them, so each FU's
    product waits its offset difference before the reduction (dataflow/reduce_skew.py). For an output streamed per
    step also such skewed loops outside the tile (:func:`outer_reduced_pads`): its lanes sum FUs at different tiles of
    them, and the products wait whole iterations of the loop (tiles x steps) likewise."""
    out, axis_of = design.operation.output, df.spatial_dims
    inside = tuple(p for p in row_pads(design, df)
                   if out.uses(p.loop) and any(v and not out.uses(axis_of[a]) for a, v in enumerate(p.sigma)))
    return inside + (outer_reduced_pads(design, df) if output_streamed(design, df) else ())


def output_wait_steps(design: Design, df: Dataflow, trips: Mapping[str, int]) -> dict[str, int]:
    """Array steps of one iteration of each loop of :func:`reduced_pads`: the product of ``trips`` of the loops after
    it (outside the tile, then the tile's) as issued (padded loops of the tile with their span); 1 for the tile's
    last loop."""
    halo, loops = dict(delay_halo(design, df)), list(df.outer_dims()) + list(df.inner_dims())
    return {p.loop: math.prod(trips[d] + halo.get(d, 0) for d in loops[loops.index(p.loop) + 1:])
            for p in reduced_pads(design, df)}


def check_output_waits(design: Design, df: Dataflow, trips: Mapping[str, int]) -> None:
    """A SpecError when a product's wait holds more than ``array.max_fifo_depth`` steps per iteration of its loop
    (:func:`output_wait_steps`: the wait buffers are sized like the delay connections' FIFOs)."""
    loop, depth = max(output_wait_steps(design, df, trips).items(), key=lambda kv: kv[1], default=(None, 0))
    if depth > design.max_fifo_depth:
        raise SpecError([problem("array.max_fifo_depth", f"dataflow {df.name}'s output terms wait whole steps of t_{loop}"
                                 f" = {depth} array steps in these bounds; the wait buffers hold at most "
                                 "array.max_fifo_depth steps: raise it or give the loops after it fewer trips",
                                 design.max_fifo_depth)])


def check_fifo_depth(design: Design, df: Dataflow, trips: Mapping[str, int], what: str = "bounds") -> None:
    """A SpecError when a run-time FIFO depth (:func:`fifo_steps` of ``trips``, the trip counts of the inner loops
    after the halo loop) exceeds the buffer the spec sizes (``array.max_fifo_depth``)."""
    steps = fifo_steps(design, df, trips) if trips else {}
    loop, depth = max(steps.items(), key=lambda kv: kv[1], default=(None, 0))
    if depth > design.max_fifo_depth:
        loops = " x ".join(f"{d} ({n})" for d, n in trips.items())
        raise SpecError([problem("array.max_fifo_depth", f"dataflow {df.name}'s delay connections hold one step of "
                                 f"t_{loop} = {depth} array steps (trips of {loops} in these {what}); the FIFO buffers "
                                 "hold at most array.max_fifo_depth steps: raise it or give those loops fewer trips",
                                 design.max_fifo_depth)])
