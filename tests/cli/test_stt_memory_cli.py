"""The CLI on skewed stt maps through the memory system: sim without --ideal-dram uses the stt layer contract;
build --memory (the tiled layer core) refuses a skewed map by field instead of crashing."""
from conftest import run_cli


def test_sim_without_ideal_dram_reports_the_stt_layer(tmp_path, monkeypatch):
    rc, out, err = run_cli(["sim", "gemm_hex", "--set", "array.shape=3x5", "--workload", "gemm:7,5,6"], tmp_path,
                           monkeypatch)
    assert rc == 0, err
    assert "stt one" in out and "│    258 │" in out       # the mapping column and the contract's cycles


def test_build_memory_refuses_a_skewed_map_by_field(tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_hex", "--memory", "-o", str(tmp_path / "b")], tmp_path, monkeypatch)
    assert rc == 2
    assert "dataflows.hex.stt: the tiled layer core cannot run a skewed stt map" in err
    assert "(got [[1, 0, -1], [0, 1, -1], [1, 1, 1]])" in err


def test_sim_runs_bert_base_on_gemm_hex_in_blocks_at_default_sizes(tmp_path, monkeypatch):
    rc, out, err = run_cli(["sim", "gemm_hex", "--workload", "bert-base", "--seq", "128"], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "stt 32" in out and "blocks of" in out    # q_proj: 128 x 768 x 768 in a grid of 8 x 4 blocks
