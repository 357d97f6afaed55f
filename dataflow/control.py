"""The array's control rules (dataflow/schedule.py's cycle contract), each written once per view, side by side.

The tile controller of a generated array is three concurrent units plus the tile walk they share:

=============  =======================================  ============================================
unit           hardware half (Amaranth, cycle by cycle)  model half (SimPy, tile events)
=============  =======================================  ============================================
tile walk      :func:`tile_counter_hw`                   ``TileMapping.tiles()`` (mappings/tiling.py)
loader         :func:`loader_hw`                         :func:`loader_process`
issuer         :func:`issuer_hw`                         :func:`issuer_process`
drain          :func:`accumulator_drain_hw`,             :func:`accumulator_drain_process`,
               :func:`stream_drain_hw`                   :func:`stream_drain_process`
=============  =======================================  ============================================

A rule is changed in both halves of its pair here, and ``tests/dataflow/test_control.py`` drives each
pair with the same random stimulus and compares their cycle traces (and the Verilator regression then
compares the whole array). Neither half imports its framework: the hardware halves receive Amaranth's
``hdl`` namespace and a Module from rtlgen, the model halves a SimPy environment from sim, so this
module stays in the model layer (no amaranth, no simpy imports here).

Time convention shared by both halves: cycle 0 is the command handshake; a model event at cycle t is the
first cycle in which the hardware's registered state shows it (e.g. the shadow is full at t, the issuer
may issue a tile's first step at t).
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from .ir import STEP_BITS, TRIP_BITS
from .schedule import ArraySchedule

__all__ = ["Flag", "CommandHW", "TileCounterHW", "LoaderHW", "IssuerHW", "DrainHW",
           "tile_counter_hw", "loader_hw", "issuer_hw", "accumulator_drain_hw", "stream_drain_hw",
           "loader_process", "issuer_process", "accumulator_drain_process", "stream_drain_process",
           "all_of", "halo_hw", "outer_pad_hw", "psum_raw_hw", "psum_raw_ready_at", "psum_raw_issues", "streams_psums_back"]


def all_of(conds):
    """The AND of a non-empty list of one-bit values."""
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return out


# ------------------------------------------------------------------------------------------------
# the command, as both halves see it

@dataclass(frozen=True)
class CommandHW:
    """The latched command: ``start`` (handshake cycle), ``running``, counts minus one."""

    start: Any
    running: Any
    steps_m1: Any
    trips_m1: dict          # outer loop -> trip count minus one
    outer: tuple            # outer loops, outer to inner
    red: tuple              # outer loops the output does not depend on (reduction loops)


# ------------------------------------------------------------------------------------------------
# tile walk

@dataclass(frozen=True)
class TileCounterHW:
    first: Any              # first visit of the tile's output (every reduction counter at 0)
    last: Any               # the last tile
    advance: Any            # callable: emit the step to the next tile (inside the caller's m.If)
    cnt: dict = None        # outer loop -> its counter


def tile_counter_hw(m, hdl, name: str, cmd: CommandHW) -> TileCounterHW:
    """Counters over the outer loops (innermost fastest), with first-visit and last-tile flags; the model
    half is ``TileMapping.tiles()``: the same order, ``Tile.first`` the same flag."""
    cnt = {d: hdl.Signal(TRIP_BITS, name=f"{name}_tile_{d}") for d in cmd.outer}
    first = hdl.Signal(name=f"{name}_first_visit")
    last = hdl.Signal(name=f"{name}_last_tile")
    m.d.comb += first.eq(hdl.Const(1) if not cmd.red else all_of([cnt[d] == 0 for d in cmd.red]))
    m.d.comb += last.eq(hdl.Const(1) if not cmd.outer else all_of([cnt[d] == cmd.trips_m1[d] for d in cmd.outer]))
    with m.If(cmd.start):
        for d in cmd.outer:
            m.d.sync += cnt[d].eq(0)

    def advance():
        carry = hdl.Const(1)
        for d in reversed(cmd.outer):
            wrap_here = cnt[d] == cmd.trips_m1[d]
            with m.If(carry):
                m.d.sync += cnt[d].eq(hdl.Mux(wrap_here, 0, cnt[d] + 1))
            carry = carry & wrap_here

    return TileCounterHW(first, last, advance, cnt)


def _needs_load_hw(hdl, sch: ArraySchedule, tiles: TileCounterHW):
    """``ArraySchedule.needs_load`` (``loads``) on the tile counters: first-visit flag, ``keep_dims`` at 0."""
    preload = ~tiles.first if sch.accumulate and sch.psum_in else hdl.Const(0)
    if not sch.has_stationary:
        return preload
    if not sch.keep_dims:
        return hdl.Const(1)
    return all_of([tiles.cnt[d] == 0 for d in sch.keep_dims]) | preload


# ------------------------------------------------------------------------------------------------
# loader

@dataclass(frozen=True)
class LoaderHW:
    beat: Any               # a row of loaded data is accepted this cycle
    row: Any                # the row being loaded
    first: Any              # the loaded tile's first visit (its partial sums are zero, not read)
    ready: Any              # the shadow holds the next tile's data and no swap is in flight


def loader_hw(m, hdl, sch: ArraySchedule, cmd: CommandHW, data_valid, swap_issued, release,
              tile_drained=None) -> LoaderHW:
    """LOADER: writes the shadow registers of the next tile that needs them, one row per cycle, once the
    shadow is free; a tile without a load is skipped in one cycle.

    ``data_valid(first, row)``: the loaded streams' valid, given the first-visit flag and the row; ``swap_issued``: a
    tile's first step was issued (its swap starts through the array); ``release``: that swap reached
    the FU with the largest skew (the shadow is free from the next cycle); ``tile_drained``: a tile's
    last output row left (given when accumulators are preloaded with partial sums: a preload starts only
    once every earlier tile has drained, so it reads what they wrote, one cycle or more later)."""
    rows = sch.rows
    shadow_full = hdl.Signal(name="shadow_full")
    row = hdl.Signal(range(max(rows, 2)), name="load_row")
    beat = hdl.Signal(name="load_beat")
    first = hdl.Signal(name="load_first_visit")
    swap_pending = hdl.Signal(name="swap_pending")   # a swap is travelling through the array
    tiles = tile_counter_hw(m, hdl, "load", cmd)
    done = hdl.Signal(name="load_done")
    busy = hdl.Signal(name="load_busy")
    needs = hdl.Signal(name="load_needed")
    m.d.comb += [first.eq(tiles.first), needs.eq(_needs_load_hw(hdl, sch, tiles))]
    active = cmd.running & ~done
    start_ok = ~shadow_full
    if tile_drained is not None:
        # tiles loaded (or skipped) but not yet drained: skips of first visits can run far ahead of the drain
        loaded_not_drained = hdl.Signal(STEP_BITS, name="tiles_loaded_not_drained")
        m.d.sync += loaded_not_drained.eq(loaded_not_drained + (last_row_or_skip := hdl.Signal(name="load_tile_end"))
                                          - tile_drained)
        with m.If(cmd.start):
            m.d.sync += loaded_not_drained.eq(0)
        start_ok = start_ok & (tiles.first | (loaded_not_drained == 0))
    can_beat = active & needs & (busy | start_ok)
    m.d.comb += beat.eq(can_beat & data_valid(tiles.first, row))
    skip = active & ~needs
    last_row = beat & (row == rows - 1)
    if tile_drained is not None:
        m.d.comb += last_row_or_skip.eq(last_row | skip)
    with m.If(beat):
        m.d.sync += [row.eq(row + 1), busy.eq(1)]
        with m.If(row == rows - 1):
            m.d.sync += [row.eq(0), busy.eq(0), shadow_full.eq(1)]
    with m.If(last_row | skip):
        tiles.advance()
        with m.If(tiles.last):
            m.d.sync += done.eq(1)
    with m.If(cmd.start):
        m.d.sync += [done.eq(0), busy.eq(0), row.eq(0), shadow_full.eq(0)]
    with m.If(swap_issued):
        m.d.sync += swap_pending.eq(1)
    with m.If(release):
        m.d.sync += [shadow_full.eq(0), swap_pending.eq(0)]
    with m.If(cmd.start):
        m.d.sync += swap_pending.eq(0)
    with m.If(last_row):
        m.d.sync += shadow_full.eq(1)
    return LoaderHW(beat, row, first, shadow_full & ~swap_pending)


class Flag:
    """A level that SimPy processes can wait on (SimPy events fire once; this re-arms)."""

    def __init__(self, env, value: bool):
        self.env, self.value, self._waiters = env, value, []

    def set(self, value: bool):
        self.value = value
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if w[0] == value:
                w[1].succeed()
            else:
                self._waiters.append(w)

    def wait(self, value: bool = True):
        ev = self.env.event()
        if self.value == value:
            ev.succeed()
        else:
            self._waiters.append((value, ev))
        return ev


def loader_process(env, sch: ArraySchedule, tiles, shadow_free: Flag, loaded, wait_fetched, drained=None):
    """LOADER (model half): ``loaded[k]`` fires when tile k's shadow is full; ``shadow_free`` is set by
    the issuer's swap (``swap_skew + 1`` after the tile's first step); with ``drained`` (accumulators
    preloaded with partial sums) a preload of tile k also waits for tile k - 1 to have drained."""
    yield env.timeout(1)                                   # running from cycle 1
    for k, tile in enumerate(tiles):
        if not sch.loads(tile):
            yield env.timeout(1)                           # skipping a tile takes its cycle
            continue
        yield from wait_fetched(k)
        if drained is not None and k > 0 and not tile.first:
            yield drained[k - 1]
        yield shadow_free.wait(True)
        shadow_free.set(False)
        yield env.timeout(sch.rows)
        loaded[k].succeed()


# ------------------------------------------------------------------------------------------------
# issuer

@dataclass(frozen=True)
class IssuerHW:
    issue: Any              # a step is issued this cycle (one beat of every streamed input)
    first_step: Any         # ... and it is its tile's first step
    last_step: Any          # ... its tile's last step
    swap: Any               # ... the first step of a tile that swaps loaded data in
    final: Any              # ... the problem's last step
    first_visit: Any        # the issued tile's first visit (level)
    done: Any               # every step has been issued (level)
    tile: Any = None        # the issued tile's outer-loop counters {loop: counter} (level)


def streams_psums_back(sch: ArraySchedule) -> bool:
    """The output is streamed out (no in-place accumulator) and read back as partial sums by later tiles:
    the issuer then keeps the read-after-write wait of :func:`psum_raw_hw` / :func:`psum_raw_ready_at`."""
    return not sch.accumulate and sch.psum_in and sch.out_latency > 0


def _saturated_product(m, hdl, name: str, factors, cap: int):
    """min(prod(factors), cap) with multipliers as wide as ``cap`` only (each factor is first cut to cap)."""
    width = cap.bit_length()
    out = None
    for i, f in enumerate(factors):
        cut = hdl.Signal(width, name=f"{name}_f{i}")
        m.d.comb += cut.eq(hdl.Mux(f >= cap, cap, f))
        if out is None:
            out = cut
            continue
        prod = hdl.Signal(width, name=f"{name}_p{i}")
        wide = out * cut
        m.d.comb += prod.eq(hdl.Mux(wide >= cap, cap, wide))
        out = prod
    return out


def psum_raw_hw(m, hdl, sch: ArraySchedule, cmd: CommandHW, issue, out_left, skew=None):
    """Read-after-write wait for streamed outputs read back as partial sums (model half:
    :func:`psum_raw_ready_at`, :func:`psum_raw_issues`). A step of a tile that is not its output block's first
    visit reads the partial sum that the step ``D = steps * P`` issues earlier produced (P: tiles per turn of the
    innermost reduction tile loop, the product of the trip counts of the outer loops inside it; a later visit reads
    the previous visit's beats, which are D steps back or more). It may issue only once that beat has left the
    array: fewer than D steps are in flight (issued, output not yet left; a registered count, so the partial sum is
    read at least one cycle after its write). At most ``out_latency`` steps are ever in flight, so D saturates there
    and the product needs no wide multiplier. Returns the one-bit permit.

    ``skew`` (a signal, valid from the command's first running cycle): the beats S by which a de-skewing layer
    core (rtlgen/layer_top.py, memctl ``output_pads``) writes an element after its psum walk read it. The psum walk
    reads position q on every lane when the step at position q issues (its address one cycle ahead, a transparent
    read: a write in the cycle before the issue is seen); lane s uses it offset(s) beats later, and the result of
    that element leaves lane s span - offset(s) beats after it was made, so the write walk writes position q at the
    output beat of the step at position q + S, S = sum_d span_d x (beats of a row position of d), the same for every
    lane, inside the tile (q + S < steps: the positions of a row reach L + span). The layer core's write port is
    always ready (no output stall), so beats and steps keep one order. The step read back at issue n therefore needs
    step n - (D - S) to have left: the distance is D - S >= 1 (S < steps <= D), a wait, never a deadlock. Beats at
    the last span positions of a row read elements nothing uses (the lanes take them into masked positions); the
    wait covers them too, as the hardware cannot tell them apart, and the model keeps the same rule."""
    if not cmd.red:
        return hdl.Const(1)           # every tile is a first visit: nothing is read back
    lat = sch.out_latency
    in_flight = hdl.Signal(range(lat + 2), name="psum_steps_in_flight")
    m.d.sync += in_flight.eq(in_flight + issue - out_left)
    with m.If(cmd.start):
        m.d.sync += in_flight.eq(0)
    last_red = max(i for i, d in enumerate(cmd.outer) if d in cmd.red)
    trips = [cmd.trips_m1[d] + 1 for d in cmd.outer[last_red + 1:]]
    # registered: off the issue path (the product reads the latched command, and ``skew`` the core's register set
    # with the command, so it is valid from cycle 2; the first tile is a first visit and issues its first step in
    # cycle 1 at the earliest)
    distance = hdl.Signal(range(lat + 2), name="psum_raw_distance")
    if skew is None:
        m.d.sync += distance.eq(_saturated_product(m, hdl, "psum_raw_distance", [cmd.steps_m1 + 1] + trips, lat + 1))
    else:
        m.d.sync += distance.eq(_deskewed_distance(m, hdl, cmd, trips, skew, lat + 1))
    return in_flight < distance


def _deskewed_distance(m, hdl, cmd: CommandHW, trips, skew, cap: int):
    """min(steps x P - skew, cap) with narrow multipliers: (steps - skew) + steps x (P - 1), each term cut to cap
    (steps - skew >= 1: the skew lies inside the tile)."""
    rest = hdl.Signal(len(cmd.steps_m1) + 1, name="psum_raw_rest")
    m.d.comb += rest.eq(cmd.steps_m1 + 1 - skew)
    parts = hdl.Signal(range(2 * cap + 1), name="psum_raw_parts")
    near = hdl.Mux(rest >= cap, cap, rest)
    if not trips:
        m.d.comb += parts.eq(near)
    else:
        p = _saturated_product(m, hdl, "psum_raw_turn", trips, cap + 1)
        m.d.comb += parts.eq(near + _saturated_product(m, hdl, "psum_raw_far", [cmd.steps_m1 + 1, p - 1], cap))
    return hdl.Mux(parts >= cap, cap, parts)


def psum_raw_ready_at(sch: ArraySchedule, tile_distance: int, first_issues: list, k: int) -> int:
    """Model half of :func:`psum_raw_hw` at tile granularity (no de-skew): tile k (not a first visit) may issue
    its first step from this cycle. Its step j reads the beat of step j of tile k - ``tile_distance``, which
    left ``out_latency`` cycles after its issue; tiles issue their steps back to back, so once the first
    step may go every later one may too."""
    return first_issues[k - tile_distance] + sch.out_latency + 1


def psum_raw_issues(sch: ArraySchedule, history, distance: int, first: int, steps: int, reads: bool) -> list[int]:
    """Model half of :func:`psum_raw_hw` step by step (a de-skewed output, whose distance is not a whole number of
    tiles): the issue cycles of a tile's ``steps`` steps, the first at ``first`` at the earliest, the others back to
    back unless (``reads``: not a first visit) step n waits for step n - ``distance`` to have left:
    issue(n) >= issue(n - distance) + out_latency + 1, the registered in-flight count below the distance.
    ``history``: the issue cycles of the steps before (the last ``distance`` are kept; appended to)."""
    lat = sch.out_latency
    out = []
    t = first - 1
    for _ in range(steps):
        t += 1
        if reads and len(history) >= distance:
            t = max(t, history[-distance] + lat + 1)
        out.append(t)
        history.append(t)
    del history[:-distance]
    return out


def issuer_hw(m, hdl, sch: ArraySchedule, cmd: CommandHW, adv, stream_valid, shadow_ready, drained_all,
              out_left=None, psum_skew=None) -> IssuerHW:
    """ISSUER: one step per cycle, tiles back to back. A tile's first step that needs loaded data waits
    for ``shadow_ready``; with outputs accumulated in place, a tile's last step waits for
    ``drained_all`` (every earlier tile drained); with streamed outputs read back as partial sums, a step
    of a later visit waits for its partial sum to have left (:func:`psum_raw_hw`; ``out_left``: an output
    beat's handshake this cycle; ``psum_skew``: a de-skewing layer core's write lag, :func:`psum_raw_hw`).
    ``stream_valid(first)``: the streamed inputs' valid."""
    tiles = tile_counter_hw(m, hdl, "issue", cmd)
    step = hdl.Signal(STEP_BITS, name="issue_step")
    done = hdl.Signal(name="issue_done")
    issue = hdl.Signal(name="issue")
    needs = _needs_load_hw(hdl, sch, tiles)
    first_step = step == 0
    last_step = step == cmd.steps_m1
    conds = [cmd.running, ~done, adv]
    if shadow_ready is not None:
        # the shadow holds this tile's data only once the previous tile's swap reached every FU and
        # the loader refilled it; with short tiles the previous swap may still be in flight
        conds.append(~(first_step & needs) | shadow_ready)
    if drained_all is not None:
        # a tile's results may overwrite the output registers only once the previous tile is drained
        conds.append(~last_step | drained_all)
    if streams_psums_back(sch):
        if out_left is None:
            raise ValueError("issuer_hw: streamed outputs read back as partial sums need out_left")
        conds.append(tiles.first | psum_raw_hw(m, hdl, sch, cmd, issue, out_left, psum_skew))
    conds.append(stream_valid(tiles.first))
    m.d.comb += issue.eq(all_of(conds))
    with m.If(issue):
        m.d.sync += step.eq(step + 1)
        with m.If(last_step):
            m.d.sync += step.eq(0)
            tiles.advance()
            with m.If(tiles.last):
                m.d.sync += done.eq(1)
    with m.If(cmd.start):
        m.d.sync += [step.eq(0), done.eq(0)]
    return IssuerHW(issue, issue & first_step, issue & last_step, issue & first_step & needs,
                    issue & last_step & tiles.last, tiles.first, done, tiles.cnt)


def halo_hw(m, hdl, cmd: CommandHW, issue, loop: str, halo: int, after: tuple[str, ...] = (),
            offsets: tuple[int, ...] | None = None, padded: Mapping[str, int] | None = None):
    """Delay connections: the issued step is one of the ``halo`` iterations that start each row of the inner
    loop ``loop`` (the FIFOs fill, products are masked). The row is the command's trip count of ``loop``
    plus the halo; ``after``: the inner loops inside ``loop`` (their command trip counts), whose joint wrap
    advances ``loop``'s position (none: every step does). Model half: ``TileMapping.steps`` counts the halo
    steps, so the issuer's timing holds.

    ``offsets`` (the map's own schedule, mappings/tiling.py ``RowPad``: ``halo`` is the skew's span): one flag per
    distinct offset k = halo + early + sigma.s instead, set outside the FU's own positions k <= pos < L + k; returns
    {k: flag}. ``padded``:
    the positions each padded loop of ``after`` adds to its rows (several skewed loops), so its wrap is at L + span."""
    pos = hdl.Signal(TRIP_BITS, name=f"halo_pos_{loop}")
    if offsets is None:
        flag = hdl.Signal(name="issue_halo")
        m.d.comb += flag.eq(pos < halo)
    else:
        flag = {k: hdl.Signal(name=f"issue_pad_{k}") for k in offsets}
        for k, f in flag.items():
            m.d.comb += f.eq((pos < k) | (pos > cmd.trips_m1[loop] + k))
    wraps = []
    for d in after:
        c = hdl.Signal(TRIP_BITS, name=f"halo_inner_{d}")
        wraps.append((c, c == (cmd.trips_m1[d] + padded[d] if padded and d in padded else cmd.trips_m1[d])))
    advance = all_of([w for _c, w in wraps]) if wraps else hdl.Const(1)
    with m.If(issue):
        for k, (c, w) in enumerate(wraps):          # odometer: loop k steps when every loop inside it wraps
            inside = all_of([ww for _cc, ww in wraps[k + 1:]]) if k + 1 < len(wraps) else hdl.Const(1)
            with m.If(inside):
                m.d.sync += c.eq(hdl.Mux(w, 0, c + 1))
        with m.If(advance):
            m.d.sync += pos.eq(hdl.Mux(pos == cmd.trips_m1[loop] + halo, 0, pos + 1))
    with m.If(cmd.start):
        m.d.sync += pos.eq(0)
        m.d.sync += [c.eq(0) for c, _w in wraps]
    return flag


def outer_pad_hw(m, hdl, cmd: CommandHW, tile, loop: str, span: int, offsets: tuple[int, ...]) -> dict:
    """The map's own schedule of a skewed reduction loop outside the tile (mappings/tiling.py ``outer_pads``): the
    command runs K + ``span`` tiles of ``loop``; one flag per distinct offset k, set while the issued tile's counter
    ``tile[loop]`` is outside the FUs' own tiles k <= t < K + k (their products are masked). Model half:
    ``TileMapping.trips`` counts the span, host ``_iterations`` shifts each FU by its offset."""
    flag = {k: hdl.Signal(name=f"issue_pad_{loop}_{k}") for k in offsets}
    for k, f in flag.items():       # t >= K + k, with the command's trips K + span: t + span > trips - 1 + k
        m.d.comb += f.eq((tile[loop] < k) | (tile[loop] + span > cmd.trips_m1[loop] + k))
    return flag


def issuer_process(env, sch: ArraySchedule, steps: int, tiles, loaded, drained, wait_fetched, on_first, on_tile,
                   psum_tile_distance: int | None = None, psum_skew: int = 0):
    """ISSUER (model half). ``on_first(k)`` runs at tile k's first step, ``on_tile(k, last_issue)`` after its
    last; returns the cycle of the last step. ``psum_tile_distance``: with streamed outputs read back as
    partial sums, the tiles between two visits of an output block (``TileMapping.psum_tile_distance``);
    ``psum_skew``: the beats a de-skewing layer core writes a partial sum after reading it (:func:`psum_raw_hw`):
    the wait is then steps x tiles - skew steps, kept step by step (:func:`psum_raw_issues`) when it can bind."""
    yield env.timeout(1)
    last_issue = 0
    first_issues: list = []
    raw = streams_psums_back(sch) and psum_tile_distance is not None
    distance = steps * psum_tile_distance - psum_skew if raw else 0
    # a distance beyond out_latency never binds (at most that many steps are in flight)
    by_step = raw and psum_skew and distance <= sch.out_latency
    history: list = []
    for k, tile in enumerate(tiles):
        yield from wait_fetched(k)
        needs = sch.has_loader and sch.loads(tile)
        if needs:
            yield loaded[k]
        issues = None
        if by_step:
            issues = psum_raw_issues(sch, history, distance, env.now, steps, not tile.first)
            yield env.timeout(issues[0] - env.now)
        elif raw and not tile.first and not psum_skew:
            ready_at = psum_raw_ready_at(sch, psum_tile_distance, first_issues, k)
            if env.now < ready_at:
                yield env.timeout(ready_at - env.now)
        first_issues.append(env.now)
        if sch.accumulate and steps == 1 and k > 0:
            yield drained[k - 1]
        on_first(k, needs)
        if issues is not None:
            yield env.timeout(issues[-1] - env.now)
        elif steps > 1:
            yield env.timeout(steps - 1)
            if sch.accumulate and k > 0 and not drained[k - 1].triggered:
                yield drained[k - 1]
        last_issue = env.now
        yield env.timeout(1)
        on_tile(k, last_issue)
    return last_issue


# ------------------------------------------------------------------------------------------------
# drain

@dataclass(frozen=True)
class DrainHW:
    valid: Any              # an output beat is offered this cycle
    row: Any                # accumulators: the array row offered (None for streamed outputs)
    drained_all: Any        # accumulators: every tile issued so far has been drained (None otherwise)
    advance: Any            # the datapath moves this cycle
    finish: Any             # the last output left: done
    tile_drained: Any = None    # accumulators: a tile's last row left this cycle


def accumulator_drain_hw(m, hdl, sch: ArraySchedule, cmd: CommandHW, tile_issued, committed, out_ready,
                         issue_done) -> DrainHW:
    """DRAIN (outputs accumulated in place): sends the result registers one row per cycle, starting the
    cycle after the FU with the largest skew committed the tile's last step (``committed``)."""
    rows = sch.drain_rows
    # small up/down counters instead of wide tile counts: at most one tile is ever in flight
    # between issue, commit and drain, so three bits hold every difference that matters
    undrained = hdl.Signal(3, name="tiles_issued_not_drained")
    to_drain = hdl.Signal(3, name="tiles_committed_not_drained")
    drained = hdl.Signal(name="tile_drained")
    row = hdl.Signal(range(max(rows, 2)), name="drain_row")
    valid = hdl.Signal(name="drain_valid")
    m.d.comb += valid.eq(cmd.running & (to_drain != 0))
    with m.If(valid & out_ready):
        m.d.sync += row.eq(row + 1)
        with m.If(row == rows - 1):
            m.d.sync += row.eq(0)
            m.d.comb += drained.eq(1)
    m.d.sync += [undrained.eq(undrained + tile_issued - drained), to_drain.eq(to_drain + committed - drained)]
    with m.If(cmd.start):
        m.d.sync += [row.eq(0), undrained.eq(0), to_drain.eq(0)]
    return DrainHW(valid, row, undrained == 0, hdl.Const(1), cmd.running & issue_done & (undrained == 0), drained)


def stream_drain_hw(m, hdl, sch: ArraySchedule, cmd: CommandHW, step_valid, step_final, out_ready) -> DrainHW:
    """DRAIN (streamed outputs): a step's output beat leaves ``out_latency`` cycles after its issue
    (``step_valid``/``step_final`` are the issue flags that many cycles later); a stalled output freezes
    the datapath; done follows the final beat's handshake."""
    final_seen = hdl.Signal(name="final_seen")
    advance = ~(step_valid & ~out_ready)
    finish = cmd.running & final_seen
    with m.If(step_valid & out_ready & step_final):
        m.d.sync += final_seen.eq(1)
    with m.If(cmd.start):
        m.d.sync += final_seen.eq(0)
    with m.If(finish):
        m.d.sync += final_seen.eq(0)
    return DrainHW(step_valid, None, None, advance, finish)


def accumulator_drain_process(env, sch: ArraySchedule, k: int, last_issue: int, drained, then):
    """DRAIN (model half, accumulated outputs): tile k drains ``rows`` cycles from ``commit_skew + 1`` after
    its last step, after tile k - 1; ``drained[k]`` fires when its last row has left."""
    yield env.timeout(last_issue + sch.commit_skew + 1 - env.now)
    if k > 0:
        yield drained[k - 1]
    yield env.timeout(sch.drain_rows)
    drained[k].succeed()
    then(k)


def stream_drain_process(env, sch: ArraySchedule, last_issue: int):
    """DRAIN (model half, streamed outputs): done one cycle after the last step's output beat."""
    yield env.timeout(last_issue + sch.out_latency + 1 - env.now)
