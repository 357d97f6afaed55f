"""Testbench side of the runner contract (runs inside the simulator, next to cocotb).

The host (:func:`archgen.verif.runner.run_testbench`) passes parameters as JSON in ARCHGEN_TB_PARAMS and
a file path in ARCHGEN_TB_RESULT; a testbench reads the first and writes its results to the second.
"""
from __future__ import annotations

import json
import os

__all__ = ["load_params", "write_result", "clock_and_reset"]


def load_params() -> dict:
    """The parameters the host passed to run_testbench (an empty dict when run by hand)."""
    text = os.environ.get("ARCHGEN_TB_PARAMS", "")
    return json.loads(text) if text else {}


def write_result(d: dict) -> None:
    """Write the testbench's results (JSON-serialisable) where the host will read them.

    Written atomically so a crash mid-write never leaves half a file that the host would parse.
    """
    path = os.environ.get("ARCHGEN_TB_RESULT")
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(d, f, sort_keys=True)
    os.replace(tmp, path)


async def clock_and_reset(dut, *idle_inputs: str) -> None:
    """Start the 10 ns clock on ``dut.clk`` and hold ``dut.rst`` for 3 cycles with ``idle_inputs`` low
    (e.g. ``cmd__valid``, ``go``); returns with reset released, in the cycle after it."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in idle_inputs:
        getattr(dut, name).value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
