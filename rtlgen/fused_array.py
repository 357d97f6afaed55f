"""Amaranth top level of a fused design: several dataflows on one array, selected per command.

The datapath is the union of the dataflows' retimed primitive graphs (dataflow/fusion.py): one
multiplier, accumulator and partial-sum adder per FU, one shadow/stationary register pair per operand
and FU, one register chain per net as deep as the deepest tap any dataflow reads. Every node input whose
source or register tap differs between dataflows reads through a mux on the dataflow select register,
which the command latches (field ``dataflow``: the index in the fuse list). Each dataflow keeps its own
tile controller (the loader, issuer and drain halves of dataflow/control.py with that dataflow's
schedule, each in a submodule); only the selected one runs, and the step line they feed is shared.

Ports are the union of the dataflows' ports (rtlgen/array.py documents them); a stream has as many lanes
as the dataflow that uses most, and a dataflow with fewer uses lanes 0..n-1 (the others are ignored on
input and zero on output).
"""
from __future__ import annotations

import itertools

from amaranth import Array, Const, Module, Mux, Signal, hdl
from amaranth.lib import wiring

from archgen.dataflow.control import (CommandHW, accumulator_drain_hw, all_of, halo_hw, issuer_hw, loader_hw,
                                      outer_pad_hw, stream_drain_hw)
from archgen.dataflow.fusion import SELECT_FIELD, FusedArray, is_stt_view, numbered_slots, slot_of
from archgen.dataflow.ir import STEP_BITS, TRIP_BITS, Node, NodeKind, PortRole, Role, port_name
from archgen.mappings.tiling import outer_pads, row_pads
from archgen.dataflow.reduce_skew import fused_drain_groups, fused_wait_groups, product_waits, rep_waits
from archgen.rtlgen.array import (_row_index, fifo_loop, fifo_step_registers, pad_flags, pad_mask, port_members,
                                 drain_psum, trips_product, wait_product, wait_step_registers,
                                 waited_drain)
from archgen.dataflow.stt_array import is_direct, tag_port
from archgen.rtlgen.datapath import delay_line, fifo_buffer, shape_of, tag
from archgen.rtlgen.stt_array import tag_validity

__all__ = ["FusedArrayTop", "fused_verilog"]

_LINE = ("valid", "first", "last", "swap", "final")


def _any(values):
    values = list(values)
    if not values:
        return Const(0)
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


