"""Human-readable account of a dataflow's analysis, for ``archgen build SPEC --explain``."""
from __future__ import annotations

import dataclasses
import math
from collections import Counter

from archgen.arch.errors import SpecError
from archgen.arch.spec import Design
from archgen.mappings.tiling import (delay_axes, map_problem, outer_pads, outer_reduced_pads, output_streamed,
                                     row_pads)

from .banking import derive_banking
from .compile import compile_array
from .interconnect import (fu_placement, map_skews, psum_round_text, psum_rounds_of, reduction_runs_of, skew_lane_cost,
                           tiled_equivalent)
from .ir import Role
from .reduce_skew import (drain_groups, drain_skews, fused_drain_groups, fused_wait_groups, product_waits,
                          reduced_skews, rep_waits)
from .reuse import reuse_vectors

__all__ = ["explain"]

_ROLE = {Role.STREAM: "streamed", Role.STATIONARY: "stationary (one register per FU, loaded between tiles)",
         Role.ACCUMULATE: "accumulated in place (drained row by row after each tile)",
         Role.STREAM_OUT: "streamed out through spatial reduction"}


def explain(design: Design, dataflow: str | None = None) -> list[str]:
    df = design.dataflow(dataflow)
    if df.skewed:
        from .stt_array import explain_stt
        return explain_stt(design, df)
    try:       # a map's tile is that of the tiled map it runs as (its own inner_dims() lists every loop)
        inner = tiled_equivalent(design, df).inner_dims()
    except SpecError:
        inner = df.inner_dims()
    lines = [f"design {design.name}: {design.operation}  array {design.shape_label}  "
             f"dataflow {df.name} ({df.form} form)",
             "  map: " + ", ".join(f"{d} = {e}" for d, e in zip(df.ts_map.names, df.ts_map.exprs)),
             f"  temporal order (outer->inner): {', '.join(df.order)}; inside a tile: {', '.join(inner) or '-'}; "
             f"control vector c = {list(df.control)}"]
    lines += _folded_lines(design) + _psum_round_lines(design, df) + _run_lines(design, df)
    lines.append("  reuse moves (A_X M [dt; ds] = 0, unit steps; delay at reference bounds "
                 f"{design.reference_bounds}):")
    for x in design.operation.operands:
        vecs = [r for r in reuse_vectors(design, df, x.name) if sum(map(abs, r.dt + r.ds)) == 1]
        text = "; ".join(_move_text(r, df.order) for r in vecs) or "none"
        lines.append(f"    {x.name}: {text}")
    if df.spatial is None:
        try:
            tiled = tiled_equivalent(design, df)
        except SpecError as err:
            lines.append("  (not built: " + "; ".join(str(p) for p in err.problems) + ")")
            return lines
        exprs = ', '.join(f'{d} = {e}' for d, e in zip(tiled.ts_map.names, tiled.ts_map.exprs))
        lines.append(f"  runs the map's own schedule {exprs} (schedule: map) with control vector c = {list(tiled.control)}"
                     if tiled.schedule == "map" else
                     f"  runs as the tiled map {exprs} with control vector c = {list(tiled.control)} (the skew's per-FU delay)")
        lines += _map_skew_lines(design, df, tiled) + _placement_lines(design, df)
        df = tiled
    if df.one_step_tile():
        lines.append(f"  tile: {df.one_step_tile()}")
    compiled = compile_array(design, df, pipeline=False)
    fg, sch = compiled.fu_graph, compiled.schedule
    banking = {b.operand: b for b in derive_banking(fg)}
    lines.append("  derived connections:")
    for p in fg.plans:
        edges = Counter((e.kind, e.delay, e.axis, e.fifo) for _, _, e in fg.links(p.name))
        desc = ", ".join(f"{n} x {k}" + (f" along axis {a}" if a is not None else "")
                         + (f" (FIFO {f} step + {d} registers)" if f else f" (delay {d})")
                         for (k, d, a, f), n in sorted(edges.items(), key=lambda kv: str(kv[0])))
        fan = [e.fanout for _, _, e in fg.links(p.name) if e.fanout]
        lines.append(f"    {p.name} [{p.width} bit]: {_ROLE[p.role]}; {p.n_lanes} lane(s), skews {[l.skew for l in p.lanes]}"
                     + (f"; broadcast fan-out {max(fan)}" if fan else "")
                     + _reduction_text(p)
                     + ("; partial sums of earlier tiles come back in" if p.psum_in else ""))
        lines.append(f"      edges: {desc}")
        b = banking[p.name]
        lines.append(f"      memory: {b.total_banks} bank(s) (per tensor dim: banks {list(b.banks)}, gcd {list(b.gcd)}); "
                     f"address strides " + ", ".join(f"{v}: {list(s)}" for v, s in b.strides))
    lines += (_delay_connection_lines(fg) + _wait_lines(fg) + _fused_wait_lines(design, fg) + _drain_wait_lines(fg)
              + _fused_drain_lines(design, fg))
    load = sch.rows if sch.has_stationary else (f"0 or {sch.rows}" if sch.psum_in and sch.accumulate else 0)
    tail = (f"drain {sch.drain_rows} rows starting {sch.commit_skew + 1} cycles after a tile's last step" if sch.accumulate
            else f"outputs {sch.out_latency} cycles after their step")
    lines.append(f"  schedule (unpipelined): one step per cycle, tiles back to back; load {load} rows per tile into "
                 f"shadow registers (overlapped); {tail}")
    return lines


