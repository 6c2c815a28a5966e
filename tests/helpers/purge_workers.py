"""A child process for the concurrent purge test, started with the "spawn" method.

Like ``workers``, nothing here touches Django at import time.
"""

from __future__ import annotations

from typing import Any

from tests.helpers.workers import setup_django


def run_purge(database_name: str, barrier: Any, results: Any, worker: int) -> None:
    """Run ``zoho_purge_tokens --json --batch-size 20`` as cron would, together with the
    other worker; put ``(worker, exit status, stdout, error)`` on ``results``."""
    status, out, error = -1, "", None
    try:
        setup_django(database_name)
        from django.db import connection

        import zoho_tokens.management.commands.zoho_purge_tokens  # noqa: F401  (imported before the race)
        from tests.helpers import manage

        connection.ensure_connection()  # connect before the barrier, so both start together
        barrier.wait(timeout=60)
        status, out, err = manage("zoho_purge_tokens", "--json", "--batch-size", "20")
        if status not in (0, 4):
            error = f"exit status {status}: {err}"
    except BaseException as exc:  # reported to the parent, which fails the test
        error = f"{type(exc).__name__}: {exc}"
    results.put((worker, status, out, error))
