"""Derived interconnect against the hand-derived table of DESIGN.md section 2, operand by operand, plus
graph properties that must hold on every array shape: one source per FU and operand (an arborescence
rooted at memory), values arriving exactly when their FU runs, partial sums leaving aligned; and the
memory banking of section 3 (lanes never share a bank, addresses advance by affine strides)."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.banking import derive_banking
from archgen.dataflow.interconnect import derive_interconnect
from archgen.dataflow.ir import Node, NodeKind, fu as fu_node

# operand -> (role, set of FU-to-FU links as (kind, axis, delay per hop)); DESIGN.md section 2
TABLE = {
    "gemm_os": {"A": ("stream", {("systolic", 1, 1)}),          # forward along j, 1 cycle
                "B": ("stream", {("systolic", 0, 1)}),          # forward along i, 1 cycle
                "C": ("accumulate", set())},                    # stationary accumulator
    "gemm_ws": {"A": ("stream", {("systolic", 1, 1)}),          # systolic along j
                "B": ("stationary", set()),                     # stationary
                "C": ("stream_out", {("reduce_chain", 0, 1)})},  # partial-sum chain along k (axis 0)
    "gemm_is": {"A": ("stationary", set()),
                "B": ("stream", {("systolic", 0, 1)}),
                "C": ("stream_out", {("reduce_chain", 1, 1)})},  # partial-sum chain along k (axis 1)
    "gemm_os_bcast": {"A": ("stream", set()),                   # row broadcast: no FU-to-FU hop
                      "B": ("stream", set()),                   # column broadcast
                      "C": ("accumulate", set())},
    "conv_ws": {"I": ("stream", {("systolic", 1, 1)}),
                "W": ("stationary", set()),
                "O": ("stream_out", {("reduce_chain", 0, 1)})},
}
GEMMS = ["gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast"]
SHAPES = [None, "3x5", "1x8", "8x1"]


def design_of(name, shape=None):
    return load_spec(name, [f"array.shape={shape}"] if shape else [])


def edges_of(fg, operand):
    return fg.links(operand)


def fu_links(fg, operand):
    return [(u, v, e) for u, v, e in edges_of(fg, operand) if u.kind is NodeKind.FU and v.kind is NodeKind.FU]


def fus(fg):
    return [fu_node(s) for s in fg.coords()]


# ---------------------------------------------------------------------------------------------
# the table


@pytest.mark.parametrize("name", list(TABLE))
def test_interconnect_matches_design_table(name):
    fg = derive_interconnect(design_of(name))
    assert [p.name for p in fg.plans] == list(TABLE[name])
    for operand, (role, links) in TABLE[name].items():
        plan = fg.plan(operand)
        assert plan.role == role, operand
        got = {(e.kind, e.axis, e.delay) for _, _, e in fu_links(fg, operand)}
        assert got == links, operand
        for u, v, e in fu_links(fg, operand):
            # one hop forward along the axis (toward the FUs that run later)
            step = [b - a for a, b in zip(u.coord, v.coord)]
            assert step == [int(ax == e.axis) for ax in range(2)], (operand, u, v)
        n_links = sum((fg.shape[a] - 1) * math.prod(fg.shape) // fg.shape[a] for _, a, _ in links)
        assert len(fu_links(fg, operand)) == n_links


@pytest.mark.parametrize("name, operand, axis, same", [
    ("gemm_os_bcast", "A", 1, 0),     # A[i,k]: one wire along a row (same s0)
    ("gemm_os_bcast", "B", 0, 1),     # B[k,j]: one wire down a column (same s1)
])
@pytest.mark.parametrize("shape", [None, "3x5"])
def test_broadcast_lanes(name, operand, axis, same, shape):
    fg = derive_interconnect(design_of(name, shape))
    plan = fg.plan(operand)
    assert plan.reuse_axes == ((axis, 0),)
    assert plan.n_lanes == fg.shape[same]
    for lane in plan.lanes:
        assert lane.skew == 0
        assert len(lane.fus) == fg.shape[axis] and len({s[same] for s in lane.fus}) == 1
    for u, v, e in edges_of(fg, operand):
        assert u.kind is NodeKind.MEM and e.kind == "broadcast" and e.delay == 0 and e.fanout == fg.shape[axis]


@pytest.mark.parametrize("name, reuse", [
    ("gemm_os", {"A": ((1, 1),), "B": ((0, 1),), "C": ()}),
    ("gemm_ws", {"A": ((1, 1),), "B": (), "C": ((0, 1),)}),
    ("gemm_is", {"A": (), "B": ((0, 1),), "C": ((1, 1),)}),
    ("gemm_os_bcast", {"A": ((1, 0),), "B": ((0, 0),), "C": ()}),
])
def test_plans_reuse_axes_and_partial_sums(name, reuse):
    fg = derive_interconnect(design_of(name))
    for operand, axes in reuse.items():
        assert fg.plan(operand).reuse_axes == axes, operand
    # reduction loop k runs outside the tile in WS and IS: earlier tiles' partial sums come back in
    assert fg.output.psum_in == (name in ("gemm_ws", "gemm_is"))
    systolic = name != "gemm_os_bcast"
    for p in fg.inputs:
        if p.role == "stream":
            assert [lane.skew for lane in p.lanes] == ([0, 1, 2, 3] if systolic else [0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------
# properties on every shape


def check_graph_properties(fg):
    g = fg.graph
    all_fus = fus(fg)
    for plan in fg.plans:
        sub = nx.DiGraph([(u, v, {"delay": e.delay}) for u, v, e in edges_of(fg, plan.name)])
        if plan.role in ("stream", "stationary"):
            # every FU has exactly one source: an arborescence per lane, rooted at a memory lane
            for fu in all_fus:
                assert sub.in_degree(fu) == 1, (plan.name, fu)
            assert nx.is_branching(sub)
            roots = [v for v in sub if sub.in_degree(v) == 0]
            assert all(r.kind is NodeKind.MEM for r in roots)
            members = sorted(s for lane in plan.lanes for s in lane.fus)
            assert members == sorted(fg.coords()), plan.name         # lanes partition the array
        if plan.role == "stream":
            # the value reaches FU s exactly when s runs: path delay from memory == skew of s
            for root in (r for r in sub if sub.in_degree(r) == 0):
                for fu, path in nx.single_source_shortest_path(sub, root).items():
                    if fu.kind is NodeKind.FU:
                        delay = sum(sub.edges[a, b]["delay"] for a, b in zip(path, path[1:]))
                        assert delay == fg.skew(fu.coord), (plan.name, fu, path)
        if plan.role == "stationary":
            assert all(e.kind == "memory" and e.load for _, _, e in edges_of(fg, plan.name))
        if plan.role == "accumulate":
            for fu in all_fus:
                assert [fg.link(fu, v).kind for v in g.successors(fu) if fg.link(fu, v).operand == plan.name] == ["drain"]
        if plan.role == "stream_out" and not plan.tree_axes:
            chain = nx.DiGraph([(u, v, {"delay": e.delay}) for u, v, e in edges_of(fg, plan.name)
                                if e.kind in ("reduce_chain", "drain")])
            spans = set()
            for fu in all_fus:
                assert chain.out_degree(fu) == 1, fu                  # one place each partial sum goes
                path = [fu]
                while path[-1].kind is NodeKind.FU:
                    nxt = next(iter(chain.successors(path[-1])))
                    if nxt.kind is NodeKind.FU:
                        assert chain.edges[path[-1], nxt]["delay"] == fg.skew(nxt.coord) - fg.skew(path[-1].coord)
                    path.append(nxt)
                spans.add(fg.skew(fu.coord) + sum(chain.edges[a, b]["delay"] for a, b in zip(path, path[1:])))
            assert len(spans) == 1, spans                             # every result leaves aligned


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", GEMMS + ["conv_ws"])
def test_graph_properties_on_other_shapes(name, shape):
    fg = derive_interconnect(design_of(name, shape))
    assert fg.shape == (tuple(int(v) for v in shape.split("x")) if shape else (4, 4))
    check_graph_properties(fg)
    # the table's links survive along every axis longer than 1 and vanish along the others
    for operand, (role, links) in TABLE[name].items():
        assert fg.plan(operand).role == role
        got = {(e.kind, e.axis, e.delay) for _, _, e in fu_links(fg, operand)}
        assert got == {link for link in links if fg.shape[link[1]] > 1}, operand


BMM = {"version": 1, "name": "bmm3d", "operation": "C[b,i,j] += A[b,i,k] * B[b,k,j]",
       "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2, 2]},
       "dataflows": {"os": {"spatial": {"i": 0, "j": 1, "b": 2}, "order": ["b", "i", "j", "k"], "control": [1, 1, 1]}}}


def test_three_dimensional_array():
    fg = derive_interconnect(load_spec_data(BMM))
    check_graph_properties(fg)
    assert {(e.kind, e.axis, e.delay) for _, _, e in fu_links(fg, "A")} == {("systolic", 1, 1)}
    assert {(e.kind, e.axis, e.delay) for _, _, e in fu_links(fg, "B")} == {("systolic", 0, 1)}
    assert fg.plan("C").role == "accumulate"


@pytest.mark.parametrize("spec", [
    # GEMM on a 2x2x2 array: k is spread over axis 2, so two FUs hold partial sums of each C[i,j]
    {"version": 1, "name": "gemm3d", "operation": "C[i,j] += A[i,k] * B[k,j]",
     "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2, 2]},
     "dataflows": {"d": {"spatial": {"i": 0, "j": 1, "k": 2}, "order": ["i", "j", "k"], "control": [1, 1, 1]}}},
    # 2-D: output channels x input channels, filter taps inside the tile: c is reduced across axis 1
    {"version": 1, "name": "conv_kc", "operation": "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]",
     "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
     "bounds": {"n": 1, "k": 2, "p": 2, "q": 2, "c": 2, "r": 2, "s": 2},
     "dataflows": {"d": {"spatial": {"k": 0, "c": 1}, "order": ["n", "p", "q", "k", "c", "r", "s"],
                         "inner": ["r", "s"], "control": [1, 1]}}},
], ids=["gemm_2x2x2_k_spatial", "conv_c_spatial_output_stationary"])
def test_reduction_loop_on_an_array_axis_is_reduced_or_rejected(spec):
    """FUs along an axis that carries a reduction loop hold partial sums of the same output element:
    the derived plan must add them (a chain or a tree along that axis), or the spec must be rejected."""
    design = load_spec_data(spec)
    df = design.dataflows[0]
    out = design.operation.output
    reduced_axes = {a for a, d in df.spatial_dims.items() if not out.uses(d) and design.shape[a] > 1}
    assert reduced_axes
    try:
        fg = derive_interconnect(design)
    except SpecError:
        return
    plan = fg.output
    handled = {a for a, _ in plan.reuse_axes} | set(plan.tree_axes)
    assert reduced_axes <= handled, (plan.role, plan.reuse_axes, plan.tree_axes)


def test_non_tiled_map_is_rejected_with_a_spec_error():
    data = {"version": 1, "name": "skew", "operation": "C[i,j] += A[i,k] * B[k,j]",
            "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2]},
            "bounds": {"i": 2, "j": 2, "k": 2},
            "dataflows": {"m": {"map": {"i": "t_i + 2*s0", "j": "t_j", "k": "t_k"}}}}
    design = load_spec_data(data)
    assert design.dataflows[0].spatial is None
    with pytest.raises(SpecError, match=r"dataflows\.m\.map: array axis\(es\) \[0\] carry no loop in the tiled form"):
        derive_interconnect(design)


# ---------------------------------------------------------------------------------------------
# memory banking (DESIGN.md section 3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", GEMMS + ["conv_ws"])
def test_banking_is_conflict_free_with_affine_address_strides(name, shape):
    fg = derive_interconnect(design_of(name, shape))
    op, df = fg.design.operation, fg.dataflow
    mmat = df.ts_map.matrix                      # loops x (t vars in loop order, then s0..)
    n_t = len(op.dims)
    for b in derive_banking(fg):
        plan = fg.plan(b.operand)
        x = op.operand(b.operand)
        amat = x.access_matrix(op.dims)
        assert b.lanes == plan.n_lanes and b.total_banks == plan.n_lanes
        # the FU each lane's memory port serves in a cycle: fed from memory, or drained to memory
        if plan.role == "stream_out":
            ports = [next(u.coord for u, _ in fg.graph.in_edges(Node(NodeKind.DRAIN, operand=b.operand, lane=lane.index)))
                     for lane in plan.lanes]
        else:
            ports = [lane.fus[0] for lane in plan.lanes]
        idx = [tuple(int(v) for v in amat @ mmat[:, n_t:] @ np.array(s)) for s in ports]
        lo = [min(col) for col in zip(*idx)]
        banks = {tuple(((v - l) // g) % n for v, l, g, n in zip(i, lo, b.gcd, b.banks)) for i in idx}
        assert len(banks) == plan.n_lanes, (b.operand, idx, b)           # no two lanes share a bank
        # in-bank addresses advance by fixed strides per temporal loop: column t_d of A_X M
        want = {f"t_{d}": tuple(int(v) for v in amat @ mmat[:, op.dims.index(d)]) for d in df.order}
        assert dict(b.strides) == {v: s for v, s in want.items() if any(s)}


@pytest.mark.parametrize("shape,control", [("4x4x2", "1,1,0"), ("2x3x3", "1,1,1"), ("1x4x2", "0,0,0"),
                                           ("3x2x4", "1,0,-1")])
def test_reduction_across_an_array_axis_feeds_one_accumulator_per_element(shape, control):
    """gemm_os3d: every FU's product reaches exactly one accumulator, through an adder tree (control 0 on
    the reduced axis) or a partial-sum chain, and the FUs sharing it are exactly those that differ only
    along the reduced axis; the accumulators drain along the last axis that is not reduced."""
    fg = derive_interconnect(load_spec("gemm_os3d", [f"array.shape={shape}", f"dataflows.os3d.control=[{control}]"]))
    e0, e1, e2 = fg.shape
    accs = [v for v in fg.graph if v.kind is NodeKind.ACC]
    assert len(accs) == e0 * e1
    reach = {}
    for s in fg.coords():
        found = [v for v in nx.descendants(fg.graph, fu_node(s)) if v.kind is NodeKind.ACC]
        assert len(found) == 1, s
        reach.setdefault(found[0], set()).add(s)
    assert all(sorted(fus) == sorted((s[0], s[1], z) for z in range(e2)) for fus in reach.values()
               for s in [next(iter(fus))])
    out = fg.output
    assert out.role == "accumulate" and out.n_lanes == e1 and all(len(l.fus) == e0 for l in out.lanes)
    kinds = {fg.link(u, v).kind for u, v in fg.graph.edges if fg.link(u, v).operand == "C"}
    assert ("tree" if control.endswith(",0") else "chain") == ("tree" if "reduce_chain" not in kinds else "chain")


# ---------------------------------------------------------------------------------------------
# mixed reductions: a partial-sum chain along the skewed reduced axes, an adder tree along the others

_CONV2 = {"version": 1, "name": "conv2", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
          "types": {"W": "int8", "I": "int8", "O": "int32"}, "bounds": {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}}
_ACC3 = {"version": 1, "name": "acc3", "operation": "O[k] += I[c,r,s] * W[k,c,r,s]",
         "types": {"W": "int8", "I": "int8", "O": "int32"}, "bounds": {"k": 3, "c": 3, "r": 3, "s": 4}}


@pytest.mark.parametrize("base, shape, df, role", [
    (_CONV2, [2, 2], {"spatial": {"c": 0, "r": 1}, "order": ["k", "c", "r", "p", "q"], "control": [0, 1]}, "stream_out"),
    (_CONV2, [2, 3], {"spatial": {"c": 0, "r": 1}, "order": ["k", "c", "r", "p", "q"], "control": [1, 0]}, "stream_out"),
    (_CONV2, [2, 2, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["c", "r", "p", "k", "q"], "control": [0, 0, 1]},
     "stream_out"),
    (_ACC3, [2, 2, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["k", "c", "r", "s"], "control": [1, 0, 1]},
     "accumulate"),
    (_ACC3, [2, 3, 2], {"spatial": {"k": 0, "c": 1, "r": 2}, "order": ["k", "c", "r", "s"], "control": [0, 1, 0]},
     "accumulate"),
], ids=["conv2x2-tree-c-chain-r", "conv2x3-chain-c-tree-r", "conv2x2x2", "acc2x2x2", "acc2x3x2"])
def test_a_reduction_with_chained_and_tree_axes_sums_each_group_once(base, shape, df, role):
    """Reduced axes with control != 0 (chains) and == 0 (trees) in one dataflow (was refused: `spatial reductions
    must be all chains or all trees`): partial sums run along the chained axes to their ends, and the ends that
    differ only along the tree axes meet in one adder tree, in the same cycle (control 0 there). Every FU's product
    reaches exactly one tree, that tree's FUs are exactly those differing only along the reduced axes, and each
    chain hop goes one step along a chained axis toward larger c.s."""
    design = load_spec_data({**base, "array": {"shape": shape}, "dataflows": {"d": df}})
    fg = derive_interconnect(design)
    out = fg.output
    ax = fg.dataflow.spatial_dims
    reduced = {a for a, d in ax.items() if not design.operation.output.uses(d)}
    chained = {a for a in reduced if fg.control[a] != 0}
    trees = reduced - chained
    assert chained and trees and out.role == role
    assert set(out.tree_axes) == trees and {a for a, _ in out.reuse_axes} == chained
    sums = nx.DiGraph([(u, v) for u, v, _ in fg.links("O")])
    reach = {}
    for s in fg.coords():
        found = [v for v in nx.descendants(sums, fu_node(s)) if v.kind is NodeKind.TREE]
        assert len(found) == 1, s
        reach.setdefault(found[0], set()).add(s)
    key = lambda s: tuple(v for a, v in enumerate(s) if a not in reduced)     # noqa: E731
    assert all(len({key(s) for s in fus}) == 1 and len(fus) == math.prod(fg.shape[a] for a in reduced)
               for fus in reach.values())
    for u, v, e in fg.links("O"):
        if e.kind.value == "reduce_chain":
            step = [b - a for a, b in zip(u.coord, v.coord)]
            assert e.axis in chained and sum(map(abs, step)) == 1 and step[e.axis] * fg.control[e.axis] > 0
            assert e.delay == fg.skew(v.coord) - fg.skew(u.coord) > 0
        elif v.kind is NodeKind.TREE and u.kind is NodeKind.FU:      # the tree's leaves run in one cycle
            assert len({fg.skew(w.coord) for w, _ in fg.graph.in_edges(v) if w.kind is NodeKind.FU}) == 1


def test_an_input_reused_along_a_chained_reduction_axis_leaves_the_chain_its_edges():
    """O[k,p] += W[k] * I[p,r] on 2x2, {p: 0, r: 1}, order [p, r, k], control [0, 1]: W[k] is reused along r, the
    axis O reduces by a partial-sum chain. W took the FU-to-FU edges first and the chain's then crashed the builder
    (AssertionError: two connections on ...; 447 specs of benchmarks/dataflow_refusal_search.py unused). The chain's
    edges are reserved: W takes memory lanes along r; exact, RTL cycles == model cycles (Amaranth)."""
    from archgen.dataflow.ir import EdgeKind
    from archgen.verif.array_amaranth import verify_array_amaranth
    design = load_spec_data({"version": 1, "kind": "array", "name": "chain_w", "operation": "O[k,p] += W[k] * I[p,r]",
                             "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
                             "dataflows": {"d": {"spatial": {"p": 0, "r": 1}, "order": ["p", "r", "k"],
                                                 "control": [0, 1]}}})
    fg = derive_interconnect(design)
    chain = {(u, v) for u, v, e in fg.links() if e.kind is EdgeKind.REDUCE_CHAIN}
    assert chain and all(e.operand == "O" for u, v, e in fg.links() if (u, v) in chain)
    assert not any(e.axis == 1 for _, _, e in fg.links() if e.operand == "W" and e.kind is not EdgeKind.MEMORY)
    r = verify_array_amaranth(design, {"k": 3, "p": 5, "r": 3}, seed=1)
    assert r.outputs_exact and r.detail["psum_reads_before_write"] == 0, r.detail
    assert r.rtl_cycles == r.model_cycles == 28, (r.rtl_cycles, r.model_cycles)
