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
        red = set(d for d in outer if not design.operation.output.uses(d))

        # ---- controller state ---------------------------------------------------------------
        steps = Signal(STEP_BITS, name="steps")
        trips = {d: Signal(TRIP_BITS, name=f"trips_{d}") for d in outer}
        cnt = {d: Signal(TRIP_BITS, name=f"tile_{d}") for d in outer}
        cc = Signal(STEP_BITS + 1, name="cc")                 # cycle within COMPUTE
        row = Signal(range(max(rows, 2)), name="row")         # beat within LOAD / DRAIN
        first = Signal(name="first_visit")
        last_tile = Signal(name="last_tile")
        m.d.comb += first.eq(Const(1) if not red else _all([cnt[d] == 0 for d in red]))
        m.d.comb += last_tile.eq(Const(1) if not outer else _all([cnt[d] == trips[d] - 1 for d in outer]))

        stationary = [p for p in fg.inputs if p.role == "stationary"]
        streamed = [p for p in fg.inputs if p.role == "stream"]
        acc_mode = out_plan.role == "accumulate"
        needs_load = Signal(name="needs_load")
        load_cond = Const(1 if stationary else 0)
        if acc_mode and out_plan.psum_in:
            load_cond = load_cond | ~first
        m.d.comb += needs_load.eq(load_cond)

        in_window = Signal(name="in_window")                  # COMPUTE cycles that take an input beat
        out_window = Signal(name="out_window")                # COMPUTE cycles that give an output beat
        m.d.comb += in_window.eq(cc < steps)
        if not acc_mode:
            m.d.comb += out_window.eq((cc >= sch.out_latency) & (cc < steps + sch.out_latency))

        adv = Signal(name="advance")
        cadv = Signal(name="compute_advance")
        loading = Signal(name="loading")
        draining = Signal(name="draining")
        computing = Signal(name="computing")
        end_tile = Signal(name="end_of_tile")

        # which streams must offer a beat for the array to take one step
        ins_ok = Signal(name="inputs_ok")
        out_needed = Signal(name="output_needed")
        psum_stream_needed = Const(0)
        conds = []
        for p in stationary:
            conds.append(~loading | getattr(self, f"in_{p.name}").valid)
        for p in streamed:
            conds.append(~(computing & in_window) | getattr(self, f"in_{p.name}").valid)
        if psum_port is not None:
            if acc_mode:
                psum_stream_needed = loading & ~first
            else:
                psum_stream_needed = computing & in_window & ~first
            conds.append(~psum_stream_needed | psum_port.valid)
        m.d.comb += ins_ok.eq(_all(conds) if conds else 1)
        m.d.comb += out_needed.eq(draining if acc_mode else (computing & out_window))
        m.d.comb += adv.eq(ins_ok & (~out_needed | out_port.ready))
        m.d.comb += cadv.eq(adv & computing)
        m.d.comb += out_port.valid.eq(out_needed & ins_ok)
        for p in stationary:
            m.d.comb += getattr(self, f"in_{p.name}").ready.eq(adv & loading)
        for p in streamed:
            m.d.comb += getattr(self, f"in_{p.name}").ready.eq(adv & computing & in_window)
        if psum_port is not None:
            m.d.comb += psum_port.ready.eq(adv & psum_stream_needed)

        last_compute = cc == steps + sch.fill - 1

        def finish_tile():
            """End of a tile: the next tile (odometer, innermost outer loop fastest) or done."""
            m.d.comb += end_tile.eq(1)
            with m.If(last_tile):
                m.next = "DONE"
            with m.Else():
                m.next = "TILE"
                carry = Const(1)
                for d in reversed(outer):
                    wrap_here = cnt[d] == trips[d] - 1
                    with m.If(carry):
                        m.d.sync += cnt[d].eq(Mux(wrap_here, 0, cnt[d] + 1))
                    carry = carry & wrap_here
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += steps.eq(self.cmd.payload.steps)
                    for d in outer:
                        m.d.sync += [trips[d].eq(getattr(self.cmd.payload, f"trips_{d}")), cnt[d].eq(0)]
                    m.next = "TILE"
            with m.State("TILE"):
                m.d.sync += [cc.eq(0), row.eq(0)]
                with m.If(needs_load):
                    m.next = "LOAD"
                with m.Else():
                    m.next = "COMPUTE"
            with m.State("LOAD"):
                m.d.comb += loading.eq(1)
                with m.If(adv):
                    m.d.sync += row.eq(row + 1)
                    with m.If(row == rows - 1):
                        m.d.sync += row.eq(0)
                        m.next = "COMPUTE"
            with m.State("COMPUTE"):
                m.d.comb += computing.eq(1)
                with m.If(adv):
                    m.d.sync += cc.eq(cc + 1)
                    with m.If(last_compute):
                        if acc_mode:
                            m.next = "DRAIN"
                        else:
                            finish_tile()
            if acc_mode:
                with m.State("DRAIN"):
                    m.d.comb += draining.eq(1)
                    with m.If(adv):
                        m.d.sync += row.eq(row + 1)
                        with m.If(row == rows - 1):
                            finish_tile()
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~self.cmd.ready)

        # ---- control delay line: (valid, first step) of each FU, tapped at the FU's skew -------------
        max_skew = fg.max_skew
        v_line = [Signal(name=f"step_valid_d{k}") for k in range(max_skew + 1)]
        f_line = [Signal(name=f"step_first_d{k}") for k in range(max_skew + 1)]
        m.d.comb += [v_line[0].eq(computing & in_window), f_line[0].eq(computing & (cc == 0))]
        for k in range(1, max_skew + 1):
            with m.If(cadv):
                m.d.sync += [v_line[k].eq(v_line[k - 1]), f_line[k].eq(f_line[k - 1])]

        # ---- operand values at every FU -------------------------------------------------------
        values: dict[str, dict[tuple, object]] = {}
        for p in stationary:
            port = getattr(self, f"in_{p.name}")
            is_signed = design.type_of[p.name].signed
            regs = {}
            for s in coords:
                r = Signal(_shape(p.width, is_signed), name=f"{p.name}_stat_{_tag(s)}")
                with m.If(adv & loading & (row == _row_index(s, shape))):
                    m.d.sync += r.eq(port.payload[s[-1]])
                regs[s] = r
            values[p.name] = regs
        for p in streamed:
            port = getattr(self, f"in_{p.name}")
            is_signed = design.type_of[p.name].signed
            vals: dict[tuple, object] = {}
            lane_of_root = {}
            g = fg.graph
            for lane in p.lanes:
                mem = ("mem", p.name, lane.index)
                skewed = _delay(m, port.payload[lane.index], lane.skew, cadv, f"{p.name}_lane{lane.index}_skew",
                                _shape(p.width, is_signed))
                for _, v, e in g.out_edges(mem, data=True):
                    vals[v[1]] = skewed
                # follow FU-to-FU edges breadth first from the lane's FUs
                frontier = [v[1] for _, v in g.out_edges(mem)]
                while frontier:
                    nxt = []
                    for u in frontier:
                        for _, v, e in g.out_edges(("fu", u), data=True):
                            if e["operand"] != p.name or v[0] != "fu":
                                continue
                            vals[v[1]] = _delay(m, vals[u], e["delay"], cadv, f"{p.name}_{_tag(u)}_to_{_tag(v[1])}",
                                                _shape(p.width, is_signed))
                            nxt.append(v[1])
                    frontier = nxt
            values[p.name] = vals

        acc_shape = _shape(out_plan.width, out_plan.signed)
        prods = {}
        for s in coords:
            prod = None
            for p in fg.inputs:
                v = values[p.name][s]
                prod = v if prod is None else prod * v
            sig = Signal(acc_shape, name=f"prod_{_tag(s)}")
            m.d.comb += sig.eq(prod)
            prods[s] = sig

        # ---- outputs ---------------------------------------------------------------------------
        if acc_mode:
            accs = {}
            for s in coords:
                acc = Signal(acc_shape, name=f"{out_plan.name}_acc_{_tag(s)}")
                k = fg.skew(s)
                base = Const(0, acc_shape)
                if out_plan.psum_in:
                    init = Signal(acc_shape, name=f"{out_plan.name}_init_{_tag(s)}")
                    with m.If(adv & loading & ~first & (row == _row_index(s, shape))):
                        m.d.sync += init.eq(psum_port.payload[s[-1]])
                    base = Mux(first, 0, init)
                with m.If(cadv & v_line[k]):
                    m.d.sync += acc.eq(Mux(f_line[k], base, acc) + prods[s])
                accs[s] = acc
            for lane in range(shape[-1]):
                col = Array([accs[s] for s in coords if s[-1] == lane])
                m.d.comb += out_port.payload[lane].eq(col[row])
        elif out_plan.tree_axes:
            for lane in out_plan.lanes:
                tree = Signal(acc_shape, name=f"{out_plan.name}_tree{lane.index}")
                base = Const(0, acc_shape)
                if out_plan.psum_in:
                    base = _delay(m, Mux(first, 0, psum_port.payload[lane.index]), lane.skew, cadv,
                                  f"{out_plan.name}_psum{lane.index}_skew", acc_shape)
                total = base
                for s in lane.fus:
                    total = total + prods[s]
                with m.If(cadv):
                    m.d.sync += tree.eq(total)
                drain = _drain_delay(fg, ("tree", out_plan.name, lane.index), out_plan.name)
                res = _delay(m, tree, drain, cadv, f"{out_plan.name}_out{lane.index}_deskew", acc_shape)
                m.d.comb += out_port.payload[lane.index].eq(res)
        else:
            g = fg.graph
            for lane in out_plan.lanes:
                src = Const(0, acc_shape)
                if out_plan.psum_in:
                    src = _delay(m, Mux(first, 0, psum_port.payload[lane.index]), lane.skew, cadv,
                                 f"{out_plan.name}_psum{lane.index}_skew", acc_shape)
                prev = None
                for pos, s in enumerate(lane.fus):
                    if prev is not None:
                        hop = g.edges[("fu", prev), ("fu", s)]["delay"]
                        src = _delay(m, psum_regs_prev, hop - 1, cadv, f"{out_plan.name}_{_tag(prev)}_to_{_tag(s)}", acc_shape)
                    reg = Signal(acc_shape, name=f"{out_plan.name}_psum_{_tag(s)}")
                    with m.If(cadv):
                        m.d.sync += reg.eq(src + prods[s])
                    psum_regs_prev = reg
                    prev = s
                drain = _drain_delay(fg, ("fu", lane.fus[-1]), out_plan.name)
                res = _delay(m, psum_regs_prev, drain, cadv, f"{out_plan.name}_out{lane.index}_deskew", acc_shape)
                m.d.comb += out_port.payload[lane.index].eq(res)
        return m


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
