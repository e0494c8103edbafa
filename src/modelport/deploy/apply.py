"""Applying rendered manifests to a cluster with the official Kubernetes client.

A thin layer over :mod:`~modelport.deploy.manifests`: every object is sent as a
server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field manager
``modelport``), so applying is idempotent and the API server merges changes the way
``kubectl apply --server-side`` does. ``dry_run`` asks the server to validate without
persisting anything. Without a kube-config (or in-cluster credentials) it fails with a
:class:`~modelport.core.errors.FailedPrecondition` that says how to proceed.

Example:
    >>> files = render(plan, "kubernetes", RenderOptions(image="reg/pkg:1"))  # doctest: +SKIP
    >>> [a.describe() for a in apply_manifests(files, namespace="models")]    # doctest: +SKIP
    ['ConfigMap/detector-config-3f2a… applied', 'Deployment/detector applied', ...]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    MissingDependency,
    Unavailable,
)

FIELD_MANAGER = "modelport"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
#: (apiVersion, kind) -> (client API class, method suffix) of namespaced objects we render.
_TYPED = {
    ("v1", "ConfigMap"): ("CoreV1Api", "namespaced_config_map"),
    ("v1", "Service"): ("CoreV1Api", "namespaced_service"),
    ("apps/v1", "Deployment"): ("AppsV1Api", "namespaced_deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "AutoscalingV2Api",
        "namespaced_horizontal_pod_autoscaler",
    ),
    ("policy/v1", "PodDisruptionBudget"): ("PolicyV1Api", "namespaced_pod_disruption_budget"),
}
#: Custom resources: (apiVersion, kind) -> plural.
_CUSTOM = {("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservices"}


@dataclass(frozen=True, slots=True)
class Applied:
    """One object sent to the cluster."""

    kind: str
    name: str
    namespace: str
    dry_run: bool

    def describe(self) -> str:
        how = "validated (dry run)" if self.dry_run else "applied"
        return f"{self.kind}/{self.name} in {self.namespace} {how}"


def _client() -> Any:
    try:
        import kubernetes
    except ImportError as e:  # pragma: no cover - kubernetes is in the deploy extra
        raise MissingDependency.for_extra("kubernetes", "deploy", "Applying manifests") from e
    return kubernetes


def api_client(kubeconfig: str | Path | None = None, context: str | None = None) -> Any:
    """A client from the kube-config (the given file, else the client's default lookup),
    or from in-cluster credentials; FailedPrecondition if there is none."""
    k8s = _client()
    from kubernetes.config.config_exception import ConfigException

    try:
        cfg = k8s.client.Configuration()
        k8s.config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            context=context,
            client_configuration=cfg,
        )
        return k8s.client.ApiClient(cfg)
    except (ConfigException, FileNotFoundError, TypeError) as first:
        if kubeconfig is None and context is None:
            try:
                cfg = k8s.client.Configuration()
                k8s.config.load_incluster_config(client_configuration=cfg)
                return k8s.client.ApiClient(cfg)
            except ConfigException:
                pass
        where = f" at {kubeconfig}" if kubeconfig else ""
        raise FailedPrecondition(
            f"no usable kube-config{where} ({first}); pass --kubeconfig FILE (and --context), "
            "or write the manifests with `modelport deploy render` and apply them with kubectl"
        ) from None


def apply_manifests(
    files: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    namespace: str = "default",
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    dry_run: bool = False,
    client: Any = None,
) -> list[Applied]:
    """Server-side apply every rendered object, file by file, in rendering order
    (ConfigMaps before the workloads that mount them)."""
    k8s = _client()
    api = client or api_client(kubeconfig, context)
    done: list[Applied] = []
    for _name, docs in sorted(files.items()):
        for doc in docs:
            done.append(_apply_one(k8s, api, dict(doc), namespace, dry_run))
    return done


def _apply_one(k8s: Any, api: Any, doc: dict[str, Any], namespace: str, dry_run: bool) -> Applied:
    import urllib3  # a dependency of the kubernetes client

    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    meta = dict(doc.get("metadata") or {})
    name = str(meta.get("name", ""))
    ns = str(meta.get("namespace") or namespace)
    doc["metadata"] = {**meta, "namespace": ns}
    opts: dict[str, Any] = {
        "field_manager": FIELD_MANAGER,
        "force": True,
        "_content_type": APPLY_CONTENT_TYPE,
    }
    if dry_run:
        opts["dry_run"] = "All"
    try:
        if key in _TYPED:
            cls, suffix = _TYPED[key]
            typed = getattr(k8s.client, cls)(api)
            getattr(typed, f"patch_{suffix}")(name, ns, doc, **opts)
        elif key in _CUSTOM:
            group, _, version = key[0].partition("/")
            k8s.client.CustomObjectsApi(api).patch_namespaced_custom_object(
                group, version, ns, _CUSTOM[key], name, doc, **opts
            )
        else:
            raise InvalidArgument(f"cannot apply {key[1]} ({key[0]}): not a kind modelport renders")
    except k8s.client.exceptions.ApiException as e:
        reason = (e.reason or "").strip() or "error"
        raise Unavailable(
            f"applying {key[1]}/{name} in {ns} failed: HTTP {e.status} {reason}"
        ) from None
    except (OSError, urllib3.exceptions.HTTPError, k8s.client.exceptions.OpenApiException) as e:
        raise Unavailable(f"cannot reach the Kubernetes API: {type(e).__name__}") from None
    return Applied(key[1], name, ns, dry_run)
