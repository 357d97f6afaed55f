"""The map's own schedule (``schedule: map``) of an output reduced along an array axis that a padded loop it uses is
skewed along (docs/dataflows.md "Outputs reduced along a skewed axis").

Under the map's own schedule FU s works, at row position pos of a padded loop l, on iteration pos - offset_l(s)
(mappings/tiling.py ``RowPad``). An output lane sums the products of several FUs (a partial-sum chain or an adder
tree along the axes the output is reduced along); when l is skewed along such an axis, those FUs work on different
iterations of l at one step. Each FU's product therefore waits before the reduction, as the inputs wait in their
FIFOs: FU s of a lane whose FUs' largest offset is O_l waits O_l - offset_l(s) iterations of l, so every term the lane
sums at pos belongs to iteration pos - O_l, and the lane streams that element (its offset is O_l). The wait is
counted in issued steps (the register chain or run-time buffer shifts on the FU's valid steps), so bubbles and the cycle
schedule are unchanged: only which element a lane carries at a step moves. With loops after l in the tile one
iteration of l is a run-time number of steps, and the wait is a buffer of run-time depth, as the delay connections'
FIFOs on an outer inner loop are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from archgen.arch.errors import problem
from archgen.dataflow.ir import Role
from archgen.mappings.tiling import RowPad, outer_reduced_pads, output_wait_steps, reduced_pads

if TYPE_CHECKING:
    from archgen.dataflow.interconnect import FUGraph

__all__ = ["reduced_skews", "lane_members", "lane_offsets", "product_waits", "wait_steps", "fused_wait_groups",
           "drain_skews", "drain_groups", "rep_waits", "fused_drain_groups", "outer_reduced_skews",
           "memory_drain_waits", "accumulated_fus"]


def reduced_skews(fg: FUGraph) -> tuple[RowPad, ...]:
    """The padded loops the output uses whose skew moves an array axis the output is reduced along (an axis whose
    loop the output does not use): their lanes sum FUs at different offsets (mappings/tiling.py ``reduced_pads``)."""
    return reduced_pads(fg.design, fg.dataflow)


def lane_members(fg: FUGraph) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Per output lane, every FU whose product it sums: the FUs that differ from its terminal FU only along the
    axes the output is reduced along (chains and trees). ``Lane.fus`` lists one path of a chain's in-tree only
    (chains along several axes merge), so it is not the set."""
    key = _chain_key(fg)
    return tuple(tuple(s for s in fg.coords() if key(s) == key(lane.fus[-1])) for lane in fg.output.lanes)


def _chain_key(fg: FUGraph):
    """FU coordinate -> its coordinates off the axes the output's chains and trees reduce: FUs with equal keys sum
    into one result register."""
    reduced = {a for a, _ in fg.output.reuse_axes} | set(fg.output.tree_axes)
    return lambda s: tuple(v for a, v in enumerate(s) if a not in reduced)


def lane_offsets(fg: FUGraph) -> tuple[dict[str, int], ...]:
    """Per output lane, {loop: O_l}: the largest offset of its FUs on each loop of :func:`reduced_skews` (the
    position its beats lag by; the FUs of a lane share their offsets on every other padded loop)."""
    pads = reduced_skews(fg)
    return tuple({p.loop: max(p.offset(s) for s in fus) for p in pads} for fus in lane_members(fg))


def product_waits(fg: FUGraph) -> dict[tuple[int, ...], dict[str, int]]:
    """FU coordinate -> {loop: iterations of that loop its product waits before the lane's reduction}, nonzero
    entries only ({} when no padded loop the output uses is skewed along an axis it is reduced along)."""
    pads = reduced_skews(fg)
    waits: dict = {}
    for fus, top in zip(lane_members(fg), lane_offsets(fg)):
        for s in fus:
            w = {p.loop: top[p.loop] - p.offset(s) for p in pads if top[p.loop] != p.offset(s)}
            if w:
                waits[tuple(s)] = w
    return waits


def wait_steps(fg: FUGraph, trips) -> dict[tuple[int, ...], int]:
    """FU coordinate -> the array steps its product waits for problem ``trips`` (:func:`product_waits` times the
    steps of one iteration of each loop, mappings/tiling.py ``output_wait_steps``)."""
    per = output_wait_steps(fg.design, fg.dataflow, trips)
    return {s: sum(n * per[loop] for loop, n in w.items()) for s, w in product_waits(fg).items()}


