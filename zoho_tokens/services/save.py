"""The SDK's ``save_token``: one conditional UPDATE after a refresh, else a locked upsert.

After every refresh the SDK saves the whole token although only the access token and
its expiry changed. When that is so, :func:`save_refreshed_access_token` stores them
with one ``UPDATE`` and no read, on a row that

* is active and carries no refresh flag (re-authorisation, rate-limit back-off);
* holds every other value the token carries, compared through the row's keyed
  ``fingerprint`` and its user-name digest, the token's ``None`` values included;
* stores another access token and an expiry that is not newer, so a slower worker
  never overwrites a newer token.

Everything else (a new row, other changed values, a flagged or revoked row, a key
rotation, a race lost to a newer token) goes through :func:`upsert`, which locks
the row, applies the SDK's rules and writes only what changed.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken

from ..conf import app_settings
from ..db import CompiledQuery, compiled_once, run_write
from ..fields import DigestField, EncryptedTextField, Sealed
from ..finder import RowFinder, ValueFinder
from ..models import SAVED_FIELDS, ZohoToken, ZohoTokenQuerySet
from ..sdk import (
    copy_onto_row,
    credentials_of,
    is_new_authorisation,
    match,
    names_same_user,
    new_row,
    parse_expiry,
    store_error,
    user_name_of,
)
from .keys import refuse_foreign_digests


@sensitive_variables()
def save_token(token: OAuthToken, *, using: str) -> ZohoToken | None:
    """Store the SDK's token; the saved row, or ``None`` when the one-UPDATE save did it."""
    if save_refreshed_access_token(token, using=using):
        return None
    return run_write(using, lambda: upsert(ZohoToken.objects.using(using), token))


@sensitive_variables()
def save_refreshed_access_token(token: OAuthToken, *, using: str) -> bool:
    """Store a refreshed access token with one conditional UPDATE; False when no row
    matched the conditions above (the upsert then decides)."""
    token_id, access_token = token.get_id(), token.get_access_token()
    expiry = parse_expiry(token.get_expires_in())
    if token_id is None or access_token is None or expiry is None or app_settings.rotating_keys:
        return False
    name = user_name_of(token)
    if name is not None and ":" not in name:
        # An email-only signature: the row is stored under "email:zgid".
        stored = ValueFinder(using).one("token_id", str(token_id))
        if stored is None or not names_same_user(name, stored.user_name):
            return False
        name = stored.user_name
    access_digest = _digest_field("access_token_digest").digest_of(access_token)
    secret = cast(EncryptedTextField, ZohoToken._meta.get_field("access_token"))
    connection = connections[using]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    values = {
        "access_token": secret.sealed(access_token, str(token_id)),
        "access_token_digest": access_digest,
        "expiry_time": expiry,
        "last_refreshed_at": now,
        "updated_at": now,
        "not_newer_than": expiry,
        "token_id": str(token_id),
        "fingerprint": _digest_field("fingerprint").digest_from(credentials_of(token)),
        "user_name_digest": _digest_field("user_name_digest").digest_of(name),
        "other_access_digest": access_digest,
    }
    update = compiled_once(_conditional_update, using)
    # In the caller's transaction, a failed statement must not abort it (PostgreSQL
    # would refuse every later statement): a savepoint.
    savepoint = transaction.atomic(using=using) if connection.in_atomic_block else nullcontext()
    try:
        with savepoint:
            updated = update.run([values[name] for name in _SLOTS], _row_count)
    except (IntegrityError, OperationalError):
        return False  # the upsert retries, or reports
    return updated == 1


# Building and compiling the UPDATE costs more than running it: it is compiled once per
# database, with a marker in each parameter slot, and run with the values of each save
# (in the order of ``_SLOTS``).
_SLOTS = (
    "access_token",
    "access_token_digest",
    "expiry_time",
    "last_refreshed_at",
    "updated_at",
    "not_newer_than",
    "token_id",
    "fingerprint",
    "user_name_digest",
    "other_access_digest",
)
_WRITTEN = _SLOTS[:5]


