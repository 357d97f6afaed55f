"""SpAtten attention core for one head: QxK -> softmax -> PQ decision -> local-V top-k -> prob x V.

Interface (streams; payload fields listed from the least significant bit):

- ``kv``    In {index, bank, is_value, data: D x signed(bits)}: writes one key or value row into buffer
  ``bank`` (double buffering: load one bank while the other computes). Always ready.
- ``cmd``   In {n_keys, n_queries, keep_k, shift, pq_enable, threshold, bank, seed}: run ``n_queries``
  queries against keys/values 0..n_keys-1 of ``bank``; scores are scaled by 2**-shift before the
  softmax; local-V pruning keeps the ``keep_k`` largest probabilities when keep_k < n_keys; progressive
  quantization (``pq_enable``) first uses the MSBs of K and V and recomputes once with full precision
  when the row's largest probability is below ``threshold`` (UQ1.15). ``seed`` is passed to the top-k engine, which ignores it since its pivots come from a captured sample (rtlgen/topk.py).
  Accepted the cycle after the previous command's last query was accepted: the next command may start
  while the later stages finish the previous one (use the other K/V bank for it).
- ``query`` In {D x signed(bits)}: one beat per query.
- ``out``   Out {data: D x signed(acc_bits), need_lsb}: the attention output row per query, in units
  of 2**-15 of V's unit (sum over kept keys of prob_fx * v), and whether the LSB pass ran.
- ``v_loaded`` In (one bit per K/V bank): a one-cycle pulse when the bank's values are loaded (the
  fetcher loads keys and values separately); a row's PxV waits for its bank's values, and the core
  forgets them when the command using them is done.
- ``keys_free`` Out (one bit per K/V bank): a one-cycle pulse in the cycle of the last use of the
  bank's keys by its command (its last query's last score reaches the softmax; with PQ on, that
  query's decision when it needs no LSBs; a command without queries: its ``done``), after which the
  fetcher may overwrite them.
- ``v_fetch`` Out (one bit per K/V bank), ``v_mask`` Out (max_tokens bits per bank, bank b at bits
  b x max_tokens ..): the causal value fetch. A one-query command pruned by local-V without ``dense_ok``
  loads only its kept value rows, which its keep mask names: ``v_fetch`` pulses for the command's bank in
  the first cycle the row's keep mask is complete, with the mask on ``v_mask`` in that cycle; the fetcher
  loads those rows from the next cycle (then ``v_loaded``).
- ``done``  one-cycle pulse after a command's last output row is accepted (one per command, in order);
  ``busy``: either stage is working.
- Importance accumulators beside the chain (cascade pruning): ``tok_imp`` reads the token-importance
  row ``imp_addr`` (lanes x 32-bit sums of the final probabilities of every query since ``imp_clear``,
  one cycle read latency); ``head_score`` is the sum of |out[d]| over every output row since ``imp_clear``.

The QxK and PxV units are the affine arrays of ``units.qk.operation`` and ``units.pv.operation``
(lanes x head_dim multipliers each), derived by archgen's dataflow analysis and pipelined by its LP
(archgen.dataflow.spatten_arrays) and elaborated by :class:`~archgen.rtlgen.einsum_unit.EinsumUnit`.
Stages work on consecutive queries: QxK (into a three-banked score buffer), the softmax's
exponential sweep (into a five-banked exponential buffer; a row's beats enter the exponential pipeline
right behind the previous row's, so the sweep takes G + 1 cycles a row), the divider and PQ decision
(overlapping the next sweeps; rows behind one that may need its LSBs are speculative and dropped when
it does) with a one-row hold slot, the top-k stage (two local-V
top-k engines taking rows in turn, a pruned row that cannot need its LSBs already while it is at the
divider, or with the top-k feed (spec ``units.topk.feed``) while the exponential sweep writes it, its
beats valid as the rows of P are written; the PxV sweep applies an engine's k-th exponential and tie count; an engine holds its finished
row until the PxV stage takes it, and meanwhile writes the row's keep mask) and the PxV stage (normalise,
PxV, output; a pruned row whose keep mask is complete at the take is swept over its kept tokens only, each
value / exponential lane reading its own next kept token; the token importance has its own sweep over
every group) (docs/spatten.md, "Cycle contract"); archgen.sim.spatten_model reproduces them cycle for cycle.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from archgen.arch.spatten_spec import SpattenSpec, spatten_formats
from archgen.dataflow.spatten_arrays import spatten_arrays
from archgen.dataflow.spatten_stages import (EXP_BUFFER_BANKS as _EXP_BANKS, SCORE_BANKS as _SB, TOPK_ENGINES as _NE,
                                             accept_stages, check_built, output_stages, pv_feed_stages, qk_feed_stages,
                                             topk_handoff_stages)
from archgen.rtlgen.einsum_unit import EinsumUnit
from archgen.rtlgen.importance import HeadImportance, TokenImportance
from archgen.rtlgen.pq_decision import PQDecision
from archgen.rtlgen.softmax import SCORE_BANK_BITS, Normalize, Softmax, pick
from archgen.rtlgen.topk import TopK, _popcount

__all__ = ["SpattenCore", "core_cmd_layout", "TOKEN_IMPORTANCE_BITS", "HEAD_SCORE_BITS"]

TOKEN_IMPORTANCE_BITS = 32   # 65535 queries x 1.0 (2**15) fits; saturates beyond
HEAD_SCORE_BITS = 48


def _next_sb(x):
    """The score bank after ``x`` (queries take the banks in turn)."""
    return Mux(x == _SB - 1, 0, x + 1)


def _clog2(x: int) -> int:
    return max(0, (x - 1).bit_length())


_EB_BITS = max(1, _clog2(_EXP_BANKS))     # an exponential-buffer bank index


def _next_of(x, count: int):
    """The index after ``x`` in a rotation over ``count`` (banks, engines)."""
    return Mux(x == count - 1, 0, x + 1)


def _lowest_set(m, bits, name: str):
    """The lowest set bit of ``bits``: (its index, its one-hot), in logarithmic depth (a parallel-prefix
    OR, Kogge-Stone, then an OR tree per index bit) rather than a chain of ``len(bits)`` multiplexers."""
    n = len(bits)
    level, d = bits, 1
    while d < n:
        nxt = Signal(n, name=f"{name}_pre{d}")
        m.d.comb += nxt.eq(level | (level << d)[:n])
        level, d = nxt, d * 2
    onehot = Signal(n, name=f"{name}_onehot")
    m.d.comb += onehot.eq(bits & ~(level << 1)[:n])
    index = Signal(max(1, _clog2(n)), name=name)
    m.d.comb += index.eq(Cat(*[Cat(*[onehot[g] for g in range(n) if g >> j & 1]).any()
                               for j in range(max(1, _clog2(n)))]) if n > 1 else 0)
    return index, onehot


def core_cmd_layout(spec: SpattenSpec) -> data.StructLayout:
    nb = spec.max_tokens.bit_length()
    return data.StructLayout({
        "n_keys": unsigned(nb), "n_queries": unsigned(16), "keep_k": unsigned(nb),
        "shift": unsigned(spatten_formats(spec).shift_bits), "pq_enable": unsigned(1),
        "threshold": unsigned(16), "bank": unsigned(1), "seed": unsigned(16), "dense_ok": unsigned(1)})


class _A(enum.Enum, shape=2):
    """Command and query acceptance."""
    IDLE = 0
    QUERY = 1
    EMPTY = 2       # a command without queries: done once every earlier query has left the core


class _T(enum.Enum, shape=3):
    """Top-k stage: the local-V top-k of one row (its k-th exponential and tie count), then hold the row for
    PxV."""
    IDLE = 0
    TK_CMD = 1
    TK_FEED = 2
    TK_WAIT = 3
    FULL = 4        # the row's threshold is known (or it is not pruned): the PxV stage may take it


class _B(enum.Enum, shape=2):
    """PxV stage: prob x V over the row -> output row."""
    IDLE = 0
    PV = 1
    PV_DRAIN = 2
    OUT = 3


class SpattenCore(wiring.Component):
    def __init__(self, spec: SpattenSpec):
        self.spec = spec
        self.fmt = f = spatten_formats(spec)
        self.lanes, self.dim, self.bits = spec.lanes, spec.head_dim, spec.bits
        self.tk_lanes = spec.topk.parallelism
        self.ratio = self.tk_lanes // self.lanes
        nb = spec.max_tokens.bit_length()
        super().__init__({
            "kv": In(stream.Signature(data.StructLayout({
                "index": unsigned(_clog2(spec.max_tokens)), "bank": unsigned(1), "is_value": unsigned(1),
                "data": data.ArrayLayout(signed(self.bits), self.dim)}))),
            "cmd": In(stream.Signature(core_cmd_layout(spec))),
            "query": In(stream.Signature(data.ArrayLayout(signed(self.bits), self.dim))),
            "out": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(f.acc_bits), self.dim), "need_lsb": unsigned(1)}))),
            "v_loaded": In(spec.key_sram.buffers),
            "keys_free": Out(spec.key_sram.buffers),
            "v_fetch": Out(spec.key_sram.buffers),
            "v_mask": Out(spec.key_sram.buffers * spec.max_tokens),
            "done": Out(1),
            "busy": Out(1),
            "imp_clear": In(1),
            "imp_addr": In(max(1, _clog2(spec.groups))),
            "tok_imp": Out(data.ArrayLayout(unsigned(TOKEN_IMPORTANCE_BITS), self.lanes)),
            "head_score": Out(HEAD_SCORE_BITS),
        })
        self._nb = nb

    def elaborate(self, platform):
        m = Module()
        s = _CoreWork(self, m)
        qk_end = self._qxk(m, s)
        beat_no = self._exp_buffer(m, s)
        self._topk_feed(m, s, beat_no)
        pv_issue, acc_clear, pv_out = self._pxv(m, s)
        offer, take, take_p, q_fire = self._accept(m, s)
        self._qxk_stage(m, s, q_fire, qk_end)
        self._softmax_stage(m, s, q_fire, beat_no, offer, take, take_p)
        self._topk_stage(m, s, take, take_p)
        self._pxv_stage(m, s, pv_issue, acc_clear, pv_out, take_p)
        return m

    # ---- datapath ---------------------------------------------------------------------------------
    def _qxk(self, m, s):
        """QxK: L x D multipliers, D-input registered adder tree per lane; returns ``qk_end`` (the QxK
        stage's last score reaches the softmax)."""
        spec, L, D, b = self.spec, s.L, s.D, s.b
        sm, kr = s.sm, s.kr
        lsb_mask = Const(((1 << b) - 1) & ~((1 << spec.pq.lsb_bits) - 1), b)
        s.lsb_mask = lsb_mask
        msb_only = Signal()
        m.d.comb += msb_only.eq(s.c.pq_enable & ~s.second_pass)
        qk_issue = Signal()
        s.qk_issue = qk_issue
        m.d.comb += [kr.addr.eq(s.bank_row), kr.en.eq(1)]
        i_v, i_last, i_keep = Signal(), Signal(), Signal(L)
        kill = s.qk_kill                # a refetch preempts the QxK stage's query: drop its beats in flight
        m.d.sync += [i_v.eq(qk_issue & ~kill), i_last.eq(s.last_g), i_keep.eq(s.keep_row)]
        check_built("the core's QxK feed", ["key_read"], qk_feed_stages())   # kr: a synchronous read port
        # the QxK array (dataflow.spatten_arrays): the query held for the pass, one key element per FU
        qk_arr = spatten_arrays(spec)["qk"]
        m.submodules.qk = qk = EinsumUnit(qk_arr)
        qn, kn, sn = (qk_arr.roles[r] for r in ("query", "key", "score"))
        qk_key = getattr(qk, f"in_{kn}")
        for i, (lane, d) in enumerate(qk.lane_fus(kn)):
            kraw = kr.data[(lane * D + d) * b:(lane * D + d + 1) * b]
            m.d.comb += qk_key[i].eq(Mux(msb_only, kraw & lsb_mask, kraw).as_signed())
        m.d.comb += [getattr(qk, f"in_{qn}")[i].eq(s.q[idx[0]]) for i, idx in enumerate(qk.footprint(qn))]
        scores = [None] * L
        for i, fu in enumerate(qk.lane_fus(sn)):
            scores[fu[0]] = getattr(qk, f"out_{sn}")[i]
        ctl = (i_v, i_last, i_keep)
        for lvl in range(qk.latency):
            nxt = (Signal(name=f"qk_v{lvl}"), Signal(name=f"qk_last{lvl}"), Signal(L, name=f"qk_keep{lvl}"))
            m.d.sync += [nxt[0].eq(ctl[0] & ~kill), *[a.eq(x) for a, x in zip(nxt[1:], ctl[1:])]]
            ctl = nxt
        m.d.comb += [sm.inp.valid.eq(ctl[0] & ~kill), sm.inp.payload.last.eq(ctl[1]), sm.inp.payload.keep.eq(ctl[2]),
                     sm.in_bank.eq(s.cur)]
        qk_end = Signal()               # the QxK stage's last score reaches the softmax
        m.d.comb += qk_end.eq(ctl[0] & ctl[1] & ~kill)
        s.qk_end_now = qk_end
        m.d.comb += [sm.inp.payload.data[i].eq(scores[i]) for i in range(L)]
        return qk_end

    def _exp_buffer(self, m, s):
        """Softmax exponentials -> exponential buffer (R beats to a top-k row) and PQ decision; returns
        the beat counter."""
        sm, pw, R = s.sm, s.pw, s.R
        beat_no = Signal(s.gbits + 1)
        wiring.connect(m, sm.out, s.pq.inp)
        m.d.comb += [pw.addr.eq((beat_no >> _clog2(R)) + s.wpw * s.prows),
                     pw.data.eq(Cat(*([sm.out.payload.data.as_value()] * R))),
                     pw.en.eq(Mux(sm.out.valid, (1 << beat_no[:_clog2(R)]) if R > 1 else 1, 0))]
        m.d.comb += s.wr_last.eq(sm.out.valid & sm.out.payload.last)
        with m.If(sm.out.valid):
            m.d.sync += beat_no.eq(Mux(sm.out.payload.last, 0, beat_no + 1))
            with m.If(sm.out.payload.last):     # the next row's beats (right behind) go to its bank
                m.d.sync += s.wpw.eq(_next_of(s.wpw, _EXP_BANKS))
        # per bank: its row's last exponential is written (set then; cleared when a sweep goes into it)
        for j in range(_EXP_BANKS):
            with m.If(s.wr_last & (s.wpw == j)):
                m.d.sync += s.wr_done[j].eq(1)
        return beat_no

    def _topk_feed(self, m, s, beat_no):
        """Top-k stage datapath: each engine's feed from the exponential buffer (its own read port). The
        engines are built without their replay: each hands back the k-th value and how many elements equal
        to it to keep (ties in index order), and the PxV stage applies them in its own sweep (no keep mask).
        A row taken while its sweep writes it (the feed, ``feed_t``) offers a beat only when the read
        port's data is a row of P the softmax had completely written before the read (``rd_ok``, set for
        the address read in this cycle: the write progress ``beat_no`` of the bank being written); the
        engine counts beats, so the gaps only shift its work after the last beat."""
        f, Pt, prows = self.fmt, s.Pt, s.prows
        lg_r = _clog2(s.R)
        for e in s.eng:
            row_now = Signal(len(e.tk_ptr) + 1, name=f"tk_rd_row{e.j}")
            m.d.comb += row_now.eq(Mux(e.st_t == _T.TK_FEED, e.tk_ptr + e.tk_fire, 0))
            feeding = Signal(name=f"tk_feeding{e.j}")
            bank_now = Signal(_EB_BITS, name=f"tk_bank_now{e.j}")
            m.d.comb += [feeding.eq(Mux(e.take_now, s.from_sweep & ~pick(s.wpb, s.wr_done), e.feed_t)),
                         bank_now.eq(Mux(e.take_now, s.bank_src, e.bank_t))]
            written = Signal(len(beat_no), name=f"tk_written{e.j}")     # complete rows of P in bank_now
            m.d.comb += written.eq(Mux(s.wpw == bank_now, beat_no >> lg_r, 0))
            m.d.sync += e.rd_ok.eq(~feeding | (row_now < written))
            with m.If(s.wr_last & (s.wpw == e.bank_t)):
                m.d.sync += e.feed_t.eq(0)
            with m.If(e.take_now):
                m.d.sync += e.feed_t.eq(s.from_sweep & ~pick(s.wpb, s.wr_done) & ~(s.wr_last & (s.wpw == s.wpb)))
            tk, pr_t, c_t = e.tk, e.pr_t, e.c_t
            m.d.comb += e.tk_rows.eq((c_t.n_keys + Pt - 1) >> _clog2(Pt))
            m.d.comb += e.tk_fire.eq(tk.inp.valid & tk.inp.ready)
            c_cmd = Signal(core_cmd_layout(self.spec), name=f"c_cmd{e.j}")   # the take cycle's command: the held row's
            m.d.comb += c_cmd.eq(Mux(e.st_t == _T.TK_CMD, c_t, s.c_src))
            m.d.comb += [tk.cmd.payload.n.eq(c_cmd.n_keys), tk.cmd.payload.k.eq(c_cmd.keep_k),
                         tk.cmd.payload.seed.eq(c_cmd.seed)]
            m.d.comb += [tk.inp.payload.data[i].eq(pr_t.data[i * f.exp_bits:(i + 1) * f.exp_bits])
                         for i in range(Pt)]
            m.d.comb += tk.inp.payload.keep.eq(Cat(*[(e.tk_ptr * Pt + i) < c_t.n_keys for i in range(Pt)]))
            m.d.comb += tk.out.ready.eq(1)
            # the take cycle reads the held row's first exponentials (its bank is not yet the engine's);
            # after the engine's done, its keep-mask sweep reads the row again
            m.d.comb += pr_t.addr.eq(Mux(e.st_t == _T.TK_FEED, e.tk_ptr + e.tk_fire, Mux(e.mask_rd, e.mask_ptr, 0))
                                     + Mux(e.take_now, s.bank_src, e.bank_t) * prows)
            self._mask_sweep(m, s, e)

    def _mask_sweep(self, m, s, e):
        """An engine's keep-mask sweep: from its done cycle until the PxV stage takes the row, it reads the
        row's exponentials again (one row of Pt a cycle through its read port) and writes the keep mask
        (above the k-th value, or equal and among the first tie-count such in index order: the PxV sweep's
        rule); ``mask_ok`` once every row is written. The PxV stage uses the mask when it takes the row
        after that (it then visits the kept tokens only), else it sweeps every group."""
        f, Pt, tk = self.fmt, s.Pt, e.tk
        eb = f.exp_bits
        m.d.sync += e.vf.eq(0)
        m.d.comb += e.mask_rd.eq(~e.take_now & e.pruned_t & (e.mask_ptr < e.tk_rows)
                                 & ((e.st_t == _T.FULL) | ((e.st_t == _T.TK_WAIT) & tk.done)))
        m.d.sync += [e.mr_v.eq(e.mask_rd), e.mr_row.eq(e.mask_ptr)]
        with m.If(e.mask_rd):
            m.d.sync += e.mask_ptr.eq(e.mask_ptr + 1)
        with m.If((e.st_t == _T.TK_WAIT) & tk.done):
            m.d.sync += e.mask_eq.eq(tk.sel_eq)
        valid = Signal(Pt, name=f"mask_valid{e.j}")
        eqs = Signal(Pt, name=f"mask_eqs{e.j}")
        keep = Signal(Pt, name=f"mask_keep{e.j}")
        m.d.comb += valid.eq(Cat(*[(e.mr_row * Pt + i) < e.c_t.n_keys for i in range(Pt)]))
        m.d.comb += eqs.eq(Cat(*[valid[i] & (e.pr_t.data[i * eb:(i + 1) * eb] == e.thr_t) for i in range(Pt)]))
        for i in range(Pt):
            ex = e.pr_t.data[i * eb:(i + 1) * eb]
            m.d.comb += keep[i].eq(valid[i] & ((ex > e.thr_t) | (eqs[i] & ((_popcount(eqs, i) if i else 0)
                                                                           < e.mask_eq))))
        eq_here = Signal(range(Pt + 1), name=f"mask_eq_here{e.j}")
        m.d.comb += eq_here.eq(_popcount(eqs, Pt))
        with m.If(e.mr_v):
            m.d.sync += e.mask_eq.eq(Mux(e.mask_eq > eq_here, e.mask_eq - eq_here, 0))
            with m.Switch(e.mr_row):
                for r in range(len(e.mask)):
                    with m.Case(r):
                        m.d.sync += e.mask[r].eq(keep)
            with m.If(e.mr_row == e.tk_rows - 1):
                m.d.sync += e.mask_ok.eq(1)
                # the causal value fetch: a one-query command without dense_ok loads its kept value rows only,
                # once their mask is complete (``v_fetch``, from the cycle mask_ok is high)
                m.d.sync += e.vf.eq((e.c_t.n_queries == 1) & ~e.c_t.dense_ok)
        with m.If(e.take_now):          # a new row: its mask starts empty (rows past its keys stay 0)
            m.d.sync += [e.mask_ptr.eq(0), e.mask_ok.eq(0), e.mr_v.eq(0), e.vf.eq(0)] + [w.eq(0) for w in e.mask]

    def _pxv(self, m, s):
        """prob x V: L x D multipliers, L-input registered adder tree per feature, with the importance
        accumulators beside it. Cycle t: issue (exponential read); t+1: normalise, read the value rows;
        t+2: PxV. Sweeping every group, lane r reads token g L + r of group g; over the kept tokens
        (``compact``), lane r reads its own next kept token (``_kept_lanes``). Returns (issue,
        accumulator clear, the array's (valid, last) output)."""
        spec, f, L, D, b, N, gbits, R = self.spec, self.fmt, s.L, s.D, s.b, s.N, s.gbits, s.R
        vr, pr, g_b = s.vr, s.pr, s.g_b
        pv_issue = Signal()
        rows, any_kept = self._kept_lanes(m, s, pv_issue)
        rbits = max(1, _clog2(R))
        e_v, e_last, e_keep, e_lanes, e_any = Signal(), Signal(), Signal(L), Signal(L), Signal(L)
        e_subs = [Signal(rbits, name=f"pv_sub{r}") for r in range(L)]
        pruned = Signal()
        s.pruned = pruned
        m.d.sync += [e_v.eq(pv_issue), e_last.eq(s.last_issue), e_lanes.eq(s.keep_row_b), e_any.eq(any_kept)]
        for r in range(L):
            v_addr = Signal(len(vr.addrs[r]), name=f"pv_vaddr{r}")
            m.d.sync += [v_addr.eq(Cat(rows[r], s.c_b.bank) if s.banks > 1 else rows[r]),
                         e_subs[r].eq(rows[r][:_clog2(R)] if R > 1 else 0)]
            m.d.comb += vr.addrs[r].eq(v_addr)
            for j in range(r, s.Pt, L):
                m.d.comb += pr.addrs[j].eq((rows[r] >> _clog2(R)) + s.bank_b * s.prows)
        eb = f.exp_bits
        exp_row = Signal(L * eb)
        for r in range(L):
            words = [pr.data[(u * L + r) * eb:(u * L + r + 1) * eb] for u in range(R)]
            m.d.comb += exp_row[r * eb:(r + 1) * eb].eq(pick(e_subs[r], words))
        # local-V keep decision as the sweep over every group reads the exponentials: above the top-k's
        # k-th value, or equal to it and among the first eq_left_b such in index order (lane prefix counts
        # against a down-counter); an unpruned row keeps every valid lane; over the kept tokens: the lanes
        # that read one
        eqs = Signal(L)
        m.d.comb += eqs.eq(Cat(*[e_lanes[i] & (exp_row[i * eb:(i + 1) * eb] == s.thr_b) for i in range(L)]))
        for i in range(L):
            ex = exp_row[i * eb:(i + 1) * eb]
            before = Signal(range(L + 1), name=f"pv_eq_before{i}")
            m.d.comb += before.eq(_popcount(eqs, i) if i else 0)
            m.d.comb += e_keep[i].eq(Mux(s.compact, e_any[i], e_lanes[i] & (~pruned | (ex > s.thr_b)
                                                                            | (eqs[i] & (before < s.eq_left_b)))))
        eq_here = Signal(range(L + 1))
        m.d.comb += eq_here.eq(_popcount(eqs, L))
        with m.If(e_v & pruned & ~s.compact):
            m.d.sync += s.eq_left_b.eq(Mux(s.eq_left_b > eq_here, s.eq_left_b - eq_here, 0))
        m.submodules.norm = norm = Normalize(spec, L)
        m.d.comb += [norm.exps.as_value().eq(exp_row), norm.recip.eq(s.recip_b)]
        prob_row = norm.probs
        v_v, v_last, v_keep = Signal(), Signal(), Signal(L)
        m.d.sync += [v_v.eq(e_v), v_last.eq(e_last), v_keep.eq(e_keep)]
        # e_*: the exponential buffer's read (pr, synchronous); v_*: alongside Normalize's stages
        check_built("the core's PxV feed", ["exp_read", *norm.stages], pv_feed_stages())
        v_msb_only = Signal()
        m.d.comb += v_msb_only.eq(s.c_b.pq_enable & ~s.need_lsb_b)
        # the PxV array: probabilities broadcast along the head dimension, adder trees over the lanes
        pv_arr = spatten_arrays(spec)["pv"]
        m.submodules.pv = pv = EinsumUnit(pv_arr)
        pn, vn, un = (pv_arr.roles[r] for r in ("prob", "value", "partial"))
        for i, (lane, _) in enumerate(pv.lane_fus(pn)):
            m.d.comb += getattr(pv, f"in_{pn}")[i].eq(Mux(v_keep[lane], prob_row[lane], 0))
        for i, (lane, d) in enumerate(pv.lane_fus(vn)):
            vraw = vr.data[(lane * D + d) * b:(lane * D + d + 1) * b]
            m.d.comb += getattr(pv, f"in_{vn}")[i].eq(Mux(v_msb_only, vraw & s.lsb_mask, vraw).as_signed())
        sums = [None] * D
        for i, fu in enumerate(pv.lane_fus(un)):
            sums[fu[1]] = getattr(pv, f"out_{un}")[i]
        ctl = (v_v, v_last)
        for lvl in range(pv.latency):
            nxt = (Signal(name=f"pv_v{lvl}"), Signal(name=f"pv_last{lvl}"))
            m.d.sync += [a.eq(x) for a, x in zip(nxt, ctl)]
            ctl = nxt
        self._importance_sweep(m, s)
        acc_clear = self._accumulate(m, s, sums, ctl)
        return pv_issue, acc_clear, ctl

    def _kept_lanes(self, m, s, pv_issue):
        """Over the kept tokens: the PxV stage's copy of the keep mask (``pv_mask``, token t in lane
        t mod L); each issue, every lane takes its lowest kept token (a priority encoder over its column)
        and clears it; the last issue leaves the mask empty (at least one issue: it clears the accumulator
        and ends the row). Sweeping every group, every lane reads group g_b. Returns (each lane's
        value-buffer row, which lanes read a kept token)."""
        L, G, gbits = s.L, s.G, s.gbits
        rows, any_kept, nxt = [], Signal(L), []
        for r in range(L):
            col = Signal(G, name=f"pv_col{r}")
            m.d.comb += col.eq(Cat(*[s.pv_mask[g * L + r] for g in range(G)]))
            low, onehot = _lowest_set(m, col, f"pv_low{r}")
            row = Signal(max(1, gbits), name=f"pv_row{r}")
            m.d.comb += [row.eq(Mux(s.compact, low, s.g_b[:gbits] if gbits else 0)), any_kept[r].eq(col.any())]
            rows.append(row)
            nxt.append(col & ~onehot)
        cleared = Signal(len(s.pv_mask))
        m.d.comb += cleared.eq(Cat(*[nxt[r][g] for g in range(G) for r in range(L)]))
        m.d.comb += s.last_issue.eq(Mux(s.compact, ~cleared.any(), s.last_g_b))
        with m.If(pv_issue & s.compact):
            m.d.sync += s.pv_mask.eq(cleared)
        return rows, any_kept

    def _importance_sweep(self, m, s):
        """Token importance: its own sweep over every group of the PxV stage's row from the cycle after
        the take (own exponential read port, L normalise multipliers), every probability of the final
        pass, kept or pruned by local-V; the PxV stage's output waits until its last issue."""
        spec, f, L, R, gbits = self.spec, self.fmt, s.L, s.R, s.gbits
        eb = f.exp_bits
        pr_i, g_i = s.pr_i, s.g_i
        m.d.comb += pr_i.addr.eq((g_i >> _clog2(R)) + s.bank_b * s.prows)
        with m.If(s.imp_on):
            m.d.sync += g_i.eq(g_i + 1)
            with m.If(s.last_g_i):
                m.d.sync += s.imp_on.eq(0)
        i_v, i_group, i_lanes = Signal(), Signal(gbits), Signal(L)
        i_sub = Signal(max(1, _clog2(R)))
        m.d.sync += [i_v.eq(s.imp_on), i_group.eq(g_i[:gbits]), i_lanes.eq(s.keep_row_i),
                     i_sub.eq(g_i[:_clog2(R)] if R > 1 else 0)]
        exps = pr_i.data.word_select(i_sub, L * eb) if R > 1 else pr_i.data
        m.submodules.norm_imp = norm = Normalize(spec, L)
        m.d.comb += [norm.exps.as_value().eq(exps), norm.recip.eq(s.recip_b)]
        j_v, j_group, j_lanes = Signal(), Signal(gbits), Signal(L)
        m.d.sync += [j_v.eq(i_v), j_group.eq(i_group), j_lanes.eq(i_lanes)]
        m.submodules.tok_imp = ti = TokenImportance(s.N, L, f.prob_bits, TOKEN_IMPORTANCE_BITS)
        m.d.comb += [ti.inp.valid.eq(j_v), ti.inp.payload.group.eq(j_group), ti.inp.payload.keep.eq(j_lanes),
                     ti.inp.payload.data.as_value().eq(norm.probs.as_value()), ti.clear.eq(self.imp_clear),
                     ti.rd_addr.eq(self.imp_addr), self.tok_imp.eq(ti.rd_data)]

    def _accumulate(self, m, s, sums, ctl):
        """The output row accumulator (cleared at a row's first group) and the head-importance sum."""
        f, D = self.fmt, s.D
        acc = Signal(data.ArrayLayout(signed(f.acc_bits), D))
        acc_clear = Signal()
        with m.If(acc_clear):
            m.d.sync += acc.eq(0)
        with m.Elif(ctl[0]):
            m.d.sync += [acc[d].eq(acc[d] + sums[d]) for d in range(D)]
        m.d.comb += [self.out.payload.data.eq(acc), self.out.payload.need_lsb.eq(s.need_lsb_b)]
        m.submodules.head_imp = hi = HeadImportance(D, f.acc_bits, HEAD_SCORE_BITS)
        m.d.comb += [hi.inp.valid.eq(self.out.valid & self.out.ready), hi.inp.payload.eq(acc),
                     hi.clear.eq(self.imp_clear), self.head_score.eq(hi.score)]
        return acc_clear

    # ---- control: QxK stage | softmax stage | top-k stage | PxV stage ------------------------------
    def _accept(self, m, s):
        """Acceptance: a query is taken when the QxK stage is free, its score bank (query index mod 3) is
        free and no LSB refetch waits (a refetch has priority). The softmax stage sweeps the banks in
        query order (an LSB pass before any later query); a decided row waits in the hold slot until the
        top-k stage takes it (idle, or handing its row to the PxV stage in this very cycle), and the
        top-k stage holds its finished row until the PxV stage takes it (idle, or sending its output
        row in this very cycle). Returns (offer, take, take_p, q_fire)."""
        st_b = s.st_b
        offer = Signal()
        b_free, t_free = Signal(), Signal()
        take, take_p = Signal(), Signal()
        # rows go to the top-k engines in turn (engine te takes the next row) and leave them in turn
        # (the PxV stage takes the next row from engine pe)
        m.d.comb += [b_free.eq((st_b == _B.IDLE) | ((st_b == _B.OUT) & self.out.ready)),
                     take_p.eq(pick(s.pe, [e.ready | e.late for e in s.eng]) & b_free
                               & s.v_in.bit_select(pick(s.pe, [e.c_t.bank for e in s.eng]), 1)),
                     t_free.eq(pick(s.te, [(e.st_t == _T.IDLE) | (take_p & (s.pe == j)) for j, e in enumerate(s.eng)])),
                     take.eq(offer & t_free)]
        m.d.sync += self.done.eq(0)
        nb_free = Signal()
        m.d.comb += nb_free.eq(~pick(s.nb, s.sb_busy))
        q_fire = Signal()
        with m.Switch(s.st_a):
            with m.Case(_A.IDLE):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [s.c_q.eq(self.cmd.payload), s.to_accept.eq(self.cmd.payload.n_queries)]
                    with m.If(self.cmd.payload.n_queries != 0):
                        m.d.sync += s.st_a.eq(_A.QUERY)
                    with m.Elif(s.all_idle):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.d.sync += s.st_a.eq(_A.EMPTY)
            with m.Case(_A.QUERY):
                m.d.comb += [self.query.ready.eq(~s.qk_busy & nb_free & ~s.refetch & ~s.qk_redo),
                             q_fire.eq(self.query.valid & self.query.ready)]
                with m.If(q_fire):
                    m.d.sync += [s.to_accept.eq(s.to_accept - 1), s.nb.eq(_next_sb(s.nb))]
                    with m.If(s.to_accept == 1):
                        m.d.sync += s.st_a.eq(_A.IDLE)
            with m.Case(_A.EMPTY):
                with m.If(s.all_idle):
                    m.d.sync += [self.done.eq(1), s.st_a.eq(_A.IDLE)]
        self._key_value_banks(m, s)
        return offer, take, take_p, q_fire

    def _key_value_banks(self, m, s):
        """Split K and V loads: ``keys_free`` pulses at the last use of a command's keys, ``v_in`` tells
        which banks' values are in (set by ``v_loaded``; cleared when the command using them is done,
        already in that cycle for the PxV take)."""
        banks = self.spec.key_sram.buffers
        kf_empty = Signal(banks)        # a command without queries releases its keys at its done
        m.d.sync += kf_empty.eq(0)
        with m.If(((s.st_a == _A.IDLE) & self.cmd.valid & (self.cmd.payload.n_queries == 0) & s.all_idle)
                  | ((s.st_a == _A.EMPTY) & s.all_idle)):
            m.d.sync += kf_empty.eq(1 << Mux(s.st_a == _A.IDLE, self.cmd.payload.bank, s.c_q.bank))
        last_qk = Signal()              # the QxK stage's last score of a command's last query, no LSB pass to come
        m.d.comb += last_qk.eq(s.qk_end_now & pick(s.cur, s.last_q) & (~s.c.pq_enable | s.second_pass))
        last_dec = Signal()             # a command's last query decided without needing its LSBs
        m.d.comb += last_dec.eq(s.pq.decision & ~s.pq.need_lsb & s.rf_d & s.last_d)
        m.d.comb += self.keys_free.eq(kf_empty | Mux(last_qk, 1 << s.c.bank, 0) | Mux(last_dec, 1 << s.c_d.bank, 0))
        # the causal value fetch: ``v_fetch`` pulses for a bank when the keep mask of its one-query pruned
        # command (no dense_ok) is complete; ``v_mask`` holds that mask (bank b: bits b x N ..) in the cycle
        n = self.spec.max_tokens
        for b in range(banks):
            hits = [e.vf & (e.c_t.bank == b) for e in s.eng]
            m.d.comb += self.v_fetch[b].eq(Cat(*hits).any())
            vm = Cat(*s.eng[0].mask)[:n]
            for hit, e in zip(hits[1:], s.eng[1:]):
                vm = Mux(hit, Cat(*e.mask)[:n], vm)
            m.d.comb += self.v_mask[b * n:(b + 1) * n].eq(vm)
        v_ok = Signal(banks)
        v_clear = Signal(banks)         # the PxV stage sends its command's last output row
        m.d.comb += v_clear.eq(Mux((s.st_b == _B.OUT) & self.out.ready & s.last_b, 1 << s.c_b.bank, 0))
        m.d.comb += s.v_in.eq((v_ok & ~v_clear) | self.v_loaded)
        m.d.sync += v_ok.eq((v_ok & ~v_clear) | self.v_loaded)

    def _qxk_stage(self, m, s, q_fire, qk_end):
        """QxK stage: issue the groups, then wait for the last score to reach the softmax (the array's
        stationary query is the bank's register, constant until then). Taking a query (or a refetch)
        is one registered cycle before the first issue.

        QxK preemption (spec ``units.qk.preempt``; docs/spatten.md, "QxK preemption"): in the cycle after
        a PQ decision that asks for the LSBs (``rf_new``), a later query whose groups are still being
        issued (``qk_issuing``) gives the stage to the refetch: its beats in the array's pipeline are
        dropped (``qk_kill``: none is its last, so no ``keys_free`` or ``loaded`` was given) and it is
        taken again (``qk_redo``, its bank ``redo_bank``: query, command and partial scores stay there; the
        softmax's bank is cleared again) as soon as the refetch's last score is in, before any new query."""
        check_built("the core's QxK stage", ["query"], accept_stages())
        qk_busy, refetch, g = s.qk_busy, s.refetch, s.g
        m.d.comb += s.qk_kill.eq(s.rf_new & s.qk_issuing if self.spec.qk.preempt else 0)
        m.d.sync += s.rf_new.eq(s.pq.decision & s.pq.need_lsb)
        take_rf, start_redo = Signal(), Signal()
        m.d.comb += [take_rf.eq(refetch & ((~qk_busy & ~s.qk_redo) | s.qk_kill)),
                     start_redo.eq(s.qk_redo & ~qk_busy)]
        s.take_rf, s.start_redo = take_rf, start_redo
        with m.If(take_rf):
            m.d.sync += [qk_busy.eq(1), s.qk_issuing.eq(1), s.cur.eq(s.eb), g.eq(0), refetch.eq(0)]
            with m.If(s.qk_kill):
                m.d.sync += [s.qk_redo.eq(1), s.redo_bank.eq(s.cur)]
        with m.Elif(start_redo):
            m.d.sync += [qk_busy.eq(1), s.qk_issuing.eq(1), s.cur.eq(s.redo_bank), g.eq(0), s.qk_redo.eq(0)]
        with m.Elif(q_fire):
            m.d.sync += [qk_busy.eq(1), s.qk_issuing.eq(1), s.cur.eq(s.nb), g.eq(0)]
        with m.If(s.qk_issuing & ~s.qk_kill):
            m.d.comb += s.qk_issue.eq(1)
            m.d.sync += g.eq(g + 1)
            with m.If(s.last_g):
                m.d.sync += s.qk_issuing.eq(0)
        for j in range(_SB):
            with m.If(q_fire & (s.nb == j)):
                m.d.sync += [s.q_reg[j].eq(self.query.payload), s.c_reg[j].eq(s.c_q), s.pass2[j].eq(0),
                             s.last_q[j].eq(s.to_accept == 1), s.sb_busy[j].eq(1)]
            with m.If(take_rf & (s.eb == j)):
                m.d.sync += s.pass2[j].eq(1)
            with m.If(qk_end & (s.cur == j)):
                m.d.sync += s.loaded[j].eq(1)
        with m.If(qk_end):
            m.d.sync += qk_busy.eq(0)

    def _softmax_stage(self, m, s, q_fire, beat_no, offer, take, take_p):
        """Softmax stage: sweeps in query order, the next row's go as soon as the softmax has issued
        the previous row's last beat. A row leaves it when the divider takes the row, so the next
        sweeps overlap the division. A row that cannot need its LSBs (PQ off, or its LSB pass) frees
        its score bank then; one that may need them keeps its bank until its PQ decision, and the
        sweeps behind it are speculative: when the decision asks for the LSBs, they are dropped (their
        scores stay in their banks), the row's QxK reruns into its bank, and the rows are swept again
        in order."""
        sm, pq, eb, wpb = s.sm, s.pq, s.eb, s.wpb
        may_rf = Signal()
        m.d.comb += may_rf.eq(s.c_e.pq_enable & ~s.pass2_e)
        squash = Signal()
        m.d.comb += squash.eq(pq.decision & pq.need_lsb)
        # rows in the stage (n_e, at most two): eb/wpb are the oldest's score and exponential banks (it
        # leaves next); the next row to go is the one after the stage's rows. It may go while the oldest
        # row is still in the exponential pipeline, once the softmax has issued that row's last beat
        # (``can_go``). Rows behind one that may need its LSBs are speculative: an LSB refetch drops every
        # row in the stage (the softmax's abort) and they are swept again after the refetched row
        go = Signal()
        eb_g = Signal(SCORE_BANK_BITS)
        wpb_g = Signal(_EB_BITS)
        m.d.comb += [eb_g.eq(Mux(s.n_e == 0, eb, _next_sb(eb))),
                     wpb_g.eq(Mux(s.n_e == 0, wpb, _next_of(wpb, _EXP_BANKS)))]
        pb_free = ~Array(s.pb_busy)[wpb_g]
        m.d.comb += go.eq((((s.n_e == 0) & sm.idle) | ((s.n_e == 1) & sm.can_go))
                          & pick(eb_g, s.loaded) & pb_free & ~squash)
        m.d.comb += [sm.go.eq(go), sm.go_bank.eq(eb_g), sm.abort.eq(squash),
                     sm.shift.eq(pick(eb_g, [c.shift for c in s.c_reg])),
                     sm.clear.eq(q_fire | s.take_rf | s.start_redo),
                     sm.clear_bank.eq(Mux(q_fire, s.nb, Mux(s.start_redo, s.redo_bank, eb)))]
        leave = Signal()
        m.d.comb += leave.eq((s.n_e != 0) & sm.div_start)
        with m.If(go & ~leave):
            m.d.sync += s.n_e.eq(s.n_e + 1)
        with m.Elif(leave & ~go):
            m.d.sync += s.n_e.eq(s.n_e - 1)
        with m.If(s.feed_now):          # (the leave below, in the same cycle, carries it on at once)
            m.d.sync += [s.fed_e.eq(1), s.fed_eng.eq(s.te)]
        with m.If(leave):
            # a row the feed took (before, or in this cycle) is already in its engine: early
            m.d.sync += [s.c_d.eq(s.c_e), s.pass2_d.eq(s.pass2_e), s.last_d.eq(pick(eb, s.last_q)),
                         s.sb_d.eq(eb), s.bank_d.eq(wpb), s.rf_d.eq(may_rf), s.div_pending.eq(1),
                         eb.eq(_next_sb(eb)), wpb.eq(_next_of(wpb, _EXP_BANKS)),
                         s.early_d.eq(s.fed_e | s.feed_now), s.eng_d.eq(Mux(s.fed_e, s.fed_eng, s.te)),
                         s.fed_e.eq(0)]
        for j in range(_EXP_BANKS):
            with m.If(go & (wpb_g == j)):
                m.d.sync += s.wr_done[j].eq(0)
        for j in range(_EXP_BANKS):
            with m.If((leave & ~may_rf & (wpb == j)) | (pq.decision & s.rf_d & ~pq.need_lsb & (s.bank_d == j))):
                m.d.sync += s.pb_busy[j].eq(1)
        for j in range(_SB):
            with m.If((leave & ~may_rf & (eb == j)) | (pq.decision & s.rf_d & ~pq.need_lsb & (s.sb_d == j))):
                m.d.sync += s.sb_busy[j].eq(0)
            with m.If(go & (eb_g == j)):
                m.d.sync += s.loaded[j].eq(0)
        with m.If(squash):          # back to the row that needs its LSBs
            m.d.sync += [s.refetch.eq(1), s.n_e.eq(0), eb.eq(s.sb_d), wpb.eq(s.bank_d), s.wpw.eq(s.bank_d),
                         beat_no.eq(0), s.fed_e.eq(0)]
            for j in range(_SB):
                with m.If(((s.n_e != 0) & (eb == j)) | ((s.n_e == 2) & (_next_sb(eb) == j))):
                    m.d.sync += s.loaded[j].eq(1)     # the dropped sweeps' scores are still in their banks
        # the feed: the oldest row in the stage, pruned and unable to need its LSBs, offered to the top-k
        # stage while it is swept, once every earlier row is in an engine (none held, the divider's taken early)
        # (spec units.topk.feed: false builds the core without it, from_sweep constant 0)
        if self.spec.topk.feed:
            m.d.comb += s.from_sweep.eq((s.n_e != 0) & ~s.fed_e & ~s.hold_valid & (~s.div_pending | s.early_d)
                                        & ~may_rf & (s.c_e.keep_k < s.c_e.n_keys))
        self._handoff(m, s, offer, take, take_p)

    def _handoff(self, m, s, offer, take, take_p):
        """The divider's decision goes to the hold slot (the divider takes no row while the slot is
        full); the top-k stage takes the held row, the PxV stage the top-k stage's finished row. A pruned
        row that cannot need its LSBs (PQ off, or its LSB pass) may be taken by its top-k engine while it
        is still at the divider (its exponentials are all written): early; its reciprocal then goes to
        that engine at the decision, and the PxV stage takes the row only once it has it."""
        sm, pq = s.sm, s.pq
        m.d.comb += sm.div_allow.eq(~s.hold_valid & ~pq.decision)
        early_ok = Signal()
        m.d.comb += early_ok.eq(s.div_pending & ~s.rf_d & ~s.early_d & (s.c_d.keep_k < s.c_d.n_keys))
        # the row offered to the top-k stage: the held one, else the divider's (never both: the divider
        # takes a row only while the hold slot is empty, and only its decision fills the slot)
        # (the sweep's row only when neither: from_sweep needs an empty hold slot and the divider's row taken)
        m.d.comb += [s.c_src.eq(Mux(s.hold_valid, s.c_h, Mux(s.from_sweep, s.c_e, s.c_d))),
                     s.bank_src.eq(Mux(s.hold_valid, s.bank_h, Mux(s.from_sweep, s.wpb, s.bank_d)))]
        m.d.comb += offer.eq(s.hold_valid | early_ok | s.from_sweep)
        early_now = Signal()
        m.d.comb += [early_now.eq(take & ~s.hold_valid & ~s.from_sweep), s.feed_now.eq(take & s.from_sweep)]
        for e in s.eng:     # the fallback: an engine's row may be taken unpruned from max(decision + 2, take + 1)
            with m.If(e.recip_ok):
                m.d.sync += e.fb_ok.eq(1)
        with m.If(take):
            m.d.sync += [s.hold_valid.eq(0), s.te.eq(_next_of(s.te, _NE))]
            for j, e in enumerate(s.eng):
                with m.If(s.te == j):
                    m.d.sync += [e.bank_t.eq(s.bank_src),
                                 e.need_lsb_t.eq(Mux(s.hold_valid, s.pass2_h, Mux(s.from_sweep, s.pass2_e, s.pass2_d))),
                                 e.c_t.eq(s.c_src),
                                 e.last_t.eq(Mux(s.hold_valid, s.last_h,
                                                 Mux(s.from_sweep, pick(s.eb, s.last_q), s.last_d))),
                                 e.recip_t.eq(s.recip_h), e.recip_ok.eq(s.hold_valid), e.fb_ok.eq(s.hold_valid)]
            with m.If(early_now):
                m.d.sync += [s.early_d.eq(1), s.eng_d.eq(s.te)]
        with m.If(pq.decision):
            m.d.sync += [s.div_pending.eq(0), s.early_d.eq(0)]
            with m.If(s.early_d | early_now):       # the row is in an engine: its reciprocal goes there
                for j, e in enumerate(s.eng):
                    with m.If(Mux(s.early_d, s.eng_d, s.te) == j):
                        m.d.sync += [e.recip_t.eq(sm.recip), e.recip_ok.eq(1)]
            with m.Elif(~pq.need_lsb):
                m.d.sync += [s.hold_valid.eq(1), s.c_h.eq(s.c_d), s.pass2_h.eq(s.pass2_d), s.last_h.eq(s.last_d),
                             s.recip_h.eq(sm.recip), s.bank_h.eq(s.bank_d)]
        with m.If(take_p):
            eng = s.eng

            def of_pe(name):
                return pick(s.pe, [getattr(e, name) for e in eng])
            m.d.sync += [s.bank_b.eq(of_pe("bank_t")), s.need_lsb_b.eq(of_pe("need_lsb_t")), s.c_b.eq(of_pe("c_t")),
                         s.last_b.eq(of_pe("last_t")), s.recip_b.eq(of_pe("recip_t")),
                         s.pruned.eq(of_pe("pruned_t") & of_pe("ready")),
                         s.thr_b.eq(of_pe("thr_now")), s.eq_left_b.eq(of_pe("eqk_now")), s.st_b.eq(_B.PV),
                         s.g_b.eq(0), s.pe.eq(_next_of(s.pe, _NE)),
                         s.compact.eq(of_pe("pruned_t") & of_pe("ready") & of_pe("mask_ok")),
                         s.pv_mask.eq(pick(s.pe, [Cat(*e.mask)[:s.N] for e in eng])),
                         s.g_i.eq(0), s.imp_on.eq(1), s.pv_seen.eq(0)]
        with m.If((s.st_b == _B.OUT) & self.out.ready):
            for j in range(_EXP_BANKS):
                with m.If(s.bank_b == j):
                    m.d.sync += s.pb_busy[j].eq(0)

    def _topk_stage(self, m, s, take, take_p):
        """Top-k stage, per engine: the command handshake in the take cycle (in the next cycle when the
        engine is still in its done cycle), feed, wait for done; the PxV stage takes the row in its
        engine's done cycle or, when the PxV stage is busy then, later from FULL."""
        for j, e in enumerate(s.eng):
            tk, st_t = e.tk, e.st_t
            check_built("the core's top-k stage", [], topk_handoff_stages())   # done -> PxV take, no register
            # the fallback (spec units.topk.fallback, commands with dense_ok): a pruned row whose engine is not
            # done when the PxV stage could take it unpruned (from max(decision + 2, take + 1): fb_ok) is
            # taken unpruned, and the engine is reset in that cycle (idle from the next)
            late = (e.fb_ok & e.recip_ok & e.pruned_t & e.c_t.dense_ok & (st_t != _T.IDLE) & ~e.ready
                    if self.spec.topk.fallback != "none" else Const(0))
            m.d.comb += [e.late.eq(late), s.tk_abort[j].eq(take_p & (s.pe == j) & ~e.ready)]
            m.d.comb += [e.ready.eq(((st_t == _T.FULL) | ((st_t == _T.TK_WAIT) & tk.done)) & e.recip_ok),
                         e.thr_now.eq(Mux(st_t == _T.FULL, e.thr_t, tk.sel_kth)),
                         e.eqk_now.eq(Mux(st_t == _T.FULL, e.eqk_t, tk.sel_eq))]
            taken = take_p & (s.pe == j)
            m.d.comb += e.take_now.eq(take & (s.te == j))
            with m.Switch(st_t):
                with m.Case(_T.TK_CMD):
                    m.d.comb += tk.cmd.valid.eq(1)
                    with m.If(tk.cmd.ready):
                        m.d.sync += [st_t.eq(_T.TK_FEED), e.tk_ptr.eq(0)]
                with m.Case(_T.TK_FEED):
                    m.d.comb += tk.inp.valid.eq(e.rd_ok)
                    with m.If(e.tk_fire):
                        m.d.sync += e.tk_ptr.eq(e.tk_ptr + 1)
                        with m.If(e.tk_ptr == e.tk_rows - 1):
                            m.d.sync += st_t.eq(_T.TK_WAIT)
                with m.Case(_T.TK_WAIT):
                    with m.If(tk.done):
                        m.d.sync += [st_t.eq(Mux(taken, _T.IDLE, _T.FULL)), e.thr_t.eq(tk.sel_kth),
                                     e.eqk_t.eq(tk.sel_eq)]
                with m.Case(_T.FULL):
                    with m.If(taken):
                        m.d.sync += st_t.eq(_T.IDLE)
            with m.If(s.tk_abort[j]):
                m.d.sync += st_t.eq(_T.IDLE)
            # after the Switch: a take in the cycle the PxV stage takes the engine's row restarts it; a
            # pruned row's command is offered in the take cycle (the next, when the engine is being reset)
            with m.If(take & (s.te == j)):
                with m.If(s.c_src.keep_k < s.c_src.n_keys):
                    m.d.comb += tk.cmd.valid.eq(~s.tk_abort[j])
                    m.d.sync += [st_t.eq(Mux(tk.cmd.ready & ~s.tk_abort[j], _T.TK_FEED, _T.TK_CMD)), e.tk_ptr.eq(0),
                                 e.pruned_t.eq(1)]
                with m.Else():
                    m.d.sync += [st_t.eq(_T.FULL), e.pruned_t.eq(0)]

    def _pxv_stage(self, m, s, pv_issue, acc_clear, pv_out, take_p):
        """PxV stage: sweep the row's groups, drain the array, offer the output row for one cycle."""
        st_b, g_b = s.st_b, s.g_b
        with m.Switch(st_b):
            with m.Case(_B.PV):
                m.d.comb += [pv_issue.eq(1), acc_clear.eq(g_b == 0)]
                m.d.sync += g_b.eq(g_b + 1)
                with m.If(s.last_issue):
                    m.d.sync += st_b.eq(_B.PV_DRAIN)
            with m.Case(_B.PV_DRAIN):       # the last product, and the token importance's last issue
                arrived = (pv_out[0] & pv_out[1]) | s.pv_seen
                with m.If(arrived & ~s.imp_on):
                    m.d.sync += st_b.eq(_B.OUT)
                with m.Elif(arrived):
                    m.d.sync += s.pv_seen.eq(1)
            with m.Case(_B.OUT):              # one cycle offering the output row
                check_built("the core's output", ["out"], output_stages())
                m.d.comb += self.out.valid.eq(1)
                with m.If(self.out.ready):
                    m.d.sync += st_b.eq(_B.IDLE)
                    with m.If(s.last_b):
                        m.d.sync += self.done.eq(1)
        with m.If(take_p):     # after the Switch: a take in the OUT cycle starts the next row's sweep
            m.d.sync += st_b.eq(_B.PV)


class _CoreWork:
    """One elaboration's units, buffers and the stage registers that several blocks share.

    Amaranth names a signal after the local variable it is first assigned to, so the declarations
    below are written as locals (as they were inside ``elaborate``) and then exposed as attributes;
    the generated Verilog keeps its names.
    """

    def __init__(self, core: SpattenCore, m: Module):
        spec, f = core.spec, core.fmt
        self.L, self.D, self.b, self.N = L, D, b, N = core.lanes, core.dim, core.bits, spec.max_tokens
        self.G = G = N // L
        self.banks = spec.key_sram.buffers
        self.gbits = _clog2(G)
        self.Pt, self.R = core.tk_lanes, core.ratio
        self._add_units(core, m)
        self._declare_stage_registers(core, m)

    def _add_units(self, core, m):
        spec, f, L, D, b, N, G, banks, Pt, R = (core.spec, core.fmt, self.L, self.D, self.b, self.N, self.G,
                                                 self.banks, self.Pt, self.R)
        row_w = D * b
        m.submodules.softmax = sm = Softmax(spec)
        m.submodules.pq = pq = PQDecision(spec, external_max=True)
        # the local-V top-k ranks the exponentials: the same order as the probabilities (recip > 0),
        # without the rounding of the division
        # (the fallback resets an engine whose row the PxV stage takes unpruned: tk_abort)
        tks, self.tk_abort = [], [Signal(name=f"tk_abort{e}") for e in range(_NE)]
        for e in range(_NE):
            tks.append(TopK(Pt, N, width=f.exp_bits + 1, fifo_depth=spec.topk.fifo_depth, replay=False,
                            sample_register=spec.topk.sample_register))
            m.submodules[f"topk{e}"] = ResetInserter({"sync": self.tk_abort[e]})(tks[-1])

        # Key/value buffers: one row holds L consecutive tokens; row = bank * G + token // L. The value
        # buffer's lanes are L banks with their own addresses (token t in bank t mod L, row t div L: the
        # same bits), so the PxV stage can read each lane's next kept token (docs/spatten.md, PxV stage).
        m.submodules.kbuf = kbuf = memory.Memory(shape=unsigned(L * row_w), depth=banks * G, init=[])
        vbufs = []
        for r in range(L):
            vbufs.append(memory.Memory(shape=unsigned(row_w), depth=banks * G, init=[]))
            m.submodules[f"vbuf{r}"] = vbufs[-1]
        kw = kbuf.write_port(granularity=row_w)
        kr = kbuf.read_port()
        vws = [v.write_port() for v in vbufs]
        vrs = [v.read_port() for v in vbufs]
        kvp = core.kv.payload
        row_addr = Cat(kvp.index[_clog2(L):], kvp.bank) if banks > 1 else kvp.index[_clog2(L):]
        lane_en = Signal(L)
        m.d.comb += [core.kv.ready.eq(1), lane_en.eq(1 << kvp.index[:_clog2(L)] if L > 1 else 1)]
        m.d.comb += [kw.addr.eq(row_addr), kw.data.eq(Cat(*([kvp.data.as_value()] * L))),
                     kw.en.eq(Mux(core.kv.valid & ~kvp.is_value, lane_en, 0))]
        for r, w in enumerate(vws):
            m.d.comb += [w.addr.eq(row_addr), w.data.eq(kvp.data.as_value()),
                         w.en.eq(core.kv.valid & kvp.is_value & lane_en[r])]
        vr = _LanePorts(m, vrs, row_w, "vr", per_lane=True)

        # Exponential buffer: softmax beats (L lanes) packed R to a top-k row (Pt lanes); the back stage
        # normalises them (x the row's reciprocal) as it reads them for prob x V.
        prow_w = f.exp_bits * L
        prows = -(-N // Pt)
        # 3 + TOPK_ENGINES banks: the softmax stage writes query i+NE+2's row while query i+NE+1's waits
        # for its division (or in the hold slot), the top-k engines read queries i+1 .. i+NE and the PxV
        # stage query i's; each engine has its own read port. One memory per lane of a Pt-wide row (the
        # same bits), so the PxV stage reads each lane at its own address; the token importance has a
        # read port of its own.
        eb = f.exp_bits
        pbufs = []
        for j in range(Pt):
            pbufs.append(memory.Memory(shape=unsigned(eb), depth=_EXP_BANKS * prows, init=[]))
            m.submodules[f"pbuf{j}"] = pbufs[-1]
        pw = _LaneWrite(m, [p.write_port() for p in pbufs], eb, L)
        pr = _LanePorts(m, [p.read_port() for p in pbufs], eb, "pr", per_lane=True)
        pr_i = _LanePorts(m, [p.read_port() for p in pbufs], eb, "pr_imp")
        pr_ts = [_LanePorts(m, [p.read_port() for p in pbufs], eb, f"pr_t{e}") for e in range(_NE)]
        self.sm, self.pq, self.tks, self.kr, self.vr, self.pw, self.pr, self.pr_ts = sm, pq, tks, kr, vr, pw, pr, pr_ts
        self.pr_i = pr_i
        self.prow_w, self.prows = prow_w, prows

    def _declare_stage_registers(self, core, m):
        spec, f, L, D, b, gbits, banks = core.spec, core.fmt, self.L, self.D, self.b, self.gbits, self.banks
        # The front is two stages with a SCORE_BANKS-banked score buffer between them: the QxK stage
        # fills score bank j with query i's scores (j = i mod 3) while the softmax stage sweeps another
        # bank and a third may hold a row waiting for its PQ decision.
        # Per score bank: the query, its command, whether this is its LSB pass, whether it is its
        # command's last query; a bank is busy from the query's acceptance until the back stage takes
        # its row, so an LSB refetch reruns QxK into the same bank.
        c_q = Signal(core_cmd_layout(spec))    # the command whose queries are being accepted
        c_reg = [Signal(core_cmd_layout(spec), name=f"c_sb{j}") for j in range(_SB)]
        q_reg = [Signal(data.ArrayLayout(signed(b), D), name=f"q_sb{j}") for j in range(_SB)]
        pass2 = [Signal(name=f"pass2_sb{j}") for j in range(_SB)]
        last_q = [Signal(name=f"last_q_sb{j}") for j in range(_SB)]
        sb_busy = [Signal(name=f"busy_sb{j}") for j in range(_SB)]
        loaded = [Signal(name=f"loaded_sb{j}") for j in range(_SB)]
        nb = Signal(SCORE_BANK_BITS)    # score bank of the next accepted query
        cur = Signal(SCORE_BANK_BITS)   # score bank the QxK stage works on
        eb = Signal(SCORE_BANK_BITS)    # score bank the softmax stage works on (queries in order)
        qk_busy, qk_issuing, refetch = Signal(), Signal(), Signal()
        # QxK preemption: the cycle after a decision asking for the LSBs; drop the QxK stage's query's
        # beats; that query waits to be taken again (its score bank)
        rf_new, qk_kill, qk_redo = Signal(), Signal(), Signal()
        redo_bank = Signal(SCORE_BANK_BITS)
        c = Signal(core_cmd_layout(spec))      # the QxK stage's command (of bank cur)
        c_e = Signal(core_cmd_layout(spec))    # the softmax stage's command (of bank eb)
        m.d.comb += [c.eq(pick(cur, c_reg)), c_e.eq(pick(eb, c_reg))]
        q = Signal(data.ArrayLayout(signed(b), D))
        m.d.comb += q.eq(pick(cur, q_reg))
        second_pass = Signal()          # the QxK stage runs an LSB pass
        m.d.comb += second_pass.eq(pick(cur, pass2))
        pass2_e = Signal()
        m.d.comb += pass2_e.eq(pick(eb, pass2))
        c_b = Signal(core_cmd_layout(spec))    # the command of the query in the PxV stage
        st_a, st_b = Signal(_A), Signal(_B)
        n_e = Signal(range(3))          # rows in the softmax stage (gone, not yet taken by the divider)
        to_accept = Signal(16)          # queries of c_q still to accept
        last_b = Signal()               # the PxV stage's query is its command's last
        need_lsb_b = Signal()           # the PxV stage's row needed the LSB pass
        # exponential-buffer banks (0..EXP_BUFFER_BANKS-1): the sweep's, the divider's row's, the held row's,
        # the top-k engines' (per engine, below), the PxV's
        wpb, bank_d, bank_h, bank_b = (Signal(_EB_BITS, name=n) for n in ("wpb", "bank_d", "bank_h", "bank_b"))
        wpw = Signal(_EB_BITS)          # the bank the softmax's exponentials are written to (rows in order)
        pb_busy = [Signal(name=f"busy_pb{j}") for j in range(_EXP_BANKS)]   # a row the PxV has not finished
        recip_b = Signal(f.recip_bits)   # the PxV row's reciprocal
        # the local-V threshold of the PxV's row: the k-th exponential (+inf keeps none) and the elements
        # equal to it to keep; eq_left_b counts them down during the PxV sweep
        thr_b = Signal(signed(f.exp_bits + 2))
        eq_left_b = Signal(spec.max_tokens.bit_length())
        te, pe = Signal(range(max(2, _NE))), Signal(range(max(2, _NE)))   # engine of the next take, take_p
        # the divider's row and the held row (decided, waiting for the back stage): their metadata
        c_d, c_h = Signal(core_cmd_layout(spec)), Signal(core_cmd_layout(spec))
        pass2_d, pass2_h, last_d, last_h, rf_d = Signal(), Signal(), Signal(), Signal(), Signal()
        sb_d = Signal(SCORE_BANK_BITS)
        div_pending, hold_valid = Signal(), Signal()
        early_d = Signal()              # the divider's row is already in a top-k engine (eng_d)
        eng_d = Signal(range(max(2, _NE)))
        # the top-k feed: the softmax stage's oldest row offered to the top-k stage while its sweep writes
        # it (from_sweep), taken (fed_e, by engine fed_eng: carried to early_d / eng_d when the divider
        # takes the row); per exponential bank, its row's last exponential written (wr_done); the
        # softmax writes a row's last exponential in this cycle (wr_last)
        from_sweep, feed_now, fed_e, wr_last = Signal(), Signal(), Signal(), Signal()
        fed_eng = Signal(range(max(2, _NE)))
        wr_done = [Signal(name=f"wr_done_pb{j}") for j in range(_EXP_BANKS)]
        c_src = Signal(core_cmd_layout(spec))      # the row offered to the top-k stage: held, or the divider's
        bank_src = Signal(_EB_BITS)
        recip_h = Signal(f.recip_bits)
        # the PxV stage over the kept tokens: whether its row uses the keep mask (its engine's mask sweep
        # was complete at the take), the mask's copy (lanes clear their tokens as they read them), the
        # sweep's last issue; the token importance's own sweep running; the array's last product seen
        compact = Signal()
        pv_mask = Signal(spec.max_tokens)
        last_issue = Signal()
        imp_on = Signal()
        pv_seen = Signal()
        vars(self).update((name, value) for name, value in locals().items()
                          if name not in ("self", "core", "m", "spec", "f", "L", "D", "b", "gbits", "banks"))
        self.eng = [_Engine(j, self.tks[j], self.pr_ts[j], spec, f, self.prows) for j in range(_NE)]

        def sweep(name, cmd):
            """A row counter over the buffers' groups: (counter, last, valid-token lanes, buffer row)."""
            cnt = Signal(gbits + 1, name=f"g_{name}")
            n_groups = Signal(gbits + 1, name=f"n_groups_{name}")
            last = Signal(name=f"last_g_{name}")
            row = Signal(gbits + 1, name=f"bank_row_{name}")
            m.d.comb += [n_groups.eq((cmd.n_keys + L - 1) >> _clog2(L)), last.eq(cnt == n_groups - 1),
                         row.eq(Cat(cnt[:gbits], cmd.bank) if banks > 1 else cnt[:gbits])]
            return cnt, last, Cat(*[(cnt * L + i) < cmd.n_keys for i in range(L)]), row

        self.g, self.last_g, self.keep_row, self.bank_row = sweep("a", c)
        self.g_b, self.last_g_b, self.keep_row_b, self.bank_row_b = sweep("b", c_b)
        self.g_i, self.last_g_i, self.keep_row_i, _ = sweep("i", c_b)
        all_idle = Signal()             # no query anywhere in the core
        self.all_idle = all_idle
        self.v_in = Signal(banks)       # the banks whose values are in (the PxV stage may read them)
        sm, pq = self.sm, self.pq
        m.d.comb += [all_idle.eq(~Cat(*sb_busy).any() & ~div_pending & ~hold_valid
                                 & Cat(*[e.st_t == _T.IDLE for e in self.eng]).all() & (st_b == _B.IDLE)),
                     core.busy.eq((st_a != _A.IDLE) | ~all_idle),
                     pq.threshold.eq(c_d.threshold), pq.enable.eq(c_d.pq_enable & ~pass2_d),
                     pq.recip.eq(sm.recip), pq.recip_valid.eq(sm.recip_valid), pq.max_exp.eq(sm.max_exp)]


class _LanePorts:
    """Read ports of one memory per lane seen as one port: ``data`` the lanes' words side by side;
    ``addr`` one address for all lanes, or (``per_lane``) ``addrs[j]`` per lane."""

    def __init__(self, m, ports, width: int, name: str, per_lane: bool = False):
        depth_bits = len(ports[0].addr)
        self.data = Signal(width * len(ports), name=f"{name}_data")
        m.d.comb += self.data.eq(Cat(*[p.data for p in ports]))
        m.d.comb += [p.en.eq(1) for p in ports]
        if per_lane:
            self.addrs = [Signal(depth_bits, name=f"{name}_addr{j}") for j in range(len(ports))]
            m.d.comb += [p.addr.eq(a) for p, a in zip(ports, self.addrs)]
        else:
            self.addr = Signal(depth_bits, name=f"{name}_addr")
            m.d.comb += [p.addr.eq(self.addr) for p in ports]


class _LaneWrite:
    """Write ports of one memory per lane seen as one port of ``len(ports) / lanes`` sub-words of ``lanes``
    lanes: ``data`` the lanes side by side, ``en`` one bit per sub-word."""

    def __init__(self, m, ports, width: int, lanes: int):
        self.addr = Signal(len(ports[0].addr), name="pw_addr")
        self.data = Signal(width * len(ports), name="pw_data")
        self.en = Signal(len(ports) // lanes, name="pw_en")
        for j, p in enumerate(ports):
            m.d.comb += [p.addr.eq(self.addr), p.data.eq(self.data[j * width:(j + 1) * width]),
                         p.en.eq(self.en[j // lanes])]


class _Engine:
    """One local-V top-k engine's stage registers: its state, the row it works on (command, exponential
    bank, LSB pass, last of its command, reciprocal) and its result (the k-th exponential, the ties to
    keep, whether the row is pruned at all)."""

    def __init__(self, j: int, tk, pr_t, spec: SpattenSpec, f, prows: int):
        self.tk, self.pr_t = tk, pr_t
        self.st_t = Signal(_T, name=f"st_t{j}")
        self.c_t = Signal(core_cmd_layout(spec), name=f"c_t{j}")
        self.bank_t = Signal(_EB_BITS, name=f"bank_t{j}")
        self.need_lsb_t, self.last_t, self.pruned_t = (Signal(name=f"{n}{j}") for n in ("need_lsb_t", "last_t",
                                                                                          "pruned_t"))
        self.recip_t = Signal(f.recip_bits, name=f"recip_t{j}")
        self.thr_t = Signal(signed(f.exp_bits + 2), name=f"thr_t{j}")
        self.eqk_t = Signal(spec.max_tokens.bit_length(), name=f"eqk_t{j}")
        self.tk_ptr = Signal(_clog2(prows) + 1, name=f"tk_ptr{j}")
        self.tk_rows = Signal(_clog2(prows) + 1, name=f"tk_rows{j}")
        self.tk_fire = Signal(name=f"tk_fire{j}")
        self.j = j
        self.take_now = Signal(name=f"tk_take{j}")      # the engine takes the offered row in this cycle
        self.recip_ok = Signal(name=f"recip_ok{j}")     # the engine's row has its reciprocal (decided)
        self.ready = Signal(name=f"tk_ready{j}")          # the PxV stage may take the engine's row
        self.fb_ok = Signal(name=f"fb_ok{j}")   # the row is decided and was taken a cycle ago or more
        self.late = Signal(name=f"tk_late{j}")  # the PxV stage may take the row unpruned (the fallback)
        self.thr_now = Signal(signed(f.exp_bits + 2), name=f"thr_now{j}")   # the row's threshold, at its take
        self.eqk_now = Signal(spec.max_tokens.bit_length(), name=f"eqk_now{j}")
        # the keep-mask sweep after done (rows of P tokens): read pointer, the read in flight, tie
        # down-counter, the mask, and whether it is complete
        self.mask_rd = Signal(name=f"mask_rd{j}")
        self.mask_ptr = Signal(_clog2(prows) + 1, name=f"mask_ptr{j}")
        self.mr_v = Signal(name=f"mask_rv{j}")
        self.mr_row = Signal(_clog2(prows) + 1, name=f"mask_row{j}")
        self.mask_eq = Signal(spec.max_tokens.bit_length(), name=f"mask_eq{j}")
        self.mask = [Signal(spec.topk.parallelism, name=f"mask{j}_{r}") for r in range(prows)]
        self.mask_ok = Signal(name=f"mask_ok{j}")
        self.vf = Signal(name=f"v_fetch{j}")    # the row's mask just completed: its command's value fetch may start
        # the feed: the engine's row is still being written by its sweep; the read port's data is a
        # completely written row of P (the engine's input beat is valid)
        self.feed_t = Signal(name=f"feed_t{j}")
        self.rd_ok = Signal(name=f"tk_rd_ok{j}")
