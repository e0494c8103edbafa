"""gRPC conformance: the real tritonclient.grpc client against a real server and data plane.

The server runs the full stack (registry → manager → data plane → gRPC adapter) in a
thread, serving real ONNX models registered in a temporary registry.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.conftest import train_iris_onnx
from tests.serving.conftest import IRIS_X, Served, start_thread_server
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from modelport.core import errors
from modelport.core.config import Settings
from modelport.core.types import InferenceRequest
from modelport.protocol import grpc_codec
from modelport.registry import Registry
from modelport.serving.config import ModelConfig
from modelport.serving.grpc import STATUS, start_grpc_server


def _identity_model(path: Path, elem_type: int, shape: list[int | None], double: bool) -> Path:
    import onnx
    from onnx import helper

    op = (
        helper.make_node("Add", ["x", "x"], ["y"])
        if double
        else helper.make_node("Identity", ["x"], ["y"])
    )
    graph = helper.make_graph(
        [op],
        "echo",
        [helper.make_tensor_value_info("x", elem_type, shape)],
        [helper.make_tensor_value_info("y", elem_type, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _named_labels_model(path: Path) -> Path:
    """Iris with string class names: its 'label' output is a BYTES tensor."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    X = data.data.astype(np.float32)
    y = data.target_names[data.target]
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from onnx import TensorProto

    d = tmp_path_factory.mktemp("grpc-models")
    return {
        "iris": train_iris_onnx(d / "iris.onnx"),
        "iris_b": train_iris_onnx(d / "iris_b.onnx", seed=1),
        "names": _named_labels_model(d / "names.onnx"),
        "half": _identity_model(d / "half.onnx", TensorProto.FLOAT16, [None, 2], double=True),
        "text": _identity_model(d / "text.onnx", TensorProto.STRING, [None], double=False),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]):
    settings = Settings(home=tmp_path_factory.mktemp("grpc-home"))
    reg = Registry.from_settings(settings)
    reg.register(files["iris"], "iris")
    reg.register(files["iris_b"], "iris")
    for name in ("iris-q", "iris-spare"):
        reg.register(files["iris"], name)
    for name in ("names", "half", "text"):
        reg.register(files[name], name)
    reg.close()
    models = [
        ModelConfig(ref="iris"),
        # a long batching delay and a one-request queue: the second request is refused
        ModelConfig(ref="iris-q", max_batch_size=16, max_queue_delay_us=400_000, max_queue_size=1),
        ModelConfig(ref="iris-spare"),
        ModelConfig(ref="names"),
        ModelConfig(ref="half"),
        ModelConfig(ref="text"),
    ]
    thread, srv = start_thread_server(settings, grpc_port=0, models=models, max_body_bytes=1 << 20)
    assert srv.grpc is not None
    yield srv
    thread.stop()


@pytest.fixture
def tc(served: Served):
    client = tg.InferenceServerClient(served.grpc)
    yield client
    client.close()


@pytest.fixture
def channel(served: Served):
    with grpc.insecure_channel(served.grpc) as ch:
        yield ch


def reference(path: Path, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(str(path)).run(None, {"X": x})


def iris_input(x: np.ndarray = IRIS_X, datatype: str = "FP32") -> tg.InferInput:
    i = tg.InferInput("X", list(x.shape), datatype)
    i.set_data_from_numpy(x)
    return i


def status_of(excinfo: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(excinfo.value.status())


# ------------------------------------------------------------------------ health, metadata


def test_live_ready_and_model_ready(tc):
    assert tc.is_server_live()
    assert tc.is_server_ready()
    assert tc.is_model_ready("iris")
    assert tc.is_model_ready("iris", "2")
    assert not tc.is_model_ready("iris", "1")  # registered but not served
    assert not tc.is_model_ready("nope")


def test_grpc_health_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    srv = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
    assert stub.Check(srv).status == serving
    assert stub.Check(health_pb2.HealthCheckRequest(service="iris")).status == serving
    with pytest.raises(grpc.RpcError) as e:
        stub.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    first = next(stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5))
    assert first.status == serving


def test_server_and_model_metadata(tc):
    meta = tc.get_server_metadata()
    assert meta.name == "modelport"
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(meta.extensions)
    md = tc.get_model_metadata("iris")
    assert (md.name, md.platform, list(md.versions)) == ("iris", "onnxruntime_onnx", ["2"])
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("X", "FP32", [-1, 4])]
    assert {(t.name, t.datatype) for t in md.outputs} == {
        ("label", "INT64"),
        ("probabilities", "FP32"),
    }
    assert tc.get_model_metadata("iris", "2").name == "iris"


