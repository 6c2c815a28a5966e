"""Revoke tokens at Zoho and locally, by id or by user."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import ngettext

from zoho_tokens import services
from zoho_tokens.crypto import DecryptionError
from zoho_tokens.management.options import database_alias
from zoho_tokens.models import ZohoToken, ZohoTokenQuerySet


class Command(BaseCommand):
    help = "Revoke Zoho tokens (at Zoho, then locally so the SDK no longer finds them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("token_ids", nargs="*", help="Token ids, as the SDK knows them.")
        parser.add_argument("--user", action="append", default=[], help='User name "email:zgid" or email.')
        parser.add_argument(
            "--local-only", action="store_true", help="Do not call Zoho; revoke locally only."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be revoked; change nothing."
        )
        parser.add_argument("--database", default=None, help="Database alias (default: the routers' choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        using = database_alias(options["database"])
        rows = self.select(ZohoToken.objects.using(using).active(), options["token_ids"], options["user"])
        at_zoho = not options["local_only"]
        if at_zoho:
            self.open_refresh_tokens(rows)
        verbosity = options["verbosity"]
        if options["dry_run"]:
            if verbosity >= 1:
                count = len(rows)
                self.stdout.write(
                    ngettext("Would revoke %(count)d token.", "Would revoke %(count)d tokens.", count)
                    % {"count": count}
                )
            return
        report = services.revoke(rows, at_zoho=at_zoho)
        for row, reason in report.failed:
            self.stderr.write(
                self.style.WARNING(f"Token {row.token_id} ({row.user_name}) not revoked: {reason}")
            )
        if verbosity >= 2:
            for row in report.revoked:
                self.stdout.write(f"Revoked token {row.token_id} ({row.user_name}).")
        if verbosity >= 1:
            count = len(report.revoked)
            self.stdout.write(
                ngettext("Revoked %(count)d token.", "Revoked %(count)d tokens.", count) % {"count": count}
            )
        if report.failed:
            raise CommandError(
                ngettext(
                    "%(count)d token could not be revoked.",
                    "%(count)d tokens could not be revoked.",
                    len(report.failed),
                )
                % {"count": len(report.failed)}
            )

    def select(self, active: ZohoTokenQuerySet, token_ids: list[str], users: list[str]) -> list[ZohoToken]:
        if not token_ids and not users:
            raise CommandError("Name the tokens to revoke: token ids, or --user.")
        rows = {row.pk: row for row in active.filter(token_id__in=token_ids)}
        missing = set(token_ids) - {row.token_id for row in rows.values()}
        for name in users:
            matches = list(active.for_user_name(name)) or active.for_email(name)
            if not matches:
                missing.add(name)
            rows.update((row.pk, row) for row in matches)
        if missing:
            raise CommandError(f"No active token for: {', '.join(sorted(missing))}. Nothing was revoked.")
        return [rows[pk] for pk in sorted(rows)]

    def open_refresh_tokens(self, rows: list[ZohoToken]) -> None:
        """Zoho needs each refresh token: a row that does not open stops the command before any change."""
        for row in rows:
            try:
                row.refresh_token  # noqa: B018 (opens it)
            except DecryptionError as exc:
                raise CommandError(f"{exc} Nothing was revoked.") from None