class FusedArrayTop(wiring.Component):
    """Top level of a fused array: the ports of rtlgen/array.py's ArrayTop (streams sized for the widest
    dataflow) and a command whose ``dataflow`` field selects the dataflow of the problem it starts."""

    def __init__(self, fused: FusedArray):
        self.fused = fused
        # per dataflow its view with FU nodes at the physical FUs (a folded map's own logical array renamed by
        # its placement); schedules, lanes and load rows stay each dataflow's own
        self.views = fused.hardware_views
        super().__init__(port_members(fused.ports, fused.command))
        self.mux_count = 0                      # muxes on the select built by the last elaborate
        # a de-skewing layer core's partial-sum write lag in beats, the selected dataflow's (rtlgen/layer_top.py sets
        # it; dataflow/control.py psum_raw_hw); None: the array level, where the host feeds each lane its element
        self.psum_skew = None

    def _port(self, name: str):
        return getattr(self, name, None)

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        F = self.fused
        self.mux_count = 0
        views = self.views
        self.sel = sel = Signal(range(max(len(views), 2)), name="dataflow_sel")
        running, start, finish = Signal(name="running"), Signal(name="start"), Signal(name="finish")
        steps_m1 = Signal(STEP_BITS, name="steps_minus_1")
        loops = [f.loop for f in F.command.fields if f.loop is not None]
        trips = {d: Signal(TRIP_BITS, name=f"trips_minus_1_{d}") for d in loops}
        m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running), self.busy.eq(running),
                     self.done.eq(finish)]
        with m.If(start):
            m.d.sync += [running.eq(1), steps_m1.eq(self.cmd.payload.steps - 1),
                         sel.eq(getattr(self.cmd.payload, SELECT_FIELD))]
            for d in loops:
                m.d.sync += trips[d].eq(getattr(self.cmd.payload, f"trips_{d}") - 1)
        with m.If(finish):
            m.d.sync += running.eq(0)

        self.adv = adv = Signal(name="advance")
        self.tiled = [k for k, v in enumerate(views) if not is_stt_view(v)]
        self.stt = [k for k, v in enumerate(views) if is_stt_view(v)]
        # an output reduced along an axis a padded loop it uses is skewed along: per dataflow its FUs' product waits
        # (dataflow/reduce_skew.py, keyed by its own logical FU), read off the step line at their product times
        self.waits = {k: product_waits(views[k].fu_graph) for k in self.tiled}
        self.wait_groups = fused_wait_groups(F)
        # ... and of such loops outside the tile (output held per FU): per dataflow its drained sums wait
        self.drain_sets = fused_drain_groups(F)
        self.drain_groups = {k: groups for (groups, _), ks in self.drain_sets.items() for k in ks}
        self.drain_psums = {k: {} for k in self.tiled}       # dataflow -> waiting rep -> its partial sum at the drain
        length = max([max(views[k].schedule.commit_skew, views[k].schedule.swap_skew,
                          0 if views[k].schedule.accumulate else views[k].schedule.out_latency) for k in self.tiled]
                     + [key[0] for groups in self.wait_groups.values() for key in groups], default=0)
        # delay connections: a halo flag rides the step line (products masked while the FIFOs fill); the map's own
        # schedule (``schedule: map``): its pad flags (rtlgen/array.py ``pad_flags``), set only while it runs; a
        # skewed reduction loop outside its tile: per-offset flags from its issuer's tile counter (``outer_pad_hw``)
        self.pads = {k: row_pads(views[k].design, views[k].dataflow) for k in self.tiled}
        self.outer = {k: outer_pads(views[k].design, views[k].dataflow) for k in self.tiled}
        self.names = names = _LINE + self._mask_names()
        self.line = line = {n: [Signal(name=f"step_{n}_d{k}") for k in range(length + 1)] for n in names}
        for k in range(1, length + 1):
            with m.If(adv):
                for n in names:
                    m.d.sync += line[n][k].eq(line[n][k - 1])

        self.ctl = {k: self._controller(m, k, views[k], start, running, steps_m1, trips) for k in self.tiled}
        ctl = self.ctl
        out_port = self._port(F.ports[[p.role for p in F.ports].index(PortRole.OUTPUT)].name)
        self.stt_ctl = {k: self._stt_controller(m, k, views[k], start, steps_m1, out_port) for k in self.stt}
        for n in names:
            m.d.comb += line[n][0].eq(_any(c[n] for c in ctl.values() if n in c))
        m.d.comb += [adv.eq(self._pick(m, 1, "advance_sel", [(k, k, c["advance"]) for k, c in ctl.items()])),
                     finish.eq(_any(c["finish"] for c in list(ctl.values()) + list(self.stt_ctl.values())))]
        every = list(ctl.values()) + list(self.stt_ctl.values())
        for port in F.ports:
            if port.role in (PortRole.INPUT, PortRole.PSUM):
                m.d.comb += self._port(port.name).ready.eq(_any(c["ready"].get(port.name, Const(0)) for c in every))
        m.d.comb += out_port.valid.eq(_any(c["out_valid"] for c in every))
        # the shared multipliers' stages move with the selected dataflow's enable
        self.mul_en = self._pick(m, 1, "multiplier_enable_sel",
                                 [(k, "adv", adv) for k in self.tiled]
                                 + [(k, ("fire", k), c["fire"]) for k, c in self.stt_ctl.items()])
        self._datapath(m, out_port)
        return m

    def _mask_names(self) -> tuple:
        """The step line's mask flags: ``halo`` when a dataflow has delay connections under the compressed
        schedule, ``pad_<loop>_<k>`` of every ``schedule: map`` dataflow, its loops inside the tile and outside
        (two such dataflows share a name: each sets it only while it runs, and each multiplier reads the selected
        dataflow's own flags)."""
        pads = {k: {p.loop: p.offsets(self.views[k].design.shape) for p in self._padded(k)} for k in self.tiled
                if self._padded(k)}
        halo = ("halo",) if any(self.views[k].fu_graph.halo for k in self.tiled if k not in pads) else ()
        return halo + tuple(sorted({f"pad_{loop}_{o}" for offs in pads.values() for loop, ks in offs.items()
                                    for o in ks}))

    def _padded(self, k: int) -> tuple:
        """Dataflow k's padded loops under the map's own schedule: those inside its tile, then those outside."""
        return self.pads.get(k, ()) + self.outer.get(k, ())

    # ---- selection ------------------------------------------------------------------------------
    def _pick(self, m, shape, name, options):
        """The value of the selected dataflow among ``options`` = [(dataflow index, key, value)]: options
        with equal keys are one value (a shared source needs no mux); dataflows not listed do not care."""
        groups: dict = {}
        for k, key, value in options:
            groups.setdefault(key, (value, []))[1].append(k)
        if not groups:
            return Const(0, shape)
        items = list(groups.values())
        if len(items) == 1:
            return items[0][0]
        self.mux_count += 1
        sig = Signal(shape, name=name)
        with m.Switch(self.sel):
            for value, ks in items[1:]:
                with m.Case(*ks):
                    m.d.comb += sig.eq(value)
            with m.Default():
                m.d.comb += sig.eq(items[0][0])
        return sig

    # ---- a skewed stt map's controller (rtlgen/stt_array.py) ---------------------------------------
    def _stt_controller(self, top, k, view, start, steps_m1, out_port) -> dict:
        """The lock-step slot counter of skewed map ``k``: one slot fires when its streams all have a beat
        and the output takes one; done one cycle after the last slot (stt_array.py's contract)."""
        m = Module()
        top.submodules[f"ctrl_{view.dataflow.name}"] = m
        net = view.network
        names = [port_name(PortRole.INPUT, h.name) for h in net.inputs] + [view.psum_port.name]
        if net.carrier:
            names.append(tag_port(net.carrier))
        active, done = Signal(name="active"), Signal(name="done_pulse")
        count = Signal(STEP_BITS, name="slot")
        beats, fire = Signal(name="beats_valid"), Signal(name="fire")
        m.d.comb += [beats.eq(active & all_of([self._port(n).valid for n in names])),
                     fire.eq(beats & out_port.ready)]
        m.d.sync += done.eq(0)
        with m.If(start & (getattr(self.cmd.payload, SELECT_FIELD) == k)):
            m.d.sync += [active.eq(1), count.eq(0)]
        with m.If(fire):
            m.d.sync += count.eq(count + 1)
            with m.If(count == steps_m1):
                m.d.sync += [active.eq(0), done.eq(1)]
        return {"fire": fire, "finish": done, "out_valid": beats, "ready": {n: fire for n in names}, "slot": count}

    # ---- one dataflow's controller --------------------------------------------------------------
    def _controller(self, top, k, view, start, running, steps_m1, trips) -> dict:
        """Loader, issuer and drain of dataflow ``k`` (rtlgen/array.py ArrayTop.elaborate, with every
        shared input gated by 'dataflow k is selected')."""
        m = Module()
        name = view.dataflow.name
        top.submodules[f"ctrl_{name}"] = m
        sch, fg = view.schedule, view.fu_graph
        chosen = Signal(name="selected")
        top.d.comb += chosen.eq(self.sel == k)
        outer = tuple(view.dataflow.outer_dims())
        red = tuple(d for d in outer if not view.design.operation.output.uses(d))
        start_k = Signal(name="start")
        top.d.comb += start_k.eq(start & (getattr(self.cmd.payload, SELECT_FIELD) == k))
        run_k = Signal(name="running")
        m.d.comb += run_k.eq(running & chosen)
        fg_k = view.fu_graph
        own = outer + tuple(f.loop for f in view.command.fields if f.loop is not None and f.loop not in outer)
        cmd = CommandHW(start_k, run_k, steps_m1, {d: trips[d] for d in own}, outer, red)
        line = {n: [s & run_k for s in self.line[n]] for n in _LINE}
        psum = view.psum_port
        psum_port = None if psum is None else self._port(psum.name)
        stationary = [p for p in fg.inputs if p.role is Role.STATIONARY]
        streamed = [p for p in fg.inputs if p.role is Role.STREAM]
        fewer = None if sch.drain_rows >= sch.rows else (lambda row: row >= sch.drain_rows)
        ready: dict = {}
        loader = None
        preload_after = None
        if sch.has_loader:
            def load_valid(first, row):
                valids = [self._port(port_name(PortRole.INPUT, p.name)).valid for p in stationary]
                if sch.accumulate and sch.psum_in:
                    pv = first | psum_port.valid
                    valids.append(pv if fewer is None else pv | fewer(row))
                return all_of(valids) if valids else Const(1)

            preload_after = Signal(name="tile_drained_for_preload") if sch.accumulate and sch.psum_in else None
            loader = loader_hw(m, hdl, sch, cmd, load_valid, line["swap"][0], self.adv & line["swap"][sch.swap_skew],
                               preload_after)
            for p in stationary:
                ready[port_name(PortRole.INPUT, p.name)] = loader.beat
            if sch.accumulate and sch.psum_in:
                r = loader.beat & ~loader.first
                ready[psum.name] = r if fewer is None else r & ~fewer(loader.row)

        def issue_valid(first):
            valids = [self._port(port_name(PortRole.INPUT, p.name)).valid for p in streamed]
            if psum_port is not None and not sch.accumulate:
                valids.append(first | psum_port.valid)
            return all_of(valids) if valids else Const(1)

        drained_all = Signal(name="all_tiles_drained") if sch.accumulate else None
        out_left = self._port(view.output_port.name).valid & self._port(view.output_port.name).ready & chosen
        iss = issuer_hw(m, hdl, sch, cmd, self.adv, issue_valid, None if loader is None else loader.ready, drained_all,
                        out_left, self.psum_skew)
        for p in streamed:
            ready[port_name(PortRole.INPUT, p.name)] = iss.issue
        if psum_port is not None and not sch.accumulate:
            ready[psum.name] = iss.issue & ~iss.first_visit
        out_ready = self._port(view.output_port.name).ready
        if sch.accumulate:
            drain = accumulator_drain_hw(m, hdl, sch, cmd, iss.last_step, line["last"][sch.commit_skew],
                                         out_ready, iss.done)
            m.d.comb += drained_all.eq(drain.drained_all)
            if sch.psum_in:
                m.d.comb += preload_after.eq(drain.tile_drained)
        else:
            lat = sch.out_latency
            drain = stream_drain_hw(m, hdl, sch, cmd, line["valid"][lat], line["final"][lat], out_ready)
        halo = {}
        pads = self.pads[k]
        if pads:          # the map's own schedule: its pad flags (only while it runs)
            offsets = {p.loop: p.offsets(view.design.shape) for p in pads}
            for flags in pad_flags(m, cmd, iss.issue, view.dataflow, fg_k, offsets):
                halo.update({n: run_k & f for n, f in flags.items()})
        for p in self.outer[k]:         # skewed loops outside the tile: flags from the issued tile (only while it runs)
            flags = outer_pad_hw(m, hdl, cmd, iss.tile, p.loop, p.span(view.design.shape), p.offsets(view.design.shape))
            halo.update({f"pad_{p.loop}_{o}": run_k & f for o, f in flags.items()})
        for loop, n in () if pads else fg_k.halo:      # delay connections: the halo steps (only while it runs)
            halo["halo"] = run_k & halo_hw(m, hdl, cmd, iss.issue, loop, n, fg_k.fifo_depth_loops)
        # FIFO buffers of run-time depth: the command's trips after their loop (a padded loop's with its span)
        fifo_steps = fifo_step_registers(m, view.design, view.dataflow, fg_k, bool(pads), self.cmd.payload, start_k)
        # product waits on a loop with loops after it: the steps of one iteration, latched by this dataflow's command
        wait_steps = wait_step_registers(m, view.design, view.dataflow, fg_k, self.waits[k], self.cmd.payload, start_k)
        return {**halo, "valid": iss.issue, "first": iss.first_step, "last": iss.last_step, "swap": iss.swap,
                "final": iss.final, "fifo_steps": fifo_steps, "wait_steps": wait_steps, "start": start_k, "selected": chosen,
                "advance": drain.advance, "finish": drain.finish & chosen,
                "out_valid": drain.valid & chosen, "ready": ready, "loader": loader, "iss": iss, "drain": drain,
                "fewer": fewer}

    # ---- datapath: the union of the dataflows' retimed graphs ------------------------------------
    def _datapath(self, m, out_port):
        F = self.fused
        views = self.views
        design = F.design
        out_name = design.operation.output.name
        self.acc_shape = shape_of(design.acc_type.bits, design.acc_type.signed)
        self.in_shape = {n: shape_of(t.bits, t.signed) for n, t in design.types if n != out_name}
        users: dict = {}
        for k in self.tiled:
            for v in views[k].timing.prim.graph.nodes:
                users.setdefault(v, []).append(k)
        if not self.tiled:      # skewed maps only: a multiplier per FU, its operands the maps' chain values
            for s in itertools.product(*(range(n) for n in design.shape)):
                users[Node(NodeKind.MUL, s)] = []
        self.stt_valid: dict = {}
        self.stt_value = {k: self._stt_inputs(m, k) for k in self.stt}
        self.out = {v: Signal(self._shape_of(v), name=v.name) for v in sorted(users)}
        self.chains: dict = {}
        self.mul_latency: dict = {}
        self.shadow: dict = {}
        results = {}
        for v in sorted(users):
            kind, ks = v.kind, users[v]
            if kind is NodeKind.MEM_PORT:
                self._memory_lane(m, v, ks)
            elif kind is NodeKind.PORT:
                m.d.comb += self.out[v].eq(self._input(m, v, ks, "in"))
            elif kind is NodeKind.STATIONARY_REG:
                self._stationary(m, v, ks)
            elif kind is NodeKind.FIFO:
                self._fifo(m, v, ks)
            elif kind is NodeKind.MUL:
                self._multiplier(m, v, ks)
            elif kind in (NodeKind.ADD, NodeKind.TREE_ADD):
                slots = sorted({s for k in ks for s, _, _ in self._inputs(k, v)}, key=repr)
                total = None
                for s in slots:
                    x = self._input(m, v, ks, s)
                    total = x if total is None else total + x
                m.d.comb += self.out[v].eq(total)
            elif kind is NodeKind.ACC:
                results[v.coord] = self._accumulator(m, v, ks)
            elif kind is NodeKind.DRAIN:
                self._drain(m, v, ks)
        stt_out = {k: self._stt_sums(m, k) for k in self.stt}
        self._outputs(m, out_port, results, stt_out)

    def _shape_of(self, v: Node):
        if v.kind in (NodeKind.MEM_PORT, NodeKind.PORT, NodeKind.STATIONARY_REG) and v.operand in self.in_shape:
            return self.in_shape[v.operand]
        return self.acc_shape

    def _inputs(self, k: int, v: Node) -> list:
        """(slot, source, registers) of v's data inputs in dataflow k (dataflow/fusion.py's slots)."""
        view = self.views[k]
        prim, stages = view.timing.prim, view.retimed.stages
        ins = [(u, e) for u, e in prim.in_wires(v) if not e.hold or v.kind is NodeKind.MUL]
        if v.kind is NodeKind.TREE_ADD:
            ins = sorted(ins, key=lambda ue: repr(ue[0].path))
            return [(i, u, stages[(u, v)]) for i, (u, _) in enumerate(ins)]
        return numbered_slots([(slot_of(v, u), u, stages[(u, v)]) for u, _ in ins])

    def _tap(self, m, u: Node, regs: int):
        """u's output behind ``regs`` registers of its one shared chain."""
        if regs == 0:
            return self.out[u]
        ch = self.chains.setdefault(u, [])
        prev = ch[-1] if ch else self.out[u]
        while len(ch) < regs:
            r = Signal(self._shape_of(u) if u.kind is not NodeKind.MUL else self.acc_shape,
                       name=f"{u.name}_d{len(ch) + 1}")
            with m.If(self.adv):
                m.d.sync += r.eq(prev)
            ch.append(r)
            prev = r
        return ch[regs - 1]

    def _input(self, m, v: Node, ks, slot):
        options = []
        for k in ks:
            for s, u, regs in self._inputs(k, v):
                if s == slot:
                    options.append((k, (u, regs), self._tap(m, u, regs)))
        if isinstance(slot, str) and "#" in slot:      # a second chain into an adder: 0 where a dataflow has none
            options += [(k, "zero", Const(0, self.acc_shape)) for k in ks if k not in {o[0] for o in options}]
        shape = self._shape_of(v) if v.kind is NodeKind.PORT else self.acc_shape
        if v.kind is NodeKind.MUL:
            shape = self.in_shape[slot]
        return self._pick(m, shape, f"{v.name}_{slot}_sel", options)

    def _step(self, m, name: str, v: Node, ks, at: Node | None = None):
        """The step-line control ``name`` at node ``at`` (default v) for the selected dataflow."""
        at = v if at is None else at
        opts = [(k, self.views[k].timing.time[at], self.line[name][self.views[k].timing.time[at]])
                for k in ks]
        return self._pick(m, 1, f"{v.name}_{name}_sel", opts)

    def _memory_lane(self, m, v: Node, ks):
        F = self.fused
        streamed = [k for k in ks if v in self.views[k].timing.lane_offset]
        if not streamed:
            return                                  # a load-phase lane: writes shadows, see _stationary
        if v.operand == F.design.operation.output.name:
            first = self._pick(m, 1, "issue_first_visit_sel", [(k, k, self.ctl[k]["iss"].first_visit)
                                                                 for k in streamed])
            psum = self._port(port_name(PortRole.PSUM, v.operand))
            raw = Mux(first, 0, psum.payload[v.lane])
        else:
            raw = self._port(port_name(PortRole.INPUT, v.operand)).payload[v.lane]
        offsets = {k: self.views[k].timing.lane_offset[v] for k in streamed}
        taps = [raw]
        for i in range(max(offsets.values())):
            r = Signal(self._shape_of(v), name=f"{v.operand}_lane{v.lane}_issue{i}")
            with m.If(self.adv):
                m.d.sync += r.eq(taps[-1])
            taps.append(r)
        m.d.comb += self.out[v].eq(self._pick(m, self._shape_of(v), f"{v.name}_offset_sel",
                                              [(k, o, taps[o]) for k, o in offsets.items()]))

    def _fifo(self, m, v: Node, ks):
        """A delay connection's FIFO (rtlgen/array.py ``_fifo``): it shifts once per valid step of its dataflow
        at its own node time, and only while that dataflow is selected. One FIFO per dataflow that uses the
        node (depths may differ); the output is picked by the select."""
        options = []
        for k in ks:
            view = self.views[k]
            prim = view.timing.prim
            (dst,) = list(prim.graph.successors(v))
            link = view.fu_graph.link(*prim.wire(v, dst).fu_edge, operand=v.operand)
            depth = link.fifo
            ((_, u, regs),) = self._inputs(k, v)
            prev, shp = self._tap(m, u, regs), self.in_shape[v.operand]
            shift = self.adv & self.line["valid"][view.timing.time[v]] & self.ctl[k]["selected"]
            name = f"{v.operand}_fifo_{tag(v.coord)}_{view.dataflow.name}"
            steps = self.ctl[k]["fifo_steps"].get(fifo_loop(view.design, view.dataflow, v.operand, link.axis))
            if steps is not None:
                prev = fifo_buffer(m, name, prev, shp, shift, depth, steps, view.design.max_fifo_depth)
            else:
                for i in range(depth):
                    r = Signal(shp, name=f"{name}_{i}")
                    with m.If(shift):
                        m.d.sync += r.eq(prev)
                    prev = r
            options.append((k, k, prev))
        m.d.comb += self.out[v].eq(self._pick(m, self.in_shape[v.operand], f"{v.name}_sel", options))

    def _masks(self, v: Node, ks) -> list:
        """Per dataflow the product mask of multiplier ``v`` at its node time: the halo flag, the OR of its pad
        flags (loops inside its tile and outside) at its own (logical) FU's offsets, or none (a dataflow that does not
        use ``v`` or has no mask)."""
        out = []
        for k, view in enumerate(self.views):
            t = view.timing.time[v] if k in ks else None
            if k in ks and self._padded(k):
                pads = self._padded(k)
                names = tuple(f"pad_{p.loop}_{p.offset(self._logical(k, v.coord))}" for p in pads)
                out.append((k, ("pad", t, names), pad_mask(pads, self._logical(k, v.coord), lambda n: self.line[n][t])))
            elif k in ks and view.fu_graph.halo:
                out.append((k, ("halo", t), self.line["halo"][t]))
            else:
                out.append((k, "none", Const(0)))
        return out

    def _stationary(self, m, v: Node, ks):
        s, x = v.coord, v.operand
        shape = self.in_shape[x]
        shadow = Signal(shape, name=f"{x}_shadow_{tag(s)}")
        # each dataflow loads FU s in its own row and lane: those of its logical FU (a folded map's differ)
        lanes: dict = {}
        for k in ks:
            lg = self._logical(k, s)
            lanes.setdefault(lg[-1], []).append((k, _row_index(lg, self.views[k].design.shape)))
        payload = self._port(port_name(PortRole.INPUT, x)).payload
        for n, (lane, rows) in enumerate(sorted(lanes.items())):
            write = _any(self.ctl[k]["loader"].beat & (self.ctl[k]["loader"].row == row) for k, row in rows)
            with (m.If if n == 0 else m.Elif)(write):
                m.d.sync += shadow.eq(payload[lane])
        act = Signal(shape, name=f"{x}_stat_{tag(s)}")
        swap = self._step(m, "swap", v, ks, Node(NodeKind.MUL, s))
        with m.If(self.adv & swap):
            m.d.sync += act.eq(shadow)
        m.d.comb += self.out[v].eq(Mux(swap, shadow, act))

    def _logical(self, k: int, s: tuple) -> tuple:
        """Dataflow k's own FU at physical FU s (``FusedArray.logical_fu``)."""
        return self.fused.logical_fu(k, s)

    def _multiplier(self, m, v: Node, ks):
        slots = sorted({s for k in ks for s, _, _ in self._inputs(k, v)}
                       or {x.name for x in self.fused.design.operation.inputs})      # no tiled dataflow
        prod = None
        for x in slots:
            options = [(k, (u, regs), self._tap(m, u, regs)) for k in ks for s, u, regs in self._inputs(k, v) if s == x]
            for k, (value, valid) in self.stt_value.items():         # a skewed map's chain value at this FU
                val = value[(x, v.coord)]
                if valid is not None and x == slots[0]:               # an input's validity tag masks the product
                    val = Mux(valid[v.coord], val, 0)
                options.append((k, ("stt", k), val))
            val = self._pick(m, self.in_shape[x], f"{v.name}_{x}_sel", options)
            prod = val if prod is None else prod * val
        if len(self.names) > len(_LINE):       # a mask flag on the step line: _masks (halo steps, pads)
            prod = Mux(self._pick(m, 1, f"{v.name}_halo_sel", self._masks(v, ks)), 0, prod)
        latency = self.views[ks[0]].timing.node_latency(v) if ks else 0
        self.mul_latency[v.coord] = latency
        prev = prod
        for i in range(latency):
            r = Signal(self.acc_shape, name=f"prod_{tag(v.coord)}_s{i}" if latency > 1 else f"prod_{tag(v.coord)}_s")
            with m.If(self.mul_en):
                m.d.sync += r.eq(prev)
            prev = r
        m.d.comb += self.out[v].eq(self._waited(m, v, prev))

    def _waited(self, m, v: Node, prod):
        """Multiplier v's product as the selected dataflow's reduction reads it: waited (rtlgen/array.py
        ``wait_product``) in a dataflow whose lane sums FUs at different offsets of a padded loop, straight in the
        others. Dataflows that wait alike share one chain (dataflow/reduce_skew.py ``fused_wait_groups``); a chain
        shifts only on its dataflows' valid steps, so another dataflow's products never enter it (a run ends with
        masked, zero, products in it, as the single design's does)."""
        groups = self.wait_groups.get(v)
        if not groups:
            return prod
        waiting = {k for ks_ in groups.values() for k in ks_}
        options = [(k, "straight", prod) for k in range(len(self.views)) if k not in waiting]
        full = Signal(self.acc_shape, name=f"prod_{tag(v.coord)}_full")     # sign-extended: a buffer stores raw bits
        m.d.comb += full.eq(prod)
        for i, ((t, w, _), group) in enumerate(sorted(groups.items())):
            shift = self.adv & self.line["valid"][t] & _any(self.ctl[k]["selected"] for k in group)
            value = wait_product(m, f"prod_{tag(v.coord)}_wait{i}", full, self.acc_shape, shift, dict(w),
                                 self.ctl[group[0]]["wait_steps"], self.views[group[0]].design.max_fifo_depth,
                                 self.ctl[group[0]]["start"])
            options += [(k, ("wait", i), value) for k in group]
        return self._pick(m, self.acc_shape, f"{v.name}_wait_sel", options)

    # ---- a skewed stt map's chains (rtlgen/stt_array.py's datapath, products from the shared multipliers) ----
    def _stt_inputs(self, m, k):
        """({(operand, fu): value}, {fu: product counts} when an input carries the validity tags, else None)."""
        view = self.views[k]
        net, fire, name = view.network, self.stt_ctl[k]["fire"], view.dataflow.name
        value, valid = {}, {}
        bits = net.tag_field_bits

        def tag_chain(lane, chain, dt, op):
            tag_validity(m, self._port(tag_port(net.carrier)).payload[lane], chain, dt, fire, bits, valid,
                         f"{name}_tag_{op}_hop_", f"{name}_valid_")

        for h in net.inputs:
            shp, lanes = self.in_shape[h.name], self._port(port_name(PortRole.INPUT, h.name)).payload
            for lane, chain in enumerate(net.chains_of(h.name)):
                if is_direct(h):
                    value[(h.name, chain[0])] = lanes[lane]
                    continue
                if h.name == net.carrier:
                    tag_chain(lane, chain, h.dt, h.name)
                if h.stationary:
                    (s,) = chain
                    held = Signal(shp, name=f"{name}_{h.name}_held_{tag(s)}")
                    ring = delay_line(m, held, h.dt, fire, f"{name}_{h.name}_ring_{tag(s)}_", shp)
                    m.d.comb += held.eq(ring + lanes[lane])
                    value[(h.name, s)] = held
                    continue
                prev = lanes[lane]
                for p, s in enumerate(chain):
                    if p:
                        prev = delay_line(m, prev, h.dt, fire, f"{name}_{h.name}_hop_{tag(s)}_", shp)
                    value[(h.name, s)] = prev
        if net.carrier == net.output.name:
            for lane, chain in enumerate(net.chains_of(net.output.name)):
                tag_chain(lane, chain, net.output.dt, net.output.name)
        self.stt_valid[k] = valid
        return value, (valid if net.carrier and net.carrier != net.output.name else None)

    def _stt_sums(self, m, k) -> list:
        """The partial-sum chains of skewed map ``k``; its output lanes. A product leaves the shared stages
        after the tiled dataflows' latency L; the map's own extra stages (product_stages - L) follow on its
        path only. Its first L slots see stale stages (another dataflow's products): they are zeroed, which
        is what a skewed map's own trailing slots leave there (no product in the last product_stages slots)."""
        view = self.views[k]
        net, ctl, name = view.network, self.stt_ctl[k], view.dataflow.name
        out_h, fire, acc = net.output, ctl["fire"], self.acc_shape
        psum = self._port(view.psum_port.name).payload
        outs = []
        for lane, chain in enumerate(net.chains_of(out_h.name)):
            c_in = psum[lane]
            c_out = None
            for p, s in enumerate(chain):
                if is_direct(out_h) or out_h.stationary:
                    c_out = Signal(acc, name=f"{name}_{out_h.name}_sum_{tag(s)}")
                    if out_h.stationary:
                        c_in = c_in + delay_line(m, c_out, out_h.dt, fire, f"{name}_{out_h.name}_ring_{tag(s)}_", acc)
                elif p:
                    c_in = delay_line(m, c_out, out_h.dt, fire, f"{name}_{out_h.name}_hop_{tag(s)}_", acc)
                shared = self.mul_latency[s]
                prod = self.out[Node(NodeKind.MUL, s)]
                if shared:
                    prod = Mux(ctl["slot"] < shared, 0, prod)
                prod = delay_line(m, prod, net.product_stages - shared, fire, f"{name}_prod_{tag(s)}_", acc)
                if net.carrier == out_h.name:
                    prod = Mux(self.stt_valid[k][s], prod, 0)
                if not (is_direct(out_h) or out_h.stationary):
                    c_out = Signal(acc, name=f"{name}_{out_h.name}_sum_{tag(s)}")
                m.d.comb += c_out.eq(c_in + prod)
            outs.append(c_out)
        return outs

    def _accumulator(self, m, v: Node, ks):
        s, shape, F = v.coord, self.acc_shape, self.fused
        acc = Signal(shape, name=f"acc_{tag(s)}")
        res = Signal(shape, name=f"res_{tag(s)}")
        bases = []
        for k in ks:
            sch = self.views[k].schedule
            if not sch.psum_in:
                bases.append((k, "zero", Const(0, shape)))
                continue
            psum = self._port(self.views[k].psum_port.name)
            pos = {c: (r, lane.index) for lane in self.views[k].fu_graph.output.lanes for r, c in enumerate(lane.fus)}
            row, lane = pos[s]
            loader = self.ctl[k]["loader"]
            init = Signal(shape, name=f"init_{tag(s)}_{self.views[k].dataflow.name}")
            with m.If(loader.beat & (loader.row == row)):
                m.d.sync += init.eq(Mux(loader.first, 0, psum.payload[lane]))
            swap = self.line["swap"][self.views[k].timing.time[v]]
            if s in rep_waits(self.drain_groups.get(k, ())):      # a waiting representative: the sum at the drain
                self.drain_psums[k][s] = drain_psum(m, Mux(swap, init, 0), self._step(m, "first", v, [k]),
                                                    self._step(m, "last", v, [k]),
                                                    self.adv & self._step(m, "valid", v, [k]) & self.ctl[k]["selected"],
                                                    shape, f"{tag(s)}_{self.views[k].dataflow.name}")
                bases.append((k, "zero", Const(0, shape)))
                continue
            bases.append((k, ("init", k), Mux(swap, init, 0)))
        base = self._pick(m, shape, f"{v.name}_base_sel", bases)
        total = Signal(shape, name=f"sum_{tag(s)}")
        m.d.comb += total.eq(Mux(self._step(m, "first", v, ks), base, acc) + self._input(m, v, ks, "in"))
        with m.If(self.adv & self._step(m, "valid", v, ks)):
            m.d.sync += acc.eq(total)
            with m.If(self._step(m, "last", v, ks)):
                m.d.sync += res.eq(total)
        m.d.comb += self.out[v].eq(acc)
        return res

    def _drain(self, m, v: Node, ks):
        """Streamed-output drain lanes: the drain register, then de-skewed per dataflow."""
        F = self.fused
        streamed = [k for k in ks if not self.views[k].schedule.accumulate]
        if not streamed:
            return
        reg = Signal(self.acc_shape, name=f"drain_{v.operand}_{v.lane}")
        with m.If(self.adv):
            m.d.sync += reg.eq(self._input(m, v, streamed, "in"))
        views = self.views
        align = {k: views[k].schedule.out_latency - (views[k].timing.time[v] + views[k].timing.node_latency(v))
                 for k in streamed}
        taps = [reg]
        for i in range(max(align.values())):
            r = Signal(self.acc_shape, name=f"{v.operand}_out{v.lane}_align{i}")
            with m.If(self.adv):
                m.d.sync += r.eq(taps[-1])
            taps.append(r)
        m.d.comb += self.out[v].eq(self._pick(m, self.acc_shape, f"{v.name}_align_sel",
                                              [(k, a, taps[a]) for k, a in align.items()]))

    def _waited_drains(self, m, results) -> dict:
        """Per dataflow k whose output is held per FU over skewed loops outside the tile and reduced along the axes
        their skews move (dataflow/reduce_skew.py ``drain_groups``): the result registers as its rows drain them
        (rtlgen/array.py ``waited_drain``). Dataflows that wait alike (``fused_drain_groups``) share one set of buffers,
        shifted by their drains and latched by their commands."""
        waited = {}
        for i, ((groups, after), ks) in enumerate(self.drain_sets.items()):
            drained = _any(self.ctl[k]["drain"].tile_drained & self.ctl[k]["selected"] for k in ks)
            per = {loop: trips_product(self.cmd.payload, loops, {}) for loop, loops in after}
            psums = {rep: self._pick(m, self.acc_shape, f"w{i}_{tag(rep)}_psum_sel",
                                     [(k, ("psum", k), self.drain_psums[k][rep]) if rep in self.drain_psums[k] else
                                      (k, "zero", Const(0, self.acc_shape)) for k in ks]) for rep in rep_waits(groups)}
            new = waited_drain(m, results, groups, drained, _any(self.ctl[k]["start"] for k in ks), per,
                               self.acc_shape, max(self.views[k].design.max_fifo_depth for k in ks), f"w{i}_", psums)
            waited.update({k: new for k in ks})
        return waited

    def _outputs(self, m, out_port, results, stt_out):
        F = self.fused
        lanes = len(out_port.payload)
        waited = self._waited_drains(m, results)
        for lane in range(lanes):
            options = [(k, ("stt", k), outs[lane]) for k, outs in stt_out.items() if lane < len(outs)]
            for k in self.tiled:
                view = self.views[k]
                out = view.fu_graph.output
                if lane >= out.n_lanes:
                    continue
                if view.schedule.accumulate:
                    col = Array([waited.get(k, results)[c] for c in out.lanes[lane].fus])
                    options.append((k, ("rows", k), col[self.ctl[k]["drain"].row]))
                else:
                    options.append((k, ("stream", lane), self.out[Node(NodeKind.DRAIN, operand=out.name, lane=lane)]))
            m.d.comb += out_port.payload[lane].eq(self._pick(m, self.acc_shape, f"out_lane{lane}_sel", options))


def fused_verilog(fused: FusedArray) -> tuple[str, "FusedArrayTop"]:
    """(Verilog text, the elaborated top) of a fused design; deterministic like every archgen build."""
    from amaranth.back import verilog

    top = FusedArrayTop(fused)
    text = verilog.convert(top, name=fused.design.name, emit_src=False)
    return text, top
