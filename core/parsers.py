"""The API's JSON parser and pagination, kept apart from ``core.api`` because DRF's settings
import them while ``rest_framework.views`` is still loading (a worker process imports them
first, through Django's system checks)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser


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
    page_size_query_param = "page_size"
    max_page_size = 500
