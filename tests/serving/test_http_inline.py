"""The HTTP listener's inline infer path (serving/http_inline.py), over raw sockets.

Requests to a known infer route of an inline model are answered from a loop callback
with one write, without an ASGI task; everything else takes uvicorn's ASGI path. These tests check
that both paths give the same answers and that HTTP/1.1 still holds: pipelining, bodies
in pieces, large and compressed bodies, HTTP/1.0, draining, and a graceful shutdown
or a client that is not reading while an inline request is under way.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from tests.serving.conftest import Served, start_thread_server

from modelport.core.config import Settings
from modelport.serving.http_inline import INLINE_BODY_MAX, protocol_class
from modelport.serving.rest import RestApp

ROW = [5.1, 3.5, 1.4, 0.2]


def infer_body(rows: int = 1, datatype: str = "FP32") -> bytes:
    data = ROW * rows
    return json.dumps(
        {"inputs": [{"name": "X", "shape": [rows, 4], "datatype": datatype, "data": data}]}
    ).encode()


def post(path: str, body: bytes, version: str = "1.1", **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def port_of(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


def exchange(
    port: int, pieces: list[bytes], answers: int, pause: float = 0.0
) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send ``pieces`` (``pause`` seconds apart) on one connection and read ``answers``
    responses; also returns whether the server then closed the connection."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for piece in pieces:
            s.sendall(piece)
            time.sleep(pause)
        buf = b""
        while len(out) < answers:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head, rest = buf[:end].decode("latin-1"), buf[end + 4 :]
                status_line, *lines = head.split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)
                }
                size = int(headers["content-length"])
                if len(rest) >= size:
                    out.append((int(status_line.split()[1]), headers, rest[:size]))
                    buf = rest[size:]
                    continue
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        s.settimeout(0.2)
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
    return out, closed


@pytest.fixture
def spy(server: Served) -> Iterator[list[Any]]:
    """Every answer the inline path gave (None: handed to the ASGI path)."""
    assert server.handle is not None
    rest = server.handle.app.rest
    real = rest.infer_now
    seen: list[Any] = []

    def infer_now(*args: Any) -> Any:
        seen.append(answer := real(*args))
        return answer

    rest.infer_now = infer_now  # type: ignore[method-assign]
    httpx.post(server.url + "/v2/models/iris/infer", content=infer_body())  # route known
    seen.clear()
    yield seen
    rest.infer_now = real  # type: ignore[method-assign]


def outputs(body: bytes) -> dict[str, Any]:
    return {o["name"]: o["data"] for o in json.loads(body)["outputs"]}


def test_inline_answer_equals_the_asgi_answer(server: Served, spy: list[Any]):
    port = port_of(server)
    [(status, headers, body)], closed = exchange(
        port, [post("/v2/models/iris/infer", infer_body(3))], 1
    )
    assert status == 200
    assert not closed
    assert spy
    assert spy[-1] is not None
    assert headers["content-type"] == "application/json"
    assert {"date", "server"} <= set(headers)  # uvicorn's own headers, as on the ASGI path
    # the same request by a path the inline route table has not seen: the ASGI path
    [(status2, _, body2)], _ = exchange(
        port, [post("/v2/models/iris/versions/2/infer", infer_body(3))], 1
    )
    assert status2 == 200
    a, b = outputs(body), outputs(body2)
    assert a.keys() == b.keys()
    assert np.allclose(np.asarray(a["probabilities"]), np.asarray(b["probabilities"]), atol=0.2)


def test_errors_and_statistics_on_the_inline_path(server: Served, spy: list[Any]):
    port = port_of(server)
    stats_url = server.url + "/v2/models/iris/versions/2/stats"

    def counts() -> tuple[int, int]:
        s = httpx.get(stats_url).json()["model_stats"][0]["inference_stats"]
        return s["success"]["count"], s["fail"]["count"]

    ok0, fail0 = counts()
    bad_shape = json.dumps(
        {"inputs": [{"name": "X", "shape": [1, 5], "datatype": "FP32", "data": [1] * 5}]}
    ).encode()
    pieces = [
        post("/v2/models/iris/infer", infer_body()),
        post("/v2/models/iris/infer", bad_shape),
        post("/v2/models/iris/infer", b"{"),
        post("/v2/models/iris/infer", infer_body(), content_type="text/xml"),
        post("/v2/models/iris/infer", infer_body(datatype="BOOL")),
    ]
    answers, _ = exchange(port, pieces, len(pieces), pause=0.05)
    assert [a[0] for a in answers] == [200, 400, 400, 415, 400]
    for _, headers, body in answers[1:]:
        assert headers["content-type"] == "application/json"
        assert set(json.loads(body)) == {"error"}
    assert len(spy) == len(pieces)
    assert all(a is not None for a in spy)
    ok1, fail1 = counts()
    assert ok1 - ok0 == 1
    assert fail1 - fail0 == 1  # the wrong shape; what cannot be decoded reaches no version


def test_pipelined_requests_are_answered_in_order(server: Served, spy: list[Any]):
    one = post("/v2/models/iris/infer", infer_body(1))
    two = post("/v2/models/iris/infer", infer_body(2))
    # declined by the inline path, answered by the ASGI path in its turn
    three = post("/v2/models/iris/infer", gzip.compress(infer_body(3)), content_encoding="gzip")
    bad = post("/v2/models/iris/infer", b"{")
    pieces = [one + three + get("/v2/health/ready") + two + bad + one]
    answers, closed = exchange(port_of(server), pieces, 6)
    assert [a[0] for a in answers] == [200, 200, 200, 200, 400, 200]
    assert json.loads(answers[2][2]) == {"ready": True}
    rows = [len(outputs(answers[k][2])["label"]) for k in (0, 1, 3, 5)]
    assert rows == [1, 3, 2, 1]
    assert not closed
    assert spy.count(None) == 1  # the compressed one was handed on


def test_body_arriving_in_pieces(server: Served, spy: list[Any]):
    request = post("/v2/models/iris/infer", infer_body(5))
    cut = request.index(b"\r\n\r\n") + 10
    pieces = [request[:20], request[20:cut], request[cut:-7], request[-7:]]
    [(status, _, body)], _ = exchange(port_of(server), pieces, 1, pause=0.05)
    assert status == 200
    assert len(outputs(body)["label"]) == 5
    assert spy[-1] is not None


def test_large_and_compressed_bodies_take_the_asgi_path(server: Served, spy: list[Any]):
    rows = INLINE_BODY_MAX // 16 + 100
    big = infer_body(rows)
    assert len(big) > INLINE_BODY_MAX
    packed = gzip.compress(infer_body(4))
    pieces = [
        post("/v2/models/iris/infer", big),
        post("/v2/models/iris/infer", packed, content_encoding="gzip"),
    ]
    answers, _ = exchange(port_of(server), pieces, 2, pause=0.05)
    assert [a[0] for a in answers] == [200, 200]
    assert len(outputs(answers[0][2])["label"]) == rows
    assert len(outputs(answers[1][2])["label"]) == 4
    assert spy == [None]  # the gzip one was offered and handed on; the large one never


def test_http10_request_is_answered_and_closed(server: Served, spy: list[Any]):
    request = post("/v2/models/iris/infer", infer_body(), version="1.0")
    [(status, headers, _)], closed = exchange(port_of(server), [request], 1)
    assert status == 200
    assert headers.get("connection") == "close"
    assert closed


def test_draining_server_closes_connections_after_the_answer(serving_home: Settings):
    thread, served = start_thread_server(serving_home, models=[{"ref": "iris"}])
    try:
        assert served.handle is not None
        path = "/v2/models/iris/infer"
        assert httpx.post(served.url + path, content=infer_body()).status_code == 200
        served.handle.app.dataplane.stop_accepting()
        [(status, headers, _)], closed = exchange(port_of(served), [post(path, infer_body())], 1)
        assert status == 200
        assert headers.get("connection") == "close"
        assert closed
    finally:
        thread.stop()


def test_authentication_keeps_every_request_on_the_asgi_path():
    rest = object.__new__(RestApp)
    assert protocol_class(rest, object()) == "httptools"  # a middleware in front
    assert protocol_class(rest, rest) != "httptools"


def test_chunked_body_is_answered_inline(server: Served, spy: list[Any]):
    body = infer_body(3)
    head = (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:10], body[10:])) + b"0\r\n\r\n"
    [(status, _, answer)], closed = exchange(
        port_of(server), [head, chunks[:7], chunks[7:]], 1, 0.05
    )
    assert status == 200
    assert len(outputs(answer)["label"]) == 3
    assert spy[-1] is not None
    assert not closed


def test_expect_100_continue_takes_the_asgi_path(server: Served, spy: list[Any]):
    body = infer_body(2)
    head = (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
        s.sendall(head)
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    assert spy == []  # never offered to the inline path


def test_inline_path_over_tls(serving_home: Settings, tmp_path):
    import ssl

    from tests.security.certs import CA

    ca = CA(tmp_path)
    cert = ca.issue("server", server=True)
    settings = Settings(home=serving_home.home, tls_cert_file=cert.cert, tls_key_file=cert.key)
    thread, served = start_thread_server(settings, models=[{"ref": "iris"}])
    try:
        assert served.handle is not None
        rest = served.handle.app.rest
        real, seen = rest.infer_now, []

        def infer_now(*args: Any) -> Any:
            seen.append(answer := real(*args))
            return answer

        rest.infer_now = infer_now  # type: ignore[method-assign]
        url = served.url.replace("http://", "https://") + "/v2/models/iris/infer"
        ctx = ssl.create_default_context(cafile=str(ca.files.cert))
        with httpx.Client(verify=ctx) as c:
            answers = [c.post(url, content=infer_body(k)) for k in (1, 2, 3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [len(outputs(a.content)["label"]) for a in answers] == [1, 2, 3]
        assert len(seen) == 2  # the first request made the route known
        assert all(a is not None for a in seen)  # the 2nd and 3rd answered inline
    finally:
        thread.stop()


class _Transport(asyncio.Transport):
    """What the protocol writes, in memory (the protocol under test is the real one)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def on_server_loop(served: Served, test: Callable[[Any, _Transport], Awaitable[None]]) -> None:
    """Run ``test(protocol, transport)`` on the server's event loop, with a new
    connection of the server's own protocol class."""
    import uvicorn
    from uvicorn.server import ServerState

    assert served.handle is not None
    app = served.handle.app
    cls = protocol_class(app.rest, app.asgi)

    async def run() -> None:
        config = uvicorn.Config(app.asgi, http=cls, lifespan="off", log_level="warning")
        config.load()
        protocol = config.http_protocol_class(
            config=config,
            server_state=ServerState(),
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        transport = _Transport()
        protocol.connection_made(transport)
        await test(protocol, transport)
        protocol.connection_lost(None)

    asyncio.run_coroutine_threadsafe(run(), served.handle._loop).result(30)


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_shutdown_answers_a_request_read_but_not_yet_answered(server: Served, spy: list[Any]):
    async def test(protocol: Any, transport: _Transport) -> None:
        protocol.data_received(post("/v2/models/iris/infer", infer_body(2)))
        assert transport.out == b""  # answered on the loop's next turn
        protocol.shutdown()
        assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection: close\r\n" in transport.out
        assert transport.closed
        assert len(outputs(bytes(transport.out).split(b"\r\n\r\n", 1)[1])["label"]) == 2
        await turns()  # the loop callback finds nothing left to answer
        assert transport.out.count(b"HTTP/1.1") == 1

    on_server_loop(server, test)
    assert len(spy) == 1


def test_shutdown_while_a_body_arrives_answers_it_then_closes(server: Served, spy: list[Any]):
    request = post("/v2/models/iris/infer", infer_body(3))
    cut = request.index(b"\r\n\r\n") + 12

    async def test(protocol: Any, transport: _Transport) -> None:
        protocol.data_received(request[:cut])
        protocol.shutdown()
        assert not transport.closed  # the request is on its way: not dropped
        protocol.data_received(request[cut:])
        await turns()
        assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection: close\r\n" in transport.out
        assert transport.closed

    on_server_loop(server, test)
    assert len(spy) == 1
    assert spy[0] is not None


def test_a_client_not_reading_is_answered_by_the_asgi_path(server: Served, spy: list[Any]):
    async def test(protocol: Any, transport: _Transport) -> None:
        protocol.pause_writing()  # the transport's buffer is full
        protocol.data_received(post("/v2/models/iris/infer", infer_body(1)))
        await turns()
        assert transport.out == b""  # uvicorn waits for the client
        protocol.resume_writing()
        for _ in range(100):
            if transport.out.endswith(b"}"):
                break
            await asyncio.sleep(0.01)
        assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n")

    on_server_loop(server, test)
    assert spy == []  # never offered to the inline path
