"""Register stages of SpAtten's hand-written units, as the RTL builds them and the model counts them.

The softmax's exponential pipeline and its divider are hand-written Amaranth (rtlgen/softmax.py),
not derived by the affine analysis. Their stage lists live here, in the model layer: the RTL builds
one register stage per entry (and checks at elaboration that it built exactly these), and
``spatten_latencies`` counts the entries. A stage added to the RTL without its entry here fails the
build, so the cycle model cannot silently drift from the hardware.
"""
from __future__ import annotations

from archgen.arch.spatten_spec import SpattenFormats

__all__ = ["exp_stages", "recip_steps", "recip_cycles"]


def exp_stages(fmt: SpattenFormats) -> tuple[str, ...]:
    """The exponential pipeline's register stages, in order.

    x0: score row read from the buffer; x1: max - score; x2: x log2(e); x3: shift and split into
    integer n and fraction f; x4: f x ln 2; h0..: one Horner step per Taylor coefficient after the
    first; xe: 2^-n rounding shift, emitted and summed."""
    horner = tuple(f"h{j}" for j in range(len(fmt.taylor_coeffs) - 1))
    return ("x0", "x1", "x2", "x3", "x4", *horner, "xe")


def recip_steps(fmt: SpattenFormats) -> int:
    """Quotient bits of the restoring divider, one per cycle."""
    return fmt.recip_bits


def recip_cycles(fmt: SpattenFormats) -> int:
    """Cycles from the row's last exponential to ``recip_valid``: the quotient bits plus the cycle that
    reports the result."""
    return recip_steps(fmt) + 1