def _psum_round_lines(design: Design, df) -> list[str]:
    """A reduction loop of the tile before an output-dependent one (interconnect.py ``psum_rounds``): what the
    array builds instead of a per-FU partial-sum store, and what it does not build."""
    text = psum_round_text(design, df)
    if text is None:
        return []
    lines = [f"  {text}"]
    note = psum_rounds_of(design, df).note
    if note:
        lines.append(f"  ({note})")
    return lines


def _run_lines(design: Design, df) -> list[str]:
    """How an output that depends on some loops of the tile and not on the loops after them is held: per run of
    those reduction loops (interconnect.py ``reduction_runs``), or why that is not built."""
    try:
        split = reduction_runs_of(design, df)
    except SpecError:
        return []
    if split is None:
        return []
    out = design.operation.output.name
    run, dep = ", ".join(split.run), ", ".join(split.dep)
    lines = [f"  {out} is held per run: the tile [{dep}, {run}] gives each FU one element of {out} for a run of {run} "
             f"(the reduction loops after {dep}); it is accumulated in place for the run and drained at its end, "
             f"while the next run accumulates. Built as tiles of [{run}] with {dep} outside the tile: the same FU "
             "per iteration, order per FU and step sequence"
             + (" (no input is loaded per tile)" if split.faithful else f"; {split.feeds}")]
    if split.streamed:
        lines.append(f"  {split.stream_text}")
    sch = compile_array(design, df, pipeline=False).schedule
    lines.append(f"  a run of fewer than {sch.commit_skew + sch.drain_rows + 1} steps (commit skew {sch.commit_skew} + "
                 f"{sch.drain_rows} drain rows + 1) waits at its last step for the previous run's drain"
                 + ("; partial sums of earlier visits are preloaded per run, after the previous run has drained"
                    if sch.psum_in else ""))
    if sch.keep_dims:
        keep = ", ".join(sch.keep_dims)
        lines.append(f"  the stationary input(s) stay in the FUs while the tile counter(s) of {keep} advance: a run "
                     "loads only at the first run of each tile"
                     + (" or to preload partial sums" if sch.accumulate and sch.psum_in else ""))
    if not split.faithful:
        what = "a run's load" if sch.keep_dims else "the per-run load"
        lines.append(f"  {what} ({sch.rows} row(s) into the shadow registers, started {sch.swap_skew + 1} "
                     f"cycle(s) after the previous run's first step) delays a run of fewer than "
                     f"{sch.swap_skew + 1 + sch.rows} steps (docs/dataflows.md \"Inputs that use no loop of the run\")")
    if split.note:
        lines.append(f"  ({split.note})")
    return lines


def _reduction_text(p) -> str:
    """How an output plan reduces across the array: trees, chains, or chains whose ends meet in trees."""
    chains = sorted(a for a, _ in p.reuse_axes)
    into = " into one accumulator per element" if p.role is Role.ACCUMULATE else ""
    if p.tree_axes and chains and p.role in (Role.ACCUMULATE, Role.STREAM_OUT):
        return (f"; reduced across array axis(es) {sorted(set(p.tree_axes) | set(chains))} by partial-sum chains "
                f"along axis(es) {chains}, their ends summed by adder trees along axis(es) {sorted(p.tree_axes)}{into}")
    if p.role is Role.ACCUMULATE and (p.tree_axes or chains):
        return (f"; reduced across array axis(es) {sorted(set(p.tree_axes) | set(chains))} by "
                f"{'adder trees' if p.tree_axes else 'partial-sum chains'}{into}")
    return ""


