"""Template filters for the admin's money and statuses (see core.admin_display)."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.utils.safestring import SafeString

from core import admin_display, admin_rows

register = template.Library()


@register.filter
def money(value: Any) -> str:
    return admin_display.money(value)


@register.filter
def status_badge(value: str) -> SafeString:
    return admin_display.status_badge(value)


@register.tag(name="quick_result_list")
def quick_result_list_tag(parser: Any, token: Any) -> InclusionAdminNode:
    """``{% result_list cl %}`` with the rows of core.admin_rows (the same markup, faster)."""
    return InclusionAdminNode(
        parser,
        token,
        func=admin_rows.quick_result_list,
        template_name="change_list_results.html",
        takes_context=False,
    )
