"""Golden totals of the layer library, checked against published parameter counts and MACs."""
import pytest

from archgen.arch.errors import SpecError
from archgen.workloads.library import get_workload, list_workloads

# Parameter counts of the reference implementations (torchvision, timm, HF configs)
PUBLISHED_PARAMS = {
    "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
    "bert-base": 109_482_240,
    "bert-large": 335_141_888,
    "vit-b16": 86_567_656,
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "llama2-7b": 6_738_415_616,
}


def test_list_workloads_names_all():
    names = {w.name for w in list_workloads()}
    assert names == set(PUBLISHED_PARAMS)
    phases = {w.name: w.phases for w in list_workloads()}
    assert phases["gpt2-small"] == ("prefill", "decode")
    assert phases["bert-base"] == ("prefill",)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_published(name):
    assert get_workload(name).params == PUBLISHED_PARAMS[name]


def test_cnn_macs():
    # ResNet-50: 4.09 GMACs (torchvision: 4.09 GFLOPS counted as MACs); MobileNetV2: 300 M multiply-adds
    assert get_workload("resnet50").macs == pytest.approx(4.09e9, rel=0.01)
    assert get_workload("mobilenetv2").macs == pytest.approx(300e6, rel=0.01)
    assert get_workload("vit-b16").macs == pytest.approx(17.56e9, rel=0.01)


@pytest.mark.parametrize("seq", [128, 512])
def test_bert_base_macs_by_formula(seq):
    L, d, ffn, pool = 12, 768, 3072, 768 * 768
    per_layer = seq * (4 * d * d + 2 * d * ffn) + 2 * seq * seq * d
    assert get_workload("bert-base", seq=seq).macs == L * per_layer + pool


def test_gpt2_decode_attention_shapes():
    wl = get_workload("gpt2-small", phase="decode", kv_len=991)
    qk = wl.layer("block.attn.qk")
    assert qk.bounds == {"b": 12, "i": 1, "j": 992, "k": 64}
    assert qk.count == 12
    assert qk.operand_elements == {"S": 12 * 992, "Q": 12 * 64, "K": 12 * 992 * 64}
    # decode step: one token through every weight, plus attention over the cache and the LM head
    d = 768
    expected = 12 * (4 * d * d + 2 * d * 3072 + 2 * 992 * d) + d * 50257
    assert wl.macs == expected


def test_llama_prefill_and_decode():
    pre = get_workload("llama2-7b", seq=128)
    dec = get_workload("llama2-7b", phase="decode", kv_len=127)
    assert pre.layer("block.ffn.gate_proj").bounds == {"i": 128, "j": 11008, "k": 4096}
    assert dec.layer("block.attn.av").bounds["j"] == 128
    assert dec.params == pre.params


def test_conv_operand_shapes_include_halo():
    conv1 = get_workload("resnet50").layer("conv1")
    assert conv1.einsum == "O[n,k,p,q] += I[n,c,p*2+r,q*2+s] * W[k,c,r,s]"
    # 112 outputs at stride 2 with a 7x7 kernel read 2*111+7 = 229 rows (224 + padding 3 + 2)
    assert conv1.operand_shapes == {"O": (1, 64, 112, 112), "I": (1, 3, 229, 229), "W": (64, 3, 7, 7)}


def test_batch_scales_macs():
    assert get_workload("resnet50", batch=4).macs == 4 * get_workload("resnet50").macs


def test_any_sequence_length():
    """Architects sweep sequence length past the trained positions: the shapes scale."""
    short, long = get_workload("bert-base", seq=512), get_workload("bert-base", seq=2048)
    assert long.macs > 4 * short.macs * 0.9
    assert get_workload("gpt2-small", phase="decode", kv_len=4095).kv_len == 4095


def test_unknown_name_lists_known():
    with pytest.raises(SpecError) as e:
        get_workload("resnet51")
    assert "resnet50" in str(e.value) and "bert-base" in str(e.value)


@pytest.mark.parametrize("kwargs, field", [
    (dict(name="bert-base", seq=0), "seq"),
    (dict(name="bert-base", seq=-5), "seq"),
    (dict(name="bert-base", phase="decode"), "phase"),
    (dict(name="resnet50", seq=128), "seq"),
    (dict(name="gpt2-small", phase="decode", kv_len=-1), "kv_len"),
    (dict(name="gpt2-small", phase="decode", seq=10), "seq"),
    (dict(name="gpt2-small", kv_len=10), "kv_len"),
    (dict(name="gpt2-small", phase="generate"), "phase"),
    (dict(name="gpt2-small", batch=0), "batch"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    name = kwargs.pop("name")
    with pytest.raises(SpecError) as e:
        get_workload(name, **kwargs)
    assert str(e.value).startswith(f"{field}:")


def test_layers_parse_with_the_ir_parser():
    for name in ("resnet50", "mobilenetv2", "gpt2-small"):
        for layer in get_workload(name).layers:
            if layer.einsum:
                op = layer.operation()
                assert op is not None
