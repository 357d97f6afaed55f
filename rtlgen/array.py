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

import functools
import operator


import networkx as nx

from amaranth import Array, Const, Module, Mux, Signal, hdl, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.dataflow.compile import CompiledArray
from archgen.dataflow.control import (CommandHW, accumulator_drain_hw, all_of, halo_hw, issuer_hw, loader_hw,
                                      outer_pad_hw, stream_drain_hw)
from archgen.dataflow.ir import STEP_BITS, TRIP_BITS, CommandLayout, Direction, Node, NodeKind, PortRole, Role, port_name
from archgen.dataflow.reduce_skew import drain_groups, drain_skews, product_waits, rep_waits
from archgen.mappings.tiling import delay_axes, outer_pads, row_pads
from archgen.rtlgen.datapath import RetimedNets, delay_line, fifo_buffer, shape_of, tag

__all__ = ["ArrayTop", "struct_layout", "pad_flags", "pad_mask", "fifo_step_registers", "fifo_loop", "trips_product",
           "waited_drain", "drain_psum"]


def struct_layout(command: CommandLayout) -> data.StructLayout:
    """The Amaranth layout of a command word described as plain data by the compile step."""
    layout = data.StructLayout({f.name: unsigned(f.bits) for f in command.fields})
    assert all(layout[f.name].offset == f.offset for f in command.fields)
    return layout


def pad_flags(m: Module, cmd: CommandHW, issue, df, fg, offsets: dict):
    """The map's own schedule (mappings/tiling.py ``RowPad``): per padded loop {``pad_<loop>_<k>``: flag} for each
    distinct FU offset k, set while the issued step is outside the positions of the FUs at offset k (their
    products are masked). Shared by the single and the fused top (there gated by 'this dataflow runs'); a
    generator, one loop at a time, so the caller's statements keep their order (deterministic Verilog names)."""
    inner, spans = df.inner_dims(), dict(fg.halo)
    for loop, halo in fg.halo:
        flags = halo_hw(m, hdl, cmd, issue, loop, halo, inner[inner.index(loop) + 1:], offsets[loop], spans)
        yield {f"pad_{loop}_{k}": f for k, f in flags.items()}


def pad_mask(pads, coord, tap):
    """FU ``coord``'s product mask under the map's own schedule: the OR of its padded loops' flags, each read
    through ``tap(flag name)`` (the step line at the FU's node time)."""
    return functools.reduce(operator.or_, [tap(f"pad_{p.loop}_{p.offset(coord)}") for p in pads])


def fifo_step_registers(m: Module, design, df, fg, padded: bool, payload, latch) -> dict:
    """Run-time FIFO depth in steps per loop the delay connections step (the product of the command's trip
    counts of the loops after it, a padded loop's with its span: mappings/tiling.py ``fifo_steps``), latched
    from the command ``payload`` when ``latch``; {} when the FIFOs are one register each or there are none."""
    if not fg.fifos():      # the map's own schedule may have the loops and no FIFO
        return {}
    spans = dict(fg.halo) if padded else {}
    after = {a.loop: a.after for a in delay_axes(design, df) if a.after}
    out = {}
    for loop, loops in after.items():
        steps = Signal(range(design.max_fifo_depth + 1), name="fifo_steps" if len(after) == 1 else f"fifo_steps_{loop}")
        with m.If(latch):
            m.d.sync += steps.eq(trips_product(payload, loops, spans))   # map_problem / the layer program keep it
        out[loop] = steps                                                 # <= array.max_fifo_depth
    return out


def trips_product(payload, loops, spans: dict):
    """The product of the command ``payload``'s trip counts of ``loops``, a padded loop's with its span (``spans``):
    the steps of one iteration of the loop they follow."""
    value = Const(1)
    for d in loops:
        trips = getattr(payload, f"trips_{d}")
        value = value * (trips + spans[d] if d in spans else trips)
    return value


