"""SCALE-Sim topology CSVs: both forms read as SCALE-Sim reads them (MACs by its own formula),
hostile files refused with row- and column-named problems."""
from __future__ import annotations

import pytest

from archgen.arch.errors import SpecError
from archgen.workloads.scalesim import parse_scalesim_topology, read_scalesim_topology

# written as SCALE-Sim's topologies/conv_nets/*.csv are: spaces after commas, a trailing comma per row
CONV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
Conv1,  224, 224,    7, 7,      3,      64,     2,
Conv2_1a,56,56,3,3,64,64,1,
Conv_DP,  112, 112,    3, 3,      32,      1,     1,
"""
GEMM = """Layer,M,N,K,
1,256,128,2048,
2,128,64,2048,
"""


def scalesim_macs(ih, iw, fh, fw, ch, nf, s):
    """SCALE-Sim's topology_utils: ofmap = ceil((ifmap - filt + stride) / stride), MACs = ofmap px x window x filters."""
    oh = -(-(ih - fh + s) // s)
    ow = -(-(iw - fw + s) // s)
    return oh * ow * fh * fw * ch * nf


def test_conv_form(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text(CONV)
    wl = read_scalesim_topology(path)
    assert wl.name == "net" and [l.name for l in wl.layers] == ["Conv1", "Conv2_1a", "Conv_DP"]
    c1, c2, dp = wl.layers
    assert c1.einsum == "O[n,k,p,q] += I[n,c,p*2+r,q*2+s] * W[k,c,r,s]"
    assert c1.bounds == {"n": 1, "k": 64, "c": 3, "p": 110, "q": 110, "r": 7, "s": 7}
    assert c1.macs == scalesim_macs(224, 224, 7, 7, 3, 64, 2)
    assert c2.einsum == "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]" and c2.macs == scalesim_macs(56, 56, 3, 3, 64, 64, 1)
    # 'DP' in the name: SCALE-Sim runs one 1-channel conv per channel
    assert dp.count == 32 and dp.bounds["c"] == 1 and dp.macs == 32 * scalesim_macs(112, 112, 3, 3, 1, 1, 1)
    # the input the einsum reads is exactly the IFMAP (SCALE-Sim's sizes include padding)
    assert c2.operand_shapes["I"] == (1, 64, 56, 56)


def test_gemm_form_and_stride_width_column():
    wl = parse_scalesim_topology(GEMM, name="mnk")
    assert [(l.bounds["i"], l.bounds["j"], l.bounds["k"]) for l in wl.layers] == [(256, 128, 2048), (128, 64, 2048)]
    assert wl.layers[0].macs == 256 * 128 * 2048 and wl.layers[0].kind == "gemm"
    nine = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides, "
            "Stride width,\nc,9,9,3,3,1,1,1,2,\n")
    (c,) = parse_scalesim_topology(nine).layers
    assert c.bounds["p"] == 7 and c.bounds["q"] == 4 and c.einsum == "O[n,k,p,q] += I[n,c,p+r,q*2+s] * W[k,c,r,s]"


def test_simulates_on_an_array(tmp_path):
    from archgen.arch.spec import load_spec
    from archgen.sim.array_sim import simulate_workload_on_array
    wl = parse_scalesim_topology("Layer, M, N, K,\nfc, 8, 4, 16,\n")
    results, _ = simulate_workload_on_array(load_spec("gemm_os.yaml"), wl)
    assert results[0].macs == 8 * 4 * 16 and results[0].cycles > 0


HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


@pytest.mark.parametrize("text, expected", [
    (HEADER + "c,x,9,3,3,1,1,1,\n", "row 2, IFMAP Height: must be an integer in 1..1,000,000 (got 'x')"),
    (HEADER + "c,9,9,3,3,0,1,1,\n", "row 2, Channels: must be an integer in 1..1,000,000 (got '0')"),
    (HEADER + "c,9,9,3,3,1,1,-2,\n", "row 2, Strides: must be an integer in 1..1,000,000 (got '-2')"),
    (HEADER + "c,9,9,3,3,1,1,1e9,\n", "row 2, Strides: must be an integer"),
    (HEADER + "c,2,9,3,3,1,1,1,\n", "row 2, Filter Height: larger than the IFMAP Height (2)"),
    (HEADER + "c,9,9,3,3,1,1,\n", "row 2: 7 values; a conv row has 8"),
    (HEADER + ",9,9,3,3,1,1,1,\n", "row 2, Layer name: a layer needs a name"),
    (HEADER + "c,9,9,3,3,1,1,1,\nc,9,9,3,3,1,1,1,\n", "row 3, Layer name: this layer name appears twice"),
    ("Layer, M, N,\nfc,1,2,\n", "topology.header: not a SCALE-Sim topology header"),
    ("", "topology: the file has no header row"),
    (HEADER, "topology: the file has a header but no layers"),
    ("Layer,M,N,K,\nfc,1,2,3\x00,\n", "topology: the text contains NUL characters"),
])
def test_hostile_topologies_name_the_row_and_column(text, expected):
    with pytest.raises(SpecError) as err:
        parse_scalesim_topology(text, source="t.csv")
    assert expected in str(err.value)
    assert str(err.value).startswith("t.csv: ")


def test_hostile_files(tmp_path):
    (tmp_path / "latin.csv").write_bytes(b"Layer,M,N,K,\ncaf\xe9,1,2,3,\n")
    with pytest.raises(SpecError, match=r"topology: not UTF-8 text: byte 0xe9 at offset 16"):
        read_scalesim_topology(tmp_path / "latin.csv")
    with pytest.raises(SpecError, match="is a directory"):
        read_scalesim_topology(tmp_path)
    with pytest.raises(SpecError, match="cannot read the file"):
        read_scalesim_topology(tmp_path / "missing.csv")
    (tmp_path / "big.csv").write_text("Layer,M,N,K,\n" + "x,1,1,1,\n" * 200_000)
    with pytest.raises(SpecError, match="larger than 1,048,576 bytes"):
        read_scalesim_topology(tmp_path / "big.csv")
