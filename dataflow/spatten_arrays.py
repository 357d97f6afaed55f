"""SpAtten's QxK and prob x V units as affine arrays, and the core's cycle constants that follow from them.

The two multiplier arrays of the attention core are not written by hand: each is an einsum over three
loops mapped onto an ``lanes x head_dim`` array by archgen's own analysis (derive_interconnect ->
primitive graph -> LP pipelining), exactly like a generated GEMM array. The spec gives the einsums
(``units.qk.operation``, ``units.pv.operation``) over the loops

- ``g``: the key group, one per cycle (time, the tile-inner loop),
- ``l``: the lane, ``lanes = qk.multipliers / head_dim`` tokens side by side (array axis 0),
- ``d``: the element of the head dimension (array axis 1),

and a control vector (``[0, 0]``: every FU works on the same group in the same cycle). With the paper's
forms, ``S[g,l] += Q[d] * K[g,l,d]`` and ``U[g,d] += P[g,l] * V[g,l,d]``, the reuse analysis finds

- QxK: Q stationary (held for the pass; FU (l, d) reads element d, so one register per d serves every
  lane), K streamed one lane per FU, and S reduced over the array axis of ``d`` by one adder tree per lane;
- PxV: P broadcast along ``d`` (one lane per ``l``), V streamed one lane per FU, and U reduced over the
  axis of ``l`` by one adder tree per feature ``d``; the core accumulates U over the groups ``g``.

The LP places the pipeline registers for the spec's clock (ASIC delay table), so the units' latencies
(and through them the core's ``qk_pipe`` and ``pv_pipe``) come out of the analysis, for the RTL and the
cycle model alike: :func:`spatten_latencies` is the one place both read them from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from archgen.arch.errors import Problem, SpecError, problem
from archgen.arch.spatten_spec import SpattenLatencies, SpattenSpec, spatten_formats
from archgen.arch.spec import Design, load_spec_data
from archgen.dataflow.spatten_stages import (accept_stages, exp_stages, output_stages, pq_stages, pv_feed_stages,
                                             qk_feed_stages, recip_cycles, topk_handoff_stages)
from archgen.dataflow.compile import CompiledArray, compile_array
from archgen.dataflow.interconnect import FUGraph, OperandPlan
from archgen.dataflow.ir import Role
from archgen.dataflow.pipelining import ArrayTiming

__all__ = ["EinsumArray", "spatten_array_design", "spatten_arrays", "spatten_latencies", "operand_index",
           "stationary_footprint", "ARRAY_LOOPS"]

ARRAY_LOOPS = ("g", "l", "d")
_SPATIAL = {"l": 0, "d": 1}


def _clog2(x: int) -> int:
    return max(0, (x - 1).bit_length())


@dataclass(frozen=True)
class EinsumArray:
    """One of the core's multiplier arrays: its design, FU graph, retimed timing and port meaning.

    ``roles`` maps the core's names to operand names: QxK {query, key, score}, PxV {prob, value, partial}.
    ``latency`` is the number of cycles from a step's operands at the unit's ports to its results.
    """

    unit: str
    compiled: CompiledArray = field(repr=False)
    roles: dict
    latency: int

    @property
    def design(self) -> Design:
        return self.compiled.design

    @property
    def fg(self) -> FUGraph:
        return self.compiled.fu_graph

    @property
    def timing(self) -> ArrayTiming:
        return self.compiled.timing

    def plan(self, role: str) -> OperandPlan:
        return self.fg.plan(self.roles[role])


def operand_index(design: Design, operand: str, coord) -> tuple[int, ...]:
    """Element of ``operand`` that FU ``coord`` touches in the first step of a tile (time loops at 0)."""
    op = design.operation
    x = next(o for o in op.operands if o.name == operand)
    df = design.dataflow()
    loop = {d: 0 for d in op.dims}
    for axis, dim in df.spatial_dims.items():
        loop[dim] = int(coord[axis])
    return tuple(sum(e.coeff(d) * v for d, v in loop.items()) + e.const for e in x.indices)


def stationary_footprint(design: Design, operand: str) -> tuple[tuple[int, ...], ...]:
    """The distinct elements of a stationary operand over the array, sorted: its port's lane order."""
    import itertools
    coords = itertools.product(*[range(e) for e in design.shape])
    return tuple(sorted({operand_index(design, operand, s) for s in coords}))


def spatten_array_design(spec: SpattenSpec, unit: str) -> Design:
    """The array Design of unit ``qk`` or ``pv`` (types from the core's fixed-point formats)."""
    f = spatten_formats(spec)
    u = spec.qk if unit == "qk" else spec.pv
    where = f"units.{unit}.operation"
    from archgen.arch.einsum import EinsumError, parse_operation
    try:
        op = parse_operation(u.operation)
    except EinsumError as err:
        raise SpecError([problem(where, f"{err.reason} at position {err.pos}", u.operation)]) from None
    if sorted(op.dims) != sorted(ARRAY_LOOPS) or len(op.inputs) != 2:
        raise SpecError([problem(where, "must be a two-input einsum over exactly the loops g (key group, time), "
                                 "l (lane) and d (head dimension), e.g. 'S[g,l] += Q[d] * K[g,l,d]'",
                                 u.operation)])
    L, D = spec.lanes, spec.head_dim
    if unit == "qk":
        out_t = f"int{f.score_bits}"
        in_t = {x.name: f"int{spec.bits}" for x in op.inputs}
    else:
        out_t = f"int{f.prob_bits + spec.bits + 1 + _clog2(L)}"
        # the probability is the input that does not use d (UQ1.15, unsigned); the value is signed
        in_t = {x.name: (f"int{spec.bits}" if x.uses("d") else f"uint{f.prob_bits}") for x in op.inputs}
    data = {
        "version": 1, "kind": "array", "name": f"{spec.name}_{unit}", "clock_mhz": spec.clock_mhz,
        "operation": u.operation, "types": {**in_t, op.output.name: out_t},
        "array": {"shape": [L, D]},
        "dataflows": {unit: {"spatial": dict(_SPATIAL), "order": ["l", "d", "g"], "inner": ["g"],
                             "control": list(u.control)}},
        "bounds": {"g": spec.groups, "l": L, "d": D},
    }
    try:
        return load_spec_data(data, source=f"units.{unit}")
    except SpecError as err:
        raise _in_unit(unit, err) from None


