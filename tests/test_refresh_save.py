"""The save the SDK makes after every refresh: one UPDATE when only the access token moved.

The statements are counted with Django's ``CaptureQueriesContext``, which the store's
compiled statements honour; the stored rows are read back with raw SQL. The tests run
in autocommit, as the SDK's calls usually do (a transaction test case).
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import now_ms, raw_row
from zoho_tokens import db
from zoho_tokens.models import ZohoToken

pytestmark = pytest.mark.django_db(transaction=True)


def refreshed(store, row: ZohoToken, access_token: str = "1000.refreshed.a") -> OAuthToken:
    """What the SDK saves after a refresh: the token it found, with a new access token."""
    token = store.find_token_by_id(row.token_id)
    token.set_access_token(access_token)
    token.set_expires_in(str(now_ms() + 7_200_000))
    return token


def statements(function, *args) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        function(*args)
    return [query["sql"].split()[0].upper() for query in captured.captured_queries]


def test_a_refreshed_access_token_is_saved_by_one_update_and_nothing_else(store, token_factory):
    row = token_factory()
    before = raw_row(row.pk)
    token = refreshed(store, row)

    assert statements(store.save_token, token) == ["UPDATE"]

    after = raw_row(row.pk)
    assert {column for column in after if after[column] != before[column]} == {
        "access_token",
        "access_token_digest",
        "expiry_time",
        "last_refreshed_at",
        "updated_at",
    }
    assert ZohoToken.objects.get(access_token="1000.refreshed.a").pk == row.pk


@pytest.mark.parametrize(
    ("attribute", "new_value"),
    [
        ("client_secret", "a-rotated-client-secret"),
        ("refresh_token", "1000.consented-again.r"),
        ("grant_token", "1000.new-grant.g"),
        ("client_id", "1000.testclient"),  # case only: MySQL's collations would call it equal
        ("redirect_url", "https://app.example.com/Zoho/Callback"),
        ("api_domain", "https://www.zohoapis.eu"),
    ],
)
def test_any_other_changed_value_takes_the_full_save(store, token_factory, attribute, new_value):
    row = token_factory()
    token = refreshed(store, row)
    getattr(token, f"set_{attribute}")(new_value)

    assert "SELECT" in statements(store.save_token, token)

    reread = ZohoToken.objects.get(pk=row.pk)
    assert (getattr(reread, attribute), reread.access_token) == (new_value, "1000.refreshed.a")
    assert not reread.fingerprint_is_stale()
    # ... and the next refresh of that token is one UPDATE again.
    assert statements(store.save_token, refreshed(store, reread, "1000.next.a")) == ["UPDATE"]


@pytest.mark.parametrize("use_tz", [True, False])
def test_the_update_compiled_once_writes_each_saves_own_values(store, token_factory, settings, use_tz):
    """The statement is compiled with markers (whose types follow USE_TZ) and run with
    each save's values: every row gets its own token, expiry and time of refresh."""
    settings.USE_TZ = use_tz
    db._compiled.clear()  # compile under this USE_TZ
    rows = token_factory.create_batch(3)
    tokens = [refreshed(store, row, f"1000.refreshed-{n}.a") for n, row in enumerate(rows)]

    for token in tokens:
        assert statements(store.save_token, token) == ["UPDATE"]

    for n, (row, token) in enumerate(zip(rows, tokens, strict=True)):
        reread = ZohoToken.objects.get(pk=row.pk)
        assert reread.access_token == f"1000.refreshed-{n}.a"
        assert reread.expiry_time == int(token.get_expires_in())
        assert abs((timezone.now() - reread.last_refreshed_at).total_seconds()) < 60
    db._compiled.clear()  # not left compiled under this test's USE_TZ


def test_a_value_the_token_lacks_is_filled_from_the_row(store, token_factory):
    row = token_factory(grant_token="1000.kept.g")
    token = refreshed(store, row)
    token.set_grant_token(None)

    store.save_token(token)

    assert token.get_grant_token() == "1000.kept.g"
    reread = ZohoToken.objects.get(pk=row.pk)
    assert (reread.grant_token, reread.access_token) == ("1000.kept.g", "1000.refreshed.a")


def test_a_row_without_a_fingerprint_gets_one_on_its_first_save(store, token_factory):
    """Rows written before the fingerprint existed, or after a partial ``update()``."""
    row = token_factory()
    ZohoToken.objects.filter(pk=row.pk).update(api_domain="https://www.zohoapis.com.au")
    assert raw_row(row.pk)["fingerprint"] is None

    first = statements(store.save_token, refreshed(store, row, "1000.first.a"))
    second = statements(store.save_token, refreshed(store, row, "1000.second.a"))

    assert first != ["UPDATE"] and second == ["UPDATE"]
    assert raw_row(row.pk)["fingerprint"] is not None
    assert ZohoToken.objects.get(pk=row.pk).access_token == "1000.second.a"


