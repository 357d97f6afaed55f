"""Skewed stt maps through the stt memory system on Verilator: one row per case of tests/verif/test_stt_layer_rtl.py
(exact outputs, RTL cycles, model cycles, DMA bytes), for the table in docs/memory.md.

    ARCHGEN_CACHE=... python benchmarks/stt_layer_bench.py          # one block (whole tensors on chip)
    ARCHGEN_CACHE=... python benchmarks/stt_layer_bench.py blocks   # layers larger than the buffers: blocks
    python benchmarks/stt_layer_bench.py storage                   # banked buffers against per-lane copies
    ARCHGEN_CACHE=... python benchmarks/stt_layer_bench.py program  # ONE programmable build, streams of layers

The one-block and block tables run tops specialised to their layer (``per_layer=True``); ``program`` runs the
cases of tests/verif/test_stt_program_rtl.py: one build per case, its layers back to back.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "verif"))

from test_stt_layer_rtl import HEX, _gemm  # noqa: E402

from archgen.arch.spec import load_spec, load_spec_data  # noqa: E402
from archgen.verif.stt_layer_check import verify_stt_layer  # noqa: E402

CASES = [
    ("gemm_hex, array.shape=3x5", load_spec("gemm_hex", ["array.shape=3x5"]), {"i": 7, "k": 5, "j": 6}, 3),
    ("conv1d_hex, array.shape=1x4, DRAM 8 B/cycle, latency 11",
     load_spec("conv1d_hex", ["array.shape=1x4", "memory.dram.width_bytes=8", "memory.dram.latency=11"]),
     {"k": 3, "p": 7, "r": 3}, 5),
    ("gemm_hex (4x4)", load_spec("gemm_hex"), {"i": 9, "k": 7, "j": 10}, 1),
    ("GEMM hex map, 2x4 at 1500 MHz, DRAM 16 B/cycle, latency 20",
     _gemm((2, 4), HEX, 1500, {"width_bytes": 16, "latency": 20, "burst_bytes": 32, "outstanding": 2}),
     {"i": 5, "k": 4, "j": 6}, 2),
    ("GEMM [[1,0,1],[0,1,-1],[1,2,1]], 3x4", _gemm((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]]),
     {"i": 6, "k": 5, "j": 7}, 3),
    ("GEMM hex map, 5x3, DRAM 4 B/cycle, latency 9",
     _gemm((5, 3), HEX, dram={"width_bytes": 4, "latency": 9, "burst_bytes": 8, "outstanding": 1}),
     {"i": 11, "k": 6, "j": 4}, 4),
    ("conv1d_hex (4x4)", load_spec("conv1d_hex"), {"k": 8, "p": 16, "r": 3}, 7),
    ("conv1d_hex, array.shape=3x5", load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 4}, 8),
    ("depthwise O[c,p] += I[c,p+r] * W[c,r] (validity tags), hex map, 2x5 at 1500 MHz, DRAM 8 B/cycle, latency 13",
     load_spec_data({"version": 1, "name": "dwconv_hex", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                     "clock_mhz": 1500, "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": HEX}}, "memory": {"dram": {"width_bytes": 8, "latency": 13}}}),
     {"c": 4, "p": 5, "r": 4}, 9),
    ("C[i,j] += A[i,k] * B[k], map [[1,1,0],[0,1,0],[1,1,1]] (C kept on each FU: a ring), 2x5 at 1500 MHz, "
     "DRAM 8 B/cycle",
     load_spec_data({"version": 1, "name": "ring_hex", "operation": "C[i,j] += A[i,k] * B[k]", "clock_mhz": 1500,
                     "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": [[1, 1, 0], [0, 1, 0], [1, 1, 1]], "order": ["i", "j", "k"]}},
                     "memory": {"dram": {"width_bytes": 8}}}), {"i": 3, "j": 4, "k": 5}, 10),
    ("GEMM map [[0,1,1],[0,0,1],[1,1,1]] (B kept on each FU: a ring), 3x3",
     _gemm((3, 3), [[0, 1, 1], [0, 0, 1], [1, 1, 1]]), {"i": 5, "k": 4, "j": 6}, 11),
]


DRAM8 = ["memory.dram.width_bytes=8", "memory.dram.latency=5", "memory.dram.burst_bytes=16",
         "memory.dram.outstanding=2"]


def _bufs(a, b, c, names=("A", "B", "C")):
    return [f"memory.{n}.bytes={v}" for n, v in zip(names, (a, b, c))]


BLOCK_CASES = [     # tests/verif/test_stt_layer_rtl.py's block cases (DRAM 8 B/cycle, latency 5 unless noted)
    ("gemm_hex (4x4), A/B/C buffers 50/27/61 B", load_spec("gemm_hex", _bufs(50, 27, 61) + DRAM8),
     {"i": 9, "k": 7, "j": 10}, 1),
    ("gemm_hex 1x4, buffers 28/33/84 B", load_spec("gemm_hex", ["array.shape=1x4"] + _bufs(28, 33, 84) + DRAM8),
     {"i": 5, "k": 7, "j": 6}, 4),
    ("conv1d_hex 3x5, W/I/O buffers 400/40/2000 B",
     load_spec("conv1d_hex", ["array.shape=3x5"] + _bufs(400, 40, 2000, ("W", "I", "O")) + DRAM8),
     {"k": 7, "p": 9, "r": 4}, 6),
    ("depthwise (tags), hex map, 2x5 at 1500 MHz, I/W/O buffers 224/11/80 B, DRAM latency 13",
     load_spec_data({"version": 1, "name": "dwconv_hex", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                     "clock_mhz": 1500, "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": HEX}},
                     "memory": {"dram": {"width_bytes": 8, "latency": 13}, "I": {"bytes": 224}, "W": {"bytes": 11},
                                "O": {"bytes": 80}}}),
     {"c": 4, "p": 5, "r": 4}, 9),
    ("GEMM hex map 2x4 at 1500 MHz, buffers 16/24/120 B, DRAM latency 20",
     load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]", "clock_mhz": 1500,
                     "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 4]},
                     "dataflows": {"d": {"stt": HEX, "order": ["k", "i", "j"]}},
                     "memory": {"dram": {"width_bytes": 8, "latency": 20, "burst_bytes": 16},
                                "A": {"bytes": 16}, "B": {"bytes": 24}, "C": {"bytes": 120}}}),
     {"i": 5, "k": 4, "j": 6}, 2),
]


def _table(cases, middle_head: str, middle) -> None:
    """One verified row per case: name, layer, seed, the middle columns (middle(r)), outputs, RTL and model
    cycles, DRAM bytes."""
    print(f"| case | layer | seed | {middle_head} | outputs | RTL cycles | model cycles | DRAM bytes (model = RTL) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, design, bounds, seed in cases:
        r = verify_stt_layer(design, bounds, seed=seed, per_layer=True)
        same = r.detail["rtl_dram_bytes"] == r.dram_bytes
        print(f"| {name} | {', '.join(f'{k}={v}' for k, v in bounds.items())} | {seed} | {middle(r)} | "
              f"{'exact' if r.outputs_exact else 'WRONG'} | {r.rtl_cycles:,} | {r.model_cycles:,} | "
              f"{' / '.join(f'{k} {v}' for k, v in r.dram_bytes.items())}{'' if same else ' (RTL DIFFERS)'} |",
              flush=True)


def blocks() -> None:
    _table(BLOCK_CASES, "grid (blocks per loop) | block",
           lambda r: (" x ".join(f"{d}:{n}" for d, n in r.detail["grid"].items()) + " | "
                      + ", ".join(f"{d}={v}" for d, v in r.detail["block"].items())))


STORAGE_CASES = [
    ("gemm_hex 4x4", load_spec("gemm_hex"), {"i": 128, "k": 768, "j": 768}),
    ("gemm_hex 8x8", load_spec("gemm_hex", ["array.shape=8x8"]), {"i": 64, "k": 64, "j": 64}),
    ("gemm_hex 3x5", load_spec("gemm_hex", ["array.shape=3x5"]), {"i": 7, "k": 5, "j": 6}),
    ("conv1d_hex 4x4", load_spec("conv1d_hex"), {"k": 8, "p": 16, "r": 3}),
    ("conv1d_hex 3x5", load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 4}),
]


def storage() -> None:
    """On-chip bytes per tensor of the plan's block: the banked buffers against the per-lane copies and stores
    of the first form (lanes x region), and the banks."""
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.stt_array import stt_tiling
    from archgen.dataflow.stt_layer import plan_stt_layer
    print("| design | layer | block | on chip (banked) | banked bytes | per-lane copies bytes | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, design, bounds in STORAGE_CASES:
        plan = plan_stt_layer(stt_tiling(compile_array(design).network, bounds))
        st, cp = plan.storage_bytes(), plan.copies_storage_bytes()
        print(f"| {name} | {', '.join(f'{k}={v}' for k, v in bounds.items())} | "
              f"{', '.join(f'{d}={v}' for d, v in plan.tiling.bound.items())} | "
              f"{plan.describe_storage().removeprefix('on chip: ')} | "
              f"{' / '.join(f'{t} {v:,}' for t, v in st.items())} (sum {sum(st.values()):,}) | "
              f"{' / '.join(f'{t} {v:,}' for t, v in cp.items())} (sum {sum(cp.values()):,}) | "
              f"{sum(cp.values()) / sum(st.values()):.1f}x |", flush=True)


def program() -> None:
    """One row per layer of every stream of tests/verif/test_stt_program_rtl.py (one build per case)."""
    import test_stt_program_rtl as t

    from archgen.verif.stt_layer_check import verify_stt_program
    default = (load_spec("gemm_hex", ["array.shape=3x5", "memory.A.bytes=64", "memory.B.bytes=64",
                                      "memory.C.bytes=256"] + t.DRAM8),
               [{"i": 7, "k": 5, "j": 6}, {"i": 11, "k": 9, "j": 9}, {"i": 1, "k": 1, "j": 1},
                {"i": 5, "k": 13, "j": 2}], 5)
    param = next(mk for mk in t.test_more_builds_run_layer_streams.pytestmark if mk.name == "parametrize")
    cases = [default] + [tuple(p) for p in param.args[1]]
    print("| build (one per stream) | box, period (slots) | command | layer | grid (blocks per loop) | block | "
          "outputs | RTL cycles | model cycles |")
    print("|---|---|---|---|---|---|---|---|---|")
    for design, layers, seed in cases:
        r = verify_stt_program(design, layers, seed=seed)
        tensors = [k.split(".")[0] for k in r["rtl_dram_bytes"]]
        cells = [f"{design.name} {'x'.join(map(str, design.shape))}, buffers "
                 + " / ".join(f"{x} {design.memory_system.buffer(x).bytes} B" for x in tensors),
                 f"{r['box']}, {r['period']}", f"{r['command_bits']:,} bits"]
        for row in r["layers"]:
            print(f"| {' | '.join(cells)} | {', '.join(f'{k}={v}' for k, v in row['layer'].items())} | "
                  f"{' x '.join(f'{d}:{n}' for d, n in row['grid'].items()) or '1'} | "
                  f"{', '.join(f'{d}={v}' for d, v in row['block'].items())} | "
                  f"{'exact' if row['exact'] else 'WRONG'} | {row['rtl_cycles']:,} | {row['model_cycles']:,} |",
                  flush=True)
            cells = ["", "", ""]
        same = "model = RTL" if r["rtl_dram_bytes"] == r["model_dram_bytes"] else "RTL DIFFERS"
        bytes_ = " / ".join(f"{k} {v}" for k, v in r["model_dram_bytes"].items())
        print(f"| | | | DRAM bytes over the stream: {bytes_} ({same}) | | | | | |", flush=True)


def main() -> None:
    if sys.argv[1:] == ["program"]:
        program()
        return
    if sys.argv[1:] == ["blocks"]:
        blocks()
        return
    if sys.argv[1:] == ["storage"]:
        storage()
        return
    _table(CASES, "boxes, period (slots) | slots",
           lambda r: f"{r.detail['boxes']}, {r.detail['period']} | {r.detail['slots']}")


if __name__ == "__main__":
    main()
