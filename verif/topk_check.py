"""Host side of top-k verification: stimulus, RTL run, and the checks (numpy set and order, model cycles).

``verify_topk`` is what ``archgen verify <spec> --unit topk --n N --k K --seed S`` calls.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archgen.arch.errors import SpecError, problem
from archgen.rtlgen.topk import field_bits, topk_verilog
from archgen.sim.topk_model import simulate_topk, topk_reference
from archgen.verif.runner import run_testbench

__all__ = ["TopKRequest", "random_requests", "run_topk_rtl", "check_topk", "verify_topk"]


@dataclass(frozen=True)
class TopKRequest:
    """One request to the engine: n = len(scores); keep marks valid candidates."""

    k: int
    seed: int
    scores: tuple[int, ...]
    keep: tuple[bool, ...]

    def __post_init__(self):
        if len(self.keep) != len(self.scores):
            raise ValueError(f"keep needs one bit per score ({len(self.scores)}), not {len(self.keep)}")
        if self.k < 0:
            raise ValueError(f"k must be >= 0, not {self.k!r}")

    @property
    def n(self) -> int:
        return len(self.scores)

    def as_json(self) -> dict:
        return {"n": self.n, "k": self.k, "seed": self.seed, "scores": list(self.scores),
                "keep": [int(b) for b in self.keep]}


def random_requests(count: int, *, max_n: int, width: int, seed: int,
                    hole_prob: float = 0.0) -> list[TopKRequest]:
    """Mixed stimulus: random n in 1..max_n, k in 0..n+3, ties (small alphabets), negatives, extremes."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    out = []
    for j in range(count):
        n = int(rng.integers(1, max_n + 1))
        kind = j % 5
        if kind == 0:          # full range, negatives included
            x = rng.integers(lo, hi + 1, n)
        elif kind == 1:        # heavy ties
            x = rng.integers(-3, 4, n)
        elif kind == 2:        # all equal
            x = np.full(n, int(rng.integers(lo, hi + 1)))
        elif kind == 3:        # extremes and zeros
            x = rng.choice([lo, hi, 0, -1, 1], n)
        else:                  # sorted ascending: the pivot rule's bad case
            x = np.sort(rng.integers(-1000, 1000, n))
        keep = rng.random(n) >= hole_prob
        k = int(rng.integers(0, n + 4))
        out.append(TopKRequest(k, int(rng.integers(0, 1 << 16)), tuple(int(v) for v in x),
                               tuple(bool(b) for b in keep)))
    return out


