"""Minimum spanning arborescence with fast exact paths for the interconnect's candidate graphs.

Edmonds' algorithm starts by giving every non-root node its cheapest incoming edge; if those choices form
no cycle they *are* the minimum arborescence, and if every such cheapest edge is strictly cheaper than
the node's other incoming edges it is the only one. The interconnect's candidate graphs (reuse moves
between neighbouring FUs, forward steps preferred) are almost always of that kind, so the tree is read
off in linear time.

A broadcast row is not: its candidates form cycles (a forward step one way, a dearer FIFO step back), so
Edmonds contracts cycle after cycle, and networkx copies the whole graph at each contraction, which is
quadratic in the array's size. When the graph has a single source (the memory, no in-edge) and its other
nodes fall apart into several weakly connected parts (the rows), networkx's Edmonds is run on each part
with the source separately and the trees are joined. That is the tree networkx returns for the whole
graph, ties included: its weights are transformed with the whole graph's extremes (as networkx does),
and every decision of networkx's Edmonds is local to a part -- a node's preferred in-edge is the first
dearest among its in-edges (all from its part or the source), a cycle lies inside one part, the nodes
are visited in the order of the graph restricted to the part, and the unrolling of a contraction only
reads the edges of the contracted part. tests/dataflow/test_arborescence.py checks the equality.

Anything else goes to networkx's Edmonds on the whole graph. The result always has networkx's edges and
edge attributes (the input graph is left as it was; networkx writes its weights back as floats). The
fast paths list the edges in the graph's edge order; networkx lists them in the iteration order of a
Python set of edge indices, which is that order unless an index exceeds the set's table. Then the orders
differ: on the built-ins' candidate graphs (checked up to 12x12) only in the order of the memory
source's successors (gemm_os_bcast 9x11, 10x10, 11x9, 12x8), which the interconnect sorts.
"""
from __future__ import annotations

import networkx as nx
from networkx.algorithms.tree.branchings import maximum_branching

__all__ = ["minimum_spanning_arborescence"]


def minimum_spanning_arborescence(g: nx.DiGraph, attr: str = "weight") -> nx.DiGraph:
    """As ``nx.minimum_spanning_arborescence(g, attr=attr, preserve_attrs=True)``."""
    fast = _unique_greedy(g, attr)
    if fast is None:
        fast = _by_parts(g, attr)
    if fast is not None:
        return fast
    return nx.minimum_spanning_arborescence(g, attr=attr, preserve_attrs=True)


def _single_source(g: nx.DiGraph):
    roots = [v for v in g if g.in_degree(v) == 0]
    return roots[0] if len(roots) == 1 else None


def _unique_greedy(g: nx.DiGraph, attr: str):
    root = _single_source(g)
    if root is None:
        return None
    parent = {}
    for v, preds in g.pred.items():
        if not preds:
            continue
        best = second = None
        for u, d in preds.items():
            w = d[attr]
            if best is None or w < best[0]:
                best, second = (w, u), best
            elif second is None or w < second[0]:
                second = (w, u)
        if second is not None and second[0] == best[0]:
            return None                     # a tie: leave the choice to Edmonds
        parent[v] = best[1]
    # acyclic iff every node reaches the root through its parents
    state = {root: True}
    for v in parent:
        path = []
        while v not in state:
            state[v] = False                 # on the current path
            path.append(v)
            v = parent[v]
        if not state[v]:
            return None                     # came back onto the current path: a cycle
        for p in path:
            state[p] = True
    flip = _flip(g, attr)
    return _in_edge_order(g, lambda u, v, d: (p := parent.get(v)) is u or p == u,
                          lambda u, v, d: _as_networkx(d, attr, flip - d[attr], flip))


def _by_parts(g: nx.DiGraph, attr: str):
    """networkx's Edmonds on each weakly connected part of ``g`` minus its single source, joined."""
    root = _single_source(g)
    if root is None or any(attr not in d for _, _, d in g.edges(data=True)):
        return None
    rest = g.subgraph([v for v in g if v != root])
    parts = list(nx.weakly_connected_components(rest))
    if len(parts) < 2 or any(len(p) == len(g) - 1 for p in parts):
        return None
    flip = _flip(g, attr)
    # nodes as their index in g (cheaper to hash; networkx's Edmonds never compares or sorts nodes)
    index = {v: i for i, v in enumerate(g)}
    chosen = {}
    for part in parts:
        sub = nx.DiGraph()
        sub.add_nodes_from(sorted([index[root]] + [index[v] for v in part]))   # g's node order
        sub.add_edges_from((index[u], index[v], {**d, attr: flip - d[attr]}) for u, v, d in g.edges(data=True)
                           if v in part)
        for u, v, d in maximum_branching(sub, attr, preserve_attrs=True).edges(data=True):
            chosen[(u, v)] = _as_networkx(d, attr, d[attr], flip)
    tree = _in_edge_order(g, lambda u, v, d: (index[u], index[v]) in chosen,
                          lambda u, v, d: chosen[(index[u], index[v])])
    return tree if nx.is_arborescence(tree) else None


def _flip(g: nx.DiGraph, attr: str):
    """networkx's minimal_branching maximises ``flip - weight``, flip from the whole graph's extremes."""
    weights = [d[attr] for _, _, d in g.edges(data=True)]
    return max(weights) + 1 + (max(weights) - min(weights)) if weights else None


def _as_networkx(d: dict, attr: str, flipped, flip) -> dict:
    """An edge's attributes as networkx returns them: the weight flipped back first (an int weight comes
    back a float if flip is one), then the others."""
    return {attr: flip - flipped, **{k: v for k, v in d.items() if k != attr}}


def _in_edge_order(g: nx.DiGraph, keep, data) -> nx.DiGraph:
    """The kept edges of ``g`` over all its nodes, in ``g``'s node and edge order."""
    tree = nx.DiGraph()
    tree.add_nodes_from(g.nodes(data=True))
    tree.add_edges_from((u, v, data(u, v, d)) for u, nbrs in g._adj.items() for v, d in nbrs.items()
                        if keep(u, v, d))
    return tree
