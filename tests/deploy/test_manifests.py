"""Rendering: golden files, Kubernetes schema validation, KServe structure, determinism.

Goldens live in tests/deploy/golden/ (rendered from golden/plan.json, a plan of the
shipped example fleet). After an intended change, regenerate them with
``MODELPORT_UPDATE_GOLDEN=1 pytest tests/deploy/test_manifests.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelport.core.errors import FailedPrecondition, InvalidArgument
from modelport.deploy.manifests import (
    RenderOptions,
    max_replicas,
    render,
    to_yaml,
    write_manifests,
)
from modelport.deploy.plan import Explanation, Plan

GOLDEN = Path(__file__).parent / "golden"
#: The Kubernetes version manifests are validated against (schemas ship with
#: kubernetes-validate; strict: unknown fields are errors).
K8S_VERSION = "1.31.0"
OPTIONS = RenderOptions(image="registry.example.com/shop/models:1.0", namespace="models")
UPDATE = os.environ.get("MODELPORT_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan.from_dict(json.loads((GOLDEN / "plan.json").read_text()))


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_rendering_matches_the_golden_files(plan: Plan, target: str, tmp_path: Path):
    written = write_manifests(render(plan, target, OPTIONS), tmp_path)
    golden = GOLDEN / target
    if UPDATE:
        golden.mkdir(exist_ok=True)
        for old in golden.glob("*.yaml"):
            old.unlink()
        for path in written:
            (golden / path.name).write_text(path.read_text())
    assert sorted(p.name for p in written) == sorted(p.name for p in golden.glob("*.yaml"))
    for path in written:
        assert path.read_text() == (golden / path.name).read_text(), path.name


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_rendering_is_deterministic(plan: Plan, target: str):
    first = {k: to_yaml(v) for k, v in render(plan, target, OPTIONS).items()}
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert first == {k: to_yaml(v) for k, v in render(again, target, OPTIONS).items()}


def _all_docs(plan: Plan, target: str) -> list[dict[str, Any]]:
    files = render(plan, target, OPTIONS)
    docs = [d for text in map(to_yaml, files.values()) for d in yaml.safe_load_all(text)]
    assert docs == [d for v in files.values() for d in v]  # YAML round-trips exactly
    return docs


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_every_core_manifest_validates_against_the_kubernetes_schema(plan: Plan, target: str):
    kinds = []
    for doc in _all_docs(plan, target):
        if doc["kind"] == "InferenceService":
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    if target == "kubernetes":
        assert {
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
        } <= set(kinds)
    else:
        assert set(kinds) == {"ConfigMap"}


def test_invalid_manifest_is_caught_by_the_validator(plan: Plan):
    """The validation above is real: a broken Deployment fails it."""
    doc = next(d for d in _all_docs(plan, "kubernetes") if d["kind"] == "Deployment")
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# ----------------------------------------------------------------------------- KServe

EXTENSION_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "autoScaling",
}


def check_inference_service(doc: dict[str, Any]) -> None:
    """The InferenceService fields of the reference notes (protocols.md §6)."""
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert doc["kind"] == "InferenceService"
    meta = doc["metadata"]
    assert isinstance(meta["name"], str)
    assert len(meta["name"]) <= 63
    notes = meta.get("annotations", {})
    mode = notes.get("serving.kserve.io/deploymentMode", "Standard")
    assert mode in {"Knative", "Standard", "Serverless", "RawDeployment"}
    if "serving.kserve.io/autoscalerClass" in notes:
        assert mode in {"Standard", "RawDeployment"}
        assert notes["serving.kserve.io/autoscalerClass"] in {"hpa", "keda", "external", "none"}
    assert set(doc["spec"]) == {"predictor"}
    p = doc["spec"]["predictor"]
    assert isinstance(p["minReplicas"], int)
    assert isinstance(p["maxReplicas"], int)
    assert 0 <= p["minReplicas"] <= p["maxReplicas"]
    metric = p.get("scaleMetric")
    assert metric in {None, "concurrency", "rps", "cpu", "memory"}
    if metric in {"concurrency", "rps"}:
        assert mode in {"Knative", "Serverless"}
    if metric in {"cpu", "memory"}:
        assert notes.get("serving.kserve.io/autoscalerClass", "hpa") == "hpa"
    assert isinstance(p.get("scaleTarget", 1), int)
    if "canaryTrafficPercent" in p:
        assert isinstance(p["canaryTrafficPercent"], int)
        assert 0 <= p["canaryTrafficPercent"] <= 100
        assert mode in {"Knative", "Serverless"}  # canary needs Knative mode
    assert "model" not in p  # custom container form
    (container,) = p["containers"]
    assert container["name"] == "kserve-container"
    assert all(isinstance(port["containerPort"], int) for port in container["ports"])
    # Everything else in the predictor is a PodSpec: validate it as one.
    pod_spec = {k: v for k, v in p.items() if k not in EXTENSION_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": meta["name"]}, "spec": pod_spec}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_inference_services_have_the_kserve_structure(plan: Plan):
    services = [d for d in _all_docs(plan, "kserve") if d["kind"] == "InferenceService"]
    assert {s["metadata"]["name"] for s in services} == {d.name for d in plan.deployments}
    for doc in services:
        check_inference_service(doc)
    by_name = {s["metadata"]["name"]: s for s in services}
    rec = by_name["recommender"]
    assert rec["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert rec["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert rec["metadata"]["annotations"]["modelport.io/model-ref"] == "recommender:8"
    gpu = by_name["embeddings"]["spec"]["predictor"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    std = by_name["quality-score"]
    assert std["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert "canaryTrafficPercent" not in std["spec"]["predictor"]


def test_the_structure_check_rejects_a_broken_inference_service(plan: Plan):
    doc = next(d for d in _all_docs(plan, "kserve") if d["kind"] == "InferenceService")
    doc["spec"]["predictor"]["minReplicas"] = 99
    with pytest.raises(AssertionError):
        check_inference_service(doc)


# ----------------------------------------------------------------------------- content


def test_kubernetes_deployment_follows_the_plan(plan: Plan):
    docs = _all_docs(plan, "kubernetes")
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    detector = deps["defect-detector"]
    planned = next(d for d in plan.deployments if d.name == "defect-detector")
    assert detector["spec"]["replicas"] == planned.replicas
    spec = detector["spec"]["template"]["spec"]
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == sorted(planned.nodes)
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    c = spec["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"]["requests"] == {"cpu": "1000m", "memory": "900Mi"}
    assert spec["terminationGracePeriodSeconds"] >= OPTIONS.drain_seconds
    assert spec["securityContext"]["runAsNonRoot"] is True
    config = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap"
        and d["metadata"]["name"] == spec["volumes"][0]["configMap"]["name"]
    )
    served = yaml.safe_load(config["data"]["serve.yaml"])
    assert served["models"] == [{"ref": "defect-detector@production"}]
    assert served["drain_timeout_s"] == OPTIONS.drain_seconds
    # canary: a second Deployment behind the same Service, about 10% of the pods
    assert deps["recommender-canary"]["spec"]["replicas"] == 1
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "recommender")
    canary_labels = deps["recommender-canary"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= canary_labels.items()
    hpa = next(
        d
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == "recommender"
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)


def test_max_replicas_default_and_config_hash_changes_with_content(plan: Plan):
    d = next(x for x in plan.deployments if x.max_replicas is None)
    assert max_replicas(d) == max(2 * d.replicas, d.replicas + 1)
    a = render(plan, "kubernetes", OPTIONS)
    b = render(plan, "kubernetes", RenderOptions(image=OPTIONS.image, drain_seconds=60))
    name = "defect-detector.yaml"
    assert a[name][0]["metadata"]["name"] != b[name][0]["metadata"]["name"]


def test_infeasible_plan_or_unknown_target_is_refused(plan: Plan):
    bad = Plan(
        "infeasible",
        None,
        None,
        None,
        (),
        (),
        None,
        Explanation("infeasible: m cannot be placed (labels)"),
        (),
    )
    with pytest.raises(FailedPrecondition, match=r"m cannot be placed \(labels\)"):
        render(bad, "kubernetes")
    with pytest.raises(InvalidArgument, match="choose one of kubernetes, kserve"):
        render(plan, "nomad")
    with pytest.raises(InvalidArgument):
        RenderOptions(image="bad image")
