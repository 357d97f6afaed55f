"""The SpAtten engine spec: schema, semantic checks, and the frozen value every other layer reads.

A spec is YAML (or a dict) with ``version: 1`` and ``kind: spatten``; see arch/specs/spatten.yaml for the
paper's full-size design. Loading runs in two phases, collecting every problem into one SpecError:
(1) JSON Schema (types, ranges, unknown keys), (2) semantics (divisibility, powers of two, SRAM sizes that
match the token count). The result, :class:`SpattenSpec`, also derives the fixed-point formats and the
the fields of the pipeline latencies (:func:`spatten_formats`, :class:`SpattenLatencies`). The latencies
themselves depend on the QxK and PxV arrays the dataflow analysis derives, so
:func:`archgen.dataflow.spatten_arrays.spatten_latencies` computes them; the RTL generator and the cycle
model both read them from there, so they cannot drift.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from archgen.arch.errors import SpecError, problem
from archgen.arch.reader import read_yaml_file
from archgen.arch.schema import schema_problems

__all__ = [
    "SPATTEN_SCHEMA", "SpattenSpec", "QKUnit", "PVUnit", "SoftmaxUnit", "TopKUnit", "SramUnit",
    "ProgressiveQuantization", "DramSpec", "PruningSpec", "PruneSchedule", "SpattenFormats", "SpattenLatencies",
    "load_spatten_spec", "is_spatten_spec", "spatten_formats", "spec_hash", "QK_OPERATION", "PV_OPERATION",
    "builtin_spec_path",
]

_POS = {"type": "integer", "minimum": 1, "maximum": 1 << 20}   # every count here is far below a million


def _obj(props: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": props,
            "required": list(props) if required is None else required}


# The multiplier arrays are einsums over g (key group, time), l (lane), d (head dimension), mapped by
# archgen.dataflow.spatten_arrays; these are the paper's forms.
QK_OPERATION = "S[g,l] += Q[d] * K[g,l,d]"
PV_OPERATION = "U[g,d] += P[g,l] * V[g,l,d]"

_ARRAY_UNIT = {
    "multipliers": _POS, "bits": {"type": "integer", "minimum": 2, "maximum": 32},
    "operation": {"type": "string", "description": "einsum over g, l, d (see archgen.dataflow.spatten_arrays)"},
    "control": {"type": "array", "items": {"type": "integer", "minimum": -4, "maximum": 4}, "minItems": 2,
                "maxItems": 2, "description": "control vector over the array axes (l, d); [0, 0] = same-cycle "
                "broadcast and adder trees, non-zero = systolic skew and reduction chains"},
}

_RATIO = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
_SCHEDULE = {
    "start": dict(_RATIO, description="fraction removed at the first pruned layer"),
    "end": dict(_RATIO, description="fraction removed at the last layer (a linear ramp in between)"),
    "unpruned_layers": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "fraction of the leading layers left dense (paper: 0.15 tokens, 0.30 heads)"},
    "per_layer": {"type": "array", "items": _RATIO, "minItems": 1, "maxItems": 1024,
                  "description": "fraction removed before each layer; replaces start/end/unpruned_layers"},
}

SPATTEN_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "archgen SpAtten engine spec",
    **_obj({
        "version": {"const": 1},
        "kind": {"const": "spatten"},
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "description": {"type": "string", "description": "one line for `archgen list`"},
        "clock_mhz": {"type": "number", "minimum": 1, "maximum": 10000},
        "technology": {"type": "string"},
        "head_dim": {"type": "integer", "minimum": 2, "maximum": 1024},
        "max_tokens": {"type": "integer", "minimum": 2, "maximum": 65536},
        "units": _obj({
            "qk": _obj({**_ARRAY_UNIT, "preempt": {
                "type": "boolean", "description": "an LSB refetch takes the QxK stage in the cycle after its PQ "
                "decision even while a later query's groups are being issued; that query's QxK is aborted and "
                "rerun after the refetch's (default true; docs/spatten.md, 'QxK preemption')"}},
                required=["multipliers", "bits"]),
            "pv": _obj(_ARRAY_UNIT, required=["multipliers", "bits"]),
            "softmax": _obj({"parallelism": _POS, "fifo_depth": _POS,
                             "exp_taylor_order": {"type": "integer", "minimum": 2, "maximum": 8}},
                            required=["parallelism", "fifo_depth"]),
            "topk": _obj({"parallelism": _POS, "fifo_depth": {"type": "integer", "minimum": 2, "maximum": 1 << 20},
                          "feed": {"type": "boolean", "description": "the local-V top-k engine takes a pruned row "
                                   "that cannot need its LSBs while the exponential sweep writes it (default "
                                   "true; docs/spatten.md, 'Top-k feed')"},
                          "fallback": {"enum": ["tail", "all", "none"], "description": "which commands may have "
                                       "a pruned row whose local-V top-k is not done when the PxV stage could take it "
                                       "unpruned swept unpruned (those commands get dense_ok and load all their "
                                       "values): tail = the last fallback_tail commands of each stream, where "
                                       "nothing hides the top-k (default); all = every command of several queries (local-V never delays a "
                                       "row, but on softmax-bound streams nearly every row falls back); none = rows "
                                       "wait for their top-k (docs/spatten.md, 'Fallback')"},
                          "fallback_tail": {"type": "integer", "minimum": 1, "maximum": 1024,
                                            "description": "with fallback tail: how many of the last commands of "
                                            "each stream (layer, or decode step) get dense_ok and load their values "
                                            "whole (default 2 = the core's K/V bank count, units.key_sram.buffers: "
                                            "the last two commands of a stream have no later command whose loads "
                                            "and compute hide their top-k + keep-mask latency before their causal "
                                            "value fetch; loading them whole costs 2.6% more decode DRAM bytes "
                                            "and makes every GPT-2 run of the bench faster: docs/spatten.md, "
                                            "'Fallback'; docs/spatten_results.md, sixteenth session)"},
                          "sample_register": {"type": "boolean", "description": "build the top-k engines with "
                                              "their pivot sample registered before its compare (H133: about "
                                              "100 MHz instead of 87 MHz on the ECP5 at P = 4, a few % more "
                                              "top-k cycles; default false; docs/spatten.md, 'Top-k sample "
                                              "register')"}},
                         required=["parallelism", "fifo_depth"]),
            "key_sram": _obj({"bytes": {"type": "integer", "minimum": 1, "maximum": 1 << 34}, "buffers": {"type": "integer", "minimum": 1, "maximum": 4}}),
            "value_sram": _obj({"bytes": {"type": "integer", "minimum": 1, "maximum": 1 << 34}, "buffers": {"type": "integer", "minimum": 1, "maximum": 4}}),
        }),
        "progressive_quantization": _obj({
            "msb_bits": {"type": "integer", "minimum": 1, "maximum": 32}, "lsb_bits": {"type": "integer", "minimum": 0, "maximum": 32},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1}}),
        "pruning": _obj({
            "token": _obj(_SCHEDULE, required=[]),
            "head": _obj(_SCHEDULE, required=[]),
            "local_v": dict(_RATIO, description="fraction of V rows removed per query by the local top-k "
                            "(SpAtten's local value pruning)"),
        }, required=[]),
        "dram": _obj({"kind": {"type": "string"}, "channels": _POS, "channel_bits": _POS,
                      "bandwidth_gb_s": {"type": "number", "minimum": 0.001, "maximum": 100000}}),
    }, required=["version", "kind", "name", "clock_mhz", "head_dim", "max_tokens", "units",
                 "progressive_quantization", "dram"]),
}


@dataclass(frozen=True)
class QKUnit:
    multipliers: int
    bits: int
    operation: str = QK_OPERATION
    control: tuple[int, int] = (0, 0)
    preempt: bool = True    # an LSB refetch preempts a later query's QxK while its groups are issued (H117)


@dataclass(frozen=True)
class PVUnit:
    multipliers: int
    bits: int
    operation: str = PV_OPERATION
    control: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class SoftmaxUnit:
    parallelism: int
    fifo_depth: int
    exp_taylor_order: int = 5


@dataclass(frozen=True)
class TopKUnit:
    parallelism: int
    fifo_depth: int
    feed: bool = True       # the top-k feed (H98): engines take rows while the exponential sweep writes them
    fallback: str = "tail"  # which commands' late top-k rows are swept unpruned (H103, H107): tail | all | none
    fallback_tail: int = 2  # with tail: the last this-many commands of each stream get dense_ok (H120; = K/V banks)
    sample_register: bool = False   # engines with the registered pivot sample (H133: ~100 MHz at P = 4, more cycles)


@dataclass(frozen=True)
class SramUnit:
    bytes: int
    buffers: int


@dataclass(frozen=True)
class ProgressiveQuantization:
    msb_bits: int
    lsb_bits: int
    threshold: float


@dataclass(frozen=True)
class DramSpec:
    kind: str
    channels: int
    channel_bits: int
    bandwidth_gb_s: float


@dataclass(frozen=True)
class PruneSchedule:
    """Fractions of tokens (or heads) removed per layer: the paper's ramp, or an explicit list."""

    start: float = 0.0
    end: float = 0.0
    unpruned_layers: float = 0.15
    per_layer: tuple[float, ...] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.per_layer and any(self.per_layer)) or self.start > 0 or self.end > 0


