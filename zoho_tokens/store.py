"""``DjangoTokenStore``: the Zoho SDK's ``TokenStore`` over the Django ORM.

The SDK's calling conventions (see the README, "Using it with the SDK") shape
this module: ``find_token`` fills its argument in place, because ``OAuthToken.revoke``
ignores the return value; ``save_token`` failures are swallowed by the SDK, so
this store logs them itself; one store instance is shared by every thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, OperationalError, connections, router, transaction
from django.utils import timezone
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException

from . import crypto, services, zoho
from .access_updates import RefreshedAccess, update_access_token
from .conf import app_settings
from .endpoints import token_endpoint
from .matching import TOKEN_STORE, RowFinder, fill_token, match_row, token_from_row, user_name_of
from .models import FINGERPRINT_SOURCES, TokenState, ZohoToken, ZohoTokenQuerySet
from .reads import ValueFinder
from .writes import run_write

logger = logging.getLogger("zoho_tokens.store")

INVALID_ID = "Given Id is invalid"
# Errors the store turns into SDKException: database trouble and key trouble.
STORE_ERRORS = (DatabaseError, crypto.DecryptionError, ImproperlyConfigured)


class DjangoTokenStore(TokenStore):
    """Stores Zoho OAuth tokens in the ``ZohoToken`` model, secrets encrypted.

    ``using`` names the database alias; by default ``ZOHO_TOKENS_DATABASE`` or,
    failing that, the alias the routers choose for writes. Reads use the same
    alias, so a token just saved is never missed on a lagging replica.
    """

    def __init__(self, using: str | None = None) -> None:
        self._using = using

    @property
    def using(self) -> str:
        return self._using or app_settings.DATABASE or router.db_for_write(ZohoToken)

    def _rows(self) -> ZohoTokenQuerySet:
        return ZohoToken.objects.using(self.using)

    # --- the six SDK methods ---------------------------------------------------

    def find_token(self, token: Any) -> Any:
        if not isinstance(token, OAuthToken):
            return token
        with self._failures("find_token"):
            found = self._checked(match_row(self._finder(), token), new_consent=bool(token.get_grant_token()))
            if found is None:
                return None
            fill_token(token, found)
        return token

    def find_token_by_id(self, id: Any) -> OAuthToken:
        with self._failures("find_token_by_id"):
            found = self._checked(self._finder().one("token_id", str(id)), new_consent=False)
            if found is None:
                raise SDKException(
                    TOKEN_STORE, f"Exception in find_token_by_id - DjangoTokenStore : {INVALID_ID}"
                )
            return token_from_row(found)

    def save_token(self, token: Any) -> None:
        if not isinstance(token, OAuthToken):
            return
        with self._failures("save_token"):
            if self._save_refreshed_access_token(token):
                return
            row = run_write(self.using, lambda: save_row(self._rows(), token))
            # Only after the commit: a token must never carry the id of a row that was rolled back.
            fill_token(token, row)

    def delete_token(self, id: Any) -> None:
        with self._failures("delete_token"):
            deleted = run_write(
                self.using, lambda: self._rows().active().filter(token_id=str(id)).delete()[0]
            )
            if not deleted:
                raise SDKException(
                    TOKEN_STORE, f"Exception in delete_token - DjangoTokenStore : {INVALID_ID}"
                )

    def get_tokens(self) -> list[OAuthToken]:
        return list(self.iter_tokens())

    def delete_tokens(self) -> None:
        with self._failures("delete_tokens"):
            run_write(self.using, lambda: self._rows().all().delete())

    # --- beyond the SDK interface ---------------------------------------------

    def iter_tokens(self, chunk_size: int = 500) -> Iterator[OAuthToken]:
        """Every active token, read in pages of ``chunk_size`` so memory stays flat.

        Pages by primary key rather than with a server-side cursor, which not every
        driver has (mysqlclient would load the whole table at once).
        """
        with self._failures("get_tokens"):
            finder = self._finder()
            last_pk: int | None = 0
            while last_pk is not None:
                page, last_pk = finder.page(last_pk, chunk_size)
                for values in page:
                    yield token_from_row(values)

    def _failures(self, operation: str) -> _Failures:
        return _Failures(operation, self)

    def _save_refreshed_access_token(self, token: OAuthToken) -> bool:
        """The SDK's save after a refresh, in one UPDATE, when that is all that changed.

        Returns False when the full save must decide: a new row, other changed
        fields, a flagged or revoked row, a key rotation, or a race lost to a newer
        token (the full save then leaves the newer one in place).
        """
        token_id, access_token = token.get_id(), token.get_access_token()
        expiry = parse_expiry(token.get_expires_in())
        if token_id is None or access_token is None or expiry is None or key_rotation_in_progress():
            return False
        name = user_name_of(token)
        if name is not None and ":" not in name:
            # An email-only signature: the row is stored under "email:zgid".
            stored = self._finder().one("token_id", str(token_id))
            if stored is None or not names_same_user(name, stored.user_name):
                return False
            name = stored.user_name
        refreshed = RefreshedAccess(
            token_id=str(token_id),
            user_name=name,
            access_token=access_token,
            expiry_time=expiry,
            other_values=tuple(getattr(token, f"get_{source}")() for source in FINGERPRINT_SOURCES),
        )
        try:
            if not connections[self.using].in_atomic_block:
                return update_access_token(self.using, refreshed)
            # In the caller's transaction, a failed statement must not abort it
            # (PostgreSQL would refuse every later statement): a savepoint.
            with transaction.atomic(using=self.using):
                return update_access_token(self.using, refreshed)
        except (IntegrityError, OperationalError):
            return False  # the full save retries, or reports

    # --- lookups and coordinated refresh --------------------------------------------

    def _finder(self) -> ValueFinder:
        return ValueFinder(self.using)

    def _checked(self, found: TokenState | None, *, new_consent: bool) -> TokenState | None:
        """``found`` as the SDK may use it: refreshed or refused when it needs care.

        Most lookups end at the first test: the plain values are good to hand over.
        The rest take the model row, which the refresh locks and updates.
        """
        if found is None or not needs_care(found):
            return found
        row = self._rows().active().filter(pk=found.pk).first()
        return None if row is None else self._usable(row, new_consent=new_consent)

    def _usable(self, row: ZohoToken, *, new_consent: bool) -> ZohoToken | None:
        """The row to hand to the SDK, refreshed first when it is about to expire.

        The SDK refreshes only when less than 5 s remain, and every worker does it
        on its own; refreshing earlier, once, under a row lock spares them all.
        """
        current = self._refreshed(row)
        if current is None or (current.needs_reauthorization and new_consent):
            return None  # deleted meanwhile, or the SDK will use the new grant token
        if current.needs_reauthorization:
            raise SDKException(
                TOKEN_STORE,
                f"Token {current.token_id} needs re-authorisation: Zoho rejected its refresh token "
                f"({current.refresh_error}). Send the user through Zoho's consent screen again.",
            )
        retry_at = current.refresh_retry_at
        if retry_at is not None and retry_at > timezone.now() and current.expires_within(0):
            raise SDKException(
                TOKEN_STORE,
                f"Zoho rate-limited the refresh of token {current.token_id}; "
                f"the store retries after {retry_at.isoformat(timespec='seconds')}.",
            )
        return current

    def _refreshed(self, row: ZohoToken) -> ZohoToken | None:
        margin = app_settings.REFRESH_MARGIN
        if not app_settings.REFRESH or not services.refresh_due(row, margin):
            return row
        token_url = token_endpoint(row)
        if token_url is None:
            return row
        try:
            return services.refresh_if_due(row.pk, using=self.using, token_url=token_url, margin=margin)
        except (zoho.ZohoUnreachable, OperationalError) as exc:
            # The token in hand is still good for the SDK to try; nothing was changed.
            logger.warning("Could not refresh token %s, keeping the current one: %s", row.token_id, exc)
            return row


class _Failures:
    """Logs every failure (the SDK swallows some) and turns store errors into SDKException."""

    def __init__(self, operation: str, store: DjangoTokenStore) -> None:
        self.operation = operation
        self.store = store  # its alias is resolved only if a connection must be dropped

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, GeneratorExit):
            return False
        if isinstance(exc, SDKException):
            # Our own messages carry no secret.
            logger.warning("DjangoTokenStore.%s: %s", self.operation, exc)
            return False
        if isinstance(exc, STORE_ERRORS):
            logger.error("DjangoTokenStore.%s failed: %s: %s", self.operation, type(exc).__name__, exc)
            if isinstance(exc, DatabaseError):
                self._drop_broken_connection()
            raise SDKException(
                TOKEN_STORE, f"Exception in {self.operation} - DjangoTokenStore : ", cause=exc
            ) from exc
        logger.exception("DjangoTokenStore.%s failed unexpectedly", self.operation)
        return False

    def _drop_broken_connection(self) -> None:
        # Outside the request cycle nobody else closes a dead connection, and every
        # later call would fail with "server has gone away". Inside a transaction the
        # caller owns the connection.
        connection = connections[self.store.using]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def save_row(rows: ZohoTokenQuerySet, token: OAuthToken) -> ZohoToken:
    """Upsert ``token`` (call inside a transaction); returns the saved row."""
    row = find_row_to_update(rows.select_for_update(), token)
    if row is None:
        row = new_row(token)
        copy_onto_row(token, row)
        row.save(using=rows.db, force_insert=True)
        return row
    before = {name: getattr(row, name) for name in SAVED_FIELDS}
    if row.is_revoked:
        reactivate_or_refuse(row, token)
    copy_onto_row(token, row)
    changed = [name for name in SAVED_FIELDS if getattr(row, name) != before[name]]
    if changed and key_rotation_in_progress():
        # Every save moves the row onto the newest keys.
        changed = list(SAVED_FIELDS)
    # Otherwise only what changed: after a refresh that is one secret to encrypt, not four.
    # A missing or stale fingerprint is written too, or the one-UPDATE save never matches.
    if changed or row.fingerprint_is_stale():
        row.save(using=rows.db, update_fields=[*changed, "updated_at", "fingerprint"])
    return row


# Copied from the token onto the row as they are (the others need rules).
COPIED_ATTRIBUTES = (
    "client_id",
    "client_secret",
    "refresh_token",
    "grant_token",
    "redirect_url",
    "api_domain",
)

# The fields a save may change; digests follow their sources (ZohoToken.save).
SAVED_FIELDS = (
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
    "last_refreshed_at",
    "revoked_at",
    "needs_reauthorization_at",
    "refresh_error",
    "refresh_retry_at",
)


def names_same_user(name: str, stored_name: str | None) -> bool:
    """``name`` is the stored name, or its email part (``"email"`` for ``"email:zgid"``)."""
    stored = stored_name or ""
    return name == stored or stored.startswith(f"{name}:")


def needs_care(found: TokenState) -> bool:
    """Flagged by an earlier refresh, or due for one."""
    if found.needs_reauthorization_at is not None or found.refresh_retry_at is not None:
        return True
    return app_settings.REFRESH and found.expires_within(app_settings.REFRESH_MARGIN)


def key_rotation_in_progress() -> bool:
    return len(app_settings.ENCRYPTION_KEYS) > 1 or len(app_settings.HMAC_KEYS) > 1


def find_row_to_update(rows: ZohoTokenQuerySet, token: OAuthToken) -> ZohoToken | None:
    """By id when the token has one, else by the SDK's precedence; revoked rows included."""
    token_id = token.get_id()
    if token_id is None:
        return match_row(RowFinder(rows), token)
    row = rows.filter(token_id=str(token_id)).first()
    if row is None:
        other = match_row(RowFinder(rows), token)
        if other is not None:
            raise SDKException(
                TOKEN_STORE,
                f"Token id {str(token_id)!r} is not stored, but this user's token is stored "
                f"under id {other.token_id!r}; use that id.",
            )
    return row


