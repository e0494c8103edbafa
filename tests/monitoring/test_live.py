"""Monitoring against a real server: counters, histograms, rejections, feedback, drift,
the shipped rules' and dashboard's metric names, and a real Prometheus scraping it.

The Prometheus cases need Debian's ``prometheus`` package (.ci/run installs it); they
skip with that reason when it is missing, unless MODELPORT_TEST_REQUIRE_PROMETHEUS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelport.core.config import Settings
from modelport.monitoring.drift import build_profile
from modelport.monitoring.profiles import ProfileStore
from modelport.registry import Registry
from modelport.runtimes import LoadSpec, load_runtime
from modelport.serving.config import ServeConfig
from modelport.serving.server import RunningServer, run_server
from tests.conftest import free_port, train_iris_onnx

from .test_deploy_assets import dashboard_expressions, referenced_names, rule_expressions

if "monitoring" not in ServeConfig.model_fields:
    pytest.skip(
        "the server does not wire monitoring yet (ServeConfig has no 'monitoring' section)",
        allow_module_level=True,
    )

REQUIRE_PROM = os.environ.get("MODELPORT_TEST_REQUIRE_PROMETHEUS") == "1"
N_OK, N_BAD, N_TFS = 37, 5, 4
N_BATCH, BATCH_ROWS = 4, 250  # fill the drift window


def train_ridge_onnx(path: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    path.write_bytes(to_onnx(Ridge().fit(X, y), X[:1], target_opset=17).SerializeToString())
    return path


class ServerThread:
    """``run_server`` on its own event loop in a thread."""

    def __init__(self, settings: Settings, config: ServeConfig) -> None:
        self.settings, self.config = settings, config
        self.handle: RunningServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        def ready(h: RunningServer) -> None:
            self.handle = h
            self._ready.set()

        asyncio.run(run_server(self.settings, self.config, on_ready=ready, install_signals=False))

    def start(self) -> RunningServer:
        self._thread.start()
        assert self._ready.wait(120), "server did not start"
        assert self.handle is not None
        return self.handle

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
        self._thread.join(60)


def iris_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    idx = rng.integers(0, len(X), n)
    return X[idx].astype(np.float32), y[idx]


def v2_body(x: np.ndarray, rid: str | None = None, name: str = "X") -> dict:
    body: dict = {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if rid is not None:
        body["id"] = rid
    return body


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("live")
    settings = Settings(home=root / "home")
    reg = Registry.from_settings(settings)
    iris = reg.register(train_iris_onnx(root / "iris.onnx"), "iris")
    reg.register(train_iris_onnx(root / "iris.onnx"), "iris-slow")
    reg.register(train_ridge_onnx(root / "ridge.onnx"), "diabetes")
    rng = np.random.default_rng(0)
    ref, _ = iris_rows(rng, 3000)
    runtime = load_runtime("onnx", LoadSpec(reg.open(iris), iris.entry, iris.signature))
    labels = runtime.predict({"X": ref})["label"]
    runtime.close()
    reg.close()
    profile = build_profile("iris", "1", {"X": ref}, predictions=labels)
    ProfileStore.under_home(settings.home).save(profile)
    config = ServeConfig.load(
        None,
        {
            "http_port": free_port(),
            "poll_interval_s": 0.5,
            "models": [
                {"ref": "iris"},
                # batches wait up to 300 ms and at most 2 requests queue: a burst is refused
                {
                    "ref": "iris-slow",
                    "max_batch_size": 64,
                    "max_queue_delay_us": 300_000,
                    "max_queue_size": 2,
                },
                {"ref": "diabetes"},
                {"ref": "missing-model"},  # fails to load: counted
            ],
            "monitoring": {
                "payload_sample_rate": 1.0,
                "evaluation_interval_s": 0.2,
            },
        },
    )
    config = config.model_copy(update={"grpc_port": free_port()})
    server = ServerThread(settings, config)
    handle = server.start()
    url = f"http://127.0.0.1:{handle.http_port}"
    state = {"url": url, "grpc": f"127.0.0.1:{handle.grpc_port}", "settings": settings}
    with httpx.Client(base_url=url, timeout=30) as client:
        state["client"] = client
        state.update(drive(client, state["grpc"], rng))
        yield state
    server.stop()


def drive(client: httpx.Client, grpc_addr: str, rng: np.random.Generator) -> dict:
    """The traffic every test below looks at; returns what was sent and answered."""
    X, y = iris_rows(rng, N_OK)
    X[:, 2] += 2.0  # petal length shifted: drift on X[2]
    answers = {}
    for i in range(N_OK):
        r = client.post("/v2/models/iris/infer", json=v2_body(X[i : i + 1], f"req-{i}"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == f"req-{i}"
        label = next(o for o in body["outputs"] if o["name"] == "label")
        answers[f"req-{i}"] = (int(label["data"][0]), int(y[i]))
    for _ in range(N_BATCH):
        xb, _ = iris_rows(rng, BATCH_ROWS)
        xb[:, 2] += 2.0
        assert client.post("/v2/models/iris/infer", json=v2_body(xb)).status_code == 200
    for _ in range(N_BAD):  # decodes, fails validation: 400 inside the data plane
        r = client.post("/v2/models/iris/infer", json=v2_body(np.zeros((1, 3), np.float32)))
        assert r.status_code == 400
    for i in range(N_TFS):
        r = client.post("/v1/models/iris:predict", json={"instances": X[i : i + 1].tolist()})
        assert r.status_code == 200, r.text
    anonymous = client.post("/v2/models/iris/infer", json=v2_body(X[:1])).json()["id"]
    # gRPC
    import tritonclient.grpc as grpcclient

    g = grpcclient.InferenceServerClient(grpc_addr)
    inp = grpcclient.InferInput("X", [1, 4], "FP32")
    inp.set_data_from_numpy(X[:1])
    for _ in range(3):
        g.infer("iris", [inp])
    g.close()
    # a burst at the small queue: some are refused with 503
    statuses = asyncio.run(burst(str(client.base_url), X[:1], 12))
    # regression traffic and feedback
    Xd = rng.normal(0, 0.05, size=(20, 10)).astype(np.float32)
    reg_pred = {}
    for i in range(20):
        r = client.post("/v2/models/diabetes/infer", json=v2_body(Xd[i : i + 1], f"d-{i}"))
        assert r.status_code == 200, r.text
        reg_pred[f"d-{i}"] = float(r.json()["outputs"][0]["data"][0])
    return {
        "answers": answers,
        "anonymous_id": anonymous,
        "burst": statuses,
        "regression": reg_pred,
    }


async def burst(url: str, x: np.ndarray, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        rs = await asyncio.gather(
            *(c.post("/v2/models/iris-slow/infer", json=v2_body(x)) for _ in range(n))
        )
    return [r.status_code for r in rs]


def scrape(client: httpx.Client, accept: str | None = None) -> dict[str, float]:
    headers = {"accept": accept} if accept else {}
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            key = s.name + json.dumps(dict(sorted(s.labels.items())), separators=(",", ":"))
            out[key] = s.value
    return out


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    return samples.get(name + json.dumps(dict(sorted(labels.items())), separators=(",", ":")), 0.0)


def test_counters_and_histograms_match_the_requests_sent(live: dict):
    s = scrape(live["client"])
    mv = {"model": "iris", "version": "1"}
    rest_ok = value(s, "modelport_requests_total", **mv, protocol="rest", code="200")
    assert rest_ok == N_OK + N_BATCH + 1  # + the anonymous request
    assert value(s, "modelport_requests_total", **mv, protocol="rest", code="400") == N_BAD
    assert value(s, "modelport_requests_total", **mv, protocol="tfserving", code="200") == N_TFS
    assert value(s, "modelport_requests_total", **mv, protocol="grpc", code="200") == 3
    rest = {**mv, "protocol": "rest"}
    rest_all = N_OK + N_BATCH + 1 + N_BAD
    assert value(s, "modelport_request_duration_seconds_count", **rest) == rest_all
    inf = value(s, "modelport_request_duration_seconds_bucket", **rest, le="+Inf")
    assert inf == rest_all
    answered = N_OK + N_BATCH + 1 + N_TFS + 3  # requests that reached the model
    assert value(s, "modelport_compute_duration_seconds_count", **mv) == answered
    assert value(s, "modelport_queue_duration_seconds_count", **mv) == answered
    assert value(s, "modelport_batch_size_count", **mv) == answered
    rows = answered - N_BATCH + N_BATCH * BATCH_ROWS
    assert value(s, "modelport_batch_size_sum", **mv) == rows
    assert value(s, "modelport_batch_size_bucket", **mv, le="256.0") == answered
    assert value(s, "modelport_model_loaded", **mv) == 1
    assert value(s, "modelport_model_load_seconds", **mv) > 0
    assert value(s, "modelport_model_load_failures_total", model="missing-model") >= 1
    assert value(s, "process_resident_memory_bytes") > 0


def test_rejected_requests_are_counted(live: dict):
    refused = live["burst"].count(503)
    assert refused >= 1
    assert set(live["burst"]) <= {200, 503}
    s = scrape(live["client"])
    mv = {"model": "iris-slow", "version": "1"}
    assert value(
        s, "modelport_rejected_requests_total", model="iris-slow", reason="queue_full"
    ) == (refused)
    assert value(s, "modelport_requests_total", **mv, protocol="rest", code="503") == refused
    assert value(s, "modelport_requests_total", **mv, protocol="rest", code="200") == (
        len(live["burst"]) - refused
    )
    # the answered ones ran in batches: fewer executions than requests
    executions = value(s, "modelport_batch_size_count", **mv)
    assert 1 <= executions < len(live["burst"]) - refused + 1


def test_openmetrics_on_request(live: dict):
    r = live["client"].get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


@pytest.fixture(scope="module")
def labelled(live: dict) -> dict:
    """Labels for every iris answer (shuffled, four sent twice) and every regression one."""
    client, answers = live["client"], live["answers"]
    rng = np.random.default_rng(3)
    items = [{"id": i, "label": answers[i][1]} for i in rng.permutation(list(answers))]
    iris = client.post("/v2/models/iris/feedback", json={"items": items + items[:4]})
    truth_d = {k: 150.0 + 10 * j for j, k in enumerate(live["regression"])}
    diabetes = client.post(
        "/v2/models/diabetes/feedback",
        json={"items": [{"id": k, "label": v} for k, v in truth_d.items()]},
    )
    return {"iris": iris, "diabetes": diabetes, "truth_d": truth_d}


def test_feedback_gives_live_accuracy_equal_to_sklearn(live: dict, labelled: dict):
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

    client, answers = live["client"], live["answers"]
    r = labelled["iris"]
    assert r.status_code == 200, r.text
    assert (r.json()["joined"], r.json()["duplicates"]) == (N_OK, 4)
    perf = client.get("/v2/models/iris/performance").json()
    ids = list(answers)
    truth = [answers[i][1] for i in ids]
    pred = [answers[i][0] for i in ids]
    assert perf["version"] == "1"
    assert perf["count"] == N_OK
    assert perf["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert perf["f1"] == pytest.approx(f1_score(truth, pred, average="macro", zero_division=0))
    assert live["anonymous_id"]  # the server made one up

    assert labelled["diabetes"].json()["joined"] == 20
    perf = client.get("/v2/models/diabetes/versions/1/performance").json()
    truth_d = labelled["truth_d"]
    keys = list(truth_d)
    mae = mean_absolute_error([truth_d[k] for k in keys], [live["regression"][k] for k in keys])
    assert perf["mae"] == pytest.approx(mae, rel=1e-5)


def test_drift_endpoint_flags_the_shifted_feature(live: dict):
    r = live["client"].get("/v2/models/iris/drift")
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["model"], d["version"], d["drifted"]) == ("iris", "1", True)
    assert d["window"] == 1000  # the newest 1000 rows
    assert d["enough_data"] is True
    assert [f["name"] for f in d["features"] if f["drifted"]] == ["X[2]"]
    r = live["client"].get("/v2/models/diabetes/drift")
    assert r.status_code == 412  # no reference profile: says how to make one
    assert "modelport monitor reference" in r.json()["error"]


def wait_for(predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_every_metric_in_the_rules_and_dashboard_is_exported(live: dict, labelled: dict):
    client = live["client"]
    # feedback (``labelled``), drift and alerts are published by the evaluation loop,
    # every 0.2 s here
    needed = set().union(*(referenced_names(e) for e in rule_expressions()))
    needed |= set().union(*(referenced_names(e) for e in dashboard_expressions()))

    def all_present() -> bool:
        names = {k.split("{", 1)[0] for k in scrape(client)}
        return needed <= names

    assert wait_for(all_present), needed - {k.split("{", 1)[0] for k in scrape(client)}


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        msg = "prometheus not installed (Debian: apt-get install prometheus)"
        if REQUIRE_PROM:
            pytest.fail(msg + " and MODELPORT_TEST_REQUIRE_PROMETHEUS=1")
        pytest.skip(msg)
    return path


def test_real_prometheus_scrapes_the_server_and_answers_promql(live: dict, tmp_path: Path):
    binary = prometheus_binary()
    target = live["url"].removeprefix("http://")
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}\n"
        "scrape_configs:\n  - job_name: modelport\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:

        def query(q: str) -> dict:
            return httpx.get(f"{api}/query", params={"query": q}, timeout=10).json()

        def answered() -> bool:
            try:
                res = query('sum(modelport_requests_total{model="iris",code="200"})')
            except (httpx.HTTPError, ValueError):  # not up yet, or not ready (plain text)
                return False
            return res["status"] == "success" and bool(res["data"]["result"])

        assert wait_for(answered, 60), log.read_text()[-2000:]
        res = query('sum(modelport_requests_total{model="iris",code="200"})')
        assert float(res["data"]["result"][0]["value"][1]) == N_OK + N_BATCH + 1 + N_TFS + 3
        buckets = 'modelport_request_duration_seconds_bucket{model="iris"}'
        res = query(f"histogram_quantile(0.99, sum by (le) ({buckets}))")
        assert 0 < float(res["data"]["result"][0]["value"][1]) < 10
        groups = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in groups) == 10
        assert all(r["health"] != "err" for g in groups for r in g["rules"])
        for expr in dashboard_expressions():  # every dashboard query is valid PromQL
            q = (
                expr.replace("$__rate_interval", "1m")
                .replace("$job", ".*")
                .replace("$model", ".*")
                .replace("$version", ".*")
            )
            if q.startswith("label_values("):
                continue
            assert query(q)["status"] == "success", q
    finally:
        proc.terminate()
        proc.wait(30)
