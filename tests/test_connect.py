"""Connecting Zoho through the app's views: the consent redirect, and every way the callback
can end. The fake Zoho plays two data centres; a refused callback stores nothing."""

import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.urls import reverse

from tests.helpers.oauth import RecordingServer, consent, with_params
from zoho_tokens.models import ZohoToken
from zoho_tokens.oauth import SESSION_KEY
from zoho_tokens.signals import zoho_connected, zoho_reconnected
from zoho_tokens.testing import DROP

CONNECT = reverse("zoho_tokens:connect")

pytestmark = pytest.mark.django_db


@pytest.fixture
def signals():
    """Every zoho_connected and zoho_reconnected sent during the test, as (name, kwargs).
    They are sent on commit: run the request in ``django_capture_on_commit_callbacks``."""
    sent = []

    def receiver(signal, **kwargs):
        kwargs.pop("sender")
        sent.append(("reconnected" if signal is zoho_reconnected else "connected", kwargs))

    zoho_connected.connect(receiver, weak=False)
    zoho_reconnected.connect(receiver, weak=False)
    yield sent
    zoho_connected.disconnect(receiver)
    zoho_reconnected.disconnect(receiver)


def page_text(response):
    return response.content.decode()


def assert_refused(response, status, title, zoho):
    """A refusal page with ``title``, saying nothing was connected and offering a retry."""
    html = page_text(response)
    assert response.status_code == status
    assert f"<h1>{title}</h1>" in html
    assert "Nothing was connected." in html
    assert f'href="{CONNECT}' in html
    assert not ZohoToken.objects.exists()


# --- the way to Zoho -------------------------------------------------------------------------


def test_connect_sends_a_signed_in_user_to_zohos_consent_page(client, alice, zoho_for_connect, settings):
    settings.ZOHO_TOKENS_SCOPES = ["ZohoCRM.modules.ALL", "ZohoCRM.users.READ", "ZohoCRM.org.READ"]

    response = client.get(CONNECT)

    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == zoho_for_connect.authorization_url
    query = dict(parse_qsl(target.query))
    state = query.pop("state")
    assert query == {
        "scope": "ZohoCRM.modules.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ",
        "client_id": "1000.TESTCLIENT",
        "response_type": "code",
        "access_type": "offline",
        "prompt": "consent",
        "redirect_uri": "http://testserver/zoho/callback/",
    }
    assert len(state) >= 40
    assert [entry["state"] for entry in client.session[SESSION_KEY]["pending"]] == [state]
    assert response["Cache-Control"].startswith("max-age=0")


def test_each_connect_gets_its_own_state(client, alice, zoho_for_connect):
    first = dict(parse_qsl(urlsplit(client.get(CONNECT)["Location"]).query))["state"]
    second = dict(parse_qsl(urlsplit(client.get(CONNECT)["Location"]).query))["state"]

    assert first != second


def test_the_redirect_url_setting_replaces_the_one_built_from_the_request(
    client, alice, zoho_for_connect, settings
):
    settings.ZOHO_TOKENS_REDIRECT_URL = "https://crm.example.com/zoho/callback/"

    query = dict(parse_qsl(urlsplit(client.get(CONNECT)["Location"]).query))

    assert query["redirect_uri"] == "https://crm.example.com/zoho/callback/"


def test_signing_in_comes_first(client, zoho_for_connect):
    response = client.get(CONNECT)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={CONNECT}"


# --- connected ---------------------------------------------------------------------------------


def test_approving_stores_the_token_for_the_user(
    client, alice, zoho_for_connect, signals, django_capture_on_commit_callbacks
):
    callback = consent(client)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == "/"
    row = ZohoToken.objects.get()
    assert row.owner == alice
    assert row.user_name == "alice@example.com:10001"
    assert row.api_domain == zoho_for_connect.url_of("us")
    assert row.client_id == "1000.TESTCLIENT"
    assert row.client_secret == "test-client-secret"
    assert row.redirect_url == "http://testserver/zoho/callback/"
    assert row.grant_token is None  # exchanged, and good once anyway
    assert zoho_for_connect.is_access_token_valid(row.access_token)
    assert row.expiry_time > (time.time() + 3500) * 1000
    assert zoho_for_connect.count("authorization_code", "us") == 1
    (exchange,) = zoho_for_connect.received("authorization_code")
    assert exchange["redirect_uri"] == "http://testserver/zoho/callback/"
    assert exchange["client_secret"] == "test-client-secret"
    assert signals == [("connected", {"token": row, "user": alice})]


