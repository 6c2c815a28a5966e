"""The write after every refresh: one conditional UPDATE, compiled by the ORM once.

After refreshing, the SDK saves the whole token although only the access token and
its expiry changed. When that is so, one UPDATE in the caller's transaction mode
(autocommit, usually) does the job, with no read before it. It sets the access
token, its digest, the expiry and the timestamps, and only on a row that

* is active and carries no refresh flag (re-authorisation, rate-limit back-off);
* holds every other value the token carries, compared through the row's keyed
  ``fingerprint`` and its user-name digest, the token's ``None`` values included;
* stores an older access token and an expiry that is not newer, so a slower worker
  never overwrites a newer token.

When no row matches, the full, locked save decides (it also writes a fingerprint
that is missing or stale).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from django.db import connections
from django.db.models import Q, TextField, Value
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from .fields import DigestField
from .models import ZohoToken
from .reads import run_compiled

_PLACEHOLDER = "\x00zoho_tokens:update:{}\x00"
SET_COLUMNS = ("access_token", "access_token_digest", "expiry_time", "last_refreshed_at", "updated_at")
CONDITIONS = ("token_id", "fingerprint", "user_name_digest", "expiry", "old_access_token_digest")


@dataclass(frozen=True)
class RefreshedAccess:
    """A saved token whose access token and expiry may be all that changed."""

    token_id: str
    user_name: str | None
    access_token: str
    expiry_time: int
    # The values of models.FINGERPRINT_SOURCES, in that order.
    other_values: tuple[str | None, ...]


def _placeholder(name: str) -> Value:
    return Value(_PLACEHOLDER.format(name), output_field=TextField())


class _CompiledUpdate:
    def __init__(self, alias: str, *, has_user: bool) -> None:
        user = Q(user_name_digest=_placeholder("user_name_digest")) if has_user else Q(user_name_digest=None)
        queryset = ZohoToken.objects.using(alias).filter(
            Q(expiry_time__isnull=True) | Q(expiry_time__lte=_placeholder("expiry")),
            Q(access_token_digest__isnull=True)
            | ~Q(access_token_digest=_placeholder("old_access_token_digest")),
            user,
            token_id=_placeholder("token_id"),
            fingerprint=_placeholder("fingerprint"),
            revoked_at__isnull=True,
            needs_reauthorization_at__isnull=True,
            refresh_retry_at__isnull=True,
        )
        query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
        # django-stubs types the values as Case (bulk_update's use); any expression works.
        updates: list[Any] = [
            (ZohoToken._meta.get_field(name), None, _placeholder(name)) for name in SET_COLUMNS
        ]
        query.add_update_fields(updates)
        self.sql, params = query.get_compiler(using=alias).as_sql()
        self.params = list(params)
        # Where each value goes among the query's parameters (no user-name digest without a user).
        self.slot = {
            name: self.params.index(_PLACEHOLDER.format(name))
            for name in (*SET_COLUMNS, *CONDITIONS)
            if _PLACEHOLDER.format(name) in self.params
        }

    def execute(self, alias: str, refreshed: RefreshedAccess) -> int:
        connection = connections[alias]
        now = timezone.now()
        meta = ZohoToken._meta
        access_digest = _digest_field("access_token_digest").digest_of(refreshed.access_token)
        values: dict[str, Any] = {
            "access_token": meta.get_field("access_token").get_db_prep_save(
                refreshed.access_token, connection
            ),
            "access_token_digest": access_digest,
            "expiry_time": refreshed.expiry_time,
            "last_refreshed_at": meta.get_field("last_refreshed_at").get_db_prep_save(now, connection),
            "updated_at": meta.get_field("updated_at").get_db_prep_save(now, connection),
            "token_id": refreshed.token_id,
            "fingerprint": _digest_field("fingerprint").digest_from(refreshed.other_values),
            "user_name_digest": _digest_field("user_name_digest").digest_of(refreshed.user_name),
            "expiry": refreshed.expiry_time,
            "old_access_token_digest": access_digest,
        }
        params = self.params.copy()
        for name, slot in self.slot.items():
            params[slot] = values[name]
        return run_compiled(connection, self.sql, params, lambda cursor: cursor.rowcount)


def _digest_field(name: str) -> DigestField:
    return cast(DigestField, ZohoToken._meta.get_field(name))


_compiled: dict[tuple[str, bool], _CompiledUpdate] = {}
_lock = threading.Lock()


def update_access_token(alias: str, refreshed: RefreshedAccess) -> bool:
    """Store a refreshed access token; False when no row matched (the full save then decides)."""
    key = (alias, refreshed.user_name is not None)
    compiled = _compiled.get(key)
    if compiled is None:
        with _lock:
            compiled = _compiled.setdefault(key, _CompiledUpdate(alias, has_user=key[1]))
    return compiled.execute(alias, refreshed) == 1
