"""The issue-14 audit's Amaranth-level sweep (docs/limits.md, "Acceptance audit of issue 14"): the issue-14
built-ins on array shapes the tests do not use, including degenerate ones (1x1, 2x1, 1x1x5), random and
one-element layers, every dataflow of each fused design; exact outputs and RTL cycles == model cycles.
Run from the repository root: ``python examples/issue14/amaranth_sweep.py`` (about a minute)."""
import random
import time

from archgen.arch.spec import load_spec
from archgen.verif.array_amaranth import verify_array_amaranth
from archgen.verif.fused_amaranth import verify_fused_amaranth


def _record(results, tag, run):
    try:
        for r in run():
            ok = r.ok and r.rtl_cycles == r.model_cycles
            results.append(ok)
            if not ok:
                print("FAIL", tag, r.dataflow, r.bounds, r.rtl_cycles, r.model_cycles, r.detail)
    except Exception as err:                  # a crash is a finding too: count it and say what it was
        results.append(False)
        print("EXC", tag, type(err).__name__, str(err)[:400])


def _gemms(design_of, shape, bounds, seed, results):
    d = design_of("gemm_fused.yaml", shape)
    _record(results, ("gemm_fused", shape, bounds), lambda: verify_fused_amaranth(d, ["os", "ws", "is"], bounds, seed=seed))
    d = design_of("gemm_fused_hex.yaml", shape)
    _record(results, ("gemm_fused_hex", shape, bounds), lambda: verify_fused_amaranth(d, ["os", "hex"], bounds, seed=seed))


def main():
    rng = random.Random(164)
    results = []
    t0 = time.time()

    def design_of(spec, shape):
        return load_spec(spec, [f"array.shape={shape}"])

    conv_loops = {"n": 2, "k": 7, "p": 5, "q": 4, "c": 3, "r": 7, "s": 3}
    for shape in ["1x5", "5x1", "5x2", "2x6", "6x1", "1x7", "3x4"]:        # random layers, two seeds
        for seed in (1, 2):
            _gemms(design_of, shape, {d: rng.randint(1, 9) for d in "ijk"}, seed, results)
            bc = {d: rng.randint(1, top) for d, top in conv_loops.items()}
            d = design_of("conv_rs.yaml", shape)
            _record(results, ("conv_rs", shape, bc), lambda: [verify_array_amaranth(d, bc, seed=seed)])
    for shape in ["1x1", "1x2", "2x1", "7x1", "1x8"]:                       # degenerate arrays and layers
        for b in [{"i": 1, "j": 1, "k": 1}, {"i": 1, "j": 5, "k": 1}, {"i": 9, "j": 1, "k": 2}, {"i": 2, "j": 3, "k": 1}]:
            _gemms(design_of, shape, b, 5, results)
        for bc in [dict.fromkeys(conv_loops, 1), {"n": 1, "k": 1, "p": 1, "q": 2, "c": 1, "r": 5, "s": 1},
                   {"n": 3, "k": 2, "p": 6, "q": 1, "c": 1, "r": 2, "s": 1}]:
            d = design_of("conv_rs.yaml", shape)
            _record(results, ("conv_rs", shape, bc), lambda: [verify_array_amaranth(d, bc, seed=6)])
    for shape in ["1x5x3", "5x1x2", "3x2x4", "2x3x5", "1x1x4"]:
        for seed in (1, 2):
            b = {"i": rng.randint(1, 9), "j": rng.randint(1, 9), "k": rng.randint(1, 13)}
            d = design_of("gemm_os3d.yaml", shape)
            _record(results, ("gemm_os3d", shape, b), lambda: [verify_array_amaranth(d, b, seed=seed)])
    for shape in ["1x1x2", "1x1x5", "2x2x1", "1x3x1"]:
        for b in [{"i": 1, "j": 1, "k": 1}, {"i": 3, "j": 2, "k": 1}, {"i": 1, "j": 1, "k": 11}]:
            d = design_of("gemm_os3d.yaml", shape)
            _record(results, ("gemm_os3d", shape, b), lambda: [verify_array_amaranth(d, b, seed=7)])
    print(f"{sum(results)} / {len(results)} dataflow runs exact with RTL cycles == model cycles, "
          f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