def test_model_config(tc):
    cfg = tc.get_model_config("iris-q").config
    assert cfg.name == "iris-q"
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 16
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("X", [4])]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 400_000
    plain = tc.get_model_config("iris", as_json=True)["config"]
    assert plain["input"][0]["dims"] == ["-1", "4"]  # protobuf JSON writes int64 as strings


# ------------------------------------------------------------------------------- inference


def test_infer_raw_contents_matches_onnxruntime(tc, files):
    want_label, want_prob = reference(files["iris_b"], IRIS_X)  # v2 = the seed-1 model
    outputs = [tg.InferRequestedOutput("label"), tg.InferRequestedOutput("probabilities")]
    r = tc.infer("iris", [iris_input()], outputs=outputs, request_id="req-1")
    np.testing.assert_array_equal(r.as_numpy("label"), want_label)
    np.testing.assert_allclose(r.as_numpy("probabilities"), want_prob, rtol=1e-6)
    resp = r.get_response()
    assert (resp.model_name, resp.model_version, resp.id) == ("iris", "2", "req-1")
    pinned = tc.infer("iris", [iris_input()], model_version="2")
    np.testing.assert_array_equal(pinned.as_numpy("label"), want_label)


def test_infer_typed_contents(channel, files):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    msg = grpc_codec.request_to_grpc("iris", None, InferenceRequest({"X": IRIS_X}), raw=False)
    assert not msg.raw_input_contents
    assert len(msg.inputs[0].contents.fp32_contents) == IRIS_X.size
    resp = grpc_codec.response_from_grpc(stub.ModelInfer(msg, timeout=10))
    want_label, want_prob = reference(files["iris_b"], IRIS_X)
    np.testing.assert_array_equal(resp.outputs["label"], want_label)
    np.testing.assert_allclose(resp.outputs["probabilities"], want_prob, rtol=1e-6)


def test_fp16_model_and_fp16_to_fp32_coercion(tc, files):
    h = np.array([[0.5, -1.25], [3.0, 65.0]], np.float16)
    i = tg.InferInput("x", list(h.shape), "FP16")
    i.set_data_from_numpy(h)
    got = tc.infer("half", [i]).as_numpy("y")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, h + h)
    # FP16 sent to an FP32 model is widened safely
    r = tc.infer("iris", [iris_input(IRIS_X.astype(np.float16), "FP16")])
    want = reference(files["iris_b"], IRIS_X.astype(np.float16).astype(np.float32))[0]
    np.testing.assert_array_equal(r.as_numpy("label"), want)


def test_bytes_output(tc, files):
    want = reference(files["names"], IRIS_X)[0]
    got = tc.infer("names", [iris_input()]).as_numpy("label")
    assert got.dtype == object
    assert [x.decode() for x in got] == [str(x) for x in want]


def test_bytes_input_round_trip(tc):
    s = np.array([b"setosa", "é".encode(), b""], dtype=object)
    i = tg.InferInput("x", [3], "BYTES")
    i.set_data_from_numpy(s)
    assert tc.infer("text", [i]).as_numpy("y").tolist() == s.tolist()


def test_classification(tc, files):
    out = tg.InferRequestedOutput("probabilities", class_count=2)
    got = tc.infer("iris", [iris_input()], outputs=[out]).as_numpy("probabilities")
    prob = reference(files["iris_b"], IRIS_X)[1]
    assert got.shape == (3, 2)
    for row, p in zip(got, prob, strict=True):
        top = np.argsort(-p, kind="stable")[:2]
        assert [x.decode() for x in row] == [f"{p[k]:f}:{k}" for k in top]


