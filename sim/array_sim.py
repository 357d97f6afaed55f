"""Whole workloads on a generated array: each compute layer lowered onto the design's operation,
simulated through the memory system (buffers, DMA, DRAM port; docs/memory.md), costed with the energy table.

Lowering: a layer whose einsum has the design's structure (same accesses up to renaming the loops)
maps loop for loop; any other compute layer is viewed as a batched GEMM (im2col for convolutions:
M = output positions, K = reduction loops, N = output channels) and embedded in the design's
operation. Element-wise layers (softmax, layernorm, ...) do not run on the array; they are listed
and counted, not timed.
"""
from __future__ import annotations

from dataclasses import dataclass

from archgen.arch.einsum import Operation, parse_operation
from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_array
from archgen.dataflow.ir import NodeKind, PortRole
from archgen.dataflow.memctl import buffer_fit, buffer_rooms, check_memory_system, fused_banks, tiled_fused_names
from archgen.mappings.memory_tiling import plan_layer
from archgen.mappings.tiling import map_problem

from .array_model import simulate_array
from .energy import Action, EnergyModel
from .layer_model import simulate_layer
from .results import LayerResult, roofline_cycles

__all__ = ["lower_layer", "simulate_workload_on_array", "SkippedLayer"]


@dataclass(frozen=True)
class SkippedLayer:
    name: str
    kind: str
    elements: int


def _signature(op: Operation, dim: str) -> tuple:
    return tuple(tuple(int(e.coeff(dim)) for e in o.indices) for o in op.operands)


def _structural_match(layer_op: Operation, design_op: Operation) -> dict[str, str] | None:
    """Layer dim -> design dim when the two einsums are the same up to renaming loops."""
    if len(layer_op.inputs) != len(design_op.inputs) or len(layer_op.dims) != len(design_op.dims):
        return None
    if [len(o.indices) for o in layer_op.operands] != [len(o.indices) for o in design_op.operands]:
        return None
    by_sig: dict[tuple, list[str]] = {}
    for d in design_op.dims:
        by_sig.setdefault(_signature(design_op, d), []).append(d)
    mapping = {}
    for d in layer_op.dims:
        cands = by_sig.get(_signature(layer_op, d))
        if not cands:
            return None
        mapping[d] = cands.pop(0)
    for lo, do in zip(layer_op.operands, design_op.operands):
        if [e.const for e in lo.indices] != [e.const for e in do.indices]:
            return None
    return mapping


def _as_gemm(op: Operation, bounds: dict[str, int]) -> tuple[int, int, int, int]:
    """(batch, M, K, N) view of a two-input contraction: loops classified by the operands using them."""
    a, b = op.inputs[0], op.inputs[1]
    out = op.output
    batch = m = k = n = 1
    for d in op.dims:
        ua, ub, uo = a.uses(d), b.uses(d), out.uses(d)
        if uo and ua and ub:
            batch *= bounds[d]
        elif uo and ub:
            n *= bounds[d]
        elif uo:
            m *= bounds[d]
        else:
            k *= bounds[d]
    return batch, m, k, n


def lower_layer(layer, design: Design) -> tuple[dict[str, int], int, str]:
    """(bounds in the design's loops, repeat count, how it was lowered) for one compute layer."""
    lop = parse_operation(layer.einsum)
    dop = design.operation
    match = _structural_match(lop, dop)
    if match is not None:
        return {match[d]: layer.bounds[d] for d in lop.dims}, layer.count, "direct"
    if len(lop.inputs) != 2:
        raise SpecError([problem(f"layers.{layer.name}", "only two-input contractions can be lowered onto an array",
                                 layer.einsum)])
    batch, m, k, n = _as_gemm(lop, layer.bounds)
    gemm = parse_operation("C[i,j] += A[i,k] * B[k,j]")
    target = _as_gemm_embedding(dop)
    if target is None:
        raise SpecError([problem("operation", "cannot embed a GEMM into this design's operation", str(dop))])
    bounds = {d: 1 for d in dop.dims}
    for role, size in (("m", m), ("k", k), ("n", n)):
        bounds[target[role]] = size
    return bounds, batch * layer.count, "gemm" if _structural_match(lop, gemm) else "im2col"


