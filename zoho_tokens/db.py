"""How the app talks to the database beyond plain ORM calls.

* Writes run in a transaction, retried when a concurrent writer caused a transient
  error (:func:`run_write`).
* The lookup every SDK call makes, and the save after every refresh, run a statement
  the ORM compiled once (:class:`CompiledQuery`, :func:`run_compiled`).

SQLite has no row locks, and a transaction that reads before it writes cannot wait
for the write lock (SQLite answers "database is locked" at once). Django's
``"transaction_mode": "IMMEDIATE"`` option makes every transaction take that lock at
``BEGIN``, waiting up to the ``timeout`` option: system check ``zoho_tokens.W002``
asks for it.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

try:
    import psycopg as _psycopg
except ImportError:  # pragma: no cover - psycopg 2 or no PostgreSQL at all
    _psycopg = None  # type: ignore[assignment]

from .conf import app_settings

logger = logging.getLogger("zoho_tokens.store")

T = TypeVar("T")

MYSQL_TRANSIENT_CODES = {1205, 1213}  # lock wait timeout, deadlock
POSTGRES_TRANSIENT_STATES = {"40001", "40P01", "55P03"}  # serialisation, deadlock, lock not available
SQLITE_TRANSIENT_MESSAGES = ("database is locked", "database table is locked")


# --- transactions with retry ------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Whether a concurrent writer caused ``exc``, so that trying again can succeed.

    Concurrent saves for one user race to insert the same unique user name, and
    databases answer contention with lock errors: the transaction rolled back and
    the next attempt reads the winner's row.
    """
    if isinstance(exc, IntegrityError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if any(message in str(exc).lower() for message in SQLITE_TRANSIENT_MESSAGES):
        return True
    cause = exc.__cause__
    args = getattr(cause, "args", ())
    if args and args[0] in MYSQL_TRANSIENT_CODES:
        return True
    return getattr(cause, "sqlstate", None) in POSTGRES_TRANSIENT_STATES


def backoff(attempt: int) -> float:
    # Jitter keeps workers that collided once from colliding again in step.
    return min(0.02 * 2**attempt, 1.0) * random.uniform(0.5, 1.5)


def run_write(using: str, write: Callable[[], T]) -> T:
    """``write()`` inside ``transaction.atomic``, retried on transient errors.

    Inside a caller's transaction only integrity errors are retried (a savepoint
    undoes them); after a deadlock the whole outer transaction is lost on MySQL,
    so the error goes to the caller.
    """
    in_outer_transaction = connections[using].in_atomic_block
    attempts = max(1, app_settings.SAVE_ATTEMPTS)
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic(using=using):
                return write()
        except (IntegrityError, OperationalError) as exc:
            retriable = is_transient(exc) and (isinstance(exc, IntegrityError) or not in_outer_transaction)
            if not retriable or attempt == attempts:
                raise
            logger.info(
                "Retrying a token write after %s (attempt %d of %d)", type(exc).__name__, attempt, attempts
            )
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


# --- statements compiled once ----------------------------------------------------------


class _Captured(Exception):
    def __init__(self, sql: str, params: list[Any]) -> None:
        self.sql, self.params = sql, params


def compile_query(queryset: QuerySet[Any]) -> tuple[str, list[Any]]:
    """The SQL and parameters the ORM would run for ``queryset`` on its database."""
    return compile_statement(queryset.db, lambda: list(queryset))


def compile_statement(using: str, run: Callable[[], object]) -> tuple[str, list[Any]]:
    """The SQL and parameters of the first statement ``run()`` would send to ``using``.

    Captured through Django's public ``execute_wrapper`` hook, which sees every
    statement before it reaches the database, and stopped there: nothing runs.
    """

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise _Captured(sql, list(params or ()))

    connection = connections[using]
    # Connecting may run statements of its own (MySQL's session settings): not these.
    connection.ensure_connection()
    # A write (``update()``) marks a caller's transaction for rollback when it raises;
    # nothing ran, so the mark is taken back.
    rollback = transaction.get_rollback(using) if connection.in_atomic_block else None
    logged = connection.queries_log
    last_logged = logged[-1] if logged else None
    with connection.execute_wrapper(capture):
        try:
            run()
        except _Captured as captured:
            # While queries are logged (DEBUG, assertNumQueries) the debug cursor records
            # even a statement stopped here (the first and only one): it never ran.
            if logged and logged[-1] is not last_logged:
                logged.pop()
            return captured.sql, captured.params
        finally:
            if rollback is not None:
                transaction.set_rollback(rollback, using)
    raise AssertionError("no statement was run")


class CompiledQuery:
    """A statement compiled once, run again with new values in chosen parameter slots.

    ``placeholders`` are distinct marker values the queryset was built with; each
    :meth:`run` replaces them, in order, with real values.
    """

    def __init__(
        self, queryset: QuerySet[Any], placeholders: list[Any], *, update: dict[str, Any] | None = None
    ) -> None:
        """The SELECT of ``queryset``, or with ``update``, its ``update(**update)``."""
        self.alias = queryset.db
        if update is None:
            self.sql, self.params = compile_query(queryset)
        else:
            self.sql, self.params = compile_statement(self.alias, lambda: queryset.update(**update))
        self.slots = [self.params.index(placeholder) for placeholder in placeholders]

    def run(self, values: list[Any], result: Callable[[Any], T]) -> T:
        params = self.params.copy()
        for slot, value in zip(self.slots, values, strict=True):
            params[slot] = value
        return run_compiled(connections[self.alias], self.sql, params, result)


_QMARK = re.compile(r"(?<!%)%s")


def run_compiled(
    connection: BaseDatabaseWrapper, sql: str, params: list[Any], result: Callable[[Any], T]
) -> T:
    """Run a statement the ORM compiled, with as little in between as the driver allows.

    Django's cursor wrapper rewrites the SQL for SQLite on every call and binds
    parameters on the client for psycopg; on these two drivers the statement goes to
    the driver's own cursor (on PostgreSQL a prepared statement, when the database's
    ``prepare_threshold`` option allows them). Errors are Django's either way. The
    statement goes through Django's cursor instead while queries are logged
    (``DEBUG``, ``assertNumQueries``, the debug toolbar), while an execute wrapper is
    installed, and always with ``ZOHO_TOKENS_DJANGO_CURSOR``, so whoever watches sees it.
    """
    connection.ensure_connection()
    if not (connection.queries_logged or connection.execute_wrappers or app_settings.DJANGO_CURSOR):
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


_compiled: dict[tuple[Any, ...], CompiledQuery] = {}
_compiled_lock = threading.Lock()


def compiled_once(build: Callable[..., CompiledQuery], alias: str, *args: Any) -> CompiledQuery:
    """``build(alias, *args)``, compiled on first use and kept for the process."""
    key = (build, alias, *args)
    compiled = _compiled.get(key)
    if compiled is None:
        with _compiled_lock:
            compiled = _compiled.get(key)
            if compiled is None:
                compiled = _compiled[key] = build(alias, *args)
    return compiled