def fused_wait_groups(fused) -> dict:
    """Of a fused design (dataflow/fusion.py ``FusedArray``): physical multiplier node -> {(product time, waits, k or
    -1): [dataflow indices]}, the dataflows whose products wait at that FU grouped by what the fused top builds for
    them (rtlgen/fused_array.py). Dataflows that wait the same iterations at the same product time share one register
    chain (key -1); a wait on a loop with loops after it in the tile is a buffer whose depth register the dataflow's
    own command latches, one per dataflow (key k). Every other dataflow's product goes straight to the reduction."""
    from archgen.dataflow.fusion import is_stt_view
    from archgen.dataflow.ir import NodeKind
    out: dict = {}
    for k, view in enumerate(fused.hardware_views):
        waits = {} if is_stt_view(view) else product_waits(view.fu_graph)
        if not waits:
            continue
        tm, last = view.timing, view.dataflow.inner_dims()[-1]
        for v in (n for n in tm.prim.graph.nodes if n.kind is NodeKind.MUL):
            w = waits.get(fused.logical_fu(k, v.coord))
            if w:
                key = (tm.time[v] + tm.node_latency(v), tuple(sorted(w.items())), k if set(w) - {last} else -1)
                out.setdefault(v, {}).setdefault(key, []).append(k)
    return out


def drain_skews(fg: FUGraph) -> tuple[RowPad, ...]:
    """The skewed loops outside the tile the output uses whose skew moves an array axis the output is reduced along,
    for an output accumulated in place over the tile: each FU then holds its own accumulator (no adder tree or chain
    is derived across that axis) and, at a drain, the FUs of one lane hold different tiles of the loop."""
    return outer_reduced_skews(fg.design, fg.dataflow) if fg.output.role is Role.ACCUMULATE else ()


def outer_reduced_skews(design, df) -> tuple[RowPad, ...]:
    """The skewed loops outside the tile of ``df`` (mappings/tiling.py ``outer_pads``) that the output uses, skewed
    along an array axis whose loop the output does not use (an axis it is reduced along): mappings/tiling.py
    ``outer_reduced_pads``."""
    return outer_reduced_pads(design, df)


def drain_groups(fg: FUGraph) -> tuple:
    """For the loops l of :func:`drain_skews`: per group of FUs one output element sums (FUs that differ only along
    the axes the output is reduced along), (rep, ((s, ((l, n_l), ...)), ...)). O_l is the group's largest offset on l:
    the group drains, at tile t, its element of iteration t - O (on every such loop at once), from rep's row, and each
    FU s's drained sum waits n_l = O_l - offset_l(s) iterations of each l first (the FUs that wait are listed, the
    waits of zero left out). rep is the FU of the largest offsets in outer-loop order (lexicographically): with one
    loop it has offset O and waits nothing; with several no FU may have every largest offset, and then rep waits too
    (listed with the others; its partial sum is added at the drain, not into its accumulator: rtlgen/array.py
    ``waited_drain``). () when there is no such loop."""
    pads = drain_skews(fg)
    if not pads:
        return ()
    out, axis_of = fg.design.operation.output, fg.dataflow.spatial_dims
    kept = [a for a in range(len(fg.design.shape)) if a in axis_of and out.uses(axis_of[a])]
    groups: dict = {}
    for s in _accumulator_fus(fg):
        groups.setdefault(tuple(s[a] for a in kept), []).append(tuple(s))
    res = []
    for fus in groups.values():
        top = {p.loop: max(p.offset(s) for s in fus) for p in pads}
        rep = max(fus, key=lambda s: tuple(p.offset(s) for p in pads))
        waits = ((s, tuple((p.loop, top[p.loop] - p.offset(s)) for p in pads if top[p.loop] != p.offset(s)))
                 for s in fus)
        res.append((rep, tuple((s, w) for s, w in waits if w)))
    return tuple(res)


def _accumulator_fus(fg: FUGraph) -> list:
    """The FUs that hold a result register (the output lanes' FUs), in coordinate order. Across a reduced axis the
    skew does not move, the FU graph sums through an adder tree or chain and only its root accumulates, so the drain
    groups are formed of these FUs, not of every FU (found by the schedule-verify sweep: a KeyError at elaboration)."""
    held = {tuple(s) for lane in fg.output.lanes for s in lane.fus}
    return [tuple(s) for s in fg.coords() if tuple(s) in held]


