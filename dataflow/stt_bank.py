"""Banked buffers for a skewed stt array's memory system (docs/memory.md, "Skewed stt maps through the memory
system", banking): one buffer per tensor whose banks serve, in every slot, the lanes that read (or write) it.

Bank function from the box geometry. Every box origin a stream port walks is a sum of the tile walk's steps
(``LaneProgram.step``), so coordinate j of an origin is a multiple of ``m_j``, the gcd of the steps along j
(the tensor's extent when no step moves j). An element at ``c = origin + off`` (``off`` the phase entry's
constant offset) therefore has the *cell* ``c div m`` = origin / m + ``off div m`` and the *point*
``u = c mod m = off mod m``: the point is a constant of the phase entry. Points get colors (banks) so that the
lanes of one phase of every port of the tensor hit distinct banks (a greedy coloring of the points that a
phase reads together, the fewest banks that the DRAM word allows, balanced); a bank holds, per cell, the
``size`` points of its color (rank 0 .. size - 1), so the element's index in its bank is
``cell_lin * size + rank``: the cell's row-major index is the origin's (kept by the sequencer's walker with
constant steps) plus a constant, and bank and rank are constants of the phase entry. Adds only.

A bank row holds ``width = per_word / gcd(banks, per_word)`` elements, so a row across all banks (``banks x
width = lcm(banks, per_word)`` elements) is ``words_per_row`` whole DRAM words and a word covers whole rows of
``per_word / width`` consecutive banks: the DMA writes one DRAM word a cycle into one group of banks, and the
write-back reads one word a cycle the same way.
The tensor is laid out in DRAM in that order (position ``(row x banks + bank) x width + sub``), which the host
does (``SttLayerPlan.dram_image`` / ``read_output``); positions no element maps to (a color with fewer points,
a partial cell) hold zeros and are moved like elements.

No such coloring exists when two lanes of one phase read the same point (their origins' cells may differ, so
they may hit the same bank in different rows): e.g. a convolution's ``I[p+r]`` with boxes 3 along p and 2
along r (m = 1, every element the same point). Such an input falls back to one read copy per lane (``copies``:
each a whole copy of the region, written by the DMA together); an output that has no coloring is refused
by field (``dataflows.<name>.stt``) by ``plan_stt_layer``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BankLayout", "bank_layout", "copies_layout"]


@dataclass(frozen=True)
class BankLayout:
    tensor: str
    per_word: int                 # elements per DRAM word
    banks: int
    width: int                    # elements per bank row
    copies: bool                  # one whole copy per lane (bank l = lane l's copy), rows = DRAM words
    mod: tuple = ()               # per dimension: m_j
    place: tuple = ()             # ((point, (bank, rank)), ...): the coloring
    size: int = 1                 # points per bank and cell

    def places(self) -> dict:
        return dict(self.place)

    def cells_of(self, extent) -> tuple:
        return tuple(-(-e // m) for e, m in zip(extent, self.mod))

    def rows(self, extent) -> int:
        """Bank rows of a region of ``extent``."""
        if self.copies:
            return -(-math.prod(extent) // self.per_word)
        return -(-math.prod(self.cells_of(extent)) * self.size // self.width)

    def positions(self, extent) -> int:
        """Elements of the region's DRAM image (a whole number of words; copies: the elements row-major)."""
        if self.copies:
            return math.prod(extent)
        return self.rows(extent) * self.banks * self.width

    def storage(self, extent) -> int:
        """Elements the banks hold (copies: lanes x the region in whole words)."""
        return self.rows(extent) * self.banks * self.width

    @property
    def words_per_row(self) -> int:
        return 1 if self.copies else self.banks * self.width // self.per_word

    def _cell_strides(self, extent) -> tuple:
        cells = self.cells_of(extent)
        return tuple(int(math.prod(cells[j + 1:])) for j in range(len(cells)))

    def index_step(self, step, extent) -> int:
        """The change of a box's in-bank index base when its origin moves by ``step`` (multiples of m)."""
        return sum(int(s) // m * cs for s, m, cs in zip(step, self.mod, self._cell_strides(extent))) * self.size

    def entry(self, off, extent) -> tuple:
        """(bank, in-bank index offset) of phase-entry offset ``off``: bank and offset against the box's base."""
        u = tuple(int(o) % m for o, m in zip(off, self.mod))
        q = [int(o) // m for o, m in zip(off, self.mod)]
        bank, rank = self.places()[u]
        return bank, sum(a * cs for a, cs in zip(q, self._cell_strides(extent))) * self.size + rank

    def position(self, coords, extent) -> int:
        """The DRAM-image position of the element at ``coords`` (inside the region)."""
        if self.copies:
            return int(sum(int(c) * int(math.prod(extent[j + 1:])) for j, c in enumerate(coords)))
        bank, idx = self.entry(coords, extent)
        row, sub = divmod(idx, self.width)
        return (row * self.banks + bank) * self.width + sub


def copies_layout(tensor: str, per_word: int, lanes: int) -> BankLayout:
    return BankLayout(tensor, per_word, lanes, per_word, True)


def _mods(programs, extent) -> tuple:
    mod = []
    for j, e in enumerate(extent):
        g = 0
        for p in programs:
            for st in p.step:
                g = math.gcd(g, abs(int(st[j])))
        mod.append(g or max(1, int(e)))
    return tuple(mod)


def bank_layout(tensor: str, programs, extent, per_word: int) -> BankLayout | None:
    """The banked layout of ``tensor`` for its memory ports ``programs`` (lane programs that read or write it;
    every phase's lanes on distinct banks), or None when none exists (two lanes of a phase on one point)."""
    mod = _mods(programs, extent)
    groups = []                                      # per port and phase: the points it touches together
    for p in programs:
        per: dict = {}
        for (_lane, ph), (_d, off, _masks) in p.entries:
            per.setdefault(ph, []).append(tuple(int(o) % m for o, m in zip(off, mod)))
        for pts in per.values():
            if len(set(pts)) < len(pts):
                return None
            groups.append(pts)
    points = list(itertools.product(*[range(m) for m in mod]))
    need = max([len(g) for g in groups] + [1])
    adj = {u: set() for u in points}
    for g in groups:
        for a in g:
            adj[a].update(b for b in g if b != a)
    best = None
    for banks in range(need, max(len(points), need) + 1):
        width = per_word // math.gcd(banks, per_word)  # a row across the banks: lcm(banks, per_word) elements
        color, load = {}, [0] * banks
        # the most constrained points first, each on the least loaded bank its neighbours leave free
        for u in sorted(points, key=lambda u: (-len(adj[u]), u)):
            free = [b for b in range(banks) if all(color.get(v, (None,))[0] != b for v in adj[u])]
            if not free:
                break
            b = min(free, key=lambda b: (load[b], b))
            color[u] = (b, load[b])
            load[b] += 1
        else:
            size = max(load)
            cost = (banks * size, banks)             # storage per cell, then banks
            if best is None or cost < best[0]:
                best = (cost, BankLayout(tensor, per_word, banks, width, False, mod,
                                         tuple(sorted(color.items())), size))
            if banks * size == len(points) and banks >= need:
                break
    return None if best is None else best[1]


def layout_walk(program, layout: BankLayout, slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a banked port drives, slot by slot (the model of rtlgen/stt_stream.py with a layout): valid,
    bank, in-bank element index [slots, lanes] (copies: bank = lane, index = the row-major address)."""
    from .stt_phase import lane_walk
    valid, addr = lane_walk(program, slots)
    bank = np.zeros_like(addr)
    index = np.zeros_like(addr)
    extent = program.extent
    for n, lane in zip(*np.nonzero(valid)):
        lin = int(addr[n, lane])
        coords = np.unravel_index(lin, extent)
        if layout.copies:
            bank[n, lane], index[n, lane] = lane, lin
        else:
            bank[n, lane], index[n, lane] = layout.entry(coords, extent)
    return valid, bank, index
