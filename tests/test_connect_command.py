"""zoho_connect: a self-client grant token from Zoho's API console, exchanged and stored."""

import io
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.helpers.oauth import RecordingServer
from zoho_tokens.models import ZohoToken

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("zoho_connect", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_grant_token_is_exchanged_and_stored(zoho_for_connect):
    code = zoho_for_connect.issue_grant_token("ops@example.com", "50005")

    out, err = run("--grant-token", code, "--accounts-server", zoho_for_connect.base_url)

    row = ZohoToken.objects.get()
    assert (
        out
        == f"Connected ops@example.com (org 50005) at {zoho_for_connect.base_url}: token id {row.token_id}.\n"
    )
    assert err == ""
    assert (row.user_name, row.owner, row.redirect_url) == ("ops@example.com:50005", None, None)
    assert (row.client_id, row.client_secret) == ("1000.TESTCLIENT", "test-client-secret")
    assert row.api_domain == zoho_for_connect.base_url
    (exchange,) = zoho_for_connect.received("authorization_code")
    assert "redirect_uri" not in exchange  # a self client has none


def test_the_client_and_the_owner_from_options(zoho_for_connect, user_factory):
    ops = user_factory(username="ops")
    code = zoho_for_connect.issue_grant_token("ops@example.com", "50005", data_centre="eu")

    run(
        "--grant-token", code,
        "--accounts-server", zoho_for_connect.url_of("eu"),
        "--client-id", "1000.OTHER",
        "--client-secret", "other-secret",
        "--owner", "ops",
    )  # fmt: skip

    row = ZohoToken.objects.get()
    assert (row.owner, row.client_id, row.api_domain) == (ops, "1000.OTHER", zoho_for_connect.url_of("eu"))
    assert zoho_for_connect.received("authorization_code")[0]["client_secret"] == "other-secret"


def test_the_grant_token_read_from_stdin(zoho_for_connect, monkeypatch):
    code = zoho_for_connect.issue_grant_token("ops@example.com", "50005")
    monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))

    run("--grant-token", "-", "--accounts-server", zoho_for_connect.base_url)

    assert ZohoToken.objects.get().user_name == "ops@example.com:50005"


def test_reconnecting_revokes_the_replaced_refresh_token(zoho_for_connect):
    first = zoho_for_connect.issue_grant_token("ops@example.com", "50005")
    run("--grant-token", first, "--accounts-server", zoho_for_connect.base_url)
    before = ZohoToken.objects.get()

    out, _ = run(
        "--grant-token",
        zoho_for_connect.issue_grant_token("ops@example.com", "50005"),
        "--accounts-server",
        zoho_for_connect.base_url,
    )

    assert out.startswith("Reconnected ops@example.com (org 50005)")
    assert zoho_for_connect.revoked_tokens == (before.refresh_token,)
    assert ZohoToken.objects.get().pk == before.pk


@pytest.mark.parametrize("how", ["expired", "reused", "other data centre"])
def test_a_grant_token_zoho_refuses(zoho_for_connect, how):
    code = zoho_for_connect.issue_grant_token("ops@example.com", "50005", data_centre="eu")
    if how == "expired":
        zoho_for_connect.expire_grant_tokens(code)
    if how == "reused":
        run("--grant-token", code, "--accounts-server", zoho_for_connect.url_of("eu"))
        ZohoToken.objects.all().delete()
    server = zoho_for_connect.url_of("us" if how == "other data centre" else "eu")

    with pytest.raises(CommandError) as refused:
        run("--grant-token", code, "--accounts-server", server)

    assert str(refused.value) == (
        "Zoho was not connected (rejected: invalid_code): grant tokens work once, for the few minutes "
        "chosen when they were generated, and only in their data centre: generate a new one in Zoho's "
        "API console (Self Client), then run this at once."
    )
    assert not ZohoToken.objects.exists()


def test_an_untrusted_accounts_server_is_never_sent_the_secret(zoho_for_connect):
    with RecordingServer() as recorder, pytest.raises(CommandError, match="Not a trusted accounts server"):
        run("--grant-token", "1000.abc.def", "--accounts-server", recorder.url)
    assert recorder.requests == []


def test_an_unknown_owner_stops_before_zoho(zoho_for_connect):
    code = zoho_for_connect.issue_grant_token()

    with pytest.raises(CommandError, match=r"No user 'nobody'; nothing was connected\."):
        run("--grant-token", code, "--accounts-server", zoho_for_connect.base_url, "--owner", "nobody")
    assert zoho_for_connect.count("authorization_code") == 0


def test_no_client_configured(zoho_for_connect, settings):
    settings.ZOHO_TOKENS_CLIENT_SECRET = None

    with pytest.raises(CommandError, match="the client"):
        run("--grant-token", "1000.abc.def", "--accounts-server", zoho_for_connect.base_url)
