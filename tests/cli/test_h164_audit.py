"""What the issue-14 acceptance audit (H164, docs/limits.md) found on the user's path: messages that named the
wrong field or the wrong fix, the audit's own specs (examples/issue14/) staying valid, and a failed build
leaving an earlier build's files in ``-o DIR`` untouched."""
from pathlib import Path

import pytest

from tests.conftest import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "issue14"


@pytest.mark.parametrize("shape,line", [
    ("2000x2", "array.shape: every array dimension must be at most 1024 (got [2000, 2])"),
    ("4x1025", "array.shape: every array dimension must be at most 1024 (got [4, 1025])"),
    ("0x4", "array.shape: every array dimension must be at least 1 (got [0, 4])"),
])
def test_an_array_extent_out_of_range_names_the_limit(shape, line, tmp_path, monkeypatch):
    rc, out, err = run_cli(["check", "gemm_fused", "--set", f"array.shape={shape}"], tmp_path, monkeypatch)
    assert rc == 2 and line in err and "Traceback" not in err
    assert "positive integers" not in err          # 2000 is a positive integer: the old message misled


@pytest.mark.parametrize("entry", ["nosuch:ws", "gemm_wss:ws"])
def test_fuse_borrowing_from_a_missing_spec_names_the_option(entry, tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", "gemm_os", "--fuse", f"os,{entry}", "-o", "o"], tmp_path, monkeypatch)
    spec = entry.split(":")[0]
    assert rc == 2 and "Traceback" not in err
    assert f"--fuse: spec '{spec}': no such file, and no built-in spec of that name" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def _files(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv", [
    ["--fuse", "os,xx"],
    ["--fuse", "os"],
    ["--set", "fuse=[os,os]"],
    ["--set", "fuse=[]"],
    ["--set", "dataflows.ws.schedule=map"],
    ["--set", "array.shape=2000x2"],
])
def test_a_refused_build_leaves_the_previous_output_directory_intact(argv, tmp_path, monkeypatch):
    rc, _, err = run_cli(["build", "gemm_fused", "--set", "array.shape=1x2", "-o", "o"], tmp_path, monkeypatch)
    assert rc == 0, err
    before = _files(tmp_path / "o")
    assert len(before) == 2
    rc, _, err = run_cli(["build", "gemm_fused", "--set", "array.shape=1x2", *argv, "-o", "o"], tmp_path, monkeypatch)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _files(tmp_path / "o") == before


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_the_audits_specs_stay_valid(name, tmp_path, monkeypatch):
    rc, out, err = run_cli(["check", str(EXAMPLES / name)], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "valid array spec" in out


def test_check_of_a_fused_spec_says_what_is_fused(tmp_path, monkeypatch):
    rc, out, err = run_cli(["check", str(EXAMPLES / "fold_ws_fused.yaml")], tmp_path, monkeypatch)
    assert rc == 0, err
    assert "; fused into one design: fold, ws (selected per command)" in out
    rc, out, err = run_cli(["check", "gemm_os"], tmp_path, monkeypatch)
    assert rc == 0 and "fused" not in out


def test_tile_on_a_spec_that_fuses_says_where_the_fusion_comes_from(tmp_path, monkeypatch):
    rc, out, err = run_cli(["verify", "gemm_fused", "--gemm", "3,3,3", "--tile", "i=1"], tmp_path, monkeypatch)
    assert rc == 2 and "Traceback" not in err
    assert "--tile: does not apply with a fused design (the spec's fuse: os, ws, is;" in err
    assert "without fuse:" in err                  # the fix: the user never typed --fuse


@pytest.mark.parametrize("value,line", [
    ("os", "fuse: must be a list; give two or more of this spec's dataflow names, e.g. fuse: [os, ws] (got 'os')"),
    ("[]", "fuse: must have at least 2 entries; give two or more"),
    ("[os]", "fuse: must have at least 2 entries; give two or more"),
    ("[1,2]", "fuse.0: must be text; give two or more"),
    ("[os,os]", "fuse.1: dataflow listed twice; name each dataflow once (got 'os')"),
    ("[os,xx]", "fuse.1: no dataflow of that name; dataflows are os, ws, is (got 'xx')"),
])
def test_a_malformed_fuse_list_gets_its_fix(value, line, tmp_path, monkeypatch):
    rc, out, err = run_cli(["check", "gemm_fused", "--set", f"fuse={value}"], tmp_path, monkeypatch)
    assert rc == 2 and "Traceback" not in err
    assert line in err


@pytest.mark.parametrize("argv", [
    ["build", "gemm_fused", "--dataflow", "zz", "-o", "o"],
    ["verify", "gemm_fused", "--dataflow", "zz", "--gemm", "3,3,3"],
    ["sim", "gemm_fused", "--dataflow", "zz", "--workload", "gemm:4,4,4"],
])
def test_an_unknown_dataflow_option_is_refused_naming_the_option(argv, tmp_path, monkeypatch):
    rc, out, err = run_cli(argv, tmp_path, monkeypatch)
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "archgen: --dataflow: no dataflow named 'zz' in spec 'gemm_fused'; choose one of: os, ws, is (got 'zz')"]


