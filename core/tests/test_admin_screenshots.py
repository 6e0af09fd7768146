"""The admin as a person sees it: a real headless browser (Debian's chromium, driven by
Playwright) logs in to a live server at 1366×768, uploads a statement, opens every page a
finance person uses, and keeps a screenshot of each under VAR_DIR/screenshots/. A page that
answers a server error, or lacks what it is for (the list, the run's tables, the totals, the
key shown once), fails the test.

Skipped, saying why, without /usr/bin/chromium (``apt-get install -y chromium``); fails
instead when REQUIRE_SERVICES=1 (CI installs it). Nothing here downloads a browser.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from callbacks.models import CallbackState, InboundCallback
from payments.models import Payment, PaymentStatus
from reconciliation.models import Break, ReconciliationRun
from reconciliation.tests.builders import (
    Preamble,
    Row,
    charge_row,
    eat,
    g2_csv,
    make_payment,
    pay_row,
)
from testsupport import stk_success_body

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "a-long-test-password-1"

pytestmark = pytest.mark.django_db(transaction=True)


def _browser_problem() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture
def chromium() -> Any:
    """A context manager opening a page in chromium. The ORM is not used inside it: Django
    refuses synchronous queries while Playwright's event loop runs in the thread."""
    problem = _browser_problem()
    if problem is not None:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(f"needs a headless browser: {problem}")
    from playwright.sync_api import sync_playwright

    @contextmanager
    def open_page() -> Iterator[Any]:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                context = browser.new_context(viewport=VIEWPORT, locale="en-US")
                yield context.new_page()
            finally:
                browser.close()

    return open_page


@pytest.fixture
def screenshots() -> Path:
    folder = Path(settings.VAR_DIR) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


@pytest.fixture
def books(tmp_path: Path) -> dict[str, Any]:
    """What a finance person finds: payments in every status (one flagged for review), the
    callbacks that came in, and a statement file on disk to upload. Made before the browser
    starts (the ORM is not used while Playwright's loop runs)."""
    User.objects.create_superuser("accountant", "acc@example.invalid", PASSWORD)
    paid = make_payment(amount="1500", receipt="TK5XA1BC2D", phone="254722000108")
    make_payment(amount="250", status=PaymentStatus.FAILED, phone="254722000109")
    pending = make_payment(
        amount="900",
        status=PaymentStatus.PENDING,
        phone="254722000555",
        when=eat("05-11-2025 09:59:00"),
    )
    flagged = make_payment(amount="75.50", status=PaymentStatus.SUCCESS, receipt="TK5XA1BC2K")
    Payment.objects.filter(pk=flagged.pk).update(needs_review=True)
    for state, checkout in [
        (CallbackState.PROCESSED, "ws_CO_05112025100000000722000108"),
        (CallbackState.ORPHAN, "ws_CO_05112025100500000799999999"),
        (CallbackState.FAILED, "ws_CO_05112025101000000722000109"),
    ]:
        body = stk_success_body(checkout_request_id=checkout)
        InboundCallback.objects.create(
            body=body,
            content_type="application/json",
            headers={"Content-Type": "application/json", "User-Agent": "Apache-HttpClient"},
            source_ip="196.201.214.200",
            dedupe_key=hashlib.sha256(body).hexdigest(),
            checkout_request_id=checkout,
            state=state,
            payment=paid if state == CallbackState.PROCESSED else None,
            last_error="RuntimeError: worker lost" if state == CallbackState.FAILED else "",
        )
    statement = tmp_path / "ORG_4125223_UtilityAccount_November.csv"
    statement.write_bytes(
        g2_csv(
            [
                pay_row("TK5XA1BC2D", 1500, "05-11-2025 10:00:00"),
                charge_row("TK5XA1BC2D", 15, "05-11-2025 10:00:00"),
                pay_row("RCPT000010", 900, "05-11-2025 10:00:00", phone="254722000555"),
                pay_row("TK5XA1BC2E", 1234.5, "05-11-2025 11:00:00"),
                pay_row("TK5XA1BC2F", 60, "05-11-2025 12:00:00"),
                Row(receipt="TK5XA1BC2G", completed="05-11-2025 12:30:00", paid_in="five"),
            ],
            preamble=Preamble(),
        )
    )
    return {"statement": statement, "pending": pending, "paid": paid}


