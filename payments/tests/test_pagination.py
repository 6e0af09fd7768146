"""The payments list at scale: cursors (starting_after / ending_before) walk any depth in
order, with the filters; page numbers keep working for the first pages; counts past the cap
are estimates and say so."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import pagination
from core.services import api_client_create
from payments.api import PaymentPagination
from payments.models import Payment
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db


def make_payments(client, count, *, same_time=False, phone="254712345678"):
    """``count`` of ``client``'s payments made a second apart (or at the same moment) a day
    ago; their ids, oldest first."""
    start = timezone.now() - timedelta(days=1)
    return [
        str(
            PaymentFactory(
                initiated=True,
                client=client,
                phone_number=phone,
                amount=10 + number,
                account_reference=f"REF{number}",
                created_at=start if same_time else start + timedelta(seconds=number),
            ).pk
        )
        for number in range(count)
    ]


def newest_first(ids):
    return list(
        Payment.objects.filter(pk__in=ids)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)
        .iterator()
    )


def walk(api, url, direction="next"):
    pages = []
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append(body)
        url = body[direction]
    return pages


@pytest.mark.parametrize("same_time", [False, True])
def test_cursors_walk_every_payment_once_in_order_both_ways(api, api_key, same_time):
    ids = make_payments(api_key.client, 7, same_time=same_time)
    expected = [str(pk) for pk in newest_first(ids)]

    first = api.get("/payments/", {"page_size": 3}).json()
    assert [row["id"] for row in first["results"]] == expected[:3]
    forward = walk(api, f"/payments/?page_size=3&starting_after={first['results'][-1]['id']}")
    seen = [row["id"] for page in forward for row in page["results"]]
    assert seen == expected[3:]
    assert [page["has_more"] for page in forward] == [True, False]
    assert forward[-1]["next"] is None
    assert "count" not in forward[0]

    backward = walk(api, forward[-1]["previous"], direction="previous")
    seen_back = [row["id"] for page in reversed(backward) for row in page["results"]]
    assert seen_back == expected[:6]
    assert [page["has_more"] for page in backward] == [True, False]


def test_ending_before_gives_the_page_just_newer_than_the_anchor(api, api_key):
    ids = make_payments(api_key.client, 5)
    expected = [str(pk) for pk in newest_first(ids)]

    body = api.get("/payments/", {"page_size": 2, "ending_before": expected[4]}).json()

    assert [row["id"] for row in body["results"]] == expected[2:4]
    assert body["has_more"] is True
    assert "ending_before=" + expected[2] in body["previous"]
    assert "starting_after=" + expected[3] in body["next"]


def test_cursor_links_keep_the_filters(api, api_key):
    mine = make_payments(api_key.client, 4, phone="254712345678")
    make_payments(api_key.client, 3, phone="254722000000")
    expected = [str(pk) for pk in newest_first(mine)]

    first = api.get("/payments/", {"phone": "0712 345 678", "page_size": 1}).json()
    pages = walk(api, f"/payments/?phone=0712345678&page_size=1&starting_after={expected[0]}")

    assert first["results"][0]["id"] == expected[0]
    assert [page["results"][0]["id"] for page in pages] == expected[1:]
    assert all("phone=0712345678" in page["previous"] for page in pages)


def test_a_cursor_payment_that_left_the_filter_still_marks_the_place(api, api_key):
    ids = make_payments(api_key.client, 4)
    expected = [str(pk) for pk in newest_first(ids)]
    Payment.objects.filter(pk=expected[1]).update(status="FAILED")

    body = api.get("/payments/", {"status": "INITIATED", "starting_after": expected[1]}).json()

    assert [row["id"] for row in body["results"]] == expected[2:]


def test_another_clients_payment_is_not_a_cursor(api, api_key):
    make_payments(api_key.client, 2)
    other = api_client_create(name="other").client
    theirs = make_payments(other, 1)[0]

    for name in ("starting_after", "ending_before"):
        response = api.get("/payments/", {name: theirs})
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == [name]


def test_cursor_misuse_is_a_400_naming_the_parameter(api, api_key):
    first = make_payments(api_key.client, 2)[0]

    both = api.get("/payments/", {"starting_after": first, "ending_before": first})
    with_page = api.get("/payments/", {"starting_after": first, "page": 2})

    assert both.status_code == 400
    assert list(both.json()["error"]["fields"]) == ["ending_before"]
    assert with_page.status_code == 400
    assert list(with_page.json()["error"]["fields"]) == ["page"]


def test_page_numbers_work_for_the_first_pages_then_hand_over_to_a_cursor(
    api, api_key, monkeypatch
):
    monkeypatch.setattr(PaymentPagination, "max_offset", 4)
    ids = make_payments(api_key.client, 7)
    expected = [str(pk) for pk in newest_first(ids)]

    page1 = api.get("/payments/", {"page_size": 2}).json()
    page2 = api.get(page1["next"]).json()
    deep = api.get("/payments/", {"page_size": 2, "page": 3})

    assert page1["count"] == 7 and page1["count_is_estimate"] is False
    assert "page=2" in page1["next"]
    assert [row["id"] for row in page2["results"]] == expected[2:4]
    # The last page within reach links on with a cursor, which reaches the rest.
    assert "starting_after=" + expected[3] in page2["next"] and "page=" not in page2["next"]
    rest = walk(api, page2["next"])
    assert [row["id"] for page in rest for row in page["results"]] == expected[4:]
    assert deep.status_code == 400
    assert list(deep.json()["error"]["fields"]) == ["page"]


def test_has_more_and_next_come_from_the_rows(api, api_key):
    make_payments(api_key.client, 4)

    full = api.get("/payments/", {"page_size": 2, "page": 2}).json()
    single = api.get("/payments/", {"page_size": 4}).json()

    assert full["has_more"] is False and full["next"] is None
    assert single["has_more"] is False and single["count"] == 4
    assert api.get("/payments/", {"page": 3, "page_size": 2}).status_code == 404


@pytest.mark.services
def test_a_count_past_the_cap_is_an_estimate_and_says_so(api, api_key, monkeypatch):
    """On PostgreSQL: past the cap, the planner's estimate (never below the cap)."""
    monkeypatch.setattr(pagination, "COUNT_CAP", 3)
    make_payments(api_key.client, 6)

    body = api.get("/payments/", {"page_size": 2}).json()
    small = api.get("/payments/", {"phone": "0799999999"}).json()

    assert body["count_is_estimate"] is True and body["count"] >= 4
    assert body["has_more"] is True and len(body["results"]) == 2
    assert small == {
        "count": 0,
        "count_is_estimate": False,
        "has_more": False,
        "next": None,
        "previous": None,
        "results": [],
    }


def test_a_count_past_the_cap_without_postgresql_is_counted(api, api_key, monkeypatch):
    """SQLite has no estimates: only small databases run on it, so it counts."""
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL estimates; see the test above")
    monkeypatch.setattr(pagination, "COUNT_CAP", 3)
    make_payments(api_key.client, 5)

    body = api.get("/payments/").json()

    assert body["count"] == 5 and body["count_is_estimate"] is False


def test_a_status_filter_pages_without_select_distinct(api, api_key):
    ids = make_payments(api_key.client, 4)
    Payment.objects.filter(pk=ids[0]).update(status="FAILED")
    Payment.objects.filter(pk=ids[1]).update(status="SUCCESS")
    with CaptureQueriesContext(connection) as queries:
        body = api.get("/payments/?status=FAILED&status=SUCCESS").json()

    assert [row["id"] for row in body["results"]] == [ids[1], ids[0]]
    listing = [
        q["sql"].upper() for q in queries.captured_queries if "PAYMENTS_PAYMENT" in q["sql"].upper()
    ]
    # A status is a column of the row: OR-ing two cannot repeat a payment. DISTINCT made
    # PostgreSQL sort every match before returning the first page.
    assert listing and not any("DISTINCT" in q for q in listing)
