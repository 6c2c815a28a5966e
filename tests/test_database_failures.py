"""Database trouble: an unreachable server, a read-only database, a wrong key, a held lock.

The store turns database and key errors into ``SDKException("TOKEN_STORE")``
carrying the cause, logs each failure itself (the SDK swallows failed saves)
and never puts a secret into a message or a log record.
"""

import copy
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.db.utils import load_backend
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations, ResponseWrapper
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    ENCRYPTED_COLUMNS,
    REDIRECT_URL,
    grant_token_login,
    now_ms,
)
from tests.helpers.ciphertext import open_ciphertext
from zoho_tokens import crypto
from zoho_tokens.models import ZohoToken
from zoho_tokens.store import DjangoTokenStore

USER = "keeper@example.com:7001"
REFRESH_TOKEN = "1000.keeper-refresh-token.r"
ACCESS_TOKEN = "1000.keeper-access-token.a"
GRANT_TOKEN = "1000.keeper-grant-token.g"
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN, GRANT_TOKEN)
TABLE = ZohoToken._meta.db_table


def keeper_token(access_token: str = ACCESS_TOKEN, expires_at: int | None = None) -> OAuthToken:
    token = OAuthToken(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant_token=GRANT_TOKEN,
        refresh_token=REFRESH_TOKEN,
        redirect_url=REDIRECT_URL,
        access_token=access_token,
        user_signature=UserSignature(USER),
    )
    token.set_expires_in(str(expires_at if expires_at is not None else now_ms() + 3_600_000))
    return token


def raw_rows() -> list[tuple[Any, ...]]:
    """Every column of every row, as the database holds it (ciphertext included)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(TABLE)} ORDER BY id")
        return [tuple(row) for row in cursor.fetchall()]


def raw_encrypted_columns() -> dict[str, str]:
    columns = ", ".join(connection.ops.quote_name(name) for name in ENCRYPTED_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {connection.ops.quote_name(TABLE)}")
        (row,) = cursor.fetchall()
    return dict(zip(ENCRYPTED_COLUMNS, row, strict=True))


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in (*SECRETS, *extra):
        assert secret not in text


def store_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "zoho_tokens.store" and r.levelno >= logging.ERROR]


def add_alias(alias: str, **changes: Any) -> Iterator[DjangoTokenStore]:
    """Open ``alias`` at run time: a copy of the default database's settings, changed.

    The wrapper is assigned with ``connections[alias] = ...`` rather than added to
    ``connections.settings``: Django's test isolation refuses connections to an alias
    in the settings that the test did not declare, but allows dynamically created
    ones. The assignment is thread-local, so only this thread sees the alias.
    """
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    options = changes.pop("OPTIONS", {})
    settings_dict.update(changes)
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), **options}
    connections[alias] = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    try:
        yield DjangoTokenStore(using=alias)
    finally:
        connections[alias].close()
        del connections[alias]


@pytest.fixture
def down_store(db: None, tmp_path) -> Iterator[DjangoTokenStore]:
    """A store on an alias whose database server cannot be reached."""
    if connection.vendor == "sqlite":
        changes: dict[str, Any] = {"NAME": str(tmp_path / "no-such-directory" / "tokens.sqlite3")}
    else:
        # 127.0.0.1 (not "localhost", which MySQL would reach through its socket).
        changes = {"HOST": "127.0.0.1", "PORT": "1"}
    yield from add_alias("down", **changes)


@pytest.fixture
def read_only_store(db: None) -> Iterator[DjangoTokenStore]:
    """A store on an alias that reaches the test database but may not write to it."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        changes: dict[str, Any] = {"NAME": f"file:{name}?mode=ro"}
    elif connection.vendor == "postgresql":
        changes = {"OPTIONS": {"options": "-c default_transaction_read_only=on"}}
    else:
        changes = {"OPTIONS": {"init_command": "SET SESSION TRANSACTION READ ONLY"}}
    yield from add_alias("read_only", **changes)


# --- an unreachable database --------------------------------------------------