def wait_product(m: Module, name: str, value, shape, shift, waits: dict, steps: dict, max_depth: int, start):
    """A product that waits before its lane's reduction (dataflow/reduce_skew.py ``product_waits``: {loop: n}),
    shifting on ``shift`` (the FU's valid steps at its product time), so the lane sums terms of one position of each
    padded loop whatever bubbles the issuer leaves: a register chain of n on the tile's last loop (one iteration is
    one step), a buffer of run-time depth n x ``steps[loop]`` on a loop with loops after it (as the delay
    connections' FIFOs). Shared by the single and the fused top.

    A buffer reads zero until it has shifted its depth since the command ``start``: a command's first reads reach
    back past its first row (padding beats only), and under a deeper command than the last one they would read the
    last command's unmasked products (a register chain's last n entries are always masked, zero)."""
    for loop, n in sorted(waits.items()):
        if loop in steps:
            out = fifo_buffer(m, f"{name}_{loop}", value, shape, shift, n, steps[loop], max_depth)
            filled = Signal(range(n * max_depth + 1), name=f"{name}_{loop}_filled")
            with m.If(start):
                m.d.sync += filled.eq(0)
            with m.Elif(shift & (filled < n * steps[loop])):
                m.d.sync += filled.eq(filled + 1)
            value = Mux(filled < n * steps[loop], 0, out)
        else:
            value = _delay(m, value, n, shift, name, shape)
    return value


def waited_drain(m: Module, outs: dict, groups, tile_drained, start, per: dict, shape, max_depth: int,
                 prefix: str = "", psums: dict | None = None) -> dict:
    """The result registers ``outs`` (FU -> value) as the rows drain them when the output is held per FU over skewed
    loops l outside the tile and reduced along the axes their skews move (dataflow/reduce_skew.py ``drain_groups``):
    each FU accumulates its own tile, FU s's drained sum waits n_l iterations of each l (sum of n_l x D_l drains,
    ``per`` = {l: D_l}, D_l the tiles of one iteration of l, latched on ``start``: a buffer per loop, in series), and
    the group's representative row drains the group's sum, the other rows 0. ``psums``: rep -> the partial sum of
    its drained element, for a representative that waits itself (added here, unwaited). A wait reaching before the
    problem's first tile adds 0 (the buffers still hold the previous problem's tiles). Shared by the single and the
    fused top (there per group of dataflows that wait alike)."""
    tiles = {loop: Signal(range(max_depth + 1), name=f"{prefix}drain_wait_tiles_{loop}") for loop in per}
    drains = Signal(32, name=f"{prefix}tiles_drained")
    with m.If(start):
        m.d.sync += [tiles[loop].eq(value) for loop, value in per.items()] + [drains.eq(0)]
    with m.Elif(tile_drained):
        m.d.sync += drains.eq(drains + 1)
    new, psums = dict(outs), psums or {}
    for rep, members in groups:
        waiting = dict(members)
        total = psums.get(rep, 0) if rep in waiting else outs[rep]
        for s, waits in members:
            late = outs[s]
            for loop, n in waits:
                name = f"{prefix}drain_{tag(s)}_wait" + (f"_{loop}" if len(per) > 1 else "")
                late = fifo_buffer(m, name, late, shape, tile_drained, n, tiles[loop], max_depth)
            total = total + Mux(drains >= functools.reduce(operator.add, (n * tiles[loop] for loop, n in waits)),
                                late, 0)
            new[s] = Const(0, shape)
        new[rep] = Signal(shape, name=f"{prefix}drain_{tag(rep)}_sum")
        m.d.comb += new[rep].eq(total)
    return new


def drain_psum(m: Module, base, first, last, en, shape, name: str):
    """The partial sum a waiting representative (dataflow/reduce_skew.py ``rep_waits``) adds at its drain: ``base``
    as its tile's first step takes it, held to the tile's last step (then beside the result register). Its
    accumulator starts from 0 instead, since its own tile sum waits and the partial sum must not."""
    held = Signal(shape, name=f"{name}_psum_held")
    out = Signal(shape, name=f"{name}_psum")
    with m.If(en & first):
        m.d.sync += held.eq(base)
    with m.If(en & last):
        m.d.sync += out.eq(Mux(first, base, held))
    return out


