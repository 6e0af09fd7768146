"""Template filters for the admin's money and statuses (see core.admin_display)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from core import admin_display

register = template.Library()


@register.filter
def money(value: Any) -> str:
    return admin_display.money(value)


@register.filter
def status_badge(value: str) -> SafeString:
    return admin_display.status_badge(value)
