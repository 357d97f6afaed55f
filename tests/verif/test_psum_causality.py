"""The causality check on partial sums can fail: a read in the same cycle as (or before) its write counts."""
import numpy as np

from archgen.dataflow.host import HostProgram
from archgen.verif.array_check import _psum_causality


def _prog(sources):
    z = np.zeros((1, 1), dtype=np.int64)
    return HostProgram({}, z, np.zeros((1, 1, 1), dtype=np.int64), z, np.array(sources, dtype=np.int64))


def test_reads_after_writes_pass():
    res = {"in_cycles": {"psum_C": [10, 11]}, "out_cycles": [5, 9]}
    assert _psum_causality(_prog([[0, -1], [1, 1]]), res, "C") == 0


def test_early_or_same_cycle_reads_are_counted():
    res = {"in_cycles": {"psum_C": [5, 8]}, "out_cycles": [5, 9]}
    assert _psum_causality(_prog([[0, -1], [1, 1]]), res, "C") == 3
