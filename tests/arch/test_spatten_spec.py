"""SpAtten spec loading: built-in specs, derived values, two-phase validation with one SpecError."""
import json
from pathlib import Path

import pytest
import yaml

from archgen.arch.errors import SpecError
from archgen.arch.spatten_spec import (SPATTEN_SCHEMA, builtin_spec_path, is_spatten_spec, load_spatten_spec,
                                       spatten_formats, spec_hash)
from archgen.dataflow.spatten_arrays import spatten_arrays, spatten_latencies

ROOT = Path(__file__).resolve().parents[2]


def _raw(name="spatten"):
    return yaml.safe_load(builtin_spec_path(name).read_text())


def test_full_spec_has_the_papers_parameters():
    s = load_spatten_spec(builtin_spec_path("spatten"))
    assert (s.qk.multipliers, s.pv.multipliers, s.bits, s.head_dim) == (512, 512, 12, 64)
    assert s.lanes == 8  # 512 / 64 scores per cycle
    assert (s.softmax.parallelism, s.softmax.fifo_depth, s.softmax.exp_taylor_order) == (8, 128, 5)
    assert (s.topk.parallelism, s.topk.fifo_depth) == (16, 64)
    assert s.key_sram.bytes == s.value_sram.bytes == 196_608 == 2 * 1024 * 64 * 12 // 8
    assert (s.dram.channels, s.dram.channel_bits, s.dram.bandwidth_gb_s) == (16, 128, 512.0)
    assert s.clock_mhz == 1000.0
    assert (s.pq.msb_bits, s.pq.lsb_bits, s.pq.threshold) == (8, 4, 0.1)


def test_small_spec_is_scaled_down():
    s = load_spatten_spec(builtin_spec_path("spatten_small"))
    full = load_spatten_spec(builtin_spec_path("spatten"))
    assert s.qk.multipliers * 8 == full.qk.multipliers
    assert (s.head_dim, s.lanes, s.max_tokens) == (16, 4, 64)


def test_builtin_specs_start_with_a_comment_block():
    for name in ("spatten", "spatten_small"):
        assert builtin_spec_path(name).read_text().startswith("# ")


def test_dict_and_file_give_equal_frozen_values():
    a = load_spatten_spec(_raw())
    b = load_spatten_spec(builtin_spec_path("spatten"))
    assert a == b and spec_hash(a) == spec_hash(b)
    with pytest.raises(AttributeError):
        a.head_dim = 32


def test_is_spatten_spec():
    assert is_spatten_spec(_raw())
    assert not is_spatten_spec({"kind": "array"})
    assert not is_spatten_spec([1, 2])


def test_schema_problems_are_collected_with_paths():
    d = _raw()
    d["bogus"] = 1
    d["units"]["softmax"]["parallelism"] = "eight"
    d["units"]["qk"]["bits"] = 0
    del d["head_dim"]
    with pytest.raises(SpecError) as info:
        load_spatten_spec(d)
    lines = {str(p) for p in info.value.problems}
    assert any(line.startswith("bogus: unknown key") for line in lines)
    assert "units.softmax.parallelism: must be an integer (got 'eight')" in lines
    assert any(line.startswith("units.qk.bits:") and "(got 0)" in line for line in lines)
    assert "head_dim: required key is missing" in lines
    assert len(lines) == 4


def test_semantic_problems_are_collected():
    d = _raw()
    d["head_dim"] = 48
    d["units"]["topk"]["parallelism"] = 12
    d["progressive_quantization"]["msb_bits"] = 6
    with pytest.raises(SpecError) as info:
        load_spatten_spec(d)
    text = str(info.value)
    assert "head_dim: must be a power of two (the QxK adder tree is binary) (got 48)" in text
    assert "units.topk.parallelism: must be a power of two (got 12)" in text
    assert "units.key_sram.bytes: must be buffers x max_tokens x head_dim x bits / 8 = 147456 (got 196608)" in text
    assert "progressive_quantization.msb_bits: msb_bits + lsb_bits must equal units.qk.bits" in text


def test_softmax_fifo_must_hold_a_row():
    d = _raw()
    d["units"]["softmax"]["fifo_depth"] = 64
    with pytest.raises(SpecError, match=r"units\.softmax\.fifo_depth: fifo_depth x parallelism must hold"):
        load_spatten_spec(d)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="cannot read the file: No such file"):
        load_spatten_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1,\n")
    with pytest.raises(SpecError, match=r"yaml: syntax error at line 2, column 1"):
        load_spatten_spec(bad)


def test_published_schema_is_current():
    published = json.loads((ROOT / "docs" / "spatten_spec.schema.json").read_text())
    assert published == json.loads(json.dumps(SPATTEN_SCHEMA))


