"""The greedy baseline: first-fit decreasing, as schedulers do it today.

Deployments restricted to some nodes (a site, a kind or labels) go first, then the
rest; within each group the largest first (memory per replica, then cores). Each replica goes
to the first node that can take it: nodes already in use first, in the order they were
opened, then unused nodes from the cheapest per GiB of memory. A replica is placed for
the client site with the most unserved demand and answers every site it can reach,
until all demand is served and ``min_replicas`` is met. It never revisits a decision,
which is what makes it fast — and what the integer program improves on.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> nodes = (Node("a", "cloud", 4, 8192, 1.0, "eu"), Node("b", "cloud", 4, 8192, 1.0, "eu"))
    >>> d = Deployment("m", "m:1", ReplicaProfile(1, 2048, 100), demand={"eu": 250},
    ...                latency_p99_ms=50)
    >>> r = greedy_place(Problem(nodes, (), (d,)))
    >>> r.status, r.cost, [(p.node, p.replicas) for p in r.placements]
    ('feasible', 1.0, [('a', 3)])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from modelport.core.errors import InvalidArgument
from modelport.deploy.model import EPS, Deployment, Node, Problem
from modelport.deploy.plan import Baseline, Placement, placement_cost


@dataclass(slots=True)
class _Free:
    cpu: float
    memory_mb: float
    accelerators: int
    hosted: dict[str, int] = field(default_factory=dict)


#: How unused nodes are ranked when one must be opened.
NODE_ORDERS = ("cheapest", "largest")


def node_order(problem: Problem, order: str = "cheapest") -> list[int]:
    """Node indexes in the order unused nodes are opened: ``cheapest`` per GiB of memory
    first (then larger first), or ``largest`` memory first, as capacity-based
    schedulers rank servers (cost-blind)."""
    if order not in NODE_ORDERS:
        raise InvalidArgument(f"node order must be one of {NODE_ORDERS}")
    nodes = problem.nodes
    if order == "largest":
        return sorted(range(len(nodes)), key=lambda i: (-nodes[i].memory_mb, -nodes[i].cpu, i))
    return sorted(
        range(len(nodes)),
        key=lambda i: (
            nodes[i].cost_per_hour / nodes[i].memory_mb,
            -nodes[i].memory_mb,
            nodes[i].name,
        ),
    )


def greedy_place(problem: Problem, order: str = "cheapest") -> Baseline:
    """Place every deployment first-fit decreasing; ``status`` is ``feasible`` or
    ``infeasible`` (with the first deployment it could not finish as ``reason``).
    ``order`` ranks the nodes to open (:func:`node_order`)."""
    g = _Greedy(problem, order)
    for di in _order(problem, range(len(problem.deployments))):
        why = g.place(di)
        if why:
            return Baseline("infeasible", None, None, (), f"{problem.deployments[di].name}: {why}")
    nodes = problem.nodes
    placements = tuple(
        Placement(problem.deployments[di].name, nodes[i].name, k, dict(g.serves[(di, i)]))
        for (di, i), k in sorted(g.replicas.items())
    )
    used = {p.node for p in placements}
    return Baseline("feasible", placement_cost(problem, placements), len(used), placements)


def complete(
    problem: Problem,
    fixed: Mapping[tuple[int, int], int],
    todo: Iterable[int],
    exclude: Collection[int] = (),
) -> dict[tuple[int, int], int] | None:
    """Add the deployments ``todo`` (indexes) first-fit around replicas already placed
    (``{(deployment, node): replicas}``), on no node in ``exclude``; None if one does
    not fit."""
    g = _Greedy(problem, exclude=exclude)
    for (di, i), k in fixed.items():
        for _ in range(k):
            g.put(di, i)
    for di in _order(problem, todo):
        if g.place(di):
            return None
    return dict(g.replicas)


def _order(problem: Problem, indexes: Iterable[int]) -> list[int]:
    deps = problem.deployments
    return sorted(
        indexes,
        key=lambda k: (
            not _restricted(deps[k]),
            -deps[k].profile.memory_mb,
            -deps[k].profile.cpu,
            deps[k].name,
        ),
    )


class _Greedy:
    """Free capacity per node, nodes in use (in opening order) and the replicas so far."""

    def __init__(
        self, problem: Problem, order: str = "cheapest", exclude: Collection[int] = ()
    ) -> None:
        self.problem = problem
        self.exclude = set(exclude)
        self.free = [_Free(n.cpu, n.memory_mb, n.accelerators) for n in problem.nodes]
        self.opened: list[int] = []
        self.closed = node_order(problem, order)
        self.replicas: dict[tuple[int, int], int] = defaultdict(int)
        self.serves: dict[tuple[int, int], dict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )

    def put(self, di: int, i: int) -> None:
        d, node = self.problem.deployments[di], self.problem.nodes[i]
        prof = self.problem.profile_on(d, node)
        f = self.free[i]
        f.cpu -= prof.cpu
        f.memory_mb -= prof.memory_mb
        f.accelerators -= prof.accelerators
        f.hosted[d.name] = f.hosted.get(d.name, 0) + 1
        if i in self.closed:
            self.closed.remove(i)
            self.opened.append(i)
        self.replicas[(di, i)] += 1

    def place(self, di: int) -> str | None:
        """Place deployment ``di``'s replicas; the reason when it cannot."""
        problem, d = self.problem, self.problem.deployments[di]
        allowed = set(problem.candidates(d)) - self.exclude
        remaining = {s: float(d.demand[s]) for s in d.demand_sites}
        count = 0
        sites_used: set[str] = set()
        while any(v > EPS for v in remaining.values()) or count < d.min_replicas:
            want = max(remaining, key=lambda s: (remaining[s], s)) if remaining else None
            if want is not None and remaining[want] <= EPS:
                want = None
            if d.max_replicas is not None and count >= d.max_replicas:
                return "max_replicas reached before its demand was served"
            i = _first_fit(
                problem, d, want, allowed, self.free, self.opened, self.closed, sites_used
            )
            if i is None:
                what = f"site {want!r}" if want else "min_replicas"
                return f"no node left with room for a replica for {what}"
            node = problem.nodes[i]
            self.put(di, i)
            sites_used.add(node.site)
            count += 1
            capacity = problem.profile_on(d, node).rps_per_replica
            targets = [want] if want else []
            targets += sorted(
                (s for s in remaining if s != want and problem.serves(d, node, s)),
                key=lambda s: (-remaining[s], s),
            )
            for s in targets:
                take = min(capacity, remaining[s])
                if take > 0:
                    self.serves[(di, i)][s] += take
                    remaining[s] -= take
                    capacity -= take
        return None


def _restricted(d: Deployment) -> bool:
    c = d.constraints
    return c.site is not None or c.kind is not None or bool(c.labels)


def _first_fit(
    problem: Problem,
    d: Deployment,
    site: str | None,
    allowed: set[int],
    free: list[_Free],
    opened: list[int],
    closed: list[int],
    sites_used: set[str],
) -> int | None:
    for i in [*opened, *closed]:
        if i not in allowed:
            continue
        node: Node = problem.nodes[i]
        if site is not None and not problem.serves(d, node, site):
            continue
        if d.constraints.spread == "node" and free[i].hosted.get(d.name, 0) >= 1:
            continue
        if d.constraints.spread == "site" and node.site in sites_used:
            continue
        prof = problem.profile_on(d, node)
        f = free[i]
        if (
            prof.cpu <= f.cpu + EPS
            and prof.memory_mb <= f.memory_mb + EPS
            and prof.accelerators <= f.accelerators
        ):
            return i
    return None
