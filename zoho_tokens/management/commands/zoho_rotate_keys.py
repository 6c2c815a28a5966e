"""Move every stored token onto the newest encryption and HMAC keys."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils.translation import ngettext

from zoho_tokens import services
from zoho_tokens.crypto import DecryptionError
from zoho_tokens.management.options import database_alias


class Command(BaseCommand):
    help = (
        "Re-encrypt every token with the first key of ZOHO_TOKENS_ENCRYPTION_KEYS and re-digest it "
        "with the first of ZOHO_TOKENS_HMAC_KEYS. Afterwards the older keys can be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction. Default: 500.")
        parser.add_argument("--database", default=None, help="Database alias (default: the routers' choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        using = database_alias(options["database"])
        try:
            count = services.rotate_keys(batch_size=options["batch_size"], using=using)
        except DecryptionError as exc:
            raise CommandError(
                f"{exc} Rows before it were re-encrypted; run the command again once fixed."
            ) from exc
        except DatabaseError as exc:
            raise CommandError(
                f"The database failed ({type(exc).__name__}: {exc}); run the command again."
            ) from exc
        if options["verbosity"] >= 1:
            self.stdout.write(
                ngettext(
                    "Re-encrypted %(count)d token with the current keys.",
                    "Re-encrypted %(count)d tokens with the current keys.",
                    count,
                )
                % {"count": count}
            )
