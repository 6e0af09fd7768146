"""Client addresses behind proxies, and the callback source allowlist."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(text: str | None) -> IPAddress | None:
    """An address, with an IPv4-mapped IPv6 one (``::ffff:10.0.0.1``) read as IPv4."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# In TRUSTED_PROXIES: a peer on a Unix socket (REMOTE_ADDR empty), which only a process on
# this host can be, e.g. nginx proxying to gunicorn's socket.
UNIX_PEER = "unix"


def client_ip(request: HttpRequest) -> str | None:
    """The address of whoever connected to our outermost trusted proxy.

    X-Forwarded-For is believed only when the socket peer (REMOTE_ADDR) is one of
    TRUSTED_PROXIES (``unix`` there: a peer on a Unix socket, which has no address): anyone
    who reaches the application directly is the client, whatever the header says. Behind
    trusted proxies the header is walked from the right (each proxy appends the address it
    received from), skipping addresses that are themselves trusted proxies; the first other
    address is the client. Entries further left were written by the client and prove nothing.
    An unreadable entry stops the walk at the last proxy read.

    TRUSTED_PROXY_COUNT (deprecated), when above 0, also caps the entries read from the
    right, as it did before TRUSTED_PROXIES existed.
    """
    raw = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.TRUSTED_PROXIES
    remote = _parse(raw)
    if remote is None:
        if raw or UNIX_PEER not in proxies:
            return raw or None
    elif not proxies or not _in(remote, proxies):
        return str(remote)
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    cap = settings.TRUSTED_PROXY_COUNT
    if cap > 0:
        forwarded = forwarded[-cap:]
    client = remote
    for entry in reversed(forwarded):
        if client is not None and not _in(client, proxies):
            break  # the address that reached a trusted proxy is not a proxy: the client
        address = _parse(entry)
        if address is None:
            break
        client = address
    return str(client) if client is not None else None


def _in(address: IPAddress, entries: list[str]) -> bool:
    return any(address in network for network in _networks(tuple(entries)))


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(
        ipaddress.ip_network(entry, strict=False) for entry in entries if entry != UNIX_PEER
    )


def ip_allowed(address: str | None, allowlist: list[str]) -> bool:
    ip = _parse(address)
    if ip is None:
        return False
    return _in(ip, allowlist)
