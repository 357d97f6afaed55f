"""The spec's memory: section: defaults, overrides, field-named errors (docs/memory.md)."""
import subprocess
import sys

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import BufferSpec, DramPort, load_spec


def test_defaults_scale_with_the_array_and_follow_the_dram_bandwidth():
    d = load_spec("gemm_os")
    mem = d.memory
    assert [b.operand for b in mem.buffers] == ["A", "B", "C"]
    assert mem.buffer("A") == BufferSpec("A", 131072, 0, 1, 1, 1, True)
    assert mem.buffer("C").port_bytes == 4 and mem.buffer("C").bytes == 4 * 131072    # int32 accumulator
    assert mem.dram == DramPort(32, 64, 64, 64)                   # 16 GB/s at 500 MHz
    big = load_spec("gemm_os", ["array.shape=32x32"])
    assert big.memory.buffer("A").bytes == 1024 * 1024
    slow = load_spec("gemm_os", ["dram.bandwidth_gbps=4"])
    assert slow.memory.dram.width_bytes == 8


def test_overrides_reach_every_field():
    d = load_spec("gemm_os", ["memory.A.bytes=65536", "memory.B.double_buffer=false", "memory.dram.latency=200",
                              "memory.dram.burst_bytes=128", "memory.dram.outstanding=2", "memory.C.banks=2"])
    assert d.memory.buffer("A").bytes == 65536
    assert d.memory.buffer("B").half_bytes == 131072
    assert d.memory.buffer("C").banks == 2
    assert d.memory.dram == DramPort(32, 200, 128, 2)
    assert d != load_spec("gemm_os")                              # a different design (and compile key)


@pytest.mark.parametrize("override, message", [
    ("memory.A.bytes=0", "memory.A.bytes: must be at least 1 (got 0)"),
    ("memory.dram.width_bytes=0", "memory.dram.width_bytes: must be at least 1 (got 0)"),
    ("memory.dram.outstanding=0", "memory.dram.outstanding: must be at least 1 (got 0)"),
    ("memory.A.bank=2", "memory.A.bank: unknown key; did you mean 'banks'?"),
    ("memory.Q.bytes=2", "memory.Q: no operand of that name; buffers are named by operand (A, B, C) or 'dram'"),
    ("memory.A.double_buffer=3", "memory.A.double_buffer: must be true or false (got 3)"),
])
def test_bad_memory_fields_are_named(override, message):
    with pytest.raises(SpecError) as err:
        load_spec("gemm_os", [override])
    assert message in str(err.value)


def test_cli_exits_2_on_a_zero_dram_width_and_list_shows_memory():
    from archgen.cli import main
    assert main(["build", "gemm_os", "--set", "memory.dram.width_bytes=0", "-o", "/nonexistent/never"]) == 2
    out = subprocess.run([sys.executable, "-m", "archgen", "list"], capture_output=True, text=True, check=True).stdout
    assert "memory: A 131072 B (2 halves), B 131072 B (2 halves), C 524288 B (2 halves); DRAM 32 B/cycle, latency 64 cycles" in out