def test_formats_and_latencies_follow_the_spec():
    s = load_spatten_spec(builtin_spec_path("spatten"))
    f = spatten_formats(s)
    assert f.score_bits == 2 * 12 + 6  # exact 64-term dot product of 12-bit values
    assert f.taylor_coeffs[:3] == (65536, -65536, 32768) and len(f.taylor_coeffs) == 6
    lat = spatten_latencies(s)
    arrays = spatten_arrays(s)
    # one cycle of key/value SRAM read (PxV: then one of normalisation), then the arrays the dataflow
    # analysis derived and the LP pipelined
    assert lat.qk_pipe == 1 + arrays["qk"].latency and lat.pv_pipe == 2 + arrays["pv"].latency
    # the restoring divider computes DIVIDER_BITS quotient bits a cycle, then one cycle reports the result
    from archgen.dataflow.spatten_stages import DIVIDER_BITS
    assert lat.recip == -(-f.recip_bits // DIVIDER_BITS) + 1
    assert (f.recip_bits, DIVIDER_BITS, lat.recip) == (28, 4, 8)


def test_topk_feed_is_a_validated_boolean_on_by_default():
    """units.topk.feed (H98): the top-k engines take rows while the exponential sweep writes them; on
    unless the spec turns it off; a hardware field (in the spec hash), validated as a boolean."""
    assert load_spatten_spec(_raw()).topk.feed is True
    d = _raw()
    d["units"]["topk"]["feed"] = False
    off = load_spatten_spec(d)
    assert off.topk.feed is False and spec_hash(off) != spec_hash(load_spatten_spec(_raw()))
    d["units"]["topk"]["feed"] = "yes"
    with pytest.raises(SpecError) as info:
        load_spatten_spec(d)
    assert "units.topk.feed: must be true or false (got 'yes')" in {str(p) for p in info.value.problems}


def test_qk_preempt_is_a_validated_boolean_on_by_default():
    """units.qk.preempt (H117): an LSB refetch preempts a later query's QxK while its groups are issued;
    on unless the spec turns it off; a hardware field (in the spec hash), validated as a boolean."""
    assert load_spatten_spec(_raw()).qk.preempt is True
    d = _raw()
    d["units"]["qk"]["preempt"] = False
    off = load_spatten_spec(d)
    assert off.qk.preempt is False and spec_hash(off) != spec_hash(load_spatten_spec(_raw()))
    d["units"]["qk"]["preempt"] = 1
    with pytest.raises(SpecError) as info:
        load_spatten_spec(d)
    assert "units.qk.preempt: must be true or false (got 1)" in {str(p) for p in info.value.problems}


def test_topk_fallback_is_a_validated_choice_tail_by_default():
    """units.topk.fallback (H103, H107): which commands' late top-k rows are swept unpruned: tail (each
    layer's last command, the default), all, none; a hardware field (in the spec hash), validated."""
    assert load_spatten_spec(_raw()).topk.fallback == "tail"
    hashes = {spec_hash(load_spatten_spec(_raw()))}
    for mode in ("all", "none"):
        d = _raw()
        d["units"]["topk"]["fallback"] = mode
        s = load_spatten_spec(d)
        assert s.topk.fallback == mode
        hashes.add(spec_hash(s))
    assert len(hashes) == 3
    for bad in ("maybe", True):
        d = _raw()
        d["units"]["topk"]["fallback"] = bad
        with pytest.raises(SpecError) as info:
            load_spatten_spec(d)
        assert f"units.topk.fallback: must be one of 'tail', 'all', 'none' (got {bad!r})" in {
            str(p) for p in info.value.problems}


def test_topk_fallback_tail_counts_the_last_commands_two_by_default():
    """units.topk.fallback_tail (H120): with fallback tail, how many of each stream's last commands get
    dense_ok; an integer >= 1, by default 2 = the K/V bank count (units.key_sram.buffers of the built-in
    spec; the rule before was 1), in the spec hash."""
    base = load_spatten_spec(_raw())
    assert base.topk.fallback_tail == 2 == base.key_sram.buffers
    d = _raw()
    d["units"]["topk"]["fallback_tail"] = 1
    s = load_spatten_spec(d)
    assert s.topk.fallback_tail == 1 and spec_hash(s) != spec_hash(base)
    for bad in (0, "2", True, 1.5):
        d = _raw()
        d["units"]["topk"]["fallback_tail"] = bad
        with pytest.raises(SpecError) as info:
            load_spatten_spec(d)
        assert any(str(p).startswith("units.topk.fallback_tail:") for p in info.value.problems), info.value.problems
