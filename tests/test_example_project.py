"""The README's demo keeps working: the example project's steps, run as a user would."""

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the virtualenv running the suite


def demo_env(database: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment a user's ``.env`` would give the example project, with fresh keys."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DJANGO_SECRET_KEY": "demo-test-secret-key",
        "DATABASE_URL": f"sqlite:///{database}",
        "ZOHO_TOKENS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ZOHO_TOKENS_HMAC_KEYS": "demo-test-hmac-key-0123456789-0123456789",
        "PORT": str(port),
        **extra,
    }


def run_manage(env: dict[str, str], *args: str) -> str:
    """``manage.py ARGS`` of the example project, as a user runs it; its output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_demo_logs_in_through_the_sdk_and_tells_where_to_click(tmp_path):
    env = demo_env(tmp_path / "demo.sqlite3", 8123)

    def manage(*args: str) -> str:
        return run_manage(env, *args)

    manage("migrate", "--verbosity", "0")
    first = manage("zoho_demo")
    second = manage("zoho_demo")

    assert "Logged in bob@example.com through the SDK: org 20002" in first
    assert "Logged in carol@example.com through the SDK: org 10001" in first
    assert "refreshed: 1 refresh" in first
    # Version byte 0x01 first: base64 of the AES-GCM format starts with "A".
    assert re.search(r"What the database holds in refresh_token: A[A-Za-z0-9+/]{39}…", first)
    assert "The demo site: http://127.0.0.1:8123/\n" in first
    assert re.search(r"  site user  alice  password \S{12}\n  admin      admin  password \S{12}\n", first)
    assert "In the admin (http://127.0.0.1:8123/admin/, as admin)" in first
    assert "1000." not in first  # no token printed in clear
    # A second run: the earlier fake Zoho's tokens go, the passwords stay, and how to change them.
    assert "Removed 2 token(s) of an earlier run's fake Zoho." in second
    python = os.path.relpath(sys.executable, ROOT)
    assert (
        f"alice  password set on the first run; a new one: {python} manage.py changepassword alice" in second
    )
    with sqlite3.connect(tmp_path / "demo.sqlite3") as db:
        redirects = {url for (url,) in db.execute("SELECT redirect_url FROM zoho_tokens_zohotoken")}
    assert redirects == {"http://127.0.0.1:8123/zoho/callback/"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scratch_copy(destination: Path) -> Path:
    """The project as a fresh clone has it: sources only, no .env, database or virtualenv."""
    ignored = shutil.ignore_patterns(
        ".git",
        ".venv",
        ".tox",
        ".env",
        "*.sqlite3",
        "__pycache__",
        "*_cache",
        "htmlcov",
        "*.egg-info",
        ".coverage*",
    )
    return Path(shutil.copytree(ROOT, destination / "project", ignore=ignored))


@pytest.mark.slow
def test_the_readme_command_serves_a_site_where_alice_connects_zoho(tmp_path):
    """`make demo` from a scratch copy: sign in, connect, approve, see the CRM, revoke."""
    project = scratch_copy(tmp_path)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZOHO_", "DJANGO_", "DATABASE"))
    }
    log = (tmp_path / "demo.log").open("w")
    # The suite's virtualenv stands in for the one `make demo` would build (-o: as it is).
    server = subprocess.Popen(
        ["make", "demo", f"PORT={port}", f"VENV={VENV}", "-o", f"{VENV}/.installed"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        alice = requests.Session()
        wait_for(base, server, tmp_path / "demo.log")
        printed = (tmp_path / "demo.log").read_text()
        passwords = dict(re.findall(r"  (?:site user|admin)\s+(\w+)\s+password (\S+)\n", printed))
        assert (project / ".env").exists()

        sign_in(alice, base, "alice", passwords["alice"])
        home = alice.get(f"{base}/", timeout=10).text
        assert 'href="/zoho/connect/?next=%2F">Connect Zoho CRM</a>' in home

        consent_page = alice.get(f"{base}/zoho/connect/?next=/", allow_redirects=False, timeout=10)
        assert consent_page.status_code == 302
        assert consent_page.headers["Location"].startswith("http://127.0.0.1:")
        page = alice.get(consent_page.headers["Location"], timeout=10)
        assert ">Approve</button>" in page.text and ">Deny</button>" in page.text
        assert '<option value="uk">United Kingdom (uk)</option>' in page.text

        query = dict(parse_qsl(urlsplit(consent_page.headers["Location"]).query))
        back = alice.post(
            consent_page.headers["Location"].split("?")[0],
            data={
                **query,
                "decision": "approve",
                "email": "alice@example.com",
                "zgid": "10001",
                "data_centre": "eu",
            },
            timeout=10,
        )
        assert back.url == f"{base}/"
        assert "Connected as alice@example.com (org 10001)" in back.text
        assert "Connected Zoho CRM as alice@example.com (org 10001)." in back.text  # the message
        assert "<td>Carol</td><td>carol@example.com</td>" in back.text  # through the SDK, as alice

        admin = requests.Session()
        sign_in(admin, base, "admin", passwords["admin"], login="/admin/login/")
        alice_pk = row_pk(project, "alice@example.com:10001")
        revoked = admin_action(admin, base, "revoke_at_zoho", alice_pk)
        assert "Revoked 1 token." in revoked
        assert "The connection of alice@example.com was revoked." in alice.get(f"{base}/", timeout=10).text
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()


def wait_for(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            requests.get(f"{base}/", timeout=2)
            return
        except requests.ConnectionError:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the demo server did not start:\n" + log.read_text()
            time.sleep(0.2)


def sign_in(
    session: requests.Session, base: str, username: str, password: str, login="/accounts/login/"
) -> None:
    page = session.get(f"{base}{login}", timeout=10)
    answer = session.post(
        f"{base}{login}",
        data={
            "username": username,
            "password": password,
            "next": "/",
            "csrfmiddlewaretoken": csrf(page.text),
        },
        timeout=10,
    )
    assert answer.url == f"{base}/", answer.text


def admin_action(session: requests.Session, base: str, action: str, pk: int) -> str:
    changelist = session.get(f"{base}/admin/zoho_tokens/zohotoken/", timeout=10)
    answer = session.post(
        f"{base}/admin/zoho_tokens/zohotoken/",
        data={
            "action": action,
            "_selected_action": [str(pk)],
            "index": "0",
            "csrfmiddlewaretoken": csrf(changelist.text),
        },
        timeout=10,
    )
    assert answer.status_code == 200
    return answer.text


def row_pk(project: Path, user_name: str) -> int:
    with sqlite3.connect(project / "example_project" / "db.sqlite3") as db:
        (pk,) = db.execute("SELECT id FROM zoho_tokens_zohotoken WHERE user_name = ?", [user_name]).fetchone()
    return int(pk)


def csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


@pytest.mark.slow
def test_with_a_real_client_the_site_talks_to_zoho_and_the_fake_stays_off(tmp_path):
    env = demo_env(
        tmp_path / "demo.sqlite3",
        8123,
        ZOHO_CLIENT_ID="1000.REALCLIENT",
        ZOHO_CLIENT_SECRET="real-secret",
        ZOHO_REDIRECT_URL="https://crm.example.com/zoho/callback/",
    )
    connect = (
        "from django.contrib.auth.models import User; from django.test import Client; "
        "client = Client(); client.force_login(User.objects.get(username='alice')); "
        "print(client.get('/zoho/connect/', HTTP_HOST='127.0.0.1')['Location'])"
    )

    def manage(*args: str) -> str:
        return run_manage(env, *args)

    manage("migrate", "--verbosity", "0")
    out = manage("zoho_demo")
    location = manage("shell", "-c", connect).splitlines()[-1]  # after any banner

    assert out.startswith(
        "Real Zoho: client 1000.REALCLIENT, consent at https://accounts.zoho.com/oauth/v2/auth, "
        "callback https://crm.example.com/zoho/callback/\n"
    )
    assert "fake" not in out.split("The demo site")[0] and "Logged in" not in out
    assert location.startswith("https://accounts.zoho.com/oauth/v2/auth?scope=ZohoCRM.modules.ALL")
    assert "client_id=1000.REALCLIENT" in location
    assert "redirect_uri=https%3A%2F%2Fcrm.example.com%2Fzoho%2Fcallback%2F" in location
