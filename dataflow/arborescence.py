"""Minimum spanning arborescence with a fast exact path for the common case.

Edmonds' algorithm starts by giving every non-root node its cheapest incoming edge; if those choices form
no cycle they *are* the minimum arborescence, and if every such cheapest edge is strictly cheaper than
the node's other incoming edges it is the only one. The interconnect's candidate graphs (reuse moves
between neighbouring FUs, forward steps preferred) are almost always of that kind, so the tree is read
off in linear time; anything else (a tie, a cycle, an unreachable node) goes to networkx's Edmonds,
so the result is always the one networkx returns.
"""
from __future__ import annotations

import networkx as nx

__all__ = ["minimum_spanning_arborescence"]


def minimum_spanning_arborescence(g: nx.DiGraph, attr: str = "weight") -> nx.DiGraph:
    """As ``nx.minimum_spanning_arborescence(g, attr=attr, preserve_attrs=True)``."""
    fast = _unique_greedy(g, attr)
    if fast is not None:
        return fast
    return nx.minimum_spanning_arborescence(g, attr=attr, preserve_attrs=True)


def _unique_greedy(g: nx.DiGraph, attr: str):
    roots = [v for v in g if g.in_degree(v) == 0]
    if len(roots) != 1:
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
    state = {roots[0]: True}
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
    tree = nx.DiGraph()
    tree.add_nodes_from(g.nodes(data=True))
    # the chosen edges in g's edge order (as networkx's answer): per node, its successors whose parent it is
    tree.add_edges_from((u, v, d) for u, nbrs in g._adj.items() for v, d in nbrs.items()
                        if (p := parent.get(v)) is u or p == u)
    return tree
