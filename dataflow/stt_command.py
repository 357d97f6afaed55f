"""One skewed stt layer top for every layer: the build's constants and the layer command (docs/memory.md,
"Skewed stt maps through the memory system", "One build for every layer").

A build (``SttBuild``) fixes what the hardware's structure depends on: the box (``box``: the largest the
array allows, ``choose_box`` for a large problem), the period (the smallest collision-free one for that box,
``_period`` without a revisit constraint), hence the phase tables' shape (which lane, phase and box delta
carries which box point: ``LaneProgram.entries`` keys, deltas and coordinate offsets, the same for every
problem with this box and period), the banked layouts (bank and rank of an entry are constants) and the
bank depths (from ``memory.<T>.bytes``). Everything that depends on the layer is the **command**, written by
the host into the core's command register before ``go`` (``command_fields``, ``command_values``):

* controller: the block's slots (the array command's ``steps``), per tensor its first region's DRAM word,
  words and bytes per region (the output: its image positions), the grid's trip count per loop (all loops,
  in the block order, 1 where not split) and per tensor and grid level the region-base change when that
  level advances (inner levels wrapping: adds only);
* per stream sequencer: the box walker's trip count per level and, per level, the origin's change when that
  level advances (tensor coordinates and in-bank index), the region's extent per tensor dimension (the
  inside-the-tensor compares), and a run-time *phase table*: per entry its in-bank (or row-major) index
  offset, its edge-mask bits (whether the entry's line meets the problem in a box with those ragged edges)
  and, on a validity-tag port, its value per edge mask. The host computes these from the layer's own lane
  programs (``stt_lane_programs`` with the build's box and period): a table loaded per layer, not counters,
  because the mask bits are a function of the layer's ragged extents over each entry's line.

A layer is refused by name when the build cannot hold it: a region beyond a buffer (``plan_stt_layer``), a
value wider than its field (``layers.<name>.<field>``). The cycle contract is ``SttLayerPlan.cycles`` with
the build's box and period (an output block that would come back too soon inside a block gets its boxes
spread ``stretch`` box groups apart, ``plan_stt_layer(period=...)``: one more sequencer field).
"""
from __future__ import annotations

from dataclasses import dataclass

from archgen.arch.errors import SpecError, problem

from .stt_array import _geometry_of, _period, choose_box, stt_tiling
from .stt_bank import BankLayout
from .stt_layer import SttLayerPlan, plan_stt_layer, stt_layouts
from .stt_phase import LaneProgram, stt_lane_programs

__all__ = ["SttBuild", "build_stt", "plan_for_build", "sequencer_values", "command_fields", "command_values",
           "command_words", "command_bits", "controller_values", "has_halo_fields", "CMD_WORD_BITS"]

CMD_WORD_BITS = 32
TRIP_BITS = 16          # box-walker and grid trip counts
EXT_BITS = 16           # a region's extent per tensor dimension
COORD_BITS = 20         # signed tensor coordinates of a box origin
LIN_BITS = 32           # signed in-bank (or row-major) index of a box origin and of an entry's offset
WORDS_BITS = 24         # DRAM words (and image positions) of one region
BYTES_BITS = 28
BASE_BITS = 32
SLOT_BITS = 32
BIG = 1 << 12           # the problem size per loop the build's box is chosen for


@dataclass(frozen=True)
class SttBuild:
    compiled: object
    box: dict
    period: int
    grid_order: tuple             # every loop, in block order (the output's loops outer, reduction loops inner)
    programs: tuple               # the skeleton lane programs (one box): entries' keys, deltas and offsets
    layouts: dict                 # tensor -> BankLayout
    elem: dict                    # tensor -> bytes per element
    word_bytes: int
    rows: dict                    # tensor -> bank rows the build instantiates (from memory.<T>.bytes)

    @property
    def network(self):
        return self.compiled.network

    @property
    def design(self):
        return self.compiled.design

    def program(self, port: str) -> LaneProgram:
        return next(p for p in self.programs if p.port == port)

    @property
    def elem_bytes(self) -> dict:
        return self.elem

    def per_word(self, name: str) -> int:
        return self.word_bytes // self.elem[name]

    @property
    def ports(self) -> frozenset:
        return frozenset(p.port for p in self.programs)

    def port_layout(self, port: str) -> BankLayout | None:
        """The banked layout a port's addresses index (inputs, partial sums, outputs), None for the ring and
        tag ports (only their valid bits are used)."""
        p = self.program(port)
        return self.layouts[p.operand] if port.startswith(("in_", "psum_", "out_")) else None

    def addr_bits(self, port: str) -> int:
        lay = self.port_layout(port)
        if lay is None:
            return EXT_BITS
        return max(1, (self.rows[lay.tensor] * lay.width - 1).bit_length())