def _map_skew_lines(design: Design, df, tiled) -> list[str]:
    """For a skew on a loop with loops after it: what the map's own schedule would connect between neighbours
    (its reuse moves along each skewed axis, solved on the map itself: FIFOs of sigma_a x D steps, D from the
    command at run time) and that the array runs the tiled map with the delay compressed to sigma_a cycles
    (docs/dataflows.md "Skewed maps")."""
    skews = [sk for sk in map_skews(design, df) if sk.after]
    if not skews:
        return []
    ref = design.reference_bounds
    lines = []
    for sk in skews:
        trips = " x ".join(f"trips of t_{d}" for d in sk.after)
        late = "late (early where sigma.s < 0: a positive FU coefficient)" if min(sk.sigma) < 0 else "late"
        lines.append(f"  skew of t_{sk.loop} by FU coordinates (sigma = {list(sk.sigma)}) with loop(s) {', '.join(sk.after)} "
                     f"after it: under the map FU s runs sigma.s iterations of t_{sk.loop} = sigma.s x D array steps {late}, "
                     f"D = {trips} = {sk.steps_per_iteration(design, df, ref)} at the reference bounds (a run-time number)")
    axes = sorted({a for sk in skews for a, v in enumerate(sk.sigma) if v and design.shape[a] > 1})
    lines.append("  the map's own connections between neighbours along the skewed axes (A_X M [dt; ds] = 0 on the map, "
                 "delay at the reference bounds; a delay of D steps or more is a run-time-depth FIFO):")
    for a in axes:
        for x in design.operation.operands:
            moves = [r for r in reuse_vectors(design, df, x.name) if sum(map(abs, r.ds)) == 1 and r.ds[a]]
            best = min(moves, key=lambda r: (r.delay, sum(map(abs, r.dt)))) if moves else None
            text = (f"{best.kind} {best.describe(df.order)} ({best.delay} cycle{'' if best.delay == 1 else 's'})"
                    if best else "none")
            lines.append(f"    axis {a}, {x.name}: {text}")
    if tiled.schedule == "map" and not row_pads(design, tiled):
        lines.append(f"  built as the map's own schedule (schedule: map), control c = {list(tiled.control)}: "
                     + _outer_pad_text(design, tiled))
    elif tiled.schedule == "map":
        pads = row_pads(design, tiled)
        rows = " and of ".join(f"t_{pad.loop}" for pad in pads)
        first = _offset_text(pads)
        lines.append(f"  built as the map's own schedule (schedule: map), control c = {list(tiled.control)}: each row of "
                     f"{rows} padded by the skew's span, FU s masked outside its own positions {first} .. "
                     f"{first} + L - 1" + (" of any of them" if len(pads) > 1 else "") + _early_text(pads)
                     + ", the map's wires and FIFOs (derived connections below)")
        if outer_pads(design, tiled):
            lines.append("  and outside the tile: " + _outer_pad_text(design, tiled))
    else:
        lines.append(f"  built as the tiled map with control c = {list(tiled.control)}: the same FU per iteration and "
                     "order per FU, the map's delay of sigma.s x D steps compressed to sigma.s cycles (derived "
                     "connections below)")
    lines.append("  " + _schedule_choice(design, df, skews))
    return lines


def _placement_lines(design: Design, df) -> list[str]:
    """For a map that skews the FU assignment (interconnect.py ``fu_placement``): where each of its FUs runs."""
    place = fu_placement(design, df)
    if place is None:
        return []
    moved = ", ".join(f"{s} -> {p}" for s, p in place.items() if s != p) or "none"
    return [f"  the FU of an iteration depends on several loops or axes; the map is a dataflow for every problem size "
            f"(its FUs' offsets are one complete residue system modulo the loops' strides), so the map's FU s runs at "
            f"array position p(s), the FU of the tiled map with the same residues; moved: {moved}; the same "
            "iterations in the same order per FU, the map's lags between FUs (whole tiles, skews by FU coordinates) "
            "compressed to the tiled map's control vector"]


