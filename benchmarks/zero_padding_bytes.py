"""The DRAM bytes of zero padding (docs/memory.md "Zero padding"): for a "same" 3x3 convolution whose input index
reaches below 0, the bytes of the padding's zeros that the DMA moves (every load job's box minus the same box
clipped to the tensor), what a loader that made the zeros itself would save.

    python benchmarks/zero_padding_bytes.py
"""
import math

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import layer_jobs
from archgen.mappings.memory_tiling import bounding_box, element_bytes, plan_layer
from archgen.sim.layer_model import simulate_layer

SAME = "O[k,p,q] += I[c,p-r+1,q-s+1] * W[k,c,r,s]"


def zero_bytes(op, shape, spatial, order, bounds, x="I"):
    """(bytes of x the DMA loads, of them zeros, the layer's DRAM bytes, its cycles) for the planner's command."""
    d = load_spec_data({"version": 1, "kind": "array", "name": "c", "operation": op,
                        "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": shape},
                        "dataflows": {"d": {"spatial": spatial, "order": order, "control": [0] * len(shape)}}})
    c = compile_array(d)
    cmd = plan_layer(d, bounds, c.dataflow)
    tshape = d.operation.tensor_shape(x, cmd.bound)
    zeros = total = 0
    for j in layer_jobs(cmd):
        for name, b in j.load:
            if name == x:
                box = bounding_box(d, x, {dd: (s, e) for dd, s, e in j.block.ranges}, cmd.bound)
                inside = math.prod(max(0, min(hi, n - 1) - max(lo, 0) + 1) for (lo, hi), n in zip(box, tshape))
                zeros += b - inside * element_bytes(d, x)
                total += b
    m = simulate_layer(c, cmd)
    return cmd, total, zeros, sum(m.dram_bytes.values()), m.cycles


if __name__ == "__main__":
    for pq in (14, 56):
        bounds = {"k": 16, "c": 16, "p": pq, "q": pq, "r": 3, "s": 3}
        cmd, total, zeros, dram, cycles = zero_bytes(SAME, [4, 4], {"k": 0, "c": 1}, ["k", "c", "p", "q", "r", "s"],
                                                     bounds)
        print(f"{SAME}  {bounds}  ({cmd.describe()}): I.read {total:,} B, of them zeros {zeros:,} B "
              f"({100 * zeros / total:.1f} %); the layer's DRAM bytes {dram:,} B ({100 * zeros / dram:.1f} %); "
              f"{cycles:,} cycles")