def _as_gemm_embedding(dop: Operation) -> dict[str, str] | None:
    """Pick one design loop for each GEMM role (output-and-first-input, reduction, output-and-second)."""
    a, b, out = dop.inputs[0], dop.inputs[1], dop.output
    roles = {}
    for d in dop.dims:
        ua, ub, uo = a.uses(d), b.uses(d), out.uses(d)
        if uo and ua and not ub and "m" not in roles:
            roles["m"] = d
        elif uo and ub and not ua and "n" not in roles:
            roles["n"] = d
        elif not uo and ua and ub and "k" not in roles and all(e.coeff(d) in (0, 1) for e in a.indices):
            roles["k"] = d
    return roles if len(roles) == 3 else None


def simulate_workload_on_array(design: Design, workload, *, dataflow: str | None = None,
                               energy: EnergyModel | None = None, progress=None,
                               pipeline: bool = True, ideal_dram: bool = False, mapper: str = "heuristic",
                               mapper_objective: str = "edp", mapper_seed: int = 0,
                               fuse: tuple[str, ...] = (),
                               ) -> tuple[list[LayerResult], list[SkippedLayer]]:
    """Per-layer results on the design as ``archgen build`` generates it (pipelined for its clock).

    Every compute layer runs through the memory system (docs/memory.md): a layer command planned by
    mappings/memory_tiling.py, simulated by sim/layer_model.py with the spec's buffers and DRAM port.
    All layers are planned before any is simulated, so a layer that does not fit its buffers is refused
    (SpecError naming the layer, operand and sizes) before anything runs.

    ``ideal_dram``: streams never wait on DRAM (the condition the array's Verilator testbench creates),
    and the whole layer is one array command, so a layer's cycles equal what ``archgen verify`` measures
    on the array's RTL; the memory system is bypassed.

    ``mapper``: ``heuristic`` plans each layer with ``plan_layer``; ``search`` with mappings/mapper.py's
    ``search_layer`` (objective ``mapper_objective``, seeded by ``mapper_seed``), whose finalists this
    module's layer model judges.

    ``fuse``: the dataflows of one fused design (docs/dataflows.md, Fusion). Each layer is planned and
    simulated under every one of them with the fused design's timing (its mux stages included), and runs
    under the one best on ``mapper_objective`` (``latency``: cycles, then energy; ``energy``: energy, then
    cycles; ``edp``: cycles x energy, then cycles; then the ``fuse`` order): the command's dataflow field,
    chosen per layer as the fused RTL allows. ``extra["dataflow"]`` names it. A layer is refused only when
    no dataflow fits it."""
    if mapper not in ("heuristic", "search"):
        raise SpecError([problem("mapper", "must be heuristic or search", mapper)])
    if mapper_objective not in ("latency", "energy", "edp"):
        raise SpecError([problem("mapper.objective", "must be latency, energy or edp", mapper_objective)])
    if fuse and dataflow is not None:
        raise SpecError([problem("dataflow", "give one dataflow or a fused set, not both", dataflow)])
    if fuse:
        from archgen.dataflow.compile import compile_fused
        fused = compile_fused(design, fuse, pipeline=pipeline)
        views = fused.views
    else:
        views = (compile_array(design, dataflow, pipeline=pipeline),)
    energy = energy or EnergyModel.load()
    if not fuse and design.dataflow(dataflow).skewed:     # skewed stt maps (dataflow/stt_array.py, stt_layer.py)
        return _stt_workload(views[0], workload, energy, progress, memory=not ideal_dram)
    if not ideal_dram:      # a fused design's skewed maps run in the stt memory system (their view's one build)
        for compiled in views:
            if not hasattr(compiled, "network"):
                check_memory_system(compiled.fu_graph, compiled.design)
    core = _core_banks(fused) if fuse and not ideal_dram else {}
    results, skipped, planned, refused = [], [], [], []
    plans: dict = {}                          # (dataflow, layer bounds) -> command: a shape is planned once
    for layer in workload.layers:
        if not layer.einsum:
            skipped.append(SkippedLayer(layer.name, layer.kind, layer.elements * layer.count))
            continue
        bounds, repeat, how = lower_layer(layer, design)
        options, why = [], []
        for compiled in views:
            try:
                options.append((compiled, _plan(compiled, layer, bounds, repeat, how, energy, ideal_dram, mapper,
                                                mapper_objective, mapper_seed, plans,
                                                core.get(compiled.dataflow.name))))
            except SpecError as err:          # every layer that does not fit is named, then nothing runs
                why += err.problems
        if not options:
            refused += why
            continue
        planned.append((layer, repeat, how, bounds, options))
    if refused:
        raise SpecError(refused)
    for layer, repeat, how, bounds, options in planned:
        if progress:
            progress(layer.name)
        runs = [_stt_layer(c, layer, bounds, repeat, how, energy, not ideal_dram) if hasattr(c, "network")
                else _ideal_layer(c, layer, bounds, repeat, how, energy) if cmd is None
                else _memory_layer(c, layer, cmd, repeat, how, energy) for c, cmd in options]
        results.append(min(runs, key=lambda r: _rank(r, mapper_objective)))     # min keeps the first tie
    return results, skipped


