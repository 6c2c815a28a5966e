"""Write locks, taken so that waiting happens in the database with a bound, not in retries.

PostgreSQL and MariaDB/MySQL lock the row (``SELECT ... FOR UPDATE``). SQLite has no
row locks, and a transaction that reads before it writes cannot wait for the write
lock (SQLite answers "database is locked" at once to avoid a deadlock); a write as the
transaction's first statement waits up to the connection's ``timeout`` option instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .models import ZohoToken


def lock_row(using: str, pk: int, timeout: float) -> ZohoToken | None:
    """The row, locked until the current transaction ends (call inside ``atomic``)."""
    connection = connections[using]
    rows = ZohoToken.objects.using(using)
    if not connection.features.has_select_for_update:
        claim_write_lock(using)
        return rows.filter(pk=pk).first()
    with _lock_wait(connection, timeout):
        return rows.select_for_update().filter(pk=pk).first()


def claim_write_lock(using: str) -> None:
    """On SQLite, take the database's write lock now, as the transaction's first statement.

    Elsewhere this does nothing: row locks are taken by the queries themselves.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    table = connection.ops.quote_name(ZohoToken._meta.db_table)
    with connection.cursor() as cursor:
        # Changes no row, but starts a write transaction (like BEGIN IMMEDIATE).
        cursor.execute(f"UPDATE {table} SET id = id WHERE 1 = 0")


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
