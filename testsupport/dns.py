"""Name resolution under a test's control, for the SSRF guard's tests."""

from __future__ import annotations

import socket

# A public address (documentation networks count as reserved; this one does not).
PUBLIC = "93.184.215.14"


def fake_dns(monkeypatch, answers):
    """Resolve names from ``answers`` (name -> list of addresses, or a callable)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            found = answers[host]
            addresses = found() if callable(found) else found
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port),
                )
                for a in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
