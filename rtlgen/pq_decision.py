"""Progressive-quantization decision: the row maximum of the probabilities against a threshold.

SpAtten fetches the MSBs of K and V first; when the largest probability of a row is below the threshold
(the row is "flat", so quantization error matters), it fetches the LSBs and recomputes once. This unit
watches the softmax's exponential stream (``always_ready``, so it never back-pressures) and folds each
beat's kept lanes into a running maximum with a max tree. The probabilities are the exponentials times
the row's reciprocal, a monotone map, so the largest probability is the largest exponential normalised:
when the softmax pulses ``recip_valid``, the unit forms ``row_max = (max_exp * recip) >> norm_shift`` and
one cycle later pulses ``decision`` with ``need_lsb = enable & (row_max < threshold)``. Bit-exact with
archgen.sim.spatten_model.pq_need_lsb on the row's probabilities.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.arch.spatten_spec import SpattenSpec, spatten_formats
from archgen.dataflow.spatten_stages import check_built, pq_stages
from archgen.rtlgen.softmax import exp_beat_layout

__all__ = ["PQDecision"]


class PQDecision(wiring.Component):
    """``inp``: exponential beats (lanes x UQ1.exp_frac) of one row; ``recip``/``recip_valid``: the row's
    reciprocal; ``threshold`` in UQ1.prob_frac; ``enable``. Outputs ``decision`` (pulse), ``need_lsb``
    and ``row_max`` (the row's largest probability, UQ1.prob_frac), held until the next decision."""

    def __init__(self, spec: SpattenSpec, *, external_max: bool = False):
        self.fmt = f = spatten_formats(spec)
        self.lanes = spec.lanes
        self.external_max = external_max
        super().__init__({
            "inp": In(stream.Signature(exp_beat_layout(self.lanes, f.exp_bits), always_ready=True)),
            # with external_max: the row's largest exponential, valid with recip_valid (the softmax
            # tracks it when rows overlap its divider, so the stream maximum would mix two rows)
            "max_exp": In(f.exp_bits),
            "recip": In(f.recip_bits),
            "recip_valid": In(1),
            "threshold": In(f.prob_bits),
            "enable": In(1),
            "decision": Out(1),
            "need_lsb": Out(1),
            "row_max": Out(f.prob_bits),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.fmt
        beat = self.inp.payload
        level = [Mux(beat.keep[i], beat.data[i], 0) for i in range(self.lanes)]
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), 2):
                if i + 1 == len(level):
                    nxt.append(level[i])
                    continue
                w = Signal(f.exp_bits)
                m.d.comb += w.eq(Mux(level[i] > level[i + 1], level[i], level[i + 1]))
                nxt.append(w)
            level = nxt
        beat_max = level[0]
        running = Signal(f.exp_bits)      # exponentials are >= 0: a row starts from zero
        with m.If(self.inp.valid & (beat_max > running)):
            m.d.sync += running.eq(beat_max)
        p_max = Signal(f.prob_bits)
        row_max_exp = self.max_exp if self.external_max else running
        m.d.comb += p_max.eq((row_max_exp * self.recip) >> (f.recip_num_bits - f.prob_frac))
        check_built("PQDecision", ["decision"], pq_stages())   # the decision register below
        m.d.sync += self.decision.eq(0)
        with m.If(self.recip_valid):
            m.d.sync += [self.decision.eq(1), self.row_max.eq(p_max),
                         self.need_lsb.eq(self.enable & (p_max < self.threshold)), running.eq(0)]
        return m