def _rank(r: LayerResult, objective: str) -> tuple[float, float]:
    e = sum(r.energy_pj.values())
    return {"latency": (r.cycles, e), "energy": (e, r.cycles), "edp": (r.cycles * e, r.cycles)}[objective]


def _core_banks(fused) -> dict:
    """Dataflow -> the banks of the one layer core a fused design's tiled dataflows share (memctl ``fused_banks``),
    so that each plans its layers on the buffer halves the built core has (``archgen build --memory``, ``archgen
    verify``); {} when the core's probe is refused (each layer is then refused by name where it is planned)."""
    names = tiled_fused_names(fused)
    try:
        banks = fused_banks(fused, names)
    except SpecError:
        return {}
    return {n: banks for n in names}


def _plan(compiled, layer, bounds, repeat, how, energy, ideal_dram, mapper, objective, seed, plans, core_banks=None):
    """The layer command under ``compiled``'s dataflow (None with ideal DRAM: one array command; a skewed map's
    view: None, its stt plan checked here so that a layer it cannot hold is refused by name). ``core_banks``: a fused
    design's one layer core (:func:`_core_banks`)."""
    if ideal_dram:
        return None
    if hasattr(compiled, "network"):
        from archgen.dataflow.stt_command import plan_for_build
        plan_for_build(_stt_build(compiled), bounds, layer.name)
        return None
    key = (compiled.fu_graph.dataflow.name, tuple(sorted(bounds.items())))   # a plan depends on these only
    if key not in plans:
        if mapper == "search":
            plans[key] = searched_command(compiled, layer, bounds, repeat, how, energy, objective, seed, core_banks)
        else:
            plans[key] = plan_layer(compiled.design, bounds, compiled.fu_graph.dataflow, layer.name,
                                    fits=buffer_fit(compiled, layer.name, core_banks),
                                    rooms=buffer_rooms(compiled, core_banks))
    return plans[key]


def searched_command(compiled, layer, bounds, repeat, how, energy, objective, seed, core_banks=None):
    """``--mapper search``'s command for ``layer``: every candidate ranked by this model's own report of the layer
    (all repeats) under ``objective``, with the memory system's fit check and bank-row rooms (a fused core's:
    ``core_banks``), so that ``archgen sim`` and ``archgen verify --mapper search`` plan the same command."""
    from archgen.mappings.mapper import search_layer

    def evaluate(cmd):        # the layer as it will be reported (all repeats): same ranking, same checks
        r = _memory_layer(compiled, layer, cmd, repeat, how, energy)
        return r.cycles, sum(r.energy_pj.values())
    return search_layer(compiled.design, bounds, compiled.fu_graph.dataflow, evaluate, energy,
                        objective=objective, seed=seed, layer=layer.name,
                        fits=buffer_fit(compiled, layer.name, core_banks),
                        rooms=buffer_rooms(compiled, core_banks)).command


def _hops(fg) -> int:
    return sum(1 for u, v in fg.graph.edges if u.kind is NodeKind.FU and v.kind is NodeKind.FU)


def _core_actions(compiled, slots: int, steps_total: int) -> dict:
    fg = compiled.fu_graph
    in_bits = [p.width for p in fg.inputs]
    return {
        "compute": {Action("mult", max(in_bits)): slots, Action("add", fg.acc_width): slots},
        "registers": {Action("register_file", max(in_bits)): slots * len(in_bits)},
        "interconnect": {Action("pe_hop", max(in_bits)): _hops(fg) * steps_total},
    }


def _dram_actions(design: Design, dram: dict) -> dict:
    return {Action("dram_read", 64, dram=design.dram_kind): sum(v for k, v in dram.items() if k.endswith("read")) / 8,
            Action("dram_write", 64, dram=design.dram_kind): sum(v for k, v in dram.items() if k.endswith("write")) / 8}


