"""Reusable cocotb parts for Amaranth ``lib.stream`` ports (runs inside the simulator).

Amaranth 0.5 flattens a ``stream.Signature`` member ``x`` into the Verilog ports ``x__valid``,
``x__ready`` and ``x__payload``. A ``lib.data`` struct payload stays ONE flat ``x__payload`` port (its
fields appear only as internal wires such as ``\\x__payload.a``); the first field sits in the least
significant bits, so a payload of N lanes of ``signed(w)`` is ``sum((lane_i mod 2**w) << (i*w))`` --
see :func:`pack_lanes`. Streams with ``always_ready=True`` have no ``__ready`` port.

Timing discipline (why falling edges): every register changes at the rising edge, so the testbench
writes inputs at the falling edge, then waits for ``ReadOnly`` to see the settled combinational response
(``ready`` may depend on ``valid``), and records a transfer when ``valid & ready`` hold then; that is
exactly the condition the design sees at the next rising edge. Beat cycle indices count rising edges
since the component was started; a beat recorded with index c transfers at rising edge c + 1.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

__all__ = [
    "signed",
    "to_unsigned",
    "pack_lanes",
    "unpack_lanes",
    "CycleCounter",
    "StreamDriver",
    "StreamMonitor",
    "check_equal",
    "start_clock_and_reset",
]


def signed(value: int, bits: int) -> int:
    """Interpret the low ``bits`` of ``value`` as a two's complement number."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def to_unsigned(value: int, bits: int) -> int:
    """Two's complement encoding of ``value`` in ``bits`` bits; raises if it does not fit."""
    lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
    if not lo <= value <= hi:
        raise ValueError(f"value {value!r} does not fit in {bits} bits")
    return value & ((1 << bits) - 1)


def pack_lanes(values: Sequence[int], bits: int) -> int:
    """Pack lanes (lane 0 in the least significant bits), each in ``bits``-bit two's complement."""
    word = 0
    for i, v in enumerate(values):
        word |= to_unsigned(int(v), bits) << (i * bits)
    return word


def unpack_lanes(word: int, bits: int, lanes: int, *, is_signed: bool = True) -> list[int]:
    """Inverse of :func:`pack_lanes`."""
    mask = (1 << bits) - 1
    raw = [(word >> (i * bits)) & mask for i in range(lanes)]
    return [signed(r, bits) for r in raw] if is_signed else raw


def _port(dut, name: str, field: str, required: bool = True):
    handle = getattr(dut, f"{name}__{field}", None)
    if handle is None and required:
        raise AttributeError(f"the design has no port {name}__{field}; is {name!r} a lib.stream member?")
    return handle


class CycleCounter:
    """Counts rising edges of ``clk`` from the moment it is started (cycle 0 = the first edge after)."""

    def __init__(self, clk):
        self.clk = clk
        self.cycle = 0
        self._task = None

    def start(self) -> "CycleCounter":
        self._task = cocotb.start_soon(self._run())
        return self

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1

    def __call__(self) -> int:
        return self.cycle


class StreamDriver:
    """Sends integer payloads on stream ``name`` of ``dut``; valid stays high back-to-back by default.

    ``idle_prob`` > 0 inserts seeded random idle cycles (valid low) between beats to exercise the
    sink's handling of bubbles. ``send`` returns the cycle index of each accepted beat.
    """

    def __init__(self, dut, name: str, clk, *, idle_prob: float = 0.0, seed: int = 0,
                 cycle: Callable[[], int] | None = None):
        self.valid = _port(dut, name, "valid")
        self.ready = _port(dut, name, "ready", required=False)
        self.payload = _port(dut, name, "payload")
        self.clk = clk
        self.idle_prob = idle_prob
        self.rng = random.Random(seed)
        self.cycle = cycle
        self.valid.value = 0

    async def send(self, payloads: Iterable[int]) -> list[int]:
        beats: list[int] = []
        for word in payloads:
            while True:
                await FallingEdge(self.clk)
                if self.idle_prob and self.rng.random() < self.idle_prob:
                    self.valid.value = 0
                    continue
                self.valid.value = 1
                self.payload.value = int(word)
                await ReadOnly()
                if self.ready is None or int(self.ready.value):
                    beats.append(self.cycle() if self.cycle else len(beats))
                    break
        await FallingEdge(self.clk)
        self.valid.value = 0
        return beats


class StreamMonitor:
    """Records (payload, cycle) of every beat on stream ``name`` (valid & ready).

    With ``drive_ready=True`` the monitor is the sink: it drives ``ready`` high, or low with
    probability ``stall_prob`` per cycle (seeded) to apply back-pressure.
    """

    def __init__(self, dut, name: str, clk, *, drive_ready: bool = False, stall_prob: float = 0.0,
                 seed: int = 0, cycle: Callable[[], int] | None = None):
        self.valid = _port(dut, name, "valid")
        self.ready = _port(dut, name, "ready", required=False)
        self.payload = _port(dut, name, "payload")
        self.clk = clk
        self.drive_ready = drive_ready and self.ready is not None
        self.stall_prob = stall_prob
        self.rng = random.Random(seed)
        self.cycle = cycle
        self.payloads: list[int] = []
        self.cycles: list[int] = []
        self._own_cycle = 0
        self._task = None
        if self.drive_ready:
            self.ready.value = 0

    def start(self) -> "StreamMonitor":
        self._task = cocotb.start_soon(self._run())
        return self

    def clear(self) -> None:
        self.payloads.clear()
        self.cycles.clear()

    async def _run(self):
        while True:
            await FallingEdge(self.clk)
            if self.drive_ready:
                stall = self.stall_prob and self.rng.random() < self.stall_prob
                self.ready.value = 0 if stall else 1
            await ReadOnly()
            if int(self.valid.value) and (self.ready is None or int(self.ready.value)):
                self.payloads.append(int(self.payload.value))
                self.cycles.append(self.cycle() if self.cycle else self._own_cycle)
            self._own_cycle += 1

    async def wait_for(self, count: int, *, max_cycles: int = 1_000_000) -> None:
        """Wait until ``count`` beats are recorded; raises after ``max_cycles`` edges without them."""
        for _ in range(max_cycles):
            if len(self.payloads) >= count:
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"expected {count} beats, got {len(self.payloads)} after {max_cycles} cycles")


def check_equal(expected: Sequence, got: Sequence, *, what: str = "beat", context: int = 3) -> None:
    """In-order comparison; raises AssertionError describing the first mismatch with neighbours."""
    expected, got = list(expected), list(got)
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            lo, hi = max(0, i - context), i + context + 1
            raise AssertionError(
                f"{what} {i}: expected {e!r}, got {g!r}\n"
                f"  expected[{lo}:{hi}] = {expected[lo:hi]!r}\n"
                f"  got[{lo}:{hi}]      = {got[lo:hi]!r}")
    if len(expected) != len(got):
        n = min(len(expected), len(got))
        raise AssertionError(
            f"{what} count: expected {len(expected)}, got {len(got)}; first {n} agree; "
            f"extra: {(expected[n:n + context + 1] if len(expected) > n else got[n:n + context + 1])!r}")


async def start_clock_and_reset(dut, reset_cycles: int = 2) -> CycleCounter:
    """Start a 100 MHz clock on ``dut.clk``, hold ``dut.rst`` for ``reset_cycles`` edges, release it at a
    falling edge, and return a started cycle counter (every bench measures cycles from here)."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, reset_cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    return CycleCounter(dut.clk).start()
