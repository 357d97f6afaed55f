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

import math

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.dataflow.host import stream_ports
from archgen.dataflow.interconnect import FUGraph
from archgen.dataflow.schedule import ArraySchedule, array_schedule

__all__ = ["ArrayTop", "cmd_layout", "STEP_BITS", "TRIP_BITS"]

STEP_BITS = 32
TRIP_BITS = 16


def cmd_layout(fg: FUGraph) -> data.StructLayout:
    """The command: number of steps per tile, then one trip count per outer loop (outer to inner)."""
    fields = {"steps": unsigned(STEP_BITS)}
    for d in fg.dataflow.outer_dims():
        fields[f"trips_{d}"] = unsigned(TRIP_BITS)
    return data.StructLayout(fields)


def _shape(bits: int, is_signed: bool):
    return signed(bits) if is_signed else unsigned(bits)


def _tag(coord) -> str:
    return "_".join(str(c) for c in coord)


class ArrayTop(wiring.Component):
    """Top level of a generated array. Ports (all streams valid/ready, payload = lanes of one beat):

    - ``cmd``: command stream (``steps``, ``trips_<loop>``); accepted when idle, starts a problem;
    - ``in_<X>``: input operand X (stationary: one array row per beat; streamed: one step per beat);
    - ``psum_<Y>``: partial sums of output Y from earlier tiles (only when the dataflow needs them);
    - ``out_<Y>``: results (partial sums after each tile, in the order the host program lists);
    - ``done``: high for one cycle after the last tile; ``busy``: a problem is running.
    """

    def __init__(self, fg: FUGraph, schedule: ArraySchedule | None = None):
        self.fg = fg
        self.schedule = schedule or array_schedule(fg)
        self.ports_info = stream_ports(fg)
        members = {"cmd": In(stream.Signature(cmd_layout(fg)))}
        for port, (operand, lanes, bits) in self.ports_info.items():
            is_signed = fg.design.type_of[operand].signed
            sig = stream.Signature(data.ArrayLayout(_shape(bits, is_signed), lanes))
            members[port] = Out(sig) if port.startswith("out_") else In(sig)
        members["done"] = Out(1)
        members["busy"] = Out(1)
        super().__init__(members)

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        fg, sch = self.fg, self.schedule
        design, df = fg.design, fg.dataflow
        shape = design.shape
        coords = list(fg.coords())
        rows = sch.rows
        out_plan = fg.output
        out_port = getattr(self, f"out_{out_plan.name}")
        psum_port = getattr(self, f"psum_{out_plan.name}", None)
        outer = df.outer_dims()
        red = [d for d in outer if not design.operation.output.uses(d)]
        stationary = [p for p in fg.inputs if p.role == "stationary"]
        streamed = [p for p in fg.inputs if p.role == "stream"]
        acc_mode = out_plan.role == "accumulate"
        acc_init = acc_mode and out_plan.psum_in            # accumulators start from partial sums
        has_loader = bool(stationary) or acc_init
        acc_shape = _shape(out_plan.width, out_plan.signed)
        max_skew = fg.max_skew
        line_len = max(max_skew, 0 if acc_mode else sch.out_latency)

        # ---- command ---------------------------------------------------------------------------
        steps = Signal(STEP_BITS, name="steps")
        trips = {d: Signal(TRIP_BITS, name=f"trips_{d}") for d in outer}
        running = Signal(name="running")
        start = Signal(name="start")
        finish = Signal(name="finish")
        m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running), self.busy.eq(running)]
        with m.If(start):
            m.d.sync += [running.eq(1), steps.eq(self.cmd.payload.steps)]
            for d in outer:
                m.d.sync += trips[d].eq(getattr(self.cmd.payload, f"trips_{d}"))
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
            valids = [getattr(self, f"in_{p.name}").valid for p in stationary]
            if acc_init:
                valids.append(ld.first | psum_port.valid)
            m.d.comb += ld_beat.eq(can_beat & _all(valids) if valids else can_beat)
            for p in stationary:
                m.d.comb += getattr(self, f"in_{p.name}").ready.eq(ld_beat)
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
        is_count = Signal(32, name="tiles_issued")
        drained = Signal(32, name="tiles_drained")
        committed = Signal(32, name="tiles_committed")
        issue = Signal(name="issue")
        is_needs = Const(1) if stationary else (~iss.first if acc_init else Const(0))
        first_step = is_step == 0
        last_step = is_step == steps - 1
        conds = [running, ~is_done, adv]
        if has_loader:
            conds.append(~(first_step & is_needs) | shadow_full)
        if acc_mode:
            # a tile's results may overwrite the output registers only once the previous tile is drained
            conds.append(~last_step | (drained >= is_count))
        for p in streamed:
            conds.append(getattr(self, f"in_{p.name}").valid)
        if psum_port is not None and not acc_mode:
            conds.append(iss.first | psum_port.valid)
        m.d.comb += issue.eq(_all(conds))
        for p in streamed:
            m.d.comb += getattr(self, f"in_{p.name}").ready.eq(issue)
        if psum_port is not None and not acc_mode:
            m.d.comb += psum_port.ready.eq(issue & ~iss.first)
        m.d.comb += [line["valid"][0].eq(issue), line["first"][0].eq(issue & first_step),
                     line["last"][0].eq(issue & last_step), line["swap"][0].eq(issue & first_step & is_needs),
                     line["final"][0].eq(issue & last_step & iss.last)]
        with m.If(issue):
            m.d.sync += is_step.eq(is_step + 1)
            with m.If(last_step):
                m.d.sync += [is_step.eq(0), is_count.eq(is_count + 1)]
                iss.advance()
                with m.If(iss.last):
                    m.d.sync += is_done.eq(1)
        if has_loader:
            # the shadow is free once the last FU (largest skew) has swapped it in
            with m.If(adv & line["swap"][max_skew]):
                m.d.sync += shadow_full.eq(0)
            with m.If(ld_beat & (ld_row == rows - 1)):
                m.d.sync += shadow_full.eq(1)
        with m.If(start):
            m.d.sync += [is_step.eq(0), is_done.eq(0), is_count.eq(0), drained.eq(0), committed.eq(0)]

        def tap(name, s):
            return line[name][fg.skew(s)]

        # ---- operand values at every FU -----------------------------------------------------------
        values: dict[str, dict[tuple, object]] = {}
        for p in stationary:
            port = getattr(self, f"in_{p.name}")
            shp = _shape(p.width, design.type_of[p.name].signed)
            regs = {}
            for s in coords:
                shadow = Signal(shp, name=f"{p.name}_shadow_{_tag(s)}")
                act = Signal(shp, name=f"{p.name}_stat_{_tag(s)}")
                with m.If(ld_beat & (ld_row == _row_index(s, shape))):
                    m.d.sync += shadow.eq(port.payload[s[-1]])
                with m.If(adv & tap("swap", s)):
                    m.d.sync += act.eq(shadow)
                regs[s] = Mux(tap("swap", s), shadow, act)
            values[p.name] = regs
        g = fg.graph
        for p in streamed:
            port = getattr(self, f"in_{p.name}")
            shp = _shape(p.width, design.type_of[p.name].signed)
            vals: dict[tuple, object] = {}
            for lane in p.lanes:
                mem = ("mem", p.name, lane.index)
                skewed = _delay(m, port.payload[lane.index], lane.skew, adv, f"{p.name}_lane{lane.index}_skew", shp)
                frontier = []
                for _, v in g.out_edges(mem):
                    vals[v[1]] = skewed
                    frontier.append(v[1])
                while frontier:
                    nxt = []
                    for u in frontier:
                        for _, v, e in g.out_edges(("fu", u), data=True):
                            if e["operand"] != p.name or v[0] != "fu":
                                continue
                            vals[v[1]] = _delay(m, vals[u], e["delay"], adv, f"{p.name}_{_tag(u)}_to_{_tag(v[1])}", shp)
                            nxt.append(v[1])
                    frontier = nxt
            values[p.name] = vals

        prods = {}
        for s in coords:
            prod = None
            for p in fg.inputs:
                v = values[p.name][s]
                prod = v if prod is None else prod * v
            sig = Signal(acc_shape, name=f"prod_{_tag(s)}")
            m.d.comb += sig.eq(prod)
            prods[s] = sig

        # ---- outputs --------------------------------------------------------------------------------
        if acc_mode:
            m.d.comb += adv.eq(1)      # results leave through the output registers, never the pipeline
            outs = {}
            for s in coords:
                acc = Signal(acc_shape, name=f"{out_plan.name}_acc_{_tag(s)}")
                res = Signal(acc_shape, name=f"{out_plan.name}_out_{_tag(s)}")
                base = Const(0, acc_shape)
                if acc_init:
                    shadow = Signal(acc_shape, name=f"{out_plan.name}_init_{_tag(s)}")
                    with m.If(ld_beat & (ld_row == _row_index(s, shape))):
                        m.d.sync += shadow.eq(Mux(ld_first, 0, psum_port.payload[s[-1]]))
                    base = Mux(tap("swap", s), shadow, 0)
                total = Signal(acc_shape, name=f"{out_plan.name}_sum_{_tag(s)}")
                m.d.comb += total.eq(Mux(tap("first", s), base, acc) + prods[s])
                with m.If(adv & tap("valid", s)):
                    m.d.sync += acc.eq(total)
                    with m.If(tap("last", s)):
                        m.d.sync += res.eq(total)
                outs[s] = res
            with m.If(line["last"][max_skew]):
                m.d.sync += committed.eq(committed + 1)
            dr_row = Signal(range(max(rows, 2)), name="drain_row")
            m.d.comb += out_port.valid.eq(running & (drained < committed))
            for lane in range(shape[-1]):
                col = Array([outs[s] for s in coords if s[-1] == lane])
                m.d.comb += out_port.payload[lane].eq(col[dr_row])
            with m.If(out_port.valid & out_port.ready):
                m.d.sync += dr_row.eq(dr_row + 1)
                with m.If(dr_row == rows - 1):
                    m.d.sync += [dr_row.eq(0), drained.eq(drained + 1)]
            with m.If(start):
                m.d.sync += dr_row.eq(0)
            m.d.comb += finish.eq(running & is_done & (drained == is_count))
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
            for lane in out_plan.lanes:
                src = Const(0, acc_shape)
                if out_plan.psum_in:
                    src = _delay(m, Mux(iss.first, 0, psum_port.payload[lane.index]), lane.skew, adv,
                                 f"{out_plan.name}_psum{lane.index}_skew", acc_shape)
                if out_plan.tree_axes:
                    reg = Signal(acc_shape, name=f"{out_plan.name}_tree{lane.index}")
                    total = src
                    for s in lane.fus:
                        total = total + prods[s]
                    with m.If(adv):
                        m.d.sync += reg.eq(total)
                    node = ("tree", out_plan.name, lane.index)
                else:
                    prev = None
                    for s in lane.fus:
                        if prev is not None:
                            hop = g.edges[("fu", prev), ("fu", s)]["delay"]
                            src = _delay(m, reg, hop - 1, adv, f"{out_plan.name}_{_tag(prev)}_to_{_tag(s)}", acc_shape)
                        reg = Signal(acc_shape, name=f"{out_plan.name}_psum_{_tag(s)}")
                        with m.If(adv):
                            m.d.sync += reg.eq(src + prods[s])
                        prev = s
                    node = ("fu", lane.fus[-1])
                res = _delay(m, reg, _drain_delay(fg, node, out_plan.name), adv,
                             f"{out_plan.name}_out{lane.index}_deskew", acc_shape)
                m.d.comb += out_port.payload[lane.index].eq(res)
        return m


