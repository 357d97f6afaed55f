"""What the de-skewed partial-sum wait costs on planned layers (docs/limits.md, "The de-skewed read-back wait on
planned layers"). A ``schedule: map`` output streamed over a padded loop is written back span beats after its psum
walk read it, so a later visit of an output block waits for its partial sum (dataflow/control.py ``psum_raw_hw``);
the planner's estimate (mappings/memory_tiling.py ``_estimate``) does not count that wait. For random layer sizes of
five such designs (those of tests/dataflow/test_memctl_stream_outputs.py), each layer planned as ``archgen sim`` plans
it, this prints the model's cycles with the wait and with it removed (``psum_read_skew`` forced to 0: how much the
wait costs), and for every layer where it costs cycles the cycles of the model-judged search's command
(``--mapper search``, objective latency: whether another command avoids it).

    python benchmarks/deskew_wait_cost.py [SEED [COUNT]]     # seed 0, 40 layers: ~3 min
"""
import random, sys

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import buffer_fit, buffer_rooms
from archgen.mappings.mapper import search_layer
from archgen.mappings.memory_tiling import plan_layer
from archgen.sim import layer_model
from archgen.sim.energy import EnergyModel

GEMM, OUTER = "C[i,j] += A[i,k] * B[k,j]", "C[i,j] += A[i] * B[j]"
CONV = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV_ORDER = ["n", "k", "p", "c", "r", "s", "q"]
# name: (operation, array shape, map, order, inner, reference bounds: the draws are 1 .. 3 x max(bound, 4))
DESIGNS = {
    "gemm-lag": (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}, ["i", "k", "j"], ["j"],
                 {"i": 4, "j": 4, "k": 3}),
    "gemm-lead": (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j + s0 - 2", "k": "t_k"}, ["i", "k", "j"], ["j"],
                  {"i": 5, "j": 3, "k": 2}),
    "outer-4": (OUTER, (4,), {"i": "4*t_i + s0", "j": "t_j - s0"}, ["i", "j"], ["j"], {"i": 6, "j": 5}),
    "conv-3x2": (CONV, (3, 2), {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q - s0 - s1", "c": "t_c",
                                "r": "t_r", "s": "t_s"}, CONV_ORDER, ["q"],
                 {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}),
    "conv-reduced": (CONV, (2, 4), {"n": "t_n", "k": "t_k", "p": "4*t_p + s1", "q": "t_q - s1", "c": "2*t_c + s0",
                                    "r": "t_r", "s": "t_s"}, CONV_ORDER, ["q"],
                     {"n": 1, "k": 3, "p": 2, "q": 2, "c": 3, "r": 1, "s": 2}),
}


def design(name):
    op, shape, mp, order, inner, _ = DESIGNS[name]
    names = {x for x in op.replace("[", " ").replace("+=", " ").replace("*", " ").split() if x[:1].isupper()}
    out = op.split("[")[0]
    return load_spec_data({"version": 1, "name": name.replace("-", "_"), "operation": op, "array": {"shape": list(shape)},
                           "types": {n: "int32" if n == out else "int8" for n in names},
                           "dataflows": {"m": {"map": mp, "order": order, "inner": inner, "schedule": "map"}}})


def cycles(compiled, cmd, wait=True):
    real = layer_model.psum_read_skew
    if not wait:
        layer_model.psum_read_skew = lambda c, ext: 0
    try:
        return layer_model.simulate_layer(compiled, cmd).cycles
    finally:
        layer_model.psum_read_skew = real


def main(seed=0, count=40):
    rng, energy = random.Random(seed), EnergyModel.load()
    binds, worst = [], 0.0
    print(f"{'design':13} {'bounds':52} {'with wait':>10} {'without':>10} {'cost':>8} {'search':>10}")
    for _ in range(count):
        name = rng.choice(sorted(DESIGNS))
        d = design(name)
        c = compile_array(d)
        bounds = {k: rng.randint(1, 3 * max(v, 4)) for k, v in DESIGNS[name][5].items()}
        fits, rooms = buffer_fit(c), buffer_rooms(c)
        cmd = plan_layer(d, bounds, c.dataflow, fits=fits, rooms=rooms)
        w, wo = cycles(c, cmd), cycles(c, cmd, wait=False)
        searched = ""
        if w != wo:
            choice = search_layer(d, bounds, c.dataflow, lambda cm: (cycles(c, cm), 0.0), energy, objective="latency",
                                  fits=fits, rooms=rooms)
            searched = f"{choice.cycles:,}"
            binds.append((name, bounds, w, wo, choice.cycles))
        worst = max(worst, (w - wo) / wo)
        print(f"{name:13} {str(bounds):52} {w:>10,} {wo:>10,} {(w - wo) / wo * 100:>7.2f}% {searched:>10}", flush=True)
    print(f"{count} layers planned: the wait costs cycles on {len(binds)} (worst +{worst * 100:.1f} %); the searched "
          f"command is faster on {sum(b[4] < b[2] for b in binds)} of them, by at most "
          f"{max((1 - b[4] / b[2] for b in binds), default=0) * 100:.1f} % (cycles)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
