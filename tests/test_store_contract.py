"""DjangoTokenStore against the contract, one method at a time (SDK_CONTRACT.md, points 1-12)."""

import logging

import pytest
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import now_ms, raw_row
from zoho_tokens import services
from zoho_tokens.models import ZohoToken

pytestmark = pytest.mark.django_db


def by_name(name: str) -> OAuthToken:
    return OAuthToken(user_signature=UserSignature(name))


def new_token(name: str | None = "carol@example.com:3", **values: str) -> OAuthToken:
    token = OAuthToken(
        client_id=values.pop("client_id", "1000.CLIENT"),
        client_secret=values.pop("client_secret", "s3cret"),
        refresh_token=values.pop("refresh_token", "1000.carol.r"),
        user_signature=UserSignature(name) if name else None,
        **values,
    )
    return token


# --- find_token ------------------------------------------------------------------


def test_find_token_returns_a_non_token_unchanged(store):
    marker = object()
    assert store.find_token(marker) is marker


def test_find_token_fills_the_argument_in_place_and_returns_it(store, token_factory):
    row = token_factory(user_name="dave@example.com:4")
    token = by_name("dave@example.com:4")

    found = store.find_token(token)

    assert found is token
    assert token.get_id() == row.token_id
    assert token.get_refresh_token() == row.refresh_token
    assert token.get_access_token() == row.access_token
    assert token.get_client_secret() == row.client_secret
    assert token.get_expires_in() == str(row.expiry_time)
    assert token.get_api_domain() == "https://www.zohoapis.com"
    assert token.get_redirect_url() == row.redirect_url


def test_find_token_fills_only_empty_fields(store, token_factory):
    token_factory(user_name="erin@example.com:5", client_id="1000.STORED")
    token = OAuthToken(user_signature=UserSignature("erin@example.com:5"), client_id="1000.MINE")
    token.set_api_domain("https://www.zohoapis.eu")

    store.find_token(token)

    assert token.get_client_id() == "1000.MINE"
    assert token.get_api_domain() == "https://www.zohoapis.eu"


def test_the_user_name_decides_without_falling_through(store, token_factory):
    row = token_factory(user_name="frank@example.com:6")
    token = OAuthToken(user_signature=UserSignature("nobody@example.com:6"), refresh_token=row.refresh_token)
    token.set_client_id("1000.CLIENT")

    assert store.find_token(token) is None


def test_an_access_token_alone_is_found(store, token_factory):
    row = token_factory()

    token = OAuthToken(access_token=row.access_token)
    assert store.find_token(token) is token
    assert token.get_id() == row.token_id


def test_grant_token_first_then_refresh_token(store, token_factory):
    by_grant = token_factory(grant_token="1000.g1.g")
    by_refresh = token_factory()

    token = OAuthToken(
        client_id="1000.C", client_secret="s", grant_token="1000.g1.g", refresh_token=by_refresh.refresh_token
    )
    store.find_token(token)
    assert token.get_id() == by_grant.token_id

    token = OAuthToken(
        client_id="1000.C",
        client_secret="s",
        grant_token="1000.unknown.g",
        refresh_token=by_refresh.refresh_token,
    )
    store.find_token(token)
    assert token.get_id() == by_refresh.token_id


def test_a_row_with_only_a_grant_token_is_found_by_it(store, token_factory):
    row = token_factory(grant_only=True)
    token = OAuthToken(client_id="1000.C", client_secret="s", grant_token=row.grant_token)

    assert store.find_token(token) is token
    assert token.get_id() == row.token_id
    assert (token.get_refresh_token(), token.get_access_token(), token.get_expires_in()) == (None, None, None)


def test_an_id_only_token_matches_its_own_row(store, token_factory):
    token_factory()
    target = token_factory()
    token_factory()

    token = OAuthToken(id=target.token_id)
    assert store.find_token(token) is token
    assert token.get_refresh_token() == target.refresh_token


def test_no_match_returns_none_and_leaves_the_token_alone(store, token_factory):
    token_factory()
    token = by_name("ghost@example.com:0")

    assert store.find_token(token) is None
    assert token.get_id() is None
    assert token.get_refresh_token() is None


def test_revoked_rows_never_match(store, token_factory):
    row = token_factory(revoked=True)

    assert store.find_token(by_name(row.user_name)) is None
    assert store.find_token(OAuthToken(id=row.token_id)) is None
    with pytest.raises(SDKException, match="Given Id is invalid"):
        store.find_token_by_id(row.token_id)
    assert store.get_tokens() == []


# --- save_token ----------------------------------------------------------------


def test_save_token_ignores_non_tokens(store):
    store.save_token("not a token")
    assert ZohoToken.objects.count() == 0


