"""Applying manifests through the real Kubernetes client against a recording API endpoint.

The endpoint on 127.0.0.1 stands in for a cluster's API server: it records each request
and answers like the server does for a server-side apply (the object back, 200), or
with an error status when told to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from modelport.core.errors import FailedPrecondition, Unavailable
from modelport.deploy.apply import apply_manifests
from modelport.deploy.manifests import RenderOptions, render
from modelport.deploy.plan import Plan

GOLDEN = Path(__file__).parent / "golden"


class _ApiServer(ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    fail_with: int | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        url = urlparse(self.path)
        self.server.requests.append(
            {
                "path": url.path,
                "query": parse_qs(url.query),
                "content_type": self.headers["Content-Type"],
                "authorization": self.headers.get("Authorization"),
                "body": json.loads(body),
            }
        )
        status = self.server.fail_with or 200
        payload = body if status == 200 else json.dumps({"kind": "Status", "code": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[_ApiServer, Path]]:
    server = _ApiServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
                "current-context": "t",
            }
        )
    )
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan.from_dict(json.loads((GOLDEN / "plan.json").read_text()))


def test_kubernetes_objects_are_server_side_applied(api, plan: Plan):
    server, kubeconfig = api
    files = render(plan, "kubernetes", RenderOptions(image="reg/pkg:1"))
    done = apply_manifests(files, namespace="models", kubeconfig=kubeconfig)
    sent = sum(len(docs) for docs in files.values())
    assert len(done) == len(server.requests) == sent
    first = server.requests[0]
    assert first["content_type"] == "application/apply-patch+yaml"
    assert first["query"]["fieldManager"] == ["modelport"]
    assert first["query"]["force"] == ["true"]
    assert first["authorization"] == "Bearer secret-token"
    paths = {r["path"] for r in server.requests}
    assert "/apis/apps/v1/namespaces/models/deployments/defect-detector" in paths
    assert "/api/v1/namespaces/models/services/defect-detector" in paths
    assert (
        "/apis/autoscaling/v2/namespaces/models/horizontalpodautoscalers/defect-detector" in paths
    )
    assert "/apis/policy/v1/namespaces/models/poddisruptionbudgets/defect-detector" in paths
    config = next(r for r in server.requests if "/configmaps/" in r["path"])
    assert config["body"]["metadata"]["namespace"] == "models"
    assert done[0].describe().endswith("applied")


def test_inference_services_and_dry_run(api, plan: Plan):
    server, kubeconfig = api
    files = render(plan, "kserve", RenderOptions(image="reg/pkg:1", namespace="ml"))
    done = apply_manifests(files, kubeconfig=kubeconfig, dry_run=True)
    isvc = [r for r in server.requests if "inferenceservices" in r["path"]]
    assert {r["path"] for r in isvc} == {
        f"/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{d.name}"
        for d in plan.deployments
    }
    assert all(r["query"]["dryRun"] == ["All"] for r in server.requests)
    assert all("dry run" in d.describe() for d in done)


def test_api_errors_are_reported(api, plan: Plan):
    server, kubeconfig = api
    server.fail_with = 403
    files = render(plan, "kubernetes", RenderOptions(image="reg/pkg:1"))
    with pytest.raises(Unavailable, match="HTTP 403"):
        apply_manifests(files, kubeconfig=kubeconfig)


def test_missing_kubeconfig_fails_clearly(tmp_path: Path, plan: Plan):
    files = render(plan, "kubernetes")
    with pytest.raises(FailedPrecondition, match="no usable kube-config"):
        apply_manifests(files, kubeconfig=tmp_path / "nope")
