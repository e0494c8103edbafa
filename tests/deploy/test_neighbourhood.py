"""The exact neighbourhood search on packed placements (pure, no I/O)."""

from __future__ import annotations

import random

from modelport.deploy import neighbourhood
from modelport.deploy.greedy import greedy_place
from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
from modelport.deploy.placement import _counts, _placements
from modelport.deploy.plan import check_placements
from tests.deploy.test_placement import brute_force, random_problem


def _spread_out(problem: Problem) -> dict[tuple[int, int], int] | None:
    """The greedy plan, a valid and usually not the cheapest placement."""
    greedy = greedy_place(problem)
    if greedy.status != "feasible":
        return None
    return _counts(problem, greedy.placements)


def test_search_keeps_plans_valid_and_reaches_the_optimum_on_small_fleets():
    tried = improved = 0
    for seed in range(80):
        problem = random_problem(seed)
        start = _spread_out(problem)
        if start is None:
            continue
        better = neighbourhood.improve(problem, start, 3.0, random.Random(seed), workers=1)
        assert check_placements(problem, _placements(problem, better)) == [], seed
        # With at most four nodes every move frees all paid nodes: each move is exact.
        optimum = brute_force(problem)
        assert optimum is not None
        assert neighbourhood.cost(problem, better) == round(optimum * 10_000), seed
        tried += 1
        improved += neighbourhood.cost(problem, better) < neighbourhood.cost(problem, start)
    assert tried >= 30
    assert improved >= 5  # greedy left something to improve often enough to matter


def test_fixed_replicas_keep_their_capacity_and_pay_for_their_node():
    nodes = (
        Node("big", "cloud", 8, 16_384, 1.0, "eu"),
        Node("small", "cloud", 4, 8_192, 0.5, "eu"),
        Node("other", "cloud", 4, 8_192, 0.5, "eu"),
    )
    profile = ReplicaProfile(2, 4_096, 100)
    deps = tuple(Deployment(f"m{k}", "m:1", profile, {"eu": 100}, 50) for k in range(4))
    problem = Problem(nodes, (), deps)
    # Three replicas fill "big" to 6 of 8 cores; m3 sits alone on "small".
    fixed = {(0, 0): 1, (1, 0): 1, (2, 0): 1}
    sub = neighbourhood._sub_problem(problem, fixed, [3])
    assert (sub.nodes[0].cpu, sub.nodes[0].memory_mb, sub.nodes[0].cost_per_hour) == (
        2,
        4_096,
        0.0,
    )
    assert sub.nodes[1] == nodes[1]
    better = neighbourhood.improve(problem, {**fixed, (3, 1): 1}, 3.0, random.Random(0), 1)
    # m3 moves into the room left on the node already paid for; "small" closes.
    assert better == {**fixed, (3, 0): 1}


def test_a_full_node_takes_no_replica():
    nodes = (Node("a", "cloud", 4, 8_192, 1.0, "eu"), Node("b", "cloud", 4, 8_192, 1.0, "eu"))
    profile = ReplicaProfile(2, 4_096, 100)
    deps = tuple(Deployment(f"m{k}", "m:1", profile, {"eu": 100}, 50) for k in range(3))
    problem = Problem(nodes, (), deps)
    start = {(0, 0): 1, (1, 0): 1, (2, 1): 1}
    sub = neighbourhood._sub_problem(problem, {(0, 0): 1, (1, 0): 1}, [2])
    assert sub.candidates(sub.deployments[0]) == [1]
    again = neighbourhood.improve(problem, start, 1.0, random.Random(0), 1)
    assert neighbourhood.cost(problem, again) == neighbourhood.cost(problem, start)
    assert check_placements(problem, _placements(problem, again)) == []


def test_search_stops_once_the_plan_costs_enough():
    problem = random_problem(4)
    start = _spread_out(problem)
    assert start is not None
    stats: dict[str, int] = {}
    enough = neighbourhood.cost(problem, start)
    out = neighbourhood.improve(problem, start, 30.0, random.Random(0), 1, stats, enough)
    assert out == start
    assert stats == {"moves": 0, "kept": 0}
