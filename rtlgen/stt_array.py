"""Amaranth elaboration of a skewed stt array (dataflow/stt_array.py): lock-step chains along each hop.

Ports (streams valid/ready; payload = lanes of one beat; lane l = chain l of that operand, ordered by root):

- ``cmd``: ``steps`` = the problem's slots (boxes x window); accepted when idle;
- ``in_<X>``: one beat per slot, one element per chain root of X (zero when nothing enters);
- ``psum_<Y>``: one beat per slot, the partial sum entering each output chain's root (zero on first visits);
- ``out_<Y>``: one beat per slot, the partial sum leaving each output chain's last FU;
- ``done``: high for one cycle after the last slot; ``busy``: a problem is running.

One enable moves the whole datapath: a slot fires when every input stream has a beat and the output is
taken in the same cycle, so idle inputs and output back-pressure freeze the array without losing data.
Arithmetic wraps at the output type's width (two's complement).
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from archgen.dataflow.ir import STEP_BITS, PortRole, port_name
from archgen.dataflow.stt_array import CompiledSttArray, is_direct, tag_port
from archgen.rtlgen.datapath import delay_line, shape_of, tag

from .array import port_members

__all__ = ["SttArrayTop"]


def tag_validity(m, head, chain, dt, fire, bits: int, valid: dict, hop_prefix: str, valid_prefix: str) -> None:
    """A validity tag (lo, hi) rides the carrier's chain from ``head`` through ``dt`` registers per hop; FU p
    of the chain counts its product when lo <= p < hi (two compares against constants). Fills ``valid``."""
    prev = head
    for p, s in enumerate(chain):
        if p:
            prev = delay_line(m, prev, dt, fire, f"{hop_prefix}{tag(s)}_", 2 * bits)
        ok = Signal(name=f"{valid_prefix}{tag(s)}")
        m.d.comb += ok.eq((prev[:bits] <= p) & (prev[bits:] > p))
        valid[s] = ok


class SttArrayTop(wiring.Component):
    def __init__(self, compiled: CompiledSttArray):
        self.compiled = compiled
        super().__init__(port_members(compiled.ports, compiled.command))

    def _slot_control(self, m, out_port, psum_port, inputs):
        """Latch the slot count and fire one slot per cycle while every stream (``inputs``: the input and
        tag ports) can move; returns the ``fire`` signal."""
        running = Signal(name="running")
        steps_m1 = Signal(STEP_BITS, name="steps_minus_1")
        count = Signal(STEP_BITS, name="slot")
        done = Signal(name="done_pulse")
        start = Signal(name="start")
        beats = Signal(name="beats_valid")
        fire = Signal(name="fire")
        valids = [p.valid for p in inputs] + [psum_port.valid]
        all_valid = valids[0]
        for v in valids[1:]:
            all_valid = all_valid & v
        m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running), self.busy.eq(running),
                     beats.eq(running & all_valid), fire.eq(beats & out_port.ready), out_port.valid.eq(beats),
                     self.done.eq(done)]
        for p in inputs + [psum_port]:
            m.d.comb += p.ready.eq(fire)
        m.d.sync += done.eq(0)
        with m.If(start):
            m.d.sync += [running.eq(1), steps_m1.eq(self.cmd.payload.steps - 1), count.eq(0)]
        with m.If(fire):
            m.d.sync += count.eq(count + 1)
            with m.If(count == steps_m1):
                m.d.sync += [running.eq(0), done.eq(1)]
        return fire

    def elaborate(self, platform):
        m = Module()
        net = self.compiled.network
        design = net.design
        out_h = net.output
        out_port = getattr(self, port_name(PortRole.OUTPUT, out_h.name))
        psum_port = getattr(self, port_name(PortRole.PSUM, out_h.name))
        in_ports = {h.name: getattr(self, port_name(PortRole.INPUT, h.name)) for h in net.inputs}
        tag_in = getattr(self, tag_port(net.carrier)) if net.carrier else None

        fire = self._slot_control(m, out_port, psum_port, list(in_ports.values()) + ([] if tag_in is None else [tag_in]))

        # datapath: input chains, then partial-sum chains in chain order
        types = design.type_of
        acc_shape = shape_of(design.acc_type.bits, design.acc_type.signed)
        value = {}                              # (operand, fu) -> the element FU s uses this slot
        valid = {}                              # fu -> its product counts (validity tag of the carrier's line)
        bits = net.tag_field_bits

        def tag_chain(lane, chain, dt, name):
            tag_validity(m, tag_in.payload[lane], chain, dt, fire, bits, valid, f"tag_{name}_hop_", "valid_")

        for h in net.inputs:
            shp = shape_of(types[h.name].bits, types[h.name].signed)
            for lane, chain in enumerate(net.chains_of(h.name)):
                if is_direct(h):       # no reuse: the lane feeds its FU directly
                    (s,) = chain
                    value[(h.name, s)] = in_ports[h.name].payload[lane]
                    continue
                if h.name == net.carrier:
                    tag_chain(lane, chain, h.dt, h.name)
                if h.stationary:       # a ring of dt registers at the FU; its lane adds (load: new - held)
                    (s,) = chain
                    held = Signal(shp, name=f"{h.name}_held_{tag(s)}")
                    ring = delay_line(m, held, h.dt, fire, f"{h.name}_ring_{tag(s)}_", shp)
                    m.d.comb += held.eq(ring + in_ports[h.name].payload[lane])
                    value[(h.name, s)] = held
                    continue
                prev = in_ports[h.name].payload[lane]
                for p, s in enumerate(chain):
                    if p:
                        prev = delay_line(m, prev, h.dt, fire, f"{h.name}_hop_{tag(s)}_", shp)
                    value[(h.name, s)] = prev
        for lane, chain in enumerate(net.chains_of(out_h.name)):
            c_in = psum_port.payload[lane]
            if out_h.name == net.carrier:
                tag_chain(lane, chain, out_h.dt, out_h.name)
            for p, s in enumerate(chain):
                if is_direct(out_h):   # one iteration per element: its partial sum in, the result out
                    c_out = Signal(acc_shape, name=f"{out_h.name}_sum_{tag(s)}")
                elif out_h.stationary:   # an accumulator ring at the FU: the psum lane adds to what it holds
                    c_out = Signal(acc_shape, name=f"{out_h.name}_sum_{tag(s)}")
                    c_in = c_in + delay_line(m, c_out, out_h.dt, fire, f"{out_h.name}_ring_{tag(s)}_", acc_shape)
                elif p:
                    c_in = delay_line(m, c_out, out_h.dt, fire, f"{out_h.name}_hop_{tag(s)}_", acc_shape)
                prod = value[(net.inputs[0].name, s)]
                for h in net.inputs[1:]:
                    prod = prod * value[(h.name, s)]
                if net.carrier and net.carrier != out_h.name:     # an input's tag: mask before the stages
                    prod = Mux(valid[s], prod, 0)
                # registers behind the product (clock target); synthesis retiming moves them into the multiplier
                prod = delay_line(m, prod, net.product_stages, fire, f"{out_h.name}_prod_{tag(s)}_", acc_shape)
                if net.carrier == out_h.name:                     # the partial sum's tag: mask at the adder
                    prod = Mux(valid[s], prod, 0)
                if not out_h.stationary:
                    c_out = Signal(acc_shape, name=f"{out_h.name}_sum_{tag(s)}")
                m.d.comb += c_out.eq(c_in + prod)
            m.d.comb += out_port.payload[lane].eq(c_out)
        return m


STT_CONTRACT_TEXT = ("one slot per cycle while every input stream has a beat and the output takes one; slot n fires "
                     "at cycle n + 1 with streams that never wait, its output beat leaves in the same cycle; done is "
                     "high in the cycle after the last slot; steps = boxes x window (dataflow/stt_array.py)")


def stt_array_verilog(compiled: CompiledSttArray) -> tuple[str, dict]:
    """(Verilog text, manifest dict) of a skewed stt array."""
    from amaranth.back import verilog

    from .build import port_interfaces
    from .manifest import manifest_core
    top = SttArrayTop(compiled)
    text = verilog.convert(top, name=compiled.design.name, emit_src=False)
    design, df, net = compiled.design, compiled.dataflow, compiled.network
    parameters = {
        "array_shape": list(design.shape), "dataflow": df.name, "stt": [list(r) for r in df.stt],
        "order": list(df.order), "types": {n: str(t) for n, t in design.types}, "clock_mhz": design.clock_mhz,
        "overflow": "wrap (two's complement at the output type's width)", "step_bits": STEP_BITS,
    }
    manifest = manifest_core("array", design.name, design.source_hash, text, top, parameters,
                             {"formula": STT_CONTRACT_TEXT})
    manifest.update({
        "interfaces": port_interfaces(compiled.ports, compiled.command),
        "operands": [{"operand": h.name, "role": ("direct" if is_direct(h) else "ring" if h.stationary else
                                                  "psum_chain" if h.is_output else "chain"), "lanes": net.lanes(h.name),
                      "hop": list(h.ds), "registers_per_hop": h.dt, "reuse_direction": list(h.dx)} for h in net.hops],
        "validity_tag": (None if not net.carrier else
                         {"carrier": net.carrier, "port": tag_port(net.carrier), "field_bits": net.tag_field_bits}),
        "pipelining": {"clock_target_ns": compiled.clock_period_ns, "delay_table": compiled.target,
                       "registers_added": net.product_stages * design.n_fus, "product_stages": net.product_stages,
                       "estimated_path_ns": round(compiled.critical_path_ns, 4),
                       "timing_met": (compiled.clock_period_ns is None
                                      or compiled.critical_path_ns <= compiled.clock_period_ns + 1e-9)},
    })
    return text, manifest
