"""Amaranth-sim bench shared by the layer tops' tests (tests/rtlgen/test_layer_top.py, test_stt_layer.py)."""
from archgen.verif.layer_amaranth import run_layer_top


def run_top(top, dram_words: int, max_cycles: int) -> dict:
    """Raise `go`, tick until `finished` (at most max_cycles), then read the top's cycle counter, its moved
    byte counters and every DRAM word through the read-back port."""
    return run_layer_top(top, dram_words, max_cycles, top.moved)