def test_the_user_lands_where_the_connect_link_said_with_a_message(client, alice, zoho_for_connect, settings):
    settings.MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
    callback = consent(client, next_url="/reports/?month=11")

    response = client.get(callback, follow=False)

    assert response["Location"] == "/reports/?month=11"
    stored = [str(message) for message in response.wsgi_request._messages]
    assert stored == ["Connected Zoho CRM as alice@example.com (org 10001)."]


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_a_next_url_off_this_site_is_ignored(client, alice, zoho_for_connect, next_url):
    callback = consent(client, next_url=next_url)

    assert client.get(callback)["Location"] == "/"


def test_a_user_in_another_data_centre_is_stored_with_its_api_domain(client, alice, zoho_for_connect):
    callback = consent(client, email="ann@example.eu", zgid="30003", data_centre="eu")

    response = client.get(callback)

    assert response.status_code == 302
    row = ZohoToken.objects.get()
    assert row.user_name == "ann@example.eu:30003"
    assert row.api_domain == zoho_for_connect.url_of("eu")
    assert zoho_for_connect.count("authorization_code", "eu") == 1
    assert zoho_for_connect.count("authorization_code", "us") == 0
    assert zoho_for_connect.count("users", "eu") == 1


# --- the state ---------------------------------------------------------------------------------


def test_a_callback_without_state_is_refused(client, alice, zoho_for_connect):
    callback = consent(client)

    response = client.get(with_params(callback, state=None))

    assert_refused(response, 400, "This Zoho sign-in cannot be checked", zoho_for_connect)
    assert zoho_for_connect.count("authorization_code") == 0


def test_a_callback_with_a_state_this_session_never_issued_is_refused(client, alice, zoho_for_connect):
    callback = consent(client)

    response = client.get(with_params(callback, state="forged-" + "x" * 40))

    assert_refused(response, 400, "This Zoho sign-in did not start here", zoho_for_connect)
    assert zoho_for_connect.count("authorization_code") == 0


def test_a_state_from_another_session_is_refused(client, alice, zoho_for_connect, django_user_model):
    callback = consent(client)
    client.logout()
    client.force_login(alice)  # a new session for the same user

    response = client.get(callback)

    assert_refused(response, 400, "This Zoho sign-in did not start here", zoho_for_connect)


def test_a_reused_state_is_refused_and_changes_nothing(client, alice, zoho_for_connect):
    callback = consent(client)
    assert client.get(callback).status_code == 302
    row = ZohoToken.objects.get()

    response = client.get(callback)

    assert response.status_code == 400
    assert "<h1>This Zoho sign-in link was already used</h1>" in page_text(response)
    assert zoho_for_connect.count("authorization_code") == 1
    assert list(ZohoToken.objects.all()) == [row]
    assert ZohoToken.objects.get().refresh_token == row.refresh_token


def test_an_expired_state_is_refused(client, alice, zoho_for_connect, settings):
    settings.ZOHO_TOKENS_CONNECT_STATE_TTL = 600
    callback = consent(client)
    session = client.session
    saved = session[SESSION_KEY]
    saved["pending"][0]["created"] -= 601
    session[SESSION_KEY] = saved
    session.save()

    response = client.get(callback)

    assert_refused(response, 400, "This Zoho sign-in took too long", zoho_for_connect)
    assert zoho_for_connect.count("authorization_code") == 0


# --- Zoho's answers ----------------------------------------------------------------------------


def test_declining_in_zoho_connects_nothing(client, alice, zoho_for_connect):
    callback = consent(client, decision="deny")

    response = client.get(callback)

    assert_refused(response, 200, "You declined access in Zoho", zoho_for_connect)
    assert "You can connect Zoho CRM whenever you are ready." in page_text(response)
    assert zoho_for_connect.count("authorization_code") == 0


