"""Attacks on the admin login: guessing passwords, and the demo login (`admin`/`admin`, printed by
`make run` and written in the README) left on a server that runs with DJANGO_DEBUG=false."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from testsupport import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def _fast_hashing(request, settings):
    """A cheap hasher for the in-process tests (the default one is slow on purpose); a test whose
    users are read by another process keeps the project's hashers."""
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")):
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _login(username: str, password: str, ip: str = "203.0.113.7") -> int:
    response = Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})
    return response.status_code


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-Secret-42")


# --- Password guessing --------------------------------------------------------------------


def test_guessing_locks_the_username_from_that_address_out(settings, staff):
    settings.AXES_FAILURE_LIMIT = 3
    assert [_login("ops", f"guess{n}") for n in range(2)] == [200, 200]  # the form again
    assert _login("ops", "guess2") == 429  # the third failure locks out
    # Locked: even the right password is refused now, from that address, for that username.
    assert _login("ops", "a-long-Secret-42") == 429


def test_a_lockout_is_per_username_and_address(settings, staff):
    settings.AXES_FAILURE_LIMIT = 2
    for n in range(2):
        _login("ops", f"guess{n}")
    assert _login("ops", "a-long-Secret-42") == 429
    # The same user from another address, and another username from the attacker's address,
    # are not locked out (no one can lock the operators out of their own admin).
    assert _login("ops", "a-long-Secret-42", ip="198.51.100.20") == 302
    assert _login("someone", "x") == 200


def test_a_right_password_before_the_limit_logs_in_and_clears_the_count(settings, staff):
    settings.AXES_FAILURE_LIMIT = 3
    _login("ops", "guess0")
    _login("ops", "guess1")
    assert _login("ops", "a-long-Secret-42") == 302
    _login("ops", "guess2")
    _login("ops", "guess3")
    assert _login("ops", "a-long-Secret-42") == 302  # the count started again at the success


def test_the_default_limit_is_five_failures(settings, staff):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert [_login("ops", f"guess{n}") for n in range(5)] == [200, 200, 200, 200, 429]


# --- The demo password on a production server ----------------------------------------------


def _demo_admin(**fields):
    return get_user_model().objects.create_superuser(
        "admin", "admin@example.com", "admin", **fields
    )


def test_check_deploy_refuses_a_superuser_with_the_demo_password(settings):
    settings.DEBUG = False
    _demo_admin()
    with pytest.raises(SystemCheckError, match=r"core\.E001"):
        call_command("check", "--deploy", stdout=StringIO(), stderr=StringIO())


def test_the_demo_password_is_found_under_any_superuser_name(settings):
    settings.DEBUG = False
    get_user_model().objects.create_superuser("root", "root@example.com", "admin")
    with pytest.raises(SystemCheckError, match="'root'"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_a_changed_password_or_an_inactive_user_or_debug_passes(settings):
    user = _demo_admin()
    settings.DEBUG = True
    call_command("check", stdout=StringIO())  # make run: the demo login is fine
    settings.DEBUG = False
    user.is_active = False
    user.save()
    call_command("check", stdout=StringIO())
    user.is_active = True
    user.set_password("a-long-Secret-42")
    user.save()
    call_command("check", stdout=StringIO())


def test_the_check_costs_one_query(settings, django_assert_num_queries):
    settings.DEBUG = False
    get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-Secret-42")
    get_user_model().objects.create_superuser("ops2", "ops2@example.com", "another-Secret-43")
    with django_assert_num_queries(1):
        call_command("check", "--tag", "security", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_web_application_refuses_to_start_with_the_demo_password():
    _demo_admin()
    start = subprocess.run(
        [sys.executable, "-c", "import mpesa_project.wsgi"],  # what gunicorn loads
        cwd=REPO_ROOT,
        env=subprocess_env(DJANGO_DEBUG="false", DJANGO_SETTINGS_MODULE="mpesa_project.settings"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert start.returncode != 0
    assert "core.E001" in start.stderr and "changepassword admin" in start.stderr
