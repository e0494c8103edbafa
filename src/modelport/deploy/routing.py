"""Which replicas answer which client site: a small min-cost flow per deployment.

The solver decides how many replicas run where; this module then routes each site's
demand to replicas that reach it within the latency objective, nearest first, as a
min-cost flow (successive shortest paths) in integer units of 1/100 rps. The graphs are
tiny (the nodes hosting one deployment × its client sites), so plain Python is enough.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile, Site
    >>> nodes = (Node("near", "edge", 2, 2048, 0, "a"), Node("far", "cloud", 8, 8192, 1, "eu"))
    >>> site = Site("a", {"near": 1, "far": 30})
    >>> d = Deployment("m", "m:1", ReplicaProfile(1, 512, 100), {"a": 150}, 100)
    >>> route(Problem(nodes, (site,), (d,)), d, {0: 1, 1: 1})
    {0: {'a': 100.0}, 1: {'a': 50.0}}
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

from modelport.core.errors import ModelportError
from modelport.deploy.model import Deployment, Problem

UNITS = 100  # 1/100 rps


def route(
    problem: Problem, d: Deployment, replicas: Mapping[int, int]
) -> dict[int, dict[str, float]]:
    """Requests/s of each demand site answered by the replicas on each node index.

    Raises ModelportError if the replicas cannot answer the demand (a caller bug: the
    solver only returns placements that can).
    """
    nodes = problem.nodes
    sites = d.demand_sites
    hosts = sorted(i for i, k in replicas.items() if k > 0)
    out: dict[int, dict[str, float]] = {i: {} for i in hosts}
    if not sites or not hosts:
        return out
    # vertices: 0 source, 1..H hosts, H+1..H+S sites, H+S+1 sink
    h, s_count = len(hosts), len(sites)
    sink = h + s_count + 1
    graph: list[list[int]] = [[] for _ in range(sink + 1)]
    to: list[int] = []
    cap: list[int] = []
    cost: list[float] = []

    def edge(u: int, v: int, c: int, w: float) -> None:
        graph[u].append(len(to))
        to.append(v)
        cap.append(c)
        cost.append(w)
        graph[v].append(len(to))
        to.append(u)
        cap.append(0)
        cost.append(-w)

    for k, i in enumerate(hosts, start=1):
        prof = problem.profile_on(d, nodes[i])
        edge(0, k, math.floor(prof.rps_per_replica * UNITS * replicas[i] + 1e-6), 0.0)
        for j, s in enumerate(sites, start=h + 1):
            if problem.serves(d, nodes[i], s):
                edge(k, j, 1 << 60, problem.network_latency(nodes[i], s) or 0.0)
    want = 0
    for j, s in enumerate(sites, start=h + 1):
        units = math.ceil(d.demand[s] * UNITS - 1e-6)
        want += units
        edge(j, sink, units, 0.0)
    got = _min_cost_flow(graph, to, cap, cost, 0, sink)
    if got < want:
        raise ModelportError(f"{d.name}: replicas cannot answer the demand ({got} < {want})")
    for k, i in enumerate(hosts, start=1):
        for e in graph[k]:
            j = to[e]
            if h < j <= h + s_count and e % 2 == 0:
                sent = cap[e ^ 1]  # flow on an edge is the residual capacity of its twin
                if sent > 0:
                    s = sites[j - h - 1]
                    out[i][s] = min(sent / UNITS, d.demand[s])
    return out


def _min_cost_flow(
    graph: list[list[int]], to: list[int], cap: list[int], cost: list[float], src: int, dst: int
) -> int:
    """Successive shortest paths (Bellman-Ford/SPFA); returns the flow sent."""
    flow = 0
    n = len(graph)
    while True:
        dist = [math.inf] * n
        prev = [-1] * n
        dist[src] = 0.0
        queue, queued = deque([src]), [False] * n
        queued[src] = True
        while queue:
            u = queue.popleft()
            queued[u] = False
            for e in graph[u]:
                if cap[e] > 0 and dist[u] + cost[e] < dist[to[e]] - 1e-12:
                    dist[to[e]] = dist[u] + cost[e]
                    prev[to[e]] = e
                    if not queued[to[e]]:
                        queue.append(to[e])
                        queued[to[e]] = True
        if dist[dst] == math.inf:
            return flow
        push, v = 1 << 62, dst
        while v != src:
            e = prev[v]
            push = min(push, cap[e])
            v = to[e ^ 1]
        v = dst
        while v != src:
            e = prev[v]
            cap[e] -= push
            cap[e ^ 1] += push
            v = to[e ^ 1]
        flow += push