def accumulated_fus(fg: FUGraph) -> dict[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Result-register FU -> every FU whose product it accumulates: itself and the FUs that differ from it only along
    the axes the output's chains and trees reduce (as :func:`lane_members`, per drained row rather than per lane)."""
    key = _chain_key(fg)
    return {a: tuple(tuple(s) for s in fg.coords() if key(s) == key(a)) for a in _accumulator_fus(fg)}


def rep_waits(groups) -> dict:
    """rep -> its waits, for the groups of :func:`drain_groups` whose representative waits (several loops, no FU of
    every largest offset): their partial sum goes to the drain rather than into rep's accumulator."""
    return {rep: dict(w) for rep, members in groups for s, w in members if s == rep}


def fused_drain_groups(fused) -> dict:
    """Of a fused design (dataflow/fusion.py ``FusedArray``): (groups, after) -> [dataflow indices], the dataflows with
    :func:`drain_groups` grouped by what the fused top builds for them (rtlgen/fused_array.py ``_waited_drains``):
    groups are their ``drain_groups`` at the physical FUs (a folded map's logical FUs placed), after the loops outside
    the tile after each such loop ((l, sorted loops), ...: its D_l). Dataflows with equal keys wait alike and share one
    set of drain buffers."""
    from archgen.dataflow.fusion import is_stt_view
    out: dict = {}
    for k, view in enumerate(fused.views):
        groups = () if is_stt_view(view) else drain_groups(view.fu_graph)
        if not groups:
            continue
        place = dict(fused.placements[k]) if fused.placements else {}
        groups = tuple((place.get(rep, rep), tuple((place.get(s, s), w) for s, w in members))
                       for rep, members in groups)
        outer = list(view.dataflow.outer_dims())
        after = tuple((p.loop, tuple(sorted(outer[outer.index(p.loop) + 1:]))) for p in drain_skews(view.fu_graph))
        out.setdefault((groups, after), []).append(k)
    return out


def memory_drain_waits(fg: FUGraph) -> list:
    """The memory system's refusal of what it does not build of :func:`drain_groups` and of products that wait across
    tiles (a problem list, empty when it builds them). Held (:func:`drain_groups`): built (H154); its output and
    partial-sum walks give each row its group's lead (t - O) and drop the padding rows (dataflow/memctl.py
    ``_drain_rows``); lanes of one row in one group (in every row, H155) sit at one position, the padding lanes
    masked, and only the representative's lane writes (memctl ``_drain_lane_aliases``). Lanes in one group in some
    rows only: refused, and unreachable (:func:`_lanes_share_a_group`: lanes are grid lines). Streamed (:func:`product_waits` on a loop outside the tile): built (H156); its lanes stream the
    element of tile t - O_l, and its output's write and partial-sum walks give each lane that lead (dataflow/memctl.py
    ``_streamed_wait``; without it, wrong outputs in 6 of 12 random convolutions, H150)."""
    groups = drain_groups(fg)
    if groups and not _lanes_share_a_group(fg, groups):
        return []
    pads = drain_skews(fg)
    if not pads:
        return []
    why = ("drained sums wait before the reduction, and two lanes drain one group's element in some drained rows but "
           "not in others (one lane map cannot place them), which the memory system's output walks do not build")
    return [problem(f"dataflows.{fg.dataflow.name}.schedule", f"the output {fg.output.name} depends on the skewed loop "
                    f"{pads[0].loop} outside the tile and is reduced along an array axis its skew moves; its FUs' "
                    f"{why}: use archgen verify --ideal-dram (the array level), or schedule: compressed",
                    fg.dataflow.schedule)]


def _lanes_share_a_group(fg: FUGraph, groups) -> bool:
    """Whether two output lanes drain FUs of one drain group in some row but not in every row (the lanes of one
    group then carry one element at one position in some rows and two elements in others, which one lane map does
    not place). Lanes that share a group in every row alias (dataflow/memctl.py ``_drain_lane_aliases``): built.

    No FU graph the interconnect builds reaches it, whatever the map (H161): the held output's lanes are the lines of
    the full FU grid along one axis (dataflow/interconnect.py ``_accumulate``: the last axis; ``_reduced_accumulate``:
    the last axis not reduced, the reduced ones at 0), each lane's FUs the same sorted sequence of the other
    coordinates, so at any drained row two lanes' FUs differ on the lane axis only. A drain group is the FUs of equal
    coordinates on the axes whose loop the output uses (:func:`drain_groups` ``kept``). So two lanes share a group at
    a row iff the lane axis is not kept: the same answer in every row, and the lanes either all alias or none do.
    Neither the skews nor the affine form of the map enter (they set the waits, not the groups), and 3-D arrays are
    no exception (rows over both leading axes are still one sequence shared by every lane). The guard stays for a
    lane layout that is not a grid line (none today): tests/dataflow/test_fused_shared_layout.py exercises it on a
    hand-made FU graph and checks the grid-line form on the drain designs of the tests."""
    rep_of = {tuple(s): tuple(rep) for rep, members in groups for s in [rep, *(m for m, _w in members)]}
    lanes = fg.output.lanes
    parts = set()
    for r in range(len(lanes[0].fus) if lanes else 0):
        keys = [rep_of.get(tuple(ln.fus[r]), tuple(ln.fus[r])) for ln in lanes]
        parts.add(tuple(keys.index(k) for k in keys))
    return len(parts) > 1