"""Server-side fetch policy: every address form of threats.md row 15, rebinding, redirects."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, PayloadTooLarge, PermissionDenied, Unavailable
from modelport.security.urls import FetchPolicy, embedded_ipv4, fetch, is_public, parse_ip
from tests.conftest import free_port


class Sink:
    """A listener that counts every connection it receives."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.hits = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join()
        self.sock.close()


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def sink(port: int) -> Iterator[Sink]:
    s = Sink("127.0.0.1", port)
    yield s
    s.close()


# Every internal address spelling of threats.md §5 row 15 (and a few more).
INTERNAL_HOSTS = [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "0x7f.0.0.1",
    "2130706433",
    "017700000001",
    "0177.0.0.1",
    "0",
    "0.0.0.0",
    "169.254.169.254",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "[fe80::1]",
    "[fc00::1]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
]


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_internal_addresses_are_refused_even_when_allow_listed(host: str, port: int, sink: Sink):
    canonical = str(parse_ip(host.strip("[]")))
    policy = FetchPolicy(allow_hosts=(host.strip("[]"), canonical), allow_http=True)
    for scheme in ("http", "https"):
        with pytest.raises(PermissionDenied):
            fetch(f"{scheme}://{host}:{port}/model.onnx", policy)
    with pytest.raises(PermissionDenied):  # default deny
        fetch(f"https://{host}:{port}/model.onnx", FetchPolicy())
    assert sink.hits == 0


def test_parse_ip_understands_every_legacy_spelling():
    for form in ("127.0.0.1", "127.1", "0x7f000001", "2130706433", "017700000001", "0177.0.0.1"):
        assert str(parse_ip(form)) == "127.0.0.1", form
    assert parse_ip("models.example.com") is None
    assert embedded_ipv4(ipaddress.ip_address("::ffff:10.1.2.3")) == ipaddress.ip_address(
        "10.1.2.3"
    )
    assert is_public(ipaddress.ip_address("8.8.8.8"))
    assert is_public(ipaddress.ip_address("2606:4700::1111"))
    assert not is_public(ipaddress.ip_address("2002:0a00:0001::"))  # 6to4 of 10.0.0.1


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", PermissionDenied),
        ("file://localhost/etc/passwd", PermissionDenied),
        ("file:/etc/passwd", PermissionDenied),
        ("gopher://models.example.com:70/_stats", PermissionDenied),
        ("ftp://models.example.com/m.onnx", PermissionDenied),
        ("jar:https://models.example.com/m.jar!/", PermissionDenied),
        ("http://models.example.com/m.onnx", PermissionDenied),  # http not allowed by default
        ("https:///#/../../etc/passwd", InvalidArgument),
        ("https://#@models.example.com/", InvalidArgument),
        ("//proc/self/root", PermissionDenied),
        ("/etc/passwd", PermissionDenied),
        ("https://user:pw@models.example.com/m", InvalidArgument),
        ("https://models.example.com@127.0.0.1/m", InvalidArgument),
        ("https://models.example.com:99999/m", InvalidArgument),
        ("https://models.example.com /m", InvalidArgument),
        ("https://evil.com/m.onnx", PermissionDenied),
        ("https://models.example.com.evil.com/m", PermissionDenied),
        ("https://example.com/m", PermissionDenied),  # the wildcard does not cover the apex
        ("https://%6d%6f%64%65%6c%73.example.com/m", InvalidArgument),
    ],
)
def test_parse_differentials_and_schemes(url: str, error: type[Exception]):
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.216.34"]

    policy = FetchPolicy(allow_hosts=("*.example.com",), resolver=resolver)
    with pytest.raises(error):
        policy.check(url)
    assert resolved == []  # refused before any DNS lookup


def test_allowed_host_resolving_to_public_passes_check():
    policy = FetchPolicy(
        allow_hosts=("*.example.com", "Registry.Example.org."),
        resolver=lambda host, port: ["93.184.216.34", "2606:2800:220:1::1"],
    )
    t = policy.check("https://models.example.com/a/b.onnx?x=1#frag")
    assert (t.host, t.port, t.request_path) == ("models.example.com", 443, "/a/b.onnx?x=1")
    assert t.addresses == ("93.184.216.34", "2606:2800:220:1::1")
    assert policy.check("https://registry.example.org./m").host == "registry.example.org"


def test_any_private_answer_among_public_ones_is_refused():
    policy = FetchPolicy(
        allow_hosts=("models.example.com",),
        resolver=lambda host, port: ["93.184.216.34", "10.0.0.5"],
    )
    with pytest.raises(PermissionDenied, match="non-public"):
        policy.check("https://models.example.com/m")


def test_settings_build_a_default_deny_policy(tmp_path: Path):
    assert FetchPolicy.from_settings(Settings(home=tmp_path)).allow_hosts == ()
    p = FetchPolicy.from_settings(
        Settings(home=tmp_path, fetch_allow_hosts=["*.corp"], fetch_allow_http=True)
    )
    assert p.allow_hosts == ("*.corp",)
    assert p.allow_http


