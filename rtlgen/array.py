"""Amaranth elaboration of an FU graph: the spatial array, its feeders, drains and tile controller.

Nothing here is specific to a dataflow. The FU graph says, per operand, which lane or which FU feeds
each FU and through how many registers; the schedule (dataflow/schedule.py) says how long each tile
phase lasts. This module turns both into hardware:

* streamed inputs: a skew delay line per lane, then the graph's edges (systolic hops of ``delay``
  registers, broadcast nets);
* stationary inputs: one register per FU, written row by row in the LOAD phase;
* outputs: accumulators drained row by row, or partial-sum chains / adder trees whose terminal values
  are de-skewed into one output beat per step;
* a controller that walks the tiles (outer loop counters from the command), decides whether partial
  sums of earlier tiles come back in, and advances the whole datapath with one enable, so a stall on
  any stream (valid low, ready low) freezes the array without losing data.

Arithmetic wraps at the output type's width (two's complement); there is no saturation.
"""
from __future__ import annotations


import networkx as nx

from amaranth import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.dataflow.compile import CompiledArray
from archgen.dataflow.ir import STEP_BITS, TRIP_BITS, CommandLayout, Direction, Node, NodeKind, PortRole, Role, port_name
from archgen.rtlgen.datapath import RetimedNets, delay_line, node_name, shape_of, tag

__all__ = ["ArrayTop", "struct_layout"]


def struct_layout(command: CommandLayout) -> data.StructLayout:
    """The Amaranth layout of a command word described as plain data by the compile step."""
    layout = data.StructLayout({f.name: unsigned(f.bits) for f in command.fields})
    assert all(layout[f.name].offset == f.offset for f in command.fields)
    return layout


_shape, _tag, _nname = shape_of, tag, node_name


def _delay(m: Module, value, n: int, en, name: str, shape):
    return delay_line(m, value, n, en, name, shape)


