"""Energy and area: sum over actions of count x energy per action, from a replaceable table.

The default table is ``sim/data/energy_45nm.yaml`` (Horowitz, ISSCC 2014, 45 nm; sources inside the
file). Rules, documented in docs/energy.md:

- arithmetic between two published widths of one operation follows the power law through them
  (``E(b) = E(b0) * (b / b0) ** alpha``), exact at the published points and extrapolated beyond;
- a MAC is a multiply plus an accumulate at ``max(2 * bits, 32)`` bits (integer) or ``bits`` (fp);
- SRAM energy per access interpolates log-log between the table's capacities, extrapolates with
  ``capacity ** capacity_exponent`` (0.5) outside them, and scales linearly with access width;
- technology scaling multiplies logic and SRAM energy by ``(N / N0) * (V / V0) ** 2`` (capacitance
  proportional to feature size) or ``(N / N0) ** 3`` (constant-field Dennard scaling), and area by
  ``(N / N0) ** 2``; DRAM energy is a property of the DRAM chip and is not scaled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from archgen.arch.errors import SpecError, problem

__all__ = ["Action", "EnergyModel", "ACTION_KINDS"]

ACTION_KINDS = ("add", "mult", "mac", "sram_read", "sram_write", "dram_read", "dram_write",
                "register_file", "pe_hop")
_RULES = ("capacitance", "dennard")


@dataclass(frozen=True)
class Action:
    """One kind of action. ``bits`` is the operand width (arithmetic) or the access width (memories);
    ``capacity_bytes`` is the SRAM's size; ``dram`` names the DRAM kind in the table."""

    kind: str
    bits: int
    dtype: str = "int"
    capacity_bytes: int = 0
    dram: str = "hbm2"

    def __post_init__(self):
        problems = []
        if self.kind not in ACTION_KINDS:
            problems.append(problem("action.kind", f"must be one of {ACTION_KINDS}", self.kind))
        if not isinstance(self.bits, int) or self.bits < 1:
            problems.append(problem("action.bits", "must be a positive integer", self.bits))
        if self.dtype not in ("int", "fp"):
            problems.append(problem("action.dtype", "must be 'int' or 'fp'", self.dtype))
        if self.kind.startswith("sram") and (not isinstance(self.capacity_bytes, int) or self.capacity_bytes < 1):
            problems.append(problem("action.capacity_bytes", "an SRAM action needs the SRAM's capacity",
                                    self.capacity_bytes))
        if problems:
            raise SpecError(problems)


def _power_law(points: dict[int, float], x: float) -> float:
    """Log-log interpolation through sorted (x, y) points; the end segments extend as power laws."""
    xs = sorted(points)
    if len(xs) == 1:
        return points[xs[0]] * x / xs[0]
    i = 0
    while i < len(xs) - 2 and x > xs[i + 1]:
        i += 1
    x0, x1 = xs[i], xs[i + 1]
    alpha = math.log(points[x1] / points[x0]) / math.log(x1 / x0)
    return points[x0] * (x / x0) ** alpha


def _positive_points(raw, path, problems) -> dict[int, float]:
    if not isinstance(raw, dict) or not raw:
        problems.append(problem(path, "must map widths/capacities to positive numbers", raw))
        return {}
    out = {}
    for k, v in raw.items():
        if not isinstance(k, int) or k < 1 or not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            problems.append(problem(f"{path}.{k}", "must be a positive integer key with a positive number", v))
        else:
            out[k] = float(v)
    return out