def _folded_lines(design: Design) -> list[str]:
    """For a folded map (arch/spec.py ``_fold``): the physical FU of each logical FU and the wire length of the
    logical array's neighbour links on the physical one."""
    if not design.placement:
        return []
    place = dict(design.placement)
    spans = Counter(sum(abs(u - v) for u, v in zip(place[lg], place[nb]))
                    for lg in place for a in range(len(lg))
                    for nb in [lg[:a] + (lg[a] + 1,) + lg[a + 1:]] if nb in place)
    phys = "x".join(map(str, design.physical_shape))
    return [f"  folded: the spec's map runs every iteration once on every problem size but its strides are not the "
            f"{phys} array's extents; built as the tiled map above on the logical {'x'.join(map(str, design.shape))} "
            f"array (same FUs), logical FU -> physical FU: "
            + ", ".join(f"{lg} -> {ph}" for lg, ph in design.placement)
            + "; the same iterations in the same order per FU; logical neighbours lie "
            + ", ".join(f"{n} x {d} FU pitch{'es' if d != 1 else ''}" for d, n in sorted(spans.items()))
            + " apart on the physical array" + _span_text(spans)]


def _span_text(spans: Counter) -> str:
    """The wire delay the pipelining LP gives the folded map's links longer than one FU pitch, by delay table."""
    from .delays import DelayTable
    longer = sorted(d for d in spans if d > 1)
    if not longer:
        return ""
    tables = [DelayTable.load(t) for t in ("asic", "ecp5")]
    per = "; ".join(f"{t.target} table " + ", ".join(f"{d} pitches +{t.span_ns(d):.3f} ns" for d in longer)
                    + f" ({t.fu_pitch_ns * 1e3:g} ps per pitch beyond the first)" if t.fu_pitch_ns > 0 else
                    f"{t.target} table none (no per-pitch figure: its source says why)" for t in tables)
    return (f" (a longer link's wire delay beyond a neighbour link's: {per}; the pipelining LP counts it after the "
            "link's registers and adds one where it misses the clock)")


def _schedule_choice(design: Design, df, skews) -> str:
    """Which schedule is built and why: the memory-fed input lanes of the map's own schedule against the
    compressed build (interconnect.py ``skew_lane_cost``)."""
    cost = skew_lane_cost(design, df)
    if cost is None and df.schedule == "map":
        return _outer_cost_text(design, df)
    if cost is None:
        return _why_compressed(design, df, skews)
    if df.schedule == "map":
        return _own_schedule_text(design, df, cost)
    own, built = cost.tile_steps(design, df, design.reference_bounds)
    text = (f"memory-fed input lanes: the map's own schedule {_lanes(cost.literal)}, the compressed build "
            f"{_lanes(cost.compressed)}; steps per tile at the reference bounds: {own} (rows of t_{cost.loop} padded by "
            f"{cost.span} iteration(s)) against {built}; ")
    if cost.saving <= 0:
        return text + (f"the compressed build is chosen: the map's own saves no lane and pads every row of t_{cost.loop} "
                       "with the skew's span of masked iterations")
    return text + (f"the map's own schedule would save {cost.saving} lane(s) but is NOT built here (schedule: compressed, "
                   f"the default; dataflows.{df.name}.schedule: map builds it at the array level), so the compressed "
                   "build runs")


def _why_compressed(design: Design, df, skews) -> str:
    """Why a skew on a loop with loops after it keeps the compressed build: a tile loop as written, or an inner loop
    the tile's forms move out of it (a reduction loop before an output-dependent one runs as partial-sum rounds; a
    loop the output depends on, before trailing reduction loops, runs outside the run): the map's own schedule builds
    those padded rounds at the array level; the compressed build is the default."""
    out = design.operation.output.name
    rounds, runs = psum_rounds_of(design, df), reduction_runs_of(design, df)
    for sk in skews:
        if rounds is not None and sk.loop in rounds.moved:
            return (f"why compressed: t_{sk.loop} is a reduction loop before loop(s) {', '.join(rounds.rest)} that {out} "
                    f"depends on, so the tile runs as partial-sum rounds with t_{sk.loop} outside it; the map's own "
                    "schedule pads those rounds per FU (K + span rounds, one memory lane per FU; schedule: map builds "
                    "it at the array level)")
        if runs is not None and sk.loop in runs.dep:
            return (f"why compressed: {out} depends on t_{sk.loop}, which runs outside the run of the trailing "
                    f"reduction loop(s) {', '.join(runs.run)}; the map's own schedule pads t_{sk.loop} per FU (K + "
                    "span tiles, each FU draining its own tiles of it, one memory lane per FU; schedule: map builds "
                    "it at the array level)")
    loops = ", ".join(f"t_{sk.loop}" for sk in skews)
    return (f"why compressed: the skew is on a tile loop ({loops}); the map's own schedule runs it K + span tiles, "
            "each FU on its own tiles of it and masked outside them (schedule: map builds it at the array level)")


