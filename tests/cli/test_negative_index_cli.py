"""True convolutions through the CLI: an index with a negative coefficient (``I[p - r + 2]``) runs through the
generated memory system (its walk steps I's buffer downwards: signed stride fields, dataflow/memctl.py), and so
does one that reaches below 0 (``I[p - r]``): the zero padding a convolution defines there, packed by the host
into the blocks' boxes (docs/memory.md "Zero padding"). An output index is a plain loop index (the operation
parser), so no layer writes below its tensor: refused by field, one line, exit 2, before anything is built."""
import re

import pytest

from tests.conftest import run_cli

SPEC = """version: 1
name: tconv
operation: "O[k,p] += W[k,r] * I[{index}]"
types: {{W: int8, I: int8, O: int32}}
array: {{shape: [2, 2]}}
dataflows:
  d: {{spatial: {{k: 0, p: 1}}, order: [k, p, r], control: [0, 0]}}
"""


def test_an_output_index_off_a_plain_loop_is_refused_by_field(tmp_path, monkeypatch):
    (tmp_path / "t.yaml").write_text(SPEC.format(index="p+r").replace("O[k,p]", "O[k,p-2]"))
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", "k=3,p=4,r=3"], tmp_path, monkeypatch)
    assert rc == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(r"operation: output index p - 2 must be a plain loop index", err), err


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("spatial, order, cycles", [
    ("{k: 0, p: 1}", "[k, p, r]", "239"),      # r walks I's buffer downwards
    ("{p: 0, r: 1}", "[k, r, p]", "342"),      # r on the lanes: lane 0 -> lane 1 steps I's index by -1
])
def test_a_true_convolution_runs_through_the_memory_system(spatial, order, cycles, tmp_path, monkeypatch):
    text = SPEC.format(index="p-r+2").replace("{k: 0, p: 1}", spatial).replace("[k, p, r]", order)
    (tmp_path / "t.yaml").write_text(text)
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", "k=5,p=7,r=3", "--seed", "3"], tmp_path, monkeypatch)
    assert rc == 0, (out, err)
    assert "outputs: exact" in out, out
    rtl = re.search(r"RTL cycles:\s+([\d,]+) cycles", out).group(1)
    model = re.search(r"model cycles:\s+([\d,]+) cycles\s+\(equal\)", out).group(1)
    assert rtl == model == cycles, out          # measured on Verilator, 2026-12-05


SPEC2 = """version: 1
name: tconv2
operation: "O[k,p,q] += I[c,p-r,q-s] * W[k,c,r,s]"
types: {W: int8, I: int8, O: int32}
array: {shape: [2, 2]}
dataflows:
  d: {spatial: {k: 0, p: 1}, order: [k, p, q, c, r, s], control: [0, 0]}
"""


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("text, bounds, tile, order, cycles, dram", [
    # I[p-r]: the blocks of p = 0 reach I[-2] and I[-1] (zero padding in their boxes), 12 blocks
    (SPEC.format(index="p-r"), "k=5,p=7,r=3", "k=1,p=1", "p,k", "1820",
     "I.read 15 B, O.write 140 B, W.read 60 B"),
    # a 2-D padded convolution: boxes below 0 along p and q
    (SPEC2, "k=3,p=5,q=4,c=2,r=3,s=3", "k=1,p=1,q=2", "p,q,k", "1956", "I.read 176 B, O.write 240 B, W.read 324 B"),
])
def test_zero_padding_runs_through_the_memory_system(text, bounds, tile, order, cycles, dram, tmp_path, monkeypatch):
    (tmp_path / "t.yaml").write_text(text)
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", bounds, "--seed", "3", "--tile", tile, "--order", order],
                           tmp_path, monkeypatch)
    assert rc == 0, (out, err)                  # exact, RTL == model cycles, the DMA's bytes == the model's
    assert "outputs: exact" in out, out
    rtl = re.search(r"RTL cycles:\s+([\d,]+) cycles", out).group(1)
    model = re.search(r"model cycles:\s+([\d,]+) cycles\s+\(equal\)", out).group(1)
    assert rtl == model == cycles, out          # measured on Verilator, 2026-12-05
    assert f"DRAM: {dram}  (RTL's DMA moved the same)" in out, out


