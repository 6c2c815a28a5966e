"""The real Zoho SDK drives DjangoTokenStore against the fake Zoho over HTTP."""

import threading

import pytest
from django.db import connection
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import ALICE, BOB, expire, grant_token_login, log_in, now_ms, org_zgid
from zoho_tokens.models import ZohoToken
from zoho_tokens.testing.pytest_plugin import reset_zoho_sdk


def test_first_login_with_a_grant_token_stores_one_row(db, sdk, fake_zoho):
    token = log_in(sdk, fake_zoho)

    assert org_zgid() == "10001"
    row = ZohoToken.objects.get()
    assert row.user_name == "alice@example.com:10001"
    assert token.get_id() == row.token_id
    assert row.access_token == token.get_access_token()
    assert row.refresh_token == token.get_refresh_token()
    assert row.client_secret == "test-client-secret"
    assert int(row.expiry_time) > now_ms()
    assert row.last_refreshed_at is not None
    assert fake_zoho.count("authorization_code") == 1
    assert fake_zoho.count("refresh_token") == 0


def test_a_new_process_with_only_the_user_signature_makes_no_token_request(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho)
    reset_zoho_sdk()  # what a fresh process sees: no SDK state, only the database

    sdk(OAuthToken(user_signature=UserSignature("alice@example.com:10001")))

    assert org_zgid() == "10001"
    assert fake_zoho.count("authorization_code") == 1
    assert fake_zoho.count("refresh_token") == 0
    assert ZohoToken.objects.count() == 1


def test_the_same_grant_token_again_finds_the_row_without_http(db, sdk, fake_zoho):
    code = fake_zoho.issue_grant_token(*ALICE)
    sdk(grant_token_login(code))
    calls_before = {name: fake_zoho.count(name) for name in ("authorization_code", "users", "org")}
    reset_zoho_sdk()

    sdk(grant_token_login(code))

    assert {name: fake_zoho.count(name) for name in calls_before} == calls_before
    assert ZohoToken.objects.count() == 1


def test_an_expired_access_token_is_refreshed_once_and_the_row_updated(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho)
    row = ZohoToken.objects.get()
    old_access_token = row.access_token
    expire(row)
    reset_zoho_sdk()

    sdk(OAuthToken(user_signature=UserSignature("alice@example.com:10001")))
    org_zgid()
    org_zgid()

    assert fake_zoho.refresh_count(row.refresh_token) == 1
    assert fake_zoho.count("refresh_token") == 1
    row.refresh_from_db()
    assert ZohoToken.objects.count() == 1
    assert row.access_token != old_access_token
    assert fake_zoho.is_access_token_valid(row.access_token)
    assert int(row.expiry_time) > now_ms()
    # The old access token's digest no longer finds anything; the new one does.
    assert not ZohoToken.objects.filter(access_token=old_access_token).exists()
    assert ZohoToken.objects.get(access_token=row.access_token).pk == row.pk


def test_an_id_based_token_is_read_by_id(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho, BOB)
    log_in(sdk, fake_zoho, ALICE)
    bob = ZohoToken.objects.get(user_name="bob@example.com:20002")
    reset_zoho_sdk()

    token = sdk(OAuthToken(id=bob.token_id))

    assert org_zgid() == "20002"
    assert token.get_refresh_token() == bob.refresh_token
    assert fake_zoho.count("refresh_token") == 0


def test_an_unknown_id_is_a_clear_error_and_no_http_call(db, sdk, fake_zoho):
    with pytest.raises(SDKException) as caught:
        sdk(OAuthToken(id="no-such-id"))

    assert caught.value.code == "TOKEN_STORE"
    assert "Given Id is invalid" in str(caught.value)
    assert fake_zoho.count("authorization_code") == 0


@pytest.mark.django_db(transaction=True)
def test_several_users_switch_in_threads(sdk, fake_zoho):
    users = [(f"user{n}@example.com", f"3000{n}") for n in range(4)]
    for user in users:
        log_in(sdk, fake_zoho, user)
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(email: str, zgid: str) -> None:
        try:
            for _ in range(3):
                Initializer.switch_user(token=OAuthToken(user_signature=UserSignature(f"{email}:{zgid}")))
                results[email] = org_zgid()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=user) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert results == {email: zgid for email, zgid in users}
    assert ZohoToken.objects.count() == 4
    assert fake_zoho.count("refresh_token") == 0


def test_revoke_sends_that_rows_refresh_token(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho, ALICE)
    log_in(sdk, fake_zoho, BOB)
    alice = ZohoToken.objects.get(user_name="alice@example.com:10001")
    bob = ZohoToken.objects.get(user_name="bob@example.com:20002")

    assert OAuthToken(id=bob.token_id).revoke(bob.token_id) is True

    assert fake_zoho.revoked_tokens == (bob.refresh_token,)
    assert alice.refresh_token not in fake_zoho.revoked_tokens


def test_remove_deletes_the_row(db, sdk, fake_zoho):
    token = log_in(sdk, fake_zoho)

    assert token.remove() is True
    assert ZohoToken.objects.count() == 0
    assert OAuthToken(id="no-such-id").remove() is False


def test_an_unknown_user_gets_the_sdks_clear_error(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho, ALICE)
    reset_zoho_sdk()

    with pytest.raises(SDKException) as caught:
        sdk(OAuthToken(user_signature=UserSignature("nobody@example.com:1")))

    assert "Given user_name token details not found" in str(caught.value)
    assert fake_zoho.count("authorization_code") == 1


def test_an_email_only_signature_finds_the_users_row(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho, ALICE)
    reset_zoho_sdk()

    sdk(OAuthToken(user_signature=UserSignature("alice@example.com")))

    assert org_zgid() == "10001"
    assert fake_zoho.count("refresh_token") == 0


def test_an_email_with_rows_in_two_orgs_is_refused_by_name(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho, ALICE)
    log_in(sdk, fake_zoho, ("alice@example.com", "99999"))
    reset_zoho_sdk()

    with pytest.raises(SDKException) as caught:
        sdk(OAuthToken(user_signature=UserSignature("alice@example.com")))

    assert "2 Zoho organisations" in str(caught.value)
    assert "alice@example.com:10001" in str(caught.value)
    assert "alice@example.com:99999" in str(caught.value)
