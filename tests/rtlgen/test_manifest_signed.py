"""``layer_manifest.json`` says which command fields are two's complement (``"signed": true``, from
``DescriptorFormat.signed``), so a host that reads only the manifest packs a negative stride or lane-group offset
right. Unsigned fields carry no ``signed`` key (the built-ins' manifests are unchanged)."""
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import layer_program, probe_command
from archgen.rtlgen.build import _core_manifest
from archgen.rtlgen.layer_top import LayerCore

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - 2*s1", "s": "t_s - 2*s1"}
TRUE_CONV = "O[k,p] += W[k,r] * I[p-r+2]"


def _two_leads():
    """r126's ``3x2-two-leads``: r and s both lead by 2*s1 under the map's own schedule (signed group offsets)."""
    df = {"map": CONV, "order": ["n", "k", "p", "q", "r", "c", "s"], "inner": ["r", "c", "s"], "schedule": "map",
          "control": [0, 1]}
    return load_spec_data({"version": 1, "name": "own_schedule", "operation": CONV_OP,
                           "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [3, 2]},
                           "dataflows": {"skew": df}})


def _true_conv(op=TRUE_CONV):
    """A true convolution ``I[p-r+2]``: r walks I's buffer downwards (signed strides, H110)."""
    return load_spec_data({"version": 1, "kind": "array", "name": "tconv", "operation": op,
                           "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
                           "bounds": {"k": 3, "p": 5, "r": 3},
                           "dataflows": {"d": {"spatial": {"k": 0, "p": 1}, "order": ["k", "p", "r"],
                                               "control": [0, 0]}}})


def _manifest_fields(design):
    """(name -> manifest entry) of every command field of the synthesis build's manifest (the probe command's
    program at the spec's sizes, as ``layer_core_verilog`` builds it, without converting the Verilog), and the
    format's signed set."""
    c = compile_array(design)
    core = LayerCore(layer_program(c, probe_command(c.design, c.dataflow), "probe", spec_size=True))
    manifest = _core_manifest(design, core)
    fields = {f["name"]: f for t in manifest["descriptor_tables"].values() for f in t["fields"]}
    return fields, core.fmt.signed


def _check_marks(fields, signed):
    assert signed                                            # the design has two's-complement fields
    assert {n for n, f in fields.items() if f.get("signed")} == set(signed)
    assert all(f["signed"] is True for n, f in fields.items() if n in signed)
    assert not any("signed" in f for n, f in fields.items() if n not in signed)


def test_two_leads_lists_its_signed_group_offsets():
    fields, signed = _manifest_fields(_two_leads())
    _check_marks(fields, signed)
    assert any("_group" in n for n in signed)                # the lane-group offsets that start below lane 0


def test_negative_strides_are_listed_signed():
    fields, signed = _manifest_fields(_true_conv())
    _check_marks(fields, signed)
    assert any("_stride" in n for n in signed)


def test_an_upward_design_has_no_signed_key():
    fields, signed = _manifest_fields(_true_conv("O[k,p] += W[k,r] * I[p+r]"))
    assert not signed and not any("signed" in f for f in fields.values())
