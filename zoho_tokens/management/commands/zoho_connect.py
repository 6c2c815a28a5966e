"""Connect a Zoho account from a self-client grant token (Zoho's API console): server-only integrations."""

from __future__ import annotations

import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from zoho_tokens import oauth, services
from zoho_tokens.conf import app_settings

HINTS = {
    "rejected": "grant tokens work once, for the few minutes chosen when they were generated, and only in "
    "their data centre: generate a new one in Zoho's API console (Self Client), then run this at once",
    "unidentified": "the grant token needs the scopes ZohoCRM.users.READ and ZohoCRM.org.READ",
    "unreachable": "nothing was stored; try again",
    "taken": "another user of this site connected that Zoho account",
    "failed": "nothing was stored",
}


class Command(BaseCommand):
    help = "Exchange a self-client grant token from Zoho's API console and store the token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--grant-token", required=True, metavar="CODE", help='The grant token; "-" reads it from stdin.'
        )
        parser.add_argument(
            "--data-center",
            default="us",
            choices=[centre.code for centre in oauth.DATA_CENTRES],
            help="The data centre of the Zoho account (default: us).",
        )
        parser.add_argument(
            "--accounts-server",
            metavar="URL",
            help="An accounts server of ZOHO_TOKENS_ACCOUNTS_SERVERS instead (a test server).",
        )
        parser.add_argument("--client-id", help="Default: ZOHO_TOKENS_CLIENT_ID.")
        parser.add_argument(
            "--client-secret", help="Default: ZOHO_TOKENS_CLIENT_SECRET (an option lands in shell history)."
        )
        parser.add_argument("--owner", metavar="USERNAME", help="The user of this site who owns the token.")

    def handle(self, *args: Any, **options: Any) -> None:
        code = sys.stdin.readline().strip() if options["grant_token"] == "-" else options["grant_token"]
        client_id = options["client_id"] or app_settings.CLIENT_ID
        client_secret = options["client_secret"] or app_settings.CLIENT_SECRET
        if not code or not client_id or not client_secret:
            raise CommandError(
                "A grant token and the client (ZOHO_TOKENS_CLIENT_ID and ZOHO_TOKENS_CLIENT_SECRET, "
                "or --client-id and --client-secret) are needed."
            )
        try:
            named, location = options["accounts_server"], options["data_center"]
            server = oauth.accounts_server_named(named, None if named else location)
        except oauth.UntrustedAccountsServer as exc:
            raise CommandError(f"Not a trusted accounts server: {exc}.") from None
        owner = self.owner(options["owner"])
        try:
            connection = services.connect(
                code=code, server=server, client=services.Client(client_id, client_secret, ""), owner=owner
            )
        except services.ConnectFailed as exc:
            raise CommandError(
                f"Zoho was not connected ({exc.reason}: {exc.detail}): {HINTS[exc.reason]}."
            ) from None
        row = connection.token
        email, _, org = (row.user_name or "").rpartition(":")
        verb = "Reconnected" if connection.reconnected else "Connected"
        self.stdout.write(f"{verb} {email} (org {org}) at {server.name}: token id {row.token_id}.")
        if connection.replaced_revoked is False:
            self.stderr.write(
                self.style.WARNING("The refresh token it replaced could not be revoked at Zoho.")
            )

    @staticmethod
    def owner(username: str | None) -> Any:
        if username is None:
            return None
        user_model = get_user_model()
        try:
            return user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user {username!r}; nothing was connected.") from None
