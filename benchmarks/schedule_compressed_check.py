"""Do the ``schedule: map`` specs that a run of the refusal search's ``schedule`` mode refused build with the default
schedule (``compressed``)? docs/limits.md, the audit's ``schedule`` subsection: the refusals name that fix.

    python benchmarks/schedule_compressed_check.py refusal_search_schedule.json [N]

Every single-dataflow spec the json records as refused (at any level; N of them at random, seed 0, when given) is
run without its ``schedule`` field through the other modes' probe (the spec checks, the array, the memory system's
smallest layer); the outcomes are counted by the level that refused the map's own schedule.
"""
import collections
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from dataflow_refusal_search import probe  # noqa: E402


def main(argv):
    refused = [h for h in json.loads(Path(argv[0]).read_text()) if not h[3].endswith(": ok") and "fused" not in h[3]]
    sample = refused if len(argv) < 2 else random.Random(0).sample(refused, int(argv[1]))
    counts = collections.Counter()
    for op, shape, df, msg in sample:
        compressed = {k: v for k, v in df.items() if k != "schedule"}
        counts[(msg.split(" | ")[-1].split(":")[0], probe(op, shape, compressed, record=False))] += 1
    print(f"{len(sample)} of {len(refused)} refused specs run with schedule: compressed")
    for (level, outcome), n in sorted(counts.items()):
        print(f"{n:7d} refused at the {level} under schedule: map -> {outcome} under compressed")
    return 0 if all(outcome == "ok" for _, outcome in counts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
