"""The README's demo command keeps working: the example project's steps, run as a user would."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_migrates_logs_in_and_stores_encrypted_tokens(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DJANGO_SECRET_KEY": "demo-test-secret-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "ZOHO_TOKENS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ZOHO_TOKENS_HMAC_KEYS": "demo-test-hmac-key-0123456789-0123456789",
        "PORT": "8123",
    }

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