def wait_step_registers(m: Module, design, df, fg, waits: dict, payload, latch) -> dict:
    """Run-time steps of one iteration of each waited loop (``waits``: FU -> {loop: n}) with loops after it in the
    tile (mappings/tiling.py ``output_wait_steps`` of the command's trips), latched from ``payload`` when ``latch``;
    {} when every wait is on the tile's last loop."""
    inner, spans, outer = df.inner_dims(), dict(fg.halo), list(df.outer_dims())
    out = {}
    for loop in sorted({d for w in waits.values() for d in w if d != inner[-1]}):
        steps = Signal(range(design.max_fifo_depth + 1), name=f"wait_steps_{loop}")
        # a loop outside the tile: the tiles of its later outer loops x the command's steps per tile
        value = (trips_product(payload, outer[outer.index(loop) + 1:], {}) * payload.steps if loop in outer else
                 trips_product(payload, inner[inner.index(loop) + 1:], spans))
        with m.If(latch):     # map_problem keeps it <= array.max_fifo_depth
            m.d.sync += steps.eq(value)
        out[loop] = steps
    return out


def fifo_loop(design, df, operand: str, axis: int) -> str:
    """The loop a delay connection of ``operand`` along array ``axis`` steps (its FIFO's run-time depth)."""
    return next(a.loop for a in delay_axes(design, df) if a.operand == operand and a.axis == axis)


_shape, _tag = shape_of, tag


