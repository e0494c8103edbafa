"""Large-neighbourhood search on placements, exact per node.

The grouped model (:mod:`modelport.deploy.cpsat`) finds cheap plans fast, but it only
relaxes how replicas pack inside a pool, so its plans are packed afterwards with some
room kept free. :func:`improve` takes a packed plan and repeatedly frees a few paid
nodes: every deployment with a replica on them is placed again — all its replicas, on
any node — by an exact CP-SAT model over a sub-problem in which every other replica
stays where it is. Nodes keep only the capacity the fixed replicas leave them; a node
already paid for by a fixed replica costs nothing more. A move is kept when the whole
plan costs no more than before, so the plan stays valid and never gets dearer.

The sub-problem is an ordinary :class:`~modelport.deploy.model.Problem`, so it has
every rule of the full one (latency objectives, Hall's demand condition, spread,
labels, accelerators) without a second model builder.

Example:
    >>> import random
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> nodes = tuple(Node(f"n{k}", "cloud", 4, 8192, 1.0, "eu") for k in range(3))
    >>> deps = tuple(
    ...     Deployment(f"m{k}", "m:1", ReplicaProfile(1, 2048, 100), {"eu": 90}, 50)
    ...     for k in range(3))
    >>> p = Problem(nodes, (), deps)
    >>> sorted(improve(p, {(0, 0): 1, (1, 1): 1, (2, 2): 1}, 5.0, random.Random(0)).values())
    [1, 1, 1]
    >>> len({i for (_, i) in improve(p, {(0, 0): 1, (1, 1): 1, (2, 2): 1}, 5.0,
    ...                              random.Random(0))})
    1
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace

from modelport.deploy import cpsat
from modelport.deploy.model import Node, Problem

Counts = dict[tuple[int, int], int]  # (deployment index, node index) -> replicas

log = logging.getLogger("modelport.deploy")

#: Paid nodes freed per move, drawn at random in this range.
FREED = (2, 6)
#: Most deployments moved at once (beyond the seed node's own).
MOVING = 30
#: Longest solve of one sub-problem, seconds.
STEP_LIMIT = 1.0
#: Capacity given to a node the fixed replicas fill, so that no replica fits it.
FULL = 1e-6


def improve(
    problem: Problem,
    counts: Mapping[tuple[int, int], int],
    budget: float,
    rng: random.Random,
    workers: int = 0,
    stats: dict[str, int] | None = None,
    enough: int = 0,
) -> Counts:
    """A plan no dearer than ``counts`` (a valid placement), improved by freeing a few
    paid nodes at a time for at most ``budget`` seconds or until it costs ``enough``
    (in :func:`cost`'s units). ``stats``, when given, counts the ``moves`` tried and
    those ``kept`` because they lowered the cost."""
    best: Counts = {k: r for k, r in counts.items() if r > 0}
    best_cost = cost(problem, best)
    deadline = time.monotonic() + budget
    steps = kept = 0
    near = [set(problem.candidates(d)) for d in problem.deployments]
    while True:
        left = deadline - time.monotonic()
        paid = sorted({i for _, i in best if problem.nodes[i].cost_per_hour > 0})
        if left < 0.2 or len(paid) < 2 or best_cost <= enough:
            log.debug("neighbourhood search: %d moves, %d kept", steps, kept)
            if stats is not None:
                stats["moves"] = stats.get("moves", 0) + steps
                stats["kept"] = stats.get("kept", 0) + kept
            return best
        freed = _pick(problem, best, paid, near, rng)
        trial, exact = _move(problem, best, freed, min(STEP_LIMIT, left), workers, rng)
        steps += 1
        trial_cost = cost(problem, trial) if trial is not None else best_cost + 1
        kept += trial_cost < best_cost
        if trial is not None and trial_cost <= best_cost:
            best, best_cost = trial, trial_cost
        if exact:  # every deployment moved and the move is proven optimal
            deadline = 0.0


def cost(problem: Problem, counts: Mapping[tuple[int, int], int]) -> int:
    """The plan's cost in the model's integer units."""
    used = {i for (_, i), r in counts.items() if r > 0}
    return sum(round(problem.nodes[i].cost_per_hour * cpsat.COST_SCALE) for i in used)


def _pick(
    problem: Problem,
    counts: Counts,
    paid: list[int],
    near: list[set[int]],
    rng: random.Random,
) -> set[int]:
    """A few paid nodes that share deployments' candidate nodes: a seed node, then
    nodes where its deployments could also run, while the deployments to move stay
    few enough to solve quickly."""
    hosted: dict[int, set[int]] = defaultdict(set)
    for d, i in counts:
        hosted[i].add(d)
    seed = rng.choice(paid)
    pool = sorted(set().union(*(near[d] for d in hosted[seed])) & set(paid) - {seed})
    rng.shuffle(pool)
    freed, moving = {seed}, set(hosted[seed])
    want = rng.randint(*FREED)
    for i in pool:
        if len(freed) >= want or len(moving | hosted[i]) > MOVING:
            break
        freed.add(i)
        moving |= hosted[i]
    return freed


def _move(
    problem: Problem,
    counts: Counts,
    freed: set[int],
    limit: float,
    workers: int,
    rng: random.Random,
) -> tuple[Counts | None, bool]:
    """``counts`` with every deployment on the ``freed`` nodes placed again (exactly,
    around the others), or None when the solver found nothing in ``limit``; and whether
    that is the optimum of the whole problem (every deployment moved, solved exactly)."""
    moving = sorted({d for d, i in counts if i in freed})
    fixed = {k: r for k, r in counts.items() if k[0] not in moving}
    sub = _sub_problem(problem, fixed, moving)
    b = cpsat.build(sub, [[i] for i in range(len(sub.nodes))])
    if not b.has_cost:
        return None, False
    b.model.minimize(b.cost)
    index = {di: j for j, di in enumerate(moving)}
    hint = {(index[d], i): r for (d, i), r in counts.items() if d in index}
    cpsat.hint(sub, b, hint)
    cp = cpsat.cp_model()
    s = cpsat.solver(limit, workers or 2, rng.randrange(1 << 30))
    status = s.solve(b.model)
    if status not in (cp.OPTIMAL, cp.FEASIBLE):
        return None, False
    out = dict(fixed)
    for (j, k), v in b.x.items():
        if r := int(s.value(v)):
            out[(moving[j], b.units[k][0])] = r
    return out, status == cp.OPTIMAL and len(moving) == len(problem.deployments)


def _sub_problem(problem: Problem, fixed: Counts, moving: list[int]) -> Problem:
    """``moving``'s deployments on the capacity the ``fixed`` replicas leave; nodes that
    host a fixed replica are already paid for."""
    used: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for (d, i), r in fixed.items():
        p = problem.profile_on(problem.deployments[d], problem.nodes[i])
        u = used[i]
        u[0] += p.cpu * r
        u[1] += p.memory_mb * r
        u[2] += p.accelerators * r
    nodes: list[Node] = []
    for i, n in enumerate(problem.nodes):
        if i not in used:
            nodes.append(n)
            continue
        cpu, mem, acc = used[i]
        nodes.append(
            replace(
                n,
                cpu=max(n.cpu - cpu, FULL),
                memory_mb=max(n.memory_mb - mem, FULL),
                accelerators=max(n.accelerators - int(acc), 0),
                cost_per_hour=0.0,
            )
        )
    deps = tuple(problem.deployments[d] for d in moving)
    return Problem(tuple(nodes), problem.sites, deps)
