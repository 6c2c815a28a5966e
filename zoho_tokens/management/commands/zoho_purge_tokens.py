"""Delete revoked tokens and tokens left without re-authorisation; made for cron."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import ngettext

from zoho_tokens import services


def _days(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 0 or more, not {value!r}")
    return int(value)


class Command(BaseCommand):
    help = (
        "Delete tokens revoked more than --revoked-days ago and tokens that have needed "
        "re-authorisation for more than --reauthorization-days."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--revoked-days", type=_days, default=30, help="Default: 30.")
        parser.add_argument("--reauthorization-days", type=_days, default=30, help="Default: 30.")
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")
        parser.add_argument("--database", default=None, help="Database alias (default: the routers' choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        try:
            report = services.purge(
                revoked_before=now - timedelta(days=options["revoked_days"]),
                reauthorization_before=now - timedelta(days=options["reauthorization_days"]),
                dry_run=options["dry_run"],
                using=options["database"],
            )
        except DatabaseError as exc:
            raise CommandError(
                f"Nothing was deleted: the database failed ({type(exc).__name__}: {exc})."
            ) from exc
        if options["verbosity"] < 1:
            return
        template = (
            ngettext("Would delete %(count)d token", "Would delete %(count)d tokens", report.total)
            if options["dry_run"]
            else ngettext("Deleted %(count)d token", "Deleted %(count)d tokens", report.total)
        )
        self.stdout.write(
            (template + " (%(revoked)d revoked, %(stale)d needing re-authorisation).")
            % {"count": report.total, "revoked": report.revoked, "stale": report.needing_reauthorization}
        )
