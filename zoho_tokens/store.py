"""``DjangoTokenStore``: the Zoho SDK's ``TokenStore`` over the Django ORM.

The SDK's calling conventions (see the README, "Using it with the SDK") shape this
module: ``find_token`` fills its argument in place, because ``OAuthToken.revoke``
ignores the return value; ``save_token`` failures are swallowed by the SDK, so this
store logs them itself; one store instance is shared by every thread. The work is
done by ``sdk`` (which row a token means), ``finder`` (the lookups) and ``services``
(refresh and save); this module translates errors.

Every exception that leaves the store is an ``SDKException`` whose message carries no
secret, and every method is marked with ``sensitive_variables``: when ``DEBUG`` is off,
Django's error reports (and the admins' error mail) hide the local variables of every
frame below it. Values that carry secrets show them masked in their ``repr``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router
from django.views.decorators.debug import sensitive_variables
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException

from . import crypto, services
from .conf import app_settings
from .db import run_write
from .finder import ValueFinder
from .models import ZohoToken
from .sdk import TOKEN_STORE, fill_token, match, matches_by_secret, store_error, token_from_row

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

    @sensitive_variables()
    def find_token(self, token: Any) -> Any:
        if not isinstance(token, OAuthToken):
            return token
        with _Failures("find_token", self):
            using = self.using
            found = match(ValueFinder(using), token)
            if found is None and matches_by_secret(token):
                # A wrong HMAC key must not pass for "not found".
                services.refuse_foreign_digests(using)
            found = services.refresh_or_refuse(found, using=using, new_consent=bool(token.get_grant_token()))
            if found is None:
                return None
            fill_token(token, found)
        return token

    @sensitive_variables()
    def find_token_by_id(self, id: Any) -> OAuthToken:
        with _Failures("find_token_by_id", self):
            using = self.using
            found = services.refresh_or_refuse(
                ValueFinder(using).one("token_id", str(id)), using=using, new_consent=False
            )
            if found is None:
                raise store_error(f"Exception in find_token_by_id - DjangoTokenStore : {INVALID_ID}")
            return token_from_row(found)

    @sensitive_variables()
    def save_token(self, token: Any) -> None:
        if not isinstance(token, OAuthToken):
            return
        with _Failures("save_token", self):
            row = services.save_token(token, using=self.using)
            if row is not None:
                # Only after the commit: a token must never carry the id of a row that was rolled back.
                fill_token(token, row)

    @sensitive_variables()
    def delete_token(self, id: Any) -> None:
        with _Failures("delete_token", self):
            rows = ZohoToken.objects.using(self.using).active().filter(token_id=str(id))
            if not run_write(self.using, lambda: rows.delete()[0]):
                raise store_error(f"Exception in delete_token - DjangoTokenStore : {INVALID_ID}")

    @sensitive_variables()
    def get_tokens(self) -> list[OAuthToken]:
        return list(self.iter_tokens())

    @sensitive_variables()
    def delete_tokens(self) -> None:
        with _Failures("delete_tokens", self):
            run_write(self.using, lambda: ZohoToken.objects.using(self.using).delete())

    def iter_tokens(self, chunk_size: int = 500) -> Iterator[OAuthToken]:
        """Every active token, read in pages of ``chunk_size`` so memory stays flat.

        Pages by primary key rather than with a server-side cursor, which not every
        driver has (mysqlclient would load the whole table at once).
        """
        with _Failures("get_tokens", self):
            finder = ValueFinder(self.using)
            last_pk: int | None = 0
            while last_pk is not None:
                page, last_pk = finder.page(last_pk, chunk_size)
                for values in page:
                    yield token_from_row(values)


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
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit
        logger.error("DjangoTokenStore.%s failed unexpectedly", self.operation, exc_info=exc)
        # The SDK expects SDKException; the cause's text is not ours, so it stays out of
        # the message (it is chained, and logged above).
        raise SDKException(
            TOKEN_STORE,
            f"Exception in {self.operation} - DjangoTokenStore : unexpected {type(exc).__name__}",
        ) from exc

    def _drop_broken_connection(self) -> None:
        # Outside the request cycle nobody else closes a dead connection, and every
        # later call would fail with "server has gone away". Inside a transaction the
        # caller owns the connection.
        connection = connections[self.store.using]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
