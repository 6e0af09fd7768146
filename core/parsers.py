"""The API's JSON parser and pagination, kept apart from ``core.api`` because DRF's settings
import them while ``rest_framework.views`` is still loading (a worker process imports them
first, through Django's system checks)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from .pagination import COUNT_CAP, EstimatedCountPaginator


class DecimalJSONParser(JSONParser):
    """Parse JSON numbers with a fraction as Decimal, so 10.5 never becomes a float."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise exceptions.ParseError(f"The request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class Pagination(PageNumberPagination):
    """Page-number pagination that refuses a page size it cannot read or that is out of range
    (400 naming ``page_size``) instead of quietly using another.

    The count is exact up to :data:`core.pagination.COUNT_CAP` rows and an estimate above
    (``count_is_estimate`` says which): counting every row of a list of millions cost more
    than the page. ``has_more`` and ``next`` come from the rows themselves, not the count."""

    page_size_query_param = "page_size"
    max_page_size = 500
    django_paginator_class = EstimatedCountPaginator

    def get_page_size(self, request: Any) -> int | None:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and not (
            raw.isascii() and raw.isdigit() and len(raw) <= 6 and 0 < int(raw) <= self.max_page_size
        ):
            raise exceptions.ValidationError(
                {"page_size": f"A whole number from 1 to {self.max_page_size}."}
            )
        return super().get_page_size(request)

    def get_paginated_response(self, data: Any) -> Response:
        assert self.page is not None
        paginator = self.page.paginator
        return Response(
            {
                "count": paginator.count,
                "count_is_estimate": bool(getattr(paginator, "count_is_estimate", False)),
                "has_more": self.page.has_next(),
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        properties = response["properties"]
        properties["count"]["description"] = (
            f"Exact up to {COUNT_CAP:,}; above, an estimate (count_is_estimate)."
        )
        properties["count_is_estimate"] = {"type": "boolean"}
        properties["has_more"] = {
            "type": "boolean",
            "description": "Whether another page follows this one.",
        }
        response["required"] = ["count", "count_is_estimate", "has_more", "results"]
        return response

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_page_size})
            elif parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters


