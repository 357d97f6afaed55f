"""The compile step of an array: one design and dataflow in, one immutable :class:`CompiledArray` out.

    spec -> Design -> compile_array -> CompiledArray -> {RTL (rtlgen), cycle model (sim), manifest, report}

``compile_array`` is the only place that runs the passes: interconnect derivation (reuse analysis),
lowering to primitives (multiplier stages included), the delay-matching LP, the timing read-out and
the schedule. Every consumer (``archgen build``/``sim``/``verify``/``sweep``, the SpAtten arrays,
``--explain``, the benchmarks) takes the result, so the RTL and the model are built from one object and
the LP runs once per design. Results are cached by the full content key: the Design value (every field
of the spec, so a ``dataclasses.replace``d design is a different key), the dataflow, the clock period,
the delay table and the single-tile loops.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

from .delay_lp import RetimedGraph, insert_pipeline_registers
from .delays import DelayTable
from .interconnect import FUGraph, derive_interconnect, reduction_runs_of, tiled_equivalent
from .ir import CommandLayout, Direction, NodeKind, Port, PortRole, Role, command_layout, port_name
from .pipelining import ArrayTiming, timing_from_retimed
from .primitives import PrimitiveGraph, lower_to_primitives
from .schedule import ArraySchedule, array_schedule

__all__ = ["CompiledArray", "compile_array", "compile_fused", "clear_compile_cache", "array_ports"]


@dataclass(frozen=True)
class CompiledArray:
    """Everything the RTL generator and the cycle model need about one array, computed once."""

    design: Design
    dataflow: Dataflow
    fu_graph: FUGraph = field(repr=False, compare=False)
    timing: ArrayTiming = field(repr=False, compare=False)
    schedule: ArraySchedule
    ports: tuple[Port, ...]
    command: CommandLayout
    pipeline: bool
    target: str
    single_tile: tuple[str, ...] = ()
    key: str = ""                 # sha256 of the content key (spec content, dataflow, clock, target, ...)

    def __repr__(self) -> str:
        return (f"CompiledArray({self.design.name!r}, dataflow={self.dataflow.name!r}, "
                f"shape={'x'.join(map(str, self.design.shape))}, clock_ns={self.clock_period_ns}, "
                f"target={self.target!r}, schedule={self.schedule}, key={self.key[:12]!r})")

    @property
    def prim(self) -> PrimitiveGraph:
        return self.timing.prim

    @property
    def retimed(self) -> RetimedGraph:
        """The LP's result with its solve statistics (solve_time_s, lp_variables, lp_constraints, ...)."""
        return self.timing.retimed

    @property
    def clock_period_ns(self) -> float | None:
        return self.timing.clock_period_ns

    def port(self, name: str) -> Port:
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(name)

    def ports_of(self, role: PortRole) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.role is role)

    @property
    def stream_ports(self) -> tuple[Port, ...]:
        """Operand streams (inputs, partial sums, outputs), in port order."""
        return tuple(p for p in self.ports if p.role in (PortRole.INPUT, PortRole.PSUM, PortRole.OUTPUT))

    @property
    def output_port(self) -> Port:
        return self.ports_of(PortRole.OUTPUT)[0]

    @property
    def psum_port(self) -> Port | None:
        found = self.ports_of(PortRole.PSUM)
        return found[0] if found else None


def array_ports(fg: FUGraph, command: CommandLayout) -> tuple[Port, ...]:
    """The top level's ports: command, operand streams, done and busy."""
    types = fg.design.type_of
    ports = [Port("cmd", Direction.IN, PortRole.COMMAND, command.size)]
    for p in fg.inputs:
        ports.append(Port(port_name(PortRole.INPUT, p.name), Direction.IN, PortRole.INPUT, p.width, p.n_lanes, p.name,
                          types[p.name].signed))
    out = fg.output
    signed = types[out.name].signed
    if out.psum_in:
        ports.append(Port(port_name(PortRole.PSUM, out.name), Direction.IN, PortRole.PSUM, out.width, out.n_lanes,
                          out.name, signed))
    ports.append(Port(port_name(PortRole.OUTPUT, out.name), Direction.OUT, PortRole.OUTPUT, out.width, out.n_lanes,
                      out.name, signed))
    ports += [Port("done", Direction.OUT, PortRole.STATUS, 1, stream=False),
              Port("busy", Direction.OUT, PortRole.STATUS, 1, stream=False)]
    return tuple(ports)


def compile_array(design: Design, dataflow: str | Dataflow | None = None, *, pipeline: bool = True,
                  target: str = "asic", single_tile: Sequence[str] = ()) -> CompiledArray:
    """Compile one dataflow of ``design``: pipelined for the spec's clock unless ``pipeline=False``
    (then the LP keeps only the registers the schedule needs), with the delay table ``target``.

    ``single_tile`` names outer loops the caller promises run one tile only (see derive_interconnect).
    """
    df = dataflow if isinstance(dataflow, Dataflow) else design.dataflow(dataflow)
    if df.skewed:                            # hexagonal/diagonal stt maps: lock-step chains, no LP (stt_array.py)
        from .stt_array import compile_stt_array
        return compile_stt_array(design, df, target, pipeline)
    tiled = tiled_equivalent(design, df)     # skewed maps run as the tiled map with the control they imply
    period = 1e3 / design.clock_mhz if pipeline else None
    return _keep_stationary(design, df, _compile_for(design, tiled, period, str(target), tuple(single_tile),
                                                     _streamed(design, df)))


