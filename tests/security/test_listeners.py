"""Safe defaults for listeners: loopback unless authenticated, TLS and mutual TLS."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2 as pb

from modelport.core.config import Settings
from modelport.core.errors import FailedPrecondition, InvalidArgument
from modelport.registry import Registry
from modelport.security.keys import KeyStore
from modelport.security.listeners import (
    TlsFiles,
    check_exposure,
    default_allowed_hosts,
    is_loopback,
)
from modelport.security.policy import Role
from modelport.serving.config import ModelConfig, ServeConfig
from tests.security.certs import CA
from tests.security.server_harness import SecureServer


def test_exposure_rules():
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"):
        assert is_loopback(host)
        check_exposure(host, auth_enabled=False, insecure=False)
    for host in ("0.0.0.0", "::", "10.1.2.3", "192.168.1.5", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(FailedPrecondition, match="--insecure"):
            check_exposure(host, auth_enabled=False, insecure=False)
        check_exposure(host, auth_enabled=True, insecure=False)
        check_exposure(host, auth_enabled=False, insecure=True)
    assert default_allowed_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert default_allowed_hosts("0.0.0.0") is None


def test_serve_defaults_bind_loopback_only():
    # every listener the server opens uses ServeConfig.host, whose default is loopback
    assert is_loopback(ServeConfig().host)


def test_tls_files_from_settings(tmp_path: Path):
    ca = CA(tmp_path)
    server = ca.issue("server", server=True)
    other = ca.issue("other", server=True)
    assert TlsFiles.from_settings(Settings(home=tmp_path)) is None
    files = TlsFiles.from_settings(
        Settings(home=tmp_path, tls_cert_file=server.cert, tls_key_file=server.key)
    )
    assert files is not None
    assert files.uvicorn_options() == {
        "ssl_certfile": str(server.cert),
        "ssl_keyfile": str(server.key),
    }
    with pytest.raises(InvalidArgument, match="both"):
        TlsFiles.from_settings(Settings(home=tmp_path, tls_cert_file=server.cert))
    with pytest.raises(InvalidArgument, match="needs tls_cert_file"):
        TlsFiles.from_settings(Settings(home=tmp_path, tls_client_ca_file=ca.files.cert))
    with pytest.raises(InvalidArgument, match="cannot use the TLS files"):
        TlsFiles.from_settings(
            Settings(home=tmp_path, tls_cert_file=server.cert, tls_key_file=other.key)
        )
    with pytest.raises(InvalidArgument, match="cannot use the TLS files"):
        TlsFiles.from_settings(
            Settings(home=tmp_path, tls_cert_file=tmp_path / "nope.crt", tls_key_file=server.key)
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d)
    return ca, ca.issue("server", server=True), ca.issue("client", server=False)


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, iris_onnx: Path, pki
) -> Iterator[tuple[SecureServer, str]]:
    ca, server_cert, _ = pki
    settings = Settings(
        home=tmp_path_factory.mktemp("tls-home"),
        auth_enabled=True,
        tls_cert_file=server_cert.cert,
        tls_key_file=server_cert.key,
        tls_client_ca_file=ca.files.cert,
    )
    reg = Registry.from_settings(settings)
    reg.register(iris_onnx, "iris")
    reg.close()
    key = KeyStore.from_settings(settings).create(Role.PREDICTOR)[1]
    config = ServeConfig.load(None, {"models": [ModelConfig(ref="iris")], "poll_interval_s": 60})
    srv = SecureServer(settings, config, tls=TlsFiles.from_settings(settings)).start()
    yield srv, key
    srv.stop()


BODY = json.dumps(
    {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2]]}]}
)


def test_https_with_client_certificates(tls_server, pki):
    srv, key = tls_server
    ca, _, client = pki
    url = f"https://127.0.0.1:{srv.http_port}/v2/models/iris/infer"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    ctx = ssl.create_default_context(cafile=str(ca.files.cert))
    ctx.load_cert_chain(client.cert, client.key)
    with httpx.Client(verify=ctx) as c:
        r = c.post(url, content=BODY, headers=headers)
        assert r.status_code == 200, r.text
        assert c.post(url, content=BODY).status_code == 401  # TLS is not authentication
    no_cert = ssl.create_default_context(cafile=str(ca.files.cert))
    with httpx.Client(verify=no_cert) as c, pytest.raises(httpx.HTTPError):
        c.post(url, content=BODY, headers=headers)
    with pytest.raises(httpx.HTTPError):
        httpx.post(url.replace("https", "http"), content=BODY, headers=headers, timeout=5)


def test_grpc_with_client_certificates(tls_server, pki):
    srv, key = tls_server
    ca, _, client = pki

    def metadata(creds: grpc.ChannelCredentials) -> grpc.StatusCode:
        with grpc.secure_channel(f"127.0.0.1:{srv.grpc_port}", creds) as ch:
            fn = ch.unary_unary(
                "/inference.GRPCInferenceService/ServerMetadata",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=lambda b: b,
            )
            try:
                fn(
                    pb.ServerMetadataRequest(),
                    metadata=[("authorization", f"Bearer {key}")],
                    timeout=10,
                )
            except grpc.RpcError as e:
                return e.code()
            return grpc.StatusCode.OK

    root = ca.files.cert.read_bytes()
    good = grpc.ssl_channel_credentials(root, client.key.read_bytes(), client.cert.read_bytes())
    assert metadata(good) == grpc.StatusCode.OK
    assert metadata(grpc.ssl_channel_credentials(root)) == grpc.StatusCode.UNAVAILABLE
