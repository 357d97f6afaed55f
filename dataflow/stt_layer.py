"""A skewed stt array (dataflow/stt_array.py) behind a memory system: the layer plan and its cycle contract.

The first, simple form (rtlgen/stt_layer.py builds exactly this): the whole layer is one block.

* **Load.** The DMA moves every input tensor, whole, from DRAM into its on-chip buffer, one tensor after
  another in operation order, each transfer starting in the cycle after the previous one's last
  (``DramPort.transfer_cycles`` each; the burst timer of the tiled layer core).
* **Compute.** One array command of ``tiling.slots`` slots. Every stream lane is driven by its port's stream
  sequencer (rtlgen/stt_stream.py, the lane programs of dataflow/stt_phase.py): an input lane reads the
  element its phase entry names from its tensor's banked buffer (dataflow/stt_bank.py: the lanes of a slot
  meet distinct banks; registered reads issued one slot ahead), the output's lanes write the store, the
  partial-sum lanes read it one slot ahead (transparent for the write of the slot before). The banks serve
  every lane every slot, so the array never waits: compute takes the array's ideal-stream cycles. A tensor
  without a conflict-free banking keeps one copy per lane (the output: one store per output lane, an output
  element always riding the same chain).
* **Write-back.** The output region to DRAM in bank order, one word a cycle from the job's start (each word
  read from its bank group in the cycle before), the job ending at the burst timer's acknowledge.

Cycle contract (cycle 0 = the first cycle ``go`` is high): loads occupy ``[0, L)`` with
``L = sum_X transfer_cycles(bytes(X))``; cycle ``L`` primes the input lanes (their sequencers run two slots
ahead: a registered bank read, then a register behind the lane select), the array command's handshake is cycle
``L + 1`` (the array's cycle 0), its ``done`` cycle ``L + slots + 2``; the write-back starts in the next cycle
and takes ``transfer_cycles(bytes(Y))``; ``finished`` rises in the cycle after its last, so

    cycles = sum_X transfer_cycles(bytes(X)) + slots + 3 + transfer_cycles(bytes(Y))

DRAM bytes: every input tensor read once, the output written once (``bytes(T)`` = the positions of its image
in bank order x element bytes, ``BankLayout.positions``; copies: elements x element bytes).
Fit: what the top instantiates for each tensor (``storage_bytes``: its banks, whole rows; lane copies in DRAM
words) within ``memory.<T>.bytes``; otherwise the layer is refused by field.
Validity tags (maps where zero fill alone does not pin products to the box) come from a sequencer of their
own: a tag is a constant per phase entry and edge mask. Operands kept on one FU (rings) are driven by
differences against a mirror of the ring (an input: what the lane loaded; the output: its output beats).
Blocks of boxes (``plan_stt_layer`` when the storage of the whole layer does not fit): the iteration space
is cut into a grid of equal blocks of whole boxes (ragged blocks padded with zeros in DRAM), reduction loops
innermost; each block runs the above on its sub-problem with the same lane programs (regions of the block
in the banks; DRAM regions block-major, ``region_index``), partial sums stay in the output store over
the reduction blocks (the partial-sum sequencer's ``carry``) and the last one writes back, so

    cycles = n_blocks x (sum_X transfer_cycles(region(X)) + slots + 3) + out_blocks x transfer_cycles(region(Y))

Blocks run one after another. Not yet: double buffering (loads overlapping compute).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from archgen.arch.errors import SpecError, problem

from .stt_array import SttTiling
from .stt_bank import bank_layout, copies_layout
from .stt_phase import LaneProgram, stt_lane_programs

__all__ = ["SttLayerPlan", "plan_stt_layer", "valid_beats", "SttLayerResult", "simulate_stt_layer", "COMMAND_OVERHEAD"]

# cycles of one array command besides its slots: the prime cycle (plain input lanes read their banks two slots
# ahead, behind a register after the lane select: rtlgen/stt_layer.py), the handshake, and the done cycle
COMMAND_OVERHEAD = 3


@dataclass(frozen=True)
class SttLayerPlan:
    tiling: SttTiling = field(repr=False, compare=False)
    programs: tuple[LaneProgram, ...] = field(repr=False, compare=False)
    word_bytes: int
    elem_bytes: dict                  # tensor -> bytes per element (the output at the accumulator width)
    shapes: dict                      # tensor -> shape
    bases: dict                       # tensor -> first DRAM word of its region (inputs first, the output last)
    bound: dict = None                # the layer's loop bounds (None: the block is the layer)
    grid: tuple = ()                  # ((loop, blocks), ...) outer to inner, reduction loops innermost; () = one
    layouts: dict = None              # tensor -> BankLayout (dataflow/stt_bank.py): the banked buffer and DRAM order
    halo: dict = None                 # tensor -> per dimension, the region's elements below the block's first index

    @property
    def design(self):
        return self.tiling.network.design

    def tensor_bytes(self, name: str) -> int:
        """Bytes of one region's DRAM image: its elements in bank order, the layout's empty positions
        included (copies: the elements row-major)."""
        return self.layouts[name].positions(self.shapes[name]) * self.elem_bytes[name]

    def words(self, name: str) -> int:
        return -(-self.tensor_bytes(name) // self.word_bytes)

    @property
    def layer_bound(self) -> dict:
        return dict(self.bound) if self.bound is not None else dict(self.tiling.bound)

    @property
    def n_blocks(self) -> int:
        return math.prod(n for _d, n in self.grid)

    @property
    def out_blocks(self) -> int:
        """Blocks that write the output back (the last block of every run over the reduction loops)."""
        red = self.design.operation.reduction_dims
        return math.prod(n for d, n in self.grid if d not in red)

    def region_loops(self, name: str) -> tuple:
        """The split loops ``name`` uses (its regions are stored block-major over them, outer to inner)."""
        acc = self.design.operation.operand(name)
        return tuple((d, n) for d, n in self.grid if acc.uses(d))

    def regions(self, name: str) -> int:
        return math.prod(n for _d, n in self.region_loops(name))

    def region_index(self, name: str, counters: dict) -> int:
        idx = 0
        for d, n in self.region_loops(name):
            idx = idx * n + counters[d]
        return idx

    def blocks(self):
        """Block counters (loop -> block index) in block order, the innermost loop fastest."""
        for combo in itertools.product(*[range(n) for _d, n in self.grid]):
            yield {d: c for (d, _n), c in zip(self.grid, combo)}

    def layer_shape(self, name: str) -> tuple:
        return tuple(self.design.operation.tensor_shape(name, self.layer_bound))

    def region_origin(self, name: str, counters: dict) -> np.ndarray:
        """The tensor coordinate of a block's region's first element: A_X times the block's loop origin, less
        the halo (``halo``: the elements an index with a negative coefficient reaches below it)."""
        op = self.design.operation
        o = np.array([counters.get(d, 0) * self.tiling.bound[d] for d in op.dims], dtype=np.int64)
        return op.operand(name).access_matrix(op.dims) @ o - np.array(self.halo_of(name), dtype=np.int64)

    def halo_of(self, name: str) -> tuple:
        """Per dimension of ``name``, the halo its region holds below the block's first index (0: none)."""
        return tuple((self.halo or {}).get(name, (0,) * len(self.shapes[name])))

    @property
    def dram_words(self) -> int:
        out = self.design.operation.output.name
        return self.bases[out] + self.regions(out) * self.words(out)

    def per_word(self, name: str) -> int:
        return self.word_bytes // self.elem_bytes[name]

    @property
    def ports(self) -> frozenset:
        return frozenset(p.port for p in self.programs)

    def program(self, port: str) -> LaneProgram:
        return next(p for p in self.programs if p.port == port)

    def dram_bytes(self) -> dict:
        """Every block loads each input's region (zero padding of a ragged block included); the output's
        region is written once per output block."""
        op = self.design.operation
        out = {f"{x.name}.read": self.n_blocks * self.tensor_bytes(x.name) for x in op.inputs}
        out[f"{op.output.name}.write"] = self.out_blocks * self.tensor_bytes(op.output.name)
        return out

    def buffer_accesses(self) -> dict:
        """Element accesses of every on-chip buffer over the layer (``"<tensor>.read|write"``): the DMA writes
        every position of an input's image into its banks (into each lane copy for copies); lanes read the
        valid entries of their walks; the output lanes write the store, the partial-sum lanes read it, the
        write-back reads every position once per output block. Valid lane beats are counted per box class
        (edge mask, first visit) rather than per slot: an entry's validity depends on the box only through
        them (``lane_walk`` counts the same, tests/dataflow/test_stt_layer_plan.py)."""
        op = self.design.operation
        y = op.output.name
        acc = {}
        for x in op.inputs:
            prog = self.program(f"in_{x.name}")
            lay = self.layouts[x.name]
            acc[f"{x.name}.write"] = lay.positions(self.shapes[x.name]) * (prog.lanes if lay.copies else 1)
            acc[f"{x.name}.read"] = valid_beats(prog)
        lay_y = self.layouts[y]
        n_out = lay_y.positions(self.shapes[y]) * (lay_y.banks if lay_y.copies else 1)
        acc[f"{y}.write"] = valid_beats(self.program(f"out_{y}"))
        first, carried = self.out_blocks, self.n_blocks - self.out_blocks
        psum = self.program(f"psum_{y}")
        acc = {k: v * self.n_blocks for k, v in acc.items()}
        acc[f"{y}.read"] = (first * valid_beats(psum) + carried * valid_beats(psum, carry=True)
                            + self.out_blocks * n_out)
        return acc

    def storage_bytes(self) -> dict:
        """On-chip bytes the top instantiates per tensor (what the fit check compares with ``memory.<T>.bytes``):
        the banks of its layout (one buffer per tensor, rows x banks x width elements; a copies input: one
        whole copy per lane in DRAM words), the output at the accumulator width (whole bytes)."""
        return {t: lay.storage(self.shapes[t]) * self.elem_bytes[t] for t, lay in self.layouts.items()}

    def copies_storage_bytes(self) -> dict:
        """What the per-lane copies and stores of the first form held (lanes x region), for comparison."""
        op = self.design.operation
        out = {x.name: self.program(f"in_{x.name}").lanes * -(-math.prod(self.shapes[x.name]) * self.elem_bytes[x.name]
                                                            // self.word_bytes) * self.word_bytes for x in op.inputs}
        y = op.output.name
        out[y] = self.program(f"out_{y}").lanes * math.prod(self.shapes[y]) * self.elem_bytes[y]
        return out

    def describe(self) -> str:
        """The mapping column of ``archgen sim``: the blocks and what is on chip."""
        if not self.grid:
            return f"stt one block ({self.describe_storage()})"
        return (f"stt {self.n_blocks} blocks of {self.tiling.bound} ({' x '.join(f'{d}:{n}' for d, n in self.grid)}, "
                f"{self.out_blocks} write-backs; {self.describe_storage()})")

    def describe_storage(self) -> str:
        """What is on chip, e.g. ``on chip: A 2 banks x 48 B, B 4 banks x 24 B, C 4 banks x 48 B``."""
        parts = []
        for t, lay in self.layouts.items():
            per = lay.rows(self.shapes[t]) * lay.width * self.elem_bytes[t]
            kind = "copies" if lay.copies else "banks" if lay.banks > 1 else "bank"
            parts.append(f"{t} {lay.banks} {kind} x {per} B")
        return "on chip: " + ", ".join(parts)

    def cycles(self) -> int:
        dram = self.design.memory_system.dram
        op = self.design.operation
        return (self.n_blocks * (sum(dram.transfer_cycles(self.tensor_bytes(x.name)) for x in op.inputs)
                                 + self.tiling.slots + COMMAND_OVERHEAD)
                + self.out_blocks * dram.transfer_cycles(self.tensor_bytes(op.output.name)))

    def _region(self, name: str, counters: dict):
        """(global coordinates of the region's elements row-major, inside-the-tensor mask)."""
        shape = self.shapes[name]
        local = np.indices(shape).reshape(len(shape), -1)
        glob = local + self.region_origin(name, counters)[:, None]
        inside = np.all((glob >= 0) & (glob < np.array(self.layer_shape(name))[:, None]), axis=0)   # else 0: padding
        return glob, inside

    def dram_image(self, tensors: dict) -> list[int]:
        """DRAM words: each input tensor block-major (one region per block of the loops it uses, in block
        order; zero where a ragged block's region passes the tensor), each region in its layout's bank order
        (``BankLayout.position``; row-major for copies) from a word boundary, elements little-endian within a
        word, empty positions zero."""
        words = [0] * self.dram_words
        seen = set()
        for x in self.design.operation.inputs:
            eb, pw, nw = self.elem_bytes[x.name], self.per_word(x.name), self.words(x.name)
            arr = np.asarray(tensors[x.name])
            for counters in self.blocks():
                r = self.region_index(x.name, counters)
                if (x.name, r) in seen:
                    continue
                seen.add((x.name, r))
                glob, inside = self._region(x.name, counters)
                vals = np.zeros(self.layouts[x.name].positions(self.shapes[x.name]), dtype=np.int64)
                vals[self._positions(x.name)[inside]] = arr[tuple(glob[:, inside])]
                at = self.bases[x.name] + r * nw
                for i, v in enumerate(vals.tolist()):
                    words[at + i // pw] |= (int(v) & ((1 << (8 * eb)) - 1)) << (8 * eb * (i % pw))
        return words

    def read_output(self, words: list[int]) -> np.ndarray:
        y = self.design.operation.output.name
        eb, pw, nw = self.elem_bytes[y], self.per_word(y), self.words(y)
        n = self.layouts[y].positions(self.shapes[y])
        out = np.zeros(self.layer_shape(y), dtype=np.int64)
        for counters in self.blocks():
            r = self.region_index(y, counters)
            at = self.bases[y] + r * nw
            vals = []
            for i in range(n):
                v = (words[at + i // pw] >> (8 * eb * (i % pw))) & ((1 << (8 * eb)) - 1)
                vals.append(v - (1 << (8 * eb)) if v >> (8 * eb - 1) else v)
            glob, inside = self._region(y, counters)
            out[tuple(glob[:, inside])] = np.array(vals, dtype=np.int64)[self._positions(y)[inside]]
        return out

    def _positions(self, name: str) -> np.ndarray:
        """The DRAM-image position of every region element, row-major (``BankLayout.position``)."""
        shape, lay = self.shapes[name], self.layouts[name]
        return np.array([lay.position(c, shape) for c in np.ndindex(*shape)], dtype=np.int64)


def valid_beats(prog: LaneProgram, carry: bool = False) -> int:
    """How many (slot, lane) beats of ``prog``'s walk are valid over the whole layer, by box class: the boxes
    with a given edge mask (and, for partial sums, first-visit bit) are counted in closed form, and each entry
    is checked once on a representative box of the class (counters at the last box on masked levels, else 0).
    Exact when an operand's element lies inside its tensor for every box of a class, which holds when the boxes'
    origins step upwards and the entries' offsets are >= 0 (non-negative coefficients and offsets); otherwise
    (``I[p - r]``: an element below 0 in some boxes of a class, padding) box by box (``_valid_beats_by_box``).
    The tests compare both with ``lane_walk``."""
    if any(v < 0 for st in prog.step for v in st) or any(v < 0 for _k, (_d, off, _m) in prog.entries for v in off):
        return _valid_beats_by_box(prog, carry)
    levels = len(prog.trips)
    extent = np.array(prog.extent)
    total = 0
    for mask in range(1 << levels):
        bit = [mask >> (levels - 1 - lv) & 1 for lv in range(levels)]
        if any(b and prog.trips[lv] == 1 for lv, b in enumerate(bit)):
            continue
        counts = [1 if b else max(1, prog.trips[lv] - 1) for lv, b in enumerate(bit)]
        boxes = math.prod(counts)
        # first visits: every revisiting level at counter 0 (impossible on a masked level)
        first = 0 if carry or any(b and prog.revisit[lv] for lv, b in enumerate(bit)) else math.prod(
            1 if prog.revisit[lv] else c for lv, c in enumerate(counts))
        classes = [(boxes - first, False), (first, True)] if prog.is_psum else [(boxes, False)]
        for n, is_first in classes:
            if not n:
                continue
            # the tensor origin of any box of the class (revisiting levels do not move the operand's origin)
            counter = [prog.trips[lv] - 1 if b else 0 for lv, b in enumerate(bit)]
            origin = np.array(prog.origin0, dtype=np.int64)
            for st, c in zip(prog.step, counter):
                origin += np.array(st, dtype=np.int64) * c
            for _key, (delta, off, masks) in prog.entries:
                if not masks >> mask & 1 or (prog.is_psum and is_first):
                    continue
                if prog.is_tag:
                    total += n
                    continue
                coords = origin + np.array(off)
                if np.all(coords >= 0) and np.all(coords < extent):
                    total += n
    return total


def _valid_beats_by_box(prog: LaneProgram, carry: bool) -> int:
    """``valid_beats`` counted over every box of the walk (counters, origin, edge mask, first visit per box)."""
    levels = len(prog.trips)
    trips = np.array(prog.trips, dtype=np.int64)
    counters = np.array(list(itertools.product(*[range(t) for t in prog.trips])), dtype=np.int64).reshape(-1, levels)
    origin = counters @ np.array(prog.step, dtype=np.int64).reshape(levels, len(prog.extent)) + np.array(prog.origin0)
    mask = ((counters == trips - 1) & (trips > 1)) @ (1 << np.arange(levels - 1, -1, -1, dtype=np.int64))
    revisit = [lv for lv in range(levels) if prog.revisit[lv]]
    first = np.zeros(len(counters), dtype=bool) if carry else np.all(counters[:, revisit] == 0, axis=1)
    extent = np.array(prog.extent)
    total = 0
    for _key, (_delta, off, masks) in prog.entries:
        real = (masks >> mask) & 1 == 1
        if prog.is_tag:
            total += int(real.sum())
            continue
        if prog.is_psum:
            real &= ~first
        coords = origin + np.array(off)
        total += int((real & np.all((coords >= 0) & (coords < extent), axis=1)).sum())
    return total


def _storage(op, shapes_of, elem: dict, layouts: dict) -> dict:
    """On-chip bytes per tensor for regions of ``shapes_of(t)``: the banks of its layout."""
    return {t: lay.storage(tuple(shapes_of(t))) * elem[t] for t, lay in layouts.items()}


MEMORY_PORTS = ("in_", "psum_", "out_")


def stt_layouts(net, programs, elem: dict, word_bytes: int, layer: str = "layer") -> dict:
    """Every tensor's banked layout (dataflow/stt_bank.py) from the lane programs that read or write it; a
    tensor without a conflict-free banking falls back to one copy per lane (an input: written by the DMA
    together; the output: one store per output lane, summed by the write-back)."""
    op = net.design.operation
    out = {}
    for t in [x.name for x in op.inputs] + [op.output.name]:
        progs = [p for p in programs if p.operand == t and not p.is_tag and p.port.startswith(MEMORY_PORTS)]
        lay = bank_layout(t, progs, progs[0].extent, word_bytes // elem[t])
        out[t] = lay if lay is not None else copies_layout(t, word_bytes // elem[t], progs[0].lanes)
    return out


def _splittable(op, d: str, bound: int, box: int) -> bool:
    """A loop may be cut into blocks of whole boxes. A ragged last block is padded with zeros, which is
    harmless for a loop the output uses (its padded outputs are not read back) and for a reduction loop
    that some input indexes alone (``W[...,r,...]``: a padded r reads a zero weight); another reduction
    loop is cut only into equal blocks."""
    if d not in op.reduction_dims or bound % box == 0:
        return True
    return any(len(e.terms) == 1 and e.terms[0][1] == 1 and e.terms[0][0] == d
               for x in op.inputs for e in x.indices)


def block_halo(op, bound: dict, ext: dict, layouts: dict) -> dict:
    """Per input tensor, the halo its block regions hold below the block's first index (a tuple per dimension; only
    tensors with one). A block's region of X starts at A_X times the block's origin; the indices ``A_X x + c`` of
    its local iterations ``x`` in ``[0, ext)`` reach below that by ``low = c + sum(a x (ext - 1), a < 0)`` (a true
    convolution's ``I[p - r]``: ``-(ext_r - 1)``). Where a loop with a positive coefficient is cut, those elements
    are another block's real ones (or padding below 0): the region then starts ``-low`` lower, rounded up to a
    multiple of the banking's cell (``BankLayout.mod``: a whole number of cells, so the banks and the phase
    entries stay the build's), and the DMA reads the halo from DRAM with the region (zeros below the tensor).
    Otherwise (nothing cut, or only loops with negative coefficients) every such element lies below the tensor:
    the lanes' extent compares read 0 there, with no halo."""
    out = {}
    for x in op.inputs:
        mod = layouts[x.name].mod or (1,) * len(x.indices)
        h = []
        for e, m in zip(x.indices, mod):
            low = e.const + sum(a * (ext[d] - 1) for d, a in e.terms if a < 0)
            cut = any(a > 0 and ext[d] < bound[d] for d, a in e.terms)
            h.append(-(low // m) * m if low < 0 and cut else 0)
        if any(h):
            out[x.name] = tuple(int(v) for v in h)
    return out


def _with_halo(op, programs, halo: dict, block: dict) -> tuple:
    """The lane programs of a block whose regions hold ``halo``: the extents grow by it and box 0's origin starts
    there (``LaneProgram.start``), so every coordinate counts from the region's first element."""
    out = []
    for p in programs:
        h = halo.get(p.operand)
        if h is None:
            out.append(p)
            continue
        ext = tuple(int(e) + v for e, v in zip(op.tensor_shape(p.operand, block), h))
        strides = tuple(int(math.prod(ext[j + 1:])) for j in range(len(ext)))
        out.append(dataclasses.replace(p, extent=ext, strides=strides, start=h))
    return tuple(out)


def plan_stt_layer(tiling: SttTiling, layer: str = "layer", period: int | None = None) -> SttLayerPlan:
    """The plan of ``tiling``'s problem: one block when every tensor's storage fits its buffer, else a grid
    of blocks of whole boxes (each block one array command on the block's sub-box, ragged blocks padded);
    refused, field by field, when one box per block does not fit. The block shape: among those that fit, with
    every loop whole or halved (rounded up) some times (``_grid_candidates``), the one with the fewest cycles
    (``SttLayerPlan.cycles``, the contract the RTL meets), then the fewest DRAM bytes, then the most on chip,
    then the largest block in loop order.

    ``period``: a run-time programmable build's fixed period (dataflow/stt_command.py; ``tiling`` has it
    too). It is collision-free for every problem, but an output block that comes back inside a block too
    soon (``r x period <= psum_gap`` boxes later) would read its partial sum before it left: such a block's
    boxes are spread ``stretch`` box groups apart (``LaneProgram.stretch``, the smallest k with ``r x k x
    period > psum_gap``; the same phase tables, empty groups between the boxes), and its tiling's period is
    ``k x period`` for the cycle contract."""
    net = tiling.network
    design = net.design
    op = design.operation
    ms = design.memory_system
    problems = []
    wb = ms.dram.width_bytes
    elem = {x.name: -(-design.type_of[x.name].bits // 8) for x in op.inputs}
    elem[op.output.name] = -(-design.acc_type.bits // 8)
    odd = [f"{t} ({eb} B)" for t, eb in elem.items() if wb % eb]
    if odd:
        raise SpecError([problem("memory.dram.width_bytes", "a DRAM word must hold whole elements of every "
                                 f"tensor; it does not for {', '.join(odd)}", wb)])
    programs = stt_lane_programs(tiling)
    lanes = {p.port: p.lanes for p in programs}
    layouts = stt_layouts(net, programs, elem, wb, layer)
    cap = {t: ms.buffer(t).bytes for t in elem}
    bound, box = dict(tiling.bound), dict(tiling.box)
    units = {d: -(-bound[d] // box[d]) for d in op.dims}        # block extent in boxes per loop

    def extent(u):
        return {d: min(bound[d], u[d] * box[d]) for d in op.dims}

    def shape(t, u):
        h = block_halo(op, bound, extent(u), layouts).get(t, ())
        return tuple(int(a) + (h[j] if h else 0) for j, a in enumerate(op.tensor_shape(t, extent(u))))

    def over(u):
        st = _storage(op, lambda t: shape(t, u), elem, layouts)
        return sum(max(0, st[t] - cap[t]) for t in st), -sum(st.values()), st

    def plan_of(u):
        """(the plan of blocks of ``u`` boxes without its lane programs, the block's tiling before the stretch, k)"""
        block = extent(u)
        split = any(block[d] < bound[d] for d in op.dims)
        sub, k = _block_tiling(net, tiling, block, box, period, split)
        run = dataclasses.replace(sub, period=k * sub.period) if k > 1 else sub
        return SttLayerPlan(run, (), wb, elem, {t: shape(t, u) for t in elem}, {}, bound if split else None,
                            _grid(net, bound, block), layouts, block_halo(op, bound, block, layouts)), sub, k

    def rank(u):
        plan = plan_of(u)[0]
        return plan.cycles(), sum(plan.dram_bytes().values()), over(u)[1], tuple(-u[d] for d in op.dims)

    fitting = [u for u in _grid_candidates(op, bound, box, units) if over(u)[0] == 0]
    if fitting:
        units = min(fitting, key=rank)
    else:
        units = _least_overflow(op, bound, box, units, over)
    _o, _t, st = over(units)
    block = extent(units)
    split = any(block[d] < bound[d] for d in op.dims)
    halo = block_halo(op, bound, block, layouts)
    for t in elem:
        if st[t] > cap[t]:
            lay = layouts[t]
            what = f"{lay.banks} lane copies" if lay.copies else f"{lay.banks} bank{'s' if lay.banks > 1 else ''}"
            scope = f"a block of {block} " if split else "the stt memory system "
            with_halo = (f" with its halo ({', '.join(map(str, halo[t]))} element(s) below the block's first index "
                         f"along each dimension)" if t in halo else "")
            problems.append(problem(f"memory.{t}.bytes", f"layer {layer}: {scope}stores the whole "
                                    f"{'region of ' if split else ''}tensor {t}{with_halo} in {what} ({lay.banks} x "
                                    f"{st[t] // lay.banks} B = {st[t]} B on chip); raise the buffer or use a tiled "
                                    "dataflow", cap[t]))
    if problems:
        raise SpecError(problems)
    plan, sub, k = plan_of(units)
    programs = stt_lane_programs(sub) if split else programs
    if k > 1:
        programs = tuple(dataclasses.replace(p, stretch=k) for p in programs)
    programs = _with_halo(op, programs, halo, block)
    plan = SttLayerPlan(plan.tiling, programs, wb, elem, plan.shapes, {}, plan.bound, plan.grid, layouts, halo)
    at = 0
    for t in [x.name for x in op.inputs] + [op.output.name]:
        plan.bases[t] = at
        at += plan.regions(t) * plan.words(t)
    return plan


def _halving(n: int) -> list[int]:
    """The block extents (in boxes) the planner tries along one loop of ``n`` boxes: n, then halved (rounded up)
    down to 1."""
    out = [n]
    while n > 1:
        n = -(-n // 2)
        out.append(n)
    return out


def _grid_candidates(op, bound: dict, box: dict, units: dict):
    """Every block shape (boxes per loop) whose loops are each the whole loop or one of its halvings, and whose
    cut loops may be cut (``_splittable``)."""
    for combo in itertools.product(*[_halving(units[d]) for d in op.dims]):
        u = dict(zip(op.dims, combo))
        if all(u[d] == units[d] or _splittable(op, d, bound[d], u[d] * box[d]) for d in op.dims):
            yield u


def _least_overflow(op, bound: dict, box: dict, units: dict, over) -> dict:
    """When no block shape fits: the one the refusal names, found by halving the loop that best reduces the
    overflow (then keeps the most on chip) until no loop can be halved."""
    while over(units)[0] > 0:
        cands = []
        for d in op.dims:
            if units[d] > 1:
                u = dict(units, **{d: -(-units[d] // 2)})
                if _splittable(op, d, bound[d], u[d] * box[d]):
                    cands.append((over(u)[:2], op.dims.index(d), u))
        if not cands:
            break
        units = min(cands, key=lambda c: (c[0], c[1]))[2]
    return units


def _block_tiling(net, tiling, block: dict, box: dict, period, split: bool):
    """(the tiling of one block, its stretch ``k``, not yet applied): the layer's tiling when nothing is cut."""
    from .stt_array import stt_tiling
    sub = stt_tiling(net, block, box, period) if split else tiling
    return sub, (_stretch(net, box, block, period) if period is not None else 1)


def _grid(net, bound: dict, block: dict) -> tuple:
    """((loop, blocks), ...) over the cut loops: the dataflow's order, reduction loops innermost."""
    op = net.design.operation
    red = op.reduction_dims
    order = [d for d in net.dataflow.order if d not in red] + [d for d in net.dataflow.order if d in red]
    order += [d for d in op.dims if d not in order]
    return tuple((d, -(-bound[d] // block[d])) for d in order if block[d] < bound[d])


def _stretch(net, box: dict, block: dict, period: int) -> int:
    """The smallest k such that an output block of ``block``, coming back ``r`` boxes later, does so ``r x k x
    period`` slots later, past its partial sums' gap (``dataflow/stt_array.py _period``'s revisit rule)."""
    from .stt_array import _geometry_of, _revisit_distance
    r = _revisit_distance(net, box, block)
    gap = _geometry_of(net, tuple(sorted(box.items()))).psum_gap
    return 1 if r is None else max(1, -(-(gap + 1) // (r * period)))


@dataclass(frozen=True)
class SttLayerResult:
    cycles: int
    load_cycles: int
    compute_cycles: int
    write_cycles: int
    dram_bytes: dict


def simulate_stt_layer(plan: SttLayerPlan) -> SttLayerResult:
    """The cycle contract above, job by job."""
    dram = plan.design.memory_system.dram
    op = plan.design.operation
    nb = plan.n_blocks
    load = nb * sum(dram.transfer_cycles(plan.tensor_bytes(x.name)) for x in op.inputs)
    write = plan.out_blocks * dram.transfer_cycles(plan.tensor_bytes(op.output.name))
    compute = nb * (plan.tiling.slots + COMMAND_OVERHEAD)
    assert load + compute + write == plan.cycles()
    return SttLayerResult(load + compute + write, load, compute, write, plan.dram_bytes())
