"""Kubernetes and KServe manifests from a placement plan, deterministic to the byte.

For each planned deployment, target ``kubernetes`` writes ``<name>.yaml`` holding:

- a **ConfigMap** with the ``serve.yaml`` the server reads (model reference, ports, drain
  time); its name carries a hash of its content and it is immutable, so a change rolls
  the pods and a running revision never sees another's configuration;
- a **Deployment**: the package image, resources from the profile (memory limit equal
  to the request; no CPU limit, so latency never suffers from throttling), liveness on
  ``/v2/health/live``, readiness on ``/v2/health/ready``, a startup probe for slow model
  loads, a termination grace period covering the server's drain time, required node
  affinity to the nodes of the plan and topology spread for ``spread``; non-root,
  read-only root filesystem, no privilege escalation, all capabilities dropped;
- a **Service** (HTTP and gRPC ports), a **HorizontalPodAutoscaler** (from the planned
  replicas up to ``max_replicas``, on CPU) and a **PodDisruptionBudget**;
- during a canary rollout, a second Deployment (``<name>-canary``) serving the canary
  model behind the same Service, with replicas in proportion to its traffic share.

Target ``kserve`` writes an ``InferenceService`` (``serving.kserve.io/v1beta1``) per
deployment with the same container, min/max replicas and, during a rollout,
``canaryTrafficPercent`` (which needs KServe's Knative mode, so that mode is selected).

Example:
    >>> files = render(plan, "kubernetes", RenderOptions(image="registry/pkg:1"))  # doctest: +SKIP
    >>> sorted(files)                                                              # doctest: +SKIP
    ['detector.yaml', 'ranker.yaml']
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.core.errors import FailedPrecondition, InvalidArgument, MissingDependency
from modelport.core.types import ModelRef
from modelport.deploy.plan import Plan, PlannedDeployment

TARGETS = ("kubernetes", "kserve")
PACKAGE_DIR = "/opt/modelport/package"
CONFIG_DIR = "/etc/modelport"
#: The image's non-root user (see the package Dockerfile).
USER_ID = 10001
Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Knobs of rendering that are not in the plan.

    ``image`` is built from a package (``modelport package``); ``drain_seconds`` must
    match the server's drain time; ``shutdown_delay_seconds`` keeps a terminating pod
    serving while endpoints are updated.
    """

    image: str = "modelport-package:latest"
    namespace: str | None = None
    http_port: int = 8000
    grpc_port: int = 8001
    drain_seconds: int = 30
    shutdown_delay_seconds: int = 5
    cpu_target_percent: int = 70
    accelerator_resource: str = "nvidia.com/gpu"
    image_pull_policy: str = "IfNotPresent"
    auth: bool = False

    def __post_init__(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise InvalidArgument(f"invalid image {self.image!r}")
        if not 0 < self.cpu_target_percent <= 100:
            raise InvalidArgument("cpu_target_percent must be between 1 and 100")
        if self.drain_seconds < 0 or self.shutdown_delay_seconds < 0:
            raise InvalidArgument("drain and shutdown delay must be >= 0 seconds")


def render(plan: Plan, target: str, options: RenderOptions | None = None) -> dict[str, list[Doc]]:
    """Manifests per file name for every deployment of ``plan``.

    Raises FailedPrecondition for a plan without a placement (its explanation says why).
    """
    opts = options or RenderOptions()
    if target not in TARGETS:
        raise InvalidArgument(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if plan.status not in ("optimal", "feasible"):
        why = f": {plan.explanation.summary}" if plan.explanation else ""
        raise FailedPrecondition(f"the plan is {plan.status}, nothing to render{why}")
    out: dict[str, list[Doc]] = {}
    for d in sorted(plan.deployments, key=lambda d: d.name):
        docs = _kubernetes(d, opts) if target == "kubernetes" else _kserve(d, opts)
        out[f"{d.name}.yaml"] = docs
    return out


def to_yaml(docs: Sequence[Doc]) -> str:
    """Documents as one YAML stream, keys in the order they were built; multi-line
    strings (the embedded ``serve.yaml``) as literal blocks."""
    yaml = _yaml()

    class Dumper(yaml.SafeDumper):  # type: ignore[name-defined,misc]
        """SafeDumper writing multi-line strings as ``|`` blocks."""

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    parts = [
        yaml.dump(doc, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=100)
        for doc in docs
    ]
    return "---\n" + "---\n".join(parts)


def write_manifests(
    files: Mapping[str, Sequence[Doc]], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write each file (atomically); returns the paths written."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in sorted(files.items()):
        path = root / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(to_yaml(docs))
        os.replace(tmp, path)
        written.append(path)
    return written


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is in the deploy extra
        raise MissingDependency.for_extra("yaml", "deploy", "Manifests") from e
    return yaml


# ---------------------------------------------------------------------------- shared


def _labels(d: PlannedDeployment, track: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": d.name,
        "app.kubernetes.io/instance": d.name,
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": "modelport",
        "app.kubernetes.io/managed-by": "modelport",
        "modelport.io/model": ModelRef.parse(d.model).name,
    }
    if track:
        labels["modelport.io/track"] = track
    return labels


def _selector(d: PlannedDeployment) -> dict[str, str]:
    return {"app.kubernetes.io/name": d.name, "app.kubernetes.io/instance": d.name}


def _meta(name: str, labels: Mapping[str, str], opts: RenderOptions, **extra: Any) -> Doc:
    meta: Doc = {"name": name}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    meta["labels"] = dict(labels)
    meta.update(extra)
    return meta


def _annotations(d: PlannedDeployment, model: str) -> dict[str, str]:
    placement = ",".join(f"{n}={r}" for n, r in sorted(d.nodes.items()))
    return {"modelport.io/model-ref": model, "modelport.io/placement": placement}


def _serve_config(model: str, opts: RenderOptions, http_port: int, grpc: int | None) -> Doc:
    cfg: Doc = {
        "host": "0.0.0.0",  # noqa: S104 - inside a pod; the Service is the boundary
        "http_port": http_port,
        "grpc_port": grpc,
        "drain_timeout_s": opts.drain_seconds,
        "models": [{"ref": model}],
    }
    if not opts.auth:
        cfg["insecure"] = True
    return cfg


def _config_map(name: str, d: PlannedDeployment, cfg: Doc, opts: RenderOptions) -> Doc:
    text = _yaml().safe_dump(cfg, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{name}-config-{digest}", _labels(d), opts),
        "immutable": True,
        "data": {"serve.yaml": text},
    }


def _resources(d: PlannedDeployment, opts: RenderOptions) -> Doc:
    mem = f"{math.ceil(d.memory_mb)}Mi"
    requests = {"cpu": f"{math.ceil(d.cpu * 1000)}m", "memory": mem}
    limits = {"memory": mem}
    if d.accelerators:  # quantities are strings in the API
        requests[opts.accelerator_resource] = str(d.accelerators)
        limits[opts.accelerator_resource] = str(d.accelerators)
    return {"requests": requests, "limits": limits}


def _probe(path: str, port: int | str, period: int, failures: int) -> Doc:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(
    name: str, d: PlannedDeployment, opts: RenderOptions, ports: list[Doc], http: int | str
) -> Doc:
    args = ["serve", "--package", PACKAGE_DIR, "--config", f"{CONFIG_DIR}/serve.yaml"]
    args += ["--shutdown-delay", str(opts.shutdown_delay_seconds)]
    if opts.auth:
        args.append("--auth")
    return {
        "name": name,
        "image": opts.image,
        "imagePullPolicy": opts.image_pull_policy,
        "args": args,
        "ports": ports,
        # the home (caches) lives on the pod's own emptyDir, not a shared /tmp
        "env": [{"name": "MODELPORT_HOME", "value": "/tmp/modelport"}],  # noqa: S108
        "resources": _resources(d, opts),
        "startupProbe": _probe("/v2/health/live", http, 2, 90),
        "livenessProbe": _probe("/v2/health/live", http, 10, 3),
        "readinessProbe": _probe("/v2/health/ready", http, 5, 2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir of the pod
        ],
    }


def _pod_spec(d: PlannedDeployment, container: Doc, config: str, opts: RenderOptions) -> Doc:
    spec: Doc = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": opts.drain_seconds + opts.shutdown_delay_seconds + 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if d.nodes:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": sorted(d.nodes),
                                }
                            ]
                        }
                    ]
                }
            }
        }
    if d.spread:
        key = "kubernetes.io/hostname" if d.spread == "node" else "topology.kubernetes.io/zone"
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": _selector(d)},
            }
        ]
    spec["containers"] = [container]
    spec["volumes"] = [
        {"name": "config", "configMap": {"name": config}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    return spec


def max_replicas(d: PlannedDeployment) -> int:
    """The autoscaler's ceiling: ``max_replicas``, else twice the planned replicas."""
    if d.max_replicas is not None:
        return max(d.max_replicas, d.replicas, 1)
    return max(2 * d.replicas, d.replicas + 1)


# ---------------------------------------------------------------------------- kubernetes


def _kubernetes(d: PlannedDeployment, opts: RenderOptions) -> list[Doc]:
    docs: list[Doc] = []
    tracks = [("stable", d.name, d.model, d.replicas)]
    if d.canary_model and d.canary_percent > 0:
        share = d.canary_percent / 100
        canary = max(1, math.ceil(d.replicas * share / max(1e-9, 1 - share)))
        tracks.append(("canary", f"{d.name}-canary", d.canary_model, canary))
    for track, name, model, replicas in tracks:
        cfg = _config_map(name, d, _serve_config(model, opts, opts.http_port, opts.grpc_port), opts)
        docs.append(cfg)
        docs.append(_deployment(d, track, name, model, replicas, cfg["metadata"]["name"], opts))
    docs.append(_service(d, opts))
    if d.replicas > 0:
        docs.append(_hpa(d, opts))
        docs.append(_pdb(d, opts))
    return docs


def _deployment(
    d: PlannedDeployment,
    track: str,
    name: str,
    model: str,
    replicas: int,
    config: str,
    opts: RenderOptions,
) -> Doc:
    ports = [
        {"name": "http", "containerPort": opts.http_port, "protocol": "TCP"},
        {"name": "grpc", "containerPort": opts.grpc_port, "protocol": "TCP"},
    ]
    container = _container("modelport", d, opts, ports, "http")
    labels = _labels(d, track)
    selector = {**_selector(d), "modelport.io/track": track}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels, opts, annotations=_annotations(d, model)),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": {"modelport.io/model-ref": model}},
                "spec": _pod_spec(d, container, config, opts),
            },
        },
    }