@pytest.mark.parametrize("name", sorted(p.name for p in (EXAMPLES / "hostile").glob("*.yaml")))
def test_the_audits_hostile_specs_are_refused_in_one_field_named_line(name, tmp_path, monkeypatch):
    rc, out, err = run_cli(["build", str(EXAMPLES / "hostile" / name), "-o", "o"], tmp_path, monkeypatch)
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    field = "fuse" if name.startswith("fuse") else "dataflows."
    assert f": {field}" in lines[0], lines[0]
    assert "(got " in lines[0] or "misses iterations, e.g." in lines[0], lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra,says", [
    (["--dataflow", "ws"], "running ws (command field dataflow = 1) on the one layer core of `build --memory`"),
    ([], "running os (command field dataflow = 0), ws (command field dataflow = 1), is (command field dataflow = 2) "
         "one after another in ONE simulation"),
])
def test_verify_of_fused_dataflows_says_how_they_run(extra, says, tmp_path, monkeypatch):
    """The header line only (the Verilator run is replaced by one that returns no layers)."""
    import archgen.verif.fused_program_check as fpc
    ran = []
    monkeypatch.setattr(fpc, "verify_fused_program", lambda design, layers, **kw: ran.append(layers) or [])
    rc, out, err = run_cli(["verify", "gemm_fused", "--set", "array.shape=1x2", "--gemm", "2,2,2", *extra],
                           tmp_path, monkeypatch)
    assert rc == 0, err
    assert says in out
    assert [n for n, _ in ran[0]] == (["ws"] if extra else ["os", "ws", "is"])


def test_the_fusion_reports_cycle_line_claims_no_verilator_run_it_did_not_make():
    """`build --report` prints model cycles only; its line said "RTL == model on Verilator" without a run."""
    from archgen.arch.spec import load_spec
    from archgen.dataflow.compile import compile_fused
    from archgen.fusion_cli import format_fusion_report, fusion_report
    from archgen.rtlgen.fused_array import fused_verilog
    design = load_spec("gemm_fused", ["array.shape=1x2"])
    fused = compile_fused(design, design.fuse)
    text, top = fused_verilog(fused)
    lines = format_fusion_report(fusion_report(fused, text, top, synth=False))
    line = next(x for x in lines if "cycles on the reference problem" in x)
    assert "RTL == model on Verilator for both" not in line
    assert "not run on Verilator here" in line
    assert "archgen verify SPEC --ideal-dram --bounds i=3,j=5,k=5" in line


def test_verify_refuses_a_zero_dram_latency_before_any_work(tmp_path, monkeypatch):
    """It was refused by the generated DRAM port after the run's header, naming memory.dram.latency."""
    rc, out, err = run_cli(["verify", "gemm_fused", "--gemm", "3,3,3", "--dram-latency", "0"], tmp_path, monkeypatch)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip().splitlines() == ["archgen: --dram-latency: the generated DRAM port that verify runs needs a "
                                        "latency of at least 1 cycle (archgen sim models 0) (got 0)"]


@pytest.mark.parametrize("argv", [
    ["sim", "spatten_small", "--workload", "bert-base", "--seq", "16", "--dram-latency", "3"],
    ["verify", "spatten_small", "--unit", "topk", "--n", "4", "--k", "2", "--dram-bw", "3"],
])
def test_dram_options_on_a_spatten_spec_name_the_option(argv, tmp_path, monkeypatch):
    """They were applied as memory.dram.* overrides first and refused as `memory: unknown key`."""
    rc, out, err = run_cli(argv, tmp_path, monkeypatch)
    assert rc == 2 and "Traceback" not in err
    assert f"{argv[-2]}: does not apply to a SpAtten spec" in err and "memory: unknown key" not in err


@pytest.mark.parametrize("bw", ["1", "6"])
def test_verify_refuses_a_dram_width_the_generated_top_cannot_move_naming_the_option(bw, tmp_path, monkeypatch):
    """It was refused after the run's header as memory.dram.width_bytes; archgen sim still models it."""
    rc, out, err = run_cli(["verify", "gemm_fused", "--gemm", "3,3,3", "--dram-bw", bw], tmp_path, monkeypatch)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [f"archgen: --dram-bw: the generated DRAM port that verify runs moves whole "
                                        f"elements: a multiple of C 4 B, e.g. 4 (got {bw})"]
    rc, out, err = run_cli(["sim", "gemm_os", "--workload", "gemm:4,4,4", "--dram-bw", bw], tmp_path, monkeypatch)
    assert rc == 0, err
