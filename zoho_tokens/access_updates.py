"""The write after every refresh: one conditional UPDATE, compiled by the ORM once.

After refreshing, the SDK saves the whole token although only the access token and
its expiry changed. When that is so, one UPDATE in the caller's transaction mode
(autocommit, usually) does the job: it sets the access token, its digest, the expiry
and the timestamps, only on an active row whose stored expiry is not newer, so a
slower worker still never overwrites a newer token. Anything else takes the full,
locked save.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from django.db import connections
from django.db.models import Q, TextField, Value
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from .models import ZohoToken
from .reads import run_compiled

_PLACEHOLDER = "\x00zoho_tokens:update:{}\x00"
SET_COLUMNS = ("access_token", "access_token_digest", "expiry_time", "last_refreshed_at", "updated_at")


class _CompiledUpdate:
    def __init__(self, alias: str) -> None:
        token_id, not_newer = _PLACEHOLDER.format("id"), _PLACEHOLDER.format("expiry")
        queryset = ZohoToken.objects.using(alias).filter(
            Q(expiry_time__isnull=True) | Q(expiry_time__lte=Value(not_newer, output_field=TextField())),
            token_id=token_id,
            revoked_at__isnull=True,
        )
        query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
        # django-stubs types the values as Case (bulk_update's use); any expression works.
        updates: list[Any] = [
            (
                ZohoToken._meta.get_field(name),
                None,
                Value(_PLACEHOLDER.format(name), output_field=TextField()),
            )
            for name in SET_COLUMNS
        ]
        query.add_update_fields(updates)
        self.sql, params = query.get_compiler(using=alias).as_sql()
        self.params = list(params)
        self.slot = {
            name: self.params.index(_PLACEHOLDER.format(name)) for name in (*SET_COLUMNS, "id", "expiry")
        }

    def execute(self, alias: str, token_id: str, access_token: str, expiry_time: int) -> int:
        connection = connections[alias]
        now = timezone.now()
        fields = ZohoToken._meta
        values: dict[str, Any] = {
            "access_token": fields.get_field("access_token").get_db_prep_save(access_token, connection),
            "access_token_digest": fields.get_field("access_token_digest").digest_of(access_token),
            "expiry_time": expiry_time,
            "last_refreshed_at": fields.get_field("last_refreshed_at").get_db_prep_save(now, connection),
            "updated_at": fields.get_field("updated_at").get_db_prep_save(now, connection),
            "id": token_id,
            "expiry": expiry_time,
        }
        params = self.params.copy()
        for name, slot in self.slot.items():
            params[slot] = values[name]
        return run_compiled(connection, self.sql, params, lambda cursor: cursor.rowcount)


_compiled: dict[str, _CompiledUpdate] = {}
_lock = threading.Lock()


def update_access_token(alias: str, token_id: str, access_token: str, expiry_time: int) -> bool:
    """Store a refreshed access token; False when no active row with an older expiry matched."""
    compiled = _compiled.get(alias)
    if compiled is None:
        with _lock:
            compiled = _compiled.setdefault(alias, _CompiledUpdate(alias))
    return compiled.execute(alias, token_id, access_token, expiry_time) == 1
