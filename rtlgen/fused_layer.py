"""One layer core for every tiled dataflow of a fused design, the dataflow selected per layer command.

The fused array (rtlgen/fused_array.py) inside ONE memory system (rtlgen/layer_top.py ``LayerCore``): the
buffers, the DMA with its DRAM port, the sequencer and the block walkers are shared, since they depend on the
buffers' positions (elements per half, halves), which are equal across the dataflows: a buffer has the most banks
any dataflow needs, and every dataflow plans its layers on those banks (``fused_banks``, memctl ``layer_program``
``core_banks``), so a half rounds to the same whole bank rows in each; the order of the output's positions may differ
(a lane-interleaved output in one dataflow, not in another: ``FusedLayerCore._shared_layouts``); each array port
gets one walk per dataflow that uses it (its address generator, and how its lanes are read: one run,
broadcast, a lane step, a lane map's groups and their offsets), and the selected one drives the buffer and the
port; the dataflows share the port's read copies of the buffer (the most lane-map groups any of them needs), since one
runs at a time. The output's lanes are written at the selected dataflow's positions of the run, and the add onto
partial sums reads each lane's old value there (layer_top ``_run_lanes``: a mux per position, no cycle). The
command tables are the union of the dataflows' (``descriptor_format`` of each, every field at its widest)
plus the select field ``dataflow`` in table B (the dataflow's index in the fuse list), which also drives the
fused array's command. A layer of dataflow D is D's own command (``layer_program`` of D's fused view)
encoded in these tables with ``dataflow`` = D. The selection is combinational on a command register that
is constant during a layer (the lanes are muxed after the buffer's registered read), so a layer of D takes the
cycles of D's fused view (``simulate_layer``).
"""
from __future__ import annotations

import dataclasses

from amaranth import Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from archgen.dataflow.fusion import SELECT_FIELD
from archgen.dataflow.memctl import (DescriptorFormat, descriptor_format, fused_banks, layer_program, probe_command,
                                     tiled_fused_names)

from .fused_array import FusedArrayTop
from .layer_top import CYCLE_BITS, LayerCore, LayerTop, _unpack, simulated_dram

__all__ = ["FusedLayerCore", "FusedLayerProgramTop", "FusedLayerTop", "fused_banks", "fused_layer_programs",
           "tiled_fused_names"]


def fused_layer_programs(fused, names=None, *, spec_size: bool = True) -> dict:
    """The structure of the core per dataflow: each view's probe layer (``probe_command``), buffers at the
    spec's sizes and at the core's banks (:func:`fused_banks`); the core does not depend on a layer."""
    names = names or tiled_fused_names(fused)
    banks = fused_banks(fused, names)
    return {n: layer_program(fused.view(n), _probe(fused, n), "probe", spec_size=spec_size, core_banks=banks)
            for n in names}


def _probe(fused, name: str):
    view = fused.view(name)
    return probe_command(view.design, view.dataflow)


