"""Fixed-point softmax unit of the SpAtten engine, ``lanes`` scores per cycle.

SCORE_BANKS score banks (archgen.dataflow.spatten_stages), so the next rows' scores load while this
row's exponentials are computed (the core overlaps the QxK sweep of one query with the exponential sweep
of the previous one, and keeps a third row's scores until its PQ decision). The load side
accepts beats of ``lanes`` integer scores (with keep bits) into bank ``in_bank`` while a max tree tracks
that bank's row maximum; it is always ready. The sweep side starts on a ``go`` pulse for bank
``go_bank`` (a fully loaded row; ``can_go`` must be high: no row is being issued, though the previous
row's beats may still be in the exponential pipeline, so rows follow each other one cycle apart; each
beat carries its row's maximum and ``shift``, sampled at ``go``): EXP reads the bank back, computes
exp((s - max) * 2**-shift) by range reduction (2**-(n + f)) and a Taylor series of 2**-f (the paper's
5th order by default), emits the exponentials on ``out``, sums them and tracks their maximum. With its
last exponential the row goes to the divider (``div_start``) if the divider is free and ``div_allow``
is high, else it waits (``pend``, its sum and maximum held) while the next row streams on. A row's last
beat is issued only when no earlier row is still on its way to the divider, so at most one row waits.
The divider, a restoring divider with DIVIDER_BITS
quotient bits per cycle (archgen.dataflow.spatten_stages), computes floor(2**recip_num_bits / sum) and pulses ``recip_valid`` (``recip``
and the row's largest exponential ``max_exp`` hold until the next ``div_start``). ``idle``: no row in
the sweep side (none issued, none on its way to the divider). ``clear``
empties bank ``clear_bank`` before it is loaded again; ``go`` leaves the bank as it is, so that
``abort`` (drop every row in the sweep side, its beats in the pipeline included) can be followed by a
second sweep of the same scores. The
division itself is left to the consumer: :class:`Normalize` turns exponentials into UQ1.15 probabilities
with one multiplier per lane, where they are used (the core does it in its prob x V sweep, so the
softmax does not sweep the row a third time). Every step is bit-exact with
archgen.sim.spatten_model.softmax_fixed.

The output stream is ``always_ready``: the consumer must take a beat every cycle it is offered, which is
what keeps the unit's latency a fixed function of the row length (the cycle contract: ``go`` to
``recip_valid`` in ``G + exp_pipe + recip`` cycles, archgen.sim.spatten_model.softmax_cycles).
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.arch.spatten_spec import SpattenSpec, spatten_formats
from archgen.dataflow.spatten_stages import DIVIDER_BITS, SCORE_BANKS, check_built, exp_stages, normalize_stages, recip_steps

__all__ = ["Softmax", "Normalize", "score_beat_layout", "exp_beat_layout", "pick", "SCORE_BANK_BITS"]

SCORE_BANK_BITS = max(1, (SCORE_BANKS - 1).bit_length())


def pick(sel, items: list):
    """``items[sel]`` as a chain of multiplexers (for lists of signals or views)."""
    out = items[0]
    for j in range(1, len(items)):
        out = Mux(sel == j, items[j], out)
    return out


def score_beat_layout(lanes: int, score_bits: int) -> data.StructLayout:
    return data.StructLayout({"data": data.ArrayLayout(signed(score_bits), lanes),
                              "keep": unsigned(lanes), "last": unsigned(1)})


def exp_beat_layout(lanes: int, exp_bits: int) -> data.StructLayout:
    return data.StructLayout({"data": data.ArrayLayout(unsigned(exp_bits), lanes),
                              "keep": unsigned(lanes), "last": unsigned(1)})


def max_tree(m: Module, values: list, keeps: list, width: int):
    """Combinational signed max over the kept lanes; the most negative value when no lane is kept."""
    floor = Const(-(1 << (width - 1)), signed(width))
    level = [Mux(k, v, floor) for v, k in zip(values, keeps)]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            a, b = level[i], level[i + 1] if i + 1 < len(level) else floor
            w = Signal(signed(width))
            m.d.comb += w.eq(Mux(a > b, a, b))
            nxt.append(w)
        level = nxt
    return level[0]


class Softmax(wiring.Component):
    """Softmax over rows of up to ``spec.max_tokens`` scores; see the module docstring for the phases.

    ``out``: the row's exponentials (UQ1.exp_frac), one beat per score beat, pruned lanes 0.
    ``recip``: floor(2**recip_num_bits / sum of the row's exponentials), valid from the ``recip_valid``
    pulse until the next row's division starts.
    """

    def __init__(self, spec: SpattenSpec):
        self.spec = spec
        self.fmt = spatten_formats(spec)
        self.lanes = spec.lanes
        self.depth = spec.softmax.fifo_depth
        super().__init__({
            "inp": In(stream.Signature(score_beat_layout(self.lanes, self.fmt.score_bits), always_ready=True)),
            "in_bank": In(SCORE_BANK_BITS),
            "go": In(1),
            "clear": In(1),
            "clear_bank": In(SCORE_BANK_BITS),
            "abort": In(1),
            "go_bank": In(SCORE_BANK_BITS),
            "idle": Out(1),
            "can_go": Out(1),
            "div_allow": In(1),
            "div_start": Out(1),
            "max_exp": Out(self.fmt.exp_bits),
            "shift": In(self.fmt.shift_bits),
            "out": Out(stream.Signature(exp_beat_layout(self.lanes, self.fmt.exp_bits), always_ready=True)),
            "recip": Out(self.fmt.recip_bits),
            "recip_valid": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        s = _SoftmaxWork(self, m)
        issuing = Signal()
        m.d.comb += issuing.eq(s.ptr < s.s_rows)
        m.d.comb += [self.busy.eq(issuing | s.inflight | s.div_busy), self.idle.eq(~issuing & ~s.inflight),
                     self.can_go.eq(~issuing)]
        load_fire = self._load_side(m, s)
        issue_last, row_data, row_keep = self._sweep_read(m, s)
        exp_issue, exps, ce, valids = self._exp_pipeline(m, s, issue_last, row_data, row_keep)
        start_direct, fin_total, fin_max, div_ready = self._row_end(m, s, exps, ce)
        self._sweep_fsm(m, s, issuing, exp_issue, issue_last, ce, fin_total, fin_max, div_ready)
        self._divider(m, s, start_direct, fin_total, fin_max)
        # abort: drop the row being swept (its beats in the pipeline and the sweep itself); the bank
        # keeps its scores, so the row can be swept again. Every row in the sweep side is dropped (the
        # one being issued and the one in the pipeline's tail or waiting for the divider)
        with m.If(self.abort):
            m.d.sync += [s.ptr.eq(0), s.s_rows.eq(0), s.inflight.eq(0), s.pend.eq(0), s.total.eq(0),
                         s.emax.eq(0), *[v.eq(0) for v in valids]]
        beat = self.inp.payload
        m.d.comb += [s.wp.addr.eq(Cat(pick(self.in_bank, s.rows)[:s.abits], self.in_bank)),
                     s.wp.en.eq(load_fire), s.wp.data.eq(Cat(*[beat.data[i] for i in range(self.lanes)], beat.keep))]
        return m

    def _load_side(self, m, s):
        """Load side: write each beat to its bank, fold its kept lanes into that bank's maximum."""
        P, sw, rows, bmax = self.lanes, self.fmt.score_bits, s.rows, s.bmax
        beat = self.inp.payload
        in_max = max_tree(m, [beat.data[i] for i in range(P)], [beat.keep[i] for i in range(P)], sw)
        load_fire = self.inp.valid
        for b in range(SCORE_BANKS):
            with m.If(self.clear & (self.clear_bank == b)):
                m.d.sync += [rows[b].eq(0), bmax[b].eq(s.floor)]
            with m.Elif(load_fire & (self.in_bank == b)):
                m.d.sync += [rows[b].eq(rows[b] + 1), bmax[b].eq(Mux(in_max > bmax[b], in_max, bmax[b]))]
        return load_fire

    def _sweep_read(self, m, s):
        """Sweep side: one row per cycle, rows 0..s_rows-1 of bank s_bank."""
        P, sw, rp = self.lanes, self.fmt.score_bits, s.rp
        issue_last = Signal()
        m.d.comb += [issue_last.eq(s.ptr == s.s_rows - 1), rp.addr.eq(Cat(s.ptr[:s.abits], s.s_bank)), rp.en.eq(1)]
        row_data = [rp.data[i * sw:(i + 1) * sw].as_signed() for i in range(P)]
        row_keep = rp.data[P * sw:]
        return issue_last, row_data, row_keep

    def _exp_pipeline(self, m, s, issue_last, row_data, row_keep):
        """EXP pipeline: stage registers carry (valid, last, keep) alongside the lane values, one stage
        per entry of exp_stages (checked here, so the model's count is the one built here). Range
        reduction to 2**-(n + f), then Horner steps of the Taylor series of 2**-f, then the rounding
        shift. Returns (issue, exponentials, last stage's (valid, last, keep), every stage's valid)."""
        f, P, sw, fb = self.fmt, self.lanes, self.fmt.score_bits, self.fmt.exp_frac
        pipe = _ExpStages(m, P)
        exp_issue = Signal()
        c0 = (Signal(name="x0_v"), Signal(name="x0_last"))
        m.d.sync += [c0[0].eq(exp_issue), c0[1].eq(issue_last)]
        # each beat carries its row's maximum and shift along the stages that use them (the next row's
        # beats follow this row's through the pipeline)
        rmax0 = Signal(signed(sw), name="x0_rmax")
        sh0, sh1, sh2 = (Signal(f.shift_bits, name=f"x{j}_shift") for j in range(3))
        m.d.sync += [rmax0.eq(s.row_max), sh0.eq(s.s_shift), sh1.eq(sh0), sh2.eq(sh1)]
        pipe.valids.append(c0[0])
        c1 = pipe.ctl("x1")
        pipe.advance(c1, (c0[0], c0[1], row_keep))
        diff = [Signal(sw + 1, name=f"diff{i}") for i in range(P)]
        m.d.sync += [diff[i].eq(rmax0 - row_data[i]) for i in range(P)]
        c2 = pipe.ctl("x2")
        pipe.advance(c2, c1)
        prod = [Signal(sw + 1 + f.log2e_fx.bit_length(), name=f"ylog{i}") for i in range(P)]
        m.d.sync += [prod[i].eq(diff[i] * f.log2e_fx) for i in range(P)]
        c3 = pipe.ctl("x3")
        pipe.advance(c3, c2)
        nint = [Signal(range(f.exp_bits + 1), name=f"nint{i}") for i in range(P)]
        frac = [Signal(fb, name=f"frac{i}") for i in range(P)]
        for i in range(P):
            y = Signal(len(prod[i]), name=f"y{i}")
            m.d.comb += y.eq(prod[i] >> sh2)
            m.d.sync += [nint[i].eq(Mux(y[fb:] >= f.exp_bits, f.exp_bits, y[fb:])), frac[i].eq(y[:fb])]
        stage = pipe.ctl("x4")
        pipe.advance(stage, c3)
        t = [Signal(fb, name=f"t{i}") for i in range(P)]
        n_d = [Signal(range(f.exp_bits + 1), name=f"n4_{i}") for i in range(P)]
        m.d.sync += [t[i].eq((frac[i] * f.ln2_fx) >> fb) for i in range(P)]
        m.d.sync += [n_d[i].eq(nint[i]) for i in range(P)]
        stage, acc, n_d = self._taylor(m, pipe, stage, t, n_d)
        ce = pipe.ctl("xe")
        pipe.advance(ce, stage)
        exps = [Signal(f.exp_bits, name=f"e{i}") for i in range(P)]
        for i in range(P):
            clamped = Mux(acc[i] < 0, 0, Mux(acc[i] > (1 << fb), 1 << fb, acc[i][:f.exp_bits]))
            # Rounding shift (bias 2**(n-1)); n == exp_bits means the exponential underflowed to 0.
            rounded = (clamped + ((Const(1, f.exp_bits + 2) << n_d[i]) >> 1)) >> n_d[i]
            m.d.sync += exps[i].eq(Mux(stage[2][i] & (n_d[i] != f.exp_bits), rounded, 0))
        if tuple(pipe.built) != exp_stages(f):
            raise RuntimeError(f"softmax built the stages {pipe.built}, but the cycle model counts {exp_stages(f)} "
                               "(archgen.dataflow.spatten_stages); update both together")
        return exp_issue, exps, ce, pipe.valids

    def _taylor(self, m, pipe, stage, t, n_d):
        """One pipeline stage per Horner step of the Taylor series of 2**-t (t, n carried along)."""
        f, P, fb = self.fmt, self.lanes, self.fmt.exp_frac
        coeffs = f.taylor_coeffs
        acc = [Const(coeffs[-1], signed(fb + 3)) for _ in range(P)]
        for j, c in enumerate(reversed(coeffs[:-1])):
            nxt = pipe.ctl(f"h{j}")
            pipe.advance(nxt, stage)
            stage = nxt
            acc_n = [Signal(signed(fb + 3), name=f"h{j}_acc{i}") for i in range(P)]
            t_n = [Signal(fb, name=f"h{j}_t{i}") for i in range(P)]
            n_n = [Signal(range(f.exp_bits + 1), name=f"h{j}_n{i}") for i in range(P)]
            for i in range(P):
                m.d.sync += [acc_n[i].eq(c + ((acc[i] * t[i] + (1 << (fb - 1))) >> fb)), t_n[i].eq(t[i]),
                             n_n[i].eq(n_d[i])]
            acc, t, n_d = acc_n, t_n, n_n
        return stage, acc, n_d

    def _row_end(self, m, s, exps, ce):
        """The output beat, and the row's end: the divider takes a swept row (sum and largest
        exponential) when it is free and the consumer allows it; the sweep side is then free for the
        next row while the division runs."""
        f, P = self.fmt, self.lanes
        exp_sum = Signal(f.sum_bits)
        m.d.comb += exp_sum.eq(sum(exps))
        out = self.out.payload
        m.d.comb += [self.out.valid.eq(ce[0]), out.last.eq(ce[1]), out.keep.eq(ce[2])]
        m.d.comb += [out.data[i].eq(exps[i]) for i in range(P)]
        beat_max = exps[0]
        for i in range(1, P):
            bm = Signal(f.exp_bits, name=f"beat_max{i}")
            m.d.comb += bm.eq(Mux(exps[i] > beat_max, exps[i], beat_max))
            beat_max = bm
        fin_total, fin_max = Signal(f.sum_bits), Signal(f.exp_bits)
        m.d.comb += [fin_total.eq(s.total + exp_sum), fin_max.eq(Mux(beat_max > s.emax, beat_max, s.emax))]
        div_ready = Signal()
        m.d.comb += div_ready.eq(~s.div_busy & self.div_allow)
        start_direct = Signal()
        m.d.comb += [start_direct.eq(ce[0] & ce[1] & div_ready),
                     self.div_start.eq(start_direct | (s.pend & div_ready))]
        return start_direct, fin_total, fin_max, div_ready

    def _sweep_fsm(self, m, s, issuing, exp_issue, issue_last, ce, fin_total, fin_max, div_ready):
        """The sweep side: ``go`` is taken whenever no row is being issued (``can_go``), so a row's beats
        enter the exponential pipeline behind the previous row's (one cycle apart). A row's last beat
        waits until no earlier row is still on its way to the divider (``inflight``), so at most one
        swept row waits for the divider (``pend``). Sum and maximum restart at each row's end."""
        ptr = s.ptr
        with m.If(self.go & ~issuing):
            m.d.sync += [ptr.eq(0), s.s_bank.eq(self.go_bank), s.s_rows.eq(pick(self.go_bank, s.rows)),
                         s.row_max.eq(pick(self.go_bank, s.bmax)), s.s_shift.eq(self.shift)]
        m.d.comb += exp_issue.eq(issuing & ~(issue_last & s.inflight))
        with m.If(exp_issue):
            m.d.sync += ptr.eq(ptr + 1)
        with m.If(exp_issue & issue_last):
            m.d.sync += s.inflight.eq(1)
        with m.Elif(self.div_start):
            m.d.sync += s.inflight.eq(0)
        with m.If(ce[0]):
            m.d.sync += [s.total.eq(Mux(ce[1], 0, fin_total)), s.emax.eq(Mux(ce[1], 0, fin_max))]
            with m.If(ce[1] & ~div_ready):
                m.d.sync += [s.pend.eq(1), s.w_total.eq(fin_total), s.w_max.eq(fin_max)]
        with m.If(s.pend & div_ready):
            m.d.sync += s.pend.eq(0)

    def _divider(self, m, s, start_direct, fin_total, fin_max):
        """Restoring divider: floor(2**recip_num_bits / sum), DIVIDER_BITS quotient bits per cycle."""
        f, recip, rem, steps, d_total = self.fmt, self.recip, s.rem, s.steps, s.d_total
        with m.If(self.div_start):
            m.d.sync += [s.div_busy.eq(1), d_total.eq(Mux(start_direct, fin_total, s.w_total)),
                         self.max_exp.eq(Mux(start_direct, fin_max, s.w_max)),
                         rem.eq(1 << (f.recip_num_bits - f.recip_bits)), recip.eq(0), steps.eq(recip_steps(f))]
        with m.Elif(s.div_busy):
            with m.If(steps == 0):
                m.d.comb += self.recip_valid.eq(1)
                m.d.sync += s.div_busy.eq(0)
            with m.Else():
                # DIVIDER_BITS restoring steps chained in one cycle; the first cycle does the remainder
                # (recip_bits mod DIVIDER_BITS) when the quotient bits do not divide evenly
                k = DIVIDER_BITS
                first = recip_steps(f) * k - f.recip_bits      # bits the first cycle skips
                r_cur, q_cur = rem, recip
                for j in range(k):
                    shifted = Cat(Const(0, 1), r_cur)
                    ge = shifted >= d_total
                    r_n = Signal(len(rem), name=f"div_rem{j}")
                    q_n = Signal(len(recip), name=f"div_q{j}")
                    skip = (steps == recip_steps(f)) & (j < first) if first else Const(0, 1)
                    m.d.comb += [r_n.eq(Mux(skip, r_cur, Mux(ge, shifted - d_total, shifted))),
                                 q_n.eq(Mux(skip, q_cur, Cat(ge, q_cur)))]
                    r_cur, q_cur = r_n, q_n
                m.d.sync += [rem.eq(r_cur), recip.eq(q_cur), steps.eq(steps - 1)]


class _ExpStages:
    """The EXP pipeline's control registers: one (valid, last, keep) triple per named stage."""

    def __init__(self, m: Module, lanes: int):
        self.m, self.lanes = m, lanes
        self.built: list[str] = ["x0"]
        self.valids: list = []

    def ctl(self, name):
        self.built.append(name)
        t = (Signal(name=f"{name}_v"), Signal(name=f"{name}_last"), Signal(self.lanes, name=f"{name}_keep"))
        self.valids.append(t[0])
        return t

    def advance(self, dst, src):
        self.m.d.sync += [a.eq(b) for a, b in zip(dst, src)]


class _SoftmaxWork:
    """One elaboration's score buffer and sweep/divider registers (declared as locals, so that
    Amaranth names them after the variables, then exposed as attributes)."""

    def __init__(self, sm: "Softmax", m: Module):
        f, P, sw = sm.fmt, sm.lanes, sm.fmt.score_bits
        row_w = P * sw + P
        # SCORE_BANKS banks of 2**abits >= `depth` rows: bank b holds rows b << abits ..
        abits = max(1, (sm.depth - 1).bit_length())
        m.submodules.buf = buf = memory.Memory(shape=unsigned(row_w), depth=SCORE_BANKS << abits, init=[])
        ports = buf.read_port(), buf.write_port()
        rp, wp = ports
        floor = -(1 << (sw - 1))

        rows = [Signal(abits + 1, name=f"rows{b}") for b in range(SCORE_BANKS)]     # loaded rows per bank
        bmax = [Signal(signed(sw), init=floor, name=f"bank_max{b}") for b in range(SCORE_BANKS)]
        s_rows = Signal(abits + 1)     # the swept row: its length, maximum and bank
        row_max = Signal(signed(sw), init=floor)
        s_bank = Signal(SCORE_BANK_BITS)
        s_shift = Signal(f.shift_bits)  # its shift (the command's)
        ptr = Signal(abits + 1)         # the sweep side's next beat; ptr == s_rows: no row being issued
        inflight = Signal()             # a row's last beat is issued, the divider has not taken the row
        total = Signal(f.sum_bits)      # the sum and the largest exponential of the row at the
        emax = Signal(f.exp_bits)       # pipeline's end so far
        pend = Signal()                 # a swept row waits for the divider: its sum and largest exponential
        w_total = Signal(f.sum_bits)
        w_max = Signal(f.exp_bits)
        d_total = Signal(f.sum_bits)   # the divider's row: its sum
        rem = Signal(f.sum_bits + 1)
        steps = Signal(range(recip_steps(f) + 1))
        div_busy = Signal()
        self.rp, self.wp, self.abits, self.floor = rp, wp, abits, floor
        self.s_shift, self.inflight, self.pend, self.w_total, self.w_max = s_shift, inflight, pend, w_total, w_max
        self.rows, self.bmax, self.s_rows, self.row_max, self.s_bank = rows, bmax, s_rows, row_max, s_bank
        self.ptr, self.total, self.emax, self.d_total, self.rem, self.steps = ptr, total, emax, d_total, rem, steps
        self.div_busy = div_busy


class Normalize(wiring.Component):
    """Probabilities from exponentials: ``probs[i] = (exps[i] * recip) >> (recip_num_bits - prob_frac)``
    (UQ1.prob_frac), one multiplier per lane and one register stage (latency 1 cycle)."""

    def __init__(self, spec: SpattenSpec, lanes: int):
        self.fmt = f = spatten_formats(spec)
        self.lanes = lanes
        self.stages = ("normalize",)      # the register after the product (probs)
        super().__init__({
            "exps": In(data.ArrayLayout(unsigned(f.exp_bits), lanes)),
            "recip": In(f.recip_bits),
            "probs": Out(data.ArrayLayout(unsigned(f.prob_bits), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.fmt
        check_built("Normalize", self.stages, normalize_stages())
        for i in range(self.lanes):
            prod = Signal(f.exp_bits + f.recip_bits, name=f"prod{i}")
            m.d.comb += prod.eq(self.exps[i] * self.recip)
            m.d.sync += self.probs[i].eq(prod >> (f.recip_num_bits - f.prob_frac))
        return m
