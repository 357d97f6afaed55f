import pytest
import yaml

from archgen.arch.errors import SpecError
from archgen.sim.energy import Action, EnergyModel


@pytest.fixture(scope="module")
def model():
    return EnergyModel.load()


def test_table_points_are_reproduced(model):
    # Horowitz ISSCC 2014, 45 nm
    assert model.op_pj("add", 8) == pytest.approx(0.03)
    assert model.op_pj("add", 32) == pytest.approx(0.1)
    assert model.op_pj("mult", 8) == pytest.approx(0.2)
    assert model.op_pj("mult", 32) == pytest.approx(3.1)
    assert model.op_pj("add", 16, "fp") == pytest.approx(0.4)
    assert model.op_pj("mult", 32, "fp") == pytest.approx(3.7)
    assert model.sram_pj(8 * 1024, 64) == pytest.approx(10.0)
    assert model.sram_pj(32 * 1024, 64) == pytest.approx(20.0)
    assert model.sram_pj(1024 * 1024, 64) == pytest.approx(100.0)
    assert model.dram_pj(64, "ddr") == pytest.approx(1300, rel=1e-3)  # 1.3 nJ per 64 bits


def test_interpolation_rules(model):
    # power law through 8 and 32 bits: alpha = log(15.5)/log(4)
    assert model.op_pj("mult", 16) == pytest.approx(0.2 * 15.5 ** 0.5)
    assert model.mac_pj(8) == pytest.approx(0.2 + 0.1)
    # outside the table SRAM energy goes as capacity^0.5; width scales linearly
    assert model.sram_pj(2 * 1024, 64) == pytest.approx(10.0 / 2)
    assert model.sram_pj(8 * 1024, 128) == pytest.approx(20.0)


def test_energy_of_sums_count_times_energy(model):
    e = model.energy_of({"pe": {Action("mac", 8): 1000, Action("register_file", 8): 10},
                         "dram": {Action("dram_read", 8, dram="hbm2"): 256}})
    assert e["pe"] == pytest.approx(1000 * 0.3 + 10 * 0.3)
    assert e["dram"] == pytest.approx(256 * 8 * 3.9)


def test_sram_energy_monotonic_in_capacity(model):
    caps = [256, 1024, 8192, 20000, 32768, 200000, 1 << 20, 1 << 24]
    es = [model.sram_pj(c, 64) for c in caps]
    assert es == sorted(es) and len(set(es)) == len(es)


def test_node_scaling_changes_results(model):
    small = EnergyModel.load(node_nm=22.5)
    assert small.op_pj("mult", 8) == pytest.approx(0.1)          # capacitance rule: E ~ N
    assert small.sram_pj(8192, 64) == pytest.approx(5.0)
    assert small.dram_pj(8) == model.dram_pj(8)                 # DRAM is a separate chip
    assert small.op_area_mm2("mult", 8) == pytest.approx(model.op_area_mm2("mult", 8) / 4)
    low_v = EnergyModel.load(node_nm=45, voltage_v=0.45)
    assert low_v.op_pj("add", 32) == pytest.approx(0.025)
    nodes = [7, 16, 28, 45, 65, 90]
    es = [EnergyModel.load(node_nm=n).mac_pj(8) for n in nodes]
    assert es == sorted(es)


def test_dennard_rule(tmp_path):
    d = yaml.safe_load(open(_default_path()))
    d["scaling"]["rule"] = "dennard"
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(d))
    m = EnergyModel.load(p, node_nm=22.5)
    assert m.op_pj("mult", 8) == pytest.approx(0.2 / 8)


def _default_path():
    from importlib import resources
    return str(resources.files("archgen.sim").joinpath("data/energy_45nm.yaml"))


def test_area(model):
    assert model.op_area_mm2("mult", 8) == pytest.approx(282e-6)
    # 196,608 B key SRAM: 1,572,864 bits x 0.346 um^2 / 0.6
    assert model.sram_area_mm2(196608) == pytest.approx(1572864 * 0.346 / 0.6 * 1e-6)


def test_bad_table_names_every_problem(tmp_path):
    d = yaml.safe_load(open(_default_path()))
    d["ops_pj"]["int"]["mult"] = {8: -1}
    d["sram"]["points_pj"] = {}
    d["scaling"]["rule"] = "moore"
    del d["node_nm"]
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SpecError) as e:
        EnergyModel.load(p)
    msg = str(e.value)
    for path in ("ops_pj.int.mult.8", "sram.points_pj", "scaling.rule", "node_nm"):
        assert path in msg


def test_bad_inputs():
    with pytest.raises(SpecError, match="cannot read"):
        EnergyModel.load("/nonexistent/table.yaml")
    with pytest.raises(SpecError, match="node_nm"):
        EnergyModel.load(node_nm=-3)
    with pytest.raises(SpecError, match="action.capacity_bytes"):
        Action("sram_read", 64)
    with pytest.raises(SpecError, match="known"):
        EnergyModel.load().dram_pj(8, "gddr7")
