"""Refresh tokens ahead of their expiry, coordinated with the workers; made for cron."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections, router
from django.utils.translation import ngettext

from zoho_tokens.conf import app_settings
from zoho_tokens.models import ZohoToken
from zoho_tokens.services.refresh_ahead import OUTCOMES, RefreshAheadReport, refresh_ahead

# Exit statuses, documented in the README.
NEEDS_ATTENTION = 3
MAX_AHEAD = 3300  # Zoho's access tokens live 3600 s: refresh at most every 5 minutes


def _seconds(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= MAX_AHEAD:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of seconds from 1 to {MAX_AHEAD}, not {value!r}"
        )
    return int(value)


class Command(BaseCommand):
    help = (
        "Refresh every token whose access token expires within --expiring-within seconds, through "
        "the store's own coordinated refresh. Exit status 0 when all is well, "
        f"{NEEDS_ATTENTION} when a token could not be refreshed (listed on stderr)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expiring-within",
            type=_seconds,
            required=True,
            metavar="SECONDS",
            help=f"Refresh tokens expiring within this many seconds (1 to {MAX_AHEAD}).",
        )
        parser.add_argument("--json", action="store_true", help="Print the outcome per token as JSON.")
        parser.add_argument("--database", default=None, help="Database alias (default: the routers' choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not app_settings.REFRESH:
            raise CommandError("ZOHO_TOKENS_REFRESH is off: the store does not refresh tokens.")
        using = options["database"] or app_settings.DATABASE or router.db_for_write(ZohoToken)
        if using not in connections:
            raise CommandError(f"--database: no database {using!r} in DATABASES.")
        try:
            report = refresh_ahead(options["expiring_within"], using=using)
        except DatabaseError as exc:
            raise CommandError(f"The database failed ({type(exc).__name__}: {exc}); run it again.") from exc
        if options["json"]:
            counts = {outcome: getattr(report, outcome) for outcome in OUTCOMES}
            self.stdout.write(json.dumps({**counts, "reasons": report.reasons}, sort_keys=True))
        elif options["verbosity"] >= 1:
            self.stdout.write(self._summary(report))
        for outcome in ("rejected", "failed"):
            for token_id in getattr(report, outcome):
                self.stderr.write(
                    self.style.WARNING(
                        f"Token {token_id} {outcome}: {report.reasons.get(token_id) or 'no reason'}"
                    )
                )
        if report.needs_attention:
            raise SystemExit(NEEDS_ATTENTION)

    @staticmethod
    def _summary(report: RefreshAheadReport) -> str:
        count = len(report.refreshed)
        template = ngettext("Refreshed %(count)d token", "Refreshed %(count)d tokens", count)
        return (
            template + " (%(rejected)d rejected: re-authorise; %(failed)d failed: backing off; "
            "%(skipped)d left to another worker)."
        ) % {
            "count": count,
            "rejected": len(report.rejected),
            "failed": len(report.failed),
            "skipped": len(report.skipped),
        }
