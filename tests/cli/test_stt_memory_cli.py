"""The CLI on skewed stt maps through the memory system: sim without --ideal-dram uses the stt layer contract;
build --memory writes the stt layer top (banked buffers, external DRAM port), one build for every layer."""
from conftest import run_cli


def test_sim_without_ideal_dram_reports_the_stt_layer(tmp_path, monkeypatch):
    rc, out, err = run_cli(["sim", "gemm_hex", "--set", "array.shape=3x5", "--workload", "gemm:7,5,6"], tmp_path,
                           monkeypatch)
    assert rc == 0, err
    # the mapping (its own line) and the contract's cycles on the one build (what archgen verify measures: 261 cycles)
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["gemm", "gemm"])
    assert "stt one" in out and row[3] == "261", row       # layer, kind, MACs, cycles


def test_build_memory_writes_the_stt_layer_top(tmp_path, monkeypatch):
    """A skewed map builds its own memory system (rtlgen/stt_layer.py), one build for every layer: Verilog
    and a manifest of the banked buffers, the command's fields and the spec's layer as an example command."""
    import json
    rc, out, err = run_cli(["build", "gemm_hex", "--memory", "-o", str(tmp_path / "b")], tmp_path, monkeypatch)
    assert rc == 0, err
    assert (tmp_path / "b" / "gemm_hex_stt_layer.v").is_file()
    manifest = json.loads((tmp_path / "b" / "layer_manifest.json").read_text())
    assert manifest["layer"] == {"i": 3, "j": 3, "k": 3} and manifest["buffers"]["C"]["banks"] > 1
    assert "one build for every layer" in out and "example layer {'i': 3, 'j': 3, 'k': 3}" in out
    assert manifest["command"]["bits"] > 0 and len(manifest["example_command"]["words"]) == manifest["command"]["words"]
    # no LP pipelining in a skewed map's build: the flags change nothing, and the build says so
    rc, out2, err = run_cli(["build", "gemm_hex", "--memory", "--no-pipeline", "--target", "ecp5", "-o",
                             str(tmp_path / "c")], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "--no-pipeline and --target change nothing in this build" in out2
    assert "change nothing" not in out
    assert (tmp_path / "c" / "gemm_hex_stt_layer.v").read_bytes() == (tmp_path / "b" / "gemm_hex_stt_layer.v").read_bytes()


def test_sim_runs_bert_base_on_gemm_hex_in_blocks_at_default_sizes(tmp_path, monkeypatch):
    rc, out, err = run_cli(["sim", "gemm_hex", "--workload", "bert-base", "--seq", "128"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "stt 32" in out and "blocks of" in out    # q_proj: 128 x 768 x 768 in a grid of 8 x 4 blocks
