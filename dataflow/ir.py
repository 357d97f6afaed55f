"""Typed names of the array IR, shared by the FU graph, the primitive graph, the schedule, the RTL and the
cycle model.

Graph nodes are :class:`Node` values (kind plus the fields that locate them), never tuples tagged by a
string; operand roles, node kinds and port roles are enums; a top-level port is a :class:`Port`; the
command word is a :class:`CommandLayout` of plain fields, which rtlgen turns into an Amaranth layout (the
model layers import no amaranth). The enums derive from ``str`` so that a manifest (JSON) carries their
plain values.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Role", "NodeKind", "EdgeKind", "PortRole", "Direction", "Node", "Link", "Primitive", "Wire", "Port",
           "CommandField", "CommandLayout", "command_layout", "port_name", "STEP_BITS", "TRIP_BITS"]

STEP_BITS = 32
TRIP_BITS = 16


class _Name(str, enum.Enum):
    """An enum whose members print as their plain value (manifests, messages)."""

    def __str__(self) -> str:
        return self.value


class Role(_Name):
    """How an operand moves through the array under one dataflow (per operand, and per FU)."""

    STREAM = "stream"              # input changing with the inner loops: one beat per step
    STATIONARY = "stationary"      # input invariant over the tile: one register per FU, loaded between tiles
    ACCUMULATE = "accumulate"      # output invariant over the tile: accumulated in place, drained by rows
    STREAM_OUT = "stream_out"      # output changing with the inner loops: reduced across the array
    REDUCE = "reduce"              # an FU's part in a STREAM_OUT output (chain or tree leaf)

    @property
    def is_input(self) -> bool:
        return self in (Role.STREAM, Role.STATIONARY)

    @property
    def is_output(self) -> bool:
        return self in (Role.ACCUMULATE, Role.STREAM_OUT, Role.REDUCE)


class NodeKind(_Name):
    # FU graph
    FU = "fu"
    MEM = "mem"
    TREE = "tree"
    DRAIN = "drain"                # also a primitive: the register an output lane leaves through
    # primitive graph
    MEM_PORT = "mem_port"
    PORT = "port"
    STATIONARY_REG = "stationary_reg"
    MUL = "mul"
    ADD = "add"
    ACC = "acc"
    TREE_ADD = "tree_add"
    FIFO = "fifo"                  # a delay connection's FIFO in front of an FU's input port (issue 14)


class EdgeKind(_Name):
    MEMORY = "memory"
    BROADCAST = "broadcast"
    SYSTOLIC = "systolic"
    DRAIN = "drain"
    REDUCE = "reduce"
    REDUCE_CHAIN = "reduce_chain"
    TREE = "tree"
    INTERNAL = "internal"
    DELAY = "delay"                # a delay connection: FIFO of ``Link.fifo`` steps, then ``delay`` registers


@dataclass(frozen=True)
class Node:
    """A node of the FU graph or of the primitive graph.

    ``coord`` locates FU-internal nodes (FU, port, stationary register, multiplier, adder, accumulator);
    ``operand`` and ``lane`` locate memory lanes, memory ports, trees and drains; ``level`` and ``index``
    an adder of a tree. ``lane`` is ``None`` for an operand's memory root (all lanes) in the analysis.
    Nodes order by :attr:`path`, which is also their Verilog name.
    """

    kind: NodeKind
    coord: tuple[int, ...] = ()
    operand: str = ""
    lane: int | None = None
    level: int = 0
    index: int = 0

    @property
    def path(self) -> tuple:
        """The node as a tuple of its locating fields, e.g. ``("tree_add", "C", 0, 1, 2)``."""
        k = self.kind
        if k in (NodeKind.FU, NodeKind.MUL, NodeKind.ADD, NodeKind.ACC):
            return (k.value, self.coord)
        if k in (NodeKind.PORT, NodeKind.STATIONARY_REG, NodeKind.FIFO):
            return (k.value, self.coord, self.operand)
        if k is NodeKind.TREE_ADD:
            return (k.value, self.operand, self.lane, self.level, self.index)
        return (k.value, self.operand, "*" if self.lane is None else self.lane)

    def __lt__(self, other):                 # order by path (shared with the RTL's signal names)
        return _sort_key(self.path) < _sort_key(other.path)

    def __le__(self, other):
        return self == other or self < other

    def __gt__(self, other):
        return other < self

    def __ge__(self, other):
        return self == other or other < self

    def __repr__(self) -> str:
        return "Node(" + ", ".join(repr(p) for p in self.path) + ")"

    @property
    def name(self) -> str:
        """A readable Verilog name, e.g. ``tree_add_C_0_1_2``."""
        return "_".join("_".join(str(c) for c in p) if isinstance(p, tuple) else str(p) for p in self.path)

    @property
    def unit(self) -> "Node":
        """The hardware unit the node belongs to: its FU for FU-internal primitives, itself otherwise."""
        if self.kind in (NodeKind.PORT, NodeKind.STATIONARY_REG, NodeKind.MUL, NodeKind.ADD, NodeKind.ACC):
            return fu(self.coord)
        return self


@dataclass(frozen=True)
class Link:
    """An FU-graph edge: how one operand's value moves from one node to the next."""

    operand: str
    kind: EdgeKind
    delay: int                    # registers the schedule needs on it (skew, systolic hop, de-skew)
    width: int
    axis: int | None = None       # the array axis a hop or a chain link moves along
    fanout: int | None = None     # a broadcast net: the FUs it drives
    load: bool = False            # used in the load phase (stationary data, accumulator preload)
    fifo: int = 0                 # a delay connection: steps of the innermost loop its FIFO holds


