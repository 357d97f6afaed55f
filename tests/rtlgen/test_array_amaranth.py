"""The array top in Amaranth's simulator (verif/array_amaranth.py) on the two interconnect plans the refusal search
found refused (docs/dataflows.md "Lanes that mix wires with registers or FIFOs", "Reductions with chained and tree
axes"): outputs exact, no partial sum read before its write, RTL cycles == model cycles. Fast (about a second
each); the Verilator cases are tests/verif/test_array_mixed.py."""
import dataclasses

import numpy as np
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_amaranth import verify_array_amaranth

_TYPES = {"W": "int8", "I": "int8", "O": "int32"}
_CONV1 = ("O[k,p] += W[k,r] * I[p+r]", {"k": 4, "p": 6, "r": 3})
_CONV2 = ("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", {"k": 3, "p": 5, "q": 3, "c": 3, "r": 3})
_ACC3 = ("O[k] += I[c,r,s] * W[k,c,r,s]", {"k": 3, "c": 3, "r": 3, "s": 4})


def _design(op, shape, df):
    expr, bounds = op
    return load_spec_data({"version": 1, "kind": "array", "name": "t", "operation": expr, "types": _TYPES,
                           "bounds": bounds, "array": {"shape": shape}, "dataflows": {"d": df}}), bounds


@pytest.mark.parametrize("op, shape, df", [
    # lanes of wires behind a FIFO or systolic hops (were refused by the primitive lowering)
    (_CONV1, [2, 2], {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p"], "control": [0, 0]}),
    (_CONV1, [2, 3], {"spatial": {"r": 0, "k": 1}, "order": ["r", "k", "p"], "control": [0, 0]}),
    (_CONV2, [2, 2, 2], {"spatial": {"k": 0, "p": 1, "q": 2}, "order": ["q", "c", "p", "k", "r"], "control": [0, 0, 1]}),
    (_CONV2, [2, 2, 2], {"spatial": {"k": 0, "q": 1, "r": 2}, "order": ["k", "c", "r", "q", "p"], "control": [0, 0, 0]}),
    # chains along the skewed reduced axes, a tree along the others (were refused as mixed)
    (_CONV2, [2, 2], {"spatial": {"c": 0, "r": 1}, "order": ["k", "c", "r", "p", "q"], "control": [0, 1]}),
    (_CONV2, [2, 3], {"spatial": {"c": 0, "r": 1}, "order": ["p", "r", "c", "q", "k"], "control": [1, 0]}),
    (_CONV2, [2, 2, 2], {"spatial": {"q": 0, "r": 1, "c": 2}, "order": ["q", "r", "c", "k", "p"], "control": [1, 0, 1]}),
    (_ACC3, [2, 2, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["k", "c", "r", "s"], "control": [1, 0, 1]}),
    (_ACC3, [2, 3, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["k", "c", "r", "s"], "control": [0, 1, 0]}),
    # chains along two axes merging into one end, partial sums of earlier tiles coming back in (c, r outer): one
    # psum lane per output, at the root of its lane's path; the other root starts from zero (was an IndexError)
    (_CONV2, [2, 2], {"spatial": {"c": 0, "r": 1}, "order": ["k", "c", "r", "p", "q"], "control": [1, 1]}),
    (_CONV2, [2, 3], {"spatial": {"r": 0, "c": 1}, "order": ["c", "r", "k", "q", "p"], "control": [1, 1]}),
], ids=["conv1-2x2", "conv1-2x3", "conv2-W-2x2x2", "conv2-I-fifo-2x2x2", "tree-c-chain-r-2x2", "chain-c-tree-r-2x3",
        "chains-q-c-tree-r-2x2x2", "acc-chain-r-tree-c-2x2x2", "acc-chain-c-trees-k-r-2x3x2", "chains-c-r-psum-2x2",
        "chains-r-c-psum-2x3"])
def test_mixed_lanes_and_reductions_in_amaranth(op, shape, df):
    design, bounds = _design(op, shape, df)
    r = verify_array_amaranth(design, bounds, seed=4)
    assert r.outputs_exact, r.detail
    assert r.detail["psum_reads_before_write"] == 0
    assert r.rtl_cycles == r.model_cycles


def test_the_bench_counts_like_verilator_and_sees_a_wrong_output(monkeypatch):
    """The search's example (conv1 on 2x2, k=3, p=5, r=3, seed 0) takes 28 cycles here, as on Verilator
    (`archgen verify SPEC --ideal-dram --bounds k=3,p=5,r=3`: RTL 28 = model 28, measured 2026-12-05); a corrupted
    input beat makes the outputs inexact."""
    design, _ = _design(_CONV1, [2, 2], {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p"], "control": [0, 0]})
    bounds = {"k": 3, "p": 5, "r": 3}
    r = verify_array_amaranth(design, bounds, seed=0)
    assert r.outputs_exact and r.rtl_cycles == r.model_cycles == 28
    import archgen.verif.array_amaranth as bench
    real = bench.host_program

    def corrupt(*args):
        prog = real(*args)
        streams = dict(prog.streams)
        name = sorted(streams)[0]
        beats = np.array(streams[name])
        beats[len(beats) // 2, 0] += 1
        streams[name] = beats
        return dataclasses.replace(prog, streams=streams)
    monkeypatch.setattr(bench, "host_program", corrupt)
    bad = verify_array_amaranth(design, bounds, seed=0)
    assert not bad.outputs_exact


@pytest.mark.parametrize("op, shape, df, bounds", [
    # outputs held per run of the tile's trailing reduction loops (docs/dataflows.md "Outputs held per run ...")
    (_CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "p", "r", "c"], "control": [1, 1]},
     {"k": 3, "p": 4, "q": 3, "c": 2, "r": 3}),
    (_CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "p", "r", "c"], "control": [1, 1]},
     {"k": 3, "p": 3, "q": 3, "c": 1, "r": 2}),        # runs of 2 steps, shorter than the drain (5)
    (_CONV2, [2, 2], {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p", "q", "c"], "control": [0, 0]}, None),
    (_CONV2, [2, 2], {"spatial": {"c": 0, "k": 1}, "order": ["c", "k", "p", "q", "r"], "control": [1, 0]}, None),
    (_CONV2, [2, 3, 2], {"spatial": {"r": 0, "k": 1, "p": 2}, "order": ["p", "k", "r", "q", "c"], "control": [1, 1, 0]},
     None),
], ids=["runs-rc-2x2", "runs-shorter-than-drain-2x2", "runs-delay-on-p-memory-fed-2x2", "runs-psum-per-run-2x2",
        "runs-chain-r-2x3x2"])
def test_outputs_held_per_run_in_amaranth(op, shape, df, bounds):
    design, default = _design(op, shape, df)
    r = verify_array_amaranth(design, bounds or default, seed=6)
    assert r.outputs_exact, r.detail
    assert r.detail["psum_reads_before_write"] == 0
    assert r.rtl_cycles == r.model_cycles
