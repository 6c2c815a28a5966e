"""The README's demo command keeps working: the example project's steps, run as a user would."""

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.slow
def test_the_demo_migrates_logs_in_and_stores_encrypted_tokens(tmp_path):
    env = demo_env(tmp_path / "demo.sqlite3", 8123)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--verbosity", "0")
    out = manage("zoho_demo")

    assert "Logged in alice@example.com: org 10001" in out
    assert "Logged in bob@example.com: org 20002" in out
    assert "refreshed: 1 refresh" in out
    # Version byte 0x01 first: base64 of the AES-GCM format starts with "A".
    assert re.search(r"What the database holds in refresh_token: A[A-Za-z0-9+/]{39}…", out)
    assert "Admin: http://127.0.0.1:8123/admin/  user admin  password " in out
    assert "1000." not in out  # no token printed in clear


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_demo_server_revokes_at_the_fake_zoho_from_the_admin(tmp_path):
    """`make demo` serves the admin while the fake Zoho answers: "Revoke at Zoho" works."""
    port = free_port()
    database = tmp_path / "demo.sqlite3"
    # The demo keeps an existing admin (and prints no password for it).
    env = demo_env(database, port, DJANGO_SUPERUSER_PASSWORD="demo-admin-password")

    def manage(*args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=120)

    manage("migrate", "--verbosity", "0")
    manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "zoho_demo", "--runserver", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        deadline = time.monotonic() + 60
        while True:
            try:
                login_page = session.get(f"{base}/admin/login/", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the demo server did not start"
                time.sleep(0.2)

        session.post(
            f"{base}/admin/login/?next=/admin/",
            data={
                "username": "admin",
                "password": "demo-admin-password",
                "csrfmiddlewaretoken": csrf(login_page.text),
            },
            timeout=10,
        )
        changelist = session.get(f"{base}/admin/zoho_tokens/zohotoken/", timeout=10)
        with sqlite3.connect(database) as db:
            (alice_pk,) = db.execute(
                "SELECT id FROM zoho_tokens_zohotoken WHERE user_name = 'alice@example.com:10001'"
            ).fetchone()
        answer = session.post(
            f"{base}/admin/zoho_tokens/zohotoken/",
            data={
                "action": "revoke_at_zoho",
                "_selected_action": [str(alice_pk)],
                "index": "0",
                "csrfmiddlewaretoken": csrf(changelist.text),
            },
            timeout=10,
        )

        assert answer.status_code == 200
        assert "Revoked 1 token." in answer.text
        assert "was not revoked" not in answer.text
        with sqlite3.connect(database) as db:
            revoked = dict(db.execute("SELECT user_name, revoked_at IS NOT NULL FROM zoho_tokens_zohotoken"))
        assert revoked == {"alice@example.com:10001": 1, "bob@example.com:20002": 0}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)
