"""The array regression list, shared by the Verilator regression and the recorded cycle table.

One catalogue of cases for every back end (pymtl3's habit): ``test_array_regression.py`` runs each
on Verilator, ``test_array_cycles.py`` holds the cycle model to the cycles recorded from the verified
RTL in ``data/array_cycles_<commit>.json``. Seeds are fixed numbers (not ``hash()``), so a case is the
same problem in every process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

GEMM_SPECS = ("gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast")
SHAPES = ("2x2", "4x4", "3x5", "8x8")
RAGGED = {"i": 13, "k": 29, "j": 7}


@dataclass(frozen=True)
class ArrayCase:
    id: str
    spec: str
    overrides: tuple[str, ...]
    bounds: dict = field(hash=False)
    seed: int
    idle_prob: float = 0.0
    stall_prob: float = 0.0
    slow: bool = False

    @property
    def backpressure(self) -> bool:
        return bool(self.idle_prob or self.stall_prob)


def _exact_fit(shape: str) -> dict:
    rows, cols = (int(v) for v in shape.split("x"))
    # every loop a multiple of both extents, whichever axis the dataflow puts it on
    side = math.lcm(rows, cols)
    return {"i": side, "k": 2 * side, "j": side}


def _cases() -> list[ArrayCase]:
    out = []
    for spec in GEMM_SPECS:
        for shape in SHAPES:
            out.append(ArrayCase(f"ragged-{spec}-{shape}", f"{spec}.yaml", (f"array.shape={shape}",), RAGGED, seed=13))
    for spec in GEMM_SPECS:
        for shape in SHAPES:
            out.append(ArrayCase(f"exact-{spec}-{shape}", f"{spec}.yaml", (f"array.shape={shape}",),
                                 _exact_fit(shape), seed=7))
    out.append(ArrayCase("conv-stride2", "conv_ws.yaml", (),
                         {"n": 1, "k": 6, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}, seed=3))
    for spec in ("gemm_ws", "gemm_os"):
        out.append(ArrayCase(f"backpressure-{spec}", f"{spec}.yaml", (), {"i": 9, "k": 10, "j": 6}, seed=5,
                             idle_prob=0.3, stall_prob=0.3))
    conv = {"n": 1, "k": 6, "p": 3, "q": 3, "c": 5, "r": 3, "s": 3}
    for spec, overrides in (("gemm_os_bcast", ("array.shape=8x8", "clock_mhz=1000")),   # broadcast nets pipelined
                            ("gemm_ws", ("clock_mhz=1000",)),                          # registers in FUs, lanes
                            ("conv_ws", ("clock_mhz=1000",))):
        out.append(ArrayCase(f"pipelined-{spec}", f"{spec}.yaml", overrides,
                             conv if spec.startswith("conv") else RAGGED, seed=9))
    for spec in GEMM_SPECS:
        out.append(ArrayCase(f"big-{spec}-16x16", f"{spec}.yaml", ("array.shape=16x16",),
                             {"i": 37, "k": 41, "j": 19}, seed=11, slow=True))
    return out


ARRAY_CASES: tuple[ArrayCase, ...] = tuple(_cases())
CASE_BY_ID = {c.id: c for c in ARRAY_CASES}
