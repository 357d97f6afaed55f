"""What `archgen sim` prints about the memory system: stall causes and traffic per level, per layer."""
from __future__ import annotations

from .results import LayerResult

__all__ = ["render_memory_table", "mapping_lines", "STALL_CAUSES"]

STALL_CAUSES = ("dram", "buffer_ports", "array")


def _n(x: float) -> str:
    return f"{int(round(x)):,}"


def render_memory_table(results: list[LayerResult]):
    """A rich Table: stall cycles by cause, DRAM bytes, buffer accesses (elements) and energy by level
    (the mapping of each layer: :func:`mapping_lines`)."""
    from rich.table import Table

    from rich import box

    t = Table(title="memory system per layer", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    cols = ["layer", "stall\nDRAM\n(cycles)", "stall\nbuffer\nports\n(cycles)", "stall\narray\n(cycles)",
            "DRAM\nread\n(bytes)", "DRAM\nwrite\n(bytes)", "buffer\naccesses\n(elements)", "energy\nDRAM\n(pJ)",
            "energy\nbuffers\n(pJ)", "energy\nregisters\n(pJ)", "energy\nMACs\n(pJ)"]
    for c in cols:
        # numbers never wrap (a folded number reads as two); the units sit on header lines of their own
        t.add_column(c, justify="left" if c == "layer" else "right", no_wrap=True)
    tot = [0.0] * (len(cols) - 1)
    for r in results:
        row = [r.extra.get(f"stall_cycles.{c}", 0) for c in STALL_CAUSES]
        row += [r.dram_read_bytes, r.dram_write_bytes, sum(r.sram_accesses.values())]
        row += [r.energy_pj.get(k, 0.0) for k in ("dram", "buffers", "registers", "compute")]
        tot = [a + b for a, b in zip(tot, row)]
        t.add_row(r.name, *map(_n, row))
    t.add_row("total", *map(_n, tot), style="bold")
    return t


def mapping_lines(results: list[LayerResult]) -> list[str]:
    """One line per layer with the memory mapping the run used (loop order and block sizes, or the stt
    block plan): kept out of the table, where its text would wrap into many lines."""
    return ["mapping per layer:"] + [f"  {r.name}: {r.extra['mapping']}" for r in results if r.extra.get("mapping")]