def _in_unit(unit: str, err: SpecError) -> SpecError:
    """An error of the unit's generated array spec, re-addressed to the SpAtten spec's own fields: the
    user wrote ``units.<unit>.operation`` / ``.control``, not the array spec's ``dataflows`` or ``types``."""
    def where(path: str) -> str:
        if path.endswith(".control"):
            return f"units.{unit}.control"
        return f"units.{unit}.operation"
    return SpecError([Problem(where(p.path or ""), p.message, p.got, p.has_got) for p in err.problems])


def _roles(unit: str, design: Design, fg: FUGraph) -> dict:
    """Check the derived plans are the ones the core wires up; name them by role."""
    L, D = design.shape
    where = f"units.{unit}.operation"
    out = fg.output
    plans = {p.name: p for p in fg.inputs}
    got = {n: (str(p.role), p.n_lanes) for n, p in plans.items()}
    if out.role is not Role.STREAM_OUT or out.psum_in:
        raise SpecError([problem(where, "the output must leave the array once per group (it must use g and "
                                 "every loop it does not use must be reduced across the array)", str(out.role))])
    if unit == "qk":
        stat = [n for n, p in plans.items() if p.role is Role.STATIONARY]
        full = [n for n, p in plans.items() if p.role is Role.STREAM and p.n_lanes == L * D]
        if len(stat) != 1 or len(full) != 1 or stationary_footprint(design, stat[0]) != tuple((d,) for d in range(D)) \
                or out.n_lanes != L:
            raise SpecError([problem(where, "QxK must hold the query over the head dimension (an operand indexed "
                                     "[d] only) against one key element per FU (indexed [g,l,d]), and give one "
                                     "score per lane", got)])
        return {"query": stat[0], "key": full[0], "score": out.name}
    bcast = [n for n, p in plans.items() if p.role is Role.STREAM and p.n_lanes == L]
    full = [n for n, p in plans.items() if p.role is Role.STREAM and p.n_lanes == L * D]
    if len(bcast) != 1 or len(full) != 1 or out.n_lanes != D:
        raise SpecError([problem(where, "PxV must stream one probability per lane (indexed [g,l]) against one "
                                 "value element per FU (indexed [g,l,d]), and give one partial sum per "
                                 "feature d", got)])
    return {"prob": bcast[0], "value": full[0], "partial": out.name}


@lru_cache(maxsize=16)
def _arrays(spec: SpattenSpec, pipeline: bool) -> dict[str, EinsumArray]:
    out = {}
    for unit in ("qk", "pv"):
        design = spatten_array_design(spec, unit)       # its clock is the spec's
        try:
            compiled = compile_array(design, pipeline=pipeline, target="asic",
                                     single_tile=("l", "d"))   # the array spans l and d
        except SpecError as err:
            if err.source is not None:                  # not the analysis: lowering, timing
                raise
            raise _in_unit(unit, err) from None
        roles = _roles(unit, design, compiled.fu_graph)
        out[unit] = EinsumArray(unit, compiled, roles, compiled.schedule.out_latency)
    return out


def spatten_arrays(spec: SpattenSpec, *, pipeline: bool = True) -> dict[str, EinsumArray]:
    """``{"qk": EinsumArray, "pv": EinsumArray}``, pipelined for the spec's clock (cached per spec)."""
    return _arrays(spec, pipeline)


def spatten_latencies(spec: SpattenSpec) -> SpattenLatencies:
    """The core's cycle constants (docs/spatten.md); qk_pipe and pv_pipe include the arrays' latencies."""
    f = spatten_formats(spec)
    arrays = spatten_arrays(spec)
    return SpattenLatencies(
        query_accept=len(accept_stages()),
        # key SRAM read, then the QxK array (multipliers, adder trees, the LP's registers); then softmax
        qk_pipe=len(qk_feed_stages()) + arrays["qk"].latency,
        # the exponential pipeline and the divider as rtlgen/softmax.py builds them (one stage per entry)
        exp_pipe=len(exp_stages(f)),
        recip=recip_cycles(f),
        pq_decide=len(pq_stages()),
        # exponential read, normalise (x reciprocal) while the value row is read, then the PxV array;
        # its partial sums enter the accumulator that cycle
        pv_pipe=len(pv_feed_stages()) + arrays["pv"].latency,
        topk_handoff=len(topk_handoff_stages()),
        output=len(output_stages()),
    )