class FusedLayerCore(LayerCore):
    """``LayerCore`` around the fused array for the dataflows of ``progs`` (name -> ``LayerProgram`` of that
    dataflow's fused view), one build for every layer of each. Ports as ``LayerCore``; the command's table B
    has the extra field ``dataflow``."""

    def __init__(self, fused, progs: dict):
        self.fused, self.progs = fused, dict(progs)
        names = list(self.progs)
        base = self.progs[names[0]]
        layouts = self._shared_layouts(names)
        walks: dict = {}                       # every port once: its walk of the most lanes (the port's width)
        for n, p in self.progs.items():
            for w in p.walks:
                other = walks.get(w.port)
                if other is None or w.lanes > other.lanes:
                    walks[w.port] = w
        self.names = names
        self.own = {n: {f.loop for f in fused.view(n).command.fields if f.loop is not None} for n in names}
        sel_bits = next(f.bits for f in fused.command.fields if f.name == SELECT_FIELD)
        super().__init__(dataclasses.replace(base, walks=tuple(walks.values()), layouts=layouts),
                         union_format(self.progs, sel_bits), array=FusedArrayTop(fused))
        self.alt_walks = tuple(w for p in self.progs.values() for w in p.walks)

    def _shared_layouts(self, names) -> dict:
        """One physical buffer per operand for every dataflow: each dataflow's program is planned on the core's
        banks (``fused_layer_programs``, :func:`fused_banks`: the most any dataflow needs), so its positions
        (elements per half, halves, element and DRAM word widths) are the same in each. A run of up to ``banks``
        consecutive positions touches each bank once, so a dataflow that needs fewer banks (fewer lanes in one
        beat) is served by more: a position's bank and word change, not its place in the half, which is all its
        command, its DMA and its host image address. The order of positions may differ (``BufferLayout.split``, a
        lane-interleaved output): each dataflow's host image and write-back blocks follow its own, its output
        lanes are written in its own order (layer_top ``_run_lanes``). Programs planned apart (each on its own
        banks) are a caller's error, not a spec's: nothing of a spec makes the planned positions differ (element
        bytes are per operand, halves and depth per design)."""
        base = self.progs[names[0]]
        for n in names[1:]:
            p = self.progs[n]
            if _positions(p.layouts) != _positions(base.layouts) or p.depth != base.depth:
                self._MustUse__silence = True            # refused: never elaborated
                raise ValueError(f"the programs of {names[0]} and {n} have different buffer positions "
                                 f"({_positions(base.layouts)} and {_positions(p.layouts)}): plan every dataflow of the "
                                 "core on its banks (fused_layer_programs, layer_program(core_banks=fused_banks(...)))")
        return {x: dataclasses.replace(lay, banks=max(self.progs[n].layouts[x].banks for n in names))
                for x, lay in base.layouts.items()}

    @property
    def banks(self) -> dict:
        """Operand -> the banks of the core's buffer, which a layer of any of its dataflows is planned on
        (``layer_program(core_banks=)``)."""
        return {x: lay.banks for x, lay in self.prog.layouts.items()}

    def encode(self, wc, index: int, layer: str = "layer") -> dict:
        """The tables' words for a layer command ``wc`` of the dataflow with fuse-list index ``index``."""
        words = self.fmt.encode(wc, layer)
        off = 0
        for name, w in self.fmt.tables["B"]:
            if name == SELECT_FIELD:
                break
            off += w
        words["B"] = [words["B"][0] | (index << off)]
        return words

    def _command_registers(self, m):
        regs = super()._command_registers(m)
        self._sel = _unpack(self.fmt, "B", regs["B"][0])[SELECT_FIELD]
        self._on = {n: self._sel == self.fused.index(n) for n in self.names}
        return regs

    def _pick(self, values: dict):
        names = self.names
        out = values[names[-1]]
        for n in reversed(names[:-1]):
            out = Mux(self._on[n], values[n], out)
        return out

    def _array_command(self, m, arr, seq, row_c, done):
        """The fused array's command: the selected dataflow's trip counts (1 for a loop its command does not
        carry), the steps, and the select."""
        cmdp = arr.cmd.payload
        m.d.comb += arr.cmd.valid.eq(seq.start_c)
        for f in self.fused.command.fields:
            if f.name == SELECT_FIELD:
                value = self._sel
            elif f.loop is None:
                value = row_c["steps"]
            else:
                value = self._pick({n: row_c[f"trips_{f.loop}"] if f.loop in self.own[n] else 1 for n in self.names})
            m.d.comb += getattr(cmdp, f.name).eq(value)
        m.d.comb += done["C"].eq(arr.done)

    def _port_walk(self, m, arr, w, seq, row_c, buf, bufs_back=None, alts=None):
        alts = [(wd, self._on[n], p) for n, p in self.progs.items() for wd in p.walks if wd.port == w.port]
        return super()._port_walk(m, arr, w, seq, row_c, buf, bufs_back, alts)


def _positions(layouts: dict) -> dict:
    """The buffers' position space (elements per half, halves, element and DRAM word widths), which one shared
    buffer needs equal in every dataflow: without the banks (the core has the most any needs) and the order of
    the positions (``BufferLayout.split``), which each dataflow keeps its own (``FusedLayerCore._shared_layouts``)."""
    return {x: dataclasses.replace(lay, banks=0, split=()) for x, lay in layouts.items()}


def union_format(progs: dict, sel_bits: int) -> DescriptorFormat:
    """The command tables of one core for several dataflows: every field of any dataflow's
    ``descriptor_format`` at its widest, in first-seen order, and the select field in table B."""
    fmts = [descriptor_format(p) for p in progs.values()]
    tables = {}
    for t in fmts[0].tables:
        fields: dict = {}
        for f in fmts:
            for n, w in f.tables[t]:
                fields[n] = max(fields.get(n, 0), w)
        if t == "B":
            fields[SELECT_FIELD] = sel_bits
        tables[t] = tuple(fields.items())
    depths = {t: max(f.depth(t) for f in fmts) for t in fmts[0].tables}
    return DescriptorFormat(tables, depths, fmts[0].design, "", frozenset().union(*(f.signed for f in fmts)))


class FusedLayerTop(LayerTop):
    """The simulation wrapper (``LayerTop``: DRAM preloaded with the layer's tensors, a host writing the
    command rows before ``go``) around a :class:`FusedLayerCore` running one layer (``prog``: a layer of
    one of its dataflows, buffers at the core's sizes)."""

    def __init__(self, core: FusedLayerCore, prog, dram_init: list[int], layer: str = "layer"):
        df = prog.compiled.dataflow.name
        if _positions(prog.layouts) != _positions(core.prog.layouts):   # planned on its dataflow's own banks
            prog = _on_core(core, prog, layer)
        super().__init__(prog, dram_init, layer=layer, fmt=core.fmt)
        self.core._MustUse__silence = True          # LayerTop's own single-dataflow core, replaced here
        self.core = core
        self.words = core.encode(prog.command, self.core.fused.index(df), layer)
        self.moved = core.moved