@dataclass(frozen=True)
class PruningSpec:
    """Run-time pruning settings (the RTL is the same for all of them): cascade token and head pruning
    and local value pruning, as fractions removed (SpAtten, Sec. III)."""

    token: PruneSchedule = PruneSchedule()
    head: PruneSchedule = PruneSchedule(unpruned_layers=0.30)
    local_v: float = 0.0


@dataclass(frozen=True)
class SpattenSpec:
    """One SpAtten engine; ``lanes`` (= qk.multipliers / head_dim) keys are scored per cycle."""

    name: str
    clock_mhz: float
    technology: str
    head_dim: int
    max_tokens: int
    qk: QKUnit
    pv: PVUnit
    softmax: SoftmaxUnit
    topk: TopKUnit
    key_sram: SramUnit
    value_sram: SramUnit
    pq: ProgressiveQuantization
    dram: DramSpec
    version: int = 1
    pruning: PruningSpec = PruningSpec()

    @property
    def lanes(self) -> int:
        """Keys scored per cycle by the QxK unit, also the softmax and PxV lane count."""
        return self.qk.multipliers // self.head_dim

    @property
    def groups(self) -> int:
        """Rows of ``lanes`` tokens in one key/value buffer."""
        return self.max_tokens // self.lanes

    @property
    def bits(self) -> int:
        return self.qk.bits

    def to_dict(self, *, runtime: bool = True) -> dict:
        """The spec as plain data; ``runtime=False`` leaves out the run-time pruning settings (the
        hardware part, which the manifest and the spec hash record)."""
        d = asdict(self)
        if not runtime:
            d.pop("pruning")
        else:
            for kind in ("token", "head"):
                sched = d["pruning"][kind]
                if sched["per_layer"] is None:
                    del sched["per_layer"]
                else:
                    sched = {"per_layer": list(sched["per_layer"])}
                d["pruning"][kind] = sched
        d["progressive_quantization"] = d.pop("pq")
        d["units"] = {k: d.pop(k) for k in ("qk", "pv", "softmax", "topk", "key_sram", "value_sram")}
        d["kind"] = "spatten"
        return d