def _service(d: PlannedDeployment, opts: RenderOptions) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(d.name, _labels(d), opts),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(d),
            "ports": [
                {
                    "name": "http",
                    "port": opts.http_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                {
                    "name": "grpc",
                    "port": opts.grpc_port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
            ],
        },
    }


def _hpa(d: PlannedDeployment, opts: RenderOptions) -> Doc:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(d.name, _labels(d), opts),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": d.name},
            "minReplicas": max(1, d.replicas),
            "maxReplicas": max_replicas(d),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": opts.cpu_target_percent,
                        },
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def _pdb(d: PlannedDeployment, opts: RenderOptions) -> Doc:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(d.name, _labels(d), opts),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(d)}},
    }


# ---------------------------------------------------------------------------- kserve

KSERVE_HTTP_PORT = 8080  # KServe's default container port


def _kserve(d: PlannedDeployment, opts: RenderOptions) -> list[Doc]:
    canary = bool(d.canary_model and d.canary_percent > 0)
    # The spec describes the newest revision: during a rollout, the canary model.
    model = d.canary_model if canary and d.canary_model else d.model
    cfg = _config_map(d.name, d, _serve_config(model, opts, KSERVE_HTTP_PORT, None), opts)
    ports = [{"containerPort": KSERVE_HTTP_PORT, "protocol": "TCP"}]
    container = _container("kserve-container", d, opts, ports, KSERVE_HTTP_PORT)
    pod = _pod_spec(d, container, cfg["metadata"]["name"], opts)
    predictor: Doc = {
        "minReplicas": max(1, d.replicas),
        "maxReplicas": max_replicas(d),
    }
    if canary:
        # canaryTrafficPercent is honoured in Knative mode; scale on concurrency there.
        per_pod = d.rps_per_replica * (d.latency_p99_ms or 1000.0) / 1000
        predictor["scaleMetric"] = "concurrency"
        predictor["scaleTarget"] = max(1, math.ceil(per_pod))
        predictor["canaryTrafficPercent"] = d.canary_percent
        mode = {"serving.kserve.io/deploymentMode": "Knative"}
    else:
        predictor["scaleMetric"] = "cpu"
        predictor["scaleTarget"] = opts.cpu_target_percent
        mode = {
            "serving.kserve.io/deploymentMode": "Standard",
            "serving.kserve.io/autoscalerClass": "hpa",
        }
    predictor.update(pod)
    annotations = {**mode, **_annotations(d, model)}
    if canary:
        annotations["modelport.io/stable-model-ref"] = d.model
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(d.name, _labels(d), opts, annotations=annotations),
        "spec": {"predictor": predictor},
    }
    return [cfg, isvc]


def digest(files: Mapping[str, Sequence[Doc]]) -> str:
    """SHA-256 over the rendered files (stable across runs)."""
    canon = json.dumps({k: list(v) for k, v in sorted(files.items())}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()
