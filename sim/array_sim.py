"""Whole workloads on a generated array: each compute layer lowered onto the design's operation,
simulated with the array's cycle model at the spec's DRAM bandwidth, costed with the energy table.

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
from archgen.mappings.tiling import map_problem

from .array_model import simulate_array
from .energy import Action, EnergyModel
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
                               pipeline: bool = True, ideal_dram: bool = False) -> tuple[list[LayerResult], list[SkippedLayer]]:
    """Per-layer results on the design as ``archgen build`` generates it (pipelined for its clock).

    ``ideal_dram``: streams never wait on DRAM (the condition the Verilator testbench creates), so a
    layer's cycles equal what ``archgen verify`` measures on the RTL."""
    compiled = compile_array(design, dataflow, pipeline=pipeline)
    fg = compiled.fu_graph
    ports = {p.name: p for p in compiled.stream_ports}
    energy = energy or EnergyModel.load()
    bpc = design.dram_bytes_per_cycle
    model_bpc = None if ideal_dram else bpc
    results, skipped = [], []
    hops = sum(1 for u, v in fg.graph.edges if fg.graph.nodes[u]["kind"] == NodeKind.FU
               and fg.graph.nodes[v]["kind"] == NodeKind.FU)
    in_bits = [p.width for p in fg.inputs]
    for layer in workload.layers:
        if progress:
            progress(layer.name)
        if not layer.einsum:
            skipped.append(SkippedLayer(layer.name, layer.kind, layer.elements * layer.count))
            continue
        bounds, repeat, how = lower_layer(layer, design)
        mapping = map_problem(design, bounds, fg.dataflow)
        r = simulate_array(compiled, mapping, bytes_per_cycle=model_bpc)
        cycles = r.total_cycles * repeat
        macs = layer.macs
        dram = {}
        for port, nbytes in r.bytes_moved.items():
            key = f"{ports[port].operand}.{'write' if ports[port].role is PortRole.OUTPUT else 'read'}"
            dram[key] = dram.get(key, 0) + nbytes * repeat
        slots = r.mac_slots * repeat
        steps_total = mapping.n_tiles * mapping.steps * repeat
        acts = {
            "compute": {Action("mult", max(in_bits)): slots, Action("add", fg.acc_width): slots},
            "registers": {Action("register_file", max(in_bits)): slots * len(in_bits)},
            "interconnect": {Action("pe_hop", max(in_bits)): hops * steps_total},
            "dram": {Action("dram_read", 64, dram=design.dram_kind): sum(v for k, v in dram.items() if k.endswith("read")) / 8,
                     Action("dram_write", 64, dram=design.dram_kind): sum(v for k, v in dram.items() if k.endswith("write")) / 8},
        }
        epj = energy.energy_of(acts)
        bound = roofline_cycles(macs, 0 if ideal_dram else sum(dram.values()), design.n_fus, bpc)
        results.append(LayerResult(
            name=layer.name, kind=layer.kind, macs=macs, cycles=cycles, time_ns=cycles * 1e3 / design.clock_mhz,
            utilisation=macs / (cycles * design.n_fus) if cycles else 0.0, dram_bytes=dram,
            energy_pj=epj, roofline_cycles=bound,
            extra={"repeat": repeat, "tiles": mapping.n_tiles * repeat, "padded_mac_slots": slots,
                   "stall_cycles": r.stall_cycles * repeat, "lowering": how}))
    return results, skipped