class ArrayTop(wiring.Component):
    """Top level of a generated array. Ports (all streams valid/ready, payload = lanes of one beat):

    - ``cmd``: command stream (``steps``, ``trips_<loop>``); accepted when idle, starts a problem;
    - ``in_<X>``: input operand X (stationary: one array row per beat; streamed: one step per beat);
    - ``psum_<Y>``: partial sums of output Y from earlier tiles (only when the dataflow needs them);
    - ``out_<Y>``: results (partial sums after each tile, in the order the host program lists);
    - ``done``: high for one cycle after the last tile; ``busy``: a problem is running.
    """

    def __init__(self, compiled: CompiledArray):
        self.compiled = compiled
        self.fg = compiled.fu_graph
        self.timing = compiled.timing
        self.schedule = compiled.schedule
        members = {}
        for port in compiled.ports:
            if port.name == "cmd":
                sig = stream.Signature(struct_layout(compiled.command))
            elif port.stream:
                sig = stream.Signature(data.ArrayLayout(_shape(port.width, port.signed), port.lanes))
            else:
                sig = port.width
            members[port.name] = Out(sig) if port.direction is Direction.OUT else In(sig)
        super().__init__(members)

    def _in(self, operand: str):
        return getattr(self, port_name(PortRole.INPUT, operand))

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        fg, sch = self.fg, self.schedule
        design, df = fg.design, fg.dataflow
        shape = design.shape
        coords = list(fg.coords())
        rows = sch.rows
        out_plan = fg.output
        out_port = getattr(self, self.compiled.output_port.name)
        psum = self.compiled.psum_port
        psum_port = None if psum is None else getattr(self, psum.name)
        outer = df.outer_dims()
        red = [d for d in outer if not design.operation.output.uses(d)]
        stationary = [p for p in fg.inputs if p.role is Role.STATIONARY]
        streamed = [p for p in fg.inputs if p.role is Role.STREAM]
        acc_mode = out_plan.role is Role.ACCUMULATE
        acc_init = acc_mode and out_plan.psum_in            # accumulators start from partial sums
        has_loader = bool(stationary) or acc_init
        acc_shape = _shape(out_plan.width, out_plan.signed)
        tm = self.timing
        pg = tm.prim.graph
        line_len = max(sch.commit_skew, sch.swap_skew, 0 if acc_mode else sch.out_latency)

        # ---- command ---------------------------------------------------------------------------
        # counts minus one are latched with the command so the per-cycle compares are plain equalities
        steps_m1 = Signal(STEP_BITS, name="steps_minus_1")
        trips = {d: Signal(TRIP_BITS, name=f"trips_minus_1_{d}") for d in outer}
        running = Signal(name="running")
        start = Signal(name="start")
        finish = Signal(name="finish")
        m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running), self.busy.eq(running)]
        with m.If(start):
            m.d.sync += [running.eq(1), steps_m1.eq(self.cmd.payload.steps - 1)]
            for d in outer:
                m.d.sync += trips[d].eq(getattr(self.cmd.payload, f"trips_{d}") - 1)
        with m.If(finish):
            m.d.sync += running.eq(0)
        m.d.comb += self.done.eq(finish)

        adv = Signal(name="advance")          # the datapath (delay lines, FUs) moves one slot

        # ---- control delay line: per issued step (valid, first, last, swap, final) ----------------
        names = ("valid", "first", "last", "swap", "final")
        line = {n: [Signal(name=f"step_{n}_d{k}") for k in range(line_len + 1)] for n in names}
        for k in range(1, line_len + 1):
            with m.If(adv):
                for n in names:
                    m.d.sync += line[n][k].eq(line[n][k - 1])

        # ---- loader: fills the shadow registers of the next loaded tile, row by row ---------------
        shadow_full = Signal(name="shadow_full")
        ld_row = Signal(range(max(rows, 2)), name="load_row")
        ld_beat = Signal(name="load_beat")
        ld_first = Signal(name="load_first_visit")
        if has_loader:
            ld = _Odometer(m, "load", outer, red, trips, start)
            ld_done = Signal(name="load_done")
            ld_busy = Signal(name="load_busy")
            ld_needs = Signal(name="load_needed")
            m.d.comb += [ld_first.eq(ld.first), ld_needs.eq(Const(1) if stationary else ~ld.first)]
            active = running & ~ld_done
            can_beat = active & ld_needs & (ld_busy | ~shadow_full)
            valids = [self._in(p.name).valid for p in stationary]
            if acc_init:
                valids.append(ld.first | psum_port.valid)
            m.d.comb += ld_beat.eq(can_beat & _all(valids) if valids else can_beat)
            for p in stationary:
                m.d.comb += self._in(p.name).ready.eq(ld_beat)
            if acc_init:
                m.d.comb += psum_port.ready.eq(ld_beat & ~ld.first)
            skip = active & ~ld_needs
            with m.If(ld_beat):
                m.d.sync += [ld_row.eq(ld_row + 1), ld_busy.eq(1)]
                with m.If(ld_row == rows - 1):
                    m.d.sync += [ld_row.eq(0), ld_busy.eq(0), shadow_full.eq(1)]
            with m.If((ld_beat & (ld_row == rows - 1)) | skip):
                ld.advance()
                with m.If(ld.last):
                    m.d.sync += ld_done.eq(1)
            with m.If(start):
                m.d.sync += [ld_done.eq(0), ld_busy.eq(0), ld_row.eq(0), shadow_full.eq(0)]

        # ---- issuer: one step per cycle, tiles back to back -----------------------------------------
        iss = _Odometer(m, "issue", outer, red, trips, start)
        is_step = Signal(STEP_BITS, name="issue_step")
        is_done = Signal(name="issue_done")
        # small up/down counters instead of wide tile counts: at most one tile is ever in flight
        # between issue, commit and drain, so three bits hold every difference that matters
        undrained = Signal(3, name="tiles_issued_not_drained")
        to_drain = Signal(3, name="tiles_committed_not_drained")
        tile_done_issuing = Signal(name="tile_done_issuing")
        tile_drained = Signal(name="tile_drained")
        tile_committed = Signal(name="tile_committed")
        issue = Signal(name="issue")
        is_needs = Const(1) if stationary else (~iss.first if acc_init else Const(0))
        first_step = is_step == 0
        last_step = is_step == steps_m1
        conds = [running, ~is_done, adv]
        swap_pending = Signal(name="swap_pending")   # a swap is travelling through the array
        if has_loader:
            # the shadow holds this tile's data only once the previous tile's swap reached every FU and
            # the loader refilled it; with short tiles the previous swap may still be in flight
            conds.append(~(first_step & is_needs) | (shadow_full & ~swap_pending))
        if acc_mode:
            # a tile's results may overwrite the output registers only once the previous tile is drained
            conds.append(~last_step | (undrained == 0))
        for p in streamed:
            conds.append(self._in(p.name).valid)
        if psum_port is not None and not acc_mode:
            conds.append(iss.first | psum_port.valid)
        m.d.comb += issue.eq(_all(conds))
        for p in streamed:
            m.d.comb += self._in(p.name).ready.eq(issue)
        if psum_port is not None and not acc_mode:
            m.d.comb += psum_port.ready.eq(issue & ~iss.first)
        m.d.comb += [line["valid"][0].eq(issue), line["first"][0].eq(issue & first_step),
                     line["last"][0].eq(issue & last_step), line["swap"][0].eq(issue & first_step & is_needs),
                     line["final"][0].eq(issue & last_step & iss.last)]
        with m.If(issue):
            m.d.sync += is_step.eq(is_step + 1)
            with m.If(last_step):
                m.d.sync += is_step.eq(0)
                m.d.comb += tile_done_issuing.eq(1)
                iss.advance()
                with m.If(iss.last):
                    m.d.sync += is_done.eq(1)
        if has_loader:
            with m.If(line["swap"][0]):
                m.d.sync += swap_pending.eq(1)
            # the shadow is free once the last FU (largest skew) has swapped it in
            with m.If(adv & line["swap"][sch.swap_skew]):
                m.d.sync += [shadow_full.eq(0), swap_pending.eq(0)]
            with m.If(start):
                m.d.sync += swap_pending.eq(0)
            with m.If(ld_beat & (ld_row == rows - 1)):
                m.d.sync += shadow_full.eq(1)
        if acc_mode:
            m.d.sync += [undrained.eq(undrained + tile_done_issuing - tile_drained),
                         to_drain.eq(to_drain + tile_committed - tile_drained)]
        with m.If(start):
            m.d.sync += [is_step.eq(0), is_done.eq(0), undrained.eq(0), to_drain.eq(0)]

        def tap(name, node):
            return line[name][tm.time[node]]

        # ---- datapath: one Amaranth value per primitive node output, registers per retimed edge ------
        stat_shape = {p.name: _shape(p.width, design.type_of[p.name].signed) for p in fg.inputs}
        nets = RetimedNets(m, tm, adv, stat_shape.__getitem__, acc_shape)
        outv, src = nets.out, nets.src
        shadow_of: dict = {}
        for p in stationary:
            port = self._in(p.name)
            for s in coords:
                shadow = Signal(stat_shape[p.name], name=f"{p.name}_shadow_{_tag(s)}")
                with m.If(ld_beat & (ld_row == _row_index(s, shape))):
                    m.d.sync += shadow.eq(port.payload[s[-1]])
                shadow_of[(p.name, s)] = shadow

        outs = {}
        for v in nx.topological_sort(pg):
            d = pg.nodes[v]
            kind = d["kind"]
            if nets.build(v):
                continue
            if kind is NodeKind.MEM_PORT:
                if v not in tm.lane_offset:
                    continue                                  # load-phase port: the loader writes shadows
                operand, lane = v.operand, v.lane
                if operand == out_plan.name:
                    raw = Mux(iss.first, 0, psum_port.payload[lane])
                    shp = acc_shape
                else:
                    raw = self._in(operand).payload[lane]
                    shp = stat_shape[operand]
                outv[v] = _delay(m, raw, tm.lane_offset[v], adv, f"{operand}_lane{lane}_issue", shp)
            elif kind is NodeKind.STATIONARY_REG:
                s, operand = v.coord, v.operand
                shadow = shadow_of[(operand, s)]
                act = Signal(stat_shape[operand], name=f"{operand}_stat_{_tag(s)}")
                swap = tap("swap", Node(NodeKind.MUL, s))
                with m.If(adv & swap):
                    m.d.sync += act.eq(shadow)
                outv[v] = Mux(swap, shadow, act)
            elif kind is NodeKind.ACC:
                s = v.coord
                (mul,) = [u for u in pg.predecessors(v) if not pg.edges[u, v]["hold"]]
                acc = Signal(acc_shape, name=f"{out_plan.name}_acc_{_tag(s)}")
                res = Signal(acc_shape, name=f"{out_plan.name}_out_{_tag(s)}")
                base = Const(0, acc_shape)
                if acc_init:
                    init = Signal(acc_shape, name=f"{out_plan.name}_init_{_tag(s)}")
                    with m.If(ld_beat & (ld_row == _row_index(s, shape))):
                        m.d.sync += init.eq(Mux(ld_first, 0, psum_port.payload[s[-1]]))
                    base = Mux(tap("swap", v), init, 0)
                total = Signal(acc_shape, name=f"{out_plan.name}_sum_{_tag(s)}")
                m.d.comb += total.eq(Mux(tap("first", v), base, acc) + src(mul, v, acc_shape))
                with m.If(adv & tap("valid", v)):
                    m.d.sync += acc.eq(total)
                    with m.If(tap("last", v)):
                        m.d.sync += res.eq(total)
                outv[v] = acc
                outs[s] = res
            elif kind is NodeKind.DRAIN:
                if acc_mode:
                    continue
                (u,) = list(pg.predecessors(v))
                reg = Signal(acc_shape, name=f"{out_plan.name}_drain{v.lane}")
                with m.If(adv):
                    m.d.sync += reg.eq(src(u, v, acc_shape))
                align = sch.out_latency - (tm.time[v] + d["latency"])
                res = _delay(m, reg, align, adv, f"{out_plan.name}_out{v.lane}_align", acc_shape)
                m.d.comb += out_port.payload[v.lane].eq(res)

        if acc_mode:
            m.d.comb += adv.eq(1)      # results leave through the output registers, never the pipeline
            m.d.comb += tile_committed.eq(line["last"][sch.commit_skew])
            dr_row = Signal(range(max(rows, 2)), name="drain_row")
            m.d.comb += out_port.valid.eq(running & (to_drain != 0))
            for lane in range(shape[-1]):
                col = Array([outs[s] for s in coords if s[-1] == lane])
                m.d.comb += out_port.payload[lane].eq(col[dr_row])
            with m.If(out_port.valid & out_port.ready):
                m.d.sync += dr_row.eq(dr_row + 1)
                with m.If(dr_row == rows - 1):
                    m.d.sync += dr_row.eq(0)
                    m.d.comb += tile_drained.eq(1)
            with m.If(start):
                m.d.sync += dr_row.eq(0)
            m.d.comb += finish.eq(running & is_done & (undrained == 0))
        else:
            lat = sch.out_latency
            m.d.comb += out_port.valid.eq(line["valid"][lat])
            m.d.comb += adv.eq(~(out_port.valid & ~out_port.ready))
            final_seen = Signal(name="final_seen")
            with m.If(out_port.valid & out_port.ready & line["final"][lat]):
                m.d.sync += final_seen.eq(1)
            with m.If(start):
                m.d.sync += final_seen.eq(0)
            m.d.comb += finish.eq(running & final_seen)
            with m.If(finish):
                m.d.sync += final_seen.eq(0)
        return m


