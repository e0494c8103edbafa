"""Why a placement is impossible, in words a person can act on.

Two levels:

- :func:`precheck` looks at each deployment alone: a deployment that no node accepts
  (site, kind, labels, size), whose demand no allowed node can answer within the latency
  objective, whose demand exceeds what every allowed node together can serve, or whose
  ``min_replicas`` cannot be spread as asked, is named with the constraint that blocks
  it and the numbers behind it.
- :func:`describe_conflict` explains a set of deployments that each fit alone but not
  together (an infeasible core found by the solver): which resource they compete for on
  which nodes, and how much is missing.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> n = Node("edge-1", "edge", cpu=2, memory_mb=1024, site="plant")
    >>> d = Deployment("big", "big:1", ReplicaProfile(1, 4096, 10))
    >>> [(b.deployment, b.constraint) for b in precheck(Problem((n,), (), (d,)))]
    [('big', 'resources')]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from modelport.deploy.model import EPS, Deployment, Node, Problem
from modelport.deploy.plan import Blocker, Explanation


def _names(nodes: Iterable[Node], limit: int = 6) -> str:
    names = sorted(n.name for n in nodes)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _fmt(x: float) -> str:
    return f"{x:g}"


def _hosting_blocker(problem: Problem, d: Deployment) -> Blocker:
    """The first filter (site → kind → labels → size) that leaves no node for ``d``."""
    c = d.constraints
    pool = list(problem.nodes)
    if c.site is not None:
        at_site = [n for n in pool if n.site == c.site]
        if not at_site:
            sites = sorted({n.site for n in problem.nodes})
            return Blocker(
                d.name,
                "site",
                f"constraints.site is {c.site!r} but no node is at that site "
                f"(sites with nodes: {', '.join(sites)})",
                "fix constraints.site or add a node with that site to the fleet",
            )
        pool = at_site
    if c.kind is not None:
        of_kind = [n for n in pool if n.kind == c.kind]
        if not of_kind:
            return Blocker(
                d.name,
                "kind",
                f"constraints.kind is {c.kind!r} but none of the nodes "
                f"{_names(pool)} is of that kind",
                "drop constraints.kind or add such a node",
                tuple(n.name for n in pool),
            )
        pool = of_kind
    if c.labels:
        labelled = [n for n in pool if all(n.labels.get(k) == v for k, v in c.labels.items())]
        if not labelled:
            want = ", ".join(f"{k}={v}" for k, v in sorted(c.labels.items()))
            where = f" at site {c.site!r}" if c.site else ""
            return Blocker(
                d.name,
                "labels",
                f"no node{where} has the labels {want} (looked at {_names(pool)})",
                "label a node accordingly or relax constraints.labels",
                tuple(n.name for n in pool),
            )
        pool = labelled
    p = d.profile
    if p.accelerators and not any(n.accelerators >= p.accelerators for n in pool):
        return Blocker(
            d.name,
            "accelerators",
            f"a replica needs {p.accelerators} accelerator(s); "
            f"the allowed nodes ({_names(pool)}) have at most "
            f"{max(n.accelerators for n in pool)}",
            "add a node with accelerators or set profile.accelerators to 0",
            tuple(n.name for n in pool),
        )
    biggest = max(pool, key=lambda n: (n.memory_mb, n.cpu))
    bp = problem.profile_on(d, biggest)
    return Blocker(
        d.name,
        "resources",
        f"one replica needs {_fmt(bp.cpu)} cores and "
        f"{_fmt(bp.memory_mb)} MB; no allowed node is that large (largest: {biggest.name} "
        f"with {_fmt(biggest.cpu)} cores, {_fmt(biggest.memory_mb)} MB)",
        "add a larger node, allow other nodes, or shrink the model (modelport optimize)",
        tuple(n.name for n in pool),
    )


def _capacity(problem: Problem, d: Deployment, nodes: Sequence[Node]) -> tuple[int, float]:
    """Most replicas ``d`` can have on ``nodes`` when alone, and their rps."""
    if d.constraints.spread == "site":
        best: dict[str, tuple[int, float]] = {}
        for n in nodes:
            rps = problem.profile_on(d, n).rps_per_replica
            if n.site not in best or rps > best[n.site][1]:
                best[n.site] = (1, rps)
        pairs = list(best.values())
    else:
        pairs = [
            (problem.max_replicas_on(d, n), problem.profile_on(d, n).rps_per_replica) for n in nodes
        ]
    if d.max_replicas is not None:
        pairs = sorted(pairs, key=lambda kr: -kr[1])
        left, capped = d.max_replicas, []
        for k, rps in pairs:
            take = min(k, left)
            capped.append((take, rps))
            left -= take
        pairs = capped
    return sum(k for k, _ in pairs), sum(k * rps for k, rps in pairs)


def precheck(problem: Problem) -> list[Blocker]:
    """Blockers of deployments that cannot be placed even on an empty fleet."""
    out: list[Blocker] = []
    for d in problem.deployments:
        allowed = [n for n in problem.nodes if problem.allowed(d, n)]
        if not allowed:
            out.append(_hosting_blocker(problem, d))
            continue
        blocked = False
        for site in d.demand_sites:
            serving = [n for n in allowed if problem.serves(d, n, site)]
            if not serving:
                out.append(_latency_blocker(problem, d, site, allowed))
                blocked = True
                continue
            _, rps = _capacity(problem, d, serving)
            if rps + EPS < d.demand[site]:
                out.append(
                    Blocker(
                        d.name,
                        "demand",
                        f"site {site!r} demands {_fmt(d.demand[site])} rps "
                        f"but every node that can serve it together sustains only "
                        f"{_fmt(round(rps, 3))} rps ({_names(serving)})",
                        "add capacity near that site, lower the demand, relax the latency "
                        "objective or raise max_replicas",
                        tuple(n.name for n in serving),
                    )
                )
                blocked = True
        if blocked:
            continue
        count, _ = _capacity(problem, d, problem_candidates(problem, d))
        if count < d.min_replicas:
            what = {"site": "distinct sites", "node": "distinct nodes"}.get(
                d.constraints.spread or "", "replicas"
            )
            reach = " that reach its clients in time" if d.demand_sites else ""
            out.append(
                Blocker(
                    d.name,
                    "spread" if d.constraints.spread else "min_replicas",
                    f"min_replicas is {d.min_replicas} but the allowed nodes{reach} offer "
                    f"room for only {count} ({what})",
                    "lower min_replicas, relax constraints.spread or add eligible nodes",
                    tuple(n.name for n in allowed),
                )
            )
    return out


def problem_candidates(problem: Problem, d: Deployment) -> list[Node]:
    return [problem.nodes[i] for i in problem.candidates(d)]


def _latency_blocker(problem: Problem, d: Deployment, site: str, allowed: list[Node]) -> Blocker:
    reach = [
        (net + problem.profile_on(d, n).latency_ms, net, n)
        for n in allowed
        if (net := problem.network_latency(n, site)) is not None
    ]
    if not reach:
        return Blocker(
            d.name,
            "latency",
            f"no allowed node ({_names(allowed)}) has a network path to "
            f"site {site!r} (give latency_ms for them in that site's entry)",
            f"add latency_ms entries for site {site!r} or allow nodes that reach it",
            tuple(n.name for n in allowed),
        )
    total, net, best = min(reach, key=lambda t: (t[0], t[2].name))
    compute = total - net
    return Blocker(
        d.name,
        "latency",
        f"site {site!r} needs p99 <= {_fmt(d.latency_p99_ms)} ms; the "
        f"fastest allowed node {best.name} gives {_fmt(net)} ms network + "
        f"{_fmt(round(compute, 3))} ms compute = {_fmt(round(total, 3))} ms",
        f"raise latency_p99_ms to at least {math.ceil(total)} ms, add a node nearer "
        f"{site!r}, or use a faster profile",
        (best.name,),
    )


def min_replicas_needed(problem: Problem, d: Deployment) -> int:
    """A lower bound on the replicas ``d`` needs on its candidate nodes."""
    cands = problem_candidates(problem, d)
    need = d.min_replicas
    if cands and d.total_demand > 0:
        best = max(problem.profile_on(d, n).rps_per_replica for n in cands)
        need = max(need, math.ceil(d.total_demand / best - 1e-9))
    return need


def describe_conflict(problem: Problem, names: Sequence[str]) -> Explanation:
    """Explain why the deployments ``names`` (each placeable alone) do not fit together."""
    deps = [d for d in problem.deployments if d.name in set(names)]
    nodes = sorted(
        {n.name: n for d in deps for n in problem_candidates(problem, d)}.values(),
        key=lambda n: n.name,
    )
    need = {d.name: min_replicas_needed(problem, d) for d in deps}
    resources: list[tuple[str, str, Callable[[Deployment], float], Callable[[Node], float]]] = [
        ("memory", "MB", lambda d: d.profile.memory_mb, lambda n: n.memory_mb),
        ("cpu", "cores", lambda d: d.profile.cpu, lambda n: n.cpu),
        (
            "accelerators",
            "accelerators",
            lambda d: d.profile.accelerators,
            lambda n: n.accelerators,
        ),
    ]
    constraint, detail = "packing", ""
    for name, unit, per_replica, per_node in resources:
        want = sum(need[d.name] * per_replica(d) for d in deps)
        have = sum(per_node(n) for n in nodes)
        if want > have + EPS:
            constraint = name
            detail = (
                f"together they need at least {_fmt(round(want, 3))} {unit} but the nodes "
                f"they may use ({_names(nodes)}) have {_fmt(round(have, 3))} {unit}"
            )
            break
    if not detail:
        detail = (
            f"their replicas fit the total capacity of the nodes they may use "
            f"({_names(nodes)}) but cannot be packed node by node within the latency and "
            "spread constraints"
        )
    listed = ", ".join(sorted(need))
    hint = (
        "add capacity to or next to these nodes, allow more nodes (labels, site), relax "
        "latency_p99_ms, or lower demand / min_replicas"
    )
    blockers = tuple(
        Blocker(
            d.name,
            constraint,
            (
                f"cannot be placed together with {', '.join(sorted(set(need) - {d.name}))}: "
                if len(need) > 1
                else "cannot be placed: "
            )
            + detail,
            hint,
            tuple(n.name for n in problem_candidates(problem, d)),
            tuple(sorted(set(need) - {d.name})),
        )
        for d in sorted(deps, key=lambda d: d.name)
    )
    shown = listed if len(need) <= 8 else ", ".join(sorted(need)[:8]) + f" and {len(need) - 8} more"
    summary = (
        f"infeasible: {len(deps)} deployment(s) ({shown}) compete for the same nodes ({constraint})"
    )
    return Explanation(summary, blockers)


def summarise(blockers: Sequence[Blocker]) -> Explanation:
    """An explanation from per-deployment blockers."""
    names = sorted({b.deployment for b in blockers})
    kinds = sorted({b.constraint for b in blockers})
    return Explanation(
        f"infeasible: {', '.join(names)} cannot be placed ({', '.join(kinds)})", tuple(blockers)
    )