def new_row(token: OAuthToken) -> ZohoToken:
    has_secret = token.get_refresh_token() or token.get_grant_token() or token.get_access_token()
    if not has_secret and (token.get_id() is not None or user_name_of(token) is not None):
        raise SDKException(
            TOKEN_STORE,
            "Exception in save_token - DjangoTokenStore : Given user authentication details not found.",
        )
    row = ZohoToken()
    if token.get_id() is not None:
        row.token_id = str(token.get_id())
    return row


def copy_onto_row(token: OAuthToken, row: ZohoToken) -> None:
    """Copy the token's non-None values onto the row."""
    if is_new_authorisation(token, row):
        row.clear_refresh_state()
    name = user_name_of(token)
    # Keep "email:zgid" when the token only says "email".
    if name is not None and not names_same_user(name, row.user_name):
        row.user_name = name
    for attribute in COPIED_ATTRIBUTES:
        value = getattr(token, f"get_{attribute}")()
        if value is not None:
            setattr(row, attribute, value)
    expiry = parse_expiry(token.get_expires_in())
    # A slower worker must not replace a newer access token with its older one.
    stale = expiry is not None and row.expiry_time is not None and expiry < row.expiry_time
    access_token = token.get_access_token()
    if access_token is not None and not stale:
        if access_token != row.access_token:
            row.last_refreshed_at = timezone.now()
            row.clear_refresh_state()  # the refresh token works
        row.access_token = access_token
        if expiry is not None:
            row.expiry_time = expiry


def is_new_authorisation(token: OAuthToken, row: ZohoToken) -> bool:
    """A refresh token other than the stored one: the user consented again."""
    refresh_token = token.get_refresh_token()
    return refresh_token is not None and refresh_token != row.refresh_token


def reactivate_or_refuse(row: ZohoToken, token: OAuthToken) -> None:
    """A revoked row comes back only with a new authorisation."""
    if is_new_authorisation(token, row):
        row.revoked_at = None
        return
    raise SDKException(
        TOKEN_STORE, f"Token {row.token_id} was revoked; the user must authorise the app again."
    )


def parse_expiry(expires_in: Any) -> int | None:
    if expires_in is None or expires_in == "":
        return None
    try:
        return int(expires_in)
    except (TypeError, ValueError):
        raise SDKException(
            TOKEN_STORE, "expires_in must be epoch milliseconds as a string of digits."
        ) from None
