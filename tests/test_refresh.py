"""The store refreshes a token about to expire itself, once, and handles each of Zoho's answers."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import (
    ALICE,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URL,
    expire,
    grant_token_login,
    log_in,
    now_ms,
    org_zgid,
    raw_row,
)
from zoho_tokens.models import ZohoToken
from zoho_tokens.signals import reauthorization_needed, token_refreshed
from zoho_tokens.testing import DROP
from zoho_tokens.testing.pytest_plugin import reset_zoho_sdk
from zoho_tokens.zoho import token_endpoint

ALICE_NAME = "alice@example.com:10001"


@pytest.fixture
def alice(db, sdk, fake_zoho) -> ZohoToken:
    """Alice logged in through the SDK, her access token expiring in 30 s: inside the
    store's 60 s margin, outside the SDK's own 5 s."""
    log_in(sdk, fake_zoho, ALICE)
    expire(ZohoToken.objects.get(), in_ms=30_000)
    return ZohoToken.objects.get()


def find_alice(store) -> OAuthToken:
    token = OAuthToken(user_signature=UserSignature(ALICE_NAME))
    assert store.find_token(token) is token
    return token


class Received:
    def __init__(self, signal):
        self.calls: list[dict] = []
        signal.connect(self.receive, weak=False)
        self.signal = signal

    def receive(self, sender, **kwargs):
        self.calls.append({"sender": sender, **kwargs})


@pytest.fixture
def received():
    connected = []

    def listen(signal):
        listener = Received(signal)
        connected.append(listener)
        return listener

    yield listen
    for listener in connected:
        listener.signal.disconnect(listener.receive)


def test_a_token_inside_the_margin_is_refreshed_once_by_the_store(
    alice, store, fake_zoho, received, django_capture_on_commit_callbacks
):
    refreshed = received(token_refreshed)

    with django_capture_on_commit_callbacks(execute=True):
        token = find_alice(store)
    find_alice(store)

    assert fake_zoho.refresh_count(alice.refresh_token) == 1
    row = ZohoToken.objects.get()
    assert token.get_access_token() == row.access_token != alice.access_token
    assert fake_zoho.is_access_token_valid(row.access_token)
    assert row.expiry_time > now_ms() + 3_000_000
    assert row.last_refreshed_at > alice.last_refreshed_at
    assert [call["token"].pk for call in refreshed.calls] == [alice.pk]


def test_the_sdk_then_needs_no_refresh_of_its_own(alice, sdk, fake_zoho):
    reset_zoho_sdk()
    sdk(OAuthToken(id=alice.token_id))

    assert org_zgid() == "10001"
    assert org_zgid() == "10001"
    assert fake_zoho.count("refresh_token") == 1


def test_an_expired_row_is_refreshed_before_the_store_hands_it_out(
    store, tokens_zoho_knows, fake_zoho, zoho_sdk_reset
):
    (ann,) = tokens_zoho_knows("ann", expired=True)

    token = store.find_token_by_id(ann.token_id)

    assert fake_zoho.refresh_count(ann.refresh_token) == 1
    row = ZohoToken.objects.get()
    assert token.get_access_token() == row.access_token != ann.access_token
    assert fake_zoho.is_access_token_valid(row.access_token)
    assert row.expiry_time > now_ms() + 3_000_000


def test_a_token_outside_the_margin_is_left_alone(alice, store, fake_zoho):
    expire(alice, in_ms=3_600_000)

    find_alice(store)

    assert fake_zoho.count("refresh_token") == 0


def test_the_margin_is_a_setting(alice, store, fake_zoho, settings):
    settings.ZOHO_TOKENS_REFRESH_MARGIN = 10

    find_alice(store)
    assert fake_zoho.count("refresh_token") == 0

    settings.ZOHO_TOKENS_REFRESH_MARGIN = 45
    find_alice(store)
    assert fake_zoho.count("refresh_token") == 1


def test_coordinated_refresh_can_be_switched_off(alice, store, fake_zoho, settings):
    settings.ZOHO_TOKENS_REFRESH = False

    token = find_alice(store)

    assert fake_zoho.count("refresh_token") == 0
    assert token.get_access_token() == alice.access_token


def test_a_rejected_refresh_token_marks_the_row_for_re_authorisation(
    alice, store, fake_zoho, received, django_capture_on_commit_callbacks, caplog
):
    needed = received(reauthorization_needed)
    fake_zoho.inject_error("refresh_token", "invalid_code")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SDKException) as caught:
        find_alice(store)

    assert "needs re-authorisation" in str(caught.value)
    assert "invalid_code" in str(caught.value)
    row = ZohoToken.objects.get()
    assert row.needs_reauthorization_at is not None
    assert row.refresh_error == "invalid_code"
    assert row.refresh_token == alice.refresh_token
    assert row.access_token == alice.access_token
    assert [(call["token"].pk, call["error"]) for call in needed.calls] == [(alice.pk, "invalid_code")]
    assert any("authorise again" in r.getMessage() for r in caplog.records)
    # Every later lookup fails fast, without asking Zoho again.
    with pytest.raises(SDKException, match="needs re-authorisation"):
        store.find_token_by_id(alice.token_id)
    assert fake_zoho.count("refresh_token") == 1


def test_a_new_consent_clears_the_re_authorisation_mark(alice, sdk, store, fake_zoho):
    fake_zoho.inject_error("refresh_token", "invalid_code")
    with pytest.raises(SDKException):
        find_alice(store)
    reset_zoho_sdk()

    token = OAuthToken(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant_token=fake_zoho.issue_grant_token(*ALICE),
        redirect_url=REDIRECT_URL,
        user_signature=UserSignature(ALICE_NAME),
    )
    sdk(token)

    row = ZohoToken.objects.get()
    assert row.pk == alice.pk
    assert row.needs_reauthorization_at is None
    assert row.refresh_error == ""
    assert row.refresh_token != alice.refresh_token
    assert org_zgid() == "10001"


def test_a_rate_limit_backs_off_every_worker(alice, store, fake_zoho, caplog, settings):
    fake_zoho.inject_rate_limit("refresh_token")
    settings.ZOHO_TOKENS_RATE_LIMIT_BACKOFF = 120
    before = timezone.now()

    with caplog.at_level(logging.WARNING, logger="zoho_tokens"):
        token = find_alice(store)
    find_alice(store)

    assert token.get_access_token() == alice.access_token  # still valid for 30 s
    assert fake_zoho.count("refresh_token") == 1
    row = ZohoToken.objects.get()
    assert row.refresh_error == "rate_limited"
    # At least the rate-limit back-off, longer than the first back-off after a failure.
    assert row.refresh_retry_at >= before + timedelta(seconds=120)
    assert any("rate_limited" in r.getMessage() and "backs off" in r.getMessage() for r in caplog.records)


def test_an_expired_token_during_the_back_off_is_a_clear_error(alice, store, fake_zoho):
    fake_zoho.inject_rate_limit("refresh_token")
    find_alice(store)
    expire(alice)

    with pytest.raises(
        SDKException, match=r"Zoho could not refresh it \(rate_limited\); the store retries after"
    ):
        find_alice(store)
    assert fake_zoho.count("refresh_token") == 1


def test_the_back_off_lengths_are_settings(alice, store, fake_zoho, settings):
    settings.ZOHO_TOKENS_RATE_LIMIT_BACKOFF = 0
    settings.ZOHO_TOKENS_REFRESH_BACKOFF = 0
    fake_zoho.inject_rate_limit("refresh_token")

    find_alice(store)
    find_alice(store)

    assert fake_zoho.count("refresh_token") == 2
    row = ZohoToken.objects.get()
    assert (row.refresh_error, row.refresh_failures, row.refresh_retry_at) == ("", 0, None)


@pytest.mark.parametrize("failure", ["drop", "timeout", "http_503"])
def test_a_network_failure_backs_off_and_keeps_the_token(alice, store, fake_zoho, settings, caplog, failure):
    if failure == "drop":
        fake_zoho.inject_error("refresh_token", DROP)
    elif failure == "timeout":
        settings.ZOHO_TOKENS_REFRESH_TIMEOUT = 0.2
        fake_zoho.set_delay(1.0, "refresh_token")
    else:
        fake_zoho.inject_error("refresh_token", "server_error", status=503)
    before = raw_row(alice.pk)
    started = timezone.now()

    with caplog.at_level(logging.WARNING, logger="zoho_tokens"):
        token = find_alice(store)
        find_alice(store)  # backing off: Zoho is not asked again

    assert token.get_access_token() == alice.access_token
    assert fake_zoho.count("refresh_token") == 1
    after = raw_row(alice.pk)
    for name in ("access_token", "refresh_token", "expiry_time", "client_secret", "needs_reauthorization_at"):
        assert after[name] == before[name]
    row = ZohoToken.objects.get(pk=alice.pk)
    assert row.refresh_failures == 1
    assert row.refresh_retry_at >= started + timedelta(seconds=30)
    assert (row.refresh_claimed_by, row.refresh_claimed_until) == ("", None)
    assert any("Could not refresh token" in r.getMessage() for r in caplog.records)
    assert all(alice.refresh_token not in r.getMessage() for r in caplog.records)


def test_another_error_answer_is_logged_and_changes_no_token(alice, store, fake_zoho, caplog):
    fake_zoho.inject_error("refresh_token", "invalid_client")

    with caplog.at_level(logging.ERROR, logger="zoho_tokens"):
        token = find_alice(store)

    assert token.get_access_token() == alice.access_token
    row = ZohoToken.objects.get()
    assert (row.access_token, row.refresh_error, row.needs_reauthorization_at) == (
        alice.access_token,
        "invalid_client",
        None,
    )
    assert any("invalid_client" in r.getMessage() for r in caplog.records)


def test_a_grant_token_login_is_not_blocked_by_a_rejected_row(alice, sdk, store, fake_zoho):
    fake_zoho.inject_error("refresh_token", "invalid_code")
    with pytest.raises(SDKException):
        find_alice(store)
    reset_zoho_sdk()

    sdk(grant_token_login(fake_zoho.issue_grant_token(*ALICE)))

    assert ZohoToken.objects.get().needs_reauthorization_at is None
    assert fake_zoho.count("authorization_code") == 2


def test_the_token_endpoint_follows_the_rows_data_centre(token_factory, zoho_sdk_reset):
    eu = token_factory(api_domain="https://www.zohoapis.eu")
    uk = token_factory(api_domain="https://www.zohoapis.uk")
    unknown = token_factory(api_domain="https://crm.example.test")

    assert token_endpoint(eu.api_domain) == "https://accounts.zoho.eu/oauth/v2/token"
    assert token_endpoint(uk.api_domain) == "https://accounts.zoho.uk/oauth/v2/token"
    assert token_endpoint(unknown.api_domain) is None


def test_the_sdk_environment_of_the_thread_is_never_the_token_endpoint(token_factory, sdk, fake_zoho):
    """The thread's SDK environment belongs to whichever user it served last: a token
    of an unknown API domain is not refreshed there (it was, before the data centres
    were a table of their own)."""
    log_in(sdk, fake_zoho, ALICE)  # this thread's SDK environment: the fake Zoho
    unknown = token_factory(api_domain="https://crm.example.test")

    assert token_endpoint(unknown.api_domain) is None


def test_the_token_endpoint_setting_is_the_last_resort(token_factory, zoho_sdk_reset, settings):
    settings.ZOHO_TOKENS_TOKEN_URL = "http://127.0.0.1:9/oauth/v2/token"
    eu = token_factory(api_domain="https://www.zohoapis.eu")
    unknown = token_factory(api_domain="https://crm.example.test")

    assert token_endpoint(eu.api_domain) == "https://accounts.zoho.eu/oauth/v2/token"
    assert token_endpoint(unknown.api_domain) == "http://127.0.0.1:9/oauth/v2/token"
    assert token_endpoint(None) == "http://127.0.0.1:9/oauth/v2/token"


def test_a_mapped_api_domain_is_refreshed_at_its_accounts_server(store, token_factory, fake_zoho, settings):
    """A test server's domain, mapped by ZOHO_TOKENS_ACCOUNTS_SERVERS, and no SDK initialised."""
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {"https://crm.example.test": fake_zoho.base_url}
    row = token_factory(
        expiring=True,
        api_domain="https://crm.example.test",
        refresh_token=fake_zoho.issue_refresh_token(*ALICE),
    )

    token = store.find_token_by_id(row.token_id)

    assert fake_zoho.refresh_count(row.refresh_token) == 1
    assert token.get_access_token() != row.access_token
    assert fake_zoho.is_access_token_valid(token.get_access_token())