def _outer_pad_text(design: Design, tiled) -> str:
    """The map's own schedule of skewed loops outside the tile (mappings/tiling.py ``outer_pads``); for a loop the
    output depends on, what each drain carries (interconnect.py ``_map_schedule``)."""
    out, pads = design.operation.output, outer_pads(design, tiled)
    return "; ".join(f"t_{pad.loop} runs K + {pad.span(design.shape)} tiles, FU s on tile t - {_offset_text([pad])} and "
                     f"masked outside its own K tiles" + _outer_drain_text(design, tiled, pad) for pad in pads) + (
        "; memory lanes feed every FU its own elements (no FIFO along a tile loop); " + (
            ("through the memory system each lane writes and reads the partial sums of its element of tile t - O "
             "(its lane's largest offset)" if output_streamed(
                design, tiled) else "through the memory system each drained row writes its group's element of tile "
             "t - O and the padding rows' writes and partial-sum reads are dropped (lanes of one row in one group share "
             "one position, where only the representative's lane writes)") if outer_reduced_pads(design, tiled) else
            "through the memory system each drained row of the output writes its FU's tile of the loop and drops "
            "its masked tiles' writes (with a skew along the output's lanes each lane writes its own position, in "
            "its own bank through a bank crossbar; a block that puts two lanes in one bank is refused)" if any(out.uses(p.loop) for p in pads) else
            "through the memory system each lane reads its FU's tile of the loop (a lead of offset(s) tiles; the "
            "buffer keeps a margin of up to span tiles of it in front of the block)"))


def _outer_drain_text(design: Design, tiled, pad) -> str:
    """What a drain of the output carries when it depends on the skewed loop ``pad`` outside the tile: each FU's own
    tile, or, reduced along an axis the skew moves (H148), the group's sum after each FU's drained sum waits."""
    out = design.operation.output
    if not out.uses(pad.loop):
        return ""
    if pad in outer_reduced_pads(design, tiled):
        what = "product" if output_streamed(design, tiled) else "drained sum"
        below = "output waits" if output_streamed(design, tiled) else "drain waits"
        return (f"; the FUs {out.name} is reduced across hold different tiles of it, so each FU's {what} waits "
                f"(O - offset(s)) whole iterations of t_{pad.loop} before the sum ({below}, below)")
    return (f", each drain of {out.name} carrying its element of tile t - {_offset_text([pad])} (the drains of its "
            "masked tiles are padding, dropped by the host program)")


def _outer_cost_text(design: Design, df) -> str:
    """``schedule: map`` with skews only outside the tile: its tiles and memory-fed lanes against the compressed
    build's at the reference bounds (the price of the padded rounds). The buffer depths are not checked here: a
    cost, not a run (the waited drains of an iteration of a loop can hold more tiles there than
    array.max_fifo_depth)."""
    ref = design.reference_bounds
    own = compile_array(design, df, pipeline=False)
    flat = compile_array(design, dataclasses.replace(df, schedule="compressed"), pipeline=False)
    cost = {}
    for name, c in (("own", own), ("compressed", flat)):
        mapping = map_problem(design, ref, c.dataflow, fifo_check=False)
        cost[name] = (mapping.n_tiles * mapping.steps, {p.name: p.n_lanes for p in c.fu_graph.inputs})
    return (f"the map's own schedule runs (schedule: map): {cost['own'][0]} steps at the reference bounds against "
            f"{cost['compressed'][0]} for the compressed build (the padded rounds); memory-fed input lanes "
            f"{_lanes(cost['own'][1])} against {_lanes(cost['compressed'][1])}")


def _lanes(lanes) -> str:
    return ", ".join(f"{k} {n}" for k, n in lanes.items()) + f" ({sum(lanes.values())} in all)"