@dataclass(frozen=True)
class Primitive:
    """A primitive-graph node's payload: its timing and width (its kind and place are its :class:`Node` key).

    ``latency``: cycles from its inputs being latched to its output being valid (0: combinational);
    ``delay_ns``: combinational delay through it (latency 0) or in front of its first internal register;
    ``out_ns``: clock to output of a registered node; ``internal_stages``: registers inside a multiplier
    split to fit the clock (they are its latency)."""

    latency: int
    width: int
    delay_ns: float = 0.0
    out_ns: float = 0.0
    internal_stages: int = 0


@dataclass(frozen=True)
class Wire:
    """A primitive-graph edge's payload.

    ``delay``: the registers the schedule needs on it (D_e); ``hold``: it feeds a value held constant while
    it is used (stationary register output, accumulator preload or read-out), so it is not delay-matched;
    ``wire_ns``: its wire delay, the fan-out penalty of the net that drives it plus ``span_ns``; ``fu_edge``: the
    FU-graph edge it implements (None inside an FU and between adder-tree levels); ``span_ns``: on a link between
    FUs more than one FU pitch apart on the physical array, its wire delay beyond a neighbour link's (the delay
    table's ``fu_pitch_wire``; 0 elsewhere), part of ``wire_ns`` and counted again by the delay-matching LP after
    the link's schedule registers (dataflow/delay_lp.py ``wire_cuts``)."""

    operand: str
    kind: EdgeKind
    width: int
    delay: int
    hold: bool = False
    wire_ns: float = 0.0
    fu_edge: tuple | None = None
    span_ns: float = 0.0


def _sort_key(path):
    return tuple(("", p) if isinstance(p, str) else (type(p).__name__, p) for p in path)


def fu(coord) -> Node:
    return Node(NodeKind.FU, coord=tuple(coord))


class PortRole(_Name):
    COMMAND = "command"
    INPUT = "input"            # an input operand (stationary rows or streamed steps)
    PSUM = "psum"              # partial sums of the output from earlier tiles
    OUTPUT = "output"          # results
    STATUS = "status"          # done / busy


class Direction(_Name):
    IN = "in"
    OUT = "out"


def port_name(role: PortRole, operand: str) -> str:
    """The top-level name of an operand stream: ``in_A``, ``psum_C``, ``out_C``."""
    return {PortRole.INPUT: "in_", PortRole.PSUM: "psum_", PortRole.OUTPUT: "out_"}[role] + operand


@dataclass(frozen=True)
class Port:
    """A top-level port of a generated array: ``lanes`` elements of ``width`` bits per beat."""

    name: str
    direction: Direction
    role: PortRole
    width: int                   # bits per lane (per element)
    lanes: int = 1
    operand: str = ""
    signed: bool = False
    stream: bool = True          # valid/ready stream (status ports are plain signals)

    @property
    def bits(self) -> int:
        return self.width * self.lanes


@dataclass(frozen=True)
class CommandField:
    name: str
    bits: int
    offset: int
    loop: str | None = None      # the outer loop of a trip count (None for ``steps``)


@dataclass(frozen=True)
class CommandLayout:
    """The command word: fields packed from bit 0 in order (the Amaranth StructLayout rtlgen builds)."""

    fields: tuple[CommandField, ...]

    @property
    def size(self) -> int:
        return sum(f.bits for f in self.fields)


def command_layout(outer_loops) -> CommandLayout:
    """Steps per tile, then one trip count per outer loop (outer to inner)."""
    fields, offset = [], 0
    for name, bits, loop in [("steps", STEP_BITS, None)] + [(f"trips_{d}", TRIP_BITS, str(d)) for d in outer_loops]:
        fields.append(CommandField(name, bits, offset, loop))
        offset += bits
    return CommandLayout(tuple(fields))
