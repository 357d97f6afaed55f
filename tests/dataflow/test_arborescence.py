"""dataflow/arborescence.py against networkx's own Edmonds: same edges, same attributes, ties included."""
from __future__ import annotations

import random

import networkx as nx
import pytest

import archgen.dataflow.interconnect as interconnect
from archgen.arch.spec import load_spec
from archgen.dataflow import arborescence
from archgen.dataflow.arborescence import minimum_spanning_arborescence
from archgen.dataflow.compile import clear_compile_cache, compile_array

# the built-ins whose interconnect asks for an arborescence (the hex, 3-D and SpAtten specs do not)
SPECS = ["conv_rs", "conv_ws", "gemm_fused", "gemm_fused_hex", "gemm_is", "gemm_os", "gemm_os_bcast", "gemm_ws"]


def _networkx(g):
    return nx.minimum_spanning_arborescence(g.copy(), attr="weight", preserve_attrs=True)


def _same_tree(got, want):
    assert list(got.nodes) == list(want.nodes)
    assert sorted(map(repr, got.edges(data=True))) == sorted(map(repr, want.edges(data=True)))


def _rows_graph(rng: random.Random):
    """Like the interconnect's: a memory source feeding every FU, moves between neighbours of a grid, rows
    often unlinked (several parts), forward and backward steps whose costs tie or form cycles."""
    rows, cols = rng.randint(1, 6), rng.randint(1, 7)
    g = nx.DiGraph()
    fus = [(r, c) for r in range(rows) for c in range(cols)]
    g.add_nodes_from(fus)
    g.add_node("mem")
    costs = [1, 1.5, 2, 0.1, 0.3]
    cross = rng.random() < 0.3                              # some rows linked: fewer, larger parts
    for r, c in fus:
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            t = (r + dr, c + dc)
            if t in g and (dr == 0 or cross and rng.random() < 0.3) and rng.random() < 0.85:
                g.add_edge((r, c), t, weight=rng.choice(costs), tag=(r, c, dr, dc))
    for s in (fus if rng.random() < 0.5 else rng.sample(fus, len(fus))):
        if rng.random() < 0.9 or not g.pred[s]:
            g.add_edge("mem", s, weight=rng.choice([1000, 1000, 999.7, 0.5]), tag="mem")
    return g


def _random_parts_graph(rng: random.Random):
    """A single source and several random dense parts: many cycles and ties, some nodes unreachable."""
    g = nx.DiGraph()
    parts = [[(p, i) for i in range(rng.randint(1, 6))] for p in range(rng.randint(1, 5))]
    nodes = [v for part in parts for v in part]
    rng.shuffle(nodes)
    g.add_nodes_from(nodes[:len(nodes) // 2] + ["src"] + nodes[len(nodes) // 2:])
    for part in parts:
        for _ in range(rng.randint(0, 3 * len(part))):
            u, v = rng.choice(part), rng.choice(part)
            if u != v:
                g.add_edge(u, v, weight=float(rng.randint(1, 4)))
        for v in part:
            if rng.random() < 0.95:
                g.add_edge("src", v, weight=rng.choice([3.0, 4.0, 50.0]))
    return g


@pytest.mark.parametrize("make", [_rows_graph, _random_parts_graph])
def test_equals_networkx_on_random_graphs(make):
    rng = random.Random(166)
    by_parts = 0
    for _ in range(250):
        g = make(rng)
        try:
            want = _networkx(g)
        except nx.NetworkXException:
            with pytest.raises(nx.NetworkXException):
                minimum_spanning_arborescence(g, attr="weight")
            continue
        got = minimum_spanning_arborescence(g, attr="weight")
        _same_tree(got, want)
        by_parts += arborescence._unique_greedy(g, "weight") is None and \
            arborescence._by_parts(g, "weight") is not None
    assert by_parts > 30                                     # the parts path itself was checked


def _candidate_graphs(spec, overrides, monkeypatch):
    seen = []

    def record(g, attr="weight"):
        seen.append(g.copy())
        return minimum_spanning_arborescence(g, attr=attr)

    monkeypatch.setattr(interconnect, "minimum_spanning_arborescence", record)
    clear_compile_cache()                                   # a cached compile would not ask again
    compile_array(load_spec(spec, overrides))
    assert seen
    return seen


@pytest.mark.parametrize("spec", SPECS)
def test_equals_networkx_on_builtin_candidate_graphs(spec, monkeypatch):
    """Edge for edge and in the same order: the interconnect walks the tree in its successors' order."""
    for overrides in ([], ["array.shape=[3,5]"], ["array.shape=[8,8]", "clock_mhz=1000.0"]):
        for g in _candidate_graphs(spec, overrides, monkeypatch):
            got, want = minimum_spanning_arborescence(g, attr="weight"), _networkx(g)
            assert repr(list(got.edges(data=True))) == repr(list(want.edges(data=True)))


def test_broadcast_rows_take_the_parts_path(monkeypatch):
    graphs = _candidate_graphs("gemm_os_bcast", ["array.shape=[8,8]", "clock_mhz=1000.0"], monkeypatch)
    for g in graphs:
        assert arborescence._unique_greedy(g, "weight") is None
        tree = arborescence._by_parts(g, "weight")
        assert tree is not None and list(tree.edges(data=True)) == list(_networkx(g).edges(data=True))