class _Odometer:
    """Tile counters over the outer loops (innermost fastest), with first-visit and last-tile flags."""

    def __init__(self, m: Module, name: str, outer, red, trips, reset):
        """``trips``: the outer loops' trip counts minus one."""
        self.m = m
        self.outer = outer
        self.trips = trips
        self.cnt = {d: Signal(TRIP_BITS, name=f"{name}_tile_{d}") for d in outer}
        self.first = Signal(name=f"{name}_first_visit")
        self.last = Signal(name=f"{name}_last_tile")
        m.d.comb += self.first.eq(Const(1) if not red else _all([self.cnt[d] == 0 for d in red]))
        m.d.comb += self.last.eq(Const(1) if not outer else _all([self.cnt[d] == trips[d] for d in outer]))
        with m.If(reset):
            for d in outer:
                m.d.sync += self.cnt[d].eq(0)

    def advance(self):
        carry = Const(1)
        for d in reversed(self.outer):
            wrap_here = self.cnt[d] == self.trips[d]
            with self.m.If(carry):
                self.m.d.sync += self.cnt[d].eq(Mux(wrap_here, 0, self.cnt[d] + 1))
            carry = carry & wrap_here


def _row_index(s, shape) -> int:
    """Beat (row) in which FU s is loaded or drained: s without its last coordinate, raveled."""
    if len(shape) == 1:
        return 0
    idx = 0
    for c, e in zip(s[:-1], shape[:-1]):
        idx = idx * e + c
    return idx


def _all(conds):
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return out
