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


@pytest.mark.parametrize("spec", ["gemm_os", "gemm_ws", "conv_rs", "gemm_hex"])
@pytest.mark.parametrize("clock, gbps", [(1500, 16), (2000, 16), (700, 16), (300, 16), (1000, 3), (1000, 1)])
def test_default_dram_word_holds_whole_elements_of_every_tensor(spec, clock, gbps):
    """The default port is the bandwidth at the clock rounded down to whole elements of every tensor (the LCM
    of their sizes), never below one such word: a 10 B/cycle default at 1.5 GHz was refused by both memory
    systems for int32 outputs, so every high-clock user had to set memory.dram.width_bytes."""
    d = load_spec(spec, [f"clock_mhz={clock}", f"dram.bandwidth_gbps={gbps}"])
    sizes = [-(-d.type_of[o.name].bits // 8) for o in d.operation.operands]
    w = d.memory.dram.width_bytes
    word = 1
    for s in sizes:
        word = word * s // __import__("math").gcd(word, s)
    assert all(w % s == 0 for s in sizes)
    assert w == max(word, int(gbps * 1000 / clock) // word * word)
    assert w <= max(word, gbps * 1000 / clock)


def test_high_clock_default_memory_system_builds_without_a_width_override():
    """At 1.5 GHz with every memory default, the layer top's program plans a layer (it refused the 10 B/cycle
    word for C's int32 elements before, while `archgen sim` simulated that unbuildable port)."""
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.memctl import layer_program
    from archgen.mappings.memory_tiling import make_command
    d = load_spec("gemm_ws", ["clock_mhz=1500", "array.shape=2x3"])
    cmd = make_command(d, {"i": 7, "k": 5, "j": 6}, d.dataflow(), {"j": 1, "k": 4}, ("j", "k"))
    p = layer_program(compile_array(d), cmd, spec_size=False)
    assert d.memory.dram.width_bytes == 8 and p.dram_words > 0


@pytest.mark.parametrize("value", ["8", "[8]"])
def test_set_array_shape_takes_one_integer_as_a_1d_array(value):
    """``--set array.shape=8`` (YAML reads an int) is the 1-D array [8], as ``[8]`` is; a bool is not."""
    spec = {"version": 1, "name": "row", "operation": "C[i,j] += A[i,k] * B[k,j]",
            "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [4, 4]},
            "dataflows": {"os": {"spatial": {"j": 0}, "order": ["i", "j", "k"], "control": [1]}}}
    from archgen.arch.spec import apply_overrides, load_spec_data
    assert load_spec_data(apply_overrides(spec, [f"array.shape={value}"])).shape == (8,)
    with pytest.raises(SpecError, match=r"array.shape: a list of 1 to 3 positive integers.*\(got True\)"):
        load_spec_data(apply_overrides(spec, ["array.shape=true"]))
