"""The Prometheus alert rules in docs/ops/: valid, and firing as their tests say (killed beat,
lost requests, refused callbacks rising, Daraja failing, a growing inbox), with Prometheus's
own `promtool` (Debian's package `prometheus`). Skipped when promtool is missing, unless
REQUIRE_SERVICES=1; CI installs it. The metrics the rules name are the ones /metrics serves."""

import os
import re
import shutil
import subprocess

import pytest

from testsupport import REPO_ROOT

OPS = REPO_ROOT / "docs" / "ops"
PROMTOOL = shutil.which("promtool")
REQUIRE = os.environ.get("REQUIRE_SERVICES") == "1"
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not REQUIRE, reason="promtool is missing (apt-get install prometheus)"
)


def _promtool(*args: str) -> str:
    assert PROMTOOL is not None, "promtool is missing (apt-get install prometheus)"
    done = subprocess.run(
        [PROMTOOL, *args], cwd=OPS, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_the_alert_rules_are_valid():
    assert "SUCCESS: 7 rules found" in _promtool("check", "rules", "alerts.yml")


@needs_promtool
def test_the_alert_rules_fire_as_their_tests_say():
    assert "SUCCESS" in _promtool("test", "rules", "alerts.test.yml")


@pytest.mark.django_db
def test_every_metric_the_rules_and_dashboard_name_is_served(client, settings):
    """Counted metrics (declared in core.metrics; a scrape shows them once something was
    counted) and the gauges every scrape serves."""
    from prometheus_client.metrics import MetricWrapperBase

    from core import metrics

    settings.METRICS_TOKEN = "t"
    served = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t", secure=True).content.decode()
    names = set(re.findall(r"^# TYPE (\w+) gauge", served, re.M))
    names |= {
        n if n.endswith("_total") else f"{n}_total"
        for n in re.findall(r"^# TYPE (\w+) counter", served, re.M)
    }
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name
            if metric._type == "counter":
                names.add(f"{name}_total")
            else:
                names |= {f"{name}_count", f"{name}_sum", f"{name}_bucket"}
    for document in ("alerts.yml", "grafana-dashboard.json"):
        used = set(re.findall(r"\b(mpesa_[a-z_]+)", (OPS / document).read_text()))
        assert used, document
        assert used <= names, (document, used - names)