def test_save_token_inserts_with_a_generated_id_set_in_place(store):
    token = new_token(access_token="1000.carol.a")
    token.set_expires_in(str(now_ms() + 3_600_000))

    store.save_token(token)

    row = ZohoToken.objects.get()
    assert token.get_id() == row.token_id
    assert len(row.token_id) == 32
    assert row.user_name == "carol@example.com:3"
    assert row.access_token == "1000.carol.a"
    assert row.expiry_time == int(token.get_expires_in())


def test_generated_ids_never_collide(store):
    for n in range(12):
        store.save_token(new_token(f"user{n}@example.com:1", refresh_token=f"1000.r{n}.r"))

    ids = list(ZohoToken.objects.values_list("token_id", flat=True))
    assert len(set(ids)) == 12


def test_save_token_keeps_a_given_id(store):
    token = new_token(id="my-own-id")

    store.save_token(token)

    assert ZohoToken.objects.get().token_id == "my-own-id"


def test_save_token_updates_only_fields_that_are_set(store, token_factory):
    row = token_factory(user_name="hank@example.com:8")
    token = by_name("hank@example.com:8")
    token.set_access_token("1000.new.a")

    store.save_token(token)

    reread = ZohoToken.objects.get()
    assert reread.access_token == "1000.new.a"
    assert reread.refresh_token == row.refresh_token
    assert reread.client_secret == row.client_secret
    assert token.get_refresh_token() == row.refresh_token  # filled back from the row
    assert token.get_id() == row.token_id


def test_save_token_by_id_updates_that_row(store, token_factory):
    token_factory()
    row = token_factory()
    token = OAuthToken(id=row.token_id)
    token.set_access_token("1000.by-id.a")

    store.save_token(token)

    assert ZohoToken.objects.get(pk=row.pk).access_token == "1000.by-id.a"
    assert ZohoToken.objects.count() == 2


def test_an_older_expiry_never_replaces_a_newer_one(store, token_factory):
    newer = now_ms() + 7_200_000
    row = token_factory(user_name="ivy@example.com:9", access_token="1000.newer.a", expiry_time=newer)
    stale = by_name("ivy@example.com:9")
    stale.set_access_token("1000.older.a")
    stale.set_expires_in(str(newer - 3_600_000))

    store.save_token(stale)

    reread = ZohoToken.objects.get(pk=row.pk)
    assert reread.access_token == "1000.newer.a"
    assert reread.expiry_time == newer


def test_saving_nothing_for_a_known_user_or_id_is_an_error(store):
    with pytest.raises(SDKException) as caught:
        store.save_token(by_name("nobody@example.com:1"))
    assert caught.value.code == "TOKEN_STORE"
    with pytest.raises(SDKException):
        store.save_token(OAuthToken(id="unknown"))
    assert ZohoToken.objects.count() == 0


def test_a_stray_id_for_a_stored_user_is_refused_with_the_right_id(store, token_factory):
    row = token_factory(user_name="jack@example.com:1")
    token = by_name("jack@example.com:1")
    token.set_id("some-other-id")
    token.set_access_token("1000.x.a")

    with pytest.raises(SDKException, match=row.token_id):
        store.save_token(token)
    assert ZohoToken.objects.count() == 1


def test_an_email_only_name_updates_the_full_name_row(store, token_factory):
    row = token_factory(user_name="kim@example.com:11")
    token = by_name("kim@example.com")
    token.set_access_token("1000.kim.a")

    store.save_token(token)

    reread = ZohoToken.objects.get()
    assert reread.pk == row.pk
    assert reread.user_name == "kim@example.com:11"
    assert reread.access_token == "1000.kim.a"


def test_a_revoked_user_comes_back_only_with_a_new_authorisation(store, token_factory):
    row = token_factory(revoked=True, user_name="lee@example.com:12", refresh_token="1000.old.r")
    stale = by_name("lee@example.com:12")
    stale.set_access_token("1000.stale.a")

    with pytest.raises(SDKException, match="was revoked"):
        store.save_token(stale)

    fresh = new_token("lee@example.com:12", refresh_token="1000.new.r", access_token="1000.new.a")
    store.save_token(fresh)
    reread = ZohoToken.objects.get()
    assert reread.pk == row.pk
    assert reread.revoked_at is None
    assert reread.refresh_token == "1000.new.r"


def test_a_malformed_expiry_is_a_clear_error(store):
    token = new_token()
    token.set_expires_in("tomorrow")

    with pytest.raises(SDKException, match="epoch milliseconds"):
        store.save_token(token)
    assert ZohoToken.objects.count() == 0


# --- by id, delete, list -----------------------------------------------------------


