"""The placement solver against an independent brute force, plus its rules and edges.

The brute force below shares no code with the solver: it re-reads the latency, label and
spread rules from the docs, enumerates every replica count per deployment and node, and
checks demand with Hall's condition over client sites. Instances are small and seeded.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from modelport.deploy.greedy import greedy_place
from modelport.deploy.model import (
    Canary,
    Constraints,
    Deployment,
    Node,
    Problem,
    ReplicaProfile,
    Site,
)
from modelport.deploy.placement import solve
from modelport.deploy.plan import Placement, Plan, check_placements, placement_cost
from modelport.deploy.routing import route

LIMIT = 10.0


# ----------------------------------------------------------------------------- brute force


def _net(problem: Problem, node: Node, site: str) -> float | None:
    declared = {s.name: s for s in problem.sites}
    s = declared.get(site)
    if s is not None and node.name in s.latency_ms:
        return s.latency_ms[node.name]
    if s is not None and s.default_ms is not None:
        return s.default_ms
    return 0.0 if node.site == site else None


def _vectors(problem: Problem, d: Deployment) -> list[tuple[int, ...]]:
    """Every replica vector over the nodes that satisfies ``d``'s own rules."""
    c = d.constraints
    ranges = []
    for n in problem.nodes:
        ok = (
            (c.site is None or n.site == c.site)
            and (c.kind is None or n.kind == c.kind)
            and all(n.labels.get(k) == v for k, v in c.labels.items())
            and d.profile.accelerators <= n.accelerators
        )
        fit = min(int(n.cpu // d.profile.cpu), int(n.memory_mb // d.profile.memory_mb))
        # More replicas on one node than would serve all demand (or min_replicas) never
        # lowers the cost, so the search may stop there.
        fit = min(fit, max(d.min_replicas, math.ceil(d.total_demand / d.profile.rps_per_replica)))
        if c.spread == "node":
            fit = min(fit, 1)
        ranges.append(range(fit + 1) if ok else range(1))
    out = []
    sites = [s for s, v in d.demand.items() if v > 0]
    for k, n in enumerate(problem.nodes):
        # with demand, a replica must reach one of its sites in time (documented rule)
        if sites and not any(
            (net := _net(problem, n, s)) is not None
            and net + d.profile.latency_ms <= d.latency_p99_ms
            for s in sites
        ):
            ranges[k] = range(1)
    for vec in itertools.product(*ranges):
        total = sum(vec)
        if total < d.min_replicas or (d.max_replicas and total > d.max_replicas):
            continue
        if c.spread == "site":
            per_site: dict[str, int] = {}
            for n, r in zip(problem.nodes, vec, strict=True):
                per_site[n.site] = per_site.get(n.site, 0) + r
            if any(v > 1 for v in per_site.values()):
                continue
        good = True
        for k in range(1, len(sites) + 1):
            for group in itertools.combinations(sites, k):
                supply = 0.0
                for n, r in zip(problem.nodes, vec, strict=True):
                    reach = [
                        _net(problem, n, s)
                        for s in group
                        if _net(problem, n, s) is not None
                        and _net(problem, n, s) + d.profile.latency_ms <= d.latency_p99_ms
                    ]
                    if reach:
                        supply += r * d.profile.rps_per_replica
                if supply + 1e-9 < sum(d.demand[s] for s in group):
                    good = False
        if good:
            out.append(vec)
    return out


def brute_force(problem: Problem) -> float | None:
    options = [_vectors(problem, d) for d in problem.deployments]
    best = None
    for combo in itertools.product(*options):
        cpu = [0.0] * len(problem.nodes)
        mem = [0.0] * len(problem.nodes)
        acc = [0] * len(problem.nodes)
        for d, vec in zip(problem.deployments, combo, strict=True):
            for k, r in enumerate(vec):
                cpu[k] += r * d.profile.cpu
                mem[k] += r * d.profile.memory_mb
                acc[k] += r * d.profile.accelerators
        if any(
            cpu[k] > n.cpu + 1e-9 or mem[k] > n.memory_mb + 1e-9 or acc[k] > n.accelerators
            for k, n in enumerate(problem.nodes)
        ):
            continue
        used = {k for vec in combo for k, r in enumerate(vec) if r}
        cost = round(sum(problem.nodes[k].cost_per_hour for k in used), 9)
        if best is None or cost < best:
            best = cost
    return best


def random_problem(seed: int) -> Problem:
    """2-4 nodes (cloud in a data centre 20 ms from both client sites, edge boxes 1 ms
    from their own), 2-3 deployments with demand at one or both sites."""
    rng = random.Random(seed)
    shapes = [(2, 4096, 0.1), (4, 8192, 0.25), (4, 8192, 0.25), (8, 16384, 0.6), (16, 16384, 0.9)]
    nodes = []
    for k in range(rng.choice([2, 3, 4])):
        cpu, mem, cost = rng.choice(shapes)
        if k and rng.random() < 0.35:
            nodes.append(Node(f"n{k}", "edge", 4, 4096, 0.05, rng.choice(["a", "b"])))
        else:
            labels = {"gpu": "1"} if rng.random() < 0.5 else {}
            nodes.append(Node(f"n{k}", "cloud", cpu, mem, cost, "dc", labels=labels))
    sites = (
        Site("a", {n.name: (1.0 if n.site == "a" else 20.0) for n in nodes if n.site != "b"}),
        Site("b", {n.name: (1.0 if n.site == "b" else 20.0) for n in nodes if n.site != "a"}),
    )
    deps = []
    for k in range(rng.choice([2, 2, 3])):
        demand = {"a": float(rng.choice([0, 40, 120]))}
        if rng.random() < 0.5:
            demand["b"] = float(rng.choice([30, 90]))
        cons = rng.choice(
            [
                Constraints(),
                Constraints(),
                Constraints(spread="node"),
                Constraints(labels={"gpu": "1"}),
            ]
        )
        lat = rng.choice([2.0, 10.0])
        deps.append(
            Deployment(
                f"d{k}",
                f"d{k}:1",
                ReplicaProfile(
                    rng.choice([0.5, 1, 2]),
                    rng.choice([1024, 2048, 3072]),
                    rng.choice([50.0, 100.0]),
                    lat,
                ),
                demand,
                lat + rng.choice([5.0, 25.0, 40.0, 40.0]),
                rng.choice([1, 1, 2]),
                None,
                cons,
            )
        )
    return Problem(tuple(nodes), sites, tuple(deps))


# ----------------------------------------------------------------------------- optimality


@pytest.mark.parametrize("seed", range(40))
def test_cost_equals_brute_force_optimum(seed: int):
    problem = random_problem(seed)
    expected = brute_force(problem)
    plan = solve(problem, time_limit=LIMIT)
    if expected is None:
        assert plan.status == "infeasible"
        assert plan.explanation is not None
        assert plan.explanation.blockers
        return
    assert plan.status == "optimal", plan.explanation
    assert plan.cost == pytest.approx(expected)
    assert plan.gap == 0.0
    assert plan.bound == pytest.approx(expected)
    assert check_placements(problem, plan.placements) == []
    if plan.greedy and plan.greedy.cost is not None:
        assert plan.cost <= plan.greedy.cost + 1e-9


def grouped_problem(seed: int) -> Problem:
    """Three identical nodes that each hold many replicas (so the solver groups them),
    a small cheap node, and replicas of uneven sizes."""
    rng = random.Random(seed)
    nodes = tuple(Node(f"big{k}", "cloud", 8, 8192, 0.4, "dc") for k in range(3))
    nodes += (Node("small", "cloud", 2, 2048, 0.1, "dc"),)
    deps = tuple(
        Deployment(
            f"d{k}",
            f"d{k}:1",
            ReplicaProfile(rng.choice([0.25, 0.5]), rng.choice([512, 768, 1024]), 50.0, 5),
            {"dc": float(rng.choice([100, 200, 300]))},
            50,
            rng.choice([1, 2]),
            None,
            rng.choice([Constraints(), Constraints(spread="node")]),
        )
        for k in range(2)
    )
    return Problem(nodes, (), deps)


@pytest.mark.parametrize("seed", [0, 1, 5, 9, 12, 15])  # feasible and grouped
def test_grouped_model_matches_brute_force(seed: int):
    problem = grouped_problem(seed)
    plan = solve(problem, time_limit=LIMIT)
    assert plan.solver["groups"] == 1
    assert plan.status == "optimal"
    assert plan.cost == pytest.approx(brute_force(problem))
    assert check_placements(problem, plan.placements) == []


def test_identical_nodes_are_grouped_and_still_optimal():
    """Eight identical big nodes form one unit; the answer must still pack node by node."""
    nodes = tuple(Node(f"big{k}", "cloud", 16, 32768, 1.0, "dc") for k in range(8))
    nodes += (Node("small", "cloud", 4, 8192, 0.3, "dc"),)
    deps = tuple(
        Deployment(
            f"m{k}",
            f"m{k}:1",
            ReplicaProfile(1, 3000 + 500 * k, 100, 5),
            {"dc": 250.0 + 100 * k},
            100,
            1,
        )
        for k in range(6)
    )
    problem = Problem(nodes, (), deps)
    plan = solve(problem, time_limit=LIMIT)
    assert plan.solver["groups"] >= 1
    assert check_placements(problem, plan.placements) == []
    # 25 replicas of 3-5.5 GB: at least ceil(total memory / 32 GiB) big nodes
    need = sum(
        math.ceil(d.total_demand / d.profile.rps_per_replica) * d.profile.memory_mb for d in deps
    )
    assert plan.cost >= math.ceil(need / (32768 + 8192)) * 1.0 - 1e-9
    assert plan.status in ("optimal", "feasible")
    assert plan.cost <= plan.greedy.cost


def gpu_problem(seed: int) -> Problem:
    """GPU nodes with one or two accelerators at two prices beside a CPU node; two or
    three deployments that need one accelerator per replica, one that needs none."""
    rng = random.Random(seed)
    nodes = [Node("cpu", "cloud", 8, 16384, 0.3, "dc")]
    for k in range(rng.choice([2, 3])):
        acc = rng.choice([1, 2])
        cost = rng.choice([1.0, 1.6]) * acc
        nodes.append(Node(f"gpu{k}", "cloud", 8, 16384, cost, "dc", acc, {"gpu": "1"}))
    deps = [
        Deployment(
            f"g{k}",
            f"g{k}:1",
            ReplicaProfile(1, rng.choice([2048, 4096]), 100.0, 5, 1),
            {"dc": float(rng.choice([60, 150]))},
            50,
            1,
            None,
            Constraints(labels={"gpu": "1"}),
        )
        for k in range(rng.choice([2, 3]))
    ]
    deps.append(Deployment("c", "c:1", ReplicaProfile(2, 4096, 50.0, 5), {"dc": 80.0}, 50))
    return Problem(tuple(nodes), (), tuple(deps))


@pytest.mark.parametrize("seed", range(12))
def test_accelerator_covers_keep_the_brute_force_optimum(seed: int):
    """The accelerator cover rows are implied by the model: with them the solver still
    finds exactly the cheapest plan, or says infeasible when there is none."""
    problem = gpu_problem(seed)
    expected = brute_force(problem)
    plan = solve(problem, time_limit=LIMIT)
    if expected is None:
        assert plan.status == "infeasible"
        return
    assert plan.status == "optimal", plan.explanation
    assert plan.cost == pytest.approx(expected)
    assert check_placements(problem, plan.placements) == []


def test_accelerator_cover_rows_round_the_gpu_node_count():
    """Seven one-GPU replicas that can only run on four-GPU nodes of two regions: the
    model states that those nodes hold at least seven accelerators, a row CP-SAT rounds
    to two nodes where the LP would pay for 1.75. An infeasibility core must still be
    able to name the deployments, so models built with assumptions leave the row out."""
    from modelport.deploy import cpsat

    nodes = tuple(
        Node(f"g{k}", "cloud", 48, 196_608, 5.67, region, 4, {"gpu": "true"})
        for k, region in enumerate(["eu", "us"] * 2)
    )
    deps = tuple(
        Deployment(
            f"m{k}",
            f"m{k}:1",
            ReplicaProfile(1, 4096, 800.0, 10, 1),
            {},
            100,
            1,
            None,
            Constraints(labels={"gpu": "true"}),
        )
        for k in range(7)
    )
    problem = Problem(nodes, (), deps)
    units = cpsat.node_groups(problem)
    assert len(units) == 2  # one unit per region

    def covers(b: cpsat.Model) -> list[tuple[list[int], int]]:
        u = {v.index for v in b.u.values()}
        rows = []
        for c in b.model.proto.constraints:
            lin = c.linear
            if c.has_linear() and set(lin.vars) == u:
                rows.append((list(lin.coeffs), lin.domain[0]))
        return rows

    assert covers(cpsat.build(problem, units)) == [([4, 4], 7)]
    assert covers(cpsat.build(problem, units, assumptions=True)) == []
    plan = solve(problem, time_limit=LIMIT)
    assert plan.status == "optimal"
    assert plan.cost == pytest.approx(2 * 5.67)


# ----------------------------------------------------------------------------- edge


def edge_fleet() -> tuple[tuple[Node, ...], tuple[Site, ...]]:
    nodes = (
        Node("cloud-1", "cloud", 16, 65536, 0.8, "eu-west"),
        Node("cloud-2", "cloud", 16, 65536, 0.8, "eu-west"),
        Node("plant-a-1", "edge", 4, 4096, 0.0, "plant-a", labels={"camera": "yes"}),
        Node("plant-b-1", "edge", 4, 4096, 0.0, "plant-b"),
        Node("plant-b-2", "edge", 4, 4096, 0.0, "plant-b"),
    )
    sites = (
        Site("plant-a", {"plant-a-1": 1, "cloud-1": 25, "cloud-2": 25}),
        Site("plant-b", {"plant-b-1": 1, "plant-b-2": 2, "cloud-1": 30, "cloud-2": 30}),
        Site("office", {"cloud-1": 10, "cloud-2": 10}),
    )
    return nodes, sites


def test_edge_bound_models_land_at_their_site():
    nodes, sites = edge_fleet()
    prof = ReplicaProfile(1, 1024, 50, 8)
    deps = (
        Deployment(
            "detect-a",
            "detect:2",
            prof,
            {"plant-a": 40},
            15,
            constraints=Constraints(site="plant-a", labels={"camera": "yes"}),
        ),
        Deployment(
            "detect-b",
            "detect:2",
            prof,
            {"plant-b": 90},
            15,
            constraints=Constraints(site="plant-b", spread="node"),
        ),
        Deployment("quality", "quality:1", prof, {"plant-b": 30}, 12),  # only edge is close
        Deployment(
            "reports",
            "reports:4",
            ReplicaProfile(2, 8192, 20, 40),
            {"office": 30},
            100,
            2,
            constraints=Constraints(spread="node"),
        ),
    )
    problem = Problem(nodes, sites, deps)
    plan = solve(problem, time_limit=LIMIT)
    assert plan.status == "optimal"
    where = {(p.deployment, p.node): p.replicas for p in plan.placements}
    by_node = {n.name: n for n in nodes}
    for d in ("detect-a", "detect-b"):
        placed = [n for (dep, n) in where if dep == d]
        assert placed
        assert all(by_node[n].site == d.replace("detect", "plant") for n in placed)
    assert {n for (dep, n) in where if dep == "detect-b"} == {"plant-b-1", "plant-b-2"}
    assert all(by_node[n].kind == "edge" for (dep, n) in where if dep == "quality")
    assert sorted(n for (dep, n) in where if dep == "reports") == ["cloud-1", "cloud-2"]
    assert plan.cost == pytest.approx(1.6)  # both cloud nodes, for the spread reports
    assert check_placements(problem, plan.placements) == []


def test_latency_tie_break_prefers_the_near_node():
    nodes = (
        Node("far", "cloud", 8, 8192, 0.5, "x"),
        Node("near", "cloud", 8, 8192, 0.5, "y"),
    )
    sites = (Site("clients", {"far": 40, "near": 5}),)
    d = Deployment("m", "m:1", ReplicaProfile(1, 1024, 100, 5), {"clients": 80}, 100)
    plan = solve(Problem(nodes, sites, (d,)), time_limit=LIMIT)
    assert [(p.node, p.replicas) for p in plan.placements] == [("near", 1)]
    assert plan.mean_latency_ms == pytest.approx(5.0)


def test_node_class_profile_and_speed_factor():
    """A slow edge box (speed 0.25) cannot meet the objective; a measured class can."""
    nodes = (
        Node("pi", "edge", 4, 4096, 0.0, "shop", speed=0.25),
        Node("jetson", "edge", 4, 4096, 0.0, "shop", node_class="jetson"),
        Node("cloud", "cloud", 8, 16384, 1.0, "dc"),
    )
    sites = (Site("shop", {"pi": 1, "jetson": 1, "cloud": 40}),)
    base = ReplicaProfile(1, 1024, 100, 10)
    d = Deployment(
        "m",
        "m:1",
        base,
        {"shop": 100},
        30,
        class_profiles={"jetson": ReplicaProfile(1, 1024, 200, 4)},
    )
    problem = Problem(nodes, sites, (d,))
    assert problem.profile_on(d, nodes[0]).latency_ms == pytest.approx(40)
    plan = solve(problem, time_limit=LIMIT)
    assert [(p.node, p.replicas) for p in plan.placements] == [("jetson", 1)]
    assert plan.cost == 0.0


# ----------------------------------------------------------------------------- infeasible


def test_infeasible_labels_names_deployment_and_constraint():
    nodes, sites = edge_fleet()
    d = Deployment(
        "gpu-model",
        "g:1",
        ReplicaProfile(1, 1024, 50),
        {"office": 10},
        100,
        constraints=Constraints(labels={"gpu": "a100"}),
    )
    plan = solve(Problem(nodes, sites, (d,)), time_limit=LIMIT)
    assert plan.status == "infeasible"
    assert plan.cost is None
    b = plan.explanation.blockers[0]
    assert (b.deployment, b.constraint) == ("gpu-model", "labels")
    assert "gpu=a100" in b.message
    assert b.hint
    assert "gpu-model" in plan.explanation.summary


def test_infeasible_latency_says_what_objective_would_work():
    nodes, sites = edge_fleet()
    d = Deployment("fast", "f:1", ReplicaProfile(1, 1024, 50, 20), {"office": 10}, 25)
    plan = solve(Problem(nodes, sites, (d,)), time_limit=LIMIT)
    b = plan.explanation.blockers[0]
    assert (b.deployment, b.constraint) == ("fast", "latency")
    assert "30 ms" in b.message
    assert "at least 30 ms" in b.hint


@pytest.mark.parametrize(
    ("dep", "constraint"),
    [
        (Deployment("huge", "h:1", ReplicaProfile(2, 131072, 10), {"office": 1}, 100), "resources"),
        (
            Deployment(
                "site",
                "s:1",
                ReplicaProfile(1, 512, 10),
                {},
                100,
                constraints=Constraints(site="mars"),
            ),
            "site",
        ),
        (Deployment("busy", "b:1", ReplicaProfile(2, 2048, 10, 5), {"plant-b": 400}, 10), "demand"),
        (
            Deployment(
                "ha",
                "ha:1",
                ReplicaProfile(1, 512, 10),
                {},
                100,
                4,
                constraints=Constraints(spread="site"),
            ),
            "spread",
        ),
    ],
)
def test_each_blocking_constraint_is_named(dep: Deployment, constraint: str):
    nodes, sites = edge_fleet()
    plan = solve(Problem(nodes, sites, (dep,)), time_limit=LIMIT)
    assert plan.status == "infeasible"
    assert [(b.deployment, b.constraint) for b in plan.explanation.blockers] == [
        (dep.name, constraint)
    ]


def test_joint_infeasibility_names_the_competing_deployments():
    nodes, sites = edge_fleet()
    prof = ReplicaProfile(1, 3072, 100, 5)
    # each fits plant-a-1 alone; together they need 6 GiB of its 4
    deps = (
        Deployment("plant-a-0", "m0:1", prof, {"plant-a": 50}, 10),
        Deployment("plant-a-1", "m1:1", prof, {"plant-a": 50}, 10),
        Deployment("office", "o:1", ReplicaProfile(1, 512, 100), {"office": 10}, 100),
    )
    plan = solve(Problem(nodes, sites, deps), time_limit=LIMIT)
    assert plan.status == "infeasible"
    named = {b.deployment for b in plan.explanation.blockers}
    assert named == {"plant-a-0", "plant-a-1"}
    assert {b.constraint for b in plan.explanation.blockers} == {"memory"}
    assert "plant-a-1" in plan.explanation.blockers[0].nodes


# ----------------------------------------------------------------------------- plan file


def test_plan_json_has_the_documented_fields_and_round_trips():
    nodes, sites = edge_fleet()
    d = Deployment(
        "api",
        "api:3",
        ReplicaProfile(1, 2048, 100, 5),
        {"office": 150},
        50,
        2,
        canary=Canary("api:4", 10),
    )
    plan = solve(Problem(nodes, sites, (d,)), time_limit=LIMIT)
    doc = json.loads(json.dumps(plan.to_dict()))
    for key in (
        "status",
        "cost",
        "bound",
        "gap",
        "placements",
        "utilisation",
        "greedy",
        "explanation",
        "deployments",
        "solver",
    ):
        assert key in doc
    assert doc["status"] == "optimal"
    assert doc["gap"] == 0.0
    assert doc["explanation"] is None
    assert doc["greedy"]["cost"] >= doc["cost"]
    assert {"deployment", "node", "replicas", "serves"} <= set(doc["placements"][0])
    used = doc["utilisation"][0]
    assert {"node", "cpu_pct", "memory_pct", "replicas", "cost_per_hour"} <= set(used)
    assert sum(p["replicas"] for p in doc["placements"]) == 2
    assert doc["deployments"][0]["canary"] == {"model": "api:4", "traffic_percent": 10}
    again = Plan.from_dict(doc)
    assert again.placements == plan.placements
    assert again.deployments == plan.deployments


def test_infeasible_plan_json_carries_the_explanation():
    nodes, sites = edge_fleet()
    d = Deployment(
        "gpu",
        "g:1",
        ReplicaProfile(1, 1024, 50),
        {},
        100,
        constraints=Constraints(labels={"gpu": "yes"}),
    )
    doc = solve(Problem(nodes, sites, (d,)), time_limit=LIMIT).to_dict()
    assert doc["status"] == "infeasible"
    assert doc["cost"] is None
    assert doc["placements"] == []
    assert doc["explanation"]["blockers"][0]["constraint"] == "labels"


# ----------------------------------------------------------------------------- pieces


def test_check_placements_reports_violations():
    nodes, sites = edge_fleet()
    d = Deployment(
        "m",
        "m:1",
        ReplicaProfile(2, 2048, 100, 5),
        {"office": 150},
        50,
        constraints=Constraints(spread="node"),
    )
    problem = Problem(nodes, sites, (d,))
    bad = [Placement("m", "cloud-1", 2, {"office": 100.0})]
    errors = check_placements(problem, bad)
    assert any("spread=node" in e for e in errors)
    assert any("gets 100 of 150" in e for e in errors)
    assert check_placements(problem, [Placement("m", "plant-a-1", 1, {"office": 100.0})])


def test_greedy_baseline_is_valid_and_never_better_than_the_solver():
    for seed in range(6):
        problem = random_problem(100 + seed)
        g = greedy_place(problem)
        plan = solve(problem, time_limit=LIMIT)
        if g.status == "feasible":
            assert check_placements(problem, g.placements) == []
            assert g.cost == placement_cost(problem, g.placements)
            assert plan.cost is not None
            assert plan.cost <= g.cost + 1e-9


def test_routing_sends_demand_to_the_nearest_replicas():
    nodes, sites = edge_fleet()
    d = Deployment("m", "m:1", ReplicaProfile(1, 512, 60, 1), {"plant-b": 100, "office": 50}, 40)
    problem = Problem(nodes, sites, (d,))
    idx = {n.name: k for k, n in enumerate(nodes)}
    served = route(problem, d, {idx["plant-b-1"]: 1, idx["cloud-1"]: 2})
    assert served[idx["plant-b-1"]] == {"plant-b": 60.0}
    assert served[idx["cloud-1"]] == pytest.approx({"plant-b": 40.0, "office": 50.0})


def test_unknown_demand_site_is_rejected():
    nodes, sites = edge_fleet()
    d = Deployment("m", "m:1", ReplicaProfile(1, 512, 60), {"atlantis": 10}, 40)
    with pytest.raises(Exception, match="unknown site 'atlantis'"):
        Problem(nodes, sites, (d,))


# ----------------------------------------------------------------------------- solver setup


def test_small_machines_get_the_lp_heavy_portfolio(monkeypatch: pytest.MonkeyPatch):
    from modelport.deploy import cpsat

    monkeypatch.setattr(cpsat.os, "cpu_count", lambda: 2)
    s = cpsat.solver(1.0, 0, 0)
    assert s.parameters.num_workers == 4
    assert list(s.parameters.subsolvers) == list(cpsat.SMALL_PORTFOLIO)
    monkeypatch.setattr(cpsat.os, "cpu_count", lambda: 16)
    s = cpsat.solver(1.0, 0, 0)
    assert s.parameters.num_workers == 16
    assert list(s.parameters.subsolvers) == []
    assert cpsat.solver(1.0, 3, 0).parameters.num_workers == 3


@pytest.mark.parametrize("seed", [0, 1, 5, 9, 12, 15])
def test_exact_model_from_a_hint_keeps_the_brute_force_optimum(seed: int):
    """The per-node model the solver hands over to (mirror nodes used in fleet order),
    started from the greedy plan, still proves the brute-force optimum."""
    from modelport.deploy import cpsat, placement

    problem = grouped_problem(seed)
    hint = placement._counts(problem, greedy_place(problem).placements)
    singles = [[i] for i in range(len(problem.nodes))]
    _, s, status = placement._solve_units(problem, singles, hint, LIMIT, 0, 0)
    assert status == cpsat.cp_model().OPTIMAL
    assert s.objective_value / cpsat.COST_SCALE == pytest.approx(brute_force(problem))


def test_cheapest_plan_is_picked_and_empty_ones_skipped():
    from modelport.deploy.placement import _cheapest

    problem = grouped_problem(0)  # big nodes cost 0.4, the small one 0.1
    on_big, on_small = {(0, 0): 1}, {(0, 3): 1}
    assert _cheapest(problem, None, on_big, on_small) == on_small
    assert _cheapest(problem, on_small, {(0, 3): 2}) == on_small  # first on ties
    assert _cheapest(problem, None, {}) is None


def _hint_is_feasible(problem: Problem, units: list[list[int]], counts: dict) -> bool:
    from modelport.deploy import cpsat, placement

    b = cpsat.build(problem, units)
    placement.cpsat.hint(problem, b, counts)
    s = cpsat.cp_model().CpSolver()
    s.parameters.fix_variables_to_their_hinted_value = True
    s.parameters.max_time_in_seconds = 5
    return s.solve(b.model) in (cpsat.cp_model().OPTIMAL, cpsat.cp_model().FEASIBLE)


def test_hints_put_replicas_of_identical_nodes_in_fleet_order():
    """The per-node model uses identical nodes in fleet order; a plan that uses a later
    one is moved onto the first before it is given as a hint (else CP-SAT drops it)."""
    from modelport.deploy import placement

    nodes = tuple(Node(f"n{k}", "cloud", 4, 8192, 0.2, "eu") for k in range(3))
    d = Deployment("m", "m:1", ReplicaProfile(2, 4096, 100), {"eu": 150}, 100)
    problem = Problem(nodes, (), (d,))
    singles = [[0], [1], [2]]
    plan = {(0, 2): 2}  # the last of three identical nodes
    assert placement.cpsat.in_fleet_order(
        problem, placement.cpsat.build(problem, singles), plan
    ) == {(0, 0): 2}
    assert _hint_is_feasible(problem, singles, plan)


def test_headroom_keeps_a_share_of_each_group_free():
    """A grouped unit with headroom holds fewer replicas than its nodes' total capacity
    (not a relaxation any more); single-node units keep their full capacity."""
    from modelport.deploy import cpsat

    nodes = tuple(Node(f"n{k}", "cloud", 16, 16_384, 0.2, "eu") for k in range(2))
    d = Deployment("m", "m:1", ReplicaProfile(0.5, 1024, 10), {"eu": 320}, 100)
    problem = Problem(nodes, (), (d,))  # 32 replicas fill both nodes exactly
    cp = cpsat.cp_model()
    for units, headroom, feasible in (
        ([[0, 1]], 0.0, True),
        ([[0, 1]], 0.015, False),
        ([[0], [1]], 0.015, True),
    ):
        b = cpsat.build(problem, units, headroom=headroom)
        s = cp.CpSolver()
        s.parameters.max_time_in_seconds = 5
        assert (s.solve(b.model) != cp.INFEASIBLE) is feasible, (units, headroom)


def test_exact_packing_of_a_group_fills_the_first_nodes_first():
    from modelport.deploy.packing import _exact

    nodes = tuple(Node(f"n{k}", "cloud", 4, 8192, 0.2, "eu") for k in range(3))
    big = Deployment("a", "a:1", ReplicaProfile(1, 5000, 10), {"eu": 20}, 100)
    small = Deployment("b", "b:1", ReplicaProfile(1, 3000, 10), {"eu": 20}, 100)
    problem = Problem(nodes, (), (big, small))
    packed = _exact(problem, [0, 1, 2], {0: 2, 1: 2}, 5.0)
    assert packed is not None
    load = [sum(r * (5000, 3000)[d] for (d, i), r in packed.items() if i == n) for n in range(3)]
    assert load == sorted(load, reverse=True)
    assert sum(r for (d, _), r in packed.items() if d == 0) == 2


def test_time_left_after_a_solved_headroom_round_goes_to_the_bound(
    monkeypatch: pytest.MonkeyPatch,
):
    """When the first round ends before it proves the bound (a slow machine) and the
    round with headroom is then solved to optimality, the relaxation runs again, from the
    best plan, and proves the plan optimal instead of stopping with a gap."""
    from benchmarks.bench_placement import generate

    from modelport.deploy import cpsat, placement

    solves: list[tuple[float, bool]] = []
    real = placement._solve_units

    def short_first_round(problem, units, hint, budget, workers, seed, gap=0.0, headroom=0.0):
        cp = cpsat.cp_model()
        if solves:
            b, s, status = real(problem, units, hint, budget, workers, seed, gap, headroom)
        else:  # as if the machine were slow: the shortest round that finds a plan
            for short in (0.05, 0.1, 0.2, 0.4, 0.8):
                b, s, status = real(problem, units, hint, short, workers, seed, gap, headroom)
                if status != cp.UNKNOWN:
                    break
        solves.append((headroom, status == cp.OPTIMAL))
        return b, s, status

    monkeypatch.setattr(placement, "_solve_units", short_first_round)
    plan = solve(generate(50, 20), time_limit=20)
    if solves[0][1]:
        pytest.skip("the short first round proved the bound")
    assert (placement.HEADROOM, True) in solves  # the headroom model was solved
    assert solves[-1] == (0.0, True)  # then the relaxation proved the bound
    assert plan.status == "optimal"
    assert plan.gap == 0


def test_exact_neighbourhood_search_runs_on_the_packed_plan():
    """The grouped rounds stop at about half the time; the exact neighbourhood search
    then works on the packed plan, which keeps every rule and never gets dearer."""
    from benchmarks.bench_placement import generate

    problem = generate(100, 50, tight=True)
    plan = solve(problem, time_limit=8)
    assert plan.status == "feasible"
    searched = plan.solver["neighbourhood"]
    assert searched["moves"] >= 1
    assert searched["to"] <= searched["from"]
    assert plan.cost == pytest.approx(searched["to"])
    assert check_placements(problem, plan.placements) == []