def test_statistics(tc):
    tc.infer("iris", [iris_input()])
    stats = tc.get_inference_statistics("iris").model_stats
    assert [(s.name, s.version) for s in stats] == [("iris", "2")]
    s = stats[0]
    assert s.inference_count >= 3
    assert s.execution_count >= 1
    assert s.inference_stats.success.count >= 1
    assert s.inference_stats.success.ns > 0
    assert s.last_inference > 0
    everything = tc.get_inference_statistics().model_stats
    assert {"iris", "iris-q", "names"} <= {x.name for x in everything}


# ------------------------------------------------------------------------ model control


def test_repository_index_unload_and_load(tc, channel):
    index = {m.name: m for m in tc.get_model_repository_index().models}
    assert index["iris-spare"].state == "READY"
    assert index["iris-spare"].version == "1"
    tc.unload_model("iris-spare")
    assert not tc.is_model_ready("iris-spare")
    with pytest.raises(InferenceServerException) as e:
        tc.infer("iris-spare", [iris_input()])
    assert status_of(e) == "StatusCode.UNAVAILABLE"
    index = {m.name: m for m in tc.get_model_repository_index().models}
    assert index["iris-spare"].state == "UNAVAILABLE"
    assert index["iris-spare"].reason == "unloaded"
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    ready_only = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), timeout=5)
    names = {m.name for m in ready_only.models}
    assert "iris" in names
    assert "iris-spare" not in names
    tc.load_model("iris-spare")
    assert tc.is_model_ready("iris-spare")
    assert tc.infer("iris-spare", [iris_input()]).as_numpy("label").shape == (3,)


def test_load_refuses_inline_config_and_files(tc):
    with pytest.raises(InferenceServerException) as e:
        tc.load_model("iris-spare", config='{"max_batch_size": 4}')
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as e:
        tc.load_model("iris-spare", config="{}", files={"file:1/model.onnx": b"x"})
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as e:
        tc.load_model("../etc")
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"


# ------------------------------------------------------------------------------- errors


def _bytes_input(shape: list[int]) -> tg.InferInput:
    i = tg.InferInput("X", shape, "BYTES")
    i.set_data_from_numpy(np.array([b"1"] * int(np.prod(shape)), dtype=object).reshape(shape))
    return i


@pytest.mark.parametrize(
    ("model", "version", "inputs", "outputs", "code"),
    [
        ("nope", "", lambda: [iris_input()], None, "NOT_FOUND"),
        ("iris", "9", lambda: [iris_input()], None, "NOT_FOUND"),
        ("iris", "staging", lambda: [iris_input()], None, "NOT_FOUND"),
        ("../x", "", lambda: [iris_input()], None, "INVALID_ARGUMENT"),
        ("iris", "../1", lambda: [iris_input()], None, "INVALID_ARGUMENT"),
        ("iris", "", lambda: [_bytes_input([1, 4])], None, "INVALID_ARGUMENT"),
        ("iris", "", lambda: [iris_input(IRIS_X[:, :3])], None, "INVALID_ARGUMENT"),
        ("iris", "", lambda: [iris_input(), _bytes_input([1])], None, "INVALID_ARGUMENT"),
        ("iris", "", lambda: [], None, "INVALID_ARGUMENT"),
        (
            "iris",
            "",
            lambda: [iris_input()],
            [tg.InferRequestedOutput("nope")],
            "INVALID_ARGUMENT",
        ),
    ],
)
def test_infer_errors_have_exact_status(tc, model, version, inputs, outputs, code):
    with pytest.raises(InferenceServerException) as e:
        tc.infer(model, inputs(), model_version=version, outputs=outputs)
    assert status_of(e) == f"StatusCode.{code}"
    assert "Traceback" not in e.value.message()
    assert tc.infer("iris", [iris_input()]).as_numpy("label").shape == (3,)


@pytest.mark.parametrize(
    ("x", "datatype"),
    [(IRIS_X.astype(np.float64), "FP64"), (np.round(IRIS_X).astype(np.int64), "INT64")],
)
def test_safe_coercions_are_served(tc, files, x, datatype):
    got = tc.infer("iris", [iris_input(x, datatype)]).as_numpy("label")
    np.testing.assert_array_equal(got, reference(files["iris_b"], x.astype(np.float32))[0])


