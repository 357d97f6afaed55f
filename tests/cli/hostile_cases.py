"""The hostile-input corpus: malformed specs, options, files and stores, one case per class of problem.

Shared by tests/cli/test_hostile_input.py (in-process, every case must be refused with exit 2 and a
short message, writing nothing) and benchmarks/hostile_corpus.py (each case in a fresh process, with
a time-out, printing a table of outcomes).
"""
from __future__ import annotations

GEMM = """version: 1
kind: array
name: g
clock_mhz: 500
operation: "C[i,j] += A[i,k] * B[k,j]"
types: {A: int8, B: int8, C: int32}
array:
  shape: [4, 4]
dataflows:
  os:
    spatial: {i: 0, j: 1}
    order: [i, j, k]
    control: [1, 1]
"""


def _spec(text: str) -> dict:
    return {"s.yaml": text}


def _bomb(depth: int = 12, under: str = "junk") -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 9) + "]")
    body = "\n".join("  " + ln for ln in lines)
    return GEMM + f"{under}:\n{body}\n"


def _flow_bomb(depth: int = 9) -> str:
    """A flow-style alias bomb as one value: nine copies of the previous level at each level."""
    text = '&b0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    for i in range(1, depth):
        text = f"&b{i} [{text}, " + ", ".join([f"*b{i-1}"] * 8) + "]"
    return text


def _store_bytes() -> bytes:
    """A valid archgen results store holding one (made-up) row, as bytes."""
    import tempfile
    from pathlib import Path

    from archgen.sim.store import ResultStore, model_version
    rec = {"key": "k" * 24, "spec": "s.yaml", "overrides": [], "workload": "gemm:4,4,4", "seq": None, "dataflow": "os",
           "fus": 16, "clock_mhz": 500, "cycles": 10, "time_ns": 20.0, "dram_bytes": 48, "energy_pj": 1.0,
           "edp_pj_ns": 20.0, "area_mm2": 0.01, "model": model_version()}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "results.sqlite"
        with ResultStore.open(path) as store:
            store.put(rec)
        return path.read_bytes()


def _foreign_sqlite() -> bytes:
    """Another program's SQLite database."""
    import sqlite3
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "other.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE hello (x INTEGER)")
        conn.execute("INSERT INTO hello VALUES (1)")
        conn.commit()
        conn.close()
        return path.read_bytes()


