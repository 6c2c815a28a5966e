"""Delete the tokens that can never be used again, in batches; made for cron.

Exit status: 0 tokens were deleted (or would be, with --dry-run), 1 failure (an invalid
option, a database error: nothing more is deleted), 2 usage error (Django's), 3 nothing
to delete, 4 another purge is running (this one did nothing).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from zoho_tokens import services
from zoho_tokens.leases import LeaseHeld
from zoho_tokens.services.purge import CATEGORIES, PurgeCutoffs, PurgeReport

EXIT_NOTHING_TO_DELETE = 3
EXIT_BUSY = 4
MAX_DAYS = 36500  # a hundred years: later cutoffs are before any token, and before MySQL's calendar
MAX_BATCH_SIZE = 10000

PHRASES = {
    "revoked": "%(n)d revoked",
    "needing_reauthorization": "%(n)d needing re-authorisation",
    "expired": "%(n)d expired without a refresh token",
    "unexchanged_grant": "%(n)d with only a grant token",
}


def whole_number(option: str, value: str, low: int, high: int, unit: str) -> int:
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise CommandError(f"{option}: must be a whole number of {unit} from {low} to {high}, not {value!r}.")
    return int(value)


class Command(BaseCommand):
    help = (
        "Delete tokens that can never be used again: revoked more than --revoked-days ago, "
        "needing re-authorisation for more than --reauthorization-days, without a refresh token "
        "and expired more than --expired-days ago, or holding only a grant token older than a day. "
        "Never a token that can still be refreshed. Exit status: 0 deleted, 1 failed, "
        "3 nothing to delete, 4 another purge is running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--revoked-days", default="30", metavar="DAYS", help="Default: 30.")
        parser.add_argument("--reauthorization-days", default="30", metavar="DAYS", help="Default: 30.")
        parser.add_argument(
            "--expired-days",
            default="1",
            metavar="DAYS",
            help="Tokens without a refresh token whose access token expired this long ago. Default: 1.",
        )
        parser.add_argument(
            "--batch-size", default="500", metavar="ROWS", help="Rows per transaction. Default: 500."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")
        parser.add_argument("--json", action="store_true", help="Print the counts as one JSON object.")
        parser.add_argument("--database", default=None, help="Database alias (default: the store's).")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoffs, batch_size = self.parse(options)
        self.options = options
        try:
            report = services.purge(
                cutoffs,
                batch_size=batch_size,
                dry_run=options["dry_run"],
                using=options["database"],
                on_batch=self.show_batch if options["verbosity"] >= 2 and not options["json"] else None,
            )
        except LeaseHeld as held:
            until = f"{held.until:%Y-%m-%d %H:%M:%S %Z}" if held.until else "now"
            message = f"Another zoho_purge_tokens run holds the lease until {until}; nothing was deleted."
            self.finish(PurgeReport(), "busy", message, stream=self.stderr)
            sys.exit(EXIT_BUSY)
        except services.PurgeFailed as failed:
            done = failed.report
            if done.total:
                message = ngettext(
                    "Deleted %(count)d token before the database failed (%(error)s); "
                    "run the command again to delete the rest.",
                    "Deleted %(count)d tokens before the database failed (%(error)s); "
                    "run the command again to delete the rest.",
                    done.total,
                ) % {"count": done.total, "error": failed}
            else:
                message = f"Nothing was deleted: the database failed ({failed})."
            if options["json"]:
                self.stdout.write(self.as_json(done, "failed", message))
            raise CommandError(message) from failed
        if not report.total:
            self.finish(report, "nothing_to_delete", _("Nothing to delete."))
            sys.exit(EXIT_NOTHING_TO_DELETE)
        self.finish(report, "ok", self.summary(report))

    def parse(self, options: dict[str, Any]) -> tuple[PurgeCutoffs, int]:
        """Every option checked before anything is done: one line naming the option."""
        days = {
            name: whole_number(f"--{name.replace('_', '-')}", options[name], 0, MAX_DAYS, "days")
            for name in ("revoked_days", "reauthorization_days", "expired_days")
        }
        batch_size = whole_number("--batch-size", options["batch_size"], 1, MAX_BATCH_SIZE, "rows")
        alias = options["database"]
        if alias is not None and alias not in connections:
            raise CommandError(f"--database: no database {alias!r} in DATABASES.")
        cutoffs = PurgeCutoffs.days_ago(
            revoked_days=days["revoked_days"],
            reauthorization_days=days["reauthorization_days"],
            expired_days=days["expired_days"],
        )
        return cutoffs, batch_size

    def finish(self, report: PurgeReport, status: str, message: str, stream: Any = None) -> None:
        if self.options["json"]:
            self.stdout.write(self.as_json(report, status))
        elif self.options["verbosity"] >= 1:
            (stream or self.stdout).write(message)

    def summary(self, report: PurgeReport) -> str:
        template = (
            ngettext("Would delete %(count)d token", "Would delete %(count)d tokens", report.total)
            if report.dry_run
            else ngettext("Deleted %(count)d token", "Deleted %(count)d tokens", report.total)
        )
        details = ", ".join(PHRASES[category] % {"n": report.counts[category]} for category in CATEGORIES)
        return template % {"count": report.total} + f" ({details})."

    def show_batch(self, category: str, deleted: int) -> None:
        self.stdout.write(f"Batch: deleted {PHRASES[category] % {'n': deleted}}.")

    def as_json(self, report: PurgeReport, status: str, error: str | None = None) -> str:
        document: dict[str, Any] = {
            "status": status,
            "dry_run": report.dry_run,
            "total": report.total,
            "counts": report.counts,
            "batches": report.batches,
        }
        if error is not None:
            document["error"] = error
        return json.dumps(document)
