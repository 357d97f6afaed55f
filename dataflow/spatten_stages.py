"""Register stages of SpAtten's hand-written units, as the RTL builds them and the model counts them.

The softmax's exponential pipeline and its divider are hand-written Amaranth (rtlgen/softmax.py),
not derived by the affine analysis. Their stage lists live here, in the model layer: the RTL builds
one register stage per entry (and checks at elaboration that it built exactly these), and
``spatten_latencies`` counts the entries. A stage added to the RTL without its entry here fails the
build, so the cycle model cannot silently drift from the hardware.
"""
from __future__ import annotations

from archgen.arch.spatten_spec import SpattenFormats

__all__ = ["EXP_BUFFER_BANKS", "TOPK_ENGINES", "SCORE_BANKS", "DIVIDER_BITS",
           "exp_stages", "recip_steps", "recip_cycles", "qk_feed_stages", "pv_feed_stages", "normalize_stages",
           "pq_stages", "accept_stages", "topk_handoff_stages", "output_stages", "check_built"]


def exp_stages(fmt: SpattenFormats) -> tuple[str, ...]:
    """The exponential pipeline's register stages, in order.

    x0: score row read from the buffer; x1: max - score; x2: x log2(e); x3: shift and split into
    integer n and fraction f; x4: f x ln 2; h0..: one Horner step per Taylor coefficient after the
    first; xe: 2^-n rounding shift, emitted and summed."""
    horner = tuple(f"h{j}" for j in range(len(fmt.taylor_coeffs) - 1))
    return ("x0", "x1", "x2", "x3", "x4", *horner, "xe")


# Quotient bits the softmax's restoring divider computes per cycle (chained subtract-compare steps; our
# choice): four, so that the divider (recip + decide + 2 cycles per row: 11 on spatten.yaml's 28-bit
# reciprocal) is no slower than the PxV stage (G + pv_pipe + 1) of rows of 4 or more key groups, now
# that the exponential sweeps follow each other through their pipeline (G + 1 cycles a row). With two
# bits (18 cycles) the divider bound every row of 88 keys or fewer (MiniLM's pruned layers). Since
# 2026-12-05; two before. A second divider taking rows in turn would do as well (9 cycles a row) with
# more control (two rows between the sweep and the hold slot).
DIVIDER_BITS = 4


def recip_steps(fmt: SpattenFormats) -> int:
    """Cycles of the restoring divider's steps: ``DIVIDER_BITS`` quotient bits per cycle."""
    return -(-fmt.recip_bits // DIVIDER_BITS)


def recip_cycles(fmt: SpattenFormats) -> int:
    """Cycles from the row's last exponential to ``recip_valid``: the quotient bits plus the cycle that
    reports the result."""
    return recip_steps(fmt) + 1


# Local-V top-k engines in the core's top-k stage (our choice; the paper has one engine): rows go to them
# in turn and leave them in turn, so each engine has NE rows' time for its top-k. One engine at about
# 0.5 P elements per cycle plus its per-row overhead is slower than a short row's front stage (the top-k
# stage then bound BERT's later layers and MiniLM; docs/spatten.md, "Cycle contract").
TOPK_ENGINES = 2

# Rows of exponentials the core holds at once (rtlgen/spatten_core.py's exponential buffer, and the
# model's rotation in sim.spatten_model): the softmax stage's sweep, the row at the divider or in the hold
# slot, one row per top-k engine, the PxV stage's row.
EXP_BUFFER_BANKS = 3 + TOPK_ENGINES

# Score banks between the QxK stage and the softmax stage (rtlgen/softmax.py's score buffer, the core's
# per-bank query registers, and the model's rotation): the QxK stage's query, the softmax stage's row,
# and the row waiting for its PQ decision (with PQ on it keeps its scores until then, for a refetch), so
# the QxK of query i+2 need not wait for query i's decision.
SCORE_BANKS = 3


# The core's own register stages around the arrays and the library units (rtlgen/spatten_core.py builds
# one register per entry, in this order, and checks at elaboration that it built exactly these).

def qk_feed_stages() -> tuple[str, ...]:
    """Registers between a QxK issue and the QxK array's inputs: the key buffer's synchronous read."""
    return ("key_read",)


def pv_feed_stages() -> tuple[str, ...]:
    """Registers between a PxV issue and the PxV array's inputs: the exponential buffer's synchronous
    read, then Normalize's product register (the value buffer is read in the same cycle)."""
    return ("exp_read", *normalize_stages())


def normalize_stages() -> tuple[str, ...]:
    """rtlgen.softmax.Normalize: one register after the exponential x reciprocal product."""
    return ("normalize",)


def pq_stages() -> tuple[str, ...]:
    """rtlgen.pq_decision.PQDecision: the decision register after ``recip_valid``."""
    return ("decision",)


def accept_stages() -> tuple[str, ...]:
    """The QxK stage takes a query: the query (or refetch) is registered before the first issue."""
    return ("query",)


def topk_handoff_stages() -> tuple[str, ...]:
    """Registers between the top-k's ``done`` and the PxV stage's take: none (the PxV stage may take the
    row in the done cycle, reading the engine's k-th value and tie count directly; since 2026-12-04,
    sixth session; one register ``topk_done`` before)."""
    return ()


def output_stages() -> tuple[str, ...]:
    """The back stage offers the accumulated output row for one cycle (``out`` always ready)."""
    return ("out",)


def check_built(unit: str, built, expected: tuple[str, ...]) -> None:
    """Raise when an elaborate built other register stages than the cycle model counts."""
    if tuple(built) != tuple(expected):
        raise RuntimeError(f"{unit} built the stages {list(built)}, but the cycle model counts {list(expected)} "
                           "(archgen.dataflow.spatten_stages); update both together")