def _memory_layer(compiled, layer, cmd, repeat: int, how: str, energy: EnergyModel) -> LayerResult:
    design = compiled.design
    mem = design.memory_system
    r = simulate_layer(compiled, cmd, layer=layer.name)
    cycles = r.cycles * repeat
    dram = {k: v * repeat for k, v in r.dram_bytes.items()}
    acc = {k: v * repeat for k, v in r.buffer_accesses.items()}
    acts = _core_actions(compiled, r.mac_slots * repeat, r.steps * repeat)
    acts["dram"] = _dram_actions(design, dram)
    buf_acts: dict = {}
    for key, n in acc.items():
        x, kind = key.rsplit(".", 1)
        a = Action("sram_read" if kind == "read" else "sram_write", design.type_of[x].bits,
                   capacity_bytes=mem.buffer(x).bytes)
        buf_acts[a] = buf_acts.get(a, 0) + n
    acts["buffers"] = buf_acts
    bpc = mem.dram.width_bytes
    bound = roofline_cycles(layer.macs, sum(dram.values()), design.n_fus, bpc)
    extra = {"repeat": repeat, "blocks": r.blocks * repeat, "tiles": cmd.mapping.n_tiles * repeat,
             "padded_mac_slots": r.mac_slots * repeat, "lowering": how, "mapping": cmd.describe(),
             "dataflow": compiled.fu_graph.dataflow.name,
             "stall_cycles": sum(r.stall_cycles.values()) * repeat}
    for cause, v in r.stall_cycles.items():
        extra[f"stall_cycles.{cause}"] = v * repeat
    return LayerResult(
        name=layer.name, kind=layer.kind, macs=layer.macs, cycles=cycles, time_ns=cycles * 1e3 / design.clock_mhz,
        utilisation=layer.macs / (cycles * design.n_fus) if cycles else 0.0, dram_bytes=dram,
        sram_accesses={f"buffer.{k}": v for k, v in acc.items()}, energy_pj=energy.energy_of(acts),
        roofline_cycles=bound, extra=extra)


def _ideal_layer(compiled, layer, bounds, repeat: int, how: str, energy: EnergyModel) -> LayerResult:
    design = compiled.design
    fg = compiled.fu_graph
    ports = {p.name: p for p in compiled.stream_ports}
    mapping = map_problem(design, bounds, fg.dataflow)
    r = simulate_array(compiled, mapping)
    cycles = r.total_cycles * repeat
    dram = {}
    for port, nbytes in r.bytes_moved.items():
        key = f"{ports[port].operand}.{'write' if ports[port].role is PortRole.OUTPUT else 'read'}"
        dram[key] = dram.get(key, 0) + nbytes * repeat
    slots = r.mac_slots * repeat
    acts = _core_actions(compiled, slots, mapping.n_tiles * mapping.steps * repeat)
    acts["dram"] = _dram_actions(design, dram)
    bound = roofline_cycles(layer.macs, 0, design.n_fus, design.dram_bytes_per_cycle)
    return LayerResult(
        name=layer.name, kind=layer.kind, macs=layer.macs, cycles=cycles, time_ns=cycles * 1e3 / design.clock_mhz,
        utilisation=layer.macs / (cycles * design.n_fus) if cycles else 0.0, dram_bytes=dram,
        energy_pj=energy.energy_of(acts), roofline_cycles=bound,
        extra={"repeat": repeat, "tiles": mapping.n_tiles * repeat, "padded_mac_slots": slots,
               "stall_cycles": r.stall_cycles * repeat, "lowering": how, "dataflow": fg.dataflow.name})


def _stt_workload(compiled, workload, energy: EnergyModel, progress,
                  memory: bool = False) -> tuple[list[LayerResult], list[SkippedLayer]]:
    """Per-layer results of a skewed stt array: with streams that never wait (``memory=False``: what ``archgen
    verify --ideal-dram`` measures), the box ``choose_box`` picks, every lane's beat counted in every slot; or
    through its memory system (dataflow/stt_layer.py: regions loaded, the array, the write-back), on the one
    run-time programmable build (dataflow/stt_command.py: its box and period for every layer, each layer a
    command)."""
    results, skipped = [], []
    for layer in workload.layers:
        if not layer.einsum:
            skipped.append(SkippedLayer(layer.name, layer.kind, layer.elements * layer.count))
            continue
        bounds, repeat, how = lower_layer(layer, compiled.design)
        if progress:
            progress(layer.name)
        results.append(_stt_layer(compiled, layer, bounds, repeat, how, energy, memory))
    return results, skipped


