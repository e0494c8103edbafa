"""Reading fleet.yaml / deploy.yaml: the shipped examples, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelport.core.errors import InvalidArgument, NotFound
from modelport.deploy.fleet import load_problem
from modelport.deploy.model import ReplicaProfile
from modelport.deploy.placement import solve

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"

FLEET = {
    "nodes": [
        {"name": "c1", "kind": "cloud", "cpu": 8, "memory_mb": 16384, "cost_per_hour": 0.4,
         "site": "dc", "labels": {"tier": "gold"}},
        {"name": "e1", "kind": "edge", "cpu": 4, "memory_mb": 4096, "site": "shop"},
    ],
    "sites": [{"name": "shop", "latency_ms": {"e1": 1, "c1": 20}}],
}  # fmt: skip
DEPLOY = {
    "deployments": [
        {"name": "m", "model": "m:1", "demand": {"shop": 50}, "latency_p99_ms": 30,
         "profile": {"cpu": 1, "memory_mb": 512, "rps_per_replica": 100, "latency_ms": 5}}
    ]
}  # fmt: skip


def write(tmp_path: Path, fleet: dict, deploy: dict) -> tuple[Path, Path]:
    f, d = tmp_path / "fleet.yaml", tmp_path / "deploy.yaml"
    f.write_text(yaml.safe_dump(fleet))
    d.write_text(yaml.safe_dump(deploy))
    return f, d


def test_shipped_examples_load_and_solve():
    problem = load_problem(EXAMPLES / "fleet.yaml", EXAMPLES / "deploy.yaml")
    assert {d.name for d in problem.deployments} == {
        "defect-detector", "quality-score", "recommender", "embeddings"
    }  # fmt: skip
    plan = solve(problem, time_limit=10)
    assert plan.status == "optimal"
    assert plan.cost < plan.greedy.cost
    by_node = {n.name: n for n in problem.nodes}
    assert {by_node[p.node].site for p in plan.placements if p.deployment == "defect-detector"} == {
        "plant-a"
    }


def test_minimal_files_and_json_work(tmp_path: Path):
    f, d = write(tmp_path, FLEET, DEPLOY)
    problem = load_problem(f, d)
    assert problem.nodes[0].labels == {"tier": "gold"}
    assert problem.deployments[0].min_replicas == 1
    j = tmp_path / "fleet.json"
    j.write_text('{"nodes": [{"name": "a", "kind": "cloud", "cpu": 1, "memory_mb": 1024, '
                 '"site": "shop"}]}')  # fmt: skip
    assert load_problem(j, d).nodes[0].name == "a"


@pytest.mark.parametrize(
    ("which", "change", "message"),
    [
        ("fleet", lambda f: f["nodes"][1].update(memory_mb=0),
         "fleet.yaml: nodes[1].memory_mb: Input should be greater than 0"),
        ("fleet", lambda f: f["nodes"][0].update(kind="server"),
         "fleet.yaml: nodes[0].kind: Input should be 'cloud' or 'edge'"),
        ("fleet", lambda f: f["nodes"][0].update(memory=1),
         "fleet.yaml: nodes[0].memory: Extra inputs are not permitted"),
        ("fleet", lambda f: f["nodes"][1].update(name="c1"),
         "fleet.yaml: nodes[1].name: duplicate node name 'c1'"),
        ("fleet", lambda f: f["nodes"][0].update(name="Bad_Name"),
         "fleet.yaml: nodes[0].name: String should match pattern"),
        ("fleet", lambda f: f["sites"][0]["latency_ms"].update(ghost=3),
         "fleet.yaml: sites[0].latency_ms.ghost: unknown node 'ghost'"),
        ("fleet", lambda f: f.pop("nodes"), "fleet.yaml: nodes: Field required"),
        ("deploy", lambda d: d["deployments"][0].update(latency_p99_ms=-1),
         "deploy.yaml: deployments[0].latency_p99_ms: Input should be greater than 0"),
        ("deploy", lambda d: d["deployments"][0]["demand"].update(mars=3),
         "deploy.yaml: deployments[0].demand.mars: unknown site 'mars'"),
        ("deploy", lambda d: d["deployments"][0].update(constraints={"spread": "rack"}),
         "deploy.yaml: deployments[0].constraints.spread: Input should be 'node' or 'site'"),
        ("deploy", lambda d: d["deployments"][0].update(constraints={"site": "moon"}),
         "deploy.yaml: deployments[0].constraints.site: unknown site 'moon'"),
        ("deploy", lambda d: d["deployments"][0].update(model="../etc"),
         "deploy.yaml: deployments[0].model: Value error, invalid model name"),
        ("deploy", lambda d: d["deployments"][0].pop("profile"),
         "deploy.yaml: deployments[0].profile: missing, and 'm:1' has no stored profile"),
        ("deploy", lambda d: d["deployments"][0].update(max_replicas=1, min_replicas=3),
         "deploy.yaml: deployments[0].max_replicas: 1 is below min_replicas 3"),
        ("deploy", lambda d: d["deployments"][0].update(name="Has Space"),
         "deploy.yaml: deployments[0].name: String should match pattern"),
    ],
)  # fmt: skip
def test_invalid_input_names_the_field(tmp_path: Path, which: str, change, message: str):
    import copy

    fleet, deploy = copy.deepcopy(FLEET), copy.deepcopy(DEPLOY)
    change(fleet if which == "fleet" else deploy)
    f, d = write(tmp_path, fleet, deploy)
    with pytest.raises(InvalidArgument) as e:
        load_problem(f, d)
    assert message in str(e.value)


def test_yaml_syntax_error_gives_the_line(tmp_path: Path):
    f, d = write(tmp_path, FLEET, DEPLOY)
    f.write_text("nodes:\n  - {name: a, kind: cloud\n")
    with pytest.raises(InvalidArgument, match=r"fleet.yaml: not valid YAML \(line \d+"):
        load_problem(f, d)
    f.write_text("- just\n- a list\n")
    with pytest.raises(InvalidArgument, match="top level must be a mapping"):
        load_problem(f, d)
    with pytest.raises(NotFound):
        load_problem(tmp_path / "missing.yaml", d)


def test_stored_profiles_fill_in_a_missing_profile(tmp_path: Path):
    deploy = {"deployments": [{"name": "m", "model": "m@prod", "demand": {"shop": 50}}]}
    f, d = write(tmp_path, FLEET, deploy)
    seen = []

    def lookup(ref: str):
        seen.append(ref)
        return {"default": ReplicaProfile(1, 512, 100, 5), "jetson": ReplicaProfile(1, 512, 300)}

    problem = load_problem(f, d, lookup)
    dep = problem.deployments[0]
    assert seen == ["m@prod"]
    assert dep.profile.rps_per_replica == 100
    assert dep.class_profiles["jetson"].rps_per_replica == 300
    assert dep.latency_p99_ms == float("inf")
