"""A skewed stt array (dataflow/stt_array.py) behind a memory system: the layer plan and its cycle contract.

The first, simple form (rtlgen/stt_layer.py builds exactly this): the whole layer is one block.

* **Load.** The DMA moves every input tensor, whole, from DRAM into its on-chip buffer, one tensor after
  another in operation order, each transfer starting in the cycle after the previous one's last
  (``DramPort.transfer_cycles`` each; the burst timer of the tiled layer core).
* **Compute.** One array command of ``tiling.slots`` slots. Every stream lane is driven by its port's stream
  sequencer (rtlgen/stt_stream.py, the lane programs of dataflow/stt_phase.py): an input lane reads the
  element its phase entry names from its buffer (one read copy per lane, so lanes never conflict), the
  output's lane l writes the element it carries into its own store (one write a slot), and the partial-sum
  lane l reads back from store l: an output element always rides the same chain (its box-local line does not
  change between visits), so partial sums never cross lanes. The buffers serve every lane every slot, so the
  array never waits: compute takes the array's ideal-stream cycles.
* **Write-back.** The output tensor to DRAM, one word a cycle from the job's start, each word the sum over
  the lane stores (every element is written by one lane only; the others hold zero), the job ending at the
  burst timer's acknowledge.

Cycle contract (cycle 0 = the first cycle ``go`` is high): loads occupy ``[0, L)`` with
``L = sum_X transfer_cycles(bytes(X))``; the array command's handshake is cycle ``L`` (the array's cycle 0),
its ``done`` cycle ``L + slots + 1``; the write-back starts in the next cycle and takes
``transfer_cycles(bytes(Y))``; ``finished`` rises in the cycle after its last, so

    cycles = sum_X transfer_cycles(bytes(X)) + slots + 2 + transfer_cycles(bytes(Y))

DRAM bytes: every input tensor read once, the output written once (``bytes(T) = elements x element bytes``).
Fit: what the top instantiates for each tensor (``storage_bytes``: lanes x whole tensor, the input copies in
DRAM words, the output stores at the accumulator width) within ``memory.<T>.bytes``; otherwise the layer is
refused by field.
Validity tags (maps where zero fill alone does not pin products to the box) come from a sequencer of their
own: a tag is a constant per phase entry and edge mask. Operands kept on one FU (rings) are driven by
differences against a mirror of the ring (an input: what the lane loaded; the output: its output beats).
Not yet: blocks of boxes with double buffering (loads overlapping compute).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from archgen.arch.errors import SpecError, problem

from .stt_array import SttTiling
from .stt_phase import LaneProgram, stt_lane_programs

__all__ = ["SttLayerPlan", "plan_stt_layer", "valid_beats", "SttLayerResult", "simulate_stt_layer"]


@dataclass(frozen=True)
class SttLayerPlan:
    tiling: SttTiling = field(repr=False, compare=False)
    programs: tuple[LaneProgram, ...] = field(repr=False, compare=False)
    word_bytes: int
    elem_bytes: dict                  # tensor -> bytes per element (the output at the accumulator width)
    shapes: dict                      # tensor -> shape
    bases: dict                       # tensor -> first DRAM word of its region (inputs first, the output last)

    @property
    def design(self):
        return self.tiling.network.design

    def tensor_bytes(self, name: str) -> int:
        return math.prod(self.shapes[name]) * self.elem_bytes[name]

    def words(self, name: str) -> int:
        return -(-self.tensor_bytes(name) // self.word_bytes)

    @property
    def dram_words(self) -> int:
        out = self.design.operation.output.name
        return self.bases[out] + self.words(out)

    def per_word(self, name: str) -> int:
        return self.word_bytes // self.elem_bytes[name]

    @property
    def ports(self) -> frozenset:
        return frozenset(p.port for p in self.programs)

    def program(self, port: str) -> LaneProgram:
        return next(p for p in self.programs if p.port == port)

    def dram_bytes(self) -> dict:
        op = self.design.operation
        out = {f"{x.name}.read": self.tensor_bytes(x.name) for x in op.inputs}
        out[f"{op.output.name}.write"] = self.tensor_bytes(op.output.name)
        return out

    def buffer_accesses(self) -> dict:
        """Element accesses of every on-chip buffer over the layer (``"<tensor>.read|write"``): the DMA writes
        every input element into each of its lane copies; lanes read the valid entries of their walks; the
        output lanes write their stores, the partial-sum lanes read them, the write-back reads every lane store
        at every output element. Valid lane beats are counted per box class (edge mask, first visit) rather
        than per slot: an entry's validity depends on the box only through them (``lane_walk`` counts the same,
        tests/dataflow/test_stt_layer_plan.py)."""
        op = self.design.operation
        y = op.output.name
        n_out = math.prod(self.shapes[y])
        acc = {}
        for x in op.inputs:
            prog = self.program(f"in_{x.name}")
            acc[f"{x.name}.write"] = math.prod(self.shapes[x.name]) * prog.lanes
            acc[f"{x.name}.read"] = valid_beats(prog)
        out_lanes = self.program(f"out_{y}").lanes
        acc[f"{y}.write"] = valid_beats(self.program(f"out_{y}"))
        acc[f"{y}.read"] = valid_beats(self.program(f"psum_{y}")) + n_out * out_lanes
        return acc

    def storage_bytes(self) -> dict:
        """On-chip bytes the top instantiates per tensor (what the fit check compares with ``memory.<T>.bytes``):
        an input's lane copies each hold its whole tensor in DRAM words; the output's lane stores each hold
        every output element at the accumulator width (whole bytes)."""
        op = self.design.operation
        out = {x.name: self.program(f"in_{x.name}").lanes * self.words(x.name) * self.word_bytes for x in op.inputs}
        y = op.output.name
        out[y] = self.program(f"out_{y}").lanes * self.tensor_bytes(y)
        return out

    def describe_storage(self) -> str:
        """What is on chip, e.g. ``on chip: A 4 x 96 B copies, B 4 x 96 B copies, C 7 x 256 B stores``."""
        op = self.design.operation
        parts = [f"{x.name} {self.program(f'in_{x.name}').lanes} x {self.words(x.name) * self.word_bytes} B copies"
                 for x in op.inputs]
        y = op.output.name
        parts.append(f"{y} {self.program(f'out_{y}').lanes} x {self.tensor_bytes(y)} B stores")
        return "on chip: " + ", ".join(parts)

    def cycles(self) -> int:
        dram = self.design.memory_system.dram
        op = self.design.operation
        return (sum(dram.transfer_cycles(self.tensor_bytes(x.name)) for x in op.inputs) + self.tiling.slots + 2
                + dram.transfer_cycles(self.tensor_bytes(op.output.name)))

    def dram_image(self, tensors: dict) -> list[int]:
        """DRAM words: each input tensor row-major from its base, elements little-endian within a word."""
        words = [0] * self.dram_words
        for x in self.design.operation.inputs:
            eb, pw = self.elem_bytes[x.name], self.per_word(x.name)
            flat = np.asarray(tensors[x.name]).reshape(-1)
            for i, v in enumerate(flat.tolist()):
                words[self.bases[x.name] + i // pw] |= (int(v) & ((1 << (8 * eb)) - 1)) << (8 * eb * (i % pw))
        return words

    def read_output(self, words: list[int]) -> np.ndarray:
        y = self.design.operation.output.name
        eb, pw = self.elem_bytes[y], self.per_word(y)
        n = math.prod(self.shapes[y])
        vals = []
        for i in range(n):
            v = (words[self.bases[y] + i // pw] >> (8 * eb * (i % pw))) & ((1 << (8 * eb)) - 1)
            vals.append(v - (1 << (8 * eb)) if v >> (8 * eb - 1) else v)
        return np.array(vals, dtype=np.int64).reshape(self.shapes[y])


def valid_beats(prog: LaneProgram) -> int:
    """How many (slot, lane) beats of ``prog``'s walk are valid over the whole layer, by box class: the boxes
    with a given edge mask (and, for partial sums, first-visit bit) are counted in closed form, and each entry
    is checked once on a representative box of the class (counters at the last box on masked levels, else 0).
    Exact when an operand's element lies inside its tensor for every box of a class, which holds for the
    accesses the spec language writes (non-negative coefficients and offsets); the test compares it with
    ``lane_walk``."""
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
        first = 0 if any(b and prog.revisit[lv] for lv, b in enumerate(bit)) else math.prod(
            1 if prog.revisit[lv] else c for lv, c in enumerate(counts))
        classes = [(boxes - first, False), (first, True)] if prog.is_psum else [(boxes, False)]
        for n, is_first in classes:
            if not n:
                continue
            # the tensor origin of any box of the class (revisiting levels do not move the operand's origin)
            counter = [prog.trips[lv] - 1 if b else 0 for lv, b in enumerate(bit)]
            origin = np.zeros(len(extent), dtype=np.int64)
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


def plan_stt_layer(tiling: SttTiling, layer: str = "layer") -> SttLayerPlan:
    """The one-block plan of ``tiling``'s problem; refused, field by field, when it cannot run."""
    net = tiling.network
    design = net.design
    op = design.operation
    ms = design.memory_system
    problems = []
    wb = ms.dram.width_bytes
    elem = {x.name: -(-design.type_of[x.name].bits // 8) for x in op.inputs}
    elem[op.output.name] = -(-design.acc_type.bits // 8)
    shapes = {t: tuple(op.tensor_shape(t, tiling.bound)) for t in elem}
    odd = [f"{t} ({eb} B)" for t, eb in elem.items() if wb % eb]
    if odd:
        problems.append(problem("memory.dram.width_bytes", "a DRAM word must hold whole elements of every tensor; "
                                f"it does not for {', '.join(odd)}", wb))
    programs = stt_lane_programs(tiling)
    lanes = {p.port: p.lanes for p in programs}
    for t, eb in elem.items():
        copies, what = (lanes[f"out_{t}"], "lane store") if t == op.output.name else (lanes[f"in_{t}"], "lane copy")
        per = -(-math.prod(shapes[t]) * eb // wb) * wb if t != op.output.name else math.prod(shapes[t]) * eb
        need = copies * per
        if need > ms.buffer(t).bytes:
            problems.append(problem(f"memory.{t}.bytes", f"layer {layer}: the stt memory system stores the whole "
                                    f"tensor {t} in each {what} ({copies} x {per} B = {need} B on chip); raise "
                                    "the buffer or use a tiled dataflow", ms.buffer(t).bytes))
    if problems:
        raise SpecError(problems)
    bases, at = {}, 0
    for t in [x.name for x in op.inputs] + [op.output.name]:
        bases[t] = at
        at += -(-math.prod(shapes[t]) * elem[t] // wb)
    return SttLayerPlan(tiling, programs, wb, elem, shapes, bases)


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
    load = sum(dram.transfer_cycles(plan.tensor_bytes(x.name)) for x in op.inputs)
    write = dram.transfer_cycles(plan.tensor_bytes(op.output.name))
    compute = plan.tiling.slots + 2
    return SttLayerResult(load + compute + write, load, compute, write, plan.dram_bytes())