def test_an_email_only_user_reads_the_row_once_and_keeps_the_full_name(store, token_factory):
    row = token_factory(user_name="kim@example.com:11")
    token = refreshed(store, row)
    token.set_user_signature(UserSignature("kim@example.com"))

    assert statements(store.save_token, token) == ["SELECT", "UPDATE"]

    reread = ZohoToken.objects.get(pk=row.pk)
    assert (reread.user_name, reread.access_token) == ("kim@example.com:11", "1000.refreshed.a")


def test_another_users_name_on_the_token_is_not_saved_by_the_update(store, token_factory):
    row = token_factory(user_name="lea@example.com:12")
    token_factory(user_name="max@example.com:13")
    token = refreshed(store, row)
    token.set_user_signature(UserSignature("max@example.com:13"))

    # The full save decides, and refuses: the name belongs to another row.
    with pytest.raises(SDKException, match="user_name_digest"):
        store.save_token(token)

    reread = ZohoToken.objects.get(pk=row.pk)
    assert (reread.user_name, reread.access_token) == ("lea@example.com:12", row.access_token)


def test_a_flagged_row_is_not_touched_by_the_update(store, token_factory):
    row = token_factory()
    token = refreshed(store, row)
    ZohoToken.objects.filter(pk=row.pk).update(refresh_retry_at=ZohoToken.objects.get().updated_at)

    assert statements(store.save_token, token) != ["UPDATE"]

    reread = ZohoToken.objects.get(pk=row.pk)
    # The full save clears the back-off: the refresh evidently worked.
    assert (reread.access_token, reread.refresh_retry_at) == ("1000.refreshed.a", None)


def test_bulk_update_and_full_updates_keep_the_fingerprint_current(token_factory):
    rows = [token_factory() for _ in range(2)]
    for row in rows:
        row.client_secret = f"new-{row.pk}"
    ZohoToken.objects.bulk_update(rows, ["client_secret"])
    ZohoToken.objects.filter(pk=rows[0].pk).update(
        client_id="1000.OTHER",
        client_secret="s",
        refresh_token="1000.r",
        grant_token=None,
        redirect_url="https://x.example/cb",
        api_domain="https://www.zohoapis.in",
    )

    for row in ZohoToken.objects.all():
        assert row.fingerprint is not None
        assert not row.fingerprint_is_stale()


def test_an_email_that_is_not_the_rows_takes_the_full_save(store, token_factory):
    row = token_factory(user_name="lea@example.com:12")
    token = refreshed(store, row)
    token.set_user_signature(UserSignature("someone-else@example.com"))

    run = statements(store.save_token, token)

    assert run[0] == "SELECT" and len(run) > 2  # the read, then the full save

    # The full save renames the row, as it always has for a different name.
    reread = ZohoToken.objects.get(pk=row.pk)
    assert (reread.user_name, reread.access_token) == ("someone-else@example.com", "1000.refreshed.a")


def test_in_a_transaction_the_update_runs_in_a_savepoint(store, token_factory):
    row = token_factory()
    token = refreshed(store, row)

    with transaction.atomic():
        assert statements(store.save_token, token) == ["SAVEPOINT", "UPDATE", "RELEASE"]

    assert ZohoToken.objects.get(pk=row.pk).access_token == "1000.refreshed.a"


def test_compiling_the_update_inside_a_transaction_leaves_it_usable(store, token_factory):
    """Compiling stops Django's update() before it runs; inside atomic() that would mark
    the transaction for rollback, and every later statement would fail."""
    row = token_factory()
    token = refreshed(store, row)
    db._compiled.clear()  # the first save in this process compiles it

    with transaction.atomic():
        store.save_token(token)
        assert ZohoToken.objects.count() == 1  # still usable
        assert not transaction.get_rollback()

    assert ZohoToken.objects.get(pk=row.pk).access_token == "1000.refreshed.a"


def test_an_access_token_another_row_holds_is_refused_and_changes_nothing(store, token_factory):
    """In a transaction, as in a view under ATOMIC_REQUESTS: the failed UPDATE must not
    abort it (PostgreSQL), so the full save runs and gives the real reason."""
    row = token_factory()
    other = token_factory()
    token = refreshed(store, row, access_token=other.access_token)

    with transaction.atomic():
        with pytest.raises(SDKException, match="access_token_digest"):
            store.save_token(token)
        assert ZohoToken.objects.count() == 2  # the transaction is still usable

    assert ZohoToken.objects.get(pk=row.pk).access_token == row.access_token
    assert ZohoToken.objects.get(pk=other.pk).access_token == other.access_token
