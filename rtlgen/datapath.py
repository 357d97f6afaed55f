"""The retimed datapath of an FU graph, shared by the array top level and the controller-less array units.

A primitive node's output is one Amaranth value; a retimed edge (u, v) with k registers reads the k-th
register of u's single shared chain (fan-out sharing), so the hardware holds exactly the registers the
LP placed. :class:`RetimedNets` builds those chains and the node kinds that mean the same thing in every
user: input ports, multipliers (with the internal stages the LP gave slow ones) and adders. Who feeds
the memory ports, stationary registers and accumulators, and where drains go, is the user's business.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from archgen.dataflow.ir import NodeKind
from archgen.dataflow.pipelining import ArrayTiming

__all__ = ["RetimedNets", "shape_of", "tag", "node_name", "delay_line"]


def shape_of(bits: int, is_signed: bool):
    return signed(bits) if is_signed else unsigned(bits)


def tag(coord) -> str:
    return "_".join(str(c) for c in coord)


def node_name(node) -> str:
    """A readable Verilog name for a primitive node, e.g. Node('tree_add', 'C', 0, 1, 2) -> tree_add_C_0_1_2."""
    return node.name


def fifo_buffer(m: Module, name: str, value, shp, shift, iterations: int, steps, max_depth: int):
    """A delay connection's FIFO of run-time depth: ``iterations`` x ``steps`` shifts of delay through one
    buffer of ``iterations`` x ``max_depth`` entries (rounded up to a power of two, so the pointer wraps for
    free), written at ``wp`` on ``shift`` and read asynchronously at ``wp - iterations * steps``: the entry
    written that many shifts ago is the output of the current step."""
    bits = max(1, (iterations * max_depth - 1).bit_length())
    mem = Memory(shape=unsigned(shp.width), depth=1 << bits, init=[])
    m.submodules[f"{name}_buf"] = mem
    wp = Signal(bits, name=f"{name}_wp")
    wr = mem.write_port()
    rd = mem.read_port(domain="comb")
    m.d.comb += [wr.addr.eq(wp), wr.data.eq(value.as_unsigned()), wr.en.eq(shift),
                 rd.addr.eq((wp - iterations * steps)[:bits])]
    with m.If(shift):
        m.d.sync += wp.eq(wp + 1)
    out = Signal(shp, name=f"{name}_out")
    m.d.comb += out.eq(rd.data.as_signed() if shp.signed else rd.data)
    return out


def delay_line(m: Module, value, n: int, en, name: str, shape):
    """``value`` delayed by n enabled clock cycles (n = 0: the value itself)."""
    prev = value
    for k in range(n):
        r = Signal(shape, name=f"{name}{k}" if n > 1 else name)
        with m.If(en):
            m.d.sync += r.eq(prev)
        prev = r
    return prev


class RetimedNets:
    """Node output values and their register chains for one retimed primitive graph.

    ``adv`` enables every register (the array's global stall); ``input_shape(operand)`` gives the shape
    of an input operand, ``acc_shape`` the shape of products and sums (the output type); ``mask(node)``,
    when given, zeroes a multiplier's product on the steps it flags (halo steps of delay connections).
    """

    def __init__(self, m: Module, timing: ArrayTiming, adv, input_shape, acc_shape, mask=None):
        self.m, self.tm, self.adv = m, timing, adv
        self.mask = mask            # node -> 1-bit value: the multiplier's step is masked (a halo step)
        self.graph = timing.prim.graph
        self.input_shape, self.acc_shape = input_shape, acc_shape
        self.out: dict = {}
        self._chains: dict = {}

    def src(self, u, v, shape):
        """The value of u as v sees it: u's output behind the edge's register count."""
        k = self.tm.regs(u, v)
        if k == 0:
            return self.out[u]
        ch = self._chains.setdefault(u, [])
        prev = ch[-1] if ch else self.out[u]
        while len(ch) < k:
            r = Signal(shape, name=f"{node_name(u)}_d{len(ch) + 1}")
            with self.m.If(self.adv):
                self.m.d.sync += r.eq(prev)
            ch.append(r)
            prev = r
        return ch[k - 1]

    def build(self, v) -> bool:
        """Emit node v if it is a port, multiplier or adder; False for the kinds the caller owns."""
        m, g = self.m, self.graph
        kind, latency = v.kind, self.tm.node_latency(v)
        if kind is NodeKind.PORT:
            (u,) = list(g.predecessors(v))
            self.out[v] = self.src(u, v, self.input_shape(v.operand))
        elif kind is NodeKind.MUL:
            prod = None
            for u in sorted(g.predecessors(v)):
                x = self.src(u, v, self.input_shape(u.operand))
                prod = x if prod is None else prod * x
            if self.mask is not None:
                prod = Mux(self.mask(v), 0, prod)
            sig = Signal(self.acc_shape, name=f"prod_{tag(v.coord)}")
            if latency == 0:
                m.d.comb += sig.eq(prod)
            else:
                # the first register right behind the product, the LP's internal stages after it (for the
                # synthesis tool to balance into the partial-product tree)
                stages = delay_line(m, prod, latency, self.adv, f"prod_{tag(v.coord)}_s", self.acc_shape)
                m.d.comb += sig.eq(stages)
            self.out[v] = sig
        elif kind in (NodeKind.ADD, NodeKind.TREE_ADD):
            total = None
            for u in sorted(g.predecessors(v), key=lambda n: repr(n.path)):
                x = self.src(u, v, self.acc_shape)
                total = x if total is None else total + x
            sig = Signal(self.acc_shape, name=node_name(v))
            m.d.comb += sig.eq(total)
            self.out[v] = sig
        else:
            return False
        return True
