"""Operand buffers as Amaranth memories: Yosys maps them to ECP5 block RAM (DP16KD)."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import BufferSpec
from archgen.rtlgen.buffer import OperandBuffer, bank_geometry

from archgen.arch.errors import ToolMissingError
from archgen.rtlgen import synth


def _have_yosys():
    try:
        synth.find_tool("yosys")
        return True
    except ToolMissingError:
        return False


def yosys_test(fn):
    fn = pytest.mark.skipif(not _have_yosys(), reason="yosys not installed (pip install archgen[synth])")(fn)
    return pytest.mark.yosys(fn)


def test_bank_geometry_and_refusals():
    assert bank_geometry(BufferSpec("A", 65536, 0, port_bytes=1), 8) == (8, 8192, 8)
    assert bank_geometry(BufferSpec("C", 65536, 2, port_bytes=4), 8) == (2, 8192, 32)
    with pytest.raises(SpecError, match=r"memory.A.banks: must divide the 8 memory-fed lanes \(got 3\)"):
        bank_geometry(BufferSpec("A", 65536, 3), 8)


@yosys_test
def test_a_4_lane_buffer_maps_to_dp16kd():
    from amaranth.back import verilog

    from archgen.rtlgen.synth import yosys_stats
    text = verilog.convert(OperandBuffer(BufferSpec("A", 8192, 0, port_bytes=1), 4), name="buf_a")
    stats = yosys_stats(text, "buf_a", target="ecp5")
    # 4 banks of 2048 x 8 bits = 16 Kib each: one DP16KD per bank
    assert stats["cells"].get("DP16KD", 0) == 4, stats["cells"]
    assert not any(k.startswith("TRELLIS_DPR16X4") for k in stats["cells"])