def _own_schedule_text(design: Design, df, cost) -> str:
    """``schedule: map``: the lanes and steps per tile the build takes (its rows padded by the span and the halo its
    FIFOs need, mappings/tiling.py ``RowPad``) against the compressed build's, and ``skew_lane_cost``'s count where
    the build takes more (the count also lets a FIFO feed an FU that runs earlier, c.ds < 0, which is not built)."""
    compiled = compile_array(design, df, pipeline=False)
    lanes = {p.name: p.n_lanes for p in compiled.fu_graph.inputs if p.role is Role.STREAM}
    own = map_problem(design, design.reference_bounds, compiled.dataflow).steps
    _, built = cost.tile_steps(design, df, design.reference_bounds)
    rows = " and ".join(f"rows of t_{pad.loop} padded by {pad.span(design.shape)} iteration(s)"
                        + (f": a halo of {pad.halo} in which the FIFOs fill, then the skew's span" if pad.halo else "")
                        for pad in row_pads(design, compiled.dataflow))
    text = (f"memory-fed input lanes: the map's own schedule {_lanes(lanes)}, the compressed build "
            f"{_lanes(cost.compressed)}; steps per tile at the reference bounds: {own} ({rows}) against {built}; ")
    fewer = sum(cost.compressed.values()) - sum(lanes.values())
    text += (f"the map's own schedule runs (schedule: map): {fewer} lane(s) fewer than the compressed build, "
             f"{own - built} more steps per tile"
             if fewer > 0 else
             f"the map's own schedule runs (schedule: map), but it takes "
             f"{'as many lanes as' if fewer == 0 else f'{-fewer} lane(s) more than'} the compressed build and "
             f"{own - built} more steps per tile: schedule: compressed is the better choice here")
    if lanes != dict(cost.literal):
        text += (f"; skew_lane_cost counts {_lanes(cost.literal)}: the count ignores the control vector (it takes moves "
                 "toward an FU that runs earlier, c.ds < 0), the build does not")
    return text


