"""Finding stored tokens: the fast lookup every SDK call starts with, and the ORM's for writes.

Every Zoho API call the SDK makes starts with ``find_token_by_id`` or ``find_token``.
Building a QuerySet, compiling it and instantiating a model costs many times the
query itself, so :class:`ValueFinder` asks the ORM for its SQL once per database and
lookup column (``db.CompiledQuery``), runs it with new parameters, and decrypts the
secrets into plain :class:`StoredValues`. :class:`RowFinder` finds model instances,
which writes need to lock and save. Both answer ``sdk.match``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from django.conf import settings
from django.db.models import DateTimeField, TextField, Value

from .crypto import Cipher, DecryptionError
from .db import CompiledQuery, compiled_once
from .fields import DigestField, EncryptedTextField, current_cipher
from .models import SDK_FIELDS, SECRET_FIELDS, TokenState, ZohoToken, ZohoTokenQuerySet, mask

# Where each lookup goes: the plain column, or the digest column of a secret.
LOOKUP_COLUMNS = {
    "token_id": "token_id",
    "user_name": "user_name_digest",
    "access_token": "access_token_digest",
    "grant_token": "grant_token_digest",
    "refresh_token": "refresh_token_digest",
}
_PLACEHOLDER = "\x00zoho_tokens:{}\x00"


class _Columns(NamedTuple):
    """The columns every lookup reads, in the order of the SELECT."""

    pk: int
    token_id: str
    user_name: str | None
    client_id: str | None
    client_secret: str | None
    refresh_token: str | None
    grant_token: str | None
    redirect_url: str | None
    api_domain: str | None
    access_token: str | None
    expiry_time: int | None
    needs_reauthorization_at: datetime | None
    refresh_error: str
    refresh_retry_at: datetime | None
    refresh_failures: int
    refresh_claimed_until: datetime | None


assert _Columns._fields[3:10] == SDK_FIELDS, "the SELECT reads every value of the SDK's token"


class StoredValues(_Columns, TokenState):
    """An active stored token's values, decrypted: what the SDK needs, without a model.

    A named tuple, because ``get_tokens`` builds one per row. Its ``repr`` masks the
    secrets: tracebacks and error reports show it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        shown = (
            f"{name}={mask(cast(str | None, value)) if name in SECRET_FIELDS else repr(value)}"
            for name, value in zip(self._fields, self, strict=True)
        )
        return f"StoredValues({', '.join(shown)})"


COLUMNS = _Columns._fields
_FIELDS = [ZohoToken._meta.pk if name == "pk" else ZohoToken._meta.get_field(name) for name in COLUMNS]
_ENCRYPTED = [
    (n, field, field.context_prefix)
    for n, field in enumerate(_FIELDS)
    if isinstance(field, EncryptedTextField)
]
_DATETIMES = [n for n, field in enumerate(_FIELDS) if isinstance(field, DateTimeField)]


def stored_values(raw: tuple[Any, ...], cipher: Cipher) -> StoredValues:
    """A fetched row of ``COLUMNS``, its secrets decrypted for that row and its times made datetimes."""
    row = list(raw)
    token_id = row[1]
    row_id = token_id.encode()  # the associated data: the column's prefix and the row's id
    decrypt = cipher.decrypt
    for position, field, prefix in _ENCRYPTED:
        if row[position] is not None:
            try:
                row[position] = decrypt(row[position], prefix + row_id)
            except DecryptionError as exc:
                raise field.decryption_error(token_id, exc) from None
    for position in _DATETIMES:
        # Set only after a failed refresh: rare enough to convert here rather than
        # through the backend's converters (SQLite returns text, MySQL naive times).
        if row[position] is not None:
            row[position] = _as_datetime(row[position])
    return StoredValues._make(row)


def _as_datetime(raw: Any) -> datetime | None:
    value = DateTimeField().to_python(raw)
    if value is not None and settings.USE_TZ and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # stored in UTC where the database has no time zones
    return value


class ValueFinder:
    """Finds active tokens' :class:`StoredValues`, each with one compiled query."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def one(self, field: str, value: str) -> StoredValues | None:
        column = LOOKUP_COLUMNS[field]
        digest_field = ZohoToken._meta.get_field(column)
        candidates = digest_field.candidates(value) if isinstance(digest_field, DigestField) else [value]
        select = compiled_once(_select_by, self.alias, column, len(candidates))
        raw = select.run(candidates, lambda cursor: cursor.fetchone())
        return None if raw is None else stored_values(raw, current_cipher())

    def page(self, after_pk: int, size: int) -> tuple[list[StoredValues], int | None]:
        """The active tokens among the next ``size`` rows after primary key ``after_pk``,
        and the last primary key read (``None`` past the last row)."""
        select = compiled_once(_select_page, self.alias, size)
        raws = select.run([after_pk], lambda cursor: cursor.fetchall())
        if not raws:
            return [], None
        cipher = current_cipher()
        active = [stored_values(raw[:-1], cipher) for raw in raws if raw[-1] is None]
        return active, raws[-1][0]

    def for_email(self, email: str) -> list[ZohoToken]:
        # Rare (an email-only user signature): the ORM's query is good enough.
        return ZohoToken.objects.using(self.alias).active().for_email(email)


class RowFinder:
    """Finds ``ZohoToken`` instances through the ORM (for writes: lockable, savable)."""

    def __init__(self, rows: ZohoTokenQuerySet) -> None:
        self.rows = rows

    def one(self, field: str, value: str) -> ZohoToken | None:
        if field == "user_name":
            return self.rows.for_user_name(value).first()
        return self.rows.filter(**{field: value}).first()

    def for_email(self, email: str) -> list[ZohoToken]:
        return self.rows.for_email(email)


def _select_by(alias: str, column: str, arity: int) -> CompiledQuery:
    placeholders = [_PLACEHOLDER.format(n) for n in range(arity)]
    queryset = (
        ZohoToken.objects.using(alias)
        .filter(revoked_at__isnull=True, **{f"{column}__in": placeholders})
        .order_by()
        .ciphertext_values_list(*COLUMNS)[:1]
    )
    return CompiledQuery(queryset, placeholders)


def _select_page(alias: str, size: int) -> CompiledQuery:
    after = _PLACEHOLDER.format("after")
    # Revoked rows are skipped in Python: with "revoked_at IS NULL" in the WHERE clause,
    # MariaDB walks the revoked_at index from its start on every page instead of the
    # primary key from ``after`` (a page in the middle of 100,000 rows took 4x longer).
    queryset = (
        ZohoToken.objects.using(alias)
        .filter(pk__gt=Value(after, output_field=TextField()))
        .order_by("pk")
        .ciphertext_values_list(*COLUMNS, "revoked_at")[:size]
    )
    return CompiledQuery(queryset, [after])
