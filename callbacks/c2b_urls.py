"""Daraja's C2B URLs, per M-Pesa account (mounted at ``/c2b/``)."""

from django.urls import path

from .c2b_api import c2b_confirmation, c2b_validation

urlpatterns = [
    path("<str:token>/validation/", c2b_validation, name="c2b-validation"),
    path("<str:token>/confirmation/", c2b_confirmation, name="c2b-confirmation"),
]