class _Odometer:
    """Tile counters over the outer loops (innermost fastest), with first-visit and last-tile flags."""

    def __init__(self, m: Module, name: str, outer, red, trips, reset):
        self.m = m
        self.outer = outer
        self.trips = trips
        self.cnt = {d: Signal(TRIP_BITS, name=f"{name}_tile_{d}") for d in outer}
        self.first = Signal(name=f"{name}_first_visit")
        self.last = Signal(name=f"{name}_last_tile")
        m.d.comb += self.first.eq(Const(1) if not red else _all([self.cnt[d] == 0 for d in red]))
        m.d.comb += self.last.eq(Const(1) if not outer else _all([self.cnt[d] == trips[d] - 1 for d in outer]))
        with m.If(reset):
            for d in outer:
                m.d.sync += self.cnt[d].eq(0)

    def advance(self):
        carry = Const(1)
        for d in reversed(self.outer):
            wrap_here = self.cnt[d] == self.trips[d] - 1
            with self.m.If(carry):
                self.m.d.sync += self.cnt[d].eq(Mux(wrap_here, 0, self.cnt[d] + 1))
            carry = carry & wrap_here


def _drain_delay(fg: FUGraph, node, operand) -> int:
    for _, v, e in fg.graph.out_edges(node, data=True):
        if v[0] == "drain" and e["operand"] == operand:
            return e["delay"]
    raise ValueError(f"{node} has no drain edge")


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


def _delay(m: Module, value, n: int, en, name: str, shape):
    """``value`` delayed by n enabled clock cycles (n = 0: the value itself, as a named wire)."""
    if n == 0:
        return value
    prev = value
    for k in range(n):
        r = Signal(shape, name=f"{name}{k}" if n > 1 else name)
        with m.If(en):
            m.d.sync += r.eq(prev)
        prev = r
    return prev
