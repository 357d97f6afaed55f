"""What `archgen sim` prints about the memory system: stall causes and traffic per level, per layer."""
from __future__ import annotations

from .results import LayerResult

__all__ = ["render_memory_table", "STALL_CAUSES"]

STALL_CAUSES = ("dram", "buffer_ports", "array")


def _n(x: float) -> str:
    return f"{int(round(x)):,}"


def render_memory_table(results: list[LayerResult]):
    """A rich Table: stall cycles by cause, DRAM bytes, buffer accesses (elements) and energy by level."""
    from rich.table import Table

    t = Table(title="memory system per layer (stalls in cycles, DRAM in bytes, buffers in element accesses, energy in pJ)")
    cols = ["layer", "mapping", *(f"stall {c} (cycles)" for c in STALL_CAUSES), "DRAM read (bytes)",
            "DRAM write (bytes)", "buffer accesses (elements)", "energy DRAM (pJ)", "energy buffers (pJ)",
            "energy registers (pJ)", "energy MACs (pJ)"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("layer", "mapping") else "right", overflow="fold")
    tot = [0.0] * (len(cols) - 2)
    for r in results:
        row = [r.extra.get(f"stall_cycles.{c}", 0) for c in STALL_CAUSES]
        row += [r.dram_read_bytes, r.dram_write_bytes, sum(r.sram_accesses.values())]
        row += [r.energy_pj.get(k, 0.0) for k in ("dram", "buffers", "registers", "compute")]
        tot = [a + b for a, b in zip(tot, row)]
        t.add_row(r.name, str(r.extra.get("mapping", "")), *map(_n, row))
    t.add_row("total", "", *map(_n, tot), style="bold")
    return t