def _on_core(core: FusedLayerCore, prog, layer: str):
    """``prog`` (a layer of one of the core's dataflows) planned again at the core's buffers (its banks, the spec's
    sizes), where a program planned on its dataflow's own banks (verif/layer_check.py's one-core path) or at its
    layer's sizes rounds a buffer half otherwise. Its DRAM layout depends on neither (blocks word aligned in DRAM),
    so a host image made from ``prog`` stays valid; a ValueError if it does not."""
    again = layer_program(prog.compiled, prog.cmd, layer, spec_size=True, core_banks=core.banks)
    if _positions(again.layouts) != _positions(core.prog.layouts) or again.regions != prog.regions:
        raise ValueError(f"layer {layer}: its DRAM layout on the core's buffers is not the one it was planned with")
    return again


class FusedLayerProgramTop(Elaboratable):
    """A simulation top that runs a stream of layers of any of the core's dataflows back to back on ONE
    :class:`FusedLayerCore`, with no rebuild and no reset: per layer the host writes the layer's command rows
    (``words[k]``: table -> rows, from ``FusedLayerCore.encode``, the select included) one a cycle while the
    core's ``go`` is low, raises ``go``, waits for ``finished``, records the core's cycle count and byte
    counters in ``layer_cycles_<k>`` / ``moved_<x>_<dir>_<k>``, then drops ``go`` (the controller resets) for
    one cycle before the next layer's rows. The DRAM is preloaded with every layer's operands, each layer's
    regions from its own base word (the command's ``base_<x>`` fields). Ports as ``LayerTop`` plus the
    per-layer counters, so verif/layer_binary.py runs it."""

    def __init__(self, core: FusedLayerCore, words: list[dict], dram_init: list[int]):
        self.core = core
        self.words = [dict(w) for w in words]
        self.dram_init = list(dram_init)
        self.dram_depth = max(1, len(self.dram_init))
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.rb_addr = Signal(range(self.dram_depth + 1))
        self.rb_data = Signal(8 * core.prog.word_bytes)
        self.layer_cycles = [Signal(CYCLE_BITS, name=f"layer_cycles_{k}") for k in range(len(words))]
        self.layer_moved = [{x: Signal(40, name=f"{v.name}_{k}") for x, v in core.moved.items()}
                            for k in range(len(words))]

    def ports(self):
        return [self.go, self.finished, self.cycles, self.rb_addr, self.rb_data, *self.layer_cycles,
                *[s for lm in self.layer_moved for s in lm.values()]]

    def elaborate(self, platform):
        m = Module()
        core, fmt = self.core, self.core.fmt
        m.submodules.core = core
        n, n_layers = max(fmt.depths.values()), len(self.words)
        layer = Signal(range(n_layers + 1), name="host_layer")
        idx = Signal(range(n + 2), name="host_row")          # rows 0 .. n-1, then go at n; n + 1: the gap cycle
        for t in fmt.tables:
            rows = [r for w in self.words for r in list(w[t]) + [0] * (n - len(w[t]))]
            rom = Memory(shape=unsigned(fmt.width(t)), depth=len(rows), init=rows)
            m.submodules[f"host_rows_{t.lower()}"] = rom
            rp = rom.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(layer * n + idx), core.desc[t].eq(rp.data)]
        live = self.go & (layer < n_layers)
        m.d.comb += [self.finished.eq(layer == n_layers), core.desc_we.eq(live & (idx < n)),
                     core.desc_addr.eq(idx), core.go.eq(live & (idx == n))]
        with m.If(live):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(idx < n):
                m.d.sync += idx.eq(idx + 1)
            with m.Elif((idx == n) & core.finished):
                m.d.sync += idx.eq(n + 1)
                with m.Switch(layer):
                    for k in range(n_layers):
                        with m.Case(k):
                            m.d.sync += [self.layer_cycles[k].eq(core.cycles),
                                         *[s.eq(core.moved[x]) for x, s in self.layer_moved[k].items()]]
            with m.Elif(idx == n + 1):                      # go low for this cycle: the controller resets
                m.d.sync += [idx.eq(0), layer.eq(layer + 1)]
        P = core.prog
        simulated_dram(m, word_bytes=P.word_bytes, depth=self.dram_depth, init=self.dram_init,
                       latency=P.compiled.design.memory_system.dram.latency, addr_bits=len(core.rd_req_addr),
                       rd_req=(core.rd_req_valid, core.rd_req_addr, core.rd_req_words),
                       rd_rsp=(core.rd_rsp_valid, core.rd_rsp_data),
                       wr=(core.wr_valid, core.wr_addr, core.wr_data), rb=(self.rb_addr, self.rb_data))
        return m
