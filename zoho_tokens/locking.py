"""Take one token row's write lock, waiting a bounded time for another worker's lock.

PostgreSQL and MariaDB/MySQL lock the row (``SELECT ... FOR UPDATE``). SQLite has no
row locks; a write takes the database's write lock, which serialises the refreshers
just as well (the wait is bounded by the connection's ``timeout`` option).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F

from .models import ZohoToken


def lock_row(using: str, pk: int, timeout: float) -> ZohoToken | None:
    """The row, locked until the current transaction ends (call inside ``atomic``)."""
    connection = connections[using]
    rows = ZohoToken.objects.using(using)
    if not connection.features.has_select_for_update:
        rows.filter(pk=pk).update(refresh_retry_at=F("refresh_retry_at"))
        return rows.filter(pk=pk).first()
    with _lock_wait(connection, timeout):
        return rows.select_for_update().filter(pk=pk).first()


@contextmanager
def _lock_wait(connection: BaseDatabaseWrapper, timeout: float) -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # SET LOCAL ends with the transaction: nothing to restore.
            cursor.execute("SET LOCAL lock_timeout = %s", [f"{int(timeout * 1000)}ms"])
            yield
        elif connection.vendor == "mysql":
            # Whole seconds only, and session-wide: restore the caller's value.
            cursor.execute(
                "SET @zoho_tokens_wait = @@SESSION.innodb_lock_wait_timeout, "
                "@@SESSION.innodb_lock_wait_timeout = %s",
                [max(1, math.ceil(timeout))],
            )
            try:
                yield
            finally:
                cursor.execute("SET @@SESSION.innodb_lock_wait_timeout = @zoho_tokens_wait")
        else:
            yield