class Visit:
    """Opens admin pages like a person, failing on a server error or a missing element."""

    def __init__(self, page: Any, base: str, folder: Path) -> None:
        self.page = page
        self.base = base
        self.folder = folder
        self.errors: list[str] = []
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )

    def check(self, name: str, *selectors: str, body_as_received: bool = False) -> None:
        self.page.wait_for_load_state("networkidle")
        assert not self.errors, f"{name}: server errors {self.errors}"
        assert "Server Error" not in self.page.title(), name
        for selector in selectors:
            assert self.page.locator(selector).count() > 0, f"{name}: no {selector}"
        # JSON is shown only where it is the point: a callback's body exactly as received.
        body = self.page.inner_text("body")
        if body_as_received:
            body = body.replace(self.page.inner_text(".field-raw_body pre"), "")
        assert "\\u2212" not in body and '{"' not in body, f"{name}: raw JSON shown"
        self.page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)

    def open(self, name: str, path: str, *selectors: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, f"{name}: {response}"
        self.check(name, *selectors)


def test_the_admin_pages_render_for_a_person(
    books: dict[str, Any], chromium: Any, live_server: Any, screenshots: Path
) -> None:
    with chromium() as page:
        walk_the_admin(page, live_server.url, screenshots, books)

    run = ReconciliationRun.objects.get()
    assert run.statement.uploaded_by == "accountant"
    assert Break.objects.filter(run=run).exists()
    shots = sorted(p.name for p in screenshots.glob("*.png"))
    assert len(shots) == 17, shots


def walk_the_admin(page: Any, base: str, screenshots: Path, books: dict[str, Any]) -> None:
    visit = Visit(page, base, screenshots)
    page.goto(base + "/admin/login/")
    page.fill("#id_username", "accountant")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/$"))

    # Payments: coloured statuses, the review flag, totals of a filtered list; a payment.
    visit.open("01-payments-list", "/admin/payments/payment/", "#result_list", ".status-success")
    visit.open(
        "02-payments-list-filtered",
        "/admin/payments/payment/?status__exact=SUCCESS",
        "#result_list",
        "#total-amount",
    )
    paid = books["paid"]
    visit.open("03-payment-detail", f"/admin/payments/payment/{paid.pk}/change/", ".status")

    # Callbacks.
    visit.open("04-callbacks-list", "/admin/callbacks/inboundcallback/", "#result_list")
    page.click("#result_list tbody tr:first-child th a")
    visit.check(
        "04b-callback",
        ".field-raw_body pre",
        ".field-headers_table table",
        body_as_received=True,
    )

    # A statement uploaded as a person would, landing on its run.
    visit.open("05-statement-upload", "/admin/reconciliation/statement/add/", "#id_file")
    page.set_input_files("#id_file", str(books["statement"]))
    page.click("#statement-upload input[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/reconciliation/reconciliationrun/\d+/change/$"))
    visit.check(
        "06-run-page", "#run-summary", "#run-classes", "#run-bridge", "table.figures td.amount"
    )
    page.click("#run-classes a:has-text('open')")
    visit.check("07-breaks-of-a-class", "#result_list")
    visit.open("08-runs-list", "/admin/reconciliation/reconciliationrun/", "#result_list")
    visit.open("09-breaks-list", "/admin/reconciliation/break/", "#result_list")
    visit.open("10-statements-list", "/admin/reconciliation/statement/", "#result_list")
    page.click("#result_list tbody tr:first-child th a")
    visit.check("10b-statement", "#rejects-group", ".field-balances table")

    # Resolving a break: the payment found by its payer's phone, not a pasted id.
    page.goto(base + "/admin/reconciliation/break/?kind__exact=unknown_payment")
    page.click("#result_list tbody tr:first-child th a")
    visit.check("11-break", "a.button:has-text('Resolve')")
    page.click("a.button:has-text('Resolve')")
    page.fill("#id_q", "0722 000 555")
    page.click("#payment-search input[type=submit]")
    visit.check("12-break-resolve-search", "#payment-choices input[type=radio]")

    # A payment that was reconciled links to its line and break.
    pending = books["pending"]
    visit.open(
        "13-payment-reconciled",
        f"/admin/payments/payment/{pending.pk}/change/",
        "#payment-reconciliation",
    )

    # An API client, its key shown once.
    visit.open("14-apiclient-add", "/admin/core/apiclient/add/", "#id_name")
    page.fill("#id_name", "School portal")
    page.click("#apiclient-add input[type=submit]")
    visit.check("15-apiclient-key-once", "#api-key")
