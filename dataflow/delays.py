"""Per-primitive delay tables (combinational delay in ns, latency in cycles) for a target technology.

Tables live in dataflow/data/delays_<target>.yaml and name the basis of every number. Delays that depend
on bit width are tabulated at a few widths and interpolated linearly between them (extrapolated from the
last two points above the largest width), so a 12-bit adder sits between the 8- and 16-bit entries. The
``fu_pitch_wire`` entry (wire delay per FU pitch a link between FUs spans beyond the first) is optional: a
table without it loads with 0 ns per pitch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from archgen.arch.reader import read_yaml_file
from archgen.arch.errors import SpecError, problem

__all__ = ["DelayTable", "WidthCurve"]

_BUILTIN = ("asic", "ecp5")


@dataclass(frozen=True)
class WidthCurve:
    """Delay (ns) tabulated by bit width; `at(w)` interpolates piecewise-linearly."""

    widths: tuple[int, ...]
    delays_ns: tuple[float, ...]

    def at(self, width: int) -> float:
        ws, ds = self.widths, self.delays_ns
        if len(ws) == 1:
            return ds[0]
        if width <= ws[0]:
            return ds[0]
        for i in range(1, len(ws)):
            if width <= ws[i]:
                lo, hi = ws[i - 1], ws[i]
                return ds[i - 1] + (ds[i] - ds[i - 1]) * (width - lo) / (hi - lo)
        slope = (ds[-1] - ds[-2]) / (ws[-1] - ws[-2])
        return ds[-1] + max(slope, 0.0) * (width - ws[-1])


@dataclass(frozen=True)
class DelayTable:
    """Delays of the primitives of one target. All delays in ns, latencies in cycles."""

    target: str
    basis: str
    clk_to_q_ns: float
    setup_ns: float
    multiplier: WidthCurve          # keyed by operand width
    multiplier_latency: int
    adder: WidthCurve               # keyed by result width
    mux2_ns: float
    memory_latency: int
    memory_clk_to_out_ns: float
    fanout_ns_per_log2_sinks: float
    fanout_ns_per_sink: float
    tree_level_wire_ns: float
    fu_pitch_ns: float              # wire delay per FU pitch a link spans beyond its first (0: no entry)
    sources: tuple[tuple[str, str], ...]   # (entry, where its numbers come from)

    @property
    def register_overhead_ns(self) -> float:
        return self.clk_to_q_ns + self.setup_ns

    def multiplier_ns(self, operand_width: int) -> float:
        return self.multiplier.at(operand_width)

    def adder_ns(self, width: int) -> float:
        return self.adder.at(width)

    def fanout_ns(self, sinks: int) -> float:
        """Extra wire/buffer delay of a net driving `sinks` inputs (0 for a point-to-point net)."""
        if sinks <= 1:
            return 0.0
        return self.fanout_ns_per_log2_sinks * math.log2(sinks) + self.fanout_ns_per_sink * sinks

    def span_ns(self, pitches: int) -> float:
        """Extra wire delay of a link between FUs ``pitches`` FU pitches apart (Manhattan distance on the
        physical array): 0 for neighbours, whose delay the register and multiplier entries already hold."""
        return self.fu_pitch_ns * max(pitches - 1, 0)

    @classmethod
    def load(cls, target: str | Path) -> "DelayTable":
        """Load a built-in table ("asic", "ecp5") or a YAML file; raise SpecError listing every problem."""
        if isinstance(target, str) and target in _BUILTIN:
            ref = resources.files("archgen.dataflow") / "data" / f"delays_{target}.yaml"
            text, source = ref.read_text(), f"delays_{target}.yaml"
        else:
            path = Path(target)
            if not path.is_file():
                raise SpecError([problem("target", f"not a built-in delay table {_BUILTIN} nor an existing "
                                         "YAML file", str(target))])
            return cls.from_dict(read_yaml_file(path, what="delay table", int_keys=True), source=str(path))
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError([problem("", f"not valid YAML: {exc}")], source=source) from exc
        return cls.from_dict(doc, source=source)

    @classmethod
    def from_dict(cls, doc: object, *, source: str | None = None) -> "DelayTable":
        problems: list = []
        if not isinstance(doc, dict):
            raise SpecError([problem("", "a delay table must be a mapping", type(doc).__name__)], source=source)

        def section(name: str) -> dict:
            sec = doc.get(name)
            if not isinstance(sec, dict):
                problems.append(problem(name, "missing section (a mapping)", sec))
                return {}
            if not isinstance(sec.get("source"), str) or not sec["source"].strip():
                problems.append(problem(f"{name}.source", "say where these numbers come from",
                                        sec.get("source")))
            return sec

        def number(sec: dict, path: str, key: str, *, integer: bool = False) -> float:
            val = sec.get(key)
            ok = isinstance(val, int) if integer else isinstance(val, (int, float))
            if isinstance(val, bool) or not ok or val < 0 or (not integer and not math.isfinite(val)):
                kind = "a non-negative integer" if integer else "a non-negative number"
                problems.append(problem(f"{path}.{key}", f"must be {kind}", val))
                return 0
            return val

        def curve(sec: dict, path: str) -> WidthCurve:
            table = sec.get("delay_ns")
            if not isinstance(table, dict) or not table:
                problems.append(problem(f"{path}.delay_ns", "must map bit widths to delays in ns", table))
                return WidthCurve((1,), (0.0,))
            points = []
            for w, d in table.items():
                if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                    problems.append(problem(f"{path}.delay_ns", "widths must be positive integers", w))
                elif isinstance(d, bool) or not isinstance(d, (int, float)) or not d >= 0 or not math.isfinite(d):
                    problems.append(problem(f"{path}.delay_ns.{w}", "must be a non-negative number of ns", d))
                else:
                    points.append((w, float(d)))
            points.sort()
            return WidthCurve(tuple(p[0] for p in points) or (1,), tuple(p[1] for p in points) or (0.0,))

        if doc.get("version") != 1:
            problems.append(problem("version", "must be 1", doc.get("version")))
        target = doc.get("target")
        if not isinstance(target, str) or not target:
            problems.append(problem("target", "must name the technology", target))
        basis = doc.get("basis")
        if not isinstance(basis, str) or not basis.strip():
            problems.append(problem("basis", "say what the numbers are based on", basis))
        reg, mul, add, mux = section("register"), section("multiplier"), section("adder"), section("mux2")
        mem, fan, tree = section("memory_port"), section("fanout"), section("tree_level")
        # optional (tables written before it keep loading): without it a link's length costs nothing
        pitch = section("fu_pitch_wire") if "fu_pitch_wire" in doc else {"ns_per_pitch": 0.0}
        known = {"version", "target", "basis", "register", "multiplier", "adder", "mux2", "memory_port",
                 "fanout", "tree_level", "fu_pitch_wire"}
        for key in sorted(set(doc) - known, key=str):
            problems.append(problem(str(key), f"unknown entry; known: {sorted(known)}"))
        table = dict(
            target=target, basis=basis,
            clk_to_q_ns=number(reg, "register", "clk_to_q_ns"),
            setup_ns=number(reg, "register", "setup_ns"),
            multiplier=curve(mul, "multiplier"),
            multiplier_latency=number(mul, "multiplier", "latency_cycles", integer=True),
            adder=curve(add, "adder"),
            mux2_ns=number(mux, "mux2", "delay_ns"),
            memory_latency=number(mem, "memory_port", "latency_cycles", integer=True),
            memory_clk_to_out_ns=number(mem, "memory_port", "clk_to_out_ns"),
            fanout_ns_per_log2_sinks=number(fan, "fanout", "ns_per_log2_sinks"),
            fanout_ns_per_sink=number(fan, "fanout", "ns_per_sink"),
            tree_level_wire_ns=number(tree, "tree_level", "wire_ns"),
            fu_pitch_ns=number(pitch, "fu_pitch_wire", "ns_per_pitch"),
        )
        if mem and table["memory_latency"] < 1 and not any(p.path.startswith("memory_port") for p in problems):
            problems.append(problem("memory_port.latency_cycles",
                                    "a synchronous memory port has at least 1 cycle of latency",
                                    mem.get("latency_cycles")))
        if problems:
            raise SpecError(problems, source=source)
        sources = tuple((name, doc[name]["source"].strip())
                        for name in ("register", "multiplier", "adder", "mux2", "memory_port", "fanout", "tree_level",
                                     "fu_pitch_wire") if name in doc)
        return cls(**table, sources=sources)
