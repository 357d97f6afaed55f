"""Top-k engine: cycles and elements per cycle vs parallelism, from the exact cycle model (checked on RTL).

Usage: python benchmarks/topk_bench.py [--n 1024] [--k 512 32] [--trials 20] [--rtl] [--study] [--levers]
       [--short]

For n scores and each k, prints the mean model cycles (= RTL cycles, checked by the Verilator regression)
over ``trials`` random inputs (uniform int16, seeded) for P = 1..32 with the paper's FIFO depth (64 rows):
"select", the engine as the SpAtten core builds it (``TopK(..., replay=False)``: done when the k-th value
and the tie count are known), with elements per cycle (n / cycles) and as a fraction of P (the limit:
every element read once, P per cycle; issue 15's goal is 0.5); "+replay", the stand-alone engine that
also streams the kept elements in index order; "select" with FIFOs deep enough for the whole input
(max(64, n / P) rows); a sort-based baseline: a bitonic sorting network with P compare-exchange units,
log2(n)(log2(n)+1)/2 stages of n/2 compare-exchanges, i.e. ceil(n / 2P) cycles per stage (a lower bound);
and the "ingest bound", B + min(w + 1, B) + [B <= w] + 5 cycles with the default rank pipeline (B + min(w, B) + 5 without) (command, ingest, re-read of the sample beats, drain, decide: no
round after the ingest; one more for B = 1).
``--rtl`` also runs a few points on Verilator (one build per P) and prints RTL cycles next to
model cycles.

``--study`` prints a design study, model only (no RTL exists for it): the cycles a radix-histogram
selection would take in this engine's frame (same ingest, replay and per-round costs), next to this
engine's quick-select, on four input distributions. See ``radix_study_cycles``.

``--levers`` prints what-if figures, model only: this engine's phases (``cycle_parts``) with the replay
reading two rows per cycle, with no per-round overhead, with both, and with both and no round after the
ingest (see ``levers``).

``--short`` prints short rows at P = 16 (n = 128..512, keep n/2 and 0.7 n; the core's local-V on BERT
seq 384 keeps about 270 keys), on exponential rows (the core's data) and uniform int16 rows.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from archgen.sim import topk_model
from archgen.sim.topk_model import simulate_topk

PAPER_GFLOPS = {1: 168, 2: 299, 4: 485, 8: 653, 16: 776, 32: 771}


def bitonic_cycles(n: int, p: int) -> int:
    stages = int(math.log2(n)) * (int(math.log2(n)) + 1) // 2
    return stages * math.ceil(n / (2 * p))


def engine_bound_cycles(n: int, k: int, p: int) -> int:
    """Cycles of this engine when the ingest partition's pivot is the k-th value (no further round)."""
    b = -(-n // p)
    return (topk_model.CMD_CYCLES + b + topk_model.INGEST_DRAIN + topk_model.DECIDE_CYCLES
            + b + topk_model.REPLAY_LATENCY + topk_model.REPLAY_TAIL)


def ingest_bound_cycles(n: int, p: int, fifo_depth: int = 64, sample_lanes: int | None = None,
                        rank_pipeline: bool = True, sample_register: bool = False) -> int:
    """Cycles of the engine without its replay when the ingest partition finds the k-th value: command,
    ingest, the re-read of the sample beats, drain and decide (B + min(w + 1, B) + [B <= w] + 5 with the rank pipeline, B + min(w, B) + 5 without)."""
    return topk_model.ingest_cycles(n, p, fifo_depth, sample_lanes, rank_pipeline, sample_register)


def mask_bound_cycles(n: int, p: int) -> int:
    """Lower bound for any engine with this engine's interface as the SpAtten core uses it: the core takes
    the keep bits from the ``mask`` port, one row of P per cycle, and needs every row. A row's keep bits
    can depend on the last input beat (cycle B after the command cycle), so the B rows follow it: 2B + 1
    cycles, which is below 0.5 P elements per cycle for every n."""
    return 2 * -(-n // p) + 1


def port_bound_cycles(n: int, k: int, p: int) -> int:
    """Lower bound for any engine with a P-lane input and a P-lane in-order output: B + ceil(k / P)."""
    return -(-n // p) + -(-min(k, n) // p)


def radix_study_cycles(scores, k: int, p: int, fifo_depth: int, width: int = 16, bucket_bits: int = 4) -> int:
    """Design study (model only, no RTL): cycles of a radix-histogram selection in this engine's frame.

    Every scan (the ingest included) counts the working set W = {lo < x < hi} into 2^bucket_bits
    buckets of equal power-of-two width over (lo, hi) and writes W to a FIFO; the decide step picks the
    bucket holding the target rank, which becomes the new (lo, hi), until a bucket is one value wide
    (the k-th value). A later round reads the previous W from its FIFO when it fitted (D * P elements),
    else the buffer. Costs are this engine's (docs/topk.md "Cycle contract"): command, ingest + drain +
    decide, each further round S + scan latency + decide + 1 (the bucket prefix scan), replay.
    """
    x = [int(v) for v in scores]
    n = len(x)
    b = -(-n // p)
    cycles = topk_model.CMD_CYCLES + b + topk_model.INGEST_DRAIN + topk_model.DECIDE_CYCLES
    replay = b + topk_model.REPLAY_LATENCY + topk_model.REPLAY_TAIL
    if k == 0:
        return cycles
    if k >= n:
        return cycles + replay
    lo, hi = -(1 << (width - 1)) - 1, 1 << (width - 1)        # exclusive bounds
    t, prev, prev_fit, first = k, x, n <= fifo_depth * p, True
    while hi - lo - 1 > 1:
        w = [v for v in prev if lo < v < hi]
        if not first:
            cycles += (-(-len(prev) // p) if prev_fit else b) + topk_model.SCAN_LATENCY + topk_model.DECIDE_CYCLES + 1
        first = False
        shift = max(0, (hi - lo - 2).bit_length() - bucket_bits)
        counts = [0] * ((((hi - lo - 2) >> shift) + 1))
        for v in w:
            counts[(v - lo - 1) >> shift] += 1
        above, j = 0, len(counts) - 1
        while above + counts[j] < t:
            above, j = above + counts[j], j - 1
        t -= above
        lo, hi = lo + (j << shift), min(hi, lo + 1 + ((j + 1) << shift))
        prev, prev_fit = w, len(w) <= fifo_depth * p
    if sorted(x, reverse=True)[k - 1] != lo + 1:   # the study must select the true k-th value
        raise AssertionError(f"radix study found {lo + 1}, not the k-th value")
    return cycles + replay


def _exp_rows(rng, n: int, concentration: float, exp_frac: int = 16):
    """A row of exponentials as the SpAtten core's softmax hands them to its top-k: exp(s - max) in
    UQ1.exp_frac, logits concentration * (0.7 z + sqrt(0.51) e) (workloads.trace.synthetic_trace's model;
    z is drawn per row here)."""
    one = 1 << exp_frac
    logit = concentration * (0.7 * rng.standard_normal(n) + np.sqrt(0.51) * rng.standard_normal(n))
    return np.minimum(np.floor(np.exp(logit - logit.max()) * one), one).astype(np.int64)


def study(n: int, ks: list[int], trials: int) -> None:
    rng = np.random.default_rng(2021)
    dists = {"uniform int16": (16, lambda: rng.integers(-(1 << 15), 1 << 15, n)),
             "ties (-3..3)": (16, lambda: rng.integers(-3, 4, n)),
             "narrow (0..255)": (16, lambda: rng.integers(0, 256, n)),
             "normal (sd 300)": (16, lambda: np.clip(rng.normal(0, 300, n), -(1 << 15), (1 << 15) - 1).astype(int)),
             "exp rows, c = 1": (18, lambda: _exp_rows(rng, n, 1.0)),
             "exp rows, c = 4": (18, lambda: _exp_rows(rng, n, 4.0))}
    print(f"design study (model only, no RTL for the radix variant), n = {n}, D = 64, mean over {trials} inputs; "
          "elements per cycle / P")
    print(f"{'input':>16} {'k':>5} {'P':>3} {'quick-select /P':>15} {'radix-16 /P':>11} {'engine bound /P':>15}")
    for name, (width, gen) in dists.items():
        xs = [gen() for _ in range(trials)]
        for k in ks:
            for p in (1, 16, 32):
                q = np.mean([simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=64).cycles for s, x in enumerate(xs)])
                r = np.mean([radix_study_cycles(x, k, p, 64, width=width) for x in xs])
                print(f"{name:>16} {k:>5} {p:>3} {n / q / p:>15.2f} {n / r / p:>11.2f} "
                      f"{n / ingest_bound_cycles(n, p) / p:>15.2f}", flush=True)


def cycle_parts(run, n: int, p: int, depth: int = 64) -> dict[str, int]:
    """A model run's cycles split by phase (docs/topk.md "Cycle contract"): ``fixed`` (command, ingest
    with its partition, drain, first decide), ``scan`` (rows read by the rounds after the ingest),
    ``overhead`` (pivot read, scan latency and decide of each such round) and ``replay``. They add up to
    ``run.cycles`` (checked)."""
    b = -(-n // p)
    fixed = topk_model.ingest_cycles(n, p, depth)
    later = [r for r in run.rounds if r.source != "ingest"]
    scan = sum(r.rows for r in later)
    overhead = sum(r.cycles - r.rows for r in later)
    replay = b + topk_model.REPLAY_LATENCY + topk_model.REPLAY_TAIL if run.mode != "none" else 0
    parts = {"fixed": fixed, "scan": scan, "overhead": overhead, "replay": replay}
    if sum(parts.values()) != run.cycles:
        raise AssertionError(f"phases {parts} do not add up to the model's {run.cycles} cycles")
    return parts


def levers(n: int, ks: list[int], trials: int) -> None:
    """What-if figures (model only, no RTL): this engine's measured phases with one lever changed at a
    time. "2-row replay": the replay reads two buffer rows per cycle (ceil(B/2) rows instead of B);
    "no round overhead": each round after the ingest costs only the rows it reads (0 instead of pivot
    read + scan latency + decide); "selection at ingest end": no round after the ingest partition."""
    rng = np.random.default_rng(2021)
    inputs = [rng.integers(-(1 << 15), 1 << 15, n) for _ in range(trials)]
    print(f"levers (model only), n = {n}, D = 64, mean over {trials} random int16 inputs; "
          "elements per cycle / P (the goal of issue 15: >= 0.50)")
    print(f"{'k':>5} {'P':>3} {'now':>6} {'scan rows':>9} {'overhead':>8} {'2-row replay':>12} "
          f"{'no round overhead':>17} {'both':>6} {'both + selection at ingest end':>30}")
    for k in ks:
        for p in (1, 2, 4, 8, 16, 32):
            b = -(-n // p)
            half = b - -(-b // 2)                      # replay rows saved by reading two per cycle
            runs = [simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=64) for s, x in enumerate(inputs)]
            parts = [cycle_parts(r, n, p) for r in runs]
            now = np.mean([r.cycles for r in runs])
            two = now - half
            no_ovh = now - np.mean([q["overhead"] for q in parts])
            both = no_ovh - half
            ideal = np.mean([q["fixed"] + q["replay"] - half for q in parts])
            print(f"{k:>5} {p:>3} {n / now / p:>6.2f} {np.mean([q['scan'] for q in parts]):>9.1f} "
                  f"{np.mean([q['overhead'] for q in parts]):>8.1f} {n / two / p:>12.2f} {n / no_ovh / p:>17.2f} "
                  f"{n / both / p:>6.2f} {n / ideal / p:>30.2f}", flush=True)


def core_stages(rows: int = 10) -> None:
    """Per query on spatten.yaml: the top-k stage (local-V keep n/2, ``simulate_topk`` on synthetic
    exponential rows) against the front stage's exponential sweep, both from the core's cycle model."""
    from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec
    from archgen.sim.spatten_model import query_cycles

    spec = load_spatten_spec(builtin_spec_path("spatten"))
    rng = np.random.default_rng(1)
    p, depth = spec.topk.parallelism, spec.topk.fifo_depth
    print(f"\nspatten.yaml: L = {spec.lanes} keys per cycle, top-k P = {p}: the top-k stage keeps up at "
          f"{spec.lanes / p:.2f} P; mean over {rows} exponential rows, keep n/2 (cycles per query)")
    print(f"{'n':>5} {'c':>4} {'top-k stage':>11} {'exp sweep':>9} {'QxK':>5} {'PxV':>5}")
    for n in (384, 512, 1024):
        for c in (1.0, 4.0):
            xs = [_exp_rows(rng, n, c) for _ in range(rows)]
            tk = np.mean([simulate_topk(x, n // 2, parallelism=p, fifo_depth=depth, seed=i, replay=False).cycles
                          for i, x in enumerate(xs)])
            q = query_cycles(spec, n, topk_cycles=int(round(tk)))
            print(f"{n:>5} {c:>4} {q.topk:>11} {q.exp:>9} {q.qk:>5} {q.pv:>5}", flush=True)


def short_rows(trials: int, p: int = 16) -> None:
    """Rows as the SpAtten core's local-V hands them to its top-k (n = 128..512, exponential rows): mean
    model cycles and elements per cycle for keep n/2 and keep 0.7 n (about 270 of 384 keys), next to the
    engine bound (no round after the ingest partition) and to uniform int16 rows."""
    rng = np.random.default_rng(384)
    print(f"short rows, P = {p}, D = 64, mean over {trials} rows (model cycles = RTL cycles); "
          "elem/cycle = n / cycles")
    print(f"{'n':>4} {'k':>4} {'input':>15} {'cycles':>7} {'elem/cycle':>10} {'/P':>5} {'ingest bound /P':>15}")
    inputs = {"exp rows, c = 1": lambda n: _exp_rows(rng, n, 1.0), "exp rows, c = 4": lambda n: _exp_rows(rng, n, 4.0),
              "uniform int16": lambda n: rng.integers(-(1 << 15), 1 << 15, n)}
    for n in (128, 256, 384, 512):
        for k in (n // 2, round(0.7 * n)):
            for name, gen in inputs.items():
                c = float(np.mean([simulate_topk(gen(n), k, parallelism=p, seed=s, fifo_depth=64, replay=False).cycles
                                   for s in range(trials)]))
                print(f"{n:>4} {k:>4} {name:>15} {c:>7.1f} {n / c:>10.2f} {n / c / p:>5.2f} "
                      f"{n / ingest_bound_cycles(n, p) / p:>15.2f}", flush=True)


def ordered_rows(n: int, ks: list[int], trials: int) -> None:
    """Rows whose order follows their values: one uniform int16 row (numpy seed 1) ascending and
    descending, against the mean of ``trials`` uniform rows, engine without replay, D = 64."""
    rng = np.random.default_rng(1)
    row = rng.integers(-(1 << 15), 1 << 15, n)
    rows = {"ascending": np.sort(row), "descending": np.sort(row)[::-1]}
    uniform = [rng.integers(-(1 << 15), 1 << 15, n) for _ in range(trials)]
    print(f"ordered rows, n = {n}, D = 64, no replay (model cycles = RTL cycles)")
    print(f"{'P':>3} {'k':>5} {'ascending':>10} {'descending':>11} {f'uniform ({trials})':>14} {'worst / uniform':>16}")
    for p in (1, 2, 4, 8, 16, 32):
        for k in ks:
            got = [simulate_topk(x, k, parallelism=p, replay=False).cycles for x in rows.values()]
            mean = float(np.mean([simulate_topk(x, k, parallelism=p, replay=False).cycles for x in uniform]))
            print(f"{p:>3} {k:>5} {got[0]:>10} {got[1]:>11} {mean:>14.1f} {max(got) / mean:>15.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, nargs="+", default=None, help="k values (default: n/2 and n/32)")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rank-pipeline", action=argparse.BooleanOptionalAction, default=True,
                    help="the main table for the engine with registered sample compare bits (the default since "
                         "the eighth session's H88; --no-rank-pipeline: compare and count in one cycle)")
    ap.add_argument("--sample-register", action=argparse.BooleanOptionalAction, default=False,
                    help="the engine's sample registered before its compare, its one-hot pick registered and its "
                         "captures one stage behind the packers (three more cycles per scanned round, more at the "
                         "ingest: sim/topk_model.py) in the main table")
    ap.add_argument("--sample-lanes", type=int, default=None,
                    help="the engine's pivot sample width S in the main table (default: 16, 32 for P >= 8)")
    ap.add_argument("--rtl", action="store_true", help="also run a few points on Verilator")
    ap.add_argument("--study", action="store_true", help="print the radix-histogram design study instead")
    ap.add_argument("--levers", action="store_true",
                    help="print what-if figures (2-row replay, no round overhead) from the model's phases instead")
    ap.add_argument("--ordered", action="store_true",
                    help="print ascending and descending rows against uniform rows instead")
    ap.add_argument("--short", action="store_true",
                    help="print short rows (n = 128..512, the core's local-V sizes) at P = 16 instead")
    args = ap.parse_args()
    if args.short:
        short_rows(args.trials)
        return
    n = args.n
    ks = args.k or [n // 2, max(1, n // 32)]
    if args.ordered:
        ordered_rows(n, ks, args.trials)
        return
    if args.study:
        study(n, ks, min(args.trials, 10))
        return
    if args.levers:
        levers(n, ks, args.trials)
        core_stages()
        return
    rng = np.random.default_rng(2021)
    inputs = [rng.integers(-(1 << 15), 1 << 15, n) for _ in range(args.trials)]

    for k in ks:
        print(f"top-k, n = {n}, k = {k}, mean over {args.trials} random int16 inputs (model cycles = RTL cycles)")
        print(f"{'P':>3} {'select cyc':>10} {'elem/cycle':>10} {'/P':>5} {'+replay cyc':>11} {'/P':>5} "
              f"{'select D>=n/P':>13} {'/P':>5} {'bitonic cyc':>11} {'speed-up':>8} {'ingest bound /P':>15}")
        for p in (1, 2, 4, 8, 16, 32):
            sel = float(np.mean([simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=64, replay=False,
                                               sample_lanes=args.sample_lanes, rank_pipeline=args.rank_pipeline,
                                               sample_register=args.sample_register).cycles
                                 for s, x in enumerate(inputs)]))
            rep = float(np.mean([simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=64,
                                               sample_lanes=args.sample_lanes, rank_pipeline=args.rank_pipeline,
                                               sample_register=args.sample_register).cycles
                                 for s, x in enumerate(inputs)]))
            full = float(np.mean([simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=max(64, -(-n // p)), replay=False,
                                                sample_lanes=args.sample_lanes, rank_pipeline=args.rank_pipeline,
                                               sample_register=args.sample_register).cycles
                                  for s, x in enumerate(inputs)]))
            bit = bitonic_cycles(n, p)
            print(f"{p:>3} {sel:>10.1f} {n / sel:>10.2f} {n / sel / p:>5.2f} {rep:>11.1f} {n / rep / p:>5.2f} "
                  f"{full:>13.1f} {n / full / p:>5.2f} {bit:>11d} {bit / sel:>7.2f}x "
                  f"{n / ingest_bound_cycles(n, p, 64, args.sample_lanes, args.rank_pipeline, args.sample_register) / p:>15.2f}")
        print("cycles: clock cycles from command to done, D = 64 FIFO rows unless noted (D>=n/P: max(64, n/P) rows, "
              "FIFOs that hold the whole input, as the paper's 16 lanes x 64 rows hold n = 1024); select: the engine as the "
              "SpAtten core builds it (TopK(..., replay=False): done when the k-th value and the tie count are "
              "known, the core keeps x > kth and the first ties in its own sweep); +replay: the stand-alone engine "
              "that also streams the kept elements in index order (B more rows); elem/cycle = n / cycles; "
              "/P = elem/cycle / P (goal >= 0.5); speed-up = bitonic cycles / select cycles; ingest bound: command "
              "+ ingest + re-read of the sample beats + drain + decide, B + min(w + 1, B) + [B <= w] + 5 cycles "
              "(rank pipeline; B + min(w, B) + 5 without it; no round after the ingest)\n")

    if args.rtl:
        from archgen.verif.topk_check import verify_topk

        print("RTL check (Verilator, the engine without its replay), n = %d, D = 64:" % n)
        print(f"{'P':>3} {'k':>5} {'seed':>5} {'RTL cycles':>11} {'model cycles':>13} {'match':>6} {'correct':>8} {'wall s':>7}")
        for p in (4, 16):
            for k in ks:
                for seed in (1, 2):
                    t0 = time.time()
                    res = verify_topk(n, k, p, seed, max_n=max(2048, n), replay=False)
                    print(f"{p:>3} {k:>5} {seed:>5} {res['rtl_cycles']:>11} {res['model_cycles']:>13} "
                          f"{str(res['cycles_match']):>6} {str(res['correct']):>8} {time.time() - t0:>7.1f}")


if __name__ == "__main__":
    main()