def test_without_a_token_endpoint_the_store_does_not_refresh(token_factory, store, zoho_sdk_reset):
    row = token_factory(expiring=True, api_domain="https://crm.example.test")

    token = store.find_token_by_id(row.token_id)

    assert token.get_access_token() == row.access_token


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"access_token": "1000.new.a", "api_domain": "https://www.zohoapis.com"},
            "expires_in missing or invalid",
        ),
        ({"access_token": None, "expires_in": 3600}, "access_token is not a token"),
        ({"access_token": "", "expires_in": 3600}, "access_token is not a token"),
        ({"access_token": "1000.new.a", "expires_in": "soon"}, "expires_in missing or invalid"),
        ({"access_token": "1000.new.a", "expires_in": -5}, "expires_in missing or invalid"),
        ({"access_token": "1000.new.a", "expires_in": 10**12}, "expires_in missing or invalid"),
        ({"access_token": "1000.new.a", "expires_in": 3600, "api_domain": 7}, "api_domain is not a URL"),
    ],
)
def test_a_malformed_refresh_answer_is_a_failed_refresh_and_stores_nothing(
    alice, store, fake_zoho, body, reason
):
    fake_zoho.inject_error("refresh_token", body=body)
    before = raw_row(alice.pk)

    token = find_alice(store)  # still valid for 30 s: the current token serves
    expire(alice)
    with pytest.raises(SDKException, match=f"Zoho could not refresh it \\(malformed answer: {reason}\\)"):
        find_alice(store)

    assert token.get_access_token() == alice.access_token
    after = raw_row(alice.pk)  # ciphertext as stored: unchanged
    for name in ("access_token", "access_token_digest", "refresh_token", "api_domain"):
        assert after[name] == before[name]
    assert after["refresh_error"] == f"malformed answer: {reason}"
    assert fake_zoho.count("refresh_token") == 1