def _markers() -> dict[str, Any]:
    """A distinct value of the right type for each slot."""
    markers: dict[str, Any] = {name: f"\x00zoho_tokens:save:{name}\x00" for name in _SLOTS}
    markers["access_token"] = Sealed(markers["access_token"])
    markers["expiry_time"], markers["not_newer_than"] = -1_000_001, -1_000_002  # no expiry is negative
    # Aware or naive as timezone.now() is, or the backend refuses them.
    tz = UTC if settings.USE_TZ else None
    markers["last_refreshed_at"] = datetime(2001, 1, 1, 0, 0, 1, tzinfo=tz)
    markers["updated_at"] = datetime(2001, 1, 1, 0, 0, 2, tzinfo=tz)
    return markers


def _conditional_update(alias: str) -> CompiledQuery:
    """The UPDATE of a refreshed access token, on a row that matches the conditions above."""
    marks = _markers()
    rows = (
        ZohoToken.objects.using(alias)
        .filter(
            Q(expiry_time__isnull=True) | Q(expiry_time__lte=marks["not_newer_than"]),
            token_id=marks["token_id"],
            fingerprint=marks["fingerprint"],
            user_name_digest=marks["user_name_digest"],
            revoked_at__isnull=True,
            needs_reauthorization_at__isnull=True,
            refresh_retry_at__isnull=True,
        )
        .exclude(access_token_digest=marks["other_access_digest"])
    )
    moment = connections[alias].ops.adapt_datetimefield_value
    slots = [moment(marks[name]) if isinstance(marks[name], datetime) else marks[name] for name in _SLOTS]
    return CompiledQuery(rows, slots, update={name: marks[name] for name in _WRITTEN})


def _row_count(cursor: Any) -> int:
    return int(cursor.rowcount)


@sensitive_variables()
def upsert(rows: ZohoTokenQuerySet, token: OAuthToken) -> ZohoToken:
    """Insert or update the row ``token`` means (call inside a transaction); returns it."""
    row = find_row_to_update(rows.select_for_update(), token)
    if row is None:
        refuse_foreign_digests(rows.db)  # or the token would be stored a second time
        row = new_row(token)
        copy_onto_row(token, row)
        row.save(using=rows.db, force_insert=True)
        return row
    before = {name: getattr(row, name) for name in SAVED_FIELDS}
    if row.is_revoked:
        reactivate_or_refuse(row, token)
    copy_onto_row(token, row)
    changed = [name for name in SAVED_FIELDS if getattr(row, name) != before[name]]
    if changed and app_settings.rotating_keys:
        # Every save moves the row onto the newest keys.
        changed = list(SAVED_FIELDS)
    # Otherwise only what changed: after a refresh that is one secret to encrypt, not four.
    # A missing or stale fingerprint is written too, or the one-UPDATE save never matches.
    if changed or row.fingerprint_is_stale():
        row.save(using=rows.db, update_fields=[*changed, "updated_at", "fingerprint"])
    return row


def find_row_to_update(rows: ZohoTokenQuerySet, token: OAuthToken) -> ZohoToken | None:
    """By id when the token has one, else by the SDK's precedence; revoked rows included."""
    token_id = token.get_id()
    if token_id is None:
        return cast(ZohoToken | None, match(RowFinder(rows), token))
    row = rows.filter(token_id=str(token_id)).first()
    if row is None:
        other = match(RowFinder(rows), token)
        if other is not None:
            raise store_error(
                f"Token id {str(token_id)!r} is not stored, but this user's token is stored "
                f"under id {other.token_id!r}; use that id."
            )
    return row


def reactivate_or_refuse(row: ZohoToken, token: OAuthToken) -> None:
    """A revoked row comes back only with a new authorisation."""
    if is_new_authorisation(token, row):
        row.revoked_at = None
        return
    raise store_error(f"Token {row.token_id} was revoked; the user must authorise the app again.")


def _digest_field(name: str) -> DigestField:
    return cast(DigestField, ZohoToken._meta.get_field(name))
