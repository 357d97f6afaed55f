import pytest
import yaml

from archgen.arch.errors import SpecError
from archgen.dataflow.delays import DelayTable, WidthCurve


@pytest.mark.parametrize("target", ["asic", "ecp5"])
def test_builtin_tables_load_and_name_their_sources(target):
    t = DelayTable.load(target)
    assert t.target == target
    assert {name for name, _ in t.sources} == {"register", "multiplier", "adder", "mux2", "memory_port",
                                               "fanout", "tree_level", "fu_pitch_wire"}
    assert all(src for _, src in t.sources)
    assert t.memory_latency >= 1
    # wider multipliers are not faster than narrow ones in either table
    assert t.multiplier_ns(16) >= t.multiplier_ns(8) >= t.multiplier_ns(4)
    assert t.fanout_ns(1) == 0.0 and t.fanout_ns(64) > t.fanout_ns(4) > 0


def test_width_curve_interpolates_and_extrapolates():
    c = WidthCurve((8, 16), (1.0, 2.0))
    assert c.at(4) == 1.0
    assert c.at(12) == pytest.approx(1.5)
    assert c.at(24) == pytest.approx(3.0)


def test_fanout_term_is_per_log2_plus_per_sink():
    t = DelayTable.load("asic")
    assert t.fanout_ns(16) == pytest.approx(4 * t.fanout_ns_per_log2_sinks + 16 * t.fanout_ns_per_sink)


def test_bad_table_lists_every_problem(tmp_path):
    doc = yaml.safe_load((__import__("importlib").resources.files("archgen.dataflow") / "data" /
                          "delays_asic.yaml").read_text())
    doc["register"]["setup_ns"] = -1
    del doc["adder"]["source"]
    doc["multiplier"]["delay_ns"] = {8: "fast"}
    doc["memory_port"]["latency_cycles"] = 0
    doc["extra"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as info:
        DelayTable.load(path)
    paths = {p.path for p in info.value.problems}
    assert paths == {"register.setup_ns", "adder.source", "multiplier.delay_ns.8", "memory_port.latency_cycles",
                     "extra"}
    assert "5 problems" in str(info.value)


def test_unknown_target_is_a_spec_error():
    with pytest.raises(SpecError, match="not a built-in delay table"):
        DelayTable.load("tsmc7")