def _delay_connection_lines(fg) -> list[str]:
    """Each delay connection (FIFO) with its depth, and the halo steps that fill them (issue 14); under the map's
    own schedule each padded loop's FIFOs step that loop and each loop's rows are padded."""
    fifos = fg.fifos()
    if not fifos:
        return []
    design, df = fg.design, fg.dataflow
    axes = {(a.operand, a.axis): a for a in delay_axes(design, df)}
    halos = dict(fg.halo)
    spans = halos if df.schedule == "map" else {}
    ref = design.reference_bounds
    trips = {d: -(-ref[d] // design.shape[df.axis_of[d]]) if d in df.axis_of else ref[d] for d in df.order}
    lines = [f"  delay connections (reuse with dt != 0 built as FIFOs; depth = physical delay dt*stride + c.ds "
             f"of the solution of A_X M [dt; ds] = 0):"]
    for u, v, e in sorted(fifos, key=lambda f: (f[2].operand, f[0], f[1])):
        loop, after = axes[e.operand, e.axis].loop, axes[e.operand, e.axis].after
        stride = math.prod(trips[d] + spans.get(d, 0) for d in after)
        ds = [b - a for a, b in zip(u.coord, v.coord)]
        if after:
            steps = " x ".join(f"trips of t_{d}" + (f" + {spans[d]}" if d in spans else "") for d in after)
            lines.append(f"    {e.operand}: FU {u.coord} -> FU {v.coord}: FIFO {e.fifo} step of t_{loop} = {steps} "
                         f"array steps ({e.fifo * stride} at the reference bounds; a buffer of at most "
                         f"{design.max_fifo_depth} steps x {e.width} bits, depth from the command) + {e.delay} "
                         f"register(s) = depth {e.fifo * stride + e.delay} cycle(s) at the reference bounds  "
                         f"(dt: +t_{loop}, ds: {ds})")
        else:
            lines.append(f"    {e.operand}: FU {u.coord} -> FU {v.coord}: FIFO {e.fifo} step of t_{loop} + {e.delay} "
                         f"register(s) = depth {e.fifo + e.delay} cycle(s)  (dt: +t_{loop}, ds: {ds})")
    memory_fed = ", ".join(f"{k} {n}" for k, n in {p.name: p.n_lanes for p in fg.inputs}.items())
    inner = df.inner_dims()
    for loop, halo in halos.items():
        after = inner[inner.index(loop) + 1:]
        stride = math.prod(trips[d] + spans.get(d, 0) for d in after)
        unit = "step(s)" if not after else f"iteration(s) of t_{loop} ({stride} steps each at the reference bounds)"
        if df.schedule == "map":
            first = _offset_text([pad for pad in row_pads(design, df) if pad.loop == loop])
            first = f"({first})" if "+" in first else first
            lines.append(f"    padding: each row of t_{loop} runs {halo} {unit} more than the loop's trips; FU s runs "
                         f"iteration pos - {first} at row position pos and its products are masked outside "
                         f"0 <= pos - {first} < trips of t_{loop}; memory-fed input lanes: {memory_fed}")
        else:
            lines.append(f"    halo: each row of t_{loop} starts with {halo} {unit} in which the FIFOs fill and products "
                         f"are masked; memory-fed input lanes: {memory_fed}")
    return lines


def _wait_lines(fg) -> list[str]:
    """An output reduced along an array axis that a padded loop it uses is skewed along (dataflow/reduce_skew.py):
    each FU's product waits before the reduction, and what that builds per FU (rtlgen/array.py ``wait_product``: a
    register chain on the tile's last loop, else a buffer of run-time depth sized like the delay connections')."""
    waits = product_waits(fg)
    if not waits:
        return []
    design, inner, spans, bits = fg.design, fg.dataflow.inner_dims(), dict(fg.halo), fg.output.width
    outer = list(fg.dataflow.outer_dims())
    loops = ", ".join(f"t_{p.loop}" for p in reduced_skews(fg))
    lines = [f"  output waits: {fg.output.name} sums FUs at different offsets of {loops} (docs/dataflows.md \"Outputs "
             "reduced along a skewed axis\"); FU s's product waits O - offset(s) iterations (O: its lane's largest "
             "offset), counted in issued steps, before the reduction:"]
    regs = entries = 0
    for s, w in sorted(waits.items()):
        parts = []
        for loop, n in sorted(w.items()):
            after = inner[inner.index(loop) + 1:] if loop in inner else outer[outer.index(loop) + 1:]
            if loop == inner[-1]:
                parts.append(f"{n} iteration(s) of t_{loop} = {n} step(s): {n} register(s) x {bits} bits")
                regs += n
                continue
            depth = 1 << max(1, (n * design.max_fifo_depth - 1).bit_length())
            steps = " x ".join([f"trips of t_{d}" + (f" + {spans[d]}" if d in spans else "") for d in after]
                               + ([] if loop in inner else ["steps per tile"]))
            parts.append(f"{n} iteration(s) of t_{loop} = {n} x ({steps}) steps, depth from the command: a buffer of "
                         f"{depth} entries x {bits} bits ({n} x array.max_fifo_depth {design.max_fifo_depth}, rounded "
                         "up to a power of two)")
            entries += depth
        lines.append(f"    FU {s}: " + "; ".join(parts))
    lines.append(f"    cost: {regs} register(s) and {entries} buffer entries, {bits} bits each "
                 f"({(regs + entries) * bits} bits) on {len(waits)} of {math.prod(design.shape)} FUs")
    return lines


def _fused_wait_lines(design: Design, fg) -> list[str]:
    """In a fused design (the spec's ``fuse:``): the fused top builds each dataflow's waits, picked by the select
    (rtlgen/fused_array.py); dataflows that wait alike at an FU share its chain (``fused_wait_groups``), and an FU where
    dataflows wait differently, or one does not, muxes its product."""
    name = fg.dataflow.name
    if len(design.fuse) < 2 or name not in design.fuse or not product_waits(fg):
        return []
    from .compile import compile_fused
    fused = compile_fused(design, design.fuse)
    k, every = fused.index(name), set(range(len(fused.views)))
    mine = {v: gs for v, gs in fused_wait_groups(fused).items() if any(k in g for g in gs.values())}
    shared = sorted({fused.names[j] for gs in mine.values() for g in gs.values() if k in g for j in g if j != k})
    muxed = sum(1 for gs in mine.values() if len(gs) + bool(every - {j for g in gs.values() for j in g}) > 1)
    return [f"  fused ({', '.join(fused.names)}): these waits are built beside the shared multipliers and picked by the "
            f"dataflow select; {name} shares them with {', '.join(shared) or 'no other dataflow'} (same waits at the same "
            f"product time; a run-time buffer is each dataflow's own); {muxed} of its {len(mine)} waiting FUs add a "
            f"{fg.output.width}-bit select mux on the product (the other dataflows read it straight or wait otherwise)"]


def _drain_wait_lines(fg) -> list[str]:
    """An output held per FU over skewed loops outside the tile, reduced along the axes their skews move
    (dataflow/reduce_skew.py ``drain_groups``): per group the row that drains it and each FU's wait in drains, and the
    buffers that builds (rtlgen/array.py ``waited_drain``: per waiting FU one buffer per loop of run-time depth)."""
    groups = drain_groups(fg)
    if not groups:
        return []
    design, bits = fg.design, fg.output.width
    outer = list(fg.dataflow.outer_dims())
    per = {p.loop: " x ".join(f"trips of t_{d}" for d in outer[outer.index(p.loop) + 1:]) or "1"
           for p in drain_skews(fg)}
    loops = ", ".join(f"t_{loop}" for loop in per)
    lines = [f"  drain waits: {fg.output.name} is held per FU and sums FUs at different tiles of {loops} "
             "(docs/dataflows.md \"Skewed output loops outside the tile\"); per group of FUs one element sums, its row "
             "drains the element of iteration t - O_l of each (O_l the group's largest offset), the other rows drain "
             "padding, and FU s's drained sum waits O_l - offset_l(s) iterations of each, D_l drains each (the tiles "
             "of one iteration):"]
    entries = 0
    for rep, members in groups:
        parts = []
        for s, waits in members:
            parts.append(f"FU {s} waits " + " + ".join(f"{n} iteration(s) of t_{loop} = {n} x ({per[loop]}) drains"
                                                       for loop, n in waits))
            entries += sum(1 << max(1, (n * design.max_fifo_depth - 1).bit_length()) for _, n in waits)
        note = "; it waits too, so its partial sum is added at the drain" if rep in rep_waits(groups) else ""
        lines.append(f"    row of FU {rep}{note}: " + "; ".join(parts))
    lines.append(f"    cost: {entries} buffer entries x {bits} bits ({entries * bits} bits; depth n x "
                 f"array.max_fifo_depth {design.max_fifo_depth} per loop, rounded up to a power of two)")
    return lines


def _fused_drain_lines(design: Design, fg) -> list[str]:
    """In a fused design (the spec's ``fuse:``): the fused top builds each dataflow's drain waits behind the shared
    result registers, read only by its rows; dataflows that wait alike share them (``fused_drain_groups``)."""
    name = fg.dataflow.name
    if len(design.fuse) < 2 or name not in design.fuse or not drain_groups(fg):
        return []
    from .compile import compile_fused
    fused = compile_fused(design, design.fuse)
    k = fused.index(name)
    (ks,) = [ks for ks in fused_drain_groups(fused).values() if k in ks]
    shared = [fused.names[j] for j in ks if j != k]
    return [f"  fused ({', '.join(fused.names)}): these drain buffers are built behind the shared result registers and "
            f"read only by {name}'s rows; {name} shares them with {', '.join(shared) or 'no other dataflow'} (the same "
            "groups and loops after each skewed loop)"]


def _offset_text(pads) -> str:
    """FU s's first row position under the map's own schedule (mappings/tiling.py ``RowPad.offset``): sigma.s, plus a
    constant o = halo + early where the rows have a halo or FUs that a positive coefficient runs early."""
    if all(pad.halo + pad.early == 0 for pad in pads):
        return "sigma.s"
    if len(pads) > 1:
        return "o_l + sigma_l.s"
    return f"{pads[0].halo + pads[0].early} + sigma.s"


def _early_text(pads) -> str:
    """Where a positive FU coefficient runs some FUs early: how far each row starts sooner for them."""
    early = [f"of t_{pad.loop} {pad.early} position(s)" for pad in pads if pad.early]
    return (f"; a positive FU coefficient runs some FUs early: the earliest FU starts each row {' and '.join(early)} "
            "before FU 0 (o = halo + that lead)") if early else ""


def _move_text(r, order) -> str:
    """One unit reuse move as the hardware builds it: a register held over loops (stationary), a same-cycle wire
    (direct), a systolic hop (an FU step with dt = 0, made late by the control vector: c.ds registers) or a
    loop step's delay."""
    kind = "systolic" if r.kind == "delay" and not any(r.dt) else r.kind
    return f"{kind} {r.describe(order)} ({r.delay} cycle{'' if r.delay == 1 else 's'})"
