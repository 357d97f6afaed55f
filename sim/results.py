"""Per-layer simulation results: one frozen record per layer, the unit every report reads."""
from __future__ import annotations

from dataclasses import dataclass, field

from archgen.arch.errors import ArchgenError

__all__ = ["LayerResult", "RooflineViolation", "roofline_cycles", "totals"]


class RooflineViolation(ArchgenError):
    """A model produced a layer faster than its roofline: a bug in the model, never a user error."""


def roofline_cycles(macs: float, dram_bytes: float, peak_macs_per_cycle: float, bytes_per_cycle: float) -> float:
    """Lower bound on a layer's cycles: ``max(macs / peak, bytes / bandwidth)``."""
    if peak_macs_per_cycle <= 0 or bytes_per_cycle <= 0:
        raise ValueError(f"peak MACs/cycle and bytes/cycle must be positive, not {peak_macs_per_cycle!r}, "
                         f"{bytes_per_cycle!r}")
    return max(macs / peak_macs_per_cycle, dram_bytes / bytes_per_cycle)


@dataclass(frozen=True)
class LayerResult:
    """What one layer cost on one design.

    ``dram_bytes`` is keyed ``"<tensor>.<read|write>"`` (e.g. ``"key_msb.read"``); ``sram_accesses``
    by memory name; ``energy_pj`` by component. ``roofline_cycles`` is the bound the layer may not beat;
    ``extra`` holds model-specific figures (tokens kept, dense-baseline numbers) with units in the key.
    """

    name: str
    kind: str
    macs: int
    cycles: float
    time_ns: float
    utilisation: float
    dram_bytes: dict[str, int] = field(default_factory=dict)
    sram_accesses: dict[str, int] = field(default_factory=dict)
    energy_pj: dict[str, float] = field(default_factory=dict)
    roofline_cycles: float = 0.0
    extra: dict[str, float | str] = field(default_factory=dict)

    def __post_init__(self):
        bad = [k for k in self.dram_bytes if k.rsplit(".", 1)[-1] not in ("read", "write")]
        if bad:
            raise ValueError(f"dram_bytes keys must end in .read or .write, not {bad!r}")
        # the tolerance absorbs float rounding of cycle sums, nothing more
        if self.cycles < self.roofline_cycles * (1 - 1e-9) - 1e-6:
            raise RooflineViolation(f"layer {self.name!r}: {self.cycles} cycles beats its roofline bound of "
                                    f"{self.roofline_cycles} cycles")

    @property
    def dram_total_bytes(self) -> int:
        return sum(self.dram_bytes.values())

    @property
    def dram_read_bytes(self) -> int:
        return sum(v for k, v in self.dram_bytes.items() if k.endswith(".read"))

    @property
    def dram_write_bytes(self) -> int:
        return sum(v for k, v in self.dram_bytes.items() if k.endswith(".write"))

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def operational_intensity(self) -> float:
        """MACs per DRAM byte (infinite when the layer moves no DRAM data)."""
        return self.macs / self.dram_total_bytes if self.dram_total_bytes else float("inf")


def totals(results: list[LayerResult]) -> dict[str, float]:
    """Network totals: MACs, cycles, time, DRAM bytes, energy (units in the keys)."""
    return {
        "macs": sum(r.macs for r in results),
        "cycles": sum(r.cycles for r in results),
        "time_ns": sum(r.time_ns for r in results),
        "dram_bytes": sum(r.dram_total_bytes for r in results),
        "energy_pj": sum(r.energy_total_pj for r in results),
        "roofline_cycles": sum(r.roofline_cycles for r in results),
    }
