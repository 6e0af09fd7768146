"""Optional Sentry reporting: what an event carries when it leaves the process (through the
SDK's own pipeline, into a transport that keeps it), masked as the logs are."""

import json
import logging
import subprocess
import sys

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from core.sentry import sentry_init
from testsupport import REPO_ROOT, subprocess_env

TOKEN = "Ab3_-xYz0123456789abcdefghijkLMNOP0123456789"


class Kept(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)

    def events(self):
        return [
            json.loads(item.payload.get_bytes())
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event"
        ]


@pytest.fixture
def kept():
    transport = Kept()
    sentry_init(dsn="https://public@sentry.example/1", environment="test", transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # off again for the other tests


def test_an_error_event_is_masked_before_it_leaves(kept):
    logging.getLogger("payments.test").info("callback for 0712345678 at /c2b/%s/", TOKEN)
    try:
        raise ValueError(f"payment for +254 712 345 678 via /payments/callback/{TOKEN}/")
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()
    (event,) = kept.events()
    text = json.dumps(event)
    assert "712 345 678" not in text and "0712345678" not in text and TOKEN not in text
    value = event["exception"]["values"][0]["value"]
    assert value == "payment for 2547****5678 via /payments/callback/<token>/"
    crumbs = [crumb.get("message", "") for crumb in event["breadcrumbs"]["values"]]
    assert "callback for 2547****5678 at /c2b/<token>/" in crumbs
    # No local variables, and the integrations a payment system needs.
    frames = event["exception"]["values"][0]["stacktrace"]["frames"]
    assert all("vars" not in frame for frame in frames)
    client = sentry_sdk.get_client()
    assert {"django", "celery"} <= set(client.integrations)


def test_sentry_is_off_without_a_dsn_and_a_bad_sample_rate_is_refused():
    off = subprocess.run(
        [sys.executable, "-c", _PRINT_CLIENT],
        env=subprocess_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert off.stdout.decode().strip() == "False", off.stderr.decode()[-2000:]
    on = subprocess.run(
        [sys.executable, "-c", _PRINT_CLIENT],
        env=subprocess_env(SENTRY_DSN="https://public@sentry.example/1"),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert on.stdout.decode().strip() == "True", on.stderr.decode()[-2000:]
    refused = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=subprocess_env(
            SENTRY_DSN="https://public@sentry.example/1", SENTRY_TRACES_SAMPLE_RATE="2"
        ),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "SENTRY_TRACES_SAMPLE_RATE=2.0 must be at most 1.0" in refused.stderr.decode()


_PRINT_CLIENT = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mpesa_project.settings');"
    "django.setup(); import sentry_sdk; print(sentry_sdk.get_client().is_active())"
)
