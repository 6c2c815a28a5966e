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

import functools
import re
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet, TextField, Value

try:
    import psycopg as _psycopg
except ImportError:  # pragma: no cover - psycopg 2 or no PostgreSQL at all
    _psycopg = None  # type: ignore[assignment]

from .crypto import Cipher, DecryptionError
from .fields import DigestField, EncryptedTextField, current_cipher
from .models import TokenState, ZohoToken

# Where each lookup goes: the plain column, or the digest column of a secret.
LOOKUP_COLUMNS = {
    "token_id": "token_id",
    "user_name": "user_name_digest",
    "access_token": "access_token_digest",
    "grant_token": "grant_token_digest",
    "refresh_token": "refresh_token_digest",
}
_PLACEHOLDER = "\x00zoho_tokens:{}\x00"
T = TypeVar("T")


class _Columns(NamedTuple):
    """The columns every lookup reads, in the order of the SELECT."""

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


class StoredValues(_Columns, TokenState):
    """An active stored token's values, decrypted: what the SDK needs, without a model.

    A named tuple, because ``get_tokens`` builds one per row. ``needs_reauthorization_at``
    and ``refresh_retry_at`` are only ever tested against ``None`` (their raw form differs
    between databases).
    """

    __slots__ = ()


COLUMNS = _Columns._fields


class _CompiledSelect:
    """A SELECT of ``COLUMNS`` the ORM compiled once, with our values put in its slots."""

    def __init__(self, alias: str, queryset: QuerySet[Any], placeholders: list[str]) -> None:
        self.sql, params = queryset.query.get_compiler(using=alias).as_sql()
        self.params = list(params)
        # Where each of our values goes among the query's parameters.
        self.slots = [self.params.index(placeholder) for placeholder in placeholders]

    def fetch(self, alias: str, values: list[Any], result: Callable[[Any], T]) -> T:
        params = self.params.copy()
        for slot, value in zip(self.slots, values, strict=True):
            params[slot] = value
        return run_compiled(connections[alias], self.sql, params, result)


_FIELDS = [ZohoToken._meta.pk if name == "pk" else ZohoToken._meta.get_field(name) for name in COLUMNS]
_ENCRYPTED_POSITIONS = [n for n, field in enumerate(_FIELDS) if isinstance(field, EncryptedTextField)]


def stored_values(raw: tuple[Any, ...], cipher: Cipher) -> StoredValues:
    """A fetched row of ``COLUMNS``, its secrets decrypted."""
    row = list(raw)
    decrypt = cipher.decrypt
    try:
        for position in _ENCRYPTED_POSITIONS:
            if row[position] is not None:
                row[position] = decrypt(row[position])
    except DecryptionError:
        field = _FIELDS[position]
        assert isinstance(field, EncryptedTextField)
        raise field.decryption_error() from None
    return StoredValues._make(row)


def _by_column(alias: str, column: str, arity: int) -> _CompiledSelect:
    placeholders = [_PLACEHOLDER.format(n) for n in range(arity)]
    queryset = (
        ZohoToken.objects.using(alias)
        .filter(revoked_at__isnull=True, **{f"{column}__in": placeholders})
        .order_by()
        .values_list(*COLUMNS)[:1]
    )
    return _CompiledSelect(alias, queryset, placeholders)


def _page(alias: str, size: int) -> _CompiledSelect:
    after = _PLACEHOLDER.format("after")
    # Revoked rows are skipped in Python: with "revoked_at IS NULL" in the WHERE clause,
    # MariaDB walks the revoked_at index from its start on every page instead of the
    # primary key from ``after`` (a page in the middle of 100,000 rows took 4x longer).
    queryset = (
        ZohoToken.objects.using(alias)
        .filter(pk__gt=Value(after, output_field=TextField()))
        .order_by("pk")
        .values_list(*COLUMNS, "revoked_at")[:size]
    )
    return _CompiledSelect(alias, queryset, [after])


_QMARK = re.compile(r"(?<!%)%s")


def run_compiled(
    connection: BaseDatabaseWrapper, sql: str, params: list[Any], result: Callable[[Any], T]
) -> T:
    """Run a statement the ORM compiled, with as little in between as the driver allows.

    Django's cursor wrapper rewrites the SQL for SQLite on every call and binds
    parameters on the client for psycopg; on these two drivers the statement goes to
    the driver's own cursor (on PostgreSQL a prepared statement, when the database's
    ``prepare_threshold`` option allows them). Errors are Django's either way. While
    queries are being logged (``DEBUG``, ``assertNumQueries``, the debug toolbar's
    ``CaptureQueriesContext``) or an execute wrapper is installed, the statement goes
    through Django's cursor, so that whoever watches sees it.
    """
    connection.ensure_connection()
    if not (connection.queries_logged or connection.execute_wrappers):
        driver_connection = connection.connection
        with connection.wrap_database_errors:
            if connection.vendor == "sqlite":
                return result(driver_connection.execute(_sqlite_sql(sql), params))
            if (
                connection.vendor == "postgresql"
                and _psycopg is not None
                and isinstance(driver_connection, _psycopg.Connection)
            ):
                with _psycopg.Cursor(driver_connection) as cursor:
                    cursor.execute(sql, params, prepare=True)
                    return result(cursor)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return result(cursor)


@functools.lru_cache(maxsize=64)
def _sqlite_sql(sql: str) -> str:
    return _QMARK.sub("?", sql).replace("%%", "%")


_compiled: dict[tuple[Any, ...], _CompiledSelect] = {}
_compiled_lock = threading.Lock()


def _compiled_select(build: Callable[..., _CompiledSelect], alias: str, *args: Any) -> _CompiledSelect:
    key = (build, alias, *args)
    compiled = _compiled.get(key)
    if compiled is None:
        with _compiled_lock:
            compiled = _compiled.setdefault(key, build(alias, *args))
    return compiled


class ValueFinder:
    """Finds active tokens' :class:`StoredValues` with one compiled query each."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def one(self, field: str, value: str) -> StoredValues | None:
        column = LOOKUP_COLUMNS[field]
        digest_field = ZohoToken._meta.get_field(column)
        candidates = digest_field.candidates(value) if isinstance(digest_field, DigestField) else [value]
        select = _compiled_select(_by_column, self.alias, column, len(candidates))
        raw = select.fetch(self.alias, candidates, lambda cursor: cursor.fetchone())
        return None if raw is None else stored_values(raw, current_cipher())

    def page(self, after_pk: int, size: int) -> tuple[list[StoredValues], int | None]:
        """The active tokens among the next ``size`` rows after primary key ``after_pk``,
        and the last primary key read (``None`` past the last row)."""
        select = _compiled_select(_page, self.alias, size)
        raws = select.fetch(self.alias, [after_pk], lambda cursor: cursor.fetchall())
        if not raws:
            return [], None
        cipher = current_cipher()
        active = [stored_values(raw[:-1], cipher) for raw in raws if raw[-1] is None]
        return active, raws[-1][0]

    def for_email(self, email: str) -> list[ZohoToken]:
        # Rare (an email-only user signature): the ORM's query is good enough.
        return ZohoToken.objects.using(self.alias).active().for_email(email)
