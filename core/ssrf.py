"""A guard against server-side request forgery, for requests to URLs someone else chose (a
merchant's webhook endpoint).

:func:`check_url` refuses, with a message naming the problem, a URL that is not http(s),
carries credentials, is plain http where https is required, or whose host is or resolves to
an address that is not public: loopback, private (RFC 1918, fc00::/7), link-local,
shared (100.64/10), unspecified, multicast, reserved, broadcast, the cloud metadata
services, and any IPv6 form that embeds one of those (IPv4-mapped, -compatible, 6to4,
NAT64). Every address a name resolves to must pass, and numeric hosts in any spelling the
C library accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are read as the
address they are. ``allow_private`` (local development) lets loopback, private and
link-local addresses through; the metadata addresses stay refused.

Checking a name and then letting the HTTP client resolve it again leaves a gap (DNS
rebinding: public when checked, 127.0.0.1 when connected). :func:`safe_client` closes it:
its connections go through a network backend that resolves the host, checks every address
and connects to a checked address itself, while TLS still verifies the certificate for the
URL's host name (httpcore passes the original host as the server name). A refused
connection raises :class:`UnsafeURL` out of the request. The client follows no redirects
and ignores proxy environment variables.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS/GCP/Azure/OpenStack, AWS over IPv6, Alibaba): refused even
# when private targets are allowed.
METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
SHARED = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL (or the address it reached) that a request may not go to."""


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, compatible), or itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, deprecated
            return ipaddress.IPv4Address(int(address))
    return address


def address_problem(address: IPAddress, *, allow_private: bool) -> str:
    """What makes ``address`` unfit for a request ('' when nothing does)."""
    inner = _embedded(address)
    shown = str(address) if inner == address else f"{address} (that is {inner})"
    for candidate in {address, inner}:
        if any(candidate in network for network in METADATA):
            return f"{shown} is a cloud metadata address"
    if inner.is_unspecified:
        return f"{shown} is the unspecified address"
    if inner.is_multicast:
        return f"{shown} is a multicast address"
    if isinstance(inner, ipaddress.IPv4Address) and inner == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return f"{shown} is the broadcast address"
    if allow_private and (inner.is_loopback or inner.is_private or inner.is_link_local):
        return ""
    if inner.is_loopback:
        return f"{shown} is a loopback address"
    if inner.is_link_local:
        return f"{shown} is a link-local address"
    if isinstance(inner, ipaddress.IPv4Address) and inner in SHARED:
        return f"{shown} is in the shared address space (100.64.0.0/10)"
    if inner.is_reserved:
        return f"{shown} is a reserved address"
    if inner.is_private:
        return f"{shown} is a private address"
    if not inner.is_global:
        return f"{shown} is not a public address"
    return ""


def _literal(host: str) -> IPAddress | None:
    """``host`` as an address when it is one, in any spelling the C library reads."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal: itself)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"the host {host!r} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UnsafeURL(f"the host {host!r} does not resolve")
    return found


def check_addresses(host: str, addresses: Iterable[IPAddress], *, allow_private: bool) -> None:
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            named = "" if _literal(host) is not None else f"{host} resolves to "
            raise UnsafeURL(f"{named}{problem}")


def check_url(
    url: str, *, allow_private: bool, require_https: bool, resolve_host: bool = True
) -> tuple[str, int]:
    """Refuse (UnsafeURL, naming the problem) a URL a request may not go to; returns its
    host and port. ``resolve_host=False`` checks only what the URL itself says."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("the URL must start with https:// (or http:// in development)")
    if require_https and parts.scheme != "https":
        raise UnsafeURL("https is required")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("the URL must not carry a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL("the URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    if resolve_host:
        addresses = resolve(host, port)
    else:
        literal = _literal(host)
        addresses = [literal] if literal is not None else []
    check_addresses(host, addresses, allow_private=allow_private)
    return host, port


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses :func:`address_problem` allows, resolving the host itself
    so the address checked is the address connected to."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        check_addresses(host, addresses, allow_private=self.allow_private)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise UnsafeURL("Unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The process's TLS settings (certificate checks on, the CA bundle loaded), made once:
    loading the bundle takes about 25 ms, and a sender may make a client per thread. An
    SSLContext is safe to share between threads."""
    return httpx.create_ssl_context(trust_env=False)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, allow_private: bool, limits: httpx.Limits) -> None:
        super().__init__(verify=_ssl_context(), limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def safe_client(
    *,
    allow_private: bool,
    timeout: httpx.Timeout,
    limits: httpx.Limits = httpx.Limits(max_connections=20, max_keepalive_connections=20),  # noqa: B008
) -> httpx.Client:
    """An httpx client whose every connection is checked (see the module's docstring)."""
    return httpx.Client(
        transport=GuardedTransport(allow_private=allow_private, limits=limits),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