def cases():
    """(name, argv, files) triples. argv[0] is the subcommand; files maps names to text or bytes."""
    g = GEMM
    c = []
    add = lambda name, argv, files=None: c.append((name, argv, files or {}))
    # encodings and structure
    add("latin1", ["build", "s.yaml", "-o", "o"], {"s.yaml": g.replace("gemm", "g").encode() + "# caf\xe9\n".encode("latin-1")})
    add("utf16", ["build", "s.yaml", "-o", "o"], {"s.yaml": g.encode("utf-16")})
    add("random bytes", ["build", "s.yaml", "-o", "o"], {"s.yaml": bytes(range(256)) * 4})
    add("nested brackets", ["build", "s.yaml", "-o", "o"], _spec(g + "junk: " + "[" * 5000 + "]" * 5000 + "\n"))
    add("nested maps", ["build", "s.yaml", "-o", "o"], _spec(g + "junk: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"))
    add("int key top", ["build", "s.yaml", "-o", "o"], _spec(g + "7: x\n"))
    add("int dataflow name", ["build", "s.yaml", "-o", "o"], _spec(g.replace("  os:", "  12:")))
    add("date value", ["build", "s.yaml", "-o", "o"], _spec(g.replace("clock_mhz: 500", "clock_mhz: 2024-01-01")))
    add("date key", ["build", "s.yaml", "-o", "o"], _spec(g + "2024-01-01: x\n"))
    add("date description", ["build", "s.yaml", "--set", "clock_mhz=400", "-o", "o"], _spec(g + "description: 2024-01-01\nbogus: 1\n"))
    add("bomb junk + set", ["build", "s.yaml", "--set", "clock_mhz=400", "-o", "o"], _spec(_bomb()))
    add("bomb in dataflow", ["build", "s.yaml", "-o", "o"], _spec(g.replace("    spatial: {i: 0, j: 1}", "    spatial: " + _flow_bomb())))
    add("duplicate key", ["build", "s.yaml", "-o", "o"], _spec(g + "clock_mhz: 700\n"))
    add("recursive alias", ["build", "s.yaml", "-o", "o"], _spec(g + "junk: &r [*r]\n"))
    add("binary tag", ["build", "s.yaml", "-o", "o"], _spec(g + "description: !!binary aGVsbG8=\n"))
    add("set tag", ["build", "s.yaml", "-o", "o"], _spec(g + "description: !!set {a, b}\n"))
    add("huge file", ["build", "s.yaml", "-o", "o"], _spec(g + "description: '" + "x" * 20_000_000 + "'\n"))
    add("empty file", ["build", "s.yaml", "-o", "o"], {"s.yaml": b""})
    add("list top", ["build", "s.yaml", "-o", "o"], _spec("- 1\n- 2\n"))
    # numbers
    add("nan clock", ["build", "s.yaml", "-o", "o"], _spec(g.replace("clock_mhz: 500", "clock_mhz: .nan")))
    add("inf clock", ["build", "s.yaml", "-o", "o"], _spec(g.replace("clock_mhz: 500", "clock_mhz: .inf")))
    add("nan dram", ["sim", "s.yaml", "--workload", "gemm:4,4,4"], _spec(g + "dram: {bandwidth_gbps: .nan}\n"))
    add("nan via set", ["sim", "s.yaml", "--workload", "gemm:4,4,4", "--set", "dram.bandwidth_gbps=.nan"], _spec(g))
    add("nan pq threshold", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "64", "--set", "progressive_quantization.threshold=.nan"])
    add("tiny clock", ["build", "s.yaml", "-o", "o"], _spec(g.replace("clock_mhz: 500", "clock_mhz: 1e-300")))
    add("1.0e12 clock", ["build", "s.yaml", "-o", "o"], _spec(g.replace("clock_mhz: 500", "clock_mhz: 1.0e12")))
    add("stt 1e20", ["build", "s.yaml", "-o", "o"], _spec(g.replace("    spatial: {i: 0, j: 1}\n    order: [i, j, k]\n    control: [1, 1]", "    stt: [[1,0,0],[0,1,0],[1,1,100000000000000000000]]")))
    add("map 1e20", ["build", "s.yaml", "-o", "o"], _spec(g.replace("    spatial: {i: 0, j: 1}\n    order: [i, j, k]\n    control: [1, 1]", "    map: {i: '4*t_i + s0', j: '4*t_j + s1', k: '100000000000000000000*t_k'}")))
    add("huge shape", ["build", "s.yaml", "-o", "o", "--set", "array.shape=1024x1024"], _spec(g))
    add("huge shape sim", ["sim", "s.yaml", "--workload", "gemm:4,4,4", "--set", "array.shape=1024x1024"], _spec(g))
    add("bool shape", ["build", "s.yaml", "-o", "o", "--set", "array.shape=[true,4]"], _spec(g))
    add("set alias", ["build", "s.yaml", "-o", "o", "--set", "description=&a x"], _spec(g))
    add("set deep", ["build", "s.yaml", "-o", "o", "--set", "x=" + "[" * 3000], _spec(g))
    # sizes
    add("verify huge gemm", ["verify", "s.yaml", "--gemm", "100000,100000,100000"], _spec(g))
    add("sim huge seq", ["sim", "s.yaml", "--workload", "bert-base", "--seq", "10000000"], _spec(g))
    add("sim huge gemm", ["sim", "s.yaml", "--workload", "gemm:100000,100000,100000"], _spec(g))
    add("topk huge n", ["verify", "spatten_small.yaml", "--unit", "topk", "--n", "10000000", "--k", "5"])
    add("sim huge batch", ["sim", "s.yaml", "--workload", "bert-base", "--batch", "100000000"], _spec(g))
    add("spatten huge seq", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "100000"])
    # options
    add("seed -1", ["verify", "s.yaml", "--gemm", "4,4,4", "--seed", "-1"], _spec(g))
    add("seed huge", ["verify", "s.yaml", "--gemm", "4,4,4", "--seed", "99999999999999999999999"], _spec(g))
    add("queries 0", ["verify", "spatten_small.yaml", "--unit", "core", "--n", "20", "--k", "5", "--queries", "0"])
    add("pq n 0", ["verify", "spatten_small.yaml", "--unit", "pq", "--n", "0"])
    add("softmax n -1", ["verify", "spatten_small.yaml", "--unit", "softmax", "--n", "-1"])
    add("core n too big", ["verify", "spatten_small.yaml", "--unit", "core", "--n", "100000", "--k", "5"])
    add("topk k > n", ["verify", "spatten_small.yaml", "--unit", "topk", "--n", "10", "--k", "50"])
    add("gemm empty", ["verify", "s.yaml", "--gemm", ""], _spec(g))
    add("gemm 4 sizes", ["sim", "s.yaml", "--workload", "gemm:1,2,3,4"], _spec(g))
    add("gemm 2 sizes", ["sim", "s.yaml", "--workload", "gemm:1,2"], _spec(g))
    add("gemm junk", ["sim", "s.yaml", "--workload", "gemm:a,b,c"], _spec(g))
    add("unit on gemm", ["verify", "s.yaml", "--unit", "topk", "--n", "5", "--k", "2"], _spec(g))
    add("gemm on spatten", ["verify", "spatten_small.yaml", "--gemm", "4,4,4"])
    add("workers 0", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--workers", "0", "--out", "sw"], _spec(g))
    add("workers -1", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--workers", "-1", "--out", "sw"], _spec(g))
    add("one operand einsum", ["build", "s.yaml", "-o", "o"], _spec(g.replace("A[i,k] * B[k,j]", "A[i,j]").replace("order: [i, j, k]", "order: [i, j]").replace("B: int8, ", "")))
    add("bounds junk", ["verify", "s.yaml", "--bounds", "i=4,zz"], _spec(g))
    add("bounds unknown", ["verify", "s.yaml", "--bounds", "q=4"], _spec(g))
    add("dataflow unknown", ["build", "s.yaml", "--dataflow", "nope", "-o", "o"], _spec(g))
    add("seq on cnn", ["sim", "s.yaml", "--workload", "resnet50", "--seq", "5"], _spec(g))
    add("seq 0", ["sim", "s.yaml", "--workload", "bert-base", "--seq", "0"], _spec(g))
    add("batch 0", ["sim", "s.yaml", "--workload", "bert-base", "--batch", "0"], _spec(g))
    add("kv-len -5", ["sim", "s.yaml", "--workload", "gpt2", "--phase", "decode", "--kv-len", "-5"], _spec(g))
    add("vary empty", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--vary", "clock_mhz=", "--out", "sw"], _spec(g))
    add("vary bad value", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--vary", "clock_mhz=abc", "--out", "sw"], _spec(g))
    add("target unknown", ["build", "s.yaml", "--target", "nope", "-o", "o"], _spec(g))
    # files
    add("trace empty", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "64", "--trace", "t.npz"], {"t.npz": b""})
    add("trace truncated", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "64", "--trace", "t.npz"], {"t.npz": b"PK\x03\x04" + b"\0" * 40})
    add("trace text", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "64", "--trace", "t.npz"], {"t.npz": "hello\n"})
    add("trace dir", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "64", "--trace", "."], {})
    add("trace missing", ["sim", "spatten_small.yaml", "--workload", "bert-base", "--seq", "64", "--trace", "nope.npz"], {})
    add("sim out file", ["sim", "s.yaml", "--workload", "gemm:4,4,4", "--out", "f"], {**_spec(g), "f": "x"})
    add("sim out proc", ["sim", "s.yaml", "--workload", "gemm:4,4,4", "--out", "/proc/archgen-x"], _spec(g))
    add("sim out devnull", ["sim", "s.yaml", "--workload", "gemm:4,4,4", "--out", "/dev/null"], _spec(g))
    add("build out file", ["build", "s.yaml", "-o", "f"], {**_spec(g), "f": "x"})
    add("build out devnull", ["build", "s.yaml", "-o", "/dev/null"], _spec(g))
    add("sweep out file", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--out", "f"], {**_spec(g), "f": "x"})
    add("sweep fails", ["sweep", "s.yaml", "--workload", "nosuchmodel", "--out", "sw"], _spec(g))
    add("spec dir", ["build", ".", "-o", "o"], {})
    add("spec missing", ["build", "nope.yaml", "-o", "o"], {})
    # stores (results.sqlite): a real store cut short, bytes that are no database, another program's
    # SQLite database, a directory in its place
    real = _store_bytes()
    add("store truncated", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--out", "sw"], {**_spec(g), "sw/results.sqlite": real[: len(real) // 2 + 100]})
    add("store garbled", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--out", "sw"], {**_spec(g), "sw/results.sqlite": b"\x00\x01garbage\n"})
    add("store foreign", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--out", "sw"], {**_spec(g), "sw/results.sqlite": _foreign_sqlite()})
    add("store is dir", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--out", "sw"], {**_spec(g), "sw/results.sqlite/x": "1"})
    return c


def more_cases():
    """Cases added after the first corpus run (kept apart so the issue's classes stay recognisable)."""
    g = GEMM
    c = []
    add = lambda name, argv, files=None: c.append((name, argv, files or {}))
    add("bounds missing loop", ["verify", "s.yaml", "--bounds", "i=4,j=4"], _spec(g))
    add("bounds twice", ["verify", "s.yaml", "--bounds", "i=4,j=4,k=2,i=5"], _spec(g))
    add("gemm and bounds", ["verify", "s.yaml", "--gemm", "4,4,4", "--bounds", "i=4,j=4,k=4"], _spec(g))
    # order [i, k, j] (no temporal loop inside a tile) is built as one-step tiles since 2026-12-05; a spatial loop
    # named as a tile-inner loop is still malformed
    add("inner spatial loop", ["check", "s.yaml"], _spec(g.replace("order: [i, j, k]", "order: [i, j, k]\n    inner: [j, k]")))
    add("unknown option", ["build", "s.yaml", "--frobnicate"], _spec(g))
    add("seed not int", ["verify", "s.yaml", "--seed", "abc"], _spec(g))
    add("out under file", ["build", "s.yaml", "-o", "f/sub"], {**_spec(g), "f": "x"})
    add("delay table hostile", ["build", "s.yaml", "--target", "t.yaml", "-o", "o"], {**_spec(g), "t.yaml": b"\xff\xfe"})
    add("unit missing on spatten", ["verify", "spatten_small.yaml"])
    add("queries on topk", ["verify", "spatten_small.yaml", "--unit", "topk", "--n", "8", "--k", "2", "--queries", "3"])
    add("dataflow on spatten", ["build", "spatten_small.yaml", "--dataflow", "os", "-o", "o"])
    add("spatten nan bandwidth", ["check", "spatten_small.yaml", "--set", "dram.bandwidth_gb_s=.nan"])
    add("spatten huge multipliers", ["check", "spatten_small.yaml", "--set", "units.qk.multipliers=100000000000"])
    add("spatten bad yaml", ["check", "s.yaml"], _spec("version: 1\nkind: spatten\nname: [\n"))
    add("sweep vary nan", ["sweep", "s.yaml", "--workload", "gemm:4,4,4", "--vary", "clock_mhz=.nan", "--out", "sw"], _spec(g))
    add("workload gemm with seq", ["sim", "s.yaml", "--workload", "gemm:4,4,4", "--seq", "8"], _spec(g))
    return c