def _stt_build(compiled):
    """The run-time programmable stt build of ``compiled`` (dataflow/stt_command.py), one per design."""
    from archgen.dataflow.stt_command import build_stt
    key = id(compiled)
    if _STT_BUILDS.get(key, (None,))[0] is not compiled:
        _STT_BUILDS[key] = (compiled, build_stt(compiled))
    return _STT_BUILDS[key][1]


_STT_BUILDS: dict = {}


def _stt_layer(compiled, layer, bounds, repeat, how, energy: EnergyModel, memory: bool = False) -> LayerResult:
    """One layer on a skewed stt array (alone or a fused design's view) with streams that never wait, or
    (``memory``) through the stt memory system's contract (dataflow/stt_layer.py)."""
    from archgen.dataflow.stt_array import stt_tiling
    design, net = compiled.design, compiled.network
    ports = {p.name: p for p in compiled.stream_ports}
    if memory:          # the one build ``archgen build --memory`` makes: its box and period for every layer
        from archgen.dataflow.stt_command import plan_for_build
        from archgen.dataflow.stt_layer import simulate_stt_layer
        build = _stt_build(compiled)
        tiling = stt_tiling(net, bounds, build.box, build.period)
    else:
        tiling = stt_tiling(net, bounds)
    r = simulate_array(compiled, tiling)
    cycles = r.total_cycles * repeat
    dram: dict = {}
    stalls = 0
    acc: dict = {}
    if memory:
        plan = plan_for_build(build, bounds, layer.name)
        model = simulate_stt_layer(plan)
        cycles = model.cycles * repeat
        dram = {k: v * repeat for k, v in model.dram_bytes.items()}
        stalls = (model.load_cycles + model.write_cycles) * repeat
        acc = {k: v * repeat for k, v in plan.buffer_accesses().items()}
    else:
        for port, nbytes in r.bytes_moved.items():
            key = f"{ports[port].operand}.{'write' if ports[port].role is PortRole.OUTPUT else 'read'}"
            dram[key] = dram.get(key, 0) + nbytes * repeat
    slots = r.mac_slots * repeat
    bits = max(design.type_of[h.name].bits for h in net.inputs)
    hops = sum(len(c) - 1 for h in net.hops for c in net.chains_of(h.name))
    acts = {"compute": {Action("mult", bits): slots, Action("add", net.acc_width): slots},
            "registers": {Action("register_file", bits): slots * len(net.inputs)},
            "interconnect": {Action("pe_hop", bits): hops * tiling.slots * repeat},
            "dram": _dram_actions(design, dram)}
    if acc:                                 # the stt memory system's buffers (element accesses)
        acts["buffers"] = {}
        for key, n in acc.items():
            x, kind = key.rsplit(".", 1)
            a = Action("sram_read" if kind == "read" else "sram_write",
                       design.acc_type.bits if x == design.operation.output.name else design.type_of[x].bits,
                       capacity_bytes=design.memory_system.buffer(x).bytes)
            acts["buffers"][a] = acts["buffers"].get(a, 0) + n
    return LayerResult(
        name=layer.name, kind=layer.kind, macs=layer.macs, cycles=cycles, time_ns=cycles * 1e3 / design.clock_mhz,
        utilisation=layer.macs / (cycles * design.n_fus) if cycles else 0.0, dram_bytes=dram,
        sram_accesses={f"buffer.{k}": v for k, v in acc.items()}, energy_pj=energy.energy_of(acts),
        roofline_cycles=roofline_cycles(layer.macs, 0, design.n_fus, design.dram_bytes_per_cycle),
        extra={"repeat": repeat, "tiles": tiling.n_tiles * repeat, "padded_mac_slots": slots, "stall_cycles": stalls,
               "lowering": how, "box": dict(tiling.box), "box_period": tiling.period,
               "dataflow": compiled.dataflow.name,
               **({"mapping": plan.describe(), "stt_blocks": plan.n_blocks, "stall_cycles.dram": stalls,
                   "stt_storage_bytes": plan.storage_bytes(),
                   "stall_cycles.buffer_ports": 0, "stall_cycles.array": 0} if memory else {})})
