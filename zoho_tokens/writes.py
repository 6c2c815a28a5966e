"""Run a write in a transaction, retrying the errors a concurrent writer causes.

Concurrent saves for one user race to insert the same unique user name, and
databases answer contention with lock errors (SQLite's "database is locked",
MySQL's deadlock and lock-wait timeout, PostgreSQL's serialisation failures).
Each is safe to retry: the transaction rolled back and the next attempt reads
the winner's row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, OperationalError, connections, transaction

from .conf import app_settings
from .locking import claim_write_lock

logger = logging.getLogger("zoho_tokens.store")

T = TypeVar("T")

MYSQL_TRANSIENT_CODES = {1205, 1213}  # lock wait timeout, deadlock
POSTGRES_TRANSIENT_STATES = {"40001", "40P01", "55P03"}  # serialisation, deadlock, lock not available
SQLITE_TRANSIENT_MESSAGES = ("database is locked", "database table is locked")


def is_transient(exc: BaseException) -> bool:
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
                claim_write_lock(using)
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