def test_a_reused_code_is_refused_by_zoho(client, alice, zoho_for_connect):
    first = consent(client)
    client.get(first)
    row = ZohoToken.objects.get()
    fresh_state = dict(parse_qsl(consent(client).partition("?")[2]))["state"]

    response = client.get(with_params(first, state=fresh_state))

    assert response.status_code == 400
    html = page_text(response)
    assert "<h1>Zoho did not accept the sign-in code</h1>" in html
    assert "Zoho answered invalid_code: the code was already used" in html
    assert zoho_for_connect.count("authorization_code") == 2
    assert ZohoToken.objects.get().refresh_token == row.refresh_token


def test_a_code_too_old_is_refused_by_zoho(client, alice, zoho_for_connect):
    callback = consent(client)
    zoho_for_connect.expire_grant_tokens()

    response = client.get(callback)

    assert_refused(response, 400, "Zoho did not accept the sign-in code", zoho_for_connect)
    assert zoho_for_connect.count("authorization_code") == 1


def test_a_code_for_another_data_centre_is_refused_there(client, alice, zoho_for_connect):
    # Issued in the EU, sent back naming the US accounts server: only the EU honours it.
    callback = consent(client, data_centre="eu")

    response = client.get(with_params(callback, location="us", accounts_server=zoho_for_connect.url_of("us")))

    assert_refused(response, 400, "Zoho did not accept the sign-in code", zoho_for_connect)
    assert zoho_for_connect.count("authorization_code", "us") == 1
    assert zoho_for_connect.count("authorization_code", "eu") == 0


def test_a_location_that_contradicts_zohos_accounts_server_is_refused(client, alice, zoho_for_connect):
    callback = consent(client)

    response = client.get(with_params(callback, location="eu", accounts_server="https://accounts.zoho.com"))

    assert_refused(response, 400, "Zoho sent you back naming an unknown server", zoho_for_connect)
    assert "location &#x27;eu&#x27; is not the data centre of https://accounts.zoho.com" in page_text(
        response
    )
    assert zoho_for_connect.count("authorization_code") == 0


@pytest.mark.parametrize(
    "named",
    [
        "{recorder}",
        "{recorder}/oauth/v2/token",
        "https://accounts.zoho.com@{recorder_host}",
        "http://accounts.zoho.com",  # Zoho's host, but in clear
        "https://accounts.zoho.com.evil.example",
    ],
)
def test_an_untrusted_accounts_server_receives_nothing(client, alice, zoho_for_connect, named):
    with RecordingServer() as recorder:
        callback = consent(client)
        named = named.format(recorder=recorder.url, recorder_host=recorder.url.removeprefix("http://"))

        response = client.get(with_params(callback, accounts_server=named, location=None))

        assert_refused(response, 400, "Zoho sent you back naming an unknown server", zoho_for_connect)
        assert "so your sign-in code was not sent anywhere" in page_text(response)
        assert recorder.requests == []
    assert zoho_for_connect.count("authorization_code") == 0


def test_zoho_unreachable_at_the_exchange(client, alice, zoho_for_connect):
    callback = consent(client)
    zoho_for_connect.inject_error("authorization_code", DROP)

    response = client.get(callback)

    assert_refused(response, 502, "Zoho could not be reached", zoho_for_connect)
    assert "127.0.0.1: RemoteDisconnected" in page_text(response)


def test_zoho_crm_unreachable_after_the_exchange_revokes_the_new_token(client, alice, zoho_for_connect):
    callback = consent(client)
    zoho_for_connect.inject_error("org", DROP)

    response = client.get(callback)

    assert_refused(response, 502, "Zoho could not be reached", zoho_for_connect)
    (issued,) = [call for call in zoho_for_connect.received("users")]
    assert zoho_for_connect.count("revoke") == 1
    assert len(zoho_for_connect.revoked_tokens) == 1
    assert not zoho_for_connect.is_access_token_valid(
        issued["Authorization"].removeprefix("Zoho-oauthtoken ")
    )


def test_zoho_crm_that_does_not_name_the_user(client, alice, zoho_for_connect):
    callback = consent(client)
    zoho_for_connect.inject_error("users", "OAUTH_SCOPE_MISMATCH", status=401)

    response = client.get(callback)

    assert_refused(response, 502, "Zoho did not say who you are", zoho_for_connect)
    assert "(OAUTH_SCOPE_MISMATCH)" in page_text(response)
    assert zoho_for_connect.count("revoke") == 1


# --- reconnecting ------------------------------------------------------------------------------


