"""Counting and paging lists of millions of rows without reading them all.

``COUNT(*)`` over ten million payments reads ten million rows, on every page of every list.
:func:`list_count` counts at most ``cap`` rows; past that it gives an estimate: for a whole
table, PostgreSQL's own row count (``pg_class.reltuples``, kept by ANALYZE and autovacuum);
for a filtered list, the planner's estimate of the query (never below ``cap + 1``). Below the
cap the count is exact, so small lists, and every test, see exact figures.

:class:`EstimatedCountPaginator` is Django's paginator with that count and pages that know
whether another page follows by fetching one row more (not from the count). The admin and the
API use it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

# Rows counted exactly before a list's count becomes an estimate.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class ListCount:
    count: int
    estimated: bool


def _table_estimate(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's row count for the queryset's table (None where unknown or not PostgreSQL).
    ``reltuples`` is -1 until the table is first vacuumed or analysed (PostgreSQL 14+)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
            [connection.ops.quote_name(queryset.model._meta.db_table)],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] >= 0 else None


def _planner_estimate(queryset: QuerySet[Any]) -> int | None:
    """The planner's estimate of the rows the queryset gives (PostgreSQL only)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def list_count(queryset: QuerySet[Any], *, cap: int | None = None) -> ListCount:
    """The queryset's row count: exact up to ``cap`` (:data:`COUNT_CAP`), an estimate above
    (see the module)."""
    cap = COUNT_CAP if cap is None else cap
    if not queryset.query.where and not queryset.query.distinct:
        estimate = _table_estimate(queryset)
        if estimate is not None and estimate > cap:
            return ListCount(estimate, estimated=True)
    counted = queryset.order_by()[: cap + 1].count()
    if counted <= cap:
        return ListCount(counted, estimated=False)
    estimate = _planner_estimate(queryset)
    if estimate is None:  # not PostgreSQL: only small databases; count them
        return ListCount(queryset.count(), estimated=False)
    return ListCount(max(estimate, cap + 1), estimated=True)


class KnownNextPage(Page):
    """A page that knows whether another follows (it fetched one row more)."""

    def __init__(
        self, object_list: Sequence[Any], number: int, paginator: Paginator, *, more: bool
    ) -> None:
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more


class EstimatedCountPaginator(Paginator):
    """Django's paginator with :func:`list_count`'s count. When the count is an estimate any
    page number is accepted (a page past the end is empty, not an error), and a page says
    whether another follows from the rows, not from the count."""

    def __init__(self, object_list: Any, per_page: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        result = list_count(self.object_list)
        self.count_is_estimate = result.estimated
        return result.count

    def validate_number(self, number: Any) -> int:
        if self.count and not self.count_is_estimate:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            value = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if value < 1:
            raise EmptyPage("That page number is less than 1")
        if not self.count and value > 1 and not self.allow_empty_first_page:
            raise EmptyPage("That page contains no results")
        return value

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if bottom > 2**62:
            raise EmptyPage("That page contains no results")
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        more = len(rows) > self.per_page
        page = KnownNextPage(rows[: self.per_page], number, self, more=more)
        if not rows and number > 1 and not self.count_is_estimate:
            raise EmptyPage("That page contains no results")
        return page
