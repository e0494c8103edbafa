"""The local search that closes nodes: never an infeasible plan, never a dearer one."""

from __future__ import annotations

import pytest

from modelport.deploy.greedy import greedy_place
from modelport.deploy.improve import close_nodes, plan_cost
from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
from modelport.deploy.placement import _counts, _placements
from modelport.deploy.plan import check_placements
from tests.deploy.test_placement import grouped_problem, random_problem


@pytest.mark.parametrize("seed", range(40))
def test_local_search_keeps_plans_feasible_and_never_dearer(seed: int):
    for problem in (random_problem(seed), grouped_problem(seed)):
        greedy = greedy_place(problem)
        if not greedy.placements:
            continue
        start = _counts(problem, greedy.placements)
        better = close_nodes(problem, start, 5.0)
        assert check_placements(problem, _placements(problem, better)) == []
        assert plan_cost(problem, better) <= plan_cost(problem, start) + 1e-9


def test_local_search_closes_an_expensive_node():
    """First fit opened the dear node for the big replica; the cheap one can take all."""
    nodes = (
        Node("dear", "cloud", 8, 16384, 1.0, "eu"),
        Node("cheap", "cloud", 8, 16384, 0.2, "eu"),
    )
    deps = tuple(
        Deployment(f"m{k}", f"m{k}:1", ReplicaProfile(1, 4096, 100), {"eu": 100.0}, 50)
        for k in range(3)
    )
    problem = Problem(nodes, (), deps)
    start = {(0, 0): 1, (1, 1): 1, (2, 1): 1}
    better = close_nodes(problem, start, 5.0)
    assert plan_cost(problem, better) == pytest.approx(0.2)
    assert check_placements(problem, _placements(problem, better)) == []


def test_local_search_stops_at_its_budget():
    problem = grouped_problem(0)
    start = _counts(problem, greedy_place(problem).placements)
    assert close_nodes(problem, start, 0.0) == start
