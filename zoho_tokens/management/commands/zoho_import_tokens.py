"""Import the tokens of the SDK's own stores (FileStore, DBStore, Zoho's sample SQLite store)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.utils.translation import ngettext

from zoho_tokens import sdk_stores
from zoho_tokens.services import importing


class Command(BaseCommand):
    help = (
        "Import the tokens of the SDK's FileStore (--file-store PATH), DBStore (--db-store URL) or "
        "Zoho's sample SQLite store (--sqlite PATH), under their ids, so users need not consent again. "
        "A second run changes nothing. Rows that cannot be imported are listed on stderr; the command "
        "then exits with status 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--file-store", metavar="PATH", help="The CSV file of the SDK's FileStore.")
        source.add_argument(
            "--db-store",
            metavar="URL",
            help="The SDK's DBStore: mysql://user:password@host:3306/database (the password may "
            f"instead be in the environment variable {sdk_stores.PASSWORD_VARIABLE}).",
        )
        source.add_argument("--sqlite", metavar="PATH", help="The SQLite file of Zoho's sample store.")
        parser.add_argument(
            "--table",
            default=sdk_stores.DEFAULT_TABLE,
            help=f"Table of --db-store or --sqlite. Default: {sdk_stores.DEFAULT_TABLE}.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would happen; store nothing.")
        parser.add_argument("--database", default=None, help="Database alias (default: the store's).")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        if alias is not None and alias not in connections:
            raise CommandError(f"--database: no database {alias!r} in DATABASES.")
        try:
            report = importing.import_tokens(self.source(options), dry_run=options["dry_run"], using=alias)
        except sdk_stores.SourceError as exc:
            raise CommandError(f"{exc} Nothing more was imported.") from exc
        except DatabaseError as exc:
            raise CommandError(
                f"The database failed ({type(exc).__name__}: {exc}); tokens imported before stay. "
                "Run the command again: it skips them."
            ) from exc
        for where, outcome, reason in report.skipped:
            kind = "malformed" if outcome == importing.MALFORMED else "conflicting"
            self.stderr.write(self.style.WARNING(f"Skipped {where}, {kind}: {reason}."))
        verbosity = options["verbosity"]
        if verbosity >= 2:
            for token_id in report.imported_ids:
                self.stdout.write(f"Imported token {token_id}.")
        if verbosity >= 1:
            self.stdout.write(self.summary(report))
        skipped = len(report.skipped)
        if skipped:
            raise CommandError(
                ngettext(
                    "%(count)d row was skipped (listed above).",
                    "%(count)d rows were skipped (listed above).",
                    skipped,
                )
                % {"count": skipped}
            )

    def source(self, options: dict[str, Any]) -> Iterable[sdk_stores.SourceRow]:
        if options["file_store"]:
            return sdk_stores.read_file_store(options["file_store"])
        if options["db_store"]:
            return sdk_stores.read_db_store(options["db_store"], options["table"])
        return sdk_stores.read_sqlite_store(options["sqlite"], options["table"])

    @staticmethod
    def summary(report: importing.ImportReport) -> str:
        counts = report.counts
        imported = counts[importing.IMPORTED]
        template = (
            ngettext("Would import %(count)d token", "Would import %(count)d tokens", imported)
            if report.dry_run
            else ngettext("Imported %(count)d token", "Imported %(count)d tokens", imported)
        )
        return (template % {"count": imported}) + (
            f"; {counts[importing.ALREADY_IMPORTED]} already imported, "
            f"{counts[importing.MALFORMED]} malformed and {counts[importing.CONFLICTING]} conflicting "
            "rows skipped."
        )
