"""Reference models in plain numpy, independent of tiling and of the FU graph."""
from __future__ import annotations

import numpy as np

from archgen.arch.einsum import Operation

__all__ = ["reference_einsum"]


def reference_einsum(op: Operation, tensors: dict[str, np.ndarray], bounds: dict[str, int], acc_bits: int = 64) -> np.ndarray:
    """Evaluate ``out += prod(inputs)`` over the whole loop nest (int64, wrapped to ``acc_bits``)."""
    dims = op.dims
    grids = np.meshgrid(*[np.arange(bounds[d]) for d in dims], indexing="ij")
    x = np.stack([g.ravel() for g in grids], axis=-1)
    prod = np.ones(len(x), dtype=np.int64)
    for inp in op.inputs:
        idx = x @ inp.access_matrix(dims).T + inp.access_offset()
        prod *= tensors[inp.name][tuple(idx.T)]
    out_shape = op.tensor_shape(op.output.name, bounds)
    result = np.zeros(out_shape, dtype=np.int64)
    oidx = x @ op.output.access_matrix(dims).T + op.output.access_offset()
    np.add.at(result, tuple(oidx.T), prod)
    if acc_bits < 64:
        result &= (1 << acc_bits) - 1
        result = np.where(result >= (1 << (acc_bits - 1)), result - (1 << acc_bits), result)
    return result