class KeysetPagination(Pagination):
    """:class:`Pagination` plus cursors, as Stripe's: ``starting_after=<id>`` gives the rows
    after that one in the list's order (newest first: older rows), ``ending_before=<id>`` the
    rows just before it (newer); ``has_more`` says whether more follow in that direction, and
    ``next``/``previous`` carry the cursors. A cursor page is read through the index from the
    anchor's place (``created_at``, ``id``), as fast a million rows deep as on the first page;
    no count is made.

    Page numbers still work for the first :attr:`max_offset` rows (a page past that is a 400
    naming ``page``); the ``next`` link of the last such page is a cursor. The view gives
    ``get_cursor_queryset()``: the rows a cursor may name (a client's own, whatever the
    filters), ordered by ``time_field`` then ``id``, both descending.
    """

    time_field = "created_at"
    cursor_params = ("starting_after", "ending_before")
    max_offset = 10_000
    noun = "row"
    last_page_strings = ()  # ?page=last would be the deepest OFFSET of all

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        self.request = request
        self.cursor: tuple[str, str] | None = None
        params = request.query_params
        given = [name for name in self.cursor_params if name in params]
        if len(given) == 2:
            raise exceptions.ValidationError(
                {"ending_before": "Give starting_after or ending_before, not both."}
            )
        if given and self.page_query_param in params:
            raise exceptions.ValidationError(
                {self.page_query_param: f"A page number cannot be combined with {given[0]}."}
            )
        if not given:
            page_size = self.get_page_size(request)
            page = params.get(self.page_query_param)
            deep = (
                page
                and page.isascii()
                and page.isdigit()
                and page_size
                and (len(page) > 9 or (int(page) - 1) * page_size >= self.max_offset)
            )
            if deep:
                raise exceptions.ValidationError(
                    {
                        self.page_query_param: f"Page numbers reach the first "
                        f"{self.max_offset:,} {self.noun}s; past that, follow the next "
                        "link (starting_after)."
                    }
                )
            return super().paginate_queryset(queryset, request, view)

        name = given[0]
        page_size = self.get_page_size(request) or self.page_size or 50
        anchor = self._anchor(view, queryset, name, params.get(name))
        time_value, pk_value = anchor
        time = self.time_field
        if name == "starting_after":
            rows_qs = queryset.filter(
                Q(**{f"{time}__lt": time_value}) | Q(**{time: time_value, "pk__lt": pk_value}),
                **{f"{time}__lte": time_value},
            ).order_by(f"-{time}", "-pk")
        else:
            rows_qs = queryset.filter(
                Q(**{f"{time}__gt": time_value}) | Q(**{time: time_value, "pk__gt": pk_value}),
                **{f"{time}__gte": time_value},
            ).order_by(time, "pk")
        rows = list(rows_qs[: page_size + 1])
        more = len(rows) > page_size
        rows = rows[:page_size]
        if name == "ending_before":
            rows.reverse()
        self.cursor = (name, "more" if more else "")
        self.rows = rows
        return rows

    def _anchor(self, view: Any, queryset: Any, name: str, value: str | None) -> tuple[Any, Any]:
        source = view.get_cursor_queryset() if hasattr(view, "get_cursor_queryset") else queryset
        pk_field = source.model._meta.pk
        message = f"Not the id of a {self.noun} in this list."
        if not value or len(value) > 64:
            raise exceptions.ValidationError({name: message})
        try:
            pk = pk_field.to_python(value)
        except (DjangoValidationError, ValueError, TypeError):
            raise exceptions.ValidationError({name: message}) from None
        anchor = source.order_by().filter(pk=pk).values_list(self.time_field, "pk").first()
        if anchor is None:
            raise exceptions.ValidationError({name: message})
        return anchor

    def _link(self, name: str, row: Any) -> str:
        assert self.request is not None
        url = self.request.build_absolute_uri()
        for param in (*self.cursor_params, self.page_query_param):
            url = remove_query_param(url, param)
        return replace_query_param(url, name, str(row.pk))

    def get_paginated_response(self, data: Any) -> Response:
        if self.cursor is None:
            response = super().get_paginated_response(data)
            page = self.page
            assert page is not None
            if page.has_next() and page.number * page.paginator.per_page >= self.max_offset:
                response.data["next"] = self._link("starting_after", page.object_list[-1])
            return response
        name, more = self.cursor
        rows = self.rows
        has_more = bool(more)
        if name == "starting_after":
            next_link = self._link("starting_after", rows[-1]) if has_more else None
            previous = self._link("ending_before", rows[0]) if rows else None
        else:
            previous = self._link("ending_before", rows[0]) if has_more else None
            next_link = self._link("starting_after", rows[-1]) if rows else None
        return Response(
            {"has_more": has_more, "next": next_link, "previous": previous, "results": data}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        response["required"] = ["has_more", "results"]
        response["properties"]["count"]["description"] += " Absent from a cursor page."
        response["properties"]["count_is_estimate"]["description"] = "Absent from a cursor page."
        return response

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["description"] = (
                    f"A page number, for the first {self.max_offset:,} {self.noun}s only; "
                    "not with starting_after/ending_before."
                )
        for name, what in (
            ("starting_after", "older than (after, in the list's order)"),
            ("ending_before", "newer than (before, in the list's order)"),
        ):
            parameters.append(
                {
                    "name": name,
                    "required": False,
                    "in": "query",
                    "description": f"The id of a {self.noun} of the list: the page of "
                    f"{self.noun}s {what} it. Not with page, nor with the other cursor.",
                    "schema": {"type": "string", "format": "uuid"},
                }
            )
        return parameters