def test_reconnecting_updates_the_row_and_revokes_the_replaced_refresh_token(
    client, alice, zoho_for_connect, signals, django_capture_on_commit_callbacks
):
    client.get(consent(client))
    before = ZohoToken.objects.get()
    ZohoToken.objects.filter(pk=before.pk).update(
        needs_reauthorization_at=before.created_at, refresh_error="invalid_code"
    )

    callback = consent(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(callback)

    assert response.status_code == 302
    after = ZohoToken.objects.get()
    assert (after.pk, after.token_id, after.owner) == (before.pk, before.token_id, alice)
    assert after.refresh_token != before.refresh_token
    assert after.needs_reauthorization_at is None and after.refresh_error == ""
    assert zoho_for_connect.revoked_tokens == (before.refresh_token,)
    assert zoho_for_connect.count("revoke", "us") == 1
    assert signals[-1] == ("reconnected", {"token": after, "user": alice, "replaced_revoked": True})


def test_reconnecting_a_revoked_row_brings_it_back(client, alice, zoho_for_connect):
    client.get(consent(client))
    before = ZohoToken.objects.get()
    ZohoToken.objects.filter(pk=before.pk).update(revoked_at=before.created_at)

    client.get(consent(client))

    after = ZohoToken.objects.get()
    assert after.revoked_at is None
    assert after.refresh_token != before.refresh_token
    assert zoho_for_connect.revoked_tokens == (before.refresh_token,)


def test_a_row_without_owner_is_adopted(client, alice, zoho_for_connect, token_factory):
    unowned = token_factory(
        user_name="alice@example.com:10001",
        refresh_token=zoho_for_connect.issue_refresh_token("alice@example.com", "10001"),
        api_domain=zoho_for_connect.url_of("us"),
    )

    client.get(consent(client))

    row = ZohoToken.objects.get()
    assert (row.pk, row.owner) == (unowned.pk, alice)
    assert zoho_for_connect.revoked_tokens == (unowned.refresh_token,)


def test_a_zoho_account_another_user_connected_is_not_taken_over(
    client, alice, zoho_for_connect, token_factory, user_factory
):
    bob = user_factory(username="bob")
    bobs = token_factory(
        user_name="alice@example.com:10001",
        owner=bob,
        refresh_token=zoho_for_connect.issue_refresh_token("alice@example.com", "10001"),
        api_domain=zoho_for_connect.url_of("us"),
    )

    response = client.get(consent(client))

    assert response.status_code == 400
    assert "<h1>This Zoho account is connected by another user</h1>" in page_text(response)
    row = ZohoToken.objects.get()
    assert (row.owner, row.refresh_token) == (bob, bobs.refresh_token)
    # The refresh token Zoho just issued is revoked; bob's is not.
    (revoked,) = zoho_for_connect.revoked_tokens
    assert revoked != bobs.refresh_token


def test_zoho_unreachable_when_revoking_the_replaced_token_still_connects(
    client, alice, zoho_for_connect, signals, django_capture_on_commit_callbacks
):
    client.get(consent(client))
    before = ZohoToken.objects.get()
    callback = consent(client)
    zoho_for_connect.inject_error("revoke", DROP)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(callback)

    assert response.status_code == 302
    assert ZohoToken.objects.get().refresh_token != before.refresh_token
    assert signals[-1][1]["replaced_revoked"] is False


# --- where the user sees it ----------------------------------------------------------------------


def test_the_connection_tag_offers_a_reconnect_link_for_a_flagged_row(rf, alice, token_factory):
    from django.template import Context, Template

    token_factory(user_name="alice@example.com:10001", owner=alice, needs_reauthorization=True)
    request = rf.get("/reports/")
    request.user = alice

    html = Template("{% load zoho_tokens %}{% zoho_connection %}").render(Context({"request": request}))

    assert "Zoho asks alice@example.com to sign in again." in html
    assert f'<a href="{CONNECT}?next=%2Freports%2F">Reconnect Zoho CRM</a>' in html


def test_the_connection_tag_names_an_active_connection(rf, alice, token_factory):
    from django.template import Context, Template

    token_factory(user_name="alice@example.com:10001", owner=alice)
    request = rf.get("/")
    request.user = alice

    html = Template("{% load zoho_tokens %}{% zoho_connection %}").render(Context({"request": request}))

    assert "Connected as alice@example.com (org 10001)" in html
    assert "Reconnect" not in html
