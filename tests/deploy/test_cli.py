"""The deploy commands end to end, in process: profile → plan → render, package → unpack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelport.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iris_onnx: Path) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(h))
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["register", str(iris_onnx), "--name", "iris"]) == 0
    assert main(["alias", "set", "iris", "production", "1"]) == 0
    return h


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_plan_render(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, out, _ = run(
        capsys,
        "profile",
        "iris@production",
        "--batch-sizes",
        "1,4",
        "--threads",
        "1",
        "--duration",
        "0.05",
        "--json",
    )
    assert code == 0
    prof = json.loads(out)
    assert [(m["threads"], m["batch_size"]) for m in prof["measurements"]] == [(1, 1), (1, 4)]
    assert (home / "profiles" / "iris" / "1.json").is_file()
    code, out, _ = run(capsys, "profile", "iris", "--speed", "0.25", "--node-class", "pi", "--json")
    assert code == 0
    assert json.loads(out)["scaled_from"] == "default"
    code, out, _ = run(capsys, "profile", "iris", "--show", "--json")
    assert {p["node_class"] for p in json.loads(out)} == {"default", "pi"}

    fleet = {
        "nodes": [
            {
                "name": "cloud-1",
                "kind": "cloud",
                "cpu": 4,
                "memory_mb": 8192,
                "cost_per_hour": 0.2,
                "site": "dc",
            },
            {
                "name": "box-1",
                "kind": "edge",
                "cpu": 2,
                "memory_mb": 2048,
                "site": "shop",
                "node_class": "pi",
            },
        ],
        "sites": [{"name": "shop", "latency_ms": {"box-1": 1, "cloud-1": 20}}],
    }
    deploy = {
        "deployments": [
            {
                "name": "iris",
                "model": "iris@production",
                "demand": {"shop": 100},
                "latency_p99_ms": 50,
            }
        ]
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deploy))
    plan_path = tmp_path / "out" / "plan.json"
    code, out, _ = run(
        capsys,
        "deploy",
        "plan",
        "--fleet",
        str(tmp_path / "fleet.yaml"),
        "--deployments",
        str(tmp_path / "deploy.yaml"),
        "--out",
        str(plan_path),
        "--time-limit",
        "10",
    )
    assert code == 0, out
    assert "status: optimal" in out
    plan = json.loads(plan_path.read_text())
    # the edge box (its class profile: a quarter of the speed) is free and close
    assert [(p["node"], p["replicas"]) for p in plan["placements"]] == [("box-1", 1)]
    assert plan["cost"] == 0.0

    code, out, _ = run(
        capsys,
        "deploy",
        "render",
        "--plan",
        str(plan_path),
        "--target",
        "kubernetes",
        "--out",
        str(tmp_path / "k8s"),
        "--image",
        "reg/iris:1",
    )
    assert code == 0
    docs = list(yaml.safe_load_all((tmp_path / "k8s" / "iris.yaml").read_text()))
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    code, _, _ = run(
        capsys,
        "deploy",
        "render",
        "--plan",
        str(plan_path),
        "--target",
        "kserve",
        "--out",
        str(tmp_path / "kserve"),
    )
    assert code == 0
    assert (tmp_path / "kserve" / "iris.yaml").is_file()


def test_infeasible_plan_exits_5_with_the_explanation(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "fleet.yaml").write_text(
        "nodes: [{name: a, kind: cloud, cpu: 2, memory_mb: 1024, site: dc}]\n"
    )
    (tmp_path / "deploy.yaml").write_text(
        "deployments:\n- name: big\n  model: iris:1\n  constraints: {labels: {gpu: 'yes'}}\n"
        "  profile: {cpu: 1, memory_mb: 512, rps_per_replica: 10}\n"
    )
    code, _out, err = run(
        capsys,
        "deploy",
        "plan",
        "--fleet",
        str(tmp_path / "fleet.yaml"),
        "--deployments",
        str(tmp_path / "deploy.yaml"),
        "--out",
        str(tmp_path / "plan.json"),
    )
    assert code == 5
    assert "big [labels]" in err
    assert json.loads((tmp_path / "plan.json").read_text())["status"] == "infeasible"
    code, _, err = run(
        capsys,
        "deploy",
        "render",
        "--plan",
        str(tmp_path / "plan.json"),
        "--target",
        "kubernetes",
        "--out",
        str(tmp_path / "k8s"),
    )
    assert code == 5
    assert "nothing to render" in err


def test_package_in_one_home_unpack_in_another(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    pkg = tmp_path / "iris.tar.gz"
    code, out, _ = run(capsys, "package", "iris@production", "--out", str(pkg), "--json")
    assert code == 0
    assert json.loads(out)["models"] == ["iris:1"]
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "other-home"))
    code, out, _ = run(capsys, "unpack", str(pkg), "--out", str(tmp_path / "ctx"), "--json")
    assert code == 0
    assert json.loads(out)["models"] == ["iris:1"]
    assert (tmp_path / "ctx" / "Dockerfile").is_file()
    assert not (tmp_path / "other-home").exists()  # nothing needed from a registry
    code, out, _ = run(capsys, "unpack", str(pkg))
    assert code == 0
    assert "verified" in out


def test_apply_without_kubeconfig_says_what_to_do(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    plan = Path(__file__).parent / "golden" / "plan.json"
    code, _, err = run(
        capsys,
        "deploy",
        "apply",
        "--plan",
        str(plan),
        "--target",
        "kubernetes",
        "--kubeconfig",
        str(tmp_path / "missing-kubeconfig"),
    )
    assert code == 5
    assert "no usable kube-config" in err
    assert "modelport deploy render" in err
