"""The ways the project is started outside `make run`, each through real processes on a copy of
the repository (so that a `.env` can be written beside manage.py without touching this one):
configuration errors as one line, gunicorn's address and `.env`, health checks behind a
plain-HTTP load balancer, and the README's manual steps through one payment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from testsupport import REPO_ROOT, wait_for

BIN = Path(sys.executable).parent
SECRET = "deployment-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def copy_of_repo(dest: Path) -> Path:
    """The repository's files, without its virtualenvs, runtime files and `.env`."""
    shutil.copytree(
        REPO_ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "mpesa_env",
            "var",
            ".env",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "*.sqlite3*",
        ),
    )
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of the project's variables (the tests' own
    DATABASE_URL, VAR_DIR, secret key...), with this virtualenv's commands first on PATH."""
    names = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text(), re.M))
    names |= {"DJANGO_SETTINGS_MODULE", "GUNICORN_CMD_ARGS", "REQUIRE_SERVICES"}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in names and not key.startswith(("DJANGO_", "MPESA_", "CELERY_", "GUNICORN_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def started(command: str, *, cwd: Path, env: dict[str, str], log: Path) -> Iterator[Path]:
    """A shell command running in its own process group, stopped (the whole group) on exit."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def answers(url: str, **kwargs: object) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError:
        return None


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_of_repo(tmp_path_factory.mktemp("deploy") / "app")


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Path:
    return copy_of_repo(tmp_path / "app")


# --- Configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "python manage.py check",
        "gunicorn mpesa_project.wsgi",
        "celery -A mpesa_project worker -l info",
        "celery -A mpesa_project beat -l info",
    ],
)
def test_a_missing_secret_key_is_one_line_naming_it_and_the_fix(repo, command):
    result = subprocess.run(
        shlex.split(command),
        cwd=repo,
        env=clean_env(DJANGO_DEBUG="false"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DJANGO_SECRET_KEY is not set" in lines[0]
    assert "DJANGO_DEBUG=true" in lines[0] and "make manage" in lines[0]


def test_make_manage_runs_a_command_with_make_runs_environment(repo):
    """The README's way to run management commands beside `make run` (this virtualenv stands
    in for the one `make install` would create: `-o install` skips re-installing it)."""
    result = subprocess.run(
        ["make", "-o", "install", "manage", "ARGS=check --fail-level ERROR", f"BIN={BIN}"],
        cwd=repo,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_lock_files_name_no_package_index_and_hash_every_pin():
    for name in ("requirements.txt", "requirements-dev.txt"):
        text = (REPO_ROOT / name).read_text()
        assert not re.search(r"^\s*(-i|-f|--(extra-)?index-url|--find-links)\b", text, re.M), name
        pins = re.findall(r"^([A-Za-z0-9._-]+)==\S+(.*?)(?=^\S|\Z)", text, re.M | re.S)
        assert pins, name
        unhashed = [pin for pin, rest in pins if "--hash=sha256:" not in rest]
        assert unhashed == [], f"{name}: run make lock ({unhashed})"


def test_a_production_install_has_what_celerys_redis_transport_imports():
    """`celery[redis]` pulls in what kombu's Redis transport imports (packaging among them)."""
    pinned = {
        line.split("==")[0].lower()
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    from importlib.metadata import requires

    needed = {
        re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()
        for requirement in requires("kombu") or []
        if 'extra == "redis"' in requirement
    }
    assert needed and needed <= pinned, needed - pinned


# --- gunicorn ------------------------------------------------------------------------------


def test_gunicorn_listens_on_loopback_unless_told_otherwise(repo):
    result = subprocess.run(
        ["gunicorn", "--print-config", "mpesa_project.wsgi"],
        cwd=repo,
        env=clean_env(DJANGO_DEBUG="true"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    bind = [line for line in result.stdout.splitlines() if line.startswith("bind ")]
    assert bind and bind[0].split("=", 1)[1].strip() == "['127.0.0.1:8000']"


def test_gunicorn_reads_dotenv_and_health_answers_plain_http_with_debug_off(fresh_repo):
    """A production-like `.env` (debug off, HTTPS redirect on): gunicorn listens where the
    file says, and a load balancer's plain-HTTP probe of /health/ gets 200, not a redirect,
    while the API is still redirected to HTTPS."""
    port = free_port()
    (fresh_repo / ".env").write_text(
        f"DJANGO_DEBUG=false\nDJANGO_SECRET_KEY={SECRET}\n"
        f"DJANGO_ALLOWED_HOSTS=127.0.0.1\nGUNICORN_BIND=127.0.0.1:{port}\nGUNICORN_WORKERS=1\n"
    )
    with started(
        "exec gunicorn mpesa_project.wsgi",
        cwd=fresh_repo,
        env=clean_env(),
        log=fresh_repo / "gunicorn.log",
    ) as log:
        health = wait_for(lambda: answers(f"http://127.0.0.1:{port}/health/"), timeout=60)
        api = httpx.get(f"http://127.0.0.1:{port}/payments/", timeout=5)
    assert health.status_code == 200, (health.status_code, health.headers, log.read_text())
    assert health.json() == {"status": "ok"}
    assert api.status_code == 301
    assert api.headers["location"] == f"https://127.0.0.1:{port}/payments/"


# --- The README's manual steps -------------------------------------------------------------


def manual_steps() -> list[str]:
    """The commands of the README's "seed's manual steps" block, comments removed."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### The seed's manual steps still work", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.e2e
@pytest.mark.worker
def test_the_readme_manual_steps_take_one_payment_to_success(fresh_repo):
    """The README's commands, run as printed in a copy of the repository, with a `.env` copied
    from `.env.example`. Two honest shortcuts: the virtualenv is this one (creating one and
    installing requirements.txt into it is what CI's production smoke test does), and the
    simulator and runserver get free ports (appended to their commands and written into `.env`,
    as the README's "edit" allows) because this machine runs other tests at the same time."""
    steps = manual_steps()
    assert steps[:2] == [
        "python3 -m venv mpesa_env && source mpesa_env/bin/activate",
        "pip install -r requirements.txt",
    ]
    one_shot = steps[2:5]
    assert one_shot == [
        "cp .env.example .env",
        "python manage.py migrate",
        "python manage.py create_api_key shop",
    ]
    servers = steps[5:]
    assert servers == [
        "python -m simulator",
        "python manage.py runserver",
        "celery -A mpesa_project worker -l info",
        "celery -A mpesa_project beat -l info",
    ]
    env = clean_env()
    web_port, simulator_port = free_port(), free_port()

    def run(command: str) -> str:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=fresh_repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result.stdout

    run(one_shot[0])
    dotenv = fresh_repo / ".env"
    dotenv.write_text(
        re.sub(
            r"^MPESA_CALLBACK_URL=.*$",
            f"MPESA_CALLBACK_URL=http://127.0.0.1:{web_port}/payments/callback/",
            dotenv.read_text(),
            flags=re.M,
        ).replace("\nMPESA_BASE_URL=\n", f"\nMPESA_BASE_URL=http://127.0.0.1:{simulator_port}\n")
    )
    run(one_shot[1])
    key = re.search(r"mpk_\S+", run(one_shot[2]))
    assert key, "create_api_key printed no key"

    commands = [
        f"exec {servers[0]} --port {simulator_port}",
        f"exec {servers[1]} 127.0.0.1:{web_port} --noreload",
        f"exec {servers[2]} --concurrency=1",
        f"exec {servers[3]}",
    ]
    logs = [fresh_repo / f"step-{n}.log" for n in range(len(commands))]
    with (
        started(commands[0], cwd=fresh_repo, env=env, log=logs[0]),
        started(commands[1], cwd=fresh_repo, env=env, log=logs[1]),
        started(commands[2], cwd=fresh_repo, env=env, log=logs[2]),
        started(commands[3], cwd=fresh_repo, env=env, log=logs[3]),
    ):
        base = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: answers(f"{base}/health/"), timeout=60)
        headers = {"Authorization": f"Bearer {key.group(0)}"}
        pushed = httpx.post(
            f"{base}/payments/stk-push/",
            json={
                "phone_number": "0712345678",
                "amount": 10,
                "account_reference": "ORDER1001",
                "description": "Order 1001",
            },
            headers=headers,
            timeout=30,
        )
        assert pushed.status_code == 201, pushed.text
        assert pushed.json()["status"] == "PENDING", pushed.text

        def settled() -> dict[str, object] | None:
            payment = httpx.get(
                f"{base}/payments/{pushed.json()['id']}/", headers=headers, timeout=5
            ).json()
            return payment if payment["status"] in ("SUCCESS", "FAILED") else None

        try:
            payment = wait_for(settled, timeout=90, interval=0.5)
        except AssertionError:
            raise AssertionError("\n".join(log.read_text()[-3000:] for log in logs)) from None
    assert payment["status"] == "SUCCESS", payment
    assert payment["mpesa_receipt_number"]
