"""zoho_tokens_status: counts per status, the oldest refresh error, the next expiry; exit status
0 when all is well and 3 when a token needs attention, so it can run as a health check."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from tests.helpers import command, manage, now_ms
from zoho_tokens.models import ZohoToken

LONG_AGO = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def status(*args: str) -> tuple[int, str, str]:
    return command("zoho_tokens_status", *args)


def at(expiry_ms: int) -> str:
    return datetime.fromtimestamp(expiry_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def report(
    active=0,
    expiring=0,
    failed=0,
    backing_off=0,
    unmapped=0,
    reauth=0,
    revoked=0,
    error="none",
    expiry="none",
    minutes=10,
) -> str:
    return (
        f"Active: {active}\n"
        f"  expiring within {minutes} minutes: {expiring}\n"
        f"  last refresh failed: {failed}\n"
        f"  backing off after a rate limit: {backing_off}\n"
        f"  no accounts server for their API domain: {unmapped}\n"
        f"Needing re-authorisation: {reauth}\n"
        f"Revoked: {revoked}\n"
        f"Oldest unresolved refresh error: {error}.\n"
        f"Next access token expiry: {expiry}.\n"
    )


def test_an_empty_table_is_well(db):
    assert status() == (0, report(), "")


def test_healthy_tokens_counted_per_status(token_factory):
    soonest = token_factory(expiring=True)
    token_factory()
    token_factory(expired=True)
    token_factory(revoked=True)

    assert status() == (0, report(active=3, expiring=1, revoked=1, expiry=at(soonest.expiry_time)), "")
    assert status("--expiring-within", "0") == (
        0,
        report(active=3, revoked=1, expiry=at(soonest.expiry_time), minutes=0),
        "",
    )


def test_tokens_that_need_attention_fail_the_health_check(token_factory, settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {}
    token_factory(api_domain="https://crm.example.test")  # no accounts server
    oldest = token_factory(refresh_error="invalid_client", last_refreshed_at=LONG_AGO)
    token_factory(refresh_error="invalid_client", last_refreshed_at=LONG_AGO + timedelta(days=1))
    token_factory(
        refresh_error="rate_limited", refresh_retry_at=timezone.now() + timedelta(seconds=60), expiring=True
    )
    token_factory(needs_reauthorization=True)

    code, out, err = status()

    assert code == 3
    assert out == report(
        active=4,
        expiring=1,
        failed=3,
        backing_off=1,
        unmapped=1,
        reauth=1,
        error=f"invalid_client, token {oldest.token_id} ({oldest.user_name}), no successful refresh "
        "since 2025-03-04 05:06:07 UTC",
        expiry=at(ZohoToken.objects.get(refresh_error="rate_limited").expiry_time),
    )
    assert err == (
        "5 tokens need attention: 1 needing re-authorisation, 3 whose last refresh failed, "
        "1 with no accounts server.\n"
    )


@pytest.mark.parametrize(
    ("state", "warning"),
    [
        ({"needs_reauthorization": True}, "1 token needs attention: 1 needing re-authorisation.\n"),
        ({"refresh_error": "invalid_client"}, "1 token needs attention: 1 whose last refresh failed.\n"),
        ({"api_domain": "https://crm.example.test"}, "1 token needs attention: 1 with no accounts server.\n"),
    ],
)
def test_each_kind_of_attention_alone(token_factory, state, warning):
    token_factory(**state)

    code, _, err = status()

    assert (code, err) == (3, warning)


def test_json_for_machines(token_factory):
    soonest = token_factory(expiring=True)
    broken = token_factory(needs_reauthorization=True, last_refreshed_at=LONG_AGO)
    token_factory(revoked=True)

    code, out, err = status("--json", "--verbosity", "0")

    assert (code, err) == (3, "")
    assert json.loads(out) == {
        "healthy": False,
        "tokens": {
            "active": 1,
            "needing_reauthorization": 1,
            "revoked": 1,
            "expiring_soon": 1,
            "last_refresh_failed": 0,
            "backing_off": 0,
            "without_accounts_server": 0,
        },
        "expiring_within_minutes": 10,
        "oldest_refresh_error": {
            "token_id": broken.token_id,
            "user_name": broken.user_name,
            "error": "invalid_code",
            "since": "2025-03-04T05:06:07+00:00",
        },
        "next_expiry": datetime.fromtimestamp(soonest.expiry_time / 1000, tz=UTC).isoformat(),
    }


def test_never_a_secret(token_factory):
    rows = [token_factory(refresh_error="invalid_client"), token_factory(needs_reauthorization=True)]

    _, out, err = status()
    _, json_out, _ = status("--json")

    for row in rows:
        for secret in (row.client_secret, row.refresh_token, row.access_token):
            assert secret not in out + err + json_out


def test_quiet_is_the_exit_status_alone(token_factory):
    token_factory()
    assert status("-v", "0") == (0, "", "")
    token_factory(needs_reauthorization=True)
    assert status("-v", "0") == (3, "", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--expiring-within", "soon"],
            "--expiring-within: must be a whole number of minutes from 0 to 10080, not 'soon'.",
        ),
        (
            ["--expiring-within", "99999"],
            "--expiring-within: must be a whole number of minutes from 0 to 10080, not '99999'.",
        ),
        (["--database", "nosuch"], "--database: no database 'nosuch' in DATABASES."),
    ],
    ids=str,
)
def test_impossible_options(db, argv, message):
    assert status(*argv) == (1, "", f"CommandError: {message}\n")


def test_a_database_failure_is_status_1(token_factory):
    token_factory()

    def fail(execute, sql, params, many, context):
        raise OperationalError("server closed the connection\nunexpectedly")

    with connection.execute_wrapper(fail):
        code, out, err = status()

    assert (code, out) == (1, "")
    assert err == (
        "CommandError: Cannot read the tokens: the database failed "
        "(OperationalError: server closed the connection unexpectedly).\n"
    )


@pytest.mark.django_db(transaction=True)
def test_as_a_health_check_on_the_command_line(token_factory):
    token_factory(expiry_time=now_ms() + 3_600_000)
    assert manage("zoho_tokens_status", "-v", "0") == (0, "", "")

    token_factory(needs_reauthorization=True)
    assert manage("zoho_tokens_status", "-v", "0") == (3, "", "")
