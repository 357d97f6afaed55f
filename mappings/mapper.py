"""Mapping search for one layer on a design with buffers: block sizes per memory level and tile-loop order.

``plan_layer`` (mappings/memory_tiling.py) is the fast default: a greedy doubling per order. This module
searches the same space more widely and judges the finalists with the cycle model:

1. the space: the order of the tile loops (the outer loops and the inner loops, which a block may cut
   into chunks) and, per loop, the array tiles (inner loops: elements) per block (every power of two up
   to the trip count, the trip count itself, and ``ceil(trips / k)`` for small k, so blocks can split a
   loop evenly); a command is admissible only if every operand's block fits its buffer (double-buffered
   buffers hold two), the same check ``make_command`` applies (with ``rooms``: a half in whole bank rows, as
   the memory system lays it out, ``memctl.buffer_rooms``), and its output partial sums go back to DRAM
   only when the spec grants it (``memory.partial_sums_through_dram``, as in ``plan_layer``);
2. the estimate of a command, used to rank candidates: cycles as in ``plan_layer`` (``max(compute,
   DRAM transfer) + first load + blocks x overhead``) and energy as compute plus DRAM bytes at the energy
   table's pJ/bit plus the buffer fills those bytes cause; the objective is ``latency``, ``energy`` or
   ``edp`` (their product);
3. the search, deterministic for a seed: the heuristic's own command, ``samples`` random admissible
   commands (numpy ``default_rng(seed)``) and a first-improvement local search from the best few
   (double / halve / +-1 a block size, swap two adjacent loops) on the estimate;
4. the final choice: the ``finalists`` best distinct commands by estimate *and* the heuristic's command
   run through the cycle model (``sim/layer_model.py``, passed in as ``evaluate`` by sim/array_sim.py);
   the best by the model's own latency / energy / EDP wins, ties to the earlier candidate (the heuristic
   first). So the result always fits, and on its objective it is never worse than ``plan_layer``'s.
   With ``fits`` (``memctl.buffer_fit``: a design with margins or a lane-interleaved output) a finalist
   the memory system refuses is passed over for the next best by estimate (a program build each, so only
   the finalists pay it, not every candidate).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from archgen.arch.errors import SpecError, problem

from .memory_tiling import (Fits, LayerCommand, Rooms, _canonical, _estimate, _forbidden_spill, _misfits,
                            _split_orders, dram_bytes, element_bytes, make_command, plan_layer)
from .tiling import map_problem

__all__ = ["OBJECTIVES", "MapperChoice", "search_layer", "estimate_command"]

OBJECTIVES = ("latency", "energy", "edp")


@dataclass(frozen=True)
class MapperChoice:
    command: LayerCommand
    cycles: int                   # the cycle model's cycles for the command
    energy_pj: float              # the energy model's total for the command
    objective: str
    candidates_estimated: int
    finalists_simulated: int

    @property
    def value(self) -> float:
        return _objective_value(self.objective, self.cycles, self.energy_pj)


def _objective_value(objective: str, cycles: float, energy: float) -> float:
    return {"latency": cycles, "energy": energy, "edp": cycles * energy}[objective]


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise SpecError([problem("mapper.objective", f"must be one of {', '.join(OBJECTIVES)}", objective)])


def estimate_command(cmd: LayerCommand, energy) -> tuple[float, float]:
    """(cycles, pJ) estimate of a command: plan_layer's cycle estimate; MACs, DRAM bytes and buffer fills
    priced by ``energy`` (an archgen.sim.energy.EnergyModel, passed in: mappings sits below sim)."""
    cycles, nbytes = _estimate(cmd)
    design = cmd.design
    bits = max(design.type_of[o.name].bits for o in design.operation.inputs)
    m = cmd.mapping
    pj = m.n_tiles * m.steps * design.n_fus * energy.mac_pj(bits)
    pj += nbytes * 8 * energy.dram_pj(1, design.dram_kind)
    mem = design.memory_system
    for key, b in dram_bytes(cmd).items():
        x = key.rsplit(".", 1)[0]
        n = b // element_bytes(design, x)
        pj += n * energy.sram_pj(mem.buffer(x).bytes, design.type_of[x].bits, write=True)
    return float(cycles), float(pj)


def _tile_choices(trips: int) -> list[int]:
    out = {trips}
    p = 1
    while p < trips:
        out.add(p)
        p *= 2
    for k in range(1, 9):
        out.add(max(1, math.ceil(trips / k)))
    return sorted(out)


def search_layer(design, bounds: dict[str, int], dataflow, evaluate, energy, *, objective: str = "edp",
                 seed: int = 0, samples: int = 48, finalists: int = 3, layer: str = "layer",
                 fits: Fits | None = None, rooms: Rooms = None) -> MapperChoice:
    """The best command found for one layer (see the module docstring); SpecError if no command fits the
    buffers (the same error ``plan_layer`` raises). ``evaluate(cmd) -> (cycles, pJ)`` is the cycle and
    energy model (sim/array_sim.py passes sim/layer_model.py's); ``energy`` prices the estimates. ``rooms`` and
    ``fits``: the memory system's buffer halves and fit check, as ``plan_layer`` takes them (a design that will be
    built passes ``memctl.buffer_rooms(compiled)`` and ``memctl.buffer_fit(compiled)``, or the search may pick a
    block the memory system refuses)."""
    import numpy as np

    _check_objective(objective)
    heuristic = plan_layer(design, bounds, dataflow, layer, fits=fits, rooms=rooms)    # raises when nothing fits
    mapping = map_problem(design, bounds, dataflow)
    outer = tuple(dataflow.outer_dims())
    inner = tuple(dataflow.inner_dims())
    loops = outer + inner            # an inner loop at its whole bound is not split (one chunk)
    trips = mapping.trips()
    choices = {d: _tile_choices(trips[d]) for d in loops}
    red = {d for d in outer if not design.operation.output.uses(d)}
    orders = list(itertools.permutations(loops)) if len(loops) <= 4 else _split_orders(outer, inner, red)
    rng = np.random.default_rng(seed)
    cache: dict = {}

    def est(tile: tuple, order: tuple):
        key = (tile, order)
        if key not in cache:
            cmd = LayerCommand(design, dataflow, heuristic.bounds, tuple(zip(loops, tile)), order)
            if _misfits(cmd, rooms) or _forbidden_spill(cmd):
                cache[key] = None
            else:
                c, e = estimate_command(cmd, energy)
                cache[key] = (_objective_value(objective, c, e), len(cache), _canonical(cmd))
        return cache[key]

    h = dict(heuristic.tile)
    h_tile = tuple(h.get(d, trips[d]) for d in loops)
    start = [(h_tile, heuristic.order + tuple(d for d in inner if d not in h))]
    for _ in range(samples):
        tile = tuple(int(choices[d][rng.integers(len(choices[d]))]) for d in loops)
        start.append((tile, orders[int(rng.integers(len(orders)))]))
    scored = [(r[0], r[1], t, o) for t, o in start if (r := est(t, o)) is not None]
    scored.sort()
    # first-improvement local search from the best few starting points
    for _, _, tile, order in scored[:max(1, finalists)]:
        cur = est(tile, order)
        improved = True
        while improved:
            improved = False
            for nt, no in _neighbours(tile, order, loops, trips):
                r = est(nt, no)
                if r is not None and r[0] < cur[0]:
                    tile, order, cur, improved = nt, no, r, True
                    break
    ranked = sorted((r for r in cache.values() if r is not None), key=lambda r: (r[0], r[1]))
    final = _finalists(heuristic, [cmd for _, _, cmd in ranked], finalists, fits)
    best = None
    for cmd in final:
        checked = make_command(design, bounds, dataflow, dict(cmd.tile), cmd.order, layer, rooms)   # fit re-checked
        cycles, pj = evaluate(checked)
        v = _objective_value(objective, cycles, pj)
        if best is None or v < best[0]:
            best = (v, checked, cycles, pj)
    return MapperChoice(best[1], best[2], best[3], objective, len(cache), len(final))


def _finalists(heuristic: LayerCommand, ranked: list[LayerCommand], n: int, fits: Fits | None) -> list[LayerCommand]:
    """The heuristic's command and the ``n`` best distinct ``ranked`` ones that ``fits`` (if given) accepts: it
    builds a program per call, so it is asked of the candidates in rank order until ``n`` pass."""
    final = [heuristic]
    for cmd in ranked:
        if len(final) > n:
            break
        if any((cmd.tile, cmd.order) == (f.tile, f.order) for f in final):
            continue
        try:
            if fits is not None:
                fits(cmd)
        except SpecError:
            continue
        final.append(cmd)
    return final


def _neighbours(tile, order, outer, trips):
    for i, d in enumerate(outer):
        for t in (tile[i] * 2, max(1, tile[i] // 2), tile[i] + 1, tile[i] - 1):
            t = min(max(1, t), trips[d])
            if t != tile[i]:
                yield tile[:i] + (t,) + tile[i + 1:], order
    for i in range(len(order) - 1):
        yield tile, order[:i] + (order[i + 1], order[i]) + order[i + 2:]