def test_garbage_protobuf_is_invalid_argument(channel, tc):
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x2a\x05\x0a\x01"):
        with pytest.raises(grpc.RpcError) as e:
            call(garbage, timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert tc.is_server_ready()


def test_oversize_message_is_resource_exhausted(tc):
    big = np.zeros((70_000, 4), np.float32)  # 1.1 MB > the 1 MiB limit of this server
    with pytest.raises(InferenceServerException) as e:
        tc.infer("iris", [iris_input(big)])
    assert status_of(e) == "StatusCode.RESOURCE_EXHAUSTED"
    assert tc.infer("iris", [iris_input()]).as_numpy("label").shape == (3,)


def test_unimplemented_rpcs(channel):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.SystemSharedMemoryStatus(pb.SystemSharedMemoryStatusRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_stream_infer_with_tritonclient_answers_every_request(served, files):
    """tritonclient's bidirectional stream: results matched by id, errors in-stream."""
    import queue

    results: queue.Queue[tuple[object, object]] = queue.Queue()
    client = tg.InferenceServerClient(served.grpc)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i in range(20):
            client.async_stream_infer("iris", [iris_input()], request_id=f"s{i}")
        client.async_stream_infer("no-such-model", [iris_input()], request_id="bad-model")
        wrong = tg.InferInput("X", [3, 3], "FP32")
        wrong.set_data_from_numpy(np.zeros((3, 3), np.float32))
        client.async_stream_infer("iris", [wrong], request_id="bad-shape")
        got = [results.get(timeout=10) for _ in range(22)]
    finally:
        client.stop_stream()
        client.close()
    answers = {r.get_response().id: r for r, e in got if e is None}
    errors = [str(e) for r, e in got if e is not None]
    assert sorted(answers) == sorted(f"s{i}" for i in range(20))
    want_label, _ = reference(files["iris_b"], IRIS_X)
    for r in answers.values():
        np.testing.assert_array_equal(r.as_numpy("label"), want_label)
    assert len(errors) == 2
    assert any("no-such-model" in e for e in errors)
    assert any("shape" in e for e in errors)


def test_stream_infer_garbage_message_is_answered_in_stream(channel):
    raw = channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=lambda b: b,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    good = grpc_codec.request_to_grpc("iris", None, InferenceRequest({"X": IRIS_X}), raw=True)
    good.id = "ok"
    answers = list(raw(iter([b"\xff\xff\xff", good.SerializeToString()]), timeout=10))
    assert len(answers) == 2
    assert {a.error_message for a in answers} == {"malformed ModelInferRequest", ""}
    assert [a.infer_response.id for a in answers if not a.error_message] == ["ok"]


def test_overload_is_unavailable(tc, served):
    results: list[object] = []

    def done(result: object, error: object) -> None:
        results.append(result if error is None else error)

    tc.async_infer("iris-q", [iris_input()], callback=done)
    time.sleep(0.1)  # the first request is now waiting in the batcher (400 ms delay)
    with pytest.raises(InferenceServerException) as e:
        tc.infer("iris-q", [iris_input()])
    assert status_of(e) == "StatusCode.UNAVAILABLE"
    assert "queue full" in e.value.message()
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(results[0], tg.InferResult)  # the accepted request was answered


def test_deadline_exceeded(tc):
    with pytest.raises(InferenceServerException) as e:
        tc.infer("iris-q", [iris_input()], client_timeout=0.1)  # batcher waits 400 ms
    assert status_of(e) == "StatusCode.DEADLINE_EXCEEDED"
    time.sleep(0.5)
    assert tc.infer("iris-q", [iris_input()]).as_numpy("label").shape == (3,)


def test_a_taken_port_is_an_error_not_a_shared_port(served):
    port = int(str(served.grpc).rsplit(":", 1)[1])
    assert served.handle is not None
    dataplane = served.handle.app.dataplane
    with pytest.raises(errors.InvalidArgument, match="cannot listen"):
        asyncio.run(start_grpc_server(dataplane, "127.0.0.1", port))


def test_status_table_maps_every_error_by_name():
    for code in errors.GrpcCode:
        assert STATUS[code].name == code.name
        assert STATUS[code].value[0] == int(code)
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.ModelportError):
            assert cls.grpc_code in STATUS
