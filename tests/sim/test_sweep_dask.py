"""The same sweep on a Dask LocalCluster (2 worker processes) gives the records of the local run."""
from __future__ import annotations

import pytest

from archgen.sim import sweep as sw

pytest.importorskip("dask.distributed", reason="the dask extra is not installed (it is in the test extra)")


def test_local_cluster_equals_local_run(tmp_path):
    points = [sw.SweepPoint("gemm_os.yaml", g, w) for g in sw.expand_grid(["array.shape=2x2,4x4",
                                                                            "dram.bandwidth_gbps=4,16"])
              for w in ("gemm:8,8,8", "gemm:16,4,8")]
    local = sw.run_sweep(points, tmp_path / "local")
    on_dask = sw.run_sweep(points, tmp_path / "dask", dask="local:2")
    assert len(local) == 8 and on_dask == local
    assert (tmp_path / "dask" / sw.STORE_NAME).read_bytes() != b""


def test_cli_dask_option(tmp_path, monkeypatch):
    import contextlib
    import io

    from archgen.cli import main
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["sweep", "gemm_os.yaml", "--workload", "gemm:8,8,8", "--vary", "clock_mhz=400,500",
                   "--dask", "local:2", "--out", "o", "--no-plots"])
    assert rc == 0, err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["sweep", "gemm_os.yaml", "--workload", "gemm:8,8,8", "--dask", "local:2", "--workers", "2",
                   "--out", "o2"])
    assert rc == 2 and "--workers: local processes do not apply with --dask" in err.getvalue()
    assert not (tmp_path / "o2").exists()