def _streamed(design: Design, df: Dataflow) -> tuple[str, ...]:
    """An output held per run of R with D outside the tile (``reduction_runs``): the inputs that use a loop of D and
    none of R, streamed one beat per step as the tile [D, R] streams them (``ReductionRuns.streamed``)."""
    split = reduction_runs_of(design, df)
    return split.streamed if split is not None else ()


def _keep_stationary(design: Design, df: Dataflow, compiled: CompiledArray) -> CompiledArray:
    """An output held per run of R with D outside the tile (``reduction_runs``) whose stationary inputs use neither
    D nor R: the tile [D, R] loads them once, so the runs of one tile keep them (``ArraySchedule.keep_dims``: the
    trailing outer loops no stationary input uses; the loader, the issuer's swap, the host program and the memory
    system skip the load there). A tile that preloads partial sums loads them too (the loader fills one shadow)."""
    sch, fg = compiled.schedule, compiled.fu_graph
    split = reduction_runs_of(design, df)
    if split is None or split.faithful or not sch.has_stationary:
        return compiled
    held = [design.operation.operand(p.name) for p in fg.inputs if p.role is Role.STATIONARY]
    outer = compiled.dataflow.outer_dims()
    keep = 0
    while keep < len(outer) and not any(x.uses(outer[-1 - keep]) for x in held):
        keep += 1
    if not keep:
        return compiled
    return dataclasses.replace(compiled, schedule=dataclasses.replace(sch, keep_dims=tuple(outer[len(outer) - keep:])))


@lru_cache(maxsize=256)
def _compile_for(design: Design, df: Dataflow, period: float | None, target: str,
                 single_tile: tuple[str, ...], streamed: tuple[str, ...] = ()) -> CompiledArray:
    return dataclasses.replace(_compile(_hardware_only(design), df, period, target, single_tile, streamed),
                               design=design)


def _hardware_only(design: Design) -> Design:
    """The design with the fields that cannot change the array's hardware blanked (DRAM bandwidth and kind,
    the memory system, which is not part of the generated RTL yet, the description, the source hash): designs that differ only there share one compile, as a sweep over
    bandwidth needs. Everything else (operation, types, shape, dataflows, clock, bounds, name) keys it."""
    return dataclasses.replace(design, description="", dram_gbps=0.0, dram_kind="", source_hash="", memory=None)


def clear_compile_cache() -> None:
    _compile_for.cache_clear()
    _compile.cache_clear()
    _compile_fused.cache_clear()


@lru_cache(maxsize=64)
def _compile(design: Design, df: Dataflow, period: float | None, target: str,
             single_tile: tuple[str, ...], streamed: tuple[str, ...] = ()) -> CompiledArray:
    fg, prim = _front(design, df, period, target, single_tile, streamed)
    retimed = insert_pipeline_registers(prim, math.inf if period is None else period)
    return _back(design, df, fg, retimed, period, target, single_tile, streamed=streamed)


def _front(design: Design, df: Dataflow, period: float | None, target: str,
           single_tile: tuple[str, ...], streamed: tuple[str, ...] = ()) -> tuple[FUGraph, PrimitiveGraph]:
    """Reuse analysis, interconnect and lowering: everything before the LP (``streamed``: derive_interconnect)."""
    fg = derive_interconnect(design, df, single_tile=single_tile, streamed=streamed)
    try:
        prim = lower_to_primitives(fg, DelayTable.load(target), clock_period_ns=period)
    except SpecError as err:
        if err.source != "primitive lowering":
            raise
        # an FU graph the lowering cannot build (e.g. an operand broadcast to FUs that also take it from memory):
        # a limit of the generator that dataflows accepted by the spec checks reach (docs/limits.md, the audit);
        # named by the dataflow, the lowering's own findings kept after it
        raise SpecError([problem(f"dataflows.{df.name}", "the generator cannot lower this dataflow's FU graph to "
                                 f"hardware ({len(err.problems)} edge(s) or FU(s) it cannot build, first: "
                                 f"{err.problems[0]}); choose another order, control vector or loop-to-axis "
                                 "assignment")]) from None
    return fg, prim


def _back(design: Design, df: Dataflow, fg: FUGraph, retimed: RetimedGraph, period: float | None, target: str,
          single_tile: tuple[str, ...], fused: tuple[str, ...] = (), streamed: tuple[str, ...] = ()) -> CompiledArray:
    """Node times, schedule, ports and command of one dataflow from its LP result."""
    timing = timing_from_retimed(retimed, period, target)
    schedule = array_schedule(fg, timing)
    # halo: the row length of its loop; a FIFO of run-time depth: the trips of the loops after it (a padded loop
    # of several skewed loops is both: one field)
    command = command_layout(tuple(dict.fromkeys(df.outer_dims() + tuple(d for d, _ in fg.halo) + fg.fifo_depth_loops)))
    key = hashlib.sha256(repr((design, df, period, target, single_tile) + ((fused,) if fused else ())
                              + (("streamed", streamed) if streamed else ()))
                         .encode()).hexdigest()
    return CompiledArray(design, df, fg, timing, schedule, array_ports(fg, command), command, period is not None,
                         target, single_tile, key)