def run_topk_rtl(requests: list[TopKRequest], *, parallelism: int, max_n: int, width: int = 16,
                 fifo_depth: int = 64, stall_prob: float = 0.0, idle_prob: float = 0.0, seed: int = 0,
                 cache_dir: Path | None = None, timeout_s: float | None = 1800, replay: bool = True,
                 sample_lanes: int | None = None, rank_pipeline: bool = True, sample_register: bool = False) -> dict:
    """Build the engine (cached) and run all ``requests`` back to back; returns the testbench result.
    ``replay=False`` builds the engine without its replay (the SpAtten core's: threshold outputs only);
    ``sample_lanes`` is the engine's pivot sample width S (None: its default), ``rank_pipeline`` its
    registered sample compare bits, ``sample_register`` its sample registered before that compare."""
    count_bits, index_bits = field_bits(max_n)
    verilog = topk_verilog(parallelism, max_n, width, fifo_depth, replay=replay, sample_lanes=sample_lanes,
                           rank_pipeline=rank_pipeline, sample_register=sample_register)
    with tempfile.TemporaryDirectory(prefix="archgen-topk-") as tmp:
        req_file = Path(tmp) / "requests.json"
        req_file.write_text(json.dumps([r.as_json() for r in requests]))
        params = {"requests_file": str(req_file), "parallelism": parallelism, "width": width,
                  "count_bits": count_bits, "index_bits": index_bits,
                  "stall_prob": stall_prob, "idle_prob": idle_prob, "seed": seed,
                  "max_cycles": 50 * sum(r.n + 16 for r in requests) * max(1, max_n // parallelism) + 10_000}
        return run_testbench(verilog, "topk", "archgen.verif.tb_topk", params,
                             cache_dir=cache_dir, timeout_s=timeout_s)


def threshold_keep(scores, valid, kth: int, keep_equal: int) -> list[int]:
    """Indices a consumer keeps from the engine's threshold outputs, in index order: every candidate
    above ``kth``, and the first ``keep_equal`` candidates equal to it (what the SpAtten core's sweep does)."""
    kept, seen = [], 0
    for i, (x, ok) in enumerate(zip(scores, valid)):
        if not ok:
            continue
        if x > kth:
            kept.append(i)
        elif x == kth:
            if seen < keep_equal:
                kept.append(i)
            seen += 1
    return kept


def check_topk(requests: list[TopKRequest], rtl: dict, *, parallelism: int, fifo_depth: int = 64,
               check_cycles: bool = True, replay: bool = True, sample_lanes: int | None = None,
               rank_pipeline: bool = True, sample_register: bool = False) -> list[dict]:
    """Per request: RTL output vs numpy (indices, values, order), the set the threshold outputs select
    vs numpy, RTL cycles and rounds vs the model. ``replay=False``: the engine has no output stream;
    only the threshold outputs are checked."""
    rows = []
    got_all = rtl.get("requests", [])
    for j, req in enumerate(requests):
        ref = topk_reference(req.scores, req.k, req.keep)
        model = simulate_topk(req.scores, req.k, parallelism=parallelism, seed=req.seed,
                              fifo_depth=fifo_depth, valid=req.keep, replay=replay, sample_lanes=sample_lanes,
                              rank_pipeline=rank_pipeline, sample_register=sample_register)
        row = {"n": req.n, "k": req.k, "seed": req.seed, "model_cycles": model.cycles,
               "model_rounds": len(model.rounds), "expected_count": len(ref)}
        if j >= len(got_all):
            row.update(correct=False, rtl_cycles=None, problem="no result from the RTL")
            rows.append(row)
            continue
        got = got_all[j]
        pairs = [pair for beat in got["beats"] for pair in beat]
        idx = [i for i, _ in pairs]
        vals = [v for _, v in pairs]
        full_beats = all(len(b) == parallelism for b in got["beats"][:-1])
        by_threshold = (threshold_keep(req.scores, req.keep, got["kth"], got["keep_equal"])
                        if "kth" in got else None)
        if replay:
            correct = (idx == ref and vals == [req.scores[i] for i in ref] and full_beats
                       and len(got["beats"]) == -(-len(ref) // parallelism) and by_threshold == ref)
        else:
            correct = by_threshold == ref and not got["beats"]
            pairs, idx = [(i, req.scores[i]) for i in by_threshold], by_threshold
        row.update(correct=correct, rtl_cycles=got["cycles"], rtl_rounds=got["rounds"],
                   got_count=len(idx))
        if not correct:
            first = next((i for i, (a, b) in enumerate(zip(idx, ref)) if a != b), min(len(idx), len(ref)))
            row["problem"] = (f"first difference at output position {first}: got "
                              f"{pairs[first:first + 3]}, expected indices {ref[first:first + 3]}; "
                              f"beats full except last: {full_beats}")
        if check_cycles:
            row["cycles_match"] = got["cycles"] == model.cycles and got["rounds"] == len(model.rounds)
        rows.append(row)
    return rows


def verify_topk(n: int, k: int, parallelism: int, seed: int, *, max_n: int = 2048,
                width: int = 16, fifo_depth: int = 64, cache_dir: Path | None = None, replay: bool = True,
                sample_register: bool = False) -> dict:
    """One random request (seeded) on the RTL: correctness vs numpy and RTL cycles vs the model.
    ``sample_register``: the engine with its pivot sample registered (a SpAtten spec's
    ``units.topk.sample_register``; model and RTL both built with it).

    Returns ``correct``, ``rtl_cycles``, ``model_cycles``, ``cycles_match``, ``rounds`` and the
    request's parameters. Raises SpecError for out-of-range arguments.
    """
    bad = []
    if not 1 <= n <= max_n:
        bad.append(problem("n", f"must be in 1..max_n={max_n}", n))
    if k < 0 or k >= 1 << max_n.bit_length():
        bad.append(problem("k", f"must be in 0..{(1 << max_n.bit_length()) - 1}", k))
    if parallelism < 1 or parallelism & (parallelism - 1):
        bad.append(problem("parallelism", "must be a power of two >= 1", parallelism))
    if bad:
        raise SpecError(bad)
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    scores = tuple(int(v) for v in rng.integers(lo, hi + 1, n))
    req = TopKRequest(k, seed & 0xFFFF, scores, (True,) * n)
    rtl = run_topk_rtl([req], parallelism=parallelism, max_n=max_n, width=width,
                       fifo_depth=fifo_depth, seed=seed, cache_dir=cache_dir, replay=replay,
                       sample_register=sample_register)
    row = check_topk([req], rtl, parallelism=parallelism, fifo_depth=fifo_depth, replay=replay,
                     sample_register=sample_register)[0]
    return {
        "correct": bool(row["correct"] and rtl["passed"]),
        "rtl_cycles": row["rtl_cycles"],
        "model_cycles": row["model_cycles"],
        "cycles_match": row.get("cycles_match", False),
        "rounds": row.get("rtl_rounds"),
        "model_rounds": row["model_rounds"],
        "n": n, "k": k, "parallelism": parallelism, "seed": seed, "max_n": max_n,
        "fifo_depth": fifo_depth, "width": width, "kept": row.get("got_count"), "sample_register": sample_register,
        "detail": row.get("problem", ""),
    }