def port_members(ports, command: CommandLayout) -> dict:
    """The component signature of an array top's ports: the command stream as a struct of its fields,
    data streams as arrays of lanes, plain signals by width (shared by the tiled, fused and skewed tops)."""
    members = {}
    for port in ports:
        if port.role is PortRole.COMMAND:
            sig = stream.Signature(struct_layout(command))
        elif port.stream:
            sig = stream.Signature(data.ArrayLayout(shape_of(port.width, port.signed), port.lanes))
        else:
            sig = port.width
        members[port.name] = Out(sig) if port.direction is Direction.OUT else In(sig)
    return members


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
        # the map's own schedule of skews inside the tile (``schedule: map``): products masked per FU (offset_l(s))
        self._pads = row_pads(compiled.design, compiled.dataflow)
        self._pad_offsets = {p.loop: p.offsets(compiled.design.shape) for p in self._pads}
        # ... and of skewed reduction loops outside the tile (``outer_pads``): masked per FU by the tile counter
        self._outer = outer_pads(compiled.design, compiled.dataflow)
        # ... and of an output reduced along an axis a padded loop it uses is skewed along: products wait per FU
        self._waits = product_waits(self.fg)
        # ... and of such a loop outside the tile (output held per FU): each FU's drained sum waits
        self._drain_groups = drain_groups(self.fg)
        self._rep_waits, self._drain_psums = rep_waits(self._drain_groups), {}
        # a de-skewing layer core's partial-sum write lag in beats (rtlgen/layer_top.py sets it; dataflow/control.py
        # psum_raw_hw); None: the array level, where the host feeds each lane its own element
        self.psum_skew = None
        super().__init__(port_members(compiled.ports, compiled.command))

    def _in(self, operand: str):
        return getattr(self, port_name(PortRole.INPUT, operand))

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        sch, plans = self.schedule, self.fg
        out_port = getattr(self, self.compiled.output_port.name)
        psum = self.compiled.psum_port
        psum_port = None if psum is None else getattr(self, psum.name)
        stationary = [p for p in plans.inputs if p.role is Role.STATIONARY]
        streamed = [p for p in plans.inputs if p.role is Role.STREAM]
        cmd, finish = self._command(m)
        adv = Signal(name="advance")          # the datapath (delay lines, FUs) moves one slot
        line = self._step_line(m, adv)

        loader = None
        if sch.has_loader:
            def load_valid(first, row):
                valids = [self._in(p.name).valid for p in stationary]
                if sch.accumulate and sch.psum_in:
                    psum_valid = first | psum_port.valid
                    valids.append(psum_valid if self._fewer_psum_rows is None else psum_valid | self._fewer_psum_rows(row))
                return all_of(valids) if valids else Const(1)

            # a partial-sum preload reads what earlier tiles wrote: it waits for their drain
            preload_after = Signal(name="tile_drained_for_preload") if sch.accumulate and sch.psum_in else None
            loader = loader_hw(m, hdl, sch, cmd, load_valid, line["swap"][0], adv & line["swap"][sch.swap_skew],
                               preload_after)
            for p in stationary:
                m.d.comb += self._in(p.name).ready.eq(loader.beat)
            if sch.accumulate and sch.psum_in:
                ready = loader.beat & ~loader.first
                if self._fewer_psum_rows is not None:
                    ready = ready & ~self._fewer_psum_rows(loader.row)
                m.d.comb += psum_port.ready.eq(ready)

        def issue_valid(first):
            valids = [self._in(p.name).valid for p in streamed]
            if psum_port is not None and not sch.accumulate:
                valids.append(first | psum_port.valid)
            return all_of(valids) if valids else Const(1)

        drained_all = Signal(name="all_tiles_drained") if sch.accumulate else None
        out_left = out_port.valid & out_port.ready       # a streamed output beat left (psum read-after-write)
        iss = issuer_hw(m, hdl, sch, cmd, adv, issue_valid, None if loader is None else loader.ready, drained_all,
                        out_left, self.psum_skew)
        for p in streamed:
            m.d.comb += self._in(p.name).ready.eq(iss.issue)
        if psum_port is not None and not sch.accumulate:
            m.d.comb += psum_port.ready.eq(iss.issue & ~iss.first_visit)
        m.d.comb += [line["valid"][0].eq(iss.issue), line["first"][0].eq(iss.first_step),
                     line["last"][0].eq(iss.last_step), line["swap"][0].eq(iss.swap),
                     line["final"][0].eq(iss.final)]
        if self._pads:        # the map's own schedule: one mask flag per padded loop and distinct offset
            for flags in pad_flags(m, cmd, iss.issue, self.compiled.dataflow, self.fg, self._pad_offsets):
                m.d.comb += [line[n][0].eq(f) for n, f in flags.items()]
        for p in self._outer:
            flags = outer_pad_hw(m, hdl, cmd, iss.tile, p.loop, p.span(self.compiled.design.shape),
                                 p.offsets(self.compiled.design.shape))
            m.d.comb += [line[f"pad_{p.loop}_{k}"][0].eq(f) for k, f in flags.items()]
        for loop, halo in () if self._pads else self.fg.halo:
            m.d.comb += line["halo"][0].eq(halo_hw(m, hdl, cmd, iss.issue, loop, halo, self.fg.fifo_depth_loops))

        if sch.accumulate:
            drain = accumulator_drain_hw(m, hdl, sch, cmd, iss.last_step, line["last"][sch.commit_skew],
                                         out_port.ready, iss.done)
            m.d.comb += drained_all.eq(drain.drained_all)
            if sch.psum_in:
                m.d.comb += preload_after.eq(drain.tile_drained)
        else:
            lat = sch.out_latency
            drain = stream_drain_hw(m, hdl, sch, cmd, line["valid"][lat], line["final"][lat], out_port.ready)
        m.d.comb += [out_port.valid.eq(drain.valid), adv.eq(drain.advance), finish.eq(drain.finish)]
        self._datapath(m, line, adv, loader, iss, drain, self._fifo_steps(m))
        return m

    def _fifo_steps(self, m: Module) -> dict:
        """Run-time FIFO depth in steps per loop the delay connections step (:func:`fifo_step_registers`),
        latched with the command."""
        return fifo_step_registers(m, self.compiled.design, self.compiled.dataflow, self.fg, bool(self._pads),
                                   self.cmd.payload, self.cmd.valid & self.cmd.ready)

    def _command(self, m: Module) -> tuple[CommandHW, Signal]:
        """Latch the command; counts minus one, so the per-cycle compares are plain equalities."""
        df = self.compiled.dataflow
        outer = tuple(df.outer_dims())
        red = tuple(d for d in outer if not self.compiled.design.operation.output.uses(d))
        steps_m1 = Signal(STEP_BITS, name="steps_minus_1")
        trips = {f.loop: Signal(TRIP_BITS, name=f"trips_minus_1_{f.loop}") for f in self.compiled.command.fields
                 if f.loop is not None}
        running = Signal(name="running")
        start = Signal(name="start")
        finish = Signal(name="finish")
        m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running), self.busy.eq(running)]
        with m.If(start):
            m.d.sync += [running.eq(1), steps_m1.eq(self.cmd.payload.steps - 1)]
            for f in self.compiled.command.fields:
                if f.loop is not None:
                    m.d.sync += trips[f.loop].eq(getattr(self.cmd.payload, f.name) - 1)
        with m.If(finish):
            m.d.sync += running.eq(0)
        m.d.comb += self.done.eq(finish)
        return CommandHW(start, running, steps_m1, trips, outer, red), finish

    def _step_line(self, m: Module, adv) -> dict:
        """Per issued step (valid, first, last, swap, final), delayed by k slots at index k: every FU taps
        the control of the step it is working on at its own node time."""
        sch = self.schedule
        length = max(sch.commit_skew, sch.swap_skew, 0 if sch.accumulate else sch.out_latency,
                     *(self._product_time(s) for s in self._waits))
        names = ("valid", "first", "last", "swap", "final")
        if self._pads or self._outer:
            names += tuple(f"pad_{loop}_{k}" for loop, ks in self._pad_offsets.items() for k in ks)
            names += tuple(f"pad_{p.loop}_{k}" for p in self._outer for k in p.offsets(self.compiled.design.shape))
        elif self.fg.halo:
            names += ("halo",)
        line = {n: [Signal(name=f"step_{n}_d{k}") for k in range(length + 1)] for n in names}
        for k in range(1, length + 1):
            with m.If(adv):
                for n in names:
                    m.d.sync += line[n][k].eq(line[n][k - 1])
        return line

    # ---- datapath: one Amaranth value per primitive node output, registers per retimed edge ---------
    def _datapath(self, m: Module, line, adv, loader, iss, drain, fifo_steps):
        fg, tm, design = self.fg, self.timing, self.compiled.design
        out = fg.output
        ctx = _Datapath(m, line, adv, loader, iss, tm, _shape(out.width, out.signed),
                        {p.name: _shape(p.width, design.type_of[p.name].signed) for p in fg.inputs})
        ctx.fifo_steps = fifo_steps
        ctx.wait_steps = self._wait_steps(m)
        pads = self._pads + self._outer
        mask = ((lambda v: pad_mask(pads, v.coord, lambda name: ctx.tap(name, v)))
                if pads else (lambda v: ctx.tap("halo", v)) if fg.halo else None)
        ctx.nets = RetimedNets(m, tm, adv, ctx.in_shape.__getitem__, ctx.acc_shape, mask=mask)
        for p in fg.inputs:
            if p.role is Role.STATIONARY:
                self._shadows(ctx, p.name)
        outs = {}
        pg = tm.prim.graph
        for v in nx.topological_sort(pg):
            if ctx.nets.build(v):
                if v.kind is NodeKind.MUL and v.coord in self._waits:
                    self._wait(ctx, v)
                continue
            kind = v.kind
            if kind is NodeKind.MEM_PORT and v in tm.lane_offset:       # load-phase ports write shadows
                self._memory_lane(ctx, v)
            elif kind is NodeKind.STATIONARY_REG:
                self._stationary_register(ctx, v)
            elif kind is NodeKind.FIFO:
                self._fifo(ctx, v)
            elif kind is NodeKind.ACC:
                outs[v.coord] = self._accumulator(ctx, v)
            elif kind is NodeKind.DRAIN and not self.schedule.accumulate:
                self._output_lane(ctx, v)
        if self.schedule.accumulate:
            self._drain_rows(ctx, outs, drain)

    def _product_time(self, coord) -> int:
        """The slot at which FU ``coord``'s product leaves its multiplier (the step line index it is valid at)."""
        v = Node(NodeKind.MUL, coord)
        return self.timing.time[v] + self.timing.node_latency(v)

    def _wait(self, ctx, v: Node):
        """FU v's product waits its lane's offset difference before the reduction (:func:`wait_product`), shifting
        on the FU's valid steps."""
        shift = ctx.adv & ctx.line["valid"][self._product_time(v.coord)]
        ctx.nets.out[v] = wait_product(ctx.m, f"prod_{_tag(v.coord)}_wait", ctx.nets.out[v], ctx.acc_shape, shift,
                                       self._waits[v.coord], ctx.wait_steps, self.compiled.design.max_fifo_depth,
                                       self.cmd.valid & self.cmd.ready)

    def _wait_steps(self, m: Module) -> dict:
        """Run-time steps of one iteration of each waited loop with loops after it (:func:`wait_step_registers`)."""
        return wait_step_registers(m, self.compiled.design, self.compiled.dataflow, self.fg, self._waits,
                                   self.cmd.payload, self.cmd.valid & self.cmd.ready)

    def _shadows(self, ctx, operand: str):
        port = self._in(operand)
        for s in self.fg.coords():
            shadow = Signal(ctx.in_shape[operand], name=f"{operand}_shadow_{_tag(s)}")
            with ctx.m.If(ctx.loader.beat & (ctx.loader.row == _row_index(s, self.compiled.design.shape))):
                ctx.m.d.sync += shadow.eq(port.payload[s[-1]])
            ctx.shadow_of[(operand, s)] = shadow

    def _memory_lane(self, ctx, v: Node):
        operand, lane = v.operand, v.lane
        if operand == self.fg.output.name:
            psum_port = getattr(self, self.compiled.psum_port.name)
            raw, shp = Mux(ctx.iss.first_visit, 0, psum_port.payload[lane]), ctx.acc_shape
        else:
            raw, shp = self._in(operand).payload[lane], ctx.in_shape[operand]
        ctx.nets.out[v] = _delay(ctx.m, raw, self.timing.lane_offset[v], ctx.adv, f"{operand}_lane{lane}_issue", shp)

    def _fifo(self, ctx, v: Node):
        """A delay connection's FIFO: it shifts once per valid step at its own node time, so it holds the
        sender's values of the last ``depth`` steps whatever bubbles the issuer left between them. On the
        innermost loop ``depth`` is a fixed register count; on an outer inner loop it is the command's run-time
        depth (``fifo_steps``): a buffer of ``array.max_fifo_depth`` entries (rounded up to a power of two),
        written at ``wp`` and read at ``wp - depth``."""
        pg = self.timing.prim.graph
        (u,) = list(pg.predecessors(v))
        (dst,) = list(pg.successors(v))
        link = self.fg.link(*self.timing.prim.wire(v, dst).fu_edge, operand=v.operand)
        depth = link.fifo
        shp = ctx.in_shape[v.operand]
        prev = ctx.nets.src(u, v, shp)
        shift = ctx.adv & ctx.tap("valid", v)
        loop = fifo_loop(self.compiled.design, self.compiled.dataflow, v.operand, link.axis)
        if loop in ctx.fifo_steps:
            ctx.nets.out[v] = fifo_buffer(ctx.m, f"{v.operand}_fifo_{_tag(v.coord)}", prev, shp, shift, depth,
                                          ctx.fifo_steps[loop], self.compiled.design.max_fifo_depth)
            return
        for k in range(depth):
            r = Signal(shp, name=f"{v.operand}_fifo_{_tag(v.coord)}_{k}")
            with ctx.m.If(shift):
                ctx.m.d.sync += r.eq(prev)
            prev = r
        ctx.nets.out[v] = prev

    def _stationary_register(self, ctx, v: Node):
        m, s, operand = ctx.m, v.coord, v.operand
        shadow = ctx.shadow_of[(operand, s)]
        act = Signal(ctx.in_shape[operand], name=f"{operand}_stat_{_tag(s)}")
        swap = ctx.tap("swap", Node(NodeKind.MUL, s))
        with m.If(ctx.adv & swap):
            m.d.sync += act.eq(shadow)
        ctx.nets.out[v] = Mux(swap, shadow, act)

    def _accumulator(self, ctx, v: Node):
        m, s = ctx.m, v.coord
        name, shape = self.fg.output.name, ctx.acc_shape
        (mul,) = [u for u, e in self.timing.prim.in_wires(v) if not e.hold]
        acc = Signal(shape, name=f"{name}_acc_{_tag(s)}")
        res = Signal(shape, name=f"{name}_out_{_tag(s)}")
        base = Const(0, shape)
        if self.schedule.psum_in:
            psum_port = getattr(self, self.compiled.psum_port.name)
            init = Signal(shape, name=f"{name}_init_{_tag(s)}")
            row, lane = self._drain_position[s]
            with m.If(ctx.loader.beat & (ctx.loader.row == row)):
                m.d.sync += init.eq(Mux(ctx.loader.first, 0, psum_port.payload[lane]))
            base = Mux(ctx.tap("swap", v), init, 0)
            if s in self._rep_waits:        # a waiting representative: its partial sum is added at the drain
                self._drain_psums[s] = drain_psum(m, base, ctx.tap("first", v), ctx.tap("last", v),
                                                  ctx.adv & ctx.tap("valid", v), shape, f"{name}_{_tag(s)}")
                base = Const(0, shape)
        total = Signal(shape, name=f"{name}_sum_{_tag(s)}")
        m.d.comb += total.eq(Mux(ctx.tap("first", v), base, acc) + ctx.nets.src(mul, v, shape))
        with m.If(ctx.adv & ctx.tap("valid", v)):
            m.d.sync += acc.eq(total)
            with m.If(ctx.tap("last", v)):
                m.d.sync += res.eq(total)
        ctx.nets.out[v] = acc
        return res

    def _output_lane(self, ctx, v: Node):
        """A streamed output lane: the drain register, then de-skewed to leave out_latency after its step."""
        m, pg, name = ctx.m, self.timing.prim.graph, self.fg.output.name
        (u,) = list(pg.predecessors(v))
        reg = Signal(ctx.acc_shape, name=f"{name}_drain{v.lane}")
        with m.If(ctx.adv):
            m.d.sync += reg.eq(ctx.nets.src(u, v, ctx.acc_shape))
        align = self.schedule.out_latency - (self.timing.time[v] + self.timing.node_latency(v))
        res = _delay(m, reg, align, ctx.adv, f"{name}_out{v.lane}_align", ctx.acc_shape)
        m.d.comb += getattr(self, self.compiled.output_port.name).payload[v.lane].eq(res)

    def _drain_rows(self, ctx, outs, drain):
        """Accumulated outputs: the drain's row selects one result register per lane."""
        out_port = getattr(self, self.compiled.output_port.name)
        if self._drain_groups:
            outs = self._waited_drain(ctx, outs, drain)
        for lane in self.fg.output.lanes:
            col = Array([outs[s] for s in lane.fus])
            ctx.m.d.comb += out_port.payload[lane.index].eq(col[drain.row])

    def _waited_drain(self, ctx, outs, drain) -> dict:
        """A skewed loop l outside the tile the output uses, skewed along an axis it is reduced along
        (dataflow/reduce_skew.py ``drain_groups``): :func:`waited_drain` on this top's command."""
        outer = list(self.compiled.dataflow.outer_dims())
        per = {p.loop: trips_product(self.cmd.payload, outer[outer.index(p.loop) + 1:], {})
               for p in drain_skews(self.fg)}
        return waited_drain(ctx.m, outs, self._drain_groups, drain.tile_drained, self.cmd.valid & self.cmd.ready,
                            per, ctx.acc_shape, self.compiled.design.max_fifo_depth, psums=self._drain_psums)

    @property
    def _fewer_psum_rows(self):
        """When the output is reduced across the array and an input is stationary, the loader runs more rows
        than there are partial-sum rows: a function telling whether its row is past them (else None)."""
        sch = self.schedule
        return None if sch.drain_rows >= sch.rows else (lambda row: row >= sch.drain_rows)

    @functools.cached_property
    def _drain_position(self) -> dict:
        """Accumulator coordinate -> (row, lane) in which it drains and is preloaded."""
        return {s: (row, lane.index) for lane in self.fg.output.lanes for row, s in enumerate(lane.fus)}


class _Datapath:
    """What the datapath builders share while one ArrayTop elaborates."""

    def __init__(self, m, line, adv, loader, iss, timing, acc_shape, in_shape):
        self.m, self.line, self.adv, self.loader, self.iss = m, line, adv, loader, iss
        self.timing, self.acc_shape, self.in_shape = timing, acc_shape, in_shape
        self.shadow_of: dict = {}
        self.nets = None
        self.fifo_steps = {}       # loop -> run-time FIFO depth in steps (delay connections on an outer inner loop)
        self.wait_steps = {}       # loop -> run-time steps of one iteration (output waits on a loop with loops after it)

    def tap(self, name: str, node: Node):
        """The control of the step ``node`` works on: the step line at the node's time."""
        return self.line[name][self.timing.time[node]]


def _row_index(s, shape) -> int:
    """Beat (row) in which FU s is loaded or drained: s without its last coordinate, raveled."""
    if len(shape) == 1:
        return 0
    idx = 0
    for c, e in zip(s[:-1], shape[:-1]):
        idx = idx * e + c
    return idx
