"""Which dataflows that pass the spec checks does the generator still refuse, and with what? (docs/memory.md,
"Lanes that do not step one tensor dimension by 1"; docs/limits.md, the refusal audit.)

    python benchmarks/dataflow_refusal_search.py spatial          # every spatial form: ~5 min
    python benchmarks/dataflow_refusal_search.py map SEED COUNT   # random map forms
    python benchmarks/dataflow_refusal_search.py stt SEED COUNT   # random stt rows

Each spec is loaded, compiled and given the smallest layer command (probe_command) through the memory system
(layer_program); the counts of outcomes are printed and every refused spec is written to
refusal_search_<mode>.json with its message (spec-check refusals too, their message prefixed "spec: ")."""
import itertools, random, sys, collections, time
from archgen.arch.spec import load_spec_data
from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import layer_program, probe_command

OPS = {
  "gemm": ("C[i,j] += A[i,k] * B[k,j]", {"A": "int8", "B": "int8", "C": "int32"}, None),
  "mv": ("y[i] += A[i,k] * x[k]", {"A": "int8", "x": "int8", "y": "int32"}, None),
  "conv1": ("O[k,p] += W[k,r] * I[p+r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
  "conv1s2": ("O[k,p] += W[k,r] * I[p*2+r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
  "dil": ("O[k,p] += W[k,r] * I[p+r*2]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
  "dw": ("O[c,p] += I[c,p+r] * W[c,r]", {"W": "int8", "I": "int8", "O": "int32"}, {"c": 3, "p": 5, "r": 3}),
  "conv2": ("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}),
  "conv2s": ("O[k,p] += I[c,p*2+r] * W[k,c,r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 4, "c": 2, "r": 3}),
  "shift": ("C[i,j] += A[i,j+k] * B[k]", {"A": "int8", "B": "int8", "C": "int32"}, {"i": 3, "j": 4, "k": 3}),
  "sum2": ("C[i] += A[i,k] * B[i+k]", {"A": "int8", "B": "int8", "C": "int32"}, {"i": 3, "k": 4}),
}
SHAPES = [[2, 2], [2, 3], [3], [2, 2, 2]]

def base(op, shape, df):
    expr, types, bounds = OPS[op]
    d = {"version": 1, "kind": "array", "name": "s", "operation": expr, "types": types, "array": {"shape": shape},
         "dataflows": {"d": df}}
    if bounds: d["bounds"] = bounds
    return d

stats = collections.Counter()
hits = []
def probe(op, shape, df):
    data = base(op, shape, df)
    try:
        d = load_spec_data(data)
    except SpecError as e:
        stats["spec refused"] += 1
        hits.append((op, shape, df, "spec: " + str(e)[:300])); return
    except Exception as e:
        stats["spec crash " + type(e).__name__] += 1; return
    try:
        c = compile_array(d)
        cmd = probe_command(d, c.dataflow)      # the dataflow as compiled (a placed or folded map: its tiled form)
        layer_program(c, cmd, spec_size=False)
        stats["ok"] += 1
    except SpecError as e:
        m = str(e)
        key = "lanes" if "do not step one tensor" in m else m.split(":")[0][:60] + ":" + m.split(":")[1][:70] if ":" in m else m[:80]
        stats["refused " + key] += 1
        hits.append((op, shape, df, m[:300]))
    except Exception as e:
        stats["crash " + type(e).__name__ + " " + str(e)[:60]] += 1
        hits.append((op, shape, df, "CRASH " + type(e).__name__ + " " + str(e)[:200]))

def dims_of(op):
    from archgen.arch.einsum import parse_operation
    return list(parse_operation(OPS[op][0]).dims)

def main():
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    mode = sys.argv[1] if len(sys.argv) > 1 else "spatial"
    t0 = time.time()
    if mode == "spatial":
        for op in OPS:
            dims = dims_of(op)
            for shape in SHAPES:
                for sp in itertools.permutations(dims, len(shape)):
                    orders = list(itertools.permutations(dims))
                    if len(orders) > 24: orders = rng.sample(orders, 24)
                    for order in orders:
                        for ctl in itertools.product((0, 1), repeat=len(shape)):
                            probe(op, shape, {"spatial": {d: a for a, d in enumerate(sp)}, "order": list(order), "control": list(ctl)})
    elif mode == "map":
        # map forms: each loop d = C*t_d + sigma.s + m with small coefficients, random sample
        for op in OPS:
            dims = dims_of(op)
            for shape in SHAPES[:3]:
                for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 300):
                    mp = {}
                    for d in dims:
                        C = rng.choice([1, 1, 1, 2, 3, 4, 6])
                        sig = [rng.choice([0, 0, 0, 1, -1, 2]) for _ in shape]
                        m = rng.choice([0, 0, -1])
                        e = f"{C}*t_{d}" + "".join(f" + {v}*s{a}" if v > 0 else f" - {-v}*s{a}" if v < 0 else "" for a, v in enumerate(sig)) + (f" - {-m}" if m else "")
                        mp[d] = e
                    order = list(dims); rng.shuffle(order)
                    probe(op, shape, {"map": mp, "order": order})
    elif mode == "stt":
        for op in OPS:
            dims = dims_of(op)
            if len(dims) != 3: continue
            for shape in SHAPES[:3]:
                for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 300):
                    rows = [[rng.choice([0, 0, 1, 1, -1]) for _ in dims] for _ in range(3)]
                    probe(op, shape if len(shape) == 2 else [shape[0], 1], {"stt": rows, "order": dims})
    print(mode, f"{time.time()-t0:.0f}s")
    for k, v in sorted(stats.items(), key=lambda kv: -kv[1]):
        print(f"{v:7d} {k}")
    import json
    json.dump(hits, open(f"refusal_search_{mode}.json", "w"))    # every refused spec, with its message
    print("hits", len(hits))


if __name__ == "__main__":
    main()