OPERATIONS: dict[str, Callable[[DjangoTokenStore, str], Any]] = {
    "find_token": lambda store, _id: store.find_token(OAuthToken(user_signature=UserSignature(USER))),
    "find_token_by_id": lambda store, token_id: store.find_token_by_id(token_id),
    "save_token": lambda store, _id: store.save_token(keeper_token("1000.another-access-token.a")),
    "get_tokens": lambda store, _id: store.get_tokens(),
    "delete_token": lambda store, token_id: store.delete_token(token_id),
    "delete_tokens": lambda store, _id: store.delete_tokens(),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_an_unreachable_database_is_a_token_store_error_without_secrets(operation, store, down_store, caplog):
    kept = keeper_token()
    store.save_token(kept)
    before = raw_rows()
    caplog.set_level(logging.INFO, logger="zoho_tokens.store")

    with pytest.raises(SDKException) as caught:
        OPERATIONS[operation](down_store, kept.get_id())

    exc = caught.value
    assert exc.code == "TOKEN_STORE"
    assert isinstance(exc.cause, DatabaseError)
    assert exc.__cause__ is exc.cause
    assert str(exc).startswith(f"Caused By: TOKEN_STORE - Exception in {operation} - DjangoTokenStore : ")
    assert str(exc.cause) in str(exc)
    extra_secrets = ["1000.another-access-token.a", *filter(None, [connection.settings_dict["PASSWORD"]])]
    assert_no_secret(str(exc), *extra_secrets)
    (record,) = store_errors(caplog)
    assert record.levelno == logging.ERROR
    assert (
        record.getMessage() == f"DjangoTokenStore.{operation} failed: {type(exc.cause).__name__}: {exc.cause}"
    )
    assert record.exc_info is None
    assert_no_secret(record.getMessage(), *extra_secrets)
    # Nothing was lost on the working database.
    assert raw_rows() == before
    assert ZohoToken.objects.get().access_token == ACCESS_TOKEN


def test_the_sdk_reports_an_unreachable_store_before_any_http_call(sdk, fake_zoho, down_store, caplog):
    code = fake_zoho.issue_grant_token("alice@example.com", "10001")
    caplog.set_level(logging.INFO, logger="zoho_tokens.store")

    # get_token() asks find_token first (the token has no id); it raises, so
    # initialize() raises and the grant code is never sent to Zoho.
    with pytest.raises(SDKException) as caught:
        sdk(grant_token_login(code), store=down_store)

    assert caught.value.code == "TOKEN_STORE"
    assert "Exception in find_token - DjangoTokenStore" in str(caught.value)
    assert isinstance(caught.value.cause, DatabaseError)
    assert [fake_zoho.count(endpoint) for endpoint in ("authorization_code", "users", "org")] == [0, 0, 0]
    assert [r.getMessage().split(":")[0] for r in store_errors(caplog)] == [
        "DjangoTokenStore.find_token failed"
    ]
    assert ZohoToken.objects.count() == 0
    # The one-time grant code is still unused: the login works once the store does.
    token = sdk(grant_token_login(code))
    assert fake_zoho.count("authorization_code") == 1
    assert ZohoToken.objects.get().token_id == token.get_id()


def test_a_failed_save_is_swallowed_by_the_sdk_but_logged_by_the_store(
    sdk, fake_zoho, read_only_store, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger="zoho_tokens.store")
    # The SDK logs the swallowed error with a broken format string
    # (SDKLogger.error("Exception in saving tokens", ex)). Logging's handlers print
    # such errors to stderr, but pytest's capture handler (attached to SDKLogger
    # too) raises them when logging.raiseExceptions is set: turn that off to see
    # what production sees.
    monkeypatch.setattr(logging, "raiseExceptions", False)

    token = sdk(
        grant_token_login(fake_zoho.issue_grant_token("alice@example.com", "10001")), store=read_only_store
    )

    # The SDK got its access token and carries on, in this process only ...
    assert fake_zoho.count("authorization_code") == 1
    assert fake_zoho.is_access_token_valid(token.get_access_token())
    wrapper = OrgOperations().get_organization().get_object()
    assert isinstance(wrapper, ResponseWrapper), wrapper
    assert wrapper.get_org()[0].get_zgid() == "10001"
    # ... but nothing was stored, and only the store's own log says so.
    assert ZohoToken.objects.count() == 0
    (record,) = store_errors(caplog)
    assert record.getMessage().startswith("DjangoTokenStore.save_token failed: ")
    for secret in (token.get_access_token(), token.get_refresh_token(), CLIENT_SECRET):
        assert secret not in record.getMessage()


# --- a wrong encryption key ---------------------------------------------------

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def test_a_wrong_encryption_key_fails_clearly_and_changes_nothing(db, store, settings, caplog):
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [KEY_A]
    store.save_token(keeper_token())
    before = raw_rows()
    ciphertexts = raw_encrypted_columns()
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [KEY_B]
    caplog.set_level(logging.INFO, logger="zoho_tokens.store")

    with pytest.raises(SDKException) as found:
        store.find_token(OAuthToken(user_signature=UserSignature(USER)))
    with pytest.raises(SDKException) as saved:
        store.save_token(keeper_token("1000.written-with-b.a", now_ms() + 7_200_000))

    for caught in (found, saved):
        exc = caught.value
        assert exc.code == "TOKEN_STORE"
        assert isinstance(exc.cause, crypto.DecryptionError)
        assert "ZOHO_TOKENS_ENCRYPTION_KEYS" in str(exc)
        assert_no_secret(str(exc), *ciphertexts.values(), KEY_A, KEY_B, "1000.written-with-b.a")
    records = store_errors(caplog)
    assert [r.getMessage().split(":")[0] for r in records] == [
        "DjangoTokenStore.find_token failed",
        "DjangoTokenStore.save_token failed",
    ]
    for record in records:
        assert "ZOHO_TOKENS_ENCRYPTION_KEYS" in record.getMessage()
        assert_no_secret(record.getMessage(), *ciphertexts.values(), KEY_A, KEY_B)
    assert raw_rows() == before


def test_a_rotated_key_list_reads_old_rows_and_saves_with_the_new_key(db, store, settings):
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [KEY_A]
    store.save_token(keeper_token())
    old_ciphertexts = raw_encrypted_columns()
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    found = store.find_token(OAuthToken(user_signature=UserSignature(USER)))
    assert found is not None
    assert (found.get_access_token(), found.get_refresh_token()) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert raw_encrypted_columns() == old_ciphertexts  # reading does not rewrite
    store.save_token(keeper_token("1000.after-rotation.a", now_ms() + 7_200_000))

    new_ciphertexts = raw_encrypted_columns()
    expected = {
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "access_token": "1000.after-rotation.a",
        "grant_token": GRANT_TOKEN,
    }
    token_id = ZohoToken.objects.get().token_id
    for column, plaintext in expected.items():
        assert new_ciphertexts[column] != old_ciphertexts[column]
        assert open_ciphertext(KEY_B, new_ciphertexts[column], column, token_id) == plaintext
        with pytest.raises(InvalidTag):
            open_ciphertext(KEY_A, new_ciphertexts[column], column, token_id)
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [KEY_B]
    row = ZohoToken.objects.get()
    assert [getattr(row, column) for column in expected] == list(expected.values())


# --- a wrong HMAC key -----------------------------------------------------------

OTHER_HMAC_KEY = "an-hmac-key-from-another-environment-0123456789"


def test_a_wrong_hmac_key_is_a_store_error_never_a_miss_or_a_second_row(db, store, settings, caplog):
    store.save_token(keeper_token())
    before = raw_rows()
    settings.ZOHO_TOKENS_HMAC_KEYS = [OTHER_HMAC_KEY]  # the encryption keys are right
    caplog.set_level(logging.INFO, logger="zoho_tokens.store")
    by_refresh_token = OAuthToken(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
    )
    same_token_again = OAuthToken(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        access_token="1000.new.a",
    )
    same_token_again.set_expires_in(str(now_ms() + 3_600_000))

    with pytest.raises(SDKException) as found:
        store.find_token(by_refresh_token)
    with pytest.raises(SDKException) as saved:
        store.save_token(same_token_again)

    for caught in (found, saved):
        message = str(caught.value)
        assert caught.value.code == "TOKEN_STORE"
        assert "computed with an HMAC key that is not in ZOHO_TOKENS_HMAC_KEYS" in message
        assert "zoho_rotate_keys" in message
        assert_no_secret(message, OTHER_HMAC_KEY, *settings.ZOHO_TOKENS_ENCRYPTION_KEYS)
    assert raw_rows() == before
    # The one fix the message names: every digest recomputed with the first key.
    call_command("zoho_rotate_keys", stdout=io.StringIO())
    assert store.find_token(by_refresh_token) is by_refresh_token
    assert by_refresh_token.get_user_signature().get_name() == USER


# --- a lock held by another connection ----------------------------------------

LOCK_SECONDS = 1.0


@pytest.mark.django_db(transaction=True)
def test_a_save_waits_for_a_lock_held_by_another_connection(store):
    store.save_token(keeper_token(expires_at=now_ms() + 3_600_000))
    pk = ZohoToken.objects.get().pk
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                # PostgreSQL/MySQL: a row lock; SQLite: the database's write lock.
                list(ZohoToken.objects.select_for_update().filter(pk=pk))
                ZohoToken.objects.filter(pk=pk).update(redirect_url="https://locker.example.com/cb")
                locked.set()
                release.wait(timeout=10)
                time.sleep(LOCK_SECONDS)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    locker = threading.Thread(target=hold_lock)
    locker.start()
    try:
        assert locked.wait(timeout=10)
        release.set()
        started = time.monotonic()
        token = keeper_token("1000.saved-after-the-lock.a", now_ms() + 7_200_000)
        token.set_redirect_url(None)
        store.save_token(token)
        waited = time.monotonic() - started
    finally:
        release.set()
        locker.join(timeout=30)

    assert errors == []
    assert waited >= LOCK_SECONDS * 0.8
    row = ZohoToken.objects.get()
    assert row.access_token == "1000.saved-after-the-lock.a"
    assert row.expiry_time == int(token.get_expires_in())
    # Read after the lock was released: the locker's committed change survives.
    assert row.redirect_url == "https://locker.example.com/cb"
    assert token.get_id() == row.token_id


def test_secrets_list_covers_the_token(db, store):
    """Guards the secret checks above: every secret really is in the stored token."""
    token = keeper_token()
    store.save_token(token)
    row = ZohoToken.objects.get()
    assert {row.client_secret, row.refresh_token, row.access_token, row.grant_token} == set(SECRETS)
