"""Local search from a feasible placement: close paid nodes by moving their replicas.

Greedy first-fit never revisits a decision, so it leaves nodes open that a second look
would close. :func:`close_nodes` takes each used node in turn, most expensive first, and
places every deployment it hosts again first-fit around all other replicas with that
node left out; the move is kept when the plan gets cheaper. It stops when a whole pass
closes nothing or the time is up. Every plan it returns is one that first-fit could
build, so it is feasible whenever the plan it started from was; the solver uses it as its
starting hint (and as the plan to fall back on), the reported baseline stays the greedy
plan itself.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> nodes = (Node("a", "cloud", 4, 8192, 1.0, "eu"), Node("b", "cloud", 4, 8192, 1.0, "eu"))
    >>> d = Deployment("m", "m:1", ReplicaProfile(1, 2048, 100), {"eu": 150}, 50)
    >>> close_nodes(Problem(nodes, (), (d,)), {(0, 0): 1, (0, 1): 1}, 1.0)
    {(0, 1): 2}
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from modelport.deploy.greedy import complete
from modelport.deploy.model import Problem

Counts = dict[tuple[int, int], int]  # (deployment index, node index) -> replicas


def plan_cost(problem: Problem, counts: Mapping[tuple[int, int], int]) -> float:
    """What the nodes hosting a replica in ``counts`` cost per hour."""
    used = {i for (_, i), r in counts.items() if r > 0}
    return sum(problem.nodes[i].cost_per_hour for i in used)


def close_nodes(problem: Problem, counts: Mapping[tuple[int, int], int], budget: float) -> Counts:
    """A plan no dearer than ``counts`` with nodes closed where first-fit can move their
    replicas elsewhere, searched for at most ``budget`` seconds."""
    best: Counts = {k: r for k, r in counts.items() if r > 0}
    deadline = time.monotonic() + budget
    cost = plan_cost(problem, best)
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        used = sorted({i for _, i in best}, key=lambda i: (-problem.nodes[i].cost_per_hour, i))
        for i in used:
            if time.monotonic() >= deadline or problem.nodes[i].cost_per_hour <= 0:
                break
            hosted = {d for d, j in best if j == i}
            fixed = {k: r for k, r in best.items() if k[0] not in hosted}
            trial = complete(problem, fixed, sorted(hosted), exclude={i})
            if trial is not None and plan_cost(problem, trial) < cost - 1e-9:
                best = {k: r for k, r in trial.items() if r > 0}
                cost = plan_cost(problem, best)
                improved = True
    return best
