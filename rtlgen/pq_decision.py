"""Progressive-quantization decision: the row maximum of the probabilities against a threshold.

SpAtten fetches the MSBs of K and V first; when the largest probability of a row is below the threshold
(the row is "flat", so quantization error matters), it fetches the LSBs and recomputes once. This unit
watches the softmax output stream (``always_ready``, so it never back-pressures), folds each beat's kept
lanes into a running maximum with a max tree, and one cycle after the row's last beat pulses
``decision`` with ``need_lsb = enable & (row max < threshold)``. Bit-exact with
archgen.sim.spatten_model.pq_need_lsb.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.rtlgen.softmax import prob_beat_layout

__all__ = ["PQDecision"]


class PQDecision(wiring.Component):
    """``inp``: probability beats (lanes x UQ1.15); ``threshold`` in the same format; ``enable``."""

    def __init__(self, lanes: int, prob_bits: int = 16):
        self.lanes, self.prob_bits = lanes, prob_bits
        super().__init__({
            "inp": In(stream.Signature(prob_beat_layout(lanes, prob_bits), always_ready=True)),
            "threshold": In(prob_bits),
            "enable": In(1),
            "decision": Out(1),
            "need_lsb": Out(1),
            "row_max": Out(prob_bits),
        })

    def elaborate(self, platform):
        m = Module()
        beat = self.inp.payload
        level = [Mux(beat.keep[i], beat.data[i], 0) for i in range(self.lanes)]
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), 2):
                if i + 1 == len(level):
                    nxt.append(level[i])
                    continue
                w = Signal(self.prob_bits)
                m.d.comb += w.eq(Mux(level[i] > level[i + 1], level[i], level[i + 1]))
                nxt.append(w)
            level = nxt
        beat_max = level[0]
        running = Signal(self.prob_bits)
        merged = Mux(beat_max > running, beat_max, running)
        m.d.sync += self.decision.eq(0)
        with m.If(self.inp.valid):
            with m.If(beat.last):
                # The row is complete: publish, and start the next row from zero (probabilities are >= 0).
                m.d.sync += [self.decision.eq(1), self.row_max.eq(merged),
                             self.need_lsb.eq(self.enable & (merged < self.threshold)), running.eq(0)]
            with m.Else():
                m.d.sync += running.eq(merged)
        return m
