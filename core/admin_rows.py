"""The rows of an admin list, rendered with fewer calls than Django's ``items_for_result``.

Django works out, for every cell of every row, what the column is (a model field, a foreign
key, a display method), which classes its cell gets, whether it links, and builds the link's
preserved filters again; on a page of 50 payments or breaks that was most of the page's
time. Here each column is worked out once per page and the rows reuse it. The markup is
Django's own, cell for cell (held equal by ``core/tests/test_admin_rows.py``); lists with
editable columns, popups and ``to_field`` lists go to Django's ``results`` unchanged.

Used through ``{% quick_result_list cl %}`` (core/templatetags/admin_display.py) in place of
``{% result_list cl %}`` in a list's ``change_list.html``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from django.contrib.admin.templatetags import admin_list
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value, lookup_field
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

from .admin_display import change_url

Cell = Callable[[Any], SafeString]


def quick_result_list(cl: Any) -> dict[str, Any]:
    """The context of Django's ``result_list`` tag, with the rows made by :func:`rows`."""
    headers = list(admin_list.result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": list(admin_list.result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "results": rows(cl),
    }


def rows(cl: Any) -> list[admin_list.ResultList]:
    if cl.formset or cl.is_popup or cl.to_field or not cl.list_display_links:
        return list(admin_list.results(cl))
    if not cl.result_list:
        return []
    cells = _cells(cl)
    return [admin_list.ResultList(None, [cell(obj) for cell in cells]) for obj in cl.result_list]


def _cells(cl: Any) -> list[Cell]:
    model_admin = cl.model_admin
    opts = cl.lookup_opts
    sample = cl.result_list[0]
    url_name = f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_change"
    # The changelist's filters, carried on every row's link: the same for each row, so
    # worked out once from one link (Django adds them to each link again).
    sample_url = change_url(url_name, sample.pk)
    preserved = add_preserved_filters(
        {"preserved_filters": cl.preserved_filters, "opts": cl.opts}, sample_url
    )
    query = preserved[len(sample_url) :]
    cells: list[Cell] = []
    first_link = True
    for index, name in enumerate(cl.list_display):
        css = [f"field-{admin_list._coerce_field_name(name, index)}"]  # type: ignore[attr-defined]
        try:
            field = opts.get_field(name) if isinstance(name, str) else None
        except FieldDoesNotExist:
            field = None
        if isinstance(field, models.Field) and (field.is_relation and not field.many_to_one):
            field = None  # many-to-many and the like: Django's own path
        if name == "action_checkbox":
            cell = _checkbox_cell(model_admin)
        elif field is not None and not field.auto_created:
            if isinstance(field, models.DateField | models.TimeField | models.ForeignKey):
                css.append("nowrap")
            cell = _field_cell(model_admin, name, field)
        else:
            cell = _method_cell(model_admin, name)
        link = name in cl.list_display_links
        tag = "th" if link and first_link else "td"
        if link:
            first_link = False
        cells.append(_wrap(cell, tag, " ".join(css), url_name, query if link else None))
    return cells


def _checkbox_cell(model_admin: Any) -> Callable[[Any], tuple[Any, list[str]]]:
    def cell(obj: Any) -> tuple[Any, list[str]]:
        return model_admin.action_checkbox(obj), ["action-checkbox"]

    return cell


def _field_cell(model_admin: Any, name: str, field: Any) -> Callable[[Any], tuple[Any, list[str]]]:
    empty = model_admin.get_empty_value_display()
    foreign = field.many_to_one

    def cell(obj: Any) -> tuple[Any, list[str]]:
        value = getattr(obj, name)
        if foreign:
            return (empty if value is None else value), []
        if isinstance(value, str) and value.strip() == "":
            value = ""
        return display_for_field(value, field, empty, avoid_link=False), []

    return cell


def _method_cell(model_admin: Any, name: str) -> Callable[[Any], tuple[Any, list[str]]]:
    method = getattr(model_admin, name, None) if isinstance(name, str) else None
    if name == "__str__" or not callable(method):
        method = None  # a model attribute or property, or a callable given as itself
    attr = method
    empty = getattr(attr, "empty_value_display", model_admin.get_empty_value_display())
    boolean = getattr(attr, "boolean", False)

    def cell(obj: Any) -> tuple[Any, list[str]]:
        if method is not None:  # a display method of the admin: looked up once, not per row
            value, shown_empty, is_boolean = method(obj), empty, boolean
        else:
            _, found, value = lookup_field(name, obj, model_admin)
            shown_empty = getattr(found, "empty_value_display", empty)
            is_boolean = getattr(found, "boolean", False)
            if isinstance(found, property) and hasattr(found, "fget"):
                is_boolean = getattr(found.fget, "boolean", False)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        extra = ["nowrap"] if isinstance(value, datetime.date | datetime.time) else []
        return display_for_value(value, shown_empty, is_boolean), extra

    return cell


def _wrap(
    cell: Callable[[Any], tuple[Any, list[str]]],
    tag: str,
    css: str,
    url_name: str,
    query: str | None,
) -> Cell:
    def render(obj: Any) -> SafeString:
        shown, extra = cell(obj)
        classes = "action-checkbox" if extra == ["action-checkbox"] else css
        if extra and extra != ["action-checkbox"]:
            classes = f"{css} {' '.join(extra)}"
        content = conditional_escape(shown)
        if query is not None:
            url = change_url(url_name, obj.pk) + query
            content = format_html('<a href="{}">{}</a>', url, content)
        return mark_safe(f'<{tag} class="{classes}">{content}</{tag}>')  # noqa: S308

    return render