@pytest.mark.verilator
def test_zero_padding_on_the_array_alone(tmp_path, monkeypatch):
    """The array alone (the host feeds it, dataflow/host.py): I[-2], I[-1] read 0, not I[P-2], I[P-1] (numpy's
    wrap, which made a circular convolution that a circular reference called exact). Cold ~13 s on Verilator."""
    (tmp_path / "t.yaml").write_text(SPEC.format(index="p-r"))
    rc, out, err = run_cli(["verify", "t.yaml", "--ideal-dram", "--bounds", "k=5,p=7,r=3", "--seed", "3"],
                           tmp_path, monkeypatch)
    assert rc == 0, (out, err)
    assert "outputs: exact" in out, out
    rtl = re.search(r"RTL cycles:\s+([\d,]+) cycles", out).group(1)
    model = re.search(r"model cycles:\s+([\d,]+) cycles\s+\(equal\)", out).group(1)
    assert rtl == model == "39", out             # measured on Verilator, 2026-12-05


STT_SPEC = """version: 1
name: conv_hex
clock_mhz: 500
operation: "O[k,p] += W[k,r] * I[p-r]"
types: {W: int8, I: int8, O: int32}
array: {shape: [3, 5]}
dataflows:
  hex: {stt: [[1, 0, -1], [0, 1, -1], [1, 1, 1]], order: [r, k, p]}
memory:
  dram: {width_bytes: 8, latency: 5, burst_bytes: 16, outstanding: 2}
  W: {bytes: 400}
  I: {bytes: 40}
  O: {bytes: 2000}
"""


@pytest.mark.slow
def test_stt_blocks_that_cut_a_padded_index_hold_its_halo(tmp_path, monkeypatch):
    """A skewed stt map's blocks cut p of I[p-r] (their I regions hold the halo below the block's first index,
    dataflow/stt_layer.py ``block_halo``): refused before H115 (``blocks cannot cut p, r``, exit 2); on the one
    run-time programmable build (the sequencers' ``start`` fields) exact, RTL == model cycles, DMA == model."""
    (tmp_path / "t.yaml").write_text(STT_SPEC)
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", "k=7,p=9,r=4", "--seed", "8"], tmp_path, monkeypatch)
    assert rc == 0, (out, err)
    assert "outputs: exact" in out, out
    # 3 blocks of p 4 (a halo of 3): 210 cycles; the "most on chip" planner's p:3 x r:2 took 270 (RTL 270, I.read 30 B)
    assert "RTL cycles:   210 cycles" in out and "model cycles: 210 cycles  (equal)" in out, out
    assert "DRAM: I.read 21 B, O.write 384 B, W.read 96 B  (RTL's DMA moved the same)" in out, out


def test_stt_blocks_whose_region_with_its_halo_does_not_fit_are_refused_by_field(tmp_path, monkeypatch):
    """The halo costs buffer space: a buffer that holds no block's region with it is refused by field, one line,
    exit 2, before anything is built (the message names the halo)."""
    spec = STT_SPEC.replace("I: {bytes: 40}", "I: {bytes: 20}").replace("width_bytes: 8", "width_bytes: 4")
    (tmp_path / "t.yaml").write_text(spec.replace("burst_bytes: 16", "burst_bytes: 8"))
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", "k=3,p=12,r=3"], tmp_path, monkeypatch)
    assert rc == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # a block of one box along p (4) holds 4 + 1 elements of I: two 4-byte words in each of the 5 lane copies
    assert re.search(r"memory\.I\.bytes: layer layer: a block of \{'k': 2, 'p': 4, 'r': 2\} stores the whole region of "
                     r"tensor I with its halo \(1 element\(s\) below the block's first index along each dimension\) in 5 "
                     r"lane copies \(5 x 8 B = 40 B on chip\).*\(got 20\)", err), err