def compile_fused(design: Design, dataflows: Sequence[str], *, pipeline: bool = True, target: str = "asic"):
    """Several dataflows of ``design`` on one array (dataflow/fusion.py): a FusedArray whose ``views`` are
    one CompiledArray per dataflow with the fused design's timing (what the model and the benches use)."""
    from .fusion import check_fusable
    period = 1e3 / design.clock_mhz if pipeline else None
    return _compile_fused(design, check_fusable(design, list(dataflows)), period, str(target))


@lru_cache(maxsize=16)
def _compile_fused(design: Design, dfs: tuple[Dataflow, ...], period: float | None, target: str):
    from .fusion import (FusedArray, fused_command_layout, fused_ports, merge_fu_graphs, relabel_fu_graph,
                         relabel_prim, relabel_retimed, retime_fused)
    # each dataflow as it runs alone (compile_array): a skewed or placed map as its tiled map, an output held per
    # run as the tile with its output-dependent loops outside; the views' dataflow is that form, as a single
    # design's is (the memory system checks a command against it). A folded map beside dataflows that fold
    # otherwise runs on its own logical array (Design.alone): its view keeps that geometry, and its graphs are
    # renamed to the physical FUs of its placement for the merge, the mux plan and the LP
    own = {df.name: _own_geometry(design, df) for df in dfs if not df.skewed}
    tiled = tuple(tiled_equivalent(_hardware_only(own[df.name]), own[df.name].dataflow(df.name))
                  for df in dfs if not df.skewed)
    names = tuple(df.name for df in tiled)
    place = {n: dict(own[n].placement) if own[n] is not design else {} for n in names}
    back = {n: {ph: lg for lg, ph in p.items()} for n, p in place.items()}
    streamed = {df.name: _streamed(own[df.name], own[df.name].dataflow(df.name)) for df in tiled}
    fronts = [_front(_hardware_only(own[df.name]), df, period, target, (), streamed[df.name]) for df in tiled]
    plan = retime_fused(names, [relabel_prim(p, place[df.name]) for df, (_, p) in zip(tiled, fronts)],
                        DelayTable.load(target).mux2_ns, math.inf if period is None else period,
                        merge_fu_graphs([relabel_fu_graph(fg, place[df.name]) for df, (fg, _) in zip(tiled, fronts)]),
                        len(dfs) - len(tiled))
    by_name = {df.name: dataclasses.replace(_back(_hardware_only(own[df.name]), df, fg,
                                                  relabel_retimed(rt, back[df.name]), period, target, (), names,
                                                  streamed[df.name]),
                                            design=own[df.name])
               for df, (fg, _), rt in zip(tiled, fronts, plan.retiming.per_dataflow)}
    if len(tiled) < len(dfs):       # skewed stt maps share the multipliers and their stages (fusion.py)
        from .fusion import fused_stt_view
        # without a tiled dataflow (skewed maps only) the multipliers are unpipelined and each map's own product
        # stages follow on its path; their operand mux has one input per map
        stages = max((v.timing.node_latency(n) for v in by_name.values() for n in v.timing.prim.graph.nodes
                      if n.kind is NodeKind.MUL), default=0)
        levels = (max((mp.levels for mp in plan.muxes if mp.node.kind is NodeKind.MUL), default=0) if tiled
                  else math.ceil(math.log2(len(dfs))))
        for df in dfs:
            if df.skewed:
                by_name[df.name] = fused_stt_view(design, df, target, period, stages,
                                                  levels * DelayTable.load(target).mux2_ns)
    views = tuple(by_name[df.name] for df in dfs)
    command = fused_command_layout(design, tuple(own[df.name].dataflow(df.name) if df.name in own else df
                                                 for df in dfs), views)
    # Dataflow.schedule is out of repr (single keys see it through the tiled form): a fused key names it when set
    maps = tuple(df.name for df in dfs if df.schedule == "map")
    key = hashlib.sha256(repr((_hardware_only(design), dfs, period, target, "fused")
                              + ((("schedule: map", maps),) if maps else ())).encode()).hexdigest()
    placements = tuple(tuple(sorted(place.get(df.name, {}).items())) for df in dfs)
    return FusedArray(design, dfs, views, plan, fused_ports(views, command), command, period is not None, target, key,
                      placements if any(placements) else ())


def _own_geometry(design: Design, df: Dataflow) -> Design:
    """The design ``df`` runs on in a fused design: the spec's, or for a folded map beside dataflows that do not
    fold alike, that map alone on the logical array its strides imply (``Design.alone``; its ``placement`` puts
    each logical FU on a physical one)."""
    alone = design.alone(df.name)
    return alone if alone.placement and alone is not design else design
