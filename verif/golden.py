"""Reference models in plain numpy, independent of tiling and of the FU graph."""
from __future__ import annotations

import numpy as np

from archgen.arch.einsum import Operation

__all__ = ["reference_einsum"]


def reference_einsum(op: Operation, tensors: dict[str, np.ndarray], bounds: dict[str, int], acc_bits: int = 64) -> np.ndarray:
    """Evaluate ``out += prod(inputs)`` over the whole loop nest (int64, wrapped to ``acc_bits``). An input index
    outside its tensor (below 0: a true convolution's ``I[p - r]``) reads 0, the zero padding (numpy's negative
    indexing would wrap it to the tensor's end: a circular convolution, which it was until 2026-12-05)."""
    dims = op.dims
    grids = np.meshgrid(*[np.arange(bounds[d]) for d in dims], indexing="ij")
    x = np.stack([g.ravel() for g in grids], axis=-1)
    prod = np.ones(len(x), dtype=np.int64)
    for inp in op.inputs:
        t = tensors[inp.name]
        idx = x @ inp.access_matrix(dims).T + inp.access_offset()
        inside = np.all((idx >= 0) & (idx < np.array(t.shape)), axis=-1)
        prod *= np.where(inside, t[tuple(np.where(inside[:, None], idx, 0).T)], 0)
    out_shape = op.tensor_shape(op.output.name, bounds)
    result = np.zeros(out_shape, dtype=np.int64)
    oidx = x @ op.output.access_matrix(dims).T + op.output.access_offset()
    np.add.at(result, tuple(oidx.T), prod)
    if acc_bits < 64:
        result &= (1 << acc_bits) - 1
        result = np.where(result >= (1 << (acc_bits - 1)), result - (1 << acc_bits), result)
    return result


def beats_exact(prog, got: np.ndarray, op: Operation, tensors: dict[str, np.ndarray], bounds: dict[str, int],
                acc_bits: int) -> bool:
    """The array's output beats ``got`` equal the host program ``prog``'s expected beats and, assembled at their
    output indices (the last write of each element wins), equal a tiling-independent evaluation of the loop nest."""
    if got.shape != prog.expected.shape or not np.all(got == prog.expected):
        return False
    final = np.zeros_like(prog.result)
    ok = prog.out_index[..., 0] >= 0
    final[tuple(prog.out_index[ok].T)] = got[ok]
    return bool(np.array_equal(final, reference_einsum(op, tensors, bounds, acc_bits)))