def _free_loops(net) -> set:
    return {d for li, d in enumerate(net.design.operation.dims) if not net.space[:, li].any()}


def build_stt(compiled, bounds: dict | None = None, box: dict | None = None) -> SttBuild:
    """The build of ``compiled`` (a skewed stt array): the given box, or the one ``choose_box`` takes for a
    large problem (a loop no spatial row reads runs whole inside a box: there it is the spec's bound, or
    ``bounds``'); its smallest collision-free period; the layouts; bank depths from the buffers."""
    net = compiled.network
    design = net.design
    op = design.operation
    dims = op.dims
    ms = design.memory_system
    given = dict(bounds or {})
    if box is None:
        free = _free_loops(net)
        big = {d: (max(1, int(given.get(d) or dict(design.bounds).get(d) or 1)) if d in free else BIG) for d in dims}
        box = choose_box(net, big)
    box = {d: int(box[d]) for d in dims}
    period = _period(_geometry_of(net, tuple(sorted(box.items()))), None)
    skel = stt_tiling(net, dict(box), box, period)
    programs = stt_lane_programs(skel)
    wb = ms.dram.width_bytes
    elem = {x.name: -(-design.type_of[x.name].bits // 8) for x in op.inputs}
    elem[op.output.name] = -(-design.acc_type.bits // 8)
    layouts = stt_layouts(net, programs, elem, wb)
    rows, problems = {}, []
    for t, lay in layouts.items():
        cap = ms.buffer(t).bytes
        rows[t] = cap // (lay.banks * lay.width * elem[t])
        if rows[t] < 1:
            problems.append(problem(f"memory.{t}.bytes", f"the build's buffer of {t} needs at least one row of "
                                    f"{lay.banks} x {lay.width} elements ({lay.banks * lay.width * elem[t]} B)", cap))
    if problems:
        raise SpecError(problems)
    red = op.reduction_dims
    order = [d for d in net.dataflow.order if d not in red] + [d for d in net.dataflow.order if d in red]
    order += [d for d in dims if d not in order]
    return SttBuild(compiled, box, period, tuple(order), programs, layouts, elem, wb, rows)


def plan_for_build(build: SttBuild, bounds: dict, layer: str = "layer") -> SttLayerPlan:
    """The plan of one layer on ``build``: the build's box and period (refusals by field)."""
    net = build.network
    tiling = stt_tiling(net, {d: int(bounds[d]) for d in net.design.operation.dims}, build.box, build.period)
    plan = plan_stt_layer(tiling, layer, period=build.period)
    if plan.layouts != build.layouts:       # the same box and period give the same entries, hence layouts
        raise SpecError([problem(f"layers.{layer}", "the layer's banked layouts differ from the build's", bounds)])
    return plan


def sequencer_values(p: LaneProgram, layout: BankLayout | None) -> dict:
    """What a stream sequencer's command holds for lane program ``p`` (rtlgen/stt_stream.py): trip counts;
    per level the origin's change when the level advances and every inner level wraps (tensor coordinates,
    ``adv``; in-bank or row-major index, ``advlin``); the extents; per phase entry its index offset
    (``off``), bank (a build constant), edge-mask bits and tag values."""
    lay = layout if layout is not None and not layout.copies else None
    levels = len(p.trips)
    adv = []
    for lv in range(levels):
        tot = [int(s) for s in p.step[lv]]
        for inner in range(lv + 1, levels):
            tot = [a - int(s) * (p.trips[inner] - 1) for a, s in zip(tot, p.step[inner])]
        adv.append(tuple(tot))
    advlin = [p.linear(t) if lay is None else lay.index_step(t, p.extent) for t in adv]
    off, bank = [], []
    for _key, (_delta, o, _masks) in p.entries:
        if lay is None:
            off.append(p.linear(o))
            bank.append(0)
        else:
            b, idx = lay.entry(o, p.extent)
            off.append(idx)
            bank.append(b)
    start = p.origin0
    startlin = p.linear(start) if lay is None else lay.index_step(start, p.extent)
    return {"stretch": p.stretch, "trips": list(p.trips), "adv": adv, "advlin": advlin, "ext": list(p.extent),
            "off": off, "bank": bank, "masks": [mk for _key, (_d, _o, mk) in p.entries],
            "vals": [tuple(v) for v in p.values], "start": list(start), "startlin": startlin}


def has_halo_fields(op, p: LaneProgram) -> bool:
    """Whether port ``p``'s sequencer takes box 0's origin from the command (``start``: a block region with a
    halo, dataflow/stt_layer.py ``block_halo``): an input read through an index with a negative coefficient."""
    if p.is_tag or p.operand not in {x.name for x in op.inputs}:
        return False
    return any(a < 0 for e in op.operand(p.operand).indices for _d, a in e.terms)


def command_fields(build: SttBuild) -> tuple:
    """(name, bits, signed) of every command field, in register order (the same for every layer)."""
    op = build.design.operation
    tensors = [x.name for x in op.inputs] + [op.output.name]
    y = op.output.name
    f = [("slots", SLOT_BITS, False)]
    for t in tensors:
        f += [(f"base_{t}", BASE_BITS, False), (f"words_{t}", WORDS_BITS, False), (f"bytes_{t}", BYTES_BITS, False)]
    f.append((f"positions_{y}", WORDS_BITS, False))
    f += [(f"grid_{d}", TRIP_BITS, False) for d in build.grid_order]
    f += [(f"radv_{t}_{d}", BASE_BITS, True) for t in tensors for d in build.grid_order]
    for p in build.programs:
        levels = len(p.trips)
        f.append((f"{p.port}.stretch", TRIP_BITS, False))
        f += [(f"{p.port}.trips{lv}", TRIP_BITS, False) for lv in range(levels)]
        f += [(f"{p.port}.adv{lv}_{j}", COORD_BITS, True) for lv in range(levels) for j in range(len(p.extent))]
        f += [(f"{p.port}.advlin{lv}", LIN_BITS, True) for lv in range(levels)]
        f += [(f"{p.port}.ext{j}", EXT_BITS, False) for j in range(len(p.extent))]
        if has_halo_fields(op, p):
            f += [(f"{p.port}.start{j}", COORD_BITS, True) for j in range(len(p.extent))]
            f.append((f"{p.port}.startlin", LIN_BITS, True))
        for k in range(len(p.entries)):
            f += [(f"{p.port}.off{k}", LIN_BITS, True), (f"{p.port}.masks{k}", 1 << levels, False)]
            if p.is_tag:
                vbits = 2 * build.network.tag_field_bits
                f += [(f"{p.port}.val{k}_{mk}", vbits, False) for mk in range(1 << levels)]
    return tuple(f)


def _region_advance(plan: SttLayerPlan, t: str, order, counts: dict) -> dict:
    """Per grid level: the change of ``t``'s region base (DRAM words) when that level advances and every
    inner level wraps to 0 (block-major regions over the loops ``t`` uses, ``SttLayerPlan.region_index``)."""
    acc = plan.design.operation.operand(t)
    used = [d for d in order if acc.uses(d)]
    weight, w = {}, plan.words(t)
    for d in reversed(used):
        weight[d] = w
        w *= counts[d]
    out = {}
    for k, d in enumerate(order):
        v = weight.get(d, 0)
        for d2 in order[k + 1:]:
            if d2 in weight:
                v -= (counts[d2] - 1) * weight[d2]
        out[d] = v
    return out


def controller_values(plan: SttLayerPlan, order, base_word: int = 0) -> dict:
    """The controller's command fields for ``plan``, its grid over the loops ``order`` (1 block where not
    split) and its DRAM regions from word ``base_word`` on."""
    op = plan.design.operation
    tensors = [x.name for x in op.inputs] + [op.output.name]
    y = op.output.name
    counts = dict(plan.grid)
    counts = {d: counts.get(d, 1) for d in order}
    v = {"slots": plan.tiling.slots}
    for t in tensors:
        v[f"base_{t}"] = base_word + plan.bases[t]
        v[f"words_{t}"] = plan.words(t)
        v[f"bytes_{t}"] = plan.tensor_bytes(t)
    v[f"positions_{y}"] = plan.layouts[y].positions(plan.shapes[y])
    for d in order:
        v[f"grid_{d}"] = counts[d]
    for t in tensors:
        for d, a in _region_advance(plan, t, tuple(order), counts).items():
            v[f"radv_{t}_{d}"] = a
    return v


def command_values(build: SttBuild, plan: SttLayerPlan, base_word: int = 0, layer: str = "layer") -> dict:
    """Every command field's value for ``plan`` (a layer planned on ``build``), its DRAM regions from word
    ``base_word`` on; refused by name when a value does not fit its field or the layer's phase tables do not
    have the build's shape."""
    op = build.design.operation
    tensors = [x.name for x in op.inputs] + [op.output.name]
    y = op.output.name
    v = controller_values(plan, build.grid_order, base_word)
    for skel in build.programs:
        p = plan.program(skel.port)
        if [(k, dl, o) for k, (dl, o, _m) in p.entries] != [(k, dl, o) for k, (dl, o, _m) in skel.entries] \
                or p.step != skel.step or p.period != skel.period:
            raise SpecError([problem(f"layers.{layer}", f"the phase table of {skel.port} differs from the build's "
                                     "(another box or period)", dict(plan.layer_bound))])
        s = sequencer_values(p, build.port_layout(skel.port))
        v[f"{p.port}.stretch"] = s["stretch"]
        for lv in range(len(p.trips)):
            v[f"{p.port}.trips{lv}"] = s["trips"][lv]
            v[f"{p.port}.advlin{lv}"] = s["advlin"][lv]
            for j in range(len(p.extent)):
                v[f"{p.port}.adv{lv}_{j}"] = s["adv"][lv][j]
        for j in range(len(p.extent)):
            v[f"{p.port}.ext{j}"] = s["ext"][j]
        if has_halo_fields(op, skel):
            v.update({f"{p.port}.start{j}": s["start"][j] for j in range(len(p.extent))})
            v[f"{p.port}.startlin"] = s["startlin"]
        else:                               # block_halo gives a halo only to an index with a negative coefficient
            assert not any(s["start"]), p.port
        for k in range(len(p.entries)):
            v[f"{p.port}.off{k}"] = s["off"][k]
            v[f"{p.port}.masks{k}"] = s["masks"][k]
            for mk, val in enumerate(s["vals"][k] if p.is_tag else ()):
                v[f"{p.port}.val{k}_{mk}"] = val
    problems = []
    for name, bits, signed in command_fields(build):
        val = v[name]
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= val <= hi:
            problems.append(problem(f"layers.{layer}.{name}", f"the value does not fit the build's {bits}-bit "
                                    f"{'signed ' if signed else ''}command field", val))
    if problems:
        raise SpecError(problems)
    return v


def command_words(build: SttBuild, values: dict) -> list[int]:
    """The command register's contents as ``CMD_WORD_BITS``-bit words (fields packed in ``command_fields``
    order from bit 0, two's complement), what the host writes one word a cycle."""
    acc, at = 0, 0
    for name, bits, _signed in command_fields(build):
        acc |= (values[name] & ((1 << bits) - 1)) << at
        at += bits
    n = max(1, -(-at // CMD_WORD_BITS))
    return [(acc >> (CMD_WORD_BITS * i)) & ((1 << CMD_WORD_BITS) - 1) for i in range(n)]


def command_bits(build: SttBuild) -> int:
    return sum(b for _n, b, _s in command_fields(build))