def test_find_token_by_id_builds_a_complete_sdk_token(store, token_factory):
    row = token_factory()

    token = store.find_token_by_id(row.token_id)

    assert isinstance(token, OAuthToken)
    assert token.get_id() == row.token_id
    assert token.get_user_signature().get_name() == row.user_name
    assert token.get_refresh_token() == row.refresh_token
    assert token.get_expires_in() == str(row.expiry_time)
    # Built by the real constructor: the SDK's save path reads this private attribute.
    assert token._OAuthToken__find_user is True


def test_find_token_by_id_unknown_raises(store):
    with pytest.raises(SDKException) as caught:
        store.find_token_by_id("nope")
    assert caught.value.code == "TOKEN_STORE"
    assert "Given Id is invalid" in str(caught.value)


def test_delete_token_removes_only_that_row(store, token_factory):
    keep, drop = token_factory(), token_factory()

    store.delete_token(drop.token_id)

    assert list(ZohoToken.objects.all()) == [keep]
    with pytest.raises(SDKException, match="Given Id is invalid"):
        store.delete_token(drop.token_id)


def test_get_tokens_lists_complete_tokens(store, token_factory):
    rows = [token_factory() for _ in range(3)]

    tokens = store.get_tokens()

    assert [t.get_id() for t in tokens] == [r.token_id for r in rows]
    assert [t.get_access_token() for t in tokens] == [r.access_token for r in rows]


def test_delete_tokens_removes_every_row(store, token_factory):
    token_factory()
    token_factory(revoked=True)

    store.delete_tokens()

    assert ZohoToken.objects.count() == 0


def test_failures_are_logged_without_secrets(store, token_factory, caplog):
    token_factory(user_name="max@example.com:1")
    token = by_name("max@example.com:1")
    token.set_id("wrong-id")
    token.set_refresh_token("1000.very-secret.r")

    with caplog.at_level(logging.WARNING, logger="zoho_tokens.store"), pytest.raises(SDKException):
        store.save_token(token)

    assert caplog.records
    assert all("1000.very-secret.r" not in record.getMessage() for record in caplog.records)


def test_an_update_rewrites_only_what_changed(store, token_factory):
    row = token_factory(user_name="nia@example.com:1")
    before = raw_row(row.pk)
    token = by_name("nia@example.com:1")
    store.find_token(token)
    token.set_access_token("1000.fresh.a")
    token.set_expires_in(str(now_ms() + 7_200_000))

    store.save_token(token)

    after = raw_row(row.pk)
    changed = {column for column in after if after[column] != before[column]}
    assert changed == {
        "access_token",
        "access_token_digest",
        "expiry_time",
        "last_refreshed_at",
        "updated_at",
    }


def test_saving_an_unchanged_token_writes_nothing(store, token_factory):
    row = token_factory(user_name="oli@example.com:1")
    before = raw_row(row.pk)
    token = by_name("oli@example.com:1")
    store.find_token(token)

    store.save_token(token)

    assert raw_row(row.pk) == before


def test_an_older_expiry_with_an_id_never_replaces_a_newer_one(store, token_factory):
    newer = now_ms() + 7_200_000
    row = token_factory(access_token="1000.newer.a", expiry_time=newer)
    stale = store.find_token_by_id(row.token_id)
    stale.set_access_token("1000.older.a")
    stale.set_expires_in(str(newer - 1))

    store.save_token(stale)

    reread = ZohoToken.objects.get(pk=row.pk)
    assert (reread.access_token, reread.expiry_time) == ("1000.newer.a", newer)


def test_a_refreshed_token_of_a_revoked_row_is_refused(store, token_factory):
    row = token_factory()
    token = store.find_token_by_id(row.token_id)
    services.revoke(ZohoToken.objects.all(), at_zoho=False)
    token.set_access_token("1000.after-revocation.a")
    token.set_expires_in(str(now_ms() + 7_200_000))

    with pytest.raises(SDKException, match="was revoked"):
        store.save_token(token)
    assert ZohoToken.objects.get().access_token == row.access_token


def test_iter_tokens_pages_through_every_active_token(store, token_factory):
    rows = [token_factory(revoked=(n == 3)) for n in range(7)]

    tokens = list(store.iter_tokens(chunk_size=2))

    assert [t.get_id() for t in tokens] == [r.token_id for n, r in enumerate(rows) if n != 3]
    assert [t.get_client_secret() for t in tokens] == [r.client_secret for n, r in enumerate(rows) if n != 3]


def test_iter_tokens_goes_on_past_a_page_of_revoked_rows(store, token_factory):
    rows = [token_factory(revoked=(n in (2, 3))) for n in range(6)]

    tokens = list(store.iter_tokens(chunk_size=2))

    assert [t.get_id() for t in tokens] == [r.token_id for n, r in enumerate(rows) if n not in (2, 3)]
