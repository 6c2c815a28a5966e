"""``zoho_refresh_tokens``: refreshing ahead of time from cron, through the coordinated refresh."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.helpers import now_ms
from zoho_tokens.models import ZohoToken


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("zoho_refresh_tokens", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def tokens(tokens_zoho_knows):
    """Two tokens expiring in 5 minutes, one in 50, and rows a refresh must leave alone."""
    soon = tokens_zoho_knows("ann", "ben", expiry_time=now_ms() + 300_000)
    later = tokens_zoho_knows("cat", expiry_time=now_ms() + 3_000_000)
    flagged = tokens_zoho_knows("dan", expiry_time=now_ms() + 60_000, needs_reauthorization=True)
    revoked = tokens_zoho_knows("eve", expiry_time=now_ms() + 60_000, revoked=True)
    return soon, later, flagged, revoked


def test_tokens_expiring_within_the_window_are_refreshed_once(tokens, fake_zoho):
    soon, later, flagged, revoked = tokens

    out, err = run("--expiring-within", "600")

    assert (
        out
        == "Refreshed 2 tokens (0 rejected: re-authorise; 0 failed: backing off; 0 left to another worker).\n"
    )
    assert err == ""
    assert fake_zoho.count("refresh_token") == 2
    assert {call["refresh_token"] for call in fake_zoho.received("refresh_token")} == {
        row.refresh_token for row in soon
    }
    for row in soon:
        fresh = ZohoToken.objects.get(pk=row.pk)
        assert fresh.access_token != row.access_token
        assert fake_zoho.is_access_token_valid(fresh.access_token)
        assert fresh.expiry_time > now_ms() + 3_000_000
    for row in (*later, *flagged, *revoked):
        assert ZohoToken.objects.get(pk=row.pk).access_token == row.access_token


def test_a_token_refreshed_minutes_ago_is_left_alone(tokens, fake_zoho):
    fake_zoho.access_token_lifetime = 600  # new tokens expire within the next run's window
    run("--expiring-within", "600")

    # Looking as far ahead as allowed finds the token expiring in 50 minutes, and not
    # the two refreshed a moment ago although they expire within the window too ...
    out, _ = run("--expiring-within", "3300")
    assert out.startswith("Refreshed 1 token (")
    # ... and then nothing: all three were refreshed less than five minutes ago.
    out, _ = run("--expiring-within", "3300")
    assert out.startswith("Refreshed 0 tokens (")
    assert fake_zoho.count("refresh_token") == 3


def test_a_dead_refresh_token_is_found_before_a_user_meets_it(tokens_zoho_knows, fake_zoho):
    (row,) = tokens_zoho_knows("gone", expiry_time=now_ms() + 300_000)
    fake_zoho.inject_error("refresh_token", "invalid_code")

    with pytest.raises(SystemExit) as exit_status:
        run("--expiring-within", "600")

    assert exit_status.value.code == 3
    flagged = ZohoToken.objects.get(pk=row.pk)
    assert flagged.needs_reauthorization_at is not None
    assert flagged.refresh_error == "invalid_code"


def test_json_output_and_failures_on_stderr(tokens_zoho_knows, fake_zoho, capsys):
    good, failing = tokens_zoho_knows("ann", "ben", expiry_time=now_ms() + 300_000)
    fake_zoho.inject_error("refresh_token", "server_error", status=503, times=1)
    out, err = StringIO(), StringIO()

    with pytest.raises(SystemExit):
        call_command("zoho_refresh_tokens", "--expiring-within", "600", "--json", stdout=out, stderr=err)

    report = json.loads(out.getvalue())
    assert report["refreshed"] == [failing.token_id] or report["refreshed"] == [good.token_id]
    (failed,) = report["failed"]
    assert report["rejected"] == report["skipped"] == []
    assert report["reasons"] == {failed: "127.0.0.1 answered HTTP 503"}
    assert err.getvalue() == f"Token {failed} failed: 127.0.0.1 answered HTTP 503\n"
    assert ZohoToken.objects.get(token_id=failed).refresh_failures == 1


@pytest.mark.parametrize("value", ["0", "3301", "soon", "-5"])
def test_a_window_out_of_range_is_refused(db, value):
    with pytest.raises(
        CommandError, match="--expiring-within: must be a whole number of seconds from 1 to 3300"
    ):
        run("--expiring-within", value)


def test_an_unknown_database_is_refused(db):
    with pytest.raises(CommandError, match="--database: no database 'nosuch' in DATABASES"):
        run("--expiring-within", "60", "--database", "nosuch")


def test_with_the_stores_refresh_off_nothing_is_refreshed(tokens, fake_zoho, settings):
    settings.ZOHO_TOKENS_REFRESH = False

    with pytest.raises(CommandError, match="ZOHO_TOKENS_REFRESH is off"):
        run("--expiring-within", "600")
    assert fake_zoho.count("refresh_token") == 0
