"""Optimal placement: the integer program of :mod:`~modelport.deploy.cpsat`, solved in
rounds with OR-Tools CP-SAT, with a proven bound and the greedy baseline beside it.

1. **Check** each deployment alone (:func:`~modelport.deploy.explain.precheck`): one that
   no node can take is reported at once, with the constraint that blocks it.
2. **Solve by units.** Identical nodes that each hold many replicas form one unit
   (their capacities added up); all other nodes are units of one. This model relaxes only
   how replicas are packed inside a group, so its optimum is a lower bound on the true
   cost — the bound we report — and, with no mirror-image solutions to wade through, it
   is solved far faster than one variable per node would allow. This first round gets
   ``FIRST_ROUND`` of the time and no hint: the greedy plan, improved by a local search
   that closes nodes by moving their replicas (:mod:`~modelport.deploy.improve`), is
   only kept to fall back on.
3. **Pack** each group's replicas onto its nodes (:mod:`~modelport.deploy.packing`).
   Replicas that do not fit are placed again around the others (first fit, else a
   model of only those deployments), and where packing needed more nodes the local
   search then closes what it can. When nothing was lost to packing, the plan costs
   exactly what the model found — proven optimal when the model was.
4. **Go on** from the best plan so far with the time left. The groups now keep
   ``HEADROOM`` of their cores and memory free: the grouped relaxation's best plans
   fill them so full that they seldom pack, and the bound is usually proven by then
   (when a model with headroom is solved to optimality with time left, the next round
   is the relaxation again, from the best plan, so that time goes to the bound). Groups
   whose packing still loses more than ``LOSS`` of the cost become one unit per node
   (exact there, identical nodes used in fleet order). Models without headroom are
   relaxations of the problem (or the problem itself), so the reported bound is the
   best any of them proved. The rounds stop at ``NEIGHBOURHOOD`` of the time before the
   end.
5. **Search** exactly around the best packed plan (:mod:`~modelport.deploy.neighbourhood`):
   free a few paid nodes, place their deployments again with every other replica fixed,
   keep the move when the plan costs no more. If that finds a cheaper plan, the
   tie-break below has no model solution to start from and its time goes to the search.
6. **Tie-break** once, on the solution the cheapest plan came from: a short solve
   (``TIE_BREAK`` of the time, kept back for it) minimises network latency at that
   cost; its plan replaces the cheapest one if it packs at no higher cost.

That improved greedy plan is kept if it is cheaper (possible only when time runs out), and every
answer is re-checked against the problem in floating point before it is returned.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> nodes = (Node("big", "cloud", 16, 65536, 1.2, "eu"),
    ...          Node("small", "cloud", 4, 16384, 0.3, "eu"))
    >>> d = Deployment("m", "m:1", ReplicaProfile(2, 4096, 100), demand={"eu": 200},
    ...                latency_p99_ms=100)
    >>> plan = solve(Problem(nodes, (), (d,)), time_limit=5)
    >>> plan.status, plan.cost, [(p.node, p.replicas) for p in plan.placements]
    ('optimal', 0.3, [('small', 2)])
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from modelport.core.errors import ModelportError
from modelport.deploy import cpsat, explain
from modelport.deploy.greedy import complete, greedy_place
from modelport.deploy.improve import close_nodes
from modelport.deploy.model import Problem
from modelport.deploy.neighbourhood import cost as _cost
from modelport.deploy.neighbourhood import improve
from modelport.deploy.packing import pack_group, pack_partial
from modelport.deploy.plan import (
    Baseline,
    Explanation,
    Placement,
    Plan,
    check_placements,
    mean_network_latency,
    placement_cost,
    planned_deployments,
    utilisation,
)
from modelport.deploy.routing import route

Counts = dict[tuple[int, int], int]  # (deployment index, node index) -> replicas

#: Share of the first round's time limit (the rest goes on from its best plan).
FIRST_ROUND = 0.15
#: Packing loss (share of the plan's cost) above which the exact model takes over.
LOSS = 0.01
#: Share of a grouped unit's cores and memory left free after the first round.
HEADROOM = 0.015
#: Share of the time limit kept for the latency tie-break of the final plan.
TIE_BREAK = 0.08
#: Share of the time limit kept for the exact neighbourhood search on the packed plan.
NEIGHBOURHOOD = 0.5

log = logging.getLogger("modelport.deploy")


class _Clock:
    def __init__(self, limit: float) -> None:
        self.start = time.monotonic()
        self.limit = limit

    def left(self) -> float:
        return self.limit - (time.monotonic() - self.start)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def solve(
    problem: Problem,
    *,
    time_limit: float = 30.0,
    workers: int = 0,
    seed: int = 0,
    gap_limit: float = 0.0,
) -> Plan:
    """The cheapest placement of ``problem`` found within ``time_limit`` seconds, with
    its proven bound and gap, the greedy baseline, or an explanation when infeasible.

    ``workers`` is CP-SAT's number of search workers (0: chosen for the machine, see
    :func:`~modelport.deploy.cpsat.solver`); ``gap_limit`` stops as soon as the relative
    gap to the bound is that small.
    """
    clock = _Clock(time_limit)
    cp = cpsat.cp_model()
    greedy = greedy_place(problem)
    info: dict[str, Any] = {"name": "cp-sat", "time_limit": time_limit, "gap_limit": gap_limit}
    blockers = explain.precheck(problem)
    if blockers:
        return _empty(problem, "infeasible", greedy, explain.summarise(blockers), clock, info)
    units = cpsat.units(problem)
    info["groups"] = sum(1 for u in units if len(u) > 1)
    # The greedy plan improved by closing nodes: the plan to keep should the search
    # find nothing cheaper (and the next rounds' hint while it is the cheapest).
    start = close_nodes(problem, _counts(problem, greedy.placements), clock.left() * 0.05)
    # No hint in the first round: from a greedy plan CP-SAT's search stays near it, on
    # its own it finds better plans sooner (measured on the benchmark's fleets).
    b, s, status = _solve_units(
        problem, units, {}, clock.left() * FIRST_ROUND, workers, seed, gap_limit
    )
    if status == cp.UNKNOWN and clock.left() > 1.0:
        # Nothing found in the first round's share (a short limit on a large fleet):
        # go on, from the improved greedy plan if there is one, with half the time left.
        b, s, status = _solve_units(
            problem, units, start or {}, clock.left() * 0.5, workers, seed, gap_limit
        )
    info["workers"] = int(s.parameters.num_workers)
    if status == cp.INFEASIBLE:
        why = _explain_conflict(problem, units, clock.left(), seed)
        return _empty(problem, "infeasible", greedy, why, clock, info)
    if status not in (cp.OPTIMAL, cp.FEASIBLE):
        if status == cp.MODEL_INVALID:  # pragma: no cover - a bug in cpsat.build
            raise ModelportError(f"placement model invalid: {b.model.validate()}")
        return _fallback(problem, greedy, start, s.best_objective_bound, clock, info)
    bound = _bound(b, s, status)
    best: Counts | None = None
    # The model and solution that gave ``best`` (None when it needed a repair): the
    # latency tie-break runs once, on that, with the time kept back for it.
    source: tuple[cpsat.Model, dict[str, dict[Any, int]], int] | None = None
    reserve = time_limit * TIE_BREAK if b.has_latency else 0.0
    search = time_limit * NEIGHBOURHOOD if b.has_cost else 0.0
    headroom = 0.0
    for round_ in range(5):
        values = _values(b, s)
        model_cost = round(s.objective_value) if b.has_cost else 0
        counts, loose, crowded = _unpack(problem, b, values, clock)
        done: Counts | None = counts
        if loose:
            info["repaired"] = sorted(problem.deployments[d].name for d in loose)
            done = complete(problem, counts, loose) or _repair(
                problem, counts, loose, clock, workers, seed
            )
        closed = done
        if done and (loose or crowded):  # replicas moved to make them fit: close nodes
            closed = close_nodes(problem, done, min(2.0, clock.left() * 0.05))
        if _cheapest(problem, best, closed) is not best:
            best = closed
            source = (b, values, model_cost) if closed == counts else None
        info["rounds"] = round_ + 1
        log.debug(
            "round %d at %.1f s: %s, model %d, packed %s, best %s, bound %d, "
            "headroom %g, loose %d, crowded %d",
            round_ + 1,
            clock.elapsed(),
            s.status_name(status),
            model_cost,
            _cost(problem, closed) if closed else None,
            _cost(problem, best) if best else None,
            bound,
            headroom,
            len(loose),
            len(crowded),
        )
        if best and _cost(problem, best) - bound <= gap_limit * _cost(problem, best):
            break  # proven optimal, or within the gap asked for
        # The rounds leave the search and the tie-break their time, unless they have
        # no plan yet to search from.
        budget = clock.left() - reserve - search if best else clock.left() * 0.5
        if budget < (3.0 if best else 0.5):
            break
        # Solved to optimality and packed: a relaxation's plan is proven (caught just
        # above); a model with headroom proves nothing, so the time left goes to the
        # bound — the relaxation again, from the best plan.
        prove = status == cp.OPTIMAL and not crowded
        if prove and not headroom:
            break
        lost = best and _cost(problem, best) - model_cost > LOSS * _cost(problem, best)
        if crowded and headroom and lost:
            # Packing the groups' replicas onto their nodes cost more than LOSS even
            # with headroom: those groups become one unit per node (exact); the
            # others stay grouped.
            info["split"] = info.get("split", 0) + len(crowded)
            units = [u for k, u in enumerate(b.units) if k not in crowded]
            units += [[i] for k in sorted(crowded) for i in b.units[k]]
        # Keep searching from the best plan (a fresh model, with the time left), with
        # a little headroom in the groups (none when the round is to prove the bound):
        # the relaxation's best plans fill the groups so full that they seldom pack.
        headroom = 0.0 if prove else HEADROOM
        info["headroom"] = HEADROOM
        b, s, status = _solve_units(
            problem,
            units,
            _cheapest(problem, best, start) or counts,
            budget * 0.9,
            workers,
            seed,
            gap_limit,
            headroom,
        )
        if status not in (cp.OPTIMAL, cp.FEASIBLE):
            break
        if not headroom:  # a relaxation (grouped) or the problem itself (per node)
            bound = max(bound, _bound(b, s, status))
    if best is not None and _cost(problem, best) > bound and clock.left() - reserve > 0.5:
        # The exact neighbourhood search on the packed plan: it wins back what packing
        # and headroom lost. Should it find a cheaper plan, the tie-break (which needs
        # the model's own plan) has nothing to run on and its time goes to the search.
        rng = random.Random(seed)  # noqa: S311  (search moves, not secrets)
        before, stats = _cost(problem, best), dict[str, int]()
        enough = math.floor(bound / (1.0 - gap_limit)) if gap_limit < 1 else before
        keep = reserve if source is not None else 0.3
        better = improve(problem, best, clock.left() - keep, rng, workers, stats, enough)
        if _cost(problem, better) < before:
            best, source = better, None
            best = improve(problem, best, clock.left() - 0.3, rng, workers, stats, enough)
        info["neighbourhood"] = {
            **stats,
            "from": before / cpsat.COST_SCALE,
            "to": _cost(problem, best) / cpsat.COST_SCALE,
        }
    if source is not None and best is not None and clock.left() > 0.5:
        best = _nearer(problem, best, source, clock, workers, seed)
    info["units"] = len(b.units)
    if start and (best is None or _cost(problem, start) < _cost(problem, best)):
        info["kept_start"] = True
        best = start
    if best is None:
        return _fallback(problem, greedy, start, bound, clock, info)
    return _result(problem, _placements(problem, best), bound, greedy, clock, info)


def _solve_units(
    problem: Problem,
    units: list[list[int]],
    hint: Counts,
    budget: float,
    workers: int,
    seed: int,
    gap_limit: float = 0.0,
    headroom: float = 0.0,
) -> tuple[cpsat.Model, Any, Any]:
    b = cpsat.build(problem, units, headroom=headroom)
    if b.has_cost:
        b.model.minimize(b.cost)
    cpsat.hint(problem, b, hint)
    s = cpsat.solver(budget, workers, seed, gap_limit)
    return b, s, s.solve(b.model)


def _bound(b: cpsat.Model, s: Any, status: Any) -> int:
    if not b.has_cost:
        return 0
    if status == cpsat.cp_model().OPTIMAL:
        return round(float(s.objective_value))
    return math.ceil(float(s.best_objective_bound) - 1e-6)


def _counts(problem: Problem, placements: Sequence[Placement]) -> Counts:
    di = {d.name: k for k, d in enumerate(problem.deployments)}
    ni = {n.name: k for k, n in enumerate(problem.nodes)}
    return {(di[p.deployment], ni[p.node]): p.replicas for p in placements if p.replicas}


def _values(b: cpsat.Model, s: Any) -> dict[str, dict[Any, int]]:
    return {
        "x": {key: int(s.value(v)) for key, v in b.x.items()},
        "u": {k: int(s.value(v)) for k, v in b.u.items()},
    }


def _nearer(
    problem: Problem,
    best: Counts,
    source: tuple[cpsat.Model, dict[str, dict[Any, int]], int],
    clock: _Clock,
    workers: int,
    seed: int,
) -> Counts:
    """``best`` or, when the latency tie-break of the solution it came from packs at no
    higher cost, that plan."""
    b, values, cost = source
    budget = min(clock.left() - 0.2, max(clock.limit * TIE_BREAK, clock.left() * 0.1))
    nearer = _tie_break(b, values, cost, budget, workers, seed)
    if nearer is None:
        return best
    counts, loose, _ = _unpack(problem, b, nearer, clock)
    if loose or _cost(problem, counts) > _cost(problem, best):
        return best
    return counts


def _tie_break(
    b: cpsat.Model,
    values: dict[str, dict[Any, int]],
    best: int,
    budget: float,
    workers: int,
    seed: int,
) -> dict[str, dict[Any, int]] | None:
    """Among solutions of cost ``best``, one with the lowest network latency (solved on
    a copy, so ``b`` keeps its cost objective)."""
    cp = cpsat.cp_model()
    m = b.model.clone()
    m.clear_hints()
    for key, var in b.x.items():
        m.add_hint(m.get_int_var_from_proto_index(var.index), values["x"][key])
    for k, var in b.u.items():
        m.add_hint(m.get_int_var_from_proto_index(var.index), values["u"][k])
    if b.has_cost:
        m.add(b.cost <= best)
    m.minimize(b.latency)
    s = cpsat.solver(budget, workers, seed)
    if s.solve(m) not in (cp.OPTIMAL, cp.FEASIBLE):
        return None
    return {
        "x": {key: int(s.value(v)) for key, v in b.x.items()},
        "u": {k: int(s.value(v)) for k, v in b.u.items()},
    }


def _direct(b: cpsat.Model, values: dict[str, dict[Any, int]]) -> Counts:
    return {(d, b.units[k][0]): r for (d, k), r in values["x"].items() if r > 0}


def _unpack(
    problem: Problem, b: cpsat.Model, values: dict[str, dict[Any, int]], clock: _Clock
) -> tuple[Counts, set[int], set[int]]:
    """Pack each group's replicas onto its nodes.

    Returns the packed counts, the deployments left to repair (those with a replica
    that did not fit its group; all their replicas are left out of the counts, to be
    placed again together) and the units that needed more nodes than paid for.
    """
    per_unit: dict[int, dict[int, int]] = defaultdict(dict)
    for (d, k), r in values["x"].items():
        if r > 0:
            per_unit[k][d] = r
    out: Counts = {}
    loose: set[int] = set()
    tight: set[int] = set()
    for k, counts in sorted(per_unit.items()):
        paid = values["u"][k]
        packed = pack_group(problem, b.units[k], counts, paid, max(0.2, clock.left() / 20))
        if packed is None:
            packed, left = pack_partial(problem, b.units[k], counts)
            loose |= set(left)
        if len({i for _, i in packed}) > paid or set(counts) & loose:
            tight.add(k)
        out.update(packed)
    return {key: r for key, r in out.items() if key[0] not in loose}, loose, tight


def _repair(
    problem: Problem, fixed: Counts, loose: set[int], clock: _Clock, workers: int, seed: int
) -> Counts | None:
    """Place the ``loose`` deployments with every other replica kept where it is."""
    cp = cpsat.cp_model()
    b = cpsat.build(problem, [[i] for i in range(len(problem.nodes))])
    for (d, i), var in b.x.items():
        if d not in loose:
            b.model.add(var == fixed.get((d, i), 0))
    cpsat.hint(problem, b, fixed)
    if b.has_cost:
        b.model.minimize(b.cost)
    s = cpsat.solver(max(0.5, clock.left() * 0.3), workers, seed)
    if s.solve(b.model) not in (cp.OPTIMAL, cp.FEASIBLE):
        return None
    return _direct(b, _values(b, s))


def _cheapest(problem: Problem, *plans: Counts | None) -> Counts | None:
    """The cheapest of the plans given (the first on ties); None when there are none."""
    found = [c for c in plans if c]
    return min(found, key=lambda c: _cost(problem, c)) if found else None


def _placements(problem: Problem, counts: Counts) -> tuple[Placement, ...]:
    nodes = problem.nodes
    out = []
    for di, d in enumerate(problem.deployments):
        reps = {i: r for (dj, i), r in counts.items() if dj == di and r > 0}
        serves = route(problem, d, reps)
        out += [Placement(d.name, nodes[i].name, r, serves[i]) for i, r in sorted(reps.items())]
    return tuple(out)


def _explain_conflict(
    problem: Problem, groups: list[list[int]], budget: float, seed: int
) -> Explanation:
    """A small set of deployments that cannot be placed together, described."""
    cp = cpsat.cp_model()
    per_try = max(0.5, min(budget, 30.0) / 6)

    def core_of(subset: set[int]) -> list[int] | None:
        b = cpsat.build(problem, groups, only=subset, assumptions=True)
        b.model.add_assumptions(list(b.enforce.values()))
        s = cpsat.solver(per_try, 1, seed)
        if s.solve(b.model) != cp.INFEASIBLE:
            return None
        lits = {b.enforce[k].index: k for k in b.enforce}
        found = [lits[i] for i in s.sufficient_assumptions_for_infeasibility() if i in lits]
        return found or sorted(subset)

    current = set(core_of(set(range(len(problem.deployments)))) or ())
    if current and len(current) <= 12:
        for k in sorted(current):
            if len(current) > 1 and core_of(current - {k}) is not None:
                current.discard(k)
    if not current:
        return Explanation(
            "infeasible: the deployments fit the nodes' total capacity but cannot be packed "
            "node by node; add nodes or relax constraints"
        )
    return explain.describe_conflict(problem, [problem.deployments[k].name for k in current])


def _fallback(
    problem: Problem,
    greedy: Baseline,
    start: Counts,
    bound: float,
    clock: _Clock,
    info: dict[str, Any],
) -> Plan:
    """No solver answer in time: the (improved) greedy plan if there is one, else
    ``unknown``."""
    if start:
        info["kept_start"] = True
        placements = _placements(problem, start)
        return _result(problem, placements, int(bound), greedy, clock, info, start)
    why = Explanation(
        f"no placement found within {clock.limit:g} s and none proven impossible; "
        "raise --time-limit"
    )
    return _empty(problem, "unknown", greedy, why, clock, info)


def _result(
    problem: Problem,
    placements: tuple[Placement, ...],
    bound: int,
    greedy: Baseline,
    clock: _Clock,
    info: dict[str, Any],
    counts: Counts | None = None,
) -> Plan:
    errors = check_placements(problem, placements)
    if errors:  # pragma: no cover - would be a bug in the model
        raise ModelportError("placement failed its own check: " + "; ".join(errors[:5]))
    scaled = _cost(problem, counts or _counts(problem, placements))
    bound = min(bound, scaled)
    status = "optimal" if bound >= scaled else "feasible"
    cost = placement_cost(problem, placements)
    return Plan(
        status=status,
        cost=cost,
        bound=cost if status == "optimal" else bound / cpsat.COST_SCALE,
        gap=0.0 if status == "optimal" else round((scaled - bound) / scaled, 6),
        placements=placements,
        utilisation=tuple(utilisation(problem, placements)),
        greedy=greedy,
        explanation=None,
        deployments=planned_deployments(problem, placements),
        mean_latency_ms=mean_network_latency(problem, placements),
        solve_seconds=clock.elapsed(),
        solver=info,
    )


def _empty(
    problem: Problem,
    status: str,
    greedy: Baseline,
    why: Explanation,
    clock: _Clock,
    info: dict[str, Any],
) -> Plan:
    return Plan(
        status=status,
        cost=None,
        bound=None,
        gap=None,
        placements=(),
        utilisation=(),
        greedy=greedy,
        explanation=why,
        deployments=planned_deployments(problem, ()),
        solve_seconds=clock.elapsed(),
        solver=info,
    )