@dataclass(frozen=True)
class EnergyModel:
    name: str
    node_nm: float
    voltage_v: float
    base_node_nm: float
    base_voltage_v: float
    rule: str
    ops_pj: dict
    area_um2: dict
    sram_points: dict
    sram_width_bits: int
    sram_exponent: float
    sram_write_factor: float
    dram_pj_per_bit: dict
    relative_to_mac: dict
    source: str

    @classmethod
    def load(cls, path: str | Path | None = None, *, node_nm: float | None = None,
             voltage_v: float | None = None) -> "EnergyModel":
        """Read a table (default: the built-in 45 nm one) and optionally scale it to ``node_nm``/``voltage_v``."""
        if path is None:
            text, source = resources.files("archgen.sim").joinpath("data/energy_45nm.yaml").read_text(), "energy_45nm.yaml"
        else:
            try:
                text, source = Path(path).read_text(), str(path)
            except OSError as exc:
                raise SpecError([problem("energy_table", f"cannot read {path}: {exc.strerror}", str(path))]) from exc
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError([problem("energy_table", f"not valid YAML: {exc}")], source=source) from exc
        return cls._from_dict(d, source, node_nm, voltage_v)

    @classmethod
    def _from_dict(cls, d, source, node_nm, voltage_v) -> "EnergyModel":
        problems = []
        if not isinstance(d, dict):
            raise SpecError([problem("(top)", "an energy table is a mapping", type(d).__name__)], source=source)
        if d.get("version") != 1:
            problems.append(problem("version", "must be 1", d.get("version")))
        for key in ("node_nm", "voltage_v"):
            v = d.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                problems.append(problem(key, "must be a positive number", v))
        ops, area = {}, {}
        for dtype in ("int", "fp"):
            for op in ("add", "mult"):
                ops[(dtype, op)] = _positive_points((d.get("ops_pj") or {}).get(dtype, {}).get(op), f"ops_pj.{dtype}.{op}",
                                                   problems)
                area[(dtype, op)] = _positive_points((d.get("area_um2") or {}).get(dtype, {}).get(op),
                                                     f"area_um2.{dtype}.{op}", problems)
        for key in ("sram_bitcell", "sram_array_efficiency", "register_bit"):
            v = (d.get("area_um2") or {}).get(key)
            if not isinstance(v, (int, float)) or v <= 0:
                problems.append(problem(f"area_um2.{key}", "must be a positive number", v))
            else:
                area[key] = float(v)
        sram = d.get("sram") or {}
        points = _positive_points(sram.get("points_pj"), "sram.points_pj", problems)
        for key in ("width_bits", "capacity_exponent", "write_factor"):
            v = sram.get(key)
            if not isinstance(v, (int, float)) or v <= 0:
                problems.append(problem(f"sram.{key}", "must be a positive number", v))
        dram = d.get("dram_pj_per_bit")
        if not isinstance(dram, dict) or not dram or any(not isinstance(v, (int, float)) or v <= 0 for v in dram.values()):
            problems.append(problem("dram_pj_per_bit", "must map DRAM kinds to positive pJ/bit", dram))
        rel = d.get("relative_to_mac") or {}
        for key in ("register_file", "pe_hop"):
            if not isinstance(rel.get(key), (int, float)) or rel.get(key) <= 0:
                problems.append(problem(f"relative_to_mac.{key}", "must be a positive number", rel.get(key)))
        rule = (d.get("scaling") or {}).get("rule", "capacitance")
        if rule not in _RULES:
            problems.append(problem("scaling.rule", f"must be one of {_RULES}", rule))
        for key, v in (("node_nm", node_nm), ("voltage_v", voltage_v)):
            if v is not None and (not isinstance(v, (int, float)) or v <= 0):
                problems.append(problem(key, "a scaling target must be a positive number", v))
        if problems:
            raise SpecError(problems, source=source)
        base_node, base_v = float(d["node_nm"]), float(d["voltage_v"])
        return cls(name=str(d.get("name", source)), node_nm=float(node_nm or base_node),
                   voltage_v=float(voltage_v or base_v), base_node_nm=base_node, base_voltage_v=base_v, rule=rule,
                   ops_pj=ops, area_um2=area, sram_points=points, sram_width_bits=int(sram["width_bits"]),
                   sram_exponent=float(sram["capacity_exponent"]), sram_write_factor=float(sram["write_factor"]),
                   dram_pj_per_bit={k: float(v) for k, v in dram.items()},
                   relative_to_mac={k: float(v) for k, v in rel.items()}, source=source)

    # ---- scaling -------------------------------------------------------------------------------------
    @property
    def energy_scale(self) -> float:
        """Factor applied to logic and SRAM energy for the target node and voltage."""
        n = self.node_nm / self.base_node_nm
        if self.rule == "dennard":
            return n ** 3
        return n * (self.voltage_v / self.base_voltage_v) ** 2

    @property
    def area_scale(self) -> float:
        return (self.node_nm / self.base_node_nm) ** 2

    # ---- energy per action (pJ) ----------------------------------------------------------------------
    def op_pj(self, op: str, bits: int, dtype: str = "int") -> float:
        """Energy of one add or mult of ``bits``-wide operands."""
        return _power_law(self.ops_pj[(dtype, op)], bits) * self.energy_scale

    def mac_pj(self, bits: int, dtype: str = "int") -> float:
        acc = max(2 * bits, 32) if dtype == "int" else bits
        return self.op_pj("mult", bits, dtype) + self.op_pj("add", acc, dtype)

    def sram_pj(self, capacity_bytes: int, width_bits: int, write: bool = False) -> float:
        """Energy of one ``width_bits`` access to an SRAM of ``capacity_bytes``."""
        xs = sorted(self.sram_points)
        lo, hi = xs[0], xs[-1]
        if capacity_bytes < lo or capacity_bytes > hi or len(xs) == 1:
            anchor = lo if capacity_bytes < lo else hi
            e = self.sram_points[anchor] * (capacity_bytes / anchor) ** self.sram_exponent
        else:
            e = _power_law(self.sram_points, capacity_bytes)
        e *= width_bits / self.sram_width_bits
        return e * (self.sram_write_factor if write else 1.0) * self.energy_scale

    def dram_pj(self, bits: int, kind: str = "hbm2") -> float:
        if kind not in self.dram_pj_per_bit:
            raise SpecError([problem("action.dram", f"no DRAM of that kind in the table; known: "
                                                    f"{sorted(self.dram_pj_per_bit)}", kind)])
        return self.dram_pj_per_bit[kind] * bits

    def action_pj(self, a: Action) -> float:
        if a.kind in ("add", "mult"):
            return self.op_pj(a.kind, a.bits, a.dtype)
        if a.kind == "mac":
            return self.mac_pj(a.bits, a.dtype)
        if a.kind in ("sram_read", "sram_write"):
            return self.sram_pj(a.capacity_bytes, a.bits, write=a.kind == "sram_write")
        if a.kind in ("dram_read", "dram_write"):
            return self.dram_pj(a.bits, a.dram)
        return self.relative_to_mac[a.kind] * self.mac_pj(a.bits, a.dtype)

    def energy_of(self, actions: dict[str, dict[Action, int | float]]) -> dict[str, float]:
        """``{component: {Action: count}}`` -> ``{component: pJ}``."""
        return {comp: sum(self.action_pj(a) * n for a, n in acts.items()) for comp, acts in actions.items()}

    # ---- area (mm^2) ---------------------------------------------------------------------------------
    def op_area_mm2(self, op: str, bits: int, dtype: str = "int") -> float:
        if op == "mac":
            acc = max(2 * bits, 32) if dtype == "int" else bits
            return self.op_area_mm2("mult", bits, dtype) + self.op_area_mm2("add", acc, dtype)
        return _power_law(self.area_um2[(dtype, op)], bits) * 1e-6 * self.area_scale

    def sram_area_mm2(self, capacity_bytes: int) -> float:
        bits = 8 * capacity_bytes
        return bits * self.area_um2["sram_bitcell"] / self.area_um2["sram_array_efficiency"] * 1e-6 * self.area_scale

    def register_area_mm2(self, bits: int) -> float:
        return bits * self.area_um2["register_bit"] * 1e-6 * self.area_scale
