"""How the stored tokens are doing, for people and monitoring; a health check by its exit status.

Exit status: 0 all is well, 1 the status could not be read (an invalid option, a database
error), 2 usage error (Django's), 3 a token needs attention (re-authorisation, a failed
refresh, no accounts server for its API domain).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.utils.translation import ngettext

from zoho_tokens.services.status import TokenStatus, token_status

EXIT_NEEDS_ATTENTION = 3
MAX_MINUTES = 7 * 24 * 60


def when(moment: datetime | None) -> str:
    return "none" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


class Command(BaseCommand):
    help = (
        "Count the stored Zoho tokens per status, show the oldest unresolved refresh error and the "
        "next expiry. Never a secret. Exit status 0 when all is well, 3 when a token needs attention, "
        "1 when the status cannot be read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expiring-within",
            default="10",
            metavar="MINUTES",
            help="What counts as expiring soon. Default: 10.",
        )
        parser.add_argument("--json", action="store_true", help="Print the status as one JSON object.")
        parser.add_argument("--database", default=None, help="Database alias (default: the store's).")

    def handle(self, *args: Any, **options: Any) -> None:
        minutes = options["expiring_within"]
        if not (minutes.isascii() and minutes.isdigit() and int(minutes) <= MAX_MINUTES):
            raise CommandError(
                f"--expiring-within: must be a whole number of minutes from 0 to {MAX_MINUTES}, "
                f"not {minutes!r}."
            )
        alias = options["database"]
        if alias is not None and alias not in connections:
            raise CommandError(f"--database: no database {alias!r} in DATABASES.")
        try:
            status = token_status(expiring_within=timedelta(minutes=int(minutes)), using=alias)
        except DatabaseError as exc:
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise CommandError(f"Cannot read the tokens: the database failed ({message}).") from exc
        if options["json"]:
            self.stdout.write(json.dumps(self.as_json(status)))
        elif options["verbosity"] >= 1:
            self.stdout.write("\n".join(self.lines(status)))
            if not status.healthy:
                self.stderr.write(self.style.WARNING(self.attention(status)))
        if not status.healthy:
            sys.exit(EXIT_NEEDS_ATTENTION)

    @staticmethod
    def lines(status: TokenStatus) -> list[str]:
        minutes = int(status.expiring_within.total_seconds() // 60)
        error = status.oldest_refresh_error
        described = (
            "none"
            if error is None
            else f"{error.error}, token {error.token_id} ({error.user_name or 'no user'}), "
            f"no successful refresh since {when(error.since)}"
        )
        return [
            f"Active: {status.active}",
            f"  expiring within {minutes} minutes: {status.expiring_soon}",
            f"  last refresh failed: {status.last_refresh_failed}",
            f"  backing off after a rate limit: {status.backing_off}",
            f"  no accounts server for their API domain: {status.without_accounts_server}",
            f"Needing re-authorisation: {status.needing_reauthorization}",
            f"Revoked: {status.revoked}",
            f"Oldest unresolved refresh error: {described}.",
            f"Next access token expiry: {when(status.next_expiry)}.",
        ]

    @staticmethod
    def attention(status: TokenStatus) -> str:
        parts = [
            (status.needing_reauthorization, "%(n)d needing re-authorisation"),
            (status.last_refresh_failed, "%(n)d whose last refresh failed"),
            (status.without_accounts_server, "%(n)d with no accounts server"),
        ]
        listed = ", ".join(template % {"n": n} for n, template in parts if n)
        count = sum(n for n, _ in parts)
        return ngettext(
            "%(count)d token needs attention: %(listed)s.",
            "%(count)d tokens need attention: %(listed)s.",
            count,
        ) % {"count": count, "listed": listed}

    @staticmethod
    def as_json(status: TokenStatus) -> dict[str, Any]:
        error = status.oldest_refresh_error
        return {
            "healthy": status.healthy,
            "tokens": status.counts,
            "expiring_within_minutes": int(status.expiring_within.total_seconds() // 60),
            "oldest_refresh_error": None
            if error is None
            else {
                "token_id": error.token_id,
                "user_name": error.user_name,
                "error": error.error,
                "since": iso(error.since),
            },
            "next_expiry": iso(status.next_expiry),
        }
