"""How the admin shows money, times and statuses to a person (not JSON): amounts with two
decimals and thousands separators, right-aligned; times to the second in East Africa time;
payment statuses as coloured labels. Shared by the apps' admins and templates."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.urls import get_script_prefix, reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

# Every ModelAdmin that uses these labels and tables lists this in its Media.
ADMIN_CSS = {"all": ["core/admin.css"]}


def money(value: Decimal | str | int | None) -> str:
    """``1234.5`` → ``1,234.50``; a negative amount keeps its sign; ``None``/``""`` → ``—``."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{amount:,.2f}"


def amount_html(value: Decimal | str | int | None) -> SafeString:
    return format_html('<span class="amount">{}</span>', money(value))


def when(value: dt.datetime | str | None) -> str:
    """A time in the site's zone (Africa/Nairobi), to the second: ``2025-11-05 13:00:30 EAT``.
    Accepts an ISO 8601 string (as stored in a run's summary)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            return value
        value = parsed
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


STATUS_CLASSES = {
    "SUCCESS": "status-success",
    "FAILED": "status-failed",
    "PENDING": "status-pending",
    "INITIATED": "status-initiated",
}


def status_badge(status: str, label: str | None = None) -> SafeString:
    css = STATUS_CLASSES.get(status, "status-other")
    return format_html('<span class="status {}">{}</span>', css, label or status)


def plain(value: Any) -> str:
    """A JSON value as a person reads it: text as is, lists joined, mappings as ``k: v``."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {plain(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return " | ".join(plain(item) for item in value)
    return str(value)


class QuickCheckboxMixin:
    """A list's row checkbox written as HTML, not rendered through the form widget's template
    per row: on a page of 50 payments the widget took a quarter of the page's time. The
    same markup as Django's (name, value, class and label)."""

    def action_checkbox(self, obj: Any) -> SafeString:
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )


def change_url(view_name: str, pk: Any) -> str:
    """``reverse(view_name, args=[quote(pk)])``, the admin's own link to a change page, from
    a template reversed once per view name and script prefix: a list page links every row,
    and ``reverse`` per link was a sixth of the breaks list's time."""
    return _change_url_template(view_name, get_script_prefix()).replace(
        _PK_PLACEHOLDER, str(quote(pk)), 1
    )


_PK_PLACEHOLDER = "PK-PLACEHOLDER"


@functools.lru_cache(maxsize=256)
def _change_url_template(view_name: str, prefix: str) -> str:
    return reverse(view_name, args=[_PK_PLACEHOLDER])
