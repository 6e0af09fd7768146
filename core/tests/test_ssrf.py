"""The SSRF guard: every address class that is not public is refused, in every spelling, when
a URL is checked and again when a request connects."""

from __future__ import annotations

import httpx
import pytest

from core import ssrf
from testsupport.dns import PUBLIC, fake_dns
from testsupport.receiver import webhook_receiver


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://127.0.0.1/", "loopback"),
        ("https://2130706433/", "loopback"),  # decimal
        ("https://0x7f000001/", "loopback"),  # hex
        ("https://0177.0.0.1/", "loopback"),  # octal
        ("https://127.1/", "loopback"),  # short form
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6
        ("https://[64:ff9b::7f00:1]/", "loopback"),  # NAT64
        ("https://[2002:7f00:1::]/", "loopback"),  # 6to4
        ("https://10.1.2.3/", "private"),
        ("https://172.16.0.9/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://[fd12:3456::1]/", "private"),
        ("https://169.254.10.1/", "link-local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://100.100.100.200/", "metadata"),
        ("https://100.64.1.1/", "shared address space"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://255.255.255.255/", "broadcast"),
        ("https://240.0.0.1/", "reserved"),
        ("https://localhost/", "loopback"),
        ("https://localhost./", "loopback"),
    ],
)
def test_addresses_that_are_not_public_are_refused_naming_the_class(url, problem):
    with pytest.raises(ssrf.UnsafeURL, match=problem):
        ssrf.check_url(url, allow_private=False, require_https=True)


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC, "10.0.0.5"]})
    with pytest.raises(ssrf.UnsafeURL, match=r"hooks.example.com resolves to 10.0.0.5.*private"):
        ssrf.check_url("https://hooks.example.com/x", allow_private=False, require_https=True)


def test_a_public_https_url_passes(monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    host, port = ssrf.check_url(
        "https://hooks.example.com:8443/x", allow_private=False, require_https=True
    )
    assert (host, port) == ("hooks.example.com", 8443)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/", "https is required"),
        ("ftp://hooks.example.com/", "must start with https"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https:///nohost", "no host"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://no-such-host.invalid/", "does not resolve"),
    ],
)
def test_urls_that_are_not_plain_https_are_refused(url, problem, monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC]})
    with pytest.raises(ssrf.UnsafeURL, match=problem):
        ssrf.check_url(url, allow_private=False, require_https=True)


def test_development_allows_private_targets_but_never_metadata():
    ssrf.check_url("http://127.0.0.1:8000/hooks", allow_private=True, require_https=False)
    ssrf.check_url("http://10.0.0.5/hooks", allow_private=True, require_https=False)
    with pytest.raises(ssrf.UnsafeURL, match="metadata"):
        ssrf.check_url("http://169.254.169.254/", allow_private=True, require_https=False)


def _client(allow_private):
    return ssrf.safe_client(allow_private=allow_private, timeout=httpx.Timeout(2.0))


def test_the_client_refuses_to_connect_to_a_loopback_receiver_unless_allowed():
    with webhook_receiver() as receiver:
        with _client(False) as client, pytest.raises(ssrf.UnsafeURL, match="loopback"):
            client.post(receiver.url, content=b"{}")
        assert receiver.requests == []
        with _client(True) as client:
            assert client.post(receiver.url, content=b"{}").status_code == 200
        assert len(receiver.requests) == 1


def test_a_name_that_changes_to_loopback_after_the_check_is_refused_at_connect(monkeypatch):
    with webhook_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        answers = iter([[PUBLIC], ["127.0.0.1"]])
        fake_dns(monkeypatch, {"rebind.example.com": lambda: next(answers)})
        url = f"http://rebind.example.com:{port}/hooks"
        ssrf.check_url(url, allow_private=False, require_https=False)  # public when checked
        with _client(False) as client, pytest.raises(ssrf.UnsafeURL, match=r"127\.0\.0\.1"):
            client.post(url, content=b"{}")  # loopback when connecting
        assert receiver.requests == []


def test_the_client_keeps_the_host_name_for_the_request(monkeypatch):
    with webhook_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"]})
        with _client(True) as client:
            client.post(f"http://hooks.test:{port}/hooks", content=b"{}")
        assert receiver.requests[0].headers["host"] == f"hooks.test:{port}"


def test_redirects_are_not_followed():
    with webhook_receiver() as receiver:
        receiver.statuses = [307]
        with _client(True) as client:
            assert client.post(receiver.url, content=b"{}").status_code == 307
        assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.10.1",
        "100.64.1.1",
        "0.0.0.0",
        "::1",
        "::ffff:127.0.0.1",
        "fd12:3456::1",
        "fe80::1",
    ],
)
def test_every_blocked_class_is_refused_when_connecting(address, monkeypatch):
    # The delivery-time check: a name that resolves there is never connected to.
    fake_dns(monkeypatch, {"hooks.example.com": [address]})
    connected = []
    monkeypatch.setattr(
        ssrf.httpcore.SyncBackend, "connect_tcp", lambda *args, **kwargs: connected.append(args)
    )
    with _client(False) as client, pytest.raises(ssrf.UnsafeURL):
        client.post("https://hooks.example.com/hooks", content=b"{}")
    assert connected == []
