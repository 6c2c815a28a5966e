"""What the test modules share besides fixtures (those are in ``tests/conftest.py``).

Worker processes started with "spawn" import this package before they set Django up
(``workers``, ``refresh_workers``): nothing here may touch settings or models at import
time, so the functions that need the model import it when they run.
"""

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

from django.db import connection
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations, ResponseWrapper
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

CLIENT_ID = "1000.TESTCLIENT"
CLIENT_SECRET = "test-client-secret"
REDIRECT_URL = "https://app.example.com/zoho/callback"

# Users of the fake Zoho, (email, zgid); the SDK names their rows "email:zgid".
ALICE = ("alice@example.com", "10001")
BOB = ("bob@example.com", "20002")

ENCRYPTED_COLUMNS = ("client_secret", "refresh_token", "access_token", "grant_token")


def now_ms() -> int:
    """The current time in epoch milliseconds, the unit of a token's expiry."""
    return int(time.time() * 1000)


# --- the real SDK against the fake Zoho ----------------------------------------------------


def grant_token_login(code: str) -> OAuthToken:
    return OAuthToken(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_token=code, redirect_url=REDIRECT_URL
    )


def log_in(sdk: Any, fake_zoho: Any, user: tuple[str, str] = ALICE) -> OAuthToken:
    """A first login with a grant token the fake Zoho issued for ``user``."""
    return sdk(grant_token_login(fake_zoho.issue_grant_token(*user)))


def signed_token(user_name: str, refresh_token: str, access_token: str, expires_at: int) -> OAuthToken:
    """What the SDK holds for a user after a login or refresh: credentials, tokens, expiry."""
    token = OAuthToken(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
        access_token=access_token,
        user_signature=UserSignature(user_name),
    )
    token.set_expires_in(str(expires_at))
    return token


def org_zgid() -> str:
    """One real API call through the SDK; returns the org's zgid."""
    response = OrgOperations().get_organization()
    assert response.get_status_code() == 200
    wrapper = response.get_object()
    assert isinstance(wrapper, ResponseWrapper), wrapper
    return wrapper.get_org()[0].get_zgid()


# --- management commands as manage.py runs them -------------------------------------------


def manage(*argv: str) -> tuple[int, str, str]:
    """Run ``manage.py *argv`` in this process: (exit status, stdout, stderr).

    The path cron takes: Django's argument parsing, ``CommandError`` written to stderr
    with its exit status. Django closes the database connections afterwards, so use it
    in transactional tests (``django_db(transaction=True)``).
    """
    from django.core.management import ManagementUtility

    out, err = io.StringIO(), io.StringIO()
    status = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            ManagementUtility(["manage.py", *argv]).execute()
        except SystemExit as exc:
            status = _exit_status(exc)
    return status, out.getvalue(), err.getvalue()


def command(name: str, *args: str) -> tuple[int, str, str]:
    """``call_command(name, *args)`` with the exit status manage.py would give:
    (status, stdout, stderr). Keeps the test's database connection, unlike :func:`manage`."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except SystemExit as exc:
        status = _exit_status(exc)
    except CommandError as exc:
        status = exc.returncode
        err.write(f"CommandError: {exc}\n")
    return status, out.getvalue(), err.getvalue()


def _exit_status(exc: SystemExit) -> int:
    """The status a process would exit with: ``sys.exit()`` is 0, a message 1."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


# --- rows behind the model's back ----------------------------------------------------------


def expire(*rows: Any, in_ms: int = -1000) -> None:
    """Make the rows' access tokens expire ``in_ms`` from now (by default, a second ago).

    For rows a real SDK login wrote, as time passing would; a row built for the test
    gets its state from a factory trait instead (``ZohoTokenFactory(expired=True)``).
    """
    from zoho_tokens.models import ZohoToken

    ZohoToken.objects.filter(pk__in=[row.pk for row in rows]).update(expiry_time=now_ms() + in_ms)


def raw_rows() -> list[dict[str, Any]]:
    """Every row, in primary-key order, as the database holds it (see :func:`raw_row`)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {_table()} ORDER BY id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def raw_row(pk: int) -> dict[str, Any]:
    """Every column of one row as the database holds it: ciphertext, digests, all."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {_table()} WHERE id = %s", [pk])
        names = [column[0] for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def write_raw(pk: int, column: str, value: str) -> None:
    """Store ``value`` in one column as it is, past the field's encryption."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table()} SET {column} = %s WHERE id = %s", [value, pk])


def _table() -> str:
    from zoho_tokens.models import ZohoToken

    return connection.ops.quote_name(ZohoToken._meta.db_table)
