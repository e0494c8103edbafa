"""From replicas per group of identical nodes to replicas per node.

The grouped model decides how many replicas of each deployment a group of identical
nodes hosts and how many of its nodes are paid for; this module packs those replicas
onto actual nodes of the group. First-fit decreasing is tried first; when it needs more
nodes than the group model paid for, a small exact CP-SAT packing decides (its nodes
ordered by memory load, as they are interchangeable), and only if
that proves the count impossible is one more node of the group used.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> nodes = tuple(Node(f"n{k}", "cloud", 4, 8192, 0.2, "eu") for k in range(3))
    >>> d = Deployment("m", "m:1", ReplicaProfile(1, 3072, 50), {"eu": 200}, 100)
    >>> pack_group(Problem(nodes, (), (d,)), [0, 1, 2], {0: 4}, 2, 1.0)
    {(0, 0): 2, (0, 1): 2}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelport.deploy.cpsat import cp_model
from modelport.deploy.model import EPS, Problem


def pack_group(
    problem: Problem,
    group: Sequence[int],
    counts: Mapping[int, int],
    bins: int,
    time_limit: float,
) -> dict[tuple[int, int], int] | None:
    """Place ``counts[d]`` replicas of each deployment index on nodes of ``group``,
    using as few nodes as possible starting from ``bins``; ``{(d, node): replicas}``,
    or None when even every node of the group cannot hold them."""
    counts = {d: k for d, k in counts.items() if k > 0}
    if not counts:
        return {}
    for n_bins in range(max(1, bins), len(group) + 1):
        nodes = list(group[:n_bins])
        packed = _first_fit(problem, nodes, counts) or _exact(problem, nodes, counts, time_limit)
        if packed is not None:
            return packed
    return None


def pack_partial(
    problem: Problem, group: Sequence[int], counts: Mapping[int, int]
) -> tuple[dict[tuple[int, int], int], dict[int, int]]:
    """First-fit decreasing onto every node of ``group``: what fits, and what is left."""
    left: dict[int, int] = {}
    packed = _first_fit(problem, list(group), counts, left) or {}
    return packed, left


def _first_fit(
    problem: Problem,
    nodes: list[int],
    counts: Mapping[int, int],
    left: dict[int, int] | None = None,
) -> dict[tuple[int, int], int] | None:
    """Largest replicas first, each on the first node with room. Without ``left`` it
    fails (None) at the first replica that does not fit; with it, the replicas that do
    not fit are counted there."""
    deps = problem.deployments
    node = problem.nodes[nodes[0]]
    free = [[node.cpu, node.memory_mb, node.accelerators] for _ in nodes]
    out: dict[tuple[int, int], int] = {}
    order = sorted(
        counts,
        key=lambda d: (
            -problem.profile_on(deps[d], node).memory_mb,
            -problem.profile_on(deps[d], node).cpu,
            d,
        ),
    )
    for d in order:
        p = problem.profile_on(deps[d], node)
        one = deps[d].constraints.spread == "node"
        for _ in range(counts[d]):
            for b, f in enumerate(free):
                if one and out.get((d, nodes[b])):
                    continue
                if p.cpu <= f[0] + EPS and p.memory_mb <= f[1] + EPS and p.accelerators <= f[2]:
                    f[0] -= p.cpu
                    f[1] -= p.memory_mb
                    f[2] -= p.accelerators
                    out[(d, nodes[b])] = out.get((d, nodes[b]), 0) + 1
                    break
            else:
                if left is None:
                    return None
                left[d] = left.get(d, 0) + 1
    return out


def _exact(
    problem: Problem, nodes: list[int], counts: Mapping[int, int], time_limit: float
) -> dict[tuple[int, int], int] | None:
    cp = cp_model()
    m = cp.CpModel()
    deps = problem.deployments
    node = problem.nodes[nodes[0]]
    z: dict[tuple[int, int], Any] = {}
    for d, k in counts.items():
        fit = problem.max_replicas_on(deps[d], node)
        for i in nodes:
            z[(d, i)] = m.new_int_var(0, min(k, fit), f"z[{d},{i}]")
        m.add(sum(z[(d, i)] for i in nodes) == k)
    loads = []
    for i in nodes:
        items = [(problem.profile_on(deps[d], node), z[(d, i)]) for d in counts]
        m.add(
            sum(math.ceil(p.cpu * 1000 - 1e-6) * v for p, v in items)
            <= math.floor(node.cpu * 1000 + 1e-6)
        )
        memory = sum(math.ceil(p.memory_mb - 1e-6) * v for p, v in items)
        m.add(memory <= math.floor(node.memory_mb + 1e-6))
        loads.append(memory)
        if any(p.accelerators for p, _ in items):
            m.add(sum(p.accelerators * v for p, v in items) <= node.accelerators)
    for a, b in itertools.pairwise(loads):  # the nodes are identical: fullest first
        m.add(a >= b)
    s = cp.CpSolver()
    s.parameters.max_time_in_seconds = max(0.05, time_limit)
    s.parameters.num_workers = 1
    if s.solve(m) not in (cp.OPTIMAL, cp.FEASIBLE):
        return None
    return {key: int(s.value(v)) for key, v in z.items() if s.value(v) > 0}