# ----------------------------------------------------------------------------- live fetches


class Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}
    seen_hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen_hosts.append(self.headers.get("Host", ""))
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def origin(port: int) -> Iterator[http.server.ThreadingHTTPServer]:
    """A model server on 127.0.0.2 (same port as the sink on 127.0.0.1)."""
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.2", port), Handler)
    except OSError as e:
        pytest.skip(f"cannot bind 127.0.0.2 here: {e}")
    Handler.routes = {}
    Handler.seen_hosts = []
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


class Rebinder:
    """Answers the validated address first, then an internal one (DNS rebinding)."""

    def __init__(self, first: str, later: str) -> None:
        self.answers = [first, later]
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [self.answers[min(self.calls - 1, 1)]]


def policy_for(resolver: Rebinder | None = None, **kw: object) -> FetchPolicy:
    return FetchPolicy(
        allow_hosts=("models.test",),
        allow_http=True,
        allow_networks=("127.0.0.2/32",),
        resolver=resolver or (lambda host, port: ["127.0.0.2"]),
        **kw,  # type: ignore[arg-type]
    )


def test_fetch_connects_to_the_validated_address(origin: object, port: int, sink: Sink):
    Handler.routes["/m.onnx"] = (200, {}, b"model-bytes")
    rebinder = Rebinder("127.0.0.2", "127.0.0.1")
    assert fetch(f"http://models.test:{port}/m.onnx", policy_for(rebinder)) == b"model-bytes"
    assert rebinder.calls == 1
    assert Handler.seen_hosts == [f"models.test:{port}"]
    # the next answer would point at the sink; a new fetch asks again and is refused
    with pytest.raises(PermissionDenied):
        fetch(f"http://models.test:{port}/m.onnx", policy_for(rebinder))
    assert sink.hits == 0


def test_rebinding_to_internal_on_a_later_lookup_is_blocked(origin: object, port: int, sink: Sink):
    Handler.routes["/r"] = (302, {"Location": "/m.onnx"}, b"")
    Handler.routes["/m.onnx"] = (200, {}, b"ok")
    rebinder = Rebinder("127.0.0.2", "127.0.0.1")
    with pytest.raises(PermissionDenied):
        fetch(f"http://models.test:{port}/r", policy_for(rebinder))
    assert rebinder.calls == 2  # re-resolved and re-checked on the redirect
    assert sink.hits == 0


def test_redirects_are_rechecked(origin: object, port: int, sink: Sink):
    Handler.routes["/to-internal"] = (302, {"Location": f"http://127.0.0.1:{port}/x"}, b"")
    Handler.routes["/to-metadata"] = (301, {"Location": "http://169.254.169.254/latest/"}, b"")
    Handler.routes["/to-file"] = (307, {"Location": "file:///etc/passwd"}, b"")
    Handler.routes["/hop"] = (302, {"Location": "/m.onnx"}, b"")
    Handler.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    Handler.routes["/m.onnx"] = (200, {}, b"ok")
    policy = policy_for()
    for path in ("/to-internal", "/to-metadata", "/to-file"):
        with pytest.raises(PermissionDenied):
            fetch(f"http://models.test:{port}{path}", policy)
    assert fetch(f"http://models.test:{port}/hop", policy) == b"ok"
    with pytest.raises(Unavailable, match="redirects"):
        fetch(f"http://models.test:{port}/loop", policy)
    assert sink.hits == 0


def test_size_limit_and_errors(origin: object, port: int):
    Handler.routes["/big"] = (200, {}, b"x" * 5000)
    Handler.routes["/gone"] = (500, {}, b"boom /srv/secret/path")
    policy = policy_for(max_bytes=1000)
    with pytest.raises(PayloadTooLarge):
        fetch(f"http://models.test:{port}/big", policy)
    with pytest.raises(Unavailable) as e:
        fetch(f"http://models.test:{port}/gone", policy)
    assert "/srv/secret" not in str(e.value)


def _cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(("cert_name", "ok"), [("models.test", True), ("other.test", False)])
def test_https_verifies_the_original_host_name(
    origin: http.server.ThreadingHTTPServer, port: int, tmp_path: Path, cert_name: str, ok: bool
):
    cert, key = _cert(tmp_path, cert_name)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    origin.socket = server_ctx.wrap_socket(origin.socket, server_side=True)
    Handler.routes["/m.onnx"] = (200, {}, b"tls-bytes")
    client_ctx = ssl.create_default_context(cafile=str(cert))
    policy = FetchPolicy(
        allow_hosts=("models.test",),
        allow_networks=("127.0.0.2/32",),
        resolver=lambda host, port: ["127.0.0.2"],
        ssl_context=client_ctx,
        timeout=5,
    )
    url = f"https://models.test:{port}/m.onnx"
    if ok:
        assert fetch(url, policy) == b"tls-bytes"
    else:
        with pytest.raises(Unavailable):
            fetch(url, policy)
