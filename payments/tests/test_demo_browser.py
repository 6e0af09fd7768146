"""The demo page in a real headless browser (Debian's chromium, driven by Playwright), against the
live server and an in-process Daraja simulator: what a person sees after pressing Pay.

Skipped, with the reason, when /usr/bin/chromium or Playwright is missing, unless
REQUIRE_SERVICES=1 (then it fails instead). Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.config import SimulatorConfig
from simulator.server import start_in_thread

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE = os.environ.get("REQUIRE_SERVICES") == "1"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - the dev requirements pin it
    sync_playwright = None  # type: ignore[assignment]

_missing = (
    "Playwright is not installed (pip install -r requirements-dev.txt)"
    if sync_playwright is None
    else f"{CHROMIUM} is missing (apt-get install chromium)"
    if not CHROMIUM.exists()
    else None
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_missing is not None and not REQUIRE, reason=_missing or ""),
]

EAT_TIME = re.compile(r"^\d{2}:\d{2}:\d{2} EAT$")
EAT_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} EAT$")


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Page]:
    if _missing is not None:
        pytest.fail(f"REQUIRE_SERVICES=1 but {_missing}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        # A browser in another zone: the page must still show East Africa Time.
        context = browser.new_context(timezone_id="America/New_York", locale="en-US")
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


@pytest.fixture
def demo(settings: Any, live_server: Any) -> Iterator[str]:
    server, url = start_in_thread(
        config=SimulatorConfig(callback_delay=0.05, seed=1234, log_requests=False)
    )
    settings.MPESA_BASE_URL = url
    settings.MPESA_CALLBACK_URL = f"{live_server.url}/payments/callback/"
    settings.MPESA_C2B_URL = f"{live_server.url}/c2b/"
    settings.DEMO_ENABLED = True
    try:
        yield live_server.url
    finally:
        server.shutdown()


def _pay(page: Page, base: str, phone: str) -> None:
    page.goto(f"{base}/demo/")
    page.fill("#phone", phone)
    page.fill("#amount", "10")
    page.click("#submit")


def _pills(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all(
        ".step", "els => Object.fromEntries(els.map(e => [e.dataset.s, e.className]))"
    )


@pytest.mark.django_db(transaction=True)
def test_a_push_refused_at_once_never_lights_pending(demo, browser_page, tmp_path):
    page = browser_page
    _pay(page, demo, "254711000099")  # the simulator refuses it: INITIATED → FAILED
    page.wait_for_selector(".step.failed", timeout=30_000)
    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    pills = _pills(page)
    assert "done" in pills["INITIATED"]
    assert "done" not in pills["PENDING"] and "skipped" in pills["PENDING"]
    assert page.text_content('.step[data-s="FINAL"]') == "FAILED"
    changes = page.eval_on_selector_all(
        "#events tr", "rows => rows.map(r => r.cells[1].textContent)"
    )
    assert changes == ["∅ → INITIATED", "INITIATED → FAILED"]


@pytest.mark.django_db(transaction=True)
def test_a_paid_push_lights_every_step_and_shows_east_africa_time(demo, browser_page, tmp_path):
    page = browser_page
    _pay(page, demo, "254712345678")  # any other number pays
    page.wait_for_selector('.step[data-s="FINAL"].done', timeout=30_000)
    page.screenshot(path=str(tmp_path / "paid.png"), full_page=True)
    pills = _pills(page)
    assert all("done" in pills[s] for s in ("INITIATED", "PENDING", "FINAL"))
    assert page.text_content('.step[data-s="FINAL"]') == "SUCCESS"
    times = page.eval_on_selector_all("#events tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert times and all(EAT_TIME.match(t) for t in times), times
    facts = dict(
        page.eval_on_selector_all(
            "#facts tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
        )
    )
    assert EAT_DATETIME.match(facts["created"]), facts
    # The page shows the API's own East Africa time (+03:00), not the browser's New York time.
    api = page.evaluate(
        "id => fetch('/demo/payments/' + id + '/').then(r => r.json())", facts["id"]
    )
    created = api["payment"]["created_at"]
    assert created.endswith("+03:00"), created
    assert facts["created"] == f"{created[:10]} {created[11:19]} EAT"


@pytest.mark.django_db(transaction=True)
def test_paying_the_paybill_shows_the_received_payment(demo, browser_page, tmp_path):
    page = browser_page
    page.goto(f"{demo}/demo/")
    page.fill("#c2b-phone", "0712345678")
    page.fill("#c2b-amount", "150")
    page.fill("#c2b-account", "INV-42")
    page.click("#c2b-submit")
    page.wait_for_selector('.step[data-s="FINAL"].done', timeout=30_000)
    page.screenshot(path=str(tmp_path / "paybill.png"), full_page=True)
    assert page.text_content('.step[data-s="FINAL"]') == "SUCCESS"
    facts = dict(
        page.eval_on_selector_all(
            "#facts tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
        )
    )
    api = page.evaluate(
        "id => fetch('/demo/payments/' + id + '/').then(r => r.json())", facts["id"]
    )
    payment = api["payment"]
    assert (payment["channel"], payment["amount"], payment["bill_ref_number"]) == (
        "paybill",
        "150.00",
        "INV-42",
    )
    assert payment["mpesa_receipt_number"]
    assert page.text_content("#c2b-error") == ""
