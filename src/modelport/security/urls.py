"""Server-side fetches of user-given URLs: default deny, no internal addresses, no rebinding.

A server that downloads what a request names is an SSRF gadget (TorchServe's
ShellTorch, MLflow's webhook rebinding). :class:`FetchPolicy` allows a URL only if:

- its scheme is ``https`` (``http`` only when the operator allows it); no user info;
- its host is on the operator's allow-list (exact names or ``*.example.com``) — an
  empty list allows nothing;
- *every* address the host resolves to is public: loopback, private, link-local,
  shared (CGNAT), multicast, reserved, unspecified and documentation ranges are
  refused, including IPv4 hidden in IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64, Teredo)
  and the legacy integer, hex and octal IPv4 spellings (``2130706433``,
  ``0x7f000001``, ``0177.0.0.1``), unless an operator opened a network explicitly.

:func:`fetch` then connects to the address that was validated (so a second DNS answer
cannot redirect the connection), sends the original host name for the ``Host`` header
and TLS verification, caps the body size, and applies the same checks to every redirect.
It returns bytes; it never names a local file after anything the remote side says.

Example:
    >>> policy = FetchPolicy(allow_hosts=("models.example.com",))
    >>> policy.check("http://169.254.169.254/latest/meta-data/")
    Traceback (most recent call last):
    ...
    modelport.core.errors.PermissionDenied: URL scheme 'http' is not allowed (use https)
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, PayloadTooLarge, PermissionDenied, Unavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4")
)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), via the system resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise Unavailable(f"cannot resolve {host!r}") from e
    return sorted({str(info[4][0]) for info in infos})


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in *any* spelling an OS accepts, else None.

    Example:
        >>> str(parse_ip("0x7f000001")), str(parse_ip("2130706433")), parse_ip("example.com")
        ('127.0.0.1', '127.0.0.1', None)
    """
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    try:
        # inet_aton accepts the legacy forms: 127.1, 0x7f.1, 017700000001, 2130706433.
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except (OSError, UnicodeError, ValueError):
        return None


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:])
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` (and any IPv4 address inside it) is a public unicast address.

    Example:
        >>> is_public(ipaddress.ip_address("::ffff:10.0.0.1")), is_public(parse_ip("8.8.8.8"))
        (False, True)
    """
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        return False
    return not any(ip in net for net in _EXTRA_BLOCKED if ip.version == net.version)


def _canonical_host(hostname: str) -> str:
    """The one spelling of a host that the allow-list, resolver and connection all use."""
    literal = parse_ip(hostname)
    if literal is not None:
        return str(literal)
    try:
        host = hostname.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidArgument("URL host is not a valid name") from None
    if not _HOST_RE.fullmatch(host):
        raise InvalidArgument("URL host is not a valid name")
    return host


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed the policy, pinned to the addresses that were checked."""

    url: str
    scheme: str
    host: str
    port: int
    request_path: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Which URLs a server may fetch (default: none).

    ``ssl_context`` replaces the system trust store (e.g. for a private CA); the
    certificate is always checked against the URL's host name.
    """

    allow_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    allow_networks: tuple[str, ...] = ()
    max_bytes: int = 4 << 30
    max_redirects: int = 3
    timeout: float = 30.0
    resolver: Resolver = field(default=system_resolver, compare=False)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            allow_hosts=tuple(settings.fetch_allow_hosts),
            allow_http=settings.fetch_allow_http,
            allow_networks=tuple(settings.fetch_allow_networks),
        )

    def _host_allowed(self, host: str) -> bool:
        for pattern in self.allow_hosts:
            p = pattern.lower().rstrip(".")
            if p.startswith("*.") and host.endswith(p[1:]) and host != p[2:]:
                return True
            if host == p:
                return True
        return False

    def _address_allowed(self, ip: IPAddress) -> bool:
        if is_public(ip):
            return True
        candidates = [ip] + ([inner] if (inner := embedded_ipv4(ip)) else [])
        for net in self.allow_networks:
            network = ipaddress.ip_network(net, strict=False)
            if any(c.version == network.version and c in network for c in candidates):
                return True
        return False

    def check(self, url: str) -> Target:
        """Validate ``url`` and resolve its host; raise before any connection is made.

        Malformed URLs raise :class:`InvalidArgument`, refused ones :class:`PermissionDenied`.
        """
        if len(url) > 8192 or any(ord(c) < 33 or c == "\x7f" for c in url):
            raise InvalidArgument("URL is too long or contains spaces or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
            hostname = parts.hostname
        except ValueError as e:
            raise InvalidArgument(f"malformed URL: {e}") from None
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            hint = "https" + (" or http" if self.allow_http else "")
            raise PermissionDenied(f"URL scheme {scheme!r} is not allowed (use {hint})")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise InvalidArgument("URLs with user information are not accepted")
        if not hostname:
            raise InvalidArgument("URL has no host")
        host = _canonical_host(hostname)
        port = port or (443 if scheme == "https" else 80)
        if not self._host_allowed(host):
            raise PermissionDenied(f"host {host[:253]!r} is not on the fetch allow-list")
        literal = parse_ip(host)
        raw = [str(literal)] if literal is not None else list(self.resolver(host, port))
        if not raw:
            raise Unavailable(f"{host!r} resolves to no address")
        addresses = []
        for a in raw:
            ip = parse_ip(a)
            if ip is None or not self._address_allowed(ip):
                raise PermissionDenied(f"host {host!r} resolves to a non-public address")
            addresses.append(str(ip))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return Target(url, scheme, host, port, path, tuple(addresses))


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address, verifying the certificate for the original host name."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
        except BaseException:
            sock.close()
            raise


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def _get(target: Target, policy: FetchPolicy) -> tuple[int, str | None, bytes]:
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        context = policy.ssl_context or ssl.create_default_context()
        conn = _PinnedHTTPS(target.host, target.port, target.addresses[0], policy.timeout, context)
    else:
        conn = _PinnedHTTP(target.host, target.port, target.addresses[0], policy.timeout)
    try:
        conn.request("GET", target.request_path, headers={"Accept-Encoding": "identity"})
        with conn.getresponse() as resp:
            if resp.status in (301, 302, 303, 307, 308):
                return resp.status, resp.getheader("Location"), b""
            if resp.status != 200:
                raise Unavailable(f"{target.host} answered HTTP {resp.status}")
            declared = resp.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise PayloadTooLarge(f"download is larger than {policy.max_bytes} bytes")
            chunks, total = [], 0
            while chunk := resp.read(1 << 20):
                total += len(chunk)
                if total > policy.max_bytes:
                    raise PayloadTooLarge(f"download is larger than {policy.max_bytes} bytes")
                chunks.append(chunk)
            return 200, None, b"".join(chunks)
    except (OSError, http.client.HTTPException) as e:
        raise Unavailable(f"cannot fetch from {target.host}: {type(e).__name__}") from e
    finally:
        conn.close()


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """Download ``url`` under ``policy`` into memory, following checked redirects.

    Example:
        >>> data = fetch("https://models.example.com/iris.onnx", policy)   # doctest: +SKIP
    """
    current = url
    for _ in range(policy.max_redirects + 1):
        target = policy.check(current)
        status, location, body = _get(target, policy)
        if status == 200:
            return body
        if not location:
            raise Unavailable(f"{target.host} redirected without a location")
        current = urljoin(current, location)
    raise Unavailable(f"more than {policy.max_redirects} redirects")
