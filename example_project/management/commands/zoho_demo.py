"""Show django-zoho-tokens at work: the real Zoho SDK, our store, and an embedded fake Zoho."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test import override_settings
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from zoho_tokens.models import ZohoToken, mask
from zoho_tokens.store import DjangoTokenStore
from zoho_tokens.testing.fake_zoho import FakeZoho

DEMO_USERS = [("alice@example.com", "10001"), ("bob@example.com", "20002")]


class Command(BaseCommand):
    help = "Log demo users in through the Zoho SDK against an embedded fake Zoho and show what is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--runserver",
            metavar="ADDRPORT",
            help="Then serve the site at ADDRPORT while the fake Zoho keeps answering, so that "
            '"Revoke at Zoho" in the admin reaches it.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        store = DjangoTokenStore()
        with FakeZoho() as zoho, tempfile.TemporaryDirectory() as resource_path:
            # The fake's API domain is no data centre of Zoho's: map it to its accounts
            # server, as a project does for a test server.
            override_settings(ZOHO_TOKENS_ACCOUNTS_SERVERS={zoho.base_url: zoho.base_url}).enable()
            for email, zgid in DEMO_USERS:
                token = OAuthToken(
                    client_id=settings.ZOHO_CLIENT_ID,
                    client_secret=settings.ZOHO_CLIENT_SECRET,
                    grant_token=zoho.issue_grant_token(email, zgid),
                    redirect_url="http://127.0.0.1:8000/zoho/callback",
                )
                Initializer.initialize(
                    environment=zoho.environment(), token=token, store=store, resource_path=resource_path
                )
                self.stdout.write(f"Logged in {email}: org {self.org_zgid()}, token id {token.get_id()}")

            # An expired token: the SDK refreshes it once through the store.
            alice = ZohoToken.objects.get(user_name=f"{DEMO_USERS[0][0]}:{DEMO_USERS[0][1]}")
            ZohoToken.objects.filter(pk=alice.pk).update(expiry_time=int(time.time() * 1000) - 1000)
            Initializer.switch_user(token=OAuthToken(user_signature=UserSignature(alice.user_name)))
            self.org_zgid()
            refreshes = zoho.count("refresh_token")
            self.stdout.write(f"Expired token of {alice.user_name} refreshed: {refreshes} refresh")

            self.show_rows()
            self.ensure_admin()
            if options["runserver"]:
                # The stored tokens name the fake Zoho's API domain, mapped to it above for
                # this process: revocations reach it. One process, so no reloader.
                self.stdout.write(f"Fake Zoho: {zoho.base_url}")
                self.stdout.flush()  # before runserver takes over, also when piped
                call_command("runserver", options["runserver"], use_reloader=False)

    @staticmethod
    def org_zgid() -> str:
        return OrgOperations().get_organization().get_object().get_org()[0].get_zgid()

    def show_rows(self) -> None:
        self.stdout.write("\nStored tokens (as the ORM sees them, masked):")
        for row in ZohoToken.objects.order_by("pk"):
            self.stdout.write(
                f"  {row.token_id}  {row.user_name:<28} refresh {mask(row.refresh_token)}  "
                f"access {mask(row.access_token)}"
            )
        table = connection.ops.quote_name(ZohoToken._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT refresh_token FROM {table} ORDER BY id LIMIT 1")
            (ciphertext,) = cursor.fetchone()
        self.stdout.write(f"What the database holds in refresh_token: {ciphertext[:40]}…")

    def ensure_admin(self) -> None:
        url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/admin/"
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            self.stdout.write(f"\nAdmin: {url}  user admin (password printed on the first run)")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@example.com", password)
        self.stdout.write(f"\nAdmin: {url}  user admin  password {password}")
