"""The read on every SDK call: one indexed SELECT, compiled by the ORM once and reused.

Every Zoho API call the SDK makes starts with ``find_token_by_id`` or ``find_token``.
Building a QuerySet, compiling it and instantiating a model costs many times the
query itself, so the lookups here ask the ORM for their SQL once per database and
lookup column, then execute it on Django's connection with new parameters. The SQL
is the ORM's own (quoting, placeholders and LIMIT for each backend), the values
pass through the same field converters (decryption), and transactions, routers and
connection handling stay Django's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.db import connections

from .fields import DigestField, EncryptedTextField, current_cipher
from .models import TokenState, ZohoToken

COLUMNS = (
    "pk",
    "token_id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
    "needs_reauthorization_at",
    "refresh_retry_at",
)
# Where each lookup goes: the plain column, or the digest column of a secret.
LOOKUP_COLUMNS = {
    "token_id": "token_id",
    "user_name": "user_name_digest",
    "access_token": "access_token_digest",
    "grant_token": "grant_token_digest",
    "refresh_token": "refresh_token_digest",
}
_PLACEHOLDER = "\x00zoho_tokens:{}\x00"


@dataclass(frozen=True, slots=True)
class StoredValues(TokenState):
    """An active stored token's values, decrypted: what the SDK needs, without a model.

    ``needs_reauthorization_at`` and ``refresh_retry_at`` are only ever tested against
    ``None`` (their raw form differs between databases).
    """

    pk: int
    token_id: str
    user_name: str | None
    client_id: str | None
    client_secret: str | None
    refresh_token: str | None
    access_token: str | None
    grant_token: str | None
    expiry_time: int | None
    redirect_url: str | None
    api_domain: str | None
    needs_reauthorization_at: Any
    refresh_retry_at: Any


class _CompiledLookup:
    def __init__(self, alias: str, column: str, arity: int) -> None:
        placeholders = [_PLACEHOLDER.format(n) for n in range(arity)]
        queryset = (
            ZohoToken.objects.using(alias)
            .filter(revoked_at__isnull=True, **{f"{column}__in": placeholders})
            .order_by()
            .values_list(*COLUMNS)[:1]
        )
        self.sql, params = queryset.query.get_compiler(using=alias).as_sql()
        # Where each of our values goes among the query's parameters.
        self.slots = [list(params).index(placeholder) for placeholder in placeholders]
        self.params = list(params)
        fields = [ZohoToken._meta.pk if name == "pk" else ZohoToken._meta.get_field(name) for name in COLUMNS]
        self.encrypted = [
            (position, field)
            for position, field in enumerate(fields)
            if isinstance(field, EncryptedTextField)
        ]

    def execute(self, alias: str, lookup_values: list[str]) -> StoredValues | None:
        params = self.params.copy()
        for slot, value in zip(self.slots, lookup_values, strict=True):
            params[slot] = value
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            raw = cursor.fetchone()
        if raw is None:
            return None
        row: list[Any] = list(raw)
        cipher = current_cipher()
        for position, field in self.encrypted:
            if row[position] is not None:
                row[position] = field.decrypt(cipher, row[position])
        return StoredValues(*row)


_compiled: dict[tuple[str, str, int], _CompiledLookup] = {}
_compiled_lock = threading.Lock()


def _lookup(alias: str, column: str, arity: int) -> _CompiledLookup:
    key = (alias, column, arity)
    compiled = _compiled.get(key)
    if compiled is None:
        with _compiled_lock:
            compiled = _compiled.setdefault(key, _CompiledLookup(alias, column, arity))
    return compiled


class ValueFinder:
    """Finds active tokens' :class:`StoredValues` with one compiled query each."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def one(self, field: str, value: str) -> StoredValues | None:
        column = LOOKUP_COLUMNS[field]
        digest_field = ZohoToken._meta.get_field(column)
        candidates = digest_field.candidates(value) if isinstance(digest_field, DigestField) else [value]
        return _lookup(self.alias, column, len(candidates)).execute(self.alias, candidates)

    def for_email(self, email: str) -> list[ZohoToken]:
        # Rare (an email-only user signature): the ORM's query is good enough.
        return ZohoToken.objects.using(self.alias).active().for_email(email)
