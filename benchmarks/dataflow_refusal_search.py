"""Which dataflows that pass the spec checks does the generator still refuse, and with what? (docs/memory.md,
"Lanes that do not step one tensor dimension by 1"; docs/limits.md, the refusal audit.)

    python benchmarks/dataflow_refusal_search.py spatial          # every spatial form: ~5 min
    python benchmarks/dataflow_refusal_search.py map SEED COUNT   # random map forms
    python benchmarks/dataflow_refusal_search.py stt SEED COUNT   # random stt rows
    python benchmarks/dataflow_refusal_search.py mapform SEED COUNT   # maps in the documented forms (tiled,
                                                                      # skewed, FU-skewed, folded), random
    python benchmarks/dataflow_refusal_search.py fused SEED COUNT     # COUNT pairs and COUNT/4 triples of
                                                                      # dataflows that build alone, fused
    python benchmarks/dataflow_refusal_search.py negative             # every spatial form of two true
                                                                      # convolutions (I[p-r], I[p-r+2]), also
                                                                      # planned as a k=5, p=5, r=3 layer
    python benchmarks/dataflow_refusal_search.py unused               # every spatial form of operations with
                                                                      # an input that uses no reduction loop
                                                                      # (O[k,p] += W[k] * I[p,r], ...): ~5 min
    python benchmarks/dataflow_refusal_search.py schedule SEED COUNT [FUSED]   # COUNT ``schedule: map`` maps
                                                                      # (mapform's temporal skews, leads made
                                                                      # covering, 1 in 3 with a second skewed
                                                                      # loop) per operation and array shape, at
                                                                      # the array level and through the memory
                                                                      # system; FUSED (default COUNT/4) of those
                                                                      # the array builds fused with a spatial form
    python benchmarks/dataflow_refusal_search.py schedule-verify SEED COUNT [FUSED [TOP]]  # the specs of ``schedule
                                                                      # SEED COUNT [FUSED]``, each one that builds
                                                                      # run in Amaranth at every level that built
                                                                      # it (``ScheduleVerify``): exact, RTL cycles
                                                                      # == model, DRAM bytes == model; the wrong
                                                                      # ones to refusal_search_<mode>_wrong.json;
                                                                      # loop bounds 1 .. TOP (default 4);
                                                                      # options: --shapes=1x3,3x1 (array shapes
                                                                      # drawn instead of SHAPES), --ops=gemm,dw
                                                                      # (operations of OPS), --compressed
                                                                      # (each single spec's map also built by
                                                                      # default, at the array and memory level),
                                                                      # --blocks (a random multi-block command
                                                                      # of bounds 2 .. TOP+2 with partial sums
                                                                      # through DRAM granted, per memory build),
                                                                      # --dram-psums (as --blocks, each command
                                                                      # cutting a reduction loop outside an
                                                                      # output loop: partial sums through DRAM),
                                                                      # --tiny (every bound 1 .. 2, the blocks
                                                                      # runs' too), --plain (dataflows without
                                                                      # ``schedule: map``: spatial forms, maps,
                                                                      # stt rows; skewed stt counted, not run);
                                                                      # the table so far after every spec in
                                                                      # refusal_search_<mode>_table.txt

Each spec is loaded, compiled and given the smallest layer command (probe_command) through the memory system
(layer_program); the counts of outcomes are printed and every refused spec is written to
refusal_search_<mode>.json with its message (spec-check refusals too, their message prefixed "spec: "; an
exception that is not a SpecError as "CRASH ..."). A skewed stt map goes through its own memory system (the stt
layer build, ``build_stt`` and a layer planned on it) and counts as "ok (skewed stt)"; a fused design is compiled
as ``archgen build --fuse`` does (``compile_fused``) and every dataflow's view probed; its json entry holds the
dict of fused dataflows. The ``schedule`` mode counts each spec by the first level that refuses it (spec, array,
memory), its message stripped of numbers and names (``message_class``) so that one refusal groups across operations
and shapes, and writes every spec, built or not, with each level's outcome."""
import itertools, random, re, sys, collections, time
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
# true convolutions (an index with a negative coefficient): mode ``negative`` only, so the other modes' specs stay
OPS_NEG = {
  "convn": ("O[k,p] += W[k,r] * I[p-r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
  "convn2": ("O[k,p] += W[k,r] * I[p-r+2]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
}
# an input that uses no reduction loop (a broadcast W[k] or I[p]): mode ``unused`` only (docs/dataflows.md "Inputs
# that use no loop of the run")
OPS_UNUSED = {
  "bcw": ("O[k,p] += W[k] * I[p,r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
  "bci": ("O[k,p] += W[k,r] * I[p]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3}),
  "scale": ("C[i,j] += A[i,k] * s[j]", {"A": "int8", "s": "int8", "C": "int32"}, None),
  "bcw4": ("O[k,p,q] += W[k,c] * I[c,p,q,r]", {"W": "int8", "I": "int8", "O": "int32"},
           {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}),
  "bci4": ("O[k,p,q] += W[k,c,r] * I[p,q]", {"W": "int8", "I": "int8", "O": "int32"},
           {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}),
}
SHAPES = [[2, 2], [2, 3], [3], [2, 2, 2]]

def base(op, shape, df):
    expr, types, bounds = {**OPS, **OPS_NEG, **OPS_UNUSED}[op]
    d = {"version": 1, "kind": "array", "name": "s", "operation": expr, "types": types, "array": {"shape": shape},
         "dataflows": {"d": df}}
    if bounds: d["bounds"] = bounds
    return d

stats = collections.Counter()
two_skews = collections.Counter()          # mode schedule: the outcomes of the specs with two skewed loops
hits = []
def probe(op, shape, df, fuse=None, record=True, layer=None):
    """One spec through the spec checks, compile and the memory system's probe; its outcome counted (when
    ``record``) and returned: "ok", "spec" (a spec-check refusal), "refused" or "crash". ``fuse``: ``df`` is a
    dict of named dataflows fused into one design (the spec's ``fuse:`` list)."""
    data = base(op, shape, df) if fuse is None else dict(base(op, shape, None), dataflows=df, fuse=list(fuse))
    def note(kind, key, msg=None):
        if record:
            stats[key] += 1
            if msg is not None:
                hits.append((op, shape, df, msg))
        return kind
    try:
        d = load_spec_data(data)
    except SpecError as e:
        return note("spec", "spec refused", "spec: " + str(e)[:300])
    except Exception as e:
        return note("crash", "spec crash " + type(e).__name__ + " " + str(e)[:60],
                    "CRASH spec " + type(e).__name__ + " " + str(e)[:200])
    try:
        skewed = _probe_design(d, fuse, layer)
        return note("ok", "ok (skewed stt)" if skewed else "ok")
    except SpecError as e:
        m = str(e)
        key = "lanes" if "do not step one tensor" in m else m.split(":")[0][:60] + ":" + m.split(":")[1][:70] if ":" in m else m[:80]
        return note("refused", "refused " + key, m[:300])
    except Exception as e:
        return note("crash", "crash " + type(e).__name__ + " " + str(e)[:60],
                    "CRASH " + type(e).__name__ + " " + str(e)[:200])


def _probe_design(d, fuse, layer=None):
    """Compile ``d`` (its one dataflow, or the fused design of ``fuse``) and give every dataflow the smallest
    layer through its memory system (and, with ``layer``, the planner's layer of those loop bounds: a walk that
    leaves the tensor only shows on a real layer); True when some dataflow is a skewed stt map."""
    if fuse is None:
        views = [compile_array(d)]
    else:                                       # as archgen build --fuse: one fused array, a view per dataflow
        from archgen.dataflow.compile import compile_fused
        views = list(compile_fused(d, list(fuse)).views)
    for c in views:
        if c.dataflow.skewed:                   # a skewed stt map: its own memory system (the stt layer build)
            _probe_stt(c)
        else:
            cmd = probe_command(c.design, c.dataflow)  # as compiled (a placed or folded map: its tiled form; a
            # folded map beside others on its own logical array, the view's design)
            layer_program(c, cmd, spec_size=False)
            if layer is not None:
                from archgen.mappings.memory_tiling import plan_layer
                layer_program(c, plan_layer(c.design, layer, c.dataflow), spec_size=False)
    return any(c.dataflow.skewed for c in views)

def _probe_stt(c):
    """A skewed stt map through its memory system: the one layer build (box, period, layouts) and the plan of
    a small layer on it (every loop 3; refusals by field happen there, as in archgen sim/verify)."""
    from archgen.dataflow.stt_command import build_stt, plan_for_build
    build = build_stt(c)
    plan_for_build(build, {d: 3 for d in c.design.operation.dims}, "probe")


def dims_of(op):
    from archgen.arch.einsum import parse_operation
    return list(parse_operation({**OPS, **OPS_NEG, **OPS_UNUSED}[op][0]).dims)

def spatial_form(rng, dims, shape):
    sp = rng.sample(dims, len(shape))
    return {"spatial": {d: a for a, d in enumerate(sp)}, "order": rng.sample(dims, len(dims)),
            "control": [rng.choice((0, 1)) for _ in shape]}


def map_form(rng, dims, shape):
    """A map written in the forms docs/dataflows.md describes (not random coefficients): the tiled form
    ``d = P_a*t_d + s_a``; a skew of a temporal loop by FU coordinates (``k: t_k - s0 - s1``); a skew of the FU
    assignment (``j: 3*t_j + s1 - s0``); a folded loop over every axis (``i: 4*t_i + s0 + 2*s1`` on 2x2), its
    strides in a random order; mixed with the others' coefficients."""
    kind = rng.choice(["tiled", "tskew", "fuskew", "folded", "folded"])
    mp = {d: f"t_{d}" for d in dims}
    n = len(shape)
    if kind == "folded":
        d = rng.choice(dims)
        perm = rng.sample(range(n), n)
        stride, terms = 1, []
        for a in perm:
            terms.append(f"{stride}*s{a}")
            stride *= shape[a]
        mp[d] = f"{stride}*t_{d} + " + " + ".join(terms)
    else:
        sp = rng.sample(dims, n)
        for a, d in enumerate(sp):
            mp[d] = f"{shape[a]}*t_{d} + s{a}"
        if kind == "fuskew" and n > 1:
            a = rng.randrange(n)
            b = rng.choice([x for x in range(n) if x != a])
            mp[sp[a]] += rng.choice([" + ", " - "]) + f"s{b}"
        elif kind in ("tskew", "fuskew"):
            rest = [d for d in dims if d not in sp]
            if rest:
                d = rng.choice(rest)
                mp[d] += _fu_skew(rng, n)
    return {"map": mp, "order": rng.sample(dims, len(dims))}


def _fu_skew(rng, n):
    """The FU terms of a temporal loop's skew (`` + s0 - s1``): coefficients in {-1, 0, 1}, at least one not 0."""
    cs = [rng.choice([-1, 0, 1]) for _ in range(n)]
    cs[rng.randrange(n)] = rng.choice([-1, 1])
    return "".join(f" + s{a}" if c > 0 else f" - s{a}" if c < 0 else "" for a, c in enumerate(cs))


def stt_form(rng, dims, shape):
    rows = [[rng.choice([0, 0, 1, 1, -1]) for _ in dims] for _ in range(len(dims))]
    return {"stt": rows, "order": list(dims)}


def fused_search(rng, count):
    """Fused designs: for each operation and array shape, dataflows that build alone (random spatial forms,
    map forms of :func:`map_form` and, where the array has one axis fewer than the operation has loops, stt
    rows), then ``count`` random pairs and ``count // 4`` triples of them in the spec's ``fuse:`` list, each
    drawn from a random kind so map and stt forms take part."""
    for op in OPS:
        dims = dims_of(op)
        for shape in SHAPES[:3]:
            pool = {"spatial": [], "map": [], "stt": []}
            gens = {"spatial": spatial_form, "map": map_form}
            if len(dims) == len(shape) + 1:
                gens["stt"] = stt_form
            for kind, gen in gens.items():
                for _ in range(60):
                    df = gen(rng, dims, shape)
                    if len(pool[kind]) < 12 and probe(op, shape, df, record=False) == "ok":
                        pool[kind].append(df)
            kinds = [k for k in pool if pool[k]]
            for size, n in ((2, count), (3, count // 4)):
                for _ in range(n):
                    dfs = {}
                    for i in range(size):
                        kind = rng.choice(kinds)
                        dfs[f"{kind}{i}"] = rng.choice(pool[kind])
                    probe(op, shape, dfs, fuse=list(dfs))


def skewed_loops(df):
    """The temporal loops a map skews by FU coordinates (``k: t_k - s0``); a spatial loop's ``2*t_i + s0`` and a
    folded loop's ``4*t_i + 1*s0 + 2*s1`` start with their stride, a temporal loop with ``t_``."""
    return [d for d, e in df.get("map", {}).items() if e.startswith("t_") and re.search(r"[+-] s\d", e)]


def schedule_form(rng, dims, shape, tries=60):
    """A ``schedule: map`` dataflow: a map of :func:`map_form` that skews a temporal loop by FU coordinates (drawn
    until one does; None when none of ``tries`` does, as on an operation whose loops all sit on the array), one
    time in three a second temporal loop skewed too, each skew with a positive FU coefficient made covering by the
    lead constant docs/dataflows.md writes (``r: t_r + s0 - 2`` on an axis of 3: FUs further along start earlier;
    without it the spec check refuses the map, ``misses iterations``)."""
    for _ in range(tries if len(dims) > len(shape) else 0):
        df = map_form(rng, dims, shape)
        if skewed_loops(df):
            break
    else:
        return None
    rest = [d for d in dims if df["map"][d] == f"t_{d}"]
    if rest and rng.random() < 1 / 3:
        df["map"][rng.choice(rest)] += _fu_skew(rng, len(shape))
    for d in skewed_loops(df):
        lead = sum(shape[int(a)] - 1 for a in re.findall(r"\+ s(\d)", df["map"][d]))
        if lead:
            df["map"][d] += f" - {lead}"
    return dict(df, schedule="map")


def plain_form(rng, dims, shape):
    """A dataflow without ``schedule: map`` (option ``--plain`` of mode ``schedule-verify``): a spatial form, a map
    of :func:`map_form` (tiled, skewed, FU-skewed or folded; a temporal skew built compressed) or, where the array
    has one axis fewer than the operation has loops, stt rows of :func:`stt_form`, one kind drawn at random."""
    if len(dims) < len(shape):
        return None
    gens = [spatial_form, map_form] + ([stt_form] if len(dims) == len(shape) + 1 else [])
    return rng.choice(gens)(rng, dims, shape)


def message_class(msg, names):
    """A refusal message with its numbers and names stripped, so that refusals of one kind group across
    operations and shapes: the loops, tensors and dataflows of ``names`` become L / T / X, a run of them one,
    numbers N, FU coordinates sN, and a witness or a parenthesis after the first clause is cut."""
    loops, tensors, flows = names
    msg = re.sub(r"\bdataflows\.(\w+)", "dataflows.X", msg)
    msg = re.sub(r"\bt_([a-z])\b", "t_L", msg)
    msg = re.sub(r"\bs\d+\b", "sN", msg)
    msg = re.sub(r"-?\d+", "N", msg)
    for group, tag in ((loops, "L"), (tensors, "T"), (flows, "X")):
        if group:
            msg = re.sub(r"\b(" + "|".join(map(re.escape, group)) + r")\b", tag, msg)
    msg = re.sub(r"\b([LTNX])(, \1\b)+", r"\1", msg)
    msg = re.sub(r"\[[N, ]*\]", "[N]", msg)
    return msg.split(" (")[0][:160]


def _class_names(op, df):
    from archgen.arch.einsum import parse_operation
    operation = parse_operation({**OPS, **OPS_NEG, **OPS_UNUSED}[op][0])
    tensors = [operation.output.name] + [x.name for x in operation.inputs]
    return list(operation.dims), tensors, list(df) if "map" not in df else []


def probe_schedule(op, shape, df, fuse=None, built=None):
    """One ``schedule: map`` spec through the spec checks, the array (``compile_array``, or ``compile_fused`` for a
    ``fuse`` list) and, when the array builds, the memory system (:func:`_probe_design`, the other modes' probe).
    Counted by the first level that refuses ("spec <class>", "array <class>", "memory <class>") or "memory ok";
    every spec goes to the json with each level's outcome (``spec: ok | array: ok | memory: <message>``; a fused
    design's levels ``fused spec`` ...), so ``refusal_class_check.py`` can pick the specs the array builds (part
    ``"| array: ok"``, fused ones ``"fused array: ok"``). Returns the array's
    outcome: "ok", "refused" or "crash" (a spec-check refusal counts as refused); ``built`` (a list) gets the levels
    that built the spec ("spec", "array", "memory"; "memory (probe layer refused)" when only the probe's smallest
    layer was refused, a ``layers.layer`` refusal)."""
    data = base(op, shape, df) if fuse is None else dict(base(op, shape, None), dataflows=df, fuse=list(fuse))
    outcome, design = [], None
    for level in ("spec", "array", "memory"):
        try:
            if level == "spec":
                design = load_spec_data(data)
            elif level == "array":
                _build_array(design, fuse)
            else:
                _probe_design(design, fuse)
        except SpecError as e:              # its class: each problem's, several joined by " + "
            names = _class_names(op, df)
            outcome.append((level, " + ".join(sorted({message_class(str(p), names) for p in e.problems})), str(e)))
            break
        except Exception as e:              # not a SpecError: a crash, recorded with its type
            outcome.append((level, "CRASH " + type(e).__name__ + " " + str(e)[:100], "CRASH " + type(e).__name__
                            + " " + str(e)))
            break
        outcome.append((level, "ok", "ok"))
    fused = "fused " if fuse else ""
    stats[f"{fused}{outcome[-1][0]} {outcome[-1][1]}"] += 1
    if len(skewed_loops(df["m"] if fuse else df)) > 1:
        two_skews[f"{fused}{outcome[-1][0]} {outcome[-1][1]}"] += 1
    hits.append((op, shape, df, " | ".join(f"{fused}{lv}: {m[:300]}" for lv, _, m in outcome)))
    if built is not None:       # a refusal of the probe's smallest layer only is of that layer, not the dataflow
        built.extend(lv if cls == "ok" else lv + " (probe layer refused)" for lv, cls, _ in outcome
                     if cls == "ok" or cls.startswith("layers."))
    return "ok" if len(outcome) > 2 else "crash" if outcome[-1][1].startswith("CRASH") else "refused"


def _skewed_stt(design, fuse):
    """Whether the design (of a fused one, a dataflow of ``fuse``) has a skewed stt map: its layers run on the stt
    layer build (rtlgen/stt_layer.py), which the Amaranth runners of verif/schedule_verify.py do not drive."""
    return any(df.skewed for df in design.dataflows if fuse is None or df.name in fuse)


def _build_array(d, fuse):
    """The array level alone: the design compiled (a fused one as ``archgen build --fuse`` does)."""
    from archgen.dataflow.compile import compile_fused
    compile_array(d) if fuse is None else compile_fused(d, list(fuse))


def schedule_search(rng, count, fused, fused_rng, verify=None, ops=None, shapes=None, form=None):
    """``count`` :func:`schedule_form` specs per operation and array shape, probed by :func:`probe_schedule`; then
    ``fused`` of those the array builds, each fused with a spatial form that builds alone (a ws/os-like dataflow).
    The fused draws take ``fused_rng``, so the single specs of a seed stay the same whatever the code builds (a
    before/after comparison of two runs is spec by spec). ``verify``: called as ``verify(op, shape, df, fuse,
    built levels)`` after each probe (mode ``schedule-verify`` runs the built levels in Amaranth). ``ops``,
    ``shapes``: a part of :data:`OPS` and :data:`SHAPES` (default all: the seed's specs are those of all).
    ``form``: the generator of the specs (default :func:`schedule_form`; ``--plain``: :func:`plain_form`)."""
    def probe_one(op, shape, df, fuse=None):
        if verify is None:
            return probe_schedule(op, shape, df, fuse)
        levels = []
        outcome = probe_schedule(op, shape, df, fuse, built=levels)
        verify(op, shape, df, fuse, levels)
        return outcome

    for op in ops or OPS:
        dims = dims_of(op)
        for shape in shapes or SHAPES:
            built = []
            for _ in range(count):
                df = (form or schedule_form)(rng, dims, shape)
                if df is None:
                    break
                if probe_one(op, shape, df) == "ok":
                    built.append(df)
            if not built or not fused:
                continue
            spatial = [f for f in (spatial_form(fused_rng, dims, shape) for _ in range(20))
                       if probe(op, shape, f, record=False) == "ok"][:6]
            for df in fused_rng.sample(built, min(fused, len(built))) if spatial else []:
                pair = {"m": df, "o": fused_rng.choice(spatial)}
                probe_one(op, shape, pair, fuse=list(pair))


class ScheduleVerify:
    """Mode ``schedule-verify``: each spec the ``schedule`` mode's probe builds, run in Amaranth's simulator
    (verif/schedule_verify.py) at every level that built it: the array, and when the memory system built it a layer
    through it; a fused spec's every dataflow on the fused array and on the one fused layer core. A spec whose
    memory probe was refused for its smallest layer only (``layers.layer``) is run at the memory level too, as class
    "memory (probe layer refused)": the dataflow builds, at other layer sizes. Loop bounds small
    and random (each 1 .. min(spec bound, ``top``): often ragged on the array), drawn with operand seeds from a
    generator of their own so the specs stay those of ``schedule SEED COUNT``. Counted per class: runs, exact,
    RTL == model, DRAM bytes equal, wrong (any of them not), refused at these bounds (a SpecError, not wrong),
    crashed, seconds."""

    def __init__(self, seed, top=4, blocks=False, compressed=False, dram_psums=False, tiny=False):
        self.rng = random.Random(f"verify {seed}")          # top: the largest loop bound drawn
        self.wide = random.Random(f"verify wide {seed}")    # the options' draws: the default runs' stay as they were
        self.top, self.compressed = 2 if tiny else top, compressed
        self.blocks = blocks or dram_psums
        # --dram-psums: the blocks runs' commands send partial sums through DRAM (their own class); --tiny: every
        # bound 1 .. 2, the blocks runs' too (2 .. TOP + 2 otherwise)
        self.blocks_class = "memory (blocks, dram psums)" if dram_psums else "memory (blocks)"
        self.blocks_bounds = (1, 2) if tiny else (2, self.top + 2)
        self.counts = collections.defaultdict(collections.Counter)
        self.skipped = collections.Counter()                # built levels not run, by class
        self.partial, self.t0 = None, time.time()           # a file the table so far is written to after each spec
        self.seconds = collections.Counter()
        self.wrong = []

    def bounds(self, op):
        given = {**OPS, **OPS_NEG, **OPS_UNUSED}[op][2] or {}
        return {d: self.rng.randint(1, min(self.top, given.get(d, self.top))) for d in dims_of(op)}

    def __call__(self, op, shape, df, fuse, levels):
        if "array" not in levels:
            return
        data = base(op, shape, df) if fuse is None else dict(base(op, shape, None), dataflows=df, fuse=list(fuse))
        design = load_spec_data(data)
        bounds, seed = self.bounds(op), self.rng.randrange(1000)
        if _skewed_stt(design, fuse):       # its own memory system (and alone its own array check) on Verilator
            skip = [lv for lv in levels if lv.startswith("memory") or (fuse is None and lv == "array")]
            for lv in skip:
                self.skipped[("fused " if fuse else "") + lv + " (skewed stt)"] += 1
            levels = [lv for lv in levels if lv not in skip]
        for level in [lv for lv in ("array", "memory", "memory (probe layer refused)") if lv in levels]:
            self.run(("fused " if fuse else "") + level, design, bounds, seed, (op, shape, df))
        if fuse is None:
            self.widened(op, shape, df, levels, bounds, seed)
        if self.partial:            # the table so far, so a sweep stopped early still reports what it ran
            with open(self.partial, "w") as f:
                f.write("\n".join([f"after {sum(c['runs'] for c in self.counts.values())} runs, "
                                    f"{time.time() - self.t0:.0f} s"] + self.table()) + "\n")

    def widened(self, op, shape, df, levels, bounds, seed):
        """The options' runs of a single spec: ``--compressed``, the same map built by default (without ``schedule:
        map``: the compressed schedule) at the array and memory level on the same bounds; ``--blocks``, of each build
        the memory level runs, a layer of bounds 2 .. TOP + 2 in several blocks of a random command
        (``run_memory_blocks``: random tiles, split inner loops and order) on the spec with
        ``memory.partial_sums_through_dram`` granted, so orders that bring output blocks back run too."""
        forms = [("", df)] + ([("compressed ", {k: v for k, v in df.items() if k != "schedule"})]
                              if self.compressed else [])
        for tag, form in forms:
            if tag:
                for level in ("array", "memory"):
                    self.run(tag + level, base(op, shape, form), bounds, seed, (op, shape, form))
            if self.blocks and (tag or "memory" in levels):
                big = {d: self.wide.randint(*self.blocks_bounds) for d in dims_of(op)}
                data = dict(base(op, shape, form), memory={"partial_sums_through_dram": True})
                self.run(tag + self.blocks_class, data, big, self.wide.randrange(1000), (op, shape, form))

    def run(self, cls, design, bounds, seed, spec):
        from archgen.verif.schedule_verify import LEVELS
        count, t0 = self.counts[cls], time.time()
        try:
            design = load_spec_data(design) if isinstance(design, dict) else design   # a widened run's spec data
            runs = LEVELS[cls.replace(" (probe layer refused)", "").replace("compressed ", "")][0](design, bounds, seed)
        except SpecError:
            count["refused at these bounds"] += 1
            self.seconds[cls] += time.time() - t0
            return
        except Exception as e:
            runs = None
            self.wrong.append((cls, *spec, bounds, seed, f"CRASH {type(e).__name__} {str(e)[:300]}"))
            count["crash"] += 1
        self.seconds[cls] += time.time() - t0
        if runs is None:
            return
        count["runs"] += 1
        count["exact"] += all(r.exact for r in runs)
        count["rtl == model"] += all(r.rtl_cycles == r.model_cycles for r in runs)
        count["dram equal"] += all(r.dram_equal is not False for r in runs)
        count["several blocks"] += any((r.blocks or 0) > 1 for r in runs)
        count["psums via DRAM"] += any(r.spill for r in runs)
        if not all(r.ok for r in runs):
            count["wrong"] += 1
            self.wrong.append((cls, *spec, bounds, seed, [vars(r) for r in runs if not r.ok]))
            print("WRONG", cls, spec, bounds, seed, flush=True)

    def table(self) -> list[str]:
        """The per-class table's lines, and a line per blocks class (partial sums through DRAM) and per class of
        built levels not run."""
        cols = ("runs", "exact", "rtl == model", "dram equal", "wrong", "refused at these bounds", "crash",
                "several blocks", "psums via DRAM")
        lines = [f"{'class':36s}" + "".join(f"{c:>{max(len(c), 6) + 2}s}" for c in cols) + f"{'seconds':>10s}"]
        lines += [f"{cls:36s}" + "".join(f"{count[c]:{max(len(c), 6) + 2}d}" for c in cols)
                  + f"{self.seconds[cls]:10.0f}" for cls, count in self.counts.items()]
        lines += [f"{cls}: {count['psums via DRAM']} of {count['runs']} runs had partial sums through DRAM "
                  f"({100 * count['psums via DRAM'] / count['runs']:.0f} %), {count['several blocks']} several blocks"
                  for cls, count in self.counts.items() if "blocks" in cls and count["runs"]]
        lines += [f"{cls}: {n} built, not run (a skewed stt map's layer, and alone its array, are verified on "
                  "Verilator only)" for cls, n in self.skipped.items()]
        return lines + [f"wrong or crashed {len(self.wrong)}"]

    def report(self, mode):
        """The per-class table printed, and the wrong cases (spec, bounds, operand seed, the runs that were not
        right) written to refusal_search_<mode>_wrong.json."""
        import json
        print("\n".join(self.table()))
        json.dump(self.wrong, open(f"refusal_search_{mode}_wrong.json", "w"), default=str)


def main():
    flags = [a for a in sys.argv[1:] if a.startswith("--")]       # mode schedule-verify's options
    sys.argv[1:] = [a for a in sys.argv[1:] if not a.startswith("--")]
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
        for op in OPS:                          # two-loop operations on a 1-D array: 2x2 rows (after the above,
            dims = dims_of(op)                  # so the three-loop specs stay those of earlier runs)
            if len(dims) != 2: continue
            for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 300):
                rows = [[rng.choice([0, 0, 1, 1, -1, 2]) for _ in dims] for _ in range(2)]
                probe(op, [3], {"stt": rows, "order": dims})
    elif mode == "mapform":
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
        for op in OPS:
            for shape in SHAPES[:3]:
                for _ in range(n):
                    probe(op, shape, map_form(rng, dims_of(op), shape))
    elif mode == "negative":                    # every spatial form of OPS_NEG on 2x2, 2x3 and [3]
        for op in OPS_NEG:
            dims = dims_of(op)
            for shape in SHAPES[:3]:
                for sp in itertools.permutations(dims, len(shape)):
                    for order in itertools.permutations(dims):
                        for ctl in itertools.product((0, 1), repeat=len(shape)):
                            probe(op, shape, {"spatial": {d: a for a, d in enumerate(sp)}, "order": list(order),
                                              "control": list(ctl)}, layer={"k": 5, "p": 5, "r": 3})
    elif mode == "unused":                      # every spatial form of OPS_UNUSED: three-loop operations on every
        for op in OPS_UNUSED:                   # shape, all orders; five-loop ones on 2-D and 1-D, 12 orders per
            dims = dims_of(op)                  # placement at random
            for shape in SHAPES if len(dims) < 4 else SHAPES[:3]:
                for sp in itertools.permutations(dims, len(shape)):
                    orders = list(itertools.permutations(dims))
                    if len(orders) > 12: orders = rng.sample(orders, 12)
                    for order in orders:
                        for ctl in itertools.product((0, 1), repeat=len(shape)):
                            probe(op, shape, {"spatial": {d: a for a, d in enumerate(sp)}, "order": list(order),
                                              "control": list(ctl)})
    elif mode == "fused":
        fused_search(rng, int(sys.argv[3]) if len(sys.argv) > 3 else 40)
    elif mode == "schedule":
        count = int(sys.argv[3]) if len(sys.argv) > 3 else 40
        schedule_search(rng, count, int(sys.argv[4]) if len(sys.argv) > 4 else count // 4,
                        random.Random(f"fused {sys.argv[2] if len(sys.argv) > 2 else 0}"))
    elif mode == "schedule-verify":
        count = int(sys.argv[3]) if len(sys.argv) > 3 else 40
        shapes = next(([[int(n) for n in s.split("x")] for s in f.split("=", 1)[1].split(",")]
                       for f in flags if f.startswith("--shapes=")), None)
        verify = ScheduleVerify(int(sys.argv[2]) if len(sys.argv) > 2 else 0, *map(int, sys.argv[5:6]),
                                blocks="--blocks" in flags, compressed="--compressed" in flags,
                                dram_psums="--dram-psums" in flags, tiny="--tiny" in flags)
        verify.partial = f"refusal_search_{mode}_table.txt"
        schedule_search(rng, count, int(sys.argv[4]) if len(sys.argv) > 4 else count // 4,
                        random.Random(f"fused {sys.argv[2] if len(sys.argv) > 2 else 0}"), verify,
                        next((f.split("=", 1)[1].split(",") for f in flags if f.startswith("--ops=")), None), shapes,
                        plain_form if "--plain" in flags else None)
        verify.report(mode)
    print(mode, f"{time.time()-t0:.0f}s")
    for k, v in sorted(stats.items(), key=lambda kv: -kv[1]):
        print(f"{v:7d} {k}")
    if two_skews:
        print("of which with two skewed loops:")
        for k, v in sorted(two_skews.items(), key=lambda kv: -kv[1]):
            print(f"{v:7d} {k}")
    import json
    json.dump(hits, open(f"refusal_search_{mode}.json", "w"))    # every refused spec, with its message
    print("hits", len(hits))


if __name__ == "__main__":
    main()