def spec_hash(spec: SpattenSpec) -> str:
    """sha256 of the canonical JSON of the hardware spec (what the manifest records). Pruning is a
    run-time setting that does not change the RTL, so it is not part of the hash."""
    d = spec.to_dict(runtime=False)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def is_spatten_spec(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == "spatten"


def builtin_spec_path(name: str) -> Path:
    """Path of a built-in spec, e.g. ``builtin_spec_path("spatten_small")``."""
    return Path(__file__).resolve().parent / "specs" / f"{name}.yaml"


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _schema_problems(data: dict) -> list:
    return schema_problems(SPATTEN_SCHEMA, data, {"version": "only spec version 1 exists"})


def _semantic_problems(d: dict) -> list:
    out = []
    u = d["units"]
    hd, n = d["head_dim"], d["max_tokens"]
    qk, pv, sm, tk = u["qk"], u["pv"], u["softmax"], u["topk"]
    if not _is_pow2(hd):
        out.append(problem("head_dim", "must be a power of two (the QxK adder tree is binary)", hd))
    if qk["multipliers"] % hd:
        out.append(problem("units.qk.multipliers", f"must be a multiple of head_dim = {hd}", qk["multipliers"]))
    lanes = qk["multipliers"] // hd if qk["multipliers"] % hd == 0 else None
    if lanes is not None and not _is_pow2(lanes):
        out.append(problem("units.qk.multipliers", "multipliers / head_dim (scores per cycle) must be a power "
                           "of two", qk["multipliers"]))
    if pv["multipliers"] != qk["multipliers"]:
        out.append(problem("units.pv.multipliers", "this generator needs as many PxV as QxK multipliers "
                           f"({qk['multipliers']}): both run head_dim x lanes", pv["multipliers"]))
    if pv["bits"] != qk["bits"]:
        out.append(problem("units.pv.bits", f"must equal units.qk.bits = {qk['bits']}", pv["bits"]))
    if lanes is not None and sm["parallelism"] != lanes:
        out.append(problem("units.softmax.parallelism", f"must equal qk.multipliers / head_dim = {lanes} "
                           "(this generator feeds softmax lane for lane)", sm["parallelism"]))
    if sm["fifo_depth"] * sm["parallelism"] < n:
        out.append(problem("units.softmax.fifo_depth", f"fifo_depth x parallelism must hold max_tokens = {n} "
                           "scores (softmax needs the whole row before normalising)", sm["fifo_depth"]))
    if not _is_pow2(tk["parallelism"]):
        out.append(problem("units.topk.parallelism", "must be a power of two", tk["parallelism"]))
    elif lanes is not None and tk["parallelism"] < lanes:
        out.append(problem("units.topk.parallelism", f"must be at least the softmax lanes ({lanes})",
                           tk["parallelism"]))
    if lanes is not None and n % lanes:
        out.append(problem("max_tokens", f"must be a multiple of the lanes ({lanes})", n))
    if not _is_pow2(n):
        out.append(problem("max_tokens", "must be a power of two (buffer addressing)", n))
    for key in ("key_sram", "value_sram"):
        want = u[key]["buffers"] * n * hd * qk["bits"] // 8
        if u[key]["bytes"] != want:
            out.append(problem(f"units.{key}.bytes", f"must be buffers x max_tokens x head_dim x bits / 8 = {want}",
                               u[key]["bytes"]))
    for kind in ("token", "head"):
        sched = d.get("pruning", {}).get(kind, {})
        if "per_layer" in sched and set(sched) & {"start", "end", "unpruned_layers"}:
            out.append(problem(f"pruning.{kind}.per_layer", "give either per_layer or start/end/unpruned_layers, "
                               f"not both (to replace the spec's ramp, set the whole schedule: "
                               f"--set 'pruning.{kind}={{per_layer: [...]}}')", sorted(sched)))
    pq = d["progressive_quantization"]
    if pq["msb_bits"] + pq["lsb_bits"] != qk["bits"]:
        out.append(problem("progressive_quantization.msb_bits", f"msb_bits + lsb_bits must equal units.qk.bits "
                           f"= {qk['bits']} (the buffers hold full-precision values)", pq["msb_bits"]))
    return out


def load_spatten_spec(source: str | Path | dict) -> SpattenSpec:
    """Load and validate a SpAtten spec from a YAML path or a dict; raise SpecError listing every problem."""
    origin = None
    if isinstance(source, dict):
        data = source
    else:
        origin = str(source)
        data = read_yaml_file(source)
    if not isinstance(data, dict):
        raise SpecError([problem("", "a spec must be a mapping", type(data).__name__)], source=origin)
    problems = _schema_problems(data)
    if problems:
        raise SpecError(problems, source=origin)
    problems = _semantic_problems(data)
    if problems:
        raise SpecError(problems, source=origin)
    u = data["units"]
    return SpattenSpec(
        name=data["name"], clock_mhz=float(data["clock_mhz"]), technology=data.get("technology", "unspecified"),
        head_dim=data["head_dim"], max_tokens=data["max_tokens"],
        qk=QKUnit(**{**u["qk"], "control": tuple(u["qk"].get("control", (0, 0)))}),
        pv=PVUnit(**{**u["pv"], "control": tuple(u["pv"].get("control", (0, 0)))}), softmax=SoftmaxUnit(**u["softmax"]),
        topk=TopKUnit(**u["topk"]), key_sram=SramUnit(**u["key_sram"]), value_sram=SramUnit(**u["value_sram"]),
        pq=ProgressiveQuantization(msb_bits=data["progressive_quantization"]["msb_bits"],
                                   lsb_bits=data["progressive_quantization"]["lsb_bits"],
                                   threshold=float(data["progressive_quantization"]["threshold"])),
        pruning=_pruning(data.get("pruning", {})),
        dram=DramSpec(kind=data["dram"]["kind"], channels=data["dram"]["channels"],
                      channel_bits=data["dram"]["channel_bits"],
                      bandwidth_gb_s=float(data["dram"]["bandwidth_gb_s"])),
    )


def _pruning(d: dict) -> PruningSpec:
    def schedule(x: dict, default: PruneSchedule) -> PruneSchedule:
        per = x.get("per_layer")
        return PruneSchedule(start=float(x.get("start", default.start)), end=float(x.get("end", default.end)),
                             unpruned_layers=float(x.get("unpruned_layers", default.unpruned_layers)),
                             per_layer=tuple(float(v) for v in per) if per is not None else None)
    base = PruningSpec()
    return PruningSpec(token=schedule(d.get("token", {}), base.token), head=schedule(d.get("head", {}), base.head),
                       local_v=float(d.get("local_v", 0.0)))


def _clog2(x: int) -> int:
    return max(0, (x - 1).bit_length())


@dataclass(frozen=True)
class SpattenFormats:
    """Fixed-point formats of the engine (ours; the paper gives only the 12-bit datapath).

    q, k, v: signed ``bits``-bit integers. score: signed ``score_bits`` integer (exact dot product).
    exp: unsigned UQ1.``exp_frac`` (1.0 = 2**exp_frac). prob: unsigned UQ1.``prob_frac`` in ``prob_bits``
    bits (1.0 = 2**prob_frac). out: signed ``acc_bits`` integer = sum(prob_fx * v), i.e. the attention
    output in units of 2**-prob_frac of V's unit. recip: floor(2**recip_num_bits / sum(exp)).
    """

    bits: int
    score_bits: int
    exp_frac: int
    exp_bits: int
    sum_bits: int
    recip_guard: int
    recip_num_bits: int
    recip_bits: int
    prob_frac: int
    prob_bits: int
    acc_bits: int
    shift_bits: int
    log2e_fx: int
    ln2_fx: int
    taylor_coeffs: tuple[int, ...]


def spatten_formats(spec: SpattenSpec) -> SpattenFormats:
    import math
    b, d, n = spec.bits, spec.head_dim, spec.max_tokens
    exp_frac = 16
    guard = _clog2(n) + 1
    order = spec.softmax.exp_taylor_order
    coeffs = tuple(round((-1) ** i / math.factorial(i) * 2 ** exp_frac) for i in range(order + 1))
    return SpattenFormats(
        bits=b, score_bits=2 * b + _clog2(d), exp_frac=exp_frac, exp_bits=exp_frac + 1,
        sum_bits=exp_frac + 1 + _clog2(n + 1), recip_guard=guard,
        recip_num_bits=2 * exp_frac + guard, recip_bits=exp_frac + guard + 1,
        prob_frac=15, prob_bits=16, acc_bits=16 + b + _clog2(n) + 1, shift_bits=6,
        log2e_fx=round(math.log2(math.e) * 2 ** exp_frac), ln2_fx=round(math.log(2) * 2 ** exp_frac),
        taylor_coeffs=coeffs)


@dataclass(frozen=True)
class SpattenLatencies:
    """Cycle contract of the generated core (ours; see docs/spatten.md for the phase diagram).

    Each ``*_pipe`` is the number of register stages between issuing a row and its result; a phase over
    ``g`` rows takes ``g + pipe`` cycles. ``recip`` is the divider's fixed cycle count.
    """

    query_accept: int
    qk_pipe: int
    exp_pipe: int
    recip: int
    pq_decide: int
    pv_pipe: int
    topk_handoff: int
    output: int
